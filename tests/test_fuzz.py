"""Property tests: mutated inputs never make lazygen raise anything but a
diagnostic.

1. Schema strings (real ones from torchgen's packaged native_functions.yaml,
   mutated) given to `parse_schema`: either a schema that prints back
   exactly, or SchemaError.
2. Backend yamls (small valid ones, mutated in structure and in text) given
   to the command line in-process with --dry-run: exit 0, or exit 1 with a
   `path:line:col: error:` / `path: error:` first line. Nothing is written.
3. Mutated schemas as `non_native` entries, through the same command line.

Examples are bounded and there is no deadline; in CI (CI set) the runs are
derandomized so a failure reproduces.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import re
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis import given

from lazygen import cli
from lazygen.schema import SchemaError, parse_schema
from reference import in_ci

settings.register_profile(
    "lazygen-fuzz",
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile("lazygen-fuzz-ci", parent=settings.get_profile("lazygen-fuzz"), derandomize=True, database=None)
PROFILE = settings.get_profile("lazygen-fuzz-ci" if in_ci() else "lazygen-fuzz")

# ---------------------------------------------------------------- schemas


def _native_functions_yaml() -> Path | None:
    """torchgen's packaged catalogue, found without importing torchgen."""
    spec = importlib.util.find_spec("torchgen")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        path = Path(folder) / "packaged" / "ATen" / "native" / "native_functions.yaml"
        if path.is_file():
            return path
    return None


def _real_schemas(count: int = 200) -> list[str]:
    path = _native_functions_yaml()
    if path is None:
        return []
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    entries = yaml.load(path.read_text(encoding="utf-8"), Loader=loader)
    funcs = sorted(e["func"] for e in entries if isinstance(e, dict) and "func" in e)
    step = max(1, len(funcs) // count)
    return funcs[::step][:count]


SCHEMAS = _real_schemas()
NO_SCHEMAS = "torchgen's packaged native_functions.yaml is not installed (pip install torch==2.13.0)"

# Pieces of the schema language (and some that are not) to splice in.
SCHEMA_VOCAB = [
    "Tensor", "Tensor?", "Tensor[]", "Tensor?[]", "Tensor(a)", "Tensor(a!)", "Tensor(a -> *)", "Tensor(a|b)",
    "(a!)", "(b)", "(a!) ", "int", "int[2]", "int[]", "int[0]", "SymInt", "SymInt[1]", "float?", "bool[3]", "Scalar",
    "ScalarType?", "Layout?", "Device?", "DeviceIndex", "MemoryFormat?", "Generator?", "Dimname[]", "str", "Storage",
    "__torch__.torch.classes.quantized.Conv2dPackedParamsBase", "Any", "*", "*, ", ", ", ",", "->", " -> ", "=",
    "=None", "=[]", "=[0,1]", "=1", "=True", "=\"x\"", "()", "(", ")", "[", "]", "?", "!", ".", "::", "_", "__",
    "self", "out", "_scratch_x", "dtype", "layout", "device", "pin_memory", "functional", " ", "  ", "", "\n", "\t",
    "é", "\x00", "\u200b", "a", "0",
]
_TOKEN_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*|[0-9]+|\s+|->|.", re.S)


@st.composite
def _text_edit(draw: st.DrawFn, text: str, vocab: list[str]) -> str:
    """One random edit of `text`: a character or token inserted, deleted,
    replaced, duplicated or swapped."""
    kind = draw(st.sampled_from(["insert", "delete", "replace-char", "swap-tokens", "duplicate-token", "replace-token"]))
    pos = draw(st.integers(0, len(text)))
    piece = draw(st.sampled_from(vocab) | st.text(max_size=3))
    if kind == "insert":
        return text[:pos] + piece + text[pos:]
    if kind == "delete":
        return text[:pos] + text[pos + draw(st.integers(1, 6)) :]
    if kind == "replace-char":
        return text[:pos] + draw(st.characters()) + text[pos + 1 :]
    tokens = _TOKEN_RE.findall(text)
    if not tokens:
        return piece
    i = draw(st.integers(0, len(tokens) - 1))
    j = draw(st.integers(0, len(tokens) - 1))
    if kind == "swap-tokens":
        tokens[i], tokens[j] = tokens[j], tokens[i]
    elif kind == "duplicate-token":
        tokens.insert(i, tokens[i])
    else:
        tokens[i] = piece
    return "".join(tokens)


@st.composite
def mutated_schemas(draw: st.DrawFn) -> str:
    text = draw(st.sampled_from(SCHEMAS))
    for _ in range(draw(st.integers(1, 3))):
        text = draw(_text_edit(text, SCHEMA_VOCAB))
    return text


def test_schema_sample_is_real() -> None:
    """The fuzzer starts from real schemas, and every one of them parses."""
    if not SCHEMAS:
        pytest.skip(NO_SCHEMAS)
    assert len(SCHEMAS) >= 190
    for text in SCHEMAS:
        assert str(parse_schema(text)) == text


@pytest.mark.skipif(not SCHEMAS, reason=NO_SCHEMAS)
@settings(PROFILE, max_examples=300)
@given(text=mutated_schemas())
def test_mutated_schema_parses_back_exactly_or_is_a_schema_error(text: str) -> None:
    try:
        schema = parse_schema(text)
    except SchemaError as err:
        assert str(err)
        event("SchemaError")
        return
    event("parsed")
    assert str(schema) == text
    assert parse_schema(str(schema)) == schema
    # What the catalogue and the generator ask of every accepted schema.
    schema.kind()
    assert str(schema.signature()) == schema.signature_key()


# ---------------------------------------------------------------- backend yamls

SEED_YAMLS = [
    "backend: Lazy\ncpp_namespace: torch::lazy\n",
    """\
backend: Lazy
cpp_namespace: torch::lazy
full_codegen:
  - abs
  - add.Tensor
supported:
  - empty.memory_format
autograd:
  - max_pool3d
ir_gen:
  - sum
symint:
  - expand
""",
    """\
backend: XLA
cpp_namespace: torch_xla
class_name: XLANativeFunctions
use_out_as_primary: true
device_guard: false
supported:
  - add.Tensor
  - view
full_codegen:
  - cos
non_native:
  - func: scalar(Scalar value, ScalarType type) -> Tensor
    opkind: at::prim::Constant
    properties:
      - ShapeCompute
      - TreatScalarsAsConstants
""",
]

KEYS = ["backend", "class_name", "cpp_namespace", "supported", "autograd", "full_codegen", "non_native", "ir_gen",
        "symint", "use_out_as_primary", "device_guard", "func", "properties", "opkind", "extra_headers", "backnd"]
OPS = ["abs", "abs_", "abs.out", "add.Tensor", "add_.Tensor", "add.out", "add", "add.Nope", "expand", "view", "sum",
       "max_pool3d", "_foreach_abs", "_assert_scalar", "_cufft_clear_plan_cache", "empty.memory_format", "cat",
       "split.Tensor", "native_batch_norm", "_to_copy", "index.Tensor", "bernoulli.p", "lift_fresh", "as_strided",
       "relu_", "normal_functional", "aten::abs", "abs.", ".abs", "::", "", "not_an_op"]
SCALARS = (
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8)
    | st.sampled_from(OPS + KEYS + ["Lazy", "XLA", "CPU", "../x", "torch::lazy", "a::b::c", "class", "ShapeCompute"])
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=5), inner, max_size=3),
    max_leaves=10,
)

