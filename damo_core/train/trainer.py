"""The training loop: SGD + cosine + EMA, per-epoch COCO evaluation, atomic checkpoints, resume.

``train()`` is what the train step (``damo train``, the ``train`` component) calls. It writes
into ``out_dir``: ``last.pt`` (every epoch), ``best.pt`` (best val AP), ``results.csv``,
``results.png``, ``pr_curve.png``, ``metrics.json`` (the final evaluation) and, from rank 0,
``tensorboard/`` (event files: :mod:`damo_core.train.tracking`).
"""

from __future__ import annotations

import csv
import io
import json
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm import tqdm

from damo_core.atomic import atomic_write_bytes
from damo_core.data.fit import set_model_fit
from damo_core.data.loader import DetectionDataset, EpochSampler, collate, worker_context
from damo_core.data.manifest_dataset import ManifestDetection
from damo_core.data.prefetch import PrefetchSampler
from damo_core.data.resolve import manifest_for
from damo_core.errors import InputNotFoundError, OutputExistsError
from damo_core.eval import EvalResult, evaluate, plot_pr_curve
from damo_core.eval.curves import threshold_record
from damo_core.metrics import MetricLabels, push_train_epoch, run_id
from damo_core.models import Detector, build_model
from damo_core.models.checkpoint import CheckpointError, load_checkpoint
from damo_core.models.checkpoint_format import FORMAT, FORMAT_KEY
from damo_core.train.amp import TrainPrecision, resolve_precision
from damo_core.train.checkpoint_io import atomic_save, model_meta, read_checkpoint
from damo_core.train.config import TrainConfig, load_train_config
from damo_core.train.distributed import (
    DistEnv,
    ShardSampler,
    init_distributed,
    mean_across_ranks,
    resolve_device,
)
from damo_core.train.ema import ModelEMA, unwrap
from damo_core.train.layout import resolve_memory_format
from damo_core.train.optim import build_optimizer, lr_at, set_lr
from damo_core.train.plots import plot_results
from damo_core.train.precise_bn import recompute_bn_stats
from damo_core.train.tracking import RunTracker

CSV_COLUMNS = ("epoch", "lr", "loss_qfl", "loss_dfl", "loss_giou", "loss", "AP", "AP50", "AP75",
               "epoch_time_s")


@dataclass
class TrainResult:
    out_dir: Path
    last: Path
    best: Path
    best_ap: float
    best_ap50: float
    epochs: int
    final: dict[str, Any] = field(default_factory=dict)
    precision: str = "fp32"  # what the forward ran in: fp32, bf16 (CPU) or fp16 (CUDA amp)


# What resuming reads from last.pt beyond the weights.
_RESUME_FIELDS = ("model", "optimizer", "scaler", "epoch", "step", "best_ap", "best_ap50")


