"""Shared fixtures: models are built once per session because the large ones take seconds."""

from __future__ import annotations

import functools

import pytest
import torch

from damo_core.models import Detector, build_model


@functools.cache
def _built(name: str) -> Detector:
    torch.manual_seed(0)
    return build_model(name)


@pytest.fixture
def zoo_model():
    """Return a cached model by name; tests must not mutate it (deepcopy first)."""
    return _built
