"""MLflow logging (issue #21) against a real ``mlflow server`` on 127.0.0.1.

``damo train``, ``damo distill``, ``damo export`` and ``damo gate`` run with ``--mlflow`` as a
user types them; what they logged is read back through ``MlflowClient``: parameters, one value
per epoch, the checkpoint and the exported model as artifacts, the gate's verdict as tags, all
in the one run the training created. Then what must not happen: a server that is down or a
missing client starting a training, ``$MLFLOW_TRACKING_URI`` turning logging on, a server that
dies mid-training ending the training.
"""

from __future__ import annotations

import csv
import json
import logging
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner, Result

from damo_core.cli.app import app
from damo_core.data.synth import generate
from damo_core.metrics.mlflow_tracking import DEFAULT_EXPERIMENT, EXTRA, TrainingLog, connect
from damo_core.steps._common import dataset_ref
from damo_core.train import Trainer, load_train_config
from damo_core.train.tracking import extra_sinks
from tests.servers import free_port, mlflow_server

EXPERIMENT = "damo-test"
RUN = "pipeline-run-1"
DISTILL_RUN = "pipeline-run-2"
MODEL = "damoyolo_ns"
# the training tests' tiny schedule (tests/train/test_distill.py TINY) as key=value settings
TINY = ["warmup_epochs=1", "no_aug_epochs=1", "workers=0", "precise_bn_batches=1", "ema_tau=10",
        "augment.mosaic_prob=0.5", "augment.mixup_prob=0.2"]
PER_EPOCH = ("val/AP", "val/AP50", "val/AP75", "train/loss", "train/loss_qfl",
             "train/loss_dfl", "train/loss_giou", "train/lr", "epoch/time_s")
MLFLOW_LOG = "damo_core.metrics.mlflow_tracking"
ROOT = Path(__file__).resolve().parents[2]


def _client(uri: str) -> Any:
    """An ``mlflow.tracking.MlflowClient``, the class imported on first use: importing
    mlflow's thousands of modules makes every later pipeline compile (KFP walks
    ``inspect.stack()`` per task) several times slower, so collecting this file must not."""
    from mlflow.tracking import MlflowClient

    return MlflowClient(uri)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with mlflow_server(tmp_path_factory.mktemp("mlflow")) as url:
        yield url


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate(tmp_path_factory.mktemp("data") / "synth", num_classes=2, num_images=16,
                    image_size=64, seed=3)


def _damo(*args: object) -> Result:
    return CliRunner().invoke(app, [str(a) for a in args])


def _ok(result: Result) -> Result:
    assert result.exit_code == 0, result.stderr + str(result.exception)
    return result


