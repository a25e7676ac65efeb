"""Names of the files lazygen writes.

This file is both Starlark and Python: Bazel (bazel/defs.bzl) and Buck2
(buck/defs.bzl) load it, and lazygen.plan executes it, so every build adapter
and the generator share this one definition.

With `shards` = N >= 2 the kernels and the registration are each split into
N translation units, <backend>NativeFunctions_<i>.cpp and Register<backend>_<i>.cpp
(i = 0 .. N-1), and the IR classes into LazyIr_<i>.h, the classes the kernels
of shard i use, over LazyIrCommon.h, what every one of them needs; LazyIr.h
includes them all. N = 1 writes the unsharded files.
"""

# With shards: what every LazyIr_<i>.h needs (includes, kNullValue).
LAZY_IR_COMMON_HEADER = "LazyIrCommon.h"

def _sharded(stem, extension, shards):
    # stem + extension, or one stem_<i> + extension per shard.
    if shards < 2:
        return [stem + extension]
    return ["%s_%d%s" % (stem, i, extension) for i in range(shards)]

def lazy_ir_shard_headers(shards):
    """The IR node headers of the shards, LazyIr_<i>.h (none when unsharded).

    Args:
      shards: the number of shards.

    Returns:
      the file names, in shard order.
    """
    return _sharded("LazyIr", ".h", shards) if shards >= 2 else []

def lazy_kernel_sources(backend, shards):
    """The kernel translation units, in shard order.

    Args:
      backend: the dispatch key (the yaml's `backend:`).
      shards: the number of shards.

    Returns:
      the file names.
    """
    return _sharded(backend + "NativeFunctions", ".cpp", shards)

def lazy_register_sources(backend, shards):
    """The registration translation units, in shard order.

    The first one defines the public registration function.

    Args:
      backend: the dispatch key (the yaml's `backend:`).
      shards: the number of shards.

    Returns:
      the file names.
    """
    return _sharded("Register" + backend, ".cpp", shards)

def lazy_output_headers(backend, shards = 1):
    """Headers written for a dispatch key.

    Args:
      backend: the dispatch key (the yaml's `backend:`).
      shards: the number of shards.

    Returns:
      the file names.
    """
    headers = ["LazyIr.h", "LazyNonNativeIr.h", backend + "NativeFunctions.h"]
    if shards >= 2:
        headers.append(LAZY_IR_COMMON_HEADER)
    return headers + lazy_ir_shard_headers(shards)

def lazy_output_sources(backend, autograd, shards = 1):
    """Sources written for a dispatch key.

    Args:
      backend: the dispatch key (the yaml's `backend:`).
      autograd: whether the yaml has an autograd section.
      shards: the number of shards (the autograd registration is never split).

    Returns:
      the file names.
    """
    sources = lazy_kernel_sources(backend, shards) + lazy_register_sources(backend, shards)
    if autograd:
        sources.append("RegisterAutograd" + backend + ".cpp")
    return sources

def lazy_output_names(backend, autograd, shards = 1):
    """Every output, headers first, in a fixed order.

    Args:
      backend: the dispatch key (the yaml's `backend:`).
      autograd: whether the yaml has an autograd section.
      shards: the number of shards.

    Returns:
      the file names.
    """
    return lazy_output_headers(backend, shards) + lazy_output_sources(backend, autograd, shards)
