"""Time lazygen against the reference (torchgen from torch==2.13.0) side by
side, in one run, and print a table of ratios.

    python benchmarks/bench.py [--repeat N]

Scenarios, for PyTorch's TorchScript yaml (with PyTorch's options) and for a
yaml listing every op the reference can generate under full_codegen:
  cold   empty lazygen cache, no outputs
  warm   lazygen cache filled, no outputs
  no-op  nothing changed since the last run
The reference does the same work in every scenario; it is timed each time.
Each time is the fastest of --repeat runs (this shared machine's noise only
ever adds time; both tools are measured the same way, interleaved); the
median is printed beside it. Peak RSS is the largest seen.
"""

from __future__ import annotations

import argparse
import compileall
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.reference import Reference, torch_include_dirs  # noqa: E402

TS_YAML = REPO / "tests" / "data" / "ts_native_functions.yaml"
TS_FLAGS = ["--node-base", "TsNode", "--node-base-hdr", "torch/csrc/lazy/ts_backend/ts_node.h",
            "--gen-ts-lowerings", "--build-in-tree", "--backend-name", "TorchScript"]

REFERENCE_SCRIPT = """
import sys
from torchgen.gen_lazy_tensor import run_gen_lazy_tensor
from torchgen.dest.lazy_ir import GenLazyIR, GenTSLazyIR
import importlib.util, os
aten = os.path.join(importlib.util.find_spec("torchgen").submodule_search_locations[0], "packaged", "ATen")
yaml, out, ts, shape_hdr = sys.argv[1:5]
kwargs = dict(node_base="TsNode", node_base_hdr="torch/csrc/lazy/ts_backend/ts_node.h", build_in_tree=True,
              backend_name="TorchScript", lazy_ir_generator=GenTSLazyIR) if ts == "ts" else {}
run_gen_lazy_tensor(aten, yaml, out, False, None, shape_inference_hdr=shape_hdr, **kwargs)
"""

TARGETS = {  # (yaml, scenario): minimum speed-up
    ("ts", "cold"): 3.0,
    ("ts", "warm"): 8.0,
    ("ts", "no-op"): 30.0,
    ("every-op", "warm"): 10.0,
}
RSS_TARGET = 0.75  # lazygen's peak RSS at most this fraction of the reference's


# Peak RSS is read from the child's own /proc/self/status (VmHWM) at exit:
# getrusage would also count the pages the child inherited when this (large)
# process forked it.
RSS_PRELUDE = (
    "import atexit, sys\n"
    "def _report():\n"
    "    for line in open('/proc/self/status'):\n"
    "        if line.startswith('VmHWM:'):\n"
    "            sys.stderr.write('\\nBENCH_VMHWM ' + line.split()[1] + '\\n')\n"
    "atexit.register(_report)\n"
)


def timed(cmd: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, int]:
    """Wall time (s) and peak RSS (KiB) of one run of `python -m lazygen ...`
    or `python -c SCRIPT ...`."""
    assert cmd[0] == sys.executable and cmd[1] in ("-m", "-c")
    if cmd[1] == "-m":
        launcher = RSS_PRELUDE + f"import runpy; sys.argv = [{cmd[2]!r}] + sys.argv[1:]; runpy.run_module({cmd[2]!r}, run_name='__main__', alter_sys=True)"
    else:
        launcher = RSS_PRELUDE + cmd[2]
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", launcher, *cmd[3:]], cwd=cwd, env=env, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"command failed ({proc.returncode}): {' '.join(cmd[:2])} ...\n{proc.stderr}")
    rss = int(proc.stderr.rsplit("BENCH_VMHWM ", 1)[1].split()[0])
    return elapsed, rss


