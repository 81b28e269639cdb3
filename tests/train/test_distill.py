"""Distillation: CWD loss, align module, schedule, errors, two-stage recipe, exact resume, CLI."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch
import typer
from typer.testing import CliRunner

import damo_core.train.distill as distill_mod
from damo_core.cli import app
from damo_core.cli.distill_cmds import distill as distill_cmd
from damo_core.models import build_model
from damo_core.models.config import ConfigError
from damo_core.train import load_train_config
from damo_core.train.chain import PAPER_CHAIN, run_chain
from damo_core.train.checkpoint_io import atomic_save, model_meta
from damo_core.train.distill import (
    AlignModule,
    DistillConfig,
    DistillTrainer,
    FeatureDistillLoss,
    cwd_loss,
    distill_chain,
    distill_weight,
    pick_levels,
)

TINY = dict(epochs=2, batch=4, img_size=64, warmup_epochs=1, no_aug_epochs=1, workers=0,
            precise_bn_batches=1, ema_tau=10.0, augment={"mosaic_prob": 0.5, "mixup_prob": 0.2})


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny convs on a shared 2-core box run ~7x faster on one thread than oversubscribed."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _save_teacher(path, name, class_names):
    """A checkpoint in the trainer's format (model_meta + model + ema) of a fresh model."""
    torch.manual_seed(1)
    model = build_model(name, num_classes=len(class_names))
    atomic_save({**model_meta(model, list(class_names), 64), "model": model.state_dict(),
                 "ema": model.state_dict()}, path)
    return path


@pytest.fixture(scope="module")
def teacher_pt(tmp_path_factory):
    return _save_teacher(tmp_path_factory.mktemp("teacher") / "best.pt", "damoyolo_nm",
                         ["circle", "square"])


def _trainer(data, teacher, out, dcfg=None, **overrides):
    cfg = load_train_config(overrides={**TINY, **overrides})
    return DistillTrainer("damoyolo_ns", teacher, data, out, cfg, dcfg, progress=False)


def _identity_align(loss: FeatureDistillLoss) -> None:
    with torch.no_grad():
        for conv in loss.align.convs:
            conv.weight.copy_(torch.eye(conv.out_channels)[:, :, None, None])
            conv.bias.zero_()


def test_loss_is_zero_when_aligned_student_equals_teacher():
    torch.manual_seed(0)
    loss = FeatureDistillLoss([8, 16], [8, 16])
    _identity_align(loss)
    feats = [torch.randn(2, 8, 8, 8), torch.randn(2, 16, 4, 4)]
    assert float(loss(feats, feats).detach()) == pytest.approx(0.0, abs=1e-6)
    other = [torch.randn_like(f) for f in feats]
    assert float(loss(other, feats).detach()) > 0.01


def test_cwd_loss_matches_its_definition():
    torch.manual_seed(0)
    s, t, tau = torch.randn(2, 3, 4, 4), torch.randn(2, 3, 4, 4), 2.0
    p_t = torch.softmax(t.reshape(6, 16) / tau, dim=1)
    log_p_s = torch.log_softmax(s.reshape(6, 16) / tau, dim=1)
    expected = (p_t * (p_t.log() - log_p_s)).sum() * tau**2 / 6
    assert float(cwd_loss([s], [t], tau)) == pytest.approx(float(expected), rel=1e-5)
    assert float(cwd_loss([s, s], [t, t], tau)) == pytest.approx(2 * float(expected), rel=1e-5)


def test_schedule_and_defaults():
    assert distill_weight(0, 100, 1.0, 0.1) == pytest.approx(1.0)
    assert distill_weight(100, 100, 1.0, 0.1) == pytest.approx(0.1)
    assert distill_weight(50, 100, 1.0, 0.1) == pytest.approx(0.55)
    assert distill_weight(500, 100, 1.0, 0.1) == pytest.approx(0.1)
    values = [distill_weight(s, 40, 2.0, 0.5) for s in range(41)]
    assert values[0] == pytest.approx(2.0) and values[-1] == pytest.approx(0.5)
    assert all(a >= b for a, b in zip(values, values[1:], strict=False))
    d = DistillConfig()
    assert (d.weight_start, d.weight_end, d.tau, d.levels) == (1.0, 0.1, 1.0, (0, 1, 2))
    assert DistillConfig.from_dict({"levels": [1, 2], "tau": 2}).levels == (1, 2)
    with pytest.raises(ConfigError, match="unknown distill setting 'weight_star'; did you mean "
                                          "'weight_start'"):
        DistillConfig.from_dict({"weight_star": 1.0})
    with pytest.raises(ConfigError, match="'tau' = 0.0 must be > 0"):
        DistillConfig.from_dict({"tau": 0})


