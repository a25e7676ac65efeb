"""Diagnostics for template overrides (--template-dir).

`check_overrides` runs before anything renders. It reads the override
folders and parses (Jinja's own parser, `env.parse`) only the files lazygen
will use: the overrides named like a stock template and the files they
extend, include or import. It reports what Jinja would silently accept:

- a folder that does not exist;
- a file that overrides nothing (`ir_nodes.j2`): an error when its name is
  close to a stock template's or a stock name sits in the wrong place, a
  warning for any other unused template (a helper nobody includes yet);
- a per-element override (ir_node.j2, native_function.j2) that does not
  extend its stock template, so that its text would replace every element;
- an `{% extends %}` of itself (`"ir_node.j2"` inside ir_node.j2) or a
  cycle, and a missing extend / include / import target;
- a top-level `{% block %}` that the template it extends does not have, so
  that it replaces nothing (`lowering_fuction`).

`template_error` turns an exception raised while loading or rendering a
template into a diagnostic at the template's file and line, with a hint.

`template_blocks` lists the blocks of every stock template and which
override replaces each, and `active_override` which file replaces a whole
template (for `lazygen explain`, which tells where generated text comes
from).
"""

from __future__ import annotations

import difflib
import re
from pathlib import Path
from typing import NamedTuple, Sequence

import jinja2
from jinja2 import meta, nodes

from lazygen.errors import Diagnostic, UserError
from lazygen.render import PER_ELEMENT, STOCK_PREFIX, TEMPLATE_DIR, make_environment

_README = "the README's \"Customising the generated code\""

# Suffixes of files meant as templates; other files in a template folder
# (a README, notes) are not reported when nothing uses them.
_TEMPLATE_SUFFIXES = (".j2", ".jinja", ".jinja2", ".tmpl", ".template")


def stock_names() -> list[str]:
    """lazygen's own templates, by file name."""
    return sorted(p.name for p in TEMPLATE_DIR.iterdir() if p.suffix == ".j2")


def stock_block_names(env: jinja2.Environment, name: str) -> tuple[str, ...]:
    """Every block of stock template `name`, nested ones included, in source
    order: Jinja compiles each Block node of the template's AST into
    Template.blocks. Loading it uses the bytecode cache and the
    environment's own cache, and a run that extends it loads it anyway."""
    return tuple(env.get_template(STOCK_PREFIX + name).blocks)


class Reference(NamedTuple):
    """An {% extends %}, {% include %}, {% import %} or {% from %} tag."""

    kind: str  # "extends", "include" or "import"
    names: tuple[str, ...] | None  # the candidates (the first that exists is used); None: computed while rendering
    optional: bool  # {% include ... ignore missing %}
    line: int
    col: int


class Block(NamedTuple):
    name: str
    line: int
    col: int
    parent: str | None  # the enclosing block


class Parsed(NamedTuple):
    """What the checks need of one template's AST."""

    references: tuple[Reference, ...]
    blocks: tuple[Block, ...]  # every block, in source order

    @property
    def extends(self) -> Reference | None:
        return next((r for r in self.references if r.kind == "extends"), None)


def _column(line_text: str, pattern: str) -> int:
    m = re.search(pattern, line_text)
    return m.start(1) + 1 if m else 1


def parse_template(env: jinja2.Environment, source: str, name: str, filename: str) -> Parsed:
    """Raises jinja2.TemplateSyntaxError."""
    tree = env.parse(source, name, filename)
    lines = source.splitlines()

    def text(lineno: int) -> str:
        return lines[lineno - 1] if 0 < lineno <= len(lines) else ""

    references = []
    for node in tree.find_all((nodes.Extends, nodes.Include, nodes.Import, nodes.FromImport)):
        kind = {nodes.Extends: "extends", nodes.Include: "include"}.get(type(node), "import")
        target = node.template
        items = target.items if isinstance(target, (nodes.List, nodes.Tuple)) else [target]
        names = tuple(i.value for i in items if isinstance(i, nodes.Const) and isinstance(i.value, str))
        static = len(names) == len(items)
        where = re.escape(names[0]) if static and names else r"[^\s%]"
        col = _column(text(node.lineno), rf"\b(?:extends|include|import|from)\s+\[?\s*(['\"]?{where})")
        references.append(Reference(kind, names if static else None, getattr(node, "ignore_missing", False), node.lineno, col))

    blocks: list[Block] = []

    def walk(node: nodes.Node, parent: str | None) -> None:
        for child in node.iter_child_nodes():
            if isinstance(child, nodes.Block):
                col = _column(text(child.lineno), rf"\bblock\s+({re.escape(child.name)})\b")
                blocks.append(Block(child.name, child.lineno, col, parent))
                walk(child, child.name)
            else:
                walk(child, parent)

    walk(tree, None)
    return Parsed(tuple(references), tuple(blocks))


