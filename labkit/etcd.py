"""etcd: Debian's real etcd 3.4, run inside the master's namespace, and the lab's clients.

etcd listens where a cluster's etcd would, on the master's underlay address (so every
node's flanneld and etcdctl reach it over the lab network) and on the master's loopback.
It also listens on a unix socket in the lab's state folder: a unix socket belongs to
the file system, not to a network namespace, so the lab process (and a notebook) can
talk to etcd without entering any namespace and without anything listening on the
host's interfaces.
"""
from __future__ import annotations

import base64
import json
import os
import shutil
import socket
import subprocess
import time
import urllib.parse
from collections.abc import Callable
from typing import Any

from .errors import LabError
from .state import LabState, mounts_under

CLIENT_PORT = 2379
PEER_PORT = 2380
# etcd 3.4 preallocates each WAL segment at 64 MB (no flag changes that) and keeps the next
# one ready: 2 x 64 MB per lab. Its data dir is a tmpfs of this size, mounted by the lab,
# so a lab never fills a disk, and what etcd holds is memory the lab is seen to use.
DATA_DIR_SIZE = "256m"


def mount_data_dir(state: LabState) -> str:
    """Mount a size-limited tmpfs on the lab's etcd data dir, unless it is mounted already.

    The mount is recorded (``mount <path>`` in the lab's record) before it is made, and
    `clean` unmounts every mount below the state folder, also after a crash."""
    path = state.path("etcd")
    if path in mounts_under(path):
        return path
    os.makedirs(path, mode=0o700, exist_ok=True)
    state.record("mount", path)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={DATA_DIR_SIZE},mode=0700",
                        f"labkit-{state.name}-etcd", path], capture_output=True, text=True)
    if r.returncode != 0:
        raise LabError(f"could not mount a tmpfs for etcd's data on {path}: {r.stderr.strip()}")
    return path


def etcd_argv(name: str, data_dir: str, listen_ip: str) -> list[str]:
    """Flags for a single-member etcd with short election timers and the v2 API on."""
    binary = shutil.which("etcd")
    if binary is None:
        raise LabError("etcd is not installed: apt-get install etcd-server etcd-client "
                       "(or run ./run setup)")
    return [
        binary, "--name", name, "--data-dir", data_dir,
        "--listen-client-urls",
        f"http://{listen_ip}:{CLIENT_PORT},http://127.0.0.1:{CLIENT_PORT},unix://etcd:{CLIENT_PORT}",
        "--advertise-client-urls", f"http://{listen_ip}:{CLIENT_PORT}",
        "--listen-peer-urls", f"http://127.0.0.1:{PEER_PORT}",
        "--initial-advertise-peer-urls", f"http://127.0.0.1:{PEER_PORT}",
        "--initial-cluster", f"{name}=http://127.0.0.1:{PEER_PORT}",
        "--heartbeat-interval", "10", "--election-timeout", "100",
        "--enable-v2", "--logger", "zap", "--log-outputs", "stderr",
    ]


def _unix_http_connection(path: str, timeout: float = 5.0) -> Any:
    """An http.client connection over etcd's unix socket. http.client is imported here, on
    the first request: it (and the email parser under it) cost every `labkit` command 20 ms."""
    import http.client

    class UnixHTTPConnection(http.client.HTTPConnection):
        def connect(self) -> None:
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.settimeout(self.timeout)
            self.sock.connect(path)
    return UnixHTTPConnection("localhost", timeout=timeout)


def http_request(sock_path: str, method: str, url: str, body: dict[str, str] | None = None,
                 timeout: float = 5.0, json_body: dict[str, Any] | None = None) -> tuple[int, dict[str, Any]]:
    """One HTTP request to etcd through its unix socket; returns (status, json). `body` is
    sent as a form (the v2 keys API), `json_body` as JSON (the v3 gateway)."""
    conn = _unix_http_connection(sock_path, timeout)
    try:
        data: str | None = None
        headers: dict[str, str] = {}
        if json_body is not None:
            data, headers = json.dumps(json_body), {"Content-Type": "application/json"}
        elif body is not None:
            data, headers = urllib.parse.urlencode(body), {"Content-Type": "application/x-www-form-urlencoded"}
        conn.request(method, url, body=data, headers=headers)
        resp = conn.getresponse()
        raw = resp.read()
        try:
            return resp.status, json.loads(raw or b"{}")
        except ValueError:
            return resp.status, {"raw": raw.decode(errors="replace")}
    finally:
        conn.close()


