"""The compilability check: which full_codegen / ir_gen operators would get
C++ that does not compile, and why, in the backend author's terms.

torchgen writes code for every operator it accepts, including many whose
kernel or IR node cannot compile (a kernel returning `bool` from a lazy
tensor, two IR classes of one name, ...). lazygen refuses those by default
(`--allow-uncompilable` keeps torchgen's output and turns each refusal into a
warning). Each rule is decided from the schema and the options, never from
a list of operator names, so it holds for catalogues of other releases.

Proven (every accepted op of torch 2.13's catalogue compiled with
`g++ -fsyntax-only`, tests/test_compilable.py) for IR nodes deriving from
`torch::lazy::TsNode`, with and without `--gen-ts-lowerings`, with lazy
shapes on (the default). torch's own `torch::lazy::Node` has no constructor
taking torchgen's hash argument, so with `--node-base Node` inside
`torch::lazy` no op compiles, whatever this check says; with `--no-lazy-shape`
the stock node and kernel templates do not fit each other (backends using
it override them), so only the rules independent of the node apply.

Other modules call:

- `refusals(catalogue, listed, ...)`: every refusal of a list of operators,
  a pure function of its arguments (no file is read).
- `accepted(catalogue, ops, ...)`: the given full_codegen ops minus those
  refused, in order (e.g. "every op the check accepts").
- `op_refusals` and `class_name_refusals`: the two halves, which the
  generator runs as it checks each operator.
"""

from __future__ import annotations

from typing import Callable, Iterable, NamedTuple, Sequence

from lazygen.catalogue import Catalogue, NativeFunction
from lazygen.lazy import node_class_name
from lazygen.schema import BaseType, FunctionSchema, Kind, ListType, OperatorName, OptionalType, is_tensor_like

FULL_CODEGEN = "full_codegen"
IR_GEN = "ir_gen"

_BY_HAND = "list it under 'supported' and write the kernel by hand"


class Refusal(NamedTuple):
    """Why the code generated for `op` under `section` would not compile."""

    op: str
    section: str  # "full_codegen" or "ir_gen"
    rule: str  # one of RULES
    message: str  # what is wrong, in the backend author's terms
    hint: str  # what to do instead
    other: str | None = None  # class-name: the op (or non_native func name) that owns the class
    other_is_non_native: bool = False


# Rule name -> what it refuses (the README lists the same).
RULES = {
    "returns": "a full_codegen op whose results are not all tensors (bool, int, float, Scalar, "
               "ScalarType, SymInt, nothing, Tensor[], or a tuple holding any of them)",
    "string-default": "a full_codegen op whose schema holds a string default: the kernel writes "
                      "the schema unescaped into a C++ string literal",
    "variant-returns": "a full_codegen op with an out= or inplace variant, listed nowhere, whose "
                       "number of results differs: the registration generated for the variant "
                       "cannot convert the op's results",
    "kernel-local": "a full_codegen op with an argument named like a variable the generated kernel declares",
    "node-member": "an argument named like a parameter, variable or member the generated IR node declares",
    "class-name": "two ops (or an op and a non_native entry) whose IR classes have the same name, "
                  "or an IR class named like the node base class",
}


def _returns_refusal(f: NativeFunction, section: str) -> Refusal | None:
    returns = f.func.returns
    if returns and all(r.type == BaseType("Tensor") for r in returns):
        return None
    if not returns:
        what = "it returns nothing"
    elif len(returns) == 1:
        t = returns[0].type
        what = f"it returns {t}"
        if isinstance(t, ListType) and is_tensor_like(t.elem):
            what += " (a list of tensors whose length the generated kernel cannot know)"
    else:
        others = [str(r.type) for r in returns if r.type != BaseType("Tensor")]
        what = f"it returns ({', '.join(str(r.type) for r in returns)}), which holds {' and '.join(dict.fromkeys(others))}"
    return Refusal(f.op, section, "returns", f"{what}: a lazy kernel can only return tensors", _BY_HAND)


