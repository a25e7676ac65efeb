"""examples/generate_code.py: PyTorch's generate_code.py step for the lazy
TorchScript backend, on lazygen. It runs in a stand-in PyTorch checkout and
must write what torchgen writes given the same arguments; its torchgen twin
(the documented import swap applied to its source) must run too."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from reference import Reference, reference_available, require, torch_include_dirs

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "examples" / "generate_code.py"
TS_YAML = Path(__file__).parent / "data" / "ts_native_functions.yaml"

NATIVE_FUNCTIONS = "aten/src/ATen/native/native_functions.yaml"
IMPL = "torch/csrc/lazy/ts_backend/ts_native_functions.cpp"
OUT = "torch/csrc/lazy/generated"
SHAPE_HEADER = "torch/csrc/lazy/core/shape_inference.h"

# What PyTorch's tools/setup_helpers/generate_code.py passes to torchgen's
# run_gen_lazy_tensor (torch 2.13), paths relative to the checkout's root.
PYTORCH_ARGUMENTS = dict(
    aten_path="aten/src/ATen",
    source_yaml="aten/src/ATen/native/ts_native_functions.yaml",
    backend_name="TorchScript",
    output_dir=OUT,
    dry_run=False,
    impl_path=IMPL,
    node_base="TsNode",
    node_base_hdr="torch/csrc/lazy/ts_backend/ts_node.h",
    build_in_tree=True,
    gen_ts_lowerings=True,  # lazy_ir_generator=GenTSLazyIR
    gen_forced_fallback_code=True,
)

# The switch the example's docstring documents, as (lazygen text, torchgen text).
SWAP = (
    ("from lazygen import run_gen_lazy_tensor\n",
     "from torchgen.dest.lazy_ir import GenTSLazyIR\nfrom torchgen.gen_lazy_tensor import run_gen_lazy_tensor\n"),
    ("gen_ts_lowerings=True,", "lazy_ir_generator=GenTSLazyIR,"),
)

_DECLARATION = re.compile(r"^static (.*\W)(\w+)\((.*)\);$")


def hand_written_kernels(header: str, generated_cpp: str) -> str:
    """A stand-in ts_native_functions.cpp: a definition for every declared
    kernel that the generated .cpp does not define (what the impl check wants)."""
    generated = set(re.findall(r"LazyNativeFunctions::(\w+)\(", generated_cpp))
    lines = ["// Stand-in for PyTorch's hand-written TorchScript kernels.", "namespace torch {", "namespace lazy {"]
    for line in header.splitlines():
        m = _DECLARATION.match(line)
        if m and m.group(2) not in generated:
            ret, name, args = m.groups()
            lines.append(f"{ret}LazyNativeFunctions::{name}({args}) {{ TORCH_CHECK(false); }}")
    lines += ["} // namespace lazy", "} // namespace torch", ""]
    return "\n".join(lines)


@pytest.fixture(scope="module")
def checkout(reference: Reference, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The part of a PyTorch checkout that the lazy step reads."""
    import importlib.util

    spec = importlib.util.find_spec("torchgen")
    require(spec is not None and spec.submodule_search_locations, "torchgen is not installed")
    packaged = Path(list(spec.submodule_search_locations)[0]) / "packaged" / "ATen"
    root = tmp_path_factory.mktemp("pytorch")
    native = root / "aten/src/ATen/native"
    native.mkdir(parents=True)
    shutil.copy(packaged / "native" / "native_functions.yaml", native)
    shutil.copy(packaged / "native" / "tags.yaml", native)
    shutil.copy(TS_YAML, native / "ts_native_functions.yaml")
    # torchgen reads its C++ templates from there too (lazygen does not).
    shutil.copytree(packaged / "templates", root / "aten/src/ATen/templates")
    # Both check the shape functions against the header in the checkout.
    include = torch_include_dirs()
    require(include is not None, "torch's C++ headers are not installed")
    shape_header = root / SHAPE_HEADER
    shape_header.parent.mkdir(parents=True)
    shutil.copy(include[0] / SHAPE_HEADER, shape_header)
    # The kernels to stand in for come from the reference's own output.
    plain = reference.generate(TS_YAML, tmp_path_factory.mktemp("plain"), gen_ts_lowerings=True)
    impl = root / IMPL
    impl.parent.mkdir(parents=True)
    impl.write_text(hand_written_kernels(plain["LazyNativeFunctions.h"].decode(), plain["LazyNativeFunctions.cpp"].decode()),
                    encoding="utf-8")
    return root


