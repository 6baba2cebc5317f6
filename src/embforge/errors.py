"""User-facing errors. Every message names the bad value, the rule and the fix."""

from __future__ import annotations

__all__ = ["EmbforgeError", "ConfigError", "DataError", "CheckpointError", "MissingDependencyError"]


class EmbforgeError(ValueError):
    """Base class for errors caused by user input (not bugs)."""


class ConfigError(EmbforgeError):
    """A config file or override is invalid."""


class DataError(EmbforgeError):
    """An input file or record is malformed; the message names file and line."""


class CheckpointError(EmbforgeError):
    """A checkpoint or index directory is missing, incomplete or incompatible."""


class MissingDependencyError(ImportError):
    """An optional dependency is not installed; the message says what to pip install."""

    def __init__(self, package: str, feature: str) -> None:
        super().__init__(f"{feature} needs the package {package!r}: pip install {package}")
