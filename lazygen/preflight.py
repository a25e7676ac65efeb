"""Checks of what a run is asked to read and write, made before it reads
the catalogue or writes anything: a file both read and written (`-s
out/LazyIr.h -o out`, `--depfile` naming the yaml or an output), a path a
depfile cannot spell (a newline), and option text that cannot go into the
generated code (not UTF-8)."""

from __future__ import annotations

import os
from dataclasses import fields
from pathlib import Path
from typing import Iterable

from lazygen import plan
from lazygen.commit import LOCK_NAME, MANIFEST_NAME
from lazygen.errors import Diagnostic, UserError
from lazygen.options import Options

# Options whose text never reaches the generated code.
_NOT_WRITTEN = {"depfile_target"}


def _written_as(path: Path) -> str:
    """The file a write to `path` replaces: a rename replaces the last
    component itself, even when it is a symlink."""
    path = Path(os.path.abspath(path))
    return os.path.join(os.path.realpath(path.parent), path.name)


def _read_as(path: Path) -> set[str]:
    """The names a read of `path` goes through: the one given and the file a symlink leads to."""
    return {_written_as(path), os.path.realpath(path)}


def check(options: Options, backend: str, has_autograd: bool, inputs: Iterable[tuple[str, Path]]) -> None:
    """Raise a UserError with every problem found. `inputs`: (what, path)
    of each file the run may read."""
    problems: list[Diagnostic] = []
    out_dir = Path(options.output_dir)
    names = plan.output_names(backend, has_autograd, options.shards)
    writes: list[tuple[str, Path]] = [(f"output {name}", out_dir / name) for name in names]
    writes += [("lazygen's manifest", out_dir / MANIFEST_NAME), ("lazygen's lock file", out_dir / LOCK_NAME)]
    if options.depfile is not None:
        writes.append(("the depfile (--depfile)", Path(options.depfile)))
    shapes = Path(options.write_missing_shapes) if options.write_missing_shapes is not None else None
    if shapes is not None:
        writes += [("the header --write-missing-shapes writes", shapes),
                   ("the skeletons --write-missing-shapes writes", shapes.with_name(shapes.name + ".cpp"))]
    inputs = list(inputs)

    written: dict[str, str] = {}
    for what, path in writes:
        where = _written_as(path)
        if where in written:
            problems.append(Diagnostic(os.fspath(path), None, None, f"{what} is also {written[where]}: one would overwrite the other",
                                       "give each its own path"))
        written.setdefault(where, what)
    for what, path in inputs:
        for where in sorted(_read_as(path) & set(written)):
            if shapes is not None and written[where].startswith("the header --write") and what == "the shape inference header":
                continue  # rewriting the header it checks is what --write-missing-shapes is for
            problems.append(Diagnostic(os.fspath(path), None, None,
                                       f"{what} is also {written[where]} of this run, which would overwrite it",
                                       _remedy(written[where])))
            break

    if options.depfile is not None:
        target = options.depfile_target or os.fspath(out_dir / names[0])
        for spelled in [target, *(os.fspath(p) for _, p in inputs)]:
            if "\n" in spelled or "\r" in spelled:
                problems.append(Diagnostic(spelled, None, None, "a depfile cannot name a path holding a newline",
                                           "rename it, or leave out --depfile"))

    problems += _text_problems(options)
    if problems:
        raise UserError(*problems)


def _remedy(written: str) -> str:
    if "depfile" in written:
        return "give --depfile another path"
    if "--write-missing-shapes" in written:
        return "give --write-missing-shapes another path"
    return "write the outputs to another folder (-o)"


def _text_problems(options: Options) -> list[Diagnostic]:
    """Option text the generated code spells must be UTF-8 (a command line
    can hold any bytes: Python passes the others on as surrogates)."""
    problems = []
    for field in fields(options):
        value = getattr(options, field.name)
        if field.name == "output_dir":
            value = os.fspath(value)
        if field.name in _NOT_WRITTEN or not isinstance(value, str) or _is_utf8(value):
            continue
        if field.name == "output_dir":
            if options.include_prefix is not None:
                continue  # only a path then: never written into a file
            problems.append(Diagnostic(value, None, None, "the output folder's name is not valid UTF-8, and the generated "
                                       "#include lines spell it", "pass --include-prefix to spell those includes another way"))
        else:
            flag = "--" + field.name.replace("_", "-")
            problems.append(Diagnostic("lazygen", None, None, f"{flag} is not valid UTF-8 text, and the generated code spells it"))
    return problems


def _is_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
