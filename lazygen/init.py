"""`lazygen init DIR --name NAME`: write a new backend project that builds
and runs.

    lazygen init DIR --name NAME [--key Lazy|PrivateUse1|...] [--ops relu,add.Tensor,...]
                 [--shards N] [--write-missing-shapes] [--force] [--build cmake|bazel]

The project is a scikit-build-core Python package: the backend yaml, a
CMakeLists.txt calling `lazygen_generate()` (found with
`find_package(LazyGen)`), the pybind11 binding of the generated
registration function, a package whose `register()` puts the kernels in
charge, a pytest file running each op on `device="lazy"` against eager CPU
through the backend's own metrics counter, and a README. With --build bazel
the CMake and pyproject files give way to a Bazel workspace (WORKSPACE,
BUILD.bazel with `lazy_codegen()`, third_party/ BUILD files for torch and
the Python headers) that builds the same module as `bazel-bin/NAME/_C.so`. With the default
ops and TorchScript lowerings it runs on PyTorch's TorchScript backend.
examples/demo_backend is this module's output (`lazygen init demo_backend
--name lazygen_demo --shards 2`); tests/test_init.py keeps the two equal.

Everything is checked before anything is written: the folder (empty, or
--force), NAME (a Python and C++ identifier), the key, and every op, by a
dry run of the generator with the project's own options (unknown ops,
refusals, missing shape functions, each reported once). With
--write-missing-shapes the shape functions torch does not declare get a
header and skeleton definitions in csrc/, compiled along.
"""

from __future__ import annotations

import keyword
import os
import re
import shlex
import sys
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Sequence

from lazygen.errors import Diagnostic, UserError

# The ops of a new project: they all run on the TorchScript backend, and
# cover Scalar, optional and list arguments and a reduction.
DEFAULT_OPS = ("relu", "sigmoid", "add.Tensor", "sub.Tensor", "mul.Tensor", "pow.Tensor_Scalar", "leaky_relu", "clamp",
               "mm", "sum.dim_IntList")

# How the generated test calls an op on 4x4 tensors a and b. Ops not listed
# get a call made from their schema (`_call_from_schema`).
CALLS = {
    "relu": "torch.relu(a)",
    "sigmoid": "torch.sigmoid(a)",
    "add.Tensor": "torch.add(a, b, alpha=2.5)",
    "sub.Tensor": "torch.sub(a, b, alpha=0.5)",
    "mul.Tensor": "a * b",
    "pow.Tensor_Scalar": "torch.pow(a, 3)",
    "leaky_relu": "torch.nn.functional.leaky_relu(a, 0.2)",
    "clamp": "torch.clamp(a, min=-0.5, max=0.5)",
    "mm": "a @ b",
    "sum.dim_IntList": "a.sum(dim=1, keepdim=True)",
}

# The options every project's build passes (CMakeLists.txt.j2 spells the same).
_NODE_BASE = "torch::lazy::TsNode"
_NODE_BASE_HDR = "torch/csrc/lazy/ts_backend/ts_node.h"

# Names a project cannot take: its package would hide torch's, or its C++
# namespace would merge with one of torch's.
_TAKEN = frozenset({"torch", "at", "c10", "caffe2", "std", "aten", "lazy", "lazygen", "functorch", "torchgen"})

# The build systems a project can use (--build); the first is the default.
BUILDS = ("cmake", "bazel")

_TEMPLATES = Path(__file__).with_name("project")
_WHERE = "lazygen init"


