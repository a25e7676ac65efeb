"""Loading the operator catalogue, and parsed backend specs, through a
content-addressed cache.

Parsing native_functions.yaml and building the model is most of a run's
cost, so the built model is pickled under the cache folder, keyed by the
bytes of both yaml files, lazygen's version and what the model takes from
the torch release reproduced (lazygen.releases). An entry that cannot be
read or does not hold what its key promises is ignored and rebuilt."""

from __future__ import annotations

import hashlib
import os
import pickle
import re
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

from lazygen.catalogue import Catalogue, CatalogueError, build_catalogue
from lazygen.errors import UserError
from lazygen.releases import NEWEST, Release

if TYPE_CHECKING:
    from lazygen.backend import BackendSpec

_FORMAT = "lazygen-catalogue-1"


def cache_dir() -> Path | None:
    """lazygen.cachedir's folder as a Path; None: cache nothing."""
    from lazygen import cachedir

    folder = cachedir.cache_dir()
    return Path(folder) if folder is not None else None


def _model_source() -> bytes:
    """The code that defines the cached objects: a change to it must not
    meet pickles of the old classes (this matters for source checkouts,
    where the version does not change with every edit)."""
    here = Path(__file__).parent
    return b"".join((here / name).read_bytes() for name in ("catalogue.py", "schema.py", "releases.py"))


def _key(native_bytes: bytes, tags_bytes: bytes, release: str) -> str:
    from lazygen import __version__

    h = hashlib.sha256()
    for part in (_FORMAT.encode(), __version__.encode(), _model_source(), release.encode(), native_bytes, b"\0tags\0", tags_bytes):
        h.update(len(part).to_bytes(8, "little"))
        h.update(part)
    return h.hexdigest()


def _read(path: Path) -> bytes:
    from lazygen.inputs import read_input

    try:
        return read_input(path)
    except OSError as err:
        raise UserError.at(str(path), None, None, f"cannot read the operator catalogue: {err.strerror or err}") from None


def _parse_yaml(path: Path, data: bytes, *, plain: bool = False) -> object:
    """`plain`: no type resolution, every scalar a string (faster; the
    catalogue's few booleans are converted where they are read)."""
    import yaml

    if plain:
        loader = getattr(yaml, "CBaseLoader", yaml.BaseLoader)
    else:
        loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        return yaml.load(data, Loader=loader)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        raise UserError.at(str(path), mark.line + 1 if mark else None, mark.column + 1 if mark else None, f"invalid YAML: {err}") from None


_ITEM_START = re.compile(rb"^- ", re.MULTILINE)


def _parse_entries(path: Path, data: bytes) -> Iterator[object]:
    """native_functions.yaml's entries, each with its '__line__', one at a time.

    Each top-level list item is loaded on its own: the C loader composes a
    whole document's node graph before it builds any value, which for this
    15,000-line file costs several times the memory of the values."""
    starts = [m.start() for m in _ITEM_START.finditer(data)]
    chunks = [data[start:end] for start, end in zip(starts, starts[1:] + [len(data)])]
    if not starts or _parse_yaml(path, data[: starts[0]]) is not None or any(c.startswith(b"- -") for c in chunks):
        whole = _parse_yaml(path, data)  # not a plain block list of mappings: load it whole
        yield from whole if isinstance(whole, list) else [whole]
        return
    line = data.count(b"\n", 0, starts[0]) + 1
    for chunk in chunks:
        items = _parse_yaml(path, chunk, plain=True)
        if not isinstance(items, list) or len(items) != 1:
            raise UserError.at(str(path), line, 1, "unexpected operator catalogue: an entry that is not one list item")
        if isinstance(items[0], dict):
            items[0]["__line__"] = line
        yield items[0]
        line += chunk.count(b"\n")


