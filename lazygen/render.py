"""Jinja2 rendering: the environment, its filters, and one call per output.

Templates live in lazygen/templates and are reachable both by their plain
name and as "lazygen/<name>"; folders given with --template-dir come first
for plain names, so an override named like a stock template can extend it
with {% extends "lazygen/<name>" %} and replace just some blocks.
"""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Iterable, Sequence

import jinja2

TEMPLATE_DIR = Path(__file__).parent / "templates"

# Separates the elements of a list rendered inside {% filter codeblock %}.
SEP = "\x1e"


def codeblock(value: object, indent: str = "") -> str:
    """Lay out a value the way torchgen's code templates lay out a
    substitution at the start of a line: each element's lines, indented,
    right-stripped, the whole right-stripped."""
    if isinstance(value, str) and SEP in value:
        *items, rest = value.split(SEP)
        if rest.strip():
            raise ValueError("text after the last element of a codeblock")
    elif isinstance(value, str):
        items = [value]
    else:
        items = [str(v) for v in value]
    if indent:
        content = textwrap.indent("\n".join(line for item in items for line in item.splitlines()), indent)
        return "\n".join(line.rstrip() for line in content.splitlines()).rstrip()
    return "\n".join(line.rstrip() for item in items for line in item.splitlines()).rstrip()


class _BestEffortCache(jinja2.FileSystemBytecodeCache):
    """Compiled templates on disk; a folder we cannot read or write (a
    read-only home in a build sandbox) only costs compile time."""

    def load_bytecode(self, bucket: jinja2.bccache.Bucket) -> None:
        try:
            super().load_bytecode(bucket)
        except OSError:
            pass

    def dump_bytecode(self, bucket: jinja2.bccache.Bucket) -> None:
        try:
            super().dump_bytecode(bucket)
        except OSError:
            pass


def _bytecode_cache() -> jinja2.BytecodeCache | None:
    """Compiled templates, kept beside the catalogue cache (Jinja keys them
    by template name and source checksum)."""
    from lazygen.catalogue_cache import cache_dir

    folder = cache_dir() / "jinja"
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    return _BestEffortCache(str(folder))


def make_environment(template_dirs: Sequence[Path] = ()) -> jinja2.Environment:
    stock = jinja2.FileSystemLoader(str(TEMPLATE_DIR))
    loader = jinja2.ChoiceLoader(
        [
            jinja2.PrefixLoader({"lazygen": stock}),
            jinja2.FileSystemLoader([str(d) for d in template_dirs]),
            stock,
        ]
    )
    env = jinja2.Environment(
        loader=loader,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        bytecode_cache=_bytecode_cache(),
    )
    env.filters["codeblock"] = codeblock
    env.filters["split_lines"] = lambda text: text.split("\n")
    env.globals["SEP"] = SEP
    return env


def template_files(template_dirs: Iterable[Path]) -> list[Path]:
    """Every file in the override folders (they are inputs of the run)."""
    files = []
    for d in template_dirs:
        files += sorted(p for p in Path(d).rglob("*") if p.is_file())
    return files
