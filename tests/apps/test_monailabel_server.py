"""Integration test of the MONAI Label app (apps/monailabel) against a real ``monailabel start_server``.

The server runs in its own environment (made or reused by scripts/setup_monailabel_env.sh), on
127.0.0.1 and a free port, with a studies folder of tiny synthetic images and a temporary copy of the
three bundles whose ``models/model.pt`` is replaced by freshly initialised weights of a small network
(``channels`` lowered through the app's ``bundle_overrides`` setting), so the test neither depends on
demo-trained weights nor on a GPU. It talks to the server over HTTP only, and stops the process group
it started.
"""

from __future__ import annotations

import gzip
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.bundle import ConfigParser

from nnmamba_nets.demo import adni, brats, fetal
from nnmamba_nets.landmarks.io import read_landmarks
from nnmamba_nets.landmarks.protocol import PROTOCOL_FILE
from tests.utils import BUNDLES_DIR, REPO_ROOT, cli_overrides, run_bundle

pytestmark = pytest.mark.slow

SEGMENTATION = "nnmamba_brats_segmentation"
CLASSIFICATION = "nnmamba_adni_classification"
LANDMARKS = "nnmamba_fetal_landmarks"
BUNDLES = (SEGMENTATION, CLASSIFICATION, LANDMARKS)
# Small networks and inputs, no worker processes: the whole test runs on two CPU cores.
BUNDLE_OVERRIDES = {
    SEGMENTATION: {"roi_size": [32, 32, 32], "num_workers": 0, "batch_size": 1, "sw_batch_size": 1},
    CLASSIFICATION: {"channels": 4, "spatial_size": [32, 32, 32], "num_workers": 0},
    LANDMARKS: {"num_workers": 0},
}
# The segmentation head's last convolution (state_dict keys fixed by the reference architecture) is
# set to constant logits: TC and WT on, ET off, i.e. label 1 (NCR) wherever the network looks. The
# bundle crops the input to its foreground box, so the served label volume must be 1 exactly on the
# image's foreground bounding box and 0 elsewhere, on the input's grid.
SEGMENTATION_CONSTANT_HEAD = {"conv8.conv.3.weight": 0.0, "conv8.conv.3.bias": [10.0, 10.0, -10.0]}
IMAGE_SIZE = 32
SERVER_START_TIMEOUT_S = 240
REQUEST_TIMEOUT_S = 300
TRAIN_TIMEOUT_S = 420


# ---------------------------------------------------------------------------------------------------
# HTTP helpers (standard library only: the test runs in the project's environment)
# ---------------------------------------------------------------------------------------------------


def _request(
    url: str, method: str = "GET", body: bytes | None = None, headers: dict | None = None
) -> tuple[int, bytes, dict]:
    """Send one request; 4xx/5xx answers are returned, not raised. Returns (status, body, headers)."""
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=REQUEST_TIMEOUT_S) as response:
            return response.status, response.read(), dict(response.headers)
    except urllib.error.HTTPError as error:
        return error.code, error.read(), dict(error.headers)


def _multipart(fields: dict[str, str], files: dict[str, tuple[str, bytes]]) -> tuple[bytes, str]:
    """Encode form fields and files as multipart/form-data. Returns (body, content type)."""
    boundary = uuid.uuid4().hex
    parts = []
    for name, value in fields.items():
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode())
    for name, (filename, content) in files.items():
        header = (
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n"
        )
        parts.append(header.encode() + content + b"\r\n")
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


class Server:
    """A running ``monailabel start_server`` process and its address."""

    def __init__(
        self, process: subprocess.Popen, base_url: str, log_file: Path, bundles_dir: Path, studies: Path
    ) -> None:
        self.process = process
        self.base_url = base_url
        self.log_file = log_file
        self.bundles_dir = bundles_dir
        self.studies = studies

    def url(self, path: str, **query: str) -> str:
        return f"{self.base_url}{path}" + (f"?{urllib.parse.urlencode(query)}" if query else "")

    def get_json(self, path: str, **query: str) -> dict:
        status, body, _ = _request(self.url(path, **query))
        assert status == 200, f"GET {path} -> {status}: {body[:500]!r}\n{self.log_tail()}"
        return json.loads(body)

    def infer(
        self, model: str, params: dict | None = None, upload: tuple[str, bytes] | None = None, **query: str
    ) -> tuple[int, bytes, dict]:
        files = {"file": upload} if upload else {}
        body, content_type = _multipart({"params": json.dumps(params or {})}, files)
        return _request(self.url(f"/infer/{model}", **query), "POST", body, {"Content-Type": content_type})

    def log_tail(self, lines: int = 60) -> str:
        text = self.log_file.read_text(errors="replace") if self.log_file.exists() else ""
        return "--- server log (tail) ---\n" + "\n".join(text.splitlines()[-lines:])


