"""MONAI Label app serving the nnMamba bundles (segmentation, classification, landmarks).

Start (from the repository root, in the environment made by ``scripts/setup_monailabel_env.sh``)::

    monailabel start_server --app apps/monailabel --studies /path/to/images \\
        --conf zoo_source ngc --conf sam2 false --host 127.0.0.1 --port 8000

App settings (``--conf KEY VALUE``):

* ``bundles``: folder of bundles to serve. Defaults to the repository's ``bundles/`` next to ``apps/``.
* ``models``: ``all`` (default) or comma-separated bundle folder names.
* ``bundle_overrides``: JSON (text or file) ``{bundle name: {config id: value}}`` applied to the bundle's
  inference and train configs, e.g. ``{"nnmamba_brats_segmentation": {"num_workers": 0}}``.
* ``preload``: ``true`` loads the networks at start-up. Defaults to false.

Nothing is downloaded: a bundle is served when its ``models/model.pt`` exists (the demo-trained weights
or weights you put there). See docs/monailabel.md.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from fastapi import HTTPException
from lib.bundles import find_bundles, parse_bundle_overrides
from lib.infers import (
    ClassificationInferTask,
    InputImageError,
    LandmarkInferTask,
    NNMambaInferTask,
    SegmentationInferTask,
)
from lib.trainers import SegmentationTrainTask
from monailabel.interfaces.app import MONAILabelApp
from monailabel.interfaces.tasks.train import TrainTask

import nnmamba_nets

logger = logging.getLogger(__name__)

INFER_TASKS = {
    "segmentation": SegmentationInferTask,
    "classification": ClassificationInferTask,
    "landmarks": LandmarkInferTask,
}
TRAIN_TASKS = {"segmentation": SegmentationTrainTask}


class NNMambaApp(MONAILabelApp):
    """MONAI Label app with one inference task per nnMamba bundle and training for segmentation."""

    def __init__(self, app_dir: str, studies: str, conf: dict[str, str]) -> None:
        default_bundles = os.path.join(os.path.dirname(os.path.dirname(os.path.realpath(app_dir))), "bundles")
        self.bundles = find_bundles(conf.get("bundles", default_bundles), conf.get("models", "all"))
        self.bundle_overrides = parse_bundle_overrides(conf.get("bundle_overrides", ""), list(self.bundles))
        logger.info(f"nnMamba bundles: {list(self.bundles.values())}")
        super().__init__(
            app_dir=app_dir,
            studies=studies,
            conf=conf,
            name="nnMamba",
            description="nnMamba segmentation, classification and landmark detection (MONAI bundles)",
            version=nnmamba_nets.__version__,
        )

    def init_infers(self) -> dict[str, NNMambaInferTask]:
        infers = {}
        for name, bundle in self.bundles.items():
            task = INFER_TASKS[bundle.task](bundle.path, self.conf, self.bundle_overrides.get(name))
            if not task.is_valid():
                logger.warning(
                    f"not serving {name}: put its weights at {os.path.join(bundle.path, 'models', 'model.pt')}"
                )
            infers[name] = task
        return infers

    def init_trainers(self) -> dict[str, TrainTask]:
        return {
            name: TRAIN_TASKS[bundle.task](bundle.path, self.conf, self.bundle_overrides.get(name))
            for name, bundle in self.bundles.items()
            if bundle.task in TRAIN_TASKS
        }

    def infer(self, request: dict[str, Any], datastore: Any = None) -> dict[str, Any]:
        """Run a model, answering requests the server cannot serve with HTTP 4xx and a message.

        Raises:
            HTTPException: 404 for an unknown model, a model without weights or an image id that is not in
                the datastore; 400 for an image that cannot be read or does not fit the model.
        """
        model = request.get("model")
        task = self._infers.get(model)
        if task is None or not task.is_valid():
            served = sorted(k for k, v in self._infers.items() if v.is_valid())
            reason = "is not served (no models/model.pt)" if task is not None else "is unknown"
            raise HTTPException(status_code=404, detail=f"model {model!r} {reason}; this server has {served}.")
        image = request.get("image")
        if isinstance(image, str) and not os.path.exists(image):
            store = datastore if datastore else self.datastore()
            if not store.get_image_uri(image):
                raise HTTPException(
                    status_code=404,
                    detail=f"image {image!r} is not in the datastore {self.studies}; "
                    "use an id listed by /datastore/?output=all or upload the file with file=.",
                )
        try:
            return super().infer(request, datastore)
        except InputImageError as error:
            raise HTTPException(status_code=400, detail=str(error)) from error
