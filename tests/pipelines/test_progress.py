"""The local run's progress lines: one per finished step, counted against the DAG's steps."""

from __future__ import annotations

from pipelines.local_run import _spec_dict
from pipelines.progress import StepProgress, count_steps


def test_steps_of_the_dag_are_counted_without_condition_groups():
    # unify, 4 NAS, teacher, 3 distillations, the control, per model
    # evaluate/export/benchmark/gate/deploy, and the report
    assert count_steps(_spec_dict()) == 1 + 4 + 1 + 3 + 1 + 4 * 5 + 1


def test_each_finished_step_is_reported_once(tmp_path):
    (tmp_path / "old-run" / "unify").mkdir(parents=True)
    (tmp_path / "old-run" / "unify" / "executor_output.json").write_text("{}")
    lines: list[str] = []
    with StepProgress(tmp_path, 3, interval=0.05, echo=lines.append) as progress:
        run = tmp_path / "damo-yolo-now"
        for step in ("unify", "gate-2/deploy"):
            (run / step).mkdir(parents=True)
            (run / step / "executor_output.json").write_text("{}")
            progress.poll()
    assert lines[0] == "[0/3] pipeline started"
    assert [line.split(" (")[0] for line in lines[1:]] == [
        "[1/3] unify finished", "[2/3] deploy finished"]
