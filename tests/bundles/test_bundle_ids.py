"""One bundle vocabulary: the ids that every nnMamba bundle shares exist in all three and mean the same.

The table of ids is docs/bundle_ids.md. Boolean ids read CLI text as what it says ("false" is false) and
reject the rest with an error naming the id.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
import torch
from monai.bundle import ConfigParser

from nnmamba_nets.common.datalists import SPLITS
from nnmamba_nets.common.precision import CpuAutocastInferer
from tests.utils import BUNDLES_DIR

BUNDLES = ("nnmamba_brats_segmentation", "nnmamba_adni_classification", "nnmamba_fetal_landmarks")
TINY_DEMO = {  # small demo sets, so that resolving `data` generates little
    "nnmamba_brats_segmentation": {"num_cases": 3, "size": 24, "seed": 0},
    "nnmamba_adni_classification": {"num_subjects": 8, "image_size": 16, "seed": 0},
    "nnmamba_fetal_landmarks": {"num_training": 1, "num_validation": 1, "num_test": 1, "seed": 0},
}
# id -> check of its parsed value, the same in every bundle
TRAIN_IDS = {
    "bundle_root": lambda v: v == ".",
    "ckpt_dir": lambda v: v == "./models",
    "output_dir": lambda v: v == "./eval/train",
    "dataset_dir": lambda v: v is None,
    "datalist": lambda v: v is None,
    "demo": lambda v: isinstance(v, dict) and "seed" in v,
    "val_fraction": lambda v: 0 < v < 1,
    "test_fraction": lambda v: 0 < v < 1,
    "split_seed": lambda v: v == 0,
    "device": lambda v: isinstance(v, torch.device),
    "amp": lambda v: v is torch.cuda.is_available(),
    "autocast": lambda v: v == ("cuda" if torch.cuda.is_available() else None),
    "backend": lambda v: v == "auto",
    "channels": lambda v: isinstance(v, int),
    "blocks": lambda v: isinstance(v, int),
    "mamba": lambda v: v is True,
    "batch_size": lambda v: isinstance(v, int),
    "num_workers": lambda v: isinstance(v, int),
    "cache_rate": lambda v: 0 < v <= 1,
    "learning_rate": lambda v: isinstance(v, float),
    "weight_decay": lambda v: isinstance(v, float),
    "max_epochs": lambda v: isinstance(v, int),
    "val_interval": lambda v: isinstance(v, int),
    "resume": lambda v: v is False,
    "resume_from": lambda v: v is None,
    "main_process": lambda v: v is True,
    "seed": lambda v: v == 0,
}
INFERENCE_IDS = {
    "bundle_root": lambda v: v == ".",
    "ckpt_dir": lambda v: v == "./models",
    "model_file": lambda v: v == "./models/model.pt",
    "output_dir": lambda v: v == "./eval/inference",
    "dataset_dir": lambda v: v is None,
    "input_split": lambda v: v == "test",
    "demo": lambda v: isinstance(v, dict) and "seed" in v,
    "device": lambda v: isinstance(v, torch.device),
    "amp": lambda v: v is torch.cuda.is_available(),
    "autocast": lambda v: v == ("cuda" if torch.cuda.is_available() else None),
    "backend": lambda v: v == "auto",
    "channels": lambda v: isinstance(v, int),
    "blocks": lambda v: isinstance(v, int),
    "mamba": lambda v: v is True,
    "num_workers": lambda v: isinstance(v, int),
}
EVALUATE_IDS = {
    "eval_split": lambda v: v == "test",
    "model_file": lambda v: v == "./models/model.pt",
    "output_dir": lambda v: v == "./eval/test",
}


def configs(bundle: str) -> Path:
    return BUNDLES_DIR / bundle / "configs"


def parser_of(*files: Path, **overrides) -> ConfigParser:
    parser = ConfigParser()
    parser.read_config([str(f) for f in files])
    parser.update(overrides)
    parser.get_parsed_content("imports")
    return parser


@pytest.mark.parametrize("bundle", BUNDLES)
@pytest.mark.parametrize(
    "files, ids",
    [
        (("train.yaml",), TRAIN_IDS),
        (("inference.yaml",), INFERENCE_IDS),
        (("train.yaml", "evaluate.yaml"), EVALUATE_IDS),
    ],
    ids=["train", "inference", "evaluate"],
)
def test_shared_ids_exist_and_mean_the_same(bundle, files, ids):
    parser = parser_of(*(configs(bundle) / name for name in files))
    for name, check in ids.items():
        assert name in parser, f"{bundle} {files[-1]} lacks the shared id {name!r}"
        value = parser.get_parsed_content(name)
        assert check(value), f"{bundle} {files[-1]}: {name} = {value!r}"


@pytest.mark.parametrize("bundle", BUNDLES)
def test_data_ids_resolve_to_a_datalist_file_and_its_splits(bundle, tmp_path, monkeypatch):
    monkeypatch.setenv("NNMAMBA_CACHE", str(tmp_path))
    parser = parser_of(configs(bundle) / "train.yaml", demo=TINY_DEMO[bundle])
    datalist_file = parser.get_parsed_content("datalist_file")
    assert datalist_file.startswith(str(tmp_path)) and os.path.isfile(datalist_file)  # the demo set, in the cache
    data = parser.get_parsed_content("data")
    assert all(isinstance(data[split], list) for split in SPLITS) and data["training"]
    explicit = parser_of(configs(bundle) / "train.yaml", datalist=datalist_file, dataset_dir="/nonexistent")
    assert explicit.get_parsed_content("datalist_file") == datalist_file  # datalist wins over dataset_dir
    inference = parser_of(configs(bundle) / "inference.yaml", demo=TINY_DEMO[bundle])
    assert len(inference.get_parsed_content("inputs")) == len(data["test"])  # no dataset_dir: the demo test split


def test_the_multi_gpu_config_is_the_same_file_in_every_bundle():
    texts = {(configs(bundle) / "multi_gpu_train.yaml").read_text() for bundle in BUNDLES}
    assert len(texts) == 1


@pytest.mark.parametrize("bundle", BUNDLES)
def test_handlers_are_named_not_positional_and_booleans_are_parsed_once(bundle):
    text = "\n".join((configs(bundle) / name).read_text() for name in ("train.yaml", "evaluate.yaml"))
    assert not re.search(r"#handlers#\d", text)
    assert text.count("@validate#best_model_saver") == 3  # in validate#handlers and both checkpoint handlers
    assert "as_flag(@resume" not in text and text.count("resume_checkpoint(@ckpt_dir, @resume)") == 1


def checkpoint_loader_disabled(parser: ConfigParser) -> bool:
    """The evaluated ``_disabled_`` of the train handler that resumes from a checkpoint."""
    handlers = parser["train"]["checkpoint_handlers"]
    index = next(i for i, h in enumerate(handlers) if h.get("_target_") == "CheckpointLoader")
    return parser.get_parsed_content(f"train#checkpoint_handlers#{index}#_disabled_")


@pytest.mark.parametrize("bundle", BUNDLES)
@pytest.mark.parametrize(
    "resume, disabled", [("false", True), ("False", True), (False, True), ("true", False), (True, False)]
)
def test_resume_flag_from_the_cli(bundle, resume, disabled, tmp_path):
    torch.save({"trainer": {"epoch": 3}}, tmp_path / "checkpoint_epoch=3.pt")  # a checkpoint that loads
    parser = parser_of(configs(bundle) / "train.yaml", resume=resume, ckpt_dir=str(tmp_path))
    assert checkpoint_loader_disabled(parser) is disabled
    expected = None if disabled else str(tmp_path / "checkpoint_epoch=3.pt")
    assert parser.get_parsed_content("resume_from") == expected


@pytest.mark.parametrize("bundle", BUNDLES)
def test_resume_flag_rejects_other_text(bundle):
    with pytest.raises(RuntimeError) as raised:  # MONAI wraps the expression's error, which it chains
        checkpoint_loader_disabled(parser_of(configs(bundle) / "train.yaml", resume="ture"))
    assert "resume must be True or False, got 'ture'" in str(raised.value.__cause__)


@pytest.mark.parametrize("config", ["train.yaml", "inference.yaml"])
def test_mamba_seq_flag_of_the_classifier(config):
    config_file = configs("nnmamba_adni_classification") / config
    assert parser_of(config_file, mamba_seq="false").get_parsed_content("network_def#mamba_seq") is False
    assert parser_of(config_file, mamba_seq="True").get_parsed_content("network_def#mamba_seq") is True


@pytest.mark.parametrize("bundle", BUNDLES)
@pytest.mark.parametrize("config", ["train.yaml", "inference.yaml"])
def test_mamba_flag_builds_the_no_mamba_ablation(bundle, config):
    config_file = configs(bundle) / config
    overrides = {"num_landmarks": 3} if bundle.endswith("landmarks") else {}  # no protocol record needed
    for text, with_mamba in [("false", False), ("True", True)]:
        network = parser_of(config_file, mamba=text, **overrides).get_parsed_content("network_def")
        assert any("mamba" in key for key in network.state_dict()) is with_mamba, (bundle, config, text)


@pytest.mark.parametrize("config", ["train.yaml", "inference.yaml"])
def test_deep_supervision_flag_of_the_segmentation(config):
    config_file = configs("nnmamba_brats_segmentation") / config
    for text, heads in [("false", False), ("true", True)]:
        network = parser_of(config_file, deep_supervision=text).get_parsed_content("network_def")
        assert network.deep_supervision is heads and hasattr(network, "ds1_cls_conv") is heads


ENGINES = {"train.yaml": ["train#trainer", "validate#evaluator"], "inference.yaml": ["evaluator"]}


@pytest.mark.parametrize("bundle", BUNDLES)
@pytest.mark.parametrize("config", sorted(ENGINES))
def test_amp_on_cpu_is_bf16_autocast_around_the_inferer_and_monai_amp_on_cuda(bundle, config):
    config_file = configs(bundle) / config
    for device, amp, cuda_amp, cpu_bf16 in [
        ("cpu", "true", False, True),
        ("cpu", "false", False, False),
        ("cuda:0", "true", True, False),
        ("cuda:0", "False", False, False),
    ]:
        parser = parser_of(config_file, amp=amp, device=f"$torch.device('{device}')")
        for engine in ENGINES[config]:
            assert parser.get_parsed_content(f"{engine}#amp") is cuda_amp, (bundle, engine, device, amp)
            inferer = parser.get_parsed_content(f"{engine}#inferer")
            assert isinstance(inferer, CpuAutocastInferer) and inferer.enabled is cpu_bf16, (engine, device, amp)


def test_save_heatmaps_flag_of_the_landmark_inference():
    config_file = configs("nnmamba_fetal_landmarks") / "inference.yaml"
    for text, heatmap_key, suffix in [("false", None, None), ("true", "pred_heatmaps", "_heatmaps")]:
        parser = parser_of(config_file, save_heatmaps=text)
        index = next(i for i, h in enumerate(parser["handlers"]) if "heatmap_key" in h)
        assert parser.get_parsed_content(f"handlers#{index}#heatmap_key") == heatmap_key
        assert parser.get_parsed_content("postprocessing#heatmap_suffix") == suffix


@pytest.mark.parametrize("bundle", BUNDLES)
def test_parsed_metadata_requires_what_the_bundle_needs_and_keeps_the_gpu_extra_optional(bundle):
    parser = ConfigParser()
    parser.read_meta(str(configs(bundle) / "metadata.json"))  # MONAI maps the deprecated optional onto required
    required = parser.get_parsed_content("_meta_#required_packages_version")
    assert {"nnmamba_nets", "nibabel", "pytorch-ignite", "numba", "scipy"} <= set(required)
    assert not {"mamba-ssm", "causal-conv1d"} & set(required)
    assert set(parser.get_parsed_content("_meta_#gpu_packages_version")) == {"mamba-ssm", "causal-conv1d"}