def _closest(word: str, candidates: Sequence[str], cutoff: float = 0.6) -> str | None:
    match = difflib.get_close_matches(word, list(candidates), n=1, cutoff=cutoff)
    return match[0] if match else None


def _stem(name: str) -> str:
    """A file name without its suffixes, lowercased: how close two template names are."""
    return name.split(".", 1)[0].lower()


def _closest_stock(name: str, cutoff: float) -> str | None:
    """The stock template whose name is closest to file name `name`: by
    name without suffixes, then (NativeFunctions.h.j2 and .cpp.j2 share one)
    by the whole name."""

    def ratio(a: str, b: str) -> float:
        return difflib.SequenceMatcher(None, a, b).ratio()

    best = max(stock_names(), key=lambda s: (ratio(_stem(name), _stem(s)), ratio(name.lower(), s.lower())))
    return best if ratio(_stem(name), _stem(best)) >= cutoff else None


class Checked(NamedTuple):
    errors: tuple[Diagnostic, ...]
    warnings: tuple[Diagnostic, ...]


def _is_ignored(name: str) -> bool:
    """Hidden files and editor backups are no templates."""
    return any(part.startswith(".") for part in name.split("/")) or name.endswith("~")


class _Folders:
    """Finds a template by name the way make_environment's loader does."""

    def __init__(self, dirs: Sequence[Path]) -> None:
        self.dirs = list(dirs)

    def find(self, name: str) -> Path | None:
        try:
            pieces = jinja2.loaders.split_template_path(name)
        except jinja2.TemplateNotFound:
            return None
        if name.startswith(STOCK_PREFIX):
            path = TEMPLATE_DIR.joinpath(*pieces[1:])
            return path if path.is_file() else None
        for d in [*self.dirs, TEMPLATE_DIR]:
            path = d.joinpath(*pieces)
            if path.is_file():
                return path
        return None

    def files(self) -> dict[Path, tuple[Path, str]]:
        """Every file of the override folders -> (its folder, its template name)."""
        found = {}
        for d in self.dirs:
            for path in sorted(p for p in d.rglob("*") if p.is_file()):
                name = path.relative_to(d).as_posix()
                if not _is_ignored(name):
                    found[path] = (d, name)
        return found


def _is_stock(path: Path) -> bool:
    return path.parent == TEMPLATE_DIR


def _stock_name(path: Path) -> str:
    return STOCK_PREFIX + path.name


def check_overrides(env: jinja2.Environment, template_dirs: Sequence[Path]) -> Checked:
    """Every problem of the override folders at once (see the module docstring)."""
    return _Check(env, template_dirs).run()


