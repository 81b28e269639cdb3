"""A deploy to an S3 model repository killed with SIGKILL at any step is undone by the next
recovery (issue 19, item 1, for repositories that Triton reads straight from a bucket).

The bucket is a real S3 protocol server (moto, :func:`damo_core.storage.local_s3.local_s3`);
the server is the bundled ``tritonserver`` reading that bucket (:class:`BucketTriton`: the
same :class:`LocalTriton`, whose start recovers ``self.repo``, here the ``s3://`` URI). Each
kill case runs ``damo serve deploy`` as a subprocess with ``DAMO_DEPLOY_FAULT=<point>`` (the
helper of ``test_deploy_faults``): after the journal is written, after the version's objects
are uploaded, after the configs are, and after the version was proven on the server (before
the journal is removed). Version 1 is deployed with ``max_batch=4`` and the killed deploys use
the default 8, so the configs they upload differ and their restoration is visible. After
recovery every object of the bucket must read back as it was with version 1 alone.

The module's tests run in file order on one bucket and one server: the kill cases (each
recovered by :func:`~damo_core.serve.staging.recover`, what a deploy and a server start run
first); then a deploy that recovers a killed one itself and fails to load, on the server that
still holds the version of the deploy killed after proving it; then a fresh server start that
recovers a killed deploy and serves version 1, and a deploy to it that succeeds. Last, without
a server, how a journal's owner is judged alive: a lease for other hosts, the PID on this one.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from damo_core.serve import staging
from damo_core.serve.deploy import deploy
from damo_core.serve.errors import DeployError
from damo_core.serve.local_server import LocalTriton
from damo_core.serve.model_config import ModelNames, parse_pbtxt
from damo_core.steps import deploy as deploy_step
from damo_core.storage import open_store
from damo_core.storage.local_s3 import LocalS3, local_s3
from damo_core.storage.s3 import S3Store
from tests.security.test_deploy_faults import _kill_deploy_at
from tests.serve.conftest import MODEL, Exported, make_exported

NAMES = ModelNames(MODEL)
JOURNAL = staging.journal_key(NAMES.ensemble)
V1_BATCH = 4  # the killed deploys write the default max_batch (8): their configs differ


class BucketTriton(LocalTriton):
    """The bundled ``tritonserver`` reading its model repository from the bucket, as the
    cluster's does. ``repo`` is the ``s3://bucket/prefix`` URI, so :meth:`LocalTriton.start`
    recovers the bucket and ``_kill_deploy_at`` deploys to it; only the flag Triton gets
    names the endpoint too (Triton's form ``s3://http://host:port/bucket/prefix``)."""

    def __init__(self, uri: str, endpoint: str, scratch: Path, **kwargs: Any) -> None:
        scratch.mkdir(parents=True, exist_ok=True)  # for LocalTriton's directory check
        super().__init__(scratch, **kwargs)
        self.repo: Any = uri
        self.triton_repo = f"s3://{endpoint}/{uri.removeprefix('s3://')}"

    def _command(self) -> tuple[list[str], dict[str, str]]:
        args, env = super()._command()
        flag = f"--model-repository={self.repo}"
        assert flag in args
        return [f"--model-repository={self.triton_repo}" if a == flag else a for a in args], env


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalS3]:
    """moto on 127.0.0.1; the storage env (endpoint, credentials) points at it meanwhile, so
    the deploy subprocesses and the Triton servers inherit it."""
    with local_s3(tmp_path_factory.mktemp("moto") / "moto.log") as endpoint:
        yield endpoint


@pytest.fixture(scope="module")
def uri(s3: LocalS3) -> str:
    bucket = f"faults-{uuid.uuid4().hex[:10]}"
    S3Store(bucket).ensure_bucket()
    return f"s3://{bucket}/triton"


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Exported:
    return make_exported(tmp_path_factory.mktemp("fault_model"))


def bucket_state(uri: str) -> dict[str, bytes]:
    store = open_store(uri)
    return {key: store.read_bytes(key) for key in store.list()}


