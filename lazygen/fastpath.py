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

from lazygen.atomic import write_atomic
from lazygen.cachedir import cache_dir


def _key(argv: Sequence[str]) -> str:
    from lazygen import __version__

    return json.dumps([__version__, sys.executable, os.getcwd(), list(argv)])


def _state_file(key: str) -> str | None:
    folder = cache_dir()
    if folder is None:
        return None
    # surrogateescape: a command line may name paths that are not UTF-8.
    return os.path.join(folder, "runs", f"{zlib.crc32(key.encode('utf-8', 'surrogateescape')):08x}-{len(key)}.json")


def _stat(path: str) -> list[int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return [st.st_size, st.st_mtime_ns, st.st_ino]


def _folders(paths: Iterable[str]) -> list[str]:
    """Folders whose listing matters (template folders): their mtime changes
    when a file is added or removed. A folder given but missing is listed
    too: creating it later is a change."""
    out = []
    for p in paths:
        out.append(p)
        for root, _dirs, _files in os.walk(p):
            if root != p:
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
    path = _state_file(key)
    if path is None:
        return
    folders = _folders(folders)
    # A missing folder is recorded as missing (None); any other input must exist.
    read = [[p, _stat(p)] for p in folders] + [[p, _stat(p)] for p in list(inputs) + _own_files()]
    if any((stat is None and p not in folders) or (stat is not None and stat[1] >= started_ns - RACY_NS) for p, stat in read):
        return
    if any(stat is None for stat in outputs.values()):
        return  # an output gone already: another run is at work
    written = [[p, list(stat)] for p, stat in outputs.items()]
    state = {"key": key, "files": read + written}
    try:
        write_atomic(path, lambda f: f.write(json.dumps(state).encode("utf-8", "surrogateescape")))
    except OSError:
        pass  # without a record the next run just does the work


def is_up_to_date(argv: Sequence[str]) -> bool:
    key = _key(argv)
    path = _state_file(key)
    if path is None:
        return False
    try:
        with open(path, encoding="utf-8") as f:
            state = json.load(f)
    except (OSError, ValueError):
        return False
    if not isinstance(state, dict) or state.get("key") != key:
        return False
    files = state.get("files")
    if not isinstance(files, list) or not files:
        return False
    return all(isinstance(entry, list) and len(entry) == 2 and isinstance(entry[0], str) and _stat(entry[0]) == entry[1]
               for entry in files)
