"""Export a checkpoint for use outside skinray: ONNX graphs (ONNX Runtime, TensorRT, chaiNNer...)
with dynamic batch, height and width, plus ``skinray.onnx.json`` and ``README.md`` stating the
contract. Needs the ``export`` extra (``pip install 'skinray[export]'``): ``onnx`` to write the
graphs, ``onnxruntime`` to run them (:class:`OnnxEnhancer`).

Every graph takes and gives RGB ``float32`` tensors ``(N, 3, H, W)`` in ``[0, 1]`` (``uint8 / 255``);
skinray turns an output into ``uint8`` as ``floor(clip(y, 0, 1) * 255 + 0.5)``. Models whose
output depends on the whole image are split so that tiled inference stays exact, as in
:class:`skinray.predict.Enhancer`:

* ``lut``: ``colour.onnx`` maps the whole image's thumbnail (``thumbnail`` x ``thumbnail``, an
  area average, :func:`thumbnail`) to the image's colour parameters ``params (N, P)``;
  ``enhance.onnx`` maps ``(image, params)`` to the output. ``enhance.onnx`` is local, so windows
  all given the same ``params`` reproduce the whole-image output: with no margin for a
  colour-only lut (each pixel on its own), else starting on multiples of 4 px with 32 px of
  margin (a detail branch's receptive radius is < 32 px).
* ``context`` / ``affine``: ``encode.onnx`` gives the deepest features ``(N, C, H, W)``;
  ``context.onnx`` maps their mean over the whole image and the mean pixel to ``context``;
  ``enhance.onnx`` maps ``(image, context)`` to the output (for tiles: sum the features and pixels
  over each window's kept centre, divide by the image's pixel count).
* ``light``: ``tables.onnx`` maps the whole image's thumbnail to three 256-entry tables
  ``(3, 256)``, the output level of each input level per channel (float32 holding whole
  numbers): ``output[..., c] = tables[c][image[..., c]]`` on the uint8 pixels, any tiling.
* ``poster``: ``enhance.onnx`` alone, fully convolutional (receptive radius ``depth`` px).
"""

from __future__ import annotations

import io
import json
import os
import tempfile
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

import skinray
from skinray import checkpoint, storage
from skinray.config import TILE_MARGIN
from skinray.errors import SkinrayError

FORMATS = ("onnx",)
OPSET = 20  # GridSample on 5-D tables (the lut's 3-D lookup) needs opset 20
META_FILE = "skinray.onnx.json"
_BATCH_HW = {0: "batch", 2: "height", 3: "width"}


class _Enhance(nn.Module):
    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, image: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        return self.model(image) if context is None else self.model(image, context)


class _Colour(nn.Module):
    """lut: thumbnail -> params, as ``LutEnhancer.colour_params`` but with its percentiles taken
    from a sorted copy (ONNX has no quantile): the same linear interpolation as torch.quantile."""

    QUANTILES = (0.05, 0.5, 0.95)  # LutEnhancer._stats

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, thumbnail: torch.Tensor) -> torch.Tensor:
        flat = torch.nn.functional.adaptive_avg_pool2d(thumbnail, 32).flatten(2)  # (N, 3, 1024)
        ordered = flat.sort(dim=2).values
        last = flat.shape[2] - 1
        quantiles = []
        for q in self.QUANTILES:
            low, frac = int(q * last), q * last - int(q * last)
            high = min(low + 1, last)
            quantiles.append(ordered[:, :, low] + frac * (ordered[:, :, high] - ordered[:, :, low]))  # (N, 3)
        stats = torch.cat([flat.mean(2), flat.std(2), *quantiles], dim=1)  # (N, 15), as _stats
        return self.model.predict(torch.cat([self.model.head(thumbnail), stats], dim=1))


class _Tables(nn.Module):  # light: thumbnail -> (3, 256) per-channel tables
    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, thumbnail: torch.Tensor) -> torch.Tensor:
        return self.model.channel_tables(self.model.colour_params(thumbnail)).float()


class _Encode(nn.Module):  # context/affine: image -> deepest features
    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.model.encode(image)[-1]


