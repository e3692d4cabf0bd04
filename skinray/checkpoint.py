"""The checkpoint format, and the only code that reads or writes it.

A checkpoint is a folder (local or ``s3://``) holding::

    model.pt           state_dict of the model (float32, CPU tensors)
    skinray.json       format version, full Config, metrics, per-epoch history, data fingerprint
    training_state.pt  optimizer state and epoch, for resuming (absent from exported models)

Every ``.pt`` file is data: tensors, plain numbers, strings, lists/tuples/dicts, loaded with
``torch.load(..., weights_only=True)``; a file that would need full unpickling (which can run
code) is refused with :class:`CheckpointError`, never unpickled.

:func:`load` rebuilds the exact model from ``skinray.json`` without Ray. It also accepts a run
folder (``STORAGE/NAME``) and then loads the run's exported best model, ``STORAGE/NAME/best``,
and the name ``bundled``: the small default model shipped inside the package (``make model``).
"""

from __future__ import annotations

import io
import json
import pickle
import re
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

import skinray
from skinray import storage
from skinray.config import Config
from skinray.errors import CheckpointError, SkinrayError

if TYPE_CHECKING:  # torch is imported where a torch model is built: the light model's inference needs none
    import torch
    from torch import nn

BUNDLED = "bundled"  # the model shipped inside the package: the default --model everywhere
BUNDLED_DIR = Path(__file__).resolve().parent / "models" / "default"

FORMAT = "skinray-checkpoint"
FORMAT_VERSION = 1
MODEL_FILE, META_FILE, STATE_FILE = "model.pt", "skinray.json", "training_state.pt"
BEST_DIR = "best"
# Sections that older checkpoints (the bundled model's too) carry in their config and the training
# config no longer has: the archive job's options used to be part of it. Dropped when read.
LEGACY_SECTIONS = ("enhance",)


@dataclass
class LoadedModel:
    """A model in eval mode plus everything saved with it: a torch module, or for a ``light``
    model loaded for inference (:func:`load` with ``inference=True``) its numpy twin
    :class:`skinray.light.LightTables`."""

    model: Any
    config: Config
    metrics: dict[str, Any]
    history: list[dict[str, Any]] = field(default_factory=list)
    fingerprint: str = ""
    uri: str = ""

    @property
    def model_id(self) -> str:
        """Short stable id: run name, epoch, and data fingerprint prefix."""
        epoch = self.metrics.get("epoch", "?")
        return f"{self.config.train.name}-e{epoch}-{self.fingerprint[:8] or 'nodata'}"


def unwrap(model: "nn.Module") -> "nn.Module":
    return model.module if hasattr(model, "module") else model  # DistributedDataParallel


def save(directory: str | Path, model: nn.Module, config: Config, metrics: dict[str, Any],
         history: list[dict[str, Any]] | None = None, fingerprint: str = "",
         optimizer: torch.optim.Optimizer | None = None, epoch: int | None = None) -> Path:
    """Write a checkpoint into a local folder (created if needed); returns the folder."""
    import torch

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().float().cpu() if v.is_floating_point() else v.cpu()
             for k, v in unwrap(model).state_dict().items()}
    torch.save(state, directory / MODEL_FILE)
    meta = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "skinray_version": skinray.__version__,
        "torch_version": torch.__version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "config": config.to_dict(),
        "metrics": metrics,
        "history": history or [],
        "data_fingerprint": fingerprint,
    }
    (directory / META_FILE).write_text(json.dumps(meta, indent=2, default=float))
    if optimizer is not None:
        if epoch is None:
            raise ValueError("save: epoch is required with optimizer")
        # Adam's state_dict is tensors, numbers, bools, None and tuples: loadable with weights_only.
        torch.save({"optimizer": optimizer.state_dict(), "epoch": int(epoch)}, directory / STATE_FILE)
    return directory


def read_metadata(uri: str, s3: storage.S3Options | None = None) -> dict[str, Any]:
    """The parsed skinray.json of a checkpoint folder (config, metrics, history...)."""
    meta_uri = storage.join(uri, META_FILE)
    try:
        raw = storage.read_bytes(meta_uri, s3)
    except SkinrayError:
        raise CheckpointError(f"{uri}: not a skinray checkpoint ({META_FILE} not found); pass the "
                              f"folder printed by `skinray train` (RUN or RUN/{BEST_DIR})") from None
    try:
        meta = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{meta_uri}: corrupt metadata ({exc})") from None
    if meta.get("format") != FORMAT or meta.get("format_version", 0) > FORMAT_VERSION:
        raise CheckpointError(f"{meta_uri}: unknown checkpoint format {meta.get('format')!r} "
                              f"version {meta.get('format_version')!r}")
    for section in LEGACY_SECTIONS if isinstance(meta.get("config"), dict) else ():
        meta["config"].pop(section, None)
    degrade_cfg = meta.get("config", {}).get("degrade") if isinstance(meta.get("config"), dict) else None
    if isinstance(degrade_cfg, dict) and "light_prob" not in degrade_cfg:
        degrade_cfg.update(light_prob=0.0, exposure_error_prob=0.0)  # saved before the v3 light faults
    if isinstance(degrade_cfg, dict) and "tone_prob" not in degrade_cfg:
        degrade_cfg.update(tone_prob=0.0)  # saved before skin tones were varied in training
    return meta


