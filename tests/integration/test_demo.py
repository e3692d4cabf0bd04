"""`skinray demo` end to end on a tiny budget: every artefact it promises is written."""

import json

import pytest

from skinray import checkpoint, images
from skinray.demo import run_demo

pytestmark = pytest.mark.integration


def test_demo_writes_samples_curve_summary_and_enhanced_folder(ray_local, tmp_path):
    result = run_demo(str(tmp_path), count=24, overrides={"train.epochs": 2, "data.image_size": 32})
    for name in ("samples.png", "loss_curve.png"):
        assert images.decode((tmp_path / name).read_bytes()).shape[0] > 50
    summary = json.loads((tmp_path / "demo_summary.json").read_text())
    assert summary == result and summary["best_epoch"] in (1, 2)
    for key in ("val_psnr_degraded", "val_psnr_enhanced", "val_ssim_degraded", "val_ssim_enhanced"):
        assert 0 < summary[key] < 100
    enhanced = sorted((tmp_path / "enhanced").glob("*.jpg"))
    assert len(enhanced) == 12
    assert (tmp_path / "enhanced" / "_skinray" / "manifest.parquet").exists()
    report = tmp_path / "evaluation" / "report.md"
    text = report.read_text()
    assert summary["report"] == str(report) and "shades_of_gray" in text
    for row in ("oracle: 3x4 colour transform", "oracle: 3-D LUT", "## Colour faults", "## Camera faults only",
                "## Clean photos", "model light (demo)",
                f"model light ({checkpoint.load(checkpoint.BUNDLED).config.train.name})"):
        assert row in text, f"the report shows {row!r}"
    for name in ("validation_grid.png", "loss_curve_0.png", "photos_before_after.png"):
        assert images.decode((tmp_path / "evaluation" / name).read_bytes()).shape[0] > 50