class _Check:
    def __init__(self, env: jinja2.Environment, template_dirs: Sequence[Path]) -> None:
        self.env = env
        self.errors: list[Diagnostic] = []
        self.warnings: list[Diagnostic] = []
        dirs = []
        for d in map(Path, template_dirs):
            if not d.exists():
                self.errors.append(Diagnostic(str(d), None, None, "template folder does not exist",
                                              "--template-dir names a folder holding overrides such as ir_node.j2 "
                                              "(a relative path is from the working directory)"))
            elif not d.is_dir():
                self.errors.append(Diagnostic(str(d), None, None, "--template-dir is not a folder",
                                              "pass the folder holding the override (ir_node.j2, native_function.j2)"))
            else:
                dirs.append(d)
        self.folders = _Folders(dirs)
        self.parsed: dict[Path, Parsed | None] = {}  # None: unreadable, already reported

    def run(self) -> Checked:
        files = self.folders.files()
        active = {}  # stock name -> the override that replaces it
        for stock in stock_names():
            path = self.folders.find(stock)
            if path is not None and not _is_stock(path):
                active[stock] = path
        used, dynamic = self._follow(list(active.values()))
        for stock, path in active.items():
            self._check_file(path, stock)
        for path in sorted(used - set(active.values())):
            self._check_file(path, None)
        for path, (folder, name) in files.items():
            if path not in used:
                self._unused(path, folder, name, active, dynamic)
        return Checked(tuple(self.errors), tuple(self.warnings))

    # ---------------------------------------------------------------- parsing

    def parse(self, path: Path) -> Parsed | None:
        if path not in self.parsed:
            self.parsed[path] = None
            try:
                source = path.read_text(encoding="utf-8")
            except UnicodeDecodeError as err:
                self.errors.append(Diagnostic(str(path), 1, 1, f"template is not UTF-8 text: {err.reason}"))
                return None
            except OSError as err:
                self.errors.append(Diagnostic(str(path), None, None, f"cannot read the template: {err.strerror or err}"))
                return None
            try:
                self.parsed[path] = parse_template(self.env, source, self.name_of(path), str(path))
            except jinja2.TemplateSyntaxError as err:
                self.errors.append(_syntax_diagnostic(err))
        return self.parsed[path]

    def name_of(self, path: Path) -> str:
        for d in self.folders.dirs:
            if path.is_relative_to(d):
                return path.relative_to(d).as_posix()
        return _stock_name(path)

    def _follow(self, roots: list[Path]) -> tuple[set[Path], bool]:
        """The override files the roots use, themselves included, and whether
        some reference is computed while rendering (so any file may be used)."""
        used, queue, dynamic = set(roots), list(roots), False
        while queue:
            parsed = self.parse(queue.pop(0))
            for ref in parsed.references if parsed else ():
                if ref.names is None:
                    dynamic = True
                    continue
                target = self._target(ref)
                if target is not None and not _is_stock(target) and target not in used:
                    used.add(target)
                    queue.append(target)
        return used, dynamic

    def _target(self, ref: Reference) -> Path | None:
        assert ref.names is not None
        return next((p for p in map(self.folders.find, ref.names) if p is not None), None)

    # ----------------------------------------------------------- one template

    def _check_file(self, path: Path, stock: str | None) -> None:
        """`stock`: the stock template this file overrides, if it does."""
        parsed = self.parse(path)
        if parsed is None:
            return
        for ref in parsed.references:
            if ref.names is None:
                continue
            target = self._target(ref)
            if target is None and not ref.optional:
                self._missing_target(path, ref)
            elif target == path and ref.kind != "extends" and stock is not None:
                # The override of `stock` including "stock": itself, without end.
                self.errors.append(Diagnostic(str(path), ref.line, ref.col,
                                              f'{{% {ref.kind} "{stock}" %}} names this file itself, '
                                              "which would include itself without end",
                                              f'to {ref.kind} lazygen\'s own template, use "{STOCK_PREFIX}{stock}"'))
        extends = parsed.extends
        if extends is None:
            if stock in PER_ELEMENT:
                self._not_extending(path, stock)
            return
        if extends.names is None:
            return
        chain = self._chain(path)
        if chain is None:
            return
        root = chain[-1]
        if stock in PER_ELEMENT and root != TEMPLATE_DIR / stock:
            self.errors.append(Diagnostic(str(path), extends.line, extends.col,
                                          f"{stock} extends {self._describe(root)}, which is not lazygen's {stock}",
                                          f'start it with {{% extends "{STOCK_PREFIX}{stock}" %}}: it renders each {PER_ELEMENT[stock]}'))
            return
        self._check_blocks(path, parsed, chain)

    def _chain(self, path: Path) -> list[Path] | None:
        """The templates `path` extends, nearest first, ending at one that
        extends nothing; None when it cannot be followed (a cycle back to
        `path` is reported here; a missing target when its file is checked)."""
        chain: list[Path] = []
        current = path
        while True:
            parsed = None if _is_stock(current) else self.parse(current)
            extends = parsed.extends if parsed else None
            if extends is None:
                return chain
            target = self._target(extends) if extends.names is not None else None
            if target is None:
                return None
            if target == path:
                self._cycle(path, chain)
                return None
            if target in chain:
                return None  # a cycle further up: reported at its own files
            chain.append(target)
            current = target

    def _cycle(self, path: Path, chain: list[Path]) -> None:
        parsed = self.parse(path)
        assert parsed is not None and parsed.extends is not None and parsed.extends.names is not None
        extends = parsed.extends
        name = next(n for n in extends.names if self.folders.find(n) is not None)
        if chain:
            message = f'{{% extends "{name}" %}} leads back to this file (through {", ".join(map(str, chain))})'
        else:
            message = f'{{% extends "{name}" %}} names this file itself: a plain name finds the override folders first'
        base = name.rsplit("/", 1)[-1]
        if base in stock_names():
            hint = f'to extend lazygen\'s own template, use "{STOCK_PREFIX}{base}"'
        else:
            hint = "a template cannot extend itself, directly or through others"
        self.errors.append(Diagnostic(str(path), extends.line, extends.col, message, hint))

    def _missing_target(self, path: Path, ref: Reference) -> None:
        assert ref.names is not None
        known = [STOCK_PREFIX + s for s in stock_names()] + stock_names()
        known += [name for _, name in self.folders.files().values()]
        close = _closest(ref.names[0], known)
        hint = f'did you mean "{close}"?' if close else f"lazygen's templates are {STOCK_PREFIX}<name>: {', '.join(stock_names())}"
        shown = " or ".join(f'"{n}"' for n in ref.names)
        self.errors.append(Diagnostic(str(path), ref.line, ref.col,
                                      f"{{% {ref.kind} %}} target not found: template {shown} is in no template folder", hint))

    def _not_extending(self, path: Path, stock: str) -> None:
        element = PER_ELEMENT[stock]
        tree = stock_block_tree(self.env, stock)
        outer = [b.name for b in tree if b.parent is None and any(c.parent == b.name for c in tree)]
        whole = f"; to replace the whole {element}, redefine {{% block {outer[0]} %}}" if outer else ""
        self.errors.append(Diagnostic(str(path), 1, 1,
                                      f"{stock} does not {{% extends \"{STOCK_PREFIX}{stock}\" %}}: its text, blocks and all, "
                                      f"would replace every {element} with the same text",
                                      f'start it with {{% extends "{STOCK_PREFIX}{stock}" %}} and redefine only the blocks '
                                      f"it changes{whole}"))

    def _check_blocks(self, path: Path, parsed: Parsed, chain: list[Path]) -> None:
        """A top-level block of an extending template must be one of the
        template it extends (or that one's parents); else it replaces nothing."""
        valid: list[str] = []
        for parent in chain:
            if _is_stock(parent):
                valid += stock_block_names(self.env, parent.name)
            else:
                inner = self.parse(parent)
                if inner is None:
                    return
                valid += [b.name for b in inner.blocks]
        root = chain[-1]
        for block in parsed.blocks:
            if block.parent is not None or block.name in valid:
                continue
            message = f"block '{block.name}' is not a block of {self._describe(chain[0])}, so it replaces nothing"
            close = _closest(block.name, valid)
            if close is not None:
                hint = f"did you mean '{close}'?"
            elif valid:
                hint = f"the blocks of {self._describe(root)}: {', '.join(dict.fromkeys(valid))}"
            else:
                hint = f"{self._describe(root)} has no blocks: override the whole file by writing it without {{% extends %}}"
            elsewhere = [s for s in PER_ELEMENT if s != root.name and block.name in stock_block_names(self.env, s)]
            if elsewhere:
                hint = f"'{block.name}' is a block of {elsewhere[0]}: put it in an override named {elsewhere[0]}"
            self.errors.append(Diagnostic(str(path), block.line, block.col, message, hint))

    def _describe(self, path: Path) -> str:
        return _stock_name(path) if _is_stock(path) else str(path)

    # ------------------------------------------------------------ unused files

    def warn(self, diagnostic: Diagnostic) -> None:
        self.warnings.append(diagnostic._replace(severity="warning"))

    def _unused(self, path: Path, folder: Path, name: str, active: dict[str, Path], dynamic: bool) -> None:
        """A file of an override folder that lazygen never loads."""
        # With an include or import computed while rendering, any file may be used.
        report = self.warn if dynamic else self.errors.append
        base = name.rsplit("/", 1)[-1]
        stocks = stock_names()
        helper = ("an override is named like one of lazygen's templates; any other file is used only where "
                  "an override includes, imports or extends it")
        if name in stocks:  # a later folder's file, hidden by an earlier one
            self.warn(Diagnostic(str(path), 1, 1, f"{name} is never used: {active[name]} overrides {name} first "
                                            "(earlier --template-dir folders win)",
                                            "remove one of them, or move its blocks into the other"))
        elif base in stocks:
            where = "the lazygen/ prefix names lazygen's own templates" if name.startswith(STOCK_PREFIX) else \
                "lazygen looks for overrides at the top of a template folder"
            report(Diagnostic(str(path), 1, 1, f"{name} overrides nothing: {where}", f"move it to {folder / base}"))
        elif (close := _closest_stock(base, cutoff=0.75)) is not None:
            report(Diagnostic(str(path), 1, 1, f"{name} overrides nothing: lazygen has no template named {base}",
                              f"did you mean {close}? ({helper})"))
        elif not dynamic and base.endswith(_TEMPLATE_SUFFIXES):
            close = _closest_stock(base, cutoff=0.6)
            self.warn(Diagnostic(str(path), 1, 1, f"{name} overrides nothing, and no override includes, imports or extends it",
                                 (f"did you mean {close}? " if close else "") + f"lazygen's templates: {', '.join(stocks)}; {helper}"))


