"""Where outputs go: directories checked before any work starts, so a bad flag costs seconds, not a run."""

from __future__ import annotations

import os

from attnrnn_lib.errors import UsageError


def ensure_dir(path: str, flag: str = "--output_dir", create: bool = True) -> None:
    """Checks that `path` is, or can become, a writable directory, and creates it (with parents) if `create`.

    With `create=False` nothing is made: the check runs early, and a later error leaves no empty directory.

    Raises:
      UsageError: naming `flag`, if `path` is a file, cannot be created, or is not writable.
    """
    if os.path.exists(path) and not os.path.isdir(path):
        raise UsageError(f"{flag}: {path} is a file, not a directory")
    existing = os.path.abspath(path)
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise UsageError(f"{flag}: cannot create {path}: {existing} is a file")
    if not os.access(existing, os.W_OK):
        raise UsageError(f"{flag}: {existing} is not writable")
    if create:
        try:
            os.makedirs(path, exist_ok=True)
        except OSError as e:
            raise UsageError(f"{flag}: cannot create {path}: {e.strerror}") from None
