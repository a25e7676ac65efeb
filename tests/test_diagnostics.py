"""Bad backend yamls: each one is reported as one `path:line:col: error:`
diagnostic (exit 1, no traceback) and leaves an earlier output tree alone.

Every case runs the real command line once, with `-o` pointing at a folder
a good yaml generated into, and checks that folder afterwards byte for byte
and mtime for mtime. Expected positions are computed from the yaml text the
test writes (the n-th occurrence of a marker), not taken from lazygen.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Union

import pytest

REPO = Path(__file__).resolve().parents[1]

GOOD_YAML = """\
backend: Lazy
cpp_namespace: torch::lazy
full_codegen:
  - abs
  - add.Tensor
supported:
  - empty.memory_format
autograd:
  - max_pool3d
non_native:
  - func: scalar(Scalar value, ScalarType type) -> Tensor
    opkind: at::prim::Constant
    properties:
      - ShapeCompute
      - TreatScalarsAsConstants
"""

HEAD = "backend: Lazy\ncpp_namespace: torch::lazy\n"

# A valid entry for each operator list, so the bad one is not the first line of its list.
VALID_OP = {"supported": "abs", "autograd": "max_pool3d", "full_codegen": "abs", "ir_gen": "abs", "symint": "expand"}
OTHER_OP = {"supported": "add.Tensor", "autograd": "add.Tensor", "full_codegen": "add.Tensor", "ir_gen": "add.Tensor",
            "symint": "view"}

# The last line is 9**9 (~387 million) strings once the aliases are expanded.
ALIAS_BOMB = HEAD + "".join(
    f"{name}: &{name} [{', '.join([prev] * 9)}]\n"
    for name, prev in zip("abcdefghi", ['"lol"'] + ["*" + c for c in "abcdefgh"])
)


@dataclass(frozen=True)
class At:
    """The position of the n-th (1-based) occurrence of `needle` in the yaml."""

    needle: Union[str, bytes]
    nth: int = 1


NO_POSITION = "no position"  # the problem has no place in the file (missing file, missing key)
SOMEWHERE = "somewhere"  # a place the YAML parser picks: any line:col inside the file


@dataclass(frozen=True)
class Case:
    id: str
    content: Union[str, bytes, None]  # None: the file does not exist
    at: Union[At, str]  # an At, NO_POSITION or SOMEWHERE
    words: tuple[str, ...]  # must appear in the first diagnostic (error line plus its note)
    seconds: Optional[float] = None  # an upper bound on the run time
    must_not_exist: tuple[str, ...] = field(default=())  # paths a constructed object would have created


def position(content: Union[str, bytes], at: At) -> tuple[int, int]:
    data = content.encode("utf-8") if isinstance(content, str) else content
    needle = at.needle.encode("utf-8") if isinstance(at.needle, str) else at.needle
    offset = -1
    for _ in range(at.nth):
        offset = data.index(needle, offset + 1)
    before = data[:offset]
    line = before.count(b"\n") + 1
    col = len(before) - (before.rfind(b"\n") + 1) + 1  # bytes and chars agree: every marker line is ASCII up to the marker
    return line, col


def _op_list_cases() -> list[Case]:
    cases = []
    for key, valid in VALID_OP.items():
        cases.append(Case(f"unknown-op-{key}", f"{HEAD}{key}:\n  - {valid}\n  - abss\n", At("abss"),
                          ("abss", key, "did you mean", "'abs'")))
        cases.append(Case(f"unknown-overload-{key}", f"{HEAD}{key}:\n  - {valid}\n  - add.Tensr\n", At("add.Tensr"),
                          ("add.Tensr", key, "add.Tensor")))
        cases.append(Case(f"scalar-not-list-{key}", f"{HEAD}{key}: {valid}\n", At(valid),
                          (key, "list")))
        cases.append(Case(f"listed-twice-{key}", f"{HEAD}{key}:\n  - {valid}\n  - {OTHER_OP[key]}\n  - {valid}\n",
                          At(valid, 2), (valid, "twice", key)))
    return cases


CASES = [
    # --- the file itself
    Case("malformed-yaml", "backend: Lazy\ncpp_namespace: torch: lazy\n", At(": lazy"), ("invalid YAML", "mapping values")),
    Case("unclosed-flow-list", "backend: Lazy\ncpp_namespace: torch::lazy\nsupported: [abs, add.Tensor\nautograd: []\n",
         SOMEWHERE, ("invalid YAML",)),
    Case("two-documents", "backend: Lazy\ncpp_namespace: x\n---\nbackend: Lazy\n", At("---"), ("invalid YAML", "document")),
    Case("not-a-mapping-list", "# a list, not a mapping\n- backend\n- Lazy\n", At("- backend"), ("mapping", "list")),
    Case("not-a-mapping-scalar", "\n\nLazy\n", At("Lazy"), ("mapping",)),
    Case("empty-file", "", NO_POSITION, ("empty",)),
    Case("blank-file", "\n   \n\n", NO_POSITION, ("empty",)),
    Case("comments-only", "# backend: Lazy\n", NO_POSITION, ("no YAML document",)),
    Case("missing-file", None, NO_POSITION, ("cannot read", "No such file")),
    Case("not-utf8", b"backend: Lazy\ncpp_namespace: torch::l\xffzy\n", At(b"\xff"), ("UTF-8",)),
    Case("latin1-in-op", HEAD.encode() + b"supported:\n  - abs\n  - \xe9\n", At(b"\xe9"), ("UTF-8",)),
    # --- YAML that would construct objects
    Case("tag-python-apply", "backend: Lazy\ncpp_namespace: !!python/object/apply:os.mkdir [\"{tmp}/pwned\"]\n",
         At("!!python"), ("tag", "python/object/apply:os.mkdir"), must_not_exist=("{tmp}/pwned",)),
    Case("tag-python-name", HEAD + "supported:\n  - !!python/name:os.system\n", At("!!python"), ("tag", "python/name:os.system")),
    Case("tag-binary", "backend: !!binary TGF6eQ==\ncpp_namespace: x\n", At("!!binary"), ("tag", "binary")),
    Case("tag-set", HEAD + "supported: !!set {abs: null}\n", At("!!set"), ("tag", "set")),
    Case("tag-omap", HEAD + "supported: !!omap [a: 1]\n", At("!!omap"), ("tag", "omap")),
    Case("tag-local", HEAD + "class_name: !Foo Bar\n", At("!Foo"), ("tag", "!Foo")),
    Case("tag-int-not-a-number", HEAD + "class_name: !!int Foo\n", At("!!int"), ("Foo", "int")),
    Case("tag-int-empty", HEAD + "supported:\n  - !!int\n", At("!!int"), ("int",)),
    Case("tag-bool-not-a-bool", HEAD + "device_guard: !!bool maybe\n", At("!!bool"), ("maybe", "bool")),
    Case("implicit-timestamp", "backend: Lazy\ncpp_namespace: 2001-12-14\n", At("2001"), ("timestamp",)),
    Case("alias-bomb", ALIAS_BOMB, SOMEWHERE, ("alias",), seconds=5.0),
    Case("recursive-alias", HEAD + "supported: &ops [abs, *ops]\n", SOMEWHERE, ("nested", "alias")),
    Case("deep-nesting", HEAD + "supported: " + "[" * 100_000 + "]" * 100_000 + "\n", SOMEWHERE, ("nested",), seconds=5.0),
    Case("crlf-line-ends", (HEAD + "supported:\n  - abs\n  - abss\n").replace("\n", "\r\n"), At("abss"), ("abss",)),
    Case("byte-order-mark", "\ufeff" + HEAD + "supported:\n  - abss\n", At("abss"), ("abss",)),
    Case("duplicate-key", HEAD + "supported:\n  - abs\nbackend: XLA\n", At("backend", 2), ("duplicate", "backend")),
    # --- required keys and unknown keys
    Case("missing-backend", "cpp_namespace: torch::lazy\nsupported:\n  - abs\n", NO_POSITION, ("backend", "missing")),
    Case("missing-cpp-namespace", "backend: Lazy\nsupported:\n  - abs\n", NO_POSITION, ("cpp_namespace", "missing")),
    Case("unknown-key", HEAD + "full_codegen:\n  - abs\nsuported:\n  - add.Tensor\n", At("suported"),
         ("suported", "did you mean", "'supported'")),
    Case("unknown-key-autgrad", HEAD + "autgrad:\n  - abs\n", At("autgrad"), ("autgrad", "'autograd'")),
    Case("non-native-not-list", HEAD + "non_native: scalar\n", At("scalar"), ("non_native", "list")),
    # --- conflicts between lists
    Case("supported-and-autograd", HEAD + "supported:\n  - abs\n  - add.Tensor\nautograd:\n  - max_pool3d\n  - abs\n",
         At("abs", 2), ("abs", "supported", "autograd")),
    Case("full-codegen-and-autograd", HEAD + "full_codegen:\n  - abs\nautograd:\n  - abs\n",
         At("abs", 2), ("abs", "full_codegen", "autograd")),
    # --- backend
    Case("backend-typo", "backend: Lazzy\ncpp_namespace: x\n", At("Lazzy"), ("Lazzy", "dispatch key", "'Lazy'")),
    Case("backend-dotdot", "cpp_namespace: x\nbackend: ../x\n", At("../x"), ("../x", "dispatch key")),
    Case("backend-path", "backend: Lazy/../../evil\ncpp_namespace: x\n", At("Lazy/"), ("Lazy/../../evil", "dispatch key")),
    Case("backend-number", "backend: 12\ncpp_namespace: x\n", At("12"), ("12", "dispatch key")),
    Case("backend-list", "backend: [Lazy]\ncpp_namespace: x\n", At("[Lazy]"), ("dispatch key",)),
    Case("backend-in-tree", "backend: CPU\ncpp_namespace: x\n", At("CPU"), ("CPU",)),
    # --- C++ names
    Case("namespace-semicolon", "backend: Lazy\ncpp_namespace: torch::lazy;\n", At("torch::lazy;"), ("cpp_namespace", "torch::lazy;")),
    Case("namespace-single-colon", "backend: Lazy\ncpp_namespace: torch:lazy\n", At("torch:lazy"), ("cpp_namespace", "torch:lazy")),
    Case("namespace-leading-colons", "backend: Lazy\ncpp_namespace: '::torch'\n", At("'::torch'"), ("cpp_namespace", "::torch")),
    Case("namespace-digit", "backend: Lazy\ncpp_namespace: 1lazy\n", At("1lazy"), ("cpp_namespace", "1lazy")),
    Case("namespace-space", "backend: Lazy\ncpp_namespace: torch lazy\n", At("torch lazy"), ("cpp_namespace",)),
    Case("namespace-keyword", "backend: Lazy\ncpp_namespace: torch::class\n", At("torch::class"), ("cpp_namespace", "torch::class")),
    Case("namespace-empty", "backend: Lazy\ncpp_namespace: ''\n", At("''"), ("cpp_namespace",)),
    Case("class-name-digit", HEAD + "class_name: 1Foo\n", At("1Foo"), ("class_name", "1Foo")),
    Case("class-name-dash", HEAD + "class_name: Lazy-Functions\n", At("Lazy-"), ("class_name", "Lazy-Functions")),
    Case("class-name-keyword", HEAD + "class_name: int\n", At("int"), ("class_name", "int")),
    Case("class-name-trailing-colons", HEAD + "class_name: 'Foo::'\n", At("'Foo::'"), ("class_name", "Foo::")),
    # --- non_native
    Case("non-native-no-func", HEAD + "non_native:\n  - properties:\n      - ShapeCompute\n", At("properties"),
         ("non_native", "func")),
    Case("non-native-bad-type", HEAD + "non_native:\n  - func: foo(Tensor self, bogus x) -> Tensor\n", At("foo("),
         ("schema", "bogus")),
    Case("non-native-no-arrow", HEAD + "non_native:\n  - func: foo(Tensor self)\n", At("foo("), ("schema", "foo(Tensor self)")),
    Case("non-native-property-mapping", HEAD + "non_native:\n  - func: foo(Tensor self) -> Tensor\n    properties:\n      - {Lower: 1}\n",
         At("{Lower"), ("properties",)),
    Case("non-native-func-number", HEAD + "non_native:\n  - func: 12\n", At("12"), ("func",)),
    # --- ops the generator cannot produce under full_codegen
    Case("full-codegen-foreach", HEAD + "full_codegen:\n  - abs\n  - _foreach_abs\n", At("_foreach_abs"), ("_foreach_abs",)),
    Case("full-codegen-assert-scalar", HEAD + "full_codegen:\n  - abs\n  - _assert_scalar\n", At("_assert_scalar"),
         ("_assert_scalar", "tensor")),
    Case("full-codegen-device-index", HEAD + "full_codegen:\n  - abs\n  - _cufft_get_plan_cache_size\n",
         At("_cufft_get_plan_cache_size"), ("_cufft_get_plan_cache_size", "DeviceIndex")),
] + _op_list_cases()


def _snapshot(folder: Path) -> dict[str, tuple[bytes, int] | int]:
    """Every file's bytes and mtime_ns, and every folder's mtime_ns (so a
    temporary file created and removed again is noticed)."""
    snap: dict[str, tuple[bytes, int] | int] = {}
    for root, _dirs, files in os.walk(folder):
        snap[os.path.relpath(root, folder) + "/"] = os.stat(root).st_mtime_ns
        for name in files:
            p = Path(root, name)
            snap[os.path.relpath(p, folder)] = (p.read_bytes(), p.stat().st_mtime_ns)
    return snap


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("diagnostics")


@pytest.fixture(scope="module")
def env(workdir: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["LAZYGEN_CACHE_DIR"] = str(workdir / "cache")
    env["PYTHONPATH"] = os.pathsep.join([str(REPO)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    return env


def _lazygen(env: dict[str, str], cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "lazygen", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def good_output(workdir: Path, env: dict[str, str]) -> Path:
    """A folder generated from a good yaml; its files get an old mtime so a rewrite would show."""
    yaml = workdir / "good.yaml"
    yaml.write_text(GOOD_YAML, encoding="utf-8")
    out = workdir / "generated"
    proc = _lazygen(env, workdir, "-s", str(yaml), "-o", str(out), "--no-shape-inference-check")
    assert proc.returncode == 0, proc.stderr
    names = sorted(p.name for p in out.iterdir())
    assert {"LazyIr.h", "LazyNonNativeIr.h", "LazyNativeFunctions.h", "LazyNativeFunctions.cpp", "RegisterLazy.cpp",
            "RegisterAutogradLazy.cpp"} <= set(names), names
    for p in out.iterdir():
        os.utime(p, ns=(1_000_000_000_000_000_000, 1_000_000_000_000_000_000))
    return out


_DIAG_RE = re.compile(r"^(?P<where>.*?): (?P<kind>error|note): (?P<message>.*)$")


def _first_diagnostic(stderr: str) -> tuple[str, str]:
    """(where, text) of the first error: its location and its message plus any notes at that location."""
    lines = stderr.splitlines()
    for i, line in enumerate(lines):
        m = _DIAG_RE.match(line)
        if m and m["kind"] == "error":
            text = [m["message"]]
            for follow in lines[i + 1 :]:
                n = _DIAG_RE.match(follow)
                if not n or n["kind"] != "note" or n["where"] != m["where"]:
                    break
                text.append(n["message"])
            return m["where"], "\n".join(text)
    raise AssertionError(f"no 'error:' line in stderr:\n{stderr}")


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_yaml_is_one_diagnostic_and_leaves_outputs_alone(case: Case, workdir: Path, env: dict[str, str],
                                                             good_output: Path) -> None:
    yaml = workdir / "cases" / f"{case.id}.yaml"
    yaml.parent.mkdir(exist_ok=True)
    content = case.content
    if isinstance(content, str):
        content = content.replace("{tmp}", str(workdir))
    if content is None:
        assert not yaml.exists()
    else:
        yaml.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
    before = _snapshot(good_output)

    start = time.monotonic()
    proc = _lazygen(env, workdir, "-s", str(yaml), "-o", str(good_output), "--no-shape-inference-check")
    elapsed = time.monotonic() - start

    assert proc.returncode == 1, (proc.returncode, proc.stderr)
    assert "Traceback" not in proc.stderr, proc.stderr
    assert proc.stdout == ""
    where, text = _first_diagnostic(proc.stderr)
    if isinstance(case.at, At):
        assert content is not None
        line, col = position(content, case.at)
        assert where == f"{yaml}:{line}:{col}", proc.stderr
    elif case.at == SOMEWHERE:
        assert content is not None
        m = re.fullmatch(re.escape(str(yaml)) + r":(\d+):(\d+)", where)
        assert m and 1 <= int(m[1]) <= content.count("\n") + 1, proc.stderr
    else:
        # No place in the file to point at: the path alone, or the file's start.
        assert where in (str(yaml), f"{yaml}:1:1"), proc.stderr
    for word in case.words:
        assert word in text, (word, proc.stderr)
    if case.seconds is not None:
        assert elapsed < case.seconds, f"took {elapsed:.1f} s"
    for path in case.must_not_exist:
        assert not Path(path.replace("{tmp}", str(workdir))).exists()
    assert _snapshot(good_output) == before, "the earlier output tree was touched"


def test_a_value_with_a_newline_still_gives_one_line_per_diagnostic(workdir: Path, env: dict[str, str]) -> None:
    yaml = workdir / "newline.yaml"
    yaml.write_text('backend: Lazy\ncpp_namespace: "torch\\nlazy"\nsupported:\n  - "ab\\ns"\n', encoding="utf-8")
    proc = _lazygen(env, workdir, "-s", str(yaml), "-o", str(workdir / "unused"), "--dry-run", "--no-shape-inference-check")
    assert proc.returncode == 1, proc.stderr
    lines = proc.stderr.splitlines()
    assert lines and all(_DIAG_RE.match(line) and line.startswith(f"{yaml}:") for line in lines), proc.stderr


# A mistake in a template override: (file name, its text, where the mistake is, words of the message).
# Jinja gives no column for a syntax error or an exception: those point at the start of the line.
TEMPLATE_CASES = [
    ("ir_node.j2", '{% extends "lazygen/ir_node.j2" %}\n{% block create_function %}{{ node.nmae }}{% endblock %}\n', At("nmae"),
     ("UndefinedError", "nmae", "did you mean 'name'")),
    ("native_function.j2", '{% extends "lazygen/native_function.j2" %}\n\n{% block metrics %}{{ k.metrics }\n',
     At("{% block metrics"), ("syntax error",)),
    ("LazyIr.h.j2", "#pragma once\n{{ node_texts | no_such_filter }}\n", At("{{ node_texts"), ("no_such_filter",)),
    ("Register.cpp.j2", "// header\n// more\n{{ 1 // 0 }}\n", At("{{ 1 // 0"), ("ZeroDivisionError",)),
    ("NativeFunctions.h.j2", '{% include "not_there.j2" %}\n', At('"not_there.j2"'), ("not found", "not_there.j2")),
]


@pytest.mark.parametrize("name,text,at,words", TEMPLATE_CASES, ids=[c[0] for c in TEMPLATE_CASES])
def test_template_override_mistake_is_a_diagnostic_at_its_line(name: str, text: str, at: At, words: tuple[str, ...],
                                                               workdir: Path, env: dict[str, str], good_output: Path) -> None:
    templates = workdir / "templates" / name
    templates.mkdir(parents=True, exist_ok=True)
    (templates / name).write_text(text, encoding="utf-8")
    before = _snapshot(good_output)
    proc = _lazygen(env, workdir, "-s", str(workdir / "good.yaml"), "-o", str(good_output), "--no-shape-inference-check",
                    "--template-dir", str(templates))
    assert proc.returncode == 1, (proc.returncode, proc.stderr)
    assert "Traceback" not in proc.stderr, proc.stderr
    where, message = _first_diagnostic(proc.stderr)
    line, col = position(text, at)
    assert where == f"{templates / name}:{line}:{col}", proc.stderr
    assert "\n" in message, f"no note with a hint: {proc.stderr}"
    for word in words:
        assert word in message, (word, proc.stderr)
    assert _snapshot(good_output) == before, "the earlier output tree was touched"
    # Into a folder that does not exist yet: nothing is created.
    fresh = workdir / f"fresh-{name}"
    proc = _lazygen(env, workdir, "-s", str(workdir / "good.yaml"), "-o", str(fresh), "--no-shape-inference-check",
                    "--template-dir", str(templates))
    assert proc.returncode == 1 and not fresh.exists(), proc.stderr
