"""Fixtures of the container tests, shared by every module here: the built images, a work
directory both images' users can write, and one tiny training run and its ONNX export (made
in the CPU image once per session: each costs tens of seconds)."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from components._image import DAMO_IMAGE, DAMO_TRITON_IMAGE
from tests.containers.helpers import docker, step


@pytest.fixture(scope="session")
def images() -> None:
    if not os.environ.get("DOCKER_HOST"):
        pytest.fail("DOCKER_HOST is not set: start a daemon with `eval \"$(scripts/dockerd.sh "
                    "start)\"` and build the images with scripts/images.sh first")
    for image in (DAMO_IMAGE, DAMO_TRITON_IMAGE):
        found = docker("image", "inspect", image, timeout=60)
        assert found.returncode == 0, f"image {image} is not built: run scripts/images.sh"


@pytest.fixture(scope="session")
def work(images: None) -> Iterator[Path]:
    """A directory both images' users can write: the artifact store the steps share."""
    path = Path(tempfile.mkdtemp(prefix="damo-containers-", dir="/var/tmp"))
    path.chmod(0o777)
    yield path
    # files written by the containers' users: remove them from inside a container too
    docker("run", "--rm", "--user", "0", "--entrypoint", "find", "-v", f"{path}:/work",
           DAMO_IMAGE, "/work", "-mindepth", "1", "-delete")
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def trained(work: Path) -> Path:
    step(work, "data", "synth", "--out", "/work/synth", "--images", "16", "--img-size", "96")
    step(work, "train", "--model", "damoyolo_ns", "--data", "/work/synth/dataset.yaml",
         "--out", "/work/run", "--epochs", "1", "--batch", "4", "--img-size", "64",
         "workers=0", "precise_bn_batches=1")
    assert (work / "run" / "best.pt").is_file() and (work / "run" / "results.csv").is_file()
    return work / "run" / "best.pt"


@pytest.fixture(scope="session")
def exported(work: Path, trained: Path) -> Path:
    """The export step's ONNX export of the trained model, at ``work``/export (/work/export
    in the containers)."""
    step(work, "export", "--weights", "/work/run/best.pt", "-f", "onnx", "--out",
         "/work/export")
    assert list((work / "export").glob("*.onnx")), "the export step wrote no ONNX file"
    return work / "export"