def _string_default_refusal(f: NativeFunction, section: str) -> Refusal | None:
    text = str(f.func)
    if '"' not in text and "\\" not in text:
        return None
    arg = next((a for a in f.func.arguments.flat_all if a.default is not None and ('"' in a.default or "\\" in a.default)), None)
    shown = f"{arg.name}={arg.default}" if arg is not None else "a string default"
    return Refusal(f.op, section, "string-default",
                   f"its schema has a string default ({shown}), which the generated kernel copies unescaped "
                   "into a C++ string literal", _BY_HAND)


def _variant_refusals(f: NativeFunction, section: str, variants: Sequence[NativeFunction],
                      has_kernel: Callable[[str], bool], use_out_as_primary: bool) -> list[Refusal]:
    """The registration of a functional kernel also gives each out= / inplace
    variant without a kernel of its own a wrapper calling it; that wrapper
    copies result i into the variant's result i."""
    if use_out_as_primary or f.kind is not Kind.functional:
        return []
    found = []
    n = len(f.func.returns)
    for v in variants:
        if v.op == f.op or v.kind not in (Kind.out, Kind.inplace) or v.manual_kernel_registration or has_kernel(v.op):
            continue
        m = len(v.func.returns)
        if m == n or (m == 0 and n == 1):
            continue
        found.append(Refusal(
            f.op, section, "variant-returns",
            f"its variant '{v.op}' returns {m} result(s) where '{f.op}' returns {n}; the registration generated "
            f"for '{v.op}' from this kernel cannot convert between them",
            f"list '{v.op}' under 'supported' too and write its kernel, or list '{f.op}' under 'supported' and write its kernel by hand"))
    return found


# Variables a generated kernel declares in its body; an argument of the same
# name is a redeclaration or is shadowed where the kernel still needs it.
_KERNEL_LOCALS = frozenset({"common_device", "node", "result", "lazy_tensors", "shapes", "out_meta", "inputs"})


def _kernel_local_refusals(f: NativeFunction, section: str) -> list[Refusal]:
    args = f.func.arguments.flat_all
    names = {a.name for a in args}
    derived = set()
    for a in args:
        if is_tensor_like(a.type):
            derived |= {f"lazy_{a.name}", f"lazy_{a.name}_tensorlist"}
        else:
            derived.add(f"node_{a.name}")  # wrapped Scalars
    clashes = sorted((names & _KERNEL_LOCALS) | (names & derived))
    return [Refusal(f.op, section, "kernel-local",
                    f"its argument '{name}' has the name of a variable the generated kernel declares itself", _BY_HAND)
            for name in clashes]


def _node_member_refusals(func: FunctionSchema, op: str, section: str, use_lazy_shape: bool, ts_lowerings: bool) -> list[Refusal]:
    args = func.arguments.flat_all
    names = [a.name for a in args]
    reserved: dict[str, str] = {}
    if use_lazy_shape:
        reserved["shapes"] = "constructor parameter"
    if ts_lowerings:
        reserved.update({"i": "counter in CanBeReused() and Lower()", "function": "Lower() parameter",
                         "loctx": "Lower() parameter", "arguments": "Lower() variable", "kwarguments": "Lower() variable"})
    # Optional operands (Tensor?, and Scalar? which is an IR value too) get a has_<name> member.
    optional_values = {a.name for a in args if isinstance(a.type, OptionalType) and a.type.elem in (BaseType("Tensor"), BaseType("Scalar"))}
    for name in optional_values:
        reserved[f"has_{name}"] = f"member telling whether '{name}' is given"
    hint = _BY_HAND if section == FULL_CODEGEN else "remove it from 'ir_gen' and write its IR node by hand"
    return [Refusal(op, section, "node-member",
                    f"its argument '{name}' has the name of the IR node's {reserved[name]}", hint)
            for name in sorted(set(names) & set(reserved))]


