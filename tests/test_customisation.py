"""Customising the generated C++ without Python subclassing.

torch_xla and torch-mlir customise torchgen by subclassing GenLazyIR and
GenLazyNativeFuncDefinition. Each case below writes such a subclass (run by
the live reference, in its own process) and the lazygen template override
meant to be its equivalent, and checks that both give the same bytes. Each
case also checks that its customisation shows in the output, so a pair that
both ignored it would fail.

The override tests for depfile and no-op runs need no reference.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from lazygen.api import generate
from lazygen.options import Options

DATA = Path(__file__).parent / "data"
TS_YAML = DATA / "ts_native_functions.yaml"
GENERATED_BY = "torchgen/gen.py"  # what the reference driver makes torchgen print

# The reference side: torchgen subclasses, loaded by tests/reference_driver.py.
GENERATORS = '''
from torchgen.api.translate import translate
from torchgen.api.types import DispatcherSignature, OptionalCType
from torchgen.dest.lazy_ir import (
    GenLazyIR,
    GenLazyNativeFuncDefinition,
    aten_symbol,
    node_ctor_inputs,
)


class DeclaredLower(GenLazyIR):
    """torch_xla's way: Lower() is only declared; it is written by hand."""

    def lowering_function(self, schema):
        return "torch_xla::XlaOpVector Lower(LoweringContext* loctx) const override;"


class BuilderLower(GenLazyIR):
    """A Lower() body that hands every operand and scalar to a builder."""

    def lowering_function(self, schema):
        scalars = "".join(f", {a.name}" for a in schema.filtered_args(values=False, scalars=True))
        wrap = "ReturnOps" if len(schema.returns) > 1 else "ReturnOp"
        return f"""torch_xla::XlaOpVector Lower(LoweringContext* loctx) const override {{
    std::vector<xla::XlaOp> inputs;
    for (const torch::lazy::Output& operand : operands()) {{
      inputs.push_back(loctx->GetOutputOp(operand));
    }}
    return {wrap}(Build{schema.node_name}(inputs{scalars}), loctx);
  }}"""


class ShapeFnNodes(GenLazyIR):
    """The node base gets a lambda computing the shape, as XlaNode does."""

    def node_base_ctor_call(self, schema):
        operands = [
            f"{a.name}.value_or(kNullValue)" if isinstance(a.lazy_type, OptionalCType) else a.name
            for a in schema.filtered_args(values=True, scalars=False)
        ]
        shape_args = ", ".join(a.name for a in schema.filtered_args())
        hashes = ", ".join(a.name for a in schema.filtered_args(values=False, scalars=True))
        return (
            f"{self.node_base}({schema.node_name}::ClassOpKind(), OpList{{{', '.join(operands)}}},\\n"
            f"              [&]() {{ return {schema.node_name}OutputShape({shape_args}); }},\\n"
            f"              /* num_outputs */ {len(schema.returns)}, torch::lazy::MHash({hashes}))"
        )


class ReusableNodes(GenLazyIR):
    """A Create() that reuses nodes, and CanBeReused() comparing scalars."""

    def create_function(self, schema, node_ctor_args):
        args = ", ".join(a.name for a in schema.filtered_args())
        return (
            f"static torch::lazy::NodePtr Create({node_ctor_args}) {{\\n"
            f"    return torch::lazy::ReuseOrMakeNode<{schema.node_name}>({args});\\n"
            "  }"
        )

    def can_be_reused_function(self, schema, node_ctor_args):
        checks = [f"this->{a.name} == {a.name}" for a in schema.filtered_args(values=False, scalars=True)]
        return (
            f"bool CanBeReused({node_ctor_args}) const {{\\n"
            f"    return {' && '.join(checks) or 'true'};\\n"
            "  }"
        )


class NoShapeKernels(GenLazyNativeFuncDefinition):
    """Nodes work out their own shapes: no shape inference in the kernel."""

    def shape_inference(self, func, schema):
        return ""

    def build_ir_node(self, func, schema):
        inputs = node_ctor_inputs(schema)
        return f"""torch::lazy::NodePtr node = torch::lazy::ReuseNode<{schema.node_name}>({inputs});
        if (!node) {{
            node = torch::lazy::MakeNode<{schema.node_name}>({inputs});
            CacheNode(node);
        }}
        """


class TimedKernels(GenLazyNativeFuncDefinition):
    """Own metrics, own tensor factory, and a counter before shape inference."""

    def metrics(self, func, schema):
        return f"""TORCH_LAZY_FN_COUNTER("my_backend::");
        TORCH_LAZY_TIMED("my_backend::{schema.aten_name}");"""

    def create_lazy_tensor(self, first_tensor_name=None):
        return "my_backend::MyTensor::Create"

    def shape_inference(self, func, schema):
        return "MY_BACKEND_COUNT_SHAPES();" + super().shape_inference(func, schema)


