"""The Python API: generate(Options) -> Result, list_outputs, and the
drop-in replacement for torchgen's run_gen_lazy_tensor."""

from __future__ import annotations

import dataclasses
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from lazygen import plan, releases
from lazygen.errors import Diagnostic, UserError
from lazygen.locate import default_aten_path, torch_version_near
from lazygen.options import DEFAULT_SHAPE_INFERENCE_HDR, Options
from lazygen.releases import Release

if TYPE_CHECKING:
    from lazygen.backend import BackendSpec
    from lazygen.catalogue import Catalogue


@dataclass(frozen=True)
class Result:
    written: tuple[str, ...]  # output file names whose content changed
    unchanged: tuple[str, ...]  # output file names left as they were
    removed: tuple[str, ...]  # stale outputs of an earlier run, deleted
    inputs: tuple[Path, ...]  # every file the run read (the depfile's dependencies)
    outputs: tuple[Path, ...]  # every output path
    # (size, mtime_ns, inode) of each output and the depfile as this run left them.
    output_stats: dict = field(default_factory=dict, compare=False)
    warnings: tuple[Diagnostic, ...] = ()  # problems that did not stop the run (unused templates; ops refused under allow_uncompilable)


def catalogue_files(options: Options) -> tuple[Path, Path]:
    """native_functions.yaml and tags.yaml, from the options or the installed torchgen."""
    aten = Path(options.aten_path) if options.aten_path is not None else None
    if aten is None and (options.native_functions is None or options.tags_yaml is None):
        aten = default_aten_path()
        if aten is None:
            raise UserError.at(
                str(options.source_yaml), None, None,
                "cannot find PyTorch's operator catalogue (native_functions.yaml): no torchgen package is installed",
                "pass --aten-path DIR (the folder holding native/native_functions.yaml), "
                "or --native-functions FILE and --tags-yaml FILE",
            )
    native = Path(options.native_functions) if options.native_functions is not None else aten / "native" / "native_functions.yaml"
    tags = Path(options.tags_yaml) if options.tags_yaml is not None else aten / "native" / "tags.yaml"
    return native, tags


def choose_release(options: Options, native: Path) -> tuple[Release, list[Diagnostic], Path | None]:
    """The torch release to reproduce (lazygen.releases), the notes about
    the choice, and the file that chose it (an input of the run), if any:
    with --torch-version the catalogue's version file only feeds a note."""
    found = torch_version_near(native)
    release, notes = releases.choose(options.torch_version, found, native)
    return release, notes, found[1] if found is not None and options.torch_version is None else None


def list_outputs(options: Options) -> list[Path]:
    """The output paths a run with these options writes; reads only the
    yaml's `backend:` and whether it has an `autograd:` section."""
    from lazygen.backend import read_backend_header

    plan.check_shards(options.shards)
    if options.torch_version is not None:
        releases.choose(options.torch_version, None, Path(options.source_yaml))  # a bad flag fails here too
    backend, autograd = read_backend_header(Path(options.source_yaml))
    return [Path(options.output_dir) / name for name in plan.output_names(backend, autograd, options.shards)]


def generate(options: Options) -> Result:
    """Check everything, then bring the output folder up to date (or, with
    dry_run, only check). Raises UserError for mistakes in the inputs."""
    from lazygen.catalogue_cache import load_catalogue
    from lazygen.engine import load_spec

    plan.check_shards(options.shards)
    spec = load_spec(options)
    native, tags = catalogue_files(options)
    release, notes, version_file = choose_release(options, native)
    _preflight(options, spec, native, tags)
    catalogue = load_catalogue(native, tags, release)
    # The file naming the release is an input too: upgrading torch reruns.
    read = (native, tags) + ((version_file,) if version_file is not None else ())
    try:
        result = _render_and_commit(options, catalogue, spec, read, release)
        return dataclasses.replace(result, warnings=tuple(notes) + result.warnings)
    except UserError:
        raise
    except Exception as err:
        # A mistake in a template override is the user's: say where it is.
        from lazygen.template_check import template_error

        diagnostic = template_error(err, options.template_dirs)
        if diagnostic is None:
            raise
        raise diagnostic from None


