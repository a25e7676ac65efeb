"""examples/demo_backend end to end: an out-of-tree lazy backend built with lazygen runs on device="lazy".

Once per module: the demo is installed with `pip install
--no-build-isolation` into the session's venv holding a wheel of this
checkout's lazygen (tests/wheel_env.py), as a backend author would. The
tests then check the wheel's CMake entry points, the demo's build log, and
run every op of the demo's yaml on the lazy device against eager CPU. (That
the demo is what `lazygen init` writes is tests/test_init.py's.)
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "examples" / "demo_backend"
DEMO_YAML = DEMO / "lazygen_demo_native_functions.yaml"
CMAKE_FILES = ("LazyGen.cmake", "LazyGenConfig.cmake", "LazyGenConfigVersion.cmake")


@dataclass
class DemoEnv:
    wheel_env: object  # tests/wheel_env.WheelEnv
    demo_log: str  # pip -v output of the demo's build
    build_dir: Path

    @property
    def site_packages(self) -> Path:
        return self.wheel_env.site_packages

    @property
    def seconds(self) -> dict[str, float]:
        return self.wheel_env.seconds

    def run(self, code: str) -> subprocess.CompletedProcess[str]:
        return self.wheel_env.run("-c", code)


@pytest.fixture(scope="module")
def demo(wheel_env, tmp_path_factory) -> DemoEnv:
    build_dir = tmp_path_factory.mktemp("demo_backend") / "demo-build"  # a fixed build folder, so compile_commands.json can be read
    demo_log, wheel_env.seconds["pip install demo_backend"] = wheel_env.pip_install(
        "-C", f"build-dir={build_dir}", "-C", "cmake.define.CMAKE_EXPORT_COMPILE_COMMANDS=ON", str(DEMO)
    )
    print(f"demo_backend: pip install took {wheel_env.seconds['pip install demo_backend']:.1f}s")
    return DemoEnv(wheel_env, demo_log, build_dir)


def test_lazygen_wheel_serves_its_cmake_files_through_the_entry_points(demo: DemoEnv):
    probe = demo.run(
        "import json, importlib.metadata as md, importlib.resources as res, importlib, lazygen\n"
        "out = {'lazygen': lazygen.__file__, 'groups': {}}\n"
        "for group in ('cmake.module', 'cmake.prefix'):\n"
        "    eps = [ep for ep in md.entry_points(group=group) if ep.name == 'LazyGen']\n"
        "    mods = [importlib.import_module(ep.value) for ep in eps]\n"
        "    # scikit-build-core reads the folder with importlib.resources.files().\n"
        "    out['groups'][group] = [[list(m.__path__), sorted(p.name for p in res.files(m).iterdir())] for m in mods]\n"
        "print(json.dumps(out))\n"
    )
    assert probe.returncode == 0, probe.stderr
    found = json.loads(probe.stdout)
    # The wheel's lazygen, not the checkout's (or an editable install's).
    assert Path(found["lazygen"]).parent == demo.site_packages / "lazygen", found
    assert set(found["groups"]) == {"cmake.module", "cmake.prefix"}
    for group, modules in found["groups"].items():
        assert len(modules) == 1, (group, modules)
        paths, names = modules[0]
        assert [Path(p) for p in paths] == [demo.site_packages / "lazygen" / "cmake"], (group, paths)
        assert set(CMAKE_FILES) <= set(names), (group, names)
        for name in CMAKE_FILES:
            assert (Path(paths[0]) / name).read_bytes() == (REPO / "cmake" / name).read_bytes(), name


def test_demo_build_found_lazygen_through_the_entry_point_and_compiled_generated_sources(demo: DemoEnv):
    log = demo.demo_log
    found = re.search(r"lazygen_demo: LazyGen (\S+) from (\S+)", log)
    assert found, log[-5000:]
    assert found.group(1).startswith("0.1")
    assert Path(found.group(2)).resolve() == (demo.site_packages / "lazygen" / "cmake").resolve(), found.group(0)
    assert "lazygen: generating lazy tensor sources from lazygen_demo_native_functions.yaml" in log, log[-5000:]
    compiled = set(re.findall(r"Building CXX object \S*/([^/\s]+)\.o\b", log))
    # No autograd section in the yaml, and SHARDS 2: the kernels and the
    # registration in two translation units each, plus the binding.
    assert compiled == {"LazyNativeFunctions_0.cpp", "LazyNativeFunctions_1.cpp", "RegisterLazy_0.cpp", "RegisterLazy_1.cpp",
                        "module.cpp"}, log[-5000:]
    # The flags torch needs: C++20 and the C++11 ABI.
    commands = json.loads((demo.build_dir / "compile_commands.json").read_text())
    assert {Path(c["file"]).name for c in commands} == compiled
    for entry in commands:
        assert "-std=c++20" in entry["command"] and "-D_GLIBCXX_USE_CXX11_ABI=1" in entry["command"], entry
    generated = demo.build_dir / "lazygen" / "lazygen_demo" / "generated"
    for shard in ("LazyNativeFunctions_0.cpp", "LazyNativeFunctions_1.cpp"):
        text = (generated / shard).read_text()
        assert 'TORCH_LAZY_FN_COUNTER("lazygen_demo::")' in text
        assert "namespace lazygen_demo {" in text


# Each case runs one op of the yaml on the lazy device and on the CPU. The
# script reports, per case, the metrics counters the lazy run bumped.
RUN_OPS = r"""
import json
import torch
import torch._lazy
import torch._lazy.metrics as metrics
import lazygen_demo

