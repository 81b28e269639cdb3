"""Bad command-line inputs, command by command: each ends in exit code 2 and one line that
names the file, field or value at fault, and never in a traceback.

One table, one row per input: ``(id, argv, fragment)``. ``{name}`` placeholders in ``argv``
are filled from the module's tiny fixtures (an 8-image synthetic dataset at 64 px, a
damoyolo_ns checkpoint, broken files of each kind); every row fails before any training,
export or network work starts, so the whole table runs in seconds.
"""

from __future__ import annotations

import json
import traceback

import pytest
import torch
import yaml
from click.testing import Result
from typer.testing import CliRunner

from damo_core.cli.app import app
from damo_core.data.synth import generate
from damo_core.models import build_model
from damo_core.train.checkpoint_io import atomic_save, model_meta

NAMES = ["a", "b", "c"]
SIZE = 64


def _last_pt(model_name: str, names: list[str], image_size: int = SIZE,
             with_state: bool = True) -> dict:
    model = build_model(model_name, num_classes=len(names))
    ckpt = {**model_meta(model, names, image_size), "model": model.state_dict(), "ema": None}
    if with_state:
        ckpt.update(optimizer={"state": {}, "param_groups": []}, scaler={}, epoch=1, step=1,
                    best_ap=0.0, best_ap50=0.0, ema_updates=0)
    return ckpt


