"""TensorBoard event files of a training run, and an HTML page of them for the KFP UI.

``results.csv`` has one row per epoch; the event files add the per-step view (every loss term,
the learning rate, the distillation weight) and what the model predicts on a few validation
images at each evaluation, which a CSV cannot hold. They are written under
``<out_dir>/tensorboard/``, inside the run directory the pipeline stores as the model
artifact, so ``tensorboard --logdir <run or downloaded artifact>/tensorboard`` works on any
run. KFP v2 has no TensorBoard output type (v1's ``mlpipeline-ui-metadata`` viewer is gone),
so :func:`write_page` renders the same event files as one self-contained HTML page for a
component's ``Output[HTML]``.

Every event is indexed by the optimiser step, the per-epoch ones at the step that ended the
epoch. One step axis lets a resumed run open its writer with ``purge_step`` just past its
checkpoint's step: TensorBoard then drops whatever the interrupted run logged after that
checkpoint (per-step and per-epoch alike), so no step appears twice.

Other destinations of the per-epoch values (an MLflow run, :mod:`damo_core.metrics.mlflow_tracking`)
are sinks behind the same tracker: whoever starts a training registers a sink factory with
:func:`extra_sinks` around it, and every tracker session opened inside (rank 0 only) opens one
sink and hands it each epoch's values. Registering around the call, rather than passing the sink
down, reaches every training a command starts, the links of a distillation chain included,
without each training function growing a parameter for it.
"""

from __future__ import annotations

import base64
import contextlib
import html
import io
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextvars import ContextVar
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import torch
from PIL import Image

from damo_core.atomic import atomic_write_text
from damo_core.eval import EvalResult, draw_detections, predict_dataset

if TYPE_CHECKING:
    from damo_core.data.manifest_dataset import ManifestDetection
    from damo_core.models import Detector

LOG_DIR = "tensorboard"
# Per-step scalars every this many optimiser steps: dense enough for a curve, small on disk.
STEP_EVERY = 10
# Validation images drawn with their predictions at each evaluation (the first rows of val).
SAMPLE_IMAGES = 4
# ... shrunk to at most this many pixels a side: a run evaluated every epoch keeps every image,
# and full-size PNGs would make the event files (and the model artifact) hundreds of MB.
SAMPLE_SIDE = 320
VAL_METRICS = ("AP", "AP50", "AP75")


class EpochSink(Protocol):
    """A second destination of a run's per-epoch values. Its methods must not raise: a sink
    that loses its server warns and lets training go on."""

    def epoch(self, epoch: int, values: Mapping[str, float]) -> None:
        """``values`` named as the TensorBoard tags (``train/loss``, ``val/AP`` ...)."""

    def close(self, *, failed: bool) -> None:
        """The fit ended (``failed``: by an exception)."""


class SinkFactory(Protocol):
    """Opens the sink of one fit of the run in ``out_dir``; ``params`` say what the run is
    (``Trainer.run_params``). May raise: that stops the fit before its first batch."""

    def __call__(self, out_dir: Path, params: Mapping[str, Any], *,
                 resumed: bool) -> EpochSink: ...


_SINK_FACTORIES: ContextVar[tuple[SinkFactory, ...]] = ContextVar("damo_epoch_sinks",
                                                                  default=())


@contextlib.contextmanager
def extra_sinks(*factories: SinkFactory) -> Iterator[None]:
    """Every tracker session opened in the block (rank 0's) also opens a sink from each of
    ``factories``."""
    token = _SINK_FACTORIES.set(_SINK_FACTORIES.get() + factories)
    try:
        yield
    finally:
        _SINK_FACTORIES.reset(token)


def epoch_values(seconds: float, result: EvalResult | None,
                 losses: Mapping[str, float] | None) -> dict[str, float]:
    """One epoch's values as the sinks get them: the epoch's mean losses and its last
    learning rate as ``train/<key>``, ``epoch/time_s`` and, when evaluated, ``val/AP`` ..."""
    values = {f"train/{key}": float(value) for key, value in (losses or {}).items()}
    values["epoch/time_s"] = float(seconds)
    if result is not None:
        values.update({f"val/{key}": float(getattr(result, key)) for key in VAL_METRICS})
    return values


