"""PyTorch's operator catalogue: native_functions.yaml + tags.yaml as an
immutable model, with the `autogen` variants added and the variants of each
operator grouped the way torch 2.13's codegen groups them.

`build_catalogue` takes already-loaded yaml data (lists of dicts), so the
loading and caching live elsewhere (lazygen.catalogue_cache).
"""

from __future__ import annotations

import string
from dataclasses import dataclass, field, fields, replace
from functools import lru_cache
from operator import attrgetter
from typing import Iterable, Iterator, Union

from lazygen.releases import NEWEST, Release
from lazygen.schema import (
    Annotation,
    Argument,
    BaseType,
    FunctionSchema,
    Kind,
    OperatorName,
    Return,
    SchemaError,
    is_tensor_like,
    parse_schema,
)

# Keys whose kernels the `ufunc_inner_loop` field implies.
_UFUNC_KEYS = ("CPU", "CUDA")

# Operators that torch's codegen leaves out of the autogen pass by name.
_INPLACE_NOT_GROUPED = frozenset({"polygamma_"})


class CatalogueError(ValueError):
    """native_functions.yaml or tags.yaml is not what lazygen understands."""

    def __init__(self, message: str, line: int | None = None) -> None:
        super().__init__(message)
        self.line = line


@dataclass(frozen=True, slots=True)
class NativeFunction:
    """One entry of native_functions.yaml (or one generated from `autogen`).

    The schema is kept as text and parsed on first use: a run touches only
    the few hundred functions its backend lists, and the cached catalogue
    stays small and quick to load."""

    op: str  # the operator name, e.g. "add.Tensor"
    schema_text: str
    namespace: str
    line: int
    variants: frozenset[str]
    tags: frozenset[str]
    dispatch: tuple[tuple[str, str], ...]  # (dispatch key, kernel name)
    structured: bool = False
    structured_delegate: OperatorName | None = None
    structured_inherits: str | None = None
    autogen: tuple[OperatorName, ...] = ()
    device_guard: bool = True
    device_check: str = "ExactSame"
    manual_kernel_registration: bool = False
    manual_cpp_binding: bool = False
    use_const_ref_for_mutable_tensors: bool = False
    cpp_no_default_args: frozenset[str] = frozenset()
    python_module: str | None = None
    category_override: str | None = None
    precomputed: tuple[str, ...] | None = None
    ufunc_inner_loop: tuple[tuple[str, str], ...] = ()
    _func: FunctionSchema | None = field(default=None, init=False, repr=False, compare=False, hash=False)

    @property
    def func(self) -> FunctionSchema:
        if self._func is None:
            # A cache, not a change. The text was validated when the catalogue was built.
            object.__setattr__(self, "_func", parse_schema(self.schema_text, validate=False))
        return self._func

    @property
    def name(self) -> OperatorName:
        return self.func.name

    @property
    def kind(self) -> Kind:
        return self.func.kind()

    @staticmethod
    def with_schema(func: FunctionSchema, text: str | None = None, **kwargs) -> NativeFunction:
        """A function whose schema is already parsed (from `text`, if given)."""
        f = NativeFunction(op=str(func.name), schema_text=text if text is not None else str(func), **kwargs)
        object.__setattr__(f, "_func", func)  # already parsed
        return f

    @property
    def dispatch_keys(self) -> frozenset[str]:
        return frozenset(k for k, _ in self.dispatch)

    @property
    def part_of_structured_group(self) -> bool:
        return self.structured or self.structured_delegate is not None

    @property
    def has_composite_implicit_autograd_kernel(self) -> bool:
        return "CompositeImplicitAutograd" in self.dispatch_keys

    @property
    def has_composite_explicit_autograd_non_functional_kernel(self) -> bool:
        return "CompositeExplicitAutogradNonFunctional" in self.dispatch_keys

    @property
    def is_abstract(self) -> bool:
        if self.structured_delegate is not None:
            return True
        implicit = {"CompositeImplicitAutograd", "CompositeImplicitAutogradNestedTensor"}
        keys = self.dispatch_keys
        return not (keys and keys <= implicit)

    @property
    def is_view_op(self) -> bool:
        if any(r.annotation is not None and not r.annotation.is_write for r in self.func.returns):
            return True
        if "inplace_view" in self.tags and self.op not in ("resize_", "resize_as_"):
            return True
        return any(a.annotation is not None and "*" in a.annotation.alias_set_after for a in self.func.arguments.flat_all)


