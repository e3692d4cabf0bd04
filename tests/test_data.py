import numpy as np
import pytest

from skinray import data, degrade, images, ingest, storage, synth
from skinray.config import load_config
from skinray.errors import ConfigError, SkinrayError


def test_split_is_stable_when_images_are_added():
    first = {f"img_{i}.jpg": ingest.split_of(f"img_{i}.jpg", 0.3, seed=0) for i in range(1000)}
    more = {f"img_{i}.jpg": ingest.split_of(f"img_{i}.jpg", 0.3, seed=0) for i in range(2000)}
    assert all(more[k] == v for k, v in first.items())
    share = sum(v == "val" for v in more.values()) / len(more)
    assert 0.27 < share < 0.33


def test_manifest_hashes_splits_and_reports_bad_files(tmp_path):
    synth.write_dataset(str(tmp_path), 10, size=32, seed=0)
    (tmp_path / "empty.jpg").write_bytes(b"")
    (tmp_path / "text.png").write_bytes(b"not an image")
    (tmp_path / "notes.txt").write_text("ignored")
    manifest = ingest.build_manifest(str(tmp_path), 0.3, seed=0)
    assert manifest.table.num_rows == 10
    assert sorted(k for k, _ in manifest.skipped) == ["empty.jpg", "text.png"]
    assert manifest.ignored == 1
    row = manifest.table.slice(0, 1).to_pylist()[0]
    assert len(row["sha256"]) == 64 and row["width"] == 32 and row["format"] == "JPEG"
    assert manifest.count("train") + manifest.count("val") == 10

    ingest.write_manifest(manifest, str(tmp_path / "m.parquet"))
    again = ingest.read_manifest(str(tmp_path / "m.parquet"))
    assert again.fingerprint() == manifest.fingerprint()
    (tmp_path / "skin_00000.jpg").write_bytes(b"changed")
    assert ingest.build_manifest(str(tmp_path), 0.3).fingerprint() != manifest.fingerprint()


def _pairs(ds) -> dict:
    rows = {}
    for batch in ds.iter_batches(batch_size=64, batch_format="numpy"):
        for i, key in enumerate(batch["key"]):
            rows[str(key)] = (str(batch["subset"][i]), batch["input"][i], bool(batch["ok"][i]),
                              str(batch["error"][i]), batch["target"][i])
    return rows


