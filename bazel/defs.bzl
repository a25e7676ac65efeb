"""lazy_codegen(): generate a PyTorch lazy-tensor backend's C++ sources with lazygen.

    load("@lazygen//bazel:defs.bzl", "lazy_codegen")

The outputs are declared from the attributes `backend`, `autograd` and
`shards`, using the same naming as the generator itself
(//lazygen:outputs.bzl), so no generation is needed at analysis time. The
generator is told what the rule declared (--expect-backend, --expect-autograd)
and fails with a clear message when the yaml says otherwise.
"""

load("//lazygen:outputs.bzl", "lazy_output_headers", "lazy_output_sources")

def _default_include_prefix(label):
    if label.package:
        return label.package + "/" + label.name
    return label.name

def _add_flag(args, flag, value):
    # Unset string attributes keep the generator's own default.
    if value:
        args.add(flag, value)

def _template_dirs(files):
    dirs = []
    for f in files:
        if f.dirname not in dirs:
            dirs.append(f.dirname)
    return dirs

def _lazy_codegen_impl(ctx):
    backend = ctx.attr.backend
    shards = ctx.attr.shards
    if shards < 1:
        # At analysis, before any action runs; Bazel prefixes the target's label.
        fail("shards must be a whole number of at least 1, got %d (1 writes the unsharded files)" % shards)
    headers = [
        ctx.actions.declare_file(ctx.label.name + "/" + name)
        for name in lazy_output_headers(backend, shards)
    ]
    sources = [
        ctx.actions.declare_file(ctx.label.name + "/" + name)
        for name in lazy_output_sources(backend, ctx.attr.autograd, shards)
    ]
    outputs = headers + sources
    out_dir = headers[0].dirname

    inputs = [ctx.file.src, ctx.file.native_functions, ctx.file.tags_yaml]
    args = ctx.actions.args()
    args.add("-s", ctx.file.src)
    args.add("-o", out_dir)
    args.add("--native-functions", ctx.file.native_functions)
    args.add("--tags-yaml", ctx.file.tags_yaml)
    args.add("--expect-backend", backend)
    args.add("--expect-autograd" if ctx.attr.autograd else "--expect-no-autograd")
    if shards > 1:
        # Unsharded keeps the command line, hence the action's cache key, as before.
        args.add("--shards", str(shards))
    args.add("--include-prefix", (ctx.attr.include_prefix or _default_include_prefix(ctx.label)).strip("/"))

    _add_flag(args, "--backend-name", ctx.attr.backend_name)
    _add_flag(args, "--node-base", ctx.attr.node_base)
    _add_flag(args, "--node-base-hdr", ctx.attr.node_base_hdr)
    _add_flag(args, "--tensor-class", ctx.attr.tensor_class)
    _add_flag(args, "--tensor-class-hdr", ctx.attr.tensor_class_hdr)
    _add_flag(args, "--torch-version", ctx.attr.torch_version)

    # The include spelling and the file read for the check are separate: the
    # header is a declared input wherever Bazel puts it.
    _add_flag(args, "--shape-inference-hdr", ctx.attr.shape_inference_hdr)
    if ctx.attr.shape_inference_check:
        if not ctx.file.shape_inference_file:
            fail("shape_inference_check = True needs shape_inference_file, the header " +
                 "declaring the shape functions (e.g. torch's " +
                 "torch/csrc/lazy/core/shape_inference.h); or set shape_inference_check = False")
        args.add("--shape-inference-file", ctx.file.shape_inference_file)
        inputs.append(ctx.file.shape_inference_file)
    else:
        args.add("--no-shape-inference-check")

    if ctx.file.impl:
        args.add("--impl-path", ctx.file.impl)
        inputs.append(ctx.file.impl)

    if ctx.attr.gen_ts_lowerings:
        args.add("--gen-ts-lowerings")
    if ctx.attr.build_in_tree:
        args.add("--build-in-tree")
    if ctx.attr.per_operator_headers:
        args.add("--per-operator-headers")
    if ctx.attr.gen_forced_fallback_code:
        args.add("--gen-forced-fallback-code")
    if ctx.attr.qualify_names:
        args.add("--qualify-names")

    args.add_all(_template_dirs(ctx.files.template_dirs), before_each = "--template-dir")
    inputs.extend(ctx.files.template_dirs)
    args.add_all(ctx.attr.extra_args)

    ctx.actions.run(
        executable = ctx.attr.tool[DefaultInfo].files_to_run,
        arguments = [args],
        inputs = inputs,
        outputs = outputs,
        # lazygen's caches default to ~/.cache/lazygen, outside the action's
        # inputs and outputs (and read-only in the sandbox): keep them in the
        # output folder, where only this action sees them.
        env = {"LAZYGEN_CACHE_DIR": out_dir + "/.lazygen-cache"},
        mnemonic = "LazyGen",
        progress_message = "Generating lazy-tensor sources for %s (%s)" % (ctx.label, backend),
    )
    return [
        DefaultInfo(files = depset(outputs)),
        OutputGroupInfo(headers = depset(headers), sources = depset(sources)),
    ]

