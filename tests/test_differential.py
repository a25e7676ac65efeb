"""lazygen against the reference (torchgen from torch==2.13.0, run live):
the same inputs and options must give byte-identical files."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from lazygen import compilable
from lazygen.api import generate
from lazygen.catalogue import NativeFunctionsGroup
from lazygen.catalogue_cache import load_catalogue
from lazygen.cpp import kernel_name
from lazygen.kernel_view import shape_declaration, uses_meta_shapes
from lazygen.locate import default_aten_path, torch_include_dir
from lazygen.options import Options
from tests.reference import reference_available, require

DATA = Path(__file__).parent / "data"
TS_YAML = DATA / "ts_native_functions.yaml"
GENERATED_BY = "torchgen/gen.py"  # what the reference driver makes torchgen print

# PyTorch's own options for its TorchScript backend (tools/setup_helpers/generate_code.py).
TS_OPTIONS = dict(
    node_base="TsNode",
    node_base_hdr="torch/csrc/lazy/ts_backend/ts_node.h",
    gen_ts_lowerings=True,
    build_in_tree=True,
    backend_name="TorchScript",
)

# A torch_xla-like configuration: every customisation keyword set.
XLA_OPTIONS = dict(
    node_base="XlaNode",
    node_base_hdr="torch_xla/csrc/ir.h",
    tensor_class="torch_xla::XLATensor",
    tensor_class_hdr="torch_xla/csrc/tensor.h",
    use_lazy_shape=False,
    per_operator_headers=True,
    backend_name="XLA",
    backend_namespace="torch_xla",
    get_tensorlist="GetTsTensorList",
    get_tensor_or_wrap_number="GetXlaTensorOrCreateForWrappedNumber",
    try_get_tensor="TryGetXlaTensor",
    metrics_counter='TORCH_LAZY_FN_COUNTER("xla::")',
    create_tensor="XLATensor::Create",
    create_from_first_tensor=True,
    create_aten_from_ltc_tensor="bridge::AtenFromXlaTensor",
    tuple_aten_from_ltc_tensors="bridge::TupleAtenFromXlaTensors",
    lazy_value_class="torch_xla::XlaValue",
    lazy_tensor_ptr="XLATensorPtr",
    get_device_fn="bridge::GetXlaDevice",
)


@pytest.fixture(scope="module")
def ref(reference):
    require(reference_available() is None, f"reference unavailable: {reference_available()}")
    return reference


@pytest.fixture(scope="module")
def probe(ref):
    return ref.probe()


@pytest.fixture(scope="module")
def catalogue():
    aten = default_aten_path()
    require(aten is not None, "torchgen's native_functions.yaml is not installed")
    return load_catalogue(aten / "native" / "native_functions.yaml", aten / "native" / "tags.yaml")


def run_lazygen(yaml: Path, out: Path, include_prefix: str, **options) -> dict[str, bytes]:
    lazygen_opts = {k: v for k, v in options.items() if k != "shape_inference_file"}
    shape_file = options.get("shape_inference_file")
    result = generate(
        Options(
            source_yaml=yaml,
            output_dir=str(out),
            include_prefix=include_prefix,
            generated_by=GENERATED_BY,
            shape_inference_file=Path(shape_file) if shape_file else None,
            **lazygen_opts,
        )
    )
    assert not result.removed
    return {p.name: p.read_bytes() for p in result.outputs}


def assert_same(expected: dict[str, bytes], actual: dict[str, bytes]) -> None:
    assert sorted(actual) == sorted(expected)
    for name in expected:
        if actual[name] != expected[name]:
            exp, act = expected[name].decode().splitlines(), actual[name].decode().splitlines()
            first = next((i for i, (a, b) in enumerate(zip(exp, act)) if a != b), min(len(exp), len(act)))
            pytest.fail(
                f"{name} differs at line {first + 1}:\n"
                f"  reference: {exp[first] if first < len(exp) else '<end>'!r}\n"
                f"  lazygen:   {act[first] if first < len(act) else '<end>'!r}"
            )


def compare(ref, tmp_path: Path, yaml: Path, allow_uncompilable: bool = False, **options) -> dict[str, bytes]:
    ref_dir = tmp_path / "reference"
    expected = ref.generate(yaml, ref_dir, generated_by=GENERATED_BY, **options)
    actual = run_lazygen(yaml, tmp_path / "lazygen", str(ref_dir), allow_uncompilable=allow_uncompilable, **options)
    assert_same(expected, actual)
    return actual


def write_yaml(path: Path, **sections) -> Path:
    lines = []
    for key, value in sections.items():
        if isinstance(value, list):
            lines.append(f"{key}:")
            lines += [f"- {v}" for v in value]
        else:
            lines.append(f"{key}: {value}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def shape_header(tmp_path: Path, probe: dict, ops: list[str], extra: list[str] = ()) -> Path:
    """A shape-inference header declaring every compute_shape_* the ops need,
    as the reference spells them (the probe's are for non-SymInt kernels;
    `extra` adds others)."""
    decls = [d for op in ops for d in probe[op].get("shape_decls") or []] + list(extra)
    path = tmp_path / "shape_inference.h"
    path.write_text("#pragma once\n" + "\n".join(decls) + "\n", encoding="utf-8")
    return path


# ------------------------------------------------------------------ TS yaml


def test_ts_backend_with_pytorch_options_matches_reference_and_the_wheel(ref, tmp_path):
    """Relative output folders on both sides, as PyTorch's build uses, so the
    #include lines themselves are compared too."""
    ref_cwd, lg_cwd = tmp_path / "ref", tmp_path / "lg"
    ref_cwd.mkdir()
    lg_cwd.mkdir()
    expected = ref.generate(TS_YAML, "generated", cwd=ref_cwd, generated_by=GENERATED_BY, **TS_OPTIONS)
    cmd = [sys.executable, "-m", "lazygen", "-s", str(TS_YAML), "-o", "generated", "--generated-by", GENERATED_BY,
           "--node-base", "TsNode", "--node-base-hdr", "torch/csrc/lazy/ts_backend/ts_node.h",
           "--gen-ts-lowerings", "--build-in-tree", "--backend-name", "TorchScript"]
    proc = subprocess.run(cmd, cwd=lg_cwd, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    actual = {p.name: p.read_bytes() for p in (lg_cwd / "generated").iterdir() if not p.name.startswith(".")}
    assert_same(expected, actual)
    assert b"#include <generated/LazyIr.h>" in actual["LazyNativeFunctions.cpp"]

    # The wheel ships these headers as PyTorch generated them, inside a guard.
    wheel = torch_include_dir() / "torch" / "csrc" / "lazy" / "generated"
    for name in ("LazyIr.h", "LazyNonNativeIr.h", "LazyNativeFunctions.h"):
        lines = (wheel / name).read_bytes().split(b"\n")
        assert lines[0].startswith(b"#if !defined(TORCH_STABLE_ONLY)"), lines[0]
        guard_end = next(i for i in range(len(lines) - 1, 0, -1) if lines[i].startswith(b"#endif"))
        # ... and a blank line, #else, #error, #endif at the bottom.
        assert lines[guard_end - 3] == b"" and lines[guard_end - 2] == b"#else" and lines[guard_end - 1].startswith(b"#error")
        unguarded = b"\n".join(lines[1 : guard_end - 3]) + b"\n"
        assert actual[name] == unguarded, name


def test_ts_backend_with_default_options(ref, tmp_path):
    compare(ref, tmp_path, TS_YAML)


@pytest.mark.parametrize(
    "variant",
    [dict(per_operator_headers=True), dict(gen_forced_fallback_code=True), dict(per_operator_headers=True, gen_forced_fallback_code=True)],
    ids=["per_operator_headers", "forced_fallback", "both"],
)
def test_ts_backend_source_variants(ref, tmp_path, variant):
    compare(ref, tmp_path, TS_YAML, **TS_OPTIONS, **variant)


# ------------------------------------------------------------------ every op


def _functional_full_codegen_ops(probe) -> list[str]:
    return [op for op, info in probe.items() if info["kind"] == "functional" and info["full_codegen_ok"]]


def _compilable_ops(probe, catalogue) -> list[str]:
    """The functional ops the reference generates and whose code compiles (lazygen.compilable)."""
    return compilable.accepted(catalogue, _functional_full_codegen_ops(probe))


@pytest.mark.parametrize("options", [TS_OPTIONS, {}], ids=["ts", "defaults"])
def test_every_generatable_op_under_full_codegen(ref, probe, tmp_path, options):
    """Every op torchgen accepts, with --allow-uncompilable: torchgen's bytes,
    also for the ops whose code would not compile."""
    ops = _functional_full_codegen_ops(probe)
    assert len(ops) > 1000
    yaml = write_yaml(tmp_path / "every_op.yaml", backend="Lazy", cpp_namespace="torch::lazy", full_codegen=ops)
    compare(ref, tmp_path, yaml, allow_uncompilable=True, shape_inference_file=str(shape_header(tmp_path, probe, ops)), **options)


@pytest.mark.parametrize("options", [TS_OPTIONS, {}], ids=["ts", "defaults"])
def test_every_compilable_op_under_full_codegen(ref, probe, catalogue, tmp_path, options):
    """Without the flag: every op the compilability check accepts gives torchgen's bytes."""
    ops = _compilable_ops(probe, catalogue)
    assert 1000 < len(ops) < len(_functional_full_codegen_ops(probe))
    yaml = write_yaml(tmp_path / "every_op.yaml", backend="Lazy", cpp_namespace="torch::lazy", full_codegen=ops)
    compare(ref, tmp_path, yaml, shape_inference_file=str(shape_header(tmp_path, probe, ops)), **options)


def test_every_op_under_supported(ref, probe, tmp_path):
    ops = [op for op, info in probe.items() if info["supported_ok"]]
    assert len(ops) > 2500
    yaml = write_yaml(tmp_path / "supported.yaml", backend="Lazy", cpp_namespace="torch::lazy", supported=ops)
    compare(ref, tmp_path, yaml, per_operator_headers=True)


def test_ops_the_reference_cannot_generate_are_rejected_one_by_one(probe, catalogue, tmp_path):
    """Each functional op the reference fails on under full_codegen gets a
    diagnostic at its own line; the others none."""
    bad = [op for op, info in probe.items() if info["kind"] == "functional" and not info["full_codegen_ok"]]
    good = _compilable_ops(probe, catalogue)[:50]
    ops = bad + good
    yaml = write_yaml(tmp_path / "bad.yaml", backend="Lazy", cpp_namespace="torch::lazy", full_codegen=ops)
    proc = subprocess.run([sys.executable, "-m", "lazygen", "-s", str(yaml), "-o", str(tmp_path / "out"), "--no-shape-inference-check"],
                          capture_output=True, text=True)
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    lines_with_errors = {int(line.split(":")[1]) for line in proc.stderr.splitlines() if ": error: " in line}
    first_op_line = 4  # backend, cpp_namespace, full_codegen:
    rejected = {ops[n - first_op_line] for n in lines_with_errors}
    assert rejected == set(bad)
    assert not (tmp_path / "out").exists()


# ------------------------------------------------------- torch_xla-like config


def symint_shape_decls(catalogue, ops: list[str]) -> list[str]:
    """compute_shape_*_symint declarations; if lazygen spelled one wrong, the
    reference's own check would fail on the header."""
    decls = []
    for op in ops:
        f = catalogue.by_name[op]
        if not uses_meta_shapes(f):
            decls.append(shape_declaration(f, kernel_name(f.func) + "_symint", True))
    return decls


def _xla_yaml(tmp_path: Path, probe: dict, catalogue) -> tuple[Path, list[str]]:
    """A few hundred mixed ops: full_codegen, supported (functional, inplace,
    out=, view, _copy), autograd and symint, picked deterministically."""
    def has_tensor_arg(op: str) -> bool:
        # With a custom lazy_value_class torchgen does not treat Tensor[] as
        # an IR value, so generated kernels need a plain tensor argument.
        return any(str(a.type) in ("Tensor", "Tensor?") for a in catalogue.by_name[op].func.arguments.flat_non_out)

    full = [op for op in _compilable_ops(probe, catalogue) if has_tensor_arg(op)][::12]
    taken = set(full)
    supported, autograd, symint = [], [], []
    for i, item in enumerate(catalogue.grouped):
        fs = list(item.functions()) if isinstance(item, NativeFunctionsGroup) else [item]
        names = [f.op for f in fs]
        if taken & set(names) or not all(probe[n]["supported_ok"] for n in names):
            continue
        if i % 9 == 0:
            supported += names
        elif i % 9 == 4 and len(autograd) < 20:
            autograd += names[:1]
        else:
            continue
        taken |= set(names)
    for extra in ("view_copy", "expand_copy", "permute_copy", "view", "as_strided"):
        if extra not in taken and probe.get(extra, {}).get("supported_ok"):
            supported.append(extra)
            taken.add(extra)
    symint = [op for op in full + supported if catalogue.by_name[op].func.has_symint()][:15]
    yaml = write_yaml(tmp_path / "xla.yaml", backend="XLA", cpp_namespace="torch_xla", full_codegen=full,
                      supported=supported, autograd=autograd, symint=symint)
    assert 200 <= len(full) + len(supported) + len(autograd) <= 800
    return yaml, full, symint


def test_torch_xla_style_configuration(ref, probe, catalogue, tmp_path):
    yaml, full, symint = _xla_yaml(tmp_path, probe, catalogue)
    header = shape_header(tmp_path, probe, full, symint_shape_decls(catalogue, [op for op in symint if op in full]))
    compare(ref, tmp_path, yaml, shape_inference_hdr="torch_xla/csrc/shape_inference.h",
            shape_inference_file=str(header), **XLA_OPTIONS)


# ------------------------------------------- ir_gen, non_native, symint, namespaces

FEATURES_YAML = """\
backend: PrivateUse1
cpp_namespace: my_company::lazy_backend
class_name: IgnoredByLazyCodegen
full_codegen:
- abs
- add.Tensor
- addcmul
- native_layer_norm
- expand_copy
- new_empty_strided
- bernoulli.p
symint:
- expand_copy
- new_empty_strided
supported:
- empty.memory_format
- _copy_from
ir_gen:
- cat
- max.dim
- _to_copy
non_native:
- func: scalar(Scalar value, ScalarType type) -> Tensor
  opkind: at::prim::Constant
  properties:
  - ShapeCompute
  - TreatScalarsAsConstants
- func: expand(Tensor input, int[] size, bool is_scalar_expand) -> Tensor
- func: cast(Tensor input, ScalarType dtype, ScalarType? stype) -> Tensor
  opkind: ltc_cast
  properties:
  - ShapeCompute
- func: device_data(str name, SymInt[] sizes, str? note) -> Tensor
  properties:
  - CanBeReusedDeclOnly
  - CreateFnDeclOnly
  - LowerDeclOnly
  - ShapePrecompute
- func: generic_slice(Tensor self, SymInt start, SymInt? end, float? step) -> Tensor
  properties:
  - CreateFn
  - ShapeCache
  - Lower
- func: pair(Tensor a, Tensor? b, Scalar? alpha) -> (Tensor, Tensor)
  properties:
  - CanBeReused
"""


@pytest.mark.parametrize("options", [TS_OPTIONS, {}], ids=["ts", "defaults"])
def test_ir_gen_non_native_symint_and_two_level_namespace(ref, probe, catalogue, tmp_path, options):
    yaml = tmp_path / "features.yaml"
    yaml.write_text(FEATURES_YAML, encoding="utf-8")
    full = ["abs", "add.Tensor", "addcmul", "native_layer_norm", "bernoulli.p"]
    header = shape_header(tmp_path, probe, full, symint_shape_decls(catalogue, ["expand_copy", "new_empty_strided"]))
    actual = compare(ref, tmp_path, yaml, shape_inference_file=str(header), **options)
    assert b"namespace my_company {\nnamespace lazy_backend {" in actual["LazyIr.h"]
    assert b"class Scalar : public" in actual["LazyNonNativeIr.h"]
