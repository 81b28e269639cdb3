"""The deploy step: an export added to a Triton model repository as a new version and loaded,
rolled back to the previous version if it fails to load or to answer."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

PREFERRED_BATCHES = (4, 8)


def run(exported: str | Path, repository: str | Path, url: str | None = None, *,
        variant: str = "python", max_batch: int = 8,
        metadata: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Add ``exported`` (an export directory) to ``repository`` (a directory or
    ``s3://bucket/prefix``) and, with ``url`` (Triton's gRPC HOST:PORT), load it there.

    ``variant``: ``native`` (Triton's own backends: the official image) or ``python`` (the
    preprocess and NMS as Python models: any CPU server). ``metadata`` is the export step's
    artifact metadata, when the caller has it. Loading needs the server's admin key
    (``$DAMO_TRITON_ADMIN_KEY``). Returns the deployment record (model, version, status)."""
    from damo_core.serve.deploy import deploy
    from damo_core.serve.model_config import ServingOptions

    preferred = tuple(b for b in PREFERRED_BATCHES if b <= max_batch)
    options = ServingOptions(max_batch_size=max_batch, preferred_batch_sizes=preferred)
    return deploy(exported, repository, url or None, metadata=metadata, variant=variant,
                  options=options)
