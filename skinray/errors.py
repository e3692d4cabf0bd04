"""User-facing errors: each says what was wrong, where, and what to do.

The CLI prints a ``SkinrayError`` as one line and exits with status 2; anything else is a bug
and keeps its traceback.
"""


class SkinrayError(Exception):
    """An error the user can act on (bad input, bad config, unreachable storage)."""


class ConfigError(SkinrayError):
    """A configuration value, file or flag is invalid."""


class StorageError(SkinrayError):
    """A URI cannot be listed, read or written."""


class ImageDecodeError(SkinrayError):
    """Bytes that should be an image cannot be turned into one."""


class CheckpointError(SkinrayError):
    """A checkpoint is missing, incomplete or of an unknown format."""


class EnhanceStopped(Exception):
    """An enhancement was stopped between tiles because its ``should_stop`` callback said so
    (the client went away or the request's deadline passed). Not a user error."""
