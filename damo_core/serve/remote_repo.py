"""Model repositories on S3/MinIO (``s3://bucket/prefix``), which Triton reads directly.

The writer works on a local directory, where it can validate and rename atomically; for an
S3 target the deploy *stages* the model's current state from the bucket into a temporary
directory (configs, the Python shims and the detector's version numbers), lets the same
writer add the new version there, and uploads only what changed: the new version's files
first, then the configs, so a server never reads a config whose files are not there yet.
Each object appears whole or not at all (S3 PUT semantics), but a version is many objects:
before the first upload the deploy writes its journal into the bucket
(:class:`~damo_core.serve.staging.Journal` on :attr:`StagedRepository.files`), and the next
deploy undoes a dead one's objects and configs (:func:`~damo_core.serve.staging.recover`).
S3 has no empty directories, so the ensemble's version directory holds a placeholder object.

Storage access goes through :func:`damo_core.storage.open_store` (endpoint and credentials
from the environment, as for every other S3 path of the project).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from damo_core.serve import model_config as mc
from damo_core.serve import staging
from damo_core.serve.repository import CONFIG, RepositoryEntry
from damo_core.storage import Store, is_remote, open_store

PLACEHOLDER = ".keep"
SHIM = "1/model.py"

__all__ = ["StagedRepository", "is_remote"]


class StagedRepository:
    """A local mirror of one deployment's models in a remote repository (see module doc)."""

    def __init__(self, uri: str, names: mc.ModelNames) -> None:
        self.uri, self.names = uri, names
        self.store: Store = open_store(uri)
        self.files = staging.StoreFiles(self.store)  # what the journal and its undo use
        self._tmp = tempfile.TemporaryDirectory(prefix="damo-triton-stage-")
        self.root = Path(self._tmp.name)

    def pull(self) -> list[int]:
        """Mirror configs and shims, and the detector's versions as empty directories (so the
        writer numbers the next one); returns those versions."""
        for name in self.names.all:
            for key in (f"{name}/{CONFIG}", f"{name}/{SHIM}"):
                if self.store.exists(key):
                    self.store.get_file(key, self.root / key)
        versions = sorted({int(part) for key in self.store.list(f"{self.names.detector}/")
                           if (part := key.split("/")[1]).isdigit()})
        for version in versions:
            (self.root / self.names.detector / str(version)).mkdir(parents=True, exist_ok=True)
        return versions

    def push(self, entry: RepositoryEntry) -> None:
        """Upload the new version's files, then every changed model's config and shim."""
        for path in sorted(entry.version_dir.iterdir()):
            self.store.put_file(path, self._key(path))
        staging.fault_point("uploaded")
        ensemble_dir = self.root / self.names.ensemble / "1"
        self.store.write_bytes(self._key(ensemble_dir / PLACEHOLDER), b"")
        for name in entry.changed:
            self.sync_model(name)

    def sync_model(self, name: str) -> None:
        """Make the bucket's config and shim of ``name`` equal the staged ones (or absent)."""
        for key in (f"{name}/{SHIM}", f"{name}/1/{PLACEHOLDER}", f"{name}/{CONFIG}"):
            local = self.root / key
            if local.is_file():
                self.store.put_file(local, key)
            elif key.endswith(PLACEHOLDER):
                if not (self.root / name / CONFIG).is_file():
                    self.store.delete(key)  # the model is gone, not just its shim
            else:
                self.store.delete(key)

    def remove_version(self, entry: RepositoryEntry) -> None:
        self.files.remove_tree(f"{self.names.detector}/{entry.version}")

    def _key(self, path: Path) -> str:
        return path.relative_to(self.root).as_posix()

    def close(self) -> None:
        self._tmp.cleanup()
