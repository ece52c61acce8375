"""Tests of scripts/build_release.py: release zips that the real ``python -m monai.bundle download`` fetches
(offline, from ``file://`` URLs), that ``python -m nnmamba_nets.release --verify`` accepts, and that run outside
the repository.

The end-to-end release is built once per module with the segmentation bundle's own training command on a tiny
demo set (one epoch, 6 cases of about 32^3 voxels) in pytest's tmp folders, never the user's demo cache.
"""

from __future__ import annotations

import io
import json
import shutil
import zipfile
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
import yaml
from monai.bundle import load as load_bundle

from nnmamba_nets.demo.brats import write_demo_set
from nnmamba_nets.nets import nnMambaSeg
from nnmamba_nets.release import verify_bundle_dir, verify_release_zip
from scripts.build_release import build_release, bundle_files, export_state_dict
from tests.utils import BUNDLES_DIR, REPO_ROOT, run_bundle, run_module, run_python

BUNDLE = "nnmamba_brats_segmentation"
SCHEMA = REPO_ROOT / "schemas" / "monai_meta_schema.json"
# The bundle's demo defaults, shrunk for a quick build; the network settings stay those of inference.yaml.
QUICK_TRAINING = {
    "max_epochs": "1",
    "val_interval": "1",
    "demo#num_cases": "6",
    "demo#size": "32",
    "roi_size": "[32,32,32]",
    "num_workers": "0",
}
# Subprocesses see no PYTHONPATH: nnmamba_nets comes from the installed package, nothing from the checkout.
OUTSIDE_ENV = {"PYTHONPATH": "", "OMP_NUM_THREADS": "2"}


BUILDER = str(REPO_ROOT / "scripts" / "build_release.py")


def test_build_refuses_a_version_without_changelog_before_training(tmp_path):
    bundle = tmp_path / BUNDLE
    shutil.copytree(BUNDLES_DIR / BUNDLE, bundle)
    meta_file = bundle / "configs" / "metadata.json"
    metadata = json.loads(meta_file.read_text())
    metadata["version"] = "9.9.9"
    meta_file.write_text(json.dumps(metadata))
    with pytest.raises(ValueError, match="no entry for version '9.9.9'"):
        build_release(bundle, tmp_path / "dist", SCHEMA, train_demo=True)
    assert not (tmp_path / "dist").exists()


def test_bundle_files_leave_out_caches_outputs_and_old_weights(tmp_path):
    kept = ["LICENSE", "configs/train.yaml", "configs/metadata.json", "docs/README.md", "docs/figure.png"]
    dropped = [
        "__pycache__/x.pyc",
        "configs/__pycache__/a.cpython-311.pyc",
        "eval/metrics.csv",
        "runs/events",
        "logs/train.log",
        "models/model.pt",
        "models/checkpoint_epoch=3.pt",
        ".pytest_cache/v",
        ".DS_Store",
        "docs/events.out.tfevents.1.host",
        "train.log",
        "large_files.yml",
    ]
    for name in kept + dropped:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(name)
    assert [str(path) for path in bundle_files(tmp_path)] == sorted(kept)


def test_export_state_dict_drops_checkpointer_state_and_checks_the_network(tmp_path):
    network = nnMambaSeg(in_channels=4, out_channels=3, channels=16, blocks=3, head="logits")  # inference.yaml's
    saved = {**network.state_dict(), "checkpointer": {"saved": [[0.5, "model.pt"]]}}  # key_metric_save_state
    torch.save(saved, tmp_path / "saved.pt")
    export_state_dict(tmp_path / "saved.pt", tmp_path / "models" / "model.pt", BUNDLES_DIR / BUNDLE)
    exported = torch.load(tmp_path / "models" / "model.pt", weights_only=True)
    assert exported.keys() == network.state_dict().keys()

    torch.save({"model": nnMambaSeg(in_channels=4, out_channels=2, channels=16).state_dict()}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="does not fit nnMambaSeg"):
        export_state_dict(tmp_path / "other.pt", tmp_path / "other_export.pt", BUNDLES_DIR / BUNDLE)
    assert not (tmp_path / "other_export.pt").exists()


