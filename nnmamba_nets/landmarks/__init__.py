"""3D landmark detection: Slicer landmark files, the landmark protocol, the datalist preparer, coordinates,
heatmaps, transforms, losses, metrics and handlers.

Modules by role: ``io`` (3D Slicer ``.mrk.json`` / ``.fcsv`` / CSV files, lossless), ``protocol`` (the landmark
names in channel order and their descriptions: from the datalist, beside the weights), ``datalist`` (image +
landmark file pairs -> datalist), ``coordinates`` (world <-> voxel), ``heatmap`` (Gaussian targets), ``decode``
(heatmaps -> coordinates, torch only), ``transforms``, ``losses``, ``metrics``, ``handlers``.
Import the module you need.
"""
