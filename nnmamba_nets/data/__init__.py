"""Datasets for the bundles: synthetic demo-data generators and preparers for public datasets.

One module per dataset (e.g. ``nnmamba_nets.data.brats``) plus shared phantom helpers
(``nnmamba_nets.data.phantom``); import the module you need.
"""
