"""A real HTTP server speaking just enough of the Kubernetes API for a whole investigation.

The runtime's analyzers list pods and read their logs; the Probe gets, lists and
reads logs. This serves one namespace's pods (Running, Ready) and a log text per
pod, and an empty list for everything else, so ``investigate(...)`` runs end to end
through the real Kubernetes client without a cluster. Tests that need a store full of
real trajectories (the trainer's datasets) drive it with ``ScriptedModel``.

Example::

    with kube_cluster("shop", {"geo-7c9d5b6f4-x2x9q": "connection refused\\n"}) as access:
        async for event in investigate(ctx, engine=engine, cluster=access, model=model):
            ...
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from kubernetes import client

from agents.runtime import ClusterAccess


def pod(name: str, namespace: str) -> dict[str, Any]:
    """A Running, Ready pod whose app label is its name without the two generated suffixes."""
    app = name.rsplit("-", 2)[0] if name.count("-") >= 2 else name
    return {
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {"app": app},
            "creationTimestamp": "2026-01-01T11:00:00Z",
        },
        "spec": {"containers": [{"name": app, "image": f"{app}:1.0"}], "nodeName": "node-1"},
        "status": {
            "phase": "Running",
            "containerStatuses": [
                {"name": app, "ready": True, "restartCount": 0, "state": {"running": {}}}
            ],
        },
    }


def _handler(namespace: str, logs: Mapping[str, str]) -> type[BaseHTTPRequestHandler]:
    pods = {name: pod(name, namespace) for name in logs}
    base = f"/api/v1/namespaces/{namespace}/pods"

    class KubeAPI(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = urlsplit(self.path).path
            name = path.removeprefix(f"{base}/").removesuffix("/log")
            if path.endswith("/log") and name in logs:
                self._send(logs[name].encode(), "text/plain")
            elif path == base:
                self._send(json.dumps({"kind": "PodList", "items": list(pods.values())}).encode())
            elif path.startswith(f"{base}/") and name in pods:
                self._send(json.dumps(pods[name]).encode())
            else:
                self._send(json.dumps({"kind": "List", "items": []}).encode())

        def _send(self, body: bytes, content_type: str = "application/json") -> None:
            self.send_response(200)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            return None

    return KubeAPI


@contextmanager
def kube_cluster(namespace: str, logs: Mapping[str, str]) -> Iterator[ClusterAccess]:
    """A server for ``namespace`` holding a pod per ``logs`` key (its log the value)."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(namespace, dict(logs)))
    # A short poll: shutdown() waits for the serving loop to look, 0.5 s by default.
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    api = client.ApiClient(
        client.Configuration(host=f"http://127.0.0.1:{server.server_address[1]}")
    )
    try:
        yield ClusterAccess(api=api, namespaces=[namespace])
    finally:
        api.close()
        server.shutdown()
        server.server_close()
        thread.join(5)
