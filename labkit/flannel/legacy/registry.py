"""The etcd v2 keys API, as flannel 0.7.1 used it (mirrors v0.7.1:subnet/registry.go).

v2 keys are plain HTTP: ``GET/PUT/DELETE /v2/keys/<key>``; a lease is a key with a
TTL (``ttl=86400``); creating one uses ``prevExist=false`` so two nodes cannot take
the same subnet; a watch is a long poll (``?wait=true&recursive=true&waitIndex=N``).
"""
from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

# a decoded etcd v2 JSON answer (untyped data)
Body = dict[str, Any]


class EtcdError(Exception):
    """An etcd v2 error, printed as the Go client printed it: `100: Key not found (/x) [7]`."""

    def __init__(self, body: Body) -> None:
        self.code = body.get("errorCode")
        super().__init__(f"{self.code}: {body.get('message')} ({body.get('cause')}) [{body.get('index')}]")


def _go_dial_error(endpoint: str, e: Exception) -> str:
    """A failed connection as Go's net package words it: `dial tcp 1.2.3.4:2379: ... connection refused`."""
    reason = getattr(e, "reason", e)
    if isinstance(reason, ConnectionRefusedError):
        u = urllib.parse.urlparse(endpoint)
        return f"dial tcp {u.hostname}:{u.port or 2379}: getsockopt: connection refused"
    return " ".join(str(reason).split())


class V2Registry:
    def __init__(self, endpoints: str, prefix: str) -> None:
        self.endpoints = [e.strip().rstrip("/") for e in endpoints.split(",") if e.strip()]
        self.prefix = prefix.rstrip("/")

    def _request(self, method: str, key: str, params: dict[str, str | int] | None = None,
                 timeout: float | None = 5) -> Body:
        query = "?" + urllib.parse.urlencode(params) if params and method in ("GET", "DELETE") else ""
        data = urllib.parse.urlencode(params).encode() if params and method == "PUT" else None
        last: str | None = None
        for ep in self.endpoints:
            req = urllib.request.Request(f"{ep}/v2/keys{urllib.parse.quote(key)}{query}", data=data,
                                         method=method)
            if data is not None:
                req.add_header("Content-Type", "application/x-www-form-urlencoded")
            try:
                with urllib.request.urlopen(req, timeout=timeout) as resp:
                    answer: Body = json.loads(resp.read() or b"{}")
                    return answer
            except urllib.error.HTTPError as e:
                body = json.loads(e.read() or b"{}")
                raise EtcdError(body) from None
            except (urllib.error.URLError, OSError) as e:
                last = _go_dial_error(ep, e)
        raise ConnectionError(f"client: etcd cluster is unavailable or misconfigured; error #0: {last}")

    # -- config and leases ------------------------------------------------------------------
    def get_network_config(self) -> str:
        value: str = self._request("GET", f"{self.prefix}/config", {"quorum": "true"})["node"]["value"]
        return value

    def get_subnets(self) -> tuple[list[Body], int]:
        """[{key, value, ttl}] and the etcd index to watch from."""
        try:
            resp = self._request("GET", f"{self.prefix}/subnets", {"recursive": "true", "quorum": "true"})
        except EtcdError as e:
            if e.code == 100:  # no subnets yet
                return [], int(str(e).rsplit("[", 1)[1].rstrip("]"))
            raise
        nodes = resp["node"].get("nodes", [])
        index = max([resp["node"].get("modifiedIndex", 0)] + [n["modifiedIndex"] for n in nodes])
        return [{"key": n["key"], "value": n.get("value", ""), "ttl": n.get("ttl")} for n in nodes], index

    def create_subnet(self, key: str, value: str, ttl: int) -> float:
        self._request("PUT", key, {"value": value, "ttl": ttl, "prevExist": "false"})
        return time.time() + ttl

    def update_subnet(self, key: str, value: str, ttl: int) -> float | None:
        params: dict[str, str | int] = {"value": value}
        if ttl:
            params["ttl"] = ttl
        self._request("PUT", key, params)
        return time.time() + ttl if ttl else None

    def delete_subnet(self, key: str) -> None:
        self._request("DELETE", key)

    def watch_subnets(self, since: int) -> tuple[list[tuple[str, str, str]], int]:
        """Block until something under subnets/ changes after `since`: [(action, key, value)]."""
        resp = self._request("GET", f"{self.prefix}/subnets",
                             {"wait": "true", "recursive": "true", "waitIndex": since + 1}, timeout=None)
        node = resp.get("node", {})
        return [(resp.get("action", ""), node.get("key", ""), node.get("value", ""))], \
            node.get("modifiedIndex", since + 1)
