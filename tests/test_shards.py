"""--shards N: the kernels, the registration and the IR classes split into N
files each (issue 16).

N = 1 is the unsharded output, compared with the reference by
tests/test_differential.py. Here, with N >= 2, against lazygen's own
unsharded output: every kernel, wrapper, registration and IR class is in
exactly one shard, with the same text; the output list is what is written;
an operator's place depends only on its name; fewer shards remove the stale
ones; and the sharded TorchScript backend compiles.

The expected shard of an operator group is computed here from the rule the
README documents (CRC-32 of the group's first operator name, modulo N).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import zlib
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import pytest

from lazygen import Options, UserError, generate, list_outputs
from lazygen.locate import default_aten_path
from tests.every_op import write_every_op_yaml
from tests.reference import require, torch_include_dirs

REPO = Path(__file__).resolve().parents[1]
TS_YAML = REPO / "tests" / "data" / "ts_native_functions.yaml"
TS_OPTIONS = dict(node_base="TsNode", node_base_hdr="torch/csrc/lazy/ts_backend/ts_node.h", gen_ts_lowerings=True,
                  build_in_tree=True, backend_name="TorchScript")
PUBLIC = "RegisterTorchScriptLazyNativeFunctions"


def shard_names(n: int) -> dict[str, list[str]]:
    """The README's naming of the sharded files."""
    return {
        "kernels": [f"LazyNativeFunctions_{i}.cpp" for i in range(n)],
        "register": [f"RegisterLazy_{i}.cpp" for i in range(n)],
        "ir": [f"LazyIr_{i}.h" for i in range(n)],
    }


def expected_shard(op: str, n: int) -> int:
    return zlib.crc32(op.encode()) % n


# ----------------------------------------------------------- extraction


def kernels(text: str) -> list[str]:
    """Each generated kernel definition (4-space indented, up to its closing brace)."""
    return re.findall(r"^    \S[^\n]*LazyNativeFunctions::\w+\(.*?^    }$", text, re.S | re.M)


def ir_classes(text: str) -> list[str]:
    return re.findall(r"^class \w+ : public .*?^};$", text, re.S | re.M)


def wrappers(text: str) -> list[str]:
    """Each wrapper definition of a Register file: a `namespace { ... }` block
    or a bare function, as the lines between the registration's anonymous
    namespace and the registration function."""
    start = text.index("// at namespace already.\nnamespace {\n") + len("// at namespace already.\nnamespace {\n")
    end = re.search(r"^\} // anonymous namespace\n(TORCH_API )?void Register", text, re.M).start()
    lines = text[start:end].split("\n")
    out, current, closing = [], [], None
    for line in lines:
        if closing is None:
            if not line:
                continue
            closing = "} // anonymous namespace" if line == "namespace {" else "}"
            current = [line]
        else:
            current.append(line)
        if line == closing and len(current) > 1:
            out.append("\n".join(current))
            closing = None
    assert closing is None, current
    return out


def registrations(text: str) -> list[str]:
    return re.findall(r'^    m\.impl\("[^"]+",\n    TORCH_FN\(\w+\)\);$', text, re.M)


def defined_wrapper_names(text: str) -> set[str]:
    return set(re.findall(r"^\S[^\n]* (wrapper_Lazy_\w+)\(", text, re.M))


# ----------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def every_op_yaml(tmp_path_factory) -> Path:
    """Every functional op of the catalogue under full_codegen and every other
    op under supported, less those lazygen reports it cannot generate."""
    require(default_aten_path() is not None, "torchgen's native_functions.yaml is not installed")
    path = tmp_path_factory.mktemp("every") / "every_op.yaml"
    full, supported = write_every_op_yaml(path)
    # About 1,360 functional ops remain once the compilability check has refused its ~170.
    assert len(full) > 1300 and len(supported) > 1000
    return path


@pytest.fixture(scope="module")
def every_op_outputs(every_op_yaml, tmp_path_factory) -> dict[int, dict[str, str]]:
    """The every-op backend unsharded and with 2, 3 and 7 shards."""
    out = {}
    for n in (1, 2, 3, 7):
        folder = tmp_path_factory.mktemp(f"shards{n}")
        result = generate(Options(source_yaml=every_op_yaml, output_dir=str(folder / "gen"), include_prefix="gen",
                                  check_shape_inference=False, shards=n, **TS_OPTIONS))
        out[n] = {p.name: p.read_text(encoding="utf-8") for p in result.outputs}
    return out


# ----------------------------------------------------------- every definition once


