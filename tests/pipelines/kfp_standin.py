"""A stand-in for the Kubeflow Pipelines v2beta1 REST API that records every request.

No cluster runs here, so submit, rerun, schedule and the runs listing are checked against this
server on 127.0.0.1: it answers the calls ``kfp.Client`` makes (healthz, experiments, runs,
recurring runs) the way the real API server does, keeps created runs and recurring runs so
``get_run`` and the listings return what was submitted, and records each request's method, path
and JSON body for the test to inspect. Nothing executes: a test sets a run's state and task
states with :meth:`KfpStandIn.set_run`, as the real server's persistence agent would.

Like the real server (proto3 JSON), int64 fields (``max_concurrency``, ``interval_second``)
come back as strings, and a recurring run's ``max_concurrency`` outside 1-10 is a 400.
"""

from __future__ import annotations

import copy
import json
import threading
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
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
    recurring_runs: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def host(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def created_runs(self) -> list[dict[str, Any]]:
        return [r.body for r in self.requests if r.method == "POST" and r.path == f"{API}/runs"]

    def created_recurring_runs(self) -> list[dict[str, Any]]:
        return [r.body for r in self.requests
                if r.method == "POST" and r.path == f"{API}/recurringruns"]

    def add_run(self, body: dict[str, Any]) -> dict[str, Any]:
        """Store a run as the server creates one (PENDING, created now, not finished); tests
        also call it to have runs the listing finds without compiling the DAG again."""
        run = {**body, "run_id": str(uuid.uuid4()), "state": "PENDING",
               "created_at": _iso(datetime.now(UTC)),
               "finished_at": "1970-01-01T00:00:00Z"}  # the real server's "not yet"
        self.runs[run["run_id"]] = run
        return run

    def set_run(self, run_id: str, state: str, tasks: dict[str, str] | None = None, *,
                minutes: float | None = None, created_at: str | None = None) -> dict[str, Any]:
        """Give a stored run a state, task states (task name → state, as
        ``run_details.task_details``), a creation time and a finish ``minutes`` later."""
        run = self.runs[run_id]
        run["state"] = state
        if created_at:
            run["created_at"] = created_at
        if minutes is not None:
            start = datetime.fromisoformat(run["created_at"])
            run["finished_at"] = _iso(start + timedelta(minutes=minutes))
        if tasks is not None:
            run["run_details"] = {"task_details": [
                {"run_id": run_id, "task_id": str(uuid.uuid4()), "display_name": name,
                 "state": task_state} for name, task_state in tasks.items()]}
        return run

    def handle(self, method: str, path: str, query: dict[str, list[str]], body: Any
               ) -> tuple[int, dict[str, Any]]:
        self.requests.append(Recorded(method, path, query, body))
        if path.startswith(f"{API}/recurringruns"):
            return self._recurring(method, path, query, body)
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
            return 200, self.add_run(body)
        if path == f"{API}/runs" and method == "GET":
            return 200, _page("runs", self.runs.values(), query)
        if path.startswith(f"{API}/runs/") and method == "GET":
            run = self.runs.get(path.rsplit("/", 1)[1])
            return (200, run) if run else (404, {"error": "run not found", "code": 5})
        return 404, {"error": f"no route {method} {path}", "code": 5}


    def _recurring(self, method: str, path: str, query: dict[str, list[str]], body: Any
                   ) -> tuple[int, dict[str, Any]]:
        base = f"{API}/recurringruns"
        if path == base and method == "POST":
            trigger = body.get("trigger") or {}
            if not body.get("pipeline_spec") or len(trigger) != 1:
                return 400, {"error": "a recurring run needs a pipeline_spec and one trigger",
                             "code": 3}
            if not 1 <= int(body.get("max_concurrency") or 0) <= 10:
                return 400, {"error": "The max concurrency of the recurring run is out of "
                             "range. Support 1-10.", "code": 3}
            job = _int64_as_str({**copy.deepcopy(body), "recurring_run_id": str(uuid.uuid4()),
                                 "created_at": _iso(datetime.now(UTC)),
                                 "status": "ENABLED" if body.get("mode") == "ENABLE"
                                 else "DISABLED"})
            self.recurring_runs[job["recurring_run_id"]] = job
            return 200, job
        if path == base and method == "GET":
            # the one camelCase key of the API (its proto field has a json_name)
            return 200, _page("recurringRuns", self.recurring_runs.values(), query)
        job_id, _, action = path.removeprefix(base + "/").partition(":")
        job = self.recurring_runs.get(job_id)
        if job is None:
            return 404, {"error": f"recurring run {job_id} not found", "code": 5}
        if method == "GET" and not action:
            return 200, job
        if method == "DELETE" and not action:
            del self.recurring_runs[job_id]
            return 200, {}
        if method == "POST" and action in ("enable", "disable"):
            job["mode"] = action.upper()
            job["status"] = f"{action.upper()}D"
            return 200, {}
        return 404, {"error": f"no route {method} {path}", "code": 5}


def _iso(when: datetime) -> str:
    return when.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _int64_as_str(job: dict[str, Any]) -> dict[str, Any]:
    """proto3 JSON writes int64 as strings; so does the real server."""
    if job.get("max_concurrency") is not None:
        job["max_concurrency"] = str(job["max_concurrency"])
    periodic = (job.get("trigger") or {}).get("periodic_schedule")
    if periodic and periodic.get("interval_second") is not None:
        periodic["interval_second"] = str(periodic["interval_second"])
    return job


def _page(key: str, items: Any, query: dict[str, list[str]]) -> dict[str, Any]:
    """A list answer: ``experiment_id`` filters, ``sort_by`` "created_at desc" orders newest
    first, ``page_size`` cuts (no further pages); an empty list is ``{}``, as the server's."""
    chosen = list(items)
    experiment = query.get("experiment_id", [None])[0]
    if experiment:
        chosen = [i for i in chosen if i.get("experiment_id") == experiment]
    sort = query.get("sort_by", [""])[0]
    if sort.startswith("created_at"):
        chosen.sort(key=lambda i: i["created_at"], reverse=sort.endswith(" desc"))
    size = int(query.get("page_size", ["0"])[0] or 0)
    total = len(chosen)
    chosen = chosen[:size] if size else chosen
    return {key: chosen, "total_size": total} if chosen else {}


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