def test_mismatched_levels_and_channels_are_named():
    with pytest.raises(ValueError, match=r"2 student levels \(channels \[40, 80\]\) to 3 "
                                         r"teacher levels \(channels \[64, 128, 256\]\)"):
        AlignModule([40, 80], [64, 128, 256])
    align = AlignModule([40, 80], [64, 128])
    with pytest.raises(ValueError, match="level 1: student feature has 96 channels, the align "
                                         "module expects 80"):
        align([torch.zeros(1, 40, 4, 4), torch.zeros(1, 96, 2, 2)])
    with pytest.raises(ValueError, match=r"level 0: .* \(channels 8 vs 16\)"):
        cwd_loss([torch.zeros(1, 8, 4, 4)], [torch.zeros(1, 16, 4, 4)])
    with pytest.raises(ValueError, match="got 2 student and 1 teacher levels"):
        cwd_loss([torch.zeros(1, 8, 4, 4)] * 2, [torch.zeros(1, 8, 4, 4)])
    with pytest.raises(ValueError, match=r"levels \[3\] do not exist: the teacher neck has 3 "
                                         r"levels \(channels \[64, 128, 256\]\)"):
        pick_levels([64, 128, 256], (0, 3), "teacher")


def test_teacher_with_other_classes_or_no_distill_stage_is_an_error(tiny_data, teacher_pt,
                                                                      tmp_path):
    bad = _save_teacher(tmp_path / "three.pt", "damoyolo_ns", ["a", "b", "c"])
    with pytest.raises(ValueError, match=r"trained for 3 classes \(\['a', 'b', 'c'\]\) but the "
                                         r"student's dataset has 2 \(\['circle', 'square'\]\)"):
        _trainer(tiny_data, bad, tmp_path / "run")
    with pytest.raises(ValueError, match=r"epochs \(2\) must exceed no_aug_epochs \(2\)"):
        _trainer(tiny_data, teacher_pt, tmp_path / "run", no_aug_epochs=2)


def test_gradients_reach_student_and_align_never_teacher(tiny_data, teacher_pt, tmp_path):
    trainer = _trainer(tiny_data, teacher_pt, tmp_path / "run")
    images, targets = next(iter(trainer.loader()))
    with torch.no_grad():
        teacher_feats = trainer.teacher.features(images)
    loss = trainer.distill_loss(trainer.model.features(images), teacher_feats)
    loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0
               for p in trainer.distill_loss.parameters())
    assert all(p.grad is not None for p in trainer.model.neck.parameters() if p.requires_grad)
    assert all(p.grad is None and not p.requires_grad for p in trainer.teacher.parameters())
    before = {k: v.clone() for k, v in trainer.teacher.state_dict().items()}
    align_before = [p.detach().clone() for p in trainer.distill_loss.parameters()]
    trainer.model.train()
    trainer.distilling, trainer.distill_steps = True, 6
    out = trainer.train_step(images, targets)
    assert out["loss_distill"] > 0 and out["distill_weight"] == pytest.approx(1.0)
    assert not trainer.teacher.training
    assert all(torch.equal(v, before[k]) for k, v in trainer.teacher.state_dict().items())
    assert any(not torch.equal(a, p) for a, p in zip(align_before,
                                                     trainer.distill_loss.parameters(),
                                                     strict=True))


