"""skinray: restore the lighting, colour and sharpness of skin photographs, on Ray.

Importing this package has no side effects: no Ray start-up, no network, no environment edits,
and no torch or Ray import. The Python API (docs/api.md) is imported on first use::

    import skinray
    model = skinray.load()              # the bundled model (skinray.api.load)
    enhanced = model.enhance(photo)     # PIL.Image / ndarray in, the same type out
    verdict = model.assess(photo).verdict
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["Assessment", "ImageDecodeError", "Skinray", "load"]
_LAZY = {"load": "skinray.api", "Skinray": "skinray.api", "Assessment": "skinray.assess",
         "ImageDecodeError": "skinray.errors"}

if TYPE_CHECKING:
    from skinray.api import Skinray, load
    from skinray.assess import Assessment
    from skinray.errors import ImageDecodeError


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'skinray' has no attribute {name!r}")
