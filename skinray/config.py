"""The one configuration system: frozen dataclasses, filled from YAML files and CLI overrides.

A config file mirrors the dataclasses, one section per field of :class:`Config`::

    data:    {source: s3://bucket/isic, image_size: 128}
    train:   {epochs: 100, lr: 0.002, workers: 2}

Overrides are dotted keys (``train.lr=0.001``). Every value is checked before any Ray work
starts; an error names the file and the dotted key.
"""

from __future__ import annotations

import dataclasses
import reprlib
import typing
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Mapping

import yaml

from skinray.errors import ConfigError

LOSSES = ("ssim", "mae", "psnr", "mae+ssim")
LR_SCHEDULES = ("constant", "cosine")
SKIPS = ("concat", "add", "none")
ARCHS = ("poster", "context", "affine", "lut", "light")
RESUME_MODES = ("auto", "force")
SPLIT_BY = ("auto", "folder", "hash")  # data.split_by: how photos are split (skinray/ingest.py)
TASKS = ("", "attributes", "segmentation")  # model.task: "" the enhancer, else a downstream model
SSIM_WINDOW = 11  # pytorch-msssim's default Gaussian window, in pixels


def _require(ok: bool, key: str, message: str) -> None:
    if not ok:
        raise ConfigError(f"{key}: {message}")


@dataclass(frozen=True)
class StorageConfig:
    """Where S3 URIs point. ``None`` means the standard AWS environment variables decide."""

    s3_endpoint: str | None = None  # e.g. http://127.0.0.1:9000 for MinIO; else AWS_ENDPOINT_URL(_S3)
    s3_region: str | None = None  # else AWS_REGION / AWS_DEFAULT_REGION, the AWS profile, the bucket (storage.py)

    def validate(self) -> None:
        if self.s3_endpoint is not None:
            _require(
                self.s3_endpoint.startswith(("http://", "https://")),
                "storage.s3_endpoint",
                f"must start with http:// or https://, got {self.s3_endpoint!r}",
            )


@dataclass(frozen=True)
class DataConfig:
    """Training images: a folder/prefix URI or a manifest (.parquet) written by ``skinray ingest``."""

    source: str = "data/synth"
    val_fraction: float = 0.3  # share of keys that go to validation (a hash of the key decides)
    image_size: int = 128  # training crops are image_size x image_size pixels
    seed: int = 0  # split and validation-degradation seed
    # A test split never trained on nor used to pick a model: with split_by auto, photos under a
    # top-level train/, val/ or test/ folder take that split (the ISIC copy's layout), the others a
    # hash of (seed, group): test_fraction of them test, val_fraction val. split_by hash: the hash
    # for all; folder: the folders for all (a photo outside them is an error). skinray/ingest.py.
    test_fraction: float = 0.0
    split_by: str = "auto"  # auto | folder | hash
    # Synthetic photos mixed into training (a folder/prefix of `skinray synth` photos; "" = none):
    # synthetic_share of each epoch's training pairs come from it, the rest are data.source's
    # train split; validation stays on data.source's val split (skinray/data.py).
    synthetic: str = ""
    synthetic_share: float = 0.25

    def validate(self) -> None:
        _require(bool(self.source), "data.source", "must name a folder, bucket prefix or manifest")
        _require(0.0 < self.val_fraction < 1.0, "data.val_fraction",
                 f"must be in (0, 1), got {self.val_fraction}")
        _require(0.0 <= self.test_fraction < 1.0 - self.val_fraction, "data.test_fraction",
                 f"must be in [0, 1 - val_fraction), got {self.test_fraction} (val_fraction {self.val_fraction})")
        _require(self.split_by in SPLIT_BY, "data.split_by", f"unknown {self.split_by!r}; choose from {SPLIT_BY}")
        _require(0.0 <= self.synthetic_share < 1.0, "data.synthetic_share",
                 f"must be in [0, 1) (the share of training pairs from data.synthetic), got {self.synthetic_share}")
        _require(self.image_size >= 8, "data.image_size",
                 f"must be >= 8 pixels, got {self.image_size}")


