"""Tests for lazygen.commit: write-if-changed, atomicity, stale outputs, locking, depfiles."""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from lazygen import commit as commit_mod
from lazygen.commit import commit, read_manifest

REPO = Path(__file__).resolve().parents[1]
OLD_TIME = 1_000_000_000  # 2001: any later write is visible as a new mtime


def _env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("LAZYGEN_TEST_CRASH_AFTER", None)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    env.update(extra)
    return env


def _visible(directory: Path) -> set[str]:
    return {p.name for p in directory.iterdir() if not p.name.startswith(".")}


def _age(path: Path) -> None:
    os.utime(path, (OLD_TIME, OLD_TIME))


def test_writes_exact_bytes_and_creates_parents(tmp_path: Path) -> None:
    out = tmp_path / "a" / "b"
    contents = {"B.h": "x\r\ny\n", "A.cpp": "caf\u00e9\n", "C.h": ""}
    result = commit(out, contents)
    assert result.written == ("A.cpp", "B.h", "C.h")
    assert result.unchanged == () and result.removed == ()
    assert (out / "B.h").read_bytes() == b"x\r\ny\n"
    assert (out / "A.cpp").read_bytes() == b"caf\xc3\xa9\n"
    assert (out / "C.h").read_bytes() == b""
    assert read_manifest(out) == ("A.cpp", "B.h", "C.h")
    assert (out / ".lazygen-manifest").read_text() == "A.cpp\nB.h\nC.h\n"


def test_unchanged_file_keeps_mtime_changed_file_gets_new_one(tmp_path: Path) -> None:
    commit(tmp_path, {"a.h": "one\n", "b.h": "two\n"})
    for name in ("a.h", "b.h", ".lazygen-manifest"):
        _age(tmp_path / name)
    inode = (tmp_path / "a.h").stat().st_ino

    result = commit(tmp_path, {"a.h": "one\n", "b.h": "two\n"})
    assert result.written == () and result.unchanged == ("a.h", "b.h")
    for name in ("a.h", "b.h", ".lazygen-manifest"):
        assert (tmp_path / name).stat().st_mtime == OLD_TIME, name
    assert (tmp_path / "a.h").stat().st_ino == inode

    result = commit(tmp_path, {"a.h": "one\n", "b.h": "TWO\n"})
    assert result.written == ("b.h",) and result.unchanged == ("a.h",)
    assert (tmp_path / "a.h").stat().st_mtime == OLD_TIME
    assert (tmp_path / "b.h").stat().st_mtime != OLD_TIME
    assert (tmp_path / "b.h").read_text() == "TWO\n"
    # Same names, so the manifest did not need rewriting.
    assert (tmp_path / ".lazygen-manifest").stat().st_mtime == OLD_TIME


def test_newline_only_difference_is_a_change(tmp_path: Path) -> None:
    commit(tmp_path, {"a.h": "x\n"})
    result = commit(tmp_path, {"a.h": "x\r\n"})
    assert result.written == ("a.h",)
    assert (tmp_path / "a.h").read_bytes() == b"x\r\n"


def test_atomic_replace_leaves_no_temp_files(tmp_path: Path) -> None:
    for i in range(3):
        commit(tmp_path, {"a.h": f"{i}\n", "b.h": "same\n", f"only{i}.h": "x"})
    assert sorted(os.listdir(tmp_path)) == sorted([".lazygen-lock", ".lazygen-manifest", "a.h", "b.h", "only2.h"])


