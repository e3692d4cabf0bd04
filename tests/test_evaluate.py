"""`skinray evaluate` end to end on a tiny set (no Ray needed), its metrics on known values, and the
oracles (per-image 3x4 colour transform and 3-D lookup table fitted with the clean photo known)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from skinray import baselines, checkpoint, colour, evaluate, harm, images, synth
from skinray.cli import main
from skinray.config import POSTER_DEGRADE, Config, DegradeConfig, ModelConfig
from skinray.errors import SkinrayError
from skinray.model import build_model


def test_score_known_values():
    img = synth.skin_image(0, 1, 170)
    same = evaluate.score(img, img)
    assert same["psnr"] == 100.0 and same["ssim"] == pytest.approx(1.0) and same["ciede2000"] == 0.0
    assert same["ms_ssim"] == pytest.approx(1.0)  # 170 px allows the 5 scales
    off = evaluate.score(np.clip(img.astype(int) + 1, 0, 255).astype(np.uint8), img)
    unclipped = np.mean(img < 255)
    assert off["psnr"] == pytest.approx(20 * np.log10(255) - 10 * np.log10(unclipped), abs=1e-3)
    assert evaluate.score(img[:64, :64], img[:64, :64])["ms_ssim"] is None  # too small for MS-SSIM


def test_skin_reference_shades_of_gray_undoes_a_cast():
    """A cast applied in linear light is undone exactly when the target is the photo's own
    uncast estimate; plain Shades of Gray instead pushes the skin towards grey."""
    clean = synth.skin_image(0, 2, 64)
    reference = baselines.reference_illuminant([clean])
    linear = (clean / 255.0) ** 2.2 * np.array([1.15, 1.0, 0.8])
    cast = np.clip(255 * np.clip(linear, 0, 1) ** (1 / 2.2) + 0.5, 0, 255).astype(np.uint8)
    fixed = baselines.shades_of_gray(cast, 6.0, target=reference)
    plain = baselines.shades_of_gray(cast, 6.0)
    assert np.abs(cast.astype(int) - clean).mean() > 5
    assert np.abs(fixed.astype(int) - clean).mean() < 1.5
    assert np.abs(plain.astype(int) - clean).mean() > 5


CTX, POSTER = "model context (context)", "model poster (poster)"
ORACLES = (evaluate.ORACLE_3X4, evaluate.ORACLE_LUT)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("tiny")
    synth.write_dataset(str(tmp_path / "data"), count=14, size=48, seed=1)
    synth.write_dataset(str(tmp_path / "photos"), count=3, size=40, seed=2)
    history = [{"epoch": e, "train_loss": 1.0 / (e + 1), "val_loss": 1.2 / (e + 1)} for e in range(3)]
    models = {}
    for arch in ("context", "poster"):
        torch.manual_seed(0)
        cfg = Config(model=ModelConfig(arch=arch, width=4, dropout=0.0)).replace({"train.name": arch})
        models[arch] = str(checkpoint.save(tmp_path / arch, build_model(cfg.model), cfg, {"epoch": 2}, history))
    return tmp_path, models


@pytest.fixture(scope="module")
def evaluated(tiny):
    """One `skinray evaluate` run of both models on all 14 images, shared by the tests below."""
    root, models = tiny
    out = root / "eval"
    assert main(["evaluate", "--model", models["context"], "--model", models["poster"], "--data",
                 str(root / "data"), "--out", str(out), "--size", "48", "--split", "all",
                 "--photos", str(root / "photos")]) == 0
    return out, json.loads((out / "metrics.json").read_text())


def test_evaluate_end_to_end(evaluated):
    out, m = evaluated
    table = m["restoration"]
    names = {"degraded input", "gray_world", "shades_of_gray", "clahe", "shades_of_gray (skin reference)",
             evaluate.SKIN_PRIOR, CTX, POSTER}
    assert m["images"] == 14 and m["degrade"] == "default" and set(table) == names
    assert set(m["subsets"]) == {"colour", "camera", "clean"} and all(set(t) == names for t in m["subsets"].values())
    assert set(m["oracles"]) == set(ORACLES) and set(m["recovered_fraction"]) == {CTX, POSTER}
    for name, row in table.items():  # overall = mean of the three subsets
        assert row["psnr"] == pytest.approx(np.mean([m["subsets"][s][name]["psnr"] for s in evaluate.SUBSETS]))
        assert 0 < row["psnr"] <= 100 and 0 <= row["ssim"] <= 1 and row["ciede2000"] >= 0 and row["ms_per_image"] >= 0
    # the clean subset: input = target, and "do no harm" is read from it
    assert m["subsets"]["clean"]["degraded input"]["psnr"] == 100.0
    assert m["do_no_harm"][POSTER] == {k: m["subsets"]["clean"][POSTER][k] for k in ("psnr", "ciede2000")}
    assert m["subsets"]["colour"]["degraded input"]["psnr"] < m["subsets"]["camera"]["degraded input"]["psnr"] < 100
    report = (out / "report.md").read_text()
    for heading in ("Do no harm", "Recovered fraction", "Summary", *evaluate.SUBSET_TITLES.values()):
        assert heading in report
    assert all(name in report for name in (*table, *ORACLES))
    for path in m["figures"].values():
        assert images.decode((out / path.rsplit("/", 1)[-1]).read_bytes()).shape[0] > 40
    assert set(m["figures"]) == {"validation_grid", "loss_curve_0", "loss_curve_1", "photos_grid", "worst_photos_0",
                                 "worst_photos_1"}
    assert m["photos"]["count"] == 3 and m["photos"]["before"]["brightness"] > 0
    assert m["photos"]["change"] == {"psnr": 100.0, "ciede2000": 0.0}, "the identity model changed nothing"
    per_photo = m["photos"]["per_photo"]  # every model's harm on each photo: the identity none, the poster some
    assert len(per_photo) == 3 and all(set(row["ciede2000"]) == {CTX, POSTER} for row in per_photo)
    assert all(row["ciede2000"][CTX] == 0.0 < row["ciede2000"][POSTER] for row in per_photo)
    assert f"| photo | {CTX} | {POSTER} |" in report and per_photo[0]["key"] in report


def test_untrained_context_model_is_the_identity_in_every_table(evaluated):
    """An untrained context model is the identity (zero-initialised residual): it restores
    nothing and harms nothing - the numbers must say exactly that."""
    _, m = evaluated
    for subset in evaluate.SUBSETS:
        assert m["subsets"][subset][CTX]["psnr"] == pytest.approx(m["subsets"][subset]["degraded input"]["psnr"])
    assert m["subsets"]["clean"][CTX]["psnr"] == 100.0
    assert m["do_no_harm"][CTX] == {"psnr": 100.0, "ciede2000": 0.0}
    recovered = m["recovered_fraction"][CTX]
    assert recovered["colour"] == {"oracle_3x4": 0.0, "oracle_lut": 0.0}
    assert recovered["clean"] == {"oracle_3x4": None, "oracle_lut": None}  # no gap to recover
    summary = m["summary"]["models"][CTX]
    assert summary["gain_over_degraded_db"] == pytest.approx(0, abs=1e-9)
    assert summary["recovered_fraction_colour"] == 0.0 and summary["gain_on_camera_db"] == pytest.approx(0, abs=1e-9)
    assert summary["unchanged_photo_psnr_db"] == 100.0 and summary["unchanged_photo_ciede2000"] == 0.0


def test_oracles_score_at_least_every_method_on_every_subset(evaluated):
    _, m = evaluated
    for subset in evaluate.SUBSETS:
        lut, affine = (m["oracles"][o][subset]["psnr"] for o in (evaluate.ORACLE_LUT, evaluate.ORACLE_3X4))
        assert lut >= affine
        for name, row in m["subsets"][subset].items():
            assert affine >= row["psnr"], (subset, name)
    assert m["oracles"][evaluate.ORACLE_3X4]["colour"]["psnr"] > m["subsets"]["colour"]["degraded input"]["psnr"] + 5
    assert m["restoration"][m["summary"]["best_classical"]]["kind"] == "classical"  # never an oracle
    assert all("ms_per_image" not in row["overall"] for row in m["oracles"].values())  # never timed


def test_lut_oracle_at_least_the_3x4_oracle_on_every_image(tiny):
    root, _ = tiny
    for key, clean in evaluate.load_split(str(root / "data"), Config(), 48, 14, "all", None):
        for subset in ("colour", "camera"):
            degraded = evaluate.degraded_input(clean, key, subset, DegradeConfig(), 1234)
            out, _ = evaluate.oracle_outputs(degraded, clean)
            affine, lut = (evaluate.score(out[o], clean)["psnr"] for o in ORACLES)
            assert lut >= affine >= evaluate.score(degraded, clean)["psnr"], (key, subset)


def test_3x4_oracle_recovers_an_affine_cast_exactly():
    clean = synth.skin_image(0, 4, 64)
    matrix = np.array([[0.8, 0.1, 0.0], [0.05, 0.7, 0.05], [0.0, 0.1, 0.6]])  # a cast, no clipping
    degraded = evaluate.to_uint8(clean / 255.0 @ matrix.T + np.array([0.1, 0.05, 0.15]))
    assert evaluate.score(degraded, clean)["psnr"] < 30
    out, _ = evaluate.oracle_outputs(degraded, clean)
    assert evaluate.score(out[evaluate.ORACLE_3X4], clean)["psnr"] >= 50


def test_lut_oracle_recovers_a_per_channel_gamma_better_than_3x4():
    clean = synth.skin_image(0, 5, 64)
    degraded = evaluate.to_uint8((clean / 255.0) ** np.array([0.5, 1.0, 2.0]))  # not affine in RGB
    out, fell_back = evaluate.oracle_outputs(degraded, clean)
    affine, lut = (evaluate.score(out[o], clean)["psnr"] for o in ORACLES)
    assert lut > affine + 6 and lut > 40 and not fell_back[evaluate.ORACLE_LUT]


def test_lut_fit_reproduces_an_affine_table_and_the_identity():
    """fit_lut's trilinear weights are apply_lut's: a 3x4 transform fitted from itself comes back."""
    clean = synth.skin_image(0, 6, 48)
    table = evaluate.fit_lut(clean, clean, np.vstack([np.eye(3), np.zeros(3)]))
    assert np.abs(table - evaluate.lattice_colours(evaluate.LUT_SIZE).T.reshape(table.shape)).max() < 1e-9
    np.testing.assert_array_equal(evaluate.apply_table(clean, table), clean)


def test_poster_degradations_change_the_inputs(tiny):
    root, models = tiny
    clean = synth.skin_image(0, 7, 48)
    default = evaluate.degraded_input(clean, "k", "colour", DegradeConfig(), 1234)
    poster = evaluate.degraded_input(clean, "k", "colour", POSTER_DEGRADE, 1234)
    assert not np.array_equal(default, poster)
    out = root / "poster"
    assert main(["evaluate", "--model", models["context"], "--data", str(root / "data"), "--out", str(out),
                 "--size", "48", "--split", "all", "--limit", "4", "--degrade", "poster"]) == 0
    m = json.loads((out / "metrics.json").read_text())
    assert m["degrade"] == "poster" and m["degrade_config"]["jpeg_prob"] == 0.0
    base = evaluate.run([models["context"]], str(root / "data"), str(root / "default4"), size=48, limit=4, split="all")
    for subset in ("colour", "camera"):
        assert m["subsets"][subset]["degraded input"]["psnr"] != base["subsets"][subset]["degraded input"]["psnr"]
    assert m["subsets"]["clean"] == base["subsets"]["clean"]


def test_evaluate_val_split_adds_the_skin_reference_baseline(tiny):
    root, models = tiny
    m = evaluate.run([models["poster"]], str(root / "data"), str(root / "e2"), size=48)
    kinds = [row["kind"] for row in m["restoration"].values()]
    assert m["restoration"]["shades_of_gray (skin reference)"]["kind"] == "classical"
    assert kinds == ["input"] + ["classical"] * 5 + ["model"]  # models after every baseline
    assert m["references"].endswith("photos of the train split")
    assert 0 < m["images"] < 14  # only the validation split


def test_evaluate_bad_input_is_one_clear_line(tiny, capsys):
    root, models = tiny
    assert main(["evaluate", "--model", str(root), "--data", str(root / "data")]) == 2
    assert "not a skinray checkpoint" in capsys.readouterr().err
    assert main(["evaluate", "--model", models["poster"], "--data", str(root / "nowhere")]) == 2
    assert "nowhere" in capsys.readouterr().err
    with pytest.raises(SkinrayError, match="--degrade"):
        evaluate.run([models["poster"]], str(root / "data"), str(root / "e3"), degrade_preset="blurry")


# ----------------------------------------------------------------------------- real photos (skinray.harm)


def _lesion_mask(img: np.ndarray) -> np.ndarray:
    """A synthetic lesion mask: the darkest quarter of the photo (the synthetic lesion is darker)."""
    lightness = colour.srgb_to_lab(img)[..., 0]
    return lightness < np.percentile(lightness, 25)


@pytest.fixture(scope="module")
def real_layout(tiny):
    """An ISIC-layout folder of synthetic photos: ISIC_<id>.jpg with ISIC_<id>_segmentation.png
    beside it (three photos), in a separate masks folder (one), or none (one)."""
    root, models = tiny
    folder, masks = root / "isic" / "photos", root / "isic" / "masks"
    folder.mkdir(parents=True)
    masks.mkdir()
    for i in range(5):
        img = synth.skin_image(3, i, 64)
        (folder / f"ISIC_000000{i}.jpg").write_bytes(images.encode(img, "jpeg", quality=95))
        mask = images.encode(np.repeat(_lesion_mask(img)[..., None] * np.uint8(255), 3, axis=2), "png")
        if i < 4:
            (folder if i < 3 else masks).joinpath(f"ISIC_000000{i}_segmentation.png").write_bytes(mask)
    out = root / "isic_eval"
    assert main(["evaluate", "--model", models["context"], "--model", models["poster"], "--data", str(folder),
                 "--masks", str(masks), "--out", str(out), "--size", "48", "--split", "all"]) == 0
    return out, json.loads((out / "metrics.json").read_text())


def test_real_layout_folder_gives_good_cast_band_and_contrast_rows(real_layout):
    out, m = real_layout
    real = m["real"]
    assert m["images"] == 5, "masks are never photos"
    assert real["photos"] == 5 and real["with_mask"] == 4  # 3 beside, 1 in --masks, 1 without
    assert sum(band["count"] for band in real["bands"].values()) == 5 and all(b["thin"] for b in real["bands"].values())
    methods = {"gray_world", "shades_of_gray", "clahe", "shades_of_gray (skin reference)", evaluate.SKIN_PRIOR, CTX,
               POSTER}
    assert set(real["good"]) == methods
    assert set(real["cast"]) == methods | {"degraded input", harm.ORACLE_VON_KRIES, *ORACLES}
    for rows in real["good"].values():
        assert rows["all"]["count"] == 5 and rows["all"]["contrast_photos"] == 4
        assert all(rows[b]["count"] == real["bands"][b]["count"] for b in rows if b != "all")
    cast_in = real["cast"]["degraded input"]["all"]["ciede2000_mean"]
    assert cast_in > 2, "every photo is re-lit"
    assert real["cast"][evaluate.ORACLE_LUT]["all"]["ciede2000_mean"] < cast_in / 2
    assert real["cast"][harm.ORACLE_VON_KRIES]["all"]["ciede2000_mean"] < cast_in
    report = (out / "report.md").read_text()
    assert "## Real photos: harm to good photos, and real-world casts" in report and "good: lesion contrast" in report
    band = next(name for name, row in real["bands"].items() if row["count"])
    assert f"### {band} (" in report and "fewer than 10 photos" in report
    assert "## Goals on real photos (issue 20)" in report
    sheet = images.decode((out / "worst_photos_1.png").read_bytes())
    assert sheet.shape[0] > 5 * 48 and sheet.shape[1] == 5 * 48  # 5 rows of good / output / good / cast / output


def test_identity_model_does_no_harm_on_real_photos(real_layout):
    _, m = real_layout
    good = m["real"]["good"][CTX]["all"]
    assert good["ciede2000_mean"] == 0.0 and good["ciede2000_p95"] == 0.0
    assert good["ita_shift_abs_mean"] == 0.0 and good["contrast_change_abs_mean"] == 0.0
    real = m["real"]
    assert real["cast"][CTX]["all"] == real["cast"]["degraded input"]["all"]  # corrects nothing either
    goals = real["goals"][CTX]
    assert goals["good_ciede2000_mean_le_1"] and goals["contrast_change_le_1"] and not goals["cast_le_half_input"]
    assert real["good"][POSTER]["all"]["ciede2000_mean"] > 0
