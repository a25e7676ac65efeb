"""The generator as a build step, through the real CLI and Python API.

Covers the "Commit" and "Speed" contracts of issue 5: --list-outputs,
write-if-changed, failed and killed runs, stale outputs, concurrent runs,
depfiles, relocatable includes, determinism, the catalogue cache and the
no-op fast path. tests/test_commit.py unit-tests lazygen/commit.py itself;
here every scenario goes through `python -m lazygen` (or lazygen.generate).

Every subprocess gets LAZYGEN_CACHE_DIR pointing into pytest's tmp folder,
warmed once per module, so only the tests about the cache pay for a cold
catalogue build.
"""

from __future__ import annotations

import json
import os
import pickle
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterable, Mapping

import pytest

from reference import require

REPO = Path(__file__).resolve().parents[1]
TS_YAML = REPO / "tests" / "data" / "ts_native_functions.yaml"

# The output naming of the contract (docs/common.md): headers, then sources.
TS_NAMES = ["LazyIr.h", "LazyNonNativeIr.h", "LazyNativeFunctions.h", "LazyNativeFunctions.cpp", "RegisterLazy.cpp"]
TS_AUTOGRAD = "RegisterAutogradLazy.cpp"
NO_CHECK = "--no-shape-inference-check"
OLD_TIME_NS = 1_000_000_000 * 10**9  # 2001-09-09: "an mtime no run could produce"

# Options that make every output differ from the plain TS run ("old" state).
OLD_OPTS = ["--generated-by", "OLD", "--node-base", "OldBase", NO_CHECK]

_DROPPED = ("LAZYGEN_CACHE_DIR", "LAZYGEN_TEST_CRASH_AFTER", "XDG_CACHE_HOME", "SOURCE_DATE_EPOCH",
            "PYTHONHASHSEED", "TZ", "LC_ALL", "LANG", "PYTHONUTF8", "PYTHONCOERCECLOCALE")


# --------------------------------------------------------------------------
# helpers


def make_env(cache: Path | None, **extra: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _DROPPED}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO)] + ([os.environ["PYTHONPATH"]] if os.environ.get("PYTHONPATH") else []))
    if cache is not None:
        env["LAZYGEN_CACHE_DIR"] = str(cache)
    for key, value in extra.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return env


def lazygen_cmd(args: Iterable[str], python_flags: Iterable[str] = ()) -> list[str]:
    return [sys.executable, *python_flags, "-m", "lazygen", *map(str, args)]


def run(args: Iterable[str], cwd: Path, env: Mapping[str, str], *, ok: bool = True,
        python_flags: Iterable[str] = (), script: Path | None = None) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, str(script), *map(str, args)] if script else lazygen_cmd(args, python_flags)
    cwd.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(cmd, cwd=cwd, env=dict(env), capture_output=True, text=True, timeout=120)
    if ok:
        assert proc.returncode == 0, f"{cmd} failed ({proc.returncode}):\n{proc.stderr}"
    return proc


def run_parallel(jobs: list[tuple[list[str], Path, Mapping[str, str]]]) -> list[subprocess.CompletedProcess[str]]:
    """Start every job at once (the machine has 2 cores; the runs are short)."""
    procs = []
    for cmd, cwd, env in jobs:
        cwd.mkdir(parents=True, exist_ok=True)
        procs.append((cmd, subprocess.Popen(cmd, cwd=cwd, env=dict(env), stdout=subprocess.PIPE,
                                            stderr=subprocess.PIPE, text=True)))
    done = []
    for cmd, p in procs:
        out, err = p.communicate(timeout=180)
        done.append(subprocess.CompletedProcess(cmd, p.returncode, out, err))
    return done


def files(folder: Path) -> dict[str, bytes]:
    """The visible files of a folder (lazygen's bookkeeping files are dotfiles)."""
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file() and not p.name.startswith(".")}


def snapshot(folder: Path) -> dict[str, tuple[bytes, int]]:
    """Every entry, dotfiles included, with its bytes and mtime."""
    return {p.name: (p.read_bytes() if p.is_file() else b"<dir>", p.stat().st_mtime_ns) for p in sorted(folder.iterdir())}


def age(folder: Path) -> None:
    for p in folder.iterdir():
        os.utime(p, ns=(OLD_TIME_NS, OLD_TIME_NS))


def drop_autograd(text: str) -> str:
    new = re.sub(r"^autograd:\n(?:  - .*\n)+", "", text, flags=re.M)
    assert new != text and "autograd" not in re.findall(r"^(\w+):", new, flags=re.M)
    return new


def parse_depfile(text: str) -> tuple[list[str], list[str]]:
    """Make rule syntax -> (targets, dependencies), undoing Make's escapes."""
    text = text.replace("\\\n", " ")
    tokens: list[str] = []
    cur = ""
    i = 0
    while i < len(text):
        c = text[i]
        if c == "\\" and i + 1 < len(text) and text[i + 1] in " #\\":
            cur += text[i + 1]
            i += 2
        elif c == "$" and text[i + 1:i + 2] == "$":
            cur += "$"
            i += 2
        elif c.isspace():
            if cur:
                tokens.append(cur)
            cur = ""
            i += 1
        else:
            cur += c
            i += 1
    if cur:
        tokens.append(cur)
    colon = next(i for i, t in enumerate(tokens) if t.endswith(":"))
    targets = tokens[:colon] + [tokens[colon][:-1]]
    return [t for t in targets if t], tokens[colon + 1:]


def imported_modules(importtime_stderr: str) -> set[str]:
    names = set()
    for line in importtime_stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            name = line.rsplit("|", 1)[1].strip()
            if name != "imported package":
                names.add(name.split(".")[0])
    return names


# Runs lazygen's CLI with torch and torchgen made unimportable and unfindable.
NO_TORCH_SCRIPT = """\
import importlib.abc, sys
class NoTorch(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("torch", "torchgen"):
            raise ModuleNotFoundError(f"No module named {name!r} (hidden by the test)", name=name)
        return None
sys.meta_path.insert(0, NoTorch())
from lazygen.cli import main
sys.exit(main())
"""

