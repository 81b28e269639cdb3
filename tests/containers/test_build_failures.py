"""Build failures are clear (issue 16): a Dockerfile COPY of a missing path fails
scripts/images.sh's build with a line naming the image and the path, and an image lacking a
module that a component imports fails scripts/build_checks.py's import check with a line
naming the image, the module and the component; the built images pass that check. Throwaway
images are tiny (FROM damo-base:bookworm, which scripts/images.sh builds first) and removed."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from components._image import DAMO_IMAGE, DAMO_TRITON_IMAGE
from tests.containers.helpers import docker

pytestmark = pytest.mark.container

ROOT = Path(__file__).resolve().parents[2]
BASE = "damo-base:bookworm"


@pytest.fixture()
def throwaway(images: None) -> Iterator[str]:
    """A tag for a throwaway image, removed (if it was built) after the test."""
    if docker("image", "inspect", BASE, timeout=60).returncode != 0:
        pytest.fail(f"{BASE} is not built: run scripts/images.sh (it builds it first)")
    tag = f"damo-throwaway:test-{os.getpid()}"
    yield tag
    docker("image", "rm", "-f", tag, timeout=60)


def _run(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), capture_output=True, text=True, timeout=timeout,
                          check=False, cwd=ROOT)


def test_copy_of_a_missing_path_names_image_and_path(throwaway: str, tmp_path: Path) -> None:
    missing = f"no-such-dir-{os.getpid()}/model.bin"
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text(f"FROM {BASE}\nCOPY {missing} /opt/model.bin\n")
    done = _run("bash", "scripts/images.sh", f"build={dockerfile}:{throwaway}")
    assert done.returncode != 0, done.stderr[-3000:]
    lines = [line for line in done.stderr.splitlines() if throwaway in line and missing in line]
    assert lines and "COPY of a missing path" in lines[0], done.stderr[-3000:]


def test_image_lacking_a_component_module_names_image_and_module(throwaway: str,
                                                                 tmp_path: Path) -> None:
    (tmp_path / "Dockerfile").write_text(f"FROM {BASE}\nRUN python3 -c 'import json'\n")
    built = docker("build", "--network", "host", "-t", throwaway, str(tmp_path), timeout=300)
    assert built.returncode == 0, built.stderr[-3000:]
    done = _run(sys.executable, "scripts/build_checks.py", "imports", throwaway,
                "components/deploy")
    assert done.returncode == 1, done.stdout + done.stderr
    assert done.stderr.strip() == f"{throwaway} lacks module damo_core (imported by " \
                                  "components/deploy)", done.stderr


@pytest.mark.parametrize(("image", "sources"), [
    (DAMO_IMAGE, ["--components-of", "DAMO_IMAGE"]),
    (DAMO_TRITON_IMAGE, ["damo_core/serve/python_models.py"]),
])
def test_built_images_import_what_runs_in_them(images: None, image: str,
                                               sources: list[str]) -> None:
    done = _run(sys.executable, "scripts/build_checks.py", "imports", image, *sources)
    assert done.returncode == 0 and f"{image}: imports ok" in done.stderr, done.stderr[-3000:]
