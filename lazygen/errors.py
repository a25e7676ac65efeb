"""User-facing errors. A user mistake becomes a `UserError` holding one or
more diagnostics; the CLI prints them as `path:line:col: error: message` and
exits 1. Any other exception escaping is a bug in lazygen. A warning is a
Diagnostic with severity "warning", carried by the run's Result."""

from __future__ import annotations

from typing import NamedTuple



# Control characters (a newline in a yaml value, say) are shown escaped, so
# that a diagnostic is always exactly one line (plus one for its note).
_ESCAPES = {c: f"\\x{c:02x}" for c in range(32)} | {ord("\n"): "\\n", ord("\r"): "\\r", ord("\t"): "\\t", 0x7F: "\\x7f"}


def _one_line(text: str) -> str:
    return text.translate(_ESCAPES)


class Diagnostic(NamedTuple):
    path: str
    line: int | None
    col: int | None
    message: str
    hint: str | None = None
    severity: str = "error"  # or "warning": reported, but the run goes on

    def format(self) -> str:
        where = self.path
        if self.line is not None:
            where += f":{self.line}:{self.col or 1}"
        text = f"{_one_line(where)}: {self.severity}: {_one_line(self.message)}"
        if self.hint:
            text += f"\n{_one_line(where)}: note: {_one_line(self.hint)}"
        return text


class UserError(Exception):
    def __init__(self, *diagnostics: Diagnostic) -> None:
        super().__init__("\n".join(d.format() for d in diagnostics))
        self.diagnostics = diagnostics

    @staticmethod
    def at(path: str, line: int | None, col: int | None, message: str, hint: str | None = None) -> UserError:
        return UserError(Diagnostic(str(path), line, col, message, hint))


class Unsupported(ValueError):
    """The generator cannot produce code for an operator; the message says why."""