lazy_codegen = rule(
    implementation = _lazy_codegen_impl,
    doc = """Generates the C++ sources of a PyTorch lazy-tensor backend from its yaml.

Writes <name>/LazyIr.h, <name>/LazyNonNativeIr.h, <name>/<backend>NativeFunctions.h,
<name>/<backend>NativeFunctions.cpp, <name>/Register<backend>.cpp and, with
autograd = True, <name>/RegisterAutograd<backend>.cpp. With shards = N >= 2 the
kernels, the registration and the IR classes are split into N files each (see
lazygen/outputs.bzl for their names). Output groups `headers` and `sources`
split them for a cc_library (see examples/bazel).""",
    attrs = {
        "src": attr.label(
            doc = "The backend yaml (<backend>_native_functions.yaml).",
            allow_single_file = [".yaml", ".yml"],
            mandatory = True,
        ),
        "backend": attr.string(
            doc = "The yaml's `backend:` dispatch key; it names the outputs.",
            default = "Lazy",
        ),
        "autograd": attr.bool(
            doc = "Whether the yaml has an `autograd:` section (adds RegisterAutograd<backend>.cpp).",
            default = False,
        ),
        "shards": attr.int(
            doc = "Split the kernels, the registration and the IR classes into this many " +
                  "files each (--shards); 1 writes the unsharded files.",
            default = 1,
        ),
        "native_functions": attr.label(
            doc = "PyTorch's native_functions.yaml (the operator catalogue).",
            allow_single_file = True,
            mandatory = True,
        ),
        "tags_yaml": attr.label(
            doc = "PyTorch's tags.yaml, which native_functions.yaml refers to.",
            allow_single_file = True,
            mandatory = True,
        ),
        "backend_name": attr.string(doc = "--backend-name; empty keeps the generator's default."),
        "node_base": attr.string(doc = "--node-base: base class of the IR nodes."),
        "node_base_hdr": attr.string(doc = "--node-base-hdr: include spelling of the node base's header."),
        "tensor_class": attr.string(doc = "--tensor-class."),
        "tensor_class_hdr": attr.string(doc = "--tensor-class-hdr: include spelling."),
        "shape_inference_hdr": attr.string(
            doc = "Include spelling of the shape inference header; empty keeps " +
                  "torch/csrc/lazy/core/shape_inference.h.",
        ),
        "shape_inference_check": attr.bool(
            doc = "Check that shape_inference_file declares a shape function for every op that needs one.",
            default = True,
        ),
        "shape_inference_file": attr.label(
            doc = "The shape inference header read by the check (needed when the check is on).",
            allow_single_file = True,
        ),
        "impl": attr.label(
            doc = "The backend's kernels source (--impl-path), checked for every `supported` op.",
            allow_single_file = True,
        ),
        "gen_ts_lowerings": attr.bool(doc = "Generate TorchScript Lower() methods."),
        "build_in_tree": attr.bool(doc = "--build-in-tree, as PyTorch's own TorchScript backend."),
        "per_operator_headers": attr.bool(doc = "Include per-operator ATen headers."),
        "gen_forced_fallback_code": attr.bool(doc = "--gen-forced-fallback-code."),
        "qualify_names": attr.bool(doc = "--qualify-names."),
        "torch_version": attr.string(
            doc = "--torch-version: the torch release (\"2.8\", 2.5 to 2.15) whose torchgen output to write. " +
                  "Set it: the catalogue labels carry no torch metadata, so empty means the newest release, with a note.",
        ),
        "include_prefix": attr.string(
            doc = "Generated files include each other as <include_prefix/LazyIr.h>; " +
                  "empty means the package path + '/' + name.",
        ),
        "template_dirs": attr.label_list(
            doc = "Jinja2 template overrides; the folder of each file is passed as --template-dir.",
            allow_files = True,
        ),
        "extra_args": attr.string_list(doc = "More lazygen command-line arguments, appended last."),
        "tool": attr.label(
            doc = "The generator: a py_binary running lazygen (see examples/bazel/README.md " +
                  "for a rules_python one).",
            default = Label("//bazel:lazygen"),
            executable = True,
            cfg = "exec",
        ),
    },
)