class RunTracker:
    """The TensorBoard writer of one run; a disabled tracker (DDP ranks other than 0) does
    nothing, so the trainer calls it unconditionally.

    The writer and the sinks exist only inside :meth:`session`, which the trainer's ``fit``
    wraps around its epochs: event files are flushed and closed, and sinks closed, however
    training ends.
    """

    def __init__(self, out_dir: str | Path, class_names: Sequence[str], *, enabled: bool = True,
                 every: int | None = None, samples: int = SAMPLE_IMAGES) -> None:
        self.out_dir = Path(out_dir)
        self.log_dir = self.out_dir / LOG_DIR
        self.class_names = list(class_names)
        self.enabled, self.samples = enabled, samples
        self.every = max(1, STEP_EVERY if every is None else every)
        self._writer: Any = None  # torch.utils.tensorboard.SummaryWriter while in a session
        self._sinks: list[EpochSink] = []

    @contextlib.contextmanager
    def session(self, step: int,
                params: Mapping[str, Any] | None = None) -> Iterator[RunTracker]:
        """Open the writer for a fit that continues after optimiser step ``step`` (0 for a new
        run). ``purge_step=step + 1`` makes TensorBoard discard events an earlier, interrupted
        writer logged past the checkpoint this fit resumes from. The sinks of
        :func:`extra_sinks` open first, with ``params``, so one that cannot start (its server
        is down) stops the fit before anything is written."""
        if self.enabled:
            self._open_sinks(dict(params or {}), resumed=step > 0)
            # imported here: TensorBoard's writer takes seconds to import and only rank 0 needs it
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(str(self.log_dir), purge_step=step + 1)
        failed = False
        try:
            yield self
        except BaseException:
            failed = True
            raise
        finally:
            if self._writer is not None:
                self._writer.close()  # flushes
                self._writer = None
            self._close_sinks(failed)

    def _open_sinks(self, params: dict[str, Any], *, resumed: bool) -> None:
        try:
            for open_sink in _SINK_FACTORIES.get():
                self._sinks.append(open_sink(self.out_dir, params, resumed=resumed))
        except BaseException:
            self._close_sinks(failed=True)
            raise

    def _close_sinks(self, failed: bool) -> None:
        sinks, self._sinks = self._sinks, []
        for sink in sinks:
            sink.close(failed=failed)

    def step(self, step: int, values: Mapping[str, float]) -> None:
        """``train/<key>`` for every value (each loss term, ``lr``, and a distillation run's
        ``loss_distill`` and ``distill_weight``) when ``step`` is a multiple of ``every``.
        Under DDP these are rank 0's own batch values, not averages over ranks."""
        if self._writer is None or step % self.every:
            return
        for key, value in values.items():
            self._writer.add_scalar(f"train/{key}", value, step)

    def epoch(self, step: int, epoch: int, seconds: float, result: EvalResult | None,
              losses: Mapping[str, float] | None = None) -> None:
        """The epoch number, its wall time and, when it was evaluated, ``val/AP``, ``val/AP50``
        and ``val/AP75``, at the step that ended it; then flush, so a killed pod loses at most
        the current epoch's events. The sinks get the wall time and AP values too, plus
        ``losses``, the epoch's mean losses and last learning rate (TensorBoard has those per
        step), indexed by ``epoch`` (:func:`epoch_values`)."""
        if self._sinks:
            values = epoch_values(seconds, result, losses)
            for sink in self._sinks:
                sink.epoch(epoch, values)
        if self._writer is None:
            return
        self._writer.add_scalar("epoch/epoch", epoch, step)
        self._writer.add_scalar("epoch/time_s", seconds, step)
        if result is not None:
            for key in VAL_METRICS:
                self._writer.add_scalar(f"val/{key}", getattr(result, key), step)
        self._writer.flush()

    def predictions(self, step: int, model: Detector, source: ManifestDetection, *,
                    image_size: int, device: torch.device) -> None:
        """The first ``samples`` validation images with the model's boxes drawn the way
        ``damo predict`` draws them (its default score threshold, 0.3), one image tag per row,
        at most :data:`SAMPLE_SIDE` pixels a side."""
        if self._writer is None or self.samples <= 0 or len(source) == 0:
            return
        with tempfile.TemporaryDirectory() as tmp:
            for index, sample, found in predict_dataset(
                    model, source, limit=self.samples, image_size=image_size,
                    batch_size=self.samples, device=device, workers=0, progress=False):
                png = draw_detections(sample.image, found, self.class_names,
                                      Path(tmp) / f"{index}.png")
                with Image.open(png) as drawn:
                    shown = drawn.convert("RGB")
                shown.thumbnail((SAMPLE_SIDE, SAMPLE_SIDE))  # keeps the aspect, never enlarges
                pixels = np.asarray(shown)
                self._writer.add_image(f"val/predictions/{index}", pixels, step,
                                       dataformats="HWC")


