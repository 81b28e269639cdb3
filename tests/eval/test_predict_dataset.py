"""Prediction on a dataset split read through its manifest: the library generator, the files
``damo predict --data`` writes (one annotated image and one JSONL line per row, named so that
no two rows meet), and the command line's choice between image files and ``--data``.

An untrained ``damoyolo_ns`` with score threshold 0 stands in for a trained model: every
image then has detections, which is all drawing and writing need.
"""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pytest
import torch
from click.testing import Result
from typer.testing import CliRunner

from damo_core.cli.app import app
from damo_core.data.manifest_dataset import ManifestDetection
from damo_core.data.resolve import open_split
from damo_core.data.synth import generate
from damo_core.eval import annotate_dataset, predict, predict_dataset, row_stem
from damo_core.models import Detector, build_model
from damo_core.train.checkpoint_io import atomic_save, model_meta

SIZE = 64
FAST = {"image_size": SIZE, "score_threshold": 0.0, "max_detections": 5, "batch_size": 3,
        "workers": 0, "progress": False}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def dataset_yaml(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate(tmp_path_factory.mktemp("synth") / "ds", num_classes=2, num_images=8,
                    image_size=SIZE, seed=0)


@pytest.fixture(scope="module")
def model() -> Detector:
    torch.manual_seed(0)
    return build_model("damoyolo_ns", num_classes=2)


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _inside(box: list[float], width: int, height: int) -> bool:
    x1, y1, x2, y2 = box
    return 0 <= x1 <= x2 <= width and 0 <= y1 <= y2 <= height


def test_predict_dataset_matches_predict_on_the_same_files(dataset_yaml: Path,
                                                           model: Detector) -> None:
    train = open_split(dataset_yaml, "train")
    rows = list(predict_dataset(model, train, **FAST))
    assert [r.index for r in rows] == list(range(len(train)))
    assert [r.sample.file_name for r in rows] == [train.path(i) for i in range(len(train))]
    options = {k: v for k, v in FAST.items() if k != "progress"}
    on_files = predict(model, [r.sample.file_name for r in rows], **options)
    for row, det in zip(rows, on_files, strict=True):  # one loop, so the very same boxes
        assert 0 < len(row.detections) <= 5
        torch.testing.assert_close(row.detections.boxes, det.boxes)
        torch.testing.assert_close(row.detections.scores, det.scores)
        height, width = row.sample.image.shape[:2]
        assert all(_inside(b, width, height) for b in row.detections.boxes.tolist())
    assert model.training  # train mode restored once the generator is done
    assert torch.is_grad_enabled()


def test_predict_dataset_limit(dataset_yaml: Path, model: Detector) -> None:
    train = open_split(dataset_yaml, "train")
    assert [r.index for r in predict_dataset(model, train, limit=2, **FAST)] == [0, 1]
    assert len(list(predict_dataset(model, train, limit=100, **FAST))) == len(train)
    with pytest.raises(ValueError, match="limit must be a positive"):
        list(predict_dataset(model, train, limit=0, **FAST))


def _check_outputs(out: Path, jsonl: Path, data: ManifestDetection, n: int,
                   class_names: tuple[str, ...]) -> list[dict]:
    """One annotated image and one line per row, the ids leading back to the manifest row."""
    records = _lines(jsonl)
    assert [r["row"] for r in records] == list(range(n))
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [r["annotated"] for r in records] + ["detections.jsonl"])  # no temp files left
    for r in records:
        row = r["row"]
        assert r["image_id"] == data.source_image_ids[row].as_py()
        assert r["source"] == data.sources[row].as_py()
        assert r["path"] == data.path(row)
        assert (r["width"], r["height"]) == data.image_size(row)
        assert r["detections"], "score threshold 0 keeps boxes on every image"
        for d in r["detections"]:
            assert d["class"] == class_names[d["label"]] and 0 <= d["score"] <= 1
            assert _inside(d["box"], r["width"], r["height"])
    return records


def test_annotate_dataset_writes_an_image_and_a_line_per_row(dataset_yaml: Path,
                                                             model: Detector,
                                                             tmp_path: Path) -> None:
    train = open_split(dataset_yaml, "train")
    out = tmp_path / "pred"
    jsonl = annotate_dataset(model, train, out, class_names=train.class_names, limit=4, **FAST)
    assert jsonl == out / "detections.jsonl"
    records = _check_outputs(out, jsonl, train, 4, train.class_names)
    assert [r["annotated"] for r in records] == [
        f"{row_stem(r['source'], r['image_id'])}.jpg" for r in records]


