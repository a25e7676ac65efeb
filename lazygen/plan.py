"""The list of outputs, known before any generation: a pure function of
the backend key and whether the yaml has an autograd section.

The naming itself lives in outputs.bzl, shared with the Bazel and Buck2
macros; this module executes that file (Starlark is a subset of Python)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

_OUTPUTS_BZL = Path(__file__).with_name("outputs.bzl")


@lru_cache(maxsize=None)
def _definitions() -> dict:
    namespace: dict = {}
    exec(compile(_OUTPUTS_BZL.read_text(encoding="utf-8"), str(_OUTPUTS_BZL), "exec"), namespace)
    return namespace


def output_names(backend: str, autograd: bool) -> list[str]:
    return list(_definitions()["lazy_output_names"](backend, autograd))


def header_names(backend: str) -> list[str]:
    return list(_definitions()["lazy_output_headers"](backend))


def source_names(backend: str, autograd: bool) -> list[str]:
    return list(_definitions()["lazy_output_sources"](backend, autograd))
