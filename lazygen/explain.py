"""`lazygen explain`: for each operator named, where it comes from, what a
run with the same options generates for it, what its author must write,
and which template block renders each part. Nothing is written.

    lazygen explain -s YAML [generation options] OP [OP...] [--format json]

The work is the generator's own, asked about one operator: the backend is
checked against the catalogue (lazygen.backend), refusals come from
lazygen.compilable, file names and shards from lazygen.plan, declarations
and registrations from the same views the templates render, and the blocks
from lazygen.template_check. An operator the yaml does not list is explained
as it would be under `full_codegen` and under `supported` (the yaml with it
appended to that list).

`explain()` returns the JSON document (its shape is FORMAT, documented in
the README's "lazygen explain"); `format_text()` lays it out for people.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Sequence

from lazygen import compilable, plan
from lazygen.backend import OP_LISTS, BackendIndex, BackendSpec, CheckedBackend, OpEntry, check_backend, supports_symint
from lazygen.catalogue import Catalogue, NativeFunction
from lazygen.cpp import Flavor, Signature
from lazygen.errors import Diagnostic, Unsupported, UserError
from lazygen.options import Options
from lazygen.schema import OperatorName, SchemaError

FORMAT = "lazygen-explain-1"

# The sections an operator can be explained under, and what each gives it.
_SECTIONS = ("full_codegen", "supported", "ir_gen", "autograd")
# How an unlisted operator is explained: as it would be under each of these.
_WHAT_IF = ("full_codegen", "supported")


class _Run:
    """What every operator's explanation shares: the inputs, read once."""

    def __init__(self, options: Options) -> None:
        from lazygen.api import catalogue_files, choose_release
        from lazygen.catalogue_cache import load_catalogue
        from lazygen.engine import load_spec

        plan.check_shards(options.shards)
        self.options = options
        self.spec = load_spec(options)
        self.native, tags = catalogue_files(options)
        # The catalogue as the torch release reproduced builds it (its autogen differs).
        self.catalogue: Catalogue = load_catalogue(self.native, tags, choose_release(options, self.native)[0])
        self.checked, self.errors = check_backend(self.spec, self.catalogue)
        self.class_name = f"{self.spec.backend}NativeFunctions"
        self.group_of = {op: group for group in self.catalogue.groups for op in group if op}
        self._blocks: dict | None = None
        self._shape_lines: set[str] | None | bool = False  # False: not read yet
        self._impl_found: dict[str, int] | None | bool = False

    # ------------------------------------------------------------ inputs read on demand

    def blocks(self) -> dict:
        if self._blocks is None:
            from lazygen.render import make_environment
            from lazygen.template_check import check_overrides, stock_block_names, stock_names, template_blocks

            dirs = self.options.template_dirs
            env = make_environment(dirs)
            if dirs:
                errors = check_overrides(env, dirs).errors
                if errors:
                    raise UserError(*errors)
                self._blocks = {t: [(b.name, b.override) for b in blocks] for t, blocks in template_blocks(dirs, env).items()}
            else:
                # Every block is lazygen's: its names come from the compiled templates (cached), not a parse.
                self._blocks = {t: [(name, None) for name in stock_block_names(env, t)] for t in stock_names()}
        return self._blocks

    def shape_header(self) -> tuple[str | None, set[str] | None]:
        """(the file the shape check reads, its lines), or (None, None) when the check is off."""
        o = self.options
        if not o.check_shape_inference or o.shape_inference_hdr is None:
            return None, None
        from lazygen.engine import shape_header_file

        path = shape_header_file(o)
        if self._shape_lines is False:
            try:
                self._shape_lines = set(path.read_text(encoding="utf-8").split("\n"))
            except (OSError, UnicodeDecodeError):
                self._shape_lines = None
        return str(path), self._shape_lines  # type: ignore[return-value]

    def impl_definitions(self) -> dict[str, int] | None:
        if self._impl_found is False:
            from lazygen.engine import kernel_definitions

            try:
                text = Path(self.options.impl_path).read_text(encoding="utf-8")  # type: ignore[arg-type]
            except (OSError, UnicodeDecodeError) as err:
                raise UserError.at(str(self.options.impl_path), None, None,
                                   f"cannot read the kernel implementation file: {getattr(err, 'strerror', None) or err}") from None
            self._impl_found = kernel_definitions(text, self.class_name)
        return self._impl_found  # type: ignore[return-value]

    # ------------------------------------------------------------ names

    def resolve(self, text: str) -> str | Diagnostic:
        """The catalogue's name for `text` ("aten::add.Tensor" and "add.Tensor" alike)."""
        from lazygen.backend import unknown_operator_hint

        bare = text.removeprefix("aten::")
        try:
            name = OperatorName.parse(bare)
        except SchemaError as err:
            return Diagnostic("lazygen explain", None, None, f"'{text}' is not an operator name: {err}")
        if str(name) in self.catalogue:
            return str(name)
        return Diagnostic("lazygen explain", None, None, f"unknown operator '{text}': not in {self.native}",
                          unknown_operator_hint(bare, name.name, self.catalogue, n=3))

    def listed(self, op: str) -> list[dict]:
        """Every entry of the yaml naming `op`, in list order."""
        found = []
        for section in OP_LISTS:
            for entry in getattr(self.spec, section):
                try:
                    name = str(OperatorName.parse(entry.text))
                except SchemaError:
                    continue
                if name == op:
                    found.append({"section": section, "path": self.spec.path, "line": entry.line, "col": entry.col})
        return found


