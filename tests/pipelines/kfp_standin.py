"""A stand-in for the Kubeflow Pipelines v2beta1 REST API that records every request.

No cluster runs here, so submit and rerun are checked against this server on 127.0.0.1: it
answers the calls ``kfp.Client`` makes (healthz, experiments, runs) the way the real API server
does, keeps created runs so ``get_run`` returns what was submitted, and records each request's
method, path and JSON body for the test to inspect.
"""

from __future__ import annotations

import json
import threading
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

API = "/apis/v2beta1"


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, list[str]]
    body: Any


@dataclass
class KfpStandIn:
    server: ThreadingHTTPServer
    requests: list[Recorded] = field(default_factory=list)
    experiments: dict[str, dict[str, Any]] = field(default_factory=dict)
    runs: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def host(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def created_runs(self) -> list[dict[str, Any]]:
        return [r.body for r in self.requests if r.method == "POST" and r.path == f"{API}/runs"]

    def handle(self, method: str, path: str, query: dict[str, list[str]], body: Any
               ) -> tuple[int, dict[str, Any]]:
        self.requests.append(Recorded(method, path, query, body))
        if path == f"{API}/healthz":
            return 200, {"multi_user": False}
        if path == f"{API}/experiments" and method == "GET":
            wanted = _filter_value(query)
            found = [e for e in self.experiments.values() if e["display_name"] == wanted]
            return 200, {"experiments": found, "total_size": len(found)} if found else {}
        if path == f"{API}/experiments" and method == "POST":
            exp = {**body, "experiment_id": str(uuid.uuid4())}
            self.experiments[exp["experiment_id"]] = exp
            return 200, exp
        if path == f"{API}/runs" and method == "POST":
            if not body.get("pipeline_spec"):
                return 400, {"error": "a run needs a pipeline_spec", "code": 3}
            run = {**body, "run_id": str(uuid.uuid4()), "state": "PENDING"}
            self.runs[run["run_id"]] = run
            return 200, run
        if path.startswith(f"{API}/runs/") and method == "GET":
            run = self.runs.get(path.rsplit("/", 1)[1])
            return (200, run) if run else (404, {"error": "run not found", "code": 5})
        return 404, {"error": f"no route {method} {path}", "code": 5}


def _filter_value(query: dict[str, list[str]]) -> str | None:
    raw = query.get("filter", [None])[0]
    if not raw:
        return None
    predicates = json.loads(raw).get("predicates", [])
    return next((p.get("string_value", p.get("stringValue")) for p in predicates), None)


def start() -> KfpStandIn:
    """Serve on a free port of 127.0.0.1 in a daemon thread; call ``server.shutdown()``."""
    holder: dict[str, KfpStandIn] = {}

    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            url = urlparse(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length)) if length else None
            status, payload = holder["api"].handle(self.command, url.path, parse_qs(url.query),
                                                   body)
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_DELETE = _answer

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    holder["api"] = KfpStandIn(server)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return holder["api"]
