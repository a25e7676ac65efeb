"""The generator: inputs -> checked model -> rendered contents.

`render_outputs` does all the work that can fail on user input, rendering
each IR node and kernel as it checks it, and returns for every output a
function that renders its text in pieces; lazygen.api stages and commits
them one at a time. Nothing is written here.
"""

from __future__ import annotations

import os
import re
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator, NamedTuple

from lazygen import compilable, plan
from lazygen.backend import BackendSpec, CheckedBackend, check_backend, supports_symint
from lazygen.catalogue import Catalogue, NativeFunction
from lazygen.compilable import Refusal
from lazygen.cpp import Flavor, Signature
from lazygen.errors import Diagnostic, Unsupported, UserError
from lazygen.inputs import decode, read_input
from lazygen.ir_view import Names, ir_node
from lazygen.kernel_view import KernelContext, kernel, shape_declaration, uses_meta_shapes
from lazygen.lazy import NON_NATIVE_PROPERTIES, lazy_ir_schema
from lazygen.locate import torch_include_dir
from lazygen.options import DEFAULT_SHAPE_INFERENCE_HDR, Options
from lazygen.releases import NEWEST, Release
from lazygen.register_view import Wrapper, group_wrappers

if TYPE_CHECKING:
    from lazygen.render import ElementRenderer  # imports Jinja2

_LAZY_IR_SYSINC = (
    "ATen/core/Formatting.h",
    "c10/core/ScalarType.h",
    "torch/csrc/lazy/core/hash.h",
    "torch/csrc/lazy/core/ir.h",
    "torch/csrc/lazy/core/shape.h",
    "optional",
    "vector",
)
_NON_NATIVE_INC = (
    "torch/csrc/lazy/core/ir.h",
    "torch/csrc/lazy/core/ir_builder.h",
    "torch/csrc/lazy/core/internal_ops/ltc_ops.h",
    "torch/csrc/lazy/core/shape_inference.h",
)
_KERNEL_INC = (
    "ATen/Functions.h",
    "ATen/native/TensorConversions.h",
    "ATen/NativeFunctions.h",
    "ATen/CompositeExplicitAutogradNonFunctionalFunctions.h",
    "ATen/MetaFunctions.h",
    "ATen/Operators.h",
    "ATen/native/CPUFallback.h",
    "torch/csrc/lazy/core/ir_builder.h",
    "torch/csrc/lazy/core/lazy_graph_executor.h",
    "torch/csrc/lazy/core/metrics.h",
    "torch/csrc/lazy/core/shape.h",
)


# An output's text, in pieces, rendered on demand.
Output = Callable[[], Iterator[str]]


class Rendered(NamedTuple):
    contents: dict[str, Output]  # file name -> its text
    inputs: tuple[Path, ...]  # every file read besides the catalogue
    warnings: tuple[Diagnostic, ...] = ()


def namespace_lines(namespace: str) -> tuple[str, str]:
    parts = namespace.split("::")
    prologue = "\n".join(f"namespace {p} {{" for p in parts)
    epilogue = "\n".join(f"}} // namespace {p}" for p in reversed(parts))
    return prologue, epilogue


def generated_include_dir(options: Options) -> str:
    """How generated files name each other's folder in #include lines."""
    return options.include_prefix if options.include_prefix is not None else os.fspath(options.output_dir)


def _by_line(diagnostics: list[Diagnostic]) -> list[Diagnostic]:
    return sorted(diagnostics, key=lambda d: (d.line or 0, d.col or 0))