def _resolve(uri: str, s3: storage.S3Options | None) -> str:
    """``bundled`` resolves to the packaged model, a run folder to its exported best model, a
    checkpoint folder to itself."""
    if uri == BUNDLED:
        if not (BUNDLED_DIR / META_FILE).is_file():
            raise CheckpointError(f"the bundled model is missing from this installation ({BUNDLED_DIR}); "
                                  f"reinstall skinray, build it with `make model`, or pass --model")
        return str(BUNDLED_DIR)
    if not storage.exists(storage.join(uri, META_FILE), s3) and storage.exists(
            storage.join(uri, BEST_DIR, META_FILE), s3):
        return storage.join(uri, BEST_DIR)
    return uri


def _build(config: Config) -> "nn.Module":
    """The model a saved config names: the enhancer, or a downstream model when ``model.task`` is set."""
    from skinray.model import build_model

    if config.model.task:
        from skinray.downstream import build_task_model  # it imports this module

        return build_task_model(config.model)
    return build_model(config.model)


# skinray's own sentence for a weights file that only full unpickling could load (never PyTorch's
# advice to re-run with weights_only=False, which would run the file's code).
_REFUSED_PICKLE = ("{path}: refused: it holds Python objects beyond tensors, and loading it would run code; "
                   "skinray loads weights as data only. Use a checkpoint that skinray wrote (skinray train, "
                   "skinray bundle), or re-save the weights as a plain state dict of tensors")


def load(uri: str | Path, device: "str | torch.device" = "cpu", s3: storage.S3Options | None = None,
         inference: bool = False) -> LoadedModel:
    """Rebuild the saved model (eval mode, on ``device``) from a local or S3 checkpoint.

    ``inference=True``: a ``light`` model (the default architecture) comes back as its numpy
    twin (:class:`skinray.light.LightTables`), read without importing PyTorch; every other
    model as its torch module."""
    uri = _resolve(str(uri), s3)
    meta = read_metadata(uri, s3)
    try:
        config = Config.from_dict(meta["config"], where=storage.join(uri, META_FILE))
        config.validate(("model",))  # ranges checked before anything is built (lut_bases=1e8: 51 GB)
    except SkinrayError as exc:
        raise CheckpointError(f"{uri}: saved config is invalid ({exc})") from None
    where = storage.join(uri, MODEL_FILE)
    try:
        raw = storage.read_bytes(where, s3)
    except SkinrayError:
        raise CheckpointError(f"{uri}: {MODEL_FILE} is missing") from None
    from skinray import light

    if inference and light.is_light(config.model):
        try:
            model = light.LightTables(read_state(raw, where), config.model.thumbnail)
        except (KeyError, ValueError) as exc:
            raise CheckpointError(f"{uri}: {MODEL_FILE} is corrupt or does not match the saved config "
                                  f"({str(exc)[:200]})") from None
    else:
        model = _torch_model(config, raw, uri, device)
    return LoadedModel(model=model, config=config, metrics=meta.get("metrics", {}),
                       history=meta.get("history", []), fingerprint=meta.get("data_fingerprint", ""),
                       uri=uri)


def _torch_model(config: Config, raw: bytes, uri: str, device) -> "nn.Module":
    import torch

    model = _build(config)
    try:
        model.load_state_dict(torch.load(io.BytesIO(raw), map_location="cpu", weights_only=True))
    except pickle.UnpicklingError:  # weights_only refused a global; PyTorch's advice is to turn that off
        raise CheckpointError(_REFUSED_PICKLE.format(path=storage.join(uri, MODEL_FILE))) from None
    except (RuntimeError, EOFError, ValueError) as exc:
        raise CheckpointError(f"{uri}: {MODEL_FILE} is corrupt or does not match the saved config "
                              f"({str(exc)[:200]})") from None
    return model.to(device).eval()


# torch.save's zip format, read as data without PyTorch: data.pkl names each tensor's storage
# (a file data/KEY of raw little-endian values), offset, shape and strides.
_STORAGES = {"FloatStorage": np.float32, "DoubleStorage": np.float64, "HalfStorage": np.float16,
             "LongStorage": np.int64, "IntStorage": np.int32, "ShortStorage": np.int16,
             "CharStorage": np.int8, "ByteStorage": np.uint8, "BoolStorage": np.bool_}