def op_refusals(f: NativeFunction, section: str, *, variants: Sequence[NativeFunction] = (),
                has_kernel: Callable[[str], bool] = lambda op: False, use_out_as_primary: bool = False,
                use_lazy_shape: bool = True, ts_lowerings: bool = False) -> list[Refusal]:
    """Every reason the code for one operator (its IR node, and under
    full_codegen its kernel and registration) would not compile. `variants`
    are the other functions of its operator group; `has_kernel(op)` tells
    whether the backend has a kernel of its own for a variant."""
    found: list[Refusal] = []
    if section == FULL_CODEGEN:
        for rule in (_returns_refusal, _string_default_refusal):
            r = rule(f, section)
            if r is not None:
                found.append(r)
        found += _variant_refusals(f, section, variants, has_kernel, use_out_as_primary)
        found += _kernel_local_refusals(f, section)
    found += _node_member_refusals(f.func, f.op, section, use_lazy_shape, ts_lowerings)
    return found


def class_name_refusals(listed: Iterable[tuple[str, str]], non_native: Iterable[OperatorName] = (),
                        node_base: str = "Node") -> list[Refusal]:
    """Class-name collisions among the IR nodes of `listed` ((op, section),
    in yaml order) and of the non_native entries (their names). The first
    op listed keeps the class; each later one is refused, naming the first.
    A non_native entry always keeps its class."""
    owners: dict[str, tuple[str, bool]] = {}
    for name in non_native:
        owners.setdefault(node_class_name(name), (str(name), True))
    base = node_base.rsplit("::", 1)[-1]
    found = []
    for op, section in listed:
        cls = node_class_name(OperatorName.parse(op))
        hint = ("keep one of the two; list the other under 'supported' and write its kernel by hand"
                if section == FULL_CODEGEN else "keep one of the two; write the other's IR node by hand")
        if cls == base:
            found.append(Refusal(op, section, "class-name", f"its IR class '{cls}' has the name of the node base class '{node_base}'",
                                 "list it under 'supported' and write its kernel and IR node by hand"))
            continue
        owner = owners.get(cls)
        if owner is None:
            owners[cls] = (op, False)
            continue
        other, is_non_native = owner
        what = f"non_native '{other}'" if is_non_native else f"'{other}'"
        found.append(Refusal(op, section, "class-name",
                             f"its IR class '{cls}' is also the IR class of {what}, and C++ cannot define a class twice",
                             hint, other, is_non_native))
    return found


def refusals(catalogue: Catalogue, listed: Iterable[tuple[str, str]], *, supported: Iterable[str] = (),
             non_native: Iterable[OperatorName] = (), node_base: str = "Node", use_out_as_primary: bool = False,
             use_lazy_shape: bool = True, ts_lowerings: bool = False) -> list[Refusal]:
    """Every refusal for the operators `listed` as (op, section) pairs in yaml
    order, section "full_codegen" or "ir_gen" (ops must be in `catalogue`).
    `supported` are the ops with hand-written kernels; `non_native` the names
    of the yaml's non_native entries. The remaining keywords are the Options
    fields of the same names (`ts_lowerings` is gen_ts_lowerings). An op may
    have several refusals; an op with none compiles. Pure: reads no file."""
    listed = list(listed)
    kernels = set(supported) | {op for op, section in listed if section == FULL_CODEGEN}
    group_of = {op: group for group in catalogue.groups for op in group if op}
    found = class_name_refusals(listed, non_native, node_base)
    for op, section in listed:
        variants = [catalogue.function(v) for v in group_of.get(op, (op,)) if v and v != op]
        found += op_refusals(catalogue.function(op), section, variants=variants, has_kernel=kernels.__contains__,
                             use_out_as_primary=use_out_as_primary, use_lazy_shape=use_lazy_shape, ts_lowerings=ts_lowerings)
    order = {pair[0]: i for i, pair in enumerate(listed)}
    return sorted(found, key=lambda r: order[r.op])


def accepted(catalogue: Catalogue, ops: Iterable[str], **options) -> list[str]:
    """The full_codegen `ops` the check accepts, in order (keywords as for `refusals`)."""
    ops = list(ops)
    refused = {r.op for r in refusals(catalogue, [(op, FULL_CODEGEN) for op in ops], **options)}
    return [op for op in ops if op not in refused]
