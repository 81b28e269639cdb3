"""Training beyond one machine: the Kubeflow jobs the pipeline's training steps create, a
Training Operator v1 ``PyTorchJob`` (``pytorchjob``) or a Trainer v2 ``TrainJob``
(``trainjob``), their life cycle through the Kubernetes API (``jobs``), the step-side staging
of inputs and outputs on a shared volume (``launch``) and the choice between one process,
torchrun in the step's pod and a job of N nodes (``placement``)."""

from damo_core.cluster.jobs import JobOutcome, TrainingJobError, run_pytorchjob
from damo_core.cluster.launch import train_command, train_with_pytorchjob
from damo_core.cluster.placement import Mode, PlacementError, TrainPlacement, train_placed
from damo_core.cluster.pytorchjob import (
    PIPELINE_SERVICE_ACCOUNT,
    SecretEnv,
    TrainJobSpec,
    build_pytorchjob,
    train_job_spec,
)
from damo_core.cluster.trainjob import build_trainjob, run_trainjob

__all__ = ["PIPELINE_SERVICE_ACCOUNT", "JobOutcome", "Mode", "PlacementError", "SecretEnv",
           "TrainJobSpec", "TrainPlacement", "TrainingJobError", "build_pytorchjob",
           "build_trainjob", "run_pytorchjob", "run_trainjob", "train_command",
           "train_job_spec", "train_placed", "train_with_pytorchjob"]
