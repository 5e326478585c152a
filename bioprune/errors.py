"""Errors a user can act on. The CLI prints them as one line, no traceback, and exits non-zero."""


class BiopruneError(Exception):
    """Base class: anything the user can fix (bad input, bad setting, missing tool)."""

    exit_code = 2


class InputError(BiopruneError):
    """Bad or unreadable input. The message names the file and the record or line."""

    def __init__(self, path, message, *, line=None, record=None):
        where = str(path)
        if line is not None:
            where += f":{line}"
        if record is not None:
            where += f" (record {record!r})"
        super().__init__(f"{where}: {message}")
        self.path = path
        self.line = line
        self.record = record


class ConfigError(BiopruneError):
    """A setting is missing or out of range."""


class ToolError(BiopruneError):
    """An external tool (MMseqs2, ...) failed or is missing."""
