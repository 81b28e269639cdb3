"""Feature distillation as DAMO-YOLO does it (report section 2.4, Table 8): CWD on the neck.

Why this shape:

* **What is compared.** The neck outputs (strides 8/16/32): the report found neck features carry
  both recognition and localisation knowledge, and a shallow head keeps them close to decisions.
* **Align module.** A 1x1 conv per level maps student channels to the teacher's, so any pair of
  zoo models (T/S/M/L, CSP or Res backbones) can be distilled; it is trained with the student
  and thrown away afterwards.
* **Unbiased BN.** Both aligned-student and teacher maps are standardised per channel with the
  *batch* statistics (``BatchNorm2d(affine=False)``, no running stats): raw feature magnitudes
  of two different networks are not comparable; after centring, each channel's spread acts as
  its own temperature in the KL term.
* **CWD loss.** Per channel, a softmax over spatial positions turns the map into a distribution
  of "where this channel fires"; the loss is KL(teacher || student) x tau^2 averaged over
  batch and channels, summed over levels. tau = 1 as in the reference implementation.
* **Weight.** Cosine decay from 1.0 to 0.1 over the distillation stage, as the reference code
  does; its mean (0.55) is the "small weight (0.5), cosine" of the report (Fig. 4, footnote 3).
  Large weights (2, 10) slow classification-loss convergence and cost AP. These defaults are
  for the paper's schedules (hundreds of epochs). In a short run they are the "large" case:
  at initialisation the CWD term's gradient on the student's backbone and neck is 18-40x the
  task losses' (measured for Ns with a T teacher at 128-640 px), the classification loss
  stays flat while the student learns to match the teacher, and with ~150 optimiser steps it
  never catches up (``benchmarks/distill_gain.py``, seed 0: AP 0.183 alone, 0.120 distilled
  at 1.0 -> 0.1, 0.175 at 0.3 -> 0.03, 0.186 at 0.1 -> 0.01; over 3 seeds 0.1 -> 0.01 gains
  +0.0001 AP, stdev 0.0053). Short runs (the local pipeline, the benchmark) set 0.1 -> 0.01.
* **Two stages.** Distil on the strong-mosaic domain for ``epochs - no_aug_epochs`` epochs, then
  fine-tune without mosaic and *without* the teacher (284 + 16 in the paper): a teacher pulling
  the student for a few epochs in an unfamiliar domain hurts more than it helps. The reference
  code keeps the teacher to the last step; ``through_no_aug`` does that.
* **Gradient clipping** at norm 30 while distilling, as the reference does (the extra loss makes
  early gradients spiky); ``grad_clip`` in the training settings wins when set, 0 in both
  turns it off. With raw-pixel input the clip is not rare: in the local run's first epochs
  (96 px, AdamW) M's gradient norm has a median of 9 and a tenth of its steps above 54, and
  the clip alone (distillation weight 0) took M's AP50 after 20 epochs from 0.67 to 0.36;
  yet distilled, M reached 0.55 clipped and 0.43 unclipped. A distilled-vs-alone comparison
  therefore clips both or neither (the pipeline's control takes the distillation's clip).

Chain used by the paper: L distils itself, then L -> M -> S -> T (:func:`distill_chain`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from damo_core.errors import InputNotFoundError, UserInputError
from damo_core.eval import EvalResult
from damo_core.models import Detector
from damo_core.settings import Settings
from damo_core.train.checkpoint_io import load_trained
from damo_core.train.config import TrainConfig, load_train_config
from damo_core.train.optim import build_optimizer
from damo_core.train.trainer import CSV_COLUMNS, Trainer, TrainResult

_AFTER_LOSS = CSV_COLUMNS.index("loss") + 1
DISTILL_COLUMNS = (*CSV_COLUMNS[:_AFTER_LOSS], "loss_distill", "distill_weight",
                   *CSV_COLUMNS[_AFTER_LOSS:])


@dataclass(frozen=True)
class DistillConfig(Settings):
    """Distillation settings; defaults are the reference implementation's. Loaded from a
    mapping (YAML, CLI ``distill.key=value``, a pipeline parameter) by ``from_dict``."""

    noun = "distill setting"

    weight_start: float = 1.0  # distillation loss weight at the first step
    weight_end: float = 0.1  # ... and at the last step of the distillation stage (cosine)
    tau: float = 1.0  # softmax temperature of the CWD loss
    levels: tuple[int, ...] = (0, 1, 2)  # neck outputs to distil (0 = stride 8)
    grad_clip: float = 30.0  # max grad norm while distilling unless TrainConfig.grad_clip > 0;
    # 0 (in both): no clipping
    # distil in the no-mosaic stage too, as the reference code does (the report stops there)
    through_no_aug: bool = False

    def check(self) -> None:
        self.require(self.tau > 0, "tau", "must be > 0")
        self.require(self.weight_start >= 0, "weight_start", "must be >= 0")
        self.require(self.weight_end >= 0, "weight_end", "must be >= 0")
        levels = self.levels
        self.require(bool(levels) and len(set(levels)) == len(levels) and min(levels) >= 0,
                     "levels", "must be distinct indices >= 0")


def distill_clip(train_clip: float, dcfg: DistillConfig) -> float:
    """The gradient clip a distillation run trains with: the training's own ``grad_clip`` when
    set (> 0), else the distillation's (the reference's 30); 0 from both: none. The pipeline's
    control clips by the same rule, so it differs from its distilled twin only by the teacher."""
    return train_clip or dcfg.grad_clip


def distill_weight(step: int, total: int, start: float, end: float) -> float:
    """Cosine decay from ``start`` (step 0) to ``end`` (step ``total`` and after)."""
    if total <= 0:
        return end
    progress = min(max(step, 0), total) / total
    return end + (start - end) * 0.5 * (1.0 + math.cos(math.pi * progress))


def _check_pairs(student: Sequence[Tensor], teacher: Sequence[Tensor]) -> None:
    if len(student) != len(teacher):
        raise UserInputError(f"distillation needs as many student as teacher feature levels: got "
                         f"{len(student)} student and {len(teacher)} teacher levels")
    for i, (s, t) in enumerate(zip(student, teacher, strict=True)):
        if s.shape != t.shape:
            raise UserInputError(f"level {i}: student feature {tuple(s.shape)} does not match "
                             f"teacher feature {tuple(t.shape)} (channels {s.shape[1]} vs "
                             f"{t.shape[1]}); align the student first")


def cwd_loss(student_feats: Sequence[Tensor], teacher_feats: Sequence[Tensor],
             tau: float = 1.0) -> Tensor:
    """Channel-wise distillation: per channel, softmax over positions; KL(teacher || student)
    x tau^2, averaged over batch and channels, summed over levels."""
    _check_pairs(student_feats, teacher_feats)
    total = student_feats[0].new_zeros(())
    for s, t in zip(student_feats, teacher_feats, strict=True):
        n, c = s.shape[:2]
        log_s = F.log_softmax(s.float().reshape(n * c, -1) / tau, dim=1)
        log_t = F.log_softmax(t.float().reshape(n * c, -1) / tau, dim=1)
        kl = F.kl_div(log_s, log_t, reduction="sum", log_target=True)
        total = total + kl * tau**2 / (n * c)
    return total


class AlignModule(nn.Module):
    """One 1x1 conv per level, student channels -> teacher channels."""

    def __init__(self, student_channels: Sequence[int], teacher_channels: Sequence[int]) -> None:
        super().__init__()
        if len(student_channels) != len(teacher_channels):
            raise UserInputError(
                f"cannot align {len(student_channels)} student levels (channels "
                f"{list(student_channels)}) to {len(teacher_channels)} teacher levels "
                f"(channels {list(teacher_channels)})")
        self.student_channels = list(student_channels)
        self.teacher_channels = list(teacher_channels)
        self.convs = nn.ModuleList(nn.Conv2d(s, t, 1) for s, t in
                                   zip(student_channels, teacher_channels, strict=True))

    def forward(self, feats: Sequence[Tensor]) -> list[Tensor]:
        if len(feats) != len(self.convs):
            raise UserInputError(f"align module was built for {len(self.convs)} levels, got "
                             f"{len(feats)} student feature maps")
        for i, (f, want) in enumerate(zip(feats, self.student_channels, strict=True)):
            if f.shape[1] != want:
                raise UserInputError(f"level {i}: student feature has {f.shape[1]} channels, the "
                                 f"align module expects {want}")
        return [conv(f) for conv, f in zip(self.convs, feats, strict=True)]


class FeatureDistillLoss(nn.Module):
    """Align the student, standardise both sides per channel (batch statistics), CWD."""

    def __init__(self, student_channels: Sequence[int], teacher_channels: Sequence[int],
                 tau: float = 1.0) -> None:
        super().__init__()
        self.align = AlignModule(student_channels, teacher_channels)
        self.norms = nn.ModuleList(nn.BatchNorm2d(c, affine=False, track_running_stats=False)
                                   for c in teacher_channels)
        self.tau = tau

    def forward(self, student_feats: Sequence[Tensor],
                teacher_feats: Sequence[Tensor]) -> Tensor:
        aligned = self.align([f.float() for f in student_feats])
        _check_pairs(aligned, teacher_feats)
        s = [norm(f) for norm, f in zip(self.norms, aligned, strict=True)]
        t = [norm(f.float()) for norm, f in zip(self.norms, teacher_feats, strict=True)]
        return cwd_loss(s, t, self.tau)


def pick_levels(channels: Sequence[int], levels: Sequence[int], who: str) -> list[int]:
    """Channels of the distilled levels; an absent level is an error naming what exists."""
    missing = [i for i in levels if i >= len(channels)]
    if missing:
        raise UserInputError(f"distill levels {missing} do not exist: the {who} neck has "
                         f"{len(channels)} levels (channels {list(channels)})")
    return [channels[i] for i in levels]


def load_teacher(path: str | Path, class_names: Sequence[str]) -> Detector:
    """The frozen teacher (EMA weights, eval mode); its classes must be the dataset's."""
    teacher, meta = load_trained(path)
    if meta["num_classes"] != len(class_names):
        raise UserInputError(
            f"teacher {path} was trained for {meta['num_classes']} classes "
            f"({meta.get('class_names')}) but the student's dataset has {len(class_names)} "
            f"({list(class_names)})")
    for p in teacher.parameters():
        p.requires_grad_(False)
    return teacher.eval()


