"""The every-op backend yaml the large tests share: every functional op of
the installed catalogue under full_codegen and every other op under
supported, less those lazygen reports it cannot generate."""

from __future__ import annotations

from pathlib import Path

from lazygen import Options, UserError, generate
from lazygen.catalogue import Kind
from lazygen.catalogue_cache import load_catalogue
from lazygen.locate import default_aten_path


def write_every_op_yaml(path: Path) -> tuple[list[str], list[str]]:
    """Write the yaml at `path`; returns its (full_codegen, supported) ops.
    Found by dry runs that drop each refused op's line."""
    aten = default_aten_path()
    assert aten is not None, "torchgen's native_functions.yaml is not installed"
    catalogue = load_catalogue(aten / "native" / "native_functions.yaml", aten / "native" / "tags.yaml")
    full = [op for op in catalogue.order if catalogue.function(op).kind is Kind.functional]
    supported = [op for op in catalogue.order if op not in set(full)]
    for _ in range(4):
        lines, op_at = ["backend: Lazy", "cpp_namespace: torch::lazy", "full_codegen:"], {}
        for section, ops in (("full_codegen", full), ("supported", supported)):
            if section == "supported":
                lines.append("supported:")
            for op in ops:
                lines.append(f"- {op}")
                op_at[len(lines)] = op
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        try:
            generate(Options(source_yaml=path, output_dir=str(path.parent / "dry"), check_shape_inference=False, dry_run=True))
            break
        except UserError as err:
            rejected = {op_at[d.line] for d in err.diagnostics}
            full = [op for op in full if op not in rejected]
            supported = [op for op in supported if op not in rejected]
    return full, supported
