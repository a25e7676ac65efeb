"""How a schema looks inside a lazy IR node: tensors become IR values,
reference types become owning types, and each argument is sorted into
"values" (operands of the node) and "scalars" (attributes of the node).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from typing import NamedTuple

from lazygen.errors import Unsupported
from lazygen.schema import BaseType, FunctionSchema, ListType, OperatorName, OptionalType, Type

# The node properties, in mutually exclusive groups: at most one name of
# each group is set.
PROPERTY_GROUPS: tuple[tuple[str, ...], ...] = (
    ("ShapePrecompute", "ShapeCompute", "ShapeCache"),
    ("Lower", "LowerDeclOnly"),
    ("CanBeReused", "CanBeReusedDeclOnly"),
    ("CreateFn", "CreateFnDeclOnly"),
    ("TreatScalarsAsConstants",),
)
ALL_PROPERTIES = frozenset(p for group in PROPERTY_GROUPS for p in group)


@dataclass(frozen=True)
class Properties:
    chosen: tuple[str | None, ...]  # one entry per group

    @staticmethod
    def of(*names: str) -> Properties:
        return Properties((None,) * len(PROPERTY_GROUPS)).with_set(*names)

    def with_set(self, *names: str) -> Properties:
        chosen = list(self.chosen)
        for name in names:
            index = next((i for i, g in enumerate(PROPERTY_GROUPS) if name in g), None)
            if index is None:
                raise ValueError(f"unknown property '{name}'")
            chosen[index] = name
        return Properties(tuple(chosen))

    def __getattr__(self, name: str) -> bool:
        if name in ALL_PROPERTIES:
            return name in self.chosen
        raise AttributeError(name)


DEFAULT_PROPERTIES = Properties.of("ShapePrecompute", "Lower", "CanBeReused")
NON_NATIVE_PROPERTIES = Properties.of("ShapeCache", "CanBeReused", "LowerDeclOnly")

# The type torch's codegen stores a tensor list operand as, whatever the
# configured value class is.
TENSOR_LIST_VALUE = "torch::lazy::Value"


class UnsupportedLazyType(Unsupported):
    """A schema type lazy IR nodes cannot hold."""


@lru_cache(maxsize=None)
def node_class_name(name: OperatorName) -> str:
    """The IR node class of an operator: its name and overload in CamelCase.
    Underscores vanish, so `_foo` and `foo` get the same class."""
    words = f"{name.name}_{name.overload}".lower().split("_")
    return "".join(w.capitalize() for w in words)


class LType(NamedTuple):
    """A C++ type of a node's field: a base type, or an optional / vector /
    c10::List of one."""

    kind: str  # "base", "optional", "vector", "list"
    base: str = ""
    elem: LType | None = None
    tensor_list: bool = False  # a Tensor[] operand, whatever its spelling

    @property
    def cpp(self) -> str:
        return self.base if self.kind == "base" else _wrapped_cpp(self)

    def __str__(self) -> str:
        return self.cpp


_LTYPE_TEMPLATES = {"optional": "::std::optional<{}>", "vector": "::std::vector<{}>", "list": "c10::List<{}>"}


# Memoised: the views spell the same few wrapped types thousands of times, and
# an LType, a tuple of strings, hashes quickly.
@lru_cache(maxsize=None)
def _wrapped_cpp(t: LType) -> str:
    inner = t.elem.cpp if t.elem else ""
    return _LTYPE_TEMPLATES[t.kind].format(inner)


def _base(name: str) -> LType:
    return LType("base", name)


_IR_BASE = {
    "ScalarType": "at::ScalarType",
    "int": "int64_t",
    "bool": "bool",
    "float": "double",
    "str": "c10::string_view",
    "Device": "at::Device",
    "Generator": "at::Generator",
    "Layout": "at::Layout",
    "MemoryFormat": "at::MemoryFormat",
}


def ir_type(t: Type, value_class: str, properties: Properties, symint: bool) -> LType:
    if isinstance(t, BaseType):
        if t.name == "Tensor":
            return _base(value_class)
        if t.name == "Scalar":
            return _base("at::Scalar" if properties.TreatScalarsAsConstants else value_class)
        if t.name == "SymInt":
            return _base(value_class if symint else "int64_t")
        if t.name in _IR_BASE:
            return _base(_IR_BASE[t.name])
        raise UnsupportedLazyType(f"lazy IR nodes cannot hold a '{t}' argument")
    if isinstance(t, OptionalType):
        return LType("optional", elem=ir_type(t.elem, value_class, properties, symint))
    if isinstance(t, ListType):
        elem = str(t.elem)
        if elem == "Tensor?":
            return LType("list", elem=LType("optional", elem=_base(value_class)))
        if elem == "Tensor":
            return LType("base", TENSOR_LIST_VALUE, tensor_list=True)
        if elem == "SymInt":
            return LType("vector", elem=_base("int64_t"))
        return LType("vector", elem=ir_type(t.elem, value_class, properties, symint))
    raise UnsupportedLazyType(f"lazy IR nodes cannot hold a '{t}' argument")


def is_value_type(t: LType, value_class: str, treat_scalars_as_constants: bool) -> bool:
    if t.kind == "base":
        return (
            t.base == value_class
            or (t.base == "at::Scalar" and not treat_scalars_as_constants)
            or t.base == "c10::SymInt"
        )
    assert t.elem is not None
    return is_value_type(t.elem, value_class, treat_scalars_as_constants)


def _is_wrapped_scalar(t: Type) -> bool:
    if isinstance(t, BaseType):
        return t.name == "Scalar"
    if isinstance(t, (OptionalType, ListType)):
        return _is_wrapped_scalar(t.elem)
    return False


def _is_generator(t: Type) -> bool:
    if isinstance(t, OptionalType):
        return _is_generator(t.elem)
    return isinstance(t, BaseType) and t.name == "Generator"


def _is_symint(t: Type) -> bool:
    return isinstance(t, BaseType) and t.name == "SymInt"


class LazyArgument(NamedTuple):
    name: str
    type: Type  # the schema type
    lazy_type: LType
    symint: bool
    is_generator: bool
    is_wrapped_scalar: bool
    is_symint_or_list: bool
    is_lazy_value: bool
    # torchgen decides some spellings without looking at the node's
    # properties, i.e. treating Scalars as values even when they are constants.
    is_value_ignoring_properties: bool

    @property
    def is_optional(self) -> bool:
        return self.lazy_type.kind == "optional"

    @property
    def is_symint_list(self) -> bool:
        return isinstance(self.type, ListType) and self.type.elem == BaseType("SymInt")


# Memoised: a run meets a few hundred distinct arguments among thousands, and
# the result is immutable.
@lru_cache(maxsize=None)
def lazy_argument(name: str, t: Type, value_class: str, properties: Properties, symint: bool) -> LazyArgument:
    lt = ir_type(t, value_class, properties, symint)
    return LazyArgument(
        name=name,
        type=t,
        lazy_type=lt,
        symint=symint,
        is_generator=_is_generator(t),
        is_wrapped_scalar=_is_wrapped_scalar(t),
        is_symint_or_list=symint and (_is_symint(t) or (isinstance(t, OptionalType) and _is_symint(t.elem))),
        is_lazy_value=is_value_type(lt, value_class, properties.TreatScalarsAsConstants),
        is_value_ignoring_properties=is_value_type(lt, value_class, False),
    )


@dataclass(frozen=True)
class LazyIrSchema:
    func: FunctionSchema
    properties: Properties
    symint: bool
    positional_args: tuple[LazyArgument, ...]
    keyword_args: tuple[LazyArgument, ...]
    value_class: str
    opkind: str | None = None
    # filtered_args results by their flags: rendering one node asks for the
    # same few lists dozens of times. (A dataclass, not a NamedTuple, to hold
    # this and node_name's cache.)
    _filtered: dict[tuple[bool, ...], tuple[LazyArgument, ...]] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    # Computed once per schema (cached_property stores in the instance
    # __dict__, which a frozen dataclass allows).
    @cached_property
    def node_name(self) -> str:
        return node_class_name(self.func.name)

    @property
    def aten_name(self) -> str:
        return self.func.name.name

    @property
    def returns(self):
        return self.func.returns

    def filtered_args(
        self,
        positional: bool = True,
        keyword: bool = True,
        values: bool = True,
        scalars: bool = True,
        generator: bool = True,
    ) -> list[LazyArgument]:
        return list(self._filtered_args(positional, keyword, values, scalars, generator))  # the caller's own list

    def _filtered_args(
        self, positional: bool, keyword: bool, values: bool, scalars: bool, generator: bool
    ) -> tuple[LazyArgument, ...]:
        key = (positional, keyword, values, scalars, generator)
        args = self._filtered.get(key)
        if args is None:
            args = self._filtered[key] = tuple(self._filter(*key))
        return args

    def _filter(self, positional: bool, keyword: bool, values: bool, scalars: bool, generator: bool) -> list[LazyArgument]:
        args = list(self.positional_args if positional else ()) + list(self.keyword_args if keyword else ())
        if values and scalars and generator:
            return args
        if values and scalars:
            return [a for a in args if not a.is_generator]
        if values:
            return [a for a in args if a.is_lazy_value]
        if scalars:
            return [a for a in args if not a.is_lazy_value and (generator or not a.is_generator)]
        return []

    # The lists the views read; the flags are filtered_args's, in order.
    @property
    def value_args(self) -> list[LazyArgument]:
        return list(self._filtered_args(True, True, True, False, True))

    @property
    def scalar_args(self) -> list[LazyArgument]:
        return list(self._filtered_args(True, True, False, True, True))

    @property
    def positional_values(self) -> list[LazyArgument]:
        return list(self._filtered_args(True, False, True, False, True))

    @property
    def positional_scalars(self) -> list[LazyArgument]:
        return list(self._filtered_args(True, False, False, True, True))

    @property
    def keyword_values(self) -> list[LazyArgument]:
        return list(self._filtered_args(False, True, True, False, True))

    @property
    def keyword_scalars(self) -> list[LazyArgument]:
        return list(self._filtered_args(False, True, False, True, True))


def lazy_ir_schema(
    func: FunctionSchema,
    *,
    value_class: str,
    symint: bool,
    properties: Properties = DEFAULT_PROPERTIES,
    opkind: str | None = None,
) -> LazyIrSchema:
    """Raises UnsupportedLazyType for schemas lazy IR cannot represent."""
    args = func.arguments
    positional = tuple([lazy_argument(a.name, a.type, value_class, properties, symint) for a in args.flat_positional])
    keyword_raw = args.flat_kwarg_only + args.out
    if sum(1 for a in keyword_raw if _is_generator(a.type)) > 1:
        raise UnsupportedLazyType("lazy IR supports at most one keyword Generator argument")
    keyword = tuple([lazy_argument(a.name, a.type, value_class, properties, symint) for a in keyword_raw])
    return LazyIrSchema(func, properties, symint, positional, keyword, value_class, opkind)
