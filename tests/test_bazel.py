"""The Bazel adapter, driven through real Bazel on examples/bazel.

One module fixture runs the whole scenario once (Bazel's server start and the
C++ compile against torch's headers are the expensive parts), recording each
build's output and execution log; the tests then check one behaviour each.
Needs Debian's bazel-bootstrap and bazel-rules-java (Bazel 4.2.3, offline),
and a system `python` with PyYAML and Jinja2 (python-is-python3 python3-yaml
python3-jinja2), because Bazel 4 runs the py_binary tool with no PATH.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import stat
import subprocess
import sys
import tempfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "bazel"
YAML = "ts_native_functions.yaml"
PREFIX = "ts_backend/generated"

# The TorchScript yaml has backend Lazy and an autograd section.
HEADERS = ["LazyIr.h", "LazyNonNativeIr.h", "LazyNativeFunctions.h"]
SOURCES = ["LazyNativeFunctions.cpp", "RegisterLazy.cpp", "RegisterAutogradLazy.cpp"]

# A yaml edit that changes the generated IR: drop one full_codegen op.
DROPPED_OP_LINE = "  - _adaptive_avg_pool2d_backward\n"

# Targets that must fail: the rule's attributes disagree with the yaml, or
# the shape check has no header to read. Written into the workspace copy.
BAD_BUILD = """\
load("@lazygen//bazel:defs.bzl", "lazy_codegen")

[lazy_codegen(
    name = name,
    src = "ts.yaml",
    autograd = autograd,
    backend = backend,
    native_functions = "@torch//:native_functions",
    shape_inference_check = False,
    tags_yaml = "@torch//:tags_yaml",
) for name, backend, autograd in [
    ("wrong_backend", "XLA", True),
    ("wrong_autograd", "Lazy", False),
]]

lazy_codegen(
    name = "no_shape_file",
    src = "ts.yaml",
    autograd = True,
    native_functions = "@torch//:native_functions",
    tags_yaml = "@torch//:tags_yaml",
)

[lazy_codegen(
    name = name,
    src = "ts.yaml",
    autograd = True,
    native_functions = "@torch//:native_functions",
    shape_inference_check = False,
    shards = shards,
    tags_yaml = "@torch//:tags_yaml",
) for name, shards in [
    ("zero_shards", 0),
    ("negative_shards", -2),
]]
"""
BAD_SHARDS = {"//bad:zero_shards": 0, "//bad:negative_shards": -2}


# A sharded backend: the TorchScript yaml with shards = 3, each shard a
# translation unit of a cc_library. The compiles are stand-ins
# (tests/stub_cxx.py, through the CC the test gives Bazel's toolchain), so the
# library needs no torch headers: the build system is under test here, the
# compiler in tests/test_shards.py.
SHARDS = 3
SHARDED_BUILD = f"""\
load("@lazygen//bazel:defs.bzl", "lazy_codegen")
load("@rules_cc//cc:defs.bzl", "cc_library")

lazy_codegen(
    name = "gen",
    src = "ts.yaml",
    autograd = True,
    native_functions = "@torch//:native_functions",
    shape_inference_file = "@torch//:shape_inference_h",
    shards = {SHARDS},
    tags_yaml = "@torch//:tags_yaml",
    torch_version = "2.13",
)

filegroup(
    name = "gen_headers",
    srcs = [":gen"],
    output_group = "headers",
)

filegroup(
    name = "gen_sources",
    srcs = [":gen"],
    output_group = "sources",
)

cc_library(
    name = "backend",
    srcs = [":gen_sources"],
    hdrs = [":gen_headers"],
    include_prefix = "sharded/gen",
    linkstatic = True,
    strip_include_prefix = "gen",
)
"""

# Bazel's C++ toolchain with this as its compiler: a compile (Bazel always
# asks for a depfile, -MF) goes to the stand-in, and everything else (the
# toolchain's probes at configure time) to the real compiler.
STUB_CC = """\
#!/bin/sh
case " $* " in
  *" -MF "*) exec {python} {stub} {cc} "$@" ;;