@dataclass(frozen=True)
class Settings:
    directory: Path
    name: str
    key: str = "Lazy"
    ops: tuple[str, ...] = DEFAULT_OPS
    shards: int = 1
    write_missing_shapes: bool = False
    force: bool = False
    build: str = "cmake"
    aten_path: Path | None = None
    native_functions: Path | None = None
    tags_yaml: Path | None = None

    @property
    def yaml(self) -> str:
        return f"{self.name}_native_functions.yaml"

    @property
    def backend_name(self) -> str:
        """BACKEND_NAME: NAME in CamelCase (lazygen_demo -> LazygenDemo)."""
        return "".join(part[:1].upper() + part[1:] for part in self.name.split("_"))

    def command(self) -> str:
        """The init command line that makes this project (folder by its name, non-default options only)."""
        # The folder by its name only (no path of the author's); `.` by the name it has.
        words = ["lazygen init", shlex.quote(self.directory.absolute().name), "--name", self.name]
        if self.key != "Lazy":
            words += ["--key", self.key]
        if self.ops != DEFAULT_OPS:
            words += ["--ops", ",".join(self.ops)]
        if self.shards != 1:
            words += ["--shards", str(self.shards)]
        if self.write_missing_shapes:
            words.append("--write-missing-shapes")
        if self.build != "cmake":
            words += ["--build", self.build]
        return " ".join(words)


def _error(message: str, hint: str | None = None) -> Diagnostic:
    return Diagnostic(_WHERE, None, None, message, hint)


def _check_directory(settings: Settings) -> list[Diagnostic]:
    d = settings.directory
    if d.exists() and not d.is_dir():
        return [_error(f"{d} exists and is not a folder", "name a new or empty folder")]
    if d.is_dir() and any(d.iterdir()) and not settings.force:
        return [_error(f"{d} is not empty: init writes only into a new or empty folder",
                       "pass --force to write into it anyway (files of the same name are replaced)")]
    return []


def _check_name(name: str) -> list[Diagnostic]:
    from lazygen.backend import is_cpp_name

    why = None
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
        why = "it must be letters, digits and underscores, not starting with a digit"
    elif keyword.iskeyword(name) or keyword.issoftkeyword(name):
        why = "it is a Python keyword"
    elif not is_cpp_name(name):
        why = "it is a C++ keyword"
    elif name.lower() in _TAKEN:
        why = "torch (or lazygen) already uses it as a package or C++ namespace"
    elif "__" in name or name.startswith("_"):
        # The C++ standard reserves both for the implementation (a leading
        # underscore at global scope, which is where the namespace goes).
        why = "C++ reserves names containing two underscores or starting with one"
    if why is None:
        return []
    return [_error(f"--name '{name}' cannot name a backend: {why}",
                   "NAME is the Python package and the C++ namespace, e.g. my_backend")]


def _yaml_text(settings: Settings, catalogue) -> tuple[str, dict[int, str]]:
    """The backend yaml, and which option each of its lines comes from."""
    from lazygen.schema import is_tensor_like

    shape_header = "csrc/" + _shapes_header(settings) if settings.write_missing_shapes else \
        "torch/csrc/lazy/core/shape_inference.h"
    lines = [
        f"# The backend's operator list: what lazygen generates for {settings.name}.",
        "#",
        "# backend: the dispatch key the kernels are registered for."
        + (" `Lazy` is" if settings.key == "Lazy" else ""),
    ]
    if settings.key == "Lazy":
        lines.append("#   PyTorch's key for lazy tensors (device=\"lazy\").")
    lines += [
        "# cpp_namespace: where the generated IR nodes and kernels live.",
        "# full_codegen: ops whose IR node, kernel and registration are all",
        "#   generated. Each needs a shape function: a structured op (shapes come from",
        "#   its meta function) or a torch::lazy::compute_shape_<op> declared in",
        f"#   {shape_header}; lazygen checks that before writing.",
        f"#   `lazygen explain -s {settings.yaml} OP` tells what an op needs.",
        f"backend: {settings.key}",
        f"cpp_namespace: {settings.name}",
        "full_codegen:",
    ]
    origin = {len(lines) - 2: "--key", len(lines) - 1: "--name"}
    for op in settings.ops:
        line = f"  - {op}"
        if op in catalogue:
            # The arguments besides tensors: what the generated kernel and IR node carry as values.
            others = [f"{a.type} {a.name}" for a in catalogue.function(op).func.arguments.flat_non_out if not is_tensor_like(a.type)]
            if others:
                line = f"{line:<23} # {', '.join(others)}"
        lines.append(line)
        origin[len(lines)] = f"--ops {op}"
    return "\n".join(lines) + "\n", origin


def _shapes_header(settings: Settings) -> str:
    return f"{settings.name}_shapes.h"


