"""The backend spec: a `<backend>_native_functions.yaml`, parsed with the
position of every entry, then checked against the operator catalogue.

`read_backend_header` is the cheap part the planner needs (the dispatch key
and whether there is an autograd section); `parse_backend` reads the whole
file; `check_backend` resolves every operator and reports every problem it
finds, each at its line, before anything is generated.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from lazygen.catalogue import Catalogue, NativeFunction
from lazygen.cpp import kernel_name
from lazygen.errors import Diagnostic, UserError
from lazygen.schema import FunctionSchema, OperatorName, SchemaError, parse_schema

if TYPE_CHECKING:
    from lazygen.yamlsource import Located


def _closest(word: str, candidates) -> str | None:
    """The closest candidate, for "did you mean" hints (only on error paths,
    so difflib is imported only then)."""
    import difflib

    close = difflib.get_close_matches(word, candidates, n=1)
    return close[0] if close else None

# Keys torchgen 2.13's backend parser accepts.
VALID_KEYS = (
    "backend",
    "class_name",
    "cpp_namespace",
    "supported",
    "autograd",
    "full_codegen",
    "non_native",
    "ir_gen",
    "symint",
    "use_out_as_primary",
    "device_guard",
)
OP_LISTS = ("supported", "autograd", "full_codegen", "ir_gen", "symint")

# The dispatch keys torch 2.13 knows (torchgen.model.DispatchKey).
_PER_BACKEND = ("CPU", "CUDA", "HIP", "XLA", "MTIA", "MPS", "IPU", "XPU", "HPU", "VE", "Lazy", "Meta",
                "PrivateUse1", "PrivateUse2", "PrivateUse3")
DISPATCH_KEYS = frozenset(
    ["FPGA", "MAIA", "Vulkan", "Metal", "MKLDNN", "OpenGL", "OpenCL", "IDEEP", "CustomRNGKeyId", "MkldnnCPU",
     "Sparse", "SparseCsr", "NestedTensor", "Dense", "PythonTLSSnapshot", "PreDispatch", "PythonDispatcher",
     "Python", "FuncTorchDynamicLayerBackMode", "ZeroTensor", "Conjugate", "Negative", "BackendSelect", "Named",
     "AutogradOther", "AutogradFunctionality", "AutogradNestedTensor", "Tracer", "Autocast", "AutocastCPU",
     "AutocastCUDA", "AutocastXPU", "Batched", "VmapMode", "FuncTorchGradWrapper", "FuncTorchBatched",
     "BatchedNestedTensor", "FuncTorchVmapMode", "FuncTorchDynamicLayerFrontMode", "Functionalize",
     "TESTING_ONLY_GenericWrapper", "TESTING_ONLY_GenericMode", "ADInplaceOrView", "Autograd",
     "CompositeImplicitAutograd", "CompositeImplicitAutogradNestedTensor", "CompositeExplicitAutograd",
     "CompositeExplicitAutogradNonFunctional", "FuncTorchBatchedDecomposition"]
    + [prefix + b for prefix in ("", "Quantized", "Sparse", "SparseCsr", "NestedTensor", "Autograd") for b in _PER_BACKEND]
)

_CPP_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(::[A-Za-z_][A-Za-z0-9_]*)*$")

# C++20 keywords and alternative tokens: they match the name pattern but are not identifiers.
_CPP_KEYWORDS = frozenset(
    "alignas alignof and and_eq asm auto bitand bitor bool break case catch char char8_t char16_t char32_t class "
    "compl concept const consteval constexpr constinit const_cast continue co_await co_return co_yield decltype "
    "default delete do double dynamic_cast else enum explicit export extern false float for friend goto if inline "
    "int long mutable namespace new noexcept not not_eq nullptr operator or or_eq private protected public register "
    "reinterpret_cast requires return short signed sizeof static static_assert static_cast struct switch template "
    "this thread_local throw true try typedef typeid typename union unsigned using virtual void volatile wchar_t "
    "while xor xor_eq".split()
)


def is_cpp_name(text: object) -> bool:
    """A C++ identifier, possibly qualified (`torch::lazy`), none of whose parts is a keyword."""
    return isinstance(text, str) and bool(_CPP_NAME_RE.fullmatch(text)) and not any(p in _CPP_KEYWORDS for p in text.split("::"))


class OpEntry(NamedTuple):
    text: str
    line: int
    col: int


class NonNativeEntry(NamedTuple):
    func: FunctionSchema
    properties: tuple[str, ...]
    opkind: str | None
    line: int
    col: int


class BackendSpec(NamedTuple):
    path: str
    backend: str
    backend_line: int
    backend_col: int
    cpp_namespace: str
    cpp_namespace_line: int
    cpp_namespace_col: int
    class_name: str | None  # accepted and checked; torchgen's lazy codegen does not use it
    supported: tuple[OpEntry, ...]
    autograd: tuple[OpEntry, ...]
    full_codegen: tuple[OpEntry, ...]
    ir_gen: tuple[OpEntry, ...]
    symint: tuple[OpEntry, ...]
    non_native: tuple[NonNativeEntry, ...]
    use_out_as_primary: bool
    device_guard: bool

    @property
    def has_autograd(self) -> bool:
        return bool(self.autograd)


def _err(path: str, at: Located, message: str, hint: str | None = None) -> Diagnostic:
    return Diagnostic(path, at.line, at.col, message, hint)


def _describe(value: object) -> str:
    """A value the user wrote, for a message (lists and maps hold Located values, not worth printing)."""
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return repr(value)


def _mapping(path: str, doc: Located) -> dict[str, tuple[Located, Located]]:
    if not isinstance(doc.value, dict):
        raise UserError(_err(path, doc, "a backend yaml must be a mapping (key: value), not a "
                                        + type(doc.value).__name__ if doc.value is not None else "empty document"))
    return doc.value


def read_backend_header(path: Path) -> tuple[str, bool]:
    """The dispatch key (`backend:`) and whether there is a non-empty
    `autograd:` section: all the planner needs. Checks only those two."""
    from lazygen.yamlsource import load  # PyYAML only when a yaml is read

    path_s = str(path)
    top = _mapping(path_s, load(path))
    backend = _backend_key(path_s, top)
    autograd = top.get("autograd")
    return backend, bool(autograd and isinstance(autograd[1].value, list) and autograd[1].value)


def _backend_key(path: str, top: dict[str, tuple[Located, Located]]) -> str:
    if "backend" not in top:
        raise UserError(Diagnostic(path, 1, 1, "missing required key 'backend'", "e.g. 'backend: Lazy'"))
    key, value = top["backend"]
    name = value.value
    if not isinstance(name, str) or name not in DISPATCH_KEYS:
        close = _closest(str(name), sorted(DISPATCH_KEYS))
        hint = f"did you mean '{close}'?" if close else "the backend key names a dispatch key, e.g. Lazy, XLA or PrivateUse1"
        raise UserError(_err(path, value, f"'backend: {name}' is not a dispatch key", hint))
    return name


def _op_list(path: str, key: str, entry: tuple[Located, Located], errors: list[Diagnostic]) -> tuple[OpEntry, ...]:
    key_at, value = entry
    if value.value is None:
        return ()
    if not isinstance(value.value, list):
        errors.append(_err(path, value, f"'{key}' must be a list of operator names",
                           f"write it as a list: '{key}: [{value.value}]'"))
        return ()
    ops = []
    for item in value.value:
        if not isinstance(item.value, str):
            errors.append(_err(path, item, f"'{key}' entries must be operator names, not {_describe(item.value)}"))
            continue
        ops.append(OpEntry(item.value, item.line, item.col))
    return tuple(ops)


def _non_native(path: str, entry: tuple[Located, Located], errors: list[Diagnostic]) -> tuple[NonNativeEntry, ...]:
    from lazygen.lazy import ALL_PROPERTIES

    _, value = entry
    if value.value is None:
        return ()
    if not isinstance(value.value, list):
        errors.append(_err(path, value, "'non_native' must be a list of entries with 'func:'"))
        return ()
    out = []
    for item in value.value:
        if not isinstance(item.value, dict):
            errors.append(_err(path, item, "a 'non_native' entry must be a mapping with 'func:'"))
            continue
        fields = item.value
        for name, (k, _) in fields.items():
            if name not in ("func", "properties", "opkind"):
                errors.append(_err(path, k, f"unknown key '{name}' in a non_native entry",
                                   "valid keys are func, properties and opkind"))
        if "func" not in fields:
            errors.append(_err(path, item, "non_native entry has no 'func'"))
            continue
        func_at = fields["func"][1]
        if not isinstance(func_at.value, str):
            errors.append(_err(path, func_at, "'func' must be a schema string"))
            continue
        try:
            func = parse_schema(func_at.value)
        except SchemaError as err:
            errors.append(_err(path, func_at, f"bad schema: {err}"))
            continue
        props: list[str] = []
        if "properties" in fields:
            p_at = fields["properties"][1]
            if not isinstance(p_at.value, list):
                errors.append(_err(path, p_at, "'properties' must be a list"))
            else:
                for p in p_at.value:
                    if not isinstance(p.value, str):
                        errors.append(_err(path, p, f"'properties' entries must be property names, not {_describe(p.value)}"))
                    elif p.value not in ALL_PROPERTIES:
                        close = _closest(str(p.value), sorted(ALL_PROPERTIES))
                        errors.append(_err(path, p, f"unknown property '{p.value}'",
                                           f"did you mean '{close}'?" if close else None))
                    else:
                        props.append(p.value)
        opkind = None
        if "opkind" in fields:
            o_at = fields["opkind"][1]
            if not isinstance(o_at.value, str):
                errors.append(_err(path, o_at, "'opkind' must be a string"))
            else:
                opkind = o_at.value
        out.append(NonNativeEntry(func, tuple(props), opkind, item.line, item.col))
    return tuple(out)


def parse_backend(path: Path, doc: Located | None = None) -> BackendSpec:
    """Parse the yaml's structure (not yet its operators); raises UserError with every problem."""
    from lazygen.yamlsource import load  # PyYAML only when a yaml is read

    path_s = str(path)
    top = _mapping(path_s, doc if doc is not None else load(path))
    errors: list[Diagnostic] = []
    for name, (key_at, _) in top.items():
        if name not in VALID_KEYS:
            close = _closest(name, VALID_KEYS)
            hint = f"did you mean '{close}'?" if close else "valid keys: " + ", ".join(VALID_KEYS)
            if name == "extra_headers":
                hint = "torchgen's message lists 'extra_headers' but its parser never accepted it"
            errors.append(_err(path_s, key_at, f"unknown key '{name}'", hint))
    try:
        backend = _backend_key(path_s, top)
    except UserError as err:
        errors.extend(err.diagnostics)
        backend = ""

    cpp_namespace = ""
    if "cpp_namespace" not in top:
        errors.append(Diagnostic(path_s, 1, 1, "missing required key 'cpp_namespace'", "e.g. 'cpp_namespace: torch::lazy'"))
    else:
        ns_at = top["cpp_namespace"][1]
        if not is_cpp_name(ns_at.value):
            errors.append(_err(path_s, ns_at, f"cpp_namespace '{ns_at.value}' is not a C++ namespace",
                               "write it like 'torch::lazy' or 'my_backend'"))
        else:
            cpp_namespace = ns_at.value

    class_name = None
    if "class_name" in top:
        c_at = top["class_name"][1]
        if not is_cpp_name(c_at.value):
            errors.append(_err(path_s, c_at, f"class_name '{c_at.value}' is not a C++ class name"))
        else:
            class_name = c_at.value

    flags = {}
    for flag in ("use_out_as_primary", "device_guard"):
        flags[flag] = False
        if flag in top:
            f_at = top[flag][1]
            if not isinstance(f_at.value, bool):
                errors.append(_err(path_s, f_at, f"'{flag}' must be true or false"))
            else:
                flags[flag] = f_at.value

    lists = {key: _op_list(path_s, key, top[key], errors) if key in top else () for key in OP_LISTS}
    non_native = _non_native(path_s, top["non_native"], errors) if "non_native" in top else ()
    if errors:
        raise UserError(*errors)
    return BackendSpec(
        path=path_s,
        backend=backend,
        backend_line=top["backend"][1].line,
        backend_col=top["backend"][1].col,
        cpp_namespace=cpp_namespace,
        cpp_namespace_line=top["cpp_namespace"][1].line,
        cpp_namespace_col=top["cpp_namespace"][1].col,
        class_name=class_name,
        non_native=non_native,
        use_out_as_primary=flags["use_out_as_primary"],
        device_guard=flags["device_guard"],
        **lists,
    )


