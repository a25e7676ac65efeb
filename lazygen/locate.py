"""Finding torch's files without importing torch or torchgen."""

from __future__ import annotations

import importlib.util
from pathlib import Path


def _package_dir(name: str) -> Path | None:
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def default_aten_path() -> Path | None:
    """The installed torchgen's packaged/ATen folder, if there is one."""
    torchgen = _package_dir("torchgen")
    if torchgen is None:
        return None
    aten = torchgen / "packaged" / "ATen"
    return aten if (aten / "native" / "native_functions.yaml").is_file() else None


def torch_include_dir() -> Path | None:
    torch = _package_dir("torch")
    if torch is None:
        return None
    include = torch / "include"
    return include if include.is_dir() else None
