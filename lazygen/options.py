"""Every generator option, in one frozen dataclass shared by the CLI, the
Python API and the build adapters. Defaults are torchgen's (the same in
every torch release lazygen reproduces)."""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path

DEFAULT_SHAPE_INFERENCE_HDR = "torch/csrc/lazy/core/shape_inference.h"


@dataclass(frozen=True)
class Options:
    source_yaml: Path
    output_dir: str | Path  # used as given in #include lines, as torchgen does
    # Where the operator catalogue comes from: a folder holding
    # native/native_functions.yaml and native/tags.yaml, or the two files.
    aten_path: Path | None = None
    native_functions: Path | None = None
    tags_yaml: Path | None = None
    dry_run: bool = False
    impl_path: Path | None = None
    gen_ts_lowerings: bool = False
    node_base: str = "Node"
    node_base_hdr: str | None = None
    tensor_class: str = "torch::lazy::LazyTensor"
    tensor_class_hdr: str = "torch/csrc/lazy/core/tensor.h"
    shape_inference_hdr: str | None = DEFAULT_SHAPE_INFERENCE_HDR
    # The file read by the shape-inference check; default: shape_inference_hdr
    # resolved against the working directory, then torch's include folder.
    shape_inference_file: Path | None = None
    check_shape_inference: bool = True
    # When shape functions are missing: write a header declaring every shape
    # function the kernels call (it includes shape_inference_hdr) and, beside
    # it (<file>.cpp), skeleton definitions of the missing ones.
    write_missing_shapes: Path | None = None
    build_in_tree: bool = False
    per_operator_headers: bool = False
    backend_name: str = "TorchScript"
    gen_forced_fallback_code: bool = False
    use_lazy_shape: bool = True
    # torchgen's customisation keywords (torch_xla uses them).
    backend_namespace: str = "torch::lazy"
    get_tensorlist: str = "GetTensorList"
    get_tensor_or_wrap_number: str = "GetLtcTensorOrCreateForWrappedNumber"
    try_get_tensor: str = "TryGetLtcTensor"
    metrics_counter: str = 'TORCH_LAZY_FN_COUNTER("lazy::")'
    create_tensor: str = "LazyTensor::Create"
    create_from_first_tensor: bool = False
    create_aten_from_ltc_tensor: str = "torch::lazy::CreateAtenFromLtcTensor"
    tuple_aten_from_ltc_tensors: str = "torch::lazy::TupleAtenFromLtcTensors"
    lazy_value_class: str = "torch::lazy::Value"
    lazy_tensor_ptr: str = "LazyTensorPtr"
    get_device_fn: str = "torch::lazy::GetBackendDevice"
    # lazygen's own additions.
    qualify_names: bool = False
    include_prefix: str | None = None
    template_dirs: tuple[Path, ...] = ()
    generated_by: str = "lazygen"
    depfile: Path | None = None
    depfile_target: str | None = None  # the depfile's target; default: the first output
    expect_backend: str | None = None
    expect_autograd: bool | None = None
    # Split the kernels, the registration and the IR classes into this many
    # translation units / headers (1: the unsharded files; see outputs.bzl).
    shards: int = 1
    # Write torchgen's code even for full_codegen/ir_gen ops whose code would
    # not compile (lazygen.compilable); each such op is then a warning.
    allow_uncompilable: bool = False
    warnings_as_errors: bool = False  # a warning (an unused template, say) fails the run
    # The torch release whose torchgen output to reproduce ("2.8", "2.8.0";
    # lazygen.releases). Default: the catalogue's torch, else the newest.
    torch_version: str | None = None

    def fingerprint(self) -> str:
        """A stable text of every option that can change the outputs (for the no-op check)."""
        parts = []
        for f in fields(self):
            if f.name == "dry_run":
                continue
            value = getattr(self, f.name)
            if isinstance(value, tuple):
                value = [str(v) for v in value]
            parts.append(f"{f.name}={value}")
        return "\n".join(parts)


CUSTOMISATION_KEYWORDS = (
    "backend_namespace",
    "get_tensorlist",
    "get_tensor_or_wrap_number",
    "try_get_tensor",
    "metrics_counter",
    "create_tensor",
    "create_from_first_tensor",
    "create_aten_from_ltc_tensor",
    "tuple_aten_from_ltc_tensors",
    "lazy_value_class",
    "lazy_tensor_ptr",
    "get_device_fn",
)
