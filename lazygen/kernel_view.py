"""What the <Key>NativeFunctions.cpp template needs for one generated kernel
(a full_codegen operator that traces into an IR node), and the
compute_shape_* declaration such a kernel calls."""

from __future__ import annotations

from typing import NamedTuple

from lazygen.catalogue import NativeFunction
from lazygen.cpp import Binding, Flavor, Signature, translate
from lazygen.errors import Unsupported
from lazygen.ir_view import Names, aten_symbol
from lazygen.lazy import LazyArgument, LazyIrSchema
from lazygen.options import Options
from lazygen.schema import is_tensor_like


class KernelContext(NamedTuple):
    """Per-run settings every kernel shares."""

    options: Options
    class_name: str
    names: Names

    @property
    def lazy_tensor_ptr(self) -> str:
        ptr = self.options.lazy_tensor_ptr
        return f"torch::lazy::{ptr}" if self.names.qualify and ptr == "LazyTensorPtr" else ptr


class Kernel(NamedTuple):
    func: NativeFunction
    schema: LazyIrSchema
    kernel: str  # kernel name (with _symint for SymInt kernels)
    signature: str  # the definition's signature, `<ret> <Class>::<kernel>(<args>)`
    node_ctor_inputs: str
    first_tensor_name: str | None
    num_returns: int
    # How return_aten_tensor hands the node back: "single" (one new tensor),
    # "tuple" (one per result) or "in_place" (the first tensor argument).
    result_kind: str
    lazy_tensor_ptr: str
    aten_symbol: str  # the op's c10::Symbol, as the forced fallback checks it
    fallback_op: str  # ATEN_OP(...) / ATEN_OP2(...)
    # The dispatcher call's arguments made from the kernel's; None when they
    # cannot be made (only an error when gen_forced_fallback_code asks for them).
    fallback_args: tuple[str, ...] | None
    # Default contents of the template blocks of the same names
    # (return_aten_tensor's is laid out in native_function.j2).
    gen_fallback_code: str
    metrics: str
    get_device: str
    lazy_tensor_decls: str
    shape_inference: str
    create_lazy_tensor: str


def shape_signature_args(f: NativeFunction, symint: bool) -> str:
    return ", ".join(b.defn() for b in Signature(f.func, Flavor.of(f, symint=symint)).arguments())


def shape_declaration(f: NativeFunction, kernel: str, symint: bool) -> str:
    return f"TORCH_API std::vector<torch::lazy::Shape> compute_shape_{kernel}({shape_signature_args(f, symint)});"


def uses_meta_shapes(f: NativeFunction) -> bool:
    """Structured ops and view_copy ops get their shapes from meta kernels;
    the others call a hand-written compute_shape_* function."""
    return f.structured or f.structured_delegate is not None or "view_copy" in f.tags


def _node_ctor_input(arg: LazyArgument, names: Names) -> str:
    t = arg.lazy_type
    if arg.is_value_ignoring_properties:
        if t.kind == "base":
            if arg.is_wrapped_scalar:
                return f"node_{arg.name}"
            if t.tensor_list:
                return f"lazy_{arg.name}_tensorlist"
            if arg.is_symint_or_list:
                return f"{names.GetSymIntValue}({arg.name})"
            return f"lazy_{arg.name}->GetIrValue()"
        if t.kind == "optional":
            if arg.is_symint_or_list:
                return f"{arg.name} ? std::make_optional({names.GetSymIntValue}(*{arg.name})) : ::std::nullopt"
            if arg.is_wrapped_scalar:
                return f"node_{arg.name}"
            return f"lazy_{arg.name} ? std::make_optional(lazy_{arg.name}->GetIrValue()) : ::std::nullopt"
        raise Unsupported(f"argument '{arg.name}' of type '{arg.type}' cannot be passed to an IR node")
    if arg.is_symint_list:
        if arg.symint:
            return f"{names.GetSymIntArrayRefValue}({arg.name})"
        return f"std::vector<int64_t>({arg.name}.begin(), {arg.name}.end())"
    if t.kind == "vector" and t.elem is not None and t.elem.kind == "base":
        return f"std::vector<{t.elem.cpp}>({arg.name}.begin(), {arg.name}.end())"
    if t.kind == "optional" and t.elem is not None and t.elem.kind == "vector" and t.elem.elem is not None and t.elem.elem.kind == "base":
        return f"torch::lazy::ToOptionalVector<{t.elem.elem.cpp}>({arg.name})"
    return arg.name