@pytest.mark.parametrize("n", [2, 3, 7])
def test_every_definition_is_in_exactly_one_shard_with_its_unsharded_text(every_op_outputs, n):
    whole, parts = every_op_outputs[1], every_op_outputs[n]
    names = shard_names(n)
    assert set(parts) == {"LazyIr.h", "LazyIrCommon.h", "LazyNonNativeIr.h", "LazyNativeFunctions.h",
                          *names["kernels"], *names["register"], *names["ir"]}

    for what, extract, unsharded, shards in (
        ("kernel", kernels, "LazyNativeFunctions.cpp", names["kernels"]),
        ("IR class", ir_classes, "LazyIr.h", names["ir"]),
        ("wrapper", wrappers, "RegisterLazy.cpp", names["register"]),
        ("registration", registrations, "RegisterLazy.cpp", names["register"]),
    ):
        expected = Counter(extract(whole[unsharded]))
        assert len(expected) > 1000, what
        assert max(expected.values()) == 1, f"a {what} text repeats in the unsharded file"
        found = Counter()
        for name in shards:
            found.update(extract(parts[name]))
        assert found == expected, f"{what}s: {len(found - expected)} extra, {len(expected - found)} missing"
        # No shard is empty with this many operators: the hash spreads them.
        assert all(extract(parts[name]) for name in shards), what

    # The all-op files are the unsharded ones.
    for name in ("LazyNativeFunctions.h", "LazyNonNativeIr.h"):
        assert parts[name] == whole[name], name


@pytest.mark.parametrize("n", [3, 7])
def test_each_shard_is_self_contained(every_op_outputs, n):
    parts, names = every_op_outputs[n], shard_names(n)
    # LazyIr.h includes every IR shard; each IR shard only the common header.
    assert re.findall(r"#include <gen/(LazyIr_\d+\.h)>", parts["LazyIr.h"]) == names["ir"]
    assert not ir_classes(parts["LazyIr.h"]) and not ir_classes(parts["LazyIrCommon.h"])
    assert "static const torch::lazy::Value kNullValue" in parts["LazyIrCommon.h"]
    for i in range(n):
        ir = parts[names["ir"][i]]
        assert re.findall(r"#include <gen/([^>]+)>", ir) == ["LazyIrCommon.h"]
        kernel = parts[names["kernels"][i]]
        # A kernel shard includes its own IR shard, and uses only classes defined there.
        assert re.findall(r"#include <gen/(LazyIr[^>]*)>", kernel) == [names["ir"][i]]
        defined = set(re.findall(r"^class (\w+) :", ir, re.M))
        used = set(re.findall(r"ReuseNode<(\w+)>", kernel))
        assert used and used <= defined, used - defined
        # Every wrapper a registration shard names is defined in that shard
        # (out= and in-place wrappers call their functional one).
        register = parts[names["register"][i]]
        assert set(re.findall(r"\bwrapper_Lazy_\w+", register)) == defined_wrapper_names(register)


@pytest.mark.parametrize("n", [2, 7])
def test_one_public_registration_function_calling_every_shard(every_op_outputs, n):
    parts, names = every_op_outputs[n], shard_names(n)
    shard_fns = [f"{PUBLIC}_shard{i}" for i in range(n)]
    public_defs = {name: parts[name].count(f"TORCH_API void {PUBLIC}() {{") for name in names["register"]}
    assert public_defs == {name: int(i == 0) for i, name in enumerate(names["register"])}
    first = parts[names["register"][0]]
    body = first[first.index(f"TORCH_API void {PUBLIC}() {{"):]
    assert "static auto m = MAKE_TORCH_LIBRARY_IMPL(aten, Lazy);" in body
    assert re.findall(r"^    (\w+)\(m\);$", body, re.M) == shard_fns
    for i, name in enumerate(names["register"]):
        assert parts[name].count(f"void {shard_fns[i]}([[maybe_unused]] torch::Library& m) {{") == 1


def test_shards_follow_the_documented_hash(every_op_outputs):
    """An op group's kernel, IR class and registrations are in shard crc32(its first op's name) % N."""
    n, parts, names = 7, every_op_outputs[7], shard_names(7)
    for op, kernel, node in (("abs", "abs", "Abs"), ("add.Tensor", "add", "AddTensor"), ("mm", "mm", "Mm"),
                             ("upsample_bilinear2d", "upsample_bilinear2d", "UpsampleBilinear2d")):
        assert every_op_outputs[1]["LazyIr.h"].count(f"\nclass {node} : ") == 1, node  # no name collision
        i = expected_shard(op, n)
        assert [k for k in names["register"] if f'm.impl("{op}",' in parts[k]] == [names["register"][i]], op
        # (Other overloads share the kernel's C++ name.)
        assert f"LazyNativeFunctions::{kernel}(" in parts[names["kernels"][i]], op
        assert [k for k in names["ir"] if f"\nclass {node} : " in parts[k]] == [names["ir"][i]], op


