"""Where lazygen keeps its caches (the catalogue, parsed yamls, compiled
templates, no-op records): $LAZYGEN_CACHE_DIR, else $XDG_CACHE_HOME/lazygen,
else ~/.cache/lazygen. Standard library only: the no-op fast path uses it."""

from __future__ import annotations

import os


def cache_dir() -> str | None:
    """The cache folder, or None when there is no sensible one (no home):
    then nothing is cached. A relative XDG_CACHE_HOME is ignored, as the XDG
    base directory spec says; so is an empty or relative HOME, or one that is
    the root folder."""
    own = os.environ.get("LAZYGEN_CACHE_DIR")
    if own:
        return own
    xdg = os.environ.get("XDG_CACHE_HOME")
    if xdg and os.path.isabs(xdg):
        return os.path.join(xdg, "lazygen")
    home = _home()
    return os.path.join(home, ".cache", "lazygen") if home else None


def _home() -> str | None:
    """$HOME, else the user's home in the password database."""
    home = os.environ.get("HOME")
    if _usable(home):
        return home
    try:
        import pwd

        home = pwd.getpwuid(os.getuid()).pw_dir
    except (ImportError, KeyError, AttributeError):
        return None
    return home if _usable(home) else None


def _usable(home: str | None) -> bool:
    return bool(home) and os.path.isabs(home) and os.path.normpath(home) != os.sep
