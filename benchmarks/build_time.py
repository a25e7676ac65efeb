"""Build time of the generated code, unsharded and with --shards N, side by
side in one run (issue 16).

    python benchmarks/build_time.py [--yaml ts|large|both] [--shards 2,4,8] [-j 2] [--work DIR] [--pch] [--no-rebuild]

Each configuration generates a backend and compiles every generated .cpp with
`g++ -O2 -fPIC -c` against torch 2.13's headers, `-j` compilers at a time
(largest file first, as a make/Ninja build with enough jobs would keep
both cores busy). Then it adds one op to the yaml, regenerates (lazygen
leaves unchanged files untouched) and recompiles what a make/Ninja build
would: each object whose depfile (-MMD) names a file lazygen rewrote. A second
edit then moves one op from full_codegen to supported (its kernel to be
written by hand, a common step while a backend grows): it leaves the
headers that list every op unchanged, so only that op's shard recompiles.

Backends:
  ts     PyTorch's TorchScript yaml with PyTorch's options; the edit adds
         `isnan` (its shape function is in torch's shape_inference.h)
  large  every functional op of the catalogue the compilability check accepts,
         under full_codegen, TorchScript options, shape header written by
         --write-missing-shapes; the edit adds back `isnan`, left out of the
         first build

Measured per configuration: clean-build wall time, total CPU (user+sys of
the compilers and their children), peak RSS of the largest compiler process
(wait4's rusage), the longest TU, the 16-core estimate max(CPU/16, critical
path) where the critical path is the longest TU plus the precompiled
header's build (--pch), which every TU waits for, and the rebuild wall time
after each edit. Ratios are against the unsharded build of the same run:
on a shared machine compile times drift from run to run, so compare
within one. ccache is disabled (CCACHE_DISABLE=1) and `g++` is called
directly.

--pch (opt-in) adds, for the largest N, a build in which every TU first
includes a precompiled header of the torch headers the TUs share.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import sys
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from lazygen import Options, UserError, generate  # noqa: E402
from lazygen import compilable  # noqa: E402
from lazygen.catalogue_cache import load_catalogue  # noqa: E402
from lazygen.locate import default_aten_path  # noqa: E402
from lazygen.schema import Kind  # noqa: E402
from tests.reference import torch_include_dirs  # noqa: E402

TS_YAML = REPO / "tests" / "data" / "ts_native_functions.yaml"
TS_OPTIONS = dict(node_base="TsNode", node_base_hdr="torch/csrc/lazy/ts_backend/ts_node.h", gen_ts_lowerings=True,
                  build_in_tree=True, backend_name="TorchScript")
ADDED_OP = "isnan"
MOVED_OP = "cos"  # in both backends' full_codegen list
CXXFLAGS = ["-std=c++20", "-O2", "-fPIC", "-D_GLIBCXX_USE_CXX11_ABI=1", "-w"]

# (what, yaml): the largest ratio against unsharded that meets the target.
TARGETS = {
    ("clean", "ts"): 0.65,
    ("clean", "large"): 0.6,
    ("rss", "ts"): 0.5,
    ("rss", "large"): 0.5,
    ("est16", "ts"): 0.25,
    ("est16", "large"): 0.25,
}


@dataclass(frozen=True)
class TU:
    name: str
    wall: float
    cpu: float
    rss_kib: int


@dataclass(frozen=True)
class Build:
    wall: float
    tus: tuple[TU, ...]
    # A step every TU waits for (building the precompiled header), counted
    # in the wall time, the CPU and the critical path.
    prelude: TU | None = None

    @property
    def cpu(self) -> float:
        return sum(t.cpu for t in self.tus) + (self.prelude.cpu if self.prelude else 0.0)

    @property
    def rss_kib(self) -> int:
        return max(t.rss_kib for t in self.tus + ((self.prelude,) if self.prelude else ()))

    @property
    def longest(self) -> TU:
        return max(self.tus, key=lambda t: t.wall)

    def critical_path(self) -> float:
        return (self.prelude.wall if self.prelude else 0.0) + self.longest.wall

    def est16(self) -> float:
        return max(self.cpu / 16, self.critical_path())


# ------------------------------------------------------------------ compiling


def compile_all(sources: list[Path], objdir: Path, include_dirs: list[Path], jobs: int, extra: list[str] = ()) -> Build:
    """Compile `sources` (largest first), `jobs` at a time; each child's
    rusage comes from wait4, which covers cc1plus and as under the driver."""
    objdir.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, CCACHE_DISABLE="1", LC_ALL="C")
    queue = sorted(sources, key=lambda p: p.stat().st_size, reverse=True)
    lock = threading.Lock()
    results: list[TU] = []
    failures: list[str] = []

    def worker():
        while True:
            with lock:
                if not queue:
                    return
                src = queue.pop(0)
            obj = objdir / (src.name + ".o")
            log = objdir / (src.name + ".log")
            argv = ["g++", *CXXFLAGS, *extra, *(f"-I{d}" for d in include_dirs),
                    "-MMD", "-MF", str(obj) + ".d", "-c", str(src), "-o", str(obj)]
            fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            actions = [(os.POSIX_SPAWN_DUP2, fd, 1), (os.POSIX_SPAWN_DUP2, fd, 2)]
            start = time.perf_counter()
            pid = os.posix_spawnp("g++", argv, env, file_actions=actions)
            os.close(fd)
            _, status, usage = os.wait4(pid, 0)
            wall = time.perf_counter() - start
            with lock:
                if os.waitstatus_to_exitcode(status) != 0:
                    failures.append(f"{src}: see {log}")
                results.append(TU(src.name, wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss))

    start = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(jobs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    if failures:
        raise SystemExit("compilation failed:\n" + "\n".join(failures))
    return Build(wall, tuple(sorted(results, key=lambda t: t.name)))


def stale_sources(sources: list[Path], objdir: Path, changed: set[Path]) -> list[Path]:
    """The sources make/Ninja would recompile: those whose depfile names a changed file."""
    out = []
    for src in sources:
        depfile = objdir / (src.name + ".o.d")
        deps = {Path(d).resolve() for d in depfile.read_text().replace("\\\n", " ").split(":", 1)[1].split()}
        if deps & changed:
            out.append(src)
    return out


# ------------------------------------------------------------------ backends


@dataclass(frozen=True)
class Backend:
    yaml: Path  # the first build
    plus_one: Path  # the first edit: ADDED_OP added under full_codegen
    moved: Path  # the second edit: then MOVED_OP moved from full_codegen to supported
    options: dict


def moved_to_supported(text: str, work: Path, name: str) -> Path:
    """`text` with MOVED_OP's full_codegen line moved under supported."""
    line = re.search(rf"^( *- ){re.escape(MOVED_OP)}\n", text, re.M)
    assert line is not None, f"{MOVED_OP} is not under full_codegen"
    text = text[:line.start()] + text[line.end():]
    if re.search(r"^supported:\n", text, re.M):
        text = re.sub(r"^supported:\n", f"supported:\n{line.group(1)}{MOVED_OP}\n", text, count=1, flags=re.M)
    else:
        text += f"supported:\n- {MOVED_OP}\n"
    path = work / name
    path.write_text(text, encoding="utf-8")
    return path