def _fallback_op(f: NativeFunction, schema: LazyIrSchema) -> str:
    overload = f.func.name.overload
    return f"ATEN_OP2({schema.aten_name}, {overload})" if overload else f"ATEN_OP({schema.aten_name})"


def _fallback_args(f: NativeFunction, sig: Signature) -> list[str]:
    return translate(sig.arguments(), Signature(f.func, Flavor.of(f)).arguments())


def _fallback(ctx: KernelContext, f: NativeFunction, schema: LazyIrSchema, sig: Signature) -> str:
    if not ctx.options.gen_forced_fallback_code:
        return ""
    args = ",\n                ".join(_fallback_args(f, sig))
    names = ctx.names
    return (
        "\n"
        f"        if ({names.force_eager_fallback}({aten_symbol(schema)})) {{\n"
        f"            return at::native::call_fallback_fn_symint<&{names.ltc_eager_fallback}, {_fallback_op(f, schema)}>::call(\n"
        f"                {args}\n"
        "            );\n"
        "        }\n"
    )


def _get_device(ctx: KernelContext, schema: LazyIrSchema) -> str:
    values = [a.name for a in schema.value_args if not a.is_wrapped_scalar]
    devices = [a.name for a in schema.scalar_args if a.lazy_type.cpp == "::std::optional<at::Device>"]
    if not values and not devices:
        raise Unsupported("it has no tensor argument and no optional Device argument to take the device from")
    return (
        f"auto common_device = {ctx.options.get_device_fn}({', '.join(values + devices)});\n"
        "        TORCH_INTERNAL_ASSERT(common_device);\n"
        "        "
    )


def _lazy_tensor_decls(ctx: KernelContext, schema: LazyIrSchema) -> str:
    o = ctx.options
    decls = []
    for arg in schema.value_args:
        t = arg.lazy_type
        if arg.is_wrapped_scalar:
            if t.kind == "optional":
                decls.append(
                    f"auto node_{arg.name} = {arg.name} ?\n"
                    "                std::make_optional(torch::lazy::LazyGraphExecutor::Get()->\n"
                    f"                    GetIrValueForScalarFromCodegen(*{arg.name}, *common_device)):\n"
                    "                ::std::nullopt;"
                )
            else:
                decls.append(
                    f"auto node_{arg.name} = torch::lazy::LazyGraphExecutor::Get()->\n"
                    f"                            GetIrValueForScalarFromCodegen({arg.name}, *common_device);"
                )
        elif arg.is_symint_or_list:
            continue
        elif t.kind == "base":
            if t.tensor_list:
                decls.append(f"auto lazy_{arg.name}_tensorlist = {o.backend_namespace}::{o.get_tensorlist}({arg.name});")
            else:
                decls.append(
                    f"{ctx.lazy_tensor_ptr} lazy_{arg.name} = "
                    f"{o.backend_namespace}::{o.get_tensor_or_wrap_number}({arg.name}, *common_device);"
                )
        elif t.kind == "optional":
            if t.elem is None or t.elem.kind != "base" or t.elem.base != o.lazy_value_class:
                raise Unsupported(f"optional argument '{arg.name}' of type '{arg.type}' cannot become a lazy tensor")
            decls.append(
                f"{ctx.lazy_tensor_ptr} lazy_{arg.name} = "
                f"{o.backend_namespace}::{o.try_get_tensor}({arg.name}.value_or(at::Tensor()));"
            )
        else:
            raise Unsupported(f"argument '{arg.name}' of type '{arg.type}' cannot become a lazy tensor")
    return "\n        ".join(decls)


