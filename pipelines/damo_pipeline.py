"""The DAMO-YOLO pipeline DAG (../shared/ARCHITECTURE.md, "The DAG"). This file only wires tasks.
    unify ─► nas ×4 (per size, CPU)
          ─► train (teacher L) ─► distill M ◄─ L ─► distill S ◄─ M ─► distill T ◄─ S
          ─► train T alone (the control: what distillation bought, in the report)
    each model ─► evaluate ─┐
               └► export (fused → OpenVINO IR) ─► benchmark ─► gate (AP50 floor, latency
                                          budget) ─► deploy (Triton), only if the gate passes

Each task is the component of the same name in components/, a shell over
damo_core.steps.<name>.run (docs/steps.md). Cluster settings (GPUs, node selectors,
tolerations, MinIO credentials from a Secret, the Pushgateway from a ConfigMap, the training
workspace PVC, retries, caching) are attached here with kfp-kubernetes; the local runner
ignores them. ``train_nodes``/``gpus_per_node`` place the teacher and distillation trainings
(damo_core.cluster.placement): in the step's process, torchrun in its pod, or a job of N nodes
sharing the ``workspace_pvc`` volume, a PyTorchJob (Training Operator v1) or, with
``train_job_kind=trainjob``, a Kubeflow Trainer v2 TrainJob. ``mlflow_uri`` (empty: off) makes
every training an MLflow run in ``mlflow_experiment``, tagged with the KFP run's name and the
model's; each model's export and gate add the exported files and the verdict to that run.
"""


from kfp import compiler, dsl, kubernetes
from kfp.dsl.pipeline_channel import PipelineChannel

from components.benchmark.component import benchmark
from components.deploy.component import deploy
from components.distill.component import distill
from components.evaluate.component import evaluate
from components.export.component import export
from components.gate.component import gate
from components.nas.component import nas
from components.report.component import report
from components.train.component import train
from components.unify.component import unify
from damo_core.cluster.placement import WORKSPACE
from damo_core.serve.admin import (
    ADMIN_KEY_ENV,
    ADMIN_KEY_SECRET,
    ADMIN_KEY_SECRET_KEY,
    DEPLOYER_POD_LABEL,
)

PIPELINE_NAME = "damo-yolo"
SIZES = ("L", "M", "S", "T")  # distillation order: each size teaches the next
CONTROL = SIZES[-1]  # the student also trained alone, for the report's distilled-vs-alone row
MINIO_SECRET = "damo-minio"   # keys accesskey / secretkey, see manifests/
PIPELINE_ENV = "damo-pipeline-env"  # ConfigMap, key pushgateway (manifests/base)
RUN_ID = dsl.PIPELINE_JOB_NAME_PLACEHOLDER  # the run label of every pushed metric


CPU_STEP_TIMEOUT_S = 4 * 3600    # eval, export, benchmark, NAS: hours at most
GPU_STEP_TIMEOUT_S = 72 * 3600   # a 300-epoch COCO training on one GPU node


def _cpu_step(task: dsl.PipelineTask, memory: str = "8G",
              timeout_s: int = CPU_STEP_TIMEOUT_S) -> dsl.PipelineTask:
    task.set_cpu_request("1").set_cpu_limit("4").set_memory_request("2G")
    task.set_memory_limit(memory).set_retry(num_retries=1).set_caching_options(True)
    kubernetes.set_timeout(task, timeout_s)  # the pod's activeDeadlineSeconds
    kubernetes.use_secret_as_env(task, secret_name=MINIO_SECRET, secret_key_to_env={
        "accesskey": "AWS_ACCESS_KEY_ID", "secretkey": "AWS_SECRET_ACCESS_KEY"})
    # optional: without the ConfigMap (a cluster with no monitoring) pushing is a logged no-op
    kubernetes.use_config_map_as_env(task, PIPELINE_ENV, {"pushgateway": "DAMO_PUSHGATEWAY"},
                                     optional=True)
    return task


def _gpu_step(task: dsl.PipelineTask, gpus: int | PipelineChannel,
              workspace_pvc: str | PipelineChannel) -> dsl.PipelineTask:
    """A training step: ``gpus`` GPUs (the ranks of torchrun in this pod) and the workspace
    PVC at the path where a multi-node job's pods mount it too (train_nodes > 1)."""
    _cpu_step(task, memory="32G", timeout_s=GPU_STEP_TIMEOUT_S)
    task.set_accelerator_type("nvidia.com/gpu").set_accelerator_limit(gpus)
    kubernetes.mount_pvc(task, pvc_name=workspace_pvc, mount_path=WORKSPACE)
    kubernetes.add_node_selector(task, label_key="nvidia.com/gpu.present", label_value="true")
    kubernetes.add_toleration(task, key="nvidia.com/gpu", operator="Exists",
                              effect="NoSchedule")
    return task


def _deployer(task: dsl.PipelineTask) -> dsl.PipelineTask:
    """The one step that may change what Triton serves: the label Triton's NetworkPolicy admits
    and the key of its restricted repository API (manifests/base/triton*.yaml)."""
    kubernetes.add_pod_label(task, *DEPLOYER_POD_LABEL)
    kubernetes.use_secret_as_env(task, secret_name=ADMIN_KEY_SECRET,
                                 secret_key_to_env={ADMIN_KEY_SECRET_KEY: ADMIN_KEY_ENV})
    return task


@dsl.pipeline(name=PIPELINE_NAME, description="DAMO-YOLO: data, NAS, teacher, L→M→S→T "
              "distillation, COCO evaluation, gate and deployment.")