@dataclass(frozen=True)
class DegradeConfig:
    """Synthetic degradations applied to good photos (see :mod:`skinray.degrade`).

    A training pair is left exactly clean with probability ``clean_fraction``; every other pair
    draws each fault independently with its own probability: colour faults, then the down-up
    blur, sensor noise and JPEG recompression. The defaults are the v3 recipe, physically based:
    the light (an illuminant on or off the black-body locus, seen by a camera white-balanced for
    6500 K, in linear light) and an exposure error drawn only where the photo shows it.
    :data:`V2_DEGRADE` is the previous mix (casts, exposure and gamma on encoded values, the
    poster's jitter); :data:`POSTER_DEGRADE` the poster's (jitter on 60%, always the box/bicubic
    down-up blur, nothing else)."""

    clean_fraction: float = 0.4  # share of pairs left untouched (input == target, bit-exact)
    # Good photos vary: each training photo's white balance, exposure and saturation are varied
    # by up to this much (degrade.vary_uint8) before degrading, in input and target alike. Real
    # photos vary of themselves: 0 in the v3 recipe (0.2 in v2, for synthetic skin).
    natural_variation: float = 0.0
    # Skin tones (degrade.vary_tone_uint8): a share tone_prob of the training photos is shown as
    # the same lesion on darker skin (more melanin, optical depth uniform in [0, tone_depth];
    # 0.7 takes very light skin to about brown) before degrading, in input and target alike, so
    # the model learns that darker skin is no cast (0 in v2 and the poster's recipe).
    tone_prob: float = 0.5
    tone_depth: float = 0.9
    # v3 light (degrade.relight): a share of the non-clean pairs re-lit by a black-body
    # illuminant uniform in mired between kelvin_min and kelvin_max, its green gain times
    # exp(u), u uniform in [-tint, tint], seen by a camera white-balanced for 6500 K
    light_prob: float = 0.8
    kelvin_min: float = 2700.0
    kelvin_max: float = 10000.0
    tint: float = 0.06
    # v3 exposure error, in linear light, drawn only where the photo shows it (degrade._exposure_draws):
    # under-exposure (a share under_share of these) pushes the 99th-percentile luminance below
    # dark_p99, over-exposure the median above bright_p50, then up to ev_extra stops further
    # (at most ev_max). Good ISIC photos: p99 >= 0.30 in 99%, median <= 0.80 in 99%.
    exposure_error_prob: float = 0.25
    under_share: float = 0.6
    dark_p99: float = 0.25
    bright_p50: float = 0.8
    ev_extra: float = 1.0
    ev_max: float = 3.0
    # colour jitter, torchvision ColorJitter (the poster's): a share of the non-clean pairs
    jitter_fraction: float = 0.0
    brightness: float = 0.6  # factor drawn from [max(0, 1 - b), 1 + b]
    contrast: float = 0.5  # factor drawn from [max(0, 1 - c), 1 + c]
    saturation: float = 0.5  # factor drawn from [max(0, 1 - s), 1 + s]
    hue: float = 0.05  # shift drawn from [-h, h] turns of the HSV colour wheel
    # white-balance cast: R and B gains log-uniform in [1/(1+wb), 1+wb] relative to G,
    # then scaled so a grey pixel keeps its luma
    wb_prob: float = 0.0
    wb: float = 0.25
    # exposure and tone curve: out = clip(in * 2**u) ** g, u uniform in [-exposure, exposure]
    # stops, g log-uniform in [1/(1+gamma), 1+gamma]
    exposure_prob: float = 0.0
    exposure: float = 0.5
    gamma: float = 0.3
    # down-then-up resize blur (a low-resolution or out-of-focus camera)
    blur_prob: float = 0.3
    scale_min: float = 1.25  # downscale factor range (1 = no blur)
    scale_max: float = 3.0
    random_kernels: bool = True  # resampling kernels drawn per image; else box down, bicubic up
    # JPEG recompression (Pillow, 4:2:0 chroma subsampling), quality uniform in [min, max]
    jpeg_prob: float = 0.3
    jpeg_quality_min: int = 30
    jpeg_quality_max: int = 95
    # sensor noise: gaussian, sigma uniform in [noise_max / 4, noise_max]
    noise_prob: float = 0.2
    noise_max: float = 0.015

    def validate(self) -> None:
        for name in ("clean_fraction", "light_prob", "exposure_error_prob", "under_share", "jitter_fraction",
                     "wb_prob", "exposure_prob", "blur_prob", "jpeg_prob", "noise_prob", "tone_prob"):
            value = getattr(self, name)
            _require(0.0 <= value <= 1.0, f"degrade.{name}", f"must be in [0, 1], got {value}")
        for name in ("brightness", "contrast", "saturation"):
            value = getattr(self, name)
            _require(0.0 <= value < 1.0, f"degrade.{name}", f"must be in [0, 1), got {value}")
        _require(1667.0 <= self.kelvin_min <= self.kelvin_max <= 25000.0, "degrade.kelvin_min",
                 f"need 1667 <= kelvin_min <= kelvin_max <= 25000 K, got {self.kelvin_min} and {self.kelvin_max}")
        _require(0.0 <= self.tint <= 0.5, "degrade.tint", f"must be in [0, 0.5], got {self.tint}")
        for name in ("dark_p99", "bright_p50"):
            value = getattr(self, name)
            _require(0.0 < value < 1.0, f"degrade.{name}", f"must be in (0, 1) (linear luminance), got {value}")
        _require(0.0 <= self.ev_extra <= self.ev_max <= 6.0, "degrade.ev_extra",
                 f"need 0 <= ev_extra <= ev_max <= 6 stops, got {self.ev_extra} and {self.ev_max}")
        _require(0.0 <= self.natural_variation <= 0.5, "degrade.natural_variation",
                 f"must be in [0, 0.5], got {self.natural_variation}")
        _require(0.0 <= self.tone_depth <= 2.0, "degrade.tone_depth",
                 f"must be in [0, 2] (optical depth of melanin added), got {self.tone_depth}")
        _require(0.0 <= self.hue <= 0.5, "degrade.hue", f"must be in [0, 0.5], got {self.hue}")
        _require(0.0 <= self.wb <= 1.0, "degrade.wb", f"must be in [0, 1], got {self.wb}")
        _require(0.0 <= self.exposure <= 3.0, "degrade.exposure",
                 f"must be in [0, 3] stops, got {self.exposure}")
        _require(0.0 <= self.gamma <= 1.0, "degrade.gamma", f"must be in [0, 1], got {self.gamma}")
        _require(1.0 <= self.scale_min <= self.scale_max, "degrade.scale_min",
                 f"need 1 <= scale_min <= scale_max, got {self.scale_min} and {self.scale_max}")
        _require(1 <= self.jpeg_quality_min <= self.jpeg_quality_max <= 100, "degrade.jpeg_quality_min",
                 f"need 1 <= jpeg_quality_min <= jpeg_quality_max <= 100, got {self.jpeg_quality_min} "
                 f"and {self.jpeg_quality_max}")
        _require(0.0 <= self.noise_max <= 0.2, "degrade.noise_max",
                 f"must be in [0, 0.2], got {self.noise_max}")


