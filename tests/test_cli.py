"""The command line: user errors are one line and exit status 2, before any Ray work."""

import subprocess
import sys

import pytest

from skinray.cli import main

SKINRAY = [sys.executable, "-m", "skinray.cli"]


def _run(*args, timeout=120):
    return subprocess.run([*SKINRAY, *args], capture_output=True, text=True, timeout=timeout)


@pytest.mark.integration  # runs the skinray command in a subprocess
@pytest.mark.parametrize("flags, message", [
    (["--lr", "-1"], "--lr: must be > 0, got -1.0 (train.lr)"),
    (["--loss", "mse"], "argument --loss: invalid choice: 'mse'"),
    (["--set", "degrade.jitter_fraction=2"], "degrade.jitter_fraction"),
    (["--image-size", "8", "--loss", "ssim"], "SSIM window"),
])
def test_invalid_config_is_rejected_before_ray_starts(flags, message, tmp_path):
    # The command's own process says whether it imported Ray at all (a local Ray starts in-process).
    code = ("import sys, skinray.cli as c\n"
            "try:\n    rc = c.main(sys.argv[1:])\nexcept SystemExit as exc:\n    rc = exc.code\n"
            "print('ray imported:', 'ray' in sys.modules, file=sys.stderr)\nsys.exit(rc)")
    result = subprocess.run([sys.executable, "-c", code, "train", "--data", str(tmp_path), *flags],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr
    assert "ray imported: False" in result.stderr, result.stderr


@pytest.mark.integration  # runs the skinray command in a subprocess
def test_missing_folder_is_one_line(tmp_path):
    result = _run("train", "--data", str(tmp_path / "nowhere"), "--epochs", "1")
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "nowhere: no such folder" in result.stderr


@pytest.mark.integration  # runs the skinray command in a subprocess
def test_empty_dataset_says_what_to_do(tmp_path):
    (tmp_path / "readme.txt").write_text("no images here")
    result = _run("train", "--data", str(tmp_path), "--epochs", "1")
    assert result.returncode == 2 and "found 0 training and 0 validation images" in result.stderr


@pytest.mark.integration  # runs the skinray command in a subprocess
def test_missing_bucket_is_one_line(s3_endpoint, aws_env):
    result = _run("train", "--data", "s3://no-such-bucket/images", "--s3-endpoint", s3_endpoint)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "s3://no-such-bucket/images: the bucket does not exist" in result.stderr


@pytest.mark.integration  # runs the skinray command in a subprocess
def test_synth_then_ingest_writes_a_manifest(tmp_path):
    assert _run("synth", str(tmp_path / "imgs"), "--count", "12", "--size", "32").returncode == 0
    (tmp_path / "imgs" / "broken.jpg").write_bytes(b"\xff\xd8 nope")
    result = _run("ingest", str(tmp_path / "imgs"), "--out", str(tmp_path / "m.parquet"), "--val-fraction", "0.3")
    assert result.returncode == 0, result.stderr
    assert "1 unreadable skipped" in result.stdout and "broken.jpg" in result.stderr
    import pyarrow.parquet as pq
    table = pq.read_table(tmp_path / "m.parquet")
    assert table.num_rows == 12 and set(table["split"].to_pylist()) == {"train", "val"}


def test_serve_refuses_an_open_public_endpoint_and_an_empty_key_file(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("SKINRAY_API_KEY", raising=False)
    assert main(["serve", "--model", str(tmp_path), "--host", "0.0.0.0"]) == 2
    assert "without an API key" in capsys.readouterr().err
    (tmp_path / "key").write_text("\n")
    assert main(["serve", "--model", str(tmp_path), "--api-key-file", str(tmp_path / "key")]) == 2
    assert "is empty" in capsys.readouterr().err


# --- rough edges a new user hits (issue 11 item 7) --------------------------------------------

def test_version(capsys):
    from skinray import __version__

    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0 and capsys.readouterr().out.strip() == f"skinray {__version__}"


@pytest.mark.parametrize("command, shown", [
    ("train", ["{ssim,mae,psnr,mae+ssim}", "(default psnr)", "(default 100)", "(default 0.002, cosine"]),
    ("enhance", ["{same,png,jpeg,jpg}", "(default same)", "--tile TILE", "(default 512)", "--tile-margin",
                 "--strip-metadata", "--local", "--ray "]),
    ("evaluate", ["{val,test,train,all}", "(default: 1234)", "(default: val)"]),
    ("serve", ["(default: 8000)"]),
])
def test_help_lists_choices_and_defaults(command, shown, capsys):
    from skinray.cli import build_parser

    with pytest.raises(SystemExit):
        build_parser().parse_args([command, "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for item in shown:
        assert item in text, item
    assert "(default: None)" not in text and "(default: False)" not in text


@pytest.mark.parametrize("flags, message", [
    ([], "the INPUT argument is required (enhance.input)"),
    (["IN"], "the OUTPUT argument is required (enhance.output)"),
    (["IN", "OUT", "--quality", "0"], "--quality: must be in [1, 100], got 0 (enhance.quality)"),
    (["IN", "OUT", "--tile", "40"], "--tile: must exceed twice --tile-margin, got 40 and 32 (enhance.tile)"),
    (["IN", "OUT", "--model", ""], "--model is required (enhance.model)"),
])
def test_enhance_errors_name_the_flag_the_user_typed(flags, message, capsys):
    assert main(["enhance", *flags]) == 2
    assert f"skinray: error: {message}" in capsys.readouterr().err


def test_jpg_is_jpeg_everywhere(tmp_path):
    from skinray import archive
    from skinray.cli import build_parser
    from skinray.config import EnhanceConfig, JobConfig, load_config
    from skinray.serving import BatchRequest

    assert build_parser().parse_args(["enhance", "a", "b", "--format", "JPG"]).format == "jpg"
    assert EnhanceConfig(format="jpg").format == "jpeg" and EnhanceConfig(format="JPEG").format == "jpeg"
    (tmp_path / "c.yaml").write_text("enhance: {format: jpg, input: a, output: b}\n")
    assert load_config(tmp_path / "c.yaml", root=JobConfig).enhance.format == "jpeg"
    cfg = load_config(None, {"enhance.format": "jpg", "enhance.input": "a", "enhance.output": "b"},
                      root=JobConfig).enhance
    assert archive.output_key("x/photo.png", cfg.format) == "x/photo.jpg"
    job = BatchRequest(input="a", output="b", format="jpg")
    assert EnhanceConfig(input=job.input, output=job.output, format=job.format).format == "jpeg"


def test_tile_flags_reach_the_config(monkeypatch, tmp_path):
    from skinray import archive

    seen = {}

    def fake_run(cfg, s3=None, ray_address=None, execution="ray", **_):
        seen.update(tile=cfg.tile, margin=cfg.tile_margin, execution=execution, strip=cfg.strip_metadata)
        raise SystemExit(0)

    monkeypatch.setattr(archive, "run", fake_run)
    with pytest.raises(SystemExit):
        main(["enhance", str(tmp_path / "a"), str(tmp_path / "b"), "--tile", "384", "--tile-margin", "16",
              "--strip-metadata", "--local"])
    assert seen == {"tile": 384, "margin": 16, "execution": "local", "strip": True}
    with pytest.raises(SystemExit):
        main(["enhance", str(tmp_path / "a"), str(tmp_path / "b")])
    assert seen["execution"] == "auto" and seen["strip"] is False


def test_a_reader_that_leaves_early_gets_no_traceback():
    """`skinray info bundled --json | head -1`: the pipe closes before skinray writes; it stops
    quietly with 141 (128 + SIGPIPE, as shell tools do) instead of a BrokenPipeError traceback."""
    process = subprocess.Popen([*SKINRAY, "info", "bundled", "--json"], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE)
    process.stdout.close()
    err = process.stderr.read().decode()
    process.stderr.close()
    assert process.wait(timeout=120) == 141 and "Traceback" not in err, err