def _preflight(options: Options, spec: BackendSpec, native: Path, tags: Path) -> None:
    from lazygen import preflight
    from lazygen.engine import shape_header_file
    from lazygen.render import template_files

    inputs = [("the backend yaml", Path(options.source_yaml)), ("native_functions.yaml", native), ("tags.yaml", tags)]
    if options.impl_path is not None:
        inputs.append(("the kernel implementation file (--impl-path)", Path(options.impl_path)))
    if options.check_shape_inference and options.shape_inference_hdr is not None:
        inputs.append(("the shape inference header", shape_header_file(options)))
    inputs += [("a template override", path) for path in template_files(options.template_dirs)]
    preflight.check(options, spec.backend, spec.has_autograd, inputs)


def _render_and_commit(options: Options, catalogue: Catalogue, spec: BackendSpec, read: tuple[Path, ...], release: Release) -> Result:
    from lazygen.commit import Staged, commit, discard_if_unused, stage
    from lazygen.engine import render_outputs

    rendered = render_outputs(options, catalogue, spec, release)
    inputs = (Path(options.source_yaml),) + read + rendered.inputs
    out_dir = Path(options.output_dir)
    names = plan.output_names(spec.backend, spec.has_autograd, options.shards)
    outputs = tuple(out_dir / n for n in names)
    if options.dry_run:
        for produce in rendered.contents.values():
            for _ in produce():  # rendered (a template can fail), not written
                pass
        return Result((), (), (), inputs, outputs, warnings=rendered.warnings)
    warnings = rendered.warnings + _left_by_others(out_dir, spec.backend, options)
    staged: dict[str, Staged] = {}
    created: list[Path] = []
    try:
        try:
            created = _make_dirs(out_dir)
            for name in list(rendered.contents):
                staged[name] = stage(out_dir, rendered.contents.pop(name)())
            result = commit(
                out_dir,
                staged,
                depfile=Path(options.depfile) if options.depfile is not None else None,
                depfile_target=options.depfile_target or os.fspath(outputs[0]),
                inputs=[os.fspath(p) for p in inputs],
            )
        except BaseException:
            # A failed or stopped run leaves no folder of its own making behind.
            for s in staged.values():
                s.close()
            if created:
                discard_if_unused(created[-1])
            for folder in reversed(created):
                _remove_if_empty(folder)
            raise
    except OSError as err:
        if isinstance(err, LookupError):
            raise  # jinja2.TemplateNotFound, which is an OSError too: a template's mistake
        where = err.filename if err.filename else out_dir
        raise UserError.at(os.fspath(where), None, None, f"cannot write the outputs: {err.strerror or err}") from None
    finally:
        for s in staged.values():
            s.close()
    return Result(tuple(result.written), tuple(result.unchanged), tuple(result.removed), inputs, outputs, result.stats,
                  warnings)


def _left_by_others(out_dir: Path, backend: str, options: Options) -> tuple[Diagnostic, ...]:
    """A warning for each kernel or registration source of another number of
    shards in the output folder that lazygen did not write (torchgen's,
    say): lazygen leaves such files alone, since they are not its own to
    remove. Those it wrote, the manifest lists, and the commit removes."""
    from lazygen.commit import read_manifest

    try:
        present = os.listdir(out_dir)
    except OSError:
        return ()
    ours = set(read_manifest(out_dir))
    found = tuple(
        Diagnostic(os.fspath(out_dir / name), None, None,
                   f"'{name}' is not an output of this run (--shards {options.shards}) and lazygen did not write it, so it stays",
                   "a build that compiles every .cpp file of the folder would define what it holds twice: remove it",
                   severity="warning")
        for name in plan.superseded_sources(backend, options.shards, present) if name not in ours)
    if found and options.warnings_as_errors:
        raise UserError(*(d._replace(severity="error") for d in found))
    return found


def _make_dirs(path: Path) -> list[Path]:
    """Create the output folder and its missing parents; the folders this call created, outermost first."""
    missing = []
    while not os.path.lexists(path):
        missing.append(path)
        if path.parent == path:
            break
        path = path.parent
    for folder in reversed(missing):
        folder.mkdir(exist_ok=True)
    return missing[::-1]


