"""Load pretrained weights (reference nnMamba checkpoints, nnU-Net v1 ``.model`` files, MONAI/ignite checkpoints)
into a network, without running any code a file carries."""

from __future__ import annotations

import logging
import os
import pickle
from collections.abc import Mapping

import numpy as np
import torch
import torch.nn as nn
from torch.nn.modules.utils import consume_prefix_in_state_dict_if_present

__all__ = ["extract_state_dict", "load_checkpoint", "load_pretrained"]

# Keys under which training scripts and MONAI/ignite CheckpointSaver store the network's weights.
CONTAINER_KEYS = ("state_dict", "model", "network", "net", "model_state_dict")
# Prefixes added by nn.DataParallel / DistributedDataParallel and by torch.compile.
WRAPPER_PREFIXES = ("module.", "_orig_mod.")
_MAX_LISTED = 20
_logger = logging.getLogger(__name__)


def _numpy_scalar_globals() -> list:
    """What unpickling numpy scalars needs (nnU-Net v1 stores losses and metrics as numpy floats): numpy's scalar
    constructor, under its numpy 2 and its numpy 1 name, ``numpy.dtype`` and the dtype classes of numeric and
    boolean scalars. None of them runs code; they rebuild a number from its dtype and bytes."""
    scalar = np.float64(0).__reduce__()[0]  # numpy._core.multiarray.scalar (numpy.core.multiarray in numpy 1)
    dtypes = [type(np.dtype(code)) for code in ("?", "i1", "i2", "i4", "i8", "u1", "u2", "u4", "u8", "f2", "f4", "f8")]
    return [
        scalar,
        (scalar, "numpy.core.multiarray.scalar"),
        (scalar, "numpy._core.multiarray.scalar"),
        np.dtype,
        *dtypes,
    ]