def _syntax_diagnostic(err: jinja2.TemplateSyntaxError) -> Diagnostic:
    where = err.filename or err.name or "<template>"
    return Diagnostic(where, err.lineno, 1, f"template syntax error: {err.message}",
                      "Jinja2 syntax: {{ expression }}, {% tag %} ... {% endtag %}, {# comment #}; "
                      "every {% block %} ends with {% endblock %}")


# ------------------------------------------------------------ rendering errors


def _inside(path: str, folders: Sequence[Path]) -> bool:
    resolved = Path(path).resolve()
    return any(resolved.is_relative_to(folder) for folder in folders)


def template_error(err: BaseException, template_dirs: Sequence[Path]) -> UserError | None:
    """A diagnostic for a mistake in a template override (a syntax error, an
    undefined name, a missing template, an exception raised while rendering
    it), at its file and line, with a hint; None if `err` did not come from
    one."""
    if isinstance(err, jinja2.TemplateSyntaxError):
        return UserError(_syntax_diagnostic(err))
    overrides = [Path(d).resolve() for d in template_dirs]
    # Jinja rewrites a rendering error's traceback so that its frames name
    # the template file and line; the innermost such frame is the culprit.
    frames = []
    tb = err.__traceback__
    while tb is not None:
        filename = tb.tb_frame.f_code.co_filename
        if _inside(filename, [TEMPLATE_DIR.resolve(), *overrides]):
            frames.append((filename, tb.tb_lineno))
        tb = tb.tb_next
    if not isinstance(err, jinja2.TemplateError) and not (frames and _inside(frames[-1][0], overrides)):
        return None  # a bug in lazygen or its stock templates: let it show its traceback
    path, line = frames[-1] if frames else ("<template>", None)
    if isinstance(err, jinja2.TemplateNotFound):
        message = f"template not found: {err.name}"
    else:
        message = f"template error: {type(err).__name__}: {err}"
    col, hint = _render_hint(err, path, line)
    return UserError.at(path, line, col if line is not None else None, message, hint)