# The v2 degradations (the default until model v3): 20% clean, good photos varied a little, the
# poster's jitter on 60% of the others, casts and exposure + gamma on encoded values, more blur.
V2_DEGRADE = DegradeConfig(
    clean_fraction=0.2, natural_variation=0.2, tone_prob=0.0, light_prob=0.0, exposure_error_prob=0.0,
    jitter_fraction=0.6, wb_prob=0.3, exposure_prob=0.3, blur_prob=0.7,
)

# The poster's degradations: torchvision ColorJitter on 60% of images, always the box-down /
# bicubic-up blur by 1.5-3x, no clean share and no other fault. jobs/configs/poster.yaml uses it.
POSTER_DEGRADE = DegradeConfig(
    clean_fraction=0.0, natural_variation=0.0, tone_prob=0.0, light_prob=0.0, exposure_error_prob=0.0,
    jitter_fraction=0.6, brightness=0.6, contrast=0.5, saturation=0.5, hue=0.05,
    wb_prob=0.0, exposure_prob=0.0,
    blur_prob=1.0, scale_min=1.5, scale_max=3.0, random_kernels=False,
    jpeg_prob=0.0, noise_prob=0.0,
)


@dataclass(frozen=True)
class ModelConfig:
    """The network (:mod:`skinray.model`). ``light`` (default, model v3): one global photographic
    correction per photo (linear-light white-balance gains and exposure, scaled by a predicted
    confidence) from a whole-image thumbnail; ``thumbnail`` and ``dropout`` apply, the other keys
    are the other architectures'. ``lut`` (the default until v3): an image-adaptive colour lookup
    (curves + 3x4 + 3-D table predicted from a whole-image thumbnail), with an optional detail
    branch (``width`` > 0; off by default: it measured no gain on camera faults at three times the
    cost per pixel, docs/models.md). ``poster``: the poster's autoencoder (with ``width`` 32,
    ``depth`` 4, ``dropout`` 0.15 and concat skips: jobs/configs/poster.yaml); ``context`` adds a
    global context vector and an identity residual output, ``affine`` a per-image 3x4 colour
    transform on top."""

    arch: str = "light"  # light (default, model v3) | lut | poster | context | affine
    # Channels of the first layer, doubled deeper; lut: of its detail branch at 1/4 resolution,
    # 0 = off. Not given: the architecture's default, lut 0 and the others 32.
    width: int | None = None
    depth: int = 4  # conv layers, even: half encoder, half decoder (lut: 2x the detail blocks at 1/4 res)
    dropout: float = 0.15
    skip: str = "concat"  # encoder-to-decoder skip style: concat | add | none
    lut_size: int = 17  # lut: lattice points per axis of the 3-D colour table
    lut_bases: int = 8  # lut: learned basis tables mixed per image
    curve_points: int = 32  # lut: samples of each per-channel 1-D curve
    thumbnail: int = 64  # lut: side of the whole-image thumbnail the colour head sees
    # "" (default): the enhancer named by arch. attributes | segmentation: a downstream model
    # (skinray/downstream.py: an attribute classifier, a lesion segmenter; width 0 = 16, dropout applies)
    task: str = ""

    def __post_init__(self) -> None:
        if self.width is None:
            object.__setattr__(self, "width", 0 if self.arch in ("lut", "light") else 32)

    def validate(self) -> None:
        _require(self.arch in ARCHS, "model.arch", f"unknown {self.arch!r}; choose from {ARCHS}")
        _require(self.depth >= 2 and self.depth % 2 == 0, "model.depth",
                 f"must be an even number >= 2, got {self.depth}")
        _require(0.0 <= self.dropout < 1.0, "model.dropout", f"must be in [0, 1), got {self.dropout}")
        _require(self.skip in SKIPS, "model.skip", f"unknown {self.skip!r}; choose from {SKIPS}")
        _require(self.width >= (0 if self.arch in ("lut", "light") else 1), "model.width",
                 f"must be >= 1 for arch {self.arch} (32 is its usual width), got {self.width}"
                 if self.arch not in ("lut", "light") else f"must be >= 0 (0: no detail branch), got {self.width}")
        _require(2 <= self.lut_size <= 65, "model.lut_size", f"must be in [2, 65], got {self.lut_size}")
        # Upper bounds: a config (a checkpoint's skinray.json too) is checked before anything is
        # built, so lut_bases=1e8 is this message, not a 51 GB allocation.
        _require(self.depth <= 16, "model.depth", f"must be at most 16, got {self.depth}")
        _require(self.width <= 512, "model.width", f"must be at most 512, got {self.width}")
        _require(self.lut_bases <= 256, "model.lut_bases", f"must be in [1, 256], got {self.lut_bases}")
        _require(self.curve_points <= 1024, "model.curve_points", f"must be in [2, 1024], got {self.curve_points}")
        _require(self.thumbnail <= 1024, "model.thumbnail", f"must be in [32, 1024] pixels, got {self.thumbnail}")
        _require(self.lut_bases >= 1, "model.lut_bases", f"must be >= 1, got {self.lut_bases}")
        _require(self.curve_points >= 2, "model.curve_points", f"must be >= 2, got {self.curve_points}")
        _require(self.thumbnail >= 32, "model.thumbnail", f"must be >= 32 pixels, got {self.thumbnail}")
        _require(self.task in TASKS, "model.task", f"unknown {self.task!r}; choose from {TASKS}")