@pytest.fixture(scope="module")
def runs(tiny_data, teacher_pt, tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    full = _trainer(tiny_data, teacher_pt, root / "full")
    calls = {"n": 0}
    features = full.teacher.features

    def counted(images):
        calls["n"] += 1
        return features(images)

    full.teacher.features = counted
    full.fit()
    _trainer(tiny_data, teacher_pt, root / "split").fit(stop_after_epoch=1)
    _trainer(tiny_data, teacher_pt, root / "split").fit(resume=True)
    return root, calls["n"]


def test_resume_reproduces_an_uninterrupted_distillation_run(runs):
    root, _ = runs
    full = torch.load(root / "full" / "last.pt", weights_only=True)
    split = torch.load(root / "split" / "last.pt", weights_only=True)
    assert full["epoch"] == split["epoch"] == 2 and full["step"] == split["step"]
    for part in ("model", "ema", "distill_align"):
        assert full[part].keys() == split[part].keys()
        for key, value in full[part].items():
            assert torch.equal(value, split[part][key]), f"{part}.{key}"
    assert full["distill"]["config"]["levels"] == [0, 1, 2]


def test_last_stage_has_no_distillation_term(runs):
    root, teacher_calls = runs
    rows = list(csv.DictReader((root / "full" / "results.csv").open()))
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    assert float(rows[0]["loss_distill"]) > 0 and float(rows[0]["distill_weight"]) > 0
    assert float(rows[1]["loss_distill"]) == 0 and float(rows[1]["distill_weight"]) == 0
    steps = torch.load(root / "full" / "last.pt", weights_only=True)["step"]
    assert teacher_calls == steps // 2  # the teacher ran only in the first (mosaic) epoch


def test_through_no_aug_distils_every_epoch_with_one_cosine(tiny_data, teacher_pt, tmp_path):
    """The reference code's schedule: the teacher stays to the last step and the weight's
    cosine spans the whole run, so the no-mosaic epoch still has a (small) term."""
    dcfg = DistillConfig(weight_start=0.5, weight_end=0.05, through_no_aug=True)
    _trainer(tiny_data, teacher_pt, tmp_path / "run", dcfg).fit()
    rows = list(csv.DictReader((tmp_path / "run" / "results.csv").open()))
    weights = [float(r["distill_weight"]) for r in rows]
    assert all(float(r["loss_distill"]) > 0 for r in rows)
    assert 0.5 >= weights[0] > weights[1] > 0.05  # epoch means of one decaying cosine


def test_resuming_a_plain_run_is_a_clear_error(tiny_data, teacher_pt, tmp_path):
    (tmp_path / "run").mkdir()
    torch.save({"epoch": 1}, tmp_path / "run" / "last.pt")
    with pytest.raises(ValueError, match="written by a plain training run"):
        _trainer(tiny_data, teacher_pt, tmp_path / "run").fit(resume=True)


def test_chain_passes_each_best_to_the_next_link(tmp_path, monkeypatch):
    seen = []

    def fake(student, teacher, data, out_dir, cfg, dcfg, *, resume, progress):
        seen.append((student, str(teacher), resume))
        best = tmp_path / out_dir / "best.pt"
        best.parent.mkdir(parents=True)
        best.write_bytes(b"x")
        return distill_mod.TrainResult(tmp_path / out_dir, best, best, 0.5, 0.7, 2)

    monkeypatch.setattr(distill_mod, "distill", fake)
    results = distill_chain([("damoyolo_m", "m"), ("damoyolo_s", "s"), ("damoyolo_t", "t")],
                            "L.pt", "data.yaml")
    assert [s for s, _, _ in seen] == ["damoyolo_m", "damoyolo_s", "damoyolo_t"]
    assert [t for _, t, _ in seen] == ["L.pt", str(tmp_path / "m" / "best.pt"),
                                       str(tmp_path / "s" / "best.pt")]
    assert len(results) == 3


def test_cli_distill_runs_and_rejects_unknown_settings(tiny_data, teacher_pt, tmp_path):
    app = typer.Typer()
    app.command()(distill_cmd)
    base = ["--student", "damoyolo_ns", "--teacher-weights", str(teacher_pt), "--data",
            str(tiny_data), "--out", str(tmp_path / "cli")]
    bad = CliRunner().invoke(app, [*base, "distill.temp=2"])
    assert bad.exit_code == 2 and "unknown distill setting 'temp'" in bad.output
    args = [*base, "--epochs", "2", "--batch", "4", "--img-size", "64", "no_aug_epochs=1",
            "workers=0", "precise_bn_batches=1", "distill.tau=2", "distill.levels=[1,2]"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout.strip().splitlines()[-1])["epochs"] == 2
    saved = torch.load(tmp_path / "cli" / "last.pt", weights_only=True)
    assert saved["distill"]["config"]["tau"] == 2.0
    assert saved["distill"]["config"]["levels"] == [1, 2]


def test_cli_chain_trains_the_teacher_then_distils_each_link(tiny_data, tmp_path):
    """The paper's L -> M -> S -> T, for real at toy scale: four checkpoints, four metrics files,
    each student taught by the previous link's best.pt, and a resume that redoes nothing."""
    root = tmp_path / "chain"
    args = ["distill-chain", "--data", str(tiny_data), "--out", str(root), "--teacher-epochs",
            "1", "--epochs", "1", "--batch", "4", "--img-size", "64", "no_aug_epochs=0",
            "workers=0", "precise_bn_batches=1", "warmup_epochs=1"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    links = json.loads((root / "chain.json").read_text())
    assert [link["model"] for link in links] == list(PAPER_CHAIN)
    assert links[0]["teacher"] is None
    for prev, link in zip(links, links[1:], strict=False):
        assert link["teacher"] == prev["weights"]
    for link in links:
        meta = torch.load(link["weights"], weights_only=True)
        assert meta["model_name"] == link["model"]
        metrics = json.loads(Path(link["metrics"]).read_text())
        assert metrics["AP50"] == pytest.approx(link["ap50"], abs=1e-4)
    stamps = [Path(link["weights"]).stat().st_mtime_ns for link in links]
    again = CliRunner().invoke(app, [*args, "--resume"])
    assert again.exit_code == 0, again.output
    assert [Path(link["weights"]).stat().st_mtime_ns for link in links] == stamps


def test_chain_needs_a_teacher_and_distinct_models(tiny_data, tmp_path):
    cfg = load_train_config(overrides=TINY)
    with pytest.raises(ConfigError, match="at least one student"):
        run_chain(["damoyolo_s"], tiny_data, tmp_path, cfg)
    with pytest.raises(ConfigError, match="names a model twice"):
        run_chain(["damoyolo_s", "damoyolo_s"], tiny_data, tmp_path, cfg)
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        run_chain(["damoyolo_s", "damoyolo_t"], tiny_data, tmp_path, cfg,
                  teacher_weights=tmp_path / "missing.pt")