# ------------------------------------------------------------------ check


class BackendIndex(NamedTuple):
    """Kernels one dispatch key has: operator name ("add.Tensor") -> kernel name."""

    dispatch_key: str
    kernels: dict[str, str]
    use_out_as_primary: bool
    device_guard: bool

    def kernel(self, f: NativeFunction) -> str | None:
        return self.kernels.get(f.op)


def supports_symint(kernel: str | None) -> bool:
    return kernel is not None and "_symint" in kernel


class CheckedBackend(NamedTuple):
    spec: BackendSpec
    backend_index: BackendIndex
    autograd_index: BackendIndex | None
    full_codegen: tuple[str, ...]
    ir_gen: tuple[str, ...]
    lines: dict[str, OpEntry]  # where each op was listed first

    @property
    def backend_key(self) -> str:
        return self.spec.backend


def _resolve(spec: BackendSpec, key: str, entry: OpEntry, catalogue: Catalogue, errors: list[Diagnostic]) -> str | None:
    try:
        name = OperatorName.parse(entry.text)
    except SchemaError as err:
        errors.append(Diagnostic(spec.path, entry.line, entry.col, f"'{entry.text}' under '{key}' is not an operator name: {err}"))
        return None
    if str(name) in catalogue:
        return str(name)
    errors.append(Diagnostic(spec.path, entry.line, entry.col, f"unknown operator '{entry.text}' under '{key}'",
                             unknown_operator_hint(entry.text, name.name, catalogue)))
    return None