def _render_hint(err: BaseException, path: str, line: int | None) -> tuple[int, str]:
    """(column, hint) for an error raised while rendering line `line` of `path`."""
    try:
        text = Path(path).read_text(encoding="utf-8").splitlines()[line - 1] if line else ""
    except (OSError, UnicodeDecodeError, IndexError):
        text = ""
    if isinstance(err, jinja2.UndefinedError):
        if m := re.fullmatch(r"'(?P<type>[\w.]+) object' has no attribute '(?P<attr>\w+)'", str(err)):
            close = _closest(m["attr"], _public_names(m["type"]))
            col = _column(text, rf"\.\s*({m['attr']})\b")
            return col, (f"did you mean '{close}'? " if close else "") + f"{_README} lists the fields of node and k"
        if m := re.fullmatch(r"'(?P<name>\w+)' is undefined", str(err)):
            close = _closest(m["name"], _stock_variables(Path(path).name))
            col = _column(text, rf"\b({m['name']})\b")
            return col, (f"did you mean '{close}'? " if close else "") + f"{_README} lists what each template sees"
        return 1, f"{_README} lists what each template sees"
    if isinstance(err, jinja2.TemplateNotFound):
        close = _closest(err.name or "", [STOCK_PREFIX + s for s in stock_names()])
        return 1, (f'did you mean "{close}"? ' if close else "") + f"lazygen's own templates are {STOCK_PREFIX}<name>"
    if isinstance(err, RecursionError):
        return 1, ("a template includes or extends itself without end; "
                   f'to extend lazygen\'s template of the same name, use "{STOCK_PREFIX}<name>"')
    return 1, "raised while rendering this line of the template"


