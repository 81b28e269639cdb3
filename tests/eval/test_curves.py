"""Precision/recall/F1 against confidence, the best-F1 threshold, and the evaluate step's
artefacts, checked against numbers computed another way.

On the synthetic val set the reference is pycocotools itself: COCOeval run at IoU 0.5 alone
says which detections hit which objects, and from that the test computes each class's recall,
precision and F1 at every threshold. The confusion matrix's diagonal over its column must be
that recall at the chosen threshold, the curves must be those numbers, and the chosen
threshold must be where their mean F1 peaks. Detections come from two sources: the ground
truth made noisy (every kind of error, known rates) and a random "trained-ish" detector run
through :func:`damo_core.eval.evaluate` (the real inference path).
"""

from __future__ import annotations

import contextlib
import io
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from typer.testing import CliRunner

from damo_core.cli.app import app
from damo_core.data.coco import CocoDetection, load_dataset_yaml
from damo_core.data.synth import generate
from damo_core.eval import (
    PLOT_FILES,
    ConfidenceCurves,
    Detections,
    EvalResult,
    best_f1_threshold,
    confidence_curves,
    detections_to_coco_results,
    evaluate,
    match_detections,
    plot_f1_curve,
    score_detections,
)
from damo_core.eval.curves import CONFIDENCES
from damo_core.steps import evaluate as evaluate_step
from damo_core.train.checkpoint_io import atomic_save, model_meta
from tests.eval.test_confusion import CAT_IDS, hand_built_coco, hand_built_detections
from tests.export.conftest import trained_ish

SIZE = 128


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterator[None]:
    """One intra-op thread: on a shared machine OpenMP spin-waiting makes torch calls many
    times slower; results do not depend on it."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def synth_yaml(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate(tmp_path_factory.mktemp("synth") / "ds", num_images=32, image_size=SIZE)


@pytest.fixture(scope="module")
def synth_val(synth_yaml: Path) -> CocoDetection:
    return CocoDetection.from_spec(load_dataset_yaml(synth_yaml), "val")


@pytest.fixture(scope="module")
def checkpoint(synth_val: CocoDetection, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A checkpoint in the trainer's layout of a random model whose scores spread over (0, 1),
    so it detects plenty (mostly wrongly): every cell of the matrix gets used."""
    path = tmp_path_factory.mktemp("ckpt") / "best.pt"
    model = trained_ish("damoyolo_ns")
    atomic_save({**model_meta(model, list(synth_val.class_names), SIZE),
                 "model": model.state_dict(), "ema": None, "epoch": 0, "metrics": {}}, path)
    return path


def _noisy_truth(dataset: CocoDetection) -> dict[int, Detections]:
    """Each object found with probability 0.85 (box jittered, class changed 20 % of the
    time, an extra duplicate 10 %), plus two junk boxes per image; scores random but higher
    for the right class, so thresholds matter."""
    rng = np.random.default_rng(0)
    out = {}
    for i in range(len(dataset)):
        sample = dataset[i]
        boxes, scores, labels = [], [], []
        for box, label in zip(sample.boxes.astype(np.float64), sample.labels, strict=True):
            if rng.random() > 0.85:
                continue
            size = np.tile(box[2:] - box[:2], 2)
            for _ in range(1 + (rng.random() < 0.1)):
                wrong = rng.random() < 0.2
                boxes.append(box + rng.normal(0, 0.08, 4) * size)
                labels.append((label + rng.integers(1, dataset.num_classes)) % dataset.num_classes
                              if wrong else label)
                scores.append(rng.uniform(0.05, 0.6) if wrong else rng.uniform(0.2, 1.0))
        for _ in range(2):
            xy = rng.uniform(0, SIZE * 0.7, 2)
            boxes.append(np.concatenate([xy, xy + rng.uniform(8, 30, 2)]))
            labels.append(rng.integers(0, dataset.num_classes))
            scores.append(rng.uniform(0.05, 0.7))
        out[sample.image_id] = Detections(torch.tensor(np.array(boxes)),
                                          torch.tensor(scores, dtype=torch.float64),
                                          torch.tensor(np.array(labels), dtype=torch.long))
    return out