esac
exec {cc} "$@"
"""

def stub_compiler_flags(tmp: Path) -> tuple[str, ...]:
    """Bazel flags that make tests/stub_cxx.py the C++ toolchain's compiler (STUB_CC, written into tmp)."""
    stub_cc = tmp / "stub_cc"
    stub_cc.write_text(STUB_CC.format(python=sys.executable, stub=ROOT / "tests" / "stub_cxx.py", cc=shutil.which("gcc")))
    stub_cc.chmod(0o755)
    return (f"--repo_env=CC={stub_cc}",)


@dataclass
class Build:
    """One `bazel build`: its status, console output and executed spawns."""

    returncode: int
    output: str
    spawns: list[dict] = field(default_factory=list)

    def mnemonics(self) -> list[str]:
        return [s["mnemonic"] for s in self.spawns]

    def processes(self) -> dict[str, int]:
        """The closing 'INFO: N processes: 3 internal, 2 linux-sandbox.' line, as {kind: count}."""
        lines = re.findall(r"^INFO: \d+ process(?:es)?(?:: (.*))?\.$", self.output, re.M)
        assert len(lines) == 1, self.output
        kinds = {}
        for part in filter(None, (lines[0] or "").split(", ")):
            count, kind = part.split(" ", 1)
            kinds[kind] = int(count)
        return kinds


def _read_exec_log(path: Path) -> list[dict]:
    # --execution_log_json_file writes one JSON object per spawn, back to back.
    text = path.read_text() if path.exists() else ""
    decoder = json.JSONDecoder()
    spawns, pos = [], 0
    while True:
        while pos < len(text) and text[pos].isspace():
            pos += 1
        if pos == len(text):
            return spawns
        spawn, pos = decoder.raw_decode(text, pos)
        spawns.append(spawn)


def _missing_prerequisite() -> str | None:
    if not shutil.which("bazel"):
        return "bazel not installed (apt-get install bazel-bootstrap bazel-rules-java)"
    if not Path("/usr/share/bazel/rules/java").is_dir():
        return "Debian's bazel-rules-java not installed"
    probe = subprocess.run(
        ["env", "-i", "/usr/bin/env", "python", "-c", "import yaml, jinja2"],
        capture_output=True,
    )
    if probe.returncode != 0:
        return "no system `python` with PyYAML and Jinja2 (apt-get install python-is-python3 python3-yaml python3-jinja2)"
    if _torch_site_packages() is None:
        return "torch is not installed"
    return None


def _torch_site_packages() -> Path | None:
    # find_spec locates the package without importing torch.
    spec = importlib.util.find_spec("torch")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0]).parent


def _rmtree(path: Path) -> None:
    # Bazel leaves read-only files and folders behind.
    def unlock(func, p, _exc):
        os.chmod(p, stat.S_IRWXU)
        os.chmod(os.path.dirname(p), stat.S_IRWXU)
        func(p)

    shutil.rmtree(path, onerror=unlock)


OFFLINE_MARK = "# Offline stand-ins"


def offline_block() -> str:
    """examples/bazel/WORKSPACE's offline stand-ins (rules_java, rules_cc,
    remote_coverage_tools), with their paths made absolute: what another
    workspace appends to build offline on Debian's Bazel 4."""
    text = (EXAMPLE / "WORKSPACE").read_text()
    assert text.count(OFFLINE_MARK) == 1, "examples/bazel/WORKSPACE should have one offline block"
    block = OFFLINE_MARK + text.split(OFFLINE_MARK, 1)[1]
    return block.replace('path = "offline/', f'path = "{EXAMPLE}/offline/')


