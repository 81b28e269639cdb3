"""One module per DAG step, each with one entry, ``run``: inputs and parameters in, the
step's metadata out.

The ``damo`` command and the KFP component of a step are shells of a few lines over its
``run`` and carry the step's name, so the local run, the cluster run, a notebook and the
command line execute the same code. :data:`STEPS` is the table the docs print
(docs/steps.md) and the tests check against the code.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Step:
    """A DAG step: its name is the module under damo_core.steps, the ``damo`` command and the
    component (``components/<name>``); ``aliases`` are the other commands that reach it."""

    name: str
    summary: str
    aliases: tuple[str, ...] = ()

    @property
    def entry(self) -> str:
        return f"damo_core.steps.{self.name}.run"

    @property
    def command(self) -> str:
        return f"damo {self.name}"

    @property
    def component(self) -> str:
        return f"components/{self.name}"


STEPS: tuple[Step, ...] = (
    Step("unify", "the training data as one manifest directory: synthetic, a dataset.yaml or "
         "data.yaml, or unified sources"),
    Step("nas", "MAE-NAS backbone search under params/GFLOPs budgets, as a model YAML"),
    Step("train", "train a model (the teacher) from scratch or from weights"),
    Step("distill", "distil a teacher into a student (CWD), then fine-tune"),
    Step("evaluate", "COCO AP, AP50, AP75, APs/m/l on a dataset split", ("eval", "val")),
    Step("export", "fuse and export as ONNX, OpenVINO IR or a TensorRT engine"),
    Step("benchmark", "latency of an export, or of a checkpoint across runtimes", ("bench",)),
    Step("gate", "deploy only if the metric clears the floor and latency the budget"),
    Step("deploy", "add an export to a Triton repository as a new version and load it"),
    Step("report", "latency against mAP of every model, as a chart and a page; teacher vs "
         "student per link and, with `--control`, a student trained alone against its "
         "distilled twin"),
)