class _CatalogueUnpickler(pickle.Unpickler):
    """Loads only what a cached catalogue or backend spec holds: a planted
    or foreign cache file must not run code or build other objects."""

    _ALLOWED = {
        ("lazygen.catalogue", "Catalogue"),
        ("lazygen.backend", "BackendSpec"),
        ("lazygen.backend", "OpEntry"),
        ("lazygen.backend", "NonNativeEntry"),
        *(("lazygen.schema", name) for name in (
            "OperatorName", "FunctionSchema", "Arguments", "Argument", "Return", "Annotation",
            "BaseType", "OptionalType", "ListType", "CustomClassType",
        )),
        ("builtins", "frozenset"),
        ("builtins", "set"),
    }

    def find_class(self, module: str, name: str) -> object:
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"{module}.{name} is not part of a catalogue")
        return super().find_class(module, name)


def _load_cached(entry: Path, key: str, kind: type = Catalogue) -> object | None:
    try:
        with entry.open("rb") as f:
            stored_key, value = _CatalogueUnpickler(f).load()
    except Exception:  # any damage to a cache file means: rebuild
        return None
    if stored_key != key or not isinstance(value, kind):
        return None
    return value


def _store(entry: Path, key: str, catalogue: object) -> None:
    from lazygen.atomic import write_atomic

    try:
        write_atomic(entry, lambda f: pickle.dump((key, catalogue), f, protocol=pickle.HIGHEST_PROTOCOL))
    except OSError:
        pass  # a cache we cannot write only costs time


def load_catalogue(native_path: Path, tags_path: Path, release: Release = NEWEST, *, use_cache: bool = True) -> Catalogue:
    """The catalogue as torchgen of `release` builds it (lazygen.releases)."""
    # Read once: either may be a pipe. (A cache hit keeps the bytes a moment
    # longer than it needs them: about 1 MB.)
    native_bytes, tags_bytes = _read(native_path), _read(tags_path)
    key = _key(native_bytes, tags_bytes, release.catalogue_facts)
    folder = cache_dir() if use_cache else None
    entry = folder / f"catalogue-{key}.pickle" if folder is not None else None
    if entry is not None and entry.exists():
        cached = _load_cached(entry, key)
        if cached is not None:
            return cached
    try:
        tags = _parse_yaml(tags_path, tags_bytes)
        catalogue = build_catalogue(_parse_entries(native_path, native_bytes), tags, release)
    except CatalogueError as err:
        raise UserError.at(str(native_path), err.line, 1 if err.line else None, f"unexpected operator catalogue: {err}") from None
    # Let the parsed schemas of all 3,101 functions go before pickling (whose
    # memo is the cold run's peak): the run parses again the few it uses.
    catalogue.forget_parsed()
    if entry is not None:
        _store(entry, key, catalogue)
    return catalogue


def load_backend_spec(path: Path) -> BackendSpec:
    """The parsed backend yaml, from the cache when this exact file (bytes
    and path: diagnostics name the path) was parsed before. A cache hit
    does not import PyYAML. The file is read once: it may be a pipe."""
    from lazygen.backend import BackendSpec, parse_backend
    from lazygen.inputs import decode, read_input

    try:
        data = read_input(path)
    except OSError as err:
        raise UserError.at(str(path), None, None, f"cannot read file: {err.strerror or err}") from None
    here = Path(__file__).parent
    source = b"".join((here / name).read_bytes() for name in ("backend.py", "schema.py", "yamlsource.py"))
    from lazygen import __version__

    h = hashlib.sha256()
    for part in (b"lazygen-spec-1", __version__.encode(), source, os.fsencode(path), data):
        h.update(len(part).to_bytes(8, "little"))
        h.update(part)
    key = h.hexdigest()
    folder = cache_dir()
    entry = folder / "specs" / f"{key}.pickle" if folder is not None else None
    cached = _load_cached(entry, key, BackendSpec) if entry is not None else None
    if cached is not None:
        return cached
    from lazygen.yamlsource import load

    spec = parse_backend(path, load(path, decode(path, data)))
    if entry is not None:
        _store(entry, key, spec)
    return spec