class Workspace:
    """A private copy of examples/bazel (or of another workspace, made to
    build offline as it does) with its own Bazel server and disk cache."""

    def __init__(self, tmp: Path, disk_cache: bool = True, source: Path = EXAMPLE):
        self.tmp = tmp
        self.disk_cache = disk_cache
        self.ws = tmp / "ws"
        shutil.copytree(source, self.ws, ignore=shutil.ignore_patterns("bazel-*"))
        workspace = self.ws / "WORKSPACE"
        text, count = re.subn(
            r'^TORCH_SITE_PACKAGES = ".*"$',
            f'TORCH_SITE_PACKAGES = "{_torch_site_packages()}"',
            workspace.read_text(),
            flags=re.M,
        )
        assert count == 1, f"{source}/WORKSPACE should set TORCH_SITE_PACKAGES once"
        if source != EXAMPLE:
            text += "\n" + offline_block()
            shutil.copy(EXAMPLE / ".bazelrc", self.ws / ".bazelrc")  # --nosandbox_debug
        workspace.write_text(text)
        self.startup = [
            "bazel",
            f"--output_user_root={tmp / 'root'}",
            "--nohome_rc",
            "--max_idle_secs=600",
        ]
        self.logs = 0

    def bazel(self, *args: str, timeout: int = 600) -> subprocess.CompletedProcess:
        return subprocess.run(
            [*self.startup, *args], cwd=self.ws, capture_output=True, text=True, timeout=timeout
        )

    def build(self, *targets: str, flags: tuple[str, ...] = ()) -> Build:
        self.logs += 1
        log = self.tmp / f"exec{self.logs}.json"
        proc = self.bazel(
            "build",
            "--color=no",
            "--curses=no",
            f"--override_repository=lazygen={ROOT}",
            *([f"--disk_cache={self.tmp / 'disk_cache'}"] if self.disk_cache else []),
            f"--execution_log_json_file={log}",
            *flags,
            *targets,
        )
        return Build(proc.returncode, proc.stdout + proc.stderr, _read_exec_log(log))

    def reads_of(self, spawn: dict) -> list[str]:
        """Re-runs a LazyGen spawn by hand in the execution root, writing into
        a scratch folder, and returns the files lazygen says it read."""
        info = self.bazel("info", "execution_root")
        assert info.returncode == 0, info.stderr
        args = list(spawn["commandArgs"])
        args[args.index("-o") + 1] = str(self.tmp / "rerun")
        depfile = self.tmp / "rerun.d"
        proc = subprocess.run(
            [*args, "--depfile", str(depfile)],
            cwd=info.stdout.strip(),
            env={"PYTHONDONTWRITEBYTECODE": "1", "LAZYGEN_CACHE_DIR": str(self.tmp / "rerun-cache")},
            capture_output=True,
            text=True,
        )
        assert proc.returncode == 0, proc.stderr
        # Make syntax: "target:" then the prerequisites, lines joined by backslash-newline.
        return depfile.read_text().replace("\\\n", " ").split(":", 1)[1].split()

    def generated(self, package: str = "ts_lazy") -> dict[str, bytes]:
        # Only the generated files: lazygen's dotfiles would appear here too
        # under a spawn strategy that keeps undeclared outputs.
        out = self.ws / "bazel-bin" / package
        if not out.is_dir():
            return {}  # the build failed; its test reports why
        return {p.name: p.read_bytes() for p in sorted(out.iterdir()) if not p.name.startswith(".")}

    def edit_yaml(self, edit) -> None:
        path = self.ws / YAML
        path.write_text(edit(path.read_text()))


@dataclass
class Scenario:
    ws: Workspace
    first: Build
    first_files: dict[str, bytes]
    first_reads: list[str]
    noop: Build
    comment: Build
    comment_files: dict[str, bytes]
    cached: Build
    cached_files: dict[str, bytes]
    changed: Build
    changed_files: dict[str, bytes]
    bad: Build
    no_shape: Build
    bad_shards: Build
    sharded: Build
    sharded_files: dict[str, bytes]
    sharded_listed: list[str]
    sharded_edit: Build
    sharded_edit_files: dict[str, bytes]


def _move_to_supported(text: str, op: str) -> str:
    line = f"\n  - {op}\n"
    assert text.count(line) == 1 and "\nsupported:\n" in text
    return text.replace(line, "\n").replace("\nsupported:\n", f"\nsupported:{line}", 1)