def ts_backend(work: Path) -> Backend:
    """The TS yaml, its two edits, and the options."""
    text = TS_YAML.read_text(encoding="utf-8")
    assert f"- {ADDED_OP}\n" not in text
    edited = work / "ts_plus_one.yaml"
    edited_text = text.replace("full_codegen:\n", f"full_codegen:\n  - {ADDED_OP}\n", 1)
    edited.write_text(edited_text, encoding="utf-8")
    return Backend(TS_YAML, edited, moved_to_supported(edited_text, work, "ts_moved.yaml"), dict(TS_OPTIONS))


def large_backend(work: Path) -> Backend:
    """Every functional op the compilability check accepts under full_codegen
    (less ADDED_OP in the first yaml), and a shape header declaring them all."""
    aten = default_aten_path()
    if aten is None:
        raise SystemExit("torchgen's native_functions.yaml is not installed")
    catalogue = load_catalogue(aten / "native" / "native_functions.yaml", aten / "native" / "tags.yaml")
    functional = [op for op in catalogue.order if catalogue.function(op).kind is Kind.functional]
    ops = compilable.accepted(catalogue, functional, node_base="TsNode", ts_lowerings=True)
    ops = _generable(work, ops)
    assert ADDED_OP in ops
    edited = work / "large_all.yaml"
    edited.write_text("backend: Lazy\ncpp_namespace: torch::lazy\nfull_codegen:\n" + "".join(f"- {op}\n" for op in ops), encoding="utf-8")
    base = work / "large.yaml"
    base.write_text("backend: Lazy\ncpp_namespace: torch::lazy\nfull_codegen:\n" + "".join(f"- {op}\n" for op in ops if op != ADDED_OP),
                    encoding="utf-8")
    shapes = work / "shapes" / "shape_inference.h"
    try:  # a new backend's first run: writes the shape header, then stops
        generate(Options(source_yaml=edited, output_dir=str(work / "probe"), include_prefix="gen",
                         write_missing_shapes=shapes, **TS_OPTIONS))
    except UserError:
        pass
    assert shapes.is_file()
    print(f"large yaml: {len(ops)} full_codegen ops ({len(functional) - len(ops)} functional ops refused by the compilability check or the generator)", flush=True)
    moved = moved_to_supported(edited.read_text(encoding="utf-8"), work, "large_moved.yaml")
    return Backend(base, edited, moved, dict(TS_OPTIONS, shape_inference_hdr="shapes/shape_inference.h"))