@dataclass(frozen=True)
class NativeFunctionsGroup:
    """The functional, out, and optional inplace and mutable variants of one operator."""

    functional: NativeFunction
    out: NativeFunction
    inplace: NativeFunction | None = None
    mutable: NativeFunction | None = None

    @property
    def structured(self) -> bool:
        return self.out.structured

    def functions(self) -> Iterator[NativeFunction]:
        yield self.functional
        yield self.out
        if self.inplace is not None:
            yield self.inplace
        if self.mutable is not None:
            yield self.mutable


Grouped = Union[NativeFunction, NativeFunctionsGroup]


class Catalogue:
    """The catalogue, compact: each function is stored as a tuple of its
    fields and becomes a NativeFunction only when asked for, so loading the
    cached catalogue is quick and a run's memory holds only what it uses."""

    def __init__(self, rows: dict[str, tuple], order: tuple[str, ...], groups: tuple[tuple[str | None, ...], ...],
                 dispatch_keys: frozenset[str]) -> None:
        self.rows = rows  # op name -> NativeFunction field values, in field order
        self.order = order  # op names in file order, generated functions last
        self.groups = groups  # sorted; (functional, out, inplace, mutable) for a group, (op,) for a lone function
        self.dispatch_keys = dispatch_keys  # every key some kernel is registered for
        self._made: dict[str, NativeFunction] = {}

    def __getstate__(self) -> dict:
        return {"rows": self.rows, "order": self.order, "groups": self.groups, "dispatch_keys": self.dispatch_keys}

    def __setstate__(self, state: dict) -> None:
        self.__init__(**state)

    @staticmethod
    def of(functions: list[NativeFunction], grouped: list[Grouped], dispatch_keys: frozenset[str]) -> Catalogue:
        names = [f.name for f in fields(NativeFunction) if f.init]
        # Equal values of these fields (tag sets, "aten", ...) become one
        # object, which pickle then stores, and loads, once.
        repeating = [i for i, n in enumerate(names) if n in ("namespace", "variants", "tags", "device_check", "cpp_no_default_args")]
        shared: dict = {}
        values_of = attrgetter(*names)
        rows = {}
        for f in functions:
            row = list(values_of(f))
            for i in repeating:
                row[i] = shared.setdefault(row[i], row[i])
            rows[f.op] = tuple(row)
        groups = tuple(
            (g.functional.op, g.out.op, g.inplace.op if g.inplace else None, g.mutable.op if g.mutable else None)
            if isinstance(g, NativeFunctionsGroup) else (g.op,)
            for g in grouped
        )
        catalogue = Catalogue(rows, tuple(f.op for f in functions), groups, dispatch_keys)
        catalogue._made.update((f.op, f) for f in functions)  # keep the parsed schemas of this run
        return catalogue

    def forget_parsed(self) -> None:
        """Drop the functions made so far (they are made again on demand)."""
        self._made.clear()

    def forget(self, ops: Iterable[str | None]) -> None:
        """Drop the functions made for `ops` (they are made again on demand)."""
        for op in ops:
            self._made.pop(op, None)

    def __contains__(self, op: str) -> bool:
        return op in self.rows

    def function(self, op: str) -> NativeFunction:
        f = self._made.get(op)
        if f is None:
            f = self._made[op] = NativeFunction(*self.rows[op])
        return f

    def item(self, names: tuple[str | None, ...]) -> Grouped:
        if len(names) == 1:
            return self.function(names[0])
        functional, out, inplace, mutable = names
        return NativeFunctionsGroup(
            self.function(functional), self.function(out),
            self.function(inplace) if inplace else None, self.function(mutable) if mutable else None,
        )

    @property
    def functions(self) -> tuple[NativeFunction, ...]:
        return tuple(self.function(op) for op in self.order)

    @property
    def grouped(self) -> tuple[Grouped, ...]:
        return tuple(self.item(names) for names in self.groups)

    @property
    def by_name(self) -> dict[str, NativeFunction]:
        """Every function by op name (materialises them all: for tests and error paths)."""
        return {op: self.function(op) for op in self.order}


