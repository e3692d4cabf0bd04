"""The archive enhancement job on a real local Ray: folder and S3 (moto), bad inputs, resume."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest
from PIL import Image

from skinray import archive, checkpoint, images, storage, synth
from skinray.config import Config, EnhanceConfig, ModelConfig
from skinray.model import build_model
from skinray.predict import Enhancer

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    import torch

    torch.manual_seed(0)
    cfg = Config(model=ModelConfig(width=8))
    return checkpoint.save(tmp_path_factory.mktemp("model") / "best", build_model(cfg.model), cfg, {"epoch": 0})


def _png(arr_or_img, mode=None) -> bytes:
    img = arr_or_img if isinstance(arr_or_img, Image.Image) else Image.fromarray(arr_or_img, mode)
    out = io.BytesIO()
    img.save(out, format="PNG")
    return out.getvalue()


def _archive(root: Path) -> dict[str, bytes]:
    photo = synth.skin_image(0, 1, 64)
    jpeg = io.BytesIO()
    Image.fromarray(synth.skin_image(0, 2, 256)).save(jpeg, format="JPEG")
    cmyk = io.BytesIO()
    Image.fromarray(photo).convert("CMYK").save(cmyk, format="JPEG")
    files = {
        "a/b/c.jpg": _jpeg(photo),
        "with space/ünïcode é.png": _png(photo),
        "gray.png": _png(Image.fromarray(photo).convert("L")),
        "rgba.png": _png(Image.fromarray(photo).convert("RGBA")),
        "palette.png": _png(Image.fromarray(photo).convert("P")),
        "sixteen.png": _png(Image.fromarray((np.arange(64 * 48).reshape(48, 64) * 20).astype(np.uint16))),
        "cmyk.jpg": cmyk.getvalue(),
        "one.png": _png(np.full((1, 1, 3), 128, np.uint8)),
        "thin.png": _png(np.full((1, 300, 3), 90, np.uint8)),
        "zero.jpg": b"",
        "truncated.jpg": jpeg.getvalue()[: len(jpeg.getvalue()) // 2],
        "not_really.jpg": b"this is text, not a JPEG",
        "document.png": b"%PDF-1.4 not an image format we read",
        "bomb.png": _png(Image.new("L", (5000, 5000))),
        "notes.txt": b"notes",
        "table.csv": b"a,b\n1,2\n",
    }
    for key, data in files.items():
        path = root / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return files


def _jpeg(arr: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(arr).save(out, format="JPEG", quality=95)
    return out.getvalue()


EXPECTED = {"a/b/c.jpg": "ok", "with space/ünïcode é.png": "ok", "gray.png": "ok", "rgba.png": "ok",
            "palette.png": "ok", "sixteen.png": "ok", "cmyk.jpg": "ok", "one.png": "ok", "thin.png": "ok",
            "zero.jpg": "failed", "truncated.jpg": "failed", "not_really.jpg": "failed",
            "document.png": "failed", "bomb.png": "failed", "notes.txt": "not-image", "table.csv": "not-image"}


def test_folder_to_folder_reports_every_file(ray_local, model_dir, tmp_path):
    files = _archive(tmp_path / "in")
    cfg = EnhanceConfig(model=str(model_dir), input=str(tmp_path / "in"), output=str(tmp_path / "out"),
                        format="png", max_pixels=10_000_000, batch_size=4)
    summary = archive.run(cfg)
    report = {r["key"]: r for r in pq.read_table(summary.manifest_uri).to_pylist()}
    assert {k: r["status"] for k, r in report.items()} == EXPECTED
    assert "empty file" in report["zero.jpg"]["reason"]
    assert "exceeds the limit" in report["bomb.png"]["reason"]
    assert "cannot decode" in report["truncated.jpg"]["reason"]
    assert summary.counts == {"ok": 9, "skipped-existing": 0, "failed": 5, "not-image": 2}

    enhancer = Enhancer.from_checkpoint(str(model_dir), device="cpu")
    for key, status in EXPECTED.items():
        if status != "ok":
            continue
        out_key = archive.output_key(key, "png")
        assert report[key]["output_key"] == out_key
        written = images.decode((tmp_path / "out" / out_key).read_bytes())
        original = images.decode(files[key])
        assert written.shape == original.shape, f"{key}: same pixel size"
        np.testing.assert_array_equal(written, enhancer.enhance(original), err_msg=f"{key}: one predictor")

    again = archive.run(cfg)
    assert again.counts["skipped-existing"] == 9 and again.counts["ok"] == 0
    (tmp_path / "out" / "gray.png").write_bytes(b"half-written garbage")
    third = archive.run(cfg)
    assert third.counts["ok"] == 1 and third.counts["skipped-existing"] == 8, "an invalid output is redone"


def test_same_format_keeps_extensions_and_overwrite_redoes(ray_local, model_dir, tmp_path):
    synth.write_dataset(str(tmp_path / "in"), 3, size=48)
    cfg = EnhanceConfig(model=str(model_dir), input=str(tmp_path / "in"), output=str(tmp_path / "out"))
    assert archive.run(cfg).counts["ok"] == 3
    assert sorted(p.name for p in (tmp_path / "out").glob("*.jpg")) == [f"skin_0000{i}.jpg" for i in range(3)]
    redo = archive.run(EnhanceConfig(**{**cfg.__dict__, "overwrite": True}))
    assert redo.counts["ok"] == 3


def test_s3_to_s3_through_moto(ray_local, model_dir, s3, bucket):
    import boto3

    client = boto3.session.Session().client("s3", endpoint_url=s3.endpoint)
    for i in range(3):
        client.put_object(Bucket=bucket, Key=f"photos/p{i}.jpg", Body=_jpeg(synth.skin_image(1, i, 40)))
    client.put_object(Bucket=bucket, Key="photos/x/../../../escape.jpg", Body=_jpeg(synth.skin_image(1, 9, 40)))
    fs, prefix = storage.resolve(f"s3://{bucket}/model", s3)
    pafs.copy_files(str(model_dir), prefix, destination_filesystem=fs)
    cfg = EnhanceConfig(model=f"s3://{bucket}/model", input=f"s3://{bucket}/photos",
                        output=f"s3://{bucket}/enhanced", format="png")
    summary = archive.run(cfg, s3)
    report = {r["key"]: r for r in summary.rows}
    assert [report[f"p{i}.jpg"]["status"] for i in range(3)] == ["ok"] * 3
    assert report["x/../../../escape.jpg"]["status"] == "failed"
    assert "escape the output folder" in report["x/../../../escape.jpg"]["reason"]
    keys = sorted(o["Key"] for o in client.list_objects_v2(Bucket=bucket, Prefix="enhanced/")["Contents"])
    assert keys == ["enhanced/_skinray/manifest.parquet", "enhanced/_skinray/progress.json",
                    "enhanced/_skinray/summary.json", "enhanced/p0.png", "enhanced/p1.png", "enhanced/p2.png"]
    progress = json.loads(client.get_object(Bucket=bucket, Key="enhanced/_skinray/progress.json")["Body"].read())
    assert progress["finished"] and progress["total"] == 4 and progress["counts"]["ok"] == 3
    body = client.get_object(Bucket=bucket, Key="enhanced/p1.png")["Body"].read()
    assert images.decode(body).shape == (40, 40, 3)


def test_interrupted_run_resumes_without_duplicates(model_dir, tmp_path):
    synth.write_dataset(str(tmp_path / "in"), 150, size=96)
    out = tmp_path / "out"
    args = [sys.executable, "-m", "skinray.cli", "enhance", str(tmp_path / "in"), str(out),
            "--model", str(model_dir), "--batch-size", "1", "--format", "png"]
    log = open(tmp_path / "first.log", "w")
    first = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.time() + 300
    while time.time() < deadline and len(list(out.glob("*.png"))) < 5 and first.poll() is None:
        time.sleep(0.1)
    exited = first.poll()  # None: still running when killed, as intended
    os.killpg(first.pid, signal.SIGKILL)
    first.wait()
    done_before = len(list(out.glob("*.png")))
    log.close()
    printed = (tmp_path / "first.log").read_text()[-3000:]
    assert 0 < done_before < 150, f"killed mid-way; exited by itself with {exited}: {printed}"
    assert not (out / "_skinray" / "summary.json").exists()

    second = subprocess.run(args, capture_output=True, text=True, timeout=600)
    assert second.returncode == 0, second.stderr[-2000:]
    finals = sorted(p.name for p in out.glob("*.png"))
    assert finals == [f"skin_{i:05d}.png" for i in range(150)], "every image once, nothing extra"
    for path in out.glob("*.png"):
        images.decode(path.read_bytes())  # no partial file at a final key
    rows = pq.read_table(out / "_skinray" / "manifest.parquet").to_pylist()
    statuses = [r["status"] for r in rows]
    assert len(rows) == 150 and statuses.count("skipped-existing") >= done_before - 2
    assert set(statuses) <= {"ok", "skipped-existing"}
    assert "150 files" in second.stdout and "report" in second.stdout


# --- hostile folders (issue 15 cases 2-5 and 8) ------------------------------------------------

def _cli(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "skinray.cli", "enhance", *args], capture_output=True,
                          text=True, timeout=timeout)


def test_hostile_folder_every_entry_gets_a_row_and_the_job_goes_on(model_dir, tmp_path):
    """Case 4: a name with invalid UTF-8 bytes killed the job; case 5: 'loop -> .' made 246 rows
    (two loops: exponential), a dangling link got no row."""
    src, outside = tmp_path / "in", tmp_path / "outside"
    synth.write_dataset(str(src), 3, size=40)
    outside.mkdir()
    (outside / "secret.jpg").write_bytes(_jpeg(synth.skin_image(3, 3, 40)))
    with open(os.path.join(os.fsencode(src), b"bad\xff.jpg"), "wb") as handle:
        handle.write(_jpeg(synth.skin_image(3, 4, 40)))
    (src / "loop").symlink_to(".")
    (src / "loop2").symlink_to(".")
    (src / "dangling.jpg").symlink_to(tmp_path / "gone.jpg")
    (src / "secret.jpg").symlink_to(outside / "secret.jpg")
    out = tmp_path / "out"
    started = time.time()
    result = _cli(str(src), str(out), "--model", str(model_dir), "--format", "png")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Traceback" not in result.stderr and time.time() - started < 300
    rows = {r["key"]: r for r in pq.read_table(out / "_skinray" / "manifest.parquet").to_pylist()}
    assert sorted(rows) == ["bad\\xff.jpg", "dangling.jpg", "loop", "loop2", "secret.jpg",
                            "skin_00000.jpg", "skin_00001.jpg", "skin_00002.jpg"]
    assert [rows[f"skin_0000{i}.jpg"]["status"] for i in range(3)] == ["ok"] * 3
    for key, why in (("bad\\xff.jpg", "not valid UTF-8"), ("dangling.jpg", "dangling"),
                     ("loop", "not followed"), ("loop2", "not followed"), ("secret.jpg", "not followed")):
        assert rows[key]["status"] == "failed" and why in rows[key]["reason"], rows[key]
    assert sorted(p.name for p in out.iterdir()) == ["_skinray", "skin_00000.png", "skin_00001.png",
                                                     "skin_00002.png"], "nothing read through a link"

    followed = _cli(str(src), str(tmp_path / "out2"), "--model", str(model_dir), "--format", "png",
                    "--follow-symlinks")
    assert followed.returncode == 0, followed.stderr[-3000:]
    rows = {r["key"]: r for r in pq.read_table(tmp_path / "out2" / "_skinray" / "manifest.parquet").to_pylist()}
    assert len(rows) == 8 and rows["secret.jpg"]["status"] == "ok", rows["secret.jpg"]
    assert "loop" in rows["loop"]["reason"] and "loop" in rows["loop2"]["reason"]


@pytest.mark.parametrize("output", ["{in}/.", "{in}/sub", "{parent}", "{alias}"])
def test_output_among_the_originals_is_refused_by_the_cli(model_dir, tmp_path, output):
    """Case 3: output 'IN/.' with overwrite replaced every original; nested folders unchecked."""
    src = tmp_path / "archive" / "in"
    synth.write_dataset(str(src), 2, size=32)
    (tmp_path / "alias").symlink_to(src)
    before = {p.name: p.read_bytes() for p in src.iterdir()}
    out = output.format(**{"in": src, "parent": src.parent, "alias": tmp_path / "alias"})
    result = _cli(str(src), out, "--model", str(model_dir), "--overwrite", timeout=120)
    assert result.returncode == 2, result.stderr[-2000:]
    assert "outputs never go among the originals" in result.stderr
    assert {p.name: p.read_bytes() for p in src.iterdir()} == before


def test_overwrite_replaces_only_what_skinray_wrote(ray_local, model_dir, tmp_path):
    """Files already at output keys that no skinray run wrote are never replaced, with or
    without overwrite (a valid one is skipped, any other is a failed row); a symlink planted at
    an output key is not written through."""
    src, out, elsewhere = tmp_path / "in", tmp_path / "out", tmp_path / "elsewhere"
    synth.write_dataset(str(src), 4, size=40)
    out.mkdir()
    elsewhere.mkdir()
    theirs = _png(synth.skin_image(5, 5, 40))
    (out / "skin_00000.png").write_bytes(theirs)  # someone's valid image
    (out / "skin_00001.png").write_bytes(b"someone's notes")  # someone's file, not an image
    (elsewhere / "victim.png").write_bytes(b"victim")
    (out / "skin_00002.png").symlink_to(elsewhere / "victim.png")
    cfg = EnhanceConfig(model=str(model_dir), input=str(src), output=str(out), format="png")
    rows = {r["key"]: r for r in archive.run(cfg).rows}
    assert rows["skin_00000.jpg"]["status"] == "skipped-existing"
    assert rows["skin_00001.jpg"]["status"] == "failed" and "not replaced" in rows["skin_00001.jpg"]["reason"]
    assert rows["skin_00002.jpg"]["status"] == "failed" and "not replaced" in rows["skin_00002.jpg"]["reason"]
    assert rows["skin_00003.jpg"]["status"] == "ok" and rows["skin_00003.jpg"]["owned"]

    again = {r["key"]: r for r in archive.run(EnhanceConfig(**{**cfg.__dict__, "overwrite": True})).rows}
    for key in ("skin_00000.jpg", "skin_00001.jpg", "skin_00002.jpg"):
        assert again[key]["status"] == "failed" and "no earlier skinray run wrote it" in again[key]["reason"]
    assert again["skin_00003.jpg"]["status"] == "ok", "skinray's own output is redone"
    assert (out / "skin_00000.png").read_bytes() == theirs
    assert (out / "skin_00001.png").read_bytes() == b"someone's notes"
    assert (elsewhere / "victim.png").read_bytes() == b"victim" and (out / "skin_00002.png").is_symlink()
    third = {r["key"]: r for r in archive.run(EnhanceConfig(**{**cfg.__dict__, "overwrite": True})).rows}
    assert third["skin_00003.jpg"]["status"] == "ok", "ownership is carried from manifest to manifest"


def test_a_gpu_job_on_a_cluster_without_gpus_fails_after_a_bounded_wait(ray_local, model_dir, tmp_path):
    """Case 8: {"gpu": true} stayed RUNNING forever."""
    import ray

    from skinray.errors import SkinrayError

    assert ray.cluster_resources().get("GPU", 0) == 0
    synth.write_dataset(str(tmp_path / "in"), 1, size=32)
    cfg = EnhanceConfig(model=str(model_dir), input=str(tmp_path / "in"), output=str(tmp_path / "out"),
                        gpu=True, resource_wait_s=3)
    started = time.time()
    with pytest.raises(SkinrayError, match=r"need 1 GPU .* cluster has 0 GPU after waiting 3s"):
        archive.run(cfg)
    assert time.time() - started < 30
