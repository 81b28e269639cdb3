"""The built wheel is a working install: it holds every file the package reads at run time, and
installed on its own (not editable) it synthesises a data set and trains one tiny epoch.

The wheel is built from the package sources of this checkout (copied into a temporary directory
first, so that setuptools' ``build/`` and ``*.egg-info`` never land in the checkout) with
``pip wheel --no-deps --no-build-isolation``: no network, no isolated build environment.

It is installed with ``--no-deps`` into a fresh virtual environment under ``tmp_path``, created
with ``--system-site-packages`` so that torch and the other heavy dependencies are reused from
the environment running the tests instead of being installed again (when that environment is
itself a venv, its site-packages are added with a ``.pth`` file, as ``--system-site-packages``
only reaches the base interpreter's). The commands then run from a directory outside the
checkout, and the test asserts that ``damo_core`` is imported from the venv, not from the
source tree (the editable install, if any, stays visible but comes later on ``sys.path``).
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import site
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("damo_core", "components", "pipelines")  # [tool.setuptools.packages.find] include
# What counts as a data file the package may read at run time.
DATA_SUFFIXES = {".yaml", ".yml", ".csv", ".json", ".txt"}
TIMEOUT_S = 300

pytestmark = [pytest.mark.slow, pytest.mark.timeout(2 * TIMEOUT_S)]


def _run(cmd: list[str | Path], **kwargs) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([str(c) for c in cmd], capture_output=True, text=True,
                          timeout=TIMEOUT_S, **kwargs)
    assert proc.returncode == 0, (
        f"{' '.join(map(str, cmd))} exited {proc.returncode}\n"
        f"--- stdout ---\n{proc.stdout[-4000:]}\n--- stderr ---\n{proc.stderr[-4000:]}")
    return proc


def _source_data_files() -> set[str]:
    """Every data file in the package tree of the checkout, as a path inside the wheel."""
    found = set()
    for package in PACKAGES:
        for path in (REPO / package).rglob("*"):
            if (path.is_file() and path.suffix in DATA_SUFFIXES
                    and "__pycache__" not in path.parts):
                found.add(path.relative_to(REPO).as_posix())
    return found


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    src = tmp_path_factory.mktemp("src")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, src / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    for package in PACKAGES:
        shutil.copytree(REPO / package, src / package, ignore=ignore)
    dist = tmp_path_factory.mktemp("dist")
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
          "--no-index", "--quiet", "--wheel-dir", dist, src])
    (built,) = dist.glob("*.whl")
    return built


def test_wheel_holds_every_runtime_data_file(wheel):
    expected = _source_data_files()
    # The files whose absence broke training (issue 16), so the scan cannot silently find none.
    assert {"damo_core/train/default.yaml", "damo_core/train/presets/cpu_quick.yaml",
            "damo_core/configs/damoyolo_ns.yaml",
            "damo_core/data/label_spaces/coco-o365-oi.csv"} <= expected
    with zipfile.ZipFile(wheel) as zf:
        shipped = set(zf.namelist())
    missing = sorted(expected - shipped)
    assert not missing, f"not in {wheel.name} (add them to package-data): {missing}"


def _venv(root: Path) -> Path:
    """A venv that sees this environment's packages; returns its python."""
    _run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", root])
    python = root / "bin" / "python"
    if sys.prefix != sys.base_prefix:  # running in a venv: make its packages visible too
        purelib = _run([python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"])
        lines = [f"import site; site.addsitedir({p!r})\n" for p in site.getsitepackages()]
        Path(purelib.stdout.strip(), "_outer_env.pth").write_text("".join(lines))
    return python


CHECK_INSTALL = """
import json, damo_core
from damo_core.data.labelspace import load_preset
from damo_core.models.config import list_models, resolve_config_path
from damo_core.steps._common import preset_path
from damo_core.train import load_train_config
print(json.dumps({
    "damo_core": damo_core.__file__,
    "model_config": str(resolve_config_path("damoyolo_ns")),
    "preset": str(preset_path("cpu_quick")),
    "models": list_models(),
    "epochs": load_train_config().epochs,
    "label_space_classes": len(load_preset("coco-o365-oi").classes),
}))
"""


def test_installed_wheel_trains_outside_the_source_tree(wheel, tmp_path):
    venv = tmp_path / "venv"
    python = _venv(venv)
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    _run([python, "-m", "pip", "install", "--no-deps", "--no-index", "--ignore-installed",
          "--no-compile", "--quiet", wheel], env=env)

    work = tmp_path / "work"
    work.mkdir()
    assert not work.resolve().is_relative_to(REPO)
    info = json.loads(_run([python, "-c", CHECK_INSTALL], cwd=work, env=env).stdout)
    site_packages = venv.resolve()
    for key in ("damo_core", "model_config", "preset"):
        assert Path(info[key]).resolve().is_relative_to(site_packages), (key, info[key])
    assert "damoyolo_ns" in info["models"] and info["epochs"] == 300
    assert info["label_space_classes"] > 0

    damo = venv / "bin" / "damo"
    _run([damo, "data", "synth", "--out", "synth", "--classes", "2", "--images", "8",
          "--img-size", "64"], cwd=work, env=env)
    _run([damo, "train", "--model", "damoyolo_ns", "--data", "synth/dataset.yaml", "--out", "run",
          "--config", info["preset"], "--epochs", "1", "--batch", "4", "--img-size", "64",
          "workers=0", "eval_interval=1", "warmup_epochs=0", "no_aug_epochs=0",
          "precise_bn_batches=1", "device=cpu"], cwd=work, env=env)
    run = work / "run"
    for name in ("best.pt", "last.pt", "results.csv"):
        assert (run / name).is_file(), name
    rows = list(csv.DictReader((run / "results.csv").open()))
    assert [int(r["epoch"]) for r in rows] == [1]