# --------------------------------------------------------------- parsing


def _expect(value: object, kind: type, what: str, line: int) -> object:
    if not isinstance(value, kind):
        raise CatalogueError(f"{what} must be a {kind.__name__}, not {value!r}", line)
    return value


def parse_tags(entries: object) -> frozenset[str]:
    if not isinstance(entries, list):
        raise CatalogueError("tags.yaml must be a list of entries")
    tags = set()
    for e in entries:
        if not isinstance(e, dict) or not isinstance(e.get("tag"), str):
            raise CatalogueError(f"tags.yaml entry without a 'tag': {e!r}")
        tags.add(e["tag"])
    return frozenset(tags)


_TRUE, _FALSE = {"true", "yes", "on"}, {"false", "no", "off"}


def _flag(e: dict, key: str, default: bool, line: int) -> bool:
    """A boolean field, given as a YAML bool or (when the yaml was read
    without type resolution) as its text."""
    value = e.pop(key, default)
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in _TRUE | _FALSE:
        return value.lower() in _TRUE
    raise CatalogueError(f"'{key}' must be true or false, not {value!r}", line)


@lru_cache(maxsize=None)
def _interned_set(items: tuple[str, ...]) -> frozenset[str]:
    return frozenset(items)


def _shared_set(items) -> frozenset[str]:
    """One frozenset object per distinct set of strings (thousands of
    functions share a few dozen tag and variant sets)."""
    return _interned_set(tuple(sorted(set(items))))


def _parse_entry(e: dict, line: int, valid_tags: frozenset[str]) -> NativeFunction:
    e = dict(e)
    e.pop("__line__", None)
    func_text = _expect(e.pop("func", None), str, "func", line)
    namespace = "aten"
    if "::" in func_text.split("(", 1)[0]:
        namespace, func_text = func_text.split("::", 1)
    try:
        func = parse_schema(func_text)
    except SchemaError as err:
        raise CatalogueError(f"bad schema: {err}", line) from None

    variants = _expect(e.pop("variants", "function"), str, "variants", line)
    variant_set = _shared_set(variants.split(", "))
    if not variant_set <= {"function", "method"}:
        raise CatalogueError(f"unknown variant in '{variants}'", line)

    tag_list = e.pop("tags", [])
    if isinstance(tag_list, str):
        tag_list = [tag_list]
    tags = set(_expect(tag_list, list, "tags", line))
    # Tags torch's codegen adds on its own.
    if namespace == "aten" and "pt2_compliant_tag" in valid_tags:
        tags.add("pt2_compliant_tag")
    if func.is_out_fn() and "out" in valid_tags:
        tags.add("out")
    if func.name.inplace and "inplace" in valid_tags:
        tags.add("inplace")
    unknown = tags - valid_tags
    if unknown:
        raise CatalogueError(f"unknown tag '{sorted(unknown)[0]}'", line)

    structured = _flag(e, "structured", False, line)
    delegate_text = e.pop("structured_delegate", None)
    delegate = OperatorName.parse(delegate_text) if delegate_text else None

    dispatch: list[tuple[str, str]] = []
    raw_dispatch = e.pop("dispatch", None)
    if raw_dispatch is not None:
        for keys, kernel in _expect(raw_dispatch, dict, "dispatch", line).items():
            if keys == "__line__":
                continue
            for key in str(keys).split(","):
                dispatch.append((key.strip(), str(kernel)))
    elif not structured and delegate is None:
        dispatch.append(("CompositeImplicitAutograd", func.name.name))
    ufunc = e.pop("ufunc_inner_loop", {})
    ufunc_pairs: tuple[tuple[str, str], ...] = ()
    if isinstance(ufunc, str):
        ufunc_pairs = (("Generic", ufunc),)
    elif isinstance(ufunc, dict):
        ufunc_pairs = tuple((str(k), str(v)) for k, v in ufunc.items() if k != "__line__")
    if ufunc_pairs:
        dispatch += [(k, f"ufunc_{func.name.base}") for k in _UFUNC_KEYS]

    autogen_text = _expect(e.pop("autogen", ""), str, "autogen", line)
    precomputed = e.pop("precomputed", None)
    nf = NativeFunction.with_schema(
        func,
        func_text,
        namespace=namespace,
        line=line,
        variants=variant_set,
        tags=_shared_set(tags),
        dispatch=tuple(dispatch),
        structured=structured,
        structured_delegate=delegate,
        structured_inherits=e.pop("structured_inherits", None),
        autogen=tuple(OperatorName.parse(x) for x in autogen_text.split(", ")) if autogen_text else (),
        device_guard=_flag(e, "device_guard", True, line),
        device_check=str(e.pop("device_check", "ExactSame")),
        manual_kernel_registration=_flag(e, "manual_kernel_registration", False, line),
        manual_cpp_binding=_flag(e, "manual_cpp_binding", False, line),
        use_const_ref_for_mutable_tensors=_flag(e, "use_const_ref_for_mutable_tensors", False, line),
        cpp_no_default_args=_shared_set(e.pop("cpp_no_default_args", [])),
        python_module=e.pop("python_module", None),
        category_override=e.pop("category_override", None),
        precomputed=tuple(str(p) for p in precomputed) if isinstance(precomputed, list) else None,
        ufunc_inner_loop=ufunc_pairs,
    )
    if e:
        raise CatalogueError(f"unknown field '{sorted(e)[0]}'", line)
    return nf


