"""The generated C++ compiles against torch 2.13's headers: PyTorch's own
TorchScript configuration in namespace torch::lazy, and the same backend in a
three-level namespace with --qualify-names (torchgen's output cannot do that).

Each translation unit is checked with `g++ -fsyntax-only` (full parsing and
template instantiation, no code generation), several at a time."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.reference import require, torch_include_dirs

DATA = Path(__file__).parent / "data"
TS_YAML = DATA / "ts_native_functions.yaml"
TS_FLAGS = ["--node-base-hdr", "torch/csrc/lazy/ts_backend/ts_node.h", "--gen-ts-lowerings", "--backend-name", "TorchScript"]


def _compile_all(sources: list[Path], include_dirs: list[Path]) -> list[str]:
    """Compile each source; return the error output of those that fail."""
    def one(src: Path) -> str:
        cmd = ["g++", "-std=c++20", "-D_GLIBCXX_USE_CXX11_ABI=1", "-fsyntax-only", "-w"]
        cmd += [f"-I{d}" for d in include_dirs] + [str(src)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        return "" if proc.returncode == 0 else f"{src.name}:\n{proc.stderr[-3000:]}"

    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        return [r for r in pool.map(one, sources) if r]


@pytest.fixture(scope="module")
def torch_includes() -> list[Path]:
    require(shutil.which("g++") is not None, "g++ is not installed")
    dirs = torch_include_dirs()
    require(dirs, "torch (2.13.0) headers are not installed")
    return dirs


def _generate(cwd: Path, yaml: Path, *flags: str, out: str = "gen") -> Path:
    proc = subprocess.run([sys.executable, "-m", "lazygen", "-s", str(yaml), "-o", out, *flags],
                          cwd=cwd, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return cwd / out


def _headers_tu(folder: Path, prefix: str, backend: str) -> Path:
    tu = folder / "headers.cpp"
    tu.write_text("".join(f"#include <{prefix}/{n}>\n" for n in ("LazyIr.h", "LazyNonNativeIr.h", f"{backend}NativeFunctions.h")))
    return tu


def test_torchscript_backend_compiles(torch_includes, tmp_path):
    gen = _generate(tmp_path, TS_YAML, "--node-base", "TsNode", "--build-in-tree", *TS_FLAGS)
    sources = [_headers_tu(tmp_path, "gen", "Lazy")] + sorted(gen.glob("*.cpp"))
    assert [s.name for s in sources[1:]] == ["LazyNativeFunctions.cpp", "RegisterAutogradLazy.cpp", "RegisterLazy.cpp"]
    failures = _compile_all(sources, [tmp_path, *torch_includes])
    assert not failures, "\n".join(failures)


def test_qualified_names_compile_in_any_namespace(torch_includes, tmp_path):
    text = TS_YAML.read_text(encoding="utf-8")
    assert "cpp_namespace: torch::lazy\n" in text
    # The yaml's own opkinds are the user's C++: spell them for the new namespace.
    text = text.replace("cpp_namespace: torch::lazy\n", "cpp_namespace: acme::lazy::backend\n")
    text = text.replace("opkind: ltc_", "opkind: torch::lazy::ltc_")
    yaml = tmp_path / "acme.yaml"
    yaml.write_text(text, encoding="utf-8")
    gen = _generate(tmp_path, yaml, "--qualify-names", "--node-base", "torch::lazy::TsNode", "--include-prefix", "acme/gen",
                    *TS_FLAGS, out="acme/gen")
    assert b"namespace acme {\nnamespace lazy {\nnamespace backend {" in (gen / "LazyIr.h").read_bytes()
    assert b"torch::lazy::OpList{" in (gen / "LazyIr.h").read_bytes()
    sources = [_headers_tu(tmp_path, "acme/gen", "Lazy")] + sorted(gen.glob("*.cpp"))
    failures = _compile_all(sources, [tmp_path, *torch_includes])
    assert not failures, "\n".join(failures)


def test_without_qualified_names_a_foreign_namespace_does_not_compile(torch_includes, tmp_path):
    """Why --qualify-names exists: torchgen-style output only compiles inside torch::lazy."""
    yaml = tmp_path / "acme.yaml"
    yaml.write_text("backend: Lazy\ncpp_namespace: acme\nfull_codegen:\n- abs\n", encoding="utf-8")
    # torch::lazy::Node takes no hash seed; TsNode is the base torchgen's node constructor call fits.
    base = ["--node-base", "torch::lazy::TsNode", "--node-base-hdr", "torch/csrc/lazy/ts_backend/ts_node.h"]
    gen = _generate(tmp_path, yaml, "--include-prefix", "gen", "--no-shape-inference-check", *base)
    failures = _compile_all([_headers_tu(tmp_path, "gen", "Lazy")], [tmp_path, *torch_includes])
    assert failures and "OpList" in failures[0]
    gen_q = _generate(tmp_path, yaml, "--include-prefix", "gen", "--no-shape-inference-check", "--qualify-names", *base)
    assert gen_q == gen
    assert not _compile_all([_headers_tu(tmp_path, "gen", "Lazy")], [tmp_path, *torch_includes])