def explain(options: Options, ops: Sequence[str]) -> dict:
    """The explanation of each operator in `ops`, as the JSON document.
    Raises UserError (every unknown operator at once, or a problem with
    the inputs)."""
    run = _Run(options)
    names = [run.resolve(text) for text in ops]
    unknown = [d for d in names if isinstance(d, Diagnostic)]
    if unknown:
        raise UserError(*unknown)
    return {
        "format": FORMAT,
        "yaml": run.spec.path,
        "backend": run.spec.backend,
        "shards": options.shards,
        "ops": [_explain_op(run, op) for op in dict.fromkeys(names)],  # type: ignore[arg-type]
    }


def _explain_op(run: _Run, op: str) -> dict:
    f = run.catalogue.function(op)
    listed = run.listed(op)
    in_yaml = any(e["section"] in _SECTIONS for e in listed)
    doc: dict = {
        "op": op,
        "in_yaml": in_yaml,
        "listed": listed,
        "catalogue": {"path": str(run.native), "line": f.line, "autogen": "generated" in f.tags},
        "schema": str(f.func),
        "group": _group(run, f),
        "notes": _notes(run, f),
    }
    if in_yaml:
        lines = {(e["line"], e["col"]) for e in listed}
        problems = [d for d in run.errors if (d.line, d.col) in lines]
        doc["as"] = [_explain_as(run, run.checked, f, None, problems)]
    else:
        # Registered already, through a variant's generated wrapper?
        doc["registered_now"] = _registrations(run, run.checked, f)
        doc["as"] = [_what_if(run, f, section) for section in _WHAT_IF]
    return doc


def _what_if(run: _Run, f: NativeFunction, section: str) -> dict:
    """`f` explained as if the yaml listed it (last) under `section`."""
    spec: BackendSpec = run.spec._replace(**{section: getattr(run.spec, section) + (OpEntry(f.op, 0, 0),)})
    checked, errors = check_backend(spec, run.catalogue)
    return _explain_as(run, checked, f, section, [d for d in errors if d.line == 0])


def _group(run: _Run, f: NativeFunction) -> dict:
    group = run.group_of.get(f.op, (f.op,))
    members = [{"op": op, "kind": run.catalogue.function(op).kind.value} for op in group if op and op != f.op]
    copy_of = None
    if "view_copy" in f.tags:
        base = f.func.name.name.removesuffix("_copy")
        view = base + (f".{f.func.name.overload}" if f.func.name.overload else "")
        copy_of = view if view in run.catalogue else None
    return {"kind": f.kind.value, "view_copy": "view_copy" in f.tags, "copy_of": copy_of, "members": members}


def _view_copy_of(run: _Run, f: NativeFunction) -> str | None:
    if not f.is_view_op or "view_copy" in f.tags:
        return None
    name = f.func.name
    copy = f"{name.name}_copy" + (f".{name.overload}" if name.overload else "")
    return copy if copy in run.catalogue else None


def _notes(run: _Run, f: NativeFunction) -> list[str]:
    notes = []
    copy = _view_copy_of(run, f)
    if copy is not None:
        notes.append(f"'{f.op}' is a view; a lazy backend lists its copying variant '{copy}' instead "
                     "(functionalization turns views into it)")
    if f.func.has_symint() and not any(e["section"] == "symint" for e in run.listed(f.op)):
        notes.append("its schema has SymInt arguments: listing it under 'symint' too gives the kernel "
                     "c10::SymInt parameters and a name ending in _symint")
    return notes