class DistillTrainer(Trainer):
    """A :class:`Trainer` whose student also learns from a frozen teacher's neck features during
    the mosaic stage; ``last.pt`` additionally holds the align module so resume is exact."""

    csv_columns = DISTILL_COLUMNS

    def __init__(self, model: str | Path, teacher_weights: str | Path,
                 data: str | Path, out_dir: str | Path, cfg: TrainConfig,
                 dcfg: DistillConfig | None = None, *, weights: str | Path | None = None,
                 progress: bool = True) -> None:
        if cfg.epochs <= cfg.no_aug_epochs:
            raise UserInputError(f"no distillation stage: epochs ({cfg.epochs}) must exceed "
                             f"no_aug_epochs ({cfg.no_aug_epochs}), the teacher-free stage")
        super().__init__(model, data, out_dir, cfg, weights=weights, progress=progress)
        self.dcfg = dcfg or DistillConfig()
        self.teacher_weights = Path(teacher_weights)
        self.teacher = load_teacher(self.teacher_weights, self.class_names).to(
            self.device, memory_format=self.memory_format)
        levels = self.dcfg.levels
        self.distill_loss = FeatureDistillLoss(
            pick_levels(self.model.neck.out_channels, levels, f"student ({self.model.name})"),
            pick_levels(self.teacher.neck.out_channels, levels, f"teacher ({self.teacher.name})"),
            self.dcfg.tau).to(self.device, memory_format=self.memory_format)
        self.distill_net: nn.Module = self.distill_loss
        if self.env.enabled:  # the align convs' gradients must be averaged across ranks too
            self.distill_net = nn.parallel.DistributedDataParallel(
                self.distill_loss,
                device_ids=[self.device.index] if self.device.type == "cuda" else None)
        self.optimizer = build_optimizer(self.trainable(), lr=self.base_lr, momentum=cfg.momentum,
                                         weight_decay=cfg.weight_decay, name=cfg.optimizer)
        # The hook sees the neck's output inside the (possibly DDP-wrapped) forward, so the
        # student is run once per step and DDP's gradient sync covers the distillation term.
        self._feats: list[Tensor] | None = None
        self.model.neck.register_forward_hook(self._capture)
        self.distilling, self.distill_steps = False, 0

    def _capture(self, module: nn.Module, inputs: Any, output: list[Tensor]) -> None:
        if self.distilling and self.model.training:
            self._feats = list(output)

    def train_epoch(self, loader: torch.utils.data.DataLoader, epoch: int,
                    plan: dict[str, int]) -> dict[str, float]:
        stage = self.cfg.epochs - (0 if self.dcfg.through_no_aug else self.cfg.no_aug_epochs)
        self.distilling = epoch < stage
        self.distill_steps = stage * len(loader)
        return super().train_epoch(loader, epoch, plan)

    def distill_term(self, images: Tensor) -> tuple[Tensor, float]:
        """Weighted CWD loss of the features captured by the last student forward."""
        assert self._feats is not None, "student forward did not pass through the neck"
        student, self._feats = self._feats, None
        with torch.no_grad(), self.precision.autocast():  # as the student's forward
            teacher = self.teacher.features(images)
        levels = self.dcfg.levels
        weight = distill_weight(self.step, self.distill_steps, self.dcfg.weight_start,
                                self.dcfg.weight_end)
        loss = self.distill_net([student[i] for i in levels], [teacher[i] for i in levels])
        return weight * loss, weight

    def compute_losses(self, images: Tensor,
                       targets: list[dict[str, Any]]) -> dict[str, Tensor]:
        """The task losses plus the weighted CWD term while distilling; ``loss`` is what is
        optimised (task + distillation), ``loss_distill`` is 0 in the teacher-free stage."""
        losses = super().compute_losses(images, targets)
        term, weight = losses["loss"].new_zeros(()), 0.0
        if self.distilling:
            term, weight = self.distill_term(images)
        return {**losses, "loss": losses["loss"] + term, "loss_distill": term,
                "distill_weight": torch.tensor(weight)}

    def clip_norm(self) -> float:
        return distill_clip(self.cfg.grad_clip, self.dcfg)

    def trainable(self) -> nn.Module:
        align = getattr(self, "distill_loss", None)  # absent while the base class initialises
        return self.model if align is None else nn.ModuleList([self.model, align])

    def checkpoint(self, epochs_done: int, result: EvalResult | None,
                   with_optimizer: bool) -> dict[str, Any]:
        """Adds the settings and teacher path (provenance) and, in ``last.pt``, the align
        convs: without them a resumed run would restart the projection from scratch."""
        ckpt = super().checkpoint(epochs_done, result, with_optimizer)
        ckpt["distill"] = {"config": self.dcfg.as_dict(), "teacher": str(self.teacher_weights)}
        if with_optimizer:
            ckpt["distill_align"] = self.distill_loss.state_dict()
        return ckpt

    def run_params(self) -> dict[str, Any]:
        """Adds the teacher's weights and the distillation settings."""
        return {**super().run_params(), "teacher": str(self.teacher_weights),
                "distill": self.dcfg.as_dict()}

    def check_resumable(self, ckpt: Any) -> None:
        """A plain training run's ``last.pt`` cannot continue distillation; then the base
        checks (same student, classes and input size)."""
        if not isinstance(ckpt, dict) or "distill_align" not in ckpt:
            raise UserInputError(f"cannot resume distillation from {self.last_path}: it was "
                                 "written by a plain training run (no align-module state)")
        super().check_resumable(ckpt)

    def restore_extra(self, ckpt: dict[str, Any]) -> None:
        """The align module (:meth:`check_resumable` made sure it is there)."""
        self.distill_loss.load_state_dict(ckpt["distill_align"])

