"""Life cycle of a PyTorchJob (create → wait → stream the master's log → delete) against a
stand-in for the two Kubernetes API objects: no cluster can be had here, so this checks the
control flow and the exact API calls, including deletion on failure and on timeout."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from damo_core.cluster import TrainingJobError, build_pytorchjob, run_pytorchjob, train_job_spec
from damo_core.cluster.pytorchjob import JOB_NAME_LABEL, REPLICA_TYPE_LABEL


class Stream:
    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks = chunks

    def stream(self):
        yield from self.chunks


class FakeApis:
    """Records calls; the job moves through ``states`` one poll at a time."""

    def __init__(self, states: list[str], message: str = "") -> None:
        self.states, self.message, self.calls = list(states), message, []
        self.log = [b"epoch 1 loss 3.2\nepoch", b" 2 loss 2.9\n", b"done"]

    def create_namespaced_custom_object(self, **kw: Any) -> None:
        self.calls.append(("create", kw["namespace"], kw["plural"], kw["body"]["kind"]))

    def get_namespaced_custom_object(self, **kw: Any) -> dict[str, Any]:
        state = self.states.pop(0) if len(self.states) > 1 else self.states[0]
        self.calls.append(("get", kw["name"]))
        cond = {"type": state, "status": "True", "message": self.message}
        return {"status": {"conditions": [{"type": "Created", "status": "True"}, cond]}}

    def delete_namespaced_custom_object(self, **kw: Any) -> None:
        self.calls.append(("delete", kw["name"]))

    def list_namespaced_pod(self, namespace: str, label_selector: str) -> Any:
        self.calls.append(("pods", label_selector))
        return SimpleNamespace(items=[SimpleNamespace(metadata=SimpleNamespace(name="m-0"))])

    def read_namespaced_pod_log(self, name: str, namespace: str, **kw: Any) -> Stream:
        assert kw["follow"] is True and kw["container"] == "pytorch"
        return Stream(self.log)


def job() -> dict[str, Any]:
    return build_pytorchjob(train_job_spec("teacher", "img:1", ["train", "--model", "x"],
                                           nodes=2))


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_success_streams_master_log_and_deletes():
    apis, lines, clock = FakeApis(["Created", "Running", "Running", "Succeeded"]), [], Clock()
    outcome = run_pytorchjob(job(), apis=(apis, apis), sink=lines.append, poll_s=5,
                             clock=clock, sleep=clock.sleep)
    assert outcome.state == "Succeeded" and outcome.seconds == 15  # 3 polls of 5 s
    assert lines == ["epoch 1 loss 3.2", "epoch 2 loss 2.9", "done"]
    assert apis.calls[0] == ("create", "damo", "pytorchjobs", "PyTorchJob")
    assert apis.calls[-1] == ("delete", "teacher")
    pods = [c for c in apis.calls if c[0] == "pods"]
    assert pods == [("pods", f"{JOB_NAME_LABEL}=teacher,{REPLICA_TYPE_LABEL}=master")]


def test_failure_raises_with_the_operator_message_and_still_deletes():
    apis, clock = FakeApis(["Running", "Failed"], message="master exited 1"), Clock()
    with pytest.raises(TrainingJobError, match="master exited 1"):
        run_pytorchjob(job(), apis=(apis, apis), sink=lambda _: None, clock=clock,
                       sleep=clock.sleep)
    assert apis.calls[-1] == ("delete", "teacher")


def test_timeout_raises_and_deletes():
    apis, clock = FakeApis(["Created"]), Clock()
    with pytest.raises(TrainingJobError, match="still Created after 30 s"):
        run_pytorchjob(job(), apis=(apis, apis), timeout_s=30, poll_s=10, clock=clock,
                       sleep=clock.sleep)
    assert apis.calls[-1] == ("delete", "teacher")
    assert not [c for c in apis.calls if c[0] == "pods"]  # never ran: no logs asked for
