"""What Register<Key>.cpp needs: for every kernel of one dispatch key, a
wrapper with the dispatcher's signature that calls the backend's kernel (or,
for out= and inplace variants without a kernel of their own, the functional
kernel followed by a copy), and its registration."""

from __future__ import annotations

from typing import NamedTuple

from lazygen.backend import BackendIndex, supports_symint
from lazygen.catalogue import Catalogue, NativeFunction, NativeFunctionsGroup
from lazygen.cpp import Flavor, Signature, return_names, translate
from lazygen.errors import Unsupported
from lazygen.schema import Kind, is_list_like, is_tensor_like


class Wrapper(NamedTuple):
    name: str
    definition: str  # the anonymous-namespace definition
    registration: str  # the m.impl(...) call


def _wrapper_signature(index: BackendIndex, f: NativeFunction, flavor: Flavor) -> Signature:
    return Signature(f.func, flavor, prefix=f"wrapper_{index.dispatch_key}_{f.func.name.overload}_")


def _device_check(f: NativeFunction, name: str) -> str:
    if f.device_check == "NoCheck":
        return "  // No device check\n"
    text = "std::optional<Device> common_device = std::nullopt;\n(void)common_device; // Suppress unused variable warning\n"
    for a in f.func.arguments.out + f.func.arguments.flat_positional:
        if is_tensor_like(a.type):
            text += f'\n  c10::impl::check_and_update_common_device(common_device, {a.name}, "{name}", "{a.name}");'
    return text


def _device_guard(f: NativeFunction, index: BackendIndex) -> str:
    if not (f.device_guard and index.device_guard):
        return "// DeviceGuard omitted"
    args = f.func.arguments
    if args.tensor_options is not None:
        return "\n  const DeviceGuard device_guard(device_or_default(device));"
    candidates = ((args.self_arg,) if args.self_arg is not None else ()) + args.out + args.flat_positional
    first = next((a.name for a in candidates if is_tensor_like(a.type)), None)
    return f"const OptionalDeviceGuard device_guard(device_of({first}));" if first else "// DeviceGuard omitted"


def _out_inplace_wrapper(index: BackendIndex, f: NativeFunction, g: NativeFunctionsGroup) -> str:
    if f.kind is Kind.inplace:
        copy = "at::_copy_from"
    elif f.kind is Kind.out:
        copy = "at::_copy_from_and_resize"
    else:
        raise Unsupported(f"its {f.kind.value} variant '{f.name}' would need a generated wrapper, which only out= and inplace variants get")
    flavor = Flavor.of(f)
    sig = _wrapper_signature(index, f, flavor)
    name = sig.name()
    tmp = f"{name}_tmp"
    names = return_names(f)
    if len(names) > 1:
        updates = "\n  ".join(f"{copy}(std::get<{i}>({tmp}), {n});" for i, n in enumerate(names))
        returns = f"{sig.returns_type()}({', '.join(names)})"
    elif len(names) == 1:
        updates = f"{copy}({tmp}, {names[0]});"
        returns = names[0]
    else:
        if len(f.func.arguments.out) != 1:
            raise Unsupported(f"variant '{f.name}' returns nothing and has no single out argument to copy into")
        out = f.func.arguments.out[0]
        returns = ""
        if is_list_like(out.type):
            updates = (
                f"    for (int64_t i = 0; i < {tmp}.size(); ++i) {{\n"
                f"        {copy}({tmp}[i], {out.name}[i]);\n"
                "    }"
            )
        else:
            updates = f"{copy}({tmp}, {out.name});"
    functional = _wrapper_signature(index, g.functional, flavor)
    args = ", ".join(translate(sig.arguments(), functional.arguments()))
    return (
        f"{sig.decl(name)} {{\n"
        f"  auto {tmp} = {functional.name()}({args});\n"
        f"  {updates}\n"
        f"  return {returns};\n"
        "}\n"
    )


def _wrapper(index: BackendIndex, cpp_namespace: str, class_name: str, f: NativeFunction, g: NativeFunctionsGroup | None) -> Wrapper | None:
    kernel = index.kernel(f)
    generated = False
    if kernel is None:
        if index.use_out_as_primary or g is None or f.kind is Kind.functional or index.kernel(g.functional) is None:
            return None
        generated = True
    if f.manual_kernel_registration:
        return None
    sig = _wrapper_signature(index, f, Flavor.of(f))
    name = sig.name()
    registration = f'm.impl("{f.func.name}",\nTORCH_FN({name}));\n'
    if generated:
        return Wrapper(name, _out_inplace_wrapper(index, f, g), registration)
    assert kernel is not None
    kernel_sig = Signature(f.func, Flavor.of(f, symint=supports_symint(kernel)))
    call_args = ", ".join(translate(sig.arguments(), kernel_sig.arguments()))
    device_check = _device_check(f, name) if index.device_guard else "  // No device check\n"
    params = ", ".join(b.defn() for b in sig.arguments())
    definition = (
        "namespace {\n"
        "\n"
        f"{sig.returns_type()} {name}({params}) {{\n"
        f"  {device_check}\n"
        "\n"
        f"  {_device_guard(f, index)}\n"
        f"  return {cpp_namespace}::{class_name}::{kernel}({call_args});\n"
        "}\n"
        "\n"
        "} // anonymous namespace\n"
    )
    return Wrapper(name, definition, registration)


def group_wrappers(catalogue: Catalogue, index: BackendIndex, group: tuple[str | None, ...], cpp_namespace: str,
                   class_name: str) -> tuple[list[Wrapper], list[WrapperError]]:
    """The wrappers of one dispatch key for one operator group (an entry of
    catalogue.groups), in the order torchgen writes them, and a WrapperError
    for each one that cannot be made."""
    if not any(op in index.kernels for op in group if op):
        return [], []  # nothing of this operator is the backend's
    item = catalogue.item(group)
    pairs = [(f, item) for f in item.functions()] if isinstance(item, NativeFunctionsGroup) else [(item, None)]
    out = []
    errors = []
    for f, g in pairs:
        try:
            w = _wrapper(index, cpp_namespace, class_name, f, g)
        except Unsupported as err:
            errors.append(WrapperError(f, g, str(err)))
            continue
        if w is not None:
            out.append(w)
    return out, errors


class WrapperError(Unsupported):
    def __init__(self, f: NativeFunction, g: NativeFunctionsGroup | None, message: str) -> None:
        super().__init__(message)
        self.func = f
        self.group = g
