"""The torch releases whose torchgen lazygen reproduces, and what differs
between their outputs: one row of facts per release, read by the templates
(as `release`) and by the layout functions of lazygen.render. Nothing else
in lazygen compares versions.

Patch releases of one minor release have the same torchgen, so a release is
named by its major.minor. Which one a run reproduces comes from
--torch-version, else from the torch distribution beside the catalogue's
torchgen folder (lazygen.locate.torch_version_near), else the newest.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from lazygen.errors import Diagnostic, UserError

# The macros of Register<Key>.cpp's `#if defined(...) || ...` guard.
_MAIN_LIBS_2_5 = ("CAFFE2", "TORCH_CUDA", "TORCH_HIP", "TORCH_CUDA_CU", "TORCH_CUDA_CPP")
_MAIN_LIBS_2_6 = ("CAFFE2", "TORCH_CUDA", "TORCH_HIP", "TORCH_XPU", "TORCH_CUDA_CU", "TORCH_CUDA_CPP")
_MAIN_LIBS_2_9 = ("CAFFE2", "TORCH_CUDA", "TORCH_HIP", "TORCH_XPU")
_MAIN_LIBS_2_11 = ("CAFFE2", "TORCH_CUDA", "TORCH_XPU")


@dataclass(frozen=True)
class Release:
    """One release's facts; the defaults are the newest release's."""

    name: str  # "2.13"
    # torchgen 2.8 began right-stripping every line it writes; before, lines
    # kept their trailing blanks and an indented block indented blank lines too.
    strip_lines: bool = True
    # What an IR node's ToString() returns.
    to_string_result: str = "std::move(ss).str()"
    # to_meta() in <Key>NativeFunctions.cpp wraps its dtype/layout/device in std::make_optional.
    to_meta_make_optional: bool = False
    # Register<Key>.cpp: the __STDC_FORMAT_MACROS prologue, the spelling in the
    # "NOTE" comment, the guard's macros, the NamedTensorUtils.h include, and
    # whether resize_out/check_inplace get a namespace block of their own
    # (before 2.7 they open the definitions' block).
    format_macros_prologue: bool = False
    reuse_spelling: str = "reuse"
    main_lib_macros: tuple[str, ...] = _MAIN_LIBS_2_11
    named_tensor_include: bool = False
    helpers_block: bool = True
    # The catalogue's autogen: from 2.6 core CompositeImplicitAutograd ops get
    # out= variants too, and a mutable variant is preferred to an inplace one
    # as the model of the generated variants.
    autogen_core_composites: bool = True
    autogen_mutable_first: bool = True

    @property
    def catalogue_facts(self) -> str:
        """The facts the catalogue's model depends on (its cache key): releases
        that share them share cached catalogues."""
        return f"autogen_core_composites={self.autogen_core_composites},autogen_mutable_first={self.autogen_mutable_first}"

    @property
    def main_lib_guard(self) -> list[str]:
        """The guard's condition lines, `||` aligned as torchgen aligns them."""
        names = [f"defined({m}_BUILD_MAIN_LIB)" for m in self.main_lib_macros]
        return [f"{'#if' if i == 0 else '   '} {n:<37} || \\" for i, n in enumerate(names[:-1])] + [f"    {names[-1]}"]


# Each row says how that release differs from the newest.
_OLD_LAYOUT = dict(strip_lines=False, format_macros_prologue=True)
_BEFORE_2_13 = dict(to_string_result="ss.str()", named_tensor_include=True)
RELEASES: dict[str, Release] = {r.name: r for r in (
    Release("2.5", **_OLD_LAYOUT, **_BEFORE_2_13, to_meta_make_optional=True, reuse_spelling="re-use",
            main_lib_macros=_MAIN_LIBS_2_5, helpers_block=False, autogen_core_composites=False, autogen_mutable_first=False),
    Release("2.6", **_OLD_LAYOUT, **_BEFORE_2_13, reuse_spelling="re-use", main_lib_macros=_MAIN_LIBS_2_6, helpers_block=False),
    Release("2.7", **_OLD_LAYOUT, **_BEFORE_2_13, reuse_spelling="re-use", main_lib_macros=_MAIN_LIBS_2_6),
    Release("2.8", **_BEFORE_2_13, reuse_spelling="re-use", main_lib_macros=_MAIN_LIBS_2_6),
    Release("2.9", **_BEFORE_2_13, main_lib_macros=_MAIN_LIBS_2_9),
    Release("2.10", **_BEFORE_2_13, main_lib_macros=_MAIN_LIBS_2_9),
    Release("2.11", **_BEFORE_2_13),
    Release("2.12", **_BEFORE_2_13),
    Release("2.13"),
    Release("2.14"),
    Release("2.15"),
)}
NEWEST = RELEASES["2.15"]
SUPPORTED = f"{next(iter(RELEASES))} to {NEWEST.name}"

# X.Y[.Z], optionally with a pre-release, dev or post part and a local
# version (torch/version.py says "2.5.1+cu124").
_VERSION = re.compile(r"(\d+)\.(\d+)(?:\.\d+)?(?:(?:a|b|rc|\.dev|\.post)\d+)*(?:\+[A-Za-z0-9.]+)?")


def release_of(version: str) -> Release | None:
    """The release a version string names; None when it names none (or is malformed)."""
    m = _VERSION.fullmatch(version.strip())
    if m is None:
        return None
    return RELEASES.get(f"{int(m.group(1))}.{int(m.group(2))}")


def _unknown(version: str, where: str, hint: str) -> UserError:
    if _VERSION.fullmatch(version.strip()) is None:
        message = f"'{version}' is not a torch version (X.Y or X.Y.Z)"
    else:
        message = f"torch {version} is not a release lazygen knows: it reproduces torchgen of torch {SUPPORTED}"
    return UserError.at(where, None, None, message, hint)


def choose(flag: str | None, found: tuple[str, Path] | None, catalogue: Path) -> tuple[Release, list[Diagnostic]]:
    """The release to reproduce, and the notes to print about the choice.

    `flag` is --torch-version; `found` the (version, file) read beside the
    catalogue's torchgen folder; `catalogue` the native_functions.yaml used."""
    if flag is not None:
        chosen = release_of(flag)
        if chosen is None:
            raise _unknown(flag, "--torch-version", f"pass one of {', '.join(RELEASES)} (a patch number may follow)")
        notes = []
        if found is not None and not _same(flag, found[0]):
            notes.append(Diagnostic(str(found[1]), None, None,
                                    f"the catalogue comes from torch {found[0]}, but --torch-version {flag} wins: "
                                    f"writing what torchgen of torch {chosen.name} writes", severity="note"))
        return chosen, notes
    if found is not None:
        version, source = found
        chosen = release_of(version)
        if chosen is None:
            raise _unknown(version, str(source), f"pass --torch-version X.Y to say which release's output to write ({SUPPORTED})")
        return chosen, []
    return NEWEST, [Diagnostic(str(catalogue), None, None,
                               f"no torch version found beside this catalogue: writing what torchgen of torch {NEWEST.name} "
                               f"writes (pass --torch-version X.Y to choose)", severity="note")]


def _same(flag: str, found: str) -> bool:
    """Whether --torch-version names the found version (as precisely as the flag says)."""
    given = flag.strip().split("+")[0].split(".")
    return found.strip().split("+")[0].split(".")[: len(given)] == given
