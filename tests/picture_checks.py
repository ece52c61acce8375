"""Helpers shared by the picture tests (tests/*/test_pictures.py): check a written PNG."""

from __future__ import annotations

import os

import numpy as np
from matplotlib.image import imread


def assert_png(path: str | os.PathLike, size_inches: tuple[float, float], dpi: float) -> np.ndarray:
    """Check that ``path`` is a PNG of ``size_inches`` (width, height) at ``dpi`` that is not one flat colour.

    Returns:
        the image, (height, width, channels) floats in [0, 1].
    """
    image = imread(os.fspath(path), format="png")
    assert image.shape[:2] == (round(size_inches[1] * dpi), round(size_inches[0] * dpi))
    assert float(image[..., :3].std()) > 0.01  # something is drawn
    return image
