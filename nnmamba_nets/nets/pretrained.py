"""Load pretrained weights (reference nnMamba checkpoints, MONAI/ignite checkpoints) into a network."""

from __future__ import annotations

import logging
import os
import pickle
from collections.abc import Mapping

import torch
import torch.nn as nn
from torch.nn.modules.utils import consume_prefix_in_state_dict_if_present

__all__ = ["extract_state_dict", "load_pretrained"]

# Keys under which training scripts and MONAI/ignite CheckpointSaver store the network's weights.
CONTAINER_KEYS = ("state_dict", "model", "network", "net", "model_state_dict")
# Prefixes added by nn.DataParallel / DistributedDataParallel and by torch.compile.
WRAPPER_PREFIXES = ("module.", "_orig_mod.")
_MAX_LISTED = 20
_logger = logging.getLogger(__name__)


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


def load_pretrained(net: nn.Module, path_or_dict: str | os.PathLike | Mapping, strict: bool = True) -> nn.Module:
    """Load weights into ``net``, with one clear error listing everything that does not fit.

    Files are read with ``torch.load(..., weights_only=True)`` on CPU. Containers (``state_dict``,
    ``model``, ``network``, ``net``, MONAI ``CheckpointSaver`` dicts) are unwrapped and
    ``module.`` prefixes stripped (see :func:`extract_state_dict`). Reference nnMamba checkpoints
    load into networks built with ``head="reference"``.

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
        source = os.fspath(path_or_dict)
        if not os.path.isfile(source):
            raise FileNotFoundError(f"Checkpoint file not found: {source}")
        try:
            checkpoint = torch.load(source, map_location="cpu", weights_only=True)
        except (pickle.UnpicklingError, RuntimeError, EOFError) as error:
            raise ValueError(f"Cannot load checkpoint {source} with torch.load(weights_only=True): {error}") from error
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
        raise ValueError(f"Checkpoint {source} does not fit {type(net).__name__}:\n{details}")
    net.load_state_dict({k: v for k, v in state_dict.items() if k in expected}, strict=strict)
    return net
