"""Loading the operator catalogue, through a content-addressed cache.

Parsing native_functions.yaml and building the model is most of a run's
cost, so the built model is pickled under the cache folder, keyed by the
bytes of both yaml files and lazygen's version. An entry that cannot be read
or does not hold what its key promises is ignored and rebuilt."""

from __future__ import annotations

import hashlib
import os
import pickle
import tempfile
from pathlib import Path

from lazygen.catalogue import Catalogue, CatalogueError, build_catalogue
from lazygen.errors import UserError

_FORMAT = "lazygen-catalogue-1"


def cache_dir() -> Path:
    if os.environ.get("LAZYGEN_CACHE_DIR"):
        return Path(os.environ["LAZYGEN_CACHE_DIR"])
    if os.environ.get("XDG_CACHE_HOME"):
        return Path(os.environ["XDG_CACHE_HOME"]) / "lazygen"
    return Path.home() / ".cache" / "lazygen"


def _model_source() -> bytes:
    """The code that defines the cached objects: a change to it must not
    meet pickles of the old classes (this matters for source checkouts,
    where the version does not change with every edit)."""
    here = Path(__file__).parent
    return b"".join((here / name).read_bytes() for name in ("catalogue.py", "schema.py"))


def _key(native_bytes: bytes, tags_bytes: bytes) -> str:
    from lazygen import __version__

    h = hashlib.sha256()
    for part in (_FORMAT.encode(), __version__.encode(), _model_source(), native_bytes, b"\0tags\0", tags_bytes):
        h.update(len(part).to_bytes(8, "little"))
        h.update(part)
    return h.hexdigest()


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as err:
        raise UserError.at(str(path), None, None, f"cannot read the operator catalogue: {err.strerror or err}") from None


def _parse_yaml(path: Path, data: bytes) -> object:
    import yaml

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        return yaml.load(data, Loader=loader)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        raise UserError.at(str(path), mark.line + 1 if mark else None, mark.column + 1 if mark else None, f"invalid YAML: {err}") from None


def _load_cached(entry: Path, key: str) -> Catalogue | None:
    try:
        with entry.open("rb") as f:
            stored_key, catalogue = pickle.load(f)
    except Exception:  # any damage to a cache file means: rebuild
        return None
    if stored_key != key or not isinstance(catalogue, Catalogue):
        return None
    return catalogue


def _store(entry: Path, key: str, catalogue: Catalogue) -> None:
    try:
        entry.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=entry.parent, prefix=".tmp-", suffix=".pickle")
        with os.fdopen(fd, "wb") as f:
            pickle.dump((key, catalogue), f, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(tmp, entry)
    except OSError:
        pass  # a cache we cannot write only costs time


def load_catalogue(native_path: Path, tags_path: Path, *, use_cache: bool = True) -> Catalogue:
    native_bytes, tags_bytes = _read(native_path), _read(tags_path)
    key = _key(native_bytes, tags_bytes)
    entry = cache_dir() / f"catalogue-{key}.pickle"
    if use_cache:
        cached = _load_cached(entry, key)
        if cached is not None:
            return cached
    try:
        catalogue = build_catalogue(_parse_yaml(native_path, native_bytes), _parse_yaml(tags_path, tags_bytes))
    except CatalogueError as err:
        raise UserError.at(str(native_path), err.line, 1 if err.line else None, f"unexpected operator catalogue: {err}") from None
    if use_cache:
        _store(entry, key, catalogue)
    return catalogue
