"""Commit rendered contents to an output directory.

This is the last step of a run: it gets a mapping of file name to contents and
moves the output directory to exactly that state. It knows nothing about
operators or templates.

Guarantees:

* Write-if-changed: a file whose bytes already match is not touched, so its
  mtime stays and a build that re-runs the generator recompiles nothing.
* Atomic files: each changed file is written to a temporary file in the same
  directory and renamed over the old one, so a reader (or a kill -9) never
  sees a partial file. There is no fsync: rename ordering is enough against
  a killed process, and speed matters more than power-loss durability here.
* Staged contents: a run can `stage` each output before committing, into an
  unnamed file in the directory (O_TMPFILE), so that it holds no large output
  in memory; the commit gives a changed one its temporary name by linking it
  and renames it as above. A run killed while staging leaves nothing.
* Stale outputs: ``.lazygen-manifest`` lists the files lazygen wrote in the
  directory. Files named there but no longer produced are deleted; files
  lazygen never wrote are never touched.
* Serialized: the whole commit holds ``fcntl.flock`` on ``.lazygen-lock`` in
  the directory, so concurrent runs on one directory do not interleave.
* Depfile: optionally a Make-syntax depfile naming every input.

Test-only hook: when the environment variable ``LAZYGEN_TEST_CRASH_AFTER=N``
is set, the process calls ``os._exit(137)`` right after the N-th output file
has been renamed into place, to simulate a kill -9 in the middle of a commit.
Never set it outside tests.
"""

from __future__ import annotations

import errno
import os
import stat
import sys
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from lazygen.atomic import signals_deferred, sweep, temp_path

try:
    import fcntl
except ImportError:  # not POSIX: commits are not serialized there
    fcntl = None  # type: ignore[assignment]

__all__ = [
    "CRASH_ENV",
    "LOCK_NAME",
    "MANIFEST_NAME",
    "CommitResult",
    "Staged",
    "commit",
    "depfile_text",
    "discard_if_unused",
    "read_manifest",
    "stage",
    "write_if_changed",
]

MANIFEST_NAME = ".lazygen-manifest"
LOCK_NAME = ".lazygen-lock"
CRASH_ENV = "LAZYGEN_TEST_CRASH_AFTER"

# Characters that make a name anything but one plain file in the directory,
# or that the line-based manifest could not hold.
_BAD_NAME_CHARS = frozenset("/\\\0\n\r")


@dataclass(frozen=True)
class CommitResult:
    """What a commit did, by file name (each tuple sorted)."""

    written: tuple[str, ...]
    unchanged: tuple[str, ...]
    removed: tuple[str, ...]
    # (size, mtime_ns, inode) of every output and the depfile, by path, as
    # the commit left them.
    stats: dict[str, tuple[int, int, int] | None] = field(default_factory=dict, compare=False)


def is_plain_name(name: str) -> bool:
    """True for a name that can only mean a visible file in the directory.

    Dotfiles are excluded too: they are lazygen's own bookkeeping (manifest,
    lock, temporaries), never outputs.
    """
    return bool(name) and not name.startswith(".") and not (_BAD_NAME_CHARS & set(name))


def read_manifest(output_dir: Path) -> tuple[str, ...]:
    """The file names lazygen recorded as written in ``output_dir``.

    Lines that are not plain file names are dropped, so a tampered manifest
    can never point a deletion outside the directory. A missing or undecodable
    manifest reads as empty: leaving a stale file is safer than deleting one
    by a misread name.
    """
    try:
        data = (Path(output_dir) / MANIFEST_NAME).read_bytes()
    except FileNotFoundError:
        return ()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return ()
    return tuple(sorted({line for line in text.split("\n") if is_plain_name(line)}))


def _manifest_bytes(names: Sequence[str]) -> bytes:
    return "".join(name + "\n" for name in sorted(set(names))).encode("utf-8")


def _escape_make(path: str) -> str:
    if "\n" in path or "\r" in path:
        raise ValueError(f"a depfile cannot name a path holding a newline: {path!r}")
    return path.replace("$", "$$").replace("#", "\\#").replace(" ", "\\ ")