@pytest.fixture(scope="module")
def scenario():
    reason = _missing_prerequisite()
    if reason:
        pytest.skip(reason)
    tmp = Path(tempfile.mkdtemp(prefix="lazygen-bazel-"))
    ws = Workspace(tmp)
    try:
        first = ws.build("//:all")
        assert first.returncode == 0, first.output
        first_files = ws.generated()
        (lazygen_spawn,) = [s for s in first.spawns if s["mnemonic"] == "LazyGen"]
        first_reads = ws.reads_of(lazygen_spawn)

        noop = ws.build("//:all")

        ws.edit_yaml(lambda text: text + "# a comment changes nothing generated\n")
        comment = ws.build("//:all")
        comment_files = ws.generated()

        clean = ws.bazel("clean")
        assert clean.returncode == 0, clean.stderr
        cached = ws.build("//:all")
        cached_files = ws.generated()

        def drop_op(text: str) -> str:
            assert text.count(DROPPED_OP_LINE) == 1
            return text.replace(DROPPED_OP_LINE, "")

        ws.edit_yaml(drop_op)
        changed = ws.build("//:all")
        changed_files = ws.generated()

        (ws.ws / "bad").mkdir()
        shutil.copy(EXAMPLE / YAML, ws.ws / "bad" / "ts.yaml")
        (ws.ws / "bad" / "BUILD.bazel").write_text(BAD_BUILD)
        bad = ws.build("//bad:wrong_backend", "//bad:wrong_autograd", flags=("--keep_going",))
        no_shape = ws.build("//bad:no_shape_file")

        bad_shards = ws.build(*BAD_SHARDS, flags=("--keep_going",))

        # The sharded backend, built with the stand-in compiler; then `abs`
        # moves from full_codegen to supported (its IR class and generated
        # kernel go, its declaration and registration stay).
        sharded_yaml = ws.ws / "sharded" / "ts.yaml"
        sharded_yaml.parent.mkdir()
        shutil.copy(EXAMPLE / YAML, sharded_yaml)
        (ws.ws / "sharded" / "BUILD.bazel").write_text(SHARDED_BUILD)
        stub_flags = stub_compiler_flags(tmp)
        sharded = ws.build("//sharded:backend", flags=stub_flags)
        sharded_files = ws.generated("sharded/gen")
        listed = subprocess.run(
            [sys.executable, "-m", "lazygen", "-s", str(sharded_yaml), "-o", "gen", "--list-outputs", "--shards", str(SHARDS)],
            capture_output=True, text=True, check=True,
        ).stdout.split()
        sharded_yaml.write_text(_move_to_supported(sharded_yaml.read_text(), "abs"))
        sharded_edit = ws.build("//sharded:backend", flags=stub_flags)
        sharded_edit_files = ws.generated("sharded/gen")

        yield Scenario(
            ws, first, first_files, first_reads, noop, comment, comment_files,
            cached, cached_files, changed, changed_files, bad, no_shape,
            bad_shards, sharded, sharded_files, listed, sharded_edit, sharded_edit_files,
        )
    finally:
        ws.bazel("shutdown", timeout=120)
        _rmtree(tmp)


def _strip_wheel_guard(header: bytes) -> bytes:
    # The torch wheel wraps each installed header in an #if/#else/#error/#endif guard.
    first, rest = header.split(b"\n", 1)
    assert first.startswith(b"#if !defined(TORCH_STABLE_ONLY)"), first
    body, tail = rest.rsplit(b"\n#else\n", 1)
    assert tail.startswith(b"#error ") and tail.count(b"\n") == 2, tail
    return body


def test_build_generates_every_output_and_compiles(scenario):
    first = scenario.first
    assert sorted(scenario.first_files) == sorted(HEADERS + SOURCES)
    assert first.mnemonics().count("LazyGen") == 1
    assert "CppCompile" in first.mnemonics()
    objects = list((scenario.ws.ws / "bazel-bin" / "_objs" / "lazy_ir_smoke").glob("*.o"))
    assert objects, "lazy_ir_smoke.cpp was not compiled"


def test_generated_headers_match_torchs_own(scenario):
    # torch's wheel ships the headers PyTorch generated from this yaml with
    # these options; the rule must pass the options through unchanged.
    installed = _torch_site_packages() / "torch" / "include" / "torch" / "csrc" / "lazy" / "generated"
    for name in HEADERS:
        assert scenario.first_files[name] == _strip_wheel_guard((installed / name).read_bytes()), name


def test_generated_sources_include_each_other_through_the_prefix(scenario):
    source = scenario.first_files["LazyNativeFunctions.cpp"].decode()
    assert f"#include <{PREFIX}/LazyIr.h>" in source
    assert "bazel-out" not in source and str(scenario.ws.tmp) not in source