# ---- end to end: build, download through the MONAI CLI, infer and load outside the repository ----------------
@pytest.fixture(scope="module")
def release(tmp_path_factory) -> Path:
    """The segmentation bundle's release zip, built by the real builder CLI; large-file limit 1 MB so that
    models/model.pt gets a large_files.yml entry whose url is a file:// asset next to the zip."""
    work = tmp_path_factory.mktemp("release")
    dist = work / "dist"
    overrides = [arg for key, value in QUICK_TRAINING.items() for arg in ("--train-override", f"{key}={value}")]
    run_python(
        BUILDER,
        "--bundle",
        BUNDLE,
        "--bundles-dir",
        str(BUNDLES_DIR),
        "--train-demo",
        *overrides,
        "--out",
        str(dist),
        "--large-file-mb",
        "1",
        "--asset-base-url",
        dist.as_uri(),
        "--schema",
        str(SCHEMA),
        cwd=work,
        env={**OUTSIDE_ENV, "NNMAMBA_CACHE": str(work / "cache")},
    )
    assert sorted(path.name for path in work.iterdir()) == ["cache", "dist"]  # no outputs in the working folder
    return dist / f"{BUNDLE}_v0.1.0.zip"


def download(release_zip: Path, bundle_dir: Path, check: bool = True):
    return run_bundle(
        "download",
        "--name",
        BUNDLE,
        "--url",
        release_zip.as_uri(),
        "--bundle_dir",
        str(bundle_dir),
        cwd=bundle_dir.parent,
        env=OUTSIDE_ENV,
        check=check,
    )


@pytest.fixture(scope="module")
def downloaded(release, tmp_path_factory) -> Path:
    """The release downloaded by ``python -m monai.bundle download --url file://...`` outside the repository."""
    bundle_dir = tmp_path_factory.mktemp("outside") / "bundles"
    download(release, bundle_dir)
    return bundle_dir / BUNDLE


@pytest.mark.slow
def test_release_zip_holds_the_bundle_and_plain_weights_with_their_hash(release):
    assert verify_release_zip(release) == BUNDLE
    with zipfile.ZipFile(release) as archive:
        names = set(archive.namelist())
        source_files = {f"{BUNDLE}/{path}" for path in bundle_files(BUNDLES_DIR / BUNDLE)}
        added = {f"{BUNDLE}/{name}" for name in ("models/model.pt", "models/provenance.json", "large_files.yml")}
        json_copies = {name.replace(".yaml", ".json") for name in source_files if name.endswith(".yaml")}
        assert names == source_files | added | json_copies
        for name in json_copies:  # the JSON copy says what its YAML says
            yaml_text = archive.read(name.replace(".json", ".yaml"))
            assert json.loads(archive.read(name)) == yaml.safe_load(yaml_text), name
        weights_bytes = archive.read(f"{BUNDLE}/models/model.pt")
        large_files = yaml.safe_load(archive.read(f"{BUNDLE}/large_files.yml"))["large_files"]
        provenance = json.loads(archive.read(f"{BUNDLE}/models/provenance.json"))
    state_dict = torch.load(io.BytesIO(weights_bytes), weights_only=True)
    assert all(isinstance(tensor, torch.Tensor) for tensor in state_dict.values())  # plain, not a checkpoint dict
    (entry,) = large_files
    asset = release.parent / f"{BUNDLE}_v0.1.0_models_model.pt"
    assert entry["path"] == "models/model.pt" and entry["hash_type"] == "sha256" and entry["url"] == asset.as_uri()
    assert asset.read_bytes() == weights_bytes
    assert entry["hash_val"] == provenance["weights_sha256"]["models/model.pt"]
    assert provenance["trained_with"].startswith("python -m monai.bundle run training --config_file configs/train.yaml")
    assert provenance["train_overrides"] == QUICK_TRAINING
    # measured by the bundle's evaluate.yaml on the training's data: selected on validation, reported on test
    metrics = provenance["metrics"]
    assert metrics["data"].startswith("SYNTHETIC demo data")
    for split in ("validation", "test"):
        assert 0.0 <= metrics[split]["val_mean_dice"] <= 1.0, metrics


