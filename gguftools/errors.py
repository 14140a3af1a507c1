"""Errors that gguftools reports to users.

Every error carries the file it concerns, so that the CLI can print one line such as
``model.gguf: tensor 'blk.4.nextn.eh_proj.weight' not found`` without a traceback.
"""

from __future__ import annotations

import os


class GGUFToolsError(Exception):
    """Base class of every error a user can cause with bad input or a bad file."""

    def __init__(self, message: str, path: str | os.PathLike[str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.path = os.fspath(path) if path is not None else None

    def __str__(self) -> str:
        if self.path is None:
            return self.message
        return f"{self.path}: {self.message}"


class GGUFFormatError(GGUFToolsError):
    """The file is not a readable GGUF file (bad magic, truncated, malformed field)."""


class UnsupportedError(GGUFToolsError):
    """The file is valid but uses something gguftools does not handle (architecture, tensor type)."""


class ModelError(GGUFToolsError):
    """The model's tensors or hyper-parameters do not fit what the architecture needs."""


class EditError(GGUFToolsError):
    """An edit was refused or failed; the original file is unchanged."""


class SchemaError(GGUFToolsError):
    """A schema file cannot be loaded: invalid JSON, or not a valid JSON Schema."""