class _Problems:
    """Collects every diagnostic of a run, so all are reported at once."""

    def __init__(self, spec: BackendSpec, checked: CheckedBackend) -> None:
        self.spec = spec
        self.checked = checked
        self.items: list[Diagnostic] = []
        self.warnings: list[Diagnostic] = []

    def op(self, op: str, message: str, hint: str | None = None, severity: str = "error") -> None:
        """A problem with operator `op`, reported at the yaml line that lists it."""
        entry = self.checked.lines.get(op)
        line, col = (entry.line, entry.col) if entry else (None, None)
        (self.warnings if severity == "warning" else self.items).append(Diagnostic(self.spec.path, line, col, message, hint, severity))

    def refused(self, refusal: Refusal, allowed: bool) -> None:
        """An op whose generated code would not compile (lazygen.compilable):
        an error, or with allow_uncompilable a warning."""
        hint = refusal.hint
        if refusal.other is not None:
            line = self._line_of(refusal.other, refusal.other_is_non_native)
            hint = f"'{refusal.other}' is at line {line}; " + hint if line is not None else hint
        if allowed:
            hint += "; torchgen's code for it is written anyway (--allow-uncompilable)"
        else:
            hint += " (or pass --allow-uncompilable to write torchgen's code anyway)"
        self.op(refusal.op, f"the code generated for '{refusal.op}' under '{refusal.section}' would not compile: {refusal.message}",
                hint, "warning" if allowed else "error")

    def _line_of(self, name: str, non_native: bool) -> int | None:
        if non_native:
            return next((e.line for e in self.spec.non_native if str(e.func.name) == name), None)
        entry = self.checked.lines.get(name)
        return entry.line if entry else None

    def raise_if_any(self, *others: Diagnostic) -> None:
        """Raise every problem: the yaml's in line order, then `others` (of other files) as they are."""
        if self.items or others:
            raise UserError(*_by_line(self.items + self.warnings), *others)

    def sorted_warnings(self) -> tuple[Diagnostic, ...]:
        return tuple(_by_line(self.warnings))


class Elements(NamedTuple):
    """The checked, rendered elements of a backend's outputs. The IR nodes,
    kernels and registrations come in one list per shard (one list when
    unsharded); an operator group's all go to the shard plan.shard_of names."""

    node_texts: list[list[str]]  # LazyIr.h (LazyIr_<i>.h), one IR node class each
    non_native_texts: list[str]  # LazyNonNativeIr.h
    kernel_texts: list[list[str]]  # <Key>NativeFunctions.cpp (<Key>NativeFunctions_<i>.cpp)
    shape_decls: list[tuple[str, str]]  # (op, compute_shape_* declaration) the kernels call
    declarations: list[str]  # <Key>NativeFunctions.h
    register: dict[str, list[list[Wrapper]]]  # Register<dispatch key>.cpp (its shards; the autograd key's is never split)