# The poster's network (jobs/configs/poster.yaml): 4 conv layers, dropout 0.15, concat skips.
POSTER_MODEL = ModelConfig(arch="poster", width=32, depth=4, dropout=0.15, skip="concat")


@dataclass(frozen=True)
class TrainConfig:
    """Ray Train run. The poster's 100 epochs, lr 0.002 and batch 16, with the recommended PSNR
    loss and cosine schedule (the poster's SSIM loss and constant rate: jobs/configs/poster.yaml)."""

    name: str = "skinray"  # run name; re-running with the same name and storage resumes
    storage: str = "runs"  # URI where checkpoints go (local folder or s3://bucket/prefix)
    epochs: int = 100
    batch_size: int = 16  # per worker
    lr: float = 0.002
    lr_schedule: str = "cosine"  # cosine (decays to 0 over the epochs) | constant (the poster's)
    loss: str = "psnr"  # psnr (per-image, the evaluation's mean) | mae | ssim (the poster's) | mae+ssim
    ssim_weight: float = 0.84  # for mae+ssim: w * (1 - SSIM) + (1 - w) * MAE
    workers: int = 1
    gpu: bool = False
    cpus_per_worker: float = 1.0
    keep: int = 3  # best-k checkpoints kept (by validation loss)
    max_failures: int = 3  # worker failures survived by restarting from the latest checkpoint
    mixed_precision: bool = True  # bf16 autocast + channels_last, on GPU only
    init: str = ""  # start from this checkpoint's weights (same model config), e.g. bundled; "" = random
    # A re-run with the same name and storage resumes from the run's latest checkpoint. auto: only
    # if the model config, the data (fingerprint and split) and the degradations match the stored
    # run, else stop before training and say what differs (epochs and lr may change: more epochs
    # continue the run). force: resume even if the data or degradations differ (a different model
    # cannot load the stored weights: use another name).
    resume: str = "auto"  # auto | force
    # The poster's "classifier on top": task_weight x a consistency term of frozen downstream
    # models (task_model: their checkpoints, comma-separated) between the enhanced degraded photo
    # and the clean one, added to the enhancer's loss (skinray/downstream.py TaskLoss). 0 = off.
    task_weight: float = 0.0
    task_model: str = ""

    def validate(self) -> None:
        _require(bool(self.name) and "/" not in self.name, "train.name",
                 f"must be a non-empty name without '/', got {self.name!r}")
        _require(bool(self.storage), "train.storage", "must name a folder or bucket prefix")
        _require(self.epochs >= 1, "train.epochs", f"must be >= 1, got {self.epochs}")
        _require(self.batch_size >= 1, "train.batch_size", f"must be >= 1, got {self.batch_size}")
        _require(self.lr > 0, "train.lr", f"must be > 0, got {self.lr}")
        _require(self.lr_schedule in LR_SCHEDULES, "train.lr_schedule",
                 f"unknown {self.lr_schedule!r}; choose from {LR_SCHEDULES}")
        _require(self.loss in LOSSES, "train.loss", f"unknown {self.loss!r}; choose from {LOSSES}")
        _require(0.0 <= self.ssim_weight <= 1.0, "train.ssim_weight",
                 f"must be in [0, 1], got {self.ssim_weight}")
        _require(self.workers >= 1, "train.workers", f"must be >= 1, got {self.workers}")
        _require(self.cpus_per_worker > 0, "train.cpus_per_worker",
                 f"must be > 0, got {self.cpus_per_worker}")
        _require(self.keep >= 1, "train.keep", f"must be >= 1, got {self.keep}")
        _require(self.max_failures >= -1, "train.max_failures",
                 f"must be >= -1 (-1 = unlimited), got {self.max_failures}")
        _require(self.resume in RESUME_MODES, "train.resume",
                 f"unknown {self.resume!r}; choose from {RESUME_MODES}")
        _require(self.task_weight >= 0, "train.task_weight", f"must be >= 0, got {self.task_weight}")
        _require(self.task_weight == 0 or bool(self.task_model.strip(",")), "train.task_model",
                 "must name a downstream checkpoint (skinray train --set model.task=...) when "
                 "train.task_weight > 0")