# -------------------------------------------------------------- autogen


def _out_overload(overload: str) -> str:
    return f"{overload}_out" if overload else "out"


def _out_args_for(func: FunctionSchema) -> tuple[list[Return], list[Argument]]:
    """Out arguments (and the returns that go with them) for a schema that
    has none: one fresh alias letter per tensor-like return."""
    used = {x for a in func.arguments.flat_all if a.annotation for x in a.annotation.alias_set}
    letters = [c for c in string.ascii_lowercase if c not in used]
    all_tensors = all(r.type == BaseType("Tensor") for r in func.returns)
    returns: list[Return] = []
    outs: list[Argument] = []
    for i, r in enumerate(func.returns):
        if is_tensor_like(r.type):
            annotation = Annotation((letters[i],), True, ())
            out = Argument("out" if len(func.returns) == 1 else f"out{i}", r.type, None, annotation)
            outs.append(out)
            if all_tensors:
                returns.append(Return(None, out.type, annotation))
        else:
            returns.append(r)
    return returns, outs


def _generated_schema(base: NativeFunction, kind: Kind) -> FunctionSchema:
    f = base.func
    args = f.arguments
    if kind is Kind.functional:
        name = OperatorName(
            f.name.base, dunder=f.name.dunder, functional_overload=f.kind() is Kind.mutable, overload=f.name.overload
        )
        return f.signature(keep_return_names=True).with_name(name)
    out_name = f.name.with_overload(_out_overload(f.name.overload))
    if f.kind() is Kind.inplace:
        assert args.self_arg is not None
        self_arg = Argument(args.self_arg.name, args.self_arg.type, args.self_arg.default, None)
        out = Argument("out", args.self_arg.type, None, args.self_arg.annotation)
        new_args = replace(args, self_arg=self_arg, out=(out,))
        return FunctionSchema(out_name, new_args, f.returns)
    returns, outs = _out_args_for(f)
    base_args = args.signature() if f.kind() is Kind.functional else args
    return FunctionSchema(out_name, replace(base_args, out=tuple(outs)), tuple(returns))


def _generate(base: NativeFunction, kind: Kind) -> NativeFunction:
    func = _generated_schema(base, kind)
    kernel = func.name.unambiguous_name() if func.kind() is Kind.out else func.name.name
    if base.func.has_symint():
        kernel += "_symint"
    tags = {"generated"} | (base.tags & {"nondeterministic_seeded", "view_copy", "pt2_compliant_tag"})
    if func.is_out_fn():
        tags.add("out")
    if func.name.inplace:
        tags.add("inplace")
    return NativeFunction.with_schema(
        func,
        namespace=base.namespace,
        line=base.line,
        variants=frozenset({"function"}),
        tags=_shared_set(tags),
        dispatch=(("CompositeExplicitAutograd", kernel),),
        device_guard=False,
        device_check="NoCheck",
        use_const_ref_for_mutable_tensors=base.use_const_ref_for_mutable_tensors,
    )