def _reference(coco: COCO, records: list[dict], cat_ids: tuple[int, ...]
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per class (rows) and grid confidence (columns): hits, detections kept and objects,
    from pycocotools' own matching at IoU 0.5 (all areas, up to 100 detections)."""
    with contextlib.redirect_stdout(io.StringIO()):
        coco_eval = COCOeval(coco, coco.loadRes(records), "bbox")
        coco_eval.params.iouThrs = np.array([0.5])
        coco_eval.params.areaRng, coco_eval.params.areaRngLbl = [[0, 1e10]], ["all"]
        coco_eval.params.maxDets = [100]
        coco_eval.evaluate()
    grid = np.asarray(CONFIDENCES)
    hits = np.zeros((len(cat_ids), len(grid)))
    kept, objects = np.zeros_like(hits), np.zeros(len(cat_ids))
    for entry in coco_eval.evalImgs:
        if entry is None:
            continue
        k = cat_ids.index(entry["category_id"])
        scores = np.asarray(entry["dtScores"])[:, None]
        counted = ~np.asarray(entry["dtIgnore"][0], dtype=bool)[:, None]
        matched = (np.asarray(entry["dtMatches"][0]) > 0)[:, None]
        hits[k] += (counted & matched & (scores > grid)).sum(axis=0)
        kept[k] += (counted & (scores > grid)).sum(axis=0)
        objects[k] += (~np.asarray(entry["gtIgnore"], dtype=bool)).sum()
    return hits, kept, objects


def _f1(hits: np.ndarray, kept: np.ndarray, objects: np.ndarray) -> np.ndarray:
    precision = np.divide(hits, kept, out=np.zeros_like(hits), where=kept > 0)
    recall = hits / objects[:, None]
    total = precision + recall
    return np.divide(2 * precision * recall, total, out=np.zeros_like(hits), where=total > 0)


@pytest.fixture(scope="module", params=["noisy_truth", "model"])
def scored(request: pytest.FixtureRequest, synth_yaml: Path, synth_val: CocoDetection,
           checkpoint: Path, tmp_path_factory: pytest.TempPathFactory
           ) -> tuple[EvalResult, list[dict]]:
    """(the result, the COCO detection records it was computed from) for each source."""
    if request.param == "noisy_truth":
        detections = _noisy_truth(synth_val)
        result = score_detections(synth_val.coco, detections, cat_ids=synth_val.cat_ids)
        return result, detections_to_coco_results(detections, synth_val.cat_ids)
    from damo_core.train import load_trained

    model, _ = load_trained(checkpoint)
    records_json = tmp_path_factory.mktemp("model") / "records.json"
    result = evaluate(model, synth_yaml, image_size=SIZE, progress=False, workers=0,
                      results_json=records_json)
    return result, json.loads(records_json.read_text())


def test_matrix_diagonal_over_column_is_recall_at_the_chosen_threshold(
        scored: tuple[EvalResult, list[dict]], synth_val: CocoDetection) -> None:
    result, records = scored
    assert result.confusion is not None
    hits, kept, objects = _reference(synth_val.coco, records, tuple(synth_val.cat_ids))
    i = CONFIDENCES.index(best_f1_threshold(result))
    counts = np.asarray(result.confusion.counts)
    columns = counts.sum(axis=0)[:-1]
    np.testing.assert_array_equal(columns, objects)  # a class's column holds its objects
    np.testing.assert_allclose(np.diag(counts)[:-1] / columns, hits[:, i] / objects,
                               rtol=0, atol=1e-12)
    rows = counts.sum(axis=1)[:-1]
    np.testing.assert_array_equal(rows, kept[:, i])  # a class's row holds its detections
    assert counts[-1, -1] == 0 and hits.sum() > 0  # something was found


def test_curves_are_pycocotools_numbers_and_peak_at_the_best_threshold(
        scored: tuple[EvalResult, list[dict]], synth_val: CocoDetection) -> None:
    result, records = scored
    curves = result.curves
    assert curves is not None and curves.confidence == list(CONFIDENCES)
    hits, kept, objects = _reference(synth_val.coco, records, tuple(synth_val.cat_ids))
    reference_f1 = _f1(hits, kept, objects)
    names = list(synth_val.class_names)
    assert list(curves.f1) == names
    np.testing.assert_allclose([curves.recall[n] for n in names], hits / objects[:, None],
                               atol=1e-12)
    np.testing.assert_allclose([curves.f1[n] for n in names], reference_f1, atol=1e-12)
    mean = reference_f1.mean(axis=0)
    np.testing.assert_allclose(curves.mean_f1, mean, atol=1e-12)
    best = curves.best_threshold
    assert mean[CONFIDENCES.index(best)] == pytest.approx(mean.max(), abs=1e-12)
    # ties go to the highest confidence
    assert all(m < mean.max() - 1e-12 for c, m in zip(CONFIDENCES, mean, strict=True)
               if c > best)
    assert curves.at_best()["f1"] == max(curves.mean_f1) > 0


def test_noisy_truth_is_a_test_worth_passing(synth_val: CocoDetection) -> None:
    """The error rates of :func:`_noisy_truth` show up, so the checks above compare numbers
    that could differ: recall neither 0 nor 1, class confusions, false positives and misses
    all present, and a best threshold strictly inside (0, 1)."""
    result = score_detections(synth_val.coco, _noisy_truth(synth_val), cat_ids=synth_val.cat_ids)
    assert result.confusion is not None and result.curves is not None
    counts = np.asarray(result.confusion.counts)
    assert counts[:-1, -1].sum() > 0 and counts[-1, :-1].sum() > 0  # false positives, misses
    assert counts[:-1, :-1].sum() - np.trace(counts) > 0  # class confusions
    recall = np.diag(counts)[:-1] / counts.sum(axis=0)[:-1]
    assert np.all((recall > 0.4) & (recall < 0.95)), recall
    assert 0.05 < result.curves.best_threshold < 0.95


def test_per_class_table_has_one_row_per_class(scored: tuple[EvalResult, list[dict]],
                                               synth_val: CocoDetection) -> None:
    result, _ = scored
    lines = result.per_class_table().splitlines()
    assert lines[0] == "| class | images | instances | AP | AP50 |"
    rows = [[cell.strip() for cell in line.strip("|").split("|")] for line in lines[2:]]
    assert [r[0] for r in rows] == list(synth_val.class_names)
    images = np.zeros(synth_val.num_classes, int)
    instances = np.zeros(synth_val.num_classes, int)
    for i in range(len(synth_val)):
        labels = synth_val[i].labels
        np.add.at(instances, labels, 1)
        images[np.unique(labels)] += 1
    assert [int(r[1]) for r in rows] == images.tolist()
    assert [int(r[2]) for r in rows] == instances.tolist()
    for (name, _, _, ap, ap50) in rows:
        assert float(ap) == pytest.approx(result.per_class_ap[name], abs=5e-4)
        assert float(ap50) == pytest.approx(result.per_class_ap50[name], abs=5e-4)


def test_hand_built_curves() -> None:
    """Class a: hits at 0.9, 0.6, 0.2 of 3 objects (one detection on a crowd ignored); class
    b: one hit (0.95) among detections at 0.95, 0.9, 0.6, 0.5, of 2 objects."""
    curves = confidence_curves(match_detections(hand_built_coco(), hand_built_detections(),
                                                cat_ids=CAT_IDS))
    at = {c: CONFIDENCES.index(c) for c in (0.1, 0.3, 0.95)}
    assert curves.f1["a"][at[0.1]] == pytest.approx(1.0)
    assert curves.precision["a"][at[0.3]] == 1.0
    assert curves.recall["a"][at[0.3]] == pytest.approx(2 / 3)
    assert curves.f1["a"][at[0.3]] == pytest.approx(0.8)
    assert curves.precision["b"][at[0.3]] == pytest.approx(1 / 4)
    assert curves.f1["b"][at[0.3]] == pytest.approx(1 / 3)  # P 1/4, R 1/2
    assert curves.precision["a"][at[0.95]] == 0.0 and curves.f1["a"][at[0.95]] == 0.0
    assert ConfidenceCurves.from_dict(json.loads(json.dumps(curves.to_dict()))) == curves


def test_best_threshold_ties_go_high_and_nothing_found_gives_one(tmp_path: Path) -> None:
    matches = match_detections(hand_built_coco(), {}, cat_ids=CAT_IDS)
    curves = confidence_curves(matches)
    assert set(curves.mean_f1) == {0.0} and curves.best_threshold == 1.0
    with pytest.raises(ValueError, match="no confidence curves"):
        best_f1_threshold(EvalResult.from_dict({**_minimal(), "curves": None}))
    png = plot_f1_curve(curves, tmp_path / "f1.png")
    with Image.open(png) as image:
        assert image.format == "PNG"


def _minimal() -> dict:
    """An EvalResult as JSON written before curves existed."""
    return {"AP": 0.0, "AP50": 0.0, "AP75": 0.0, "APs": 0.0, "APm": 0.0, "APl": 0.0,
            "per_class_ap": {}, "num_images": 0, "num_detections": 0}


# ----------------------------------------------------------------------------- the step


def test_evaluate_step_writes_the_artefacts_page_and_threshold(
        checkpoint: Path, synth_yaml: Path, synth_val: CocoDetection, tmp_path: Path) -> None:
    out = evaluate_step.run(checkpoint, synth_yaml, out_json=tmp_path / "eval.json",
                            out_dir=tmp_path / "plots", report_md=tmp_path / "page.md")
    saved = EvalResult.from_json(tmp_path / "eval.json")
    assert saved.curves is not None and saved.confusion is not None
    assert out["best_f1_threshold"] == saved.curves.best_threshold == saved.confusion.conf
    assert sorted(p.name for p in (tmp_path / "plots").iterdir()) == sorted(PLOT_FILES.values())
    for name in PLOT_FILES.values():
        if name.endswith(".png"):
            with Image.open(tmp_path / "plots" / name) as image:
                assert image.format == "PNG"
    matrix = json.loads((tmp_path / "plots" / PLOT_FILES["confusion_json"]).read_text())
    assert matrix["counts"] == saved.confusion.counts
    assert matrix["labels"] == [*synth_val.class_names, "background"]
    page = (tmp_path / "page.md").read_text()
    assert page.count("data:image/png;base64,") == 4
    assert out["per_class_table"] in page
    table_rows = [line for line in page.splitlines() if line.startswith("| ")][1:]
    assert len(table_rows) == synth_val.num_classes
    assert f"at confidence > {saved.curves.best_threshold:g}" in page


def test_damo_eval_prints_the_table_and_keeps_stdout_json(
        checkpoint: Path, synth_yaml: Path, synth_val: CocoDetection, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    # the step test above checks what write_plots draws; here only that --plots reaches it
    plotted: list[Path] = []
    monkeypatch.setattr(EvalResult, "write_plots", lambda self, out: plotted.append(out) or {})
    result = CliRunner().invoke(app, ["eval", "--weights", str(checkpoint), "--data",
                                      str(synth_yaml), "--plots", str(tmp_path / "plots")])
    assert result.exit_code == 0, result.output
    metrics = json.loads(result.stdout)
    assert 0.0 <= metrics["best_f1_threshold"] <= 1.0 and "per_class_table" not in metrics
    rows = [line for line in result.stderr.splitlines() if line.startswith("| ")]
    assert [r.split("|")[1].strip() for r in rows[1:]] == list(synth_val.class_names)
    assert plotted == [tmp_path / "plots"]


def _curves(mean_f1: list[float]) -> ConfidenceCurves:
    grid = [i / (len(mean_f1) - 1) for i in range(len(mean_f1))]
    best = max(range(len(grid)), key=lambda i: (mean_f1[i], grid[i]))
    return ConfidenceCurves(iou=0.5, confidence=grid, mean_f1=mean_f1,
                            mean_precision=mean_f1, mean_recall=mean_f1,
                            best_threshold=grid[best])


def test_checkpoint_keeps_a_measured_threshold_and_predict_falls_back_without_one():
    from damo_core.eval.curves import DEFAULT_CONFIDENCE, checkpoint_threshold, threshold_record

    kept = threshold_record(_curves([0.1, 0.6, 0.4, 0.0, 0.0]))
    assert kept == {"best_f1_threshold": 0.25, "best_f1": 0.6}
    assert checkpoint_threshold({"metrics": {"AP": 0.1, **kept}}) == 0.25
    # nothing scored a hit: the all-zero curve's 1.0 would hide every box, so nothing is kept
    assert threshold_record(_curves([0.0, 0.0, 0.0])) == {}
    for meta in ({}, {"metrics": None}, {"metrics": {"AP": 0.2}},
                 {"metrics": {"best_f1_threshold": float("nan")}},
                 {"metrics": {"best_f1_threshold": "0.4"}}):
        assert checkpoint_threshold(meta) == DEFAULT_CONFIDENCE, meta