YAML_VOCAB = [
    "&a ", "*a", "*b", "&a [*a]", "<<: *a\n", "!!python/object/apply:os.getcwd []", "!!python/name:os.sep ", "!!str ",
    "!!int ", "!!float ", "!!binary ", "!!set ", "!!omap ", "!foo ", "!<tag:x> ", "? ", ": ", "- ", "-", "[", "]", "{",
    "}", ",", "\n", "\n  ", "\t", "  ", "'", '"', "#", "---\n", "...\n", "%YAML 1.1\n", "%TAG ! tag:x:\n", "\ufeff",
    "\x00", "\x85", "\u2028", "é", "😀", "\\", "~", "null", "yes", "0x1F", ".inf", "2001-12-14", "1e3", "- abs\n",
    "  - add.Tensor\n", "supported:\n", "autograd: []\n", "non_native:\n  - func: f(Tensor self) -> Tensor\n",
]


@st.composite
def _structure_edit(draw: st.DrawFn, doc: Any) -> Any:
    """One random edit of the parsed document: a key set, dropped or
    retyped, a list element replaced, the value wrapped in a list or map."""
    if not isinstance(doc, dict) or not doc:
        return draw(VALUES) if draw(st.booleans()) else {draw(st.sampled_from(KEYS)): draw(VALUES)}
    doc = dict(doc)
    key = draw(st.sampled_from(sorted(doc, key=str)))
    kind = draw(st.sampled_from(["set", "drop", "retype", "element", "append-op", "wrap"]))
    if kind == "set":
        doc[draw(st.sampled_from(KEYS) | st.text(max_size=8))] = draw(VALUES)
    elif kind == "drop":
        del doc[key]
    elif kind == "retype":
        doc[key] = draw(VALUES)
    elif kind == "element" and isinstance(doc[key], list) and doc[key]:
        items = list(doc[key])
        items[draw(st.integers(0, len(items) - 1))] = draw(VALUES)
        doc[key] = items
    elif kind == "append-op":
        items = list(doc[key]) if isinstance(doc[key], list) else []
        doc[key] = items + [draw(st.sampled_from(OPS))]
    else:
        doc[key] = [doc[key]] if draw(st.booleans()) else {draw(st.sampled_from(KEYS)): doc[key]}
    return doc