class _Checked:
    """What the dry run found: the yaml, and the shape files to write (if any)."""

    def __init__(self, yaml: str, shape_files: dict[str, str], missing_shapes: list[str]) -> None:
        self.yaml = yaml
        self.shape_files = shape_files  # name in csrc/ -> text
        self.missing_shapes = missing_shapes  # ops whose shape function is a skeleton


def _check_ops(settings: Settings) -> _Checked:
    """Dry-run the generator on the project's yaml with the project's options."""
    from lazygen.api import catalogue_files, generate
    from lazygen.backend import unknown_operator_hint
    from lazygen.catalogue_cache import load_catalogue
    from lazygen.options import Options
    from lazygen.schema import OperatorName, SchemaError

    options = Options(source_yaml=Path("unused"), output_dir="unused", aten_path=settings.aten_path,
                      native_functions=settings.native_functions, tags_yaml=settings.tags_yaml)
    native, tags = catalogue_files(options)
    catalogue = load_catalogue(native, tags)
    problems: list[Diagnostic] = []
    known = []
    for op in dict.fromkeys(settings.ops):
        try:
            name = OperatorName.parse(op)
        except SchemaError as err:
            problems.append(_error(f"--ops: '{op}' is not an operator name: {err}"))
            continue
        if str(name) not in catalogue:
            problems.append(_error(f"--ops: unknown operator '{op}'", unknown_operator_hint(op, name.name, catalogue, n=3)))
            continue
        known.append(op)
    # The known ops are checked on: every problem is reported at once.
    yaml, origin = _yaml_text(replace(settings, ops=tuple(known)), catalogue)
    with tempfile.TemporaryDirectory(prefix="lazygen-init-") as tmp:
        path = Path(tmp) / settings.yaml
        path.write_text(yaml, encoding="utf-8")
        shapes = Path(tmp) / _shapes_header(settings)
        options = replace(options, source_yaml=path, output_dir=str(Path(tmp) / "generated"),
                          include_prefix=f"{settings.name}/generated", dry_run=True, gen_ts_lowerings=True, node_base=_NODE_BASE, node_base_hdr=_NODE_BASE_HDR,
                          qualify_names=True, shards=settings.shards,
                          write_missing_shapes=shapes if settings.write_missing_shapes else None)
        missing: list[str] = []
        refused: set[str] = set()
        try:
            generate(options)
        except UserError as err:
            for d in err.diagnostics:
                where = origin.get(d.line or 0)
                op = where.removeprefix("--ops ") if where and where.startswith("--ops ") else None
                if op is not None and d.message.startswith(f"no shape function for '{op}'"):
                    if op in refused:
                        continue  # its first problem says enough
                    if settings.write_missing_shapes:
                        missing.append(op)
                        continue
                    problems.append(_error(f"--ops {op}: {d.message}",
                                           "pass --write-missing-shapes to get a header declaring it and a skeleton "
                                           "definition to fill in, compiled along"))
                    continue
                if where is None:
                    problems.append(d)  # not about the options (cannot read the catalogue, say)
                    continue
                if op is not None:
                    refused.add(op)
                # init has no --allow-uncompilable: a project's ops must compile.
                hint = d.hint.replace(" (or pass --allow-uncompilable to write torchgen's code anyway)", "") if d.hint else None
                problems.append(_error(f"{where}: {d.message}", hint))
        if problems:
            raise UserError(*problems)
        shape_files = {}
        if missing:
            for written in (shapes, shapes.with_name(shapes.name + ".cpp")):
                shape_files[written.name] = written.read_text(encoding="utf-8")
    return _Checked(yaml, shape_files, missing)


