"""A small stand-in for Buck2, for tests: evaluate BUCK/.bzl files, run genrules.

Buck2 cannot be installed here, so this evaluates build files with starlark-rust
(the interpreter Buck2 embeds, through starlark-pyo3) and records every rule
call, then runs a recorded genrule the way Buck2's prelude genrule does:
sources symlinked into a `srcs` folder, `$(exe ...)`/`$(location ...)` macros
expanded to paths relative to it, `OUT`/`SRCDIR`/`SRCS`/`TMP` in the
environment, and a bash script that changes into `srcs` and runs the command.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import starlark as sl

# The rules a test's BUCK files may call; native.<rule> in .bzl files too.
RULE_KINDS = ("genrule", "cxx_library", "export_file", "filegroup", "python_binary", "sh_binary", "command_alias")

_LOAD_LABEL = re.compile(r"^@?(?P<cell>[A-Za-z0-9_.-]*)//(?P<package>[^:]*):(?P<file>[^:]+)$")
_MACRO = re.compile(r"\$\((?P<name>[a-z_]+)\s+(?P<arg>[^)]*)\)")


@dataclass(frozen=True)
class Rule:
    """One recorded rule call."""

    kind: str
    package: str
    attrs: dict


@dataclass(frozen=True)
class Target:
    """What a label stands for when a genrule runs: a file, or a command."""

    path: Path | None = None
    exe: tuple[str, ...] = ()


@dataclass
class GenruleRun:
    """The result of running one genrule."""

    returncode: int
    stdout: str
    stderr: str
    srcs_dir: Path
    out_dir: Path
    script: str

    def declared_outputs(self, rule: Rule) -> dict[str, Path]:
        """Every output path the rule declares (named outputs and default_outs), by its name."""
        paths = {path for paths in (rule.attrs.get("outs") or {}).values() for path in paths}
        paths.update(rule.attrs.get("default_outs") or [])
        return {path: self.out_dir / path for path in sorted(paths)}


@dataclass
class BuckEvaluator:
    """Evaluates build files of a set of cells (cell name -> folder)."""

    cells: dict[str, Path]
    root_cell: str
    rules: list[Rule] = field(default_factory=list)
    _modules: dict[Path, sl.FrozenModule] = field(default_factory=dict)
    _package: str = ""

    def __post_init__(self) -> None:
        self._globals = sl.Globals.extended_by(
            [sl.LibraryExtension.StructType, sl.LibraryExtension.Json, sl.LibraryExtension.Print]
        )
        self._dialect = sl.Dialect.extended()

    def eval_build_file(self, package: str, text: str, cell: str | None = None) -> list[Rule]:
        """Evaluates BUCK file `text` of `package`; returns the rules it declared."""
        cell = cell or self.root_cell
        first = len(self.rules)
        self._package = package
        module = self._module_with_prelude(build_file=True)
        name = f"{cell}//{package}:BUCK"
        ast = sl.parse(name, text, self._dialect)
        sl.eval(module, ast, self._globals, self._loader(cell, package))
        return self.rules[first:]

    def _module_with_prelude(self, build_file: bool) -> sl.Module:
        module = sl.Module()
        for kind in RULE_KINDS:
            module.add_callable(f"_rule_{kind}", self._recorder(kind))
        module.add_callable("_package_name", lambda: self._package)
        fields = ", ".join(f"{kind} = _rule_{kind}" for kind in RULE_KINDS)
        prelude = f"native = struct({fields}, package_name = _package_name)\n"
        if build_file:
            # BUCK files call rules (and package_name) as plain globals.
            prelude += "".join(f"{kind} = _rule_{kind}\n" for kind in RULE_KINDS)
            prelude += "package_name = _package_name\n"
        sl.eval(module, sl.parse("prelude.bzl", prelude, self._dialect), self._globals)
        return module

    def _recorder(self, kind: str):
        def record(**attrs):
            if "name" not in attrs:
                raise ValueError(f"{kind}() needs a name")
            self.rules.append(Rule(kind, self._package, attrs))

        return record

    def _loader(self, cell: str, package: str) -> sl.FileLoader:
        return sl.FileLoader(lambda label: self._load(label, cell, package))

    def _load(self, label: str, cell: str, package: str) -> sl.FrozenModule:
        if label.startswith(":"):
            target_cell, target_package, file = cell, package, label[1:]
        else:
            match = _LOAD_LABEL.match(label)
            if not match:
                raise ValueError(f"cannot read load label {label!r}")
            target_cell = match["cell"] or cell
            target_package, file = match["package"], match["file"]
        if target_cell not in self.cells:
            raise ValueError(f"load({label!r}): unknown cell {target_cell!r}")
        path = self.cells[target_cell] / target_package / file
        if path not in self._modules:
            module = self._module_with_prelude(build_file=False)
            ast = sl.parse(f"{target_cell}//{target_package}:{file}", path.read_text(), self._dialect)
            sl.eval(module, ast, self._globals, self._loader(target_cell, target_package))
            self._modules[path] = module.freeze()
        return self._modules[path]


def normalize_label(label: str, package: str) -> str:
    """`:x` -> `//package:x`, `@cell//p:x` -> `cell//p:x`."""
    if label.startswith(":"):
        return f"//{package}{label}"
    return label[1:] if label.startswith("@") else label


def run_genrule(
    rule: Rule,
    project: Path,
    targets: dict[str, Target],
    env: dict[str, str] | None = None,
) -> GenruleRun:
    """Runs a recorded genrule like Buck2's prelude does, inside `project`/buck-out."""
    if rule.kind != "genrule":
        raise ValueError(f"{rule.attrs['name']} is a {rule.kind}, not a genrule")
    attrs = rule.attrs
    action = project / "buck-out" / "gen" / rule.package / f"__{attrs['name']}__"
    if action.exists():
        shutil.rmtree(action)  # Buck2 clears a rule's outputs before running it.
    srcs_dir, out_dir, tmp_dir = action / "srcs", action / "out", action / "tmp"
    srcs_dir.mkdir(parents=True)
    tmp_dir.mkdir()

    links = _srcs_links(attrs.get("srcs") or [], project / rule.package, targets, rule.package)
    for name, source in links.items():
        link = srcs_dir / name
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(source)

    cmd = attrs.get("bash") or attrs["cmd"]
    cmd = _MACRO.sub(lambda m: _expand(m, rule.package, targets, srcs_dir), cmd)
    if "$(" in cmd.replace("\\$(", ""):
        raise ValueError(f"unexpanded macro left in: {cmd}")

    # Paths in the environment are relative to srcs, as Buck2 relativizes them.
    run_env = dict(os.environ if env is None else env)
    run_env.update(
        OUT=os.path.relpath(out_dir, srcs_dir),
        SRCDIR="./.",
        SRCS=" ".join(f"././{name}" for name in links),
        TMPDIR=str(tmp_dir),
    )
    script = "\n".join(
        [
            f"cd {shlex.quote(os.path.relpath(srcs_dir, project))}",
            'mkdir -p "$OUT" || exit 99',
            "export TMP=${TMPDIR:-/tmp}",
            cmd,
            "",
        ]
    )
    (action / "genrule.sh").write_text(script)
    done = subprocess.run(
        ["bash", "-e", str(action / "genrule.sh")],
        cwd=project,
        env=run_env,
        capture_output=True,
        text=True,
    )
    return GenruleRun(done.returncode, done.stdout, done.stderr, srcs_dir, out_dir, script)