@pytest.fixture(scope="module")
def steps(server: str, data: Path, tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    """Train (2 epochs), distil from it (1 epoch, its own pipeline run), export the trained
    model and gate it, each with --mlflow."""
    root = tmp_path_factory.mktemp("steps")
    mlflow = ["--mlflow", server, "--mlflow-experiment", EXPERIMENT]
    train = _ok(_damo("train", "--model", MODEL, "--data", data, "--out", root / "train",
                      "--epochs", 2, "--batch", 4, "--img-size", 64, "--run-id", RUN, *mlflow,
                      *TINY))
    _ok(_damo("distill", "--student", MODEL, "--teacher", root / "train", "--data", data,
              "--out", root / "distill", "--epochs", 1, "--batch", 4, "--img-size", 64,
              "--run-id", DISTILL_RUN, *mlflow, *TINY, "no_aug_epochs=0",
              "distill.weight_start=0.1", "distill.weight_end=0.01"))
    export = _ok(_damo("export", "--weights", root / "train", "--format", "onnx", "--out",
                       root / "export", "--run-id", RUN, *mlflow))
    gate = _ok(_damo("gate", "--value", 0.5, "--map-floor", 0.3, "--model", MODEL,
                     "--run-id", RUN, *mlflow))
    client = _client(server)
    experiment = client.get_experiment_by_name(EXPERIMENT).experiment_id
    return SimpleNamespace(root=root, client=client, experiment=experiment,
                           train_stdout=train.stdout, export_stdout=export.stdout,
                           gate_stdout=gate.stdout)


def _runs(steps: SimpleNamespace, run_id: str) -> list[Any]:
    return steps.client.search_runs([steps.experiment], f"tags.`damo.run_id` = '{run_id}'")


def _history(client: Any, mlflow_run: str, key: str) -> list[tuple[int, float]]:
    return [(m.step, m.value) for m in client.get_metric_history(mlflow_run, key)]


def test_train_export_and_gate_share_one_run(steps):
    (run,) = _runs(steps, RUN)  # export and gate found the training's run, created none
    tags = run.data.tags
    assert (tags["damo.model"], tags["damo.step"], run.info.status) == (MODEL, "train",
                                                                       "FINISHED")
    assert tags["damo.gate"] == "pass" and tags["damo.gate.reason"].startswith(
        f"{MODEL}: PASS: AP50 0.5000 >= 0.3000")
    # MLflow's own "View run" lines go to stderr: stdout stays what scripts parse
    assert json.loads(steps.train_stdout)["model"] == MODEL
    assert steps.export_stdout.strip().endswith(".onnx")
    assert steps.gate_stdout.startswith(f"{MODEL}: PASS")


def test_parameters_say_what_was_trained(steps, data):
    (run,) = _runs(steps, RUN)
    params = run.data.params
    assert {k: params[k] for k in ("model", "epochs", "batch", "img_size", "image_size",
                                   "num_classes", "preset", "weights", "no_aug_epochs",
                                   "augment.mosaic_prob", "augment.mixup_prob")} == {
        "model": MODEL, "epochs": "2", "batch": "4", "img_size": "64", "image_size": "64",
        "num_classes": "2", "preset": "", "weights": "", "no_aug_epochs": "1",
        "augment.mosaic_prob": "0.5", "augment.mixup_prob": "0.2"}
    assert params["data"] == dataset_ref(data)
    assert "teacher" not in params and not any(k.startswith("distill.") for k in params)


def test_one_value_per_epoch_as_in_results_csv(steps):
    (run,) = _runs(steps, RUN)
    rows = list(csv.DictReader((steps.root / "train" / "results.csv").open()))
    for key in PER_EPOCH:
        assert [step for step, _ in _history(steps.client, run.info.run_id, key)] == [1, 2], key
    for key, column in (("val/AP", "AP"), ("val/AP50", "AP50"), ("train/loss", "loss"),
                        ("train/loss_giou", "loss_giou"), ("train/lr", "lr")):
        values = [v for _, v in _history(steps.client, run.info.run_id, key)]
        assert values == pytest.approx([float(r[column]) for r in rows], rel=1e-5, abs=1e-7), key


def test_checkpoint_and_exported_model_are_artifacts(steps):
    (run,) = _runs(steps, RUN)
    listed = {a.path: a for a in steps.client.list_artifacts(run.info.run_id)}
    assert set(listed) == {"best.pt", "results.csv", "export"}
    assert listed["best.pt"].file_size == (steps.root / "train" / "best.pt").stat().st_size
    (onnx,) = steps.client.list_artifacts(run.info.run_id, "export/onnx")
    exported = Path(steps.export_stdout.strip())
    assert onnx.path == f"export/onnx/{exported.name}"
    assert onnx.file_size == exported.stat().st_size
    assert run.data.tags["damo.export.onnx"] == exported.name


def test_distillation_records_its_teacher_and_weights(steps):
    (run,) = _runs(steps, DISTILL_RUN)
    params = run.data.params
    assert run.data.tags["damo.step"] == "distill"
    assert params["teacher"] == str(steps.root / "train" / "best.pt")
    assert (params["distill.weight_start"], params["distill.weight_end"]) == ("0.1", "0.01")
    for key in ("train/loss_distill", "train/distill_weight", "val/AP"):
        assert [s for s, _ in _history(steps.client, run.info.run_id, key)] == [1], key


def test_a_training_placed_elsewhere_is_replayed_as_if_logged_live(steps, server, data,
                                                                     tmp_path, monkeypatch):
    """torchrun's ranks and a job's pods are started without the URI, so the train step logs
    such a training from its run directory once it ends. Here the "job" hands back the live
    run's directory: the replayed run has the live run's parameters and curves (to the 6
    digits results.csv keeps) and the step's metadata names it."""
    import damo_core.cluster.placement as placement
    from damo_core.steps import train as train_step
    from damo_core.steps._training import Placement

    def job(where: Any, data_ref: str, out: Path, **kwargs: Any) -> None:
        shutil.copytree(steps.root / "train", out)

    monkeypatch.setattr(placement, "train_placed", job)
    meta = train_step.run(data, tmp_path / "run", model=MODEL, settings={"epochs": 2},
                          run_id="replayed", placement=Placement(2, 1, "pvc"),
                          mlflow_uri=server, mlflow_experiment=EXPERIMENT)
    (live,), (replayed,) = _runs(steps, RUN), _runs(steps, "replayed")
    assert meta["mlflow_run_id"] == replayed.info.run_id
    assert meta["mlflow_run_url"].endswith(f"/runs/{replayed.info.run_id}")
    assert replayed.data.params == live.data.params
    assert (replayed.data.tags["damo.step"], replayed.info.status) == ("train", "FINISHED")
    assert {a.path for a in steps.client.list_artifacts(replayed.info.run_id)} == {
        "best.pt", "results.csv"}
    for key in PER_EPOCH:
        ours = _history(steps.client, replayed.info.run_id, key)
        theirs = _history(steps.client, live.info.run_id, key)
        assert [s for s, _ in ours] == [s for s, _ in theirs], key
        tolerance = {"abs": 0.006} if key == "epoch/time_s" else {"rel": 1e-5, "abs": 1e-7}
        assert [v for _, v in ours] == pytest.approx([v for _, v in theirs], **tolerance), key


def test_a_resumed_training_continues_its_run(server, tmp_path, caplog):
    """``damo train --resume`` after a pre-emption: the same MLflow run, running again, its
    curves continued; a setting the resumed training changed is named, not silently lost."""
    logger = TrainingLog(connect(server, EXPERIMENT), "resumed")
    first = logger(tmp_path, {"model": MODEL, "epochs": 2}, resumed=False)
    first.epoch(1, {"val/AP": 0.1})
    first.close(failed=True)  # pre-empted after epoch 1
    with caplog.at_level(logging.WARNING, logger=MLFLOW_LOG):
        again = logger(tmp_path, {"model": MODEL, "epochs": 4, "seed": 1}, resumed=True)
    assert again.mlflow_run == first.mlflow_run
    client = _client(server)
    run = client.get_run(again.mlflow_run)
    assert run.info.status == "RUNNING"
    assert (run.data.params["epochs"], run.data.params["seed"]) == ("2", "1")
    assert "keeps its parameters {'epochs': '2'}" in caplog.text
    assert "this training has {'epochs': '4'}" in caplog.text
    again.epoch(2, {"val/AP": 0.2})
    again.close(failed=False)
    assert _history(client, again.mlflow_run, "val/AP") == [(1, 0.1), (2, 0.2)]
    assert client.get_run(again.mlflow_run).info.status == "FINISHED"


def test_a_server_that_is_down_stops_training_before_it_starts(data, tmp_path):
    uri = f"http://127.0.0.1:{free_port()}"  # nobody listens there
    started = time.monotonic()
    result = _damo("train", "--model", MODEL, "--data", data, "--out", tmp_path / "run",
                   "--epochs", 1, "--batch", 4, "--img-size", 64, "--mlflow", uri, *TINY)
    assert result.exit_code == 2, result.stderr
    assert f"MLflow tracking server at {uri} cannot be used" in result.stderr
    assert "--mlflow" in result.stderr
    assert not (tmp_path / "run").exists()  # nothing trained, nothing written
    assert time.monotonic() - started < 30  # no retries with backoff


def test_missing_mlflow_names_the_extra(monkeypatch, data, tmp_path):
    monkeypatch.setitem(sys.modules, "mlflow", None)  # `import mlflow` raises ImportError
    for args in (["train", "--model", MODEL, "--data", data, "--out", tmp_path / "run"],
                 ["gate", "--value", 0.5, "--map-floor", 0.3, "--model", MODEL]):
        result = _damo(*args, "--mlflow", "http://127.0.0.1:5000")
        assert result.exit_code == 2, result.stderr
        assert EXTRA in result.stderr and EXTRA == "pip install 'damo-pipeline[mlflow]'"
    assert not (tmp_path / "run").exists()


def test_tracking_uri_variable_does_not_turn_logging_on(server, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", server)
    _ok(_damo("gate", "--value", 0.5, "--map-floor", 0.3, "--model", MODEL, "--run-id",
              "env-only"))
    client = _client(server)
    experiments = [e.experiment_id for e in client.search_experiments()]
    assert not client.search_runs(experiments, "tags.`damo.run_id` = 'env-only'")
    import typer.main

    commands = typer.main.get_command(app).commands
    for name in ("train", "distill", "distill-chain", "export", "gate"):
        (option,) = [p for p in commands[name].params if p.name == "mlflow"]
        assert not option.envvar, name  # no variable stands in for --mlflow


def test_gate_without_a_training_run_creates_one_and_says_so(server, caplog):
    mlflow = ["--mlflow", server, "--mlflow-experiment", EXPERIMENT, "--run-id", "no-training"]
    with caplog.at_level(logging.WARNING, logger=MLFLOW_LOG):
        result = _damo("gate", "--value", 0.1, "--map-floor", 0.3, "--model", MODEL, *mlflow)
    assert result.exit_code == 1  # FAIL: not deployed
    assert "no run of model damoyolo_ns in pipeline run no-training" in caplog.text
    caplog.clear()
    _ok(_damo("gate", "--value", 0.5, "--map-floor", 0.3, "--model", MODEL, *mlflow))
    assert "no run of model" not in caplog.text  # the second gate found the first one's run
    client = _client(server)
    experiment = client.get_experiment_by_name(EXPERIMENT).experiment_id
    (run,) = client.search_runs([experiment], "tags.`damo.run_id` = 'no-training'")
    assert (run.data.tags["damo.step"], run.data.tags["damo.gate"]) == ("gate", "pass")
    assert run.info.status == "FINISHED"
    result = _damo("gate", "--value", 0.5, "--map-floor", 0.3, "--mlflow", server)
    assert result.exit_code == 2 and "--model" in result.stderr  # nothing names the run


def test_a_server_that_dies_mid_training_costs_a_warning_not_the_training(
        server, data, tmp_path, monkeypatch, caplog):
    """The run is created while the server answers; then every call goes to a port nobody
    listens on (the server "died"): one warning, and the training finishes."""
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")  # set by the user: it wins
    logger = TrainingLog(connect(server, EXPERIMENT), "server-died")

    def dies_after_start(out_dir: Path, params: dict[str, Any], *, resumed: bool) -> Any:
        sink = logger(out_dir, params, resumed=resumed)
        logger.tracking.client = _client(f"http://127.0.0.1:{free_port()}")
        return sink

    cfg = load_train_config(overrides={"epochs": 2, "batch": 4, "img_size": 64,
                                       "warmup_epochs": 1, "no_aug_epochs": 1, "workers": 0,
                                       "precise_bn_batches": 1})
    with caplog.at_level(logging.WARNING, logger=MLFLOW_LOG), extra_sinks(dies_after_start):
        result = Trainer(MODEL, data, tmp_path / "run", cfg, progress=False).fit()
    assert result.epochs == 2 and result.best.is_file()
    failures = [r.getMessage() for r in caplog.records if "training continues" in r.message]
    assert len(failures) == 1 and "epoch 1 metrics" in failures[0]
    assert "4 of 4 calls" in caplog.text  # 2 epochs, the checkpoint, the end of the run
    (run,) = _client(server).search_runs([logger.tracking.experiment_id],
                                              "tags.`damo.run_id` = 'server-died'")
    assert run.info.status == "RUNNING" and not run.data.metrics


def test_pipeline_parameter_reaches_the_steps(tmp_path):
    """Compiled in a fresh interpreter: in one that has imported mlflow, KFP's compiler (it
    walks ``inspect.stack()`` per task) takes several times as long."""
    from kfp import dsl

    ir = tmp_path / "pipeline.yaml"
    script = "import sys; from pipelines.damo_pipeline import compile_pipeline as c; c(sys.argv[1])"
    subprocess.run([sys.executable, "-c", script, str(ir)], check=True, cwd=ROOT, timeout=300)
    spec = next(yaml.safe_load_all(ir.read_text()))
    # declared, so `damo pipeline run --local mlflow_uri=...` and `submit` accept it (the
    # parameter check reads the same declaration)
    params = spec["root"]["inputDefinitions"]["parameters"]
    assert params["mlflow_uri"] == {"defaultValue": "", "isOptional": True,
                                    "parameterType": "STRING"}  # off unless given
    assert params["mlflow_experiment"]["defaultValue"] == DEFAULT_EXPERIMENT
    tasks = spec["root"]["dag"]["tasks"]
    logging_steps = [n for n in tasks if n.split("-")[0] in ("train", "distill", "export",
                                                              "gate")]
    # teacher, 3 students, the control (under its "-control" run id), 4 exports, 4 gates
    assert len(logging_steps) == 13
    for name in logging_steps:
        inputs = tasks[name]["inputs"]["parameters"]
        for key in ("mlflow_uri", "mlflow_experiment"):
            assert inputs[key] == {"componentInputParameter": key}, name
        assert inputs["run_id"] == {
            "runtimeValue": {"constant": dsl.PIPELINE_JOB_NAME_PLACEHOLDER}}, name
