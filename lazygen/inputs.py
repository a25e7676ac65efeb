"""Reading an input file: once (it may be a pipe such as `<(cat b.yaml)` or
/dev/stdin, which a second read finds empty), and no more than
MAX_INPUT_BYTES of it (`/dev/zero` never ends)."""

from __future__ import annotations

import errno
from pathlib import Path

# Far more than any yaml, catalogue, header or kernel file lazygen reads.
MAX_INPUT_BYTES = 64 << 20


class InputTooLarge(OSError):
    pass


def read_input(path: Path) -> bytes:
    """The file's bytes; an OSError (with a strerror to report) otherwise."""
    with open(path, "rb") as f:
        data = f.read(MAX_INPUT_BYTES + 1)
    if len(data) > MAX_INPUT_BYTES:
        raise InputTooLarge(errno.EFBIG, f"the file is larger than {MAX_INPUT_BYTES >> 20} MiB, more than lazygen reads", str(path))
    return data


def decode(path: Path, data: bytes) -> str:
    """UTF-8 text, or a diagnostic at the first byte that is not."""
    from lazygen.errors import UserError

    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        before = data[: err.start]
        line = before.count(b"\n") + 1
        col = err.start - (before.rfind(b"\n") + 1) + 1
        raise UserError.at(str(path), line, col, "file is not valid UTF-8") from None


def read_text(path: Path) -> str:
    """The file's text, or a diagnostic for a missing, unreadable, too large or non-UTF-8 file."""
    from lazygen.errors import UserError

    try:
        data = read_input(path)
    except OSError as err:
        raise UserError.at(str(path), None, None, f"cannot read file: {err.strerror or err}") from None
    return decode(path, data)