def build_elements(options: Options, catalogue: Catalogue, checked: CheckedBackend, names: Names, class_name: str,
                   render: ElementRenderer, problems: _Problems) -> Elements:
    """Checks every operator the yaml lists and renders its parts. One pass
    over the operator groups does everything a group needs, then lets go of
    the group's parsed schemas: a large backend never holds them all."""
    spec = checked.spec
    node_base = "torch::lazy::Node" if options.qualify_names and options.node_base == "Node" else options.node_base
    index = checked.backend_index
    indices = [idx for idx in (index, checked.autograd_index) if idx is not None]
    ctx = KernelContext(options, class_name, names)

    shards = options.shards
    node_texts: list[list[str]] = [[] for _ in range(shards)]
    kernel_texts: list[list[str]] = [[] for _ in range(shards)]
    shape_decls: list[tuple[str, str]] = []
    declarations: dict[str, list[str]] = {idx.dispatch_key: [] for idx in indices}
    register: dict[str, list[list[Wrapper]]] = {idx.dispatch_key: [[] for _ in range(shards if idx is index else 1)] for idx in indices}
    ir_ops = set(checked.full_codegen) | set(checked.ir_gen)
    full = set(checked.full_codegen)
    refuse = partial(problems.refused, allowed=options.allow_uncompilable)
    listed = sorted([(op, compilable.FULL_CODEGEN) for op in checked.full_codegen] + [(op, compilable.IR_GEN) for op in checked.ir_gen],
                    key=lambda pair: checked.lines[pair[0]].line)
    for refusal in compilable.class_name_refusals(listed, (e.func.name for e in spec.non_native), options.node_base):
        refuse(refusal)
    wanted = ir_ops.union(*(idx.kernels for idx in indices))
    for group in catalogue.groups:
        if not any(op in wanted for op in group if op):
            continue
        shard = plan.shard_of(group[0], shards)
        for op in group:
            if op not in ir_ops:
                continue
            f = catalogue.function(op)
            kernel_name = index.kernel(f)
            symint = supports_symint(kernel_name)
            section = "full_codegen" if op in full else "ir_gen"
            try:
                schema = lazy_ir_schema(f.func, value_class=options.lazy_value_class, symint=symint)
                render.node(node_texts[shard], ir_node(schema, node_base=node_base, use_lazy_shape=options.use_lazy_shape,
                                                       ts_lowerings=options.gen_ts_lowerings, names=names))
                if op in full:
                    assert kernel_name is not None
                    render.kernel(kernel_texts[shard], kernel(ctx, f, schema, kernel_name, symint))
                    if not uses_meta_shapes(f):
                        shape_decls.append((op, shape_declaration(f, kernel_name, symint)))
            except Unsupported as err:
                problems.op(op, f"cannot generate code for '{op}' under '{section}': {err}", f"its schema: {f.func}")
            # After the generator's own errors: those say what cannot be generated at all.
            for refusal in compilable.op_refusals(
                f, section, variants=[catalogue.function(v) for v in group if v and v != op], has_kernel=index.kernels.__contains__,
                use_out_as_primary=index.use_out_as_primary, use_lazy_shape=options.use_lazy_shape, ts_lowerings=options.gen_ts_lowerings,
            ):
                refuse(refusal)
        for idx in indices:
            for op in group:
                k = idx.kernels.get(op) if op else None
                if k is None:
                    continue
                f = catalogue.function(op)
                try:
                    declarations[idx.dispatch_key].append(f"static {Signature(f.func, Flavor.of(f, symint=supports_symint(k))).decl(k)};")
                except Unsupported as err:
                    problems.op(op, f"cannot declare a kernel for '{op}': {err}")
            ws, errors = group_wrappers(catalogue, idx, group, spec.cpp_namespace, class_name)
            register[idx.dispatch_key][shard if idx is index else 0] += ws
            for err in errors:
                # A generated wrapper belongs to the functional variant the yaml lists.
                listed = err.group.functional if err.group is not None and idx.kernel(err.func) is None else err.func
                problems.op(listed.op, f"cannot register '{listed.op}' for {idx.dispatch_key}: {err}")
        catalogue.forget(group)

    non_native_texts: list[str] = []
    for entry in spec.non_native:
        try:
            schema = lazy_ir_schema(entry.func, value_class=options.lazy_value_class, symint=True,
                                    properties=NON_NATIVE_PROPERTIES.with_set(*entry.properties), opkind=entry.opkind)
            render.node(non_native_texts, ir_node(schema, node_base=node_base, use_lazy_shape=options.use_lazy_shape,
                                                  ts_lowerings=options.gen_ts_lowerings, names=names))
        except Unsupported as err:
            problems.items.append(Diagnostic(spec.path, entry.line, entry.col, f"cannot generate an IR node for non_native '{entry.func.name}': {err}"))

    return Elements(
        node_texts=node_texts,
        non_native_texts=non_native_texts,
        kernel_texts=kernel_texts,
        shape_decls=shape_decls,
        # The backend's declarations, sorted, then its autograd key's.
        declarations=[d for decls in declarations.values() for d in sorted(set(decls))],
        register=register,
    )


def shape_header_file(options: Options) -> Path:
    """The file the shape-inference check reads. A relative
    --shape-inference-hdr is looked up in the working directory first (as
    torchgen does), then in torch's include folder."""
    if options.shape_inference_file is not None:
        return Path(options.shape_inference_file)
    assert options.shape_inference_hdr is not None
    hdr = Path(options.shape_inference_hdr)
    if hdr.is_absolute() or hdr.exists():
        return hdr
    include = torch_include_dir()
    if include is not None and (include / hdr).exists():
        return include / hdr
    return hdr


