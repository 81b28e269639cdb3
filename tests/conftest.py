"""Shared fixtures: models are built once per session because the large ones take seconds."""

from __future__ import annotations

import functools
from collections.abc import Iterator

import pytest
import torch

from damo_core.models import Detector, build_model


@pytest.fixture(autouse=True, scope="session")
def _private_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Dataset conversions and the S3 image cache go to a per-session directory, never the
    user's ~/.cache (subprocesses the tests start inherit it)."""
    import os

    os.environ["DAMO_CACHE_DIR"] = str(tmp_path_factory.mktemp("damo-cache"))


@functools.cache
def _built(name: str) -> Detector:
    torch.manual_seed(0)
    return build_model(name)


@pytest.fixture
def zoo_model():
    """Return a cached model by name; tests must not mutate it (deepcopy first)."""
    return _built


@pytest.fixture(scope="module")
def one_torch_thread() -> Iterator[None]:
    """One intra-op thread for a module (``pytestmark = pytest.mark.usefixtures(...)``): tiny
    convs on a shared 2-core machine run faster on one thread than oversubscribed."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
