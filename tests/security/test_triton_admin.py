"""The local Triton's model-repository API needs the admin key; inference does not.

Why this matters: a repository-API load may carry the model's files in the request
(``file:1/model.py``), and the server then imports that Python. Each load here sends such a
model whose import writes a marker file, so "refused" is checked where it counts: without
the key (or with a wrong one) the marker never appears; with the key it does, which proves
the same request would have run. One real ``tritonserver`` on 127.0.0.1 for the module.
"""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from damo_core.cli import serve_cmds
from damo_core.serve import admin
from damo_core.serve.deploy import deploy
from damo_core.serve.errors import AdminKeyError
from damo_core.serve.local_server import LocalTriton

WRONG_KEY = "not-the-server-key-0123456789"
TIMEOUT_S = 60.0


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalTriton]:
    repo = tmp_path_factory.mktemp("admin_repo")
    with LocalTriton(repo, startup_timeout=120) as triton:
        yield triton


@dataclass(frozen=True)
class Payload:
    """A Python-backend model sent inside the load request; importing it writes ``marker``."""

    name: str
    marker: Path

    @property
    def config(self) -> str:
        tensor = {"data_type": "TYPE_FP32", "dims": [2]}
        return json.dumps({"name": self.name, "backend": "python", "max_batch_size": 0,
                           "input": [{"name": "IN", **tensor}],
                           "output": [{"name": "OUT", **tensor}],
                           "instance_group": [{"kind": "KIND_CPU", "count": 1}]})

    @property
    def model_py(self) -> bytes:
        # Echo by DLPack: the wheel's stub mangles NumPy 2 arrays (see serve/python_models).
        return (f"import pathlib\nimport triton_python_backend_utils as pb\n"
                f"pathlib.Path({str(self.marker)!r}).write_text('ran')\n"
                "class TritonPythonModel:\n"
                "    def execute(self, requests):\n"
                "        return [pb.InferenceResponse([pb.Tensor.from_dlpack(\n"
                "            'OUT', pb.get_input_tensor_by_name(r, 'IN').to_dlpack())])\n"
                "            for r in requests]\n").encode()


@pytest.fixture
def payload(request: pytest.FixtureRequest, tmp_path: Path) -> Payload:
    name = "probe_" + request.node.name.replace("[", "_").replace("]", "").replace("-", "_")
    return Payload(name, tmp_path / "payload_ran")