def wait_healthy(sock_path: str, timeout: float = 10.0, is_running: Callable[[], bool] = lambda: True) -> float:
    """Poll /health until etcd says true; returns the seconds waited."""
    t0 = time.monotonic()
    last = "no answer"
    while time.monotonic() - t0 < timeout:
        if not is_running():
            raise LabError("etcd exited during start-up")
        if os.path.exists(sock_path):
            try:
                status, body = http_request(sock_path, "GET", "/health", timeout=1.0)
                if status == 200 and body.get("health") in ("true", True):
                    return time.monotonic() - t0
                last = str(body)
            except OSError as e:
                last = str(e)
        time.sleep(0.02)
    raise LabError(f"etcd did not become healthy within {timeout:.0f}s ({last})")


def v3_client(sock_path: str) -> Any:
    """A python-etcd3 client over the unix socket (grpc target unix:<path>)."""
    # imported here, not at the top: etcd3 (grpc, protobuf) takes ~0.3 s to import (python -X
    # importtime), and this module is imported by the systemctl/docker shims a node shell runs
    from .etcdpb import import_etcd3
    etcd3 = import_etcd3()
    host, _, port = sock_path.rpartition(":")
    return etcd3.client(host=f"unix:{host}", port=int(port), timeout=10)


def _b64(text: str | bytes) -> str:
    return base64.b64encode(text.encode() if isinstance(text, str) else text).decode()


def prefix_end(prefix: bytes) -> bytes:
    """The range end that makes a v3 range read "every key starting with `prefix`" (the
    prefix with its last byte incremented, as etcdctl --prefix computes it)."""
    end = bytearray(prefix)
    while end:
        if end[-1] < 0xFF:
            end[-1] += 1
            return bytes(end)
        end.pop()
    return b"\0"  # every key


class V3Gateway:
    """The same v3 API as python-etcd3, through etcd's JSON gateway (`/v3/kv/...`) on the
    unix socket: what the lab's own quick reads and writes use (writing the config,
    `status`), because importing python-etcd3's grpc and protobuf takes 0.3-0.6 s, more
    than the whole read. flanneld itself talks gRPC through python-etcd3, as flannel does."""

    def __init__(self, sock_path: str, timeout: float = 5.0) -> None:
        self.sock, self.timeout = sock_path, timeout

    def _call(self, url: str, req: dict[str, Any]) -> dict[str, Any]:
        status, body = http_request(self.sock, "POST", url, json_body=req, timeout=self.timeout)
        if status != 200:
            raise LabError(f"etcd {url}: {body.get('message') or body.get('error') or body}")
        return body

    def put(self, key: str, value: str) -> None:
        self._call("/v3/kv/put", {"key": _b64(key), "value": _b64(value)})

    def get(self, key: str) -> str | None:
        kvs = self._call("/v3/kv/range", {"key": _b64(key)}).get("kvs") or []
        return base64.b64decode(kvs[0].get("value", "")).decode() if kvs else None

    def get_prefix(self, prefix: str) -> list[tuple[str, str]]:
        """[(key, value)] of every key under `prefix`, in key order (etcdctl get --prefix)."""
        raw = prefix.encode()
        kvs = self._call("/v3/kv/range", {"key": _b64(raw), "range_end": _b64(prefix_end(raw))}).get("kvs") or []
        return [(base64.b64decode(kv["key"]).decode(), base64.b64decode(kv.get("value", "")).decode())
                for kv in kvs]


class V2Client:
    """The etcd v2 keys API (what flannel <= 0.17 and `etcdctl set` use), over the socket."""

    def __init__(self, sock_path: str) -> None:

        self.sock = sock_path

    def get(self, key: str) -> str | None:
        status, body = http_request(self.sock, "GET", "/v2/keys" + urllib.parse.quote(key))
        if status == 404:
            return None
        return body.get("node", {}).get("value")

    def list(self, directory: str) -> list[tuple[str, str]]:
        """[(key, value)] of the keys directly under `directory` (empty if it does not exist)."""
        status, body = http_request(self.sock, "GET", "/v2/keys" + urllib.parse.quote(directory) +
                                    "?recursive=true")
        if status == 404:
            return []
        return [(n["key"], n.get("value", "")) for n in body.get("node", {}).get("nodes", [])]

    def set(self, key: str, value: str) -> None:
        status, body = http_request(self.sock, "PUT", "/v2/keys" + urllib.parse.quote(key),
                                    {"value": value})
        if status >= 300:
            raise LabError(f"etcd v2 set {key}: {body}")
