"""buck/defs.bzl: evaluated with starlark-rust, its genrule run as Buck2 runs it.

Buck2 itself cannot be installed on these machines; tests/starlark_buck.py
stands in for it (see there for what it reproduces).
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

sl = pytest.importorskip("starlark", reason="starlark-pyo3 is in the test extra")
if not hasattr(sl, "Module"):
    pytest.skip("the `starlark` module here is not starlark-pyo3", allow_module_level=True)

from starlark_buck import BuckEvaluator, Rule, Target, run_genrule  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
TS_YAML = REPO / "tests" / "data" / "ts_native_functions.yaml"
# How the `//tools:lazygen` target of the test project runs lazygen.
LAZYGEN_ARGV = [sys.executable, "-m", "lazygen"]

# The contract's file names for the TorchScript yaml (backend Lazy, with autograd).
TS_OUTPUTS = [
    "LazyIr.h",
    "LazyNonNativeIr.h",
    "LazyNativeFunctions.h",
    "LazyNativeFunctions.cpp",
    "RegisterLazy.cpp",
    "RegisterAutogradLazy.cpp",
]
# The TorchScript backend sharded (see test_sharded_genrule_*).
SHARDS = 3
# PyTorch's own options for that yaml, as the macro's attributes.
TS_ATTRS = """
    native_functions = "//third_party/aten:native_functions.yaml",
    tags_yaml = "aten/tags.yaml",
    lazygen = "//tools:lazygen",
    backend_name = "TorchScript",
    node_base = "TsNode",
    node_base_hdr = "torch/csrc/lazy/ts_backend/ts_node.h",
    shape_inference_file = "//third_party/torch:shape_inference.h",
    gen_ts_lowerings = True,
    build_in_tree = True,
"""
BUCK = f"""
load("@lazygen//buck:defs.bzl", "lazy_codegen")

lazy_codegen(
    name = "ts_gen",
    src = "ts_native_functions.yaml",
    autograd = True,
{TS_ATTRS})

lazy_codegen(
    name = "ts_sharded",
    src = "ts_native_functions.yaml",
    autograd = True,
    shards = {SHARDS},
{TS_ATTRS})

lazy_codegen(
    name = "wrong_backend",
    src = "ts_native_functions.yaml",
    backend = "XLA",
    autograd = True,
{TS_ATTRS})

lazy_codegen(
    name = "wrong_autograd",
    src = "ts_native_functions.yaml",
{TS_ATTRS})