# ---------------------------------------------------------------------------------------------------
# fixtures: environment, bundles with small weights, studies, server
# ---------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def monailabel_venv() -> Path:
    """The MONAI Label environment (created on first use, then reused)."""
    started = time.monotonic()
    result = subprocess.run(
        ["bash", str(REPO_ROOT / "scripts" / "setup_monailabel_env.sh")], capture_output=True, text=True, timeout=3600
    )
    if result.returncode != 0:
        tail = "\n".join(line for line in result.stderr.splitlines() if "is ignored: it is neither" not in line)[-2000:]
        pytest.skip(f"scripts/setup_monailabel_env.sh could not create the MONAI Label environment:\n{tail}")
    print(f"setup_monailabel_env.sh: {time.monotonic() - started:.1f} s")
    return Path(result.stdout.strip().splitlines()[-1])


def _save_fresh_weights(bundle_dir: Path, overrides: dict, fixed: dict | None = None) -> None:
    """Write freshly initialised weights of the bundle's (overridden) network to models/model.pt.

    Args:
        bundle_dir: bundle folder.
        overrides: config ids to override (as the server gets them).
        fixed: state_dict key -> value to fill in (scalar or list) instead of the random initialisation.
    """
    parser = ConfigParser()
    parser.read_config(str(bundle_dir / "configs" / "inference.yaml"))
    parser["bundle_root"] = str(bundle_dir)
    for key, value in overrides.items():
        parser[key] = value
    torch.manual_seed(0)
    state = parser.get_parsed_content("network_def").state_dict()
    for key, value in (fixed or {}).items():
        state[key] = torch.full_like(state[key], value) if np.isscalar(value) else torch.tensor(value).to(state[key])
    (bundle_dir / "models").mkdir(exist_ok=True)
    torch.save(state, bundle_dir / "models" / "model.pt")


