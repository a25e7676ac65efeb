"""A throwaway virtual environment holding a wheel of this checkout's
lazygen, in which backend projects are installed with `pip install
--no-build-isolation` as their authors would (tests/test_demo_backend.py,
tests/test_init.py). conftest.py makes one per session: the wheel is built
once for every project.

Why not `python -m venv --system-site-packages`: a developer's editable
install of lazygen (scikit-build-core's redirecting import hook, started by a
.pth file in site-packages) would still answer `import lazygen` inside such a
venv, so the wheel under test would never be used. Instead the venv is plain
and a .pth file of its own lists the host's site-packages folders as path
entries: torch, scikit-build-core, PyYAML and Jinja2 are importable without
reinstalling, the host's .pth hooks are not run, and the venv's own
site-packages (holding the new lazygen) comes first on sys.path.

Compiles go through ccache when it is installed, with CCACHE_BASEDIR at the
session's temporary root, so a project built again in a later session (at
another temporary path) is a cache hit.
"""

from __future__ import annotations

import os
import shutil
import site
import subprocess
import time
import venv
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def clean_env(**extra: str) -> dict[str, str]:
    """The host environment without anything that would put this checkout's lazygen on sys.path."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP")}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    env["PIP_NO_INPUT"] = "1"
    env.update(extra)
    return env


def _host_site_dirs() -> list[str]:
    dirs = list(site.getsitepackages())
    if site.ENABLE_USER_SITE:
        dirs.append(site.getusersitepackages())
    return [d for d in dict.fromkeys(dirs) if Path(d).is_dir()]


@dataclass
class WheelEnv:
    root: Path  # the session's temporary root (CCACHE_BASEDIR)
    python: Path  # the venv's interpreter
    site_packages: Path  # the venv's own site-packages
    seconds: dict[str, float] = field(default_factory=dict)

    def env(self) -> dict[str, str]:
        return clean_env(CCACHE_BASEDIR=str(self.root), CCACHE_NOHASHDIR="1")

    def run(self, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
        """The venv's python with `args`; -I: no PYTHONPATH, user site or cwd (the venv's .pth files still apply)."""
        return subprocess.run([str(self.python), "-I", *args], capture_output=True, text=True, env=self.env(), cwd=cwd)

    def pip_install(self, *args: str) -> tuple[str, float]:
        """`pip install --no-build-isolation` into the venv; returns the verbose log and the seconds it took.

        --no-index: everything needed is already importable, so a missing
        dependency fails here instead of being downloaded.
        """
        cmd = [str(self.python), "-m", "pip", "install", "--no-build-isolation", "--no-index", "-v", *args]
        if shutil.which("ccache"):
            cmd[5:5] = ["-C", "cmake.define.CMAKE_CXX_COMPILER_LAUNCHER=ccache"]
        start = time.monotonic()
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=self.env())
        took = time.monotonic() - start
        assert proc.returncode == 0, f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-20000:]}"
        return proc.stdout, took


def make_wheel_env(root: Path, env_dir: Path) -> WheelEnv:
    """A venv in `env_dir` with this checkout's lazygen installed from a
    wheel; `root` is the session's temporary root."""
    start = time.monotonic()
    venv.EnvBuilder(with_pip=False, symlinks=True).create(env_dir)
    python = env_dir / "bin" / "python"
    site_packages = Path(
        subprocess.run(
            [str(python), "-I", "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            capture_output=True, text=True, check=True, env=clean_env(),
        ).stdout.strip()
    )
    (site_packages / "_host_site_packages.pth").write_text("".join(d + "\n" for d in _host_site_dirs()))
    env = WheelEnv(root, python, site_packages)
    env.seconds["venv"] = time.monotonic() - start
    _, env.seconds["pip install lazygen"] = env.pip_install(str(REPO))
    return env
