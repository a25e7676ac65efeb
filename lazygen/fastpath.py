"""The no-op fast path: when a command line, every file it read and every
file it wrote are exactly as its last successful run left them, there is
nothing to do, and `lazygen` can exit before importing PyYAML, Jinja2 or
even argparse.

Each successful CLI run records, in the cache folder under a name derived
from the command line, the command line itself (with the interpreter,
lazygen's version and the working directory) and the size, mtime and inode
of every input and output, and of lazygen's own source files. This module imports only the standard library's
lightest parts."""

from __future__ import annotations

import json
import os
import sys
import zlib
from typing import Iterable, Sequence


def _cache_dir() -> str:
    if os.environ.get("LAZYGEN_CACHE_DIR"):
        return os.environ["LAZYGEN_CACHE_DIR"]
    if os.environ.get("XDG_CACHE_HOME"):
        return os.path.join(os.environ["XDG_CACHE_HOME"], "lazygen")
    return os.path.join(os.path.expanduser("~"), ".cache", "lazygen")


def _key(argv: Sequence[str]) -> str:
    from lazygen import __version__

    return json.dumps([__version__, sys.executable, os.getcwd(), list(argv)])


def _state_file(key: str) -> str:
    return os.path.join(_cache_dir(), "runs", f"{zlib.crc32(key.encode()):08x}-{len(key)}.json")


def _stat(path: str) -> list[int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return [st.st_size, st.st_mtime_ns, st.st_ino]


def _folders(paths: Iterable[str]) -> list[str]:
    """Folders whose listing matters (template folders): their mtime changes
    when a file is added or removed."""
    out = []
    for p in paths:
        for root, _dirs, _files in os.walk(p):
            out.append(root)
    return out


# lazygen's own modules and stock templates: a record left by other code
# (an edited checkout, a reinstall of the same version) does not count.
PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))


def _own_files() -> list[str]:
    """The package's source files and folders (a folder's mtime changes when
    a file is added or removed); compiled bytecode is left out."""
    out = []
    for root, dirs, files in os.walk(PACKAGE_DIR):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        out.append(root)
        out += [os.path.join(root, f) for f in sorted(files) if not f.endswith((".pyc", ".pyo"))]
    return out


# An input whose mtime is not clearly before the run started may have changed
# after it was read ("racily clean", as git calls it); the margin covers the
# kernel's coarse file-time clock (a few milliseconds).
RACY_NS = 10_000_000


def record(argv: Sequence[str], inputs: Iterable[str], outputs: dict[str, list[int] | None], started_ns: int,
           folders: Iterable[str] = ()) -> None:
    """Remember a successful run. `outputs` are the stats the commit took
    under its lock; inputs are stat-ed now, and a run whose inputs changed
    around its start is not recorded (the next run then does the work)."""
    key = _key(argv)
    read = [[p, _stat(p)] for p in list(inputs) + _folders(folders) + _own_files()]
    if any(stat is None or stat[1] >= started_ns - RACY_NS for _, stat in read):
        return
    written = [[p, list(stat) if stat else None] for p, stat in outputs.items()]
    state = {"key": key, "files": read + written}
    path = _state_file(key)
    tmp = f"{path}.{os.getpid()}.tmp"
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(state, f)
        os.replace(tmp, path)
    except OSError:
        pass  # without a record the next run just does the work


def is_up_to_date(argv: Sequence[str]) -> bool:
    key = _key(argv)
    try:
        with open(_state_file(key), encoding="utf-8") as f:
            state = json.load(f)
    except (OSError, ValueError):
        return False
    if not isinstance(state, dict) or state.get("key") != key:
        return False
    files = state.get("files")
    if not isinstance(files, list) or not files:
        return False
    return all(isinstance(stat, list) and _stat(path) == stat for path, stat in files)