def _call_from_schema(f) -> str | None:
    """A call of `f` on tensors a and b, from its schema: required
    arguments only, each given a plain value; None when one has no value."""
    from lazygen.schema import BaseType, ListType, OptionalType

    tensors = iter(["a", "b"] * 8)
    plain = {"Scalar": "0.5", "int": "1", "SymInt": "1", "float": "0.5", "bool": "False", "ScalarType": "torch.float32"}

    def value(t) -> str | None:
        if isinstance(t, OptionalType):
            return "None"
        if isinstance(t, ListType):
            if t.elem == BaseType("Tensor"):
                return "[a, b]"
            return f"[{plain[t.elem.name]}]" if isinstance(t.elem, BaseType) and t.elem.name in ("int", "SymInt") else None
        if t == BaseType("Tensor"):
            return next(tensors)
        return plain.get(t.name) if isinstance(t, BaseType) else None

    args = f.func.arguments
    values = []
    for a in args.flat_positional:
        if a.default is None:
            values.append(value(a.type))
    for a in args.flat_kwarg_only:
        if a.default is None:
            values.append(None if value(a.type) is None else f"{a.name}={value(a.type)}")
    if any(v is None for v in values):
        return None
    name = f.func.name
    return f"torch.ops.aten.{name.name}.{name.overload or 'default'}({', '.join(values)})"  # type: ignore[arg-type]


def _cases(settings: Settings, checked: _Checked) -> list[dict]:
    from lazygen.api import catalogue_files
    from lazygen.catalogue_cache import load_catalogue
    from lazygen.cpp import kernel_name
    from lazygen.options import Options

    catalogue = load_catalogue(*catalogue_files(Options(source_yaml=Path("unused"), output_dir="unused", aten_path=settings.aten_path,
                                                        native_functions=settings.native_functions, tags_yaml=settings.tags_yaml)))
    source = f"csrc/{_shapes_header(settings)}.cpp"
    cases = []
    for op in dict.fromkeys(settings.ops):
        f = catalogue.function(op)
        kernel = kernel_name(f.func)
        xfail = None
        if op in checked.missing_shapes:
            xfail = f"compute_shape_{kernel} in {source} is a skeleton: write it, then remove this mark"
        cases.append({"op": op, "counter": f"{settings.name}::{kernel}", "call": CALLS.get(op) or _call_from_schema(f),
                      "xfail": xfail, "schema": str(f.func).replace('"', "'")})
    return cases


def _series(version: str) -> tuple[str, str]:
    """("2.13", "2.14") for "2.13.0": the release series and the next one."""
    major, minor = (version.split(".") + ["0"])[:2]
    minor = re.match(r"\d+", minor).group(0) if re.match(r"\d+", minor) else "0"
    return f"{major}.{minor}", f"{major}.{int(minor) + 1}"


