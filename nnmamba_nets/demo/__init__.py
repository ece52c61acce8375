"""Synthetic demo data (no download): one module per bundle's data set and the one cache they share.

``brats`` (BraTS-like tumours), ``adni`` (atrophy classification), ``fetal`` (fetal head landmarks),
built from the phantom helpers of ``phantom``; ``cache`` builds each set once and returns its datalist
JSON. Import the module you need.
"""
