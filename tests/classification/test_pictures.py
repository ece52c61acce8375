"""ROC curve and confusion matrix from predictions.csv: the metrics' numbers, the pictures, the errors."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from nnmamba_nets.classification.metrics import classification_metrics
from nnmamba_nets.classification.pictures import classification_pictures, read_predictions, roc_points
from nnmamba_nets.common.pictures import main
from tests.picture_checks import assert_png
from tests.utils import run_module


def write_predictions(folder, class_names=("NC", "AD"), count: int = 12, header=None) -> None:
    """A ``predictions.csv`` as ``ClassificationReport`` writes it, with overlapping class probabilities."""
    rng = np.random.default_rng(0)
    labels = np.arange(count) % len(class_names)
    logits = rng.normal(size=(count, len(class_names))) + 1.5 * np.eye(len(class_names))[labels]
    probabilities = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "predictions.csv", "w", newline="") as stream:
        writer = csv.writer(stream)
        writer.writerow(header or ["image", "label", *[f"prob_{name}" for name in class_names], "predicted"])
        for index, (label, row) in enumerate(zip(labels, probabilities)):
            predicted = class_names[int(row.argmax())]
            writer.writerow([f"/data/{index}.nii.gz", class_names[label], *[f"{p:.6f}" for p in row], predicted])


def test_roc_points_of_a_small_ranking():
    false_rates, true_rates = roc_points(np.array([0.9, 0.8, 0.7, 0.6]), np.array([True, False, True, False]))
    np.testing.assert_allclose(false_rates, [0, 0, 0.5, 0.5, 1])
    np.testing.assert_allclose(true_rates, [0, 0.5, 0.5, 1, 1])
    tied = roc_points(np.array([0.5, 0.5]), np.array([True, False]))  # one threshold: a diagonal step
    np.testing.assert_allclose(tied, [[0, 1], [0, 1]])
    with pytest.raises(ValueError, match="positive and negative"):
        roc_points(np.array([0.1, 0.2]), np.array([True, True]))


def test_the_area_under_the_drawn_curve_is_the_metrics_auc(tmp_path):
    write_predictions(tmp_path, count=40)
    probabilities, labels, names = read_predictions(tmp_path / "predictions.csv")
    assert names == ["NC", "AD"] and probabilities.shape == (40, 2)
    false_rates, true_rates = roc_points(probabilities[:, 1], labels == 1)
    area = float(np.sum(np.diff(false_rates) * (true_rates[1:] + true_rates[:-1]) / 2))
    assert area == pytest.approx(classification_metrics(probabilities, labels, names)["auc"], abs=1e-9)
    assert 0.5 < area < 1.0  # overlapping classes: neither chance nor perfect


@pytest.mark.parametrize("class_names, matrix_size", [(("NC", "AD"), (4.2, 3.6)), (("NC", "MCI", "AD"), (4.9, 4.7))])
def test_pictures(tmp_path, class_names, matrix_size):
    write_predictions(tmp_path / "eval", class_names)
    paths = classification_pictures(tmp_path / "eval", output_dir=tmp_path / "out", title="synthetic demo data", dpi=40)
    assert paths == [str(tmp_path / "out" / "roc_curve.png"), str(tmp_path / "out" / "confusion_matrix.png")]
    assert_png(paths[0], (4.2, 4.2), dpi=40)
    assert_png(paths[1], matrix_size, dpi=40)  # 1.1 inches per class


def test_errors_name_the_file_and_what_was_expected(tmp_path):
    with pytest.raises(ValueError, match=r"no predictions.csv in .*expected an evaluation output folder"):
        classification_pictures(tmp_path)
    write_predictions(tmp_path, header=["image", "prob_NC", "prob_AD", "predicted"])  # inference: no label column
    with pytest.raises(ValueError, match=r"predictions.csv' needs the columns 'label' and 'prob_<class>'"):
        classification_pictures(tmp_path)
    (tmp_path / "predictions.csv").write_text("image,label,prob_NC,prob_AD\na,NC,0.9,0.1\nb,MCI,0.5,0.5\n")
    with pytest.raises(ValueError, match=r"line 3: label 'MCI' is not one of \['NC', 'AD'\]"):
        classification_pictures(tmp_path)
    (tmp_path / "predictions.csv").write_text("image,label,prob_NC,prob_AD\na,NC,0.9,x\n")
    with pytest.raises(ValueError, match="line 2: a probability is not a number"):
        classification_pictures(tmp_path)
    (tmp_path / "predictions.csv").write_text("image,label,prob_NC,prob_AD\na,NC,0.9,0.1\nb,NC,0.6,0.4\n")
    with pytest.raises(ValueError, match="holds only the class 'NC': no ROC curve"):
        classification_pictures(tmp_path)


def test_command_line(tmp_path, capsys):
    write_predictions(tmp_path)
    result = run_module("nnmamba_nets", "pictures", "classification", str(tmp_path), "--dpi", "30", timeout=300)
    assert result.stdout.split() == [str(tmp_path / "roc_curve.png"), str(tmp_path / "confusion_matrix.png")]
    assert main(["classification", str(tmp_path / "missing")]) == 1
    assert "pictures classification: error: no predictions.csv in" in capsys.readouterr().err
