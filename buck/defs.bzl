"""Buck2 macro that generates a PyTorch lazy-tensor backend with lazygen.

Make the lazygen checkout a cell (in `.buckconfig`: `[cells] lazygen = path/to/lazygen`)
and load this file as `load("@lazygen//buck:defs.bzl", "lazy_codegen")`. It loads the
shared output naming cell-relatively (`//lazygen:outputs.bzl`), so the cell may have
any name.
"""

load("//lazygen:outputs.bzl", "lazy_output_names")

def _is_label(value):
    # The same reading as Buck2's attrs.source(): ":x", "//p:x" and "cell//p:x"
    # name targets, anything else is a file of the calling package.
    return value.startswith(":") or "//" in value

def _quote(value):
    # One shell word, whatever the value holds.
    return "'" + value.replace("'", "'\\''") + "'"

def _file_words(flag, value, srcs):
    """Words passing one input file; a source path is also added to `srcs`."""
    if _is_label(value):
        return [flag, "\"$(location %s)\"" % value]

    # srcs as a dict names each file's place in $SRCDIR explicitly: its
    # path in the package.
    srcs[value] = value
    return [flag, "\"$SRCDIR\"/" + _quote(value)]

def _option_words(flag, value):
    # Unset (None or "") keeps lazygen's own default, as in the Bazel rule.
    return [flag, _quote(value)] if value else []

def _flag_words(flag, enabled):
    return [flag] if enabled else []

def lazy_codegen(
        name,
        src,
        backend = "Lazy",
        autograd = False,
        shards = 1,
        native_functions = None,
        tags_yaml = None,
        lazygen = None,
        backend_name = None,
        node_base = None,
        node_base_hdr = None,
        tensor_class = None,
        tensor_class_hdr = None,
        shape_inference_hdr = None,
        shape_inference_file = None,
        shape_inference_check = True,
        impl = None,
        gen_ts_lowerings = False,
        build_in_tree = False,
        per_operator_headers = False,
        gen_forced_fallback_code = False,
        qualify_names = False,
        torch_version = None,
        include_prefix = None,
        template_dirs = [],
        extra_args = [],
        visibility = None,
        **kwargs):
    """Runs lazygen in one genrule whose outputs are named subtargets.

    `:name[LazyIr.h]`, `:name[<backend>NativeFunctions.cpp]`, ... are the generated
    files; the default output (and `$(location :name)`) is the folder holding them.
    File arguments take a target label or a path in the calling package.

    Args:
      name: target name.
      src: the backend yaml (`<backend>_native_functions.yaml`).
      backend: the yaml's `backend:` key; it names the outputs.
      autograd: whether the yaml has an `autograd:` section.
      shards: split the kernels, the registration and the IR classes into this many
        files each (`--shards`); 1 writes the unsharded files.
      native_functions: ATen's `native_functions.yaml`.
      tags_yaml: ATen's `tags.yaml`.
      lazygen: label of an executable target that runs lazygen.
      backend_name: `--backend-name`.
      node_base: `--node-base`, the IR node base class.
      node_base_hdr: `--node-base-hdr`.
      tensor_class: `--tensor-class`.
      tensor_class_hdr: `--tensor-class-hdr`.
      shape_inference_hdr: include spelling of the shape inference header.
      shape_inference_file: that header, read for the shape inference check.
      shape_inference_check: check the header declares every needed shape function.
      impl: the backend's kernels source, checked for every `supported` op.
      gen_ts_lowerings: generate TorchScript `Lower()` methods.
      build_in_tree: `--build-in-tree`, include paths for PyTorch's own tree.
      per_operator_headers: include per-operator ATen headers.
      gen_forced_fallback_code: `--gen-forced-fallback-code`.
      qualify_names: `--qualify-names`.
      torch_version: `--torch-version`, the torch release ("2.8"; 2.5 to 2.15) whose
        torchgen output to write; unset means the newest, with a note.
      include_prefix: generated files include each other as `<include_prefix/LazyIr.h>`;
        unset means the package path joined with `name`.
      template_dirs: labels of folders (filegroups) of Jinja2 template overrides.
      extra_args: more lazygen arguments, as shell words (Buck2 macros allowed).
      visibility: the genrule's visibility.
      **kwargs: other genrule attributes (labels, target_compatible_with, ...).
    """
    if not lazygen:
        fail("lazy_codegen(name = \"%s\"): `lazygen` must name an executable target that runs lazygen" % name)
    if not native_functions or not tags_yaml:
        fail("lazy_codegen(name = \"%s\"): `native_functions` and `tags_yaml` must name ATen's catalogue files" % name)
    if shape_inference_check and not shape_inference_file:
        fail(("lazy_codegen(name = \"%s\"): the shape inference check reads a header, so set " +
              "`shape_inference_file` to it (label or path), or set `shape_inference_check = False`") % name)
    if type(shards) != "int" or shards < 1:
        fail("lazy_codegen(name = \"%s\"): shards must be a whole number of at least 1, got %r" % (name, shards))
    if not include_prefix:
        package = native.package_name()
        include_prefix = package + "/" + name if package else name

    srcs = {}
    words = ["$(exe %s)" % lazygen]
    words += _file_words("-s", src, srcs)
    words += ["-o", "\"$OUT\""]
    words += _file_words("--native-functions", native_functions, srcs)
    words += _file_words("--tags-yaml", tags_yaml, srcs)

    # The outputs below are declared from these two attributes; the generator
    # stops with a clear message when the yaml says otherwise.
    words += ["--expect-backend", _quote(backend)]
    words.append("--expect-autograd" if autograd else "--expect-no-autograd")
    if shards > 1:
        # Unsharded keeps the command, hence the action's cache key, as before.
        words += ["--shards", str(shards)]

    words += _option_words("--backend-name", backend_name)
    words += _option_words("--node-base", node_base)
    words += _option_words("--node-base-hdr", node_base_hdr)
    words += _option_words("--tensor-class", tensor_class)
    words += _option_words("--tensor-class-hdr", tensor_class_hdr)
    words += _option_words("--shape-inference-hdr", shape_inference_hdr)
    if shape_inference_check:
        words += _file_words("--shape-inference-file", shape_inference_file, srcs)
    else:
        words.append("--no-shape-inference-check")
    if impl:
        words += _file_words("--impl-path", impl, srcs)
    words += _flag_words("--gen-ts-lowerings", gen_ts_lowerings)
    words += _flag_words("--build-in-tree", build_in_tree)
    words += _flag_words("--per-operator-headers", per_operator_headers)
    words += _flag_words("--gen-forced-fallback-code", gen_forced_fallback_code)
    words += _flag_words("--qualify-names", qualify_names)
    words += _option_words("--torch-version", torch_version)
    words += ["--include-prefix", _quote(include_prefix)]
    for folder in template_dirs:
        if not _is_label(folder):
            fail("lazy_codegen(name = \"%s\"): template_dirs takes target labels (a filegroup per folder), got \"%s\"" % (name, folder))
        words += ["--template-dir", "\"$(location %s)\"" % folder]
    words += extra_args

    if visibility != None:
        kwargs["visibility"] = visibility
    native.genrule(
        name = name,
        srcs = srcs,
        outs = {output: [output] for output in lazy_output_names(backend, autograd, shards)},
        default_outs = ["."],
        cmd = " ".join(words),
        **kwargs
    )
