#!/usr/bin/env python3
"""Generate PyTorch's lazy TorchScript backend the way PyTorch's build does,
with lazygen instead of torchgen.

PyTorch's tools/setup_helpers/generate_code.py, given --gen-lazy-ts-backend,
calls torchgen's run_gen_lazy_tensor. This script is that step, with the
same arguments. Switching is the import line, and one keyword because
lazygen chooses TorchScript lowerings with a flag instead of a class:

    -from torchgen.dest.lazy_ir import GenTSLazyIR
    -from torchgen.gen_lazy_tensor import run_gen_lazy_tensor
    +from lazygen import run_gen_lazy_tensor
     ...
    -    lazy_ir_generator=GenTSLazyIR,
    +    gen_ts_lowerings=True,

Run it from the root of a PyTorch checkout (as PyTorch's build does):

    python generate_code.py --native-functions-path aten/src/ATen/native/native_functions.yaml \\
        --gen-lazy-ts-backend [--per-operator-headers] [--gen-dir DIR | --install-dir DIR]

It writes torch/csrc/lazy/generated/{LazyIr.h, LazyNonNativeIr.h,
LazyNativeFunctions.h, LazyNativeFunctions.cpp, RegisterLazy.cpp,
RegisterAutogradLazy.cpp} under the gen dir. PyTorch's script also generates
the autograd and functionalization sources; that part is not lazygen's and is
left out here.

A mistake in the inputs raises lazygen.UserError, whose message lists every
problem as `path:line:col: error: message`.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from lazygen import run_gen_lazy_tensor


def main() -> None:
    parser = argparse.ArgumentParser(description="Generate the lazy TorchScript backend")
    parser.add_argument("--native-functions-path", required=True)
    parser.add_argument("--gen-dir", type=Path, default=Path("."), help="root folder of the generated files")
    parser.add_argument("--install-dir", "--install_dir", help="deprecated: use --gen-dir")
    parser.add_argument(
        "--gen-lazy-ts-backend",
        "--gen_lazy_ts_backend",
        action="store_true",
        help="accepted for PyTorch's command line; this script only generates that backend",
    )
    parser.add_argument(
        "--per-operator-headers",
        "--per_operator_headers",
        action="store_true",
        help="include per-operator ATen headers; must match how ATen was built",
    )
    options = parser.parse_args()

    # aten/src/ATen, the folder above native/native_functions.yaml.
    aten_path = os.path.dirname(os.path.dirname(options.native_functions_path))
    ts_backend_yaml = os.path.join(aten_path, "native/ts_native_functions.yaml")
    ts_native_functions = "torch/csrc/lazy/ts_backend/ts_native_functions.cpp"
    ts_node_base = "torch/csrc/lazy/ts_backend/ts_node.h"
    install_dir = options.install_dir or os.fspath(options.gen_dir / "torch/csrc")
    lazy_install_dir = os.path.join(install_dir, "lazy/generated")
    os.makedirs(lazy_install_dir, exist_ok=True)

    for path in (ts_backend_yaml, ts_native_functions):
        if not os.path.isfile(path):
            sys.exit(f"generate_code.py: cannot find {path} (run from the root of a PyTorch checkout)")

    run_gen_lazy_tensor(
        aten_path=aten_path,
        source_yaml=ts_backend_yaml,
        backend_name="TorchScript",
        output_dir=lazy_install_dir,
        dry_run=False,
        impl_path=ts_native_functions,
        node_base="TsNode",
        node_base_hdr=ts_node_base,
        build_in_tree=True,
        gen_ts_lowerings=True,
        per_operator_headers=options.per_operator_headers,
        gen_forced_fallback_code=True,
    )


if __name__ == "__main__":
    main()