def every_op_yaml(work: Path) -> tuple[Path, Path]:
    """A yaml of every op the reference can generate under full_codegen, and a
    shape header declaring every compute_shape_* they need."""
    with Reference() as ref:
        probe = ref.probe()
    ops = [op for op, info in probe.items() if info["kind"] == "functional" and info["full_codegen_ok"]]
    yaml = work / "every_op.yaml"
    yaml.write_text("backend: Lazy\ncpp_namespace: torch::lazy\nfull_codegen:\n" + "".join(f"- {op}\n" for op in ops))
    header = work / "every_op_shapes.h"
    header.write_text("\n".join(d for op in ops for d in probe[op].get("shape_decls") or []) + "\n")
    return yaml, header


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    include = torch_include_dirs()
    if not include:
        raise SystemExit("torch 2.13.0 is not installed (pip install torch==2.13.0)")
    work = Path(tempfile.mkdtemp(prefix="lazygen-bench-"))
    cwd = include[0]  # the default shape header resolves here, for both tools
    every_yaml, every_header = every_op_yaml(work)
    cases = {
        "ts": (TS_YAML, TS_FLAGS, "ts", "torch/csrc/lazy/core/shape_inference.h"),
        # --allow-uncompilable: the same ops as the reference, and the same bytes
        # (lazygen otherwise refuses the ops whose code would not compile).
        "every-op": (every_yaml, ["--shape-inference-hdr", str(every_header), "--allow-uncompilable"], "default", str(every_header)),
    }
    # Both tools run from compiled bytecode, as pip leaves an installed
    # package; a source checkout may have none yet, or stale files (and
    # PYTHONDONTWRITEBYTECODE would keep every run compiling them again).
    compileall.compile_dir(str(REPO / "lazygen"), quiet=1)
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    rows = []
    for name, (yaml, flags, ref_kind, ref_shape) in cases.items():
        results: dict[str, dict[str, list]] = {}
        for scenario in ("cold", "warm", "no-op"):
            ref_times, lg_times, ref_rss, lg_rss = [], [], [], []
            for i in range(args.repeat):
                ref_out = work / f"ref-{name}-{scenario}-{i}"
                t, rss = timed([sys.executable, "-c", REFERENCE_SCRIPT, str(yaml), str(ref_out), ref_kind, ref_shape], cwd, env)
                ref_times.append(t)
                ref_rss.append(rss)
                cache = work / f"cache-{name}"
                out = work / f"lg-{name}-{scenario}-{i}"
                lg_env = dict(env, LAZYGEN_CACHE_DIR=str(cache))
                cmd = [sys.executable, "-m", "lazygen", "-s", str(yaml), "-o", str(out), *flags]
                if scenario == "cold":
                    shutil.rmtree(cache, ignore_errors=True)
                else:
                    timed(cmd, cwd, lg_env)  # fills the cache; for no-op also the outputs
                    if scenario == "warm":
                        shutil.rmtree(out)
                t, rss = timed(cmd, cwd, lg_env)
                lg_times.append(t)
                lg_rss.append(rss)
            results[scenario] = {"ref": ref_times, "lg": lg_times, "ref_rss": ref_rss, "lg_rss": lg_rss}
            ref_min, lg_min = min(ref_times), min(lg_times)
            median_ratio = statistics.median(ref_times) / statistics.median(lg_times)
            rss_ratio = max(lg_rss) / max(ref_rss)
            target = TARGETS.get((name, scenario))
            ok = "" if target is None else ("yes" if ref_min / lg_min >= target else "NO")
            rows.append((name, scenario, ref_min, lg_min, ref_min / lg_min, median_ratio, target, ok, max(ref_rss), max(lg_rss), rss_ratio))
    shutil.rmtree(work, ignore_errors=True)

    print(f"{'yaml':9} {'scenario':8} {'torchgen s':>10} {'lazygen s':>10} {'speed-up':>9} {'(median)':>9} {'target':>7} "
          f"{'met':>4} {'ref RSS MiB':>11} {'lg RSS MiB':>10} {'RSS ratio':>9} {'met':>4}")
    for name, scenario, ref_s, lg_s, ratio, median_ratio, target, ok, rrss, lrss, rss_ratio in rows:
        tgt = f"{target:.0f}x" if target else "-"
        rss_ok = "yes" if rss_ratio <= RSS_TARGET else "NO"
        print(f"{name:9} {scenario:8} {ref_s:10.3f} {lg_s:10.3f} {ratio:8.1f}x {median_ratio:8.1f}x {tgt:>7} {ok or '-':>4} "
              f"{rrss / 1024:11.1f} {lrss / 1024:10.1f} {rss_ratio:9.2f} {rss_ok:>4}")


if __name__ == "__main__":
    main()