@pytest.mark.slow
def test_downloaded_bundle_infers_outside_the_repo(downloaded, tmp_path):
    for config in (downloaded / "configs").iterdir():
        assert str(REPO_ROOT) not in config.read_text()
    demo = tmp_path / "demo"
    write_demo_set(demo, num_cases=3, size=32, seed=5)
    case = min(path for path in demo.iterdir() if path.is_dir())
    cases = tmp_path / "cases"
    shutil.copytree(case, cases / case.name)
    output_dir = tmp_path / "labels"
    run_bundle(
        "run",
        "--config_file",
        "configs/inference.yaml",
        "--meta_file",
        "configs/metadata.json",
        "--logging_file",
        "configs/logging.conf",
        "--dataset_dir",
        str(cases),
        "--output_dir",
        str(output_dir),
        cwd=downloaded,
        env=OUTSIDE_ENV,
    )
    written = nib.load(output_dir / f"{case.name}.nii.gz")
    reference = nib.load(cases / case.name / f"{case.name}-t1n.nii.gz")
    assert written.shape == reference.shape
    np.testing.assert_array_equal(written.affine, reference.affine)
    assert set(np.unique(np.asanyarray(written.dataobj))) <= {0, 1, 2, 3}


@pytest.mark.slow
def test_monai_bundle_load_builds_and_fills_the_network_of_the_downloaded_bundle(downloaded):
    # MONAI builds the network from configs/inference.json, the JSON copy the release adds to the YAML configs
    # MONAI reminds that a bundle config runs code: this release is ours, so the reminder is expected once
    with pytest.warns(UserWarning, match='any `"_target_"` value in it is resolved to an importable callable'):
        loaded = load_bundle(
            name=BUNDLE, bundle_dir=str(downloaded.parent), workflow_type="inference", device="cpu", progress=False
        )
    assert isinstance(loaded, nnMambaSeg)
    weights = torch.load(downloaded / "models" / "model.pt", weights_only=True)
    for key, tensor in loaded.state_dict().items():
        torch.testing.assert_close(tensor, weights[key], rtol=0, atol=0, msg=key)
    with torch.no_grad():
        assert loaded.eval()(torch.randn(1, 4, 32, 32, 32)).shape == (1, 3, 32, 32, 32)


def tampered_copy(release_zip: Path, target: Path) -> Path:
    """The release with different weights in models/model.pt, its large_files.yml left as it was."""
    with zipfile.ZipFile(release_zip) as source, zipfile.ZipFile(target, "w") as sink:
        for info in source.infolist():
            data = source.read(info)
            if info.filename == f"{BUNDLE}/models/model.pt":
                state_dict = torch.load(io.BytesIO(data), weights_only=True)
                first = next(iter(state_dict))
                state_dict[first] = state_dict[first] + 1
                buffer = io.BytesIO()
                torch.save(state_dict, buffer)
                data = buffer.getvalue()
            sink.writestr(info, data)
    return target


@pytest.mark.slow
def test_weights_with_another_hash_are_refused(release, tmp_path):
    tampered = tampered_copy(release, tmp_path / release.name)
    refused = run_module("nnmamba_nets.release", "--verify", str(tampered), cwd=tmp_path, env=OUTSIDE_ENV, check=False)
    assert refused.returncode == 1 and "tampered with" in refused.stderr

    # MONAI's `download` extracts it without looking at large_files.yml ...
    bundle_dir = tmp_path / "bundles"
    download(tampered, bundle_dir)
    # ... its `download_large_files` refuses the listed file whose sha256 differs, and so does our verify
    monai_check = run_bundle(
        "download_large_files", "--bundle_path", str(bundle_dir / BUNDLE), cwd=tmp_path, env=OUTSIDE_ENV, check=False
    )
    assert monai_check.returncode != 0 and "HashCheckError" in monai_check.stderr
    with pytest.raises(ValueError, match="tampered with"):
        verify_bundle_dir(bundle_dir / BUNDLE)


@pytest.mark.slow
def test_download_large_files_fetches_missing_weights_from_their_url(downloaded, tmp_path):
    bundle = tmp_path / BUNDLE
    shutil.copytree(downloaded, bundle)
    expected = (bundle / "models" / "model.pt").read_bytes()
    (bundle / "models" / "model.pt").unlink()
    with pytest.raises(ValueError, match="missing"):
        verify_bundle_dir(bundle)
    run_bundle("download_large_files", "--bundle_path", str(bundle), cwd=tmp_path, env=OUTSIDE_ENV)
    assert (bundle / "models" / "model.pt").read_bytes() == expected
    assert verify_bundle_dir(bundle) == "0.1.0"
