"""The shape-inference check and the missing-kernel check: every problem
reported in one run, at the op's yaml line, and agreeing with the reference
on what passes and what fails."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.reference import reference_available, require, torch_include_dirs

# Unstructured ops (their kernels call compute_shape_*): torch's header
# declares the first two, not the last three.
DECLARED = ["abs", "trace"]
UNDECLARED = ["logit", "_cdist_forward", "dist"]


@pytest.fixture(scope="module")
def ref(reference):
    require(reference_available() is None, f"reference unavailable: {reference_available()}")
    return reference


def _yaml(tmp_path: Path, ops: list[str], supported: list[str] = ()) -> Path:
    text = "backend: Lazy\ncpp_namespace: torch::lazy\nfull_codegen:\n" + "".join(f"- {op}\n" for op in ops)
    if supported:
        text += "supported:\n" + "".join(f"- {op}\n" for op in supported)
    path = tmp_path / "backend.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def _lazygen(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lazygen", *args], cwd=cwd, capture_output=True, text=True)


def test_every_missing_shape_function_reported_at_its_line(ref, tmp_path):
    ops = DECLARED + UNDECLARED
    yaml = _yaml(tmp_path, ops)
    # The reference agrees that exactly these declarations are missing.
    (result,) = ref.generate_many([{"source_yaml": yaml, "output_dir": tmp_path / "ref"}])
    assert not result.ok
    reference_decls = [line for line in result.error.splitlines() if line.startswith("TORCH_API")]
    assert len(reference_decls) == len(UNDECLARED)

    proc = _lazygen("-s", str(yaml), "-o", str(tmp_path / "out"))
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if ": error: " in line]
    assert len(errors) == len(UNDECLARED)
    for op, line in zip(UNDECLARED, errors):
        yaml_line = 4 + ops.index(op)
        assert line.startswith(f"{yaml}:{yaml_line}:3: error: no shape function for '{op}'")
        decl = line.split("; declare: ", 1)[1]
        assert decl in reference_decls
    assert not (tmp_path / "out").exists()


def test_write_missing_shapes_gives_a_header_that_passes_the_check(ref, tmp_path):
    yaml = _yaml(tmp_path, DECLARED + UNDECLARED)
    header = tmp_path / "include" / "backend" / "shapes.h"
    proc = _lazygen("-s", str(yaml), "-o", str(tmp_path / "out"), "--write-missing-shapes", str(header))
    assert proc.returncode == 1
    skeletons = (tmp_path / "include" / "backend" / "shapes.h.cpp").read_text()
    assert all(f"compute_shape_{op}(" in skeletons for op in UNDECLARED)
    assert not any(f"compute_shape_{op}(" in skeletons for op in DECLARED)

    # The reference's own check accepts the written header, and so does lazygen's.
    ref.generate(yaml, tmp_path / "ref", shape_inference_hdr="backend/shapes.h", shape_inference_file=str(header))
    proc = _lazygen("-s", str(yaml), "-o", "out", "--shape-inference-hdr", "backend/shapes.h", cwd=tmp_path / "include")
    assert proc.returncode == 0, proc.stderr
    assert "#include <backend/shapes.h>" in (tmp_path / "include" / "out" / "LazyNativeFunctions.cpp").read_text()


def test_write_missing_shapes_bootstraps_a_header_that_does_not_exist_yet(ref, tmp_path):
    """A new backend's first run: its shape header does not exist; every
    declaration is missing, and all of them are written."""
    yaml = _yaml(tmp_path, DECLARED + UNDECLARED)
    header = tmp_path / "include" / "backend" / "shapes.h"
    args = ["-s", str(yaml), "-o", "out", "--shape-inference-hdr", "backend/shapes.h"]
    proc = _lazygen(*args, cwd=tmp_path)
    assert proc.returncode == 1 and "cannot read the shape inference header" in proc.stderr, proc.stderr
    assert "--write-missing-shapes" in proc.stderr
    proc = _lazygen(*args, "--shape-inference-file", str(header), "--write-missing-shapes", str(header), cwd=tmp_path)
    assert proc.returncode == 1
    errors = [line for line in proc.stderr.splitlines() if ": error: no shape function for" in line]
    assert len(errors) == len(DECLARED + UNDECLARED), proc.stderr
    skeletons = (tmp_path / "include" / "backend" / "shapes.h.cpp").read_text()
    assert all(f"compute_shape_{op}(" in skeletons for op in DECLARED + UNDECLARED)
    ref.generate(yaml, tmp_path / "ref", shape_inference_hdr="backend/shapes.h", shape_inference_file=str(header))
    proc = _lazygen(*args, cwd=tmp_path / "include")
    assert proc.returncode == 0, proc.stderr


def test_relative_shape_header_resolves_in_cwd_then_torch_include(tmp_path):
    require(torch_include_dirs(), "torch headers are not installed")
    yaml = _yaml(tmp_path, DECLARED)
    # From an unrelated folder: the default header is found in torch's include folder.
    assert _lazygen("-s", str(yaml), "-o", "out", cwd=tmp_path).returncode == 0
    # A header of the same spelling in the working directory wins.
    local = tmp_path / "torch" / "csrc" / "lazy" / "core" / "shape_inference.h"
    local.parent.mkdir(parents=True)
    local.write_text("// declares nothing\n")
    proc = _lazygen("-s", str(yaml), "-o", "out2", cwd=tmp_path)
    assert proc.returncode == 1 and "no shape function for 'abs'" in proc.stderr


def _impl(tmp_path: Path, kernels: list[str]) -> Path:
    path = tmp_path / "impl.cpp"
    path.write_text("".join(f"at::Tensor LazyNativeFunctions::{k}(const at::Tensor& self) {{ return self; }}\n" for k in kernels)
                    + "// calls like torch::lazy::LazyNativeFunctions::sin(x) do not count\n")
    return path


@pytest.mark.parametrize("defined", [["cos", "sin", "tan"], ["cos", "tan"], []], ids=["all", "one-missing", "none"])
def test_missing_kernels_agree_with_reference(ref, tmp_path, defined):
    supported = ["cos", "sin", "tan"]
    yaml = _yaml(tmp_path, ["abs"], supported)
    impl = _impl(tmp_path, defined)
    missing = [k for k in supported if k not in defined]
    (result,) = ref.generate_many([{"source_yaml": yaml, "output_dir": tmp_path / "ref", "impl_path": str(impl)}])
    assert result.ok == (not missing)
    assert all(f"missing a kernel definition for {k}" in result.error for k in missing)

    proc = _lazygen("-s", str(yaml), "-o", str(tmp_path / "out"), "--impl-path", str(impl))
    assert (proc.returncode == 0) == (not missing), proc.stderr
    errors = [line for line in proc.stderr.splitlines() if ": error: " in line]
    assert len(errors) == len(missing)
    for k, line in zip(missing, errors):
        assert line.startswith(f"{yaml}:{5 + 1 + supported.index(k)}:3: error:")  # after `supported:`
        assert f"LazyNativeFunctions::{k}" in line
    notes = [line for line in proc.stderr.splitlines() if ": note: " in line]
    assert all("at::Tensor " in n and "(const at::Tensor & self)" in n for n in notes)