def test_ids_with_slashes_are_safe_and_never_overwrite_each_other(dataset_yaml: Path,
                                                                  model: Detector,
                                                                  tmp_path: Path) -> None:
    train = open_split(dataset_yaml, "train")
    ids = ["a/b", "a_b", "../../escape", ".hidden", "a/b", "x y.jpg"][: len(train)]
    train.source_image_ids = pa.array(ids)  # as a manifest of paths-as-ids would hold
    out = tmp_path / "pred"
    jsonl = annotate_dataset(model, train, out, class_names=train.class_names, **FAST)
    records = _check_outputs(out, jsonl, train, len(ids), train.class_names)
    names = [r["annotated"] for r in records]
    assert len(set(names)) == len(names)
    assert all((out / n).parent == out and not n.startswith(".") for n in names)
    assert not (tmp_path / "escape.jpg").exists()
    assert names[:2] == ["data_a_b.jpg", "data_a_b_2.jpg"]


def test_out_in_the_image_folder_never_overwrites_an_input(model: Detector,
                                                           tmp_path: Path) -> None:
    train = open_split(generate(tmp_path / "ds", num_classes=2, num_images=8,
                                image_size=SIZE, seed=0), "train")
    inputs = [Path(train.path(i)) for i in range(len(train))]
    before = {p: p.read_bytes() for p in inputs}
    train.sources = pa.array([""] * len(train))  # rows named exactly like their input files
    train.source_image_ids = pa.array([p.stem for p in inputs])
    out = inputs[0].parent
    records = _lines(annotate_dataset(model, train, out, class_names=train.class_names,
                                      **FAST))
    assert [r["annotated"] for r in records] == [f"{p.stem}_2.jpg" for p in inputs]
    assert all(p.read_bytes() == data for p, data in before.items())


def test_row_stem() -> None:
    assert row_stem("coco", "train2017/000000000139.jpg") == "coco_train2017_000000000139"
    assert row_stem("oi", "x y:z") == "oi_x_y_z"
    assert row_stem("", "..") == "image" and row_stem("", ".hidden") == "hidden"
    assert len(row_stem("s", "9" * 500)) == 120


# ----------------------------------------------------------------------------- command line


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory, model: Detector) -> Path:
    path = tmp_path_factory.mktemp("ckpt") / "best.pt"
    names = ["circle", "square"]
    atomic_save({**model_meta(model, names, SIZE), "model": model.state_dict(), "ema": None},
                path)
    return path


def _invoke(*args: str) -> tuple[Result, str]:
    """The result and what the user sees: click's ``output`` holds stderr too."""
    result = CliRunner().invoke(app, ["predict", *args])
    return result, result.output


def test_cli_predicts_on_a_split(checkpoint: Path, dataset_yaml: Path, tmp_path: Path) -> None:
    out = tmp_path / "pred"
    result, text = _invoke("--weights", str(checkpoint), "--data", str(dataset_yaml),
                           "--split", "train", "--limit", "3", "--conf", "0", "--out", str(out))
    assert result.exit_code == 0, text
    train = open_split(dataset_yaml, "train")
    _check_outputs(out, out / "detections.jsonl", train, 3, ("circle", "square"))


@pytest.mark.parametrize(("extra", "fragment"), [
    ([], "image files or --data DATASET, exactly one"),
    (["{image}", "--data", "{data}"], "image files or --data DATASET, exactly one"),
    (["{image}", "--limit", "2"], "--limit applies to --data only"),
], ids=["neither", "both", "limit-without-data"])
def test_cli_takes_files_or_data(checkpoint: Path, dataset_yaml: Path, extra: list[str],
                                 fragment: str) -> None:
    image = str(next((dataset_yaml.parent / "images" / "val").glob("*.jpg")))
    args = [a.format(image=image, data=dataset_yaml) for a in extra]
    result, text = _invoke("--weights", str(checkpoint), *args)
    assert result.exit_code == 2, text
    assert fragment in text and "Traceback" not in text
    assert len([line for line in text.splitlines() if line.strip()]) == 1, text
