"""Optional MLflow logging: one MLflow run per trained model, which the later steps of the same
pipeline run find and add to.

Why MLflow beside TensorBoard: the event files live inside each run directory, one training at
a time; an MLflow server keeps every training of every pipeline run in one searchable table:
parameters, per-epoch curves, the checkpoint, the exported model and the gate's verdict.

How the steps find each other's run: the train and distill steps create a run tagged
``damo.run_id`` (the pipeline run, ``--run-id``) and ``damo.model`` (the model's name) in the
experiment (``--mlflow-experiment``). The export and gate steps search that experiment for the
latest run with the same two tags and log into it; when there is none (a training that ran
without MLflow, or a cached one) they create one, tagged the same way, and say so.

Only an explicit URI (``--mlflow``, the pipeline parameter ``mlflow_uri``) turns logging on:
``$MLFLOW_TRACKING_URI`` is never read, so an environment that happens to set it does not start
sending every training somewhere. ``mlflow`` itself is imported only then, and its absence is an
error naming the extra to install.

A server that is down must not cost a long training: the connection is checked once before
anything else (a clear error naming the URI, with no retries), and once training runs a failed
call is a warning (the first one only) and training goes on; MLflow's retries and timeout are
bounded, so a server that dies mid-training costs each later epoch one 20 s timeout at most,
not minutes of retries.
"""

from __future__ import annotations

import contextlib
import csv
import logging
import os
import sys
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from damo_core.environ import exported_env
from damo_core.errors import UnavailableError, UserInputError

__all__ = ["DEFAULT_EXPERIMENT", "EXTRA", "MlflowMissingError", "MlflowUnavailableError",
           "Tracking", "TrainingLog", "connect", "flat_params", "log_export", "log_gate",
           "training_logged"]

log = logging.getLogger(__name__)

EXTRA = "pip install 'damo-pipeline[mlflow]'"
DEFAULT_EXPERIMENT = "damo-yolo"
TAG_RUN = "damo.run_id"  # the pipeline run (--run-id, the KFP job name)
TAG_MODEL = "damo.model"  # the model's name, as its checkpoint records it
TAG_STEP = "damo.step"  # the step that created the MLflow run: train, distill, export, gate
TAG_GATE = "damo.gate"  # pass | fail
TAG_GATE_REASON = "damo.gate.reason"
RETRIES_ENV = "MLFLOW_HTTP_REQUEST_MAX_RETRIES"
TIMEOUT_ENV = "MLFLOW_HTTP_REQUEST_TIMEOUT"
# The one check before work starts: no retries, a short timeout, so a wrong URI fails at once.
CHECK_ENV = {RETRIES_ENV: "0", TIMEOUT_ENV: "10"}
# Afterwards MLflow's defaults (7 retries with exponential backoff, 120 s timeout) would block
# minutes per call on a dead server: 2 retries ride out a blip, and a training's per-epoch calls
# wait 20 s at most, with no retries once one has failed. Values the user set win.
LOGGING_RETRIES = "2"
EPOCH_TIMEOUT_S = "20"
_PARAMS_PER_CALL = 100  # MLflow's log_batch limit
_MAX_PARAM_VALUE = 6000  # MLflow's param value limit (characters)
_MAX_TAG_VALUE = 5000  # ... and the tag value limit of older servers


class MlflowMissingError(UnavailableError):
    """MLflow logging was asked for but the ``mlflow`` client is not installed."""


class MlflowUnavailableError(UnavailableError):
    """The MLflow tracking server at the URI cannot be used (down, wrong URI, refused)."""


def import_mlflow() -> ModuleType:
    """``mlflow``, imported only when logging is on (it takes seconds and is an extra)."""
    try:
        import mlflow
    except ImportError:
        raise MlflowMissingError(f"MLflow logging (--mlflow, pipeline parameter mlflow_uri) "
                                 f"needs the mlflow client: {EXTRA}") from None
    return mlflow


