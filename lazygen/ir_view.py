"""What the LazyIr.h / LazyNonNativeIr.h templates need to know about one IR
node class, computed from its lazy IR schema. The templates decide the
layout; this module only spells names, types and argument lists."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from lazygen.errors import Unsupported
from lazygen.lazy import LazyArgument, LazyIrSchema


@dataclass(frozen=True)
class Names:
    """Spellings of torch::lazy names the generated code uses unqualified
    (torchgen's output only compiles inside namespace torch::lazy);
    `qualify_names` spells them in full."""

    qualify: bool

    def __getattr__(self, name: str) -> str:
        if name.startswith("_"):
            raise AttributeError(name)
        return f"torch::lazy::{name}" if self.qualify else name


def aten_symbol(schema: LazyIrSchema) -> str:
    # sigmoid_backward has no interned symbol in at::aten.
    if schema.aten_name == "sigmoid_backward":
        return 'c10::Symbol::fromQualString("aten::sigmoid_backward")'
    if schema.aten_name.startswith("at::"):
        return schema.aten_name
    return f"at::aten::{schema.aten_name}"


class LoweringArgs(NamedTuple):
    """The TorchScript lowering's argument lists."""

    arguments: list[str]
    kwarguments: list[str]


class IrNode(NamedTuple):
    schema: LazyIrSchema
    name: str
    node_base: str
    opkind: str
    ctor_args: str  # constructor parameters (with the shapes parameter when precomputed)
    reuse_args: str  # parameters of CanBeReused / Create
    base_ctor_value_args: str  # the OpList operands
    shape_ctor_arg: str
    scalar_hashes: str
    num_outputs: int
    scalar_initializers: str
    has_optional_defs: str
    members_to_string: str
    scalar_decls: str
    has_optional_decls: str
    reuse_comparisons: str
    lowering: LoweringArgs
    # Default contents of the template blocks of the same names.
    node_base_ctor_call: str
    create_function: str
    can_be_reused_function: str
    lowering_function: str


def _operand(arg: LazyArgument) -> str:
    kind = arg.lazy_type.kind
    if kind in ("base", "vector"):
        return arg.name
    if kind == "optional":
        return f"{arg.name}.value_or(kNullValue)"
    raise Unsupported(f"argument '{arg.name}' of type '{arg.type}' cannot be an IR operand")


def _shape_ctor_arg(schema: LazyIrSchema, names: Names) -> str:
    props = schema.properties
    values = [a.name for a in schema.value_args]
    scalars = [a.name for a in schema.scalar_args]
    fn = f"{names.compute_shape_}{schema.func.name}" if names.qualify else f"compute_shape_{schema.func.name}"
    if props.ShapePrecompute:
        return "std::move(shapes),"
    if props.ShapeCompute:
        return f"{fn}({', '.join(values + scalars)}),"
    if props.ShapeCache:
        operands = [f"operand({i})" for i in range(len(values))]
        return f"[&](){{ return {fn}({', '.join(operands + scalars)})[0]; }},"
    return ""


def _to_string(arg: LazyArgument) -> str:
    if arg.lazy_type.kind == "optional":
        value = '"torch.Generator()"' if arg.is_generator else f"{arg.name}.value()"
        return (
            f"if ({arg.name}.has_value()) {{\n"
            f'      ss << ", {arg.name}=" << {value};\n'
            "    } else {\n"
            f'      ss << ", {arg.name}=null";\n'
            "    }"
        )
    return f'ss << ", {arg.name}=" << {arg.name};'


def _scalar_decl(arg: LazyArgument) -> str:
    cpp = arg.lazy_type.cpp
    if cpp == "c10::string_view":
        return f"std::string {arg.name};"
    if cpp == "::std::optional<c10::string_view>":
        return f"::std::optional<std::string> {arg.name};"
    return f"{cpp} {arg.name};"


def _scalar_initializer(arg: LazyArgument) -> str:
    if arg.lazy_type.cpp == "::std::optional<c10::string_view>":
        return f"{arg.name}({arg.name}.has_value() ? ::std::make_optional(std::string(*{arg.name})) : ::std::nullopt)"
    return f"{arg.name}({arg.name})"


def _reuse_comparisons(schema: LazyIrSchema) -> str:
    parts = []
    for arg in schema.positional_values + schema.keyword_values:
        if arg.is_optional:
            parts.append(f"nullable_operand(i++) == {arg.name}.value_or(kNullValue)")
        else:
            parts.append(f"operand(i++) == {arg.name}")
    for arg in schema.positional_scalars + schema.keyword_scalars:
        n = arg.name
        if arg.is_optional:
            parts.append(f"((!this->{n}&&!{n}) || (this->{n}&&{n} && *(this->{n}) == *{n}))")
        else:
            parts.append(f"this->{n} == {n}")
    return " &&\n        ".join(parts)


def _lowering(schema: LazyIrSchema) -> LoweringArgs:
    def value(arg: LazyArgument) -> str:
        if arg.is_optional:
            return f"has_{arg.name} ? loctx->GetOutputOp(operand(i++)) : nullptr"
        return "loctx->GetOutputOp(operand(i++))"

    arguments = [value(a) if a.is_lazy_value else f'"{a.name}", {a.name}' for a in schema.positional_args]
    kwarguments = [f'"{a.name}", {value(a)}' for a in schema.keyword_values]
    kwarguments += [f'"{a.name}", {a.name}' for a in schema.keyword_scalars]
    return LoweringArgs(arguments, kwarguments)


def _node_base_ctor_call(node_base: str, name: str, oplist: str, operands: str, shape: str, outputs: int, hashes: str) -> str:
    return (
        f"{node_base}(\n"
        f"              {name}::ClassOpKind(),\n"
        f"              {oplist}{{{operands}}},\n"
        f"              {shape}\n"
        f"              /* num_outputs */ {outputs},\n"
        f"              torch::lazy::MHash({hashes}))"
    )


_TS_LOWER_SIGNATURE = (
    "\n  torch::lazy::TSOpVector Lower(\n"
    "      std::shared_ptr<torch::jit::GraphFunction> function,\n"
    "      torch::lazy::TSLoweringContext* loctx) const override"
)


def _ts_lowering_body(schema: LazyIrSchema, lowering: LoweringArgs) -> str:
    arguments = "\n    ".join(f"arguments.emplace_back({a});" for a in lowering.arguments)
    kwarguments = "\n    ".join(f"kwarguments.emplace_back({a});" for a in lowering.kwarguments)
    out = f"{schema.aten_name}_out"
    return (
        "    std::vector<torch::jit::NamedValue> arguments;\n"
        "    std::vector<torch::jit::NamedValue> kwarguments;\n"
        f"    arguments.reserve({len(lowering.arguments)});\n"
        f"    kwarguments.reserve({len(lowering.kwarguments)});\n"
        "    size_t i = 0;\n"
        f"    {arguments}\n"
        f"    {kwarguments}\n"
        f"    torch::lazy::TSOpVector {out} = torch::lazy::LowerTSBuiltin(function, op().op, arguments, kwarguments);\n"
        f"    TORCH_CHECK_EQ({out}.size(), {len(schema.returns)});\n"
        "\n"
        f"    return {out};\n"
    )


def _ts_functions(schema: LazyIrSchema, reuse_args: str, comparisons: str, lowering: LoweringArgs, names: Names) -> tuple[str, str, str]:
    """Create, CanBeReused and Lower of TorchScript nodes, as the node's properties ask."""
    props = schema.properties
    create_sig = f"static {names.NodePtr} Create({reuse_args})"
    if props.CreateFnDeclOnly:
        create = f"{create_sig};"
    elif props.CreateFn:
        create = f"{create_sig} {{\n    return {names.ReuseOrMakeNode}<{schema.node_name}>(data);\n  }}"
    else:
        create = ""
    reuse_sig = f"bool CanBeReused({reuse_args}) const"
    if props.CanBeReusedDeclOnly:
        reuse = f"{reuse_sig};"
    elif props.CanBeReused:
        reuse = f"{reuse_sig} {{\n    size_t i = 0;\n    return ({comparisons});\n  }}"
    else:
        reuse = ""
    if props.LowerDeclOnly:
        lower = f"{_TS_LOWER_SIGNATURE};"
    elif props.Lower:
        lower = f"{_TS_LOWER_SIGNATURE} {{\n    {_ts_lowering_body(schema, lowering)}\n  }}\n            "
    else:
        lower = ""
    return create, reuse, lower


def ir_node(schema: LazyIrSchema, *, node_base: str, use_lazy_shape: bool, ts_lowerings: bool, names: Names) -> IrNode:
    """Raises Unsupported when the schema cannot become a node class."""
    all_args = schema.filtered_args()
    scalar_args = schema.scalar_args
    ctor = [f"const {a.lazy_type.cpp}& {a.name}" for a in all_args]
    reuse_args = ", ".join(ctor)
    if use_lazy_shape and schema.properties.ShapePrecompute:
        ctor.append("std::vector<torch::lazy::Shape>&& shapes")
    initializers = ",\n        ".join(_scalar_initializer(a) for a in scalar_args)
    optional_values = [a.name for a in schema.value_args if a.is_optional]
    operands = ", ".join(_operand(a) for a in schema.value_args)
    shape = _shape_ctor_arg(schema, names)
    hashes = ", ".join(a.name for a in scalar_args)
    comparisons = _reuse_comparisons(schema)
    lowering = _lowering(schema)
    if ts_lowerings:
        create, reuse, lower = _ts_functions(schema, reuse_args, comparisons, lowering, names)
    else:
        create, lower = "", ""
        reuse = f"bool CanBeReused({reuse_args}) const {{\n    return false;\n    }}"
    return IrNode(
        schema=schema,
        name=schema.node_name,
        node_base=node_base,
        opkind=schema.opkind or aten_symbol(schema),
        ctor_args=", ".join(ctor),
        reuse_args=reuse_args,
        base_ctor_value_args=operands,
        shape_ctor_arg=shape,
        scalar_hashes=hashes,
        num_outputs=len(schema.returns),
        scalar_initializers=f",\n        {initializers}" if initializers else "",
        has_optional_defs="\n    ".join(f"has_{v} = !!{v};" for v in optional_values),
        members_to_string="\n    ".join(_to_string(a) for a in scalar_args),
        scalar_decls="\n  ".join(_scalar_decl(a) for a in scalar_args),
        has_optional_decls="\n  ".join(f"bool has_{v}: 1;" for v in optional_values),
        reuse_comparisons=comparisons,
        lowering=lowering,
        node_base_ctor_call=_node_base_ctor_call(
            node_base, schema.node_name, names.OpList, operands, shape, len(schema.returns), hashes
        ),
        create_function=create,
        can_be_reused_function=reuse,
        lowering_function=lower,
    )
