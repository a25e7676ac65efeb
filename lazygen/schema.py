"""The operator schema grammar of native_functions.yaml.

A schema reads ``name.overload(Type(a!) arg=default, *, ...) -> Ret``.
Every class here is immutable and prints back exactly the text it was parsed
from, which `parse_schema` checks: a schema that does not round-trip is
rejected rather than half-understood.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from functools import lru_cache
from enum import Enum
from typing import Iterator, Union

# The base types of the schema language, as torch 2.13 spells them.
BASE_TYPES = frozenset(
    {
        "Generator", "ScalarType", "Tensor", "int", "DimVector", "float", "str",
        "bool", "Layout", "Device", "DeviceIndex", "Scalar", "MemoryFormat",
        "QScheme", "Storage", "Stream", "SymInt", "SymBool", "GraphModule",
        "Dimname", "ConstQuantizerPtr",
    }
)


class SchemaError(ValueError):
    """A schema string that is not valid; the message says what is wrong."""


class Kind(Enum):
    """What a function does with its outputs."""

    functional = "functional"
    inplace = "inplace"
    out = "out"
    mutable = "mutable"
    scratch = "scratch"


# ---------------------------------------------------------------- types


@dataclass(frozen=True, slots=True)
class BaseType:
    name: str

    def __str__(self) -> str:
        return self.name


@dataclass(frozen=True, slots=True)
class OptionalType:
    elem: Type

    def __str__(self) -> str:
        return f"{self.elem}?"


@dataclass(frozen=True, slots=True)
class ListType:
    elem: Type
    size: int | None

    def __str__(self) -> str:
        return f"{self.elem}[{self.size or ''}]"


@dataclass(frozen=True, slots=True)
class CustomClassType:
    class_name: str

    def __str__(self) -> str:
        return f"__torch__.torch.classes.{self.class_name}"


Type = Union[BaseType, OptionalType, ListType, CustomClassType]


def base_of(t: Type) -> str | None:
    """The base type name under any optional/list wrapping, or None for a custom class."""
    while isinstance(t, (OptionalType, ListType)):
        t = t.elem
    return t.name if isinstance(t, BaseType) else None


def is_tensor_like(t: Type) -> bool:
    return base_of(t) == "Tensor"


def is_symint_like(t: Type) -> bool:
    return base_of(t) == "SymInt"


def is_generator_like(t: Type) -> bool:
    return base_of(t) == "Generator"


def is_list_like(t: Type) -> bool:
    while isinstance(t, OptionalType):
        t = t.elem
    return isinstance(t, ListType)


_LIST_RE = re.compile(r"^(.+)\[([0-9]*)\]$")
_CUSTOM_RE = re.compile(r"^__torch__\.torch\.classes\.([a-zA-Z0-9_.]+)$")


@lru_cache(maxsize=None)
def parse_type(text: str) -> Type:
    t = _parse_type(text)
    if str(t) != text:
        raise SchemaError(f"type '{text}' does not read back the same (as '{t}')")
    return t


def _parse_type(text: str) -> Type:
    if text.endswith("?"):
        return OptionalType(_parse_type(text[:-1]))
    m = _LIST_RE.match(text)
    if m:
        return ListType(_parse_type(m.group(1)), int(m.group(2)) if m.group(2) else None)
    m = _CUSTOM_RE.match(text)
    if m:
        return CustomClassType(m.group(1))
    if text in BASE_TYPES:
        return BaseType(text)
    raise SchemaError(f"unknown type '{text}'")


# ---------------------------------------------------------- annotations

_ANNOTATION_RE = re.compile(r"^([a-z](?:\|[a-z])*)(!?)(?: -> (\*|[a-z](?:\|[a-z])*))?$")


@dataclass(frozen=True, slots=True)
class Annotation:
    """An alias annotation: `a`, `a!`, `a|b`, `a -> *`."""

    alias_set: tuple[str, ...]
    is_write: bool
    alias_set_after: tuple[str, ...]

    @staticmethod
    def parse(text: str) -> Annotation:
        m = _ANNOTATION_RE.match(text)
        if m is None:
            raise SchemaError(f"bad alias annotation '({text})'")
        alias_set = tuple(m.group(1).split("|"))
        after = tuple(m.group(3).split("|")) if m.group(3) else ()
        if m.group(2) and len(alias_set) > 1:
            raise SchemaError(f"alias annotation '({text})': a set of several aliases cannot be written")
        if len(alias_set) > 1 and len(after) > 1:
            raise SchemaError(f"alias annotation '({text})': both sides cannot be sets")
        return Annotation(alias_set, bool(m.group(2)), after)

    def __str__(self) -> str:
        s = "|".join(self.alias_set) + ("!" if self.is_write else "")
        if self.alias_set_after:
            s += " -> " + "|".join(self.alias_set_after)
        return s


_ANNOTATED_TENSOR_RE = re.compile(r"^Tensor\((.+)\)(.*)$")


def _parse_annotated_type(text: str) -> tuple[Type, Annotation | None]:
    m = _ANNOTATED_TENSOR_RE.match(text)
    if m is None:
        return parse_type(text), None
    if m.group(2) not in ("", "?", "[]"):
        raise SchemaError(f"alias annotation on '{text}': only Tensor, Tensor? and Tensor[] take one")
    return parse_type("Tensor" + m.group(2)), Annotation.parse(m.group(1))


def _type_text(t: Type, annotation: Annotation | None) -> str:
    text = str(t)
    if annotation is not None:
        text = text.replace("Tensor", f"Tensor({annotation})")
    return text


# ------------------------------------------------------------ arguments

_IDENT_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True, slots=True)
class Argument:
    name: str
    type: Type
    default: str | None
    annotation: Annotation | None

    @property
    def is_write(self) -> bool:
        return self.annotation is not None and self.annotation.is_write

    @staticmethod
    @lru_cache(maxsize=None)
    def parse(text: str) -> Argument:
        if "=" in text:
            if text.count("=") != 1:
                raise SchemaError(f"argument '{text}' has more than one '='")
            head, default = text.split("=")
        else:
            head, default = text, None
        if " " not in head:
            raise SchemaError(f"argument '{text}' needs a type and a name")
        type_text, name = head.rsplit(" ", 1)
        if not _IDENT_RE.match(name):
            raise SchemaError(f"argument '{text}': '{name}' is not a name")
        t, annotation = _parse_annotated_type(type_text)
        arg = Argument(name, t, default, annotation)
        if str(arg) != text:
            raise SchemaError(f"argument '{text}' does not read back the same")
        return arg

    def __str__(self) -> str:
        text = f"{_type_text(self.type, self.annotation)} {self.name}"
        return f"{text}={self.default}" if self.default else text


@dataclass(frozen=True, slots=True)
class Return:
    name: str | None
    type: Type
    annotation: Annotation | None

    @property
    def is_write(self) -> bool:
        return self.annotation is not None and self.annotation.is_write

    @staticmethod
    @lru_cache(maxsize=None)
    def parse(text: str) -> Return:
        if " " in text:
            type_text, name = text.rsplit(" ", 1)
            if not _IDENT_RE.match(name):
                raise SchemaError(f"return '{text}': '{name}' is not a name")
        else:
            type_text, name = text, None
        t, annotation = _parse_annotated_type(type_text)
        ret = Return(name, t, annotation)
        if str(ret) != text:
            raise SchemaError(f"return '{text}' does not read back the same")
        return ret

    def __str__(self) -> str:
        text = _type_text(self.type, self.annotation)
        return f"{text} {self.name}" if self.name is not None else text


_TENSOR_OPTIONS = (("dtype", "ScalarType"), ("layout", "Layout"), ("device", "Device"), ("pin_memory", "bool"))
# The types each tensor option may have, built once rather than per check.
_TENSOR_OPTION_TYPES = {base: (BaseType(base), OptionalType(BaseType(base))) for _, base in _TENSOR_OPTIONS}


def _is_tensor_option(arg: Argument, name: str, base: str) -> bool:
    return arg.name == name and arg.type in _TENSOR_OPTION_TYPES[base]


@dataclass(frozen=True, slots=True)
class Arguments:
    """Arguments split the way the C++ APIs need them: around `self`, and
    around the four tensor-options keywords (dtype, layout, device, pin_memory)."""

    pre_self_positional: tuple[Argument, ...]
    self_arg: Argument | None
    post_self_positional: tuple[Argument, ...]
    pre_tensor_options_kwarg_only: tuple[Argument, ...]
    tensor_options: tuple[Argument, Argument, Argument, Argument] | None
    post_tensor_options_kwarg_only: tuple[Argument, ...]
    out: tuple[Argument, ...]

    @property
    def flat_positional(self) -> tuple[Argument, ...]:
        own = (self.self_arg,) if self.self_arg is not None else ()
        return self.pre_self_positional + own + self.post_self_positional

    @property
    def flat_kwarg_only(self) -> tuple[Argument, ...]:
        options = self.tensor_options or ()
        return self.pre_tensor_options_kwarg_only + tuple(options) + self.post_tensor_options_kwarg_only

    @property
    def flat_non_out(self) -> tuple[Argument, ...]:
        return self.flat_positional + self.flat_kwarg_only

    @property
    def flat_all(self) -> tuple[Argument, ...]:
        return self.flat_positional + self.flat_kwarg_only + self.out

    def has_symint_arg(self) -> bool:
        return any(is_symint_like(a.type) for a in self.flat_non_out)

    def has_tensor_arg(self) -> bool:
        return any(is_tensor_like(a.type) for a in self.flat_non_out)

    @staticmethod
    @lru_cache(maxsize=None)
    def parse(text: str) -> Arguments:
        # Memoised: the variants of an operator often share an argument list,
        # and the result is immutable, so one object can serve them all.
        positional: list[Argument] = []
        kwarg_only: list[Argument] = []
        out: list[Argument] = []
        acc = positional
        for piece in text.split(", "):
            if not piece:
                continue
            if piece == "*":
                if acc is not positional:
                    raise SchemaError("'*' may appear only once")
                acc = kwarg_only
                continue
            arg = Argument.parse(piece)
            if arg.is_write:
                if acc is kwarg_only:
                    acc = out
            elif acc is out:
                raise SchemaError(f"argument '{arg.name}' is not mutable but follows the out arguments")
            acc.append(arg)

        self_index = next((i for i, a in enumerate(positional) if a.name == "self"), None)
        if self_index is None:
            pre_self, self_arg, post_self = [], None, positional
        else:
            pre_self, self_arg, post_self = positional[:self_index], positional[self_index], positional[self_index + 1 :]

        pre_options: list[Argument] = []
        post_options: list[Argument] = []
        options: tuple[Argument, Argument, Argument, Argument] | None = None
        acc = pre_options
        i = 0
        while i < len(kwarg_only):
            window = kwarg_only[i : i + 4]
            if len(window) == 4 and all(_is_tensor_option(a, n, b) for a, (n, b) in zip(window, _TENSOR_OPTIONS)):
                if options is not None:
                    raise SchemaError("tensor options (dtype, layout, device, pin_memory) appear twice")
                options = (window[0], window[1], window[2], window[3])
                acc = post_options
                i += 4
                continue
            acc.append(kwarg_only[i])
            i += 1

        if any(a.is_write for a in pre_self):
            raise SchemaError("a mutable argument cannot come before 'self'")
        return Arguments(tuple(pre_self), self_arg, tuple(post_self), tuple(pre_options), options, tuple(post_options), tuple(out))

    def __str__(self) -> str:
        parts = [str(a) for a in self.flat_positional]
        if self.flat_kwarg_only or self.out:
            parts.append("*")
        parts += [str(a) for a in self.flat_kwarg_only]
        parts += [str(a) for a in self.out]
        return ", ".join(parts)

    def signature(self) -> Arguments:
        """Without annotations, tensor options and out arguments (see FunctionSchema.signature)."""

        def bare(a: Argument) -> Argument:
            return Argument(a.name, a.type, a.default, None)

        return Arguments(
            tuple(map(bare, self.pre_self_positional)),
            bare(self.self_arg) if self.self_arg is not None else None,
            tuple(map(bare, self.post_self_positional)),
            tuple(map(bare, self.pre_tensor_options_kwarg_only)) + tuple(map(bare, self.post_tensor_options_kwarg_only)),
            None,
            (),
            (),
        )


# ---------------------------------------------------------------- names

_AUGMENTED_ASSIGNMENT = frozenset({"add", "sub", "mul", "div", "mod", "pow", "lshift", "rshift", "and", "xor", "or"})
_DUNDER_RE = re.compile(r"^__([^_]+)__$")
_OP_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_OVERLOAD_RE = re.compile(r"[A-Za-z0-9_]*")


@dataclass(frozen=True, slots=True)
class OperatorName:
    """`base` plus flags, and the overload after the dot: `add_.Tensor` is
    base "add", inplace, overload "Tensor"."""

    base: str
    inplace: bool = False
    dunder: bool = False
    functional_overload: bool = False
    overload: str = ""
    namespace: str | None = None
    # `name`, computed once: a run reads it tens of thousands of times.
    _name: str = field(default="", init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_name", self._spelled_name())

    @staticmethod
    @lru_cache(maxsize=None)
    def parse(text: str) -> OperatorName:
        # Memoised: a backend's yaml names the same operators the schemas do.
        name, _, overload = text.partition(".")
        if not name:
            raise SchemaError(f"operator name '{text}' is empty")
        if name.endswith("_out"):
            raise SchemaError(f"operator name '{name}' ends in '_out', which is reserved for out overloads")
        namespace = None
        if "::" in name:
            namespace, name = name.rsplit("::", 1)
        # The name becomes part of C++ identifiers (IR node classes, kernels).
        if not _OP_NAME_RE.fullmatch(name) or not _OVERLOAD_RE.fullmatch(overload) or (
            namespace is not None and not all(_OP_NAME_RE.fullmatch(p) for p in namespace.split("::"))
        ):
            raise SchemaError(f"operator name '{text}' is not of the form name.overload made of letters, digits and '_'")
        inplace = dunder = functional = False
        m = _DUNDER_RE.match(name)
        if m:
            dunder = True
            base = m.group(1)
            if base[0] == "i" and base[1:] in _AUGMENTED_ASSIGNMENT:
                inplace, base = True, base[1:]
        else:
            base = name
            if base.endswith("_"):
                inplace, base = True, base[:-1]
        if base.endswith("_functional"):
            if dunder or inplace:
                raise SchemaError(f"operator name '{name}': a functional overload cannot be inplace or a dunder method")
            functional, base = True, base[: -len("_functional")]
        if not base:
            raise SchemaError(f"operator name '{text}' is not valid")
        op = OperatorName(base, inplace, dunder, functional, overload, namespace)
        if str(op) != text:
            raise SchemaError(f"operator name '{text}' is not valid")
        return op

    @property
    def name(self) -> str:
        """The name without overload: `add_`, `__iand__`, `foo_functional`."""
        return self._name

    def _spelled_name(self) -> str:
        prefix = f"{self.namespace}::" if self.namespace else ""
        if self.dunder:
            return f"{prefix}__{'i' if self.inplace else ''}{self.base}__"
        suffix = "_" if self.inplace else "_functional" if self.functional_overload else ""
        return f"{prefix}{self.base}{suffix}"

    def __str__(self) -> str:
        return f"{self.name}.{self.overload}" if self.overload else self.name

    def unambiguous_name(self) -> str:
        return f"{self.name}_{self.overload}" if self.overload else self.name

    def with_overload(self, overload: str) -> OperatorName:
        return OperatorName(self.base, dunder=self.dunder, overload=overload)


# --------------------------------------------------------------- schema

_SCHEMA_RE = re.compile(r"^([^\(]+)\((.*)\) -> (.*)$")


@dataclass(frozen=True, slots=True)
class FunctionSchema:
    name: OperatorName
    arguments: Arguments
    returns: tuple[Return, ...]
    # The text the schema prints as, once known: set by the first str(), or
    # by parse_schema from the text it parsed (which prints back the same).
    _text: str | None = field(default=None, init=False, repr=False, compare=False, hash=False)

    def __str__(self) -> str:
        if self._text is None:
            object.__setattr__(self, "_text", self._spelled())
        return self._text

    def _spelled(self) -> str:
        if len(self.returns) == 1:
            rets = str(self.returns[0])
        else:
            rets = "(" + ", ".join(map(str, self.returns)) + ")"
        return f"{self.name}({self.arguments}) -> {rets}"

    def is_out_fn(self) -> bool:
        return bool(self.arguments.out)

    def has_symint(self) -> bool:
        return self.arguments.has_symint_arg()

    def schema_order_arguments(self) -> Iterator[Argument]:
        yield from self.arguments.flat_all

    def kind(self) -> Kind:
        if self.name.inplace:
            return Kind.inplace
        if any(a.name.startswith("_scratch_") for a in self.arguments.out):
            return Kind.scratch
        if self.arguments.out:
            return Kind.out
        if any(a.is_write for a in self.arguments.post_self_positional):
            return Kind.mutable
        return Kind.functional

    def signature(self, *, keep_return_names: bool = False) -> FunctionSchema:
        """The part shared by the functional, inplace, out and mutable variants
        of one operator: no overload, no annotations, no out arguments, no
        tensor options, mutated inputs turned into returns."""
        own = (self.arguments.self_arg,) if self.arguments.self_arg is not None else ()
        return_annotations = {r.annotation for r in self.returns}
        extra = tuple(
            Return(f"{a.name}_out" if keep_return_names else None, a.type, None)
            for a in own + self.arguments.out + self.arguments.post_self_positional
            if a.is_write and a.annotation not in return_annotations
        )
        returns = tuple(Return(r.name if keep_return_names else None, r.type, None) for r in self.returns)
        arguments = self.arguments.signature()
        if str(self.name) == "bernoulli.p":
            # The inplace variant spells the default, the others do not; the
            # grouping treats them as one signature.
            arguments = Arguments.parse(str(arguments).replace("float p", "float p=0.5"))
        return FunctionSchema(OperatorName(self.name.base, dunder=self.name.dunder), arguments, returns + extra)

    def signature_key(self) -> str:
        """str(self.signature()), computed without building it: the key that
        groups the variants of one operator."""
        args = self.arguments
        own = (args.self_arg,) if args.self_arg is not None else ()

        def bare(a: Argument) -> str:
            text = f"{a.type} {a.name}"
            return f"{text}={a.default}" if a.default else text

        positional = [bare(a) for a in args.flat_positional]
        keyword = [bare(a) for a in args.pre_tensor_options_kwarg_only + args.post_tensor_options_kwarg_only]
        parts = positional + (["*"] + keyword if keyword else [])
        return_annotations = {r.annotation for r in self.returns}
        rets = [str(r.type) for r in self.returns] + [
            str(a.type)
            for a in own + args.out + args.post_self_positional
            if a.is_write and a.annotation not in return_annotations
        ]
        name = f"__{self.name.base}__" if self.name.dunder else self.name.base
        text = f"{name}({', '.join(parts)}) -> " + (rets[0] if len(rets) == 1 else "(" + ", ".join(rets) + ")")
        if str(self.name) == "bernoulli.p":
            text = text.replace("float p", "float p=0.5")
        return text

    def with_name(self, name: OperatorName) -> FunctionSchema:
        return replace(self, name=name)


@lru_cache(maxsize=None)  # a few dozen distinct return lists serve thousands of schemas
def parse_returns(text: str) -> tuple[Return, ...]:
    if text == "()":
        return ()
    if text.startswith("(") and text.endswith(")"):
        text = text[1:-1]
    return tuple(Return.parse(r) for r in text.split(", "))


def parse_schema(text: str, *, validate: bool = True) -> FunctionSchema:
    """Parse and check a schema string; raises SchemaError. `validate=False`
    skips the whole-schema checks, for text that passed them before (the
    cached catalogue's)."""
    m = _SCHEMA_RE.match(text)
    if m is None:
        raise SchemaError(f"'{text}' is not a schema of the form name(args) -> returns")
    schema = FunctionSchema(OperatorName.parse(m.group(1)), Arguments.parse(m.group(2)), parse_returns(m.group(3)))
    if not validate:
        # The text passed the checks before, so it is what the schema prints as.
        object.__setattr__(schema, "_text", text)
        return schema
    if str(schema) != text:
        raise SchemaError(f"schema does not read back the same: '{schema}'")
    _check(schema)
    return schema


def _check(s: FunctionSchema) -> None:
    """The consistency rules native functions obey (out arguments match
    returns, inplace ops return self, ...)."""
    args = s.arguments
    for a in args.flat_all:
        if a.annotation is not None and not is_tensor_like(a.type):
            raise SchemaError(f"argument '{a.name}': only tensors take alias annotations")
    for arg, ret in zip(args.out, s.returns):
        if arg.annotation != ret.annotation:
            raise SchemaError(f"out argument '{arg.name}' and return {ret} must carry the same alias annotation")
    for a in args.post_self_positional:
        if a.is_write and any(a.annotation == r.annotation for r in s.returns):
            raise SchemaError(f"mutable positional argument '{a.name}' must not be returned")
    writes = [r for r in s.returns if r.is_write]
    if writes and len(writes) != len(s.returns):
        raise SchemaError("returns must be all mutable or all immutable")
    out_and_self = list(args.out) + [a for a in args.flat_positional if a.name == "self"]
    for r in writes:
        if not any(r.annotation == a.annotation for a in out_and_self):
            raise SchemaError(f"mutable return {r} must alias an out argument or self")
    if args.out:
        if any(a.type != BaseType("Tensor") for a in args.out):
            if s.returns:
                raise SchemaError("out= ops taking tensor lists as out arguments must return nothing")
        elif len([a for a in args.out if not a.name.startswith("_scratch_")]) != len(s.returns):
            raise SchemaError("out= ops must return as many tensors as they have out arguments")
    if s.name.inplace:
        self_arg = args.self_arg
        if self_arg is None or not self_arg.is_write:
            raise SchemaError(f"inplace op '{s.name}' needs a mutable 'self' argument")
        if self_arg.type == BaseType("Tensor"):
            if len(s.returns) != 1 or s.returns[0].annotation != self_arg.annotation:
                raise SchemaError(f"inplace op '{s.name}' must return self")
        elif s.returns:
            raise SchemaError(f"inplace op '{s.name}' with a non-Tensor self must return nothing")
        if args.out:
            raise SchemaError(f"op '{s.name}' cannot be both inplace and out=")
    if args.tensor_options is not None and s.kind() is not Kind.functional:
        raise SchemaError("only functional ops may take tensor options (dtype, layout, device, pin_memory)")
    if "functional" in s.name.overload and s.kind() is not Kind.functional:
        raise SchemaError("the overload name 'functional' is reserved for functional ops")