def depfile_text(target: str | os.PathLike[str], inputs: Sequence[str | os.PathLike[str]]) -> str:
    """Make syntax ``target: dep1 dep2 ...``, one dependency per line."""
    parts = [_escape_make(os.fspath(target)) + ":"]
    parts += [_escape_make(os.fspath(dep)) for dep in inputs]
    return " \\\n  ".join(parts) + "\n"


def _utf8(content: str | bytes | Staged) -> bytes | Staged:
    return content.encode("utf-8") if isinstance(content, str) else content


class Staged:
    """One output's bytes, written out before the commit and kept off the
    heap: in an unnamed file on the output directory's filesystem (Linux's
    O_TMPFILE, which a killed process leaves no trace of), or, where the
    system or filesystem has none, in memory."""

    CHUNK = 1 << 16  # bytes per write

    def __init__(self, directory: Path) -> None:
        self._file = None
        self._memory: list[bytes] = []
        self.size = 0
        if hasattr(os, "O_TMPFILE"):
            try:
                self._file = os.fdopen(os.open(directory, os.O_TMPFILE | os.O_RDWR, 0o666), "w+b")
            except OSError:
                pass  # no O_TMPFILE on this filesystem: keep the bytes in memory

    def write(self, text: str) -> None:
        # Encoded in slices, so a multi-megabyte text is never also held as bytes.
        for start in range(0, len(text), self.CHUNK):
            data = text[start:start + self.CHUNK].encode("utf-8")
            self.size += len(data)
            if self._file is not None:
                self._file.write(data)
            else:
                self._memory.append(data)

    def chunks(self) -> Iterator[bytes]:
        if self._file is None:
            yield from self._memory
            return
        self._file.flush()
        self._file.seek(0)
        while data := self._file.read(self.CHUNK):
            yield data

    def same_as(self, path: Path) -> bool:
        """Whether the file at `path` holds exactly these bytes."""
        try:
            f = open(path, "rb")
        except FileNotFoundError:
            return False
        with f:
            if os.fstat(f.fileno()).st_size != self.size:
                return False
            for data in self.chunks():
                if f.read(len(data)) != data:
                    return False
            return f.read(1) == b""

    def link_to(self, tmp: Path) -> bool:
        """Give the unnamed file the name `tmp`; False when it cannot."""
        if self._file is None:
            return False
        self._file.flush()
        try:
            proc_fds = os.open("/proc/self/fd", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError:
            return False  # no /proc: the caller copies the bytes instead
        try:
            # linkat(proc_fds, "N", AT_FDCWD, tmp, AT_SYMLINK_FOLLOW): a plain
            # link() of "/proc/self/fd/N" does not follow that magic link and
            # fails with EXDEV.
            os.link(str(self._file.fileno()), tmp, src_dir_fd=proc_fds, follow_symlinks=True)
        except OSError:
            return False  # an old kernel, say: the caller copies the bytes instead
        finally:
            os.close(proc_fds)
        return True

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
        self._memory = []


def stage(output_dir: Path, texts: Iterable[str]) -> Staged:
    """Write the pieces of one output's text to a Staged file for `commit`.
    The directory must exist."""
    staged = Staged(output_dir)
    # Pieces are small and many (one per template chunk): write them in batches.
    batch: list[str] = []
    size = 0
    try:
        for text in texts:
            batch.append(text)
            size += len(text)
            if size >= Staged.CHUNK:
                staged.write("".join(batch))
                batch, size = [], 0
        staged.write("".join(batch))
    except BaseException:
        staged.close()
        raise
    return staged


def _crash_after() -> int | None:
    value = os.environ.get(CRASH_ENV)
    if not value:
        return None
    return int(value)


def write_if_changed(path: Path, data: bytes | Staged) -> bool:
    """Put ``data`` at ``path`` by temp file + rename unless it is already there.

    Returns whether the file was written. An OSError names ``path``, never
    the temporary file.
    """
    path = Path(path)
    try:
        return _write_if_changed(path, data)
    except OSError as err:
        if err.errno is not None and err.filename != os.fspath(path):
            raise OSError(err.errno, err.strerror, os.fspath(path)) from None
        raise


def _write_if_changed(path: Path, data: bytes | Staged) -> bool:
    if isinstance(data, Staged):
        if data.same_as(path):
            return False
    else:
        try:
            with open(path, "rb") as f:
                if f.read() == data:
                    return False
        except FileNotFoundError:
            pass
    # Held back for the few calls from the temporary file's creation to its
    # rename, so a stop signal (an exception, see lazygen.cli) cannot strand it.
    with signals_deferred():
        tmp = temp_path(path)
        try:
            if not (isinstance(data, Staged) and data.link_to(tmp)):
                # Mode 0o666 (unlike mkstemp's 0o600) lets the umask decide
                # the permissions, as for any ordinarily created file.
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
                with os.fdopen(fd, "wb") as f:
                    for chunk in data.chunks() if isinstance(data, Staged) else (data,):
                        f.write(chunk)
            os.replace(tmp, path)
        except BaseException:
            _unlink_quietly(tmp)
            raise
    return True


def _unlink_quietly(path: Path) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


class _DirLock:
    """Exclusive ``flock`` on the directory's lock file for a ``with`` block.

    The lock file is never followed if it is a symlink, nor created through
    one. It is opened read-only, so a read-only folder whose outputs are all
    up to date still commits (with no lock when the file cannot be created:
    nothing can be written there anyway). A run that has waited a second
    says so on stderr, once."""

    NOTICE_AFTER_S = 1.0
    POLL_S = 0.05

    def __init__(self, output_dir: Path) -> None:
        self._path = output_dir / LOCK_NAME
        self._fd: int | None = None

    def __enter__(self) -> "_DirLock":
        while True:
            fd = self._open()
            if fd is None:
                return self
            try:
                self._wait(fd)
                # A failed run that created the folder removes the lock file
                # with it (lazygen.api): then lock the file that is there now.
                held, now = os.fstat(fd), _lstat(self._path)
                if now is not None and (now.st_dev, now.st_ino) == (held.st_dev, held.st_ino):
                    self._fd = fd
                    return self
            except BaseException:
                os.close(fd)
                raise
            os.close(fd)

    def _open(self) -> int | None:
        flags = os.O_RDONLY | os.O_CREAT | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
        try:
            fd = os.open(self._path, flags, 0o666)
        except OSError as err:
            if os.path.islink(self._path):
                raise OSError(errno.ELOOP, "the lock file is a symbolic link, which lazygen never follows: remove it",
                              os.fspath(self._path)) from None
            if err.errno in (errno.EACCES, errno.EPERM, errno.EROFS) and not os.path.lexists(self._path):
                return None
            raise
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise OSError(errno.EEXIST, "the lock file is not a regular file: remove it", os.fspath(self._path))
        return fd

    def _wait(self, fd: int) -> None:
        if fcntl is None:
            return
        started = time.monotonic()
        told = False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                pass
            if not told and time.monotonic() - started >= self.NOTICE_AFTER_S:
                holder = _lock_holder(os.fstat(fd))
                by = f"process {holder}" if holder is not None else "another run"
                print(f"lazygen: waiting for {self._path}, held by {by} (a stopped run holds it until it ends)",
                      file=sys.stderr, flush=True)
                told = True
            time.sleep(self.POLL_S)

    def __exit__(self, *exc: object) -> None:
        # Closing the descriptor releases the lock; the file stays in place
        # so every process locks the same inode.
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def _lstat(path: Path) -> os.stat_result | None:
    try:
        return os.lstat(path)
    except FileNotFoundError:
        return None


def _lock_holder(st: os.stat_result) -> int | None:
    """The pid holding a flock on this file, from Linux's /proc/locks."""
    inode = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    try:
        with open("/proc/locks", encoding="ascii", errors="replace") as f:
            for line in f:
                fields = line.split()
                if "FLOCK" in fields and inode in fields and "->" not in fields:
                    return int(fields[fields.index(inode) - 1])
    except (OSError, ValueError, IndexError):
        pass
    return None


def discard_if_unused(output_dir: Path) -> None:
    """Remove lazygen's bookkeeping files from a folder that holds nothing
    else, so that a failed run's new folder can be removed. Never fails."""
    try:
        with _DirLock(output_dir):
            if set(os.listdir(output_dir)) <= {LOCK_NAME, MANIFEST_NAME}:
                _unlink_quietly(output_dir / MANIFEST_NAME)
                _unlink_quietly(output_dir / LOCK_NAME)  # a run waiting on it locks again (_DirLock)
    except OSError:
        pass


def _remove_file(path: Path) -> bool:
    """Unlink a file or symlink; leave directories alone. True if removed."""
    try:
        if stat.S_ISDIR(os.lstat(path).st_mode):
            return False
        os.unlink(path)
    except FileNotFoundError:
        return False
    return True


def commit(
    output_dir: Path,
    contents: Mapping[str, str | bytes | Staged],
    *,
    depfile: Path | None = None,
    depfile_target: str | None = None,
    inputs: Sequence[Path] = (),
) -> CommitResult:
    """Make ``output_dir`` hold exactly ``contents`` among lazygen's files.

    ``contents`` maps a plain file name to its bytes, its text (written as
    UTF-8, no newline translation) or its `Staged` bytes. With ``depfile``, also write a Make
    depfile whose target is ``depfile_target`` (default: the first output in
    sorted order, as ``output_dir/name``) and whose dependencies are
    ``inputs``, spelled as given.
    """
    output_dir = Path(output_dir)
    # Every check and conversion happens before the first write.
    for name in contents:
        if not is_plain_name(name):
            raise ValueError(f"not a plain output file name: {name!r}")
    names = sorted(contents)
    data = {name: _utf8(contents[name]) for name in names}
    dep_bytes = None
    if depfile is not None:
        if depfile_target is None:
            if not names:
                raise ValueError("a depfile needs a target: give depfile_target or at least one output")
            depfile_target = os.fspath(output_dir / names[0])
        dep_bytes = depfile_text(depfile_target, inputs).encode("utf-8", "surrogateescape")  # paths as the system spells them
    crash_after = _crash_after()

    output_dir.mkdir(parents=True, exist_ok=True)
    if depfile is not None:
        # The depfile's folder must be usable before any output changes.
        Path(depfile).parent.mkdir(parents=True, exist_ok=True)
        if Path(depfile).is_dir():
            raise IsADirectoryError(f"depfile {depfile} is a directory")
    # The signals that stop a run are held back while it holds the lock, so
    # a run stopped by one leaves the folder as it was or wholly new. (A
    # kill -9 can still stop it between two renames: every file is whole,
    # each the old or the new one, and the next run finishes the job.)
    with _DirLock(output_dir), signals_deferred():
        for name in names:
            if (output_dir / name).is_dir():
                raise IsADirectoryError(f"output {output_dir / name} is a directory")
        old = read_manifest(output_dir)
        # Temporary files of runs killed mid-commit (no other run commits here now).
        sweep(output_dir, {*old, *names, MANIFEST_NAME}, all_dead=True)
        if depfile is not None:
            sweep(Path(depfile).parent, {Path(depfile).name})
        # Record new names before creating them, so a run killed midway still
        # leaves every file it may have written listed for the next cleanup.
        if not set(names) <= set(old):
            write_if_changed(output_dir / MANIFEST_NAME, _manifest_bytes([*old, *names]))

        written: list[str] = []
        unchanged: list[str] = []
        for name in names:
            if write_if_changed(output_dir / name, data[name]):
                written.append(name)
                if crash_after is not None and len(written) == crash_after:
                    os._exit(137)
            else:
                unchanged.append(name)

        keep = set(names)
        removed = [name for name in old if name not in keep and _remove_file(output_dir / name)]
        write_if_changed(output_dir / MANIFEST_NAME, _manifest_bytes(names))

        if depfile is not None and dep_bytes is not None:
            write_if_changed(Path(depfile), dep_bytes)

        # Taken under the lock: what this commit left, not what a concurrent
        # run may have left a moment later (the no-op fast path records these).
        stats = {os.fspath(output_dir / name): _stat(output_dir / name) for name in names}
        if depfile is not None:
            stats[os.fspath(depfile)] = _stat(Path(depfile))

    return CommitResult(tuple(written), tuple(unchanged), tuple(removed), stats)


def _stat(path: Path) -> tuple[int, int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_size, st.st_mtime_ns, st.st_ino)
