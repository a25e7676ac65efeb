"""Faults and hostile inputs (issue 20): kills, full disks, read-only
folders, symlinks, pipes, damaged caches and odd paths, against the
README's "What a run guarantees". Every scenario goes through the real CLI
(`python -m lazygen`) in a subprocess, except where a unit of lazygen is
the thing under test.

Full disks and read-only folders are small tmpfs mounts, which need root
(CI runs the tests as root); elsewhere those tests skip with a reason.
"""

from __future__ import annotations

import fcntl
import os
import random
import select
import shutil
import signal
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Mapping

import pytest

from every_op import write_every_op_yaml
from reference import require

REPO = Path(__file__).resolve().parents[1]
TS_YAML = REPO / "tests" / "data" / "ts_native_functions.yaml"
NO_CHECK = "--no-shape-inference-check"
OLD_OPTS = ["--generated-by", "OLD", "--node-base", "OldBase"]
BOOKKEEPING = {".lazygen-lock", ".lazygen-manifest"}
OLD_TIME_NS = 1_000_000_000 * 10**9

_DROPPED = ("LAZYGEN_CACHE_DIR", "LAZYGEN_TEST_CRASH_AFTER", "XDG_CACHE_HOME", "PYTHONHASHSEED")


def make_env(cache: Path | None, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _DROPPED}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO)] + ([os.environ["PYTHONPATH"]] if os.environ.get("PYTHONPATH") else []))
    if cache is not None:
        env["LAZYGEN_CACHE_DIR"] = str(cache)
    env.update(extra)
    return env


def lazygen(*args: object) -> list[str]:
    return [sys.executable, "-m", "lazygen", *map(str, args)]


def run(args: list[object], cwd: Path, env: Mapping[str, str], *, ok: bool = True, **kw: object) -> subprocess.CompletedProcess[str]:
    cwd.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(lazygen(*args), cwd=cwd, env=dict(env), capture_output=True, text=True, timeout=120, **kw)
    if ok:
        assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc


def visible(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if not p.name.startswith(".")}


def strays(folder: Path) -> list[str]:
    """Entries that are neither an output nor lazygen's bookkeeping: temporary files."""
    return sorted(n for n in os.listdir(folder) if n.startswith(".") and n not in BOOKKEEPING)


def temp_files(root: Path) -> list[str]:
    return sorted(os.path.relpath(os.path.join(d, f), root) for d, _, fs in os.walk(root) for f in fs if f.endswith(".tmp"))


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def age(path: Path) -> None:
    os.utime(path, ns=(OLD_TIME_NS, OLD_TIME_NS))


@contextmanager
def tmpfs(path: Path, size: str) -> Iterator[Path]:
    """A small tmpfs at `path` (needs root)."""
    require(os.geteuid() == 0 and shutil.which("mount") is not None, "mounting a tmpfs needs root")
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], check=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def fill(folder: Path) -> None:
    """Take every free byte of the filesystem holding `folder`."""
    try:
        with open(folder / "filler", "wb") as f:
            while True:
                f.write(b"\0" * 4096)
                f.flush()
    except OSError:
        pass
    assert os.statvfs(folder).f_bavail == 0


class World:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.cache = root / "cache"
        self.env = make_env(self.cache)
        self.state: dict[str, dict[str, bytes]] = {}


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    from lazygen.locate import default_aten_path

    require(default_aten_path() is not None, "no installed torchgen package provides native_functions.yaml")
    w = World(tmp_path_factory.mktemp("faults"))
    # The old state: another namespace and options, so that every file differs.
    old_yaml = w.root / "old.yaml"
    old_yaml.write_text(TS_YAML.read_text().replace("cpp_namespace: torch::lazy", "cpp_namespace: other::ns"))
    for name, yaml, extra in (("plain", TS_YAML, []), ("old", old_yaml, OLD_OPTS)):
        run(["-s", yaml, "-o", "out", NO_CHECK, *extra], w.root / "states" / name, w.env)
        w.state[name] = visible(w.root / "states" / name / "out")
    assert all(w.state["old"][n] != w.state["plain"][n] for n in w.state["plain"])
    return w


def state_dir(world: World, name: str, dest: Path) -> Path:
    out = dest / "out"
    shutil.copytree(world.root / "states" / name / "out", out)
    return out


