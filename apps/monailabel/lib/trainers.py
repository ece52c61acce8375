"""MONAI Label training task for the nnMamba segmentation bundle.

MONAI Label's :class:`BundleTrainTask` runs the bundle's ``configs/train.yaml`` (``run`` id) with the
datastore's labelled images as ``train#dataset#data`` and ``validate#dataset#data``, starting from
``models/model.pt``; the bundle's checkpoint handlers write the new ``models/model.pt`` (best
validation mean Dice), which the inference task picks up at its next request.
"""

from __future__ import annotations

import logging
from typing import Any

from monailabel.tasks.train.bundle import BundleTrainTask

from .bundles import BundleOverrides

__all__ = ["SegmentationTrainTask"]

logger = logging.getLogger(__name__)


class SegmentationTrainTask(BundleOverrides, BundleTrainTask):
    """Fine-tune the segmentation bundle on the datastore's labelled images, with a validation split.

    Compared with :class:`BundleTrainTask` it applies the app's config overrides, passes ``device`` as a
    ``torch.device`` expression (the bundle reads ``@device.type``), validates at least once (``val_interval`` is
    capped at ``max_epochs``, so a short run still writes ``models/model.pt``) and refuses splits that
    leave the training or validation list empty (``val_split: -1`` keeps the bundle's own validation data).

    Args:
        path: bundle folder.
        conf: the app's ``--conf`` settings.
        overrides: config id -> value applied to the bundle's train config (``--id value``).
    """

    def __init__(self, path: str, conf: dict[str, str], overrides: dict[str, Any] | None = None) -> None:
        self.overrides = dict(overrides or {})
        super().__init__(path, conf, load_strict=True)

    def _partition_datalist(
        self, datalist: list[dict], request: dict, shuffle: bool = False
    ) -> tuple[list[dict], list[dict] | None]:
        train_list, val_list = super()._partition_datalist(datalist, request, shuffle)
        if not train_list or val_list == []:
            raise ValueError(
                f"{len(datalist)} labelled image(s) in the datastore give {len(train_list)} for training and "
                f"{len(val_list or [])} for validation with val_split={request.get('val_split', 0.2)}; "
                "label more images or change val_split so that both are non-empty."
            )
        return train_list, val_list

    def _update_overrides(self, overrides: dict[str, Any]) -> dict[str, Any]:
        overrides.update(self.overrides)
        # an expression, not a torch.device: multi-GPU runs export the overrides to JSON
        overrides[self.const.key_device()] = f"$torch.device({str(overrides[self.const.key_device()])!r})"
        max_epochs = int(overrides[self.const.key_train_trainer_max_epochs()])
        overrides["val_interval"] = max(1, min(int(self.bundle_config["val_interval"]), max_epochs))
        logger.info(f"bundle overrides for training: {sorted(overrides)}")
        return overrides
