"""nnMamba networks for MONAI: Mamba mixer with CPU/GPU backends, blocks, and the three networks."""

from .nets import load_pretrained, nnMambaEncoder, nnMambaLandmark, nnMambaSeg
from .ssm import Mamba, selective_scan

__version__ = "0.1.0"

__all__ = [
    "Mamba",
    "load_pretrained",
    "nnMambaEncoder",
    "nnMambaLandmark",
    "nnMambaSeg",
    "selective_scan",
    "__version__",
]