# --------------------------------------------------------------------------
# 1. commits: the unnamed file is linked, temporary files of dead runs are swept


def test_a_staged_output_is_linked_into_place_not_copied(tmp_path: Path) -> None:
    from lazygen.commit import commit, stage

    require(hasattr(os, "O_TMPFILE") and os.path.isdir("/proc/self/fd"), "no O_TMPFILE and /proc here (not Linux)")
    out = tmp_path / "out"
    out.mkdir()
    staged = stage(out, ["x" * 100_000, "end\n"])
    inode = os.fstat(staged._file.fileno()).st_ino  # the unnamed file's
    commit(out, {"big.h": staged})
    # The same inode: the unnamed file itself got the name. The fallback
    # (copy into a named temporary file) would give another inode.
    assert (out / "big.h").stat().st_ino == inode
    assert (out / "big.h").read_bytes() == b"x" * 100_000 + b"end\n"


# Runs the CLI with the rename of the first changed output replaced by a
# SIGKILL of the process: a kill in the middle of a commit, after the
# temporary file exists (`fallback`: written by the copy fallback).
KILL_AT_RENAME = """\
import os, sys
mode = sys.argv.pop(1)
import lazygen.commit as c
if mode == "fallback":
    c.Staged.link_to = lambda self, tmp: False
def replace(src, dst):
    if os.path.basename(os.fspath(dst)) != ".lazygen-manifest":
        os.kill(os.getpid(), 9)
    return os.rename(src, dst)
c.os.replace = replace
from lazygen.cli import main
sys.exit(main())
"""