def _explain_as(run: _Run, checked: CheckedBackend, f: NativeFunction, what_if: str | None, problems: list[Diagnostic]) -> dict:
    """What a run with `checked` generates for `f`, and what its author writes."""
    o = run.options
    op = f.op
    index, autograd = checked.backend_index, checked.autograd_index
    full = op in checked.full_codegen
    ir = full or op in checked.ir_gen
    sections = [s for s, yes in (("full_codegen", full), ("ir_gen", op in checked.ir_gen),
                                 ("supported", op in index.kernels and not full),
                                 ("autograd", autograd is not None and op in autograd.kernels)) if yes]
    group = run.group_of.get(op, (op,))
    shard = plan.shard_of(group[0], o.shards)
    found: dict = {"what_if": what_if, "sections": sections, "shard": shard if o.shards > 1 else None,
                   "ir_node": None, "kernels": [], "registrations": _registrations(run, checked, f),
                   "shape_function": None, "refusals": [], "problems": [d.format() for d in problems], "templates": []}

    if ir:
        from lazygen.lazy import node_class_name

        ir_file = plan.ir_shard_headers(o.shards)[shard] if o.shards > 1 else "LazyIr.h"
        found["ir_node"] = {"class": node_class_name(f.func.name), "file": ir_file}
        found["templates"] += _templates(run, "ir_node", ["LazyIrShard.h.j2" if o.shards > 1 else "LazyIr.h.j2", "ir_node.j2"])
        found["refusals"] = _refusals(run, checked, f, "full_codegen" if full else "ir_gen")
        found["problems"] += _generator_errors(run, checked, f, full)

    for idx in (index, autograd):
        k = idx.kernels.get(op) if idx is not None else None
        if k is None:
            continue
        found["kernels"].append(_kernel(run, idx, f, k, generated=full and idx is index, shard=shard))
        if full and idx is index:
            found["templates"] += _templates(run, "kernel", ["NativeFunctions.cpp.j2", "native_function.j2"])
            found["shape_function"] = _shape_function(run, f, k)
    if found["kernels"]:
        found["templates"] += _templates(run, "declaration", ["NativeFunctions.h.j2"])
    if found["registrations"]:
        found["templates"] += _templates(run, "registration", ["Register.cpp.j2"])
    return found


def _kernel(run: _Run, idx: BackendIndex, f: NativeFunction, k: str, *, generated: bool, shard: int) -> dict:
    o = run.options
    sig = Signature(f.func, Flavor.of(f, symint=supports_symint(k)))
    try:
        declaration, definition = f"static {sig.decl(k)};", sig.decl(f"{run.class_name}::{k}")
    except Unsupported as err:
        declaration = definition = f"(cannot be declared: {err})"
    kernel: dict = {
        "dispatch_key": idx.dispatch_key,
        "name": k,
        "symint": supports_symint(k),
        "origin": "generated" if generated else "hand-written",
        "declaration": declaration,
        "declared_in": f"{run.spec.backend}NativeFunctions.h",
        "definition": definition,
        "defined_in": plan.kernel_sources(run.spec.backend, o.shards)[shard] if generated else None,
        "impl": None,
    }
    if not generated and o.impl_path is not None:
        # As the generation run checks: one definition per op sharing the kernel name.
        sharing = [op for op in run.catalogue.order if idx.kernels.get(op) == k]
        have = (run.impl_definitions() or {}).get(k, 0)
        kernel["impl"] = {"path": str(o.impl_path), "definitions": have, "expected": len(sharing), "for": sharing}
    return kernel


def _shape_function(run: _Run, f: NativeFunction, k: str) -> dict:
    from lazygen.kernel_view import shape_declaration, uses_meta_shapes

    if uses_meta_shapes(f):
        why = "it is a view_copy op" if "view_copy" in f.tags else "it is structured"
        return {"kind": "meta", "why": f"shapes come from its meta function: {why}", "declaration": None,
                "header": None, "file": None, "declared": None}
    declaration = shape_declaration(f, k, supports_symint(k))
    path, lines = run.shape_header()
    return {"kind": "compute_shape", "why": None, "declaration": declaration, "header": run.options.shape_inference_hdr,
            "file": path, "declared": None if lines is None else declaration in lines}


