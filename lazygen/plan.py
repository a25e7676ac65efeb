"""The list of outputs, known before any generation: a pure function of
the backend key, whether the yaml has an autograd section, and the number
of shards; and the shard plan: which shard each operator goes to.

The naming itself lives in outputs.bzl, shared with the Bazel and Buck2
macros; this module executes that file (Starlark is a subset of Python)."""

from __future__ import annotations

import re
import zlib
from functools import lru_cache
from pathlib import Path
from typing import Iterable

_OUTPUTS_BZL = Path(__file__).with_name("outputs.bzl")


@lru_cache(maxsize=None)
def _definitions() -> dict:
    namespace: dict = {}
    exec(compile(_OUTPUTS_BZL.read_text(encoding="utf-8"), str(_OUTPUTS_BZL), "exec"), namespace)
    return namespace


def output_names(backend: str, autograd: bool, shards: int = 1) -> list[str]:
    return list(_definitions()["lazy_output_names"](backend, autograd, shards))


def header_names(backend: str, shards: int = 1) -> list[str]:
    return list(_definitions()["lazy_output_headers"](backend, shards))


def source_names(backend: str, autograd: bool, shards: int = 1) -> list[str]:
    return list(_definitions()["lazy_output_sources"](backend, autograd, shards))


def kernel_sources(backend: str, shards: int) -> list[str]:
    """<backend>NativeFunctions.cpp, or its shards in order."""
    return list(_definitions()["lazy_kernel_sources"](backend, shards))


def register_sources(backend: str, shards: int) -> list[str]:
    """Register<backend>.cpp, or its shards in order."""
    return list(_definitions()["lazy_register_sources"](backend, shards))


def superseded_sources(backend: str, shards: int, names: Iterable[str]) -> list[str]:
    """Of `names` (a folder's files), the kernel and registration sources of
    another number of shards, such as torchgen's unsharded files beside a
    sharded run's: a build that compiles every .cpp of the folder would
    define their kernels twice."""
    current = set(kernel_sources(backend, shards) + register_sources(backend, shards))
    # The stems come from the unsharded names; a shard is <stem>_<i>.cpp.
    stems = "|".join(re.escape(name.removesuffix(".cpp")) for name in kernel_sources(backend, 1) + register_sources(backend, 1))
    layout = re.compile(rf"(?:{stems})(?:_[0-9]+)?\.cpp")
    return sorted(n for n in names if layout.fullmatch(n) and n not in current)


def ir_shard_headers(shards: int) -> list[str]:
    """LazyIr_<i>.h for each shard (none when unsharded)."""
    return list(_definitions()["lazy_ir_shard_headers"](shards))


IR_COMMON_HEADER: str = _definitions()["LAZY_IR_COMMON_HEADER"]


def shard_of(op: str, shards: int) -> int:
    """The shard an operator group goes to, named by its first operator
    (the functional one): CRC-32 of the name, modulo the number of shards.
    It depends on nothing else, so adding or removing an operator changes
    only the shards that hold it."""
    return zlib.crc32(op.encode("utf-8")) % shards if shards > 1 else 0


def check_shards(shards: object) -> None:
    """The number of shards must be a whole number, at least 1."""
    from lazygen.errors import UserError

    if isinstance(shards, bool) or not isinstance(shards, int) or shards < 1:
        raise UserError.at("lazygen", None, None, f"the number of shards must be a whole number of at least 1, not {shards!r}",
                           "pass --shards N (SHARDS N in CMake, shards = N in Bazel and Buck2) with N >= 1; 1 writes the unsharded files")
