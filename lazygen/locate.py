"""Finding torch's files without importing torch or torchgen."""

from __future__ import annotations

import importlib.util
import re
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


def torch_version_near(catalogue: Path) -> tuple[str, Path] | None:
    """The version of the torch distribution whose torchgen holds this
    catalogue file, and the file it was read from: torch-*.dist-info/METADATA,
    else torch/version.py, beside the torchgen folder. None when the file is
    not inside a torchgen folder (a source checkout, a copy) or neither says.

    Symbolic links are not followed: in a build sandbox the catalogue links
    to a file whose neighbours are no declared inputs."""
    torchgen = next((p for p in Path(catalogue).absolute().parents if p.name == "torchgen"), None)
    if torchgen is None:
        return None
    return _dist_info_version(torchgen.parent) or _version_py(torchgen.parent / "torch" / "version.py")


def _dist_info_version(site: Path) -> tuple[str, Path] | None:
    found = {}
    for metadata in sorted(site.glob("torch-*.dist-info/METADATA")):
        try:
            with metadata.open(encoding="utf-8") as f:
                for line in f:
                    if not line.strip():
                        break  # the end of the headers
                    if line.startswith("Version:"):
                        found.setdefault(line.split(":", 1)[1].strip(), metadata)
                        break
        except (OSError, UnicodeDecodeError):
            continue
    # Two torch dist-infos that disagree (a botched upgrade) say nothing for sure.
    return next(iter(found.items())) if len(found) == 1 else None


def _version_py(path: Path) -> tuple[str, Path] | None:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    m = re.search(r"""^__version__\s*=\s*['"]([^'"]+)['"]""", text, re.MULTILINE)
    return (m.group(1), path) if m else None
