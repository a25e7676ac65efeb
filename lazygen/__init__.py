"""lazygen: generate the C++ sources of a PyTorch lazy-tensor backend.

    import lazygen
    result = lazygen.generate(lazygen.Options(source_yaml=..., output_dir=...))
"""

from __future__ import annotations

__version__ = "0.1.0"

from lazygen.options import Options  # noqa: E402  (light: no yaml, no jinja)


def __getattr__(name: str):
    # The API pulls in PyYAML and Jinja2; import it only when used, so the
    # CLI's no-op fast path stays fast.
    if name in ("generate", "list_outputs", "run_gen_lazy_tensor", "Result"):
        from lazygen import api

        return getattr(api, name)
    if name in ("UserError", "Diagnostic"):
        from lazygen import errors

        return getattr(errors, name)
    raise AttributeError(f"module 'lazygen' has no attribute {name!r}")


__all__ = ["Options", "Result", "generate", "list_outputs", "run_gen_lazy_tensor", "UserError", "Diagnostic", "__version__"]
