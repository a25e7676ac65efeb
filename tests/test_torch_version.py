"""Which torch release's torchgen output a run writes (issue 17): from
--torch-version, else from the torch distribution beside the catalogue's
torchgen folder (its dist-info METADATA, else torch/version.py), else the
newest release with a note. The catalogue here is the installed 2.13 one,
copied into made-up site-packages folders.

What tells the releases apart in the output is what their torchgen writes
(tests/test_releases.py compares whole files): 2.12 and older return
`ss.str()` from ToString(), 2.13 and newer `std::move(ss).str()`; torchgen
2.5 builds no out= variant for core CompositeImplicitAutograd ops
(adaptive_avg_pool1d.out), 2.6 does.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from lazygen import Options, generate
from lazygen.catalogue_cache import load_catalogue
from lazygen.locate import default_aten_path
from lazygen.releases import RELEASES
from tests.reference import require

TS_YAML = Path(__file__).parent / "data" / "ts_native_functions.yaml"
OLD_TO_STRING = b"    return ss.str();\n"
NEW_TO_STRING = b"    return std::move(ss).str();\n"


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="module")
def installed_aten() -> Path:
    aten = default_aten_path()
    require(aten is not None, "torchgen's native_functions.yaml is not installed")
    assert aten is not None
    return aten


def site(tmp_path: Path, installed_aten: Path, metadata: str | None = None, version_py: str | None = None) -> Path:
    """A site-packages folder holding torchgen's catalogue and, if given, a
    torch dist-info whose METADATA says `Version: metadata`, and a
    torch/version.py with `__version__ = version_py`. Returns the ATen folder."""
    aten = tmp_path / "site" / "torchgen" / "packaged" / "ATen"
    (aten / "native").mkdir(parents=True)
    for name in ("native_functions.yaml", "tags.yaml"):
        shutil.copy(installed_aten / "native" / name, aten / "native" / name)
    if metadata is not None:
        info = tmp_path / "site" / f"torch-{metadata}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: torch\nVersion: {metadata}\n\nVersion: 0.0\n", encoding="utf-8")
    if version_py is not None:
        (tmp_path / "site" / "torch").mkdir()
        (tmp_path / "site" / "torch" / "version.py").write_text(
            f"from typing import Optional\n\n__all__ = ['__version__']\n__version__ = '{version_py}'\n", encoding="utf-8")
    return aten


def lazygen(cwd: Path, cache: Path, *args: object) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "lazygen", "-s", str(TS_YAML), "-o", "out", "--no-shape-inference-check", *map(str, args)]
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env={**os.environ, "LAZYGEN_CACHE_DIR": str(cache)})


def ok(proc: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    return proc


def lazy_ir(cwd: Path) -> bytes:
    return (cwd / "out" / "LazyIr.h").read_bytes()


def test_release_from_the_dist_info_metadata(tmp_path: Path, installed_aten: Path, cache: Path) -> None:
    aten = site(tmp_path, installed_aten, metadata="2.8.0", version_py="2.13.0")  # METADATA first
    assert ok(lazygen(tmp_path, cache, "--aten-path", aten)).stderr == ""
    assert OLD_TO_STRING in lazy_ir(tmp_path) and NEW_TO_STRING not in lazy_ir(tmp_path)
    # The same as naming the release.
    explicit = tmp_path / "explicit"
    explicit.mkdir()
    ok(lazygen(explicit, cache, "--aten-path", aten, "--torch-version", "2.8"))
    assert {p.name: p.read_bytes() for p in (explicit / "out").iterdir()} == {p.name: p.read_bytes() for p in (tmp_path / "out").iterdir()}


def test_release_from_torch_version_py(tmp_path: Path, installed_aten: Path, cache: Path) -> None:
    # A local version part, as CUDA wheels have.
    aten = site(tmp_path, installed_aten, version_py="2.12.1+cu124")
    assert ok(lazygen(tmp_path, cache, "--native-functions", aten / "native" / "native_functions.yaml",
                      "--tags-yaml", aten / "native" / "tags.yaml")).stderr == ""
    assert OLD_TO_STRING in lazy_ir(tmp_path)


def test_the_installed_torch_is_read_without_a_flag(tmp_path: Path, cache: Path, installed_aten: Path) -> None:
    assert ok(lazygen(tmp_path, cache)).stderr == ""
    assert NEW_TO_STRING in lazy_ir(tmp_path)  # torch 2.13 is installed


def test_explicit_flag_for_a_catalogue_without_version(tmp_path: Path, installed_aten: Path, cache: Path) -> None:
    aten = site(tmp_path, installed_aten)
    for flag, text in (("2.12", OLD_TO_STRING), ("2.13.0", NEW_TO_STRING), ("2.5.1", OLD_TO_STRING)):
        assert ok(lazygen(tmp_path, cache, "--aten-path", aten, "--torch-version", flag)).stderr == "", flag
        assert text in lazy_ir(tmp_path), flag


def test_flag_and_catalogue_disagree_the_flag_wins_with_a_note(tmp_path: Path, installed_aten: Path, cache: Path) -> None:
    aten = site(tmp_path, installed_aten, metadata="2.13.0")
    metadata = tmp_path / "site" / "torch-2.13.0.dist-info" / "METADATA"
    proc = ok(lazygen(tmp_path, cache, "--aten-path", aten, "--torch-version", "2.9", "--depfile", "out.d"))
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith(f"{metadata}: note: ") and "2.13.0" in lines[0] and "2.9" in lines[0]
    assert OLD_TO_STRING in lazy_ir(tmp_path)
    # The output follows the flag alone: the metadata is no dependency (a
    # Bazel action, say, need not declare it).
    assert "METADATA" not in (tmp_path / "out.d").read_text(encoding="utf-8")
    # A flag naming the catalogue's own release, less precisely, is no conflict.
    assert ok(lazygen(tmp_path, cache, "--aten-path", aten, "--torch-version", "2.13")).stderr == ""


def test_no_version_found_means_the_newest_release_and_a_note(tmp_path: Path, installed_aten: Path, cache: Path) -> None:
    aten = site(tmp_path, installed_aten)  # a copy of the catalogue, no torch beside it
    proc = ok(lazygen(tmp_path, cache, "--aten-path", aten))
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith(f"{aten / 'native' / 'native_functions.yaml'}: note: ") and "2.15" in lines[0]
    newest = lazy_ir(tmp_path)
    ok(lazygen(tmp_path, cache, "--aten-path", aten, "--torch-version", "2.15.0"))
    assert lazy_ir(tmp_path) == newest


@pytest.mark.parametrize("flag", ["2.4", "2.16", "3.0.0", "1.13.1", "two", "2", "2.x", "", "2.13.0.0.1"])
def test_unknown_or_malformed_flag_is_a_diagnostic(tmp_path: Path, cache: Path, flag: str) -> None:
    for extra in ([], ["--list-outputs"]):
        proc = lazygen(tmp_path, cache, "--torch-version", flag, *extra)
        assert proc.returncode == 1, (extra, proc.stderr)
        assert "Traceback" not in proc.stderr
        assert proc.stderr.startswith("--torch-version: error: ") and "2.5" in proc.stderr and "2.15" in proc.stderr, proc.stderr
        assert not (tmp_path / "out").exists()


def test_unknown_version_beside_the_catalogue_is_a_diagnostic(tmp_path: Path, installed_aten: Path, cache: Path) -> None:
    aten = site(tmp_path, installed_aten, metadata="2.16.0")
    proc = lazygen(tmp_path, cache, "--aten-path", aten)
    assert proc.returncode == 1
    metadata = tmp_path / "site" / "torch-2.16.0.dist-info" / "METADATA"
    assert proc.stderr.startswith(f"{metadata}: error: torch 2.16.0 ") and "2.5 to 2.15" in proc.stderr, proc.stderr
    assert "--torch-version" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "out").exists()
    # Naming a release gets past it (with a note on the disagreement).
    assert "note:" in ok(lazygen(tmp_path, cache, "--aten-path", aten, "--torch-version", "2.15")).stderr


def test_a_new_torch_beside_the_catalogue_regenerates(tmp_path: Path, installed_aten: Path, cache: Path) -> None:
    """The version file is an input: the no-op fast path must not answer
    once it changes, and the depfile names it."""
    aten = site(tmp_path, installed_aten, metadata="2.13.0")
    metadata = tmp_path / "site" / "torch-2.13.0.dist-info" / "METADATA"
    os.utime(metadata, (1_000_000_000, 1_000_000_000))  # long before the run: a recordable input
    args = ["--aten-path", aten, "--depfile", "out.d"]
    ok(lazygen(tmp_path, cache, *args))
    ok(lazygen(tmp_path, cache, *args))  # up to date: recorded
    assert NEW_TO_STRING in lazy_ir(tmp_path)
    assert str(metadata) in (tmp_path / "out.d").read_text(encoding="utf-8")
    text = metadata.read_text(encoding="utf-8")
    with open(metadata, "r+", encoding="utf-8") as f:  # in place, same size
        f.write(text.replace("Version: 2.13.0", "Version: 2.12.0"))
    ok(lazygen(tmp_path, cache, *args))
    assert OLD_TO_STRING in lazy_ir(tmp_path)


def test_api_option_and_note(tmp_path: Path, installed_aten: Path, cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LAZYGEN_CACHE_DIR", str(cache))
    aten = site(tmp_path, installed_aten)
    base = dict(source_yaml=TS_YAML, aten_path=aten, check_shape_inference=False)
    result = generate(Options(output_dir=tmp_path / "a", torch_version="2.10", **base))
    assert result.warnings == ()
    assert OLD_TO_STRING in (tmp_path / "a" / "LazyIr.h").read_bytes()
    result = generate(Options(output_dir=tmp_path / "b", **base))
    assert [(w.severity, w.path) for w in result.warnings] == [("note", str(aten / "native" / "native_functions.yaml"))]


def test_catalogue_cache_keeps_releases_apart(tmp_path: Path, installed_aten: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The same catalogue bytes make different models for 2.5 and 2.6; a
    cached model of one is never served for the other."""
    monkeypatch.setenv("LAZYGEN_CACHE_DIR", str(tmp_path / "cache"))
    nf, tags = installed_aten / "native" / "native_functions.yaml", installed_aten / "native" / "tags.yaml"
    for _ in range(2):  # cold, then from the cache
        assert "adaptive_avg_pool1d.out" in load_catalogue(nf, tags, RELEASES["2.6"])
        assert "adaptive_avg_pool1d.out" not in load_catalogue(nf, tags, RELEASES["2.5"])
    assert len(list((tmp_path / "cache").glob("catalogue-*.pickle"))) == 2
