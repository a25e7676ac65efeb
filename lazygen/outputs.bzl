"""Names of the files lazygen writes.

This file is both Starlark and Python: Bazel (bazel/defs.bzl) and Buck2
(buck/defs.bzl) load it, and lazygen.plan executes it, so every build adapter
and the generator share this one definition.
"""

def lazy_output_headers(backend):
    """Headers written for a dispatch key.

    Args:
      backend: the dispatch key (the yaml's `backend:`).

    Returns:
      the file names.
    """
    return ["LazyIr.h", "LazyNonNativeIr.h", backend + "NativeFunctions.h"]

def lazy_output_sources(backend, autograd):
    """Sources written for a dispatch key.

    Args:
      backend: the dispatch key (the yaml's `backend:`).
      autograd: whether the yaml has an autograd section.

    Returns:
      the file names.
    """
    sources = [backend + "NativeFunctions.cpp", "Register" + backend + ".cpp"]
    if autograd:
        sources.append("RegisterAutograd" + backend + ".cpp")
    return sources

def lazy_output_names(backend, autograd):
    """Every output, headers first, in a fixed order.

    Args:
      backend: the dispatch key (the yaml's `backend:`).
      autograd: whether the yaml has an autograd section.

    Returns:
      the file names.
    """
    return lazy_output_headers(backend) + lazy_output_sources(backend, autograd)
