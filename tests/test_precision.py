"""Inference precision (issue 11 item 4): one setting, implemented in the Enhancer; fp32 is the
arithmetic the Enhancer always had, bf16 runs on the CPU too, fp16 on the CPU is refused with
the flag named, before any work starts."""

import subprocess
import sys

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from skinray import checkpoint
from skinray.checkpoint import LoadedModel
from skinray.config import Config, EnhanceConfig, ModelConfig
from skinray.errors import ConfigError
from skinray.model import build_model
from skinray.predict import Enhancer, resolve_precision
from skinray.synth import skin_image

ARCHS = ["poster", "context", "affine", "lut"]


def _loaded(arch: str) -> LoadedModel:
    """A random-init model whose colour/detail heads are not the zero-initialised identity."""
    torch.manual_seed(0)
    cfg = Config(model=ModelConfig(arch=arch, width=8))
    model = build_model(cfg.model)
    with torch.no_grad():
        for p in model.parameters():
            if p.abs().sum() == 0:
                p.normal_(std=0.05)
    return LoadedModel(model.eval(), cfg, {})


def _plain_fp32(model: torch.nn.Module, image: np.ndarray) -> np.ndarray:
    """What the Enhancer computed before precisions existed: one float32 pass, round half up."""
    x = torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255.0
    with torch.no_grad():
        y = model(x)
    return y.clamp(0, 1).mul(255.0).add(0.5).to(torch.uint8)[0].permute(1, 2, 0).numpy()


@pytest.mark.parametrize("arch", ARCHS)
def test_fp32_and_cpu_auto_are_the_plain_float32_pass_bit_for_bit(arch):
    loaded = _loaded(arch)
    image = skin_image(0, 3, 96)[:80]  # (80, 96, 3)
    expected = _plain_fp32(loaded.model, image)
    for precision in ("fp32", "auto"):
        enhancer = Enhancer(loaded, "cpu", precision=precision)
        assert enhancer.precision == "fp32"
        np.testing.assert_array_equal(enhancer.enhance(image), expected)


def test_bf16_on_cpu_leaves_the_colour_only_bundled_model_as_in_fp32():
    """The bundled model on synthetic skin photos, whole (256 px) and large (1000x900): its colour
    path runs in float32 under any precision (a half-precision table moves pixels by a grey level)
    and it has no detail branch, so bf16 gives the fp32 bytes."""
    loaded = checkpoint.load("bundled")
    photos = [skin_image(0, i, 256) for i in range(3)]
    photos.append(np.kron(skin_image(0, 9, 250), np.ones((4, 4, 1), np.uint8))[:1000, :900])
    fp32 = Enhancer(loaded, "cpu", precision="fp32").enhance_batch(photos)
    bf16_enhancer = Enhancer(loaded, "cpu", precision="bf16")
    assert bf16_enhancer.precision == "fp32", "a light model's numbers are float32 (numpy) under any precision"
    bf16 = bf16_enhancer.enhance_batch(photos)
    assert loaded.config.model.width == 0
    for a, b in zip(fp32, bf16):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("arch", ["poster", "lut"])
def test_bf16_on_cpu_every_architecture_runs_close_to_fp32(arch):
    loaded = _loaded(arch)
    image = skin_image(0, 5, 128)
    fp32 = Enhancer(loaded, "cpu", precision="fp32").enhance(image)
    bf16 = Enhancer(loaded, "cpu", precision="bf16").enhance(image)
    assert np.abs(fp32.astype(int) - bf16).max() <= 3


def test_precision_rules_and_messages():
    assert resolve_precision("auto", torch.device("cpu")) == "fp32"
    assert resolve_precision("bf16", torch.device("cpu")) == "bf16"
    with pytest.raises(ConfigError, match=r"enhance.precision: fp16 needs a GPU"):
        resolve_precision("fp16", torch.device("cpu"))
    with pytest.raises(ConfigError, match=r"unknown 'fp8'; choose from \('auto', 'fp32', 'bf16', 'fp16'\)"):
        Enhancer(_loaded("poster"), "cpu", precision="fp8")
    with pytest.raises(ConfigError, match=r"enhance.precision: unknown 'half'"):
        EnhanceConfig(input="a", output="b", precision="half").validate()
    with pytest.raises(ConfigError, match=r"enhance.precision: fp16 needs a GPU \(enhance.gpu\)"):
        EnhanceConfig(input="a", output="b", precision="fp16").validate()
    EnhanceConfig(input="a", output="b", precision="fp16", gpu=True).validate()  # a GPU job may ask for it
    from skinray.serving import AppArgs

    assert AppArgs().precision == "auto"
    with pytest.raises(ValidationError, match="precision"):
        AppArgs(precision="fp8")


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "skinray.cli", *args], capture_output=True, text=True,
                          timeout=120)


@pytest.mark.integration  # runs the skinray command in a subprocess
def test_cli_names_the_precision_flag(tmp_path):
    result = _cli("enhance", str(tmp_path / "in"), str(tmp_path / "out"), "--precision", "fp16")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "skinray: error: --precision: fp16 needs a GPU (--gpu); on the CPU choose fp32 or bf16, or auto "
        "(enhance.precision)"]
    result = _cli("enhance", str(tmp_path / "in"), str(tmp_path / "out"), "--precision", "fp8")
    assert result.returncode == 2
    assert "--precision: invalid choice: 'fp8' (choose from 'auto', 'fp32', 'bf16', 'fp16')" in result.stderr
    result = _cli("enhance", str(tmp_path / "in"), str(tmp_path / "out"), "--set", "enhance.precision=fp8")
    assert result.returncode == 2
    assert "--precision: unknown 'fp8'; choose from ('auto', 'fp32', 'bf16', 'fp16') (enhance.precision)" \
        in result.stderr
    if not torch.cuda.is_available():
        for command in (["serve"], ["evaluate", "--model", "bundled", "--data", str(tmp_path)]):
            result = _cli(*command, "--precision", "fp16")
            assert result.returncode == 2, result.stderr
            assert result.stderr.startswith("skinray: error: --precision: fp16 needs a GPU (cuda or mps)")


@pytest.mark.integration  # runs the skinray command in a subprocess
def test_cli_enhance_bf16_writes_photos(tmp_path):
    from PIL import Image

    (tmp_path / "in").mkdir()
    Image.fromarray(skin_image(0, 1, 96)).save(tmp_path / "in" / "a.png")
    result = _cli("enhance", str(tmp_path / "in"), str(tmp_path / "out"), "--precision", "bf16", "--local")
    assert result.returncode == 0, result.stderr
    fp32 = Enhancer(checkpoint.load("bundled"), "cpu", precision="fp32").enhance(skin_image(0, 1, 96))
    written = np.asarray(Image.open(tmp_path / "out" / "a.png").convert("RGB"))
    assert written.shape == fp32.shape and np.abs(written.astype(int) - fp32).max() <= 2


@pytest.mark.parametrize("arch", ARCHS)
def test_channels_last_takes_every_architecture_and_keeps_its_output(arch):
    """CUDA inference and training convert the model to channels_last; Module.to refused the lut's
    5-D tables (a crash on the GPU path of the default recipe before model.channels_last)."""
    from skinray.model import channels_last

    loaded = _loaded(arch)
    x = torch.rand(2, 3, 40, 52)
    with torch.no_grad():
        expected = loaded.model(x)
        converted = channels_last(loaded.model)
        got = converted(x.contiguous(memory_format=torch.channels_last))
    assert any(p.is_contiguous(memory_format=torch.channels_last) and not p.is_contiguous()
               for p in converted.parameters() if p.dim() == 4)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)
