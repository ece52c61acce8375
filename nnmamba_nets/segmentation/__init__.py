"""BraTS glioma segmentation: the data layout and datalist preparer, transforms and metrics of the bundle.

Modules by role: ``datalist`` (BraTS 2023 folders -> datalist, case checks, inference inputs),
``transforms`` (regions -> labels, saving like the input file), ``metrics`` (BraTS HD95, per-region
handlers). Import the module you need.
"""
