"""3D image classification (e.g. AD vs NC): the CSV/datalist preparer, transforms, loss, metrics, report.

Modules by role: ``datalist`` (CSV -> datalist with subject-level splits, inference inputs),
``transforms`` (logits -> probabilities, label formats), ``losses``, ``metrics`` (one definition for
validation and evaluation), ``handlers`` (the per-image report). Import the module you need.
"""