def unknown_operator_hint(text: str, base: str, catalogue: Catalogue, n: int = 1) -> str | None:
    """What to suggest for an operator name `text` (base name `base`) the
    catalogue lacks: its overloads, else the `n` closest names."""
    import difflib

    same_base = sorted(n for n in catalogue.order if n.split(".", 1)[0] == base)
    if same_base:
        return "its overloads are: " + ", ".join(same_base[:12]) + (", ..." if len(same_base) > 12 else "")
    close = [f"'{c}'" for c in difflib.get_close_matches(text, list(catalogue.order), n=n)]
    if not close:
        return None
    return "did you mean " + (close[0] if len(close) == 1 else ", ".join(close[:-1]) + " or " + close[-1]) + "?"


def check_backend(spec: BackendSpec, catalogue: Catalogue) -> tuple[CheckedBackend, list[Diagnostic]]:
    """Resolve every listed operator against the catalogue. Returns the
    resolved backend (without the operators that failed) and every problem."""
    errors: list[Diagnostic] = []
    if spec.backend in catalogue.dispatch_keys or spec.backend in ("Undefined", "CatchAll"):
        errors.append(Diagnostic(spec.path, spec.backend_line, spec.backend_col,
                                 f"dispatch key '{spec.backend}' already has in-tree kernels; an external backend needs its own key",
                                 "use e.g. Lazy, XLA or PrivateUse1"))
    if spec.autograd and "Autograd" + spec.backend not in DISPATCH_KEYS:
        errors.append(Diagnostic(spec.path, spec.autograd[0].line, spec.autograd[0].col,
                                 f"there is no dispatch key 'Autograd{spec.backend}' for the 'autograd' section"))

    resolved: dict[str, list[tuple[str, OpEntry]]] = {}
    lines: dict[str, OpEntry] = {}
    for key in OP_LISTS:
        resolved[key] = []
        seen: dict[str, OpEntry] = {}
        for entry in getattr(spec, key):
            name = _resolve(spec, key, entry, catalogue, errors)
            if name is None:
                continue
            if name in seen:
                errors.append(Diagnostic(spec.path, entry.line, entry.col, f"'{entry.text}' is listed twice under '{key}'",
                                         f"first listed at line {seen[name].line}"))
                continue
            seen[name] = entry
            resolved[key].append((name, entry))
            lines.setdefault(name, entry)

    def clash(a: str, b: str, why: str) -> None:
        first = {n: e for n, e in resolved[a]}
        for name, entry in resolved[b]:
            if name in first:
                errors.append(Diagnostic(spec.path, entry.line, entry.col, f"'{entry.text}' is under both '{a}' and '{b}'",
                                         why + f" (see line {first[name].line})"))

    clash("supported", "full_codegen", "full_codegen already declares and registers the kernel")
    clash("full_codegen", "ir_gen", "full_codegen already generates its IR node")
    clash("supported", "autograd", "an op is registered either for the backend key or for its autograd key")
    clash("full_codegen", "autograd", "an op is registered either for the backend key or for its autograd key")

    symint_texts = {e.text for e in spec.symint}
    symint_names = {name for name, _ in resolved["symint"]}
    for name, entry in resolved["symint"]:
        f = catalogue.function(name)
        if not f.func.has_symint():
            errors.append(Diagnostic(spec.path, entry.line, entry.col, f"'{entry.text}' is under 'symint' but has no SymInt argument",
                                     f"its schema: {f.func}"))

    def index_for(dispatch_key: str, entries: list[tuple[str, OpEntry]]) -> BackendIndex:
        kernels = {}
        for name, entry in entries:
            kernel = kernel_name(catalogue.function(name).func)
            # torchgen matches the raw text, so `symint` must spell the op as the other list does.
            if entry.text in symint_texts:
                kernel += "_symint"
            kernels[name] = kernel
        return BackendIndex(dispatch_key, kernels, spec.use_out_as_primary, spec.device_guard)

    backend_index = index_for(spec.backend, resolved["supported"] + resolved["full_codegen"])
    autograd_index = index_for("Autograd" + spec.backend, resolved["autograd"]) if spec.autograd else None
    for name, kernel in backend_index.kernels.items():
        if name in symint_names:
            continue  # the symint check above speaks for these
        if supports_symint(kernel) and not catalogue.function(name).func.has_symint():
            entry = lines[name]
            errors.append(Diagnostic(spec.path, entry.line, entry.col,
                                     f"kernel name '{kernel}' for '{name}' reads as a SymInt kernel, but the op has no SymInt argument"))

    # One operator's variants go either to the backend key or to its autograd key, not both.
    if autograd_index is not None:
        for names in catalogue.groups:
            fwd = [op for op in names if op in backend_index.kernels]
            bwd = [op for op in names if op in autograd_index.kernels]
            if fwd and bwd and fwd[0] != bwd[0]:
                entry = lines[bwd[0]]
                errors.append(Diagnostic(spec.path, entry.line, entry.col,
                                         f"'{bwd[0]}' is under 'autograd' but its variant '{fwd[0]}' is under 'supported'/'full_codegen'",
                                         "all variants of an op go to the backend key or all to its autograd key"))
    return CheckedBackend(
        spec=spec,
        backend_index=backend_index,
        autograd_index=autograd_index,
        full_codegen=tuple(n for n, _ in resolved["full_codegen"]),
        ir_gen=tuple(n for n, _ in resolved["ir_gen"]),
        lines=lines,
    ), errors