def _remove_if_empty(path: Path) -> None:
    try:
        path.rmdir()
    except OSError:
        pass


def run_gen_lazy_tensor(
    aten_path: str,
    source_yaml: str,
    output_dir: str,
    dry_run: bool = False,
    impl_path: str | None = None,
    node_base: str = "Node",
    node_base_hdr: str | None = None,
    tensor_class: str = "torch::lazy::LazyTensor",
    tensor_class_hdr: str = "torch/csrc/lazy/core/tensor.h",
    shape_inference_hdr: str | None = DEFAULT_SHAPE_INFERENCE_HDR,
    gen_ts_lowerings: bool = False,
    build_in_tree: bool = False,
    per_operator_headers: bool = False,
    backend_name: str = "TorchScript",
    gen_forced_fallback_code: bool = False,
    use_lazy_shape: bool = True,
    backend_namespace: str = "torch::lazy",
    get_tensorlist: str = "GetTensorList",
    get_tensor_or_wrap_number: str = "GetLtcTensorOrCreateForWrappedNumber",
    try_get_tensor: str = "TryGetLtcTensor",
    metrics_counter: str = 'TORCH_LAZY_FN_COUNTER("lazy::")',
    create_tensor: str = "LazyTensor::Create",
    create_from_first_tensor: bool = False,
    create_aten_from_ltc_tensor: str = "torch::lazy::CreateAtenFromLtcTensor",
    tuple_aten_from_ltc_tensors: str = "torch::lazy::TupleAtenFromLtcTensors",
    lazy_value_class: str = "torch::lazy::Value",
    lazy_tensor_ptr: str = "LazyTensorPtr",
    get_device_fn: str = "torch::lazy::GetBackendDevice",
    check_shape_inference: bool = True,
    generated_by: str = "lazygen",
    template_dirs: tuple = (),
    allow_uncompilable: bool = False,
    warnings_as_errors: bool = False,
    torch_version: str | None = None,
) -> None:
    """torchgen 2.13's run_gen_lazy_tensor, same keywords and defaults
    (gen_ts_lowerings replaces lazy_ir_generator). Raises UserError on bad
    input; prints warnings to stderr."""
    options = Options(
        source_yaml=Path(source_yaml),
        output_dir=os.fspath(output_dir),
        aten_path=Path(aten_path) if aten_path is not None else None,
        dry_run=dry_run,
        impl_path=Path(impl_path) if impl_path is not None else None,
        node_base=node_base,
        node_base_hdr=node_base_hdr,
        tensor_class=tensor_class,
        tensor_class_hdr=tensor_class_hdr,
        shape_inference_hdr=shape_inference_hdr,
        check_shape_inference=check_shape_inference and shape_inference_hdr is not None,
        gen_ts_lowerings=gen_ts_lowerings,
        build_in_tree=build_in_tree,
        per_operator_headers=per_operator_headers,
        backend_name=backend_name,
        gen_forced_fallback_code=gen_forced_fallback_code,
        use_lazy_shape=use_lazy_shape,
        backend_namespace=backend_namespace,
        get_tensorlist=get_tensorlist,
        get_tensor_or_wrap_number=get_tensor_or_wrap_number,
        try_get_tensor=try_get_tensor,
        metrics_counter=metrics_counter,
        create_tensor=create_tensor,
        create_from_first_tensor=create_from_first_tensor,
        create_aten_from_ltc_tensor=create_aten_from_ltc_tensor,
        tuple_aten_from_ltc_tensors=tuple_aten_from_ltc_tensors,
        lazy_value_class=lazy_value_class,
        lazy_tensor_ptr=lazy_tensor_ptr,
        get_device_fn=get_device_fn,
        generated_by=generated_by,
        template_dirs=tuple(Path(d) for d in template_dirs),
        allow_uncompilable=allow_uncompilable,
        warnings_as_errors=warnings_as_errors,
        torch_version=torch_version,
    )
    for w in generate(options).warnings:
        print(w.format(), file=sys.stderr)


__all__ = ["Options", "Result", "generate", "list_outputs", "run_gen_lazy_tensor"]