def _generable(work: Path, ops: list[str]) -> list[str]:
    """`ops` less those the generator itself refuses (an IR operand of type
    Tensor?[], a Storage argument: torchgen refuses them too), found by dry
    runs that drop each refused op's yaml line."""
    probe = work / "probe.yaml"
    for _ in range(5):
        probe.write_text("backend: Lazy\ncpp_namespace: torch::lazy\nfull_codegen:\n" + "".join(f"- {op}\n" for op in ops),
                         encoding="utf-8")
        try:
            generate(Options(source_yaml=probe, output_dir=str(work / "probe"), check_shape_inference=False, dry_run=True,
                             **TS_OPTIONS))
            return ops
        except UserError as err:
            refused = {ops[d.line - 4] for d in err.diagnostics if d.line and d.severity == "error"}
            ops = [op for op in ops if op not in refused]
    raise SystemExit("could not find the ops the generator accepts")


# ------------------------------------------------------------------ one configuration


@dataclass(frozen=True)
class Rebuild:
    """What a make/Ninja build does after one yaml edit."""
    wall: float | None  # None: not measured (--no-rebuild)
    stale: int  # TUs whose depfile names a file the edit rewrote
    total: int

    def cell(self) -> str:
        if self.wall is None:
            return f"{self.stale} of {self.total} TUs stale"
        return f"{self.wall:.1f} s ({self.stale} of {self.total} TUs)"


@dataclass(frozen=True)
class Run:
    shards: int
    label: str
    clean: Build
    plus_one: Rebuild  # after the first edit (ADDED_OP added)
    moved: Rebuild  # after the second edit (MOVED_OP moved to supported)

    @property
    def total_tus(self) -> int:
        return len(self.clean.tus)


