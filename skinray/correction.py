"""What a photographic correction changed, as numbers a person can read: the linear-light gains,
the exposure in stops, how sure the model was, and the light it undid (correlated colour
temperature and tint). The one place that turns a ``light`` model's parameters into them; the
assessment (triage), the endpoint's headers and the reports read them from here."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import lru_cache

import numpy as np

from skinray import degrade

# The black-body locus sampled in mired (1e6 / K): 2000 K to 25000 K, one mired apart.
_MIRED = np.arange(40.0, 500.5, 1.0)


@dataclass(frozen=True)
class Correction:
    """One photo's correction as applied (after the confidence).

    ``gains``: linear-light multipliers of R, G, B, exposure included (their luminance-weighted
    sum is ``2 ** ev``); ``ev``: the exposure change, stops; ``confidence``: 0 (left alone) to 1;
    ``kelvin`` and ``tint``: the light the correction undid, as a camera white-balanced for
    6500 K would have rendered it (6500 K and tint 0: no cast undone; tint > 0 green, < 0
    magenta, as :func:`skinray.degrade.cast_gains`)."""

    gains: tuple[float, float, float]
    ev: float
    confidence: float
    kelvin: float
    tint: float

    def as_dict(self) -> dict:
        return asdict(self)


@lru_cache(maxsize=1)
def _locus() -> np.ndarray:
    """:func:`skinray.degrade.cast_gains` at every mired of :data:`_MIRED`, (M, 3): built once."""
    return np.array([degrade.cast_gains(1e6 / m) for m in _MIRED])


def light_of(gains: np.ndarray) -> tuple[float, float]:
    """The (kelvin, tint) of the cast that linear-light ``gains`` (3,) undo: the black-body light
    whose :func:`skinray.degrade.cast_gains` best matches ``1 / gains`` in log(R/B), then the
    green residual as tint. Gains (1, 1, 1) give (6500, 0)."""
    cast = 1.0 / np.asarray(gains, np.float64)
    if np.allclose(cast, cast[1]):
        return degrade.NEUTRAL_KELVIN, 0.0
    target = np.log(cast[0] / cast[2])
    table = _locus()
    best = int(np.argmin(np.abs(np.log(table[:, 0] / table[:, 2]) - target)))
    ref = table[best]
    tint = np.log(cast[1] / np.sqrt(cast[0] * cast[2])) - np.log(ref[1] / np.sqrt(ref[0] * ref[2]))
    return float(1e6 / _MIRED[best]), float(tint)


def from_params(model, params) -> Correction:
    """A ``light`` model's (1, 4) parameters -> the :class:`Correction` it applies (the numpy
    :class:`skinray.light.LightTables` and its numpy parameters, or the torch module and tensors)."""
    if hasattr(params, "detach"):  # torch
        params = params.detach().float()
        gains, confidence = model.gains(params)[0].cpu().numpy().astype(np.float64), float(model.confidence(params)[0])
    else:
        gains, confidence = np.asarray(model.gains(params), np.float64)[0], float(model.confidence(params)[0])
    ev = float(params[0, 2]) * confidence  # the cast part keeps white's luminance: all of it is here
    kelvin, tint = light_of(gains)
    return Correction(gains=tuple(float(g) for g in gains), ev=ev, confidence=confidence,
                      kelvin=kelvin, tint=tint)