def _srcs_links(srcs, package_dir: Path, targets: dict[str, Target], package: str) -> dict[str, Path]:
    """Name in the srcs folder -> file it links to."""
    if isinstance(srcs, dict):
        items = list(srcs.items())
    else:
        items = [(src, src) for src in srcs]
    links: dict[str, Path] = {}
    for name, src in items:
        if src.startswith(":") or "//" in src:
            source = _target(src, package, targets).path
            if source is None:
                raise ValueError(f"srcs entry {src} is not a file target")
            if not isinstance(srcs, dict):
                name = source.name
        else:
            source = package_dir / src
            if not source.exists():
                raise FileNotFoundError(f"srcs entry {src!r}: no such file {source}")
        if name in links and links[name] != source:
            raise ValueError(f"genrule srcs include duplicative name {name!r}")
        links[name] = source.resolve()
    return links


def _target(label: str, package: str, targets: dict[str, Target]) -> Target:
    key = normalize_label(label, package)
    if key not in targets:
        raise KeyError(f"no target {key} in this test project")
    return targets[key]


def _expand(match: re.Match, package: str, targets: dict[str, Target], srcs_dir: Path) -> str:
    name, label = match["name"], match["arg"].strip()
    target = _target(label, package, targets)
    if name == "exe":
        if not target.exe:
            raise ValueError(f"$(exe {label}): not an executable target")
        return " ".join(shlex.quote(word) for word in target.exe)
    if name == "location":
        if target.path is None:
            raise ValueError(f"$(location {label}): not a file target")
        return os.path.relpath(target.path, srcs_dir)
    raise ValueError(f"macro $({name} ...) is not supported by this stand-in")