def _shape_inference(ctx: KernelContext, f: NativeFunction, schema: LazyIrSchema, kernel: str, symint: bool) -> str:
    returns = len(schema.returns)
    if uses_meta_shapes(f):
        if returns > 1:
            shapes = ",".join(
                f"torch::lazy::Shape(std::get<{i}>(out_meta).scalar_type(), std::get<{i}>(out_meta).sizes().vec())"
                for i in range(returns)
            )
            meta_out = "std::vector<torch::lazy::Shape> shapes{" + shapes + "};"
        else:
            meta_out = (
                "\nstd::vector<torch::lazy::Shape> shapes{torch::lazy::Shape(out_meta.scalar_type(), out_meta.sizes().vec())};"
            )
        dispatcher = Signature(f.func, Flavor.of(f))
        conversions, given = [], []
        for b in dispatcher.arguments():
            if is_tensor_like(next(a for a in f.func.arguments.flat_all if a.name == b.key).type):
                conversions.append(f"auto {b.expr}_meta = to_meta({b.expr});")
                given.append(Binding(f"{b.expr}_meta", b.type, b.key))
            else:
                given.append(b)
        meta_args = translate(given, dispatcher.arguments())
        if "view_copy" in f.tags:
            if not f.has_composite_explicit_autograd_non_functional_kernel:
                raise Unsupported("it is a view_copy op without a CompositeExplicitAutogradNonFunctional kernel")
            namespace = "compositeexplicitautogradnonfunctional"
        else:
            namespace = "meta"
        name = schema.aten_name + ("_symint" if f.func.has_symint() and symint else "")
        separator = "\n        "
        text = (
            f"        {separator.join(conversions)}\n"
            f"        auto out_meta = at::{namespace}::{name}({', '.join(meta_args)});\n"
            f"        {meta_out}"
        )
    else:
        call_args = ", ".join(a.name for a in schema.filtered_args())
        text = f"\n            auto shapes = torch::lazy::compute_shape_{kernel}({call_args});"
    all_names = ", ".join(a.name for a in schema.filtered_args())
    text += f"\n            TORCH_INTERNAL_ASSERT(shapes.size() == {returns});"
    text += (
        "\n            if(torch::lazy::symbolicShapeEnabled()){\n"
        f"                std::vector<torch::jit::IValue> inputs = {{ {all_names} }};\n"
        f'                const char* schema_str = "aten::{f.func}";\n'
        f"                {ctx.names.applySymbolicShapesOnLT}(schema_str, inputs, shapes);\n"
        "            }\n"
        "        "
    )
    return text


def _create_lazy_tensor(ctx: KernelContext, first_tensor_name: str | None) -> str:
    o = ctx.options
    if o.create_from_first_tensor:
        if first_tensor_name is None:
            raise Unsupported("create_from_first_tensor needs a tensor argument")
        return f"{first_tensor_name}.{o.create_tensor}"
    return f"{o.backend_namespace}::{o.create_tensor}"


def _result_kind(f: NativeFunction, schema: LazyIrSchema, first: str | None) -> str:
    returns = len(schema.returns)
    kind = "single"
    if returns > 1:
        if first is None:
            raise Unsupported("it returns several tensors but takes no tensor argument")
        kind = "tuple"
    if f.func.name.inplace or f.func.is_out_fn():
        if returns != 1:
            raise Unsupported(f"it is an in-place or out= op with {returns} results; generated kernels handle exactly one")
        kind = "in_place"
    return kind


def _optional_fallback_args(f: NativeFunction, sig: Signature) -> tuple[str, ...] | None:
    try:
        return tuple(_fallback_args(f, sig))
    except Unsupported:
        return None


def kernel(ctx: KernelContext, f: NativeFunction, schema: LazyIrSchema, kernel_name: str, symint: bool) -> Kernel:
    """Raises Unsupported when no kernel can be generated for `f`."""
    sig = Signature(f.func, Flavor.of(f, symint=symint))
    values = [a.name for a in schema.value_args if not a.is_wrapped_scalar]
    first = values[0] if values else None
    ctor_inputs = ", ".join(_node_ctor_input(a, ctx.names) for a in schema.filtered_args())
    # In the order the kernel's parts appear, so the first problem is the one reported.
    fallback = _fallback(ctx, f, schema, sig)
    get_device = _get_device(ctx, schema)
    decls = _lazy_tensor_decls(ctx, schema)
    shapes = _shape_inference(ctx, f, schema, kernel_name, symint)
    create = _create_lazy_tensor(ctx, first)
    result_kind = _result_kind(f, schema, first)
    return Kernel(
        func=f,
        schema=schema,
        kernel=kernel_name,
        signature=sig.decl(name=f"{ctx.class_name}::{kernel_name}"),
        node_ctor_inputs=ctor_inputs,
        first_tensor_name=first,
        num_returns=len(schema.returns),
        result_kind=result_kind,
        lazy_tensor_ptr=ctx.lazy_tensor_ptr,
        aten_symbol=aten_symbol(schema),
        fallback_op=_fallback_op(f, schema),
        fallback_args=_optional_fallback_args(f, sig),
        gen_fallback_code=fallback,
        metrics=f"{ctx.options.metrics_counter};",
        get_device=get_device,
        lazy_tensor_decls=decls,
        shape_inference=shapes,
        create_lazy_tensor=create,
    )