def run_config(work: Path, backend: Backend, shards: int, include_dirs: list[Path], jobs: int,
               pch: bool = False, rebuild: bool = True) -> Run:
    label = f"N={shards}" + (" pch" if pch else "")
    folder = work / label.replace("=", "").replace(" ", "_")
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    options = backend.options
    if (work / "shapes").is_dir():  # the large yaml's own shape header, found through -I folder
        shutil.copytree(work / "shapes", folder / "shapes")
        options = dict(options, shape_inference_file=folder / "shapes" / "shape_inference.h")
    base = Options(source_yaml=backend.yaml, output_dir=str(folder / "gen"), include_prefix="gen", shards=shards, **options)
    result = generate(base)
    sources = [p for p in result.outputs if p.suffix == ".cpp"]
    includes = [folder, *include_dirs]
    extra: list[str] = []
    prelude = None
    if pch:
        extra, prelude = precompile(folder, sources, includes)
    objdir = folder / "obj"
    print(f"  {label}: compiling {len(sources)} TUs ...", flush=True)
    clean = compile_all(sources, objdir, includes, jobs, extra)
    if prelude is not None:
        clean = replace(clean, wall=clean.wall + prelude.wall, prelude=prelude)
    print(f"  {label}: clean {clean.wall:.1f} s wall, {clean.cpu:.1f} s CPU, peak RSS {clean.rss_kib / 1048576:.2f} GiB, "
          f"longest TU {clean.longest.wall:.1f} s, 16-core estimate {clean.est16():.1f} s", flush=True)

    def edit(yaml: Path, what: str) -> Rebuild:
        start = time.perf_counter()
        again = generate(replace(base, source_yaml=yaml))
        changed = {(folder / "gen" / name).resolve() for name in again.written}
        current = [p for p in again.outputs if p.suffix == ".cpp"]
        stale = stale_sources(current, objdir, changed)
        wall = None
        if rebuild:
            compile_all(stale, objdir, includes, jobs, extra)
            wall = time.perf_counter() - start
        done = Rebuild(wall, len(stale), len(current))
        print(f"  {label}: after {what}: {done.cell()}", flush=True)
        return done

    plus_one = edit(backend.plus_one, f"adding {ADDED_OP}")
    moved = edit(backend.moved, f"moving {MOVED_OP} to supported")
    return Run(shards, label, clean, plus_one, moved)