lazygen_demo.register()
torch.manual_seed(0)
a, b = torch.randn(4, 5), torch.randn(4, 5)
m = torch.randn(5, 3)
F = torch.nn.functional
CASES = [
    ("relu", "relu", lambda a, b, m: torch.relu(a)),
    ("sigmoid", "sigmoid", lambda a, b, m: torch.sigmoid(a)),
    ("add", "add.Tensor", lambda a, b, m: torch.add(a, b, alpha=2.5)),
    ("sub", "sub.Tensor", lambda a, b, m: torch.sub(a, b, alpha=0.5)),
    ("mul", "mul.Tensor", lambda a, b, m: a * b),
    ("mul by a Python number", "mul.Tensor", lambda a, b, m: a * 3.0),
    ("pow", "pow.Tensor_Scalar", lambda a, b, m: torch.pow(a, 3)),
    ("leaky_relu", "leaky_relu", lambda a, b, m: F.leaky_relu(a, 0.2)),
    ("clamp", "clamp", lambda a, b, m: torch.clamp(a, min=-0.5, max=0.5)),
    ("clamp min only", "clamp", lambda a, b, m: torch.clamp(a, min=0.1)),
    ("mm", "mm", lambda a, b, m: a @ m),
    ("sum", "sum.dim_IntList", lambda a, b, m: a.sum(dim=1, keepdim=True)),
]
la, lb, lm = a.to("lazy"), b.to("lazy"), m.to("lazy")
torch._lazy.mark_step()
all_counters = set()
report = []
for name, op, fn in CASES:
    metrics.reset()
    got = fn(la, lb, lm)
    torch._lazy.mark_step()
    counters = sorted(metrics.counter_names())
    all_counters.update(counters)
    error = None
    try:
        assert got.device.type == "lazy", got.device
        torch.testing.assert_close(got.cpu(), fn(a, b, m))
    except AssertionError as exc:
        error = str(exc)
    report.append({"case": name, "op": op, "counters": counters, "error": error})
print(json.dumps({"cases": report, "all_counters": sorted(all_counters)}))
"""


@pytest.fixture(scope="module")
def ran(demo: DemoEnv) -> dict:
    start = time.monotonic()
    proc = demo.run(RUN_OPS)
    demo.seconds["run ops"] = time.monotonic() - start
    print(f"demo_backend: ran the ops in {demo.seconds['run ops']:.1f}s")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _yaml_ops() -> list[str]:
    return yaml.safe_load(DEMO_YAML.read_text())["full_codegen"]


def test_demo_yaml_sets_key_namespace_and_required_ops():
    spec = yaml.safe_load(DEMO_YAML.read_text())
    assert spec["backend"] == "Lazy" and spec["cpp_namespace"] == "lazygen_demo"
    assert {"relu", "add.Tensor", "mul.Tensor"} <= set(spec["full_codegen"])


def test_every_yaml_op_matches_eager_cpu_on_the_lazy_device(ran: dict):
    assert {c["op"] for c in ran["cases"]} == set(_yaml_ops()), "every full_codegen op is exercised"
    failures = [f"{c['case']}: {c['error']}" for c in ran["cases"] if c["error"]]
    assert not failures, "\n".join(failures)


def test_generated_kernels_did_the_tracing(ran: dict):
    """Each op bumped exactly its own lazygen_demo:: counter, and the TorchScript backend's kernel did not run."""
    for case in ran["cases"]:
        base = case["op"].split(".")[0]
        ours = {c for c in case["counters"] if c.startswith("lazygen_demo::")}
        assert ours == {f"lazygen_demo::{base}"}, case
        assert f"lazy::{base}" not in case["counters"], case
    wanted = {f"lazygen_demo::{op.split('.')[0]}" for op in _yaml_ops()}
    assert "lazygen_demo::relu" in ran["all_counters"]
    assert wanted <= set(ran["all_counters"]), ran["all_counters"]
