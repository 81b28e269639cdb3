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
from damo_core.eval.postprocess import Detections, nms_defaults
from damo_core.eval.predict import predict
from damo_core.export.formats import export_model
from damo_core.models.layers.box_ops import pairwise_iou
from damo_core.serve.client import TritonDetector
from damo_core.serve.deploy import deploy
from damo_core.serve.errors import DeployError, RequestRejectedError
from damo_core.serve.local_server import free_ports
from damo_core.serve.repository import detector_versions
from damo_core.train.checkpoint_io import load_trained
from tests.serve.conftest import CHECKPOINT_CONF, MODEL

CONF = 0.3  # the threshold infer and predict are compared at
MAX_DETS = 100  # damo predict's and the deployment's max_detections
NMS_IOU = nms_defaults(MODEL)[1]  # the server's (and predict's) NMS IoU threshold
# ORT on the fused graph vs PyTorch eager, float32: boxes move by ~1e-3 px, scores by ~1e-4;
# IoU 0.98 is a 0.1 px shift on a 10 px box, far above that noise and far below a different box.
MATCH_IOU, SCORE_TOL = 0.98, 2e-3


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


def _cutoff(dets: Detections) -> float:
    """The lowest score a side could have kept: the threshold, or, when the side is full
    (``max_detections``), its last kept score (what ranks below it is cut, not absent)."""
    return float(dets.scores.min()) if len(dets) >= MAX_DETS else CONF


def assert_same_detections(served: Detections, local: Detections) -> None:
    """Same objects, classes and scores on both sides, matched by IoU (not by raw coordinates:
    a box differs by float32 noise between ORT and PyTorch, and its pairing must not hinge on
    which coordinate moved most).

    Pairs are made greedily, highest IoU first, within a class. A pair must overlap with IoU
    >= MATCH_IOU and agree on the score within SCORE_TOL. Float32 cannot rank saturated
    scores (>= 1 - SCORE_TOL, often exactly 1.0): among such ties, which of two overlapping
    boxes NMS keeps is decided by rounding, so two saturated boxes pair when NMS would have
    merged them (IoU > the server's NMS threshold). A detection may exist on one side only if
    its score is within SCORE_TOL of that side's cutoff (the threshold, or the last kept score
    when ``max_detections`` cut the list); nothing else may.
    """
    iou = pairwise_iou(local.boxes, served.boxes) if len(local) and len(served) else None
    unmatched_local, unmatched_served = set(range(len(local))), set(range(len(served)))
    if iou is not None:
        same_class = local.labels[:, None] == served.labels[None, :]
        candidates = sorted(((float(iou[i, j]), i, j) for i, j in same_class.nonzero().tolist()),
                            reverse=True)
        for overlap, i, j in candidates:
            if i not in unmatched_local or j not in unmatched_served:
                continue
            s_local, s_served = float(local.scores[i]), float(served.scores[j])
            tied = min(s_local, s_served) >= 1.0 - SCORE_TOL
            if overlap >= MATCH_IOU or (tied and overlap > NMS_IOU):
                assert abs(s_local - s_served) < SCORE_TOL, (local.boxes[i], s_local, s_served)
                unmatched_local.discard(i)
                unmatched_served.discard(j)
    for side, dets, left in (("local", local, unmatched_local),
                             ("served", served, unmatched_served)):
        cutoff = _cutoff(dets)
        for i in sorted(left):
            box, score = dets.boxes[i].tolist(), float(dets.scores[i])
            assert score < cutoff + SCORE_TOL, (
                f"{side} detection {box} ({score:.4f}, class {int(dets.labels[i])}) has no "
                f"counterpart and is not at the cutoff {cutoff:.4f}")


def test_deploy_reports_serving_version(deployed, exported, triton):
    assert deployed["status"] == "serving"
    assert deployed["version"] == 1 and deployed["previous_version"] is None
    assert deployed["url"] == triton.grpc_url
    assert detector_versions(triton.repo, MODEL) == [1]
    # The checkpoint's best-F1 threshold, through export and repository, is the served default.
    with TritonDetector(triton.grpc_url, MODEL) as detector:
        assert detector.default_score_threshold == CHECKPOINT_CONF
        [default] = detector.detect(exported.images[:1])
        [explicit] = detector.detect(exported.images[:1], score_threshold=CHECKPOINT_CONF)
    assert len(default) and bool((default.scores > CHECKPOINT_CONF).all())
    assert torch.equal(default.scores, explicit.scores)


def test_infer_equals_predict(deployed, exported, triton):
    result = _cli("infer", *map(str, exported.images), "--url", triton.grpc_url,
                  "--model", MODEL, "--json", "--batch", "2", "--conf", str(CONF))
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
