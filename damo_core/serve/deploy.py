"""Deploy an exported model to Triton: write a new version, load it, prove it answers, or roll
back to the version that served before.

Triton runs in explicit model-control mode, so nothing changes on the server until the
repository API says so. A deploy writes detector version ``v+1`` and the four configs
(:func:`~damo_core.serve.repository.write_repository`; on S3 through
:mod:`~damo_core.serve.remote_repo`), loads what changed, checks that the detector now
serves exactly ``v+1`` and that the ensemble answers a generated image with well-formed
detections. If any of that fails, the new version is removed, the previous configs are
restored and only what the server now has wrong is reloaded, so the previous version keeps
(or goes back to) serving, and :class:`DeployError` says why.

A deploy that is killed outright cannot roll back, so one that loads, and every deploy to
S3 (where a version is many objects uploaded one by one), first writes a journal into the
repository (:mod:`~damo_core.serve.staging`): the next deploy of the model (to either kind of
repository) and every local server start undo a dead deploy's version and configs, so the
previous version loads and serves. A deploy waits for a live one's journal to go away or go
stale, and refuses if it does not (:func:`~damo_core.serve.staging.recover`), rather than
racing it. A version that a dead deploy had loaded can outlive its files in the server's
memory; its number is not reused. A failed load is rolled back through the same journal, so
a local directory and a bucket are restored the same way.

The repository API needs the server's admin key (:mod:`~damo_core.serve.admin`); deploy
checks that the server accepts the key it has before writing anything, so a missing or
wrong key is one line (:class:`AdminKeyError`, naming the env var) and no half-done deploy.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from damo_core.errors import DamoError
from damo_core.serve import admin, staging
from damo_core.serve import model_config as mc
from damo_core.serve.client import TritonDetector, grpc_module
from damo_core.serve.errors import AdminKeyError, DeployError, ServerUnavailableError
from damo_core.serve.exported import ExportedModel
from damo_core.serve.remote_repo import StagedRepository, is_remote
from damo_core.serve.repository import (
    CONFIG,
    RepositoryEntry,
    detector_versions,
    write_repository,
)


def deploy(exported_dir: str | Path, repo: str | Path, url: str | None = None, *,
           metadata: Mapping[str, Any] | None = None, variant: str = "python",
           options: mc.ServingOptions | None = None, timeout: float = 120.0,
           admin_key: str | None = None) -> dict[str, Any]:
    """Add the export in ``exported_dir`` to ``repo`` (a directory or ``s3://bucket/prefix``)
    and, with ``url`` (``host:grpc_port``), load it on that server.

    Returns the deployment record (model, version, previous version, repo, url, status
    ``written`` or ``serving``); raises :class:`DeployError` after a rollback, and
    :class:`~damo_core.serve.staging.DeployInProgressError` while another live deploy of the
    model holds its journal. ``metadata`` is the export step's artifact metadata.
    ``admin_key``: the server's repository-API key (default:
    :func:`damo_core.serve.admin.key_for`, i.e. a local server's or the env var's).
    """
    model = ExportedModel.from_dir(exported_dir, metadata)
    names = mc.ModelNames(model.model_name)
    client = _connect(url, timeout, admin.key_for(url, admin_key)) if url else None
    staged = StagedRepository(str(repo), names) if is_remote(str(repo)) else None
    try:
        files = staged.files if staged is not None else staging.LocalFiles(repo)
        # A deploy killed before it finished left a journal: undo it before reading the state.
        staging.recover(files, names.ensemble, wait=True)
        if staged is not None:
            staged.pull()
        return _deploy(model, staged.root if staged else Path(repo), files, client, url,
                       staged, variant=variant, options=options, timeout=timeout,
                       metadata=metadata)
    finally:
        if staged is not None:
            staged.close()


def _deploy(model: ExportedModel, root: Path, files: staging.RepositoryFiles, client: Any,
            url: str | None, staged: StagedRepository | None, *, variant: str,
            options: mc.ServingOptions | None, timeout: float,
            metadata: Mapping[str, Any] | None = None) -> dict[str, Any]:
    names = mc.ModelNames(model.model_name)
    versions = detector_versions(root, model.model_name)
    previous = versions[-1] if versions else None
    snapshot = {name: _read(root / name / CONFIG) for name in names.all}
    # The server may still hold a version whose files a recovery removed (a deploy killed
    # after loading it): its number is not reused, or "serves exactly v" would be checked
    # against that stale one, and every part is reloaded (their loaded configs may be its).
    stale = [v for v in _loaded_versions(client, names) if v not in versions] if client else []
    version = max([previous or 0, *stale]) + 1
    journal = None
    # Until it is proven (loading follows) or, on S3, uploaded whole (many objects), a restart
    # or the next deploy must not take the new version for a finished one.
    if client is not None or staged is not None:
        journal = staging.Journal(files, names.ensemble, version=version, previous=previous,
                                  models=names.all, detector=names.detector, configs=snapshot)
        staging.fault_point("journaled")
    with journal or contextlib.nullcontext():
        try:
            entry = write_repository(model, root, variant=variant, options=options,
                                     version=version, metadata=metadata)
            if staged is not None:
                staged.push(entry)
            if stale:
                entry = dataclasses.replace(entry, changed=tuple(
                    n for n in names.all if n != names.ensemble or n in entry.changed))
        except Exception:
            if journal is not None:  # if the undo fails too, the journal stays for recovery
                with contextlib.suppress(OSError, DamoError):
                    journal.undo()
            raise
        staging.fault_point("written")
        result: dict[str, Any] = {
            "model_name": names.ensemble, "version": entry.version, "previous_version": previous,
            "repo": staged.uri if staged else str(root.resolve()), "url": url,
            "variant": variant, "models": list(names.all), "detector_format": model.fmt,
            "status": "written"}
        if client is None:
            if journal is not None:
                journal.commit()  # uploaded whole; loading it is someone else's step
            return result
        assert journal is not None  # a deploy that loads always writes one
        try:
            _load_and_check(client, url or "", entry, timeout)
        except Exception as err:  # noqa: BLE001 - whatever failed, the old version must serve
            reason = f"{type(err).__name__}: {err}"
            restored = _roll_back(client, root, names, journal)
            result.update(status="rolled_back" if restored else "rollback_failed",
                          error=reason, serving_version=previous if restored else None)
            if not restored:
                outcome = (f"rollback incomplete: version {previous} does not serve either; "
                           "see the server log")
            else:
                outcome = "rolled back: " + (f"version {previous} is still serving" if previous
                                             else "nothing was deployed")
            raise DeployError(f"deploying {names.ensemble} version {entry.version} to {url} "
                              f"failed ({reason.splitlines()[0]}); {outcome}", result) from None
        staging.fault_point("proven")
        journal.commit()  # the new version serves
    result.update(status="serving", serving_version=entry.version)
    return result


def _connect(url: str, timeout: float, key: str | None) -> Any:
    """A client whose repository calls carry ``key``, once the server has accepted it (the
    repository index is the harmless call of the restricted API)."""
    client = admin.KeyedClient(grpc_module().InferenceServerClient(url), key)
    try:
        client.is_server_ready(client_timeout=min(timeout, 10.0))
    except Exception as err:  # noqa: BLE001 - any gRPC failure means: no server there
        raise ServerUnavailableError(f"no Triton server answers at {url} ({err}); nothing "
                                     "was written or deployed") from None
    try:
        client.get_model_repository_index(client_timeout=min(timeout, 10.0))
    except Exception as err:
        if admin.is_refusal(err):
            raise AdminKeyError(f"{admin.refusal_message(url, key)}; nothing was written or "
                                "deployed") from None
        raise
    return client


def _load_and_check(client: Any, url: str, entry: RepositoryEntry, timeout: float) -> None:
    """Load what changed, then check the served version and a probe inference.

    Only changed models are loaded: an explicit load of the ensemble reloads all its parts,
    restarting every backend stub, while a reloaded part makes Triton refresh the ensemble
    by itself. The first deploy loads the ensemble, which loads the parts in parallel.
    """
    names, version = entry.names, entry.version
    if not client.is_model_ready(names.ensemble, client_timeout=timeout):
        client.load_model(names.ensemble, client_timeout=timeout)
    else:
        for name in entry.changed:
            client.load_model(name, client_timeout=timeout)
    if not _serves(client, names, version):
        served = client.get_model_metadata(names.detector, as_json=True).get("versions", [])
        raise RuntimeError(f"{names.detector} did not load version {version} (serving "
                           f"versions {served}); see the server log for the load error")
    with TritonDetector(url, names.ensemble, timeout=timeout) as detector:
        detections = detector.detect_encoded([probe_image()])
    if len(detections) != 1 or not bool(np.isfinite(detections[0].boxes.numpy()).all()):
        raise RuntimeError(f"{names.ensemble} answered the probe image with malformed "
                           f"detections: {detections}")


def _roll_back(client: Any, root: Path, names: mc.ModelNames,
               journal: staging.Journal) -> bool:
    """Put the repository back as it was, then reload only what the server has wrong.

    Usually that is nothing: when a new version fails to load, Triton keeps the loaded one.
    A version that loaded but did not answer is replaced by reloading the detector (Triton
    then refreshes the ensemble). Undoing ``journal`` restores the repository itself (on S3
    the bucket, which the server reads) before anything is reloaded, and drops the journal;
    if it fails, the journal stays for the next recovery. Returns whether the previous state
    is served again.
    """
    snapshot, previous = journal.record.configs, journal.record.previous
    changed = [name for name, text in snapshot.items() if _read(root / name / CONFIG) != text]
    try:
        journal.undo()
        if previous is None:
            for name in reversed(names.all):
                client.unload_model(name)
            return True
        if not _detector_serves(client, names, previous) and names.detector not in changed:
            changed.append(names.detector)
        for name in (n for n in names.all if n in changed):
            client.load_model(name)
        return _serves(client, names, previous)
    except Exception:  # noqa: BLE001 - reported by the caller with the original failure
        return False


def _loaded_versions(client: Any, names: mc.ModelNames) -> list[int]:
    """The detector versions the server has loaded (none while the detector is not)."""
    if not client.is_model_ready(names.detector):
        return []
    served = client.get_model_metadata(names.detector, as_json=True).get("versions", [])
    return sorted(int(v) for v in served)


def _detector_serves(client: Any, names: mc.ModelNames, version: int) -> bool:
    served = client.get_model_metadata(names.detector, as_json=True).get("versions", [])
    return bool(served == [str(version)])


def _serves(client: Any, names: mc.ModelNames, version: int) -> bool:
    return _detector_serves(client, names, version) and bool(
        client.is_model_ready(names.ensemble))


def _read(path: Path) -> str | None:
    return path.read_text(encoding="utf-8") if path.is_file() else None


def probe_image(width: int = 96, height: int = 64) -> bytes:
    """A small deterministic PNG (a colour gradient) that exercises decode, the input fit
    (non-square, so letterbox padding or an anisotropic stretch is involved), detector and NMS
    end to end."""
    x = np.linspace(0, 255, width, dtype=np.float32)
    y = np.linspace(0, 255, height, dtype=np.float32)[:, None]
    rgb = np.stack(np.broadcast_arrays(x[None, :] + 0 * y, y + 0 * x, (x + y) / 2), axis=-1)
    buf = io.BytesIO()
    Image.fromarray(rgb.astype(np.uint8), mode="RGB").save(buf, format="PNG")
    return buf.getvalue()