# Runs lazygen's CLI with the clock moved by OFFSET seconds (no faketime).
CLOCK_SCRIPT = """\
import datetime, sys, time
OFFSET = float(sys.argv.pop(1))
_time = time.time
time.time = lambda: _time() + OFFSET
time.time_ns = lambda: int((_time() + OFFSET) * 1e9)
_localtime, _gmtime, _strftime, _ctime = time.localtime, time.gmtime, time.strftime, time.ctime
time.localtime = lambda secs=None: _localtime(time.time() if secs is None else secs)
time.gmtime = lambda secs=None: _gmtime(time.time() if secs is None else secs)
time.ctime = lambda secs=None: _ctime(time.time() if secs is None else secs)
time.strftime = lambda fmt, t=None: _strftime(fmt, time.localtime() if t is None else t)
class FakeDateTime(datetime.datetime):
    @classmethod
    def now(cls, tz=None):
        return datetime.datetime.fromtimestamp(time.time(), tz)
    @classmethod
    def utcnow(cls):
        return datetime.datetime.fromtimestamp(time.time(), datetime.timezone.utc).replace(tzinfo=None)
    @classmethod
    def today(cls):
        return cls.now()
class FakeDate(datetime.date):
    @classmethod
    def today(cls):
        return datetime.date.fromtimestamp(time.time())
datetime.datetime, datetime.date = FakeDateTime, FakeDate
from lazygen.cli import main
sys.exit(main())
"""

# Runs lazygen's CLI and, right after lazygen.api.generate returns (the
# outputs are committed, the no-op record not yet written), does one thing
# another process could do at that moment:
#   copy SRC DST    replace file DST by the bytes of SRC (a user saving a file)
#   run ARGS_JSON   a whole other lazygen run (a concurrent build)
HOOK_SCRIPT = """\
import json, shutil, subprocess, sys
action, arg = sys.argv.pop(1), sys.argv.pop(1)
import lazygen.api
_generate = lazygen.api.generate
def generate(options):
    result = _generate(options)
    if action == "copy":
        src, dst = json.loads(arg)
        with open(src, "rb") as f:
            data = f.read()
        with open(dst, "wb") as f:
            f.write(data)
    elif action == "run":
        subprocess.run([sys.executable, "-m", "lazygen", *json.loads(arg)], check=True)
    return result
lazygen.api.generate = generate
from lazygen.cli import main
sys.exit(main())
"""


# --------------------------------------------------------------------------
# module fixtures: a warm cache and reference states, built once


class World:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.cache = root / "cache"
        self.env = make_env(self.cache)
        self.yaml = TS_YAML
        self.noag_yaml = root / "inputs" / "noag.yaml"
        self.old_yaml = root / "inputs" / "old.yaml"
        self.scripts = root / "scripts"
        self.state: dict[str, dict[str, bytes]] = {}

    def script(self, name: str, text: str) -> Path:
        self.scripts.mkdir(exist_ok=True)
        path = self.scripts / name
        if not path.exists():
            path.write_text(text, encoding="utf-8")
        return path


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    from lazygen.locate import default_aten_path

    require(default_aten_path() is not None, "no installed torchgen package provides native_functions.yaml")
    w = World(tmp_path_factory.mktemp("engine"))
    (w.root / "inputs").mkdir()
    ts_text = TS_YAML.read_text(encoding="utf-8")
    w.noag_yaml.write_text(drop_autograd(ts_text), encoding="utf-8")
    old_text = ts_text.replace("cpp_namespace: torch::lazy", "cpp_namespace: other::ns")
    assert old_text != ts_text
    w.old_yaml.write_text(old_text, encoding="utf-8")

    # The first run builds the catalogue cache; the others run warm, at once.
    run(["-s", TS_YAML, "-o", "out", NO_CHECK], w.root / "states" / "plain", w.env)
    jobs = [
        (lazygen_cmd(["-s", w.noag_yaml, "-o", "out", NO_CHECK]), w.root / "states" / "noag", w.env),
        (lazygen_cmd(["-s", w.old_yaml, "-o", "out", *OLD_OPTS]), w.root / "states" / "old", w.env),
        (lazygen_cmd(["-s", TS_YAML, "-o", "out", NO_CHECK, "--include-prefix", "gen"]), w.root / "states" / "prefixed", w.env),
    ]
    for proc in run_parallel(jobs):
        assert proc.returncode == 0, proc.stderr
    for name in ("plain", "noag", "old", "prefixed"):
        w.state[name] = files(w.root / "states" / name / "out")
    assert sorted(w.state["plain"]) == sorted(TS_NAMES + [TS_AUTOGRAD])
    assert sorted(w.state["noag"]) == sorted(TS_NAMES)
    # The crash tests rely on every file of the old state differing.
    assert all(w.state["old"][n] != w.state["plain"][n] for n in w.state["plain"])
    return w


def state_dir(world: World, name: str, dest: Path) -> Path:
    """A copy of a reference output folder (manifest included) at dest/out."""
    out = dest / "out"
    shutil.copytree(world.root / "states" / name / "out", out)
    return out


# --------------------------------------------------------------------------
# plan: --list-outputs


def test_list_outputs_with_autograd_matches_what_a_run_writes(world: World, tmp_path: Path) -> None:
    proc = run(["-s", TS_YAML, "-o", "gen/out", "--list-outputs"], tmp_path, world.env)
    lines = proc.stdout.splitlines()
    assert sorted(lines) == sorted(f"gen/out/{n}" for n in TS_NAMES + [TS_AUTOGRAD])
    assert len(set(lines)) == len(lines)
    # Exactly the files a real run wrote, and nothing was written now.
    assert {line.split("/")[-1] for line in lines} == set(world.state["plain"])
    assert not (tmp_path / "gen").exists()


def test_list_outputs_without_autograd_and_absolute_dir(world: World, tmp_path: Path) -> None:
    out = tmp_path / "abs" / "out"
    proc = run(["-s", world.noag_yaml, "-o", out, "--list-outputs"], tmp_path, world.env)
    assert sorted(proc.stdout.splitlines()) == sorted(f"{out}/{n}" for n in TS_NAMES)
    assert {Path(line).name for line in proc.stdout.splitlines()} == set(world.state["noag"])