def damo_pipeline(
    sources: list = ["synthetic"],  # noqa: B006
    label_space: str = "",
    sampling: dict = {},  # noqa: B006
    synth_classes: int = 4,
    synth_images: int = 160,
    synth_image_size: int = 256,
    synth_object_scale: str = "coco",
    seed: int = 0,
    model_l: str = "damoyolo_l",
    model_m: str = "damoyolo_m",
    model_s: str = "damoyolo_s",
    model_t: str = "damoyolo_t",
    preset: str = "",
    teacher_settings: dict = {},  # noqa: B006 - KFP parameters are declared with literals
    student_settings: dict = {},  # noqa: B006
    student_size_settings: dict = {},  # noqa: B006 - e.g. {"M": {"epochs": 10}}
    distill_settings: dict = {},  # noqa: B006
    budget_params_m: float = 0.0,
    budget_gflops: float = 0.0,
    nas_generations: int = 6,
    export_format: str = "openvino",
    export_dynamic_batch: bool = False,
    export_precision: str = "fp32",
    bench_runs: int = 30,
    map_floor: float = 0.3,
    latency_budget_ms: float = 1000.0,
    triton_repository: str = "s3://damo-models/triton",
    triton_url: str = "triton.damo.svc.cluster.local:8001",
    triton_variant: str = "native",
    train_nodes: int = 1,
    gpus_per_node: int = 1,
    workspace_pvc: str = "damo-workspace",
    train_job_kind: str = "pytorchjob",
    mlflow_uri: str = "",
    mlflow_experiment: str = "damo-yolo",
) -> None:
    data = _cpu_step(unify(sources=sources, label_space=label_space, sampling=sampling,
                           num_classes=synth_classes, num_images=synth_images,
                           image_size=synth_image_size, seed=seed,
                           object_scale=synth_object_scale)).set_display_name("unify")
    names = {"L": model_l, "M": model_m, "S": model_s, "T": model_t}
    configs = {
        size: _cpu_step(nas(model=names[size], budget_params_m=budget_params_m,
                            budget_gflops=budget_gflops, generations=nas_generations,
                            seed=seed)).set_display_name(f"nas {size}")
        for size in SIZES
    }
    dataset = data.outputs["dataset"]
    # MLflow (off when mlflow_uri is empty): the steps find each model's run by RUN_ID and name
    mlflow = {"run_id": RUN_ID, "mlflow_uri": mlflow_uri, "mlflow_experiment": mlflow_experiment}
    placement = {**mlflow, "nodes": train_nodes, "gpus_per_node": gpus_per_node,
                 "workspace_pvc": workspace_pvc, "job_kind": train_job_kind}
    trained = {"L": _gpu_step(train(
        data=dataset, model_config=configs["L"].outputs["model_config"], preset=preset,
        settings=teacher_settings, **placement), gpus_per_node, workspace_pvc,
    ).set_display_name("train teacher L")}
    for teacher_size, size in zip(SIZES, SIZES[1:], strict=False):
        trained[size] = _gpu_step(distill(
            data=dataset, model_config=configs[size].outputs["model_config"],
            teacher=trained[teacher_size].outputs["model"], preset=preset,
            settings=student_settings, size_settings=student_size_settings, size=size,
            distill_settings=distill_settings, **placement,
        ), gpus_per_node, workspace_pvc).set_display_name(f"distill {size} ◄ {teacher_size}")
    # the control: the last student trained alone for the same settings (the cheapest size)
    # and the distillation's gradient clip, so the report shows what the teacher bought;
    # "-control" keeps its metrics apart
    control = _gpu_step(train(
        data=dataset, model_config=configs[CONTROL].outputs["model_config"], preset=preset,
        settings=student_settings, size_settings=student_size_settings, size=CONTROL,
        control=True, distill_settings=distill_settings, **placement), gpus_per_node,
        workspace_pvc,
    ).set_display_name(f"train {CONTROL} alone (control)")
    scores, timings = {}, {}
    for size in SIZES:
        scores[size] = scored = _cpu_step(evaluate(data=dataset, run_id=RUN_ID,
                                                   model=trained[size].outputs["model"]))
        scored.set_display_name(f"evaluate {size}")
        exported = _cpu_step(export(model=trained[size].outputs["model"], data=dataset,
                                    fmt=export_format, precision=export_precision,
                                    dynamic_batch=export_dynamic_batch, **mlflow))
        exported.set_display_name(f"export {size}")
        timings[size] = timed = _cpu_step(benchmark(exported=exported.outputs["exported"],
                                                    runs=bench_runs, run_id=RUN_ID))
        timed.set_display_name(f"benchmark {size}")
        gated = _cpu_step(gate(model_name=names[size], ap50=scored.outputs["Output"],
                               latency_ms=timed.outputs["Output"], map_floor=map_floor,
                               latency_budget_ms=latency_budget_ms, **mlflow))
        gated.set_display_name(f"gate {size}")
        with dsl.If(gated.outputs["Output"] == True, name=f"gate {size} passed"):  # noqa: E712
            _deployer(_cpu_step(deploy(
                exported=exported.outputs["exported"], repository=triton_repository,
                url=triton_url, variant=triton_variant))).set_display_name(f"deploy {size}")
    _cpu_step(report(**{f"eval_{k.lower()}": v.outputs["metrics"] for k, v in scores.items()},
                     **{f"bench_{k.lower()}": v.outputs["metrics"] for k, v in timings.items()},
                     control=control.outputs["model"])).set_display_name("report: latency vs mAP")


def compile_pipeline(out: str) -> str:
    compiler.Compiler().compile(damo_pipeline, out)
    return out


if __name__ == "__main__":
    print(compile_pipeline("pipeline.yaml"))
