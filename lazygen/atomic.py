"""Temporary files: how lazygen names the file it writes before renaming it
into place, sweeping those a killed run left behind, and keeping the signals
that stop a run from landing between a temporary file's creation and its
rename.

A temporary file is named `.<target>.<pid>.<8 hex>.tmp` beside its target,
so a later run can tell whose it was and whether that process still runs.
This module imports only the standard library's lightest parts: the no-op
fast path (lazygen.fastpath) uses it.
"""

from __future__ import annotations

import os
import signal
import time
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO, Callable, Collection, Iterator

# A temporary file of the old naming (no pid) is surely dead after this long.
LEGACY_AGE_S = 3600

# The signals a user or a build tool stops a run with; a handler turns each
# into an exception (lazygen.cli), which must not land mid-rename.
STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name))


def temp_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.{os.getpid()}.{os.urandom(4).hex()}.tmp")


def parse_temp(name: str) -> tuple[str, int | None] | None:
    """(target name, pid) of a temporary file's name; pid None for the old
    naming `.<target>.<8 hex>.tmp`; None for any other name."""
    if not (name.startswith(".") and name.endswith(".tmp")):
        return None
    parts = name[1:-4].split(".")
    if len(parts) < 2 or not _is_hex8(parts[-1]):
        return None
    if len(parts) >= 3 and parts[-2].isdigit():
        return ".".join(parts[:-2]), int(parts[-2])
    return ".".join(parts[:-1]), None


def _is_hex8(text: str) -> bool:
    return len(text) == 8 and all(c in "0123456789abcdef" for c in text)


def _legacy_cache_temp(name: str) -> tuple[str, int | None] | None:
    """Temporary files of the caches' old naming: `.tmp-XXXX.pickle`
    (catalogue and specs), `<key>.json.<pid>.tmp` (no-op records),
    `__jinja2_<key>.cache<random>.tmp` (Jinja's own)."""
    if name.startswith(".tmp-") and name.endswith(".pickle"):
        return name, None
    if name.startswith("__jinja2_") and ".cache" in name and name.endswith(".tmp"):
        return name, None
    head, _, pid = name[:-4].rpartition(".")
    if name.endswith(".tmp") and head.endswith(".json") and pid.isdigit():
        return head, int(pid)
    return None


def is_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: another user's live process
        return True
    return True


def sweep(directory: Path, targets: Collection[str] | None = None, *, all_dead: bool = False) -> list[str]:
    """Remove the temporary files in `directory` that no live run will rename:
    those whose process is gone, and those of the old naming after an hour.
    `targets`: only temporary files of these target names. `all_dead`: the
    caller holds the folder's lock, so every temporary file there is dead.
    Returns the names removed; never fails."""
    removed = []
    try:
        entries = os.listdir(directory)
    except OSError:
        return removed
    now = time.time()
    for entry in entries:
        parsed = parse_temp(entry) or (_legacy_cache_temp(entry) if targets is None else None)
        if parsed is None or (targets is not None and parsed[0] not in targets):
            continue
        pid = parsed[1]
        path = os.path.join(directory, entry)
        if not all_dead:
            if pid is not None and is_alive(pid):
                continue
            if pid is None:
                try:
                    if now - os.lstat(path).st_mtime < LEGACY_AGE_S:
                        continue
                except OSError:
                    continue
        try:
            os.unlink(path)
            removed.append(entry)
        except OSError:
            pass
    return removed


@contextmanager
def signals_deferred() -> Iterator[None]:
    """Hold back SIGINT, SIGTERM and SIGHUP for the block: one that arrives
    meanwhile is delivered when it ends. (SIGKILL cannot be held back: what
    it leaves, the next run sweeps.)"""
    if not hasattr(signal, "pthread_sigmask"):
        yield
        return
    old = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def write_atomic(path: Path, write: Callable[[BinaryIO], None]) -> None:
    """Write a cache file through a temporary file renamed into place, then
    sweep the folder of dead runs' temporary files. Raises OSError."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(path)
    try:
        with open(tmp, "xb") as f:
            write(f)
        os.replace(tmp, path)
    except BaseException:  # a stop signal too (lazygen.cli makes them exceptions)
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    sweep(path.parent)
