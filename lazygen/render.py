"""Jinja2 rendering: the environment, its filters, and the renderer of IR
nodes and kernels. (Mistakes in template overrides are diagnosed in
lazygen.template_check.)

Templates live in lazygen/templates and are reachable both by their plain
name and as "lazygen/<name>"; folders given with --template-dir come first
for plain names, so an override named like a stock template can extend it
with {% extends "lazygen/<name>" %} and replace just some blocks.
"""

from __future__ import annotations

import textwrap
from functools import partial
from itertools import chain
from pathlib import Path
from typing import Callable, Iterable, Sequence

import jinja2


TEMPLATE_DIR = Path(__file__).parent / "templates"
STOCK_PREFIX = "lazygen/"  # how an override names lazygen's own template of the same name

# The templates rendered once per element, and what one element is.
PER_ELEMENT = {"ir_node.j2": "IR node class", "native_function.j2": "kernel"}
NODE_TEMPLATE, KERNEL_TEMPLATE = PER_ELEMENT


def layout_element(text: str, strip_lines: bool = True) -> str:
    """One element of a block as torchgen lays it out: its lines, each
    right-stripped (torchgen 2.8 on; `strip_lines`, see lazygen.releases).
    (An empty element has no lines: leave it out.)"""
    lines = text.splitlines()
    return "\n".join(map(str.rstrip, lines) if strip_lines else lines)


def finish_block(texts: list[str]) -> list[str]:
    """Elements already laid out by `layout_element`, made ready to be
    written one per line: together they are the block torchgen writes, the
    whole right-stripped. (Templates print them one by one, so the block is
    never one string: a large backend's is megabytes.)"""
    while texts and not texts[-1].strip():
        texts.pop()
    if texts:
        texts[-1] = texts[-1].rstrip()
    return texts


def layout_block(texts: list[str]) -> str:
    """Elements already laid out by `layout_element`, as one string."""
    return "\n".join(finish_block(texts))


def codeblock(value: object, indent: str = "", strip_lines: bool = True) -> str:
    """Lay out a value the way torchgen's code templates lay out a
    substitution at the start of a line: each element's lines, indented,
    right-stripped, the whole right-stripped. Without `strip_lines` (before
    torchgen 2.8) every line, blank ones too, is indented and kept as it is."""
    items = [value] if isinstance(value, str) else [str(v) for v in value]
    if not strip_lines:
        return "".join(f"{indent}{line}\n" for item in items for line in item.splitlines()).rstrip()
    if indent:
        lines = "\n".join(chain.from_iterable(map(str.splitlines, items)))
        return "\n".join(map(str.rstrip, textwrap.indent(lines, indent).splitlines())).rstrip()
    return layout_block([layout_element(item) for item in items if item])


def squash(text: str, indent: str = "") -> str:
    """Lines of a region torchgen lays out line by line (Register<Key>.cpp's
    definitions): each right-stripped and indented; blank ones dropped."""
    return "\n".join(indent + line for line in map(str.rstrip, text.splitlines()) if line)


class ElementRenderer:
    """Renders one IR node or kernel at a time, as soon as its view is made,
    so a run never holds the views of all its operators at once. Each text
    is laid out with `layout_element`; empty renders contribute nothing.

    Nothing is rendered once `stop()` is true: a run with problems reports
    them and writes nothing, so its texts would be thrown away."""

    def __init__(self, env: jinja2.Environment, common: dict, stop: Callable[[], bool], strip_lines: bool = True) -> None:
        self.node_template = env.get_template(NODE_TEMPLATE)
        self.kernel_template = env.get_template(KERNEL_TEMPLATE)
        # Each template's globals merged with the run's variables once, not
        # once per element (Template.render would; a large backend renders
        # thousands of elements).
        self.node_vars = {**self.node_template.globals, **common}
        self.kernel_vars = {**self.kernel_template.globals, **common}
        self.stop = stop
        self.strip_lines = strip_lines

    def node(self, texts: list[str], node: object) -> None:
        """Append the class of one IrNode to `texts`."""
        if not self.stop():
            _render_into(texts, self.node_template, {**self.node_vars, "node": node}, self.strip_lines)

    def kernel(self, texts: list[str], k: object) -> None:
        """Append one Kernel's definition to `texts`."""
        if not self.stop():
            _render_into(texts, self.kernel_template, {**self.kernel_vars, "k": k}, self.strip_lines)


def _render_into(texts: list[str], template: jinja2.Template, variables: dict, strip_lines: bool) -> None:
    # What Template.render does, with variables that already hold the
    # template's globals (shared=True: used as they are).
    try:
        text = "".join(template.root_render_func(template.new_context(variables, shared=True)))
    except Exception:
        template.environment.handle_exception()  # re-raises, naming the template's file and line
    if text:
        texts.append(layout_element(text, strip_lines))


class _BestEffortCache(jinja2.FileSystemBytecodeCache):
    """Compiled templates on disk. A damaged entry is ignored and rebuilt;
    a folder we cannot read or write (a read-only home in a build sandbox)
    only costs compile time."""

    def load_bytecode(self, bucket: jinja2.bccache.Bucket) -> None:
        try:
            super().load_bytecode(bucket)
        except Exception:  # noqa: BLE001 - truncated or foreign bytes fail in pickle and marshal in many ways
            bucket.reset()

    def dump_bytecode(self, bucket: jinja2.bccache.Bucket) -> None:
        from lazygen.atomic import write_atomic

        try:
            write_atomic(Path(self._get_cache_filename(bucket)), bucket.write_bytecode)
        except OSError:
            pass


def _bytecode_cache() -> jinja2.BytecodeCache | None:
    """Compiled templates, kept beside the catalogue cache (Jinja keys them
    by template name and source checksum)."""
    from lazygen.catalogue_cache import cache_dir

    root = cache_dir()
    if root is None:
        return None
    folder = root / "jinja"
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    return _BestEffortCache(str(folder))


def make_environment(template_dirs: Sequence[Path] = (), strip_lines: bool = True) -> jinja2.Environment:
    """`strip_lines`: the layout of the torch release reproduced (lazygen.releases)."""
    stock = jinja2.FileSystemLoader(str(TEMPLATE_DIR))
    loader = jinja2.ChoiceLoader(
        [
            jinja2.PrefixLoader({STOCK_PREFIX.rstrip("/"): stock}),
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
    env.filters["codeblock"] = partial(codeblock, strip_lines=strip_lines)
    env.filters["squash"] = squash
    return env


def template_files(template_dirs: Iterable[Path]) -> list[Path]:
    """Every file in the override folders (they are inputs of the run)."""
    files = []
    for d in template_dirs:
        files += sorted(p for p in Path(d).rglob("*") if p.is_file())
    return files
