"""The dispatcher's C++ API: how a schema's arguments and returns are spelled
in C++, kernel signatures, and the conversions between the SymInt and int
spellings of one argument.

C++ types are plain strings here: each spelling is unique, so comparing two
strings is comparing two types.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Callable, NamedTuple, TypeVar

from lazygen.catalogue import NativeFunction
from lazygen.errors import Unsupported
from lazygen.schema import Argument, Arguments, BaseType, FunctionSchema, ListType, OptionalType, Return, Type

_BASE_CPP = {
    "int": "int64_t",
    "float": "double",
    "bool": "bool",
    "str": "c10::string_view",
    "Generator": "at::Generator",
    "ScalarType": "at::ScalarType",
    "Tensor": "at::Tensor",
    "DimVector": "at::DimVector",
    "Layout": "at::Layout",
    "Device": "at::Device",
    "DeviceIndex": "at::DeviceIndex",
    "Scalar": "at::Scalar",
    "MemoryFormat": "at::MemoryFormat",
    "QScheme": "at::QScheme",
    "Storage": "at::Storage",
    "Stream": "at::Stream",
    "SymInt": "c10::SymInt",
    "SymBool": "c10::SymBool",
    "Dimname": "at::Dimname",  # named-tensor ops, in catalogues before torch 2.13
}


class UnsupportedType(Unsupported):
    """A schema type the dispatcher's C++ API has no spelling for."""


class Flavor(NamedTuple):
    """The per-function switches that change C++ spellings."""

    symint: bool = True
    const_ref_for_mutable_tensors: bool = False
    ilistref_for_tensor_lists: bool = False

    @staticmethod
    def of(f: NativeFunction, *, symint: bool = True) -> Flavor:
        return _flavor(symint, f.use_const_ref_for_mutable_tensors, f.part_of_structured_group)


@lru_cache(maxsize=None)
def _flavor(symint: bool, const_ref_for_mutable_tensors: bool, ilistref_for_tensor_lists: bool) -> Flavor:
    # One object per combination: Flavor.of is called for every spelling.
    return Flavor(symint, const_ref_for_mutable_tensors, ilistref_for_tensor_lists)


def _value_type(t: Type, symint: bool) -> str | None:
    """Spelling of a type passed by value, or None if it is not one."""
    if isinstance(t, BaseType):
        if t.name in ("Tensor", "Scalar"):
            return None
        if t.name == "SymInt":
            return "c10::SymInt" if symint else "int64_t"
        if t.name not in _BASE_CPP:
            raise UnsupportedType(f"type '{t}' has no C++ spelling in the dispatcher API")
        return _BASE_CPP[t.name]
    if isinstance(t, OptionalType):
        elem = _value_type(t.elem, symint)
        return None if elem is None else f"::std::optional<{elem}>"
    if isinstance(t, ListType):
        if str(t.elem) == "bool":
            if t.size is None:
                raise UnsupportedType("a 'bool[]' argument needs a size")
            return f"::std::array<bool,{t.size}>"
        return None
    raise UnsupportedType(f"type '{t}' has no C++ spelling in the dispatcher API")


@lru_cache(maxsize=None)
def argument_type(t: Type, *, mutable: bool, flavor: Flavor) -> str:
    """The dispatcher's C++ type for an argument of schema type `t`."""
    value = _value_type(t, flavor.symint)
    if value is not None:
        return value
    mutable_ref = mutable and not flavor.const_ref_for_mutable_tensors
    if isinstance(t, BaseType):
        if t.name == "Tensor":
            return "at::Tensor &" if mutable_ref else "const at::Tensor &"
        return "const at::Scalar &"
    if isinstance(t, OptionalType):
        elem = str(t.elem)
        if elem == "Tensor":
            return "at::Tensor &" if mutable_ref else "const ::std::optional<at::Tensor> &"
        if elem == "Scalar":
            return "const ::std::optional<at::Scalar> &"
        if isinstance(t.elem, ListType) and str(t.elem.elem) == "int":
            return "at::OptionalIntArrayRef"
        if isinstance(t.elem, ListType) and str(t.elem.elem) == "SymInt":
            return "at::OptionalSymIntArrayRef" if flavor.symint else "at::OptionalIntArrayRef"
        return f"::std::optional<{argument_type(t.elem, mutable=mutable, flavor=flavor)}>"
    assert isinstance(t, ListType)
    elem = str(t.elem)
    if elem == "int":
        return "at::IntArrayRef"
    if elem == "SymInt":
        return "c10::SymIntArrayRef" if flavor.symint else "at::IntArrayRef"
    if elem == "Tensor":
        return "const at::ITensorListRef &" if flavor.ilistref_for_tensor_lists else "at::TensorList"
    if elem == "Scalar":
        return "at::ArrayRef<at::Scalar>"
    if elem == "Tensor?":
        return "const c10::List<::std::optional<at::Tensor>> &"
    if elem == "Dimname":
        return "at::DimnameList"
    return f"at::ArrayRef<{argument_type(t.elem, mutable=mutable, flavor=flavor)}>"