def _http(server: LocalTriton, path: str, body: dict[str, Any] | None = None,
          headers: dict[str, str] | None = None) -> tuple[int, str]:
    """(status, body) of one request; POST when ``body`` is given."""
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(server.http_url + path, data=data, headers={
        "Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=TIMEOUT_S) as response:  # noqa: S310
            return response.status, response.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


def _http_load(server: LocalTriton, payload: Payload,
               headers: dict[str, str] | None = None) -> tuple[int, str]:
    files = {"file:1/model.py": base64.b64encode(payload.model_py).decode()}
    return _http(server, f"/v2/repository/models/{payload.name}/load",
                 {"parameters": {"config": payload.config, **files}}, headers)


def _grpc_load(server: LocalTriton, payload: Payload, headers: dict[str, str] | None) -> None:
    import tritonclient.grpc as grpc

    with grpc.InferenceServerClient(server.grpc_url) as client:
        client.load_model(payload.name, headers=headers, config=payload.config,
                          files={"file:1/model.py": payload.model_py},
                          client_timeout=TIMEOUT_S)


def _ready(server: LocalTriton, name: str) -> bool:
    return _http(server, f"/v2/models/{name}/ready")[0] == 200


@pytest.mark.parametrize("headers", [{}, {admin.ADMIN_HEADER: WRONG_KEY}],
                         ids=["no_key", "wrong_key"])
def test_http_load_without_the_key_is_refused(server, payload, headers):
    status, body = _http_load(server, payload, headers)
    assert status == 403 and "restricted" in body, (status, body)
    assert not payload.marker.exists(), "the model.py sent in a refused load ran"
    assert not _ready(server, payload.name)


def test_http_load_with_the_key_runs(server, payload):
    status, body = _http_load(server, payload, admin.http_headers(server.admin_key))
    assert status == 200, body
    assert payload.marker.exists() and _ready(server, payload.name)


@pytest.mark.parametrize("key", [None, WRONG_KEY], ids=["no_key", "wrong_key"])
def test_grpc_load_without_the_key_is_refused(server, payload, key):
    from tritonclient.utils import InferenceServerException

    with pytest.raises(InferenceServerException, match="restricted"):
        _grpc_load(server, payload, admin.grpc_headers(key))
    assert not payload.marker.exists(), "the model.py sent in a refused load ran"
    assert not _ready(server, payload.name)


def test_grpc_load_with_the_key_runs(server, payload):
    _grpc_load(server, payload, admin.grpc_headers(server.admin_key))
    assert payload.marker.exists() and _ready(server, payload.name)


def test_inference_health_and_metadata_stay_open(server, payload):
    import tritonclient.grpc as grpc

    _grpc_load(server, payload, admin.grpc_headers(server.admin_key))
    for path in ("/v2/health/ready", "/v2", f"/v2/models/{payload.name}",
                 f"/v2/models/{payload.name}/config"):
        assert _http(server, path)[0] == 200, path
    status, body = _http(server, f"/v2/models/{payload.name}/infer", {"inputs": [
        {"name": "IN", "shape": [2], "datatype": "FP32", "data": [1.5, 2.5]}]})
    assert status == 200 and json.loads(body)["outputs"][0]["data"] == [1.5, 2.5], body
    with grpc.InferenceServerClient(server.grpc_url) as client:
        tensor = grpc.InferInput("IN", [2], "FP32")
        tensor.set_data_from_numpy(np.array([3.0, 4.0], dtype=np.float32))
        result = client.infer(payload.name, [tensor], client_timeout=TIMEOUT_S)
    assert result.as_numpy("OUT").tolist() == [3.0, 4.0]


@pytest.mark.parametrize(("path", "body"), [
    ("/v2/repository/index", {}),
    ("/v2/repository/models/anything/unload", {}),
    ("/v2/models/stats", None),
    ("/v2/logging", {"log_verbose_level": 1}),
    ("/v2/trace/setting", None),
    ("/v2/systemsharedmemory/status", None),
])
def test_other_admin_apis_need_the_key(server, path, body):
    status, text = _http(server, path, body)
    assert status == 403 and admin.ADMIN_HEADER in text, (path, status, text)


def _fake_export(folder: Path) -> Path:
    """An ONNX file with the export's metadata and no graph: enough for deploy to reach the
    server (it is refused before anything would load it)."""
    import onnx

    folder.mkdir()
    model = onnx.helper.make_model(onnx.helper.make_graph([], "empty", [], []))
    onnx.helper.set_model_props(model, {"model_name": "damoyolo_ns", "image_size": "64",
                                        "class_names": json.dumps(["a", "b"])})
    onnx.save(model, str(folder / "damoyolo_ns.onnx"))
    return folder


@pytest.fixture
def no_key(monkeypatch: pytest.MonkeyPatch) -> None:
    """A deploy client in another process: no env var, no local server's key to find."""
    monkeypatch.delenv(admin.ADMIN_KEY_ENV, raising=False)
    monkeypatch.setattr(admin, "_LOCAL_KEYS", {})


def test_deploy_without_the_key_is_one_line_naming_the_env_var(server, tmp_path, no_key):
    repo = tmp_path / "repo"
    repo.mkdir()
    app = typer.Typer()
    app.add_typer(serve_cmds.serve_app, name="serve")
    result = CliRunner().invoke(app, ["serve", "deploy", str(_fake_export(tmp_path / "exp")),
                                      "--repo", str(repo), "--url", server.grpc_url])
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and f"set {admin.ADMIN_KEY_ENV}" in lines[0], result.output
    assert not list(repo.iterdir()), "nothing may be written when the server refuses"


def test_deploy_with_a_wrong_key_is_refused(server, tmp_path, no_key):
    repo = tmp_path / "repo"
    repo.mkdir()
    with pytest.raises(AdminKeyError, match=f"refused the admin key: {admin.ADMIN_KEY_ENV}"):
        deploy(_fake_export(tmp_path / "exp"), repo, server.grpc_url, admin_key=WRONG_KEY)
    assert not list(repo.iterdir())


def test_key_from_env_or_random_and_shared_while_running(server, tmp_path, monkeypatch):
    assert admin.key_for(server.grpc_url) == server.admin_key
    chosen = "k" * 32
    monkeypatch.setenv(admin.ADMIN_KEY_ENV, chosen)
    assert LocalTriton(tmp_path).admin_key == chosen
    monkeypatch.delenv(admin.ADMIN_KEY_ENV)
    first, second = LocalTriton(tmp_path), LocalTriton(tmp_path)
    assert first.key_generated and first.admin_key != second.admin_key
    with pytest.raises(ValueError, match=admin.ADMIN_KEY_ENV):
        LocalTriton(tmp_path, admin_key="short:key=x")