def _plain(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


class Trainer:
    """One training run. Construct, then :meth:`fit`; all state needed to resume is in
    ``last.pt``."""

    csv_columns: tuple[str, ...] = CSV_COLUMNS

    def __init__(self, model: str | Path, data: str | Path, out_dir: str | Path,
                 cfg: TrainConfig, *, weights: str | Path | None = None,
                 progress: bool = True) -> None:
        self.cfg, self.out_dir, self.progress = cfg, Path(out_dir), progress
        # a manifest directory; a dataset.yaml or data.yaml is converted to one (once)
        self.data = manifest_for(data)
        self.env: DistEnv = DistEnv()
        self.device = resolve_device(cfg.device)
        self.env = init_distributed(self.device)
        self.device = resolve_device(cfg.device, self.env)
        torch.manual_seed(cfg.seed)
        source = ManifestDetection(self.data, "train")
        self.val_source = ManifestDetection(self.data, "val")
        self.class_names = list(source.class_names)
        self.model: Detector = build_model(model, num_classes=len(self.class_names))
        if weights is not None:
            load_checkpoint(weights, self.model)
        self.image_size = cfg.img_size or self.model.config.image_size
        self.dataset = DetectionDataset(source, train=True, image_size=self.image_size,
                                        augment=cfg.augment,
                                        seed=cfg.seed)
        # The input fit trained with goes into every checkpoint (model_meta) and from there
        # to evaluation, export and serving; set before the EMA copy so both carry it.
        set_model_fit(self.model, self.dataset.fit)
        self.memory_format = resolve_memory_format(self.device, cfg.memory_format)
        self.model.to(self.device, memory_format=self.memory_format)
        self.ema = ModelEMA(self.model, cfg.ema_decay, cfg.ema_tau) if cfg.ema else None
        self.net: nn.Module = self.model
        if self.env.enabled:
            self.net = nn.parallel.DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        self.batch = max(1, cfg.batch // self.env.world_size)
        self.base_lr = cfg.lr_per_image * cfg.batch
        self.optimizer = build_optimizer(self.trainable(), lr=self.base_lr, momentum=cfg.momentum,
                                         weight_decay=cfg.weight_decay, name=cfg.optimizer)
        self.precision: TrainPrecision = resolve_precision(
            self.device, amp=cfg.amp, cpu_precision=cfg.cpu_precision)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.precision.scaled)
        self.start_epoch, self.step, self.best_ap, self.best_ap50 = 0, 0, -1.0, -1.0
        # TensorBoard events from rank 0 only (the other ranks' tracker does nothing)
        self.tracker = RunTracker(self.out_dir, self.class_names, enabled=self.env.is_main)

    @property
    def last_path(self) -> Path:
        return self.out_dir / "last.pt"

    @property
    def best_path(self) -> Path:
        return self.out_dir / "best.pt"

    def loader(self) -> torch.utils.data.DataLoader:
        sampler: torch.utils.data.Sampler[int] = EpochSampler(self.dataset, True, self.cfg.seed)
        source = self.dataset.source
        if isinstance(source, ManifestDetection) and source.sampling:
            from damo_core.data.sampling import WeightedEpochSampler

            sampler = WeightedEpochSampler(self.dataset, source.weights, self.cfg.seed)
            self._report_draws(sampler)
        if self.env.enabled:
            sampler = ShardSampler(sampler, self.env)
        if isinstance(source, ManifestDetection) and source.remote:
            sampler = PrefetchSampler(sampler, source)
        return torch.utils.data.DataLoader(
            self.dataset, batch_size=self.batch, sampler=sampler, num_workers=self.cfg.workers,
            collate_fn=collate, drop_last=len(self.dataset) >= 2 * self.batch,
            multiprocessing_context=worker_context(self.cfg.workers, self.cfg.worker_start),
        )

    def _report_draws(self, sampler: Any) -> None:
        """Log what the sampling weights draw in the first epoch (every rank draws the same
        order and takes its slice, so rank 0's summary holds for the run)."""
        if not self.env.is_main:
            return
        self.dataset.set_epoch(self.start_epoch)
        summary = self.dataset.source.draw_summary(sampler.epoch_order())
        shares = ", ".join(f"{k} {v:.1%}" for k, v in summary["source_share"].items())
        line = f"sampling: drawn per-source shares {shares}"
        if "rare_class" in summary:
            line += (f"; rarest class {summary['rare_class']!r} "
                     f"({summary['rare_class_images']} images) drawn "
                     f"{summary['rare_class_multiple']:.2f}x as often as once per epoch")
        tqdm.write(line)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        (self.out_dir / "sampling.json").write_text(json.dumps(summary, indent=1))

    def schedule(self, steps_per_epoch: int) -> dict[str, int]:
        cfg = self.cfg
        return {
            "total_steps": cfg.epochs * steps_per_epoch,
            "warmup_steps": max(1, round(cfg.warmup_epochs * steps_per_epoch)),
            "no_aug_steps": min(cfg.no_aug_epochs, cfg.epochs) * steps_per_epoch,
        }

    def fit(self, *, resume: bool = False, stop_after_epoch: int | None = None) -> TrainResult:
        """Train to ``cfg.epochs``; ``stop_after_epoch`` ends this invocation early (a
        pre-emptible job), leaving ``last.pt`` to resume from."""
        if resume:
            self.resume()
        elif self.last_path.exists():
            # Starting over would truncate results.csv and later replace last.pt/best.pt.
            raise OutputExistsError(f"{self.out_dir} already holds a training run "
                                    f"({self.last_path.name}); pass --resume to continue it, or "
                                    "choose another --out")
        elif self.env.is_main:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            self._write_csv_header()
        # event files (and sinks such as an MLflow run) closed however fit ends
        with self.tracker.session(self.step, self.run_params()):
            return self.run_epochs(stop_after_epoch)

    def run_params(self) -> dict[str, Any]:
        """What this run is, for an experiment tracker's parameters (MLflow): the model's
        name, input size and classes, every training setting and the precision the settings
        resolved to; a subclass adds its own."""
        return {"model": self.model.name, "image_size": self.image_size,
                "num_classes": len(self.class_names), **self.cfg.as_dict(),
                "train_precision": self.precision.name}

    def run_epochs(self, stop_after_epoch: int | None) -> TrainResult:
        """The epochs of :meth:`fit` from ``start_epoch`` (set by a resume), then
        :meth:`finish`."""
        loader = self.loader()
        plan = self.schedule(len(loader))
        end = self.cfg.epochs if stop_after_epoch is None else min(self.cfg.epochs,
                                                                     stop_after_epoch)
        final: EvalResult | None = None
        for epoch in range(self.start_epoch, end):
            self.dataset.set_epoch(epoch)
            if epoch >= self.cfg.epochs - self.cfg.no_aug_epochs:
                self.dataset.close_mosaic()
            started = time.perf_counter()
            losses = self.train_epoch(loader, epoch, plan)
            result = None
            is_last = epoch == self.cfg.epochs - 1
            if self.env.is_main and ((epoch + 1) % self.cfg.eval_interval == 0 or is_last):
                result = self.validate()
                final = result
            if self.env.is_main:
                self.end_epoch(epoch, losses, result, time.perf_counter() - started,
                               save_last=(epoch + 1) % self.cfg.save_interval == 0
                               or epoch == end - 1)
        return self.finish(final, end)

    def train_epoch(self, loader: torch.utils.data.DataLoader, epoch: int,
                    plan: dict[str, int]) -> dict[str, float]:
        self.net.train()
        sums: dict[str, float] = {}
        bar = tqdm(loader, desc=f"epoch {epoch + 1}/{self.cfg.epochs}",
                   disable=not (self.progress and self.env.is_main), leave=True, ncols=110)
        for images, targets in bar:
            lr = lr_at(self.step, base_lr=self.base_lr, min_lr_ratio=self.cfg.min_lr_ratio, **plan)
            set_lr(self.optimizer, lr)
            losses = self.train_step(images, targets)
            self.tracker.step(self.step, {**losses, "lr": lr})
            for key, value in losses.items():
                sums[key] = sums.get(key, 0.0) + value
            bar.set_postfix({k.removeprefix("loss_"): f"{v:.3f}" for k, v in losses.items()})
        count = max(len(loader), 1)
        return {"lr": lr, **mean_across_ranks({k: v / count for k, v in sums.items()}, self.env)}

    def train_step(self, images: torch.Tensor, targets: list[dict[str, Any]]) -> dict[str, float]:
        losses = self.compute_losses(images.to(self.device, non_blocking=True,
                                               memory_format=self.memory_format), targets)
        self.optimise(losses["loss"])
        return {k: float(v.detach()) for k, v in losses.items()}

    def compute_losses(self, images: torch.Tensor,
                       targets: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        """Forward (autocast to the run's precision) and the head's losses on fp32 outputs,
        outside autocast, so the assigner and the losses never see bf16/fp16; ``loss`` is what
        gets optimised. Subclasses add terms here (distillation)."""
        with self.precision.autocast():
            outputs = self.net(images)
        return self.model.head.loss([o.float() for o in outputs], targets)

    def optimise(self, loss: torch.Tensor) -> None:
        if not torch.isfinite(loss):
            raise FloatingPointError(f"non-finite loss {float(loss)} at step {self.step}")
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if self.clip_norm() > 0:
            self.scaler.unscale_(self.optimizer)
            nn.utils.clip_grad_norm_(self.trainable().parameters(), self.clip_norm())
        self.scaler.step(self.optimizer)
        self.scaler.update()
        if self.ema is not None:
            self.ema.update(self.model)
        self.step += 1

    def clip_norm(self) -> float:
        return self.cfg.grad_clip

    def trainable(self) -> nn.Module:
        """Everything the optimiser updates (a subclass may add modules beside the model)."""
        return self.model

    def bn_batches(self) -> Iterator[torch.Tensor]:
        """Un-augmented training images, the distribution the model will see at inference."""
        plain = DetectionDataset(self.dataset.source, train=False, image_size=self.image_size,
                                 augment=self.dataset.augment, seed=self.cfg.seed)
        loader = torch.utils.data.DataLoader(plain, batch_size=self.batch, shuffle=False,
                                             num_workers=0, collate_fn=collate)
        for i, (images, _) in enumerate(loader):
            if i >= self.cfg.precise_bn_batches:
                return
            yield images

    @property
    def eval_model(self) -> Detector:
        return self.ema.module if self.ema is not None else unwrap(self.net)

    def validate(self) -> EvalResult:
        if self.cfg.precise_bn_batches > 0:
            recompute_bn_stats(self.eval_model, self.bn_batches(), self.device)
        return evaluate(self.eval_model, self.val_source, split="val", image_size=self.image_size,
                        batch_size=max(self.batch, 8), score_threshold=self.cfg.score_threshold,
                        device=self.device, workers=0, progress=False)

    def end_epoch(self, epoch: int, losses: dict[str, float], result: EvalResult | None,
                  seconds: float, *, save_last: bool = True) -> None:
        """Record the epoch (results.csv, metrics, events, best.pt when it improved) and, with
        ``save_last``, write ``last.pt``: every ``save_interval`` epochs and the invocation's
        last, since a large model's full training state takes seconds to write (L's 0.7 GB
        2.8 s on a 2-core EPYC, against a 6 s epoch at 96 px)."""
        row = {"epoch": epoch + 1, **losses, "epoch_time_s": round(seconds, 2)}
        if result is not None:
            row.update(AP=result.AP, AP50=result.AP50, AP75=result.AP75)
            if (result.AP, result.AP50) > (self.best_ap, self.best_ap50):
                self.best_ap, self.best_ap50 = result.AP, result.AP50
                atomic_save(self.checkpoint(epoch + 1, result, with_optimizer=False),
                            self.best_path)
        self._append_csv(row)
        # Grafana's training panels: a no-op unless $DAMO_PUSHGATEWAY is set (pipeline pods),
        # and a gateway that is down is logged, never a reason to stop training.
        push_train_epoch(row, MetricLabels(run_id(), self.model.name, "pytorch",
                                           self.device.type))
        # before last.pt: a crash in between repeats this epoch, whose events purge_step drops
        if result is not None:
            self.tracker.predictions(self.step, self.eval_model, self.val_source,
                                     image_size=self.image_size, device=self.device)
        self.tracker.epoch(self.step, epoch + 1, seconds, result, losses)
        if save_last:
            atomic_save(self.checkpoint(epoch + 1, result, with_optimizer=True), self.last_path)
        plot_results(self.out_dir / "results.csv", self.out_dir / "results.png")

    def checkpoint(self, epochs_done: int, result: EvalResult | None,
                   with_optimizer: bool) -> dict[str, Any]:
        ckpt: dict[str, Any] = {
            FORMAT_KEY: FORMAT,
            **model_meta(self.model, self.class_names, self.image_size),
            "model": unwrap(self.net).state_dict(),
            "ema": self.ema.module.state_dict() if self.ema else None,
            "ema_updates": self.ema.updates if self.ema else 0,
            "epoch": epochs_done, "step": self.step,
            "best_ap": self.best_ap, "best_ap50": self.best_ap50,
            "metrics": None if result is None else {
                "AP": result.AP, "AP50": result.AP50,
                # the default score threshold of predict (eval.curves.checkpoint_threshold)
                **(threshold_record(result) if result.curves is not None else {})},
            "train_config": self.cfg.as_dict(),
            # what the forward ran in; ``train_config.cpu_precision`` may say "auto"
            "train_precision": self.precision.name,
        }
        if with_optimizer:
            ckpt["optimizer"] = self.optimizer.state_dict()
            ckpt["scaler"] = self.scaler.state_dict()
        return ckpt

    def resume(self) -> None:
        if not self.last_path.is_file():
            raise InputNotFoundError(f"cannot resume: {self.last_path} does not exist")
        ckpt = read_checkpoint(self.last_path)
        self.check_resumable(ckpt)
        self.restore_extra(ckpt)
        self.model.load_state_dict(ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scaler.load_state_dict(ckpt["scaler"])
        if self.ema is not None and ckpt.get("ema") is not None:
            self.ema.module.load_state_dict(ckpt["ema"])
            self.ema.updates = ckpt["ema_updates"]
        self.start_epoch, self.step = ckpt["epoch"], ckpt["step"]
        self.best_ap, self.best_ap50 = ckpt["best_ap"], ckpt["best_ap50"]
        self._drop_rows_after(self.start_epoch)

    def check_resumable(self, ckpt: Any) -> None:
        """Refuse a ``last.pt`` of another run (other model, other classes, other input size)
        or one without training state (a ``best.pt`` copied over it), naming the field."""
        path = self.last_path
        if not isinstance(ckpt, dict) or "model_config" not in ckpt:
            raise CheckpointError(f"cannot resume: {path} is not a damo training checkpoint "
                                  "(no field model_config)")
        missing = [k for k in _RESUME_FIELDS if k not in ckpt]
        if missing:
            raise CheckpointError(
                f"cannot resume: {path} lacks field(s) {', '.join(missing)} (a best.pt or an "
                "exported checkpoint, not a last.pt); start a new run in another --out")
        ours = model_meta(self.model, self.class_names, self.image_size)
        for key, what in (("model_name", "model"), ("model_config", "model architecture"),
                          ("class_names", "class names (--data)"),
                          ("image_size", "image size")):
            theirs, mine = _plain(ckpt.get(key)), _plain(ours[key])  # tuples vs lists
            if theirs == mine:
                continue
            fix = "resume with the same --model/--data/--img-size, or pass a new --out"
            if key == "model_config":
                diff = (sorted(k for k in {*theirs, *mine} if theirs.get(k) != mine.get(k))
                        if isinstance(theirs, dict) else "everything")
                raise CheckpointError(f"cannot resume: {path} field model_config differs from "
                                      f"this run's {what} in {diff}; {fix}")
            raise CheckpointError(f"cannot resume: {path} field {key} is {theirs!r} but this "
                                  f"run's {what} is {mine!r}; {fix}")

    def restore_extra(self, ckpt: dict[str, Any]) -> None:
        """Hook: restore what a subclass added to ``last.pt``. Runs after
        :meth:`check_resumable` (which a subclass overrides to refuse a checkpoint that is not
        its own) and before the base state is loaded."""

    def finish(self, final: EvalResult | None, epochs_done: int) -> TrainResult:
        out = {}
        if final is not None and self.env.is_main:
            out = {"AP": final.AP, "AP50": final.AP50, "AP75": final.AP75, "APs": final.APs,
                   "APm": final.APm, "APl": final.APl, "per_class_ap": final.per_class_ap}
            final.to_json(self.out_dir / "metrics.json")
            plot_pr_curve(final, self.out_dir / "pr_curve.png")
        return TrainResult(self.out_dir, self.last_path, self.best_path, self.best_ap,
                           self.best_ap50, epochs_done, out, self.precision.name)

    def _write_csv_header(self) -> None:
        atomic_write_bytes(self.out_dir / "results.csv",
                           (",".join(self.csv_columns) + "\n").encode())

    def _drop_rows_after(self, epochs_done: int) -> None:
        """results.csv as of ``last.pt``: the epochs after it (up to ``save_interval`` - 1, or
        one a crash cut between its row and ``last.pt``) are trained again, and each keeps one
        row."""
        path = self.out_dir / "results.csv"
        if not self.env.is_main or not path.is_file():
            return
        header, *rows = path.read_text().splitlines(keepends=True)
        kept = [row for row in rows if int(row.split(",", 1)[0]) <= epochs_done]
        if len(kept) < len(rows):
            atomic_write_bytes(path, "".join([header, *kept]).encode())

    def _append_csv(self, row: dict[str, Any]) -> None:
        path = self.out_dir / "results.csv"
        buf = io.StringIO()
        csv.DictWriter(buf, self.csv_columns, extrasaction="ignore").writerow(
            {k: _fmt(v) for k, v in row.items()})
        atomic_write_bytes(path, path.read_bytes() + buf.getvalue().encode())


def _fmt(value: Any) -> Any:
    return f"{value:.6g}" if isinstance(value, float) and math.isfinite(value) else value


def train(model: str | Path, data: str | Path, out_dir: str | Path,
          cfg: TrainConfig | None = None, *, weights: str | Path | None = None,
          resume: bool = False, stop_after_epoch: int | None = None,
          progress: bool = True) -> TrainResult:
    """Train ``model`` (zoo name or YAML) on ``data`` (a manifest directory, a COCO
    dataset.yaml or an ultralytics data.yaml) into ``out_dir``."""
    trainer = Trainer(model, data, out_dir, cfg or load_train_config(), weights=weights,
                      progress=progress)
    return trainer.fit(resume=resume, stop_after_epoch=stop_after_epoch)


def summary_line(result: TrainResult) -> str:
    return json.dumps({"best_ap": round(result.best_ap, 4), "best_ap50": round(result.best_ap50, 4),
                       "epochs": result.epochs, "best": str(result.best)})
