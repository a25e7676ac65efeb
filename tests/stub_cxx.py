#!/usr/bin/env python3
"""A stand-in C++ compile for build-system tests (CMAKE_CXX_COMPILER_LAUNCHER).

CMake calls `stub_cxx.py <compiler> <flags...> -o OBJ -c SRC` for each
compile. Where the build system, not the compiler, is under test, compiling
torch's headers for real would take most of a minute per file. This does what
the build system can observe of a compile, in milliseconds:

- it fails as a compiler would when SRC or one of the headers it includes is
  missing (a generated file not there yet is an ordering bug);
- it writes the depfile the command line asks for (-MD/-MMD -MF), listing
  SRC and every header it includes, found through -I/-isystem/-iquote and
  the including file's folder; headers of torch, c10, ATen and the C++
  library (an <name> without a folder) are outside the test and are
  neither looked for nor listed;
- it writes OBJ as a real, empty object (the real compiler's, on an empty
  file, made once and copied), so that ar and the linker accept it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zlib
from pathlib import Path

EXTERNAL = ("torch/", "ATen/", "c10/", "caffe2/", "pybind11/")
INCLUDE = re.compile(r'^\s*#\s*include\s*([<"])([^>"]+)[>"]', re.M)


def _parse(args: list[str]) -> tuple[str, str, str | None, list[str], list[str]]:
    obj = src = depfile = None
    dirs: list[str] = []
    quote_dirs: list[str] = []
    i = 0
    while i < len(args):
        a = args[i]
        nxt = args[i + 1] if i + 1 < len(args) else ""
        if a == "-o":
            obj, i = nxt, i + 2
        elif a == "-c":
            src, i = nxt, i + 2
        elif a == "-MF":
            depfile, i = nxt, i + 2
        elif a in ("-I", "-isystem", "-idirafter"):
            dirs.append(nxt)
            i += 2
        elif a == "-iquote":
            quote_dirs.append(nxt)
            i += 2
        elif a.startswith("-I"):
            dirs.append(a[2:])
            i += 1
        elif a.startswith("-isystem"):
            dirs.append(a[len("-isystem"):])
            i += 1
        else:
            i += 1
    if obj is None or src is None:
        sys.exit(f"stub_cxx: not a compile (-o and -c expected): {args}")
    return obj, src, depfile, dirs, quote_dirs


def _headers(src: Path, dirs: list[str], quote_dirs: list[str]) -> list[Path]:
    """Every header SRC includes, transitively; exits like a compiler on a missing one."""
    seen: dict[Path, None] = {}
    todo = [src]
    while todo:
        current = todo.pop()
        try:
            text = current.read_text()
        except OSError as e:
            sys.exit(f"{current}: fatal error: {e.strerror}")
        for kind, name in INCLUDE.findall(text):
            if name.startswith(EXTERNAL) or (kind == "<" and "/" not in name):
                continue  # torch, or the system's (<vector>, <stdint.h>)
            search = ([str(current.parent)] + quote_dirs if kind == '"' else []) + dirs
            found = next((Path(d) / name for d in search if (Path(d) / name).is_file()), None)
            if found is None:
                sys.exit(f"{current}: fatal error: {name}: No such file or directory")
            found = Path(os.path.normpath(found))
            if found not in seen:
                seen[found] = None
                todo.append(found)
    return list(seen)


def _empty_object(compiler: str, pic: list[str]) -> str:
    """An object compiled from an empty file, made once per compiler and -fPIC."""
    key = zlib.crc32(json.dumps([compiler, pic]).encode())
    cached = os.path.join(tempfile.gettempdir(), f"lazygen-stub-cxx-{os.getuid()}-{key:08x}.o")
    if not os.path.exists(cached):
        fd, tmp = tempfile.mkstemp(suffix=".o", dir=os.path.dirname(cached))
        os.close(fd)
        subprocess.run([compiler, *pic, "-x", "c++", "-c", os.devnull, "-o", tmp], check=True)
        os.replace(tmp, cached)  # atomic: parallel compiles may race to make it
    return cached


def _escape(path: str) -> str:
    return path.replace(" ", "\\ ")


def main() -> None:
    compiler, args = sys.argv[1], sys.argv[2:]
    obj, src, depfile, dirs, quote_dirs = _parse(args)
    headers = _headers(Path(src), dirs, quote_dirs)
    if depfile:
        deps = " ".join(_escape(p) for p in [src, *map(str, headers)])
        Path(depfile).write_text(f"{_escape(obj)}: {deps}\n")
    shutil.copyfile(_empty_object(compiler, [a for a in args if a in ("-fPIC", "-fpic")]), obj)


if __name__ == "__main__":
    main()
