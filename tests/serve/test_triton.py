"""End to end on a real Triton server: deploy, ``damo infer`` over gRPC, metrics, rollback,
and the errors a user sees. One server for the whole session (see conftest.py)."""

from __future__ import annotations

import json
import re
import shutil
import urllib.request
from pathlib import Path

import pytest
import torch
import typer
from typer.testing import CliRunner, Result

from damo_core.cli import serve_cmds
from damo_core.eval.postprocess import Detections
from damo_core.eval.predict import predict
from damo_core.export.formats import export_model
from damo_core.serve.client import TritonDetector
from damo_core.serve.deploy import deploy
from damo_core.serve.errors import DeployError, RequestRejectedError
from damo_core.serve.local_server import free_ports
from damo_core.serve.repository import detector_versions
from damo_core.train.checkpoint_io import load_trained
from tests.serve.conftest import MODEL

CONF = 0.3  # damo predict's default threshold
BOX_TOL_PX, SCORE_TOL = 0.05, 2e-3  # ORT on the fused graph vs PyTorch eager, float32


# The serve commands registered the way app.py registers them.
APP = typer.Typer()
APP.command("infer")(serve_cmds.infer)
APP.command("serve-bench")(serve_cmds.serve_bench)
APP.add_typer(serve_cmds.serve_app, name="serve")


def _cli(*args: str) -> Result:
    return CliRunner().invoke(APP, list(args))


@pytest.fixture(scope="module")
def deployed(exported, triton) -> dict:
    return deploy(exported.exported_dir, triton.repo, triton.grpc_url,
                  metadata=exported.metadata)


def _from_json(rows: list[dict]) -> Detections:
    if not rows:
        return Detections.empty()
    return Detections(torch.tensor([r["box"] for r in rows]),
                      torch.tensor([r["score"] for r in rows]),
                      torch.tensor([r["label"] for r in rows]))


def assert_same_detections(served: Detections, local: Detections) -> None:
    """Same boxes, classes and scores, pairing each local detection with the served one of
    the same class whose box is closest. Detections within SCORE_TOL of the threshold may
    exist on one side only (float32 differences decide them), nothing else may."""
    unmatched = list(range(len(served)))
    for box, score, label in zip(local.boxes, local.scores, local.labels, strict=True):
        same_class = [i for i in unmatched if served.labels[i] == label]
        if not same_class:
            assert score < CONF + SCORE_TOL, f"missing served detection {box}, {score}, {label}"
            continue
        best = min(same_class, key=lambda i: float((served.boxes[i] - box).abs().max()))
        if float((served.boxes[best] - box).abs().max()) > BOX_TOL_PX:
            assert score < CONF + SCORE_TOL, f"no served box near {box.tolist()} ({score:.3f})"
            continue
        assert abs(float(served.scores[best]) - float(score)) < SCORE_TOL
        unmatched.remove(best)
    assert all(served.scores[i] < CONF + SCORE_TOL for i in unmatched), "extra detections"


def test_deploy_reports_serving_version(deployed, triton):
    assert deployed["status"] == "serving"
    assert deployed["version"] == 1 and deployed["previous_version"] is None
    assert deployed["url"] == triton.grpc_url
    assert detector_versions(triton.repo, MODEL) == [1]


def test_infer_equals_predict(deployed, exported, triton):
    result = _cli("infer", *map(str, exported.images), "--url", triton.grpc_url,
                  "--model", MODEL, "--json", "--batch", "2")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    model, meta = load_trained(exported.weights)
    local = predict(model, exported.images, image_size=meta["image_size"],
                    score_threshold=CONF, workers=0)
    assert [r["image"] for r in rows] == [str(p) for p in exported.images]
    assert sum(len(d) for d in local) > 10, "the model must detect something to compare"
    for row, expected in zip(rows, local, strict=True):
        assert {d["class_name"] for d in row["detections"]} <= set(meta["class_names"])
        assert_same_detections(_from_json(row["detections"]), expected)


def _successes(metrics_url: str, model: str) -> float:
    text = urllib.request.urlopen(metrics_url, timeout=10).read().decode()
    pattern = rf'^nv_inference_request_success{{model="{model}",version="\d+"}} (\S+)$'
    return sum(float(v) for v in re.findall(pattern, text, flags=re.M))