OUTPUT_FORMATS = ("same", "png", "jpeg")
# Inference arithmetic (skinray.predict.Enhancer): auto = bf16 (fp16 where the GPU lacks bf16)
# with channels_last on CUDA, fp32 on the CPU; bf16 also runs on the CPU, fp16 needs a GPU.
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
# One constant each, used by the archive job, the endpoint and the Enhancer.
MAX_PIXELS = 100_000_000  # decompression-bomb guard: larger images are refused before decoding
TILE = 512  # pixels per side of the window fed to the model; larger photos are enhanced in tiles
TILE_MARGIN = 32  # context pixels around each kept tile; >= the model's receptive radius
# The archive job's batches stop at enhance.batch_size files or at this many bytes of input files,
# whichever comes first: small photos share a call (per-batch overhead was 15% of a 256 px job in
# batches of 8), a few large ones fill a batch (memory: about 8 MiB of JPEG is 30-100 MP decoded).
BATCH_BYTES = 8 << 20
DEVICES = ("auto", "cpu", "cuda", "mps")  # auto: cuda, else mps, else cpu


def _option(default: Any, help: str, choices: tuple[str, ...] | None = None) -> Any:
    """A field with its one description: the CLI derives its flag (help, choices) from it and the
    endpoint its request body (:data:`skinray.serving.BatchRequest`)."""
    return field(default=default, metadata={"help": help, "choices": choices})


