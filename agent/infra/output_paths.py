"""argparse types for the paths a command writes, checked when the arguments are parsed: a run
of minutes must not end in NotADirectoryError or PermissionError at its first write."""

from __future__ import annotations

import argparse
import os
from pathlib import Path


def _why_not_a_directory(path: Path) -> str | None:
    """Why `path` can be neither used nor made as a directory to write in, or None."""
    ancestor = path.absolute()
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        return f"{ancestor} is not a directory"
    if not os.access(ancestor, os.W_OK | os.X_OK):
        return f"no permission to write in {ancestor}"
    return None


def output_dir(text: str) -> Path:
    """A directory that exists or can be made. An existing non-directory is left to the
    command, whose message can say what the directory is for."""
    path = Path(text)
    if path.exists() and not path.is_dir():
        return path
    reason = _why_not_a_directory(path)
    if reason is not None:
        raise argparse.ArgumentTypeError(f"cannot create {text}: {reason}")
    return path


def output_file(text: str) -> Path:
    """A file path that is not a directory, in a folder that exists or can be made."""
    path = Path(text)
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{text} is a directory, expected a file to write")
    reason = _why_not_a_directory(path.parent)
    if reason is not None:
        raise argparse.ArgumentTypeError(f"cannot create {text}: {reason}")
    return path
