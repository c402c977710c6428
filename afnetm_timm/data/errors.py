"""Errors raised by the preprocessing code."""
from __future__ import annotations

from pathlib import Path


class ScanFormatError(ValueError):
    """A scan, texture or landmark file is unreadable or inconsistent.

    The message always names the offending file and what is wrong with it.
    """

    def __init__(self, path: str | Path | None, problem: str) -> None:
        self.path = None if path is None else Path(path)
        self.problem = problem
        where = f"{self.path}: " if self.path is not None else ""
        super().__init__(f"{where}{problem}")