def test_failed_write_cleans_temp_and_keeps_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    commit(tmp_path, {"a.h": "old\n"})

    def broken_replace(src: object, dst: object) -> None:
        raise OSError("disk on fire")

    monkeypatch.setattr(commit_mod.os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk on fire"):
        commit(tmp_path, {"a.h": "new\n"})
    assert (tmp_path / "a.h").read_text() == "old\n"
    assert not [n for n in os.listdir(tmp_path) if n.endswith(".tmp")]


def test_new_files_get_umask_permissions(tmp_path: Path) -> None:
    old_mask = os.umask(0o022)
    try:
        commit(tmp_path, {"a.h": "x"})
    finally:
        os.umask(old_mask)
    assert (tmp_path / "a.h").stat().st_mode & 0o777 == 0o644


def test_stale_removal_deletes_only_manifest_listed_files(tmp_path: Path) -> None:
    commit(tmp_path, {"a.h": "a", "b.h": "b", "c.h": "c"})
    (tmp_path / "user.txt").write_text("mine")
    (tmp_path / ".user-hidden").write_text("mine too")

    result = commit(tmp_path, {"a.h": "a"})
    assert result.removed == ("b.h", "c.h")
    assert result.unchanged == ("a.h",)
    assert _visible(tmp_path) == {"a.h", "user.txt"}
    assert (tmp_path / "user.txt").read_text() == "mine"
    assert (tmp_path / ".user-hidden").read_text() == "mine too"
    assert read_manifest(tmp_path) == ("a.h",)

    # A wholly new set replaces the old one; the user file still survives.
    result = commit(tmp_path, {"z.h": "z"})
    assert result.removed == ("a.h",)
    assert _visible(tmp_path) == {"z.h", "user.txt"}


def test_stale_name_already_deleted_is_not_reported(tmp_path: Path) -> None:
    commit(tmp_path, {"a.h": "a", "b.h": "b"})
    (tmp_path / "b.h").unlink()
    assert commit(tmp_path, {"a.h": "a"}).removed == ()


def test_crafted_manifest_is_never_followed(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (tmp_path / "evil").write_text("outside")
    (out / ".hidden").write_text("hidden")
    (out / "sub").mkdir()
    (out / "sub" / "x").write_text("nested")
    (out / "a\\b").write_text("backslash")
    (out / "dir").mkdir()
    (out / "manifest-ok.h").write_text("listed")
    (out / ".lazygen-manifest").write_text(
        f"../evil\n..\n.\n.hidden\nsub/x\na\\b\n{tmp_path / 'evil'}\n/etc/passwd\ndir\nmanifest-ok.h\n"
    )
    assert read_manifest(out) == ("dir", "manifest-ok.h")

    result = commit(out, {"new.h": "n"})
    assert result.removed == ("manifest-ok.h",)
    assert (tmp_path / "evil").read_text() == "outside"
    assert (out / ".hidden").read_text() == "hidden"
    assert (out / "sub" / "x").read_text() == "nested"
    assert (out / "a\\b").read_text() == "backslash"
    assert (out / "dir").is_dir()
    assert read_manifest(out) == ("new.h",)


def test_undecodable_manifest_reads_as_empty(tmp_path: Path) -> None:
    (tmp_path / ".lazygen-manifest").write_bytes(b"a.h\n\xff\xfe\n")
    (tmp_path / "a.h").write_text("keep")
    assert read_manifest(tmp_path) == ()
    commit(tmp_path, {"b.h": "b"})
    assert (tmp_path / "a.h").read_text() == "keep"


def test_missing_manifest_reads_as_empty(tmp_path: Path) -> None:
    assert read_manifest(tmp_path / "nowhere") == ()


@pytest.mark.parametrize("bad", ["../x", "a/b", "a\\b", ".hidden", "..", "", "a\nb", ".lazygen-manifest"])
def test_bad_output_name_rejected_before_any_write(tmp_path: Path, bad: str) -> None:
    out = tmp_path / "out"
    with pytest.raises(ValueError):
        commit(out, {"good.h": "g", bad: "b"})
    assert not out.exists()


def test_lock_file_is_kept_and_is_not_an_output(tmp_path: Path) -> None:
    commit(tmp_path, {"a.h": "a"})
    assert (tmp_path / ".lazygen-lock").is_file()
    commit(tmp_path, {"b.h": "b"})
    assert (tmp_path / ".lazygen-lock").is_file()
    assert read_manifest(tmp_path) == ("b.h",)


# --- crash and concurrency (subprocesses) ---------------------------------

_COMMIT_FROM_ARGV = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path
    from lazygen.commit import commit
    commit(Path(sys.argv[1]), json.loads(Path(sys.argv[2]).read_text()))
    """
)


def _commit_in_subprocess(out: Path, contents: dict[str, str], tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    spec = tmp_path / "contents.json"
    spec.write_text(json.dumps(contents))
    return subprocess.run(
        [sys.executable, "-c", _COMMIT_FROM_ARGV, str(out), str(spec)],
        env=_env(**env),
        capture_output=True,
        text=True,
        timeout=60,
    )


def _big(tag: str, i: int) -> str:
    # Large enough that a torn write would be visible as a mixed or short file.
    return f"{tag} {i}\n" * 20000


def test_crash_mid_commit_leaves_only_whole_files(tmp_path: Path) -> None:
    out = tmp_path / "out"
    names = [f"f{i}.h" for i in range(5)]
    old = {n: _big("old", i) for i, n in enumerate(names)}
    new = {n: _big("new", i) for i, n in enumerate(names)}
    commit(out, old)

    proc = _commit_in_subprocess(out, new, tmp_path, LAZYGEN_TEST_CRASH_AFTER="2")
    assert proc.returncode == 137, proc.stderr

    states = []
    for n in names:
        text = (out / n).read_text()
        assert text in (old[n], new[n]), f"{n} is neither the old nor the new content"
        states.append("new" if text == new[n] else "old")
    assert states.count("new") == 2
    assert not [n for n in os.listdir(out) if n.endswith(".tmp")]

    # The next complete run finishes the job.
    result = commit(out, new)
    assert len(result.written) == 3 and len(result.unchanged) == 2
    assert all((out / n).read_text() == new[n] for n in names)


def test_crash_before_manifest_update_still_tracks_new_files(tmp_path: Path) -> None:
    out = tmp_path / "out"
    commit(out, {"a.h": "a"})
    proc = _commit_in_subprocess(out, {"a.h": "a2", "b.h": "b", "c.h": "c"}, tmp_path, LAZYGEN_TEST_CRASH_AFTER="2")
    assert proc.returncode == 137, proc.stderr
    assert (out / "b.h").exists() and not (out / "c.h").exists()

    # A later run producing a different set must still clean up what the
    # killed run wrote.
    result = commit(out, {"d.h": "d"})
    assert set(result.removed) == {"a.h", "b.h"}
    assert _visible(out) == {"d.h"}
    assert read_manifest(out) == ("d.h",)


def test_commit_waits_for_the_directory_lock(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    fd = os.open(out / ".lazygen-lock", os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        spec = tmp_path / "contents.json"
        spec.write_text('{"a.h": "a"}')
        proc = subprocess.Popen([sys.executable, "-c", _COMMIT_FROM_ARGV, str(out), str(spec)], env=_env())
        try:
            time.sleep(1.0)
            assert proc.poll() is None, "commit did not wait for the lock"
            assert not (out / "a.h").exists()
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
        assert proc.wait(timeout=60) == 0
    finally:
        os.close(fd)
    assert (out / "a.h").read_text() == "a"


# Each worker commits its own file set many times, and after each commit
# checks, under the same lock, that the directory holds one whole run.
_WORKER = textwrap.dedent(
    """
    import fcntl, os, sys, time
    from pathlib import Path
    from lazygen.commit import commit, read_manifest

    out, tag, iterations, go = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]), Path(sys.argv[4])
    SETS = {"A": ["common.h", "a1.h", "a2.h"], "B": ["common.h", "b1.h"]}

    def check():
        files = sorted(p.name for p in out.iterdir() if not p.name.startswith("."))
        texts = {(out / f).read_text() for f in files}
        if len(texts) != 1:
            return f"mixed contents: {sorted(texts)}"
        owner = texts.pop().split()[0]
        if files != sorted(SETS[owner]):
            return f"files {files} are not run {owner}'s set"
        if list(read_manifest(out)) != files:
            return f"manifest {read_manifest(out)} != files {files}"
        return None

    while not go.exists():
        time.sleep(0.001)
    for i in range(iterations):
        commit(out, {name: f"{tag} {i}\\n" for name in SETS[tag]})
        fd = os.open(out / ".lazygen-lock", os.O_RDWR)
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            problem = check()
        finally:
            os.close(fd)
        if problem:
            print(f"iteration {i}: {problem}", file=sys.stderr)
            sys.exit(3)
    """
)


def _consistent_run(out: Path) -> str:
    files = sorted(_visible(out))
    owners = {(out / f).read_text().split()[0] for f in files}
    assert len(owners) == 1, f"files from several runs: {files}"
    owner = owners.pop()
    expected = {"A": ["a1.h", "a2.h", "common.h"], "B": ["b1.h", "common.h"]}[owner]
    assert files == expected
    assert list(read_manifest(out)) == files
    return owner


def test_concurrent_commits_serialize(tmp_path: Path) -> None:
    out = tmp_path / "out"
    go = tmp_path / "go"
    iterations = "150"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _WORKER, str(out), tag, iterations, str(go)],
            env=_env(),
            stderr=subprocess.PIPE,
            text=True,
        )
        for tag in ("A", "B")
    ]
    time.sleep(0.3)  # let both interpreters start and wait at the gate
    go.touch()
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
    _consistent_run(out)
    assert not [n for n in os.listdir(out) if n.endswith(".tmp")]


# --- depfile ----------------------------------------------------------------


def test_depfile_content_and_escaping(tmp_path: Path) -> None:
    out = tmp_path / "out"
    dep = tmp_path / "deps" / "gen.d"
    inputs = [tmp_path / "my dir" / "a$b.yaml", Path("rel/x#1.yaml"), Path("plain.yaml")]
    commit(out, {"B.h": "b", "A.h": "a"}, depfile=dep, inputs=inputs)
    expected = (
        f"{tmp_path}/out/A.h: \\\n"
        f"  {tmp_path}/my\\ dir/a$$b.yaml \\\n"
        "  rel/x\\#1.yaml \\\n"
        "  plain.yaml\n"
    )
    assert dep.read_text() == expected
    assert dep.parent.is_dir()
    # The depfile is not an output of the directory.
    assert read_manifest(out) == ("A.h", "B.h")


def test_depfile_explicit_target_and_no_inputs(tmp_path: Path) -> None:
    dep = tmp_path / "gen.d"
    commit(tmp_path / "out", {"A.h": "a"}, depfile=dep, depfile_target="stamp file")
    assert dep.read_text() == "stamp\\ file:\n"


def test_depfile_unchanged_keeps_mtime(tmp_path: Path) -> None:
    dep = tmp_path / "gen.d"
    inputs = [Path("a.yaml"), Path("b.yaml")]
    commit(tmp_path / "out", {"A.h": "a"}, depfile=dep, inputs=inputs)
    _age(dep)
    commit(tmp_path / "out", {"A.h": "changed"}, depfile=dep, inputs=inputs)
    assert dep.stat().st_mtime == OLD_TIME
    commit(tmp_path / "out", {"A.h": "changed"}, depfile=dep, inputs=[Path("a.yaml")])
    assert dep.stat().st_mtime != OLD_TIME
    assert dep.read_text() == f"{tmp_path}/out/A.h: \\\n  a.yaml\n"


def test_depfile_needs_a_target(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        commit(tmp_path / "out", {}, depfile=tmp_path / "gen.d")
    assert not (tmp_path / "out").exists()


# --------------------------------------------------------------------------
# staged outputs


@pytest.fixture(params=["unnamed file", "memory", "unnamed file, no /proc link"])
def staging(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Each way Staged can hold and commit its bytes."""
    if request.param == "unnamed file" and not hasattr(os, "O_TMPFILE"):
        pytest.skip("no O_TMPFILE on this system")
    if request.param == "memory":
        monkeypatch.delattr(commit_mod.os, "O_TMPFILE", raising=False)
    if request.param == "unnamed file, no /proc link":
        def no_link(*args: object, **kwargs: object) -> None:
            raise OSError("no /proc here")

        monkeypatch.setattr(commit_mod.os, "link", no_link)
    return request.param


