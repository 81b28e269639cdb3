"""One image fit, end to end, on non-square images: a model trained stretched and one trained
letterboxed each score the same COCO AP through ``damo eval``, the pipeline's evaluate step
and detections served by a real Triton, because all three fit inputs by the mode the
checkpoint recorded (``damo_core.data.fit``) and map boxes back through the same inverse.

Square images would hide a disagreement (letterbox and stretch coincide on them), so the
synthetic set mixes 4:3 and 16:9 images. The models are tiny and briefly trained; their AP
is low but must be above 0, or an agreement of zeros would prove nothing.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from damo_core.cli.app import app
from damo_core.data import CocoDetection, load_dataset_yaml
from damo_core.data.synth import generate
from damo_core.eval.evaluator import score_detections
from damo_core.serve.client import TritonDetector
from damo_core.serve.deploy import deploy
from damo_core.serve.exported import ExportedModel
from damo_core.serve.local_server import LocalTriton
from damo_core.serve.model_config import parse_pbtxt
from damo_core.train.checkpoint_io import read_checkpoint

# Two short trainings and a Triton server: ~15 min on a busy 2-core machine (~7 min a model).
pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]

MODEL, SIZE, EPOCHS = "damoyolo_t", 128, 6
AGREE = 1e-3  # the bound between the three ways of scoring one model
ASPECTS = (4 / 3, 16 / 9)



@dataclass(frozen=True)
class Trained:
    fit: str
    weights: Path
    exported: Path
    metadata: dict


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("non_square") / "synth"
    return generate(root, num_classes=2, num_images=48, image_size=SIZE, seed=0,
                    aspect_ratios=ASPECTS)


def _train(data: Path, out: Path, keep_ratio: bool) -> Path:
    """``damo train`` at cpu_quick's recipe, shortened; evaluated at the last epoch."""
    settings = [f"epochs={EPOCHS}", f"img_size={SIZE}", f"eval_interval={EPOCHS}", "batch=8",
                "no_aug_epochs=1", "workers=0",
                f"augment.keep_ratio={str(keep_ratio).lower()}"]
    result = CliRunner().invoke(app, ["train", "--model", MODEL, "--data", str(data), "--out",
                                      str(out), "--preset", "cpu_quick", *settings])
    assert result.exit_code == 0, result.output
    return out / "best.pt"


@pytest.fixture(scope="module", params=[True, False], ids=["letterbox", "stretch"])
def trained(request: pytest.FixtureRequest, data: Path,
            tmp_path_factory: pytest.TempPathFactory) -> Trained:
    from damo_core.steps import export

    keep_ratio = bool(request.param)
    root = tmp_path_factory.mktemp(f"keep_ratio_{keep_ratio}")
    torch.manual_seed(0)
    weights = _train(data, root / "run", keep_ratio)
    metadata = export.run(weights, root / "exported", fmt="onnx")
    return Trained("letterbox" if keep_ratio else "stretch", weights, root / "exported",
                   metadata)


@pytest.fixture(scope="module")
def triton(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalTriton]:
    repo = tmp_path_factory.mktemp("fit_repo")
    with LocalTriton(repo, startup_timeout=120) as server:
        yield server


def _cli_ap(trained: Trained, data: Path) -> float:
    result = CliRunner().invoke(app, ["eval", "--weights", str(trained.weights), "--data",
                                      str(data)])
    assert result.exit_code == 0, result.output
    return float(json.loads(result.stdout)["AP"])


def _step_ap(trained: Trained, data: Path) -> float:
    """The pipeline's evaluate step, given the artifact directories the pipeline hands it."""
    from damo_core.steps.evaluate import run

    return float(run(trained.weights.parent, data.parent)["AP"])


def _served_ap(trained: Trained, data: Path, server: LocalTriton) -> float:
    """Deploy the export, send every val image's file bytes, COCO-score what comes back."""
    record = deploy(trained.exported, server.repo, server.grpc_url, metadata=trained.metadata)
    assert record["status"] == "serving", record
    config = parse_pbtxt((server.repo / f"{MODEL}_preprocess" / "config.pbtxt").read_text())
    assert config.parameters["fit"].string_value == trained.fit
    val = CocoDetection.from_spec(load_dataset_yaml(data), "val")
    detections = {}
    with TritonDetector(server.grpc_url, MODEL) as client:
        for image_id in val.image_ids:
            info = val.coco.imgs[image_id]
            encoded = (val.image_dir / info["file_name"]).read_bytes()
            (detections[image_id],) = client.detect_encoded([encoded])
    return score_detections(val.coco, detections, cat_ids=val.cat_ids).AP


def test_synthetic_images_are_non_square(data: Path) -> None:
    val = CocoDetection.from_spec(load_dataset_yaml(data), "val")
    shapes = {(img["width"], img["height"]) for img in val.coco.imgs.values()}
    assert {(128, 96), (128, 72)} <= shapes


def test_eval_step_and_triton_agree(trained: Trained, data: Path, triton: LocalTriton) -> None:
    assert read_checkpoint(trained.weights)["fit"] == trained.fit
    assert ExportedModel.from_dir(trained.exported, trained.metadata).fit == trained.fit
    cli, step, served = (_cli_ap(trained, data), _step_ap(trained, data),
                         _served_ap(trained, data, triton))
    print(f"{MODEL} fit={trained.fit}: AP damo eval {cli:.4f} | evaluate step {step:.4f} | "
          f"Triton {served:.4f}")
    assert cli > 0.0, "the model must detect something for the comparison to mean anything"
    assert abs(cli - step) <= AGREE and abs(cli - served) <= AGREE, (cli, step, served)
