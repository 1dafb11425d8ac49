"""The exceptions the toolkit raises on purpose; their messages are meant for end users."""

from __future__ import annotations


class Text2SQLError(Exception):
    """Base class: ``str(error)`` is a plain-language message, safe to show in a UI."""


class SchemaError(Text2SQLError):
    """Pasted schema text that can't be read; ``line`` is 1-based when known."""

    def __init__(self, message: str, line: int | None = None):
        self.line = line
        super().__init__(f"Line {line}: {message}" if line else message)


class DatabaseFileError(Text2SQLError):
    """A database file that is refused: not SQLite, too large, corrupt, unreadable."""


class ModelUnavailableError(Text2SQLError):
    """A registry model whose weights can't be found or fetched; the message says what to do."""


class IntegrityError(Text2SQLError):
    """Downloaded or packaged weights whose checksum does not match the pinned one."""