def _return_type(t: Type, *, mutable: bool, flavor: Flavor) -> str:
    value = _value_type(t, True)  # returns always spell SymInt as SymInt
    if value is not None:
        return value
    if isinstance(t, BaseType):
        if t.name == "Tensor":
            if not mutable:
                return "at::Tensor"
            return "const at::Tensor &" if flavor.const_ref_for_mutable_tensors else "at::Tensor &"
        return "at::Scalar"
    if isinstance(t, ListType):
        if mutable:
            raise UnsupportedType("a function cannot return a mutable tensor list")
        if t.size is not None:
            raise UnsupportedType(f"fixed-size list return '{t}' has no C++ spelling")
        return f"::std::vector<{_return_type(t.elem, mutable=False, flavor=flavor)}>"
    if isinstance(t, OptionalType) and str(t.elem) == "Tensor":
        return f"::std::optional<{_return_type(t.elem, mutable=mutable, flavor=flavor)}>"
    raise UnsupportedType(f"return type '{t}' has no C++ spelling")


@lru_cache(maxsize=None)  # a few dozen distinct return lists serve thousands of schemas
def returns_type(returns: tuple[Return, ...], flavor: Flavor) -> str:
    if not returns:
        return "void"
    types = [_return_type(r.type, mutable=r.is_write, flavor=flavor) for r in returns]
    return types[0] if len(types) == 1 else f"::std::tuple<{','.join(types)}>"


class Binding(NamedTuple):
    """A C++ parameter: its expression (usually its name) and its type; `key`
    is the schema name the parameter stands for."""

    expr: str
    type: str
    key: str

    def defn(self) -> str:
        return f"{self.type} {self.expr}"


def kernel_name(func: FunctionSchema) -> str:
    """The dispatcher API's function name: `add`, `add_`, `add_out`."""
    return func.name.name + ("_out" if func.is_out_fn() else "")


T = TypeVar("T")

# Memo tables keyed by the identity of a parsed schema piece and a flavor.
# One function's signature is spelled many times a run (declaration, wrapper,
# kernel, fallback), and operators share parsed argument lists and arguments
# (see Arguments.parse and Argument.parse). Identity, because hashing a schema
# piece by value walks its fields in Python; an entry keeps its piece alive,
# so an id is never reused while it is in the table.
_BINDINGS: dict[tuple[int, Flavor], tuple[Arguments, list[Binding]]] = {}  # by argument list
_PARAMS: dict[tuple[int, Flavor], tuple[Arguments, str]] = {}  # parameter list text, by argument list
_ARGUMENT_BINDINGS: dict[tuple[int, Flavor], tuple[Argument, Binding]] = {}  # by argument


def _by_identity(table: dict, piece: object, flavor: Flavor, make: Callable[[], T]) -> T:
    key = (id(piece), flavor)
    hit = table.get(key)
    if hit is not None and hit[0] is piece:
        return hit[1]
    value = make()
    table[key] = (piece, value)
    return value


def _bindings(func: FunctionSchema, flavor: Flavor) -> list[Binding]:
    args = func.arguments
    return _by_identity(_BINDINGS, args, flavor, lambda: [_binding(a, flavor) for a in args.flat_all])


def _binding(a: Argument, flavor: Flavor) -> Binding:
    return _by_identity(_ARGUMENT_BINDINGS, a, flavor,
                        lambda: Binding(a.name, argument_type(a.type, mutable=a.is_write, flavor=flavor), a.name))


def _params(func: FunctionSchema, flavor: Flavor) -> str:
    """The parameter list of a declaration, `const at::Tensor & self, ...`."""
    return _by_identity(_PARAMS, func.arguments, flavor, lambda: ", ".join(b.defn() for b in _bindings(func, flavor)))