def check_shape_inference(options: Options, shape_decls: list[tuple[str, str]], problems: _Problems) -> Path | None:
    if not options.check_shape_inference or options.shape_inference_hdr is None or not shape_decls:
        return None
    path = shape_header_file(options)
    try:
        lines = set(decode(path, read_input(path)).split("\n"))
    except FileNotFoundError as err:
        if options.write_missing_shapes is None:
            raise UserError.at(str(path), None, None, f"cannot read the shape inference header: {err.strerror}",
                               "pass it with --shape-inference-file, write it with --write-missing-shapes FILE, "
                               "or skip the check with --no-shape-inference-check") from None
        lines = set()  # a new backend's first run: every declaration is missing, and gets written
    except OSError as err:
        raise UserError.at(str(path), None, None, f"cannot read the shape inference header: {err.strerror or err}",
                           "pass it with --shape-inference-file, or skip the check with --no-shape-inference-check") from None
    missing = [(op, decl) for op, decl in shape_decls if decl not in lines]
    hint = "or write the missing declarations with --write-missing-shapes FILE"
    if missing and options.write_missing_shapes is not None:
        target = Path(options.write_missing_shapes)
        # The header written replaces the one checked: it must not include itself.
        included = options.shape_inference_hdr
        if _same_file(target, path) or target.resolve().parts[-len(Path(included).parts):] == Path(included).parts:
            included = DEFAULT_SHAPE_INFERENCE_HDR
        written = write_shape_files(target, included, [d for _, d in shape_decls], [d for _, d in missing])
        hint = f"wrote every declaration to {written[0]} and skeletons of the missing ones to {written[1]}"
    for op, decl in missing:
        problems.op(op, f"no shape function for '{op}' in {options.shape_inference_hdr}; declare: {decl}", hint)
    return path


def write_shape_files(header: Path, included: str, every_decl: list[str], missing: list[str]) -> tuple[Path, Path]:
    """A header declaring every shape function the kernels call (so it passes
    the check as --shape-inference-hdr) and skeleton definitions of the
    missing ones, for a backend to fill in."""
    source = header.with_name(header.name + ".cpp")
    decls = "\n".join(dict.fromkeys(every_decl))
    header_text = (
        "#pragma once\n"
        "// Shape functions the generated lazy kernels call (written by lazygen --write-missing-shapes).\n"
        f"#include <{included}>\n\n"
        "namespace torch {\nnamespace lazy {\n\n"
        f"{decls}\n\n"
        "} // namespace lazy\n} // namespace torch\n"
    )
    bodies = []
    for decl in dict.fromkeys(missing):
        signature = decl.removeprefix("TORCH_API ").removesuffix(";")
        name = signature.split("(", 1)[0].rsplit(" ", 1)[-1]
        bodies.append(f'{signature} {{\n  TORCH_CHECK(false, "{name} is not implemented yet");\n}}\n')
    source_text = (
        f'#include "{header.name}"\n\n#include <c10/util/Exception.h>\n\n'
        "namespace torch {\nnamespace lazy {\n\n" + "\n".join(bodies) + "\n} // namespace lazy\n} // namespace torch\n"
    )
    from lazygen.atomic import sweep
    from lazygen.commit import write_if_changed

    # Like the outputs: each written whole (temporary file and rename), and
    # only when its content changed.
    for path, text in ((header, header_text), (source, source_text)):
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            sweep(path.parent, {path.name})
            write_if_changed(path, text.encode("utf-8"))
        except OSError as err:
            raise UserError.at(str(path), None, None, f"cannot write: {err.strerror or err}") from None
    return header, source


def kernel_definitions(text: str, class_name: str) -> dict[str, int]:
    """How many definitions of each `<class_name>::<kernel>(` a C++ source
    has (torchgen's check: a name after `::` only, not `x::<class_name>::`)."""
    found: dict[str, int] = {}
    for before, name in re.findall(rf"(.*){re.escape(class_name)}::\s*([\w\d]*)\(", text):
        if not before.endswith(":"):
            found[name] = found.get(name, 0) + 1
    return found


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.realpath(a) == os.path.realpath(b)