def read_events(log_dir: str | Path) -> tuple[dict[str, list[tuple[int, float]]],
                                                dict[str, bytes]]:
    """Every scalar as ``tag -> [(step, value), ...]`` and the latest image of each image tag
    (encoded PNG), read with TensorBoard's own loader, which also applies ``purge_step``."""
    from tensorboard.backend.event_processing.event_accumulator import (
        IMAGES,
        SCALARS,
        EventAccumulator,
    )

    loaded = EventAccumulator(str(log_dir), size_guidance={SCALARS: 0, IMAGES: 1})
    loaded.Reload()
    tags = loaded.Tags()
    scalars = {tag: [(e.step, e.value) for e in loaded.Scalars(tag)] for tag in tags[SCALARS]}
    images = {tag: loaded.Images(tag)[-1].encoded_image_string for tag in tags[IMAGES]}
    return scalars, images


# The page's panels: title, and which scalar tags each plots.
_PANELS = (("training losses", lambda t: t.startswith("train/loss")),
           ("learning rate", lambda t: t == "train/lr"),
           ("distillation weight", lambda t: t == "train/distill_weight"),
           ("validation (EMA model)", lambda t: t.startswith("val/")))


def plot_scalars(scalars: Mapping[str, list[tuple[int, float]]]) -> bytes:
    """A PNG with one panel per group of :data:`_PANELS` that has data, against the step."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    panels = [(title, sorted(t for t in scalars if wanted(t))) for title, wanted in _PANELS]
    panels = [(title, tags) for title, tags in panels if tags]
    rows = max(1, (len(panels) + 1) // 2)
    fig = Figure(figsize=(10, 3.5 * rows), dpi=90)
    FigureCanvasAgg(fig)
    for i, (title, tags) in enumerate(panels):
        ax = fig.add_subplot(rows, 2, i + 1)
        for tag in tags:
            steps, values = zip(*scalars[tag], strict=True)
            ax.plot(steps, values, label=tag.split("/", 1)[1], marker="o", markersize=2)
        ax.set(title=title, xlabel="optimiser step")
        ax.legend(fontsize="small")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def _epoch_table(scalars: Mapping[str, list[tuple[int, float]]]) -> str:
    """One row per epoch: its number, end step, wall time and AP values where evaluated."""
    by_step = {tag: dict(points) for tag, points in scalars.items()}
    columns = ("epoch/time_s", *(f"val/{k}" for k in VAL_METRICS))
    head = "".join(f"<th>{c.split('/', 1)[1]}</th>" for c in columns)
    rows = []
    for step, epoch in scalars.get("epoch/epoch", []):
        cells = "".join(f"<td>{_cell(by_step.get(c, {}).get(step))}</td>" for c in columns)
        rows.append(f"<tr><td>{int(epoch)}</td><td>{step}</td>{cells}</tr>")
    return (f"<table border=1><tr><th>epoch</th><th>step</th>{head}</tr>{''.join(rows)}"
            "</table>")


def write_page(log_dir: str | Path, out_html: str | Path, *, title: str = "training") -> Path:
    """An HTML page of the run's event files: the curves (a PNG embedded as base64), the
    per-epoch table and the latest sample predictions, so the KFP UI shows them without a
    TensorBoard server. A run without event files gets a page that says so."""
    log_dir = Path(log_dir)
    scalars, images = read_events(log_dir) if log_dir.is_dir() else ({}, {})
    parts = [f"<html><body><h3>{html.escape(title)}</h3>"]
    if not scalars:
        parts.append(f"<p>No TensorBoard scalars in {html.escape(str(log_dir))}.</p>")
    else:
        parts.append(f"<img src='data:image/png;base64,{_b64(plot_scalars(scalars))}'/>")
        parts.append(_epoch_table(scalars))
    if images:
        parts.append("<h4>validation predictions (latest evaluation)</h4>")
        parts.extend(f"<img title='{html.escape(tag)}' src='data:image/png;base64,{_b64(png)}'/>"
                     for tag, png in sorted(images.items()))
    parts.append(f"<p>Event files: <code>tensorboard --logdir {LOG_DIR}</code> in the run "
                 "directory (the model artifact).</p></body></html>")
    atomic_write_text(out_html, "".join(parts))
    return Path(out_html)


def _cell(value: float | None) -> str:
    """Empty where the epoch has no such value (not evaluated that epoch)."""
    return "" if value is None else f"{value:.4g}"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()
