"""How long `lazygen explain` takes warm on PyTorch's TorchScript yaml
(issue 18's goal: under 0.3 s), beside the same process doing nothing
(`python -c pass`, the interpreter's own start-up in this environment).

    python benchmarks/explain_time.py [--repeat N]

Warm means compiled bytecode (as an installed package runs) and the
catalogue cache filled. Prints the best and median of N runs, as wall time
and as the process's CPU time (user + system), which on a shared machine
is what the wall time is when nothing else runs.
"""

from __future__ import annotations

import argparse
import compileall
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TS_YAML = REPO / "tests" / "data" / "ts_native_functions.yaml"
TS_OPTIONS = ["--gen-ts-lowerings", "--node-base", "torch::lazy::TsNode", "--node-base-hdr", "torch/csrc/lazy/ts_backend/ts_node.h"]
GOAL_S = 0.3


def measure(cmd: list[str], repeat: int) -> tuple[list[float], list[float]]:
    walls, cpus = [], []
    for _ in range(repeat):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
        walls.append(time.perf_counter() - start)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpus.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
        if proc.returncode != 0:
            raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stderr}")
    return walls, cpus


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=10)
    args = parser.parse_args()
    # The package `python -m lazygen` imports (an editable install may name
    # another checkout than this one), compiled as an installed one is.
    where = subprocess.run([sys.executable, "-c", "import lazygen, os; print(os.path.dirname(lazygen.__file__))"],
                           capture_output=True, text=True, check=True, cwd=REPO).stdout.strip()
    compileall.compile_dir(where, quiet=1)
    print(f"lazygen from {where}")
    explain = [sys.executable, "-m", "lazygen", "explain", "-s", str(TS_YAML), *TS_OPTIONS, "add.Tensor"]
    measure(explain, 1)  # fills the catalogue cache
    rows = [("python -c pass", measure([sys.executable, "-c", "pass"], args.repeat)),
            ("lazygen explain add.Tensor", measure(explain, args.repeat))]
    print(f"| command | best wall | median wall | best CPU | median CPU |\n|---|---|---|---|---|")
    for name, (walls, cpus) in rows:
        print(f"| {name} | {min(walls):.3f} s | {statistics.median(walls):.3f} s | {min(cpus):.3f} s | {statistics.median(cpus):.3f} s |")
    best = min(rows[1][1][1])
    print(f"\nexplain, best CPU {best:.3f} s: goal < {GOAL_S} s {'met' if best < GOAL_S else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
