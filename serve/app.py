"""Import path of the Serve application for `serve run serve/config.yaml` / `serve deploy`.

The application itself lives in :mod:`skinray.serving` (also behind `skinray serve`).
"""

from skinray.serving import AppArgs, EnhanceService, build  # noqa: F401