@pytest.fixture(scope="module")
def target(s3: LocalS3, uri: str, model: Exported,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[BucketTriton]:
    """The server the killed deploys talk to, serving version 1 (written first: Triton
    refuses to start on a prefix that holds no object yet)."""
    result = deploy_step.run(model.exported_dir, uri, max_batch=V1_BATCH,
                             metadata=model.metadata)
    assert result["status"] == "written" and result["version"] == 1
    with BucketTriton(uri, s3.url, tmp_path_factory.mktemp("scratch"), load=["*"],
                      startup_timeout=120) as server:
        assert _served(server) == ["1"]
        yield server


@pytest.fixture(scope="module")
def baseline(target: BucketTriton, uri: str) -> dict[str, bytes]:
    """Every object of the repository with version 1 alone (no journal among them)."""
    state = bucket_state(uri)
    assert JOURNAL not in state and f"{NAMES.detector}/1/model.onnx" in state
    return state


def _max_batch(state: dict[str, bytes]) -> int:
    return int(parse_pbtxt(state[f"{NAMES.detector}/config.pbtxt"].decode()).max_batch_size)


def _served(server: LocalTriton) -> list[str]:
    from damo_core.serve.client import grpc_module

    client = grpc_module().InferenceServerClient(server.grpc_url)
    try:
        return list(client.get_model_metadata(NAMES.detector, as_json=True)["versions"])
    finally:
        client.close()


@pytest.mark.parametrize("point", ["journaled", "uploaded", "written", "proven"])
def test_killed_deploy_is_undone_on_the_bucket(point: str, model: Exported,
                                               target: BucketTriton, uri: str,
                                               baseline: dict[str, bytes],
                                               tmp_path: Path) -> None:
    _kill_deploy_at(point, model, target, tmp_path / "marker")
    debris = bucket_state(uri)
    record = json.loads(debris[JOURNAL])
    assert record["version"] == 2 and record["previous"] == 1
    assert record["configs"][NAMES.detector] == \
        baseline[f"{NAMES.detector}/config.pbtxt"].decode()
    has_version_2 = f"{NAMES.detector}/2/model.onnx" in debris
    assert has_version_2 == (point != "journaled")
    assert _max_batch(debris) == (V1_BATCH if point in ("journaled", "uploaded") else 8)
    if point == "proven":
        assert _served(target) == ["2"]  # loaded and checked, then killed before the commit

    lines = staging.recover(uri)  # what the next deploy or server start runs first
    assert any("undid the interrupted deploy" in line and "version 2" in line
               for line in lines), lines
    assert bucket_state(uri) == baseline


def test_next_deploy_recovers_and_rolls_back_past_a_stale_version(
        model: Exported, target: BucketTriton, uri: str, baseline: dict[str, bytes],
        tmp_path: Path) -> None:
    """The server still holds version 2 of the deploy killed after proving it, although the
    bucket no longer has it: a deploy killed after uploading takes number 3, and so does the
    next deploy, of a broken export, after undoing that one (were it number 2, the stale
    version would pass its check). It fails to load, and its rollback restores the bucket and
    serves version 1."""
    assert _served(target) == ["2"]
    _kill_deploy_at("uploaded", model, target, tmp_path / "marker")
    assert f"{NAMES.detector}/3/model.onnx" in bucket_state(uri)
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / model.metadata["file"]).write_bytes(b"not an onnx model")
    with pytest.raises(DeployError, match="rolled back: version 1 is still serving") as info:
        deploy(broken, uri, target.grpc_url, metadata=model.metadata)
    assert info.value.result["version"] == 3
    assert bucket_state(uri) == baseline
    assert _served(target) == ["1"]


def test_server_start_recovers_then_a_deploy_succeeds(
        s3: LocalS3, model: Exported, target: BucketTriton, uri: str,
        baseline: dict[str, bytes], tmp_path: Path) -> None:
    _kill_deploy_at("written", model, target, tmp_path / "marker")
    assert JOURNAL in bucket_state(uri)
    with BucketTriton(uri, s3.url, tmp_path / "scratch", load=["*"],
                      startup_timeout=120) as fresh:
        assert bucket_state(uri) == baseline  # the start undid the dead deploy first
        assert _served(fresh) == ["1"]
        result = deploy(model.exported_dir, uri, fresh.grpc_url, metadata=model.metadata)
        assert result["status"] == "serving"
        assert (result["version"], result["previous_version"]) == (2, 1)
        assert _served(fresh) == ["2"]
    state = bucket_state(uri)
    assert JOURNAL not in state and _max_batch(state) == 8
    assert state[f"{NAMES.detector}/2/model.onnx"] == \
        (model.exported_dir / model.metadata["file"]).read_bytes()