@pytest.fixture(scope="module")
def bundles_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A temporary copy of the three bundles with small fresh weights."""
    missing = [name for name in BUNDLES if not (BUNDLES_DIR / name / "configs" / "inference.yaml").is_file()]
    if missing:
        pytest.fail(f"bundles without configs/inference.yaml: {missing}")
    root = tmp_path_factory.mktemp("bundles")
    for name in BUNDLES:
        shutil.copytree(BUNDLES_DIR / name, root / name, ignore=shutil.ignore_patterns("*.pt", "eval", "__pycache__"))
        if name == LANDMARKS:  # what training records beside the weights: the demo's landmark names, descriptions
            fetal.PROTOCOL.save(root / name / "models" / PROTOCOL_FILE)
        _save_fresh_weights(
            root / name, BUNDLE_OVERRIDES[name], SEGMENTATION_CONSTANT_HEAD if name == SEGMENTATION else None
        )
    return root


def _gunzip_if_needed(content: bytes) -> bytes:
    return gzip.decompress(content) if content[:2] == b"\x1f\x8b" else content


def _save(path: Path, data: np.ndarray, affine: np.ndarray) -> None:
    nib.save(nib.Nifti1Image(data, affine), str(path))


def _classification_image(seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return adni.synthesize_scan(adni.sample_subject(rng, label=seed % 2), rng, spatial_size=IMAGE_SIZE)


@pytest.fixture(scope="module")
def studies(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Studies folder: 3 four-channel BraTS-like images (2 labelled), one classification and one fetal image."""
    root = tmp_path_factory.mktemp("studies")
    labels = root / "labels" / "final"
    labels.mkdir(parents=True)
    affine = np.diag([1.5, 1.5, 1.5, 1.0])
    for index in range(3):
        images, label = brats.synthetic_brats_case(np.random.default_rng(index), (IMAGE_SIZE,) * 3)
        _save(root / f"seg_{index:03d}.nii.gz", np.moveaxis(images, 0, -1), affine)  # channels last
        if index < 2:
            _save(labels / f"seg_{index:03d}.nii.gz", label, affine)
    _save(root / "cls_000.nii.gz", *_classification_image(0))
    # 100 mm field of view: wider than the landmark network's input grid (32 voxels of 3 mm), so every
    # point the network can predict lies inside the image
    image, fetal_affine, _ = fetal.synthesize_case(
        np.random.default_rng(0), field_of_view_mm=100.0, spacing_range=(2.0, 2.0)
    )
    _save(root / "lmk_000.nii.gz", image, fetal_affine)
    return root


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _stop(process: subprocess.Popen) -> None:
    """Stop the server and everything it started (training runs) by its process group."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=30)
    try:  # children (e.g. a training run) that outlived the server
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


@pytest.fixture(scope="module")
def server(monailabel_venv: Path, bundles_dir: Path, studies: Path, tmp_path_factory: pytest.TempPathFactory):
    """``monailabel start_server`` on 127.0.0.1 with a copy of the app; stopped at the end of the module."""
    work = tmp_path_factory.mktemp("monailabel")
    app_dir = work / "app"
    shutil.copytree(
        REPO_ROOT / "apps" / "monailabel", app_dir, ignore=shutil.ignore_patterns("__pycache__", "logs", "model", "bin")
    )
    overrides_file = work / "bundle_overrides.json"  # a file: the monailabel launcher re-splits its arguments
    overrides_file.write_text(json.dumps(BUNDLE_OVERRIDES))
    port = _free_port()
    command = [
        str(monailabel_venv / "bin" / "monailabel"), "start_server",
        "--app", str(app_dir), "--studies", str(studies),
        "--conf", "bundles", str(bundles_dir),
        "--conf", "bundle_overrides", str(overrides_file),
        "--conf", "zoo_source", "ngc", "--conf", "sam2", "false",
        "--host", "127.0.0.1", "--port", str(port),
    ]  # fmt: skip
    # Nothing may be fetched: a download attempt goes to a closed local port and fails.
    environment = {k: v for k, v in os.environ.items() if not k.upper().endswith("_PROXY")}
    closed_proxy = f"http://127.0.0.1:{_free_port()}"
    environment.update(
        HTTP_PROXY=closed_proxy, HTTPS_PROXY=closed_proxy, NO_PROXY="127.0.0.1,localhost",
        PATH=f"{monailabel_venv / 'bin'}{os.pathsep}{environment.get('PATH', '')}",
        OMP_NUM_THREADS="2",
    )  # fmt: skip
    log_file = work / "server.log"
    with open(log_file, "w") as log:
        process = subprocess.Popen(
            command, cwd=work, env=environment, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    running = Server(process, f"http://127.0.0.1:{port}", log_file, bundles_dir, studies)
    try:
        deadline = time.monotonic() + SERVER_START_TIMEOUT_S
        while True:
            if process.poll() is not None:
                pytest.fail(f"monailabel start_server exited with {process.returncode}\n{running.log_tail()}")
            try:
                status, _, _ = _request(running.url("/info/"))
                if status == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"server not up after {SERVER_START_TIMEOUT_S} s\n{running.log_tail()}")
            time.sleep(1.0)
        yield running
    finally:
        _stop(process)
        print(running.log_tail(30), file=sys.stderr)


# ---------------------------------------------------------------------------------------------------
# checks
# ---------------------------------------------------------------------------------------------------


def _inference_config(bundles_dir: Path, name: str) -> ConfigParser:
    parser = ConfigParser()
    parser.read_config(str(bundles_dir / name / "configs" / "inference.yaml"))
    return parser


def _voxel_of(world: np.ndarray, affine: np.ndarray) -> np.ndarray:
    return (np.linalg.inv(affine) @ np.r_[world, 1.0])[:3]


def test_info_lists_the_three_models(server: Server) -> None:
    info = server.get_json("/info/")
    assert sorted(info["models"]) == sorted(BUNDLES), info["models"]
    assert info["models"][CLASSIFICATION]["type"] == "classification"
    assert info["models"][SEGMENTATION]["labels"] == {
        "necrotic tumour core (NCR)": 1,
        "peritumoral edema (ED)": 2,
        "enhancing tumour (ET)": 3,
    }
    assert list(info["trainers"]) == [SEGMENTATION]


def test_segmentation_returns_brats_labels_on_the_input_grid(server: Server) -> None:
    status, body, _ = server.infer(SEGMENTATION, image="seg_000", output="image")
    assert status == 200, f"{status}: {body[:500]!r}\n{server.log_tail()}"
    label = nib.Nifti1Image.from_bytes(_gunzip_if_needed(body))
    reference = nib.load(str(server.studies / "seg_000.nii.gz"))
    assert label.shape == reference.shape[:3]
    np.testing.assert_allclose(label.affine, reference.affine, atol=1e-4)
    foreground = np.asarray(reference.dataobj).any(axis=-1)
    box = tuple(slice(i.min(), i.max() + 1) for i in np.nonzero(foreground))
    expected = np.zeros(foreground.shape, dtype=np.uint8)
    expected[box] = 1  # see SEGMENTATION_CONSTANT_HEAD
    assert 0 < expected.sum() < expected.size
    np.testing.assert_array_equal(np.asarray(label.dataobj), expected)


def _check_classification(result: dict, class_names: list[str]) -> None:
    names = [p["label"] for p in result["prediction"]]
    scores = np.array([p["score"] for p in result["prediction"]])
    assert names == class_names
    assert np.all((scores >= 0) & (scores <= 1)), scores
    assert scores.sum() == pytest.approx(1.0, abs=1e-6)
    assert result["class"] == class_names[int(np.argmax(scores))]


def test_classification_returns_class_probabilities(server: Server) -> None:
    class_names = [
        str(n) for n in _inference_config(server.bundles_dir, CLASSIFICATION).get_parsed_content("class_names")
    ]
    status, body, _ = server.infer(CLASSIFICATION, image="cls_000", output="json")
    assert status == 200, f"{status}: {body[:500]!r}\n{server.log_tail()}"
    _check_classification(json.loads(body), class_names)


def test_classification_of_an_uploaded_file(server: Server, tmp_path: Path) -> None:
    path = tmp_path / "upload.nii.gz"
    _save(path, *_classification_image(1))
    class_names = [
        str(n) for n in _inference_config(server.bundles_dir, CLASSIFICATION).get_parsed_content("class_names")
    ]
    status, body, _ = server.infer(CLASSIFICATION, upload=("upload.nii.gz", path.read_bytes()), output="json")
    assert status == 200, f"{status}: {body[:500]!r}\n{server.log_tail()}"
    _check_classification(json.loads(body), class_names)


def _bundle_cli_landmarks(bundles_dir: Path, image: Path, output_dir: Path) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Landmarks of ``image`` by the bundle's own inference (``python -m monai.bundle run``), in RAS."""
    bundle = bundles_dir / LANDMARKS
    run_bundle(
        "run",
        "--config_file", str(bundle / "configs" / "inference.yaml"),
        "--meta_file", str(bundle / "configs" / "metadata.json"),
        *cli_overrides({
            "bundle_root": str(bundle), "dataset_dir": [str(image)], "output_dir": str(output_dir),
            "coordinate_system": "RAS", **BUNDLE_OVERRIDES[LANDMARKS],
        }),
        timeout=REQUEST_TIMEOUT_S,
    )  # fmt: skip
    landmarks = read_landmarks(next(output_dir.glob("*.mrk.json")))
    return landmarks.names, landmarks.points, landmarks.confidence