def _registrations(run: _Run, checked: CheckedBackend, f: NativeFunction) -> list[dict]:
    """The m.impl lines registering `f`, or calling `f`'s kernel from a variant's generated wrapper."""
    from lazygen.register_view import group_wrappers

    group = run.group_of.get(f.op, (f.op,))
    found = []
    for idx in (checked.backend_index, checked.autograd_index):
        if idx is None:
            continue
        wrappers, _ = group_wrappers(run.catalogue, idx, group, run.spec.cpp_namespace, run.class_name)
        sharded = idx is checked.backend_index
        file = plan.register_sources(idx.dispatch_key, run.options.shards if sharded else 1)[
            plan.shard_of(group[0], run.options.shards) if sharded else 0]
        for w in wrappers:
            registered = re.match(r'm\.impl\("([^"]+)"', w.registration)
            name = registered.group(1) if registered else ""
            own = idx.kernels.get(name)
            via = None if own is not None else next((op for op in group if op and op in idx.kernels and
                                                     run.catalogue.function(op).kind.value == "functional"), None)
            if name == f.op or via == f.op:
                found.append({"op": name, "dispatch_key": idx.dispatch_key, "file": file,
                              "text": " ".join(line.strip() for line in w.registration.splitlines()),
                              "wrapper": w.name, "via": via})
    return found


def _refusals(run: _Run, checked: CheckedBackend, f: NativeFunction, section: str) -> list[dict]:
    o = run.options
    index = checked.backend_index

    def position(op: str) -> float:
        line = checked.lines[op].line
        return line if line > 0 else float("inf")  # a what-if entry comes last

    listed = sorted([(op, compilable.FULL_CODEGEN) for op in checked.full_codegen] +
                    [(op, compilable.IR_GEN) for op in checked.ir_gen], key=lambda pair: position(pair[0]))
    refusals = [r for r in compilable.class_name_refusals(listed, (e.func.name for e in run.spec.non_native), o.node_base) if r.op == f.op]
    group = run.group_of.get(f.op, (f.op,))
    refusals += compilable.op_refusals(
        f, section, variants=[run.catalogue.function(v) for v in group if v and v != f.op], has_kernel=index.kernels.__contains__,
        use_out_as_primary=index.use_out_as_primary, use_lazy_shape=o.use_lazy_shape, ts_lowerings=o.gen_ts_lowerings)
    return [{"rule": r.rule, "message": r.message, "hint": r.hint, "other": r.other} for r in refusals]


def _generator_errors(run: _Run, checked: CheckedBackend, f: NativeFunction, full: bool) -> list[str]:
    """What the generator itself cannot make for `f` (its IR node or kernel)."""
    from lazygen.ir_view import Names, ir_node
    from lazygen.kernel_view import KernelContext, kernel
    from lazygen.lazy import lazy_ir_schema

    o = run.options
    k = checked.backend_index.kernels.get(f.op)
    names = Names(o.qualify_names)
    node_base = "torch::lazy::Node" if o.qualify_names and o.node_base == "Node" else o.node_base
    try:
        schema = lazy_ir_schema(f.func, value_class=o.lazy_value_class, symint=supports_symint(k))
        ir_node(schema, node_base=node_base, use_lazy_shape=o.use_lazy_shape, ts_lowerings=o.gen_ts_lowerings, names=names)
        if full and k is not None:
            kernel(KernelContext(o, run.class_name, names), f, schema, k, supports_symint(k))
    except Unsupported as err:
        return [f"cannot generate code for '{f.op}': {err}"]
    return []


def _templates(run: _Run, part: str, templates: list[str]) -> list[dict]:
    """Which template (and block) renders each piece of `part`, stock or overridden."""
    from lazygen.template_check import active_override

    blocks = run.blocks()
    found = []
    for template in templates:
        if blocks.get(template):
            found += [{"part": part, "template": template, "block": name,
                       "override": str(override) if override is not None else None} for name, override in blocks[template]]
        else:
            override = active_override(template, run.options.template_dirs)
            found.append({"part": part, "template": template, "block": None,
                          "override": str(override) if override is not None else None})
    return found


# ------------------------------------------------------------------ text


def format_text(doc: dict) -> str:
    out: list[str] = []
    for i, op in enumerate(doc["ops"]):
        if i:
            out.append("")
        out += _op_text(doc, op)
    return "\n".join(out) + "\n"