class _Context(nn.Module):  # context/affine: (feature mean, pixel mean) -> context
    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, feature_mean: torch.Tensor, pixel_mean: torch.Tensor) -> torch.Tensor:
        return self.model.context_from_means(feature_mean, pixel_mean)


@dataclass
class _Graph:
    name: str
    module: nn.Module
    inputs: dict[str, torch.Tensor]  # example inputs, in order
    outputs: list[str]
    dynamic: dict[str, dict[int, str]]
    doc: str


def _graphs(model: nn.Module, arch: str) -> list[_Graph]:
    image = torch.rand(1, 3, 72, 88)
    with torch.no_grad():
        if arch == "light":
            t = model.thumbnail_size
            return [_Graph("tables", _Tables(model), {"thumbnail": torch.rand(1, 3, t, t)}, ["tables"], {},
                           f"thumbnail (1, 3, {t}, {t}) of the WHOLE image -> tables (3, 256), the output "
                           f"level of each input level, per channel")]
        if arch == "lut":
            t = model.thumbnail_size
            params = model.colour_params(torch.rand(1, 3, t, t))
            return [
                _Graph("colour", _Colour(model), {"thumbnail": torch.rand(1, 3, t, t)}, ["params"],
                       {"thumbnail": {0: "batch"}, "params": {0: "batch"}},
                       f"thumbnail (N, 3, {t}, {t}) of the WHOLE image -> params (N, {params.shape[1]})"),
                _Graph("enhance", _Enhance(model), {"image": image, "params": params}, ["output"],
                       {"image": _BATCH_HW, "params": {0: "batch"}, "output": _BATCH_HW},
                       "(image or tile (N, 3, H, W), its whole image's params) -> output (N, 3, H, W)"),
            ]
        if arch in ("context", "affine"):
            deepest = model.encode(image)[-1]
            context = model.context_from_means(deepest.mean(dim=(2, 3)), image.mean(dim=(2, 3)))
            c = deepest.shape[1]
            return [
                _Graph("encode", _Encode(model), {"image": image}, ["features"],
                       {"image": _BATCH_HW, "features": _BATCH_HW},
                       f"image or window (N, 3, H, W) -> deepest features (N, {c}, H, W)"),
                _Graph("context", _Context(model), {"feature_mean": deepest.mean(dim=(2, 3)),
                                                    "pixel_mean": image.mean(dim=(2, 3))}, ["context"],
                       {"feature_mean": {0: "batch"}, "pixel_mean": {0: "batch"}, "context": {0: "batch"}},
                       f"(mean features (N, {c}), mean pixel (N, 3)) over the WHOLE image -> context "
                       f"(N, {context.shape[1]}, 1, 1)"),
                _Graph("enhance", _Enhance(model), {"image": image, "context": context}, ["output"],
                       {"image": _BATCH_HW, "context": {0: "batch"}, "output": _BATCH_HW},
                       "(image or window (N, 3, H, W), its whole image's context) -> output (N, 3, H, W)"),
            ]
    return [_Graph("enhance", _Enhance(model), {"image": image}, ["output"],
                   {"image": _BATCH_HW, "output": _BATCH_HW}, "image (N, 3, H, W) -> output (N, 3, H, W)")]


def _onnx_bytes(graph: _Graph) -> bytes:
    import warnings

    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TracerWarnings about shapes read as Python numbers
        # The TorchScript exporter: it keeps batch, height and width symbolic through this model's
        # reshapes, where torch.export (dynamo=True) specialises them.
        torch.onnx.export(graph.module.eval(), tuple(graph.inputs.values()), buffer, dynamo=False,
                          opset_version=OPSET, input_names=list(graph.inputs), output_names=graph.outputs,
                          dynamic_axes=graph.dynamic)
    return buffer.getvalue()