@pytest.fixture(scope="module")
def fx(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("bad_inputs")
    data = root / "syn"
    generate(data, num_classes=len(NAMES), num_images=8, image_size=SIZE, seed=0)
    dataset = data / "dataset.yaml"
    spec = yaml.safe_load(dataset.read_text())
    spec.setdefault("path", str(data))
    names = spec["names"]

    ns = build_model("damoyolo_ns", num_classes=len(names))
    ckpt = root / "ns_best.pt"
    atomic_save({**model_meta(ns, list(names), SIZE), "model": ns.state_dict(), "ema": None},
                ckpt)

    def run_dir(name: str, obj: dict) -> str:
        out = root / name
        out.mkdir()
        atomic_save(obj, out / "last.pt")
        return str(out)

    files: dict[str, str] = {
        "data": str(dataset), "ckpt": str(ckpt), "missing": str(root / "no_such_file.yaml"),
        "missing_pt": str(root / "no_such.pt"), "missing_img": str(root / "no_such.jpg"),
        "root": str(root),
        "resume_other_model": run_dir("other_model", _last_pt("damoyolo_t", list(names))),
        "resume_other_classes": run_dir("other_classes",
                                        _last_pt("damoyolo_ns", ["cat", "dog", "owl"])),
        "resume_other_size": run_dir("other_size",
                                     _last_pt("damoyolo_ns", list(names), image_size=96)),
        "resume_best_pt": run_dir("best_as_last",
                                  _last_pt("damoyolo_ns", list(names), with_state=False)),
        "resume_none": str(root / "fresh_run"),
    }
    writes = {
        "broken_yaml": "lr_per_image: [0.01\nepochs: 3\n",
        "list_yaml": "- 1\n- 2\n",
        "typo_yaml": "lr_per_imag: 0.01\n",
        "wrongtype_yaml": "epochs: many\n",
        "not_json": "{not json",
        "text_as_image.jpg": "this is text, not a JPEG",
        "garbage.pt": "not a torch file at all",
        "labels_missing_col.csv": "name\ncircle\n",
        "data_no_names.yaml": f"path: {data}\ntrain: images/train\nval: images/val\n",
        "params_typo.yaml": "epochz: 3\n",
        "backbone.txt": "definitely not a structure",
    }
    for name, text in writes.items():
        (root / name).write_text(text)
        files[name.replace(".", "_")] = str(root / name)
    (root / "data_broken.yaml").write_text("names: [a, b\n")
    files["data_broken"] = str(root / "data_broken.yaml")
    torch.save({"weights": torch.zeros(2)}, root / "plain_dict.pt")
    files["plain_dict_pt"] = str(root / "plain_dict.pt")

    # A dataset whose one box lies wholly outside its 64x64 image.
    outside = root / "outside"
    generate(outside, num_classes=len(NAMES), num_images=8, image_size=SIZE, seed=1)
    ann_file = outside / "annotations" / "instances_train.json"
    ann = json.loads(ann_file.read_text())
    ann["annotations"][0]["bbox"] = [SIZE + 10.0, 5.0, 8.0, 8.0]
    ann_file.write_text(json.dumps(ann))
    files["data_outside"] = str(outside / "dataset.yaml")
    files["outside_ann_id"] = str(ann["annotations"][0]["id"])

    (root / "nonempty").mkdir()
    (root / "nonempty" / "keep.txt").write_text("x")
    files["nonempty"] = str(root / "nonempty")
    (root / "eval.json").write_text(json.dumps({"AP": 0.3, "AP50": 0.5}))
    files["eval_json"] = str(root / "eval.json")
    return files


# (id, argv with {fixture} placeholders, fragment the one-line message must contain
#  [, exit code if not 2])
ROWS: list[tuple] = [
    # --- damo train ---------------------------------------------------------------------
    ("train-config-broken-yaml", ["train", "--model", "damoyolo_ns", "--data", "{data}",
                                  "--out", "{root}/t1", "--config", "{broken_yaml}"],
     "broken_yaml: not valid YAML"),
    ("train-config-missing", ["train", "--model", "damoyolo_ns", "--data", "{data}",
                              "--out", "{root}/t2", "--config", "{missing}"],
     "no_such_file.yaml"),
    ("train-config-list", ["train", "--model", "damoyolo_ns", "--data", "{data}",
                           "--out", "{root}/t3", "--config", "{list_yaml}"],
     "expected a mapping"),
    ("train-config-typo", ["train", "--model", "damoyolo_ns", "--data", "{data}",
                           "--out", "{root}/t4", "--config", "{typo_yaml}"],
     "lr_per_imag"),
    ("train-config-wrong-type", ["train", "--model", "damoyolo_ns", "--data", "{data}",
                                 "--out", "{root}/t5", "--config", "{wrongtype_yaml}"],
     "'epochs'"),
    ("train-epochs-0", ["train", "--model", "damoyolo_ns", "--data", "{data}",
                        "--out", "{root}/t6", "--epochs", "0"], "epochs"),
    ("train-epochs-text", ["train", "--model", "damoyolo_ns", "--data", "{data}",
                           "--epochs", "abc"], "--epochs"),
    ("train-batch-negative", ["train", "--model", "damoyolo_ns", "--data", "{data}",
                              "--out", "{root}/t7", "--batch", "-1"], "batch"),
    ("train-img-size-16", ["train", "--model", "damoyolo_ns", "--data", "{data}",
                           "--out", "{root}/t8", "--img-size", "16"], "img_size"),
    ("train-override-momentum", ["train", "--model", "damoyolo_ns", "--data", "{data}",
                                 "--out", "{root}/t9", "momentum=2"], "momentum"),
    ("train-override-unknown", ["train", "--model", "damoyolo_ns", "--data", "{data}",
                                "--out", "{root}/t10", "epochz=2"], "epochz"),
    ("train-override-no-equals", ["train", "--model", "damoyolo_ns", "--data", "{data}",
                                  "--out", "{root}/t11", "epochs"], "epochs"),
    ("train-data-missing", ["train", "--model", "damoyolo_ns", "--data", "{missing}",
                            "--out", "{root}/t12"], "no_such_file.yaml"),
    ("train-data-broken-yaml", ["train", "--model", "damoyolo_ns", "--data", "{data_broken}",
                                "--out", "{root}/t13"], "data_broken.yaml"),
    ("train-data-no-names", ["train", "--model", "damoyolo_ns", "--data",
                             "{data_no_names_yaml}", "--out", "{root}/t14"], "names"),
    ("train-data-box-outside", ["train", "--model", "damoyolo_ns", "--data", "{data_outside}",
                                "--out", "{root}/t15"], "lies wholly outside"),
    ("train-model-unknown", ["train", "--model", "damoyolo_zz", "--data", "{data}",
                             "--out", "{root}/t16"], "damoyolo_zz"),
    ("train-weights-missing", ["train", "--model", "damoyolo_ns", "--data", "{data}",
                               "--out", "{root}/t17", "--weights", "{missing_pt}"],
     "no_such.pt"),
    ("train-weights-garbage", ["train", "--model", "damoyolo_ns", "--data", "{data}",
                               "--out", "{root}/t18", "--weights", "{garbage_pt}"],
     "garbage.pt"),
    ("train-backbone-missing", ["train", "--model", "damoyolo_ns", "--data", "{data}",
                                "--out", "{root}/t19", "--backbone", "{missing}"],
     "no_such_file.yaml"),
    ("train-resume-nothing", ["train", "--model", "damoyolo_ns", "--data", "{data}",
                              "--out", "{resume_none}", "--resume"], "last.pt"),
    ("train-resume-other-model", ["train", "--model", "damoyolo_ns", "--data", "{data}",
                                  "--out", "{resume_other_model}", "--img-size", "64",
                                  "--resume"], "field model_name"),
    ("train-resume-other-classes", ["train", "--model", "damoyolo_ns", "--data", "{data}",
                                    "--out", "{resume_other_classes}", "--img-size", "64",
                                    "--resume"], "field class_names"),
    ("train-resume-other-size", ["train", "--model", "damoyolo_ns", "--data", "{data}",
                                 "--out", "{resume_other_size}", "--img-size", "64",
                                 "--resume"], "field image_size"),
    ("train-resume-best-pt", ["train", "--model", "damoyolo_ns", "--data", "{data}",
                              "--out", "{resume_best_pt}", "--img-size", "64", "--resume"],
     "optimizer"),
    # --- damo distill / distill-chain -----------------------------------------------------
    ("distill-teacher-missing", ["distill", "--student", "damoyolo_ns", "--teacher-weights",
                                 "{missing_pt}", "--data", "{data}", "--out", "{root}/d1"],
     "no_such.pt"),
    ("distill-teacher-garbage", ["distill", "--student", "damoyolo_ns", "--teacher-weights",
                                 "{garbage_pt}", "--data", "{data}", "--out", "{root}/d2"],
     "garbage.pt"),
    ("distill-config-broken", ["distill", "--student", "damoyolo_ns", "--teacher-weights",
                               "{ckpt}", "--data", "{data}", "--out", "{root}/d3",
                               "--config", "{broken_yaml}"], "broken_yaml"),
    ("distill-override-unknown", ["distill", "--student", "damoyolo_ns", "--teacher-weights",
                                  "{ckpt}", "--data", "{data}", "--out", "{root}/d4",
                                  "distill.nonsense=1"], "nonsense"),
    ("chain-models-unknown", ["distill-chain", "--data", "{data}", "--out", "{root}/c1",
                              "--models", "damoyolo_zz,damoyolo_ns"], "damoyolo_zz"),
    ("chain-config-broken", ["distill-chain", "--data", "{data}", "--out", "{root}/c2",
                             "--models", "damoyolo_t,damoyolo_ns", "--config",
                             "{broken_yaml}"], "broken_yaml"),
    # --- damo eval / predict --------------------------------------------------------------
    ("eval-weights-missing", ["eval", "--weights", "{missing_pt}", "--data", "{data}"],
     "no_such.pt"),
    ("eval-weights-garbage", ["eval", "--weights", "{garbage_pt}", "--data", "{data}"],
     "garbage.pt"),
    ("eval-weights-plain-dict", ["eval", "--weights", "{plain_dict_pt}", "--data", "{data}"],
     "model_config"),
    ("eval-data-missing", ["eval", "--weights", "{ckpt}", "--data", "{missing}"],
     "no_such_file.yaml"),
    ("eval-split-unknown", ["eval", "--weights", "{ckpt}", "--data", "{data}", "--split",
                            "test"], "test"),
    ("eval-img-size-0", ["eval", "--weights", "{ckpt}", "--data", "{data}", "--img-size",
                         "0"], "--img-size must be a positive multiple of 32, got 0"),
    ("predict-conf-high", ["predict", "--weights", "{ckpt}", "--conf", "1.5",
                           "{missing_img}"], "--conf"),
    ("predict-conf-nan", ["predict", "--weights", "{ckpt}", "--conf", "nan",
                          "{missing_img}"], "--conf"),
    ("predict-image-missing", ["predict", "--weights", "{ckpt}", "--out", "{root}/p1",
                               "{missing_img}"], "no_such.jpg"),
    ("predict-image-not-image", ["predict", "--weights", "{ckpt}", "--out", "{root}/p2",
                                 "{text_as_image_jpg}"], "text_as_image.jpg"),
    ("predict-weights-missing", ["predict", "--weights", "{missing_pt}", "--out", "{root}/p3",
                                 "{missing_img}"], "no_such.pt"),
    # --- damo export ----------------------------------------------------------------------
    ("export-num-classes-0", ["export", "--model", "damoyolo_ns", "--num-classes", "0",
                              "--out", "{root}/e1"], "--num-classes"),
    ("export-num-classes-negative", ["export", "--model", "damoyolo_ns", "--num-classes",
                                     "-3", "--out", "{root}/e2"], "-3"),
    ("export-nothing", ["export", "--out", "{root}/e3"], "nothing to export"),
    ("export-format-unknown", ["export", "--model", "damoyolo_ns", "--format", "onxx",
                               "--out", "{root}/e4"], "onxx"),
    ("export-onnx-int8", ["export", "--model", "damoyolo_ns", "--int8", "--data", "{data}",
                          "--out", "{root}/e5"], "int8"),
    ("export-half-and-int8", ["export", "--model", "damoyolo_ns", "-f", "openvino", "--half",
                              "--int8", "--data", "{data}", "--out", "{root}/e6"], "int8"),
    ("export-int8-no-data", ["export", "--model", "damoyolo_ns", "-f", "openvino", "--int8",
                             "--out", "{root}/e7"], "data"),
    ("export-img-size-30", ["export", "--model", "damoyolo_ns", "--img-size", "30",
                            "--out", "{root}/e8"], "30"),
    ("export-opset-5", ["export", "--model", "damoyolo_ns", "--opset", "5",
                        "--out", "{root}/e9"], "5"),
    ("export-half-onnx-cpu", ["export", "--model", "damoyolo_ns", "--half",
                              "--out", "{root}/e10"], "cuda"),
    ("export-weights-other-model", ["export", "--weights", "{ckpt}", "--model", "damoyolo_t",
                                    "--out", "{root}/e11"], "model_name"),
    ("export-weights-garbage", ["export", "--weights", "{garbage_pt}", "--out",
                                "{root}/e12"], "garbage.pt"),
    ("export-weights-missing", ["export", "--weights", "{missing_pt}", "--out",
                                "{root}/e13"], "no_such.pt"),
    ("export-model-unknown", ["export", "--model", "damoyolo_zz", "--out", "{root}/e14"],
     "damoyolo_zz"),
    # --- damo bench -----------------------------------------------------------------------
    ("bench-nothing", ["bench", "--out", "{root}/b1.json"], "nothing to export"),
    ("bench-format-unknown", ["bench", "--model", "damoyolo_ns", "-f", "onxx", "--runs", "1",
                              "--warmup", "0", "--out", "{root}/b2.json"], "onxx"),
    ("bench-batch-0", ["bench", "--model", "damoyolo_ns", "-f", "pytorch", "--batch", "0",
                       "--out", "{root}/b3.json"], "batch"),
    ("bench-runs-0", ["bench", "--model", "damoyolo_ns", "-f", "pytorch", "--runs", "0",
                      "--out", "{root}/b4.json"], "runs"),
    ("bench-num-classes-0", ["bench", "--model", "damoyolo_ns", "--num-classes", "0",
                             "--out", "{root}/b5.json"], "--num-classes"),
    ("bench-precision-unknown", ["bench", "--model", "damoyolo_ns", "-f", "onnx:int4",
                                 "--runs", "1", "--warmup", "0", "--out", "{root}/b6.json"],
     "int4"),
    # --- damo gate ------------------------------------------------------------------------
    ("gate-eval-missing", ["gate", "--map-floor", "0.3", "--eval", "{missing}",
                           "--latency-ms", "5"], "no_such_file.yaml"),
    ("gate-eval-not-json", ["gate", "--map-floor", "0.3", "--eval", "{not_json}",
                            "--latency-ms", "5"], "not_json"),
    # A metric the file lacks, or NaN, is the gate's FAIL (exit 1, by design: see
    # tests/security/test_gate_nan.py), named in its one line.
    ("gate-metric-unknown", ["gate", "--map-floor", "0.3", "--eval", "{eval_json}",
                             "--metric", "APX", "--latency-ms", "5"], "no APX", 1),
    ("gate-bench-missing", ["gate", "--map-floor", "0.3", "--value", "0.5", "--bench",
                            "{missing}", "--latency-budget-ms", "10"], "no_such_file.yaml"),
    ("gate-budget-negative", ["gate", "--map-floor", "0.3", "--value", "0.5",
                              "--latency-ms", "5", "--latency-budget-ms", "-1"],
     "--latency-budget-ms"),
    ("gate-value-nan", ["gate", "--map-floor", "0.3", "--value", "nan", "--latency-ms", "5"],
     "AP50 is nan", 1),
    ("gate-no-metric", ["gate", "--map-floor", "0.3", "--latency-ms", "5"], "--eval"),
    # --- damo data synth / unify / labelspace ---------------------------------------------
    ("synth-classes-0", ["data", "synth", "--out", "{root}/s1", "--classes", "0"], "0"),
    ("synth-images-0", ["data", "synth", "--out", "{root}/s2", "--images", "0"], "0"),
    ("synth-img-size-8", ["data", "synth", "--out", "{root}/s3", "--img-size", "8"], "8"),
    ("synth-val-fraction", ["data", "synth", "--out", "{root}/s4", "--val-fraction", "1.5"],
     "1.5"),
    ("synth-out-nonempty", ["data", "synth", "--out", "{nonempty}", "--images", "8",
                            "--img-size", "64"], "nonempty"),
    ("unify-source-no-uri", ["data", "unify", "--source", "nonsense", "--label-space",
                             "preset:coco-o365-oi", "--out", "{root}/u1"], "nonsense"),
    ("unify-source-format", ["data", "unify", "--source", "x:pascal={root}", "--label-space",
                             "preset:coco-o365-oi", "--out", "{root}/u2"], "pascal"),
    ("unify-source-missing", ["data", "unify", "--source", "coco={missing}", "--label-space",
                              "preset:coco-o365-oi", "--out", "{root}/u3"],
     "no_such_file.yaml"),
    ("unify-label-space-missing", ["data", "unify", "--source", "coco={missing}",
                                   "--label-space", "{root}/nolabels.csv",
                                   "--out", "{root}/u4"], "nolabels.csv"),
    ("unify-shard-images-0", ["data", "unify", "--source", "coco={missing}", "--label-space",
                              "preset:coco-o365-oi", "--out", "{root}/u5",
                              "--shard-images", "0"], "shard_images"),
    ("unify-preset-unknown", ["data", "unify", "--source", "coco={missing}", "--label-space",
                              "preset:nope", "--out", "{root}/u6"], "nope"),
    ("labelspace-preset-unknown", ["data", "labelspace", "--preset", "nope", "--out",
                                   "{root}/ls.csv"], "nope"),
    # --- damo nas -------------------------------------------------------------------------
    ("nas-block-unknown", ["nas", "--out", "{root}/n1.yaml", "--block", "xyz"], "xyz"),
    ("nas-budget-gflops-text", ["nas", "--out", "{root}/n2.yaml", "--budget-gflops",
                                "lots"], "--budget-gflops"),
    ("nas-population-0", ["nas", "--out", "{root}/n3.yaml", "--budget-gflops", "5",
                          "--population", "0"], "population"),
    ("nas-lut-missing", ["nas", "--out", "{root}/n4.yaml", "--budget-latency-ms",
                         "5", "--lut", "{missing}"], "no_such_file.yaml"),
    ("nas-lut-block-unknown", ["nas-lut", "--block", "xyz", "--out", "{root}/lut.json"],
     "xyz"),
    # --- damo info / checkpoint -----------------------------------------------------------
    ("info-model-unknown", ["info", "damoyolo_zz"], "damoyolo_zz"),
    ("info-model-yaml-missing", ["info", "{missing}"], "no_such_file.yaml"),
    ("info-img-size-0", ["info", "damoyolo_ns", "--img-size", "0"], "--img-size"),
    ("checkpoint-src-missing", ["checkpoint", "upgrade", "{missing_pt}", "--trusted",
                                "--out", "{root}/up.pt"], "no_such.pt"),
    ("checkpoint-src-garbage", ["checkpoint", "upgrade", "{garbage_pt}", "--trusted",
                                "--out", "{root}/up2.pt"], "garbage.pt"),
    # --- damo pipeline --------------------------------------------------------------------
    ("pipeline-params-missing", ["pipeline", "run", "--local", "--params", "{missing}",
                                 "--root", "{root}/pl1"], "no_such_file.yaml"),
    ("pipeline-params-broken", ["pipeline", "run", "--local", "--params", "{broken_yaml}",
                                "--root", "{root}/pl2"], "broken_yaml"),
    ("pipeline-override-no-equals", ["pipeline", "run", "--local", "--root", "{root}/pl5",
                                     "epochs"], "epochs"),
    # --- damo infer (fails before any network) -------------------------------------------
    ("infer-conf-high", ["infer", "--model", "damo", "--conf", "2", "{missing_img}"],
     "--conf"),
    # a port nobody answers on: the missing file must be named before any connection
    ("infer-missing-image", ["infer", "--model", "damo", "--url", "127.0.0.1:9",
                             "{missing_img}"], "no_such.jpg"),
    # --- datasets: what --data may name --------------------------------------------------
    ("train-data-s3-yaml", ["train", "--model", "damoyolo_ns", "--data", "s3://b/data.yaml",
                            "--out", "{root}/t-s3"], "not converted implicitly"),
    ("eval-data-empty-dir", ["evaluate", "--weights", "{ckpt}", "--data", "{root}"],
     "neither a manifest directory"),
]


def _output(result: Result) -> str:
    text = result.output
    try:
        text += result.stderr
    except ValueError:
        pass
    return text


@pytest.mark.parametrize(("argv", "fragment", "code"), [(*r[1:3], r[3] if len(r) > 3 else 2)
                                                       for r in ROWS],
                         ids=[r[0] for r in ROWS])
def test_bad_input_is_one_line_exit_2(fx: dict[str, str], argv: list[str],
                                      fragment: str, code: int) -> None:
    args = [a.format(**fx) for a in argv]
    result = CliRunner().invoke(app, args)
    out = _output(result)
    crash = "".join(traceback.format_exception(result.exception)) if (
        result.exception is not None and not isinstance(result.exception, SystemExit)) else ""
    assert not crash, f"{args}: uncaught exception\n{crash}"
    assert "Traceback" not in out, out
    assert result.exit_code == code, f"{args}: exit {result.exit_code}\n{out}"
    assert fragment.format(**fx) in out, f"{args}: {fragment!r} not in\n{out}"


def test_table_is_large_and_ids_unique() -> None:
    assert len(ROWS) >= 60
    assert sum(len(r) == 3 or r[3] == 2 for r in ROWS) >= 60
    assert len({r[0] for r in ROWS}) == len(ROWS)


def test_box_outside_image_is_named_or_counted(fx: dict[str, str]) -> None:
    """The trainer's reader treats a box wholly outside its image like any other bad box:
    an error naming file, image, annotation and field, or (skip mode) a counted drop."""
    from damo_core.data.coco import CocoDetection, load_dataset_yaml
    from damo_core.data.errors import DatasetError

    spec = load_dataset_yaml(fx["data_outside"])
    with pytest.raises(DatasetError, match=rf"annotation id {fx['outside_ann_id']}: field "
                                           r"'bbox' .* lies wholly outside the 64x64 image"):
        CocoDetection.from_spec(spec, "train")
    kept = CocoDetection.from_spec(spec, "train", skip_invalid=True)
    assert kept.skipped == {"bad_bbox": 1}
