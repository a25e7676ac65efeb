"""Shared test setup: the CI skip policy and the torch reference fixtures."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Iterator

import pytest

# Test modules import the harness as `reference`, whatever pytest's import mode.
_TESTS = str(Path(__file__).parent)
if _TESTS not in sys.path:
    sys.path.insert(0, _TESTS)

import reference as harness  # noqa: E402
from reference import Reference, in_ci, require  # noqa: E402

__all__ = ["require"]


def _skip_reason(longrepr: object) -> str:
    # A skip's longrepr is (path, line, "Skipped: reason").
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2])
    return str(longrepr)


def _fail_skip(report: pytest.TestReport | pytest.CollectReport) -> None:
    reason = _skip_reason(report.longrepr)
    report.outcome = "failed"
    report.longrepr = (
        f"skipped in CI (CI={os.environ.get('CI')!r}), which counts as a failure: {reason}"
    )


# In CI every test must run: a skip there means a missing tool or input that
# the CI image should have had, so it fails instead of passing silently.
@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    outcome = yield
    report = outcome.get_result()
    if in_ci() and report.skipped and not hasattr(report, "wasxfail"):
        _fail_skip(report)


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector: pytest.Collector):  # type: ignore[no-untyped-def]
    # A module-level pytest.skip(allow_module_level=True) skips at collection.
    outcome = yield
    report = outcome.get_result()
    if in_ci() and report.skipped:
        _fail_skip(report)


@pytest.fixture(scope="session")
def torch_include_dirs() -> list[Path]:
    """[site-packages/torch/include, .../torch/csrc/api/include]; skips without torch."""
    dirs = harness.torch_include_dirs()
    require(dirs is not None, "torch (with its C++ headers) is not installed")
    assert dirs is not None
    return dirs


@pytest.fixture(scope="session")
def reference(request: pytest.FixtureRequest) -> Iterator[Reference]:
    """The live torchgen reference; one driver process for the whole session."""
    why_not = harness.reference_available()
    require(why_not is None, f"the reference cannot run: {why_not}")
    cache = getattr(request.config, "cache", None)  # None with -p no:cacheprovider
    cache_dir = cache.mkdir("lazygen-reference") if cache is not None else None
    with Reference(cache_dir=cache_dir) as ref:
        yield ref


@pytest.fixture(scope="session")
def wheel_env(tmp_path_factory: pytest.TempPathFactory):
    """A venv with a wheel of this checkout's lazygen (tests/wheel_env.py), for
    installing backend projects into; built once per session."""
    import importlib.util
    import shutil

    for module in ("torch", "scikit_build_core", "pip", "yaml", "jinja2"):
        require(importlib.util.find_spec(module) is not None, f"{module} is not installed")
    require(importlib.util.find_spec("cmake") or shutil.which("cmake"), "no cmake (PyPI package or PATH)")
    require(shutil.which("c++") or shutil.which("g++"), "no C++ compiler on PATH")
    from wheel_env import make_wheel_env

    env = make_wheel_env(tmp_path_factory.getbasetemp(), tmp_path_factory.mktemp("wheel_env"))
    print("lazygen wheel environment: " + ", ".join(f"{k} {v:.1f}s" for k, v in env.seconds.items()))
    return env
