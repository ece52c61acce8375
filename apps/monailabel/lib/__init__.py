"""Tasks and settings of the nnMamba MONAI Label app (see apps/monailabel/main.py)."""
