"""lazygen against the torchgen of other torch releases (issue 17): for each
release, its own torchgen and packaged catalogue, run live from an unpacked
wheel (tests/torch_releases.py), must give the bytes lazygen writes for
that catalogue. lazygen picks the release from the torch metadata beside
the catalogue, as it would in that release's site-packages.

CI covers CI_RELEASES; LAZYGEN_TEST_RELEASES=2.6.0,2.7.1 runs others, and
LAZYGEN_TEST_RELEASES=all every release of the supported range (ALL_RELEASES).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from lazygen.api import Options, generate
from lazygen.catalogue_cache import load_catalogue
from lazygen.releases import release_of
from tests.reference import Reference, in_ci
from tests.test_differential import (FEATURES_YAML, GENERATED_BY, TS_OPTIONS, TS_YAML, assert_same, run_lazygen, shape_header,
                                     symint_shape_decls, write_yaml)
from tests.test_shards import ir_classes, kernels
from tests.torch_releases import ALL_RELEASES, CI_RELEASES, SHAPE_INFERENCE_H, release_root


def _versions(spec: str) -> tuple[str, ...]:
    """LAZYGEN_TEST_RELEASES: empty for CI_RELEASES, "all", or a comma list."""
    if spec.strip() == "all":
        return ALL_RELEASES
    return tuple(v.strip() for v in spec.split(",") if v.strip()) or CI_RELEASES


VERSIONS = _versions(os.environ.get("LAZYGEN_TEST_RELEASES", ""))


@dataclass
class Torch:
    version: str
    root: Path  # the unpacked wheel
    ref: Reference  # its torchgen
    probe: dict

    @property
    def aten(self) -> Path:
        return self.root / "torchgen" / "packaged" / "ATen"

    @property
    def shape_inference_h(self) -> Path:
        return self.root / SHAPE_INFERENCE_H


@pytest.fixture(scope="module", params=VERSIONS)
def torch(request: pytest.FixtureRequest):
    version = request.param
    try:
        root = release_root(version)
    except RuntimeError as err:  # no network, say
        if in_ci():
            raise
        pytest.skip(str(err))
    cache = getattr(request.config, "cache", None)
    with Reference(cache_dir=cache.mkdir("lazygen-reference") if cache else None, torchgen_root=root) as ref:
        assert ref.torch_version.split("+")[0] == version
        yield Torch(version, root, ref, ref.probe())


def compare(torch: Torch, tmp_path: Path, yaml: Path, allow_uncompilable: bool = False, **options) -> None:
    """The reference and lazygen on the same inputs, at once (the reference
    runs in its own process), against this release's catalogue."""
    options["aten_path"] = str(torch.aten)
    ref_dir = tmp_path / "reference"
    with ThreadPoolExecutor(1) as pool:
        expected = pool.submit(torch.ref.generate, yaml, ref_dir, generated_by=GENERATED_BY, **options)
        actual = run_lazygen(yaml, tmp_path / "lazygen", str(ref_dir), allow_uncompilable=allow_uncompilable, **options)
        assert_same(expected.result(), actual)


