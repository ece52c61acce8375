"""Tests of nnmamba_nets.common.images.check_image_file: what is rejected before it reaches a network."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from nnmamba_nets.common.images import check_image_file


def save(path, data, affine=None) -> str:
    nib.save(nib.Nifti1Image(np.asarray(data), np.eye(4) if affine is None else affine), str(path))
    return str(path)


def test_a_good_image_is_described(tmp_path):
    affine = np.diag([1.5, 1.5, 2.0, 1.0])
    info = check_image_file(save(tmp_path / "good.nii.gz", np.ones((8, 9, 10), np.float32), affine))
    assert info.spatial_shape == (8, 9, 10) and info.channels == 1
    np.testing.assert_allclose(info.affine, affine)
    assert check_image_file(save(tmp_path / "four.nii.gz", np.ones((8, 8, 8, 4), np.float32))).channels == 4


def test_what_cannot_be_trusted_is_named(tmp_path):
    nan = np.ones((8, 8, 8), np.float32)
    nan[1, 2, 3] = np.nan
    inf = np.ones((8, 8, 8), np.float32)
    inf[0, 0, 0] = np.inf
    cases = {
        "missing.nii.gz": (None, "no such file"),
        "nan.nii.gz": (save(tmp_path / "nan.nii.gz", nan), "NaN or infinite"),
        "inf.nii.gz": (save(tmp_path / "inf.nii.gz", inf), "NaN or infinite"),
        "flat.nii.gz": (save(tmp_path / "flat.nii.gz", np.ones((8, 8), np.float32)), r"expected a 3D volume"),
    }
    good = save(tmp_path / "good.nii.gz", np.random.default_rng(0).random((16, 16, 16)).astype(np.float32))
    payload = bytearray(open(good, "rb").read())
    (tmp_path / "truncated.nii.gz").write_bytes(payload[: len(payload) // 2])
    payload[-6] ^= 0xFF  # the gzip CRC: nibabel reads these voxels without an error
    (tmp_path / "crc.nii.gz").write_bytes(payload)
    (tmp_path / "text.nii").write_text("not an image")
    cases.update(
        {
            "truncated.nii.gz": (None, "cannot read the image"),
            "crc.nii.gz": (None, "CRC check failed"),
            "text.nii": (None, "cannot read the image"),
        }
    )
    for name, (_, message) in cases.items():
        with pytest.raises(ValueError, match=message) as raised:
            check_image_file(tmp_path / name)
        assert name in str(raised.value)
    assert np.asanyarray(nib.load(tmp_path / "crc.nii.gz").dataobj).shape == (16, 16, 16)  # why the CRC check
    check_image_file(tmp_path / "crc.nii.gz", read_data=False)  # the header alone cannot tell


def test_an_affine_that_maps_no_volume_is_rejected(tmp_path):
    image = nib.Nifti1Image(np.ones((8, 8, 8), np.float32), np.eye(4))
    image.set_qform(None, code=0)
    image.set_sform(np.eye(4), code=1)
    nib.save(image, str(tmp_path / "singular.nii"))
    raw = bytearray((tmp_path / "singular.nii").read_bytes())
    raw[280:328] = bytes(48)  # srow_x, srow_y, srow_z of the NIfTI-1 header: a zero sform
    (tmp_path / "singular.nii").write_bytes(raw)
    with pytest.raises(ValueError, match="singular.nii.*maps no volume"):
        check_image_file(tmp_path / "singular.nii")
