"""Template-override mistakes that Jinja accepts silently are diagnostics.

Each case writes an override folder the way a user might get it wrong, runs
the command line (in this process, through lazygen.cli.main) into a folder
a good run generated, and checks: exit status 1, the `path:line:col:` of the
first error, words of its message and of its note, and that the earlier
output tree is untouched (bytes and mtimes). Positions are computed from the
text the test writes.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from lazygen.cli import main
from lazygen.template_check import template_blocks

REPO = Path(__file__).resolve().parents[1]
YAML = "backend: Lazy\ncpp_namespace: torch::lazy\nfull_codegen:\n- abs\n- add.Tensor\n"
IR = '{% extends "lazygen/ir_node.j2" %}\n'
KERNEL = '{% extends "lazygen/native_function.j2" %}\n'
LOWER = "{% block lowering_function %}// lowered by hand{% endblock %}\n"

_DIAG = re.compile(r"^(?P<where>.*?): (?P<kind>error|warning|note): (?P<message>.*)$")


@dataclass(frozen=True)
class Where:
    """The n-th occurrence of `needle` in template file `file` (None: the folder itself, no line)."""

    file: str | None
    needle: str = ""
    nth: int = 1


@dataclass(frozen=True)
class Case:
    files: dict[str, str]  # path under the case's folder -> text
    at: Where
    message: tuple[str, ...]  # words of the first error
    note: tuple[str, ...]  # words of its note
    dirs: tuple[str, ...] = ("templates",)  # the --template-dir folders, under the case's folder
    extra: tuple[str, ...] = field(default=())  # more command-line arguments


CASES = {
    "misspelt_block": Case(
        {"templates/ir_node.j2": IR + "{% block lowering_fuction %}// by hand{% endblock %}\n"},
        Where("templates/ir_node.j2", "lowering_fuction"),
        ("'lowering_fuction'", "lazygen/ir_node.j2", "replaces nothing"), ("did you mean 'lowering_function'",)),
    "misspelt_kernel_block": Case(
        {"templates/native_function.j2": KERNEL + "{% block metric %}COUNT();{% endblock %}\n"},
        Where("templates/native_function.j2", "metric "),
        ("'metric'", "replaces nothing"), ("did you mean 'metrics'",)),
    "block_of_the_other_template": Case(
        {"templates/ir_node.j2": IR + LOWER + "{% block get_device %}auto d = 0;{% endblock %}\n"},
        Where("templates/ir_node.j2", "get_device"),
        ("'get_device'", "replaces nothing"), ("native_function.j2",)),
    "misnamed_file": Case(
        {"templates/ir_nodes.j2": IR + LOWER},
        Where("templates/ir_nodes.j2", IR),
        ("ir_nodes.j2", "overrides nothing"), ("did you mean ir_node.j2",)),
    "misnamed_kernel_file": Case(
        {"templates/native_functions.j2": KERNEL},
        Where("templates/native_functions.j2", KERNEL),
        ("native_functions.j2", "overrides nothing"), ("did you mean native_function.j2",)),
    "other_suffix": Case(
        {"templates/ir_node.jinja": IR + LOWER},
        Where("templates/ir_node.jinja", IR),
        ("ir_node.jinja", "overrides nothing"), ("ir_node.j2",)),
    "override_in_a_subfolder": Case(
        {"templates/ir/ir_node.j2": IR + LOWER},
        Where("templates/ir/ir_node.j2", IR),
        ("overrides nothing", "top of a template folder"), ("move it to", os.path.join("templates", "ir_node.j2"))),
    "missing_folder": Case(
        {}, Where(None), ("template folder does not exist",), ("--template-dir",), dirs=("tmplates",)),
    "missing_folder_dry_run": Case(
        {}, Where(None), ("template folder does not exist",), ("--template-dir",), dirs=("tmplates",), extra=("--dry-run",)),
    "folder_is_a_file": Case(
        {"ir_node.j2": IR + LOWER}, Where(None), ("not a folder",), ("folder",), dirs=("ir_node.j2",)),
    "no_extends": Case(
        {"templates/ir_node.j2": LOWER},
        Where("templates/ir_node.j2", LOWER),
        ("does not", 'extends "lazygen/ir_node.j2"', "every IR node class"),
        ('start it with {% extends "lazygen/ir_node.j2" %}', "node_class")),
    "no_extends_kernel": Case(
        {"templates/native_function.j2": "{% block metrics %}COUNT();{% endblock %}\n"},
        Where("templates/native_function.j2", "{% block"),
        ("does not", "every kernel"), ('{% extends "lazygen/native_function.j2" %}',)),
    "self_extension": Case(
        {"templates/ir_node.j2": '{% extends "ir_node.j2" %}\n' + LOWER},
        Where("templates/ir_node.j2", '"ir_node.j2"'),
        ("this file itself",), ('use "lazygen/ir_node.j2"',)),
    "extension_cycle": Case(
        {"templates/ir_node.j2": '{% extends "base.j2" %}\n' + LOWER, "templates/base.j2": '{% extends "ir_node.j2" %}\n'},
        Where("templates/base.j2", '"ir_node.j2"'),
        ("leads back to this file",), ('use "lazygen/ir_node.j2"',)),
    "extends_the_wrong_stock_template": Case(
        {"templates/ir_node.j2": KERNEL + LOWER},
        Where("templates/ir_node.j2", '"lazygen/native_function.j2"'),
        ("lazygen/native_function.j2", "not lazygen's ir_node.j2"), ('{% extends "lazygen/ir_node.j2" %}',)),
    "extends_a_missing_template": Case(
        {"templates/ir_node.j2": '{% extends "lazygen/ir_node" %}\n' + LOWER},
        Where("templates/ir_node.j2", '"lazygen/ir_node"'),
        ("not found", "lazygen/ir_node"), ('did you mean "lazygen/ir_node.j2"',)),
    "block_in_a_file_template": Case(
        {"templates/LazyIr.h.j2": '{% extends "lazygen/LazyIr.h.j2" %}\n{% block includes %}#include <x.h>{% endblock %}\n'},
        Where("templates/LazyIr.h.j2", "includes"),
        ("'includes'", "replaces nothing"), ("has no blocks",)),
    "hidden_override_with_werror": Case(
        {"first/ir_node.j2": IR + LOWER, "second/ir_node.j2": IR + LOWER},
        Where("second/ir_node.j2", IR),
        ("never used", "earlier --template-dir folders win"), ("remove one",), dirs=("first", "second"), extra=("-Werror",)),
    "unused_helper_with_werror": Case(
        {"templates/ir_node.j2": IR + LOWER, "templates/helpers.j2": "{% macro m() %}x{% endmacro %}\n"},
        Where("templates/helpers.j2", "{% macro"),
        ("helpers.j2", "overrides nothing", "no override includes, imports or extends it"), ("includes, imports",),
        extra=("--warnings-as-errors",)),
    # Mistakes found while rendering still get a hint, and a column where the name shows.
    "undefined_name": Case(
        {"templates/ir_node.j2": IR + "{% block lowering_function %}// {{ nod.name }}{% endblock %}\n"},
        Where("templates/ir_node.j2", "nod."),
        ("UndefinedError", "'nod' is undefined"), ("did you mean 'node'",)),
    "undefined_field": Case(
        {"templates/native_function.j2": KERNEL + "{% block metrics %}COUNT({{ k.kernal }});{% endblock %}\n"},
        Where("templates/native_function.j2", "kernal"),
        ("UndefinedError", "kernal"), ("did you mean 'kernel'",)),
    "includes_itself": Case(
        {"templates/ir_node.j2": IR + '{% block lowering_function %}{% include "ir_node.j2" %}{% endblock %}\n'},
        Where("templates/ir_node.j2", '"ir_node.j2"'),
        ("names this file itself",), ('use "lazygen/ir_node.j2"',)),
    # Recursion the checks cannot see (a helper including itself) still gets a hint.
    "recursion_while_rendering": Case(
        {"templates/ir_node.j2": IR + '{% block lowering_function %}{% include "loop.j2" %}{% endblock %}\n',
         "templates/loop.j2": '// {% include "loop.j2" %}\n'},
        Where("templates/loop.j2", "//"),
        ("RecursionError",), ("includes or extends itself",)),
}


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("template_check")
    (work / "backend.yaml").write_text(YAML, encoding="utf-8")
    return work


@pytest.fixture(autouse=True)
def _cache(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LAZYGEN_CACHE_DIR", str(workdir / "cache"))
    monkeypatch.chdir(workdir)


def lazygen(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    capsys.readouterr()
    status = main(["-s", "backend.yaml", "--no-shape-inference-check", *args])
    out, err = capsys.readouterr()
    assert out == ""
    return status, err


def snapshot(folder: Path) -> dict[str, tuple[bytes, int]]:
    return {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(folder.iterdir())}


@pytest.fixture(scope="module")
def good_output(workdir: Path) -> Path:
    """Generated without overrides; old mtimes, so that a rewrite would show."""
    out = workdir / "generated"
    env = dict(os.environ, LAZYGEN_CACHE_DIR=str(workdir / "cache"))
    proc = subprocess.run([sys.executable, "-m", "lazygen", "-s", "backend.yaml", "-o", str(out), "--no-shape-inference-check"],
                          cwd=workdir, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    for p in out.iterdir():
        os.utime(p, ns=(1_000_000_000_000_000_000, 1_000_000_000_000_000_000))
    return out


def diagnostics(stderr: str) -> list[tuple[str, str, str]]:
    """(where, kind, message) of each line; every line must be a diagnostic."""
    found = []
    for line in stderr.splitlines():
        m = _DIAG.match(line)
        assert m, f"not a diagnostic: {line!r}\n{stderr}"
        found.append((m["where"], m["kind"], m["message"]))
    return found


def expected_where(at: Where, files: dict[str, str]) -> str:
    """`file:line:col` of the needle."""
    assert at.file is not None
    text = files[at.file]
    offset = -1
    for _ in range(at.nth):
        offset = text.index(at.needle, offset + 1)
    before = text[:offset]
    line = before.count("\n") + 1
    col = offset - (before.rfind("\n") + 1) + 1
    return f"{at.file}:{line}:{col}"


def write(folder: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text, encoding="utf-8")


@pytest.mark.parametrize("name", list(CASES))
def test_override_mistake(name: str, workdir: Path, good_output: Path, capsys: pytest.CaptureFixture[str]) -> None:
    case = CASES[name]
    case_dir = workdir / "cases" / name
    write(case_dir, case.files)
    dirs = [arg for d in case.dirs for arg in ("--template-dir", os.path.join("cases", name, d))]
    before = snapshot(good_output)

    status, err = lazygen(capsys, "-o", str(good_output), *dirs, *case.extra)

    assert status == 1, err
    found = diagnostics(err)
    if case.at.file is None:
        where = os.path.join("cases", name, case.dirs[0])
    else:
        where = os.path.join("cases", name, expected_where(case.at, case.files))
    # The error at that place, and the note that follows it.
    i = next((i for i, d in enumerate(found) if d[:2] == (where, "error")), None)
    assert i is not None, f"no error at {where}:\n{err}"
    for word in case.message:
        assert word in found[i][2], (word, err)
    assert i + 1 < len(found) and found[i + 1][:2] == (where, "note"), f"no note: {err}"
    for word in case.note:
        assert word in found[i + 1][2], (word, err)
    assert snapshot(good_output) == before, "the earlier output tree was touched"
    # Nor is a new output folder created.
    status, _ = lazygen(capsys, "-o", str(workdir / "fresh" / name), *dirs, *case.extra)
    assert status == 1 and not (workdir / "fresh" / name).exists()


def test_every_problem_is_reported_at_once(workdir: Path, good_output: Path, capsys: pytest.CaptureFixture[str]) -> None:
    files = {"t/ir_node.j2": IR + "{% block lowering_fuction %}x{% endblock %}\n{% block node_base_ctor %}x{% endblock %}\n",
             "t/native_functions.j2": KERNEL}
    write(workdir / "all", files)
    before = snapshot(good_output)
    status, err = lazygen(capsys, "-o", str(good_output), "--template-dir", "all/t", "--template-dir", "all/missing")
    assert status == 1
    errors = [(w, m) for w, k, m in diagnostics(err) if k == "error"]
    assert [w for w, _ in errors] == [os.path.join("all", "missing"), *(os.path.join("all", expected_where(Where(f, n), files))
                                      for f, n in [("t/ir_node.j2", "lowering_fuction"), ("t/ir_node.j2", "node_base_ctor"),
                                                   ("t/native_functions.j2", KERNEL)])], err
    assert snapshot(good_output) == before


def test_unused_helper_is_a_warning(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write(workdir / "warn", {"t/ir_node.j2": IR + LOWER, "t/notes/helpers.j2": "{# later #}\n"})
    status, err = lazygen(capsys, "-o", "warn/out", "--template-dir", "warn/t")
    assert status == 0, err
    found = diagnostics(err)
    assert [(w, k) for w, k, _ in found] == [(os.path.join("warn", "t", "notes", "helpers.j2") + ":1:1", "warning"),
                                             (os.path.join("warn", "t", "notes", "helpers.j2") + ":1:1", "note")], err
    assert "notes/helpers.j2 overrides nothing" in found[0][2]
    assert b"// lowered by hand" in (workdir / "warn" / "out" / "LazyIr.h").read_bytes()


def test_used_helpers_and_other_files_are_fine(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Files an override includes, imports or extends, hidden files and a
    README are no mistakes."""
    write(workdir / "fine", {
        "t/ir_node.j2": '{% extends "parts/base.j2" %}\n{% import "macros.j2" as m %}\n'
                        "{% block lowering_function %}{{ m.lower(node) }}{% endblock %}\n",
        "t/parts/base.j2": IR + "{% block create_function %}{% include 'parts/create.j2' %}{% endblock %}\n",
        "t/parts/create.j2": "// create {{ node.name }}",
        "t/macros.j2": "{% macro lower(node) %}// lower {{ node.name }}{% endmacro %}\n",
        "t/README.md": "My backend's templates.\n",
        "t/.ir_node.j2.swp": "binary junk",
    })
    status, err = lazygen(capsys, "-o", "fine/out", "--template-dir", "fine/t")
    assert (status, err) == (0, "")
    text = (workdir / "fine" / "out" / "LazyIr.h").read_text(encoding="utf-8")
    assert "  // lower AddTensor\n" in text and "  // create Abs\n" in text