def test_staged_outputs_commit_like_texts(tmp_path: Path, staging: str) -> None:
    out = tmp_path / "out"
    out.mkdir()
    texts = {"a.h": ["caf\u00e9", "\n" * 3], "big.cpp": [_big("x", 1), "tail\n", _big("y", 2)], "empty.h": []}
    expected = {n: "".join(parts).encode("utf-8") for n, parts in texts.items()}
    staged = {n: commit_mod.stage(out, iter(parts)) for n, parts in texts.items()}
    assert sorted(os.listdir(out)) == [], "staging named a file"
    result = commit(out, staged)
    assert result.written == ("a.h", "big.cpp", "empty.h")
    assert {n: (out / n).read_bytes() for n in texts} == expected
    assert not [n for n in os.listdir(out) if n.endswith(".tmp")]

    for name in texts:
        _age(out / name)
    changed = dict(texts, **{"big.cpp": [_big("x", 1), "TAIL\n", _big("y", 2)]})
    shorter = dict(changed, **{"a.h": ["caf\u00e9", "\n" * 2]})
    result = commit(out, {n: commit_mod.stage(out, iter(parts)) for n, parts in shorter.items()})
    assert result.written == ("a.h", "big.cpp") and result.unchanged == ("empty.h",)
    assert (out / "empty.h").stat().st_mtime == OLD_TIME
    assert (out / "big.cpp").read_bytes() == "".join(changed["big.cpp"]).encode("utf-8")
    assert (out / "a.h").read_bytes() == "caf\u00e9\n\n".encode("utf-8")


_STAGE_THEN_DIE = textwrap.dedent(
    """
    import os, sys
    from pathlib import Path
    from lazygen.commit import stage
    out = Path(sys.argv[1])
    staged = [stage(out, ["x" * 100000 for _ in range(20)]) for _ in range(3)]
    os.kill(os.getpid(), 9)
    """
)


def test_a_run_killed_while_staging_leaves_no_trace(tmp_path: Path) -> None:
    if not hasattr(os, "O_TMPFILE"):
        pytest.skip("without O_TMPFILE staged bytes are held in memory: nothing to leave behind either")
    out = tmp_path / "out"
    commit(out, {"a.h": "old\n"})
    before = sorted(os.listdir(out))
    proc = subprocess.run([sys.executable, "-c", _STAGE_THEN_DIE, str(out)], env=_env(), capture_output=True, timeout=60)
    assert proc.returncode == -9, proc.stderr
    assert sorted(os.listdir(out)) == before
    assert (out / "a.h").read_text() == "old\n"