# The journal's owner, without a server: a lease for other hosts, the PID on this one.

def _fake_repo(uri: str) -> staging.StoreFiles:
    """A repository whose version 2 and config a deploy left; the journal says config ``old``."""
    files = staging.StoreFiles(open_store(uri))
    for key in ("m_detector/1/model.onnx", "m_detector/2/model.onnx"):
        files.write_text(key, "weights")
    files.write_text("m_detector/config.pbtxt", "new")
    return files


def _journal(files: staging.StoreFiles, **owner: Any) -> None:
    record = staging.JournalRecord(version=2, previous=1, models=("m_detector",),
                                   detector="m_detector", configs={"m_detector": "old"}, **owner)
    files.write_text(staging.journal_key("m"), record.dumps())


def _undone(files: staging.StoreFiles) -> bool:
    return (files.read_text("m_detector/config.pbtxt") == "old"
            and files.store.list() == ["m_detector/1/model.onnx", "m_detector/config.pbtxt"])


def test_journal_of_another_host_is_judged_by_its_lease(s3: LocalS3, uri: str) -> None:
    files = _fake_repo(f"{uri}-lease")
    _journal(files, host="another-host", renewed=time.time())
    lines = staging.recover(files)  # renewed just now: alive, wherever it runs
    assert len(lines) == 1 and lines[0].startswith("left ") and "another-host" in lines[0]
    assert files.read_text("m_detector/config.pbtxt") == "new"
    _journal(files, host="another-host", renewed=time.time() - staging.LEASE_S - 1)
    assert len(staging.recover(files, "m")) == 1
    assert _undone(files)


def test_deploy_waits_for_a_live_deploy_then_refuses(s3: LocalS3, uri: str,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(staging, "LEASE_S", 0.4)
    files = _fake_repo(f"{uri}-live")
    owner = subprocess.Popen(["sleep", "60"])  # a live process on this host
    try:
        _journal(files, pid=owner.pid)
        started = time.monotonic()
        with pytest.raises(staging.DeployInProgressError, match=f"pid {owner.pid} on "):
            staging.recover(files, "m", wait=True)
        assert time.monotonic() - started >= 1.25 * 0.4
        assert files.read_text("m_detector/config.pbtxt") == "new"
    finally:
        owner.send_signal(signal.SIGKILL)
        owner.wait(timeout=10)
    assert len(staging.recover(files, "m", wait=True)) == 1  # its owner is dead now
    assert _undone(files)


def test_held_journal_is_renewed_and_gone_once_committed(s3: LocalS3, uri: str,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(staging, "LEASE_S", 0.2)  # renewed every 0.05 s
    files = _fake_repo(f"{uri}-held")
    key = staging.journal_key("m")

    def renewed() -> float:
        return staging.JournalRecord.loads(files.read_text(key) or "").renewed

    with staging.Journal(files, "m", version=2, previous=1, models=("m_detector",),
                         detector="m_detector", configs={"m_detector": "old"}) as journal:
        first = renewed()
        time.sleep(0.3)
        assert renewed() > first
        assert staging.recover(files, "m")[0].startswith("left ")  # this process holds it
        journal.commit()
        time.sleep(0.15)  # no renewal brings it back
        assert files.read_text(key) is None
    assert files.read_text("m_detector/config.pbtxt") == "new"  # committed: left as it is
    with staging.Journal(files, "m", version=2, previous=1, models=("m_detector",),
                         detector="m_detector", configs={"m_detector": "old"}):
        pass  # released without commit: this process's PID no longer counts as alive
    assert staging.recover(files, "m")[0].startswith("undid ")
    assert _undone(files)