def test_no_op_fast_path_does_not_hide_a_new_mistake(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = workdir / "fast" / "t"
    write(folder, {"ir_node.j2": IR + LOWER})
    args = ("-o", "fast/out", "--template-dir", "fast/t")
    assert lazygen(capsys, *args) == (0, "")
    os.utime(folder / "ir_node.j2", ns=(1_000_000_000, 1_000_000_000))  # old enough to be recorded
    assert lazygen(capsys, *args) == (0, "")
    # The mistake is introduced after a successful (recorded) run.
    (folder / "ir_node.j2").write_text(IR + LOWER.replace("lowering_function", "lowering_fuction"), encoding="utf-8")
    status, err = lazygen(capsys, *args)
    assert status == 1 and "lowering_fuction" in err, err
    (folder / "ir_node.j2").write_text(IR + LOWER, encoding="utf-8")
    assert lazygen(capsys, *args)[0] == 0
    write(folder, {"ir_nodes.j2": IR + LOWER})
    status, err = lazygen(capsys, *args)
    assert status == 1 and "ir_nodes.j2 overrides nothing" in err, err


def test_self_extension_from_a_real_process_has_no_traceback(workdir: Path) -> None:
    """Once a RecursionError: now a diagnostic, also from `python -m lazygen`."""
    write(workdir / "proc", {"t/ir_node.j2": '{% extends "ir_node.j2" %}\n' + LOWER})
    env = dict(os.environ, LAZYGEN_CACHE_DIR=str(workdir / "cache"))
    env["PYTHONPATH"] = os.pathsep.join([str(REPO)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    proc = subprocess.run([sys.executable, "-m", "lazygen", "-s", "backend.yaml", "-o", "proc/out", "--dry-run",
                           "--template-dir", "proc/t", "--no-shape-inference-check"],
                          cwd=workdir, env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert f'{os.path.join("proc", "t", "ir_node.j2")}:1:12: note: to extend lazygen\'s own template, use "lazygen/ir_node.j2"' in proc.stderr


def test_template_blocks_names_the_override_of_each_block(workdir: Path) -> None:
    folder = workdir / "blocks"
    write(folder, {"ir_node.j2": IR + LOWER,
                   "native_function.j2": KERNEL + "{% block build_ir_node %}auto node = Make();{% endblock %}\n"})
    listing = template_blocks([folder])
    ir = {b.name: b for b in listing["ir_node.j2"]}
    kernel = {b.name: b for b in listing["native_function.j2"]}
    assert ir["lowering_function"].override == folder / "ir_node.j2"
    assert ir["node_class"].override is None and ir["node_base_ctor_call"].override is None
    assert ir["lowering_function"].parent == "node_class"
    assert kernel["build_ir_node"].override == folder / "native_function.j2"
    # shape_inference sits inside build_ir_node: replacing that drops it.
    assert kernel["shape_inference"].parent == "build_ir_node"
    assert kernel["shape_inference"].override == folder / "native_function.j2"
    assert kernel["metrics"].override is None
    assert listing["LazyIr.h.j2"] == ()
    # The lines are those of the {% block %} tags in lazygen's templates.
    stock = (REPO / "lazygen" / "templates" / "ir_node.j2").read_text(encoding="utf-8").splitlines()
    assert "block lowering_function" in stock[ir["lowering_function"].line - 1]
