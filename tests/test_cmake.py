"""The CMake adapter (cmake/LazyGen.cmake) driven through real builds.

examples/cmake generates PyTorch's TorchScript backend sources and compiles
them against torch. For each generator (Ninja, Unix Makefiles) and each CMake
(the system's, the latest from PyPI) one build directory is configured and
built once per module; the tests then edit its yaml copy and check what the
next build does. Configure-only checks (argument errors, find_package,
versions) use small throwaway projects with LANGUAGES NONE.
"""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import subprocess
import sys
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

import reference as harness

REPO = Path(__file__).resolve().parents[1]
CMAKE_DIR = REPO / "cmake"
EXAMPLE = REPO / "examples" / "cmake"
TS_YAML = REPO / "tests" / "data" / "ts_native_functions.yaml"

GENERATOR_LINE = "lazygen: generating lazy tensor sources"
GENERATED_SUBDIR = Path("lazygen") / "ts_backend" / "generated"  # INCLUDE_PREFIX in the example
OBJECT_DIR = Path("CMakeFiles") / "ts_backend_generated.dir"


# ---------------------------------------------------------------- tools


@functools.cache
def _version(cmake: str) -> tuple[int, ...] | None:
    try:
        out = subprocess.run([cmake, "--version"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    match = re.search(r"cmake version (\d+)\.(\d+)", out)
    return (int(match.group(1)), int(match.group(2))) if match else None


def _system_cmake() -> str | None:
    return "/usr/bin/cmake" if _version("/usr/bin/cmake") else None


def _pypi_cmake() -> str | None:
    try:
        import cmake  # the PyPI package: a CMake binary inside site-packages
    except ImportError:
        return None
    path = str(Path(cmake.CMAKE_BIN_DIR) / "cmake")
    return path if _version(path) else None


CMAKES = {"system": _system_cmake, "pypi": _pypi_cmake}
GENERATORS = {"ninja": "Ninja", "make": "Unix Makefiles"}


def _cmake_or_skip(which: str) -> str:
    path = CMAKES[which]()
    if path is None:
        where = "/usr/bin/cmake" if which == "system" else "the `cmake` package from PyPI"
        pytest.skip(f"{where} is not installed")
    version = _version(path)
    if version < (3, 20):
        pytest.skip(f"{path} is CMake {version}; LazyGen needs 3.20")
    return path


def _tool_or_skip(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"`{name}` is not on PATH")
    return path


def _env() -> dict[str, str]:
    """The environment for cmake and the builds: this checkout's lazygen importable."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return env


# LAZYGEN_TEST_EXECUTABLE=<command>: test the CMake files against that
# generator instead of `python -m lazygen` from this checkout.
STANDIN = os.environ.get("LAZYGEN_TEST_EXECUTABLE")


def _lazygen_cmd() -> list[str]:
    return [STANDIN] if STANDIN else [sys.executable, "-m", "lazygen"]


def _lazygen_args() -> list[str]:
    """-D arguments naming the generator: this interpreter's `-m lazygen`."""
    args = [f"-DPython3_EXECUTABLE={sys.executable}"]
    if STANDIN:
        args.append(f"-DLAZYGEN_EXECUTABLE={STANDIN}")
    return args


def _lazygen_or_skip() -> None:
    probe = subprocess.run(_lazygen_cmd() + ["--help"], capture_output=True, text=True, env=_env())
    if probe.returncode != 0:
        pytest.skip(f"`python -m lazygen` does not run yet: {probe.stderr.strip()[-200:]}")


def _torch_prefix_or_skip() -> str:
    probe = subprocess.run(
        [sys.executable, "-c", "import torch.utils; print(torch.utils.cmake_prefix_path)"],
        capture_output=True,
        text=True,
    )
    if probe.returncode != 0:
        pytest.skip("torch is not installed (needed for find_package(Torch))")
    return probe.stdout.strip()


def run(
    cmd: list[str], cwd: Path | None = None, check: bool = True, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run a command with stderr folded into stdout (build tools interleave them)."""
    proc = subprocess.run(
        cmd, cwd=cwd, env={**_env(), **(env or {})}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(map(str, cmd))} failed ({proc.returncode}):\n{proc.stdout}")
    return proc


# ---------------------------------------------------------------- the example builds


@dataclass
class Build:
    """One configured and built copy of examples/cmake."""

    generator: str
    cmake: str
    make_program: str
    bdir: Path
    yaml: Path
    first_output: str
    env: dict[str, str]

    @property
    def gen_dir(self) -> Path:
        return self.bdir / GENERATED_SUBDIR

    def build(self) -> str:
        return run([self.make_program, "-j2"], cwd=self.bdir, env=self.env).stdout

    def objects(self) -> dict[str, int]:
        """Object file name (e.g. RegisterLazy.cpp.o) -> mtime in ns."""
        found = sorted((self.bdir / OBJECT_DIR).rglob("*.o"))
        return {p.name: p.stat().st_mtime_ns for p in found}

    def generated(self) -> dict[str, int]:
        return {p.name: p.stat().st_mtime_ns for p in sorted(self.gen_dir.iterdir()) if not p.name.startswith(".")}

    def assert_nothing_to_do(self) -> None:
        before = (self.objects(), self.generated())
        if self.generator == "Ninja":
            dry = run([self.make_program, "-n"], cwd=self.bdir, env=self.env).stdout
            assert dry.strip() == "ninja: no work to do.", dry
            out = self.build()
            assert out.strip() == "ninja: no work to do.", out
        else:
            out = self.build()
            # Only CMake's per-target bookkeeping lines: no generator, no compile.
            lines = [line for line in out.splitlines() if line.strip()]
            assert lines, out
            for line in lines:
                assert re.fullmatch(r"\[\s*\d+%\] Built target \S+", line), f"unexpected work: {line!r}\n{out}"
        assert (self.objects(), self.generated()) == before


def compiled(output: str) -> set[str]:
    """Object names that a build's output says it compiled."""
    return set(re.findall(r"Building CXX object \S*/([^/\s]+\.o)", output))


def ran_generator(output: str) -> int:
    return output.count(GENERATOR_LINE)


@pytest.fixture(scope="module")
def compiler_cache(tmp_path_factory) -> tuple[list[str], dict[str, str]]:
    """ccache, if installed, shared by the four example builds (they compile the same sources).

    The cache starts empty, so the first build compiles for real; the others
    still run every compile step (the build tool cannot tell), only faster.
    Without ccache the tests are the same, just slower.
    """
    ccache = shutil.which("ccache")
    if ccache is None:
        return [], {}
    root = tmp_path_factory.getbasetemp()
    env = {
        "CCACHE_DIR": str(tmp_path_factory.mktemp("ccache")),
        "CCACHE_BASEDIR": str(root),  # build directories differ; relative paths match
        "CCACHE_NOHASHDIR": "1",
        "CCACHE_MAXSIZE": "2G",
    }
    return [f"-DCMAKE_CXX_COMPILER_LAUNCHER={ccache}"], env


@pytest.fixture(
    scope="module",
    params=[(g, c) for g in GENERATORS for c in CMAKES],
    ids=[f"{g}-{c}cmake" for g in GENERATORS for c in CMAKES],
)
def example(request, tmp_path_factory, compiler_cache) -> Build:
    gen_key, cmake_key = request.param
    cmake = _cmake_or_skip(cmake_key)
    generator = GENERATORS[gen_key]
    make_program = _tool_or_skip("ninja" if generator == "Ninja" else "make")
    _tool_or_skip("c++")
    torch_prefix = _torch_prefix_or_skip()
    _lazygen_or_skip()

    root = tmp_path_factory.mktemp(f"example-{gen_key}-{cmake_key}")
    yaml = root / "ts_native_functions.yaml"  # a copy the tests may edit
    shutil.copyfile(TS_YAML, yaml)
    bdir = root / "build"
    run(
        [
            cmake,
            "-S",
            str(EXAMPLE),
            "-B",
            str(bdir),
            "-G",
            generator,
            f"-DCMAKE_MAKE_PROGRAM={make_program}",
            f"-DCMAKE_PREFIX_PATH={torch_prefix}",
            f"-DLazyGen_DIR={CMAKE_DIR}",
            f"-DTS_BACKEND_YAML={yaml}",
            "-DCMAKE_EXPORT_COMPILE_COMMANDS=ON",
            *compiler_cache[0],
            *_lazygen_args(),
        ],
        env=compiler_cache[1],
    )
    build = Build(generator, cmake, make_program, bdir, yaml, first_output="", env=compiler_cache[1])
    build.first_output = build.build()
    return build


def test_first_build_generates_and_compiles(example: Build):
    out = example.first_output
    assert ran_generator(out) == 1, out
    listed = run(
        _lazygen_cmd() + ["-s", str(example.yaml), "-o", str(example.gen_dir), "--list-outputs"]
    ).stdout.split()
    assert set(example.generated()) == {Path(p).name for p in listed}
    sources = {Path(p).name for p in listed if p.endswith(".cpp")}
    # The TS yaml has an autograd section: three translation units.
    assert sources == {"LazyNativeFunctions.cpp", "RegisterLazy.cpp", "RegisterAutogradLazy.cpp"}
    expected_objects = {s + ".o" for s in sources}
    assert compiled(out) == expected_objects, out
    assert set(example.objects()) == expected_objects

    # The flags torch needs: C++20 and the C++11 ABI.
    commands = json.loads((example.bdir / "compile_commands.json").read_text())
    assert {Path(c["file"]).name for c in commands} == sources
    for entry in commands:
        assert "-std=c++20" in entry["command"], entry["command"]
        assert "-D_GLIBCXX_USE_CXX11_ABI=1" in entry["command"], entry["command"]


def test_second_build_does_nothing(example: Build):
    example.assert_nothing_to_do()


def test_yaml_comment_runs_generator_and_recompiles_nothing(example: Build):
    objects, generated = example.objects(), example.generated()
    with example.yaml.open("a") as f:
        f.write("# a comment changes no output\n")
    out = example.build()
    assert ran_generator(out) == 1, out
    assert compiled(out) == set(), out
    assert example.generated() == generated  # lazygen kept every file (same mtime)
    assert example.objects() == objects
    example.assert_nothing_to_do()


def test_one_op_change_recompiles_only_what_changed(example: Build):
    """Move `abs` from full_codegen to supported (its kernel becomes hand-written).

    Its IR node leaves LazyIr.h and its generated kernel leaves
    LazyNativeFunctions.cpp; its declaration and registration stay, so
    LazyNativeFunctions.h and Register*.cpp are unchanged. Only
    LazyNativeFunctions.cpp includes LazyIr.h, so exactly one object rebuilds.
    """
    text = example.yaml.read_text()
    assert "\n  - abs\n" in text and "\nsupported:\n" in text
    text = text.replace("\n  - abs\n", "\n", 1).replace("\nsupported:\n", "\nsupported:\n  - abs\n", 1)
    example.yaml.write_text(text)
    objects, generated = example.objects(), example.generated()

    out = example.build()
    assert ran_generator(out) == 1, out
    new_generated = example.generated()
    assert {n for n in generated if new_generated[n] != generated[n]} == {"LazyIr.h", "LazyNativeFunctions.cpp"}
    assert compiled(out) == {"LazyNativeFunctions.cpp.o"}, out
    new_objects = example.objects()
    assert {n for n in objects if new_objects[n] != objects[n]} == {"LazyNativeFunctions.cpp.o"}
    example.assert_nothing_to_do()


# ---------------------------------------------------------------- configure-only projects


@pytest.fixture(scope="module", params=list(CMAKES), ids=[f"{c}cmake" for c in CMAKES])
def any_cmake(request) -> str:
    return _cmake_or_skip(request.param)


def configure(cmake: str, tmp_path: Path, body: str, *extra: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Configure a LANGUAGES NONE project whose CMakeLists.txt ends with `body`."""
    src = tmp_path / "src"
    src.mkdir(exist_ok=True)
    (src / "CMakeLists.txt").write_text(
        "cmake_minimum_required(VERSION 3.20)\nproject(probe LANGUAGES NONE)\n" + body
    )
    return run(
        [cmake, "-S", str(src), "-B", str(tmp_path / "build"), *_lazygen_args(), *extra], check=check
    )


INCLUDE = f'list(APPEND CMAKE_MODULE_PATH "{CMAKE_DIR}")\ninclude(LazyGen)\n'


@pytest.mark.parametrize(
    ("call", "named"),
    [
        ("lazygen_generate(OUTPUT_DIR gen)", "SOURCE_YAML is required"),
        (f'lazygen_generate(SOURCE_YAML "{TS_YAML}" BOGUS_KEYWORD 1)', "unknown argument(s): BOGUS_KEYWORD"),
        ("lazygen_generate(SOURCE_YAML no_such.yaml)", "SOURCE_YAML file does not exist"),
        (f'lazygen_generate(SOURCE_YAML "{TS_YAML}" IMPL_PATH no_such.cpp)', "IMPL_PATH file does not exist"),
        (f'lazygen_generate(SOURCE_YAML "{TS_YAML}" ATEN_PATH no_such_dir)', "ATEN_PATH directory does not exist"),
        (f'lazygen_generate(SOURCE_YAML "{TS_YAML}" TEMPLATE_DIRS no_such_dir)', "TEMPLATE_DIRS directory does not exist"),
        (f'lazygen_generate(SOURCE_YAML "{TS_YAML}" TARGET no_such_target)', "TARGET 'no_such_target' is not a target"),
        (f'lazygen_generate(SOURCE_YAML "{TS_YAML}" NODE_BASE)', "missing value for: NODE_BASE"),
        (
            f'lazygen_generate(SOURCE_YAML "{TS_YAML}" OUTPUT_DIR gen INCLUDE_PREFIX my/backend)',
            "must end with INCLUDE_PREFIX 'my/backend'",
        ),
    ],
    ids=["no-yaml", "unknown", "missing-yaml", "missing-impl", "missing-aten", "missing-templates",
         "bad-target", "no-value", "prefix-mismatch"],
)
def test_argument_errors_are_fatal_and_name_the_argument(any_cmake, tmp_path, call, named):
    proc = configure(any_cmake, tmp_path, INCLUDE + call + "\n", check=False)
    assert proc.returncode != 0, proc.stdout
    assert "CMake Error" in proc.stdout and "lazygen_generate:" in proc.stdout, proc.stdout
    # CMake wraps long messages; compare with whitespace folded.
    assert named in " ".join(proc.stdout.split()), proc.stdout


@pytest.mark.parametrize(
    "bad_yaml",
    ["backend: [Lazy\n", "cpp_namespace: torch::lazy\nfull_codegen:\n  - abs\n"],
    ids=["syntax", "no-backend"],
)
def test_bad_yaml_is_fatal_with_lazygens_diagnostic(any_cmake, tmp_path, bad_yaml):
    _lazygen_or_skip()
    yaml = tmp_path / "bad.yaml"
    yaml.write_text(bad_yaml)
    proc = configure(any_cmake, tmp_path, INCLUDE + f'lazygen_generate(SOURCE_YAML "{yaml}")\n', check=False)
    assert proc.returncode != 0, proc.stdout
    assert "CMake Error" in proc.stdout, proc.stdout
    assert re.search(re.escape(str(yaml)) + r":\d+:\d+: error: ", proc.stdout), proc.stdout


LIST_BODY = f"""
lazygen_generate(SOURCE_YAML "{TS_YAML}" OUTPUT_DIR gen
                 OUT_SOURCES srcs OUT_HEADERS hdrs OUT_TARGET owner)
message(STATUS "LAZYGEN_DIR=${{LazyGen_DIR}}")
message(STATUS "SOURCES=${{srcs}}")
message(STATUS "HEADERS=${{hdrs}}")
message(STATUS "OWNER=${{owner}}")
"""


def _reported(out: str, key: str) -> str:
    match = re.search(rf"^-- {key}=(.*)$", out, re.M)
    assert match, out
    return match.group(1)


def _check_listed(out: str, gen_dir: Path) -> None:
    listed = run(_lazygen_cmd() + ["-s", str(TS_YAML), "-o", str(gen_dir), "--list-outputs"]).stdout.split()
    reported = _reported(out, "SOURCES").split(";") + _reported(out, "HEADERS").split(";")
    assert sorted(reported) == sorted(listed)
    assert all(p.endswith(".cpp") for p in _reported(out, "SOURCES").split(";"))
    assert _reported(out, "OWNER")


def test_include_with_module_path(any_cmake, tmp_path):
    _lazygen_or_skip()
    proc = configure(any_cmake, tmp_path, INCLUDE + LIST_BODY)
    _check_listed(proc.stdout, tmp_path / "build" / "gen")


def _cmake_dir_or_skip() -> Path:
    """The folder `lazygen --cmake-dir` prints: the installed console script's if
    there is one (the wheel's lazygen/cmake), else this checkout's."""
    script = shutil.which("lazygen")
    if script and not STANDIN:
        cmd, env = [script, "--cmake-dir"], None
    else:
        cmd, env = _lazygen_cmd() + ["--cmake-dir"], _env()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0 or not proc.stdout.strip():
        pytest.skip(f"`lazygen --cmake-dir` does not work yet: {proc.stderr.strip()[-200:]}")
    return Path(proc.stdout.strip())


def test_cmake_dir_holds_this_checkouts_files():
    folder = _cmake_dir_or_skip()
    for name in ("LazyGen.cmake", "LazyGenConfig.cmake", "LazyGenConfigVersion.cmake"):
        assert (folder / name).read_bytes() == (CMAKE_DIR / name).read_bytes(), name


@pytest.mark.parametrize("how", ["LazyGen_DIR", "CMAKE_PREFIX_PATH"])
def test_find_package_through_cmake_dir(any_cmake, tmp_path, how):
    folder = _cmake_dir_or_skip()
    body = "find_package(LazyGen 0.1 CONFIG REQUIRED)\n" + LIST_BODY
    proc = configure(any_cmake, tmp_path, body, f"-D{how}={folder}")
    assert Path(_reported(proc.stdout, "LAZYGEN_DIR")).resolve() == folder.resolve()
    _check_listed(proc.stdout, tmp_path / "build" / "gen")


ENTRY_POINT_PROBE = """
import importlib.metadata as md, importlib.resources as res, json, os
out = {}
for group in ("cmake.module", "cmake.prefix"):
    # What scikit-build-core does with each entry point of these groups
    # (builder.py, _get_entry_point_search_path): files(ep.load()), a
    # namespace package's MultiplexedPath read as its list of folders.
    folders = {}
    for ep in md.entry_points(group=group):
        found = res.files(ep.load())
        folders[ep.name] = [os.fspath(p) for p in getattr(found, "_paths", [found])]
    out[group] = folders
print(json.dumps(out))
"""


def test_entry_points_resolve_with_a_checkout_on_pythonpath(tmp_path):
    """Metadata naming lazygen's entry points (a stale or foreign install
    leaves it) and this checkout first on PYTHONPATH: every entry point loads,
    and its folder holds the CMake files. scikit-build-core loads them all, in
    every project it builds, so one that fails breaks projects that never use lazygen."""
    import tomllib

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    dist = tmp_path / f"lazygen-{project['version']}.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: lazygen\nVersion: {project['version']}\n")
    groups = {g: project["entry-points"][g] for g in ("cmake.module", "cmake.prefix")}
    (dist / "entry_points.txt").write_text(
        "".join(f"[{g}]\n" + "".join(f"{k} = {v}\n" for k, v in eps.items()) for g, eps in groups.items()))
    # -S: no site-packages, so no installed or editable lazygen answers the import.
    proc = subprocess.run([sys.executable, "-S", "-c", ENTRY_POINT_PROBE], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{tmp_path}"}, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    found = json.loads(proc.stdout)
    assert found == {g: {"LazyGen": found[g]["LazyGen"]} for g in groups}, found
    for group, eps in found.items():
        assert len(eps["LazyGen"]) == 1, (group, eps)
        folder = Path(eps["LazyGen"][0])
        assert folder.resolve().is_relative_to(REPO), (group, folder)
        for name in ("LazyGen.cmake", "LazyGenConfig.cmake", "LazyGenConfigVersion.cmake"):
            assert (folder / name).read_bytes() == (CMAKE_DIR / name).read_bytes(), (group, name)


def test_config_version_matches_pyproject():
    import tomllib

    version = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    text = (CMAKE_DIR / "LazyGenConfigVersion.cmake").read_text()
    assert re.search(r'^set\(PACKAGE_VERSION "([^"]+)"\)$', text, re.M).group(1) == version


@pytest.mark.parametrize(
    ("request_", "found"),
    [("", True), ("0.1", True), ("0.1.0 EXACT", True), ("0.0.1", False), ("0.2", False),
     ("1.0", False), ("0.1...<1.0", True), ("0.2...1.0", False)],
)
def test_config_version_compatibility(any_cmake, tmp_path, request_, found):
    body = f"find_package(LazyGen {request_} CONFIG)\nmessage(STATUS \"FOUND=${{LazyGen_FOUND}}\")\n"
    proc = configure(any_cmake, tmp_path, body, f"-DLazyGen_DIR={CMAKE_DIR}")
    assert _reported(proc.stdout, "FOUND") == ("1" if found else "0"), proc.stdout


def test_adding_autograd_section_reconfigures_and_adds_an_output(tmp_path):
    """The yaml is a configure dependency: one more output appears without a manual re-run of cmake."""
    cmake = _cmake_or_skip("pypi")
    ninja = _tool_or_skip("ninja")
    _lazygen_or_skip()
    yaml = tmp_path / "backend.yaml"
    text = TS_YAML.read_text()
    start = text.index("\nautograd:\n")
    end = text.index("\n\n", start + 1)
    yaml.write_text(text[:start] + text[end:])  # the TS yaml without its autograd section
    body = INCLUDE + f"""
lazygen_generate(SOURCE_YAML "{yaml}" OUTPUT_DIR gen OUT_TARGET owner)
add_custom_target(everything ALL)
add_dependencies(everything ${{owner}})
"""
    configure(cmake, tmp_path, body, "-G", "Ninja", f"-DCMAKE_MAKE_PROGRAM={ninja}")
    bdir = tmp_path / "build"
    run([ninja], cwd=bdir)
    assert not (bdir / "gen" / "RegisterAutogradLazy.cpp").exists()
    assert (bdir / "gen" / "RegisterLazy.cpp").exists()

    yaml.write_text(text)
    out = run([ninja], cwd=bdir).stdout
    assert "Re-running CMake" in out, out
    assert (bdir / "gen" / "RegisterAutogradLazy.cpp").exists()
    assert run([ninja, "-n"], cwd=bdir).stdout.strip() == "ninja: no work to do."


def _generated_once(cmake: str, tmp_path: Path, gen_key: str, include: str, generate_args: str) -> tuple[str, Path]:
    """A project whose ALL target generates the TS backend; built twice (the
    generator runs once). Returns the build tool and the build folder."""
    _lazygen_or_skip()
    generator = GENERATORS[gen_key]
    tool = _tool_or_skip("ninja" if generator == "Ninja" else "make")
    body = include + f"""
lazygen_generate(SOURCE_YAML "{TS_YAML}" {generate_args} OUTPUT_DIR gen OUT_TARGET owner)
add_custom_target(everything ALL)
add_dependencies(everything ${{owner}})
"""
    configure(cmake, tmp_path, body, "-G", generator, f"-DCMAKE_MAKE_PROGRAM={tool}")
    bdir = tmp_path / "build"
    assert ran_generator(run([tool], cwd=bdir).stdout) == 1
    assert ran_generator(run([tool], cwd=bdir).stdout) == 0
    return tool, bdir


@pytest.mark.parametrize("gen_key", list(GENERATORS))
def test_depfile_input_change_reruns_generator(any_cmake, tmp_path, gen_key):
    """A file lazygen read (here tags.yaml) re-runs it through the depfile; then all is quiet."""
    aten = tmp_path / "aten"
    shutil.copytree(_aten_or_skip(), aten)  # small: native/*.yaml and torchgen's templates
    tool, bdir = _generated_once(any_cmake, tmp_path, gen_key, INCLUDE, f'ATEN_PATH "{aten}"')
    with (aten / "native" / "tags.yaml").open("a") as f:
        f.write("# touched\n")
    assert ran_generator(run([tool], cwd=bdir).stdout) == 1
    assert ran_generator(run([tool], cwd=bdir).stdout) == 0
    if GENERATORS[gen_key] == "Ninja":
        assert run([tool, "-n"], cwd=bdir).stdout.strip() == "ninja: no work to do."


@pytest.mark.parametrize("gen_key", list(GENERATORS))
def test_new_lazygen_reruns_generator_and_recompiles_nothing(any_cmake, tmp_path, gen_key):
    """Installing lazygen again (pip rewrites its files, here the CMake
    module) re-runs the generator once; unchanged outputs keep their mtimes."""
    module_dir = tmp_path / "lazygen-cmake"
    shutil.copytree(CMAKE_DIR, module_dir)
    include = f'list(APPEND CMAKE_MODULE_PATH "{module_dir}")\ninclude(LazyGen)\n'
    tool, bdir = _generated_once(any_cmake, tmp_path, gen_key, include, "")
    outputs = {p: p.stat().st_mtime_ns for p in (bdir / "gen").iterdir() if not p.name.startswith(".")}
    assert len(outputs) == 6
    time.sleep(0.05)  # strictly newer than the stamp the last build touched
    os.utime(module_dir / "LazyGen.cmake")
    assert ran_generator(run([tool], cwd=bdir).stdout) == 1
    assert {p: p.stat().st_mtime_ns for p in outputs} == outputs
    assert ran_generator(run([tool], cwd=bdir).stdout) == 0


def _aten_or_skip() -> Path:
    """torchgen's packaged catalogue (native_functions.yaml, tags.yaml), found without importing torch."""
    import importlib.util

    spec = importlib.util.find_spec("torchgen")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("torchgen (from torch) is not installed")
    aten = Path(list(spec.submodule_search_locations)[0]) / "packaged" / "ATen"
    if not (aten / "native" / "native_functions.yaml").is_file():
        pytest.skip(f"no native_functions.yaml under {aten}")
    return aten


def test_example_yaml_is_the_ts_yaml():
    """examples/cmake ships a copy of the TorchScript yaml: it must not drift."""
    assert (EXAMPLE / "ts_native_functions.yaml").read_bytes() == TS_YAML.read_bytes()


# ---------------------------------------------------------------- SHARDS

# A stand-in compile (tests/stub_cxx.py as the compiler launcher): it fails on
# a missing source or header and writes the depfile, in milliseconds. Where
# the build system is under test, compiling torch's headers is not needed
# (tests/test_shards.py compiles the sharded TorchScript backend for real).
STUB = REPO / "tests" / "stub_cxx.py"
STUB_LAUNCHER = f"-DCMAKE_CXX_COMPILER_LAUNCHER={sys.executable};{STUB}"


def _move_abs_to_supported(yaml: Path) -> None:
    """`abs` leaves full_codegen for supported: its IR class and generated kernel go."""
    text = yaml.read_text()
    assert "\n  - abs\n" in text and "\nsupported:\n" in text
    yaml.write_text(text.replace("\n  - abs\n", "\n", 1).replace("\nsupported:\n", "\nsupported:\n  - abs\n", 1))


def _object_mtimes(bdir: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in bdir.rglob("*.o")}


def test_shards_compile_one_object_per_shard(tmp_path):
    """SHARDS 3: the listed, generated and compiled files are the README's
    sharded names; moving one op recompiles only the kernel shard that held it."""
    cmake = _cmake_or_skip("pypi")
    ninja = _tool_or_skip("ninja")
    _tool_or_skip("c++")
    _lazygen_or_skip()
    yaml = tmp_path / "ts_native_functions.yaml"
    shutil.copyfile(TS_YAML, yaml)
    src = tmp_path / "src"
    src.mkdir()
    (src / "CMakeLists.txt").write_text(f"""cmake_minimum_required(VERSION 3.20)
project(sharded LANGUAGES CXX)
{INCLUDE}
add_library(backend OBJECT)
lazygen_generate(SOURCE_YAML "{yaml}" SHARDS 3 INCLUDE_PREFIX ts TARGET backend
                 OUT_SOURCES srcs OUT_HEADERS hdrs)
message(STATUS "SOURCES=${{srcs}}")
message(STATUS "HEADERS=${{hdrs}}")
""")
    bdir = tmp_path / "build"
    out = run([cmake, "-S", str(src), "-B", str(bdir), "-G", "Ninja", f"-DCMAKE_MAKE_PROGRAM={ninja}",
               STUB_LAUNCHER, *_lazygen_args()]).stdout
    gen = bdir / "lazygen" / "ts"
    headers, sources = map(sorted, _backend_files(3))
    assert sorted(_reported(out, "SOURCES").split(";")) == sorted(str(gen / s) for s in sources)
    assert sorted(_reported(out, "HEADERS").split(";")) == sorted(str(gen / h) for h in headers)

    first = run([ninja], cwd=bdir).stdout
    assert ran_generator(first) == 1, first
    assert sorted(p.name for p in gen.iterdir() if not p.name.startswith(".")) == sorted(sources + headers)
    assert compiled(first) == {s + ".o" for s in sources}, first
    assert run([ninja], cwd=bdir).stdout.strip() == "ninja: no work to do."

    objects = _object_mtimes(bdir)
    _move_abs_to_supported(yaml)
    out = run([ninja], cwd=bdir).stdout
    shard = zlib.crc32(b"abs") % 3  # the README's rule
    assert ran_generator(out) == 1, out
    assert compiled(out) == {f"LazyNativeFunctions_{shard}.cpp.o"}, out
    new = _object_mtimes(bdir)
    assert {n for n in objects if new[n] != objects[n]} == {f"LazyNativeFunctions_{shard}.cpp.o"}
    assert run([ninja], cwd=bdir).stdout.strip() == "ninja: no work to do."


@pytest.mark.parametrize("bad", ["0", "two", "-1", "1.5"])
def test_bad_shards_is_fatal_and_names_the_argument(any_cmake, tmp_path, bad):
    proc = configure(any_cmake, tmp_path, INCLUDE + f'lazygen_generate(SOURCE_YAML "{TS_YAML}" SHARDS {bad})\n',
                     check=False)
    assert proc.returncode != 0, proc.stdout
    assert f"SHARDS must be a whole number of at least 1, not '{bad}'" in " ".join(proc.stdout.split()), proc.stdout


# ---------------------------------------------------------------- the idiom matrix
#
# Each way a CMake project ordinarily consumes generated files, as a small
# project of its own, on Ninja, Ninja Multi-Config and Unix Makefiles, with
# CMake 3.20 (the oldest the module accepts), 3.25 and the latest. Compiles
# are stand-ins (stub_cxx.py): the idiom is under test, not the compiler.


def _cmake_3_20() -> str | None:
    path = os.environ.get("LAZYGEN_CMAKE_3_20", "/opt/cmake-3.20/bin/cmake")
    return path if _version(path) == (3, 20) else None


def _cmake_3_25() -> str | None:
    path = _system_cmake()
    return path if path and _version(path) == (3, 25) else None


MATRIX_CMAKES = {"3.20": _cmake_3_20, "3.25": _cmake_3_25, "latest": _pypi_cmake}
MATRIX_GENERATORS = {"ninja": "Ninja", "multi": "Ninja Multi-Config", "make": "Unix Makefiles"}

PREAMBLE = """cmake_minimum_required(VERSION 3.20)
project(idiom LANGUAGES CXX)
list(APPEND CMAKE_MODULE_PATH "${LAZYGEN_CMAKE_DIR}")
include(LazyGen)
"""
# Every idiom generates a small backend (the outputs of the TS yaml, in a
# third of the generator's time) with a shape header and a template folder
# of its own, so editing either must re-run the generator.
MATRIX_YAML = """backend: Lazy
cpp_namespace: torch::lazy
full_codegen:
  - abs
  - neg
  - relu
supported:
  - empty.memory_format
autograd:
  - max_pool3d
"""
GENERATE = ('SOURCE_YAML "${LAZYGEN_YAML}" SHAPE_INFERENCE_FILE "${LAZYGEN_SHAPES}" '
            'TEMPLATE_DIRS "${LAZYGEN_TEMPLATES}" INCLUDE_PREFIX ts')
USES_IR = "#include <ts/LazyIr.h>\n#include <ts/LazyNativeFunctions.h>\n"  # recompiles when an IR class goes
USES_DECLS = "#include <ts/LazyNativeFunctions.h>\n"  # the declarations stay when `abs` moves
IR_USERS = frozenset({"uses_ir.cpp.o"})
XLA_YAML = "backend: XLA\ncpp_namespace: torch_xla\nfull_codegen:\n  - neg\n  - relu\n"


def _backend_files(shards: int) -> tuple[frozenset[str], frozenset[str]]:
    """The headers and sources of a backend of key Lazy with an autograd
    section, under the README's names (*Outputs*, *Sharded outputs*)."""
    headers = {"LazyIr.h", "LazyNonNativeIr.h", "LazyNativeFunctions.h"}
    sources = {"RegisterAutogradLazy.cpp"}
    if shards == 1:
        sources |= {"LazyNativeFunctions.cpp", "RegisterLazy.cpp"}
    else:
        headers |= {"LazyIrCommon.h", *(f"LazyIr_{i}.h" for i in range(shards))}
        sources |= {f"{stem}_{i}.cpp" for stem in ("LazyNativeFunctions", "RegisterLazy") for i in range(shards)}
    return frozenset(headers), frozenset(sources)


def _op_files(op: str, shards: int) -> frozenset[str]:
    """The files holding a full_codegen op's IR class and kernel: with N
    shards, those of shard zlib.crc32(op) % N (the README's rule)."""
    if shards == 1:
        return frozenset({"LazyIr.h", "LazyNativeFunctions.cpp"})
    shard = zlib.crc32(op.encode()) % shards
    return frozenset({f"LazyIr_{shard}.h", f"LazyNativeFunctions_{shard}.cpp"})


@dataclass(frozen=True)
class Idiom:
    files: dict[str, str]  # project file -> text (CMakeLists.txt without the preamble)
    own: frozenset[str] = frozenset()  # objects besides the backend's generated sources
    ir_users: frozenset[str] = frozenset()  # those of them that include LazyIr.h (moving `abs` recompiles them)
    compiles_backend: bool = True  # whether the backend's generated sources are compiled
    generators: int = 1  # lazygen_generate() calls (generator runs on a first build)


IDIOMS = {
    # 1. A custom target on the file lists, with no other hint.
    "custom_target": Idiom(
        {"CMakeLists.txt": f"""lazygen_generate({GENERATE} OUT_SOURCES srcs OUT_HEADERS hdrs)
add_custom_target(generated ALL DEPENDS ${{srcs}} ${{hdrs}})
"""},
        compiles_backend=False),
    # 2. A library of the generated sources in the same directory, no TARGET.
    "library": Idiom(
        {"CMakeLists.txt": f"""lazygen_generate({GENERATE} OUT_SOURCES srcs)
add_library(backend STATIC ${{srcs}})
"""}),
    # 3. The library in a subdirectory; sibling-directory targets that include
    #    generated headers through target_link_libraries / target_include_directories.
    "subdirectory": Idiom(
        {
            "CMakeLists.txt": "add_subdirectory(backend)\nadd_subdirectory(app)\n",
            "backend/CMakeLists.txt": f"""lazygen_generate({GENERATE} OUT_SOURCES srcs OUT_INCLUDE_DIR include_dir)
add_library(backend STATIC ${{srcs}})
target_include_directories(backend PUBLIC "${{include_dir}}")
""",
            "app/CMakeLists.txt": """add_library(app STATIC uses_ir.cpp)
target_link_libraries(app PRIVATE backend)
add_library(decls OBJECT uses_decls.cpp)
target_include_directories(decls PRIVATE $<TARGET_PROPERTY:backend,INTERFACE_INCLUDE_DIRECTORIES>)
add_dependencies(decls backend)
""",
            "app/uses_ir.cpp": USES_IR,
            "app/uses_decls.cpp": USES_DECLS,
        },
        own=IR_USERS | {"uses_decls.cpp.o"}, ir_users=IR_USERS),
    # 4. TARGET (sources, include directory, ordering), and OUT_TARGET for
    #    another target that only needs the headers.
    "target": Idiom(
        {
            "CMakeLists.txt": f"""add_library(backend OBJECT uses_ir.cpp)
lazygen_generate({GENERATE} TARGET backend OUT_TARGET owner OUT_INCLUDE_DIR include_dir)
add_library(later STATIC uses_decls.cpp)
target_include_directories(later PRIVATE "${{include_dir}}")
add_dependencies(later ${{owner}})
""",
            "uses_ir.cpp": USES_IR,
            "uses_decls.cpp": USES_DECLS,
        },
        own=IR_USERS | {"uses_decls.cpp.o"}, ir_users=IR_USERS),
    # 5. Two backends (keys Lazy and XLA, two output folders), built with -j2.
    "two_backends": Idiom(
        {
            "CMakeLists.txt": f"""lazygen_generate({GENERATE} OUT_SOURCES lazy_srcs)
add_library(lazy_backend STATIC ${{lazy_srcs}})
lazygen_generate(SOURCE_YAML xla.yaml INCLUDE_PREFIX xla OUT_SOURCES xla_srcs)
add_library(xla_backend STATIC ${{xla_srcs}})
""",
            "xla.yaml": XLA_YAML,
        },
        own=frozenset({"XLANativeFunctions.cpp.o", "RegisterXLA.cpp.o"}), generators=2),
    # 6. install(FILES) of the headers, then `cmake --install`.
    "install": Idiom(
        {"CMakeLists.txt": f"""lazygen_generate({GENERATE} OUT_SOURCES srcs OUT_HEADERS hdrs)
add_library(backend STATIC ${{srcs}})
install(TARGETS backend ARCHIVE DESTINATION lib)
install(FILES ${{hdrs}} DESTINATION include/ts)
"""}),
    # 7. `make clean` / `ninja -t clean`, then a build (here a SHARED library).
    "clean": Idiom(
        {"CMakeLists.txt": f"""lazygen_generate({GENERATE} OUT_SOURCES srcs)
add_library(backend SHARED ${{srcs}})
"""}),
}


@dataclass
class Cell:
    """One idiom's project, configured with one CMake and one generator."""

    name: str
    idiom: Idiom
    cmake: str
    generator: str
    tool: str
    root: Path
    shards: int = 1  # the SHARDS the backend is built with now

    @property
    def bdir(self) -> Path:
        return self.root / "build"

    @property
    def yaml(self) -> Path:
        return self.root / "backend.yaml"

    def configure(self, *extra: str) -> None:
        run([self.cmake, "-S", str(self.root / "src"), "-B", str(self.bdir), "-G", self.generator,
             f"-DCMAKE_MAKE_PROGRAM={self.tool}", STUB_LAUNCHER, *_lazygen_args(),
             f"-DLAZYGEN_CMAKE_DIR={CMAKE_DIR}", f"-DLAZYGEN_YAML={self.yaml}",
             f"-DLAZYGEN_SHAPES={self.root / 'shapes.h'}", f"-DLAZYGEN_TEMPLATES={self.root / 'templates'}", *extra])

    def build(self, step: str) -> str:
        proc = run([self.tool, "-j2"], cwd=self.bdir, check=False)
        assert proc.returncode == 0, f"{step}: the build failed:\n{proc.stdout}"
        return proc.stdout

    def objects(self) -> dict[str, int]:
        return {p.name: p.stat().st_mtime_ns for p in self.bdir.rglob("*.cpp.o")}

    def generated(self) -> dict[str, int]:
        """Generated file (folder/name) -> mtime, for every lazygen output folder."""
        return {f"{p.parent.name}/{p.name}": p.stat().st_mtime_ns for p in self.bdir.rglob("lazygen/*/*")
                if not p.name.startswith(".") and "CMakeFiles" not in p.parts}

    def backend_files(self) -> set[str]:
        """The backend's generated files (ts/name) with the current SHARDS."""
        headers, sources = _backend_files(self.shards)
        return {f"ts/{n}" for n in headers | sources}

    def backend_objects(self) -> set[str]:
        """The objects of the backend's generated sources, if the idiom compiles them."""
        return {f"{n}.o" for n in _backend_files(self.shards)[1]} if self.idiom.compiles_backend else set()

    def assert_quiet(self, step: str) -> None:
        """A build now runs nothing: Ninja says so; Makefiles only print their bookkeeping."""
        before = (self.objects(), self.generated())
        if self.generator.startswith("Ninja"):
            dry = run([self.tool, "-n"], cwd=self.bdir).stdout
            assert dry.strip() == "ninja: no work to do.", f"after {step}, `ninja -n` has work:\n{dry}"
        out = self.build(f"after {step}")
        if self.generator.startswith("Ninja"):
            assert out.strip() == "ninja: no work to do.", f"after {step}, a build did work:\n{out}"
        else:
            for line in filter(str.strip, out.splitlines()):
                assert re.fullmatch(r"\[\s*\d+%\] Built target \S+|Consolidate compiler generated dependencies "
                                    r"of target \S+", line), f"after {step}, unexpected work: {line!r}\n{out}"
        assert (self.objects(), self.generated()) == before, f"after {step}, a quiet build touched files"

    def edit_step(self, step: str, edit, generators: int, changed: set[str], recompiled: set[str]) -> None:
        """Make an edit, build, and check what ran and what changed."""
        objects, generated = self.objects(), self.generated()
        edit()
        out = self.build(step)
        assert ran_generator(out) == generators, f"{step}: generator runs\n{out}"
        new_generated = self.generated()
        assert set(new_generated) == set(generated), f"{step}: the generated files changed names"
        assert {n for n in generated if new_generated[n] != generated[n]} == changed, f"{step}: rewritten files"
        assert compiled(out) == recompiled, f"{step}: compiles\n{out}"
        new_objects = self.objects()
        assert {n for n in objects if new_objects[n] != objects[n]} == recompiled, f"{step}: object mtimes"
        self.assert_quiet(step)


def _append(path: Path, text: str) -> None:
    with path.open("a") as f:
        f.write(text)


def _lay_out(cell: Cell, shapes_from: Path, shards_arg: str | None) -> None:
    """Write the idiom's project; with shards_arg, its backend's call gets `SHARDS <shards_arg>`."""
    src = cell.root / "src"
    for name, text in cell.idiom.files.items():
        path = src / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if shards_arg is not None:
            text = text.replace(GENERATE, f"{GENERATE} SHARDS {shards_arg}")
        path.write_text(PREAMBLE + text if name == "CMakeLists.txt" else text)
    cell.yaml.write_text(MATRIX_YAML)
    shutil.copyfile(shapes_from, cell.root / "shapes.h")
    (cell.root / "templates").mkdir()
    # An override that changes nothing: the stock kernel text.
    (cell.root / "templates" / "native_function.j2").write_text(
        '{% extends "lazygen/native_function.j2" %}\n{% block metrics %}{{ super() }}{% endblock %}\n')


def _scenario(cell: Cell) -> None:
    """Configure, build, and go through the edits; an assertion names its step."""
    idiom = cell.idiom
    first_objects = cell.backend_objects() | idiom.own
    cell.configure()

    out = cell.build("first build")
    assert ran_generator(out) == idiom.generators, f"first build: generator runs\n{out}"
    assert {n for n in cell.generated() if n.startswith("ts/")} == cell.backend_files()
    assert compiled(out) == first_objects, f"first build: compiles\n{out}"
    assert set(cell.objects()) == first_objects
    cell.assert_quiet("first build")

    cell.edit_step("yaml comment", lambda: _append(cell.yaml, "# a comment changes no output\n"),
                   1, set(), set())
    # `abs` leaves its shard's IR header and kernels (LazyIr.h itself when unsharded).
    moved = _op_files("abs", cell.shards)
    kernels = {f"{n}.o" for n in moved if n.endswith(".cpp")} & cell.backend_objects()
    cell.edit_step("moving abs", lambda: _move_abs_to_supported(cell.yaml),
                   1, {f"ts/{n}" for n in moved}, kernels | idiom.ir_users)
    cell.edit_step("shape header edit", lambda: _append(cell.root / "shapes.h", "// a comment\n"),
                   1, set(), set())
    cell.edit_step("template override edit",
                   lambda: _append(cell.root / "templates" / "native_function.j2", "{# a comment #}\n"),
                   1, set(), set())

    if cell.name == "install":
        prefix = cell.root / "prefix"
        config = ["--config", "Debug"] if cell.generator == "Ninja Multi-Config" else []
        run([cell.cmake, "--install", str(cell.bdir), "--prefix", str(prefix), *config])
        installed = {p.name: p.read_bytes() for p in (prefix / "include" / "ts").iterdir()}
        headers = _backend_files(cell.shards)[0]
        assert installed == {n: (cell.bdir / "lazygen" / "ts" / n).read_bytes() for n in headers}
        assert (prefix / "lib" / "libbackend.a").is_file()
    if cell.name == "clean":
        run([cell.tool, "clean"] if cell.tool.endswith("make") else [cell.tool, "-t", "clean"], cwd=cell.bdir)
        assert cell.generated() == {} and cell.objects() == {}, "clean left files"
        out = cell.build("build after clean")
        assert ran_generator(out) == 1, f"build after clean: generator runs\n{out}"
        assert compiled(out) == first_objects, f"build after clean: compiles\n{out}"
        assert set(cell.generated()) == cell.backend_files()
        cell.assert_quiet("build after clean")


def _matrix_cells(tmp_path_factory, label: str, cmake_key: str, projects: list[tuple[str, str]], shards: int = 1,
                  shards_arg: str | None = None) -> list[Cell]:
    """A laid-out project per (idiom, generator key) in a folder named after
    label, with the CMake of cmake_key; skips when a tool is missing.
    shards_arg (default: SHARDS itself, when above 1) follows SHARDS in the
    backend's call."""
    cmake = MATRIX_CMAKES[cmake_key]()
    if cmake is None:
        pytest.skip(f"CMake {cmake_key} is not installed (3.20: LAZYGEN_CMAKE_3_20 or /opt/cmake-3.20, "
                    "3.25: /usr/bin/cmake, latest: the `cmake` package from PyPI)")
    generators = {MATRIX_GENERATORS[g] for _, g in projects}
    tools = {g: _tool_or_skip("make" if g == "Unix Makefiles" else "ninja") for g in generators}
    _tool_or_skip("c++")
    _lazygen_or_skip()
    shapes = _shape_header_or_skip()
    if shards_arg is None and shards > 1:
        shards_arg = str(shards)
    base = tmp_path_factory.mktemp(label)
    cells = []
    for name, gen_key in projects:
        generator = MATRIX_GENERATORS[gen_key]
        cells.append(Cell(name, IDIOMS[name], cmake, generator, tools[generator], base / gen_key / name, shards))
        _lay_out(cells[-1], shapes, shards_arg)
    return cells


def _two_at_a_time(scenario, cells: list[Cell]) -> list[BaseException | None]:
    """Run the scenario on every cell, two at a time: each one's failure, or None."""

    def attempt(cell: Cell) -> BaseException | None:
        try:
            scenario(cell)
        except Exception as e:  # reported by the cell's own test
            return e
        return None

    with ThreadPoolExecutor(max_workers=2) as pool:
        return list(pool.map(attempt, cells))


@pytest.fixture(scope="module",
                params=[(c, g) for c in MATRIX_CMAKES for g in MATRIX_GENERATORS],
                ids=[f"cmake{c}-{g}" for c in MATRIX_CMAKES for g in MATRIX_GENERATORS])
def matrix(request, tmp_path_factory) -> dict[str, BaseException | None]:
    """Every idiom with one CMake and one generator, two projects at a time:
    idiom name -> the scenario's failure, or None."""
    cmake_key, gen_key = request.param
    cells = _matrix_cells(tmp_path_factory, f"matrix-{cmake_key}-{gen_key}", cmake_key,
                          [(name, gen_key) for name in IDIOMS])
    return dict(zip(IDIOMS, _two_at_a_time(_scenario, cells)))


def _shape_header_or_skip() -> Path:
    """torch's shape_inference.h, which declares the TS backend's compute_shape_* functions."""
    dirs = harness.torch_include_dirs()
    if dirs is None:
        pytest.skip("torch (with its C++ headers) is not installed")
    return dirs[0] / "torch" / "csrc" / "lazy" / "core" / "shape_inference.h"


@pytest.mark.parametrize("idiom", list(IDIOMS))
def test_idiom(matrix, idiom):
    """First build generates and compiles; a second runs nothing; a yaml
    comment re-runs the generator and recompiles nothing; moving an op
    recompiles what includes the changed files; shape header and template
    edits re-run the generator; then the idiom's own check (install, clean)."""
    failure = matrix[idiom]
    if failure is not None:
        raise failure


# The idioms whose files the sharded names reach (custom target, library,
# another directory, TARGET, clean), with SHARDS 3 on CMake 3.20, the oldest
# the module accepts, on every generator.
SHARDED_IDIOMS = ("custom_target", "library", "subdirectory", "target", "clean")


@pytest.fixture(scope="module", params=list(MATRIX_GENERATORS), ids=[f"cmake3.20-{g}" for g in MATRIX_GENERATORS])
def sharded_matrix(request, tmp_path_factory) -> dict[str, BaseException | None]:
    """SHARDED_IDIOMS with `SHARDS 3`, on one generator: idiom name -> the scenario's failure, or None."""
    cells = _matrix_cells(tmp_path_factory, f"sharded-{request.param}", "3.20",
                          [(name, request.param) for name in SHARDED_IDIOMS], shards=3)
    return dict(zip(SHARDED_IDIOMS, _two_at_a_time(_scenario, cells)))


@pytest.mark.parametrize("idiom", SHARDED_IDIOMS)
def test_sharded_idiom(sharded_matrix, idiom):
    """test_idiom's scenario with SHARDS 3: the README's sharded names are
    generated and compiled, and moving `abs` rewrites only its shard's IR
    header and kernels (shard crc32("abs") % 3), recompiling those kernels
    and what includes LazyIr.h."""
    failure = sharded_matrix[idiom]
    if failure is not None:
        raise failure


def _change_shards(cell: Cell) -> None:
    """Build with SHARDS_VALUE 3, then 2, then 1 in the cache: each build
    leaves the files of that N only, compiles no stale source, compiles every
    source that is new or rewritten, and archives only current objects."""
    for shards in (3, 2, 1):
        step = f"SHARDS_VALUE={shards}"
        cell.shards = shards
        generated, objects = cell.generated(), cell.objects()
        cell.configure(f"-DSHARDS_VALUE={shards}")
        out = cell.build(step)
        new_generated = cell.generated()
        assert set(new_generated) == cell.backend_files(), f"{step}: generated {sorted(new_generated)}"
        current = cell.backend_objects() | cell.idiom.own
        rewritten = {f"{n.removeprefix('ts/')}.o" for n, mtime in new_generated.items()
                     if n.endswith(".cpp") and generated.get(n) != mtime}
        # Bounds, not an exact set: Makefiles' reconfigure deletes the outputs
        # of every rule whose command changed (CMakeFiles/CMakeRuleHashes.txt),
        # so there all files are written again, and all recompile.
        built = compiled(out)
        assert built <= current, f"{step}: compiled what is no longer a source\n{out}"
        assert rewritten | (current - set(objects)) <= built, f"{step}: compiles\n{out}"
        assert current <= set(cell.objects()), f"{step}: objects {sorted(cell.objects())}"
        if cell.name == "subdirectory":  # its backend: a STATIC library of the generated sources
            members = run(["ar", "t", str(cell.bdir / "backend" / "libbackend.a")]).stdout.split()
            assert sorted(members) == sorted(cell.backend_objects()), f"{step}: libbackend.a holds {members}"
        cell.assert_quiet(step)


def test_changing_shards_in_the_cache(tmp_path_factory):
    """SHARDS ${SHARDS_VALUE}, reconfigured from 3 to 2 to 1 (Ninja and
    Makefiles, CMake 3.20; a library in another directory and TARGET): see
    _change_shards."""
    _tool_or_skip("ar")
    projects = [(name, gen) for gen in ("ninja", "make") for name in ("subdirectory", "target")]
    cells = _matrix_cells(tmp_path_factory, "shards-changes", "3.20", projects, shards=3, shards_arg="${SHARDS_VALUE}")
    failures = [f"{cell.generator}, {cell.name}: {failure}"
                for cell, failure in zip(cells, _two_at_a_time(_change_shards, cells)) if failure is not None]
    assert not failures, "\n\n".join(failures)


# ---------------------------------------------------------------- TORCH_VERSION


def test_torch_version_reaches_the_generator_and_the_output_list(tmp_path):
    """TORCH_VERSION 2.12: the build writes torch 2.12's torchgen output
    (its ToString() returns ss.str()); an unknown release fails at configure
    time, with lazygen's diagnostic, since the list query gets it too."""
    _lazygen_or_skip()
    cmake, ninja = _cmake_or_skip("system"), _tool_or_skip("ninja")
    body = INCLUDE + f'lazygen_generate(SOURCE_YAML "{TS_YAML}" OUTPUT_DIR gen TORCH_VERSION 2.12 OUT_TARGET owner)\n' \
        'message(STATUS "OWNER=${owner}")\n'
    out = configure(cmake, tmp_path, body, "-G", "Ninja", f"-DCMAKE_MAKE_PROGRAM={ninja}").stdout
    run([cmake, "--build", str(tmp_path / "build"), "--target", _reported(out, "OWNER")])
    ir = (tmp_path / "build" / "gen" / "LazyIr.h").read_text(encoding="utf-8")
    assert "    return ss.str();\n" in ir and "std::move(ss).str()" not in ir

    bad = tmp_path / "bad"
    bad.mkdir()
    proc = configure(cmake, bad, INCLUDE + f'lazygen_generate(SOURCE_YAML "{TS_YAML}" TORCH_VERSION 2.4)\n', check=False)
    assert proc.returncode != 0, proc.stdout
    assert "--torch-version: error: torch 2.4 is not a release" in " ".join(proc.stdout.split()), proc.stdout


def test_precompile_headers_reach_every_generated_source(any_cmake, tmp_path):
    """PRECOMPILE_HEADERS (with TARGET): one precompiled header of torch's
    headers, the options' torch headers among them, which every generated
    C++ source of the target is compiled with; without TARGET it is fatal."""
    cmake = any_cmake
    ninja = _tool_or_skip("ninja")
    _tool_or_skip("c++")
    _lazygen_or_skip()
    src = tmp_path / "src"
    src.mkdir()
    (src / "CMakeLists.txt").write_text(f"""cmake_minimum_required(VERSION 3.20)
project(pch LANGUAGES C CXX)
{INCLUDE}
add_library(backend OBJECT plain.c)
lazygen_generate(SOURCE_YAML "{TS_YAML}" SHARDS 2 INCLUDE_PREFIX ts TARGET backend PRECOMPILE_HEADERS
                 NODE_BASE TsNode NODE_BASE_HDR torch/csrc/lazy/ts_backend/ts_node.h OUT_SOURCES srcs)
message(STATUS "SOURCES=${{srcs}}")
""")
    (src / "plain.c").write_text("int plain(void) { return 0; }\n")
    bdir = tmp_path / "build"
    out = run([cmake, "-S", str(src), "-B", str(bdir), "-G", "Ninja", f"-DCMAKE_MAKE_PROGRAM={ninja}",
               STUB_LAUNCHER, *_lazygen_args()]).stdout
    sources = _reported(out, "SOURCES").split(";")
    assert len(sources) == 5, sources  # 2 kernel shards, 2 registration shards, the autograd file
    [pch] = bdir.rglob("cmake_pch.hxx")
    text = pch.read_text()
    for header in ["torch/csrc/lazy/core/ir_builder.h", "torch/library.h", "torch/csrc/lazy/ts_backend/ts_node.h"]:
        assert f"#include <{header}>" in text, text
    commands = run([ninja, "-t", "commands"], cwd=bdir).stdout.splitlines()
    for source in sources:
        [line] = [c for c in commands if f"-c {source}" in c]
        assert f"-include {pch}" in line, line
    [c_line] = [c for c in commands if "-c " in c and c.rstrip().endswith("plain.c")]
    # A C source gets CMake's C header, which holds none of torch's C++ headers.
    c_pch = re.search(r"-include (\S+)", c_line)
    assert c_pch is None or "#include <" not in Path(c_pch.group(1)).read_text(), c_line
    run([ninja], cwd=bdir)  # the build succeeds (run raises on a failure)

    (tmp_path / "bad").mkdir()
    proc = configure(cmake, tmp_path / "bad", INCLUDE + f'lazygen_generate(SOURCE_YAML "{TS_YAML}" PRECOMPILE_HEADERS)\n',
                     check=False)
    assert proc.returncode != 0
    assert "PRECOMPILE_HEADERS needs TARGET" in " ".join(proc.stdout.split()), proc.stdout