def _op_text(doc: dict, op: dict) -> list[str]:
    lines = [op["op"]]
    if op["listed"]:
        for e in op["listed"]:
            lines.append(f"  listed:     under {e['section']} at {e['path']}:{e['line']}:{e['col']}")
    if not op["in_yaml"]:
        lines.append(f"  not in the yaml: {doc['yaml']} does not list it under {', '.join(_SECTIONS)}; "
                     f"explained as it would be under {' and under '.join(_WHAT_IF)}")
    c = op["catalogue"]
    lines.append(f"  catalogue:  {c['path']}:{c['line']}" + (" (generated from this entry by autogen)" if c["autogen"] else ""))
    lines.append(f"  schema:     {op['schema']}")
    g = op["group"]
    kind = g["kind"] + (", view_copy" + (f" of {g['copy_of']}" if g["copy_of"] else "") if g["view_copy"] else "")
    members = ", ".join(f"{m['op']} ({m['kind']})" for m in g["members"]) or "none"
    lines.append(f"  group:      {kind}; other members: {members}")
    for note in op["notes"]:
        lines.append(f"  note:       {note}")
    for r in op.get("registered_now", []):
        lines.append(f"  registered now, through {r['via']}'s kernel: {r['file']}: {r['text']}")
    for a in op["as"]:
        lines += _as_text(a)
    return lines


def _as_text(a: dict) -> list[str]:
    head = f"  as {a['what_if']} (if listed):" if a["what_if"] else f"  as {' + '.join(a['sections']) or 'listed'}:"
    lines = [head]
    if a["shard"] is not None:
        lines.append(f"    shard:       {a['shard']}")
    if a["ir_node"]:
        lines.append(f"    IR class:    {a['ir_node']['class']} in {a['ir_node']['file']}")
    for k in a["kernels"]:
        where = f"in {k['defined_in']}" if k["defined_in"] else "you write it"
        lines.append(f"    kernel:      {k['name']} ({k['dispatch_key']}), {k['origin']}, {where}")
        lines.append(f"      declared in {k['declared_in']}: {k['declaration']}")
        lines.append(f"      {'define:' if k['origin'] == 'hand-written' else 'defined:':<11}{k['definition']}")
        if k["impl"]:
            i = k["impl"]
            verdict = "ok" if i["definitions"] == i["expected"] else "MISSING" if i["definitions"] < i["expected"] else "too many"
            lines.append(f"      {i['path']} defines {i['definitions']} of {i['expected']} ({', '.join(i['for'])}): {verdict}")
    for r in a["registrations"]:
        via = f" (through {r['via']}'s kernel)" if r["via"] else ""
        lines.append(f"    registered:  {r['file']}: {r['text']}{via}")
    s = a["shape_function"]
    if s:
        if s["kind"] == "meta":
            lines.append(f"    shape:       none to write; {s['why']}")
        else:
            declared = {True: "declared", False: "NOT declared", None: "not checked"}[s["declared"]]
            lines.append(f"    shape:       you provide {s['declaration']}")
            lines.append(f"      {declared} in {s['header']}" + (f" ({s['file']})" if s["file"] and s["file"] != s["header"] else ""))
    for r in a["refusals"]:
        lines.append(f"    REFUSED:     {r['message']} [{r['rule']}]; {r['hint']}")
    for p in a["problems"]:
        lines.append(f"    problem:     {p}")
    # Per part: each template with its blocks; an override shows as `block <- file`.
    parts: dict[str, dict[str, list[str]]] = {}
    for t in a["templates"]:
        blocks = parts.setdefault(t["part"], {}).setdefault(t["template"], [])
        name = t["block"] or ""
        if t["override"]:
            name = f"{name} <- {t['override']}".lstrip()
        if name:
            blocks.append(name)
    for part, templates in parts.items():
        shown = "; ".join(f"{t} ({', '.join(blocks)})" if blocks else t for t, blocks in templates.items())
        lines.append(f"    template:    {part}: {shown}")
    return lines


# ------------------------------------------------------------------ command line


def main(argv: Sequence[str]) -> int:
    from lazygen.cli import build_parser, options_from_args

    parser = build_parser()
    parser.prog = "lazygen explain"
    parser.epilog = None
    parser.description = "Explain what lazygen generates for operators, and what you must write for them. Writes nothing."
    parser.add_argument("ops", nargs="+", metavar="OP", help="operator names, e.g. add.Tensor")
    parser.add_argument("--format", choices=("text", "json"), default="text", help="text (default) or json (see the README)")
    args = parser.parse_args(argv)
    if not args.source_yaml:
        parser.error("the following argument is required: -s/--source-yaml")
    args.output_dir = args.output_dir or "."  # only spelled in #include lines, which explain does not show
    try:
        doc = explain(options_from_args(args), args.ops)
    except UserError as err:
        for d in err.diagnostics:
            print(d.format(), file=sys.stderr)
        return 1
    sys.stdout.write(json.dumps(doc, indent=2) + "\n" if args.format == "json" else format_text(doc))
    return 0
