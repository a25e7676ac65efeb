"""The no-op fast path: when the options, every input and every output are
exactly as the last successful run left them, there is nothing to do, and
the run can stop before importing PyYAML or Jinja2.

A state file in the output folder records the last run: an options
fingerprint, and the size, mtime and inode of every file read and written.
This module imports nothing heavy."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Iterable

from lazygen.options import Options

STATE_NAME = ".lazygen-state"


def _stat(path: Path) -> list[int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return [st.st_size, st.st_mtime_ns, st.st_ino]


def _fingerprint(options: Options) -> str:
    from lazygen import __version__

    templates = []
    for d in options.template_dirs:
        templates += sorted(str(p) for p in Path(d).rglob("*") if p.is_file())
    return "\n".join([__version__, os.getcwd(), options.fingerprint(), *templates])


def record(options: Options, inputs: Iterable[Path], outputs: Iterable[Path]) -> None:
    files = [os.fspath(p) for p in inputs]
    outs = [os.fspath(p) for p in outputs]
    if options.depfile is not None:
        outs.append(os.fspath(options.depfile))
    state = {
        "fingerprint": _fingerprint(options),
        "inputs": [[p, _stat(Path(p))] for p in files],
        "outputs": [[p, _stat(Path(p))] for p in outs],
    }
    path = Path(options.output_dir) / STATE_NAME
    tmp = path.with_name(f".{STATE_NAME}.{os.getpid()}.tmp")
    try:
        tmp.write_text(json.dumps(state), encoding="utf-8")
        os.replace(tmp, path)
    except OSError:
        pass  # without a state file the next run just does the work


def forget(options: Options) -> None:
    try:
        os.unlink(Path(options.output_dir) / STATE_NAME)
    except OSError:
        pass


def is_up_to_date(options: Options, catalogue: tuple[Path, Path]) -> bool:
    try:
        state = json.loads((Path(options.output_dir) / STATE_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    if not isinstance(state, dict) or state.get("fingerprint") != _fingerprint(options):
        return False
    recorded = [p for p, _ in state.get("inputs", [])]
    if recorded[:3] != [os.fspath(options.source_yaml), os.fspath(catalogue[0]), os.fspath(catalogue[1])]:
        return False
    for path, stat in state.get("inputs", []) + state.get("outputs", []):
        if stat is None or _stat(Path(path)) != stat:
            return False
    return True