def _reason(err: BaseException) -> str:
    """The first line of an MLflow or HTTP error, short enough for one line of output."""
    text = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return text if len(text) <= 300 else text[:297] + "..."


def _patience(retries: str = LOGGING_RETRIES,
              timeout_s: str | None = None) -> contextlib.AbstractContextManager[None]:
    """MLflow's retries (and timeout) for the calls in the block, where the user set none."""
    wanted = {RETRIES_ENV: retries, **({TIMEOUT_ENV: timeout_s} if timeout_s else {})}
    return exported_env({k: v for k, v in wanted.items() if not os.environ.get(k)})


def _quoted(value: str) -> str:
    """``value`` as a string literal of MLflow's search filter."""
    if "'" not in value:
        return f"'{value}'"
    if '"' not in value:
        return f'"{value}"'
    raise UserInputError(f"{value!r}: a run id or model name with both quote characters "
                         "cannot be searched for in MLflow")


def flat_params(params: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested settings as MLflow parameters: ``{"augment": {"mosaic_prob": 0.5}}`` becomes
    ``{"augment.mosaic_prob": "0.5"}``; ``None`` is the empty string."""
    out: dict[str, str] = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flat_params(value, f"{name}."))
        else:
            out[name] = "" if value is None else str(value)[:_MAX_PARAM_VALUE]
    return out


@dataclass
class Tracking:
    """A checked connection to one experiment of one MLflow tracking server."""

    uri: str
    experiment: str
    experiment_id: str
    client: Any  # mlflow.tracking.MlflowClient

    def find_run(self, run_id: str, model: str) -> str | None:
        """The latest MLflow run tagged with this pipeline run and model, if any."""
        query = (f"tags.`{TAG_RUN}` = {_quoted(run_id)} and "
                 f"tags.`{TAG_MODEL}` = {_quoted(model)}")
        found = self.client.search_runs([self.experiment_id], query, max_results=1,
                                        order_by=["attributes.start_time DESC"])
        return found[0].info.run_id if found else None

    def create_run(self, run_id: str, model: str, step: str) -> str:
        """A new MLflow run carrying the tags the later steps search for."""
        run = self.client.create_run(self.experiment_id, run_name=f"{model} {run_id}",
                                     tags={TAG_RUN: run_id, TAG_MODEL: model, TAG_STEP: step})
        return str(run.info.run_id)

    @contextlib.contextmanager
    def run_for(self, run_id: str, model: str, step: str) -> Iterator[str]:
        """The run the training of ``model`` in pipeline run ``run_id`` created, else a new one
        (said in a warning: its parameters and curves are then not in MLflow), which is ended
        once the block has logged into it; a found run keeps its status."""
        found = self.find_run(run_id, model)
        if found is not None:
            yield found
            return
        created = self.create_run(run_id, model, step)
        log.warning("MLflow: no run of model %s in pipeline run %s in experiment %s at %s (the "
                    "training ran without MLflow, or elsewhere); created run %s for the %s step",
                    model, run_id, self.experiment, self.uri, created, step)
        yield created
        self.end(created, failed=False)

    def log_params(self, mlflow_run: str, params: Mapping[str, Any]) -> None:
        """``params`` flattened; keys the run already has keep their value (a resumed
        training logs only what is new: MLflow refuses to change a parameter), and a value
        that differs is named in a warning."""
        from mlflow.entities import Param

        have = self.client.get_run(mlflow_run).data.params
        flat = flat_params(params)
        changed = sorted(k for k, v in flat.items() if k in have and have[k] != v)
        if changed:
            log.warning("MLflow: run %s keeps its parameters %s (MLflow cannot change a "
                        "parameter); this training has %s", mlflow_run,
                        {k: have[k] for k in changed}, {k: flat[k] for k in changed})
        new = [Param(k, v) for k, v in flat.items() if k not in have]
        for start in range(0, len(new), _PARAMS_PER_CALL):
            self.client.log_batch(mlflow_run, params=new[start:start + _PARAMS_PER_CALL])

    def log_metrics(self, mlflow_run: str, step: int, values: Mapping[str, float]) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self.client.log_batch(mlflow_run, metrics=[Metric(k, float(v), now, step)
                                                   for k, v in values.items()])

    def log_files(self, mlflow_run: str, files: Iterable[Path], artifact_path: str | None = None
                  ) -> None:
        for path in files:
            self.client.log_artifact(mlflow_run, str(path), artifact_path)

    def end(self, mlflow_run: str, *, failed: bool) -> None:
        # MlflowClient prints the run's URL on stdout here, where a command's JSON goes
        with contextlib.redirect_stdout(sys.stderr):
            self.client.set_terminated(mlflow_run, "FAILED" if failed else "FINISHED")

    def run_url(self, mlflow_run: str) -> str | None:
        """The run's page in the MLflow UI (http(s) servers only)."""
        if not self.uri.startswith(("http://", "https://")):
            return None
        return f"{self.uri.rstrip('/')}/#/experiments/{self.experiment_id}/runs/{mlflow_run}"

    def info(self, mlflow_run: str) -> dict[str, str]:
        """What a step adds to its metadata (the KFP UI shows it on the artifact)."""
        url = self.run_url(mlflow_run)
        return {"mlflow_run_id": mlflow_run, **({"mlflow_run_url": url} if url else {})}


def connect(uri: str, experiment: str = DEFAULT_EXPERIMENT) -> Tracking:
    """Check once, without retries, that ``uri`` answers, and find or create ``experiment``;
    a server that is down, refuses or is misnamed is an error naming the URI."""
    mlflow = import_mlflow()
    if not experiment:
        raise UserInputError("the MLflow experiment name is empty (--mlflow-experiment, "
                             "pipeline parameter mlflow_experiment)")
    client = mlflow.tracking.MlflowClient(tracking_uri=uri)
    with exported_env(CHECK_ENV), _talking(uri, "cannot be used"):
        found = client.get_experiment_by_name(experiment)
        if found is None:
            try:
                return Tracking(uri, experiment, str(client.create_experiment(experiment)),
                                client)
            except mlflow.exceptions.MlflowException:
                found = client.get_experiment_by_name(experiment)  # another step created it
                if found is None:
                    raise
    if found.lifecycle_stage != "active":
        raise MlflowUnavailableError(f"MLflow experiment {experiment!r} at {uri} is deleted; "
                                     "restore it or choose another --mlflow-experiment")
    return Tracking(uri, experiment, str(found.experiment_id), client)


@contextlib.contextmanager
def _talking(uri: str, what: str) -> Iterator[None]:
    """Any failure to talk to the server (MLflow's errors, HTTP, sockets) in the block becomes
    one :class:`MlflowUnavailableError` naming the URI and the fix."""
    try:
        yield
    except Exception as err:  # noqa: BLE001 - whatever the server did, the fix is the same
        raise MlflowUnavailableError(
            f"MLflow tracking server at {uri} {what} ({_reason(err)}); check the URI "
            "(--mlflow, pipeline parameter mlflow_uri) and that the server is up, or leave it "
            "empty to run without MLflow") from None


# --- training: an EpochSink of damo_core.train.tracking ------------------------------------

# results.csv columns -> the names RunTracker gives the same per-epoch values (replay)
_CSV_METRICS = {"lr": "train/lr", "loss": "train/loss", "loss_qfl": "train/loss_qfl",
                "loss_dfl": "train/loss_dfl", "loss_giou": "train/loss_giou",
                "loss_distill": "train/loss_distill", "distill_weight": "train/distill_weight",
                "epoch_time_s": "epoch/time_s", "AP": "val/AP", "AP50": "val/AP50",
                "AP75": "val/AP75"}
# files of a run directory logged as artifacts when its training ends
RUN_FILES = ("best.pt", "results.csv")


class _EpochLog:
    """One training's MLflow run as an ``EpochSink``: per-epoch metrics, then (when the fit
    ended without an exception) the checkpoint and results.csv. No call raises: the first
    failure is a warning, later ones are counted and summed up when the run closes, and
    training goes on. Once a call has failed, the next ones are tried once each (a server that
    is back is used again; one that is gone costs one timeout at most)."""

    def __init__(self, tracking: Tracking, mlflow_run: str, out_dir: Path) -> None:
        self.tracking, self.mlflow_run, self.out_dir = tracking, mlflow_run, out_dir
        self.calls = self.failures = 0

    def _try(self, what: str, call: Any, *args: Any, timeout_s: str | None = EPOCH_TIMEOUT_S,
             **kwargs: Any) -> None:
        self.calls += 1
        try:
            with _patience("0" if self.failures else LOGGING_RETRIES, timeout_s):
                call(*args, **kwargs)
        except Exception as err:  # noqa: BLE001 - logging must never end a training
            self.failures += 1
            if self.failures == 1:
                log.warning("MLflow logging to %s failed (%s: %s); training continues, further "
                            "failures are counted, not repeated", self.tracking.uri, what,
                            _reason(err))

    def epoch(self, epoch: int, values: Mapping[str, float]) -> None:
        self._try(f"epoch {epoch} metrics", self.tracking.log_metrics, self.mlflow_run, epoch,
                  values)

    def close(self, *, failed: bool) -> None:
        if not failed:
            files = [self.out_dir / name for name in RUN_FILES if (self.out_dir / name).is_file()]
            # an upload of hundreds of MB may take longer than a metric call: MLflow's timeout
            self._try("checkpoint", self.tracking.log_files, self.mlflow_run, files,
                      timeout_s=None)
        self._try("end of run", self.tracking.end, self.mlflow_run, failed=failed)
        if self.failures:
            log.warning("MLflow: %d of %d calls to %s failed; run %s is incomplete",
                        self.failures, self.calls, self.tracking.uri, self.mlflow_run)


@dataclass
class TrainingLog:
    """Opens an MLflow run for each training that starts while it is registered with
    :func:`damo_core.train.tracking.extra_sinks` (one for ``damo train``, one per link of
    ``damo distill-chain``). ``params`` (the data, the preset) are added to what the trainer
    says about itself; ``runs`` are the MLflow runs opened, in order."""

    tracking: Tracking
    run_id: str
    params: Mapping[str, Any] = field(default_factory=dict)
    runs: list[str] = field(default_factory=list)

    def __call__(self, out_dir: Path, params: Mapping[str, Any], *, resumed: bool) -> _EpochLog:
        """The sink of one fit. A resumed fit continues the latest run of the same pipeline
        run and model; a new one gets a new run. A server that fails here fails the fit
        before its first batch."""
        merged = {**params, **self.params}
        model = str(merged.get("model", ""))
        step = "distill" if "teacher" in merged else "train"
        with _patience(), _talking(self.tracking.uri, f"cannot start the run of {model}"):
            mlflow_run = self.tracking.find_run(self.run_id, model) if resumed else None
            if mlflow_run is None:
                if resumed:
                    log.warning("MLflow: no run of model %s in pipeline run %s to continue; "
                                "the resumed training starts a new one", model, self.run_id)
                mlflow_run = self.tracking.create_run(self.run_id, model, step)
            else:
                self.tracking.client.update_run(mlflow_run, status="RUNNING")
            self.tracking.log_params(mlflow_run, merged)
        self.runs.append(mlflow_run)
        return _EpochLog(self.tracking, mlflow_run, Path(out_dir))

    def replay(self, out_dir: str | Path, params: Mapping[str, Any]) -> None:
        """Log a training that ran in other processes (torchrun ranks, a job's pods) after it
        ended: the same parameters, one value per epoch from its ``results.csv`` (rounded to the
        6 digits the CSV keeps) and the checkpoint, as if it had been logged live."""
        out_dir = Path(out_dir)
        sink = self(out_dir, params, resumed=False)
        with (out_dir / "results.csv").open(newline="") as rows:
            for row in csv.DictReader(rows):
                values = {name: float(row[col]) for col, name in _CSV_METRICS.items()
                          if row.get(col) not in (None, "")}
                sink.epoch(int(row["epoch"]), values)
        sink.close(failed=False)

    def info(self) -> dict[str, str]:
        """The last opened run's id and page, for the step's metadata; empty when none."""
        return self.tracking.info(self.runs[-1]) if self.runs else {}


@contextlib.contextmanager
def training_logged(uri: str | None, experiment: str = DEFAULT_EXPERIMENT, *, run_id: str,
                    params: Mapping[str, Any] | None = None) -> Iterator[TrainingLog | None]:
    """Log every training started in the block to MLflow at ``uri``; yields ``None`` and does
    nothing when ``uri`` is empty. The connection is checked on entry, before any training."""
    if not uri:
        yield None
        return
    from damo_core.train.tracking import extra_sinks

    logger = TrainingLog(connect(uri, experiment), run_id, dict(params or {}))
    with extra_sinks(logger):
        yield logger


def checkpoint_params(weights: str | Path) -> dict[str, Any]:
    """What a trainer says about itself (``Trainer.run_params``), read back from the
    checkpoint it wrote: for a training that ran in other processes."""
    from damo_core.train.checkpoint_io import read_checkpoint

    ckpt = read_checkpoint(weights)
    params: dict[str, Any] = {"model": ckpt["model_name"], "image_size": ckpt["image_size"],
                              "num_classes": ckpt["num_classes"], **ckpt["train_config"]}
    if "train_precision" in ckpt:  # checkpoints from before it was recorded lack it
        params["train_precision"] = ckpt["train_precision"]
    if ckpt.get("distill"):
        params.update(teacher=ckpt["distill"]["teacher"], distill=ckpt["distill"]["config"])
    return params


# --- the steps after training ---------------------------------------------------------------

def log_export(tracking: Tracking, *, run_id: str, model: str, path: Path, fmt: str,
               since: float) -> dict[str, str]:
    """The exported files under ``export/<fmt>`` in the model's run; returns the run's id and
    page. They are ``path`` and the files beside it with its stem written since ``since`` (a
    ``time.time()`` taken before the export): OpenVINO's ``.bin``, TensorRT's ``.json``, but not
    an earlier export of another format into the same directory."""
    # 2 s of slack: file systems that store modification times in whole seconds (or two)
    files = sorted(p for p in path.parent.iterdir()
                   if p.is_file() and (p == path or (p.name.startswith(f"{path.stem}.")
                                                     and p.stat().st_mtime >= since - 2)))
    with _patience(), _talking(tracking.uri, "did not take the export"):
        with tracking.run_for(run_id, model, "export") as mlflow_run:
            tracking.log_files(mlflow_run, files, f"export/{fmt}")
            tracking.client.set_tag(mlflow_run, f"damo.export.{fmt}", path.name)
    return tracking.info(mlflow_run)


def log_gate(tracking: Tracking, *, run_id: str, model: str, passed: bool,
             reason: str) -> dict[str, str]:
    """The gate's verdict as tags of the model's run: ``damo.gate`` = pass | fail and
    ``damo.gate.reason``; returns the run's id and page."""
    with _patience(), _talking(tracking.uri, "did not take the verdict"):
        with tracking.run_for(run_id, model, "gate") as mlflow_run:
            tracking.client.set_tag(mlflow_run, TAG_GATE, "pass" if passed else "fail")
            tracking.client.set_tag(mlflow_run, TAG_GATE_REASON, reason[:_MAX_TAG_VALUE])
    return tracking.info(mlflow_run)