@pytest.fixture(scope="module")
def pipeline(ray_local, tmp_path_factory):
    root = tmp_path_factory.mktemp("pairs")
    synth.write_dataset(str(root), 240, size=32, seed=3)
    big = tmp_path_factory.mktemp("big")
    synth.write_dataset(str(big), 1, size=256, seed=3)
    good = (big / "skin_00000.jpg").read_bytes()  # large enough that half of it keeps the header
    (root / "truncated.jpg").write_bytes(good[: len(good) // 2])
    cfg = load_config(overrides={"data.source": str(root), "data.image_size": 24, "data.val_fraction": 0.25})
    manifest = ingest.build_manifest(str(root), 0.25, seed=0)
    return cfg, manifest, data.pair_datasets(manifest, cfg)


@pytest.mark.integration  # a Ray Data pipeline
def test_pairs_are_degraded_input_and_clean_target(pipeline):
    cfg, manifest, datasets = pipeline
    rows = _pairs(datasets["train"])
    assert len(rows) == manifest.count("train")
    photos = {r["key"]: r for r in manifest.table.to_pylist() if r["key"].startswith("skin_")}
    key = next(k for k, r in photos.items() if r["split"] == "train")
    _, inputs, ok, error, targets = rows[key]
    assert ok, error
    assert inputs.shape == targets.shape == (24, 24, 3) and inputs.dtype == np.uint8
    # The target is the photo itself, resized, varied a little (natural_variation) and maybe shown
    # on darker skin (tone_prob): exactly so for validation pairs, whose draws are a function of (seed, key).
    key = next(k for k, r in photos.items() if r["split"] == "val")
    photo = images.resize_square(images.decode(storage.read_bytes(photos[key]["uri"])), 24)
    rng = degrade.key_rng(cfg.data.seed, key)
    varied = degrade.vary_tone_uint8(degrade.vary_uint8(photo, rng, cfg.degrade.natural_variation), rng,
                                     cfg.degrade.tone_prob, cfg.degrade.tone_depth)
    np.testing.assert_array_equal(_pairs(datasets["val"])[key][4], varied, err_msg=key)
    good = [v for v in rows.values() if v[2]]
    clean = [v for v in good if v[0] == "clean"]
    faulty = [v for v in good if v[0] != "clean"]
    assert clean and all(np.array_equal(v[1], v[4]) for v in clean), "clean pairs are bit-exact"
    changed = np.mean([not np.array_equal(v[1], v[4]) for v in faulty])
    assert changed > 0.95, "the other inputs are degraded"


@pytest.mark.integration  # a Ray Data pipeline
def test_configured_subset_shares_and_a_new_draw_each_epoch(pipeline):
    cfg, _, datasets = pipeline
    d = cfg.degrade
    no_colour = np.prod([1 - p for p in (d.light_prob, d.exposure_error_prob, d.jitter_fraction, d.wb_prob,
                                         d.exposure_prob)])
    colour = (1 - d.clean_fraction) * (1 - no_colour)
    epoch1 = _pairs(datasets["train"])
    epoch2 = _pairs(datasets["train"])
    good = [k for k, v in epoch1.items() if v[2]]
    for epoch in (epoch1, epoch2):
        share_colour = np.mean([epoch[k][0] == "colour" for k in good])
        share_clean = np.mean([epoch[k][0] == "clean" for k in good])
        assert abs(share_colour - colour) < 0.13 and abs(share_clean - d.clean_fraction) < 0.11, (
            share_colour, share_clean)
    changed = np.mean([epoch1[k][0] != epoch2[k][0] for k in good])
    assert changed > 0.25, "a different subset is jittered (or left clean) each epoch"
    assert not all(np.array_equal(epoch1[k][1], epoch2[k][1]) for k in good)


@pytest.mark.integration  # a Ray Data pipeline
def test_validation_degradations_are_fixed(pipeline):
    _, _, datasets = pipeline
    first, second = _pairs(datasets["val"]), _pairs(datasets["val"])
    assert first.keys() == second.keys() and len(first) > 30
    for key in first:
        assert first[key][0] == second[key][0]
        np.testing.assert_array_equal(first[key][1], second[key][1])


@pytest.mark.integration  # a Ray Data pipeline
def test_undecodable_file_is_flagged_with_its_reason(pipeline):
    _, manifest, datasets = pipeline
    split = dict(zip(manifest.table["key"].to_pylist(), manifest.table["split"].to_pylist()))
    rows = _pairs(datasets[split["truncated.jpg"]])
    _, inputs, ok, error, _ = rows["truncated.jpg"]
    assert not ok and "cannot decode" in error and not inputs.any()
    assert sum(not v[2] for v in rows.values()) == 1


# ------------------------------------------------- real photos mixed with a share of synthetic ones
def _mixed_pairs(table, cfg, pool) -> dict:
    """make_pairs over a training table as Ray Data calls it, batch by batch (no Ray here)."""
    out = {"key": [], "target": [], "ok": []}
    for start in range(0, table.num_rows, 16):
        batch = {c: np.array(table[c].to_pylist()[start:start + 16], dtype=object) for c in ("key", "uri")}
        pairs = data.make_pairs(batch, split="train", image_size=16, degrade_cfg=cfg.degrade.__dict__.copy(),
                                seed=0, s3=None, synthetic=pool)
        for name in out:
            out[name] += list(pairs[name])
    return out


def test_training_pairs_mix_in_the_configured_share_of_synthetic_photos(tmp_path):
    synth.write_dataset(str(tmp_path / "real"), 40, size=16, seed=1)
    synth.write_dataset(str(tmp_path / "synthetic"), 6, size=16, seed=2)
    cfg = load_config(overrides={"data.source": str(tmp_path / "real"), "data.synthetic": str(tmp_path / "synthetic"),
                                 "data.synthetic_share": 0.25, "data.val_fraction": 0.25, "data.image_size": 16,
                                 "degrade.natural_variation": 0.0,
                                 "degrade.tone_prob": 0.0})  # targets: the photos as they are
    manifest = ingest.load_or_build_manifest(cfg)
    pool = data.synthetic_pool(cfg)
    tables = data.training_tables(manifest, cfg, len(pool))
    assert tables["val"].num_rows == manifest.count("val") and not any(
        k.startswith(data.SLOT) for k in tables["val"]["key"].to_pylist()), "validation stays real"
    epochs = [_mixed_pairs(tables["train"], cfg, pool) for _ in range(2)]
    for pairs in epochs:
        synthetic = [k.startswith(data.SYNTHETIC) for k in pairs["key"]]
        assert len(synthetic) == manifest.count("train") + sum(synthetic) and all(pairs["ok"])
        assert abs(np.mean(synthetic) - 0.25) < 0.03, np.mean(synthetic)
        assert any(synthetic[:16]), "every batch mixes both"
        for key, target in zip(pairs["key"], pairs["target"]):
            folder = "synthetic" if key.startswith(data.SYNTHETIC) else "real"
            photo = images.decode((tmp_path / folder / key.removeprefix(data.SYNTHETIC)).read_bytes())
            np.testing.assert_array_equal(target, images.resize_square(photo, 16), err_msg=key)
    drawn = [[k for k in pairs["key"] if k.startswith(data.SYNTHETIC)] for pairs in epochs]
    assert drawn[0] != drawn[1], "synthetic photos are drawn anew every epoch"
    assert len(set(drawn[0] + drawn[1])) > 3


def test_synthetic_share_is_checked_and_an_empty_folder_is_one_error(tmp_path):
    assert data.synthetic_slots(300, 0.25) == 100 and data.synthetic_slots(300, 0.0) == 0
    assert data.synthetic_slots(0, 0.5) == 0
    with pytest.raises(ConfigError, match="data.synthetic_share"):
        load_config(overrides={"data.synthetic_share": 1.0}).validate()
    (tmp_path / "empty").mkdir()
    cfg = load_config(overrides={"data.synthetic": str(tmp_path / "empty")})
    with pytest.raises(SkinrayError, match=r"data.synthetic .*empty: no photos there"):
        data.synthetic_pool(cfg)
    assert data.synthetic_pool(load_config()) == []
