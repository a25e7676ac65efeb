"""`lazygen explain`: its text and JSON for each kind of operator, checked
against what a generation run with the same options really writes (the
declaration is in the header, the m.impl line in the registration, the IR
class in LazyIr.h, the kernel in its shard) and against the run's own
diagnostics (a refused op, a missing shape function)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from lazygen.cli import main
from tests.reference import require, torch_include_dirs

TS_YAML = Path(__file__).resolve().parent / "data" / "ts_native_functions.yaml"

TS_OPTIONS = ["--gen-ts-lowerings", "--node-base", "torch::lazy::TsNode", "--node-base-hdr", "torch/csrc/lazy/ts_backend/ts_node.h"]

# Line numbers below are those of this text (line 1: "backend: Lazy").
YAML = """\
backend: Lazy
cpp_namespace: torch::lazy
full_codegen:
  - abs
  - add.Tensor
  - view_copy
  - logit
  - is_nonzero
supported:
  - _to_copy
  - empty.memory_format
symint:
  - view_copy
  - empty.memory_format
"""
LINE = {"abs": 4, "add.Tensor": 5, "view_copy": 6, "logit": 7, "is_nonzero": 8, "_to_copy": 10, "empty.memory_format": 11}
REFUSED = "is_nonzero"  # returns bool
UNDECLARED_SHAPE = "logit"  # torch's shape_inference.h has no compute_shape_logit


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    require(torch_include_dirs() is not None, "torch (with its C++ headers) is not installed: the shape check reads its header")
    root = tmp_path_factory.mktemp("explain")
    (root / "backend.yaml").write_text(YAML)
    # The same yaml without the refused op, so that a run can generate it.
    (root / "generable.yaml").write_text(YAML.replace(f"  - {REFUSED}\n", ""))
    return root


def explain(capsys, *args: str) -> tuple[int, str, str]:
    code = main(["explain", *args])
    out, err = capsys.readouterr()
    return code, out, err


def explain_json(capsys, work: Path, *ops: str, extra: tuple[str, ...] = ()) -> dict:
    code, out, err = explain(capsys, "-s", str(work / "backend.yaml"), *TS_OPTIONS, *extra, "--format", "json", *ops)
    assert code == 0, err
    doc = json.loads(out)
    assert doc["format"] == "lazygen-explain-1"
    return {o["op"]: o for o in doc["ops"]}


@pytest.fixture(scope="module")
def generated(work: Path) -> Path:
    """What a run with the same options writes (shape check off: logit's is missing)."""
    out = work / "out"
    assert main(["-s", str(work / "generable.yaml"), "-o", str(out), *TS_OPTIONS, "--no-shape-inference-check"]) == 0
    return out


def squashed(text: str) -> str:
    return re.sub(r"\s+", " ", text)


def test_generated_op_names_what_the_run_writes(work, generated, capsys):
    op = explain_json(capsys, work, "add.Tensor")["add.Tensor"]
    assert op["in_yaml"] and op["listed"] == [{"section": "full_codegen", "path": str(work / "backend.yaml"), "line": 5, "col": 5}]
    assert op["schema"] == "add.Tensor(Tensor self, Tensor other, *, Scalar alpha=1) -> Tensor"
    native = Path(op["catalogue"]["path"]).read_text().splitlines()
    assert native[op["catalogue"]["line"] - 1] == "- func: add.Tensor(Tensor self, Tensor other, *, Scalar alpha=1) -> Tensor"
    assert op["group"]["kind"] == "functional"
    assert {m["op"]: m["kind"] for m in op["group"]["members"]} == {"add.out": "out", "add_.Tensor": "inplace"}
    (a,) = op["as"]
    assert a["sections"] == ["full_codegen"] and a["refusals"] == [] and a["problems"] == []
    assert a["ir_node"] == {"class": "AddTensor", "file": "LazyIr.h"}
    assert "class AddTensor : public torch::lazy::TsNode {" in (generated / "LazyIr.h").read_text()
    (k,) = a["kernels"]
    assert (k["name"], k["origin"], k["defined_in"]) == ("add", "generated", "LazyNativeFunctions.cpp")
    assert k["declaration"] in (generated / "LazyNativeFunctions.h").read_text().splitlines()
    assert k["definition"] + " {" in squashed((generated / "LazyNativeFunctions.cpp").read_text())
    # Its own registration and the out= and inplace variants' (through its kernel), as RegisterLazy.cpp has them.
    register = squashed((generated / "RegisterLazy.cpp").read_text())
    assert {r["op"]: r["via"] for r in a["registrations"]} == {"add.Tensor": None, "add.out": "add.Tensor", "add_.Tensor": "add.Tensor"}
    for r in a["registrations"]:
        assert r["file"] == "RegisterLazy.cpp" and r["text"] in register, r
    # Structured: the meta function gives the shapes.
    assert a["shape_function"]["kind"] == "meta" and a["shape_function"]["declaration"] is None
    used = {(t["template"], t["block"]) for t in a["templates"]}
    assert {("ir_node.j2", "lowering_function"), ("native_function.j2", "shape_inference"), ("Register.cpp.j2", None),
            ("NativeFunctions.h.j2", None), ("LazyIr.h.j2", None)} <= used
    assert all(t["override"] is None for t in a["templates"])


def test_generated_op_text(work, capsys):
    code, out, _ = explain(capsys, "-s", str(work / "backend.yaml"), *TS_OPTIONS, "abs")
    assert code == 0
    assert out.startswith("abs\n")
    assert f"listed:     under full_codegen at {work / 'backend.yaml'}:4:5" in out
    assert "schema:     abs(Tensor self) -> Tensor" in out
    assert "IR class:    Abs in LazyIr.h" in out
    assert 'RegisterLazy.cpp: m.impl("abs", TORCH_FN(wrapper_Lazy__abs));' in out
    # abs is not structured: it calls a shape function that torch declares.
    assert "you provide TORCH_API std::vector<torch::lazy::Shape> compute_shape_abs(const at::Tensor & self);" in out
    assert "      declared in torch/csrc/lazy/core/shape_inference.h" in out
    assert "ir_node.j2 (node_class, node_base_ctor_call, create_function, can_be_reused_function, lowering_function)" in out


def test_supported_op_and_the_impl_file(work, generated, capsys, tmp_path):
    impl = tmp_path / "kernels.cpp"
    impl.write_text("at::Tensor LazyNativeFunctions::_to_copy(const at::Tensor& self) { return self; }\n")
    ops = explain_json(capsys, work, "_to_copy", "empty.memory_format", extra=("--impl-path", str(impl)))
    (a,) = ops["_to_copy"]["as"]
    assert a["sections"] == ["supported"] and a["ir_node"] is None and a["shape_function"] is None
    (k,) = a["kernels"]
    assert k["origin"] == "hand-written" and k["defined_in"] is None
    assert k["definition"].startswith("at::Tensor LazyNativeFunctions::_to_copy(const at::Tensor & self, ")
    assert k["declaration"] in (generated / "LazyNativeFunctions.h").read_text().splitlines()
    assert k["impl"] == {"path": str(impl), "definitions": 1, "expected": 1, "for": ["_to_copy"]}
    (e,) = ops["empty.memory_format"]["as"][0]["kernels"]
    assert e["impl"]["definitions"] == 0 and e["impl"]["expected"] == 1
    # The generation run's own check agrees that only empty is missing.
    code = main(["-s", str(work / "generable.yaml"), "-o", str(tmp_path / "o"), *TS_OPTIONS, "--no-shape-inference-check",
                 "--impl-path", str(impl), "--dry-run"])
    err = capsys.readouterr().err
    assert code == 1 and err.count(": error: ") == 1 and "LazyNativeFunctions::empty_symint" in err, err
    code, out, _ = explain(capsys, "-s", str(work / "backend.yaml"), "--impl-path", str(impl), "empty.memory_format")
    assert "defines 0 of 1 (empty.memory_format): MISSING" in out
    assert "define:    at::Tensor LazyNativeFunctions::empty_symint(c10::SymIntArrayRef size, " in out


def test_view_copy_and_symint_op(work, generated, capsys):
    ops = explain_json(capsys, work, "view_copy", "view")
    v = ops["view_copy"]
    assert [e["section"] for e in v["listed"]] == ["full_codegen", "symint"]
    assert v["group"]["view_copy"] and v["group"]["copy_of"] == "view"
    (k,) = v["as"][0]["kernels"]
    # Listed under symint: a c10::SymInt kernel, named so.
    assert k["name"] == "view_copy_symint" and k["symint"]
    assert "c10::SymIntArrayRef size" in k["declaration"]
    assert k["declaration"] in (generated / "LazyNativeFunctions.h").read_text().splitlines()
    assert v["as"][0]["shape_function"]["kind"] == "meta"
    assert "view_copy" in v["as"][0]["shape_function"]["why"]
    # The view itself: not in the yaml, and pointed at its _copy variant.
    view = ops["view"]
    assert not view["in_yaml"] and any("'view_copy' instead" in n for n in view["notes"])
    assert any("'symint'" in n for n in view["notes"])


def test_refused_op_gives_the_runs_reason(work, capsys, tmp_path):
    (a,) = explain_json(capsys, work, REFUSED)[REFUSED]["as"]
    (r,) = a["refusals"]
    assert r["rule"] == "returns" and "returns bool" in r["message"] and "supported" in r["hint"]
    code = main(["-s", str(work / "backend.yaml"), "-o", str(tmp_path / "o"), *TS_OPTIONS, "--no-shape-inference-check"])
    err = capsys.readouterr().err
    assert code == 1 and f"backend.yaml:{LINE[REFUSED]}:5: error: " in err and r["message"] in err
    code, out, _ = explain(capsys, "-s", str(work / "backend.yaml"), *TS_OPTIONS, REFUSED)
    assert code == 0 and f"REFUSED:     {r['message']} [returns]" in out


def test_op_missing_its_shape_function(work, capsys, tmp_path):
    s = explain_json(capsys, work, UNDECLARED_SHAPE)[UNDECLARED_SHAPE]["as"][0]["shape_function"]
    assert s["kind"] == "compute_shape" and s["declared"] is False
    assert s["declaration"].startswith("TORCH_API std::vector<torch::lazy::Shape> compute_shape_logit(")
    assert s["declaration"] not in Path(s["file"]).read_text()
    # The generation run asks for the same declaration.
    code = main(["-s", str(work / "generable.yaml"), "-o", str(tmp_path / "o"), *TS_OPTIONS, "--dry-run"])
    err = capsys.readouterr().err
    assert code == 1 and f"declare: {s['declaration']}" in err
    code, out, _ = explain(capsys, "-s", str(work / "backend.yaml"), UNDECLARED_SHAPE)
    assert "NOT declared in torch/csrc/lazy/core/shape_inference.h" in out
    code, out, _ = explain(capsys, "-s", str(work / "backend.yaml"), "--no-shape-inference-check", UNDECLARED_SHAPE)
    assert "not checked in" in out


def test_op_not_in_the_yaml_is_explained_both_ways(work, capsys, tmp_path):
    op = explain_json(capsys, work, "hardshrink")["hardshrink"]
    assert not op["in_yaml"] and op["listed"] == [] and op["registered_now"] == []
    full, supported = op["as"]
    assert (full["what_if"], supported["what_if"]) == ("full_codegen", "supported")
    assert full["ir_node"]["class"] == "Hardshrink" and full["kernels"][0]["origin"] == "generated"
    assert supported["ir_node"] is None and supported["kernels"][0]["origin"] == "hand-written"
    # What if: the same as a yaml listing it there really generates.
    yaml = tmp_path / "with.yaml"
    yaml.write_text(YAML.replace(f"  - {REFUSED}\n", "  - hardshrink\n"))
    assert main(["-s", str(yaml), "-o", str(tmp_path / "o"), *TS_OPTIONS, "--no-shape-inference-check"]) == 0
    capsys.readouterr()
    assert full["kernels"][0]["declaration"] in (tmp_path / "o" / "LazyNativeFunctions.h").read_text().splitlines()
    code, out, _ = explain(capsys, "-s", str(work / "backend.yaml"), "hardshrink")
    assert "not in the yaml:" in out and "as full_codegen (if listed):" in out and "as supported (if listed):" in out
    # An inplace variant of a listed op is registered already, through the functional kernel.
    now = explain_json(capsys, work, "abs_")["abs_"]["registered_now"]
    assert [(r["op"], r["via"]) for r in now] == [("abs_", "abs")]


def test_unknown_ops_are_one_diagnostic_each_with_close_names(work):
    proc = subprocess.run([sys.executable, "-m", "lazygen", "explain", "-s", str(work / "backend.yaml"), "relux", "abs", "add.Tensr"],
                          capture_output=True, text=True)
    assert proc.returncode == 1 and proc.stdout == "" and "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if ": error: " in line]
    assert len(errors) == 2
    assert "unknown operator 'relux'" in errors[0] and "unknown operator 'add.Tensr'" in errors[1]
    assert "did you mean 'relu'," in proc.stderr  # several close names
    assert re.search(r"note: its overloads are: .*\badd\.Tensor\b", proc.stderr)


def test_template_override_is_named_per_block(work, capsys, tmp_path):
    (tmp_path / "ir_node.j2").write_text('{% extends "lazygen/ir_node.j2" %}\n{% block lowering_function %}// mine{% endblock %}\n')
    (a,) = explain_json(capsys, work, "abs", extra=("--template-dir", str(tmp_path)))["abs"]["as"]
    overrides = {(t["template"], t["block"]): t["override"] for t in a["templates"]}
    assert overrides[("ir_node.j2", "lowering_function")] == str(tmp_path / "ir_node.j2")
    assert overrides[("ir_node.j2", "create_function")] is None
    assert overrides[("native_function.j2", "metrics")] is None


def test_shards_name_the_shard_files(work, capsys, tmp_path):
    (a,) = explain_json(capsys, work, "abs", extra=("--shards", "3"))["abs"]["as"]
    shard = a["shard"]
    assert a["ir_node"]["file"] == f"LazyIr_{shard}.h"
    (k,) = a["kernels"]
    assert k["defined_in"] == f"LazyNativeFunctions_{shard}.cpp"
    out = tmp_path / "o"
    assert main(["-s", str(work / "generable.yaml"), "-o", str(out), *TS_OPTIONS, "--no-shape-inference-check", "--shards", "3"]) == 0
    assert k["definition"] + " {" in squashed((out / k["defined_in"]).read_text())
    assert "class Abs : " in (out / a["ir_node"]["file"]).read_text()
    assert a["registrations"][0]["text"] in squashed((out / a["registrations"][0]["file"]).read_text())


def test_generation_command_line_unchanged(work, tmp_path, capsys):
    # `explain` is a word before the options; the generation command line has none.
    assert main(["-s", str(work / "generable.yaml"), "-o", str(tmp_path / "o"), "--list-outputs"]) == 0
    assert sorted(capsys.readouterr().out.split()) == [str(tmp_path / "o" / n) for n in
                                               ("LazyIr.h", "LazyNativeFunctions.cpp", "LazyNativeFunctions.h", "LazyNonNativeIr.h", "RegisterLazy.cpp")]