@dataclass(frozen=True)
class EnhanceConfig:
    """Archive enhancement job (``skinray enhance`` / ``jobs/enhance.py`` / ``POST /v1/batch``).

    The one declaration of the job's options: ``skinray enhance``'s flags and the endpoint's
    request body are built from these fields (their help and choices too)."""

    model: str = _option("bundled", "checkpoint: a run folder (loads its best), a checkpoint folder, or "
                                    "'bundled', the model shipped with skinray")
    input: str = _option("", "folder or s3://bucket/prefix of photos")
    output: str = _option("", "folder or s3://bucket/prefix for the enhanced photos; keys keep their "
                              "relative paths")
    format: str = _option("same", "output format; same keeps the input's (HEIC/AVIF become JPEG), jpg = jpeg",
                          choices=OUTPUT_FORMATS)
    quality: int = _option(95, "JPEG quality")
    overwrite: bool = _option(False, "redo outputs that already exist (only files an earlier skinray run "
                                     "wrote); else outputs that exist and decode are skipped (resume)")
    workers: int = _option(1, "model actors, each holding one model (with gpu: one GPU each); CPU jobs run "
                                 "at least this many, one per free core")
    gpu: bool = _option(False, "one GPU per model actor")
    batch_size: int = _option(64, f"most files per batch (a batch also stops at {BATCH_BYTES >> 20} MiB of "
                                  f"input files)")
    max_pixels: int = _option(MAX_PIXELS, "refuse larger images before decoding "
                                                         "(decompression bombs)")
    tile: int = _option(TILE, "larger photos are enhanced in overlapping tiles of this many pixels a side")
    tile_margin: int = _option(TILE_MARGIN, "context pixels around each tile")
    follow_symlinks: bool = _option(False, "list and read through symbolic links (loops detected); "
                                           "else a link is a failed row")
    resource_wait_s: float = _option(300.0, "seconds to wait for the CPUs/GPUs the model actors need, then fail")
    strip_metadata: bool = _option(False, "write outputs without the input's EXIF (else kept, orientation "
                                          "reset to 1)")
    precision: str = _option("auto", "inference arithmetic: auto = bf16 (fp16 where unsupported) with "
                                     "channels_last on a GPU, fp32 on the CPU; bf16 also runs on the CPU, "
                                     "fp16 needs a GPU", choices=PRECISIONS)

    def __post_init__(self) -> None:  # 'jpg' is 'jpeg' wherever a format is given (CLI, YAML, endpoint)
        if isinstance(self.format, str):
            object.__setattr__(self, "format", {"jpg": "jpeg"}.get(self.format.lower(), self.format.lower()))

    def validate(self) -> None:
        for name in ("model", "input", "output"):
            _require(bool(getattr(self, name)), f"enhance.{name}", "is required")
        _require(self.format in OUTPUT_FORMATS, "enhance.format",
                 f"unknown {self.format!r}; choose from {OUTPUT_FORMATS}")
        _require(1 <= self.quality <= 100, "enhance.quality", f"must be in [1, 100], got {self.quality}")
        _require(self.workers >= 1, "enhance.workers", f"must be >= 1, got {self.workers}")
        _require(self.batch_size >= 1, "enhance.batch_size", f"must be >= 1, got {self.batch_size}")
        _require(self.max_pixels >= 1, "enhance.max_pixels", f"must be >= 1, got {self.max_pixels}")
        _require(self.tile > 2 * self.tile_margin >= 0, "enhance.tile",
                 f"must exceed twice enhance.tile_margin, got {self.tile} and {self.tile_margin}")
        _require(self.resource_wait_s > 0, "enhance.resource_wait_s", f"must be > 0, got {self.resource_wait_s}")
        _require(self.precision in PRECISIONS, "enhance.precision",
                 f"unknown {self.precision!r}; choose from {PRECISIONS}")
        _require(self.precision != "fp16" or self.gpu, "enhance.precision",
                 "fp16 needs a GPU (enhance.gpu); on the CPU choose fp32 or bf16, or auto")
        _require(self.input.rstrip("/") != self.output.rstrip("/"), "enhance.output",
                 "must differ from enhance.input (outputs never overwrite the originals; the job also "
                 "refuses an output inside or containing the input, after resolving links)")