def precompile(folder: Path, sources: list[Path], includes: list[Path]) -> tuple[list[str], TU]:
    """A precompiled header of the torch headers the TUs include; returns the flags that
    use it and its build, which the clean build counts (a real build makes
    it once, before any TU)."""
    # The union, in first-seen order: a TU that does not need some of these
    # headers only pays for loading the precompiled state.
    common: list[str] = []
    for src in sources:
        for line in src.read_text(encoding="utf-8").splitlines():
            if line.startswith("#include <") and not line.startswith("#include <gen/") and line not in common:
                common.append(line)
    pch_dir = folder / "pch"
    pch_dir.mkdir()
    header = pch_dir / "lazy_pch.h"
    header.write_text("".join(line + "\n" for line in common), encoding="utf-8")
    argv = ["g++", *CXXFLAGS, *(f"-I{d}" for d in includes), "-x", "c++-header", str(header), "-o", str(header) + ".gch"]
    start = time.perf_counter()
    pid = os.posix_spawnp("g++", argv, dict(os.environ, CCACHE_DISABLE="1"))
    _, status, usage = os.wait4(pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit("building the precompiled header failed")
    built = TU(header.name + ".gch", time.perf_counter() - start, usage.ru_utime + usage.ru_stime, usage.ru_maxrss)
    print(f"  pch: {len(common)} headers precompiled in {built.wall:.1f} s", flush=True)
    return ["-include", str(header), "-Winvalid-pch"], built


# ------------------------------------------------------------------ the table


def ratio_cell(value: float, base: float, target: float | None) -> str:
    r = value / base
    if target is None:
        return f"{r:.2f}x"
    return f"{r:.2f}x {'met' if r <= target else 'NOT met'} (<= {target}x)"


def table(yaml_name: str, runs: list[Run], jobs: int) -> str:
    base = runs[0]
    assert base.shards == 1 and not base.label.endswith("pch")
    rows = [
        ("TUs", lambda r: str(r.total_tus), None, None),
        (f"clean build wall (-j{jobs})", lambda r: f"{r.clean.wall:.1f} s", lambda r: r.clean.wall, ("clean", yaml_name)),
        ("total CPU", lambda r: f"{r.clean.cpu:.1f} s", lambda r: r.clean.cpu, None),
        ("peak RSS (one compiler)", lambda r: f"{r.clean.rss_kib / 1048576:.2f} GiB", lambda r: r.clean.rss_kib, ("rss", yaml_name)),
        ("longest TU", lambda r: f"{r.clean.longest.wall:.1f} s {r.clean.longest.name}", lambda r: r.clean.longest.wall, None),
        ("critical path (pch + longest TU)", lambda r: f"{r.clean.critical_path():.1f} s", lambda r: r.clean.critical_path(), None),
        ("16-core estimate", lambda r: f"{r.clean.est16():.1f} s", lambda r: r.clean.est16(), ("est16", yaml_name)),
    ]
    timed = all(r.plus_one.wall is not None for r in runs)
    rows.append((f"rebuild after adding {ADDED_OP} (-j{jobs})", lambda r: r.plus_one.cell(),
                 (lambda r: r.plus_one.wall) if timed else None, None))
    rows.append((f"rebuild after moving {MOVED_OP} to supported (-j{jobs})", lambda r: r.moved.cell(),
                 (lambda r: r.moved.wall) if timed else None, None))
    labels = [r.label for r in runs]
    lines = [f"## {yaml_name}", "", "| | " + " | ".join(labels) + " |", "|---" * (len(labels) + 1) + "|"]
    for name, show, value, target_key in rows:
        cells = [show(r) for r in runs]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
        if value is not None:
            target = TARGETS.get(target_key) if target_key else None
            ratios = ["1.00x"] + [ratio_cell(value(r), value(base), target) for r in runs[1:]]
            lines.append(f"| {name}, ratio | " + " | ".join(ratios) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--yaml", choices=["ts", "large", "both"], default="both")
    parser.add_argument("--shards", default="2,4,8", help="comma-separated N >= 2 to compare with unsharded")
    parser.add_argument("-j", "--jobs", type=int, default=2)
    parser.add_argument("--work", type=Path, default=None, help="build folder (default: a new temporary one, kept)")
    parser.add_argument("--pch", action="store_true", help="also build the largest N with a precompiled header")
    parser.add_argument("--no-rebuild", action="store_true",
                        help="after each edit, only count the TUs a build would recompile (after adding an op, all of them: "
                             "every TU includes the header that declares every kernel)")
    parser.add_argument("--cxxflags", default=" ".join(CXXFLAGS), help="compiler flags (default: %(default)s)")
    args = parser.parse_args(argv)
    CXXFLAGS[:] = args.cxxflags.split()
    include_dirs = torch_include_dirs()
    if not include_dirs or shutil.which("g++") is None:
        raise SystemExit("needs g++ and torch 2.13's headers (pip install torch==2.13.0)")
    shard_counts = [int(n) for n in args.shards.split(",")]
    work = args.work or Path(os.environ.get("TMPDIR", "/tmp")) / f"lazygen-build-time-{os.getpid()}"
    work.mkdir(parents=True, exist_ok=True)
    print(f"work folder: {work}; g++ {' '.join(CXXFLAGS)} -j{args.jobs}; CCACHE_DISABLE=1", flush=True)

    tables = []
    for name in (["ts", "large"] if args.yaml == "both" else [args.yaml]):
        folder = work / name
        folder.mkdir(exist_ok=True)
        backend = (ts_backend if name == "ts" else large_backend)(folder)
        print(f"{name}:", flush=True)
        rebuild = not args.no_rebuild
        runs = [run_config(folder, backend, n, include_dirs, args.jobs, rebuild=rebuild) for n in [1, *shard_counts]]
        if args.pch:
            runs.append(run_config(folder, backend, max(shard_counts), include_dirs, args.jobs, pch=True, rebuild=rebuild))
        tables.append(table(name, runs, args.jobs))
        for run in runs:
            print(f"  {run.label} TUs: " + ", ".join(f"{t.name} {t.wall:.0f}s/{t.rss_kib / 1048576:.2f}G" for t in run.clean.tus))
        print("\n" + tables[-1] + "\n", flush=True)
    print("\n\n".join(tables))
    return 0


if __name__ == "__main__":
    sys.exit(main())