@dataclass(frozen=True)
class Signature:
    """A dispatcher-API C++ signature of one schema."""

    func: FunctionSchema
    flavor: Flavor
    prefix: str = ""

    def arguments(self) -> list[Binding]:
        return _bindings(self.func, self.flavor)

    def name(self) -> str:
        return self.prefix + kernel_name(self.func)

    def returns_type(self) -> str:
        return returns_type(self.func.returns, self.flavor)

    def decl(self, name: str | None = None) -> str:
        return f"{self.returns_type()} {name or self.name()}({_params(self.func, self.flavor)})"


def argument_schema(func: FunctionSchema, name: str) -> Argument:
    return next(a for a in func.arguments.flat_all if a.name == name)


# How to get a value of one C++ type from a parameter of another type, for
# the same argument; `{0}` is the parameter.
_CONVERSIONS = {
    ("c10::SymInt", "int64_t"): "{0}.guard_int(__FILE__, __LINE__)",
    ("int64_t", "c10::SymInt"): "{0}",
    ("::std::optional<c10::SymInt>", "::std::optional<int64_t>"): (
        "{0}.has_value() ? ::std::make_optional({0}->guard_int(__FILE__, __LINE__)) : ::std::nullopt"
    ),
    ("::std::optional<int64_t>", "::std::optional<c10::SymInt>"): (
        "{0}.has_value() ? ::std::make_optional(c10::SymInt(*{0})) : ::std::nullopt"
    ),
    ("c10::SymIntArrayRef", "at::IntArrayRef"): "C10_AS_INTARRAYREF_SLOW({0})",
    ("at::IntArrayRef", "c10::SymIntArrayRef"): "c10::fromIntArrayRefSlow({0})",
    ("at::OptionalSymIntArrayRef", "at::OptionalIntArrayRef"): (
        "{0}.has_value() ? ::std::make_optional(C10_AS_INTARRAYREF_SLOW(*{0})) : ::std::nullopt"
    ),
    ("at::OptionalIntArrayRef", "at::OptionalSymIntArrayRef"): (
        "{0}.has_value() ? ::std::make_optional(c10::fromIntArrayRefSlow(*{0})) : ::std::nullopt"
    ),
    ("at::Tensor &", "const at::Tensor &"): "{0}",
    ("const at::Tensor &", "at::Tensor &"): "const_cast<Tensor&>({0})",
}


_FROM_OUT = {
    "dtype": ("::std::optional<at::ScalarType>", "{0}.scalar_type()"),
    "layout": ("::std::optional<at::Layout>", "{0}.layout()"),
    "device": ("::std::optional<at::Device>", "{0}.device()"),
    "pin_memory": ("::std::optional<bool>", "::std::nullopt"),
}


class Untranslatable(Unsupported):
    pass


def translate(given: list[Binding], wanted: list[Binding]) -> list[str]:
    """Expressions for the `wanted` parameters, made from the `given` ones
    (matched by argument name)."""
    by_key = {b.key: b for b in given}
    exprs = []
    for w in wanted:
        b = by_key.get(w.key)
        if b is None and w.key in _FROM_OUT and w.type == _FROM_OUT[w.key][0] and "out" in by_key:
            # An out= variant has no tensor options: they are the out tensor's.
            exprs.append(_FROM_OUT[w.key][1].format(by_key["out"].expr))
            continue
        if b is None:
            raise Untranslatable(f"no argument '{w.key}' to pass as '{w.type} {w.key}'")
        if b.type == w.type:
            exprs.append(b.expr)
            continue
        pattern = _CONVERSIONS.get((b.type, w.type))
        if pattern is None:
            raise Untranslatable(f"cannot pass '{b.type} {b.key}' as '{w.type}'")
        exprs.append(pattern.format(b.expr))
    return exprs


def return_names(f: NativeFunction) -> list[str]:
    """Names for a function's results, as the generated wrappers use them."""
    names = []
    func = f.func
    for i, r in enumerate(func.returns):
        if func.name.inplace:
            names.append("self")
        elif func.is_out_fn():
            names.append(func.arguments.out[i].name)
        elif r.name:
            clash = any(r.name == a.name for a in func.arguments.flat_all)
            names.append(f"{r.name}_return" if clash else r.name)
        else:
            names.append("result" if len(func.returns) == 1 else f"result{i}")
    return names
