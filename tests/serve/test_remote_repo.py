"""A model repository on S3 (a real S3 protocol server, moto, on 127.0.0.1): the same writer,
staged locally and uploaded; versions numbered from what the bucket holds."""

from __future__ import annotations

from damo_core.serve import model_config as mc
from damo_core.serve.deploy import deploy
from damo_core.serve.remote_repo import StagedRepository
from damo_core.serve.repository import RepositoryEntry, detector_versions
from damo_core.storage import open_store
from tests.serve.conftest import MODEL
from tests.storage.conftest import s3_bucket, s3_endpoint, s3_env  # noqa: F401 - fixtures

NAMES = mc.ModelNames(MODEL)


def test_deploy_writes_versions_to_s3(exported, s3_bucket):  # noqa: F811 - fixture
    uri = f"s3://{s3_bucket}/triton"
    first = deploy(exported.exported_dir, uri, metadata=exported.metadata)
    assert first["repo"] == uri and first["version"] == 1 and first["status"] == "written"
    store = open_store(uri)
    keys = set(store.list())
    assert {f"{NAMES.detector}/1/model.onnx", f"{NAMES.detector}/1/model.py",
            f"{NAMES.preprocess}/1/model.py", f"{NAMES.ensemble}/1/.keep",
            *(f"{n}/config.pbtxt" for n in NAMES.all)} <= keys
    assert mc.parse_pbtxt(store.read_text(f"{NAMES.ensemble}/config.pbtxt")).platform == \
        "ensemble"
    second = deploy(exported.exported_dir, uri, metadata=exported.metadata)
    assert second["version"] == 2 and second["previous_version"] == 1
    added = set(store.list()) - keys
    assert added == {f"{NAMES.detector}/2/model.onnx", f"{NAMES.detector}/2/model.py"}
    assert (exported.exported_dir / exported.metadata["file"]).read_bytes() == \
        store.read_bytes(f"{NAMES.detector}/2/model.onnx")


def test_staged_rollback_removes_the_version(exported, s3_bucket):  # noqa: F811 - fixture
    uri = f"s3://{s3_bucket}/triton"
    deploy(exported.exported_dir, uri, metadata=exported.metadata)
    deploy(exported.exported_dir, uri, metadata=exported.metadata)
    staged = StagedRepository(uri, NAMES)
    try:
        assert staged.pull() == [1, 2]
        assert detector_versions(staged.root, MODEL) == [1, 2]
        staged.remove_version(RepositoryEntry(staged.root, NAMES, 2, "python"))
    finally:
        staged.close()
    assert not [k for k in open_store(uri).list() if k.startswith(f"{NAMES.detector}/2/")]
    assert deploy(exported.exported_dir, uri, metadata=exported.metadata)["version"] == 2
