"""Other torch releases' torchgen, for the per-release differential tests.

Only torch 2.13.0 is installed. For another release the test downloads its
wheel without dependencies (once: wheels are kept in a cache folder that CI
reuses) and unpacks only what the tests read into a per-release root:

    ROOT/<version>/torchgen/...                 the reference, with its packaged catalogue
    ROOT/<version>/torch/version.py             } what lazygen reads the release from
    ROOT/<version>/torch-<version>.dist-info/   }
    ROOT/<version>/torch/include/torch/csrc/lazy/core/shape_inference.h
                                                what the TS yaml's shape check reads

The reference then runs as `PYTHONPATH=ROOT/<version> python reference_driver.py`.

    python tests/torch_releases.py [2.5.1 2.8.0 ... | all]
        downloads and unpacks those releases (.ci/run calls it before the tests;
        without arguments, CI_RELEASES).
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

# The releases the CI differential test covers (tests/test_releases.py).
CI_RELEASES = ("2.5.1", "2.8.0", "2.14.1", "2.15.0")
# Every release of the supported range checked by hand (LAZYGEN_TEST_RELEASES=all):
# each minor release and the patch releases published for it.
ALL_RELEASES = ("2.5.0", "2.5.1", "2.6.0", "2.7.0", "2.7.1", "2.8.0", "2.9.0", "2.9.1", "2.10.0", "2.11.0",
                "2.12.0", "2.12.1", "2.13.0", "2.14.0", "2.14.1", "2.15.0")

SHAPE_INFERENCE_H = "torch/include/torch/csrc/lazy/core/shape_inference.h"


def cache_dir() -> Path:
    return Path(os.environ.get("LAZYGEN_TEST_WHEELS") or Path.home() / ".cache" / "lazygen-test-wheels")


def _wanted(name: str, version: str) -> bool:
    top = name.split("/")[0]
    # A local build's metadata folder carries its local version: torch-2.13.0+cpu.dist-info.
    dist_info = top == f"torch-{version}.dist-info" or (top.startswith(f"torch-{version}+") and top.endswith(".dist-info"))
    return (top == "torchgen" or dist_info) and not name.endswith("/") or name in ("torch/version.py", SHAPE_INFERENCE_H)


def _cached_wheel(version: str) -> Path | None:
    # torch-2.15.0-cp311-...whl, or a local build's torch-2.13.0+cpu-cp311-...whl
    found = sorted([*cache_dir().glob(f"torch-{version}-*.whl"), *cache_dir().glob(f"torch-{version}+*.whl")])
    return found[0] if found else None


def wheel(version: str) -> Path:
    """The release's wheel, downloaded into the cache folder unless it is there."""
    found = _cached_wheel(version)
    if found is not None:
        return found
    cache_dir().mkdir(parents=True, exist_ok=True)
    # The machine's pip constraint file caps torch; lift it for this download alone.
    env = {**os.environ, "PIP_CONSTRAINT": "/dev/null"}
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "--progress-bar", "off", "-q", f"torch=={version}",
         "-d", str(cache_dir())],
        env=env, capture_output=True, text=True,
    )
    found = _cached_wheel(version)
    if proc.returncode != 0 or found is None:
        raise RuntimeError(f"cannot download torch=={version}: {proc.stderr.strip() or proc.stdout.strip()}")
    return found


def release_root(version: str) -> Path:
    """ROOT/<version>, downloaded and unpacked on first use (under a lock:
    test processes may ask at once)."""
    root = cache_dir() / "roots" / version
    if (root / "torchgen" / "packaged").is_dir():
        return root
    root.parent.mkdir(parents=True, exist_ok=True)
    with open(cache_dir() / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (root / "torchgen" / "packaged").is_dir():
            return root
        with zipfile.ZipFile(wheel(version)) as whl:
            scratch = Path(tempfile.mkdtemp(prefix=f".{version}-", dir=root.parent))
            whl.extractall(scratch, [n for n in whl.namelist() if _wanted(n, version)])
        shutil.rmtree(root, ignore_errors=True)
        os.replace(scratch, root)
    return root


def main(argv: list[str]) -> int:
    for version in ALL_RELEASES if argv == ["all"] else argv or CI_RELEASES:
        print(release_root(version))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