def test_metrics_count_requests(deployed, exported, triton, tmp_path):
    before = _successes(triton.metrics_url, MODEL)
    out = tmp_path / "annotated.png"
    result = _cli("infer", str(exported.images[0]), "--url", triton.grpc_url, "--model", MODEL,
                  "--save", str(out))
    assert result.exit_code == 0, result.output
    assert out.is_file() and f"-> {out}" in result.output
    assert _successes(triton.metrics_url, MODEL) == before + 1


def test_broken_version_keeps_previous_serving(deployed, exported, triton, tmp_path):
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / exported.metadata["file"]).write_bytes(b"not an onnx model")
    with pytest.raises(DeployError, match="rolled back: version 1 is still serving") as info:
        deploy(broken, triton.repo, triton.grpc_url, metadata=exported.metadata)
    assert info.value.result["version"] == 2 and info.value.result["status"] == "rolled_back"
    assert detector_versions(triton.repo, MODEL) == [1]
    result = _cli("infer", str(exported.images[0]), "--url", triton.grpc_url, "--model", MODEL,
                  "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)[0]["detections"], "version 1 still detects"


def test_version_that_does_not_answer_is_rolled_back(deployed, exported, triton, tmp_path):
    """A file that loads but cannot run the configured input (exported for 64 px while the
    metadata says 128): the probe request fails, the detector goes back to version 1."""
    model, _ = load_trained(exported.weights)
    wrong = export_model(model, "onnx", tmp_path / "wrong", image_size=64)
    with pytest.raises(DeployError, match="rolled back: version 1 is still serving"):
        deploy(wrong.parent, triton.repo, triton.grpc_url,
               metadata={**exported.metadata, "file": wrong.name})
    assert detector_versions(triton.repo, MODEL) == [1]
    result = _cli("infer", str(exported.images[0]), "--url", triton.grpc_url, "--model", MODEL,
                  "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)[0]["detections"], "version 1 serves again"


def test_infer_not_an_image(deployed, triton, tmp_path):
    bad = tmp_path / "notes.jpg"
    bad.write_text("this is text")
    result = _cli("infer", str(bad), "--url", triton.grpc_url, "--model", MODEL)
    assert result.exit_code == 2
    assert str(bad) in result.output and "not an image" in result.output


def test_server_side_decode_error_is_reported(deployed, triton):
    with TritonDetector(triton.grpc_url, MODEL) as detector, pytest.raises(
            RequestRejectedError, match="image 0 of the batch: not a decodable image"):
        detector.detect_encoded([b"\x89PNG but not really"])


def test_infer_unknown_model_lists_models(deployed, exported, triton):
    result = _cli("infer", str(exported.images[0]), "--url", triton.grpc_url,
                  "--model", "damoyolo_x")
    assert result.exit_code == 2
    assert "'damoyolo_x'" in result.output and f"{MODEL} (READY)" in result.output


def test_infer_server_down_names_url(exported):
    url = f"127.0.0.1:{free_ports(1)[0]}"
    result = _cli("infer", str(exported.images[0]), "--url", url, "--model", MODEL)
    assert result.exit_code == 2
    assert url in result.output and "no Triton server" in result.output


def test_serve_bench_reports_each_concurrency(deployed, exported, triton, tmp_path):
    out = tmp_path / "bench.json"
    result = _cli("serve-bench", "--url", triton.grpc_url, "--model", MODEL,
                  str(exported.images[0]), "-c", "1", "-c", "2", "--requests", "4",
                  "--out", str(out))
    assert result.exit_code == 0, result.output
    rows = json.loads(out.read_text())["results"]
    assert [r["concurrency"] for r in rows] == [1, 2]
    assert all(r["requests"] == 4 and 0 < r["p50_ms"] <= r["p99_ms"] for r in rows)


def test_serve_deploy_cli_writes_repository(exported, tmp_path):
    repo = tmp_path / "repo"
    shutil.copytree(exported.exported_dir, tmp_path / "exp")
    result = _cli("serve", "deploy", str(tmp_path / "exp"), "--repo", str(repo))
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["status"] == "written"
    assert sorted(p.name for p in Path(repo).iterdir()) == sorted(
        [MODEL, f"{MODEL}_detector", f"{MODEL}_postprocess", f"{MODEL}_preprocess"])
