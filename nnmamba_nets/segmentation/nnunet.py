"""The plans of an nnU-Net v1 training (``model_final_checkpoint.model.pkl``), read without running code.

nnU-Net v1 (the authors' BraTS 2023 trainers ``nnUNetTrainerV2_*_mamba``) saves beside each checkpoint
``<name>.model`` a plain pickle ``<name>.model.pkl``: ``{"init": trainer arguments, "name": trainer class name,
"class": ..., "plans": the experiment plans}``. The plans say how the network was trained: the patch size and
voxel spacing of the stage, how each input channel was normalised, the modalities and classes. A pickle can
run any code on loading, so :func:`read_nnunet_plans` unpickles with an allow-list of the plain types such
files hold (numpy arrays and scalars, ``OrderedDict``) and refuses anything else, naming it. The weights
themselves load with :func:`nnmamba_nets.nets.load_pretrained` into ``nnMambaSeg(variant="nnunet")``.

Command line::

    python -m nnmamba_nets.segmentation.nnunet /models/fold_0/model_final_checkpoint.model.pkl
"""

from __future__ import annotations

import io
import json
import os
import pickle
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["NnUNetPlans", "read_nnunet_plans"]

# module, name -> allowed: what numpy arrays, numpy scalars and ordered dicts need (numpy 1 and 2 module names)
_ALLOWED_GLOBALS = {
    ("collections", "OrderedDict"),
    ("builtins", "set"),
    ("builtins", "frozenset"),
    ("_codecs", "encode"),  # bytes in protocol-2 pickles
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
}
_NORMALISATION_OF_THE_BUNDLE = "nonCT"  # z-score per channel: the bundle's NormalizeIntensityd(channel_wise=True)


class _RefusedGlobal(pickle.UnpicklingError):
    """The pickle asked for a class or function outside the allow-list."""


class _PlainDataUnpickler(pickle.Unpickler):
    """Unpickles plain data only: :data:`_ALLOWED_GLOBALS`, everything else is refused before it is called."""

    def __init__(self, stream: io.BufferedIOBase, source: str) -> None:
        super().__init__(stream)
        self.source = source

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _ALLOWED_GLOBALS:
            raise _RefusedGlobal(
                f"{self.source}: refused {module}.{name}; an nnU-Net plans file holds only plain data (numbers, "
                "strings, lists, dicts, numpy arrays), so this file is not one or was altered. Nothing was run."
            )
        return super().find_class(module, name)


@dataclass(frozen=True)
class NnUNetPlans:
    """What an nnU-Net v1 plans file says about its training, in nnU-Net's axis order (``transpose_forward``).

    Attributes:
        trainer: the trainer class name, e.g. ``nnUNetTrainerV2_nnMamba``.
        stage: the plans stage the network was trained on.
        patch_size: the training patch, voxels per axis.
        spacing: the voxel spacing the data were resampled to, mm per axis.
        transpose_forward: nnU-Net's axis permutation of the images before training.
        modalities: input channel index -> modality name.
        normalization: input channel index -> nnU-Net normalisation scheme (``nonCT``: z-score per image,
            ``CT``: clipping and z-score with dataset statistics).
        use_mask_for_norm: channel index -> whether the z-score used only the non-zero (brain) voxels.
        num_classes: output channels, background included.
    """

    trainer: str
    stage: int
    patch_size: tuple[int, ...]
    spacing: tuple[float, ...]
    transpose_forward: tuple[int, ...]
    modalities: dict[int, str]
    normalization: dict[int, str]
    use_mask_for_norm: dict[int, bool]
    num_classes: int

    def bundle_overrides(self) -> dict[str, Any]:
        """The segmentation bundle's ids that follow from the plans: ``roi_size``, the training patch."""
        return {"roi_size": [int(size) for size in self.patch_size]}

    def notes(self) -> list[str]:
        """What a user must do by hand for the bundle to see data as this network was trained on."""
        notes = [
            f"resample the images to {list(self.spacing)} mm (nnU-Net axis order {list(self.transpose_forward)}); "
            "the bundle segments on the input's own grid",
            f"the network has {self.num_classes} softmax outputs (background first), not the bundle's 3 sigmoid "
            "regions: decode with argmax",
        ]
        other = {
            channel: scheme for channel, scheme in self.normalization.items() if scheme != _NORMALISATION_OF_THE_BUNDLE
        }
        if other:
            notes.append(f"channels {other} were not z-scored per image: the bundle's NormalizeIntensityd differs")
        if not all(self.use_mask_for_norm.values()):
            notes.append(
                f"use_mask_for_norm is {self.use_mask_for_norm}: the bundle z-scores inside the non-zero voxels only"
            )
        return notes


def _int_keys(mapping: Mapping | None, convert: type) -> dict[int, Any]:
    return {int(key): convert(value) for key, value in (mapping or {}).items()}


def read_nnunet_plans(path: str | os.PathLike) -> NnUNetPlans:
    """Read an nnU-Net v1 ``*.model.pkl`` (or a bare plans ``*.pkl``) without running code.

    Args:
        path: the plans file beside the checkpoint.

    Returns:
        the training settings it records.

    Raises:
        FileNotFoundError: no such file.
        ValueError: the file is not a readable pickle of plain data, or lacks the plans fields (named).
    """
    source = os.fspath(path)
    if not os.path.isfile(source):
        raise FileNotFoundError(f"nnU-Net plans file not found: {source}")
    try:
        with open(source, "rb") as stream:
            content = _PlainDataUnpickler(stream, source).load()
    except _RefusedGlobal as error:
        raise ValueError(str(error)) from error
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError) as error:
        raise ValueError(f"{source}: not a readable nnU-Net plans pickle ({type(error).__name__}: {error}).") from error
    if not isinstance(content, Mapping):
        raise ValueError(f"{source}: expected a dict of nnU-Net plans, got {type(content).__name__}.")
    plans = content.get("plans", content)  # a .model.pkl wraps the plans; a plans .pkl is them
    init = content.get("init") if isinstance(content.get("init"), Sequence) else ()
    try:
        stages = plans["plans_per_stage"]
        stage = int(init[5]) if len(init) > 5 else max(int(key) for key in stages)  # trainer argument `stage`
        settings = stages[stage]
        return NnUNetPlans(
            trainer=str(content.get("name", "unknown trainer")),
            stage=stage,
            patch_size=tuple(int(size) for size in settings["patch_size"]),
            spacing=tuple(float(value) for value in settings["current_spacing"]),
            transpose_forward=tuple(int(axis) for axis in plans.get("transpose_forward", (0, 1, 2))),
            modalities=_int_keys(plans.get("modalities"), str),
            normalization=_int_keys(plans.get("normalization_schemes"), str),
            use_mask_for_norm=_int_keys(plans.get("use_mask_for_norm"), bool),
            num_classes=int(plans["num_classes"]) + 1,  # nnU-Net v1 counts the foreground classes
        )
    except (KeyError, TypeError, ValueError, IndexError) as error:
        raise ValueError(
            f"{source}: not nnU-Net v1 plans (expected 'plans_per_stage' with 'patch_size' and 'current_spacing', "
            f"and 'num_classes'): {type(error).__name__}: {error}."
        ) from error


def _report(path: str) -> str:
    """Command line: the plans as JSON with the bundle overrides and the notes."""
    plans = read_nnunet_plans(path)
    return json.dumps({**asdict(plans), "bundle_overrides": plans.bundle_overrides(), "notes": plans.notes()}, indent=2)


if __name__ == "__main__":
    import fire

    fire.Fire(_report)