def check_kernels(options: Options, catalogue: Catalogue, checked: CheckedBackend, class_name: str, problems: _Problems) -> Path | None:
    """Every supported/autograd kernel (not full_codegen) must be defined in the impl file."""
    if options.impl_path is None:
        return None
    path = Path(options.impl_path)
    try:
        data = read_input(path)
    except OSError as err:
        raise UserError.at(str(path), None, None, f"cannot read the kernel implementation file: {err.strerror or err}") from None
    text = decode(path, data)
    full = set(checked.full_codegen)
    expected: dict[str, list[NativeFunction]] = {}
    kernels = dict(checked.backend_index.kernels)
    if checked.autograd_index is not None:
        kernels.update(checked.autograd_index.kernels)
    for op in catalogue.order:
        if op in kernels and op not in full:
            expected.setdefault(kernels[op], []).append(catalogue.function(op))
    found = kernel_definitions(text, class_name)
    for name, funcs in expected.items():
        have = found.get(name, 0)
        if have != len(funcs):
            decls = "; ".join(Signature(f.func, Flavor.of(f)).decl() for f in funcs)
            problems.op(funcs[0].op,
                        f"{path} defines {have} kernel(s) named {class_name}::{name}, expected {len(funcs)} (for {', '.join(str(f.name) for f in funcs)})",
                        f"expected signature(s): {decls}")
    return path


