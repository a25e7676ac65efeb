"""lazygen: generate the C++ sources of a PyTorch lazy-tensor backend.

    import lazygen
    result = lazygen.generate(lazygen.Options(source_yaml=..., output_dir=...))

Names are imported on first use, so that `python -m lazygen` on an
up-to-date output folder stays fast (see lazygen.fastpath).
"""

from __future__ import annotations

__version__ = "0.1.0"

_LAZY = {
    "Options": "lazygen.options",
    "generate": "lazygen.api",
    "list_outputs": "lazygen.api",
    "run_gen_lazy_tensor": "lazygen.api",
    "Result": "lazygen.api",
    "UserError": "lazygen.errors",
    "Diagnostic": "lazygen.errors",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'lazygen' has no attribute {name!r}")


__all__ = ["Options", "Result", "generate", "list_outputs", "run_gen_lazy_tensor", "UserError", "Diagnostic", "__version__"]