def metadata(loaded: checkpoint.LoadedModel, graphs: list[_Graph]) -> dict[str, Any]:
    cfg = loaded.config.model
    align, halo = getattr(loaded.model, "ALIGN", 1), getattr(loaded.model, "halo", None)
    return {
        "format": "skinray-onnx", "format_version": 1, "skinray_version": skinray.__version__,
        "torch_version": torch.__version__, "opset": OPSET, "model_id": loaded.model_id, "source": loaded.uri,
        "arch": cfg.arch, "model_config": loaded.config.to_dict()["model"], "metrics": loaded.metrics,
        "data_fingerprint": loaded.fingerprint,
        "pixels": "RGB float32 (N, 3, H, W) in [0, 1] = uint8 / 255; output to uint8: floor(clip(y, 0, 1) * 255 + 0.5)",
        "graphs": {g.name: {"file": f"{g.name}.onnx", "inputs": list(g.inputs), "outputs": g.outputs,
                            "what": g.doc} for g in graphs},
        "thumbnail": cfg.thumbnail if cfg.arch in ("lut", "light") else None,
        "tiling": {"align": align, "margin": TILE_MARGIN if halo is None else min(halo, TILE_MARGIN),
                   "global": cfg.arch != "poster",
                   "rule": "windows start on multiples of align, with margin px of context on every side "
                           "(clipped at the border); keep each window's centre; whole-image inputs "
                           "(thumbnail, means) are computed once for the whole image"},
    }


_README = """# {model_id} as ONNX

Exported by `skinray export` (skinray {version}, opset {opset}) from `{source}`; architecture
`{arch}`. Contract (also in `{meta}`):

- Pixels: RGB `float32` `(N, 3, H, W)` in `[0, 1]` (`uint8 / 255`); batch, height and width are
  dynamic. skinray rounds an output to `uint8` as `floor(clip(y, 0, 1) * 255 + 0.5)`.
{graphs}
- Tiling: {tiling}

{pipeline}
"""

_PIPELINES = {
    "lut": "Pipeline: `params = colour(thumbnail(image))` once per image, where the thumbnail is the\n"
           "area average of the whole image to {t}x{t} (PyTorch `adaptive_avg_pool2d`; bilinear,\n"
           "`align_corners=False`, for images smaller than {t} px a side; `skinray.export.thumbnail`\n"
           "in NumPy), then `output = enhance(image, params)`, whole or tile by tile with the same params.",
    "context": "Pipeline: `features = encode(image)`, `context = context(features.mean((2, 3)),\n"
               "image.mean((2, 3)))`, `output = enhance(image, context)`; for tiles, sum features and\n"
               "pixels over the kept centre of each window and divide by the image's pixel count.",
    "poster": "Pipeline: `output = enhance(image)`, whole or tile by tile.",
    "light": "Pipeline: `tables = tables(thumbnail(image))` once per image (the thumbnail as for `lut`:\n"
             "the area average of the whole image to {t}x{t}, `skinray.export.thumbnail` in NumPy), then\n"
             "`output[..., c] = tables[c][image[..., c]]` on the uint8 pixels, whole or tile by tile.",
}
_PIPELINES["affine"] = _PIPELINES["context"]


def export(model_uri: str, out: str, fmt: str = "onnx", s3: storage.S3Options | None = None) -> list[str]:
    """Write ``out/<graph>.onnx``, ``out/skinray.onnx.json`` and ``out/README.md``; returns their URIs."""
    if fmt not in FORMATS:
        raise SkinrayError(f"export: unknown format {fmt!r}; choose from {FORMATS}")
    try:
        import onnx  # noqa: F401  (torch's exporter writes the graphs with it)
    except ImportError:
        raise SkinrayError("export: the onnx package is missing; install skinray's export extra "
                           "(pip install 'skinray[export]')") from None
    if not storage.is_s3(out):  # an unwritable folder fails before any work
        try:
            os.makedirs(out, exist_ok=True)
            with tempfile.TemporaryFile(dir=out):
                pass
        except OSError as exc:
            raise SkinrayError(f"export: cannot write to {out}: {exc.strerror or exc}") from None
    loaded = checkpoint.load(model_uri, s3=s3)
    model = loaded.model.float().eval()
    graphs = _graphs(model, loaded.config.model.arch)
    files = {f"{g.name}.onnx": _onnx_bytes(g) for g in graphs}
    meta = metadata(loaded, graphs)
    files[META_FILE] = json.dumps(meta, indent=2, default=float).encode()
    lines = "\n".join(f"- `{g.name}.onnx`: {g.doc}; inputs {', '.join(g.inputs)}." for g in graphs)
    files["README.md"] = _README.format(
        model_id=loaded.model_id, version=skinray.__version__, opset=OPSET, source=loaded.uri,
        arch=meta["arch"], meta=META_FILE, graphs=lines, tiling=meta["tiling"]["rule"] +
        f" (align {meta['tiling']['align']} px, margin {meta['tiling']['margin']} px)",
        pipeline=_PIPELINES[meta["arch"]].format(t=meta["thumbnail"])).encode()
    written = []
    for name, data in files.items():
        uri = storage.join(out, name)
        try:
            storage.write_bytes(uri, data, s3)
        except SkinrayError as exc:
            raise SkinrayError(f"export: cannot write to {out}: {str(exc).split(': ', 1)[-1]}") from None
        written.append(uri)
    return written