# ----------------------------------------------------------- output list


def ts_options(out: Path, n: int, **extra) -> Options:
    return Options(source_yaml=TS_YAML, output_dir=str(out), include_prefix="gen", shards=n, **TS_OPTIONS, **extra)


@pytest.mark.parametrize("n", [1, 2, 3, 7])
def test_output_list_is_stable_and_what_is_written(tmp_path, n):
    out = tmp_path / "gen"
    listed = list_outputs(ts_options(out, n))
    assert listed == list_outputs(ts_options(out, n))
    result = generate(ts_options(out, n))
    assert list(result.outputs) == listed
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == sorted(p.name for p in listed)
    if n == 1:
        assert [p.name for p in listed] == ["LazyIr.h", "LazyNonNativeIr.h", "LazyNativeFunctions.h",
                                            "LazyNativeFunctions.cpp", "RegisterLazy.cpp", "RegisterAutogradLazy.cpp"]
    else:
        names = shard_names(n)
        assert [p.name for p in listed] == (["LazyIr.h", "LazyNonNativeIr.h", "LazyNativeFunctions.h", "LazyIrCommon.h"]
                                            + names["ir"] + names["kernels"] + names["register"] + ["RegisterAutogradLazy.cpp"])
    proc = subprocess.run([sys.executable, "-m", "lazygen", "-s", str(TS_YAML), "-o", str(out), "--shards", str(n), "--list-outputs"],
                          capture_output=True, text=True, check=True)
    assert proc.stdout.split() == [str(p) for p in listed]


@pytest.mark.parametrize("bad", [0, -2])
def test_a_bad_number_of_shards_is_an_error_and_writes_nothing(tmp_path, bad):
    with pytest.raises(UserError, match="number of shards"):
        generate(ts_options(tmp_path / "gen", bad))
    assert not (tmp_path / "gen").exists()
    proc = subprocess.run([sys.executable, "-m", "lazygen", "-s", str(TS_YAML), "-o", str(tmp_path / "gen"), "--shards", str(bad)],
                          capture_output=True, text=True)
    assert proc.returncode == 1 and "error: the number of shards must be" in proc.stderr and "Traceback" not in proc.stderr


# ----------------------------------------------------------- incremental


def _with_full_codegen_op(tmp_path: Path, op: str) -> Path:
    text = TS_YAML.read_text(encoding="utf-8")
    assert f"- {op}\n" not in text
    yaml = tmp_path / "ts_plus_one.yaml"
    yaml.write_text(text.replace("full_codegen:\n", f"full_codegen:\n  - {op}\n", 1), encoding="utf-8")
    return yaml


@pytest.mark.parametrize("op", ["erfinv", "logaddexp"])
def test_adding_one_op_rewrites_only_its_shards_and_the_all_op_header(tmp_path, op):
    n = 3
    out = tmp_path / "gen"
    before = generate(ts_options(out, n, check_shape_inference=False))
    assert set(before.written) == {p.name for p in before.outputs}
    after = generate(replace(ts_options(out, n, check_shape_inference=False), source_yaml=_with_full_codegen_op(tmp_path, op)))
    i, names = expected_shard(op, n), shard_names(n)
    assert set(after.written) == {names["kernels"][i], names["register"][i], names["ir"][i], "LazyNativeFunctions.h"}
    assert not after.removed
    assert op.replace(".", "_") in (out / names["kernels"][i]).read_text() or op in (out / names["kernels"][i]).read_text()


# ----------------------------------------------------------- fewer shards


def test_fewer_shards_remove_the_stale_ones(tmp_path):
    out = tmp_path / "gen"
    generate(ts_options(out, 7))
    two = generate(ts_options(out, 2))
    stale = {f"{base}_{i}{ext}" for i in range(2, 7) for base, ext in (("LazyNativeFunctions", ".cpp"), ("RegisterLazy", ".cpp"), ("LazyIr", ".h"))}
    assert set(two.removed) == stale
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == sorted(p.name for p in two.outputs)
    one = generate(ts_options(out, 1))
    assert set(one.removed) == {"LazyIrCommon.h", *shard_names(2)["kernels"], *shard_names(2)["register"], *shard_names(2)["ir"]}
    fresh = generate(ts_options(tmp_path / "fresh", 1))
    assert {p.name: p.read_bytes() for p in one.outputs} == {p.name: p.read_bytes() for p in fresh.outputs}