def distill(student: str | Path, teacher_weights: str | Path, data: str | Path,
            out_dir: str | Path, cfg: TrainConfig | None = None,
            dcfg: DistillConfig | None = None, *, weights: str | Path | None = None,
            resume: bool = False, stop_after_epoch: int | None = None,
            progress: bool = True) -> TrainResult:
    """Train ``student`` on ``data`` with the teacher at ``teacher_weights`` (a ``best.pt``)."""
    trainer = DistillTrainer(student, teacher_weights, data, out_dir,
                             cfg or load_train_config(), dcfg, weights=weights,
                             progress=progress)
    return trainer.fit(resume=resume, stop_after_epoch=stop_after_epoch)


def distill_chain(links: Sequence[tuple[str | Path, str | Path]],
                  first_teacher_weights: str | Path, data: str | Path,
                  cfg: TrainConfig | None = None, dcfg: DistillConfig | None = None, *,
                  resume: bool = False, progress: bool = True) -> list[TrainResult]:
    """Distil each ``(student, out_dir)`` link in turn; a link's ``best.pt`` teaches the next.

    The paper's chain is ``[(l, ...), (m, ...), (s, ...), (t, ...)]`` with an L teacher. With
    ``resume``, links whose ``last.pt`` exists continue from it (finished ones return at once),
    so a pre-empted chain restarts where it stopped.
    """
    results: list[TrainResult] = []
    teacher = Path(first_teacher_weights)
    for student, out_dir in links:
        again = resume and (Path(out_dir) / "last.pt").is_file()
        result = distill(student, teacher, data, out_dir, cfg, dcfg, resume=again,
                         progress=progress)
        if not result.best.is_file():
            raise InputNotFoundError(f"link {student}: no {result.best} to teach the next link")
        results.append(result)
        teacher = result.best
    return results
