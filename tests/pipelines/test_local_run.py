"""The same pipeline function runs end to end on this machine with KFP's local runner.

Tiny settings (nano models, 64 px, one epoch) keep it a CI test; the README's main job runs
the full-size local defaults.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from damo_core.train import load_trained
from pipelines.local_run import distillation_summary, run_local, summary_rows

TINY = {
    # the embedded default's three sources (COCO, Objects365, OpenImages), on a local S3
    "synth_images": 18,
    "synth_image_size": 64,
    "sampling": {"val_fraction": 0.3},
    "model_l": "damoyolo_nl",
    "model_m": "damoyolo_nm",
    "model_s": "damoyolo_ns",
    "model_t": "damoyolo_t",  # every size its own model: each is deployed under its name
    "preset": "cpu_quick",
    "teacher_settings": {"epochs": 1, "img_size": 64, "batch": 4, "workers": 0},
    # one epoch, all of it distilled (no plain fine-tune stage at this size)
    "student_settings": {"epochs": 1, "img_size": 64, "batch": 4, "workers": 0,
                         "no_aug_epochs": 0},
    "student_size_settings": {"M": {"epochs": 2}},  # one size trained longer than the rest
    "map_floor": 0.0,
    "nas_generations": 0,  # published structures here; the search has its own tests
}


@pytest.fixture(scope="module")
def local_run(tmp_path_factory):
    return run_local(TINY, tmp_path_factory.mktemp("kfp"))


def test_every_step_ran_and_produced_artifacts(local_run):
    names = {t.task for t in local_run.tasks}
    assert {"unify", "train", "distill", "distill-2", "distill-3"} <= names
    assert len(local_run.by_prefix("nas")) == 4
    assert len(local_run.by_prefix("evaluate")) == 4
    assert len(local_run.by_prefix("gate")) == 4


def test_chain_order_and_real_checkpoints(local_run):
    rows = {r["model"]: r for r in summary_rows(local_run)}
    teachers = [t.artifacts["model"].get("teacher") for t in local_run.by_prefix("distill")]
    assert sorted(teachers, key=str) == sorted(["damoyolo_nl", "damoyolo_nm", "damoyolo_ns"])
    epochs = {t.artifacts["model"]["model_name"]: t.artifacts["model"]["epochs"]
              for t in local_run.by_prefix("distill") + local_run.by_prefix("train")
              if not t.artifacts["model"].get("control")}
    assert epochs == {"damoyolo_nl": 1, "damoyolo_nm": 2, "damoyolo_ns": 1, "damoyolo_t": 1}
    for rec in local_run.by_prefix("train") + local_run.by_prefix("distill"):
        model, meta = load_trained(rec.artifacts["model"]["uri"] + "/best.pt")
        assert meta["num_classes"] == 8 and meta["image_size"] == 64
        assert all(torch.isfinite(p).all() for p in model.parameters())
    for name in ("damoyolo_nl", "damoyolo_nm", "damoyolo_ns"):
        row = rows[name]
        assert row["AP50"] is not None and 0.0 <= row["AP50"] <= 1.0
        assert row["gate"] == "pass"  # map_floor 0 passes everything
        assert row["params_m"] > 0 and row["gflops"] > 0


def test_every_gated_model_was_deployed_to_the_local_triton(local_run):
    deploys = local_run.by_prefix("deploy")
    assert len(deploys) == 4  # every gate passed (map_floor 0)
    for rec in deploys:
        meta = rec.artifacts["deployment"]
        assert meta["status"] == "serving" and meta["variant"] == "python"
        assert (Path(meta["repo"]) / meta["model_name"] / "config.pbtxt").is_file()
    # four models, each deployed once to a fresh repository: version 1 of each serves
    assert sorted(r.artifacts["deployment"]["model_name"] for r in deploys) == [
        "damoyolo_nl", "damoyolo_nm", "damoyolo_ns", "damoyolo_t"]
    assert {r.artifacts["deployment"]["version"] for r in deploys} == {1}


def test_a_failing_step_is_named_and_stops_its_dependants(tmp_path):
    missing = tmp_path / "nowhere" / "dataset.yaml"
    with pytest.raises(RuntimeError) as err:
        run_local({**TINY, "sources": [str(missing)]}, tmp_path / "kfp")
    assert "unify" in str(err.value)
    [run] = [p for p in (tmp_path / "kfp").iterdir() if p.name.startswith("damo-yolo")]
    ran = {q.name for q in run.iterdir()}
    # nothing that needs the dataset ran; the NAS steps, which do not, finished and kept
    # their outputs
    assert ran - {"unify"} == {"nas", "nas-2", "nas-3",
                                       "nas-4"}
    assert all((run / name / "model_config").is_file() for name in ran - {"unify"})


def test_report_step_draws_latency_against_map(local_run):
    [rec] = local_run.by_prefix("report")
    png = Path(rec.artifacts["chart"]["uri"]).read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 5000
    page = Path(rec.artifacts["page"]["uri"]).read_text()
    assert "data:image/png;base64," in page
    # (header + 4 models), (header + 3 links), (header + the control)
    assert page.count("<tr>") == 5 + 4 + 2


def test_control_is_set_beside_its_distilled_twin(local_run):
    """The control (T trained alone, students' settings) is a real training without a
    teacher; its AP in the distilled-vs-alone row is what its checkpoint evaluates to, and the
    distilled side is the evaluate step's number for T."""
    from damo_core.steps import evaluate

    [control] = [t for t in local_run.by_prefix("train") if t.artifacts["model"].get("control")]
    summary = distillation_summary(local_run)
    versus = summary["control"]
    assert versus["model"] == "damoyolo_t" and control.artifacts["model"].get("teacher") is None
    [data] = local_run.by_prefix("unify")
    again = evaluate.run(control.artifacts["model"]["uri"], data.artifacts["dataset"]["uri"])
    assert versus["alone_AP"] == pytest.approx(again["AP"], abs=1e-9)
    assert versus["alone_AP50"] == pytest.approx(again["AP50"], abs=1e-9)
    [t_eval] = [r for r in local_run.by_prefix("evaluate")
                if r.artifacts["metrics"]["model_name"] == "damoyolo_t"]
    assert versus["distilled_AP"] == pytest.approx(t_eval.artifacts["metrics"]["AP"], abs=1e-9)
    assert versus["gain_AP"] == pytest.approx(versus["distilled_AP"] - versus["alone_AP"],
                                              abs=1e-4)
    assert [(x["teacher"], x["student"]) for x in summary["links"]] == [
        ("damoyolo_nl", "damoyolo_nm"), ("damoyolo_nm", "damoyolo_ns"),
        ("damoyolo_ns", "damoyolo_t")]


def test_the_table_shows_what_the_checkpoints_evaluate_to(local_run):
    """Real artifacts: evaluating the trained teacher's checkpoint again, outside the pipeline,
    gives the AP and AP50 of the summary table."""
    from damo_core.steps import evaluate

    [teacher] = [t for t in local_run.by_prefix("train") if not t.artifacts["model"].get(
        "control")]
    [data] = local_run.by_prefix("unify")
    again = evaluate.run(teacher.artifacts["model"]["uri"], data.artifacts["dataset"]["uri"])
    row = {r["model"]: r for r in summary_rows(local_run)}["damoyolo_nl"]
    assert again["AP"] == pytest.approx(row["AP"], abs=1e-9)
    assert again["AP50"] == pytest.approx(row["AP50"], abs=1e-9)


def test_images_stay_in_s3_and_artifacts_stay_small(local_run):
    """Every image of the run lives only in the run's S3 bucket: the manifest names them by
    s3:// URI, no file the run wrote holds JPEG bytes, and the dataset artifact (manifests,
    label space, counts, plots, weights) stays under 1 MB."""
    from damo_core.data.unify import iter_manifest

    [data] = local_run.by_prefix("unify")
    manifest = Path(data.artifacts["dataset"]["uri"])
    paths = [r["path"] for b in iter_manifest(manifest, ["path"]) for r in b.to_pylist()]
    assert paths and all(p.startswith("s3://damo-local/sources/") for p in paths)
    assert set(data.artifacts["dataset"]["sources"]) == {"coco", "o365", "oi"}
    size = sum(p.stat().st_size for p in manifest.rglob("*") if p.is_file())
    assert size < 1_000_000, size
    for path in local_run.run_dir.rglob("*"):
        if path.is_file():
            with path.open("rb") as f:
                assert f.read(3) != b"\xff\xd8\xff", f"{path} holds a JPEG"
    page = Path(data.artifacts["summary"]["uri"]).read_text()  # the KFP UI's Markdown
    assert "| coco | coco |" in page and page.count("data:image/png;base64,") == 2