# ----------------------------------------------------------- compiles


def test_sharded_torchscript_backend_compiles(tmp_path):
    require(shutil.which("g++") is not None, "g++ is not installed")
    include_dirs = torch_include_dirs()
    require(include_dirs, "torch (2.13.0) headers are not installed")
    result = generate(ts_options(tmp_path / "gen", 3))
    headers = tmp_path / "headers.cpp"
    headers.write_text("#include <gen/LazyIr.h>\n#include <gen/LazyNonNativeIr.h>\n#include <gen/LazyNativeFunctions.h>\n")
    sources = [headers] + [p for p in result.outputs if p.suffix == ".cpp"]
    assert len(sources) == 8

    def compile_one(src: Path) -> str:
        cmd = ["g++", "-std=c++20", "-D_GLIBCXX_USE_CXX11_ABI=1", "-fsyntax-only", "-w", f"-I{tmp_path}"]
        cmd += [f"-I{d}" for d in include_dirs] + [str(src)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        return "" if proc.returncode == 0 else f"{src.name}:\n{proc.stderr[-3000:]}"

    with ThreadPoolExecutor(max_workers=2) as pool:
        failures = [f for f in pool.map(compile_one, sources) if f]
    assert not failures, "\n".join(failures)


def test_a_shard_without_ops_compiles_without_an_unused_parameter_warning(tmp_path):
    """More shards than op groups: an empty registration shard still defines
    its function, whose library argument is then unused."""
    require(shutil.which("g++") is not None, "g++ is not installed")
    include_dirs = torch_include_dirs()
    require(include_dirs, "torch (2.13.0) headers are not installed")
    yaml = tmp_path / "one.yaml"
    yaml.write_text("backend: Lazy\ncpp_namespace: torch::lazy\nfull_codegen:\n  - abs\n")
    result = generate(Options(source_yaml=yaml, output_dir=str(tmp_path / "gen"), include_prefix="gen", shards=4, **TS_OPTIONS))
    empty = next(i for i in range(4) if i != expected_shard("abs", 4))
    source = tmp_path / "gen" / shard_names(4)["register"][empty]
    assert source in result.outputs and "m.impl(" not in source.read_text()
    cmd = ["g++", "-std=c++20", "-D_GLIBCXX_USE_CXX11_ABI=1", "-fsyntax-only", "-Wall", "-Wextra", "-Werror=unused-parameter",
           f"-I{tmp_path}", *(f"-isystem{d}" for d in include_dirs), str(source)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]


# ----------------------------------------------------------- files of another layout


def test_another_tools_unsharded_files_are_left_with_a_warning(tmp_path):
    """torchgen's kernels and registration in the folder of a sharded run:
    lazygen did not write them, so it keeps them and says so (a build that
    compiles the folder's every .cpp would define them twice); files of
    another N that lazygen wrote go without a word."""
    out = tmp_path / "gen"
    out.mkdir()
    foreign = {"LazyNativeFunctions.cpp": "// torchgen's kernels\n", "RegisterLazy.cpp": "// torchgen's registration\n",
               "RegisterLazy_9.cpp": "// someone's\n", "LazyNativeFunctions_extra.cpp": "// hand-written, another name\n"}
    for name, text in foreign.items():
        (out / name).write_text(text)
    expected = ["LazyNativeFunctions.cpp", "RegisterLazy.cpp", "RegisterLazy_9.cpp"]
    result = generate(ts_options(out, 3))
    assert sorted(Path(w.path).name for w in result.warnings) == expected
    assert all(w.severity == "warning" and "is not an output of this run" in w.message for w in result.warnings)
    assert {name: (out / name).read_text() for name in foreign} == foreign
    # Its own files of another N are removed, not warned about.
    result = generate(ts_options(out, 2))
    assert set(result.removed) == {"LazyNativeFunctions_2.cpp", "RegisterLazy_2.cpp", "LazyIr_2.h"}
    assert sorted(Path(w.path).name for w in result.warnings) == expected
    assert {name: (out / name).read_text() for name in foreign} == foreign


def test_another_tools_files_with_warnings_as_errors_stop_the_run(tmp_path):
    out = tmp_path / "gen"
    out.mkdir()
    (out / "LazyNativeFunctions.cpp").write_text("// torchgen's kernels\n")
    with pytest.raises(UserError) as err:
        generate(ts_options(out, 2, warnings_as_errors=True))
    assert [(Path(d.path).name, d.severity) for d in err.value.diagnostics] == [("LazyNativeFunctions.cpp", "error")]
    assert sorted(p.name for p in out.iterdir()) == ["LazyNativeFunctions.cpp"]