lazy_codegen(
    name = "xla",
    src = ":xla_yaml",
    backend = "XLA",
    native_functions = "aten/native_functions.yaml",
    tags_yaml = "aten/tags.yaml",
    lazygen = "//tools:lazygen",
    shape_inference_check = False,
    backend_name = "",
    tensor_class = "torch_xla::XLATensor",
    tensor_class_hdr = "it's a header.h",
    impl = "xla_kernels.cpp",
    include_prefix = "xla/gen",
    torch_version = "2.8",
    template_dirs = ["//templates:overrides"],
    extra_args = ["--qualify-names"],
    visibility = ["PUBLIC"],
)
"""


def _package_dir(name: str) -> Path:
    spec = importlib.util.find_spec(name)  # finds the package without importing it
    if spec is None or not spec.submodule_search_locations:
        pytest.skip(f"{name} is not installed (the reference catalogue and headers come from it)")
    return Path(list(spec.submodule_search_locations)[0])


@pytest.fixture(scope="module")
def reference_files() -> dict[str, Path]:
    aten = _package_dir("torchgen") / "packaged" / "ATen" / "native"
    header = _package_dir("torch") / "include" / "torch" / "csrc" / "lazy" / "core" / "shape_inference.h"
    if not header.exists():
        pytest.skip(f"torch's shape inference header is missing: {header}")
    return {
        "native_functions": aten / "native_functions.yaml",
        "tags": aten / "tags.yaml",
        "shape_header": header,
    }


@pytest.fixture(scope="module")
def project(tmp_path_factory, reference_files) -> Path:
    """A Buck2 project: package `backend` holds the yaml and the BUCK file."""
    root = tmp_path_factory.mktemp("buck_project")
    package = root / "backend"
    (package / "aten").mkdir(parents=True)
    shutil.copy(TS_YAML, package / "ts_native_functions.yaml")
    shutil.copy(reference_files["tags"], package / "aten" / "tags.yaml")
    shutil.copy(reference_files["native_functions"], package / "aten" / "native_functions.yaml")
    (package / "xla_kernels.cpp").write_text("// kernels\n")
    (package / "BUCK").write_text(BUCK)
    (root / "templates").mkdir()
    return root


@pytest.fixture(scope="module")
def rules(project) -> dict[str, Rule]:
    evaluator = BuckEvaluator(cells={"root": project, "lazygen": REPO}, root_cell="root")
    recorded = evaluator.eval_build_file("backend", (project / "backend" / "BUCK").read_text())
    return {rule.attrs["name"]: rule for rule in recorded}


@pytest.fixture(scope="module")
def targets(project, reference_files) -> dict[str, Target]:
    return {
        "//tools:lazygen": Target(exe=tuple(LAZYGEN_ARGV)),
        "//third_party/aten:native_functions.yaml": Target(path=reference_files["native_functions"]),
        "//third_party/torch:shape_inference.h": Target(path=reference_files["shape_header"]),
        "//backend:xla_yaml": Target(path=project / "backend" / "ts_native_functions.yaml"),
        "//templates:overrides": Target(path=project / "templates"),
    }


def _lazygen_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO)] + [p for p in [env.get("PYTHONPATH")] if p])
    return env


@pytest.fixture(scope="module")
def lazygen_cli() -> list[str]:
    done = subprocess.run(LAZYGEN_ARGV + ["--help"], env=_lazygen_env(), capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"`python -m lazygen --help` does not answer yet: {done.stderr.strip()[-200:]}")
    return LAZYGEN_ARGV


def _shared_naming(backend: str, autograd: bool, shards: int = 1) -> list[str]:
    namespace: dict = {}
    exec((REPO / "lazygen" / "outputs.bzl").read_text(), namespace)
    return namespace["lazy_output_names"](backend, autograd, shards)


# --- the recorded genrule -------------------------------------------------------------


def test_macro_declares_one_genrule_per_call(rules):
    assert sorted(rules) == ["ts_gen", "ts_sharded", "wrong_autograd", "wrong_backend", "xla"]
    assert {rule.kind for rule in rules.values()} == {"genrule"}


def test_outs_are_named_subtargets_with_the_contract_names(rules):
    attrs = rules["ts_gen"].attrs
    assert list(attrs["outs"]) == TS_OUTPUTS
    assert all(attrs["outs"][name] == [name] for name in TS_OUTPUTS)
    # The default output is the folder, so `$(location :ts_gen)` is one path.
    assert attrs["default_outs"] == ["."]
    assert "out" not in attrs


@pytest.mark.parametrize("name,backend,autograd,shards", [("ts_gen", "Lazy", True, 1), ("ts_sharded", "Lazy", True, SHARDS),
                                                          ("wrong_autograd", "Lazy", False, 1), ("xla", "XLA", False, 1)])
def test_outs_follow_the_shared_naming(rules, name, backend, autograd, shards):
    assert list(rules[name].attrs["outs"]) == _shared_naming(backend, autograd, shards)
    assert "XLANativeFunctions.h" in _shared_naming("XLA", False)


def test_srcs_place_each_source_path_at_its_package_path(rules):
    assert rules["ts_gen"].attrs["srcs"] == {path: path for path in ["ts_native_functions.yaml", "aten/tags.yaml"]}
    xla_paths = ["aten/native_functions.yaml", "aten/tags.yaml", "xla_kernels.cpp"]
    assert rules["xla"].attrs["srcs"] == {path: path for path in xla_paths}  # labels go through $(location)


def test_command_declares_backend_and_autograd(rules):
    ts, wrong_autograd, xla = rules["ts_gen"].attrs["cmd"], rules["wrong_autograd"].attrs["cmd"], rules["xla"].attrs["cmd"]
    assert ts.startswith("$(exe //tools:lazygen) ")
    assert "--expect-backend 'Lazy'" in ts and "--expect-autograd" in ts.split()
    assert "--expect-no-autograd" in wrong_autograd.split()
    assert "--expect-backend 'XLA'" in xla and "--expect-no-autograd" in xla.split()
    assert '-o "$OUT"' in ts
    assert "--no-shape-inference-check" in xla.split() and "--shape-inference-file" not in xla
    assert "--backend-name" not in xla  # "" means unset, as in the Bazel rule
    assert rules["xla"].attrs["visibility"] == ["PUBLIC"]
    assert "visibility" not in rules["ts_gen"].attrs


def _eval_one(project: Path, body: str) -> list[Rule]:
    evaluator = BuckEvaluator(cells={"root": project, "lazygen": REPO}, root_cell="root")
    text = 'load("@lazygen//buck:defs.bzl", "lazy_codegen")\n' + body
    return evaluator.eval_build_file("backend", text)


def test_shape_check_without_a_header_fails_at_load_time(project):
    with pytest.raises(sl.StarlarkError, match="shape_inference_file"):
        _eval_one(
            project,
            'lazy_codegen(name = "g", src = "a.yaml", native_functions = "n.yaml", tags_yaml = "t.yaml", lazygen = "//tools:lazygen")\n',
        )


def _one_genrule(project: Path, attrs: str) -> dict:
    (rule,) = _eval_one(
        project,
        'lazy_codegen(name = "g", src = "a.yaml", native_functions = "n.yaml", tags_yaml = "t.yaml", '
        f'lazygen = "//tools:lazygen", shape_inference_check = False{attrs})\n',
    )
    return rule.attrs


def test_one_shard_is_the_unsharded_genrule(project):
    # shards = 1 changes nothing: the same outputs and the same command (no
    # --shards), so the action's cache key stays what it was.
    assert _one_genrule(project, ", shards = 1") == _one_genrule(project, "")
    assert "--shards" not in _one_genrule(project, "")["cmd"]


@pytest.mark.parametrize("shards", ["0", "-1", "True", '"2"', "2.0", "None"])
def test_a_bad_number_of_shards_fails_at_load_time(project, shards):
    with pytest.raises(sl.StarlarkError, match=r'lazy_codegen\(name = "g"\): shards must be a whole number of at least 1'):
        _one_genrule(project, f", shards = {shards}")


def test_template_dirs_must_be_labels(project):
    with pytest.raises(sl.StarlarkError, match="template_dirs"):
        _eval_one(
            project,
            'lazy_codegen(name = "g", src = "a.yaml", native_functions = "n.yaml", tags_yaml = "t.yaml", '
            'lazygen = "//tools:lazygen", shape_inference_check = False, template_dirs = ["templates"])\n',
        )


# --- the command, run as Buck2 runs it ----------------------------------------------


ARGV_DUMP = """
import json, os, sys
json.dump({"cwd": os.getcwd(), "argv": sys.argv[1:]}, open(os.environ["DUMP"], "w"))
"""


def test_command_words_reach_the_tool_as_written(rules, project, targets, tmp_path):
    """Swap the tool for one that records its argv: paths resolve, odd values stay whole words."""
    script = tmp_path / "dump.py"
    script.write_text(ARGV_DUMP)
    dumping = dict(targets, **{"//tools:lazygen": Target(exe=(sys.executable, str(script)))})
    env = dict(os.environ, DUMP=str(tmp_path / "argv.json"))
    run = run_genrule(rules["xla"], project, dumping, env=env)
    assert run.returncode == 0, run.stderr
    seen = json.loads((tmp_path / "argv.json").read_text())
    cwd, argv = Path(seen["cwd"]), seen["argv"]
    assert cwd == run.srcs_dir  # genrules run from their srcs folder

    def value(flag):
        return argv[argv.index(flag) + 1]

    def same(flag, path):
        return (cwd / value(flag)).resolve() == path.resolve()

    package = project / "backend"
    assert same("-s", package / "ts_native_functions.yaml")  # a label's location
    assert same("-o", run.out_dir)
    assert same("--native-functions", package / "aten" / "native_functions.yaml")  # a source path
    assert same("--tags-yaml", package / "aten" / "tags.yaml")
    assert same("--impl-path", package / "xla_kernels.cpp")
    assert same("--template-dir", project / "templates")
    assert value("--tensor-class-hdr") == "it's a header.h"
    assert value("--tensor-class") == "torch_xla::XLATensor"
    assert value("--include-prefix") == "xla/gen"
    assert value("--torch-version") == "2.8"
    assert argv[-1] == "--qualify-names"


def test_default_include_prefix_is_package_and_name(rules):
    assert "--include-prefix 'backend/ts_gen'" in rules["ts_gen"].attrs["cmd"]


@pytest.fixture(scope="module")
def ts_genrule_run(rules, project, targets, lazygen_cli):
    return run_genrule(rules["ts_gen"], project, targets, env=_lazygen_env())


def _cli_output(reference_files, lazygen_cli, out: Path, *extra: str) -> Path:
    """The CLI run directly with PyTorch's options for the TorchScript yaml."""
    argv = lazygen_cli + [
        "-s", str(TS_YAML), "-o", str(out),
        "--native-functions", str(reference_files["native_functions"]),
        "--tags-yaml", str(reference_files["tags"]),
        "--node-base", "TsNode", "--node-base-hdr", "torch/csrc/lazy/ts_backend/ts_node.h",
        "--gen-ts-lowerings", "--build-in-tree", "--backend-name", "TorchScript",
        "--shape-inference-file", str(reference_files["shape_header"]),
        *extra,
    ]  # fmt: skip
    done = subprocess.run(argv, env=_lazygen_env(), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return out


@pytest.fixture(scope="module")
def ts_cli_output(reference_files, lazygen_cli, tmp_path_factory) -> Path:
    return _cli_output(reference_files, lazygen_cli, tmp_path_factory.mktemp("cli_out"), "--include-prefix", "backend/ts_gen")


def _tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_genrule_writes_every_declared_output(rules, ts_genrule_run):
    assert ts_genrule_run.returncode == 0, ts_genrule_run.stderr
    declared = ts_genrule_run.declared_outputs(rules["ts_gen"])
    assert sorted(declared) == sorted(TS_OUTPUTS + ["."])
    missing = [name for name, path in declared.items() if not path.exists()]
    assert missing == []


def test_genrule_output_equals_the_cli_output(ts_genrule_run, ts_cli_output):
    assert ts_genrule_run.returncode == 0, ts_genrule_run.stderr
    built, direct = _tree(ts_genrule_run.out_dir), _tree(ts_cli_output)
    assert sorted(built) == sorted(direct)
    assert set(TS_OUTPUTS) <= set(built)
    different = [name for name in built if built[name] != direct[name]]
    assert different == []


def test_generated_includes_use_the_include_prefix(ts_genrule_run):
    assert ts_genrule_run.returncode == 0, ts_genrule_run.stderr
    source = (ts_genrule_run.out_dir / "LazyNativeFunctions.cpp").read_text()
    assert "#include <backend/ts_gen/LazyIr.h>" in source
    assert "buck-out" not in source


@pytest.fixture(scope="module")
def ts_sharded_run(rules, project, targets, lazygen_cli):
    return run_genrule(rules["ts_sharded"], project, targets, env=_lazygen_env())


def test_sharded_genrule_declares_what_the_cli_lists(rules, lazygen_cli):
    rule = rules["ts_sharded"]
    assert f"--shards {SHARDS}" in rule.attrs["cmd"]
    listed = subprocess.run(
        lazygen_cli + ["-s", str(TS_YAML), "-o", "out", "--list-outputs", "--shards", str(SHARDS)],
        env=_lazygen_env(), capture_output=True, text=True, check=True,
    ).stdout.split()
    assert list(rule.attrs["outs"]) == [Path(path).name for path in listed]
    assert len(listed) == 4 + 3 * SHARDS + 1  # 3 headers + LazyIrCommon.h, 3 files per shard, autograd


def test_sharded_genrule_writes_exactly_its_declared_outputs(rules, ts_sharded_run):
    assert ts_sharded_run.returncode == 0, ts_sharded_run.stderr
    written = sorted(p.name for p in ts_sharded_run.out_dir.iterdir() if not p.name.startswith("."))
    declared = ts_sharded_run.declared_outputs(rules["ts_sharded"])
    assert written == sorted(name for name in declared if name != ".")
    assert all(path.exists() for path in declared.values())


def test_sharded_genrule_output_equals_the_cli_output(ts_sharded_run, reference_files, lazygen_cli, tmp_path):
    assert ts_sharded_run.returncode == 0, ts_sharded_run.stderr
    direct = _cli_output(reference_files, lazygen_cli, tmp_path / "cli", "--include-prefix", "backend/ts_sharded",
                         "--shards", str(SHARDS))
    assert _tree(ts_sharded_run.out_dir) == _tree(direct)
    kernels = (ts_sharded_run.out_dir / "LazyNativeFunctions_1.cpp").read_text()
    assert "#include <backend/ts_sharded/LazyIr_1.h>" in kernels


@pytest.mark.parametrize(
    "name,words",
    [("wrong_backend", ["XLA", "Lazy"]), ("wrong_autograd", ["autograd"])],
)
def test_yaml_disagreeing_with_attributes_fails_clearly(rules, project, targets, lazygen_cli, name, words):
    run = run_genrule(rules[name], project, targets, env=_lazygen_env())
    assert run.returncode != 0
    message = run.stderr
    assert "error:" in message and "Traceback" not in message
    assert "ts_native_functions.yaml" in message
    for word in words:
        assert word in message
    assert list(run.out_dir.iterdir()) == []  # nothing written


# --- lint and docs --------------------------------------------------------------------


def test_buildifier_lint_passes():
    buildifier = shutil.which("buildifier")
    if buildifier is None:
        pytest.skip("buildifier is not installed (npm install -g @bazel/buildifier)")
    done = subprocess.run(
        [buildifier, "--lint=warn", "--mode=check", str(REPO / "buck" / "defs.bzl")],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_readme_buck_example_evaluates(project):
    readme = (REPO / "buck" / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", readme, re.S)
    example = next(block for block in blocks if "lazy_codegen(" in block)
    evaluator = BuckEvaluator(cells={"root": project, "lazygen": REPO}, root_cell="root")
    recorded = evaluator.eval_build_file("backend", example)
    genrules = [rule for rule in recorded if rule.kind == "genrule"]
    libraries = [rule for rule in recorded if rule.kind == "cxx_library"]
    assert len(genrules) == 1 and len(libraries) == 1
    name, outs = genrules[0].attrs["name"], genrules[0].attrs["outs"]
    library = libraries[0].attrs
    referenced = list(library.get("srcs", [])) + list(library.get("exported_headers", {}).values())
    subtargets = re.findall(rf"^:{name}\[(.+)\]$", "\n".join(referenced), re.M)
    assert sorted(subtargets) == sorted(outs)
