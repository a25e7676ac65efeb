"""The compilability check (lazygen.compilable): each full_codegen / ir_gen op
whose generated code would not compile is refused at its yaml line, every one
in one run; --allow-uncompilable keeps torchgen's bytes with warnings; and
every op the check accepts compiles (g++ -fsyntax-only, every translation
unit of the every-op backend, against torch's headers)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import pytest

from lazygen import compilable
from lazygen.api import generate
from lazygen.catalogue_cache import load_catalogue
from lazygen.errors import UserError
from lazygen.locate import default_aten_path
from lazygen.options import Options
from tests.reference import reference_available, require, torch_include_dirs

REPO = Path(__file__).resolve().parents[1]
TS_OPTIONS = dict(node_base="TsNode", node_base_hdr="torch/csrc/lazy/ts_backend/ts_node.h", gen_ts_lowerings=True,
                  build_in_tree=True, backend_name="TorchScript")
BY_HAND = "list it under 'supported' and write the kernel by hand"


@pytest.fixture(scope="module")
def catalogue():
    aten = default_aten_path()
    require(aten is not None, "torchgen's native_functions.yaml is not installed")
    return load_catalogue(aten / "native" / "native_functions.yaml", aten / "native" / "tags.yaml")


def _yaml(path: Path, **sections) -> Path:
    """A backend yaml; each op of a list is on its own line, in order."""
    text = "backend: Lazy\ncpp_namespace: torch::lazy\n"
    for key, value in sections.items():
        text += f"{key}:\n" + "".join(f"- {v}\n" for v in value) if isinstance(value, list) else f"{key}: {value}\n"
    path.write_text(text, encoding="utf-8")
    return path


def _line(yaml: Path, op: str) -> int:
    lines = yaml.read_text(encoding="utf-8").splitlines()
    return lines.index(f"- {op}") + 1


def _errors(yaml: Path, **options) -> list:
    """The diagnostics of a run that must fail; nothing may be written."""
    out = yaml.parent / "out"
    with pytest.raises(UserError) as info:
        generate(Options(source_yaml=yaml, output_dir=str(out), check_shape_inference=False, **options))
    assert not out.exists()
    return [d for d in info.value.diagnostics if d.severity == "error"]


def _ok(yaml: Path, **options):
    return generate(Options(source_yaml=yaml, output_dir=str(yaml.parent / "out"), check_shape_inference=False,
                            dry_run=True, **options))


# ------------------------------------------------------------------ one rule each


NON_TENSOR_RESULTS = {
    "is_nonzero": "it returns bool",
    "_nnz": "it returns int",
    "q_scale": "it returns float",
    "item": "it returns Scalar",
    "result_type.Tensor": "it returns ScalarType",
    "set_data": "it returns nothing",
    "unbind.int": "it returns Tensor[] (a list of tensors whose length the generated kernel cannot know)",
    "_choose_qparams_per_tensor": "it returns (float, int), which holds float and int",
    "fbgemm_linear_quantize_weight": "it returns (Tensor, Tensor, float, int), which holds float and int",
}


def test_ops_returning_anything_but_tensors_are_refused_each_at_its_line(tmp_path):
    ops = ["abs", *NON_TENSOR_RESULTS, "add.Tensor", "max.dim"]
    yaml = _yaml(tmp_path / "b.yaml", full_codegen=ops)
    errors = _errors(yaml)
    assert [(d.line, d.col) for d in errors] == [(_line(yaml, op), 3) for op in NON_TENSOR_RESULTS]
    for d, (op, what) in zip(errors, NON_TENSOR_RESULTS.items()):
        assert d.message == (f"the code generated for '{op}' under 'full_codegen' would not compile: "
                             f"{what}: a lazy kernel can only return tensors")
        assert d.hint.startswith(BY_HAND) and "--allow-uncompilable" in d.hint


def test_the_same_ops_are_fine_under_ir_gen_and_supported(tmp_path):
    """Only a kernel must return tensors: an IR node just counts outputs."""
    ops = [op for op in NON_TENSOR_RESULTS if op != "unbind.int"]
    _ok(_yaml(tmp_path / "b.yaml", ir_gen=ops, supported=["unbind.int"]))


def test_string_defaults_are_refused_under_full_codegen_only(tmp_path):
    yaml = _yaml(tmp_path / "b.yaml", full_codegen=["abs", "pad", "conv2d.padding"])
    errors = _errors(yaml)
    assert [d.line for d in errors] == [_line(yaml, "pad"), _line(yaml, "conv2d.padding")]
    assert "its schema has a string default (mode=\"constant\"), which the generated kernel copies unescaped" in errors[0].message
    assert 'padding="valid"' in errors[1].message
    # The IR node holds the string as a member; no literal is written.
    _ok(_yaml(tmp_path / "ir.yaml", ir_gen=["pad", "conv2d.padding"]))


def test_a_variant_with_another_number_of_results_is_refused_until_it_has_its_own_kernel(tmp_path):
    yaml = _yaml(tmp_path / "b.yaml", full_codegen=["_amp_update_scale"])
    errors = _errors(yaml)
    assert len(errors) == 2 and all(d.line == 4 for d in errors)
    assert "its variant '_amp_update_scale.out' returns 1 result(s) where '_amp_update_scale' returns 2" in errors[0].message
    assert "its variant '_amp_update_scale_' returns 1 result(s)" in errors[1].message
    assert errors[0].hint.startswith("list '_amp_update_scale.out' under 'supported' too and write its kernel")
    _ok(_yaml(tmp_path / "ok.yaml", full_codegen=["_amp_update_scale"], supported=["_amp_update_scale.out", "_amp_update_scale_"]))
    # With use_out_as_primary the variants get no wrapper from the functional kernel.
    _ok(_yaml(tmp_path / "primary.yaml", full_codegen=["_amp_update_scale"], use_out_as_primary="true"))


def test_two_ops_with_one_ir_class_name_both_ops_and_both_lines(tmp_path):
    yaml = _yaml(tmp_path / "b.yaml", full_codegen=["abs", "adaptive_avg_pool2d", "_adaptive_avg_pool2d"])
    (error,) = _errors(yaml)
    assert error.line == _line(yaml, "_adaptive_avg_pool2d")
    assert "'_adaptive_avg_pool2d'" in error.message
    assert "its IR class 'AdaptiveAvgPool2d' is also the IR class of 'adaptive_avg_pool2d'" in error.message
    assert error.hint.startswith(f"'adaptive_avg_pool2d' is at line {_line(yaml, 'adaptive_avg_pool2d')}; keep one of the two")

    # The first listed keeps the class, across sections and whatever the list order.
    yaml = tmp_path / "mixed.yaml"
    yaml.write_text("backend: Lazy\ncpp_namespace: torch::lazy\nir_gen:\n- _adaptive_avg_pool2d\n"
                    "full_codegen:\n- adaptive_avg_pool2d\n", encoding="utf-8")
    (error,) = _errors(yaml)
    assert error.line == 6 and "under 'full_codegen'" in error.message and "'_adaptive_avg_pool2d' is at line 4" in error.hint


def test_an_ir_class_named_like_a_non_native_node_or_the_node_base(tmp_path):
    yaml = tmp_path / "b.yaml"
    yaml.write_text("backend: Lazy\ncpp_namespace: torch::lazy\nfull_codegen:\n- abs\n- expand_copy\n"
                    "non_native:\n- func: expand_copy(Tensor input, int[] size) -> Tensor\n", encoding="utf-8")
    (error,) = _errors(yaml)
    assert error.line == 5 and "is also the IR class of non_native 'expand_copy'" in error.message
    assert error.hint.startswith("'expand_copy' is at line 7;")

    (error,) = _errors(_yaml(tmp_path / "base.yaml", full_codegen=["abs", "trace"]), node_base="my::Trace")
    assert error.line == 5 and "its IR class 'Trace' has the name of the node base class 'my::Trace'" in error.message


CUSTOM_OPS = """\
- func: frob(Tensor self, int inputs) -> Tensor
  variants: function
