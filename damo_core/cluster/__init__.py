"""Training beyond one machine: the Kubeflow PyTorchJob the pipeline's training steps create
(``pytorchjob``), its life cycle through the Kubernetes API (``jobs``) and the step-side staging
of inputs and outputs on a shared volume (``launch``)."""

from damo_core.cluster.jobs import JobOutcome, TrainingJobError, run_pytorchjob
from damo_core.cluster.launch import train_command, train_with_pytorchjob
from damo_core.cluster.pytorchjob import SecretEnv, TrainJobSpec, build_pytorchjob, train_job_spec

__all__ = ["JobOutcome", "SecretEnv", "TrainJobSpec", "TrainingJobError", "build_pytorchjob",
           "run_pytorchjob", "train_command", "train_job_spec", "train_with_pytorchjob"]