def _public_names(qualified_type: str) -> list[str]:
    """The fields and properties of one of lazygen's view types (IrNode, Kernel, ...)."""
    module, _, name = qualified_type.rpartition(".")
    if not module.startswith("lazygen"):
        return []
    import importlib

    cls = getattr(importlib.import_module(module), name, None)
    return [n for n in dir(cls) if not n.startswith("_")] if cls is not None else []


def _stock_variables(name: str) -> list[str]:
    """The variables stock template `name` (or, for a name that is not
    lazygen's, any stock template) uses."""
    env = make_environment()
    names = [name] if name in stock_names() else stock_names()
    found: set[str] = set()
    for n in names:
        found |= meta.find_undeclared_variables(env.parse((TEMPLATE_DIR / n).read_text(encoding="utf-8")))
    return sorted(found)


# --------------------------------------------------------------- block listing


class StockBlock(NamedTuple):
    template: str  # the stock template, e.g. "ir_node.j2"
    name: str  # the block, e.g. "lowering_function"
    line: int  # the line of its {% block %} tag in the stock template
    parent: str | None  # the block it sits in; None at the template's top level
    override: Path | None  # the override file whose text replaces it; None: lazygen's text is used


def stock_block_tree(env: jinja2.Environment, name: str) -> tuple[Block, ...]:
    """The blocks of stock template `name` from its AST, in source order."""
    path = TEMPLATE_DIR / name
    return parse_template(env, path.read_text(encoding="utf-8"), STOCK_PREFIX + name, str(path)).blocks


def active_override(name: str, template_dirs: Sequence[Path]) -> Path | None:
    """The file of the override folders that replaces stock template `name`
    (found the way rendering finds it), or None when lazygen's is used."""
    path = _Folders([Path(d) for d in template_dirs if Path(d).is_dir()]).find(name)
    return None if path is None or _is_stock(path) else path


def template_blocks(template_dirs: Sequence[Path] = (), env: jinja2.Environment | None = None) -> dict[str, tuple[StockBlock, ...]]:
    """Every stock template (by file name, sorted) -> its blocks, in source
    order, each with the override that replaces it.

    A block's `override` is the file of the folders' override chain (the
    override named like the stock template, then the templates it extends)
    nearest to it that defines the block; a block inside a replaced block
    is replaced by the same file (lazygen's text of it is no longer
    rendered); every block of a stock template replaced by an override that
    does not extend it is replaced by that override. File templates such as
    LazyIr.h.j2 have no blocks: their tuple is empty even when overridden.
    Call `check_overrides` first: with broken overrides the answer is a
    best guess. Parses the stock templates and the overrides, so it is meant
    for explaining, not for every run."""
    env = env or make_environment(template_dirs)
    check = _Check(env, template_dirs)
    listing = {}
    for stock in stock_names():
        active = check.folders.find(stock)
        overrides: list[Path] = []  # the override files extending lazygen's template, nearest first
        replaces_all = False
        if active is not None and not _is_stock(active):
            chain = check._chain(active) or []
            if TEMPLATE_DIR / stock in chain:
                overrides = [active] + chain[: chain.index(TEMPLATE_DIR / stock)]
            else:
                replaces_all = True
        defined: dict[str, Path] = {}
        for path in reversed(overrides):  # the nearest last, so that it wins
            parsed = check.parse(path)
            defined.update((b.name, path) for b in (parsed.blocks if parsed else ()))
        blocks: list[StockBlock] = []
        for b in stock_block_tree(env, stock):
            if replaces_all:
                override = active
            else:
                override = defined.get(b.name) or next((s.override for s in blocks if s.name == b.parent), None)
            blocks.append(StockBlock(stock, b.name, b.line, b.parent, override))
        listing[stock] = tuple(blocks)
    return listing