def test_lazygen_action_is_one_hermetic_tool_run(scenario):
    (spawn,) = [s for s in scenario.first.spawns if s["mnemonic"] == "LazyGen"]
    args = spawn["commandArgs"]
    assert args[0].endswith("/bazel/lazygen"), "the py_binary itself runs, not a shell"
    # Nothing from the user's environment; lazygen's caches stay in the output folder.
    env = {e["name"]: e["value"] for e in spawn.get("environmentVariables", [])}
    assert list(env) == ["LAZYGEN_CACHE_DIR"]
    assert env["LAZYGEN_CACHE_DIR"] == args[args.index("-o") + 1] + "/.lazygen-cache"
    assert spawn["progressMessage"].startswith("Generating lazy-tensor sources for //:ts_lazy")
    for flag, value in [
        ("--include-prefix", PREFIX),
        ("--expect-backend", "Lazy"),
        ("--torch-version", "2.13"),
        ("--shape-inference-file", "external/torch/torch/include/torch/csrc/lazy/core/shape_inference.h"),
    ]:
        assert args[args.index(flag) + 1] == value
    assert "--expect-autograd" in args
    inputs = {i["path"] for i in spawn["inputs"]}
    for path in [
        YAML,
        "external/torch/torchgen/packaged/ATen/native/native_functions.yaml",
        "external/torch/torchgen/packaged/ATen/native/tags.yaml",
        "external/torch/torch/include/torch/csrc/lazy/core/shape_inference.h",
    ]:
        assert path in inputs, path
    outputs = sorted(o["path"].rsplit("/", 1)[1] for o in spawn["actualOutputs"])
    assert outputs == sorted(HEADERS + SOURCES)


def test_every_file_lazygen_reads_is_a_declared_input(scenario):
    (spawn,) = [s for s in scenario.first.spawns if s["mnemonic"] == "LazyGen"]
    inputs = {i["path"] for i in spawn["inputs"]}
    reads = scenario.first_reads
    assert YAML in reads
    assert [path for path in reads if path not in inputs] == []


def test_noop_build_executes_no_action(scenario):
    noop = scenario.noop
    assert noop.returncode == 0, noop.output
    assert noop.spawns == []
    assert set(noop.processes()) <= {"internal"}, noop.output


def test_comment_change_reruns_only_lazygen(scenario):
    comment = scenario.comment
    assert comment.returncode == 0, comment.output
    assert comment.mnemonics() == ["LazyGen"]
    assert scenario.comment_files == scenario.first_files


def test_real_change_recompiles(scenario):
    # The control for the test above: a yaml change that alters LazyIr.h
    # must reach the compiler.
    changed = scenario.changed
    assert changed.returncode == 0, changed.output
    assert changed.mnemonics().count("LazyGen") == 1
    assert "CppCompile" in changed.mnemonics()
    assert scenario.changed_files["LazyIr.h"] != scenario.first_files["LazyIr.h"]


def test_build_after_clean_takes_outputs_from_disk_cache(scenario):
    cached = scenario.cached
    assert cached.returncode == 0, cached.output
    assert "LazyGen" in cached.mnemonics()
    assert all(s.get("remoteCacheHit") for s in cached.spawns), cached.mnemonics()
    kinds = cached.processes()
    # Bazel 4 says "remote cache hit" for the disk cache; newer ones "disk cache hit".
    hits = {k for k in kinds if k.endswith("cache hit")}
    assert hits and set(kinds) <= hits | {"internal"}, cached.output
    assert scenario.cached_files == scenario.first_files


def test_yaml_disagreeing_with_the_rule_fails_clearly(scenario):
    bad = scenario.bad
    assert bad.returncode != 0
    assert "Traceback" not in bad.output
    failed = {s["mnemonic"] for s in bad.spawns if s.get("exitCode")}
    assert failed == {"LazyGen"}
    errors = [line for line in bad.output.splitlines() if "error:" in line and "ts.yaml" in line]
    assert any("backend" in line.lower() and "XLA" in line for line in errors), bad.output
    assert any("autograd" in line.lower() for line in errors), bad.output