@st.composite
def _well_formed_doc(draw: st.DrawFn) -> dict[str, Any]:
    """A yaml of the right shape with operators drawn from OPS, so the
    checks after parsing (catalogue, conflicts, generation) get exercised."""
    doc: dict[str, Any] = {"backend": draw(st.sampled_from(["Lazy", "XLA", "PrivateUse1"])), "cpp_namespace": "torch::lazy"}
    for key in draw(st.lists(st.sampled_from(["supported", "autograd", "full_codegen", "ir_gen", "symint"]), unique=True)):
        doc[key] = draw(st.lists(st.sampled_from(OPS), max_size=4))
    return doc


@st.composite
def mutated_yamls(draw: st.DrawFn) -> bytes:
    text = draw(st.sampled_from(SEED_YAMLS))
    if draw(st.integers(0, 3)) == 0:
        text = yaml.safe_dump(draw(_well_formed_doc()), sort_keys=False)
    elif draw(st.booleans()):
        doc = yaml.safe_load(text)
        for _ in range(draw(st.integers(1, 3))):
            doc = draw(_structure_edit(doc))
        text = yaml.safe_dump(doc, allow_unicode=draw(st.booleans()), default_flow_style=draw(st.sampled_from([None, False, True])),
                              sort_keys=False)
    for _ in range(draw(st.integers(0, 3))):
        text = draw(_text_edit(text, YAML_VOCAB))
    data = text.encode("utf-8", "surrogatepass")
    if draw(st.integers(0, 9)) == 0:  # now and then, bytes that are not UTF-8
        pos = draw(st.integers(0, len(data)))
        data = data[:pos] + draw(st.sampled_from([b"\xff", b"\xc3", b"\xed\xa0\x80", b"\xfe\xff"])) + data[pos:]
    return data


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A folder for the yaml under test, and lazygen's caches kept inside it."""
    folder = tmp_path_factory.mktemp("fuzz")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LAZYGEN_CACHE_DIR", str(folder / "cache"))
        yield folder


def _run(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = cli.main(argv)
    return status, out.getvalue(), err.getvalue()


def _check_cli(sandbox: Path, data: bytes) -> int:
    """Run a dry run and --list-outputs on the yaml; both either succeed or
    print a diagnostic for it. Returns the dry run's exit status."""
    source = sandbox / "backend_native_functions.yaml"
    source.write_bytes(data)
    out_dir = sandbox / "never-written"
    first_line = re.compile(re.escape(str(source)) + r"(?::(\d+):(\d+))?: error: \S")
    # YAML also breaks lines at \r, NEL, LS and PS; and may point just past the end.
    last_line = sum(data.count(b) for b in (b"\n", b"\r", "\x85".encode(), "\u2028".encode(), "\u2029".encode())) + 2
    statuses = []
    for extra in (["--dry-run", "--no-shape-inference-check"], ["--list-outputs"]):
        status, stdout, stderr = _run(["-s", str(source), "-o", str(out_dir), *extra])
        assert status in (0, 1), (status, stderr)
        if status == 1:
            m = first_line.match(stderr)
            assert m, stderr
            if m[1] is not None:
                assert 1 <= int(m[1]) <= last_line and int(m[2]) >= 1, stderr
        else:
            assert stderr == ""
        statuses.append(status)
    assert not out_dir.exists(), "a dry run or --list-outputs wrote the output folder"
    if statuses[0] == 0:
        assert statuses[1] == 0, "the full check accepts the yaml but --list-outputs does not"
    return statuses[0]


def test_seed_yamls_are_valid(sandbox: Path) -> None:
    """The mutations start from yamls lazygen accepts."""
    for text in SEED_YAMLS:
        assert _check_cli(sandbox, text.encode()) == 0


@settings(PROFILE, max_examples=150)
@given(data=mutated_yamls())
def test_mutated_backend_yaml_gives_a_diagnostic_never_an_exception(sandbox: Path, data: bytes) -> None:
    event(f"exit {_check_cli(sandbox, data)}")


@pytest.mark.skipif(not SCHEMAS, reason=NO_SCHEMAS)
@settings(PROFILE, max_examples=100)
@given(func=mutated_schemas(), props=st.lists(st.sampled_from(["ShapeCompute", "ShapeCache",
       "TreatScalarsAsConstants", "Lower", "LowerDeclOnly", "CanBeReused", "Nope"]), max_size=3))
def test_mutated_non_native_schema_gives_a_diagnostic_never_an_exception(sandbox: Path, func: str, props: list[str]) -> None:
    doc = {"backend": "Lazy", "cpp_namespace": "torch::lazy", "non_native": [{"func": func, "properties": props}]}
    event(f"exit {_check_cli(sandbox, yaml.safe_dump(doc, allow_unicode=True, sort_keys=False).encode('utf-8', 'surrogatepass'))}")