def test_ts_backend_with_pytorch_options(torch: Torch, tmp_path: Path) -> None:
    """The command line, in relative output folders as PyTorch's build runs;
    the release comes from the catalogue's dist-info, with nothing said."""
    ref_cwd, lg_cwd = tmp_path / "ref", tmp_path / "lg"
    ref_cwd.mkdir()
    lg_cwd.mkdir()
    expected = torch.ref.generate(TS_YAML, "generated", cwd=ref_cwd, generated_by=GENERATED_BY, **TS_OPTIONS)
    cmd = [sys.executable, "-m", "lazygen", "-s", str(TS_YAML), "-o", "generated", "--generated-by", GENERATED_BY,
           "--aten-path", str(torch.aten), "--shape-inference-file", str(torch.shape_inference_h),
           "--node-base", "TsNode", "--node-base-hdr", "torch/csrc/lazy/ts_backend/ts_node.h",
           "--gen-ts-lowerings", "--build-in-tree", "--backend-name", "TorchScript"]
    proc = subprocess.run(cmd, cwd=lg_cwd, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    actual = {p.name: p.read_bytes() for p in (lg_cwd / "generated").iterdir() if not p.name.startswith(".")}
    assert_same(expected, actual)


def test_ts_backend_with_default_options(torch: Torch, tmp_path: Path) -> None:
    compare(torch, tmp_path, TS_YAML, shape_inference_file=str(torch.shape_inference_h))


def test_ts_backend_with_per_operator_headers_and_forced_fallback(torch: Torch, tmp_path: Path) -> None:
    """The include list and kernel bodies these two options change, with each
    release's Register<Key>.cpp prologue."""
    compare(torch, tmp_path, TS_YAML, shape_inference_file=str(torch.shape_inference_h), per_operator_headers=True,
            gen_forced_fallback_code=True, **TS_OPTIONS)


def test_ir_gen_non_native_symint_and_two_level_namespace(torch: Torch, tmp_path: Path) -> None:
    """The yaml sections the TS yaml leaves out (ir_gen, symint, non_native
    properties, a nested namespace) in this release's text."""
    yaml = tmp_path / "features.yaml"
    yaml.write_text(FEATURES_YAML, encoding="utf-8")
    native = torch.aten / "native"
    catalogue = load_catalogue(native / "native_functions.yaml", native / "tags.yaml", release_of(torch.version))
    full = ["abs", "add.Tensor", "addcmul", "native_layer_norm", "bernoulli.p"]
    header = shape_header(tmp_path, torch.probe, full, symint_shape_decls(catalogue, ["expand_copy", "new_empty_strided"]))
    compare(torch, tmp_path, yaml, shape_inference_file=str(header), **TS_OPTIONS)


def test_every_op_under_full_codegen(torch: Torch, tmp_path: Path) -> None:
    """Every op this release's torchgen generates, with the TS options and
    --allow-uncompilable: its bytes also for code that would not compile
    (tests/test_compilable.py tests which ops those are)."""
    ops = [op for op, info in torch.probe.items() if info["kind"] == "functional" and info["full_codegen_ok"]]
    assert len(ops) > 1400
    yaml = write_yaml(tmp_path / "every_op.yaml", backend="Lazy", cpp_namespace="torch::lazy", full_codegen=ops)
    compare(torch, tmp_path, yaml, allow_uncompilable=True, shape_inference_file=str(shape_header(tmp_path, torch.probe, ops)),
            **TS_OPTIONS)


def test_every_op_under_supported(torch: Torch, tmp_path: Path) -> None:
    ops = [op for op, info in torch.probe.items() if info["supported_ok"]]
    assert len(ops) > 2900
    yaml = write_yaml(tmp_path / "supported.yaml", backend="Lazy", cpp_namespace="torch::lazy", supported=ops)
    compare(torch, tmp_path, yaml, per_operator_headers=True)


def test_shards_carry_the_release(torch: Torch, tmp_path: Path) -> None:
    """--shards 3: each IR class and kernel is the unsharded output's text (the
    reference's, by the tests above), and each Register shard starts as the
    unsharded one does."""
    def run(out: str, shards: int) -> dict[str, str]:
        result = generate(Options(source_yaml=TS_YAML, output_dir=tmp_path / out, aten_path=torch.aten, shards=shards,
                                  shape_inference_file=torch.shape_inference_h, **TS_OPTIONS))
        return {p.name: p.read_text(encoding="utf-8") for p in result.outputs}

    whole, parts = run("whole", 1), run("parts", 3)
    shards = [parts[f"LazyIr_{i}.h"] for i in range(3)]
    assert sorted(c for text in shards for c in ir_classes(text)) == sorted(ir_classes(whole["LazyIr.h"]))
    sharded_kernels = [k for i in range(3) for k in kernels(parts[f"LazyNativeFunctions_{i}.cpp"])]
    assert sorted(sharded_kernels) == sorted(kernels(whole["LazyNativeFunctions.cpp"]))
    preamble = whole["RegisterLazy.cpp"][: whole["RegisterLazy.cpp"].index("#include <")]
    for i in range(3):
        assert parts[f"RegisterLazy_{i}.cpp"].startswith(preamble)
        # The to_meta helper of each kernel shard is the unsharded one's.
        assert re.search(r"^  auto out = .*$", parts[f"LazyNativeFunctions_{i}.cpp"], re.M).group() == \
            re.search(r"^  auto out = .*$", whole["LazyNativeFunctions.cpp"], re.M).group()


def test_catalogue_has_the_releases_functions(torch: Torch) -> None:
    """lazygen's model of this release's catalogue (autogen variants
    included, by the release's autogen facts) holds the functions, of the
    kinds, that its torchgen parses."""
    native = torch.aten / "native"
    # The cached model, as a run uses it (the tests above stored it).
    catalogue = load_catalogue(native / "native_functions.yaml", native / "tags.yaml", release_of(torch.version))
    ours = {str(f.func.name): f.kind.name for f in catalogue.functions}
    assert ours == {op: info["kind"] for op, info in torch.probe.items()}