def test_list_outputs_python_api_agrees_with_cli(world: World, tmp_path: Path) -> None:
    import lazygen

    for yaml in (TS_YAML, world.noag_yaml):
        cli = run(["-s", yaml, "-o", "gen", "--list-outputs"], tmp_path, world.env).stdout.splitlines()
        api = lazygen.list_outputs(lazygen.Options(source_yaml=yaml, output_dir="gen"))
        assert [os.fspath(p) for p in api] == cli


def test_list_outputs_reads_only_the_yaml_and_needs_no_torch(world: World, tmp_path: Path) -> None:
    script = world.script("no_torch.py", NO_TORCH_SCRIPT)
    # A yaml the generator would reject: list-outputs does not look at the ops.
    bad = tmp_path / "bad.yaml"
    bad.write_text(TS_YAML.read_text(encoding="utf-8").replace("  - abs\n", "  - no_such_op_anywhere\n"), encoding="utf-8")
    for yaml, autograd in ((bad, True), (world.noag_yaml, False)):
        proc = run(["-s", yaml, "-o", "o", "--list-outputs", "--aten-path", tmp_path / "missing"], tmp_path, world.env, script=script)
        assert (TS_AUTOGRAD in proc.stdout) is autograd
        assert len(proc.stdout.splitlines()) == len(TS_NAMES) + autograd
    # Without --aten-path the same environment cannot generate: torchgen is really hidden.
    proc = run(["-s", TS_YAML, "-o", "o", NO_CHECK], tmp_path, world.env, script=script, ok=False)
    assert proc.returncode == 1, proc.stderr
    assert "--aten-path" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "o").exists()


# --------------------------------------------------------------------------
# commit: write-if-changed, failed runs, kill -9, stale outputs, concurrency


def test_unchanged_rerun_keeps_every_mtime_and_a_change_touches_one_file(world: World, tmp_path: Path) -> None:
    yaml = tmp_path / "ts.yaml"
    shutil.copy(TS_YAML, yaml)
    run(["-s", yaml, "-o", "out", NO_CHECK], tmp_path, world.env)
    out = tmp_path / "out"
    assert files(out) == world.state["plain"]
    age(out)
    before = snapshot(out)
    # A different command line, so the no-op fast path cannot answer.
    run(["-s", yaml, "-o", "out", NO_CHECK, "--depfile", "deps.d"], tmp_path, world.env)
    assert snapshot(out) == before
    assert (tmp_path / "deps.d").is_file()

    # Dropping one non_native node changes LazyNonNativeIr.h only.
    text = yaml.read_text(encoding="utf-8")
    line = "  - func: expand(Tensor input, int[] size, bool is_scalar_expand) -> Tensor\n"
    assert line in text
    yaml.write_text(text.replace(line, ""), encoding="utf-8")
    run(["-s", yaml, "-o", "out", NO_CHECK, "--depfile", "deps.d"], tmp_path, world.env)
    after = snapshot(out)
    changed = {n for n in before if before[n] != after[n] and not n.startswith(".")}
    assert changed == {"LazyNonNativeIr.h"}
    assert after["LazyNonNativeIr.h"][1] != OLD_TIME_NS
    assert b"class Expand" not in after["LazyNonNativeIr.h"][0]