def test_landmarks_return_named_world_points_inside_the_image(server: Server, tmp_path: Path) -> None:
    names, expected_ras, expected_confidence = _bundle_cli_landmarks(
        server.bundles_dir, server.studies / "lmk_000.nii.gz", tmp_path
    )
    status, body, _ = server.infer(LANDMARKS, params={"markups": True}, image="lmk_000", output="json")
    assert status == 200, f"{status}: {body[:500]!r}\n{server.log_tail()}"
    result = json.loads(body)
    assert [p["name"] for p in result["landmarks"]] == names
    assert [p["description"] for p in result["landmarks"]] == list(fetal.LANDMARK_DESCRIPTIONS)
    ras = np.array([p["position_ras"] for p in result["landmarks"]])
    confidence = np.array([p["confidence"] for p in result["landmarks"]])
    np.testing.assert_allclose(ras, expected_ras, atol=1e-3)  # what the bundle itself writes
    np.testing.assert_allclose(confidence, expected_confidence, rtol=1e-3, atol=1e-6)
    reference = nib.load(str(server.studies / "lmk_000.nii.gz"))
    for point in ras:
        voxel = _voxel_of(point, reference.affine)
        assert np.all(voxel >= -0.5) and np.all(voxel <= np.array(reference.shape) - 0.5), (point, voxel)
    markup = result["markups"]["markups"][0]
    assert markup["coordinateSystem"] == "LPS"  # as 3D Slicer writes .mrk.json files
    assert [p["label"] for p in markup["controlPoints"]] == names
    assert [p["description"] for p in markup["controlPoints"]] == list(fetal.LANDMARK_DESCRIPTIONS)
    np.testing.assert_allclose(np.array([p["position"] for p in markup["controlPoints"]]) * [-1, -1, 1], ras, atol=1e-6)

    # the default result file: the markups document, named .mrk.json, which Slicer's module loads as a point list
    assert server.get_json("/info/")["models"][LANDMARKS]["config"]["markups_file"] is True
    status, body, headers = server.infer(LANDMARKS, image="lmk_000", output="image")
    assert status == 200, f"{status}: {body[:500]!r}\n{server.log_tail()}"
    disposition = {key.lower(): value for key, value in headers.items()}["content-disposition"]
    assert re.search(r'filename="lmk_000_\w+_landmarks\.mrk\.json"', disposition), disposition
    (tmp_path / "answer.mrk.json").write_bytes(body)
    answered = read_landmarks(tmp_path / "answer.mrk.json")
    assert answered.names == names and answered.coordinate_system == "LPS"
    np.testing.assert_allclose(answered.points, ras, atol=1e-6)  # read_landmarks gives RAS

    status, body, _ = server.infer(LANDMARKS, params={"markups_file": False}, image="lmk_000", output="image")
    assert status == 200, f"{status}: {body[:500]!r}\n{server.log_tail()}"
    marks = nib.Nifti1Image.from_bytes(_gunzip_if_needed(body))
    assert marks.shape == reference.shape
    np.testing.assert_allclose(marks.affine, reference.affine, atol=1e-4)
    marks_array = np.asarray(marks.dataobj)
    assert set(np.unique(marks_array).tolist()) - {0} <= set(range(1, len(names) + 1))
    for index, point in enumerate(ras):  # each ball sits on its landmark (later ones win overlaps)
        voxel = np.round(_voxel_of(point, reference.affine)).astype(int)
        assert marks_array[tuple(voxel)] >= index + 1, (index, point, voxel)