def copy_of(checkout: Path, where: Path) -> Path:
    shutil.copytree(checkout, where)
    return where


def outputs(root: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((root / OUT).iterdir()) if p.is_file() and not p.name.startswith(".")}


def run_script(script: Path, root: Path, *flags: str) -> None:
    proc = subprocess.run([sys.executable, str(script), "--native-functions-path", NATIVE_FUNCTIONS,
                           "--gen-lazy-ts-backend", *flags], cwd=root, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def assert_same_files(expected: dict[str, bytes], actual: dict[str, bytes]) -> None:
    assert sorted(actual) == sorted(expected)
    for name in expected:
        if actual[name] != expected[name]:
            exp, act = expected[name].decode().splitlines(), actual[name].decode().splitlines()
            i = next((i for i, (a, b) in enumerate(zip(exp, act)) if a != b), min(len(exp), len(act)))
            pytest.fail(f"{name} differs at line {i + 1}:\n  reference: {exp[i] if i < len(exp) else '<end>'!r}\n"
                        f"  example:   {act[i] if i < len(act) else '<end>'!r}")


@pytest.mark.parametrize("per_operator_headers", [False, True], ids=["aten_headers", "per_operator_headers"])
def test_example_writes_what_torchgen_writes(reference, checkout, tmp_path, per_operator_headers):
    ref_root = copy_of(checkout, tmp_path / "reference")
    lg_root = copy_of(checkout, tmp_path / "lazygen")
    # lazygen names itself in "@generated by" lines; torchgen names the script.
    request = dict(PYTORCH_ARGUMENTS, cwd=ref_root, generated_by="lazygen", per_operator_headers=per_operator_headers)
    expected = reference.generate_many([request])[0].check()
    run_script(SCRIPT, lg_root, *(["--per-operator-headers"] if per_operator_headers else []))
    actual = outputs(lg_root)
    assert_same_files(expected, actual)
    assert "RegisterAutogradLazy.cpp" in actual
    # build_in_tree, forced fallbacks and the relative output folder all show.
    assert b"#include <torch/csrc/lazy/generated/LazyNativeFunctions.h>" in actual["RegisterLazy.cpp"]
    assert b"force_eager_fallback(" in actual["LazyNativeFunctions.cpp"]
    assert (b"#include <ATen/ops/empty.h>" in actual["RegisterLazy.cpp"]) == per_operator_headers


def test_switching_back_to_torchgen_is_the_documented_swap(checkout, tmp_path):
    """Undo the swap the example documents and run the result with torchgen:
    same files, except that each tool names itself in "@generated by"."""
    require(reference_available() is None, f"the reference cannot run: {reference_available()}")
    _, doc, code = SCRIPT.read_text(encoding="utf-8").split('"""', 2)
    # The docstring shows the swap as a diff: "-" lines torchgen's, "+" lines lazygen's.
    shown = {sign: set(re.findall(rf"^\s*\{sign}\s*(\S.*)$", doc, re.M)) for sign in "+-"}
    for lazygen_text, torchgen_text in SWAP:
        assert code.count(lazygen_text) == 1, lazygen_text
        assert set(lazygen_text.strip().splitlines()) <= shown["+"]
        assert set(torchgen_text.strip().splitlines()) <= shown["-"]
        code = code.replace(lazygen_text, torchgen_text)
    assert "lazygen" not in code  # nothing else of lazygen is left
    twin = tmp_path / "generate_code.py"
    twin.write_text(f'"""{doc}"""{code}', encoding="utf-8")

    ref_root = copy_of(checkout, tmp_path / "reference")
    lg_root = copy_of(checkout, tmp_path / "lazygen")
    run_script(twin, ref_root)
    run_script(SCRIPT, lg_root)
    expected, actual = outputs(ref_root), outputs(lg_root)
    stamp = re.compile(rb"^// @generated by (\S+) from ", re.M)
    assert set(stamp.findall(b"".join(expected.values()))) == {b"generate_code.py"}
    assert set(stamp.findall(b"".join(actual.values()))) == {b"lazygen"}
    assert_same_files({k: stamp.sub(b"// @generated by X from ", v) for k, v in expected.items()},
                      {k: stamp.sub(b"// @generated by X from ", v) for k, v in actual.items()})
