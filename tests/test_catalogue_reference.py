"""The operator catalogue against torchgen's own model: for every function
of torch 2.13's native_functions.yaml (autogen variants included), the same
name, group, schema kind and dispatcher-API declaration."""

from __future__ import annotations

import importlib.util

import pytest

from lazygen.catalogue import NativeFunctionsGroup
from lazygen.catalogue_cache import load_catalogue
from lazygen.cpp import Flavor, Signature
from lazygen.locate import default_aten_path
from tests.reference import require


def _group_key(item) -> str:
    return str(item.functional.func.name) if hasattr(item, "functional") else ""


@pytest.fixture(scope="module")
def torchgen_model():
    require(importlib.util.find_spec("torchgen") is not None, "torchgen (torch==2.13.0) is not installed")
    from torchgen.api.types import DispatcherSignature
    from torchgen.context import native_function_manager
    from torchgen.gen import get_grouped_native_functions, parse_native_yaml

    aten = default_aten_path()
    parsed = parse_native_yaml(str(aten / "native" / "native_functions.yaml"), str(aten / "native" / "tags.yaml"))
    grouped = get_grouped_native_functions(parsed.native_functions)
    # gen_lazy_tensor sorts the groups by the functional variant's name.
    grouped = sorted(grouped, key=lambda g: str((g.functional if hasattr(g, "functional") else g).func.name.name))
    model = {}
    for item in grouped:
        fs = list(item.functions()) if hasattr(item, "functions") else [item]
        for f in fs:
            with native_function_manager(f):
                decl = DispatcherSignature.from_schema(f.func).decl()
            model[str(f.func.name)] = (_group_key(item), f.func.kind().name, decl, str(f.func))
    return model


@pytest.fixture(scope="module")
def lazygen_model():
    aten = default_aten_path()
    require(aten is not None, "torchgen's packaged native_functions.yaml is not installed")
    catalogue = load_catalogue(aten / "native" / "native_functions.yaml", aten / "native" / "tags.yaml", use_cache=False)
    model = {}
    for item in catalogue.grouped:
        fs = list(item.functions()) if isinstance(item, NativeFunctionsGroup) else [item]
        for f in fs:
            decl = Signature(f.func, Flavor.of(f)).decl()
            model[str(f.func.name)] = (_group_key(item), f.kind.name, decl, str(f.func))
    return model


def test_same_functions(torchgen_model, lazygen_model):
    assert len(torchgen_model) == 3101
    assert sorted(lazygen_model) == sorted(torchgen_model)


@pytest.mark.parametrize("field, index", [("group", 0), ("kind", 1), ("dispatcher declaration", 2), ("schema text", 3)])
def test_same_per_function(torchgen_model, lazygen_model, field, index):
    mismatches = [
        (name, torchgen_model[name][index], lazygen_model.get(name, (None,) * 4)[index])
        for name in torchgen_model
        if lazygen_model.get(name, (None,) * 4)[index] != torchgen_model[name][index]
    ]
    assert not mismatches, f"{len(mismatches)} functions differ in {field}, e.g. {mismatches[:3]}"


def test_same_group_order(torchgen_model, lazygen_model):
    # Register<Key>.cpp lists kernels in this order.
    assert list(lazygen_model) == list(torchgen_model)