class OwnFallback(GenLazyNativeFuncDefinition):
    """Every kernel can fall back to eager, under the backend's own switch."""

    def force_eager_fallback(self, func, schema, metadata, sig):
        target = DispatcherSignature.from_schema(schema.func)
        args = ", ".join(e.expr for e in translate(sig.arguments(), target.arguments()))
        overload = func.func.name.overload_name
        op = f"ATEN_OP2({schema.aten_name}, {overload})" if overload else f"ATEN_OP({schema.aten_name})"
        return f"""if (my_backend::MustFallBack({aten_symbol(schema)})) {{
            return at::native::call_fallback_fn_symint<&my_backend::fallback, {op}>::call({args});
        }}"""
'''

# The lazygen side: override templates, one folder per case.
IR = '{% extends "lazygen/ir_node.j2" %}\n'
KERNEL = '{% extends "lazygen/native_function.j2" %}\n'

DECLARED_LOWER = IR + """\
{% block lowering_function %}torch_xla::XlaOpVector Lower(LoweringContext* loctx) const override;{% endblock %}
"""

BUILDER_LOWER = IR + """\
{% block lowering_function %}
torch_xla::XlaOpVector Lower(LoweringContext* loctx) const override {
    std::vector<xla::XlaOp> inputs;
    for (const torch::lazy::Output& operand : operands()) {
      inputs.push_back(loctx->GetOutputOp(operand));
    }
    return {{ "ReturnOps" if node.num_outputs > 1 else "ReturnOp" }}(Build{{ node.name }}(inputs{% for a in node.schema.scalar_args %}, {{ a.name }}{% endfor %}), loctx);
  }
{%- endblock %}
"""

SHAPE_FN_NODES = IR + """\
{% block node_base_ctor_call %}
{{ node.node_base }}({{ node.name }}::ClassOpKind(), {{ names.OpList }}{{ "{" ~ node.base_ctor_value_args ~ "}" }},
              [&]() { return {{ node.name }}OutputShape({{ node.schema.filtered_args() | map(attribute="name") | join(", ") }}); },
              /* num_outputs */ {{ node.num_outputs }}, torch::lazy::MHash({{ node.scalar_hashes }}))
{%- endblock %}
"""

REUSABLE_NODES = IR + """\
{% block create_function %}
static torch::lazy::NodePtr Create({{ node.reuse_args }}) {
    return torch::lazy::ReuseOrMakeNode<{{ node.name }}>({{ node.schema.filtered_args() | map(attribute="name") | join(", ") }});
  }
{%- endblock %}
{% block can_be_reused_function %}
bool CanBeReused({{ node.reuse_args }}) const {
    return {% for a in node.schema.scalar_args %}{{ " && " if not loop.first }}this->{{ a.name }} == {{ a.name }}{% else %}true{% endfor %};
  }
{%- endblock %}
"""

NO_SHAPE_KERNELS = KERNEL + """\
{% block build_ir_node %}
torch::lazy::NodePtr node = torch::lazy::ReuseNode<{{ k.schema.node_name }}>({{ k.node_ctor_inputs }});
        if (!node) {
            node = torch::lazy::MakeNode<{{ k.schema.node_name }}>({{ k.node_ctor_inputs }});
            {{ names.CacheNode }}(node);
        }
{% endblock %}
"""

TIMED_KERNELS = KERNEL + """\
{% block metrics %}
TORCH_LAZY_FN_COUNTER("my_backend::");
        TORCH_LAZY_TIMED("my_backend::{{ k.schema.aten_name }}");
{%- endblock %}
{% block create_lazy_tensor %}my_backend::MyTensor::Create{% endblock %}
{% block shape_inference %}MY_BACKEND_COUNT_SHAPES();{{ super() }}{% endblock %}
"""

OWN_FALLBACK = KERNEL + """\
{% block gen_fallback_code %}
if (my_backend::MustFallBack({{ k.aten_symbol }})) {
            return at::native::call_fallback_fn_symint<&my_backend::fallback, {{ k.fallback_op }}>::call({{ k.fallback_args | join(", ") }});
        }
{%- endblock %}
"""


@dataclass(frozen=True)
class Case:
    templates: dict[str, str]  # override file name -> text
    reference: dict[str, str]  # run_gen_lazy_tensor generator keyword -> class in GENERATORS
    options: dict = field(default_factory=dict)  # options both sides get
    shows: tuple[str, bytes, int] = ("", b"", 0)  # (file, text, at least this many times)


CASES = {
    # (1) torch_xla's Lower(): declared only, or with a generated body.
    "lowering_declared": Case(
        {"ir_node.j2": DECLARED_LOWER},
        {"lazy_ir_generator": "DeclaredLower"},
        shows=("LazyIr.h", b"  torch_xla::XlaOpVector Lower(LoweringContext* loctx) const override;\n", 100),
    ),
    "lowering_body": Case(
        {"ir_node.j2": BUILDER_LOWER},
        {"lazy_ir_generator": "BuilderLower"},
        shows=("LazyIr.h", b"    return ReturnOps(BuildNativeLayerNorm(inputs, normalized_shape, eps), loctx);\n", 1),
    ),
    # (2) XlaNode(op, operands, shape lambda, num_outputs, hash).
    "node_base_ctor_call": Case(
        {"ir_node.j2": SHAPE_FN_NODES},
        {"lazy_ir_generator": "ShapeFnNodes"},
        options=dict(node_base="XlaNode", node_base_hdr="torch_xla/csrc/ir.h", use_lazy_shape=False),
        shows=("LazyIr.h", b"      : XlaNode(LogSoftmax::ClassOpKind(), OpList{self},\n"
               b"              [&]() { return LogSoftmaxOutputShape(self, dim, half_to_float); },\n"
               b"              /* num_outputs */ 1, torch::lazy::MHash(dim, half_to_float)),\n", 1),
    ),
    "create_and_can_be_reused": Case(
        {"ir_node.j2": REUSABLE_NODES},
        {"lazy_ir_generator": "ReusableNodes"},
        shows=("LazyIr.h", b"    return torch::lazy::ReuseOrMakeNode<", 100),
    ),
    # (3) Nodes built without shapes: no shape inference in the kernels.
    "build_ir_node_without_shapes": Case(
        {"native_function.j2": NO_SHAPE_KERNELS},
        {"native_func_definition_generator": "NoShapeKernels"},
        options=dict(use_lazy_shape=False),
        shows=("LazyNativeFunctions.cpp", b"            node = torch::lazy::MakeNode<Abs>(lazy_self->GetIrValue());\n", 1),
    ),
    "metrics_create_lazy_tensor_shape_inference": Case(
        {"native_function.j2": TIMED_KERNELS},
        {"native_func_definition_generator": "TimedKernels"},
        shows=("LazyNativeFunctions.cpp", b"my_backend::MyTensor::Create(", 100),
    ),
    "gen_fallback_code": Case(
        {"native_function.j2": OWN_FALLBACK},
        {"native_func_definition_generator": "OwnFallback"},
        shows=("LazyNativeFunctions.cpp", b"<&my_backend::fallback, ATEN_OP2(add, Tensor)>::call(self, other, alpha);\n", 1),
    ),
}


@pytest.fixture(scope="module")
def generators_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("generators") / "custom_generators.py"
    path.write_text(GENERATORS, encoding="utf-8")
    return path


def write_templates(folder: Path, templates: dict[str, str]) -> Path:
    for name, text in templates.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text, encoding="utf-8")
    return folder


def first_difference(name: str, expected: bytes, actual: bytes) -> str:
    exp, act = expected.decode().splitlines(), actual.decode().splitlines()
    i = next((i for i, (a, b) in enumerate(zip(exp, act)) if a != b), min(len(exp), len(act)))
    return (
        f"{name} differs at line {i + 1}:\n"
        f"  reference: {exp[i] if i < len(exp) else '<end>'!r}\n"
        f"  lazygen:   {act[i] if i < len(act) else '<end>'!r}"
    )


@pytest.mark.parametrize("name", list(CASES))
def test_template_override_matches_torchgen_subclass(reference, generators_file, tmp_path, name):
    case = CASES[name]
    ref_dir = tmp_path / "reference"
    expected = reference.generate(
        TS_YAML, ref_dir, generated_by=GENERATED_BY, generators_file=generators_file, **case.reference, **case.options
    )
    result = generate(
        Options(
            source_yaml=TS_YAML,
            output_dir=tmp_path / "lazygen",
            include_prefix=str(ref_dir),  # the reference's #include lines name its folder
            generated_by=GENERATED_BY,
            template_dirs=(write_templates(tmp_path / "templates", case.templates),),
            **case.options,
        )
    )
    actual = {p.name: p.read_bytes() for p in result.outputs}
    assert sorted(actual) == sorted(expected)
    for file in expected:
        assert actual[file] == expected[file], first_difference(file, expected[file], actual[file])
    file, text, times = case.shows
    assert actual[file].count(text) >= times, f"the customisation does not show in {file}"


def test_the_stock_templates_give_none_of_the_customisations(tmp_path):
    """The texts the cases look for are not in the default output."""
    result = generate(Options(source_yaml=TS_YAML, output_dir=tmp_path / "out", check_shape_inference=False))
    actual = {p.name: p.read_bytes() for p in result.outputs}
    for case in CASES.values():
        file, text, _ = case.shows
        assert text not in actual[file]


# ------------------------------------------------ override templates are inputs

PLAIN_OVERRIDE = IR + "{% block lowering_function %}// {{ node.name }} lowers elsewhere{% endblock %}\n"
SMALL_YAML = "backend: Lazy\ncpp_namespace: torch::lazy\nfull_codegen:\n- abs\n- add.Tensor\n"


def test_overrides_are_listed_in_result_inputs_and_the_depfile(tmp_path):
    yaml = tmp_path / "backend.yaml"
    yaml.write_text(SMALL_YAML, encoding="utf-8")
    first = write_templates(tmp_path / "first", {"ir_node.j2": PLAIN_OVERRIDE})
    second = write_templates(tmp_path / "second", {"native_function.j2": TIMED_KERNELS, "notes/helpers.j2": "{# unused #}\n"})
    depfile = tmp_path / "out.d"
    result = generate(
        Options(source_yaml=yaml, output_dir=tmp_path / "out", template_dirs=(first, second),
                depfile=depfile, check_shape_inference=False)
    )
    overrides = [first / "ir_node.j2", second / "native_function.j2", second / "notes" / "helpers.j2"]
    for path in overrides:
        assert path in result.inputs
    deps = depfile.read_text(encoding="utf-8")
    for path in overrides:
        assert os.fspath(path) in deps
    # ... and the overrides were used.
    assert b"// Abs lowers elsewhere" in (tmp_path / "out" / "LazyIr.h").read_bytes()
    assert b"my_backend::MyTensor::Create" in (tmp_path / "out" / "LazyNativeFunctions.cpp").read_bytes()


def test_without_overrides_no_template_is_an_input(tmp_path):
    yaml = tmp_path / "backend.yaml"
    yaml.write_text(SMALL_YAML, encoding="utf-8")
    result = generate(Options(source_yaml=yaml, output_dir=tmp_path / "out", check_shape_inference=False))
    assert not [p for p in result.inputs if p.suffix == ".j2"]


def _cli(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, LAZYGEN_CACHE_DIR=str(tmp_path / "cache"))
    return subprocess.run([sys.executable, "-m", "lazygen", *args], capture_output=True, text=True, env=env, cwd=tmp_path)


def test_editing_or_adding_an_override_regenerates(tmp_path):
    """The no-op fast path must notice a changed or new override template."""
    yaml = tmp_path / "backend.yaml"
    yaml.write_text(SMALL_YAML, encoding="utf-8")
    templates = write_templates(tmp_path / "templates", {"ir_node.j2": PLAIN_OVERRIDE})
    args = ["-s", str(yaml), "-o", "out", "--no-shape-inference-check", "--template-dir", str(templates)]
    lazy_ir, kernels = tmp_path / "out" / "LazyIr.h", tmp_path / "out" / "LazyNativeFunctions.cpp"

    assert _cli(tmp_path, *args).returncode == 0
    assert b"// Abs lowers elsewhere" in lazy_ir.read_bytes()

    (templates / "ir_node.j2").write_text(PLAIN_OVERRIDE.replace("lowers elsewhere", "is lowered by hand"), encoding="utf-8")
    proc = _cli(tmp_path, *args)
    assert proc.returncode == 0, proc.stderr
    assert b"// Abs is lowered by hand" in lazy_ir.read_bytes()

    write_templates(templates, {"native_function.j2": TIMED_KERNELS})
    proc = _cli(tmp_path, *args)
    assert proc.returncode == 0, proc.stderr
    assert b"my_backend::MyTensor::Create" in kernels.read_bytes()


def test_depfile_from_the_cli_names_the_override(tmp_path):
    yaml = tmp_path / "backend.yaml"
    yaml.write_text(SMALL_YAML, encoding="utf-8")
    templates = write_templates(tmp_path / "templates", {"ir_node.j2": PLAIN_OVERRIDE})
    proc = _cli(tmp_path, "-s", str(yaml), "-o", "out", "--no-shape-inference-check",
                "--template-dir", str(templates), "--depfile", "out.d")
    assert proc.returncode == 0, proc.stderr
    assert os.fspath(templates / "ir_node.j2") in (tmp_path / "out.d").read_text(encoding="utf-8")