def _pre_group(functions: list[NativeFunction], keys: dict[str, str]) -> dict[str, dict[Kind, NativeFunction]]:
    """Functions by their shared signature, then by kind. `keys` remembers
    each function's signature key across calls."""
    groups: dict[str, dict[Kind, NativeFunction]] = {}
    for f in functions:
        key = keys.get(f.op)
        if key is None:
            key = keys[f.op] = f.func.signature_key()
        d = groups.setdefault(key, {})
        kind = f.kind
        if kind in d:
            raise CatalogueError(f"two {kind.value} variants of '{key}'", f.line)
        d[kind] = f
    return groups


def _add_autogen(functions: list[NativeFunction], keys: dict[str, str], release: Release) -> None:
    """Append the out= and functional variants torch's codegen generates
    (as that of `release` does)."""
    base_kinds = (Kind.mutable, Kind.inplace) if release.autogen_mutable_first else (Kind.inplace, Kind.mutable)
    for d in _pre_group(functions, keys).values():
        if all(f.manual_cpp_binding for f in d.values()):
            continue
        if any(f.is_view_op and f.op.split(".", 1)[0] != "set_" for f in d.values()):
            continue
        is_core = release.autogen_core_composites and any("core" in f.tags for f in d.values())
        if all(f.has_composite_implicit_autograd_kernel for f in d.values()) and not is_core:
            continue
        if Kind.out in d and len(d) == 1:
            continue
        if Kind.inplace in d and d[Kind.inplace].op in _INPLACE_NOT_GROUPED:
            continue
        base = next((d[k] for k in base_kinds + (Kind.out, Kind.functional) if k in d), None)
        if base is None:
            continue
        base_valid = base.kind is Kind.inplace or any(is_tensor_like(r.type) for r in base.func.returns)
        wants_out = any("out" in str(name) for name in base.autogen)
        gets_out = Kind.out not in d and base_valid and wants_out
        if gets_out:
            fn = _generate(base, Kind.out)
            d[Kind.out] = fn
            functions.append(fn)
        if Kind.functional not in d and (Kind.out in d):
            fn = _generate(base, Kind.functional)
            d[Kind.functional] = fn
            functions.append(fn)


def _group(functions: list[NativeFunction], keys: dict[str, str]) -> list[Grouped]:
    grouped: list[Grouped] = []
    for d in _pre_group(functions, keys).values():
        functional, out = d.get(Kind.functional), d.get(Kind.out)
        if len(d) > 1 and functional is not None and out is not None and set(d) <= {
            Kind.functional,
            Kind.out,
            Kind.inplace,
            Kind.mutable,
        }:
            grouped.append(NativeFunctionsGroup(functional, out, d.get(Kind.inplace), d.get(Kind.mutable)))
        else:
            grouped.extend(d.values())
    return grouped


def _sort_key(item: Grouped) -> str:
    f = item.functional if isinstance(item, NativeFunctionsGroup) else item
    return f.op.split(".", 1)[0]


def build_catalogue(native_entries: Iterable[object], tag_entries: object, release: Release = NEWEST) -> Catalogue:
    """Model of native_functions.yaml entries (dicts with '__line__'; any
    iterable, consumed once) and tags.yaml entries, as torchgen of `release`
    builds it."""
    valid_tags = parse_tags(tag_entries)
    if isinstance(native_entries, (dict, str)) or not hasattr(native_entries, "__iter__"):
        raise CatalogueError("native_functions.yaml must be a list of entries")
    functions = []
    for e in native_entries:
        if not isinstance(e, dict):
            raise CatalogueError(f"entry is not a mapping: {e!r}")
        functions.append(_parse_entry(e, int(e.get("__line__", 0)), valid_tags))
    keys: dict[str, str] = {}
    _add_autogen(functions, keys, release)
    grouped = sorted(_group(functions, keys), key=_sort_key)
    keys = frozenset(k for f in functions for k in f.dispatch_keys)
    return Catalogue.of(functions, grouped, keys)
