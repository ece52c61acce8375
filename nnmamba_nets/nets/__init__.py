"""The nnMamba networks (torch only): blocks, the three networks, and loading pretrained weights.

One file per network, named after it (``nnmamba_seg.py``, ``nnmamba_encoder.py``,
``nnmamba_landmark.py``); the shared layers are in ``blocks.py``.
"""

from .nnmamba_encoder import nnMambaEncoder
from .nnmamba_landmark import nnMambaLandmark
from .nnmamba_seg import nnMambaSeg
from .pretrained import extract_state_dict, load_pretrained

__all__ = ["extract_state_dict", "load_pretrained", "nnMambaEncoder", "nnMambaLandmark", "nnMambaSeg"]
