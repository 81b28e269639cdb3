"""A deploy killed with SIGKILL at any step leaves a repository that serves the previous
version on the next server start (issue 19, item 1).

Each case runs ``damo serve deploy`` as a subprocess against a real server that serves
version 1, with ``DAMO_DEPLOY_FAULT=<point>``: at that step the deploy touches a marker file
and waits; the test then SIGKILLs it (deterministic: the kill always lands at the same
step, and every wait is bounded). A fresh ``LocalTriton`` with every model loaded must then
start and answer a real inference request with version 1.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from damo_core.serve import admin, staging
from damo_core.serve.client import TritonDetector, grpc_module
from damo_core.serve.deploy import deploy, probe_image
from damo_core.serve.local_server import LocalTriton
from damo_core.serve.model_config import ModelNames
from damo_core.serve.repository import detector_versions
from tests.serve.conftest import MODEL, Exported, make_exported

NAMES = ModelNames(MODEL)
MARKER_TIMEOUT_S = 120.0


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Exported:
    return make_exported(tmp_path_factory.mktemp("fault_model"))


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory, model: Exported) -> Iterator[LocalTriton]:
    """The server the killed deploys talk to; version 1 deployed and serving."""
    repo = tmp_path_factory.mktemp("fault_repo")
    with LocalTriton(repo, startup_timeout=120) as server:
        result = deploy(model.exported_dir, repo, server.grpc_url, metadata=model.metadata)
        assert result["status"] == "serving" and result["version"] == 1
        yield server


def _served_versions(url: str) -> list[str]:
    client = grpc_module().InferenceServerClient(url)
    try:
        return list(client.get_model_metadata(NAMES.detector, as_json=True)["versions"])
    finally:
        client.close()


def assert_serves_version_1(repo: Path) -> None:
    with LocalTriton(repo, load=["*"], startup_timeout=120) as fresh:
        assert detector_versions(repo, MODEL) == [1]
        assert not list(repo.glob(f"{staging.JOURNAL_PREFIX}*"))
        assert not list((repo / NAMES.detector).glob(f"{staging.STAGING_PREFIX}*"))
        assert _served_versions(fresh.grpc_url) == ["1"]
        with TritonDetector(fresh.grpc_url, NAMES.ensemble, timeout=60) as detector:
            detections = detector.detect_encoded([probe_image()])
        assert len(detections) == 1


def _kill_deploy_at(point: str, model: Exported, server: LocalTriton, marker: Path) -> str:
    # TMPDIR: the killed process cannot remove its temporary staging directory (an S3
    # repository's mirror), so it is left in the test's own directory, not in /tmp
    env = {**os.environ, staging.FAULT_ENV: point, staging.FAULT_MARKER_ENV: str(marker),
           admin.ADMIN_KEY_ENV: server.admin_key, "TMPDIR": str(marker.parent)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "damo_core.cli", "serve", "deploy", str(model.exported_dir),
         "--repo", str(server.repo), "--url", server.grpc_url],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + MARKER_TIMEOUT_S
        while not marker.exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                out = proc.communicate(timeout=10)[0] if proc.poll() is not None else b""
                pytest.fail(f"deploy never reached {point!r} (rc {proc.returncode}): "
                            f"{out.decode(errors='replace')[-2000:]}")
            time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    return marker.read_text()


@pytest.mark.parametrize("point", ["staged", "renamed", "written"])
def test_deploy_killed_at_point_previous_version_serves(point: str, model: Exported,
                                                        target: LocalTriton,
                                                        tmp_path: Path) -> None:
    repo = target.repo
    _kill_deploy_at(point, model, target, tmp_path / "marker")
    # The kill left its debris: a staging directory, or version 2 with a journal.
    if point == "staged":
        assert list((repo / NAMES.detector).glob(f"{staging.STAGING_PREFIX}2-*"))
    else:
        assert (repo / NAMES.detector / "2").is_dir()
        assert staging.journal_path(repo, NAMES.ensemble).is_file()
    assert_serves_version_1(repo)


def test_triton_ignores_hidden_directories_and_root_files(model: Exported,
                                                          target: LocalTriton) -> None:
    """Checked on the real server: a dot-directory beside the versions (here a broken model
    that would fail to load) and a file in the repository root are not loaded."""
    repo = target.repo
    hidden = repo / NAMES.detector / ".hidden-3"
    hidden.mkdir()
    (hidden / "model.py").write_text("this is not python\n")
    junk = repo / f"{staging.JOURNAL_PREFIX}unrelated.json"
    junk.write_text("not json")  # recovery cannot read it, reports it and leaves it
    try:
        with LocalTriton(repo, load=["*"], startup_timeout=120) as fresh:
            assert _served_versions(fresh.grpc_url) == ["1"]
    finally:
        junk.unlink()
        (hidden / "model.py").unlink()
        hidden.rmdir()


def test_next_deploy_after_kills_adds_version_2(model: Exported, target: LocalTriton) -> None:
    result = deploy(model.exported_dir, target.repo, target.grpc_url, metadata=model.metadata)
    assert result["status"] == "serving" and result["version"] == 2
    assert result["previous_version"] == 1
    assert not staging.journal_path(target.repo, NAMES.ensemble).exists()
