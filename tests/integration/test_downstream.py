"""Downstream tasks end to end on synthetic photos with synthetic masks and attributes: both
models trained as Ray Train jobs for a few steps, scored through `skinray evaluate --task-model`
(one row per condition and method, with intervals), and an enhancer trained with the task-loss term."""

from __future__ import annotations

import json

import numpy as np
import pytest

from skinray import checkpoint, downstream, downstream_eval, images, synth
from skinray.cli import main
from skinray.ground_truth import ATTRIBUTES

pytestmark = pytest.mark.integration
COUNTS = {"train": 16, "val": 6, "test": 8}
TINY = ["--epochs", "2", "--batch-size", "8", "--image-size", "32", "--workers", "1", "--set", "model.width=4"]


def _lesion(img: np.ndarray) -> np.ndarray:
    """The synthetic photo's darkest quarter: its lesion (and hairs), as a mask."""
    lightness = img.astype(np.float32).mean(axis=2)
    return lightness < np.percentile(lightness, 25)


@pytest.fixture(scope="module")
def isic_like(tmp_path_factory):
    """train/val/test folders of ISIC_<id>.jpg with ISIC_<id>_segmentation.png beside them, an
    attribute file (globules: a large lesion; the others alternate), and its manifest."""
    root = tmp_path_factory.mktemp("downstream")
    lines, index = [], 0
    for split, count in COUNTS.items():
        (root / "isic" / split).mkdir(parents=True)
        for i in range(count):
            img = synth.skin_image(11, index, 64)
            stem = root / "isic" / split / f"ISIC_{index:07d}"
            stem.with_suffix(".jpg").write_bytes(images.encode(img, "jpeg", quality=95))
            mask = _lesion(img)
            stem.with_name(stem.name + "_segmentation.png").write_bytes(
                images.encode(np.repeat(mask[..., None] * np.uint8(255), 3, axis=2), "png"))
            bits = [int(mask.mean() > 0.25 + 0.01 * (i % 3 - 1))] + [(i + k) % 2 for k in range(1, len(ATTRIBUTES))]
            lines.append(f"ISIC_{index:07d} {''.join(map(str, bits))}")
            index += 1
    (root / "attributes.txt").write_text("\n".join(lines) + "\n")
    manifest = root / "manifest.parquet"
    assert main(["ingest", str(root / "isic"), "--out", str(manifest),
                 "--attributes", str(root / "attributes.txt")]) == 0
    return root, manifest


@pytest.fixture(scope="module")
def task_runs(ray_local, isic_like):
    root, manifest = isic_like
    runs = root / "runs"
    for task in downstream.TASKS:
        assert main(["train", "--data", str(manifest), "--storage", str(runs), "--name", task, *TINY,
                     "--set", f"model.task={task}"]) == 0
    return {task: runs / task for task in downstream.TASKS}


def test_both_downstream_models_train_as_ray_train_jobs(task_runs):
    for task, run in task_runs.items():
        loaded = checkpoint.load(str(run))
        assert loaded.config.model.task == task
        assert isinstance(loaded.model, (downstream.AttributeClassifier, downstream.LesionSegmenter))
        assert sorted(p.name for p in run.glob("epoch_*")) == ["epoch_0000", "epoch_0001"]
        best = loaded.metrics  # the epoch of lowest validation loss, exported to RUN/best
        assert best["train_images"] == COUNTS["train"] and best["val_images"] == COUNTS["val"]
        figure = best["val_dice"] if task == "segmentation" else best["val_balanced_accuracy"]
        assert 0.0 <= figure <= 1.0


def test_evaluation_gives_one_row_per_condition_with_intervals(task_runs, isic_like, tmp_path):
    _, manifest = isic_like
    out = tmp_path / "eval"
    assert main(["evaluate", "--task-model", str(task_runs["attributes"]), "--task-model",
                 str(task_runs["segmentation"]), "--model", "bundled", "--data", str(manifest), "--split", "test",
                 "--size", "32", "--bootstrap", "50", "--out", str(out)]) == 0
    m = json.loads((out / "downstream.json").read_text())
    assert m["photos"] == COUNTS["test"], "the test split only"
    for task, headline in downstream_eval.HEADLINE.items():
        rows = m["tasks"][task]["rows"]
        names = [r["name"] for r in rows]
        assert len(rows) == len(downstream_eval.CONDITIONS) * 3, "as is, Shades of Gray (skin prior), bundled"
        bundled = next(r["method"] for r in rows if r["method"].startswith("model "))  # the bundled model's row
        assert f"re-lit (v3 light) -> {bundled}" in names and f"clean -> {bundled}" in names
        assert rows[0]["name"] == "clean"
        assert rows[0]["delta_vs_clean"][headline] == {"value": 0.0, "lo": 0.0, "hi": 0.0}
        for r in rows:
            ci = r[headline]
            assert ci["lo"] <= ci["value"] <= ci["hi"], r["name"]
            assert ("recovered" in r) == (r["condition"] != "clean" and r["method"] != downstream_eval.AS_IS)
    report = (out / "downstream.md").read_text()
    assert "## segmentation" in report and "## attributes" in report and "Goals:" in report
    assert (out / "downstream.png").stat().st_size > 0


def test_enhancer_trains_with_the_task_loss_term(task_runs, isic_like, tmp_path):
    _, manifest = isic_like
    models = ",".join(str(task_runs[t]) for t in downstream.TASKS)
    assert main(["train", "--data", str(manifest), "--storage", str(tmp_path / "runs"), "--name", "with-task",
                 "--epochs", "1", "--batch-size", "8", "--image-size", "32", "--workers", "1",
                 "--set", "train.task_weight=0.5", "--set", f"train.task_model={models}"]) == 0
    loaded = checkpoint.load(str(tmp_path / "runs" / "with-task"))
    assert loaded.config.train.task_weight == 0.5 and np.isfinite(loaded.history[-1]["train_loss"])
