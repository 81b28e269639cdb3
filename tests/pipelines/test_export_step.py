"""The export step: ``export_dynamic_batch`` and ``export_precision`` reach every export task,
and a dynamic-batch export runs any batch and lets Triton's native variant batch requests (a
static one cannot)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from damo_core.export.onnx import load_runner
from damo_core.models import build_model
from damo_core.serve.exported import ExportedModel
from damo_core.serve.model_config import ServingOptions, batch_capacity
from damo_core.steps import export
from damo_core.steps._common import WEIGHTS
from damo_core.train.checkpoint_io import atomic_save, model_meta
from pipelines.damo_pipeline import compile_pipeline
from pipelines.remote import walk_tasks


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    model = build_model("damoyolo_ns", num_classes=2).eval()
    root = tmp_path_factory.mktemp("trained")
    atomic_save({**model_meta(model, ["a", "b"], 64), "model": model.state_dict(),
                 "ema": None}, root / WEIGHTS)
    return root


@pytest.mark.parametrize("dynamic", [True, False])
def test_dynamic_batch_export_serves_batches(model_dir: Path, tmp_path: Path,
                                             dynamic: bool) -> None:
    meta = export.run(model_dir, tmp_path, fmt="onnx", dynamic_batch=dynamic)
    assert meta["dynamic_batch"] is dynamic
    exported = ExportedModel.from_dir(tmp_path, metadata=meta)
    assert exported.dynamic_batch is dynamic
    options = ServingOptions()
    assert batch_capacity(exported, options, "native") == (options.max_batch_size if dynamic
                                                           else 1)
    batch = 3 if dynamic else 1
    scores, boxes = load_runner(tmp_path / meta["file"], threads=1)(
        np.zeros((batch, 3, 64, 64), np.float32))
    assert scores.shape[0] == boxes.shape[0] == batch


def test_pipeline_parameter_reaches_every_export(tmp_path: Path) -> None:
    path = compile_pipeline(str(tmp_path / "pipeline.yaml"))
    spec, _ = yaml.safe_load_all(Path(path).read_text())
    param = spec["root"]["inputDefinitions"]["parameters"]["export_dynamic_batch"]
    assert param["defaultValue"] is False and param["parameterType"] == "BOOLEAN"
    exports = [task for names, task in walk_tasks(spec) if names[-1].startswith("export")]
    assert len(exports) == 4
    for task in exports:
        assert task["inputs"]["parameters"]["dynamic_batch"] == {
            "componentInputParameter": "export_dynamic_batch"}
    precision = spec["root"]["inputDefinitions"]["parameters"]["export_precision"]
    assert precision["defaultValue"] == "fp32" and precision["parameterType"] == "STRING"
    for task in exports:  # precision and the dataset that calibrates and scores it
        assert task["inputs"]["parameters"]["precision"] == {
            "componentInputParameter": "export_precision"}
        assert task["inputs"]["artifacts"]["data"]["taskOutputArtifact"]["producerTask"] \
            == "unify"
