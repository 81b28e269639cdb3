"""The paper's model family in one run: train the teacher, then distil L -> M -> S -> T.

Why a module of its own: the chain is what a user runs to get the whole family on their data,
and what they resume after a pre-emption; the pipeline wires the same links as separate DAG
steps (``components/distill``), so the chain logic stays a thin loop over :func:`train` and
:func:`damo_core.train.distill.distill_chain` and adds only the bookkeeping a person reads
afterwards: ``chain.json`` with every link's teacher, checkpoint and metrics.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from damo_core.atomic import atomic_write_text
from damo_core.errors import InputNotFoundError
from damo_core.models.config import ConfigError
from damo_core.train.config import TrainConfig
from damo_core.train.distill import DistillConfig, distill_chain
from damo_core.train.trainer import TrainResult, train

PAPER_CHAIN = ("damoyolo_l", "damoyolo_m", "damoyolo_s", "damoyolo_t")
SUMMARY = "chain.json"


@dataclass(frozen=True)
class ChainLink:
    """One trained model of the chain and where its knowledge came from."""

    model: str
    teacher: str | None  # weights that taught it; None for the first model (trained plainly)
    weights: str
    metrics: str | None  # the final evaluation written by the trainer (metrics.json)
    ap: float
    ap50: float
    epochs: int


def link_dir(out_root: str | Path, model: str) -> Path:
    return Path(out_root) / Path(model).stem


def run_chain(models: Sequence[str], data: str | Path, out_root: str | Path,
              student_cfg: TrainConfig, teacher_cfg: TrainConfig | None = None,
              dcfg: DistillConfig | None = None, *, teacher_weights: str | Path | None = None,
              resume: bool = False, progress: bool = True) -> list[ChainLink]:
    """Train ``models[0]`` (unless ``teacher_weights`` is given) and distil each next model from
    the previous one's ``best.pt``, each into ``out_root/<model>``; writes ``chain.json``.

    With ``resume``, every link whose ``last.pt`` exists continues from it, so a chain stopped in
    link k restarts in link k and finished links return at once.
    """
    if len(models) < 2:
        raise ConfigError(f"a distillation chain needs a teacher and at least one student, "
                          f"got models={list(models)}")
    if len(set(models)) != len(models):
        raise ConfigError(f"models={list(models)} names a model twice; each link needs its own "
                          "run directory")
    links: list[ChainLink] = []
    if teacher_weights is None:
        first_dir = link_dir(out_root, models[0])
        again = resume and (first_dir / "last.pt").is_file()
        first = train(models[0], data, first_dir, teacher_cfg or student_cfg, resume=again,
                      progress=progress)
        links.append(_link(models[0], None, first))
        teacher_weights = first.best
    elif not Path(teacher_weights).is_file():
        raise InputNotFoundError(f"teacher weights {teacher_weights} do not exist")
    students = [(m, link_dir(out_root, m)) for m in models[1:]]
    results = distill_chain(students, teacher_weights, data, student_cfg, dcfg, resume=resume,
                            progress=progress)
    teachers = [str(teacher_weights)] + [str(r.best) for r in results[:-1]]
    links += [_link(m, t, r) for (m, _), t, r in zip(students, teachers, results, strict=True)]
    atomic_write_text(Path(out_root) / SUMMARY,
                      json.dumps([asdict(link) for link in links], indent=2) + "\n")
    return links


def _link(model: str, teacher: str | None, result: TrainResult) -> ChainLink:
    metrics = result.out_dir / "metrics.json"
    return ChainLink(model=model, teacher=teacher, weights=str(result.best),
                     metrics=str(metrics) if metrics.is_file() else None,
                     ap=round(result.best_ap, 4), ap50=round(result.best_ap50, 4),
                     epochs=result.epochs)
