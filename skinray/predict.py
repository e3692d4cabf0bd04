"""The one predictor: an :class:`Enhancer` turns decoded photos into enhanced photos of the same
size. The batch job (Ray Data ``map_batches``) and the online endpoint both call it.

Large images are enhanced in tiles: each output tile of at most ``tile - 2 * margin`` pixels is
computed from an input window ``margin`` pixels larger on every side (clipped at the image
border), and only the window's centre is kept. For a fully convolutional model whose receptive
field radius is at most ``margin`` this gives exactly the whole-image result, with bounded
memory and no seams. Models with a global context (``arch: context``) get a first tiled pass
that averages their deepest features over the whole image, so every tile sees the same,
whole-image context. A colour-only ``lut`` (the default model) maps each pixel on its own through
one table per image: on the CPU, Pillow applies that table to the 8-bit pixels in strips of rows.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np
from PIL import Image

from skinray import checkpoint, correction, storage
from skinray.checkpoint import LoadedModel
from skinray.config import DEVICES, PRECISIONS, TILE, TILE_MARGIN
from skinray.correction import Correction
from skinray.errors import ConfigError, EnhanceStopped
from skinray.light import LightTables

if TYPE_CHECKING:  # imported where a torch model runs: the light model (the default) needs no torch
    import torch


def _dtype(precision: str):
    import torch

    return {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]


class _HostCpu:
    """The device of a light model: its thumbnail network runs in numpy and Pillow applies its
    tables, on the CPU (``torch.device("cpu")``'s ``type`` and ``str``, without importing torch)."""

    type = "cpu"

    def __str__(self) -> str:
        return "cpu"

    __repr__ = __str__


_IDENTITY_TABLES = list(range(256)) * 3  # Image.point's tables of a correction that changes nothing


def resolve_device(device: str | torch.device) -> torch.device:
    """``auto``: CUDA if torch sees a GPU, else Apple ``mps`` if torch has it, else the CPU. A
    device asked for by name that torch cannot use is a :class:`ConfigError` naming it."""
    import torch

    if isinstance(device, torch.device):
        return device
    name = str(device).lower()
    mps = getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "mps" if mps else "cpu")
    kind = name.split(":")[0]
    if kind not in DEVICES[1:]:
        raise ConfigError(f"enhance.device: unknown {device!r}; choose from {DEVICES}")
    if (kind == "cuda" and not torch.cuda.is_available()) or (kind == "mps" and not mps):
        raise ConfigError(f"enhance.device: {name} was asked for but this torch ({torch.__version__}) "
                          f"cannot use it here; choose cpu or auto")
    return torch.device(name)


def resolve_precision(precision: str, device: str | torch.device) -> str:
    """The arithmetic the Enhancer uses on ``device``: ``fp32``, ``bf16`` or ``fp16``.

    ``auto``: bf16 on CUDA where the GPU supports it, else fp16 (with channels_last); fp32 on
    the CPU and on ``mps``. Asked explicitly, bf16 also runs on the CPU (autocast; within a few
    grey levels of fp32); fp16 on the CPU is refused (no fast CPU kernels: slower than fp32)."""
    import torch

    device = torch.device(device) if not isinstance(device, torch.device) else device
    if precision not in PRECISIONS:
        raise ConfigError(f"enhance.precision: unknown {precision!r}; choose from {PRECISIONS}")
    if precision == "auto":
        if device.type != "cuda":
            return "fp32"
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if precision == "fp16" and device.type == "cpu":
        raise ConfigError("enhance.precision: fp16 needs a GPU (cuda or mps); on the CPU choose fp32 or "
                          "bf16, or auto")
    return precision


def _check_names(device, precision: str) -> None:
    """A device or precision asked for by name is checked before any work (a typo, or fp16 on a
    CPU, fails as ConfigError); ``auto`` / ``cpu`` with ``auto`` / ``fp32`` need no torch to check."""
    if str(device) not in ("auto", "cpu") or precision not in ("auto", "fp32"):
        resolve_precision(precision, resolve_device(device))


