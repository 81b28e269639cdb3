"""Fixtures shared by the training tests: one tiny synthetic set for the whole session."""

from __future__ import annotations

import pytest

from damo_core.data.synth import generate


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("data") / "synth"
    return generate(root, num_classes=2, num_images=16, image_size=64, seed=3)