def test_shape_check_without_header_fails_at_analysis(scenario):
    no_shape = scenario.no_shape
    assert no_shape.returncode != 0
    assert no_shape.spawns == []
    assert "shape_inference_check = True needs shape_inference_file" in no_shape.output
    assert "//bad:no_shape_file" in no_shape.output


def _compiled(build: Build) -> set[str]:
    """The sources of a build's compile actions, by file name."""
    return {Path(s["commandArgs"][s["commandArgs"].index("-c") + 1]).name for s in build.spawns if s["mnemonic"] == "CppCompile"}


def test_sharded_rule_declares_what_the_cli_lists_and_lazygen_writes(scenario):
    sharded = scenario.sharded
    assert sharded.returncode == 0, sharded.output
    (spawn,) = [s for s in sharded.spawns if s["mnemonic"] == "LazyGen"]
    args = spawn["commandArgs"]
    assert args[args.index("--shards") + 1] == str(SHARDS)
    listed = [Path(path).name for path in scenario.sharded_listed]
    assert len(listed) == 4 + 3 * SHARDS + 1  # 3 headers + LazyIrCommon.h, 3 files per shard, autograd
    declared = [o["path"].rsplit("/", 1)[1] for o in spawn["actualOutputs"]]
    assert sorted(declared) == sorted(listed)
    assert sorted(scenario.sharded_files) == sorted(listed)  # lazygen wrote exactly these


def test_sharded_backend_compiles_one_object_per_shard(scenario):
    sources = [name for name in scenario.sharded_listed if name.endswith(".cpp")]
    assert _compiled(scenario.sharded) == {Path(name).name for name in sources}
    objects = {p.name for p in (scenario.ws.ws / "bazel-bin" / "sharded" / "_objs" / "backend").glob("*.o")}
    assert {name.split(".")[0] for name in objects} == {Path(name).stem for name in sources}
    assert len(objects) == len(sources)


def test_moving_one_op_recompiles_only_the_shard_that_held_it(scenario):
    edit = scenario.sharded_edit
    assert edit.returncode == 0, edit.output
    shard = zlib.crc32(b"abs") % SHARDS  # the README's rule
    kernels = f"LazyNativeFunctions_{shard}.cpp"
    assert b"LazyNativeFunctions::abs(" in scenario.sharded_files[kernels]
    assert b"LazyNativeFunctions::abs(" not in scenario.sharded_edit_files[kernels]
    assert edit.mnemonics().count("LazyGen") == 1
    assert _compiled(edit) == {kernels}, edit.mnemonics()
    changed = {name for name in scenario.sharded_files if scenario.sharded_files[name] != scenario.sharded_edit_files[name]}
    assert changed == {kernels, f"LazyIr_{shard}.h"}


def test_unsharded_rule_runs_lazygen_as_before(scenario):
    # shards = 1 (the default) writes the unsharded files and leaves --shards
    # off the command line, so the action's cache key is what it was.
    (spawn,) = [s for s in scenario.first.spawns if s["mnemonic"] == "LazyGen"]
    assert "--shards" not in spawn["commandArgs"]
    assert sorted(scenario.first_files) == sorted(HEADERS + SOURCES)


def test_bad_number_of_shards_fails_at_analysis_naming_the_attribute(scenario):
    bad = scenario.bad_shards
    assert bad.returncode != 0
    assert bad.spawns == []
    for label, shards in BAD_SHARDS.items():
        assert re.search(rf"in lazy_codegen rule {re.escape(label)}:.*?shards must be a whole number of at least 1, got {shards}",
                         bad.output, re.S), bad.output


def _buildifier() -> str | None:
    return shutil.which("buildifier")


STARLARK_FILES = [
    "WORKSPACE",
    "MODULE.bazel",
    "bazel/defs.bzl",
    "bazel/BUILD.bazel",
    "lazygen/BUILD.bazel",
    "lazygen/outputs.bzl",
    "examples/bazel",
]


@pytest.mark.parametrize("path", STARLARK_FILES)
def test_starlark_passes_buildifier_lint(path):
    buildifier = _buildifier()
    if buildifier is None:
        pytest.skip("buildifier not installed (npm install -g @bazel/buildifier)")
    proc = subprocess.run(
        [buildifier, "--lint=warn", "--mode=check", "-r", path],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
