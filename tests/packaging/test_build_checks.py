"""scripts/build_checks.py without docker (issue 16): which modules each image must import,
the one-line messages for what it lacks, and the COPY of a missing path found in BuildKit's
log (samples of docker 20.10's BuildKit output). The checks against real images are in
tests/containers/test_build_failures.py."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def checks() -> ModuleType:
    spec = importlib.util.spec_from_file_location("build_checks", ROOT / "scripts" /
                                                  "build_checks.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_components_of_an_image_and_their_body_imports(checks: ModuleType) -> None:
    assert checks.components_using("DAMO_GPU_IMAGE") == ["components/distill",
                                                         "components/train"]
    wanted = checks.collect([], "DAMO_IMAGE")
    assert wanted["damo_core.steps.deploy"].names == {"run"}
    assert wanted["damo_core.steps.deploy"].origins == ["components/deploy"]
    assert "kfp" not in wanted  # module-level imports are the compiler's, not the image's


def test_a_python_file_needs_its_module_and_all_it_imports(checks: ModuleType) -> None:
    wanted = checks.collect(["damo_core/serve/python_models.py"])
    assert "damo_core.serve.python_models" in wanted
    assert wanted["damo_core.eval.postprocess"].names == {"postprocess"}
    assert "damo_core.export.onnx" in wanted  # imported inside a function: still needed


def test_messages_name_image_module_and_importer(checks: ModuleType) -> None:
    wanted = checks.collect(["components/deploy", "components/export"])
    failures = [["damo_core.steps.deploy", None, "damo_core", "No module named 'damo_core'"],
                ["damo_core.steps.export", None, "onnx", "No module named 'onnx'"],
                ["damo_core.steps.export", "run", None, "cannot import name 'run'"]]
    assert checks.describe("img:1", wanted, failures) == [
        "img:1 lacks module damo_core (imported by components/deploy)",
        "img:1 lacks module onnx, which damo_core.steps.export needs (imported by "
        "components/export)",
        "img:1 lacks damo_core.steps.export.run (imported by components/export): cannot "
        "import name 'run'"]


def test_probe_command_runs_offline_in_the_image(checks: ModuleType) -> None:
    wanted = checks.collect(["components/deploy"])
    command = checks.docker_command("docker", "img:1", wanted)
    assert command[:command.index("img:1")] == [
        "docker", "run", "--rm", "--network", "none", "--pull", "never", "--entrypoint",
        "python3"]
    assert json.loads(command[-1]) == [["damo_core.steps.deploy", ["run"]]]


BUILD_CONTEXT_LOG = """\
#6 [2/3] COPY nothere/sub.txt /x
#6 sha256:71a644760399256ce323e8f4ff063b7fcee5ae34729a60297eae747e1f486122
#6 ERROR: "/nothere/sub.txt" not found: not found
#7 [3/3] COPY also_missing /y
#7 ERROR: "/also_missing" not found: not found
------
 > [3/3] COPY also_missing /y:
------
failed to compute cache key: "/also_missing" not found: not found
"""
FROM_STAGE_LOG = """\
#5 [stage-1 2/2] COPY --from=a /nope/x /x
#5 ERROR: lstat /var/lib/docker/overlay2/a2df/merged/nope/x: no such file or directory
"""
RUN_FAILED_LOG = """\
#8 [4/5] RUN false
#8 ERROR: process "/bin/sh -c false" did not complete successfully: exit code: 1
"""


@pytest.mark.parametrize(("log", "expected"), [
    (BUILD_CONTEXT_LOG, [("nothere/sub.txt", "[2/3] COPY nothere/sub.txt /x"),
                         ("also_missing", "[3/3] COPY also_missing /y")]),
    (FROM_STAGE_LOG, [("nope/x", "[stage-1 2/2] COPY --from=a /nope/x /x")]),
    ('failed to compute cache key: "/gone" not found: not found\n', [("gone", "?")]),
    (RUN_FAILED_LOG, []),
])
def test_copy_of_a_missing_path_in_the_build_log(checks: ModuleType, log: str,
                                                 expected: list[tuple[str, str]]) -> None:
    assert checks.copy_failures(log) == expected


def test_copy_errors_command_prints_one_line_per_path(checks: ModuleType, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    log = tmp_path / "build.log"
    log.write_text(FROM_STAGE_LOG)
    assert checks.main(["copy-errors", str(log), "--image", "img:1", "--dockerfile",
                        "docker/Dockerfile.x"]) == 0
    assert capsys.readouterr().err == ("img:1: docker/Dockerfile.x: COPY of a missing path: "
                                       "nope/x (step [stage-1 2/2] COPY --from=a /nope/x /x)\n")
    log.write_text(RUN_FAILED_LOG)
    assert checks.main(["copy-errors", str(log), "--image", "img:1", "--dockerfile", "x"]) == 1
