"""Fixtures shared by the tests that talk to the KFP API stand-in."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.pipelines import kfp_standin


@pytest.fixture()
def api() -> Iterator[Any]:
    """A fresh recording KFP API stand-in on 127.0.0.1, shut down after the test."""
    server = kfp_standin.start()
    yield server
    server.server.shutdown()