def _torch_version() -> str:
    """The installed torch's version (read from its metadata, never by
    importing it); lazygen's reference release when none is installed."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("torch")
    except PackageNotFoundError:
        return "2.13.0"


def _bazel_paths() -> dict[str, str]:
    """Where the Bazel project finds lazygen, torch and the Python headers on
    this machine (written into its WORKSPACE, which names them once each)."""
    import importlib.util
    import sysconfig

    # A checkout (or an editable install of one) is a Bazel repository; a wheel is not.
    root = Path(__file__).resolve().parents[1]
    lazygen_path = str(root) if (root / "WORKSPACE").is_file() and (root / "bazel" / "defs.bzl").is_file() else "/path/to/lazygen"
    # find_spec locates torch without importing it.
    spec = importlib.util.find_spec("torch")
    if spec is not None and spec.submodule_search_locations:
        site = str(Path(list(spec.submodule_search_locations)[0]).parent)
    else:
        site = sysconfig.get_paths()["purelib"]
    return {"lazygen_path": lazygen_path, "torch_site_packages": site, "python_include": sysconfig.get_paths()["include"]}


def project_files(settings: Settings) -> dict[str, str]:
    """Every file of the project (path relative to DIR -> text), after every
    check. Raises UserError with every problem found; writes nothing."""
    from lazygen import __version__, plan

    problems = _check_directory(settings)
    name_problems = _check_name(settings.name)
    problems += name_problems
    if settings.build not in BUILDS:
        problems.append(_error(f"--build {settings.build}: init writes {' or '.join(BUILDS)} projects", "pass --build cmake or --build bazel"))
    try:
        plan.check_shards(settings.shards)
        shards_ok = True
    except UserError as err:
        problems += [_error("--shards: " + err.diagnostics[0].message)]
        shards_ok = False
    # The ops are checked even when NAME or N is wrong (with stand-ins), so every problem is reported at once.
    try:
        checked = _check_ops(replace(settings, name="backend" if name_problems else settings.name,
                                     shards=settings.shards if shards_ok else 1))
    except UserError as err:
        problems += err.diagnostics
    if problems:
        raise UserError(*problems)

    import jinja2

    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(_TEMPLATES)), keep_trailing_newline=True, trim_blocks=True,
                             lstrip_blocks=True, undefined=jinja2.StrictUndefined, autoescape=False)
    name = settings.name
    lazygen_series, lazygen_next = _series(__version__)
    torch_series, torch_next = _series(_torch_version())
    shapes = None
    if checked.shape_files:
        header = _shapes_header(settings)
        shapes = {"header": header, "source": header + ".cpp", "ops": checked.missing_shapes}
    bazel = settings.build == "bazel"
    build_files = ["WORKSPACE", "BUILD.bazel", "third_party/BUILD.bazel", "third_party/torch.BUILD", "third_party/python.BUILD"] \
        if bazel else ["CMakeLists.txt", "pyproject.toml"]
    files = {
        settings.yaml: checked.yaml,
        **dict.fromkeys(build_files),
        "csrc/module.cpp": None,
        f"src/{name}/__init__.py": None,
        "tests/test_ops.py": None,
        "README.md": None,
    }
    files.update({f"csrc/{n}": text for n, text in checked.shape_files.items()})
    build_layout = {
        "WORKSPACE": "brings in lazygen, torch and the Python headers",
        "BUILD.bazel": "lazy_codegen() generates, cc_binary compiles the extension",
        "third_party/": "BUILD files of @torch and @python",
    } if bazel else {
        "CMakeLists.txt": "finds torch and lazygen, generates, compiles the extension",
        "pyproject.toml": "scikit-build-core project; build requirements",
    }
    layout = {
        settings.yaml: "which ops to generate, for which key and namespace",
        **build_layout,
        "csrc/module.cpp": "the Python binding: exposes the registration function",
        f"src/{name}/__init__.py": "register(): " + ("start the TorchScript backend, then register" if settings.key == "Lazy"
                                                     else "register the kernels"),
        "tests/test_ops.py": "each op on device=\"lazy\" against eager CPU, through our kernels",
    }
    if shapes:
        layout[f"csrc/{shapes['header']}"] = "declares the shape functions the kernels call"
        layout[f"csrc/{shapes['source']}"] = "skeletons of the ones torch lacks: fill them in"
    width = max(map(len, layout)) + 1
    variables = {
        "build": settings.build,
        "name": name, "key": settings.key, "yaml": settings.yaml, "shards": settings.shards, "shapes": shapes,
        "backend_name": settings.backend_name,
        "register_function": f"Register{settings.backend_name}{settings.key}NativeFunctions",
        "register_file": plan.register_sources(settings.key, settings.shards)[0],
        "include_prefix": f"{name}/generated",
        "distribution": name.replace("_", "-"),
        "lazygen_series": lazygen_series, "lazygen_next": lazygen_next,
        "torch_series": torch_series, "torch_next": torch_next,
        "cases": _cases(settings, checked),
        "command": settings.command(),
        "layout": "\n".join(f"{path:<{width}}{what}" for path, what in layout.items()),
        "shape_header_text": f"`csrc/{shapes['header']}`" if shapes else "`torch/csrc/lazy/core/shape_inference.h`",
    }
    if bazel:
        variables.update(_bazel_paths())
        templates = {"WORKSPACE": "WORKSPACE.j2", "BUILD.bazel": "BUILD.bazel.j2", "third_party/BUILD.bazel": "third_party.BUILD.bazel.j2",
                     "third_party/torch.BUILD": "torch.BUILD.j2", "third_party/python.BUILD": "python.BUILD.j2"}
    else:
        templates = {"CMakeLists.txt": "CMakeLists.txt.j2", "pyproject.toml": "pyproject.toml.j2"}
    templates.update({"csrc/module.cpp": "module.cpp.j2", f"src/{name}/__init__.py": "__init__.py.j2",
                      "tests/test_ops.py": "test_ops.py.j2", "README.md": "README.md.j2"})
    for path, template in templates.items():
        files[path] = env.get_template(template).render(variables)
    return files  # type: ignore[return-value]


def write_project(directory: Path, files: dict[str, str]) -> None:
    """Write the files. A new folder is written beside it under a temporary
    name and renamed into place, so a failed write leaves nothing behind."""
    import shutil

    if directory.is_dir():  # empty, or --force: written in place
        _write_files(directory, files)
        return
    parent = directory.absolute().parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=parent))
    except OSError as err:
        raise UserError.at(str(parent), None, None, f"cannot write: {err.strerror or err}") from None
    try:
        _write_files(staging, files)
        os.chmod(staging, 0o777 & ~_umask())  # mkdtemp's folder is private; a project folder is not
        staging.rename(directory)
    except OSError as err:
        raise UserError.at(str(directory), None, None, f"cannot write: {err.strerror or err}") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _write_files(directory: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        path = directory / rel
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
        except OSError as err:
            raise UserError.at(str(path), None, None, f"cannot write: {err.strerror or err}") from None


def build_commands(settings: Settings) -> list[str]:
    """What init prints on success: a heading, then the two commands."""
    folder = shlex.quote(os.fspath(settings.directory))
    if settings.build == "bazel":
        # Bazel works in its workspace; the package is bazel-bin/NAME/ (module and __init__.py).
        return ["build it, then run its tests:",
                f"  cd {folder} && bazel build //...",
                f"  cd {folder} && PYTHONPATH=bazel-bin python -m pytest tests"]
    return ["build and install it, then run its tests:",
            f"  pip install --no-build-isolation {folder}",
            f"  python -m pytest {shlex.quote(os.path.join(settings.directory, 'tests'))}"]


def main(argv: Sequence[str]) -> int:
    import argparse

    p = argparse.ArgumentParser(prog="lazygen init", description="Write a new lazy-tensor backend project that builds and runs.")
    p.add_argument("directory", metavar="DIR", help="the folder to create (must be new or empty)")
    p.add_argument("--name", required=True, help="the Python package and C++ namespace, e.g. my_backend")
    p.add_argument("--key", default="Lazy", help="the dispatch key (default Lazy: runs on device=\"lazy\")")
    p.add_argument("--ops", help=f"comma-separated operators for full_codegen (default: {','.join(DEFAULT_OPS)})")
    p.add_argument("--build", default="cmake",
                   help="the build system: cmake (scikit-build-core and CMake, the default) or bazel (lazy_codegen)")
    p.add_argument("--shards", type=int, default=1, metavar="N", help="SHARDS N in lazygen_generate() (default 1)")
    p.add_argument("--write-missing-shapes", action="store_true",
                   help="for ops whose shape function torch does not declare, write a header and skeletons into csrc/")
    p.add_argument("--force", action="store_true", help="write into a folder that is not empty")
    p.add_argument("--aten-path", help="folder holding native/native_functions.yaml and native/tags.yaml")
    p.add_argument("--native-functions", help="native_functions.yaml (instead of --aten-path)")
    p.add_argument("--tags-yaml", help="tags.yaml (instead of --aten-path)")
    args = p.parse_args(argv)
    ops = tuple(op.strip() for op in args.ops.split(",") if op.strip()) if args.ops is not None else DEFAULT_OPS
    if not ops:
        p.error("--ops names no operator")
    directory = Path(args.directory)
    settings = Settings(directory=directory, name=args.name, key=args.key, ops=ops, shards=args.shards,
                        write_missing_shapes=args.write_missing_shapes, force=args.force, build=args.build,
                        aten_path=Path(args.aten_path) if args.aten_path else None,
                        native_functions=Path(args.native_functions) if args.native_functions else None,
                        tags_yaml=Path(args.tags_yaml) if args.tags_yaml else None)
    try:
        files = project_files(settings)
        write_project(directory, files)
    except UserError as err:
        for d in err.diagnostics:
            print(d.format(), file=sys.stderr)
        return 1
    print(f"wrote {len(files)} files into {os.path.join(directory, '')}")
    for line in build_commands(settings):
        print(line)
    return 0