- func: tint(Tensor self, Tensor lazy_self) -> Tensor
  variants: function
- func: blur(Tensor self, Tensor? weight, bool has_weight) -> Tensor
  variants: function
- func: shade(Tensor self, int shapes) -> Tensor
  variants: function
- func: count(Tensor self, int i, int loctx) -> Tensor
  variants: function
- func: glow(Tensor self) -> Tensor
  variants: function
"""


@pytest.fixture
def custom_catalogue(tmp_path):
    """A catalogue of made-up ops whose argument names clash with generated code."""
    aten = default_aten_path()
    require(aten is not None, "torchgen's tags.yaml is not installed")
    nf = tmp_path / "native_functions.yaml"
    nf.write_text(CUSTOM_OPS, encoding="utf-8")
    return dict(native_functions=nf, tags_yaml=aten / "native" / "tags.yaml")


def test_arguments_named_like_what_the_generated_code_declares(tmp_path, custom_catalogue):
    ops = ["frob", "tint", "blur", "shade", "count", "glow"]
    yaml = _yaml(tmp_path / "b.yaml", full_codegen=ops)
    found = {(d.line, re.search(r"its argument '(\w+)' has the name of (.*)", d.message).groups()) for d in _errors(yaml, gen_ts_lowerings=True, **custom_catalogue)}
    line = {op: _line(yaml, op) for op in ops}
    assert found == {
        (line["frob"], ("inputs", "a variable the generated kernel declares itself")),
        (line["tint"], ("lazy_self", "a variable the generated kernel declares itself")),
        (line["blur"], ("has_weight", "the IR node's member telling whether 'weight' is given")),
        (line["shade"], ("shapes", "a variable the generated kernel declares itself")),
        (line["shade"], ("shapes", "the IR node's constructor parameter")),
        (line["count"], ("i", "the IR node's counter in CanBeReused() and Lower()")),
        (line["count"], ("loctx", "the IR node's Lower() parameter")),
    }
    # The node's names depend on the options: no shapes parameter without lazy
    # shapes, no CanBeReused()/Lower() locals without TorchScript lowerings.
    yaml = _yaml(tmp_path / "ir.yaml", ir_gen=["shade", "count"])
    _ok(yaml, use_lazy_shape=False, **custom_catalogue)
    assert [d.message.split(": ", 1)[1] for d in _errors(yaml, **custom_catalogue)] == [
        "its argument 'shapes' has the name of the IR node's constructor parameter"]
    assert len(_errors(yaml, gen_ts_lowerings=True, **custom_catalogue)) == 3


def test_every_refusal_of_a_run_at_once_and_the_rest_of_the_checks_too(tmp_path):
    yaml = _yaml(tmp_path / "b.yaml", full_codegen=["is_nonzero", "no_such_op", "pad", "_nnz"])
    lines = [d.line for d in _errors(yaml)]
    assert lines == [4, 5, 6, 7]


# ------------------------------------------------------------------ the flag and the API


def test_allow_uncompilable_gives_torchgens_bytes_and_warnings(reference, tmp_path):
    require(reference_available() is None, f"reference unavailable: {reference_available()}")
    refused = ["is_nonzero", "unbind.int", "pad", "_amp_update_scale", "_adaptive_avg_pool2d"]
    ops = ["abs", "adaptive_avg_pool2d", *refused]
    yaml = _yaml(tmp_path / "b.yaml", full_codegen=ops)
    probe = reference.probe()
    header = tmp_path / "shapes.h"
    header.write_text("".join(d + "\n" for op in ops for d in probe[op]["shape_decls"]), encoding="utf-8")
    expected = reference.generate(yaml, tmp_path / "ref", generated_by="torchgen/gen.py", shape_inference_file=str(header), **TS_OPTIONS)
    proc = subprocess.run([sys.executable, "-m", "lazygen", "-s", str(yaml), "-o", str(tmp_path / "lg"), "--allow-uncompilable",
                           "--include-prefix", str(tmp_path / "ref"), "--generated-by", "torchgen/gen.py", "--shape-inference-file", str(header),
                           "--node-base", "TsNode", "--node-base-hdr", TS_OPTIONS["node_base_hdr"], "--gen-ts-lowerings", "--build-in-tree"],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    warnings = [line for line in proc.stderr.splitlines() if ": warning: " in line]
    assert [int(w.split(":")[1]) for w in warnings] == [_line(yaml, op) for op in refused for _ in range(2 if op == "_amp_update_scale" else 1)]
    assert all("written anyway (--allow-uncompilable)" in line for line in proc.stderr.splitlines() if ": note: " in line)
    actual = {p.name: p.read_bytes() for p in (tmp_path / "lg").iterdir() if not p.name.startswith(".")}
    assert actual == expected

    # The Python API returns them; without the flag they are errors.
    options = Options(source_yaml=yaml, output_dir=str(tmp_path / "api"), check_shape_inference=False, allow_uncompilable=True)
    result = generate(options)
    assert [d.line for d in result.warnings] == [int(w.split(":")[1]) for w in warnings]
    assert all(d.severity == "warning" and d.format().startswith(f"{yaml}:") for d in result.warnings)
    with pytest.raises(UserError):
        generate(replace(options, allow_uncompilable=False, output_dir=str(tmp_path / "api2")))


def test_refusals_is_a_pure_function_other_tools_can_call(catalogue):
    listed = [("abs", "full_codegen"), ("is_nonzero", "full_codegen"), ("item", "ir_gen"), ("pad", "full_codegen"),
              ("adaptive_avg_pool2d", "ir_gen"), ("_adaptive_avg_pool2d", "full_codegen")]
    found = compilable.refusals(catalogue, listed)
    assert [(r.op, r.section, r.rule) for r in found] == [
        ("is_nonzero", "full_codegen", "returns"), ("pad", "full_codegen", "string-default"),
        ("_adaptive_avg_pool2d", "full_codegen", "class-name")]
    assert found[2].other == "adaptive_avg_pool2d" and not found[2].other_is_non_native
    assert all(r.rule in compilable.RULES for r in found)
    assert compilable.accepted(catalogue, ["abs", "is_nonzero", "pad", "_amp_update_scale", "trace"]) == ["abs", "trace"]
    assert compilable.accepted(catalogue, ["_amp_update_scale"], supported=["_amp_update_scale.out", "_amp_update_scale_"]) == ["_amp_update_scale"]


def test_the_readme_lists_every_rule():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    section = readme.split("### Differences from torchgen, on purpose", 1)[1].split("\n## ", 1)[0]
    for rule in compilable.RULES:
        assert f"`{rule}`" in section, rule


# ------------------------------------------------------------------ every op compiles


def _compile(source: Path, include_dirs: list[Path]) -> tuple[str, float, str]:
    cmd = ["nice", "-n", "10", "g++", "-std=c++20", "-D_GLIBCXX_USE_CXX11_ABI=1", "-fsyntax-only", "-w"]
    cmd += [f"-I{d}" for d in include_dirs] + [str(source)]
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    errors = "" if proc.returncode == 0 else "\n".join(line for line in proc.stderr.splitlines() if "error:" in line)[:6000]
    return source.name, time.perf_counter() - start, errors or ("" if proc.returncode == 0 else proc.stderr[-3000:])


def test_every_op_the_check_accepts_compiles_and_each_refusal_is_at_its_line(reference, catalogue, tmp_path):
    """Every functional op torchgen generates, under full_codegen with PyTorch's
    TorchScript options: the check refuses some, each at its own line; every
    translation unit of the rest compiles (and the IR header without
    TorchScript lowerings too)."""
    require(reference_available() is None, f"reference unavailable: {reference_available()}")
    include_dirs = torch_include_dirs()
    require(include_dirs, "torch's C++ headers are not installed")
    probe = reference.probe()
    every = [op for op, info in probe.items() if info["kind"] == "functional" and info["full_codegen_ok"]]
    assert len(every) > 1000

    # Refused: exactly the ops refusals() names, each at its own line.
    yaml = _yaml(tmp_path / "every.yaml", full_codegen=every)
    errors = _errors(yaml, **TS_OPTIONS)
    by_line = {_line(yaml, op): op for op in every}
    refused = {by_line[d.line] for d in errors}
    assert all(f"the code generated for '{by_line[d.line]}' under 'full_codegen' would not compile: " in d.message for d in errors)
    expected = compilable.refusals(catalogue, [(op, "full_codegen") for op in every], node_base="TsNode", ts_lowerings=True)
    assert refused == {r.op for r in expected}
    assert len(errors) == len(expected)
    rules = {rule: len({r.op for r in expected if r.rule == rule}) for rule in compilable.RULES}
    print("refused ops per rule:", rules, "of", len(every), "ops; refused:", len(refused))
    assert rules["returns"] and rules["class-name"] and rules["string-default"]

    # Accepted: generate as a new backend would (the shape header written by
    # --write-missing-shapes on the first run), then compile everything.
    accepted = [op for op in every if op not in refused]
    work = tmp_path / "backend"
    work.mkdir()
    yaml = _yaml(work / "accepted.yaml", full_codegen=accepted)
    flags = ["--node-base", "TsNode", "--node-base-hdr", TS_OPTIONS["node_base_hdr"], "--build-in-tree", "--backend-name", "TorchScript"]
    lazygen = [sys.executable, "-m", "lazygen", "-s", str(yaml)]
    first = subprocess.run(lazygen + ["-o", "gen", "--gen-ts-lowerings", *flags, "--write-missing-shapes", "shapes/shape_inference.h"],
                           cwd=work, capture_output=True, text=True)
    assert first.returncode == 1 and ": error: " in first.stderr and "would not compile" not in first.stderr
    for out, extra in (("gen", ["--gen-ts-lowerings"]), ("plain", [])):
        proc = subprocess.run(lazygen + ["-o", out, *extra, *flags, "--shape-inference-hdr", "shapes/shape_inference.h"],
                              cwd=work, capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
    headers = {}
    for out in ("gen", "plain"):
        headers[out] = work / f"{out}_headers.cpp"
        headers[out].write_text("".join(f"#include <{out}/{name}>\n" for name in ("LazyIr.h", "LazyNonNativeIr.h", "LazyNativeFunctions.h")))
    # Longest first, so two compilers finish together.
    sources = [work / "gen" / "RegisterLazy.cpp", work / "gen" / "LazyNativeFunctions.cpp", headers["gen"], headers["plain"],
               work / "shapes" / "shape_inference.h.cpp"]
    assert sorted(p.name for p in (work / "gen").glob("*.cpp")) == ["LazyNativeFunctions.cpp", "RegisterLazy.cpp"]
    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=min(2, os.cpu_count() or 1)) as pool:
        results = list(pool.map(lambda s: _compile(s, [work, *include_dirs]), sources))
    print(f"compiled {len(sources)} TUs in {time.perf_counter() - start:.0f} s:", ", ".join(f"{n} {t:.0f} s" for n, t, _ in results))
    failures = [f"{name}:\n{errors}" for name, _, errors in results if errors]
    assert not failures, "\n".join(failures)
