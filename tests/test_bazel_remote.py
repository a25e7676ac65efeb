"""Bazel with a real HTTP remote cache (nginx with WebDAV PUT on loopback).

Workspace A fills the cache; a copy at another absolute path, with its own
output base and user root, must then take every LazyGen and compile action
from it. Only the small smoke target is built: the cache, not the compiler,
is under test. Workspace setup comes from test_bazel.py.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from test_bazel import Workspace, _missing_prerequisite, _rmtree

TARGET = "//:lazy_ir_smoke"
ACTIONS = {"LazyGen", "CppCompile"}

NGINX_CONF = """\
{user}
daemon off;
master_process off;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    client_max_body_size 0;
    server {{
        listen 127.0.0.1:{port};
        location / {{
            root {tmp}/cache;
            dav_methods PUT;
            create_full_put_path on;
        }}
    }}
}}
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def http_cache(request):
    """The URL of a running nginx WebDAV cache; stopped at the end of the module."""
    nginx = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
    if nginx is None:
        pytest.skip("nginx not installed (apt-get install nginx)")
    tmp = Path(tempfile.mkdtemp(prefix="lazygen-nginx-"))
    (tmp / "cache").mkdir()
    port = _free_port()
    user = "user root;" if os.geteuid() == 0 else ""
    (tmp / "nginx.conf").write_text(NGINX_CONF.format(user=user, tmp=tmp, port=port))
    server = subprocess.Popen(
        [nginx, "-p", str(tmp), "-c", str(tmp / "nginx.conf")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )

    def stop():
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
        shutil.rmtree(tmp, ignore_errors=True)

    request.addfinalizer(stop)
    for _ in range(100):
        if server.poll() is not None:
            pytest.fail("nginx exited: " + (tmp / "error.log").read_text())
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            time.sleep(0.05)
    else:
        pytest.fail("nginx did not listen")
    return f"http://127.0.0.1:{port}"


@pytest.fixture(scope="module")
def builds(http_cache):
    reason = _missing_prerequisite()
    if reason:
        pytest.skip(reason)
    flags = (f"--remote_cache={http_cache}", "-c", "fastbuild")
    tmp_a = Path(tempfile.mkdtemp(prefix="lazygen-remote-a-"))
    tmp_b = Path(tempfile.mkdtemp(prefix="lazygen-remote-b-other-path-"))
    a = Workspace(tmp_a, disk_cache=False)
    b = Workspace(tmp_b, disk_cache=False)
    try:
        first = a.build(TARGET, flags=flags)
        assert first.returncode == 0, first.output
        a.bazel("shutdown", timeout=120)
        second = b.build(TARGET, flags=flags)
        b.edit_yaml(lambda text: text + "# a comment changes nothing generated\n")
        comment = b.build(TARGET, flags=flags)
        yield first, second, comment
    finally:
        for ws in (a, b):
            ws.bazel("shutdown", timeout=120)
        _rmtree(tmp_a)
        _rmtree(tmp_b)


def _counts(build) -> dict[str, tuple[int, int]]:
    """{mnemonic: (executed, remote cache hits)} for the LazyGen and compile spawns."""
    counts = {}
    for spawn in build.spawns:
        if spawn["mnemonic"] in ACTIONS:
            executed, hits = counts.get(spawn["mnemonic"], (0, 0))
            if spawn.get("remoteCacheHit"):
                hits += 1
            else:
                executed += 1
            counts[spawn["mnemonic"]] = (executed, hits)
    return counts


def test_first_build_executes_and_fills_the_cache(builds, http_cache):
    first, _, _ = builds
    counts = _counts(first)
    print("first build {mnemonic: (executed, hits)}:", counts)
    assert counts["LazyGen"] == (1, 0)
    assert counts["CppCompile"][0] >= 1


def test_other_path_and_output_base_hits_the_remote_cache_for_everything(builds):
    first, second, _ = builds
    assert second.returncode == 0, second.output
    counts = _counts(second)
    print("second build {mnemonic: (executed, hits)}:", counts)
    assert set(counts) == ACTIONS, second.mnemonics()
    assert all(executed == 0 for executed, _ in counts.values()), counts
    assert counts["LazyGen"] == (0, 1)
    assert counts["CppCompile"][1] == _counts(first)["CppCompile"][0]


def test_comment_edit_reruns_lazygen_and_no_compile(builds):
    _, _, comment = builds
    assert comment.returncode == 0, comment.output
    counts = _counts(comment)
    print("comment build {mnemonic: (executed, hits)}:", counts)
    assert counts["LazyGen"] == (1, 0)
    assert counts.get("CppCompile", (0, 0))[0] == 0, counts
