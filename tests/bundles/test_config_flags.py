"""Boolean ids of the three bundles read CLI text as what it says ("false" is false) and reject the rest."""

from __future__ import annotations

import pytest
from monai.bundle import ConfigParser

from nnmamba_nets.common.flags import as_flag
from tests.utils import BUNDLES_DIR

TRAIN_CONFIGS = [
    BUNDLES_DIR / name / "configs" / "train.yaml"
    for name in ("nnmamba_brats_segmentation", "nnmamba_adni_classification", "nnmamba_fetal_landmarks")
]


@pytest.mark.parametrize(
    "value, expected",
    [(True, True), (False, False), ("false", False), ("True", True), (" no ", False), ("1", True), (0, False)],
)
def test_as_flag_reads_cli_text(value, expected):
    assert as_flag(value, "resume") is expected


@pytest.mark.parametrize("value", ["maybe", 2, None, [True]])
def test_as_flag_names_the_id_on_bad_values(value):
    with pytest.raises(ValueError, match="resume must be True or False"):
        as_flag(value, "resume")


def parser_with(config_file, **overrides) -> ConfigParser:
    parser = ConfigParser()
    parser.read_config(str(config_file))
    parser.update(overrides)
    parser.get_parsed_content("imports")
    return parser


def checkpoint_loader_disabled(parser: ConfigParser) -> bool:
    """The evaluated ``_disabled_`` of the train handler that resumes from a checkpoint."""
    handlers = parser["train"]["checkpoint_handlers"]
    index = next(i for i, h in enumerate(handlers) if h.get("_target_") == "CheckpointLoader")
    return parser.get_parsed_content(f"train#checkpoint_handlers#{index}#_disabled_")


@pytest.mark.parametrize("config_file", TRAIN_CONFIGS, ids=lambda p: p.parent.parent.name)
@pytest.mark.parametrize(
    "resume, disabled", [("false", True), ("False", True), (False, True), ("true", False), (True, False)]
)
def test_resume_flag_from_the_cli(config_file, resume, disabled):
    assert checkpoint_loader_disabled(parser_with(config_file, resume=resume)) is disabled


@pytest.mark.parametrize("config_file", TRAIN_CONFIGS, ids=lambda p: p.parent.parent.name)
def test_resume_flag_rejects_other_text(config_file):
    with pytest.raises(RuntimeError) as raised:  # MONAI wraps the expression's error, which it chains
        checkpoint_loader_disabled(parser_with(config_file, resume="ture"))
    assert "resume must be True or False, got 'ture'" in str(raised.value.__cause__)


@pytest.mark.parametrize("config", ["train.yaml", "inference.yaml"])
def test_mamba_seq_flag_of_the_classifier(config):
    config_file = BUNDLES_DIR / "nnmamba_adni_classification" / "configs" / config
    assert parser_with(config_file, mamba_seq="false").get_parsed_content("network_def#mamba_seq") is False
    assert parser_with(config_file, mamba_seq="True").get_parsed_content("network_def#mamba_seq") is True


def test_save_heatmaps_flag_of_the_landmark_inference():
    config_file = BUNDLES_DIR / "nnmamba_fetal_landmarks" / "configs" / "inference.yaml"
    for text, heatmap_key, suffix in [("false", None, None), ("true", "pred_heatmaps", "_heatmaps")]:
        parser = parser_with(config_file, save_heatmaps=text)
        index = next(i for i, h in enumerate(parser["handlers"]) if "heatmap_key" in h)
        assert parser.get_parsed_content(f"handlers#{index}#heatmap_key") == heatmap_key
        assert parser.get_parsed_content("postprocessing#heatmap_suffix") == suffix