def test_bad_requests_get_4xx_and_the_server_keeps_serving(server: Server) -> None:
    status, body, _ = server.infer(SEGMENTATION, image="no_such_image", output="json")
    assert status == 404 and b"no_such_image" in body, (status, body)

    status, body, _ = server.infer("no_such_model", image="seg_000", output="json")
    assert status == 404 and b"no_such_model" in body, (status, body)

    status, body, _ = server.infer(
        CLASSIFICATION, upload=("corrupt.nii.gz", b"\x1f\x8b not a NIfTI file"), output="json"
    )
    assert status == 400 and b"cannot read image" in body, (status, body)

    status, body, _ = server.infer(SEGMENTATION, image="cls_000", output="json")  # 1 channel for a 4-channel model
    assert status == 400 and b"expects 4 image channel" in body, (status, body)

    assert sorted(server.get_json("/info/")["models"]) == sorted(BUNDLES)


def test_one_epoch_segmentation_training_with_validation(server: Server) -> None:
    """Runs last in this module: it replaces the constant-head segmentation weights the tests above rely on."""
    model_file = server.bundles_dir / SEGMENTATION / "models" / "model.pt"
    before = model_file.stat().st_mtime_ns
    params = {"max_epochs": 1, "val_split": 0.5, "device": "cpu", "multi_gpu": False}
    status, body, _ = _request(
        server.url(f"/train/{SEGMENTATION}"), "POST", json.dumps(params).encode(), {"Content-Type": "application/json"}
    )
    assert status == 200, f"{status}: {body[:500]!r}\n{server.log_tail()}"
    deadline = time.monotonic() + TRAIN_TIMEOUT_S
    while True:
        task = server.get_json("/train/")
        if task["status"] in ("DONE", "ERROR"):
            break
        assert time.monotonic() < deadline, f"training still {task['status']} after {TRAIN_TIMEOUT_S} s"
        time.sleep(2.0)
    details = "\n".join(task.get("details", []))
    assert task["status"] == "DONE", f"training ended {task['status']}:\n{details}\n{server.log_tail()}"
    # models/model.pt is written by the validation's best-model saver, so this also shows validation ran
    assert model_file.stat().st_mtime_ns > before, f"training wrote no new models/model.pt:\n{details}"
    status, body, _ = server.infer(SEGMENTATION, image="seg_002", output="image")  # the retrained model serves
    assert status == 200, f"{status}: {body[:500]!r}\n{server.log_tail()}"
    label = np.asarray(nib.Nifti1Image.from_bytes(_gunzip_if_needed(body)).dataobj)
    assert set(np.unique(label).tolist()) <= {0, 1, 2, 3}
