"""skinray from Python: ``skinray.load(...)`` returns a :class:`Skinray` whose ``enhance`` and
``assess`` take a photo as a ``PIL.Image``, a NumPy array or a path (docs/api.md).

Photos are decoded as ``skinray enhance`` decodes them (:func:`skinray.images.decode_photo`:
colour-managed to sRGB through their ICC profile, turned upright by their EXIF orientation, alpha
composited onto white), enhanced by the same :class:`~skinray.predict.Enhancer`, and a path's
output is encoded as the archive job encodes it (:func:`skinray.archive.encode_for`): the same
bytes as the CLI. Anything that cannot be read as a photo raises :class:`ImageDecodeError`, with
the reason.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Union, overload

import numpy as np
from PIL import Image

from skinray import images
from skinray.assess import Assessment, assess_batch
from skinray.config import MAX_PIXELS, TILE, TILE_MARGIN, AssessConfig
from skinray.errors import ImageDecodeError

PathLike = Union[str, os.PathLike]
ImageLike = Union[Image.Image, np.ndarray, PathLike]


def _from_array(array: np.ndarray) -> np.ndarray:
    """An ndarray taken as sRGB: uint8 (H, W, 3); (H, W) gray and (H, W, 4) RGBA (alpha dropped) too."""
    arr = np.asarray(array)
    if arr.dtype != np.uint8:
        raise ImageDecodeError(f"expected a uint8 array (0-255 sRGB), got dtype {arr.dtype}: convert it with "
                               f"np.clip(x * 255 + 0.5, 0, 255).astype(np.uint8) if it holds 0-1 floats")
    if arr.ndim == 2:
        arr = np.repeat(arr[..., None], 3, axis=2)
    if arr.ndim != 3 or arr.shape[2] not in (3, 4) or 0 in arr.shape:
        raise ImageDecodeError(f"expected an (H, W, 3) RGB array, got shape {arr.shape}")
    return np.ascontiguousarray(arr[..., :3])


def _from_pil(img: Image.Image, max_pixels: int) -> np.ndarray:
    """A Pillow image as the CLI decodes a file: its ICC profile applied, EXIF orientation applied."""
    if img.size[0] * img.size[1] > max_pixels:
        raise ImageDecodeError(f"{img.size[0]}x{img.size[1]} pixels exceeds the limit of {max_pixels}")
    transform = None
    icc = img.info.get("icc_profile")
    if icc:
        transform, _, _ = images._colour_transform(bytes(icc), img.mode)
    try:
        rgb = images._to_rgb(img, transform)
        orientation = img.getexif().get(0x0112, 1)
    except Exception as exc:  # noqa: BLE001 - a closed or broken image is unreadable, with its reason
        raise ImageDecodeError(f"cannot read the PIL image ({type(exc).__name__}: {exc})") from None
    return images._orient(rgb, orientation if isinstance(orientation, int) else 1)


def _read_path(path: PathLike, max_pixels: int) -> images.Decoded:
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ImageDecodeError(f"cannot read {os.fspath(path)!r}: {exc.strerror or exc}") from None
    try:
        return images.decode_photo(data, max_pixels)
    except ImageDecodeError as exc:
        if type(exc) is not ImageDecodeError:  # too large, unsupported format: their own fields kept
            raise
        raise ImageDecodeError(f"{os.fspath(path)}: {exc}") from None


class Skinray:
    """A loaded model: :meth:`enhance` and :meth:`assess` photos. Made by :func:`load`."""

    def __init__(self, enhancer, assess_config: AssessConfig | None = None, max_pixels: int = MAX_PIXELS,
                 quality: int = 95):
        self.enhancer = enhancer
        self.assess_config = assess_config or AssessConfig()
        self.max_pixels, self.quality = max_pixels, quality

    @property
    def model_id(self) -> str:
        """The model's id (``bundled@…`` or the checkpoint's name and hash), as the CLI reports it."""
        return self.enhancer.model_id

    def _pixels(self, image: ImageLike) -> tuple[np.ndarray, bytes | None]:
        """(sRGB uint8 (H, W, 3), EXIF to keep) of any accepted input."""
        if isinstance(image, Image.Image):
            return _from_pil(image, self.max_pixels), None
        if isinstance(image, np.ndarray):
            return _from_array(image), None
        if isinstance(image, (str, os.PathLike)):
            decoded = _read_path(image, self.max_pixels)
            return decoded.rgb, decoded.exif
        raise TypeError(f"expected a PIL.Image, a numpy array or a path, got {type(image).__name__}")

    @overload
    def enhance(self, image: Image.Image, out: None = None) -> Image.Image: ...
    @overload
    def enhance(self, image: np.ndarray, out: None = None) -> np.ndarray: ...
    @overload
    def enhance(self, image: PathLike, out: PathLike) -> Path: ...

    def enhance(self, image, out=None):
        """The enhanced photo, as the type given: a ``PIL.Image`` (RGB) for a ``PIL.Image``, a
        uint8 ``(H, W, 3)`` array for an array; for a path, the enhanced photo is written to
        ``out`` (format from its extension, the input's EXIF kept, tagged sRGB: the bytes
        ``skinray enhance`` writes) and ``out`` is returned as a ``Path``."""
        return self.enhance_and_assess(image, out)[0]

    def assess(self, image: ImageLike) -> Assessment:
        """The photo's :class:`~skinray.assess.Assessment`: verdict (good / corrected / retake),
        reasons, the light and exposure corrected, the change (CIEDE2000), sharpness, clipping, noise."""
        return self.enhance_and_assess(image)[1]

    def enhance_and_assess(self, image: ImageLike, out: PathLike | None = None):
        """Both at once, from one pass of the model: (as :meth:`enhance`, :class:`Assessment`)."""
        is_path = isinstance(image, (str, os.PathLike))
        if out is not None and not is_path:
            raise TypeError("out= is for a path input; arrays and PIL images come back as the same type")
        rgb, exif = self._pixels(image)
        (enhanced,), (assessment,) = assess_batch(self.enhancer, [rgb], self.assess_config)
        if isinstance(image, Image.Image):
            return Image.fromarray(enhanced, "RGB"), assessment
        if not is_path or out is None:
            return enhanced, assessment
        from skinray.archive import encode_for  # (imports torch: on first write, not on import)

        target = Path(out)
        target.write_bytes(encode_for(target.name, enhanced, self.quality, exif))
        return target, assessment


def load(model: str = "bundled", device: str = "auto", precision: str = "auto", *,
         threads: int | None = None, tile: int = TILE, tile_margin: int = TILE_MARGIN,
         assess: AssessConfig | None = None, quality: int = 95) -> Skinray:
    """Load a model for :meth:`Skinray.enhance` / :meth:`Skinray.assess`.

    ``model``: ``bundled`` (shipped with skinray), a run folder (its best checkpoint), a checkpoint
    folder, or an ``s3://`` URI of one. ``device``: ``auto`` (CUDA, else Apple mps, else CPU),
    ``cpu``, ``cuda``, ``cuda:1``, ``mps``. ``precision``: ``auto``, ``fp32``, ``bf16``, ``fp16``
    (see docs/models.md). ``threads``: CPU threads for a large photo's strips or tiles (default:
    the CPUs this process may use). ``assess``: the triage thresholds. ``quality``: JPEG quality
    of outputs written to a path. Raises :class:`skinray.errors.ConfigError` for a device or
    precision this machine cannot use and :class:`skinray.errors.CheckpointError` for a model
    that is not there."""
    from skinray.predict import Enhancer, cpu_threads

    enhancer = Enhancer.from_checkpoint(model, device, tile=tile, margin=tile_margin, precision=precision,
                                        threads=threads or cpu_threads())
    return Skinray(enhancer, assess, quality=quality)
