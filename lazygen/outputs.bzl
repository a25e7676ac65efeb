"""Names of the files lazygen writes.

This file is both Starlark and Python: Bazel (bazel/defs.bzl) and Buck2
(buck/defs.bzl) load it, and lazygen.plan executes it, so every build adapter
and the generator share this one definition.
"""

def lazy_output_headers(backend):
    """Headers written for dispatch key `backend`."""
    return ["LazyIr.h", "LazyNonNativeIr.h", backend + "NativeFunctions.h"]

def lazy_output_sources(backend, autograd):
    """Sources written for dispatch key `backend`; `autograd` says whether the yaml has an autograd section."""
    sources = [backend + "NativeFunctions.cpp", "Register" + backend + ".cpp"]
    if autograd:
        sources.append("RegisterAutograd" + backend + ".cpp")
    return sources

def lazy_output_names(backend, autograd):
    """Every output, headers first, in a fixed order."""
    return lazy_output_headers(backend) + lazy_output_sources(backend, autograd)
