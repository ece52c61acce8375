"""Tests of nnmamba_nets.common.datalists: datalist files, splits and the bundles' inference inputs."""

from __future__ import annotations

import json

import pytest
from monai.data import load_decathlon_datalist

from nnmamba_nets.common.datalists import image_inputs, read_datalist, split_indices, write_datalist


def test_only_path_keys_become_paths_unlike_monai(tmp_path):
    (tmp_path / "BraTS-GLI-00000-000").mkdir()  # a case folder beside the datalist
    item = {"case_id": "BraTS-GLI-00000-000", "image": ["BraTS-GLI-00000-000/t1n.nii.gz"], "label": "seg.nii.gz"}
    (tmp_path / "datalist.json").write_text(json.dumps({"training": [item], "test": [], "labels": {"1": "NCR"}}))
    ours = read_datalist(tmp_path / "datalist.json")
    assert ours["training"][0]["case_id"] == "BraTS-GLI-00000-000"
    assert ours["training"][0]["image"] == [str(tmp_path / "BraTS-GLI-00000-000" / "t1n.nii.gz")]
    assert ours["training"][0]["label"] == str(tmp_path / "seg.nii.gz")
    assert ours["validation"] == [] and ours["test"] == [] and ours["labels"] == {"1": "NCR"}
    monai = load_decathlon_datalist(tmp_path / "datalist.json", True, "training")
    assert monai[0]["case_id"] == str(tmp_path / "BraTS-GLI-00000-000")  # why ours exists


def test_write_then_read_round_trip_with_relative_paths(tmp_path):
    datalist = {"name": "x", "training": [{"image": str(tmp_path / "a.nii.gz"), "label": 1}], "test": []}
    path = write_datalist(tmp_path / "sub" / "list.json", datalist, path_keys=["image"])
    assert json.loads(open(path).read())["training"][0]["image"] == "../a.nii.gz"
    assert read_datalist(path, path_keys=["image"])["training"] == datalist["training"]


@pytest.mark.parametrize(
    "content, message",
    [("not json", "cannot read datalist"), ("[]", "JSON object"), ('{"training": [{"label": 1}]}', r"training\[0\]")],
)
def test_bad_datalists_name_the_file_and_the_item(tmp_path, content, message):
    (tmp_path / "bad.json").write_text(content)
    with pytest.raises(ValueError, match=message):
        read_datalist(tmp_path / "bad.json")


def test_split_indices_is_seeded_complete_and_checks_its_arguments():
    split = split_indices(20, 0.15, 0.15, seed=0)
    assert [len(split[k]) for k in ("training", "validation", "test")] == [14, 3, 3]
    assert sorted(i for positions in split.values() for i in positions) == list(range(20))
    assert split_indices(20, 0.15, 0.15, seed=0) == split and split_indices(20, 0.15, 0.15, seed=1) != split
    assert [len(v) for v in split_indices(3, 0.1, 0.1).values()] == [1, 1, 1]  # at least one each
    with pytest.raises(ValueError, match="too few"):
        split_indices(2, 0.1, 0.1)
    with pytest.raises(ValueError, match="sum below 1"):
        split_indices(20, 0.5, 0.5)


def test_image_inputs_from_a_folder_json_csv_file_and_list(tmp_path):
    for name in ("b.nii.gz", "a.nii", "notes.txt"):
        (tmp_path / name).touch()
    a, b = str(tmp_path / "a.nii"), str(tmp_path / "b.nii.gz")
    assert [i["name"] for i in image_inputs(tmp_path)] == [a, b]
    (tmp_path / "list.json").write_text(json.dumps({"training": [{"image": "a.nii"}], "test": [{"image": "b.nii.gz"}]}))
    assert [i["image"] for i in image_inputs(str(tmp_path / "list.json"), "test")] == [b]
    assert len(image_inputs(str(tmp_path / "list.json"), "")) == 2
    (tmp_path / "list.csv").write_text("image,label,split\na.nii,NC,training\nb.nii.gz,AD,test\n")
    assert [i["image"] for i in image_inputs(str(tmp_path / "list.csv"), "test")] == [b]
    assert [i["image"] for i in image_inputs(b)] == [b]
    assert [i["name"] for i in image_inputs([b, a])] == [b, a]


def test_image_inputs_errors(tmp_path):
    with pytest.raises(ValueError, match="dataset_dir .* does not exist"):
        image_inputs(str(tmp_path / "missing"))
    with pytest.raises(ValueError, match="holds nothing"):
        image_inputs(str(tmp_path))
    (tmp_path / "list.json").write_text(json.dumps({"training": [{"image": "a.nii"}]}))
    with pytest.raises(ValueError, match="holds nothing to process for split 'test'"):
        image_inputs(str(tmp_path / "list.json"), "test")
    with pytest.raises(ValueError, match="input_split must be one of"):
        image_inputs(str(tmp_path / "list.json"), "train")
    (tmp_path / "list.csv").write_text("path,label\na.nii,NC\n")
    with pytest.raises(ValueError, match="lacks the column 'image'"):
        image_inputs(str(tmp_path / "list.csv"), "")
