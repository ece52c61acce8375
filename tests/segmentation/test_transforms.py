"""Tests of nnmamba_nets.segmentation.transforms: region/label conversion, saving like the reference file."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from monai.transforms import ConvertToMultiChannelBasedOnBratsClasses

from nnmamba_nets.demo import phantom
from nnmamba_nets.segmentation.transforms import (
    ConvertBratsRegionsToLabels,
    ConvertBratsRegionsToLabelsd,
    SaveLikeReferenced,
)


@pytest.mark.parametrize("as_tensor", [True, False])
def test_regions_to_labels_inverts_monai_labels_to_regions(as_tensor):
    labels = np.random.default_rng(0).integers(0, 4, size=(1, 6, 7, 8)).astype(np.uint8)
    regions = ConvertToMultiChannelBasedOnBratsClasses(et_label=3)(labels)  # TC, WT, ET
    regions = torch.as_tensor(regions) if as_tensor else np.asarray(regions)
    restored = ConvertBratsRegionsToLabels()(regions)
    assert isinstance(restored, torch.Tensor) == as_tensor
    assert restored.dtype in (torch.uint8, np.uint8) and tuple(restored.shape) == labels.shape
    np.testing.assert_array_equal(np.asarray(restored), labels)


def test_regions_to_labels_priorities_and_legacy_et_label():
    regions = torch.zeros(3, 1, 1, 4)
    regions[1, 0, 0, 1:] = 1  # WT
    regions[0, 0, 0, 2:] = 1  # TC
    regions[2, 0, 0, 3] = 1  # ET
    assert ConvertBratsRegionsToLabels()(regions).flatten().tolist() == [0, 2, 1, 3]
    assert ConvertBratsRegionsToLabels(et_label=4)(regions).flatten().tolist() == [0, 2, 1, 4]
    only_et = torch.zeros(3, 1, 1, 1)
    only_et[2] = 1  # ET outside the predicted TC/WT is still ET
    assert ConvertBratsRegionsToLabels()(only_et).item() == 3
    with pytest.raises(ValueError, match="3 region channels"):
        ConvertBratsRegionsToLabels()(torch.zeros(2, 4, 4, 4))
    with pytest.raises(ValueError, match="distinct"):
        ConvertBratsRegionsToLabels(ncr_label=2)
    converted = ConvertBratsRegionsToLabelsd(keys="pred")({"pred": regions, "other": 1})
    assert converted["pred"].flatten().tolist() == [0, 2, 1, 3] and converted["other"] == 1


def test_save_like_reference_keeps_affine_and_header(tmp_path):
    affine = phantom.voxel_affine((5, 6, 7), (1.0, 1.2, 1.5), flip=(True, True, False), centre_world=(3, 4, 5))
    reference_file = tmp_path / "case-t1n.nii.gz"
    phantom.save_nifti(reference_file, np.ones((5, 6, 7), np.float32), affine, description="scanner X")
    labels = torch.zeros(1, 5, 6, 7, dtype=torch.uint8)
    labels[0, 1:3, 2:4, 3:5] = 3
    image = MetaTensor(torch.zeros(4, 5, 6, 7), meta={"filename_or_obj": str(reference_file)})
    saver = SaveLikeReferenced(keys="pred", output_dir=tmp_path / "out")
    saver({"pred": labels, "image": image, "case_id": "BraTS-GLI-00001-000"})
    saver({"pred": labels, "image": image})  # no case id: named after the reference file
    for name in ("BraTS-GLI-00001-000.nii.gz", "case-t1n.nii.gz"):
        written, reference = nib.load(tmp_path / "out" / name), nib.load(reference_file)
        np.testing.assert_array_equal(written.affine, reference.affine)
        assert written.get_data_dtype() == np.uint8
        np.testing.assert_array_equal(np.asanyarray(written.dataobj), labels[0].numpy())
        for field in ("descrip", "qform_code", "sform_code", "pixdim", "xyzt_units", "quatern_b", "srow_x"):
            np.testing.assert_array_equal(written.header[field], reference.header[field])
    with pytest.raises(ValueError, match="reference grid"):
        saver({"pred": labels[:, :4], "image": image})
