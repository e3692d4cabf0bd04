"""skinray in your own Ray Data pipeline: :class:`EnhanceImages`, a callable class for
``Dataset.map_batches`` (docs/api.md#ray-data)::

    ds = ray.data.read_binary_files("photos/")            # or read_images(...): arrays
    ds = ds.map_batches(EnhanceImages, fn_constructor_kwargs={"column": "bytes"},
                        batch_size=16, concurrency=2)

Each actor loads the model once. A row holds a photo as encoded bytes (decoded and colour-managed
as ``skinray enhance`` does) or as a uint8 ``(H, W, 3)`` sRGB array; the batch comes back with
every input column, the enhanced photo in ``output_column`` (encoded bytes for bytes, an array for
an array), the assessment's columns (:data:`skinray.assess.COLUMNS`: verdict, reasons, kelvin,
ev, change_mean, ...), and ``error``: empty, or why the row's photo could not be read (then
the output is empty and the assessment columns are "" / NaN). One unreadable photo never fails
the job.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from skinray import assess, images
from skinray.config import MAX_PIXELS, AssessConfig
from skinray.errors import SkinrayError


def _column(values: list) -> np.ndarray:
    """Arrays of one shape stacked (a Ray tensor column), else an object array (variable shapes)."""
    if values and all(isinstance(v, np.ndarray) for v in values) and len({v.shape for v in values}) == 1:
        return np.stack(values)
    out = np.empty(len(values), dtype=object)
    out[:] = values
    return out


class EnhanceImages:
    """A Ray Data callable class: enhance and assess the photos of a batch (see the module doc).

    ``model``, ``device``, ``precision``: as :func:`skinray.load`. ``column``: the input column
    (``image`` for ``read_images``, ``bytes`` for ``read_binary_files``); ``output_column``: where
    the enhanced photo goes; ``format`` / ``quality``: how enhanced photos of bytes rows are
    encoded (png, jpeg, webp, tiff); ``assess``: the triage thresholds."""

    def __init__(self, model: str = "bundled", device: str = "auto", precision: str = "auto", *,
                 column: str = "image", output_column: str = "enhanced", format: str = "png",
                 quality: int = 95, assess: AssessConfig | None = None, max_pixels: int = MAX_PIXELS):
        from skinray.api import load

        self.model = load(model, device, precision, assess=assess)
        self.column, self.output_column = column, output_column
        self.format, self.quality, self.max_pixels = images.normalise_format(format), quality, max_pixels

    def _decode(self, value: Any) -> np.ndarray:
        if isinstance(value, (bytes, bytearray, memoryview)):
            return images.decode_photo(bytes(value), self.max_pixels).rgb
        return self.model._pixels(np.asarray(value))[0]

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        values = list(batch[self.column])
        outputs: list[Any] = [b"" if isinstance(v, (bytes, bytearray)) else np.zeros((0, 0, 3), np.uint8)
                              for v in values]
        rows, errors = [assess.empty_row() for _ in values], [""] * len(values)
        pixels, where = [], []
        for i, value in enumerate(values):
            try:
                pixels.append(self._decode(value))
                where.append(i)
            except SkinrayError as exc:
                errors[i] = str(exc)
        enhanced, assessments = assess.assess_batch(self.model.enhancer, pixels, self.model.assess_config)
        for i, out, a in zip(where, enhanced, assessments):
            encoded = isinstance(values[i], (bytes, bytearray))
            outputs[i] = images.encode(out, self.format, self.quality) if encoded else out
            rows[i] = a.row()
        columns = {name: np.array([r[name] for r in rows], dtype=object if kind == "str" else np.float64)
                   for name, kind in assess.COLUMNS.items()}
        return {**batch, self.output_column: _column(outputs), **columns,
                "error": np.array(errors, dtype=object)}