@pytest.mark.parametrize("mode", ["linked", "fallback"])
def test_temporary_files_of_a_killed_commit_are_swept_by_the_next_run(world: World, tmp_path: Path, mode: str) -> None:
    out = state_dir(world, "old", tmp_path)
    script = tmp_path / "kill_at_rename.py"
    script.write_text(KILL_AT_RENAME, encoding="utf-8")
    proc = subprocess.run([sys.executable, str(script), mode, "-s", TS_YAML, "-o", "out", NO_CHECK], cwd=tmp_path,
                          env=world.env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == -9, proc.stderr
    left = strays(out)
    assert len(left) == 1 and left[0].startswith(".LazyIr.h.") and left[0].endswith(".tmp"), left
    assert visible(out) == world.state["old"]
    # A temporary file of the old naming (no pid), and a user's dotfile
    # that only looks like one: the first is lazygen's, the second is not.
    (out / ".RegisterLazy.cpp.0badf00d.tmp").write_text("partial")
    (out / ".notes.0badf00d.tmp").write_text("mine")

    run(["-s", TS_YAML, "-o", "out", NO_CHECK], tmp_path, world.env)
    assert visible(out) == world.state["plain"]
    assert strays(out) == [".notes.0badf00d.tmp"]


def test_cache_temporary_files_of_dead_runs_are_swept(world: World, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    dead = dead_pid()
    planted = {
        cache / f".catalogue-x.pickle.{dead}.0badf00d.tmp": True,  # a dead run's
        cache / f".catalogue-y.pickle.{os.getppid()}.0badf00d.tmp": False,  # a live process's
        cache / ".tmp-k3j2h1.pickle": True,  # the old naming, an hour old
        cache / "specs" / ".tmp-a1b2c3.pickle": True,
        cache / "runs" / f"0123abcd-99.json.{dead}.tmp": True,
        cache / "jinja" / "__jinja2_0a1b.cache4xyz.tmp": True,
    }
    for path in planted:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"partial")
        os.utime(path, (time.time() - 7200, time.time() - 7200))
    run(["-s", TS_YAML, "-o", "out", NO_CHECK], tmp_path, make_env(cache))
    assert visible(tmp_path / "out") == world.state["plain"]
    for path, swept in planted.items():
        assert path.exists() != swept, path
    assert temp_files(cache) == [os.path.relpath(p, cache) for p, swept in planted.items() if not swept]


# --------------------------------------------------------------------------
# 2. a damaged Jinja bytecode cache


def test_damaged_template_bytecode_is_ignored_and_rebuilt(world: World, tmp_path: Path) -> None:
    import jinja2.bccache

    cache = tmp_path / "cache"
    shutil.copytree(world.cache, cache)
    entries = sorted((cache / "jinja").iterdir())
    assert entries
    magic = len(jinja2.bccache.bc_magic)
    for i, entry in enumerate(entries):
        data = entry.read_bytes()
        # Cut inside the pickled checksum, garbage after the magic, cut inside the code.
        entry.write_bytes([data[:magic + 3], data[:magic] + b"\x80\x04\x95garbage", data[:-7]][i % 3])
    for attempt in range(2):  # rebuilt: the second run meets sound entries
        run(["-s", TS_YAML, "-o", "out", NO_CHECK], tmp_path / str(attempt), make_env(cache))
        assert visible(tmp_path / str(attempt) / "out") == world.state["plain"]
    assert [e.read_bytes() for e in entries] != [b""] * len(entries)


# --------------------------------------------------------------------------
# 3. --write-missing-shapes writes like the outputs


def _shape_args(header: Path, written: Path) -> list[object]:
    return ["-s", TS_YAML, "-o", "out", "--shape-inference-file", header, "--write-missing-shapes", written]


def test_missing_shapes_header_is_written_whole_and_only_when_changed(world: World, tmp_path: Path) -> None:
    empty = tmp_path / "empty.h"
    empty.write_text("")
    header = tmp_path / "shapes" / "shapes.h"
    proc = run(_shape_args(empty, header), tmp_path, world.env, ok=False)
    assert proc.returncode == 1 and "no shape function for" in proc.stderr
    first = {p: p.read_bytes() for p in (header, header.with_name("shapes.h.cpp"))}
    for p in first:
        age(p)
    run(_shape_args(empty, header), tmp_path, world.env, ok=False)
    for p, data in first.items():
        assert p.read_bytes() == data
        assert p.stat().st_mtime_ns == OLD_TIME_NS, f"{p} rewritten though unchanged"
    assert strays(header.parent) == []


def test_missing_shapes_header_survives_a_full_disk(world: World, tmp_path: Path) -> None:
    empty = tmp_path / "empty.h"
    empty.write_text("")
    with tmpfs(tmp_path / "disk", "256k") as disk:
        header = disk / "shapes.h"
        old = b"#pragma once\n// the backend's old shape header\n" * 200
        header.write_bytes(old)
        fill(disk)
        proc = run(_shape_args(empty, header), tmp_path, world.env, ok=False)
        assert proc.returncode == 1
        assert f"{header}: error: cannot write" in proc.stderr, proc.stderr
        assert header.read_bytes() == old
        assert strays(disk) == []


def test_missing_shapes_header_never_includes_itself(world: World, tmp_path: Path) -> None:
    (tmp_path / "backend").mkdir()
    header = tmp_path / "backend" / "shapes.h"
    header.write_text("#pragma once\n")
    args = ["-s", TS_YAML, "-o", "out", "--shape-inference-hdr", "backend/shapes.h", "--write-missing-shapes", "backend/shapes.h"]
    proc = run(args, tmp_path, world.env, ok=False)
    assert proc.returncode == 1
    text = header.read_text()
    assert "#include <backend/shapes.h>" not in text
    assert "#include <torch/csrc/lazy/core/shape_inference.h>" in text
    # The header it wrote passes the check it was written for.
    run(args[:-2], tmp_path, world.env)


# --------------------------------------------------------------------------
# 4. each input is read once: pipes


def test_yaml_from_a_pipe_stdin_or_fifo(world: World, tmp_path: Path) -> None:
    text = TS_YAML.read_text()
    with open(TS_YAML, "rb") as stdin:
        run(["-s", "/dev/stdin", "-o", "out", NO_CHECK], tmp_path / "a", world.env, stdin=stdin)
    (tmp_path / "b").mkdir()
    proc = subprocess.run(["bash", "-c", f'exec "$@" -s <(cat {TS_YAML}) -o out {NO_CHECK}', "bash", *lazygen()],
                          cwd=tmp_path / "b", env=world.env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    writer = threading.Thread(target=fifo.write_text, args=(text,))
    writer.start()
    run(["-s", fifo, "-o", "out", NO_CHECK], tmp_path / "c", world.env)
    writer.join()
    for name in "abc":
        assert visible(tmp_path / name / "out") == world.state["plain"], name


# --------------------------------------------------------------------------
# 5. the no-op fast path and a template folder created later


def test_template_folder_created_after_a_run_counts(world: World, tmp_path: Path) -> None:
    args = ["-s", TS_YAML, "-o", "out", NO_CHECK, "--template-dir", "tpl"]
    proc = run(args, tmp_path, world.env, ok=False)  # a missing folder is refused (lazygen.template_check)
    assert proc.returncode == 1 and "does not exist" in proc.stderr, proc.stderr
    (tmp_path / "tpl").mkdir()
    run(args, tmp_path, world.env)
    assert visible(tmp_path / "out") == world.state["plain"]
    (tmp_path / "tpl" / "ir_node.j2").write_text(
        '{% extends "lazygen/ir_node.j2" %}{% block node_class %}// overridden\n{{ super() }}{% endblock %}')
    time.sleep(0.02)  # past the racy-clean margin
    run(args, tmp_path, world.env)
    assert b"// overridden" in (tmp_path / "out" / "LazyIr.h").read_bytes()


def test_no_op_record_notices_a_template_folder_that_appears(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The record itself, below the CLI (which refuses a missing folder
    before recording): a folder missing at the recorded run is a change
    once it exists."""
    from lazygen import fastpath

    monkeypatch.setenv("LAZYGEN_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "in.yaml").write_text("backend: Lazy\n")
    (tmp_path / "out.h").write_text("")
    os.utime(tmp_path / "in.yaml", ns=(OLD_TIME_NS // 2, OLD_TIME_NS // 2))
    out_stat = fastpath._stat(str(tmp_path / "out.h"))
    argv = ["-s", "in.yaml", "--template-dir", "tpl"]
    fastpath.record(argv, [str(tmp_path / "in.yaml")], {str(tmp_path / "out.h"): out_stat}, time.time_ns(),
                    folders=[str(tmp_path / "tpl")])
    assert fastpath.is_up_to_date(argv)
    (tmp_path / "tpl").mkdir()
    assert not fastpath.is_up_to_date(argv)


# --------------------------------------------------------------------------
# 6. a file both read and written


def test_inputs_and_outputs_sharing_a_path_are_refused(world: World, tmp_path: Path) -> None:
    out = state_dir(world, "old", tmp_path)
    yaml = out / "LazyIr.h"
    shutil.copy(TS_YAML, yaml)
    other = tmp_path / "b.yaml"
    shutil.copy(TS_YAML, other)
    os.symlink(other, tmp_path / "link")
    cases = [
        (["-s", yaml, "-o", "out"], yaml, "output LazyIr.h"),
        (["-s", other, "-o", "out", "--depfile", other], other, "the depfile"),
        (["-s", other, "-o", "out", "--depfile", out / "RegisterLazy.cpp"], out / "RegisterLazy.cpp", "output RegisterLazy.cpp"),
        (["-s", "link", "-o", "out", "--depfile", other], "link", "the depfile"),  # read through a symlink
    ]
    before = {p: p.read_bytes() for p in out.iterdir()}
    for args, where, words in cases:
        proc = run([*args, NO_CHECK], tmp_path, world.env, ok=False)
        assert proc.returncode == 1
        assert proc.stderr.startswith(f"{where}: error: ") and words in proc.stderr, proc.stderr
        assert {p: p.read_bytes() for p in out.iterdir()} == before
        assert other.read_bytes() == TS_YAML.read_bytes()


# --------------------------------------------------------------------------
# 7. user input that gave tracebacks


def test_odd_bytes_in_paths_and_templates_are_diagnostics(world: World, tmp_path: Path) -> None:
    raw = os.fsdecode(b"out\xff")
    proc = run(["-s", TS_YAML, "-o", raw, NO_CHECK], tmp_path, world.env, ok=False)
    assert proc.returncode == 1 and "not valid UTF-8" in proc.stderr and "--include-prefix" in proc.stderr, proc.stderr
    assert not (tmp_path / raw).exists()
    # With the includes spelled otherwise, any folder name works; a depfile names it byte for byte.
    run(["-s", TS_YAML, "-o", raw, NO_CHECK, "--include-prefix", "gen", "--depfile", "deps.d"], tmp_path, world.env)
    assert b"out\xff/LazyIr.h:" in (tmp_path / "deps.d").read_bytes()

    proc = run(["-s", TS_YAML, "-o", "a\nb", NO_CHECK, "--depfile", "deps2.d"], tmp_path, world.env, ok=False)
    assert proc.returncode == 1 and "newline" in proc.stderr, proc.stderr
    assert not (tmp_path / "a\nb").exists() and not (tmp_path / "deps2.d").exists()

    tpl = tmp_path / "tpl"
    tpl.mkdir()
    (tpl / "ir_node.j2").write_text('{% extends "lazygen/ir_node.j2" %}{% block node_class %}{% include "inc" ~ ".j2" %}{% endblock %}')
    (tpl / "inc.j2").write_bytes(b"caf\xe9\n")
    proc = run(["-s", TS_YAML, "-o", "t", NO_CHECK, "--template-dir", tpl], tmp_path, world.env, ok=False)
    assert proc.returncode == 1 and ": error: " in proc.stderr and "utf-8" in proc.stderr.lower(), proc.stderr


def test_an_endless_input_is_refused_at_a_size_limit(world: World, tmp_path: Path) -> None:
    start = time.monotonic()
    proc = run(["-s", "/dev/zero", "-o", "out", NO_CHECK], tmp_path, world.env, ok=False)
    assert proc.returncode == 1 and proc.stderr.startswith("/dev/zero: error: ") and "MiB" in proc.stderr, proc.stderr
    proc = run(["-s", TS_YAML, "-o", "out", NO_CHECK, "--native-functions", "/dev/zero", "--tags-yaml", "/dev/zero"],
               tmp_path, world.env, ok=False)
    assert proc.returncode == 1 and "/dev/zero: error: " in proc.stderr and "MiB" in proc.stderr, proc.stderr
    assert time.monotonic() - start < 20
    assert not (tmp_path / "out").exists()


# What Python prints when a signal stops it while it is still starting up
# (its site module, runpy), before any of lazygen runs.
INTERPRETER_STARTUP = ("Fatal Python error: init_import_site", "Could not import runpy module")


def _default_signals() -> None:
    """In the child: the stop signals' default actions, as a terminal gives
    them. A test suite started in the background (`pytest &` from a script)
    inherits SIGINT ignored, which Python, and so lazygen, then keeps."""
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_DFL)


def _stopped_runs(world: World, tmp_path: Path, yaml: Path, sig: int, count: int, extra: list[str]) -> list[int]:
    """Runs alternating between two option sets on one folder, each sent `sig`
    at a random moment; after each, the folder is wholly one state or the
    other, with nothing stray. Returns the exit statuses."""
    rng = random.Random(20)
    states = {}
    for name, opts in (("a", []), ("b", OLD_OPTS)):
        run(["-s", yaml, "-o", "out", NO_CHECK, *extra, *opts], tmp_path / name, world.env)
        states[name] = visible(tmp_path / name / "out")
    start = time.monotonic()
    run(["-s", yaml, "-o", "out", NO_CHECK, *extra], tmp_path, world.env)
    took = time.monotonic() - start
    statuses = []
    # The moment is drawn from a window that follows the machine's load: a
    # run that finished first narrows it, one stopped before Python ran
    # lazygen moves its start, so most signals land inside a run.
    early, late = 0.1, took * 1.1
    current = "a"  # what the folder holds; each run asks for the other state, so it has work to do
    for i in range(count):
        opts = OLD_OPTS if current == "a" else []
        p = subprocess.Popen(lazygen("-s", yaml, "-o", "out", NO_CHECK, *extra, *opts), cwd=tmp_path, env=world.env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=_default_signals)
        time.sleep(rng.uniform(early, late))
        p.send_signal(sig)
        _, err = p.communicate(timeout=120)
        statuses.append(p.returncode)
        # Stopped while the interpreter itself started (before any of
        # lazygen ran): killed by the signal, or Python's own fatal error.
        before_lazygen = p.returncode == -sig or err.startswith(INTERPRETER_STARTUP)
        if p.returncode == 0:
            late = max(early + 0.05, late * 0.8)
        elif before_lazygen:
            early = min(late - 0.02, early + 0.05)
        if p.returncode == 128 + sig:
            assert err == f"lazygen: stopped by {signal.Signals(sig).name}\n", err
        else:
            assert p.returncode == 0 or before_lazygen, (p.returncode, err)
            assert p.returncode != 0 or "Traceback" not in err, err
        assert strays(tmp_path / "out") == [], (i, p.returncode)
        now = visible(tmp_path / "out")
        assert now in (states["a"], states["b"]), f"run {i} left a mixed folder"
        current = "a" if now == states["a"] else "b"
        assert temp_files(world.cache) == []
    return statuses


def test_ctrl_c_exits_130_with_one_line_and_a_consistent_folder(world: World, tmp_path: Path) -> None:
    statuses = _stopped_runs(world, tmp_path, TS_YAML, signal.SIGINT, 10, [])
    print("exit statuses:", statuses)
    assert statuses.count(130) >= 5


def test_an_ignored_hangup_stays_ignored(world: World, tmp_path: Path) -> None:
    """`nohup lazygen ...`: SIGHUP ignored by the caller does not stop the run."""
    run(["-s", TS_YAML, "-o", "out", NO_CHECK, *OLD_OPTS], tmp_path, world.env)

    def ignore_hangup() -> None:
        signal.signal(signal.SIGHUP, signal.SIG_IGN)

    p = subprocess.Popen(lazygen("-s", TS_YAML, "-o", "out", NO_CHECK), cwd=tmp_path, env=world.env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=ignore_hangup)
    deadline = time.monotonic() + 60
    while p.poll() is None and time.monotonic() < deadline:
        p.send_signal(signal.SIGHUP)
        time.sleep(0.02)
    _, err = p.communicate(timeout=60)
    assert p.returncode == 0 and err == "", (p.returncode, err)
    assert visible(tmp_path / "out") == world.state["plain"]


@pytest.fixture(scope="module")
def large_yaml(world: World, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every op the catalogue has that lazygen accepts: functional ones under
    full_codegen, the others under supported (about 2,800 lines; its outputs
    are 5 MB)."""
    path = tmp_path_factory.mktemp("large") / "every_op.yaml"
    full, supported = write_every_op_yaml(path)
    assert len(full) > 1300 and len(supported) > 1000
    return path


def test_soak_sigterm_at_random_moments_leaves_a_consistent_folder(world: World, large_yaml: Path, tmp_path: Path) -> None:
    statuses = _stopped_runs(world, tmp_path, large_yaml, signal.SIGTERM, 30, [])
    print("exit statuses:", statuses)
    assert statuses.count(143) >= 10 and statuses.count(0) >= 1


# --------------------------------------------------------------------------
# 8. the lock never follows a symlink


@pytest.mark.parametrize("target", ["dangling", "existing"])
def test_a_symlinked_lock_file_is_never_followed(world: World, tmp_path: Path, target: str) -> None:
    out = state_dir(world, "old", tmp_path)
    elsewhere = tmp_path / "elsewhere"
    if target == "existing":
        elsewhere.write_text("someone's file\n")
    (out / ".lazygen-lock").unlink()
    os.symlink(elsewhere, out / ".lazygen-lock")
    proc = run(["-s", TS_YAML, "-o", "out", NO_CHECK], tmp_path, world.env, ok=False)
    assert proc.returncode == 1 and f"{os.path.join('out', '.lazygen-lock')}: error: " in proc.stderr and "symbolic link" in proc.stderr, proc.stderr
    assert elsewhere.exists() == (target == "existing")
    if target == "existing":
        assert elsewhere.read_text() == "someone's file\n"
    assert visible(out) == world.state["old"]


# --------------------------------------------------------------------------
# the smaller items


def test_nul_byte_is_reported_at_its_line_and_column(world: World, tmp_path: Path) -> None:
    yaml = tmp_path / "nul.yaml"
    yaml.write_bytes(b"backend: Lazy\ncpp_namespace: torch::lazy\nsupported:\n- ab\0s\n")
    proc = run(["-s", yaml, "-o", "out", NO_CHECK], tmp_path, world.env, ok=False)
    assert proc.returncode == 1 and proc.stderr.startswith(f"{yaml}:4:5: error: "), proc.stderr


def test_a_large_yaml_without_aliases_is_not_called_an_alias_bomb(world: World, tmp_path: Path) -> None:
    yaml = tmp_path / "large.yaml"
    yaml.write_text("backend: Lazy\ncpp_namespace: torch::lazy\nsupported:\n" + "- abs\n" * 250_000)
    proc = run(["-s", yaml, "-o", "out", NO_CHECK], tmp_path, world.env, ok=False)
    assert proc.returncode == 1 and "nodes" in proc.stderr and "alias" not in proc.stderr, proc.stderr


def test_cache_folder_needs_an_absolute_home_and_xdg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from lazygen import cachedir

    monkeypatch.delenv("LAZYGEN_CACHE_DIR", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/cache")  # the XDG spec: ignored
    assert cachedir.cache_dir() == os.path.join(tmp_path, ".cache", "lazygen")
    monkeypatch.delenv("XDG_CACHE_HOME")
    for home in ("", "/", "relative"):
        monkeypatch.setenv("HOME", home)
        for pw_home in ("/", ""):
            monkeypatch.setattr("pwd.getpwuid", lambda uid, h=pw_home: type("pw", (), {"pw_dir": h})())
            assert cachedir.cache_dir() is None, (home, pw_home)
    monkeypatch.setattr("pwd.getpwuid", lambda uid: type("pw", (), {"pw_dir": str(tmp_path / "pw")})())
    assert cachedir.cache_dir() == os.path.join(tmp_path, "pw", ".cache", "lazygen")


def test_empty_home_never_caches_in_the_root_folder(world: World, tmp_path: Path) -> None:
    had = os.path.exists("/.cache/lazygen")
    env = make_env(None, HOME="", XDG_CACHE_HOME="")
    run(["-s", TS_YAML, "-o", "out", NO_CHECK], tmp_path, env)
    assert os.path.exists("/.cache/lazygen") == had
    assert not (tmp_path / ".cache").exists()


def test_read_only_folder_with_unchanged_outputs_succeeds(world: World, tmp_path: Path) -> None:
    with tmpfs(tmp_path / "ro", "8m") as disk:
        run(["-s", TS_YAML, "-o", disk / "out", NO_CHECK], tmp_path, world.env)
        before = {p.name: p.stat().st_mtime_ns for p in (disk / "out").iterdir()}
        subprocess.run(["mount", "-o", "remount,ro", str(disk)], check=True)
        # Another command line (no no-op record), the same outputs.
        run(["-s", TS_YAML, "-o", disk / "out", NO_CHECK, "--generated-by", "lazygen"], tmp_path, world.env)
        assert {p.name: p.stat().st_mtime_ns for p in (disk / "out").iterdir()} == before
        proc = run(["-s", TS_YAML, "-o", disk / "out", NO_CHECK, "--generated-by", "other"], tmp_path, world.env, ok=False)
        assert proc.returncode == 1 and f"{disk / 'out'}" in proc.stderr and "Read-only" in proc.stderr, proc.stderr
        assert ".tmp" not in proc.stderr


def test_full_disk_message_names_the_output_not_a_temporary_file(world: World, tmp_path: Path) -> None:
    with tmpfs(tmp_path / "disk", "64k") as disk:
        fill(disk)
        proc = run(["-s", TS_YAML, "-o", disk / "out", NO_CHECK], tmp_path, world.env, ok=False)
        assert proc.returncode == 1 and f"{disk / 'out'}" in proc.stderr and "No space left" in proc.stderr, proc.stderr
        assert ".tmp" not in proc.stderr
        assert not (disk / "out").exists(), "the failed run left the folder it created"


def test_a_failed_run_removes_the_folders_it_created(world: World, tmp_path: Path) -> None:
    (tmp_path / "dep").mkdir()
    proc = run(["-s", TS_YAML, "-o", "new/a/b", NO_CHECK, "--depfile", "dep"], tmp_path, world.env, ok=False)
    assert proc.returncode == 1 and "dep" in proc.stderr, proc.stderr
    assert not (tmp_path / "new").exists()


def test_a_run_waiting_for_the_lock_says_so(world: World, tmp_path: Path) -> None:
    out = state_dir(world, "old", tmp_path)
    fd = os.open(out / ".lazygen-lock", os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        p = subprocess.Popen(lazygen("-s", TS_YAML, "-o", "out", NO_CHECK), cwd=tmp_path, env=world.env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        # Held until the run says it waits (however long a loaded machine
        # takes to get it there): a silent wait fails here.
        ready, _, _ = select.select([p.stderr], [], [], 90)
        assert ready, "the run waited silently for 90 s"
        said = p.stderr.readline()
        assert p.poll() is None, "the run did not wait for the lock"
    finally:
        os.close(fd)
    _, rest = p.communicate(timeout=60)
    assert p.returncode == 0, said + rest
    assert rest == "" and "waiting for out/.lazygen-lock" in said and f"process {os.getpid()}" in said, said + rest
    assert visible(out) == world.state["plain"]