@dataclass(frozen=True)
class AssessConfig:
    """Photo triage thresholds (:mod:`skinray.assess`): a photo is ``retake`` for any reason below,
    else ``corrected`` when skinray changed it by ``change`` or more, else ``good``."""

    min_side: int = _option(64, "photos with a shorter side (pixels) are retake (too-small)")
    # 3.0: with the noise floor and JPEG block edges discounted (and the factor interpolated), 95.5%
    # of 200 good ISIC val photos at 512 px get no retake reason with 3.0, 84% with 2.75 (docs/figures.md)
    blur_factor: float = _option(3.0, "retake (blurred) from this effective down-up factor (1 = sharp)")
    clipped: float = _option(0.05, "retake (overexposed / underexposed) from this share of the skin "
                                   "clipped in highlights / shadows")
    noise: float = _option(10.0, "retake (noisy) from this noise sigma of the luma, 8-bit levels")
    change: float = _option(1.0, "corrected from this mean CIEDE2000 of the output against the input")

    def validate(self) -> None:
        _require(self.min_side >= 1, "assess.min_side", f"must be >= 1, got {self.min_side}")
        _require(self.blur_factor > 1, "assess.blur_factor", f"must be > 1, got {self.blur_factor}")
        _require(0 < self.clipped <= 1, "assess.clipped", f"must be in (0, 1], got {self.clipped}")
        _require(self.noise > 0, "assess.noise", f"must be > 0, got {self.noise}")
        _require(self.change >= 0, "assess.change", f"must be >= 0, got {self.change}")


class _Sections:
    """A config file's root: one section (a dataclass) per field, filled from YAML and dotted overrides."""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "config"):
        """Build from nested dicts; unknown keys and ill-typed values are errors."""
        return _build(cls, data, where, prefix="")

    def replace(self, overrides: Mapping[str, Any], where: str = "overrides"):
        """A copy with dotted-key overrides applied (``{"train.lr": 0.001}``), type-checked."""
        data = self.to_dict()
        for key, value in overrides.items():
            section, _, name = key.partition(".")
            if not name or section not in data:
                raise ConfigError(f"{where}: unknown key {key!r}; use SECTION.FIELD, sections: "
                                  f"{sorted(data)}")
            if name not in data[section]:
                raise ConfigError(f"{where}: unknown key {key!r}; fields of {section}: "
                                  f"{sorted(data[section])}")
            data[section][name] = value
        return type(self).from_dict(data, where)

    def validate(self, sections: tuple[str, ...] | None = None):
        """Check the named sections (all by default)."""
        for name in sections or [f.name for f in fields(self)]:
            getattr(self, name).validate()
        return self