@contextlib.contextmanager
def one_torch_thread():
    """One intra-op torch thread while in the block, as in a 1-CPU Ray actor (Ray sets
    OMP_NUM_THREADS to its 1 CPU): some CPU kernels sum in a thread-count-dependent order, and 2
    threads changed ~1e-6 of a 12 MP photo's values by 1 grey level; the cores work on
    different tiles instead. Nothing to set where torch was never imported (a light model runs
    without it)."""
    torch = sys.modules.get("torch")
    if torch is None:
        yield
        return
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def cpu_threads() -> int:
    """The CPUs this process holds: in a Ray actor or Serve replica its ``num_cpus`` (Ray sets
    OMP_NUM_THREADS to it), elsewhere OMP_NUM_THREADS if set, else the cores it may run on."""
    try:
        return max(1, int(os.environ.get("OMP_NUM_THREADS", "")))
    except ValueError:
        return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)


class Enhancer:
    """Wraps a loaded checkpoint. Inputs and outputs are RGB ``uint8`` arrays ``(H, W, 3)``."""

    def __init__(self, loaded: LoadedModel, device: str | torch.device = "cpu",
                 tile: int = TILE, margin: int = TILE_MARGIN, precision: str = "auto",
                 threads: int = 1):
        if tile <= 2 * margin:
            raise ValueError(f"tile ({tile}) must be larger than twice the margin ({margin})")
        if threads < 1:
            raise ValueError(f"threads must be >= 1, got {threads}")
        # Tiles of one large image computed at once, one per thread. Give it the CPUs the process
        # holds, with torch.set_num_threads(1): every kernel then runs on one thread as in a
        # 1-CPU Ray actor, so the bytes do not depend on the count (see cpu_threads()).
        self.threads = threads
        self.loaded = loaded
        self._place(loaded.model, device, precision)
        # Models that work at 1/a resolution (lut's detail branch: a = 4) need windows that start
        # on multiples of a, or tiles would see the image on another sampling grid than the whole
        # image does. A model that states its receptive radius (``halo``; 0 for a colour-only lut,
        # whose output pixel depends on its input pixel alone) needs no more margin than that.
        align, halo = getattr(self.model, "ALIGN", 1), getattr(self.model, "halo", None)
        margin = margin if halo is None else min(margin, halo)
        self.tile, self.margin = tile, -(-margin // align) * align
        self.step = (tile - 2 * self.margin) // align * align  # side of the kept centre of each window
        if self.step < 1:
            raise ValueError(f"tile ({tile}) must be larger than twice the margin ({self.margin}) "
                             f"plus {align} pixels for this model")
        # A colour-only lut on the CPU maps each pixel through one table per image: Pillow's
        # Color3DLUT applies it to the 8-bit pixels in C (36 against 100 ms per megapixel for
        # grid_sample on floats, one thread), in strips of ``step`` rows, ``threads`` at a time.
        self._lookup = self.device.type == "cpu" and halo == 0 and hasattr(self.model, "mapping")
        # A per-channel correction (``light``, the default) is three 256-entry tables: Pillow's
        # Image.point applies them to the 8-bit pixels, on any device (the model only sees the
        # thumbnail).
        self._point = hasattr(self.model, "channel_tables")
        self._lookup = self._lookup or self._point

    def _place(self, model, device: str | torch.device, precision: str) -> None:
        """The model on its device and in its arithmetic (sets model, device, precision)."""
        if not isinstance(model, LightTables) and hasattr(model, "channel_tables"):
            model = LightTables.from_module(model)  # a torch light model handed in: its numpy twin
        if isinstance(model, LightTables):
            # Its thumbnail network runs in numpy on the CPU and Pillow applies its three tables:
            # an accelerator would have nothing to do. The names are still checked; none is used.
            _check_names(device, precision)
            self.device, self.precision, self._dtype, self.model = _HostCpu(), "fp32", None, model
            return
        from skinray.model import channels_last

        self.device = resolve_device(device)
        self.precision = resolve_precision(precision, self.device)
        self._dtype = _dtype(self.precision)
        self.model = model.to(self.device).eval()
        if self._dtype is not None and self.device.type == "cuda":
            self.model = channels_last(self.model)

    @classmethod
    def from_checkpoint(cls, uri: str, device: str | torch.device | None = None,
                        s3: storage.S3Options | None = None, **kwargs) -> "Enhancer":
        device = device or "auto"
        _check_names(device, kwargs.get("precision", "auto"))  # before loading: a bad name fails first
        return cls(checkpoint.load(uri, device="cpu", s3=s3, inference=True), device, **kwargs)

    @property
    def model_id(self) -> str:
        return self.loaded.model_id

    def _tensor(self, stack: np.ndarray) -> torch.Tensor:
        import torch

        x = torch.from_numpy(np.ascontiguousarray(stack)).to(self.device)
        x = x.permute(0, 3, 1, 2).float().div_(255.0)  # (N, H, W, 3) uint8 -> (N, 3, H, W) in [0, 1]
        if self._dtype is not None and self.device.type == "cuda":
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    def _autocast(self):
        """bf16/fp16 autocast on this device for the model's calls (off for fp32)."""
        if self._dtype is None:
            return contextlib.nullcontext()
        import torch

        return torch.autocast(self.device.type, dtype=self._dtype)

    def _forward(self, stack: np.ndarray, context: torch.Tensor | None = None) -> np.ndarray:
        """(N, H, W, 3) uint8 -> (N, H, W, 3) uint8 through the model in one pass."""
        import torch

        x = self._tensor(stack)
        with torch.no_grad(), self._autocast():
            y = self.model(x) if context is None else self.model(x, context)
        y = y.float().clamp_(0, 1).mul_(255.0).add_(0.5).to(torch.uint8)  # (N, 3, H, W)
        return y.permute(0, 2, 3, 1).cpu().numpy()  # (N, H, W, 3)

    def _windows(self, h: int, w: int):
        """(kept region, window around it) pairs covering an h x w image, as slices."""
        step = self.step
        for y0 in range(0, h, step):
            for x0 in range(0, w, step):
                y1, x1 = min(y0 + step, h), min(x0 + step, w)
                wy0, wx0 = max(0, y0 - self.margin), max(0, x0 - self.margin)
                wy1, wx1 = min(h, y1 + self.margin), min(w, x1 + self.margin)
                yield ((slice(y0, y1), slice(x0, x1)), (slice(wy0, wy1), slice(wx0, wx1)),
                       (slice(y0 - wy0, y1 - wy0), slice(x0 - wx0, x1 - wx0)))

    def _whole_image_context(self, image: np.ndarray) -> torch.Tensor | np.ndarray:
        """The model's global context for the whole image: from its thumbnail (``light``: its
        (1, 4) parameters as numpy; ``lut``), else computed tile by tile as exact means of the
        deepest encoder features and of the pixels over the kept centre of every window
        (``context``, ``affine``)."""
        if isinstance(self.model, LightTables):
            return self.model.params_of(self._thumbnail_source(image))
        import torch

        with torch.no_grad():
            return self._context_of(image)

    def _thumbnail_source(self, image: np.ndarray) -> np.ndarray:
        # A large photo is first box-reduced in 8 bits by Pillow (a whole factor, leaving at
        # least twice the thumbnail a side): an area average of area averages, within half a
        # grey level of the float one, at a tenth of the cost on a 12 MP photo.
        factor = min(image.shape[:2]) // (2 * self.model.thumbnail_size)
        if factor >= 2:
            image = np.asarray(Image.fromarray(np.ascontiguousarray(image)).reduce(factor))
        return image

    def _params(self, image: np.ndarray):
        """The whole image's correction parameters: numpy for a light model, else float torch."""
        params = self._whole_image_context(image)
        return params if isinstance(self.model, LightTables) else params.float()

    def _context_of(self, image: np.ndarray) -> torch.Tensor:
        import torch

        from skinray import lut

        if hasattr(self.model, "colour_params"):
            size = self.model.thumbnail_size
            image = self._thumbnail_source(image)
            # One channel at a time: a float copy of one plane, not of the whole image.
            planes = [lut.thumbnail(torch.from_numpy(np.ascontiguousarray(image[..., c])).to(self.device)
                                    .float().div_(255.0)[None, None], size) for c in range(3)]
            return self.model.colour_params(torch.cat(planes, dim=1))  # (1, P)
        feature_sum = pixel_sum = None
        for _, window, centre in self._windows(*image.shape[:2]):
            x = self._tensor(image[None, window[0], window[1]])  # (1, 3, h, w)
            with self._autocast():
                deepest = self.model.encode(x)[-1][:, :, centre[0], centre[1]].float()  # (1, C, kh, kw)
            f, p = deepest.sum(dim=(2, 3)), x[:, :, centre[0], centre[1]].sum(dim=(2, 3))
            feature_sum = f if feature_sum is None else feature_sum + f
            pixel_sum = p if pixel_sum is None else pixel_sum + p
        count = image.shape[0] * image.shape[1]
        with self._autocast():
            return self.model.context_from_means(feature_sum / count, pixel_sum / count)  # (1, C, 1, 1)

    def _each(self, work: Callable[..., None], items: list[tuple]) -> None:
        """``work(*item)`` for every item, ``threads`` at a time (torch and Pillow release the GIL
        inside their kernels); a stop or an error drops the items not yet started."""
        if self.threads == 1 or len(items) <= 1:
            for item in items:
                work(*item)
            return
        with ThreadPoolExecutor(min(self.threads, len(items)), thread_name_prefix="skinray-tile") as pool:
            futures = [pool.submit(work, *item) for item in items]
            try:
                for future in futures:
                    future.result()
            finally:
                for future in futures:
                    future.cancel()

    def _tiled(self, image: np.ndarray, should_stop: Callable[[], bool] | None = None) -> np.ndarray:
        context = self._whole_image_context(image) if self.model.uses_global_context else None
        out = np.empty_like(image)

        def one_tile(kept, window, centre) -> None:
            if should_stop is not None and should_stop():  # checked between tiles
                raise EnhanceStopped("stopped between tiles (should_stop)")
            out[kept] = self._forward(image[None, window[0], window[1]], context)[0][centre]

        self._each(one_tile, list(self._windows(*image.shape[:2])))  # independent once the context is known
        return out

    def _table_filter(self, image: np.ndarray):
        """(the whole image's colour mapping as a Pillow operation on 8-bit RGB, or None when it
        maps every level to itself; the model's parameters for it)."""
        params = self._params(image)
        if self._point:  # three 256-entry tables, one per channel (a light model: numpy)
            flat = self.model.channel_tables(params).reshape(-1).tolist()
            if flat == _IDENTITY_TABLES:  # the model leaves the photo alone: no lookup to pay for
                return None, params
            return (lambda strip: strip.point(flat)), params
        import torch

        from skinray import lut

        with torch.no_grad():
            table = lut.to_pillow(self.model.mapping(params))
        return (lambda strip: strip.filter(table)), params

    def _looked_up(self, image: np.ndarray, should_stop: Callable[[], bool] | None = None
                   ) -> tuple[np.ndarray, torch.Tensor]:
        """A per-pixel colour mapping on 8-bit pixels (``light``'s tables on any device, a
        colour-only lut's 3-D table on the CPU): the whole image's mapping, applied by Pillow
        strip by strip. Returns (output, the model's parameters of the mapping)."""
        mapped, params = self._table_filter(image)
        if mapped is None:
            return image.copy(), params
        out = np.empty_like(image)

        def strip(rows: slice) -> None:
            if should_stop is not None and should_stop():  # checked between strips
                raise EnhanceStopped("stopped between strips (should_stop)")
            out[rows] = np.asarray(mapped(Image.fromarray(np.ascontiguousarray(image[rows]))))

        self._each(strip, [(slice(y, y + self.step),) for y in range(0, image.shape[0], self.step)])
        return out, params

    def corrections(self, images: Sequence[np.ndarray]) -> list["Correction | None"]:
        """What the model would change in each photo, as numbers (:class:`skinray.correction.Correction`):
        the linear-light gains, exposure, confidence and the light it undid; ``None`` for models
        that predict no explicit photographic correction (``lut``, the autoencoders)."""
        if not self._point:
            return [None] * len(images)
        return [correction.from_params(self.model, self._params(np.asarray(image, np.uint8))) for image in images]

    def _alone(self, image: np.ndarray) -> bool:
        """Whether an image is enhanced on its own, its strips (more rows than one strip) or its
        tiles (larger than one tile) spread over the threads."""
        return image.shape[0] > self.step if self._lookup else max(image.shape[:2]) > self.tile

    def enhance_batch(self, images: Sequence[np.ndarray],
                      should_stop: Callable[[], bool] | None = None) -> list[np.ndarray]:
        """Enhance any number of images of any sizes. Images of equal size that fit in one tile
        share a forward pass; larger ones are tiled. Returns uint8 arrays of the input shapes."""
        return [out for out, _ in self._enhanced(images, should_stop)]

    def enhance_corrected(self, images: Sequence[np.ndarray], should_stop: Callable[[], bool] | None = None
                          ) -> list[tuple[np.ndarray, "Correction | None"]]:
        """:meth:`enhance_batch` and :meth:`corrections` from one pass of the model: (output,
        correction) per image, the correction being the one the output was made with (``None``
        for models without an explicit correction)."""
        return [(out, correction.from_params(self.model, params) if self._point else None)
                for out, params in self._enhanced(images, should_stop)]

    def _enhanced(self, images: Sequence[np.ndarray], should_stop: Callable[[], bool] | None
                  ) -> list[tuple[np.ndarray, torch.Tensor | None]]:
        """(output, the model's whole-image parameters where it has them) per image."""
        results: list[tuple[np.ndarray, torch.Tensor | None] | None] = [None] * len(images)
        same_size: dict[tuple[int, int], list[int]] = defaultdict(list)
        for i, image in enumerate(images):
            image = np.asarray(image, np.uint8)
            if image.ndim != 3 or image.shape[2] != 3:
                raise ValueError(f"expected an (H, W, 3) uint8 image, got shape {image.shape}")
            if self._alone(image):  # its strips or tiles over the threads
                results[i] = (self._looked_up(image, should_stop) if self._lookup
                              else (self._tiled(image, should_stop), None))
            else:  # the images over the threads
                same_size[image.shape[:2]].append(i)
        groups = list(same_size.values())
        if self.device.type == "cpu":
            # One image per forward pass on a CPU: stacking was no faster there (lut 37.5 vs 36.3
            # ms per 256 px image, poster 155 vs 136, one thread) and let an image's bytes depend
            # on the other images of its batch (the lut head's matrix products are blocked by
            # batch size). Alone, a photo gives the same bytes in any batch, local or on Ray.
            groups = [[i] for group in groups for i in group]

        def run(indices: list[int]) -> None:
            if self._lookup:  # one strip each
                for i in indices:
                    results[i] = self._looked_up(np.asarray(images[i], np.uint8), should_stop)
                return
            enhanced = self._forward(np.stack([np.asarray(images[i], np.uint8) for i in indices]))
            for i, out in zip(indices, enhanced):
                results[i] = (out, None)

        self._each(run, [(indices,) for indices in groups])
        return results  # type: ignore[return-value]

    def enhance(self, image: np.ndarray, should_stop: Callable[[], bool] | None = None) -> np.ndarray:
        return self.enhance_batch([image], should_stop)[0]
