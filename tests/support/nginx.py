"""nginx from the distribution (`apt-get install -y nginx`) in front of tolk replicas, with
the shipped deploy/nginx/tolk.conf pointed at loopback ports (tests/test_nginx.py,
tests/test_replicas.py). Every wait is bounded."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from support.live_server import free_port

REPO = Path(__file__).resolve().parents[2]
TEMPLATE = REPO / "deploy" / "nginx" / "tolk.conf"


def nginx_binary() -> str:
    found = shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if os.path.exists(p)), None)
    if found is None:
        pytest.fail("nginx is not installed; install it with `apt-get install -y nginx` "
                    "(Debian/Ubuntu) — tests/test_nginx.py runs the shipped config on loopback")
    return found


def render_config(template: str, listen_port: int, replica_ports: list[int]) -> str:
    """The shipped config with its replica addresses and `listen` pointed at loopback."""
    out: list[str] = []
    servers = listens = 0
    for line in template.splitlines():
        m = re.match(r"^(\s+)server\s+[\w.\-]+:\d+(.*);\s*$", line)
        if m:
            if not servers:
                out += [f"{m.group(1)}server 127.0.0.1:{p}{m.group(2)};" for p in replica_ports]
            servers += 1
            continue
        m = re.match(r"^(\s+)listen\s+.*;\s*$", line)
        if m:
            if not listens:
                out.append(f"{m.group(1)}listen 127.0.0.1:{listen_port};")
            listens += 1
            continue
        out.append(line)
    assert servers >= 2 and listens >= 1, "the template's upstream/listen lines moved"
    return "\n".join(out) + "\n"


MAIN_CONF = """\
worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log info;
events {{ worker_connections 512; }}
http {{
    log_format tolk '$remote_addr:$remote_port "$request" $status upstream=$upstream_addr';
    access_log {tmp}/access.log tolk;
    client_body_temp_path {tmp}/client_body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    include {tmp}/tolk.conf;
}}
"""


def start_nginx(tmp: Path, replica_ports: list[int]) -> tuple[subprocess.Popen[bytes], str]:
    """nginx on a free port in front of `replica_ports` (config and logs in `tmp`); its URL."""
    nginx = nginx_binary()
    os.chmod(tmp, 0o755)  # nginx workers may run as another user when the test runs as root
    listen = free_port()
    (tmp / "tolk.conf").write_text(render_config(TEMPLATE.read_text(), listen, replica_ports))
    (tmp / "nginx.conf").write_text(MAIN_CONF.format(tmp=tmp))
    base = [nginx, "-p", str(tmp), "-c", str(tmp / "nginx.conf")]
    version = subprocess.run([nginx, "-v"], capture_output=True, text=True, timeout=10)
    m = re.search(r"nginx/(\d+)\.(\d+)\.(\d+)", version.stderr)
    if m and tuple(map(int, m.groups())) >= (1, 19, 5):  # `-e`: the start-up error log
        base[1:1] = ["-e", str(tmp / "error.log")]
    check = subprocess.run([*base, "-t"], capture_output=True, text=True, timeout=30)
    assert check.returncode == 0, f"nginx -t failed:\n{check.stderr}"
    proc = subprocess.Popen([*base, "-g", "daemon off;"], stdout=subprocess.DEVNULL,
                            stderr=(tmp / "nginx.stderr").open("wb"))
    url = f"http://127.0.0.1:{listen}"
    deadline = time.monotonic() + 20
    while True:
        assert proc.poll() is None, (tmp / "nginx.stderr").read_text()
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, "nginx did not answer"
        time.sleep(0.05)