def test_python_api_reports_written_unchanged_removed(world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from lazygen.api import Options, generate

    monkeypatch.setenv("LAZYGEN_CACHE_DIR", str(world.cache))
    monkeypatch.chdir(tmp_path)
    yaml = tmp_path / "ts.yaml"
    shutil.copy(TS_YAML, yaml)
    options = Options(source_yaml=yaml, output_dir="out", check_shape_inference=False)
    first = generate(options)
    assert sorted(first.written) == sorted(world.state["plain"]) and first.unchanged == () and first.removed == ()
    assert files(tmp_path / "out") == world.state["plain"]
    assert sorted(map(os.fspath, first.outputs)) == sorted(f"out/{n}" for n in world.state["plain"])
    second = generate(options)
    assert second.written == () and sorted(second.unchanged) == sorted(world.state["plain"]) and second.removed == ()
    yaml.write_text(drop_autograd(yaml.read_text(encoding="utf-8")), encoding="utf-8")
    third = generate(options)
    assert third.removed == (TS_AUTOGRAD,)
    assert files(tmp_path / "out") == world.state["noag"]


def test_package_level_generate_stays_callable(world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`lazygen.generate(lazygen.Options(...))` is the documented API; it must
    keep working after a first call (which imports lazygen's own modules)."""
    import lazygen

    monkeypatch.setenv("LAZYGEN_CACHE_DIR", str(world.cache))
    options = lazygen.Options(source_yaml=TS_YAML, output_dir=str(tmp_path / "out"), check_shape_inference=False, dry_run=True)
    for _ in range(2):
        assert callable(lazygen.generate), f"lazygen.generate is {lazygen.generate!r}"
        lazygen.generate(options)


FAILING_EDITS = {
    "yaml syntax": lambda t: t.replace("full_codegen:\n", "full_codegen: [\n", 1),
    "unknown op": lambda t: t.replace("  - abs\n", "  - abss\n"),
    # Would delete RegisterAutogradLazy.cpp if the stale cleanup ran before the checks.
    "autograd dropped and unknown op": lambda t: drop_autograd(t).replace("  - abs\n", "  - abss\n"),
}


@pytest.mark.parametrize("edit", sorted(FAILING_EDITS))
def test_failed_run_changes_nothing(world: World, tmp_path: Path, edit: str) -> None:
    out = state_dir(world, "plain", tmp_path)
    yaml = tmp_path / "ts.yaml"
    text = TS_YAML.read_text(encoding="utf-8")
    yaml.write_text(FAILING_EDITS[edit](text), encoding="utf-8")
    age(out)
    before = snapshot(out)
    proc = run(["-s", yaml, "-o", "out", NO_CHECK, "--depfile", "deps.d"], tmp_path, world.env, ok=False)
    assert proc.returncode == 1, proc.stderr
    assert re.search(r"^\S*ts\.yaml:\d+:\d+: error: ", proc.stderr, re.M), proc.stderr
    assert "Traceback" not in proc.stderr
    assert snapshot(out) == before
    assert not (tmp_path / "deps.d").exists()


def test_unusable_depfile_path_fails_before_any_output_is_written(world: World, tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("not a folder\n", encoding="utf-8")
    proc = run(["-s", TS_YAML, "-o", "out", NO_CHECK, "--depfile", "afile/deps.d"], tmp_path, world.env, ok=False)
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert re.search(r"afile\S*: error: ", proc.stderr), proc.stderr
    assert not (tmp_path / "out").exists() or files(tmp_path / "out") == {}


def test_unwritable_outputs_are_reported_as_errors(world: World, tmp_path: Path) -> None:
    out = tmp_path / "out"
    (out / "LazyIr.h").mkdir(parents=True)
    (tmp_path / "afile").write_text("not a folder\n", encoding="utf-8")
    for output_dir in ("out", "afile/sub"):
        proc = run(["-s", TS_YAML, "-o", output_dir, NO_CHECK], tmp_path, world.env, ok=False)
        assert proc.returncode == 1, proc.stderr
        assert "Traceback" not in proc.stderr, proc.stderr
        assert re.search(rf"{re.escape(output_dir)}\S*: error: ", proc.stderr), proc.stderr
    assert [p.name for p in out.iterdir() if not p.name.startswith(".")] == ["LazyIr.h"]
    assert (out / "LazyIr.h").is_dir()


@pytest.mark.parametrize("crash_after", [1, 3, 6])
def test_crash_mid_commit_leaves_old_or_new_files_and_a_rerun_completes(world: World, tmp_path: Path, crash_after: int) -> None:
    old, new = world.state["old"], world.state["plain"]
    out = state_dir(world, "old", tmp_path)
    args = ["-s", TS_YAML, "-o", "out", NO_CHECK, "--depfile", "deps.d"]
    proc = run(args, tmp_path, make_env(world.cache, LAZYGEN_TEST_CRASH_AFTER=str(crash_after)), ok=False)
    assert proc.returncode == 137, proc.stderr
    now = files(out)
    assert sorted(now) == sorted(new)
    assert all(now[n] in (old[n], new[n]) for n in now), "a partial file"
    assert sum(now[n] == new[n] for n in now) == crash_after
    assert [p.name for p in out.iterdir() if p.name.endswith(".tmp")] == []
    assert not (tmp_path / "deps.d").exists()
    run(args, tmp_path, world.env)
    assert files(out) == new
    assert (tmp_path / "deps.d").is_file()


def test_crash_before_stale_cleanup_then_rerun_removes_the_stale_file(world: World, tmp_path: Path) -> None:
    out = state_dir(world, "old", tmp_path)
    args = ["-s", world.noag_yaml, "-o", "out", NO_CHECK]
    # Every one of the 5 outputs changes; the crash comes after the last rename.
    proc = run(args, tmp_path, make_env(world.cache, LAZYGEN_TEST_CRASH_AFTER="5"), ok=False)
    assert proc.returncode == 137, proc.stderr
    now = files(out)
    assert now[TS_AUTOGRAD] == world.state["old"][TS_AUTOGRAD]
    assert {n: now[n] for n in TS_NAMES} == world.state["noag"]
    run(args, tmp_path, world.env)
    assert files(out) == world.state["noag"]


def test_sigkill_at_any_moment_leaves_whole_files(world: World, tmp_path: Path) -> None:
    old, new = world.state["old"], world.state["plain"]
    for i, delay in enumerate((0.12, 0.2, 0.3)):
        cwd = tmp_path / str(i)
        out = state_dir(world, "old", cwd)
        p = subprocess.Popen(lazygen_cmd(["-s", TS_YAML, "-o", "out", NO_CHECK]), cwd=cwd, env=world.env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(delay)
        p.send_signal(signal.SIGKILL)
        p.wait(timeout=60)
        now = files(out)
        assert sorted(now) == sorted(old)
        assert all(now[n] in (old[n], new[n]) for n in now), f"a partial file after a kill at {delay}s"
        run(["-s", TS_YAML, "-o", "out", NO_CHECK], cwd, world.env)
        assert files(out) == new


def test_stale_outputs_removed_and_user_files_kept(world: World, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    user = {"notes.txt": b"mine\n", "MyHelpers.h": b"// mine\n"}
    for name, data in user.items():
        (out / name).write_bytes(data)
    (out / "subdir").mkdir()
    (out / "subdir" / "keep.cpp").write_bytes(b"// mine\n")
    age(out)
    user_before = {n: v for n, v in snapshot(out).items() if n in user or n == "subdir"}

    yaml = tmp_path / "be.yaml"
    yaml.write_text(TS_YAML.read_text(encoding="utf-8"), encoding="utf-8")
    run(["-s", yaml, "-o", "out", NO_CHECK], tmp_path, world.env)
    assert files(out) == {**world.state["plain"], **user}

    yaml.write_text(drop_autograd(TS_YAML.read_text(encoding="utf-8")), encoding="utf-8")
    run(["-s", yaml, "-o", "out", NO_CHECK], tmp_path, world.env)
    assert files(out) == {**world.state["noag"], **user}

    # Another dispatch key: every Lazy* file is stale; the XLA set replaces it.
    yaml.write_text(TS_YAML.read_text(encoding="utf-8").replace("backend: Lazy", "backend: XLA"), encoding="utf-8")
    run(["-s", yaml, "-o", "out", NO_CHECK], tmp_path, world.env)
    xla = {"LazyIr.h", "LazyNonNativeIr.h", "XLANativeFunctions.h", "XLANativeFunctions.cpp", "RegisterXLA.cpp", "RegisterAutogradXLA.cpp"}
    assert set(files(out)) == xla | set(user)
    assert {n: v for n, v in snapshot(out).items() if n in user or n == "subdir"} == user_before
    assert (out / "subdir" / "keep.cpp").read_bytes() == b"// mine\n"


def test_file_named_like_an_output_but_never_written_is_kept(world: World, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / TS_AUTOGRAD).write_bytes(b"// hand-written, not lazygen's\n")
    run(["-s", world.noag_yaml, "-o", "out", NO_CHECK], tmp_path, world.env)
    assert files(out) == {**world.state["noag"], TS_AUTOGRAD: b"// hand-written, not lazygen's\n"}


def test_two_runs_at_once_on_one_folder_end_consistent(world: World, tmp_path: Path) -> None:
    a = lazygen_cmd(["-s", TS_YAML, "-o", "out", NO_CHECK])
    b = lazygen_cmd(["-s", world.old_yaml, "-o", "out", *OLD_OPTS])
    out = tmp_path / "out"
    for round_ in range(2):
        procs = run_parallel([(a, tmp_path, world.env), (b, tmp_path, world.env)])
        assert [p.returncode for p in procs] == [0, 0], [p.stderr for p in procs]
        now = files(out)
        assert now in (world.state["plain"], world.state["old"]), f"round {round_}: a mix of both runs"
        manifest = (out / ".lazygen-manifest").read_text(encoding="utf-8").split()
        assert sorted(manifest) == sorted(now)
        assert [p.name for p in out.iterdir() if p.name.endswith(".tmp")] == []


# --------------------------------------------------------------------------
# depfile


def test_depfile_names_every_file_read(world: World, tmp_path: Path, torch_include_dirs: list[Path]) -> None:
    from lazygen.locate import default_aten_path

    aten = default_aten_path()
    assert aten is not None
    templates = tmp_path / "my templates"
    templates.mkdir()
    (templates / "LazyNonNativeIr.h.j2").write_text('{% extends "lazygen/LazyNonNativeIr.h.j2" %}\n', encoding="utf-8")
    (templates / "sub").mkdir()
    (templates / "sub" / "unused.j2").write_text("unused\n", encoding="utf-8")
    # An impl file defining every hand-written kernel, with the names and
    # counts taken from what a run against an empty one asks for.
    impl = tmp_path / "impl.cpp"
    impl.write_text("", encoding="utf-8")
    proc = run(["-s", TS_YAML, "-o", "out", "--impl-path", impl, NO_CHECK, "--dry-run"], tmp_path, world.env, ok=False)
    wanted = re.findall(r"defines 0 kernel\(s\) named LazyNativeFunctions::(\w+), expected (\d+)", proc.stderr)
    assert wanted, proc.stderr
    impl.write_text("".join(f"at::Tensor LazyNativeFunctions::{name}(int) {{}}\n" * int(count) for name, count in wanted), encoding="utf-8")

    args = ["-s", TS_YAML, "-o", "out", "--impl-path", "impl.cpp", "--template-dir", "my templates", "--depfile", "deps dir/out.d"]
    run(args, tmp_path, world.env)
    text = (tmp_path / "deps dir" / "out.d").read_text(encoding="utf-8")
    targets, deps = parse_depfile(text)
    assert len(targets) == 1 and targets[0] in {f"out/{n}" for n in world.state["plain"]}
    assert files(tmp_path / "out") == world.state["plain"]  # the extending override changes nothing

    def real(p: str) -> str:
        return os.path.realpath(tmp_path / p)

    expected = {
        TS_YAML,
        aten / "native" / "native_functions.yaml",
        aten / "native" / "tags.yaml",
        torch_include_dirs[0] / "torch" / "csrc" / "lazy" / "core" / "shape_inference.h",
        impl,
        templates / "LazyNonNativeIr.h.j2",
        templates / "sub" / "unused.j2",
        # The installed torch's metadata: its version picks the release whose output is written.
        *(aten.parents[2].glob("torch-*.dist-info/METADATA")),
    }
    assert {real(d) for d in deps} == {os.path.realpath(p) for p in expected}
    assert len(deps) == len(set(deps))


def test_depfile_names_an_explicit_shape_file(world: World, tmp_path: Path, torch_include_dirs: list[Path]) -> None:
    shape = tmp_path / "shapes$x" / "shape_inference.h"
    shape.parent.mkdir()
    shutil.copy(torch_include_dirs[0] / "torch" / "csrc" / "lazy" / "core" / "shape_inference.h", shape)
    run(["-s", TS_YAML, "-o", "out", "--shape-inference-file", shape, "--depfile", "d.d"], tmp_path, world.env)
    _, deps = parse_depfile((tmp_path / "d.d").read_text(encoding="utf-8"))
    assert str(shape) in deps
    assert not any(d.endswith("torch/csrc/lazy/core/shape_inference.h") for d in deps)


# --------------------------------------------------------------------------
# relocatable includes


def generated_includes(text: str) -> list[str]:
    return [line for line in text.splitlines()
            if line.startswith("#include") and re.search(r"(LazyIr|LazyNonNativeIr|LazyNativeFunctions)\.h", line)]


def test_include_prefix_makes_generated_includes_relocatable(world: World) -> None:
    plain, prefixed = world.state["plain"], world.state["prefixed"]
    assert set(plain) == set(prefixed)
    cpp = prefixed["LazyNativeFunctions.cpp"].decode()
    assert "#include <gen/LazyIr.h>" in generated_includes(cpp)
    assert "#include <gen/LazyNativeFunctions.h>" in generated_includes(cpp)
    for name, data in prefixed.items():
        text = data.decode()
        for line in generated_includes(text):
            assert re.fullmatch(r'#include [<"]gen/(LazyIr|LazyNonNativeIr|LazyNativeFunctions)\.h[>"]', line), (name, line)
        assert "out/" not in text, name
        # Apart from the include spelling, the files are the plain run's.
        assert data.replace(b"gen/", b"out/") == plain[name], name


def test_without_prefix_includes_spell_output_dir_as_given(world: World, tmp_path: Path) -> None:
    odd = "./a/../gen//out"
    run(["-s", TS_YAML, "-o", odd, NO_CHECK], tmp_path, world.env)
    got = files(tmp_path / "gen" / "out")
    cpp = got["LazyNativeFunctions.cpp"].decode()
    assert f"#include <{odd}/LazyIr.h>" in cpp
    assert f"#include <{odd}/LazyNativeFunctions.h>" in cpp
    assert f'#include "{odd}/LazyNativeFunctions.h"' in got["RegisterLazy.cpp"].decode()
    for name, data in got.items():
        assert data.replace(odd.encode(), b"out") == world.state["plain"][name], name


def test_build_in_tree_with_prefix_uses_angle_brackets_everywhere(world: World, tmp_path: Path) -> None:
    run(["-s", TS_YAML, "-o", "out", NO_CHECK, "--include-prefix", "my/pre", "--build-in-tree"], tmp_path, world.env)
    for name, data in files(tmp_path / "out").items():
        for line in generated_includes(data.decode()):
            assert re.fullmatch(r"#include <my/pre/\w+\.h>", line), (name, line)


# --------------------------------------------------------------------------
# determinism


def test_identical_bytes_across_folders_seeds_locales_and_clocks(world: World, tmp_path: Path) -> None:
    # A yaml with non-ASCII text, so an ASCII locale would show any
    # locale-dependent decoding.
    yaml = tmp_path / "inputs" / "ts.yaml"
    yaml.parent.mkdir()
    yaml.write_bytes(TS_YAML.read_bytes() + "# café ✓ — ünïcödé comment\n".encode("utf-8"))
    clock = world.script("clock.py", CLOCK_SCRIPT)
    locales = subprocess.run(["locale", "-a"], capture_output=True, text=True).stdout.split() if shutil.which("locale") else []

    variants: dict[str, tuple[list[str], Path, dict[str, str]]] = {}

    def add(label: str, cwd: Path, out: str | Path, prefix: list[str] | None = None, **env: str) -> None:
        args = ["-s", yaml, "-o", out, NO_CHECK, "--include-prefix", "gen"]
        cmd = lazygen_cmd(args) if prefix is None else [sys.executable, str(clock), *prefix, *map(str, args)]
        variants[label] = (cmd, cwd, make_env(world.cache, **env))

    # Each run varies several things at once (a failure names them all);
    # together they cover folders, hash seeds, locales, time zones,
    # SOURCE_DATE_EPOCH and the clock itself.
    add("absolute deep folder, hash seed 0, C locale with ASCII encoding",
        tmp_path / "v" / "x", tmp_path / "some where" / "dëep" / "er" / "gen",
        PYTHONHASHSEED="0", LC_ALL="C", PYTHONUTF8="0", PYTHONCOERCECLOCALE="0")
    add("relative up, hash seed 1, C.UTF-8, TZ +14, SOURCE_DATE_EPOCH 0", tmp_path / "v" / "y" / "z", "../../up/out",
        PYTHONHASHSEED="1", LC_ALL="C.UTF-8", TZ="Pacific/Kiritimati", SOURCE_DATE_EPOCH="0")
    add("hash seed random, tr_TR, TZ -3:30, SOURCE_DATE_EPOCH 2e9", tmp_path / "v" / "r", "out",
        PYTHONHASHSEED="random", LANG="tr_TR.UTF-8", LC_ALL="tr_TR.UTF-8", TZ="America/St_Johns", SOURCE_DATE_EPOCH="2000000000")
    add("hash seed 4242, clock +40 years", tmp_path / "v" / "c1", "out", prefix=[str(40 * 365 * 86400)],
        PYTHONHASHSEED="4242", TZ="UTC")
    add("clock -20 years, POSIX TZ", tmp_path / "v" / "c2", "out", prefix=[str(-20 * 365 * 86400)], TZ="XXX+11")
    if any(loc.lower().replace("-", "") == "en_us.utf8" for loc in locales):
        add("en_US.UTF-8", tmp_path / "v" / "us", "out", LC_ALL="en_US.UTF-8")

    labels = list(variants)
    results = run_parallel([variants[label] for label in labels])
    outputs = {}
    for label, proc in zip(labels, results):
        assert proc.returncode == 0, f"{label}: {proc.stderr}"
        cmd, cwd, _ = variants[label]
        out = Path(cmd[cmd.index("-o") + 1])
        outputs[label] = files(out if out.is_absolute() else cwd / out)
    for label in labels:
        assert outputs[label] == world.state["prefixed"], f"{label} differs"


def test_no_absolute_path_in_outputs_unless_passed(world: World, tmp_path: Path, torch_include_dirs: list[Path]) -> None:
    from lazygen.locate import default_aten_path

    aten = default_aten_path()
    assert aten is not None
    templates = tmp_path / "tpl"
    templates.mkdir()
    (templates / "LazyIr.h.j2").write_text('{% extends "lazygen/LazyIr.h.j2" %}\n', encoding="utf-8")
    out = tmp_path / "work" / "out"
    # Every path absolute, the shape check on (it reads torch's header).
    args = ["-s", TS_YAML, "-o", out, "--aten-path", aten, "--template-dir", templates,
            "--depfile", tmp_path / "d.d", "--include-prefix", "gen"]
    run(args, tmp_path / "work", world.env)
    got = files(out)
    assert got == world.state["prefixed"]
    forbidden = {str(tmp_path), str(REPO), str(aten), str(torch_include_dirs[0]), str(Path.home()), sys.prefix}
    for name, data in got.items():
        text = data.decode()
        for path in forbidden:
            assert path not in text, (name, path)
        assert not re.search(r"\b(19|20)\d\d-\d\d-\d\d\b", text), name


# --------------------------------------------------------------------------
# catalogue cache


def _seed(cache: Path, world: World) -> list[Path]:
    cache.mkdir(parents=True)
    pickles = sorted(world.cache.glob("catalogue-*.pickle"))
    assert len(pickles) == 1, pickles
    shutil.copy2(pickles[0], cache / pickles[0].name)
    return [cache / pickles[0].name]


@pytest.mark.parametrize("case", ["lazygen wins", "xdg wins", "home", "empty xdg means unset"])
def test_cache_folder_precedence(world: World, tmp_path: Path, case: str) -> None:
    home, xdg, own = tmp_path / "home", tmp_path / "xdg", tmp_path / "own"
    home.mkdir()
    env_by_case = {
        "lazygen wins": (own, dict(LAZYGEN_CACHE_DIR=str(own), XDG_CACHE_HOME=str(xdg))),
        "xdg wins": (xdg / "lazygen", dict(XDG_CACHE_HOME=str(xdg))),
        "home": (home / ".cache" / "lazygen", {}),
        "empty xdg means unset": (home / ".cache" / "lazygen", dict(XDG_CACHE_HOME="", LAZYGEN_CACHE_DIR="")),
    }
    chosen, extra = env_by_case[case]
    (entry,) = _seed(chosen, world)
    stamp = entry.stat()
    env = make_env(None, HOME=str(home), **extra)
    run(["-s", TS_YAML, "-o", "out", NO_CHECK], tmp_path / "w", env)
    assert files(tmp_path / "w" / "out") == world.state["plain"]
    # The seeded entry was used (not rebuilt) and the run's other cache
    # files (no-op records) went to the same folder, and nowhere else.
    assert (entry.stat().st_ino, entry.stat().st_mtime_ns) == (stamp.st_ino, stamp.st_mtime_ns)
    assert (chosen / "runs").is_dir()
    for other in (own, xdg / "lazygen", home / ".cache" / "lazygen"):
        if other != chosen:
            assert not other.exists(), other


def test_catalogue_cache_is_keyed_by_content_not_path(world: World, tmp_path: Path) -> None:
    from lazygen.locate import default_aten_path

    aten = default_aten_path()
    assert aten is not None
    nf, tags = tmp_path / "cat" / "nf.yaml", tmp_path / "cat" / "tags.yaml"
    nf.parent.mkdir()
    shutil.copy(aten / "native" / "native_functions.yaml", nf)
    shutil.copy(aten / "native" / "tags.yaml", tags)
    cache = tmp_path / "cache"
    (seeded,) = _seed(cache, world)
    args = ["-s", TS_YAML, "-o", "out", NO_CHECK, "--native-functions", nf, "--tags-yaml", tags]
    # Same bytes at another path: the seeded entry answers, nothing is added.
    run(args, tmp_path / "w1", make_env(cache))
    assert sorted(cache.glob("catalogue-*")) == [seeded]
    # One more byte: a new entry, built from the new content; the old one stays.
    with open(tags, "a", encoding="utf-8") as f:
        f.write("# edited\n")
    run(args, tmp_path / "w2", make_env(cache))
    entries = sorted(cache.glob("catalogue-*"))
    assert len(entries) == 2 and seeded in entries
    assert files(tmp_path / "w2" / "out") == world.state["plain"]


class _Foreign:
    """Pickles as something that is not a catalogue."""

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (dict, ([("not", "a catalogue")],))


def test_corrupt_cache_entries_are_ignored_and_rebuilt(world: World, tmp_path: Path) -> None:
    (good,) = sorted(world.cache.glob("catalogue-*.pickle"))
    good_bytes = good.read_bytes()
    key = good.name[len("catalogue-"):-len(".pickle")]
    corruptions = {
        "garbage": bytes(range(256)) * 8,
        "truncated": good_bytes[: len(good_bytes) // 2],
        "foreign object, right key": pickle.dumps((key, _Foreign()), protocol=2),
    }
    jobs = []
    labels = list(corruptions)
    for i, label in enumerate(labels):
        cache = tmp_path / f"cache{i}"
        cache.mkdir()
        (cache / good.name).write_bytes(corruptions[label])
        jobs.append((lazygen_cmd(["-s", TS_YAML, "-o", "out", NO_CHECK]), tmp_path / f"w{i}", make_env(cache)))
    for i, (label, proc) in enumerate(zip(labels, run_parallel(jobs))):
        assert proc.returncode == 0, f"{label}: {proc.stderr}"
        assert files(tmp_path / f"w{i}" / "out") == world.state["plain"], label
        rebuilt = (tmp_path / f"cache{i}" / good.name).read_bytes()
        assert rebuilt != corruptions[label], f"{label}: the entry was not rebuilt"
        stored_key, _ = pickle.loads(rebuilt)
        assert stored_key == key, label


def test_a_cache_entry_cannot_run_code(world: World, tmp_path: Path) -> None:
    """'never trusted': unpickling a planted entry must not call anything it names."""
    (good,) = sorted(world.cache.glob("catalogue-*.pickle"))
    marker = tmp_path / "pwned"

    class Planted:
        def __reduce__(self):  # type: ignore[no-untyped-def]
            return (os.mkdir, (str(marker),))

    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / good.name).write_bytes(pickle.dumps(Planted()))
    run(["-s", TS_YAML, "-o", "out", NO_CHECK], tmp_path / "w", make_env(cache))
    assert files(tmp_path / "w" / "out") == world.state["plain"]
    assert not marker.exists(), "loading the cache entry ran os.mkdir"


# --------------------------------------------------------------------------
# no-op fast path


def test_identical_second_run_imports_neither_yaml_nor_jinja2(world: World, tmp_path: Path) -> None:
    args = ["-s", TS_YAML, "-o", "out", NO_CHECK, "--depfile", "d.d"]
    first = run(args, tmp_path, world.env, python_flags=["-X", "importtime"])
    # The probe sees jinja2 when a run renders (PyYAML may be skipped: the
    # parsed backend yaml is cached by content).
    assert "jinja2" in imported_modules(first.stderr)
    out = tmp_path / "out"
    before = snapshot(out)
    second = run(args, tmp_path, world.env, python_flags=["-X", "importtime"])
    mods = imported_modules(second.stderr)
    assert "lazygen" in mods
    assert not {"yaml", "jinja2", "argparse"} & mods, sorted(mods)
    assert snapshot(out) == before


def _fresh_run(world: World, tmp_path: Path, extra: Iterable[str] = ()) -> tuple[Path, list[str]]:
    yaml = tmp_path / "ts.yaml"
    shutil.copy(TS_YAML, yaml)
    args = ["-s", "ts.yaml", "-o", "out", NO_CHECK, "--depfile", "d.d", *extra]
    run(args, tmp_path, world.env)
    run(args, tmp_path, world.env)  # an up-to-date rerun, recorded state unchanged
    return yaml, args


def test_fast_path_regenerates_when_input_content_changes(world: World, tmp_path: Path) -> None:
    yaml, args = _fresh_run(world, tmp_path)
    text = yaml.read_text(encoding="utf-8")
    same_size = text.replace("cpp_namespace: torch::lazy", "cpp_namespace: torch::lazx")
    assert len(same_size) == len(text) and same_size != text
    with open(yaml, "r+", encoding="utf-8") as f:  # in place: same inode, same size
        f.write(same_size)
    run(args, tmp_path, world.env)
    got = files(tmp_path / "out")
    assert b"namespace lazx" in got["LazyNativeFunctions.h"]
    assert got != world.state["plain"]


def test_fast_path_regenerates_when_an_output_changes(world: World, tmp_path: Path) -> None:
    _, args = _fresh_run(world, tmp_path)
    out = tmp_path / "out"
    target = out / "LazyIr.h"

    def edit_same_size() -> None:
        data = bytearray(target.read_bytes())
        data[0:2] = b"/*" if data[0:2] == b"//" else b"//"
        with open(target, "r+b") as f:  # same inode, same size
            f.write(bytes(data))

    def append() -> None:
        with open(target, "ab") as f:
            f.write(b"// local edit\n")

    changes = {"deleted": target.unlink, "edited": append, "edited same size": edit_same_size,
               "depfile deleted": (tmp_path / "d.d").unlink}
    for label, change in changes.items():
        change()
        run(args, tmp_path, world.env)
        assert files(out) == world.state["plain"], label
        assert (tmp_path / "d.d").is_file(), label


def test_fast_path_regenerates_when_a_template_file_is_added(world: World, tmp_path: Path) -> None:
    templates = tmp_path / "tpl"
    (templates / "nested").mkdir(parents=True)
    _, args = _fresh_run(world, tmp_path, ["--template-dir", "tpl"])
    assert files(tmp_path / "out") == world.state["plain"]
    (templates / "LazyNonNativeIr.h.j2").write_text("// overridden by {{ generated_by }}\n", encoding="utf-8")
    run(args, tmp_path, world.env)
    assert (tmp_path / "out" / "LazyNonNativeIr.h").read_bytes() == b"// overridden by lazygen\n"
    # A file added one folder down counts too.
    (templates / "nested" / "extra.j2").write_text("x\n", encoding="utf-8")
    run(args, tmp_path, world.env)
    _, deps = parse_depfile((tmp_path / "d.d").read_text(encoding="utf-8"))
    assert "tpl/nested/extra.j2" in deps


def test_fast_path_record_is_void_once_lazygen_itself_changes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A checkout edited, or the same version reinstalled: the recorded
    no-op state names lazygen's own files, so it no longer holds."""
    from lazygen import fastpath

    package = tmp_path / "package"
    (package / "templates").mkdir(parents=True)
    (package / "engine.py").write_text("# engine\n", encoding="utf-8")
    (package / "templates" / "ir_node.j2").write_text("node\n", encoding="utf-8")
    (package / "__pycache__").mkdir()
    old = time.time_ns() - 60_000_000_000
    for p in [package, package / "templates", package / "__pycache__", *package.rglob("*")]:
        os.utime(p, ns=(old, old))
    monkeypatch.setattr(fastpath, "PACKAGE_DIR", str(package))
    monkeypatch.setenv("LAZYGEN_CACHE_DIR", str(tmp_path / "cache"))
    yaml = tmp_path / "b.yaml"
    yaml.write_text("backend: Lazy\n", encoding="utf-8")
    os.utime(yaml, ns=(old, old))
    argv = ["-s", str(yaml), "-o", "out"]

    def recorded() -> bool:
        fastpath.record(argv, [str(yaml)], {}, time.time_ns())
        return fastpath.is_up_to_date(argv)

    assert recorded()
    (package / "__pycache__" / "engine.cpython-311.pyc").write_bytes(b"compiled")  # bytecode does not count
    assert fastpath.is_up_to_date(argv)
    (package / "templates" / "ir_node.j2").write_text("node, edited\n", encoding="utf-8")
    assert not fastpath.is_up_to_date(argv)
    os.utime(package / "templates" / "ir_node.j2", ns=(old, old))
    os.utime(package / "templates", ns=(old, old))
    assert recorded()
    (package / "new_module.py").write_text("", encoding="utf-8")
    assert not fastpath.is_up_to_date(argv)


def test_input_saved_during_a_run_is_not_mistaken_for_up_to_date(world: World, tmp_path: Path) -> None:
    """The yaml is saved (without the autograd section) after the run read it
    but before it recorded its no-op state: the next run must see the edit."""
    hook = world.script("hook.py", HOOK_SCRIPT)
    yaml = tmp_path / "ts.yaml"
    shutil.copy(TS_YAML, yaml)
    args = ["-s", "ts.yaml", "-o", "out", NO_CHECK]
    run(["copy", json.dumps([str(world.noag_yaml), str(yaml)]), *args], tmp_path, world.env, script=hook)
    assert files(tmp_path / "out") == world.state["plain"]  # generated from what it read
    run(args, tmp_path, world.env)
    assert files(tmp_path / "out") == world.state["noag"]


def test_concurrent_run_between_commit_and_record_is_not_mistaken_for_up_to_date(world: World, tmp_path: Path) -> None:
    """Run B commits into the folder after run A's commit and before A
    records its no-op state: a rerun of A must restore A's outputs."""
    hook = world.script("hook.py", HOOK_SCRIPT)
    args_a = ["-s", str(TS_YAML), "-o", "out", NO_CHECK]
    args_b = ["-s", str(world.old_yaml), "-o", "out", *OLD_OPTS]
    run(["run", json.dumps(args_b), *args_a], tmp_path, world.env, script=hook)
    assert files(tmp_path / "out") == world.state["old"]  # B committed last
    run(args_a, tmp_path, world.env)
    assert files(tmp_path / "out") == world.state["plain"]