def read_state(raw: bytes, where: str) -> dict[str, np.ndarray]:
    """A ``model.pt`` state dict as numpy arrays, without PyTorch: only tensors in plain or
    ordered dicts are accepted; anything else (a pickle that would build other objects or run
    code) is refused as :func:`load` refuses it."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(raw))
        pickled = next(n for n in archive.namelist() if n.endswith("/data.pkl") or n == "data.pkl")
    except (zipfile.BadZipFile, StopIteration, ValueError) as exc:
        raise CheckpointError(f"{where}: not a PyTorch weights file ({exc or 'no data.pkl'})") from None
    prefix = pickled[: -len("data.pkl")]
    byteorder = archive.read(prefix + "byteorder").decode() if prefix + "byteorder" in archive.namelist() else "little"

    def rebuild(storage_, offset, size, stride, *_):
        itemsize = storage_.dtype.itemsize
        return np.lib.stride_tricks.as_strided(storage_[offset:], tuple(size),
                                               tuple(s * itemsize for s in stride)).copy()

    class StateUnpickler(pickle.Unpickler):
        def find_class(self, module, name):
            if (module, name) == ("collections", "OrderedDict"):
                return dict
            if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
                return rebuild
            if module == "torch" and name in _STORAGES:
                return _STORAGES[name]
            raise pickle.UnpicklingError(f"GLOBAL {module} {name}")

        def persistent_load(self, pid):
            kind, dtype, key, _location, _numel = pid
            if kind != "storage":
                raise pickle.UnpicklingError(f"persistent id {kind!r}")
            values = np.frombuffer(archive.read(f"{prefix}data/{key}"), np.dtype(dtype))
            return values.byteswap() if byteorder != "little" else values  # numbers in native order

    try:
        state = StateUnpickler(io.BytesIO(archive.read(pickled))).load()
    except pickle.UnpicklingError:
        raise CheckpointError(_REFUSED_PICKLE.format(path=where)) from None
    except (EOFError, ValueError, KeyError, TypeError) as exc:
        raise CheckpointError(f"{where}: corrupt ({str(exc)[:200]})") from None
    if not isinstance(state, dict) or not all(isinstance(v, np.ndarray) for v in state.values()):
        raise CheckpointError(f"{where}: not a state dict of tensors")
    return state


def load_training_state(directory: str | Path, model: "nn.Module", optimizer: "torch.optim.Optimizer",
                        where: str | None = None) -> tuple[int, list[dict[str, Any]]]:
    """Restore weights and optimizer in place from a local checkpoint folder; returns
    (next epoch to run, history so far). ``where``: the checkpoint's URI for error messages
    (default: the folder)."""
    import torch

    directory = Path(directory)
    where = where or str(directory)
    meta = read_metadata(str(directory), None)
    state = torch.load(directory / MODEL_FILE, map_location="cpu", weights_only=True)
    unwrap(model).load_state_dict(state)
    try:
        source = (directory / STATE_FILE).read_bytes()
    except FileNotFoundError:
        source = None
    training = _parse_training_state(source, where)
    optimizer.load_state_dict(training["optimizer"])
    return training["epoch"] + 1, list(meta.get("history", []))


def check_training_state(uri: str, s3: storage.S3Options | None = None) -> int:
    """Check, without running anything in it, that a local or S3 checkpoint can be resumed;
    returns its epoch. Raises :class:`CheckpointError` as :func:`load_training_state` would."""
    state_uri = storage.join(uri, STATE_FILE)
    source = storage.read_bytes(state_uri, s3) if storage.exists(state_uri, s3) else None
    return _parse_training_state(source, uri)["epoch"]


def _parse_training_state(source: bytes | None, where: str) -> dict[str, Any]:
    """``training_state.pt`` as data only ({"optimizer": state dict, "epoch": int}); a file that
    needs full unpickling is refused, not executed. ``where``: the checkpoint folder's URI."""
    path = storage.join(where, STATE_FILE)
    import torch

    if source is None:
        raise CheckpointError(f"{path}: missing; this checkpoint cannot be resumed (start a new run "
                              f"with another --name; --set train.init={where} keeps its weights)")
    try:
        training = torch.load(io.BytesIO(source), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:  # weights_only refused a global: the file could run code
        found = re.search(r"GLOBAL (\S+)", str(exc))
        reason = f"it calls or builds {found.group(1)}" if found else "it is not loadable as data"
        raise CheckpointError(
            f"{path}: refused: it holds Python objects beyond tensors and plain numbers, and loading "
            f"it would run code ({reason}); it was written by an older skinray or not by skinray. "
            f"Do not resume from it: start a new run with another --name (--set "
            f"train.init={where} keeps its model weights, which load safely), or delete the "
            f"run's checkpoints") from None
    except (RuntimeError, EOFError, ValueError, OSError) as exc:
        raise CheckpointError(f"{path}: corrupt ({str(exc)[:200]})") from None
    if not (isinstance(training, dict) and isinstance(training.get("optimizer"), dict)
            and isinstance(training.get("epoch"), int) and not isinstance(training["epoch"], bool)):
        raise CheckpointError(f"{path}: not a skinray training state (expected optimizer state and "
                              f"an integer epoch)")
    return training


def export(src: str, dest: str, s3: storage.S3Options | None = None) -> str:
    """Copy a checkpoint's model and metadata (not the optimizer state) to ``dest``."""
    read_metadata(src, s3)
    for name in (MODEL_FILE, META_FILE):
        storage.write_bytes(storage.join(dest, name), storage.read_bytes(storage.join(src, name), s3), s3)
    return dest