def render_outputs(options: Options, catalogue: Catalogue, spec: BackendSpec, release: Release = NEWEST) -> Rendered:
    """`release`: the torch release whose torchgen output to reproduce."""
    checked, backend_errors = check_backend(spec, catalogue)
    problems = _Problems(spec, checked)
    problems.items += backend_errors
    depth = len(spec.cpp_namespace.split("::"))
    if depth > 2 and not options.qualify_names:
        problems.items.append(Diagnostic(spec.path, spec.cpp_namespace_line, spec.cpp_namespace_col,
                                         f"cpp_namespace '{spec.cpp_namespace}' has {depth} levels; torchgen's output supports at most 2",
                                         "pass --qualify-names to generate code that compiles in any namespace"))

    # Jinja2 is imported only now: a cold run's catalogue build is over, and
    # its memory can be reused.
    from lazygen.render import ElementRenderer, finish_block, make_environment, template_files

    env = make_environment(options.template_dirs, strip_lines=release.strip_lines)
    warnings: tuple[Diagnostic, ...] = ()
    if options.template_dirs:
        from lazygen.template_check import check_overrides

        overrides = check_overrides(env, options.template_dirs)
        errors, warnings = overrides.errors, overrides.warnings
        if options.warnings_as_errors:
            errors += tuple(w._replace(severity="error") for w in warnings)
            warnings = ()
        if errors:  # the templates cannot be trusted to render: stop before they do
            problems.raise_if_any(*errors)
    names = Names(options.qualify_names)
    class_name = f"{spec.backend}NativeFunctions"
    prologue, epilogue = namespace_lines(spec.cpp_namespace)
    common = {"options": options, "names": names, "namespace_prologue": prologue,
              "namespace_epilogue": epilogue, "generated_by": options.generated_by, "release": release}
    renderer = ElementRenderer(env, common, stop=lambda: bool(problems.items), strip_lines=release.strip_lines)
    elements = build_elements(options, catalogue, checked, names, class_name, renderer, problems)
    register = elements.register
    inputs: list[Path] = []
    shape_file = check_shape_inference(options, elements.shape_decls, problems)
    if shape_file is not None:
        inputs.append(shape_file)
    impl_file = check_kernels(options, catalogue, checked, class_name, problems)
    if impl_file is not None:
        inputs.append(impl_file)
    problems.raise_if_any()

    # Outputs are rendered when they are staged, one at a time (see
    # lazygen.commit.stage): a large backend never holds all of them at once.
    gen_dir = generated_include_dir(options)
    key = spec.backend
    header = f"{gen_dir}/{key}NativeFunctions.h"
    contents: dict[str, Output] = {}

    def put(name: str, template: str, **variables) -> None:
        contents[name] = partial(env.get_template(template).generate, common, **variables)

    for dispatch_key in list(register):
        parts = register.pop(dispatch_key)
        # With shards, each one registers its wrappers from a function of
        # its own, and the first shard's public function calls them all.
        public = f"Register{options.backend_name}{dispatch_key}NativeFunctions"
        shard_functions = [f"{public}_shard{i}" for i in range(len(parts))] if len(parts) > 1 else []
        for i, (name, wrappers) in enumerate(zip(plan.register_sources(dispatch_key, len(parts)), parts)):
            put(name, "Register.cpp.j2",
                dispatch_key=dispatch_key,
                backend_name=options.backend_name,
                external_backend_headers=f"#include <{header}>" if options.build_in_tree else f'#include "{header}"',
                dispatch_headers=(
                    ["#include <ATen/ops/as_strided_native.h>", "#include <ATen/ops/empty.h>", "#include <ATen/ops/empty_strided.h>",
                     "#include <ATen/ops/_copy_from_and_resize.h>", "#include <ATen/ops/_copy_from.h>"]
                    if options.per_operator_headers
                    else ["#include <ATen/NativeFunctions.h>", "#include <ATen/Functions.h>"]
                )
                + ["#include <c10/macros/Macros.h>"],
                ops_headers="" if options.per_operator_headers else "#include <ATen/Functions.h>",
                wrappers=wrappers,
                shard=i if shard_functions else None,
                shard_functions=shard_functions)
    ir_includes = dict(sysincludes=[f"#include <{p}>" for p in _LAZY_IR_SYSINC],
                       user_includes=[f'#include "{options.node_base_hdr}"'] if options.node_base_hdr is not None else [])
    ir_shard_headers = plan.ir_shard_headers(options.shards)
    if ir_shard_headers:
        # What every shard needs is LazyIr.h's text without nodes; LazyIr.h includes every shard.
        put(plan.IR_COMMON_HEADER, "LazyIr.h.j2", **ir_includes, node_texts=[])
        for name, texts in zip(ir_shard_headers, elements.node_texts):
            put(name, "LazyIrShard.h.j2", common_include=f"#include <{gen_dir}/{plan.IR_COMMON_HEADER}>",
                node_texts=finish_block(texts))
        put("LazyIr.h", "LazyIrShards.h.j2", includes=[f"#include <{gen_dir}/{name}>" for name in ir_shard_headers])
    else:
        put("LazyIr.h", "LazyIr.h.j2", **ir_includes, node_texts=finish_block(elements.node_texts[0]))
    put("LazyNonNativeIr.h", "LazyNonNativeIr.h.j2",
        includes=[f"#include <{p}>" for p in _NON_NATIVE_INC + ((options.node_base_hdr,) if options.node_base_hdr else ())],
        node_texts=finish_block(elements.non_native_texts))
    put(f"{key}NativeFunctions.h", "NativeFunctions.h.j2", class_name=class_name, declarations=elements.declarations)
    kernel_includes = [options.tensor_class_hdr]
    if options.shape_inference_hdr is not None:
        kernel_includes.append(options.shape_inference_hdr)
    kernel_includes += list(_KERNEL_INC) + [header]
    fallback_includes = ["torch/csrc/lazy/ts_backend/ts_eager_fallback.h"] if options.gen_forced_fallback_code else []
    # Each kernel shard includes only the IR classes its kernels use.
    ir_headers = ir_shard_headers or ["LazyIr.h"]
    for name, ir_header, texts in zip(plan.kernel_sources(key, options.shards), ir_headers, elements.kernel_texts):
        includes = kernel_includes + [f"{gen_dir}/{ir_header}"] + fallback_includes
        put(name, "NativeFunctions.cpp.j2",
            includes=[f"#include <{p}>" for p in includes], kernel_texts=finish_block(texts))
    expected = plan.output_names(key, spec.has_autograd, options.shards)
    assert sorted(contents) == sorted(expected), (sorted(contents), expected)
    return Rendered(contents, tuple(inputs) + tuple(template_files(options.template_dirs)), warnings + problems.sorted_warnings())


def load_spec(options: Options) -> BackendSpec:
    from lazygen.catalogue_cache import load_backend_spec

    spec = load_backend_spec(Path(options.source_yaml))
    if options.expect_backend is not None and options.expect_backend != spec.backend:
        raise UserError.at(spec.path, spec.backend_line, spec.backend_col,
                           f"the yaml says 'backend: {spec.backend}' but the build expects '{options.expect_backend}'",
                           "make the build rule's `backend` attribute match the yaml")
    if options.expect_autograd is not None and options.expect_autograd != spec.has_autograd:
        has = "has" if spec.has_autograd else "has no"
        raise UserError.at(spec.path, 1, 1, f"the yaml {has} 'autograd' section but the build expects autograd = {options.expect_autograd}",
                           "make the build rule's `autograd` attribute match the yaml")
    return spec