def thumbnail(image: np.ndarray, size: int) -> np.ndarray:
    """NumPy twin of :func:`skinray.lut.thumbnail` for one ``(H, W, 3)`` uint8 image -> ``(1, 3,
    size, size)`` float32: area average into ``size`` bins a side (bin ``i`` covers rows
    ``floor(i H / size)`` to ``ceil((i + 1) H / size)``), or bilinear for a side under ``size``."""
    x = image.astype(np.float32) / 255.0
    h, w = x.shape[:2]
    if h >= size and w >= size:
        def bins(n: int) -> list[tuple[int, int]]:
            return [((i * n) // size, -((-(i + 1) * n) // size)) for i in range(size)]

        rows = np.stack([x[a:b].mean(axis=0) for a, b in bins(h)])  # (size, W, 3)
        out = np.stack([rows[:, a:b].mean(axis=1) for a, b in bins(w)], axis=1)  # (size, size, 3)
    else:
        def taps(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
            src = np.maximum((np.arange(size) + 0.5) * n / size - 0.5, 0.0)
            low = np.minimum(np.floor(src).astype(int), n - 1)
            return low, np.minimum(low + 1, n - 1), (src - low).astype(np.float32)

        y0, y1, fy = taps(h)
        x0, x1, fx = taps(w)
        rows = x[y0] * (1 - fy)[:, None, None] + x[y1] * fy[:, None, None]
        out = rows[:, x0] * (1 - fx)[None, :, None] + rows[:, x1] * fx[None, :, None]
    return np.ascontiguousarray(out.transpose(2, 0, 1)[None], dtype=np.float32)


class OnnxEnhancer:
    """Runs an exported folder with ONNX Runtime on whole images: the reference use of the
    contract above (``uint8 (H, W, 3)`` in and out, like :class:`skinray.predict.Enhancer`)."""

    def __init__(self, folder: str):
        from pathlib import Path

        import onnxruntime as ort

        self.meta = json.loads((Path(folder) / META_FILE).read_text())
        self.sessions = {name: ort.InferenceSession(str(Path(folder) / g["file"]), providers=["CPUExecutionProvider"])
                         for name, g in self.meta["graphs"].items()}

    def enhance(self, image: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(image.transpose(2, 0, 1)[None], dtype=np.float32) / 255.0
        run = lambda name, **feeds: self.sessions[name].run(None, feeds)[0]  # noqa: E731
        arch = self.meta["arch"]
        if arch == "light":
            tables = run("tables", thumbnail=thumbnail(image, self.meta["thumbnail"])).astype(np.uint8)
            return np.stack([tables[c][image[..., c]] for c in range(3)], axis=-1)
        if arch == "lut":
            y = run("enhance", image=x, params=run("colour", thumbnail=thumbnail(image, self.meta["thumbnail"])))
        elif arch in ("context", "affine"):
            features = run("encode", image=x)
            context = run("context", feature_mean=features.mean(axis=(2, 3)), pixel_mean=x.mean(axis=(2, 3)))
            y = run("enhance", image=x, context=context)
        else:
            y = run("enhance", image=x)
        return np.floor(np.clip(y[0], 0, 1) * 255.0 + 0.5).astype(np.uint8).transpose(1, 2, 0)