@dataclass(frozen=True)
class Config(_Sections):
    """Everything one training run needs; saved inside every checkpoint."""

    data: DataConfig = field(default_factory=DataConfig)
    degrade: DegradeConfig = field(default_factory=DegradeConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    storage: StorageConfig = field(default_factory=StorageConfig)

    def validate(self, sections: tuple[str, ...] | None = None) -> "Config":
        super().validate(sections)
        if "ssim" in self.train.loss:
            _require(self.data.image_size >= SSIM_WINDOW, "data.image_size",
                     f"{self.data.image_size} px is smaller than the {SSIM_WINDOW}-px SSIM window "
                     f"of loss {self.train.loss!r}")
        return self


@dataclass(frozen=True)
class JobConfig(_Sections):
    """An archive job's config (``skinray enhance --config``): the job and where its storage is."""

    enhance: EnhanceConfig = field(default_factory=EnhanceConfig)
    storage: StorageConfig = field(default_factory=StorageConfig)


def _build(cls: type, data: Any, where: str, prefix: str) -> Any:
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where}: {prefix or 'top level'} must be a mapping, got "
                          f"{type(data).__name__}")
    hints = typing.get_type_hints(cls)
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"{where}: unknown key '{prefix}{unknown[0]}'; known: {sorted(known)}")
    values = {}
    for name, raw in data.items():
        hint = hints[name]
        if dataclasses.is_dataclass(hint):
            values[name] = _build(hint, raw, where, prefix=f"{prefix}{name}.")
        else:
            values[name] = _coerce(raw, hint, where, f"{prefix}{name}")
    return cls(**values)


def _coerce(raw: Any, hint: Any, where: str, key: str) -> Any:
    """Check a scalar against its annotation; accept strings from the CLI (``"0.002"``)."""
    args = typing.get_args(hint)
    optional = type(None) in args
    base = next((a for a in args if a is not type(None)), hint) if args else hint
    if raw is None or (optional and isinstance(raw, str) and raw.lower() in ("", "none", "null")):
        if optional:
            return None
        raise ConfigError(f"{where}: {key} must not be empty")
    try:
        if base is bool:
            if isinstance(raw, str):
                lowered = raw.lower()
                if lowered in ("1", "true", "yes", "on"):
                    return True
                if lowered in ("0", "false", "no", "off"):
                    return False
                raise ValueError(raw)
            if isinstance(raw, bool):
                return raw
            raise ValueError(raw)
        if base is int:
            if isinstance(raw, bool) or (isinstance(raw, float) and not raw.is_integer()):
                raise ValueError(raw)
            return int(raw)
        if base is float:
            if isinstance(raw, bool):
                raise ValueError(raw)
            return float(raw)
        if base is str:
            if not isinstance(raw, (str, int, float)) or isinstance(raw, bool):
                raise ValueError(raw)
            return str(raw)
    except (ValueError, TypeError):  # TypeError: int([...]), float({...})
        type_name = getattr(base, "__name__", str(base))
        raise ConfigError(f"{where}: {key} must be {type_name}, got {_SHORT.repr(raw)}") from None
    raise ConfigError(f"{where}: {key} has unsupported type {hint}")  # pragma: no cover


# An ill-typed value is shown at most this long (a huge nested value must not become a huge message).
_SHORT = reprlib.Repr()  # Python 3.11: set as attributes
_SHORT.maxlevel, _SHORT.maxdict, _SHORT.maxlist, _SHORT.maxtuple, _SHORT.maxset = 2, 4, 4, 4, 4
_SHORT.maxstring, _SHORT.maxother, _SHORT.maxlong = 80, 80, 40


class _NoAliasLoader(yaml.SafeLoader):
    """safe_load without anchors and aliases: skinray's configs never need them, and an alias
    bomb (a billion laughs) builds a small file into a value of any size."""

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.YAMLError(f"YAML aliases (*{event.anchor}) are not allowed in skinray configs, "
                                 f"line {event.start_mark.line + 1}")
        return super().compose_node(parent, index)


def load_config(path: str | Path | None = None, overrides: Mapping[str, Any] | None = None,
                root: type[_Sections] = Config):
    """Defaults, then the YAML file (if any), then dotted overrides; every section validated.
    ``root``: :class:`Config` (training) or :class:`JobConfig` (an archive job)."""
    config = root()
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"{path}: config file not found")
        try:
            data = yaml.load(path.read_text(), Loader=_NoAliasLoader) or {}  # noqa: S506 - a SafeLoader
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: not valid YAML ({str(exc)[:500]})") from None
        config = root.from_dict(data, where=str(path))
    if overrides:
        config = config.replace(overrides)
    return config.validate()


def parse_set_flags(items: list[str]) -> dict[str, str]:
    """``["train.lr=0.001"]`` -> ``{"train.lr": "0.001"}``; values are coerced by the dataclasses."""
    result = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set {item!r}: expected SECTION.FIELD=VALUE")
        result[key.strip()] = value.strip()
    return result