def load_checkpoint(path: str | os.PathLike) -> object:
    """Read a checkpoint file with ``torch.load(weights_only=True)`` on CPU, numpy scalars allowed.

    ``weights_only`` unpickling builds only tensors, containers and numbers; the numpy scalar types are
    allow-listed for the files of nnU-Net v1 (``model_final_checkpoint.model``, ``model_best.model``). Anything
    else a file asks for (a class, a function: what a malicious pickle calls) is refused before it runs.

    Args:
        path: the checkpoint file.

    Returns:
        the loaded object (a state_dict or a dict holding one, usually).

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: the file is not a torch checkpoint, is damaged, or needs something ``weights_only`` refuses
            (named in the message).
    """
    source = os.fspath(path)
    if not os.path.isfile(source):
        raise FileNotFoundError(f"Checkpoint file not found: {source}")
    allowed = _numpy_scalar_globals()
    try:
        with torch.serialization.safe_globals(allowed):
            return torch.load(source, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        try:
            refused = torch.serialization.get_unsafe_globals_in_checkpoint(source)
        except Exception:  # not a zip checkpoint either: the error above says why
            refused = []
        names = {
            entry[1] if isinstance(entry, tuple) else f"{entry.__module__}.{entry.__qualname__}" for entry in allowed
        }
        refused = [name for name in refused if name not in names]
        what = f"it asks for {refused}, which are not plain data" if refused else str(error).splitlines()[-1]
        raise ValueError(
            f"Cannot load checkpoint {source} with torch.load(weights_only=True): {what}. Nothing in it was run; "
            "save the weights as a plain state_dict (torch.save(net.state_dict(), path)) if you trust the file."
        ) from error
    except (RuntimeError, EOFError, OSError) as error:
        raise ValueError(f"Cannot load checkpoint {source} with torch.load(weights_only=True): {error}") from error


def _is_state_dict(obj: object) -> bool:
    return isinstance(obj, Mapping) and len(obj) > 0 and all(isinstance(v, torch.Tensor) for v in obj.values())


def extract_state_dict(checkpoint: Mapping, source: str = "checkpoint") -> dict[str, torch.Tensor]:
    """Find the network's state_dict in a checkpoint and strip wrapper prefixes.

    Args:
        checkpoint: a state_dict, or a dict holding one under ``state_dict``, ``model``, ``network``,
            ``net`` or ``model_state_dict`` (nested containers are unwrapped too).
        source: where the checkpoint came from, for error messages.

    Returns:
        The state_dict with ``module.`` (DataParallel/DDP) and ``_orig_mod.`` (torch.compile)
        prefixes removed when every key carries them.

    Raises:
        ValueError: no state_dict found.
    """
    found: object = checkpoint
    while not _is_state_dict(found):
        if not isinstance(found, Mapping):
            raise ValueError(f"{source}: expected a state_dict or a dict containing one, got {type(found).__name__}.")
        key = next((k for k in CONTAINER_KEYS if isinstance(found.get(k), Mapping)), None)
        if key is None:
            raise ValueError(
                f"{source}: no state_dict found; top-level keys are {sorted(map(str, found))[:_MAX_LISTED]}, "
                f"expected tensors or one of the containers {CONTAINER_KEYS}."
            )
        found = found[key]
    state_dict = dict(found)
    for prefix in WRAPPER_PREFIXES:
        if all(k.startswith(prefix) for k in state_dict):  # a wrapped network, not a module named "module"
            consume_prefix_in_state_dict_if_present(state_dict, prefix)
    return state_dict


def _listing(title: str, items: list[str]) -> str:
    shown = items[:_MAX_LISTED]
    more = f"\n    ... and {len(items) - len(shown)} more" if len(items) > len(shown) else ""
    return f"  {title} ({len(items)}):\n" + "".join(f"    {item}\n" for item in shown) + more


def _shared_conflicts(net: nn.Module, state_dict: Mapping[str, torch.Tensor]) -> list[str]:
    """Keys that name one shared tensor of ``net`` but carry different values in ``state_dict``."""
    first_key: dict[int, str] = {}
    conflicts = []
    for key, tensor in net.state_dict(keep_vars=True).items():  # a shared module yields the same objects
        if key not in state_dict:
            continue
        other = first_key.setdefault(id(tensor), key)
        mine, theirs = state_dict[key], state_dict.get(other)
        if other != key and theirs is not None and mine.shape == theirs.shape and not torch.equal(mine, theirs):
            conflicts.append(f"{key} != {other} (shared in the network)")
    return conflicts


def _hint(missing: list[str], unexpected: list[str]) -> str:
    """What the key mismatch says about the checkpoint, when it is one of the known network variants."""
    if any(key.startswith("ds1_cls_conv.") for key in unexpected) and any(".nin2." in key for key in missing):
        return "  hint: a checkpoint of the nnU-Net v1 network; build nnMambaSeg(variant='nnunet').\n"
    if any(key.startswith("ds1_cls_conv.") for key in missing) and any(".nin2." in key for key in unexpected):
        return "  hint: a checkpoint of the reference nnMamba.py network; build nnMambaSeg(variant='css').\n"
    if any(".mamba_layer" in key or key.startswith("mamba_layer") for key in unexpected) and not any(
        "mamba" in key for key in missing
    ):
        return "  hint: the checkpoint has Mamba layers; build the network with mamba=True.\n"
    if any("mamba" in key for key in missing) and not any("mamba" in key for key in unexpected):
        return (
            "  hint: the checkpoint has no Mamba layers (the no-Mamba ablation); build the network with mamba=False.\n"
        )
    return ""


def load_pretrained(net: nn.Module, path_or_dict: str | os.PathLike | Mapping, strict: bool = True) -> nn.Module:
    """Load weights into ``net``, with one clear error listing everything that does not fit.

    Files are read by :func:`load_checkpoint` (``torch.load(..., weights_only=True)`` on CPU, numpy scalars
    allowed). Containers (``state_dict``, ``model``, ``network``, ``net``, MONAI ``CheckpointSaver`` dicts,
    nnU-Net v1 ``.model`` files) are unwrapped and ``module.`` prefixes stripped (see :func:`extract_state_dict`).
    Reference nnMamba checkpoints load into networks built with ``head="reference"``; the authors' nnU-Net v1
    checkpoints into ``nnMambaSeg(variant="nnunet")``.

    Args:
        net: the network to fill.
        path_or_dict: checkpoint file path, or an already loaded checkpoint/state_dict.
        strict: require the keys to match exactly. With False, missing and unexpected keys are
            logged and skipped; mis-shaped tensors are always an error. Defaults to True.

    Returns:
        ``net``, with the weights loaded.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: the file cannot be read safely, holds no state_dict, or its keys/shapes do not
            fit ``net`` (the message lists missing, unexpected and mis-shaped keys).
    """
    if isinstance(path_or_dict, Mapping):
        source, checkpoint = "checkpoint dict", path_or_dict
    else:
        source, checkpoint = os.fspath(path_or_dict), load_checkpoint(path_or_dict)
    state_dict = extract_state_dict(checkpoint, source)

    expected = net.state_dict()
    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected]
    mis_shaped = [
        f"{k}: checkpoint {tuple(state_dict[k].shape)}, network {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state_dict and state_dict[k].shape != v.shape
    ]
    conflicts = _shared_conflicts(net, state_dict)
    problems = [("mis-shaped keys", mis_shaped), ("conflicting values for shared tensors", conflicts)]
    if strict:
        problems = [("missing keys", missing), ("unexpected keys", unexpected)] + problems
    elif missing or unexpected:
        _logger.warning(
            "load_pretrained(%s, strict=False): skipping %d missing and %d unexpected keys.",
            source,
            len(missing),
            len(unexpected),
        )
    if any(items for _, items in problems):
        details = "".join(_listing(title, items) for title, items in problems if items)
        raise ValueError(
            f"Checkpoint {source} does not fit {type(net).__name__}:\n{details}{_hint(missing, unexpected)}"
        )
    net.load_state_dict({k: v for k, v in state_dict.items() if k in expected}, strict=strict)
    return net
