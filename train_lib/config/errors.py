"""`ConfigError`, the error of every user mistake in a pipeline config.

Kept in its own module so that every part of the config package (and the
label map reader) can raise it without importing the rest.
"""

from __future__ import annotations

from train_lib.errors import UserError

__all__ = ["ConfigError"]


class ConfigError(UserError, ValueError):
    """A user mistake in the pipeline config; the message names the key and the fix."""
