"""The three nnMamba networks: segmentation, classification, landmark heatmaps."""

from .classification import nnMambaEncoder
from .landmark import nnMambaLandmark
from .segmentation import nnMambaSeg

__all__ = ["nnMambaEncoder", "nnMambaLandmark", "nnMambaSeg"]
