"""What a killed or failed OpenVINO export leaves behind, and what a reader can see meanwhile.

A kill is simulated either by leaving a scratch directory named after a dead pid (what
SIGKILL leaves) or by raising in the middle of the export or of publishing the pair.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("onnx")
pytest.importorskip("openvino")

from damo_core.data import scratch  # noqa: E402
from damo_core.export import openvino as ov_export  # noqa: E402
from damo_core.models import Detector  # noqa: E402

SIZE = 64


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def leftover(out: Path, pid: int) -> Path:
    path = out / f"{ov_export.SCRATCH_PREFIX}{scratch.host_tag()}-{pid}-k1ll3d"
    path.mkdir(parents=True)
    (path / "model.onnx").write_bytes(b"\0" * 4096)
    return path


def scratch_dirs(out: Path) -> list[Path]:
    return [p for p in out.iterdir() if p.name.startswith(ov_export.SCRATCH_PREFIX)]


def test_next_export_sweeps_dead_exports_scratch(ns_model: Detector, tmp_path: Path) -> None:
    dead = leftover(tmp_path, dead_pid())
    live = leftover(tmp_path, os.getppid())  # a concurrent export still running
    xml = ov_export.export(ns_model, tmp_path, image_size=SIZE)
    assert xml.is_file() and xml.with_suffix(".bin").is_file()
    assert not dead.exists() and live.exists()
    assert scratch_dirs(tmp_path) == [live]


def test_error_mid_export_removes_scratch(ns_model: Detector, tmp_path: Path,
                                          monkeypatch) -> None:
    import openvino as ov

    def boom(*args, **kwargs):
        raise RuntimeError("simulated failure while saving the IR")

    monkeypatch.setattr(ov, "save_model", boom)
    with pytest.raises(RuntimeError, match="simulated"):
        ov_export.export(ns_model, tmp_path, image_size=SIZE)
    assert scratch_dirs(tmp_path) == []
    assert not list(tmp_path.glob("*.xml"))


def staged_pair(stage: Path, stem: str, tag: str) -> Path:
    stage.mkdir(parents=True, exist_ok=True)
    xml = stage / f"{stem}.xml"
    xml.write_text(f"graph {tag}")
    xml.with_suffix(".bin").write_text(f"weights {tag}")
    return xml


def readable_pair(out: Path, stem: str) -> tuple[str, str] | None:
    """What a reader opening ``<stem>.xml`` (and then its ``.bin``) would load."""
    xml = out / f"{stem}.xml"
    if not xml.exists():
        return None
    return xml.read_text().split()[1], xml.with_suffix(".bin").read_text().split()[1]


@pytest.mark.parametrize("kill_at", [1, 2])
def test_kill_between_renames_never_pairs_new_weights_with_old_graph(
        tmp_path: Path, monkeypatch, kill_at: int) -> None:
    """Kill after the first / second rename: a reader sees no model or a matching pair."""
    out = tmp_path / "out"
    ov_export.publish_pair(staged_pair(tmp_path / "s1", "m", "old"), out.mkdir() or out)
    assert readable_pair(out, "m") == ("old", "old")
    real = os.replace
    calls = {"n": 0}

    def killed(src, dst):
        calls["n"] += 1
        if calls["n"] == kill_at:
            raise KeyboardInterrupt("simulated kill")
        return real(src, dst)

    monkeypatch.setattr(os, "replace", killed)
    with pytest.raises(KeyboardInterrupt):
        ov_export.publish_pair(staged_pair(tmp_path / "s2", "m", "new"), out)
    monkeypatch.setattr(os, "replace", real)
    assert readable_pair(out, "m") is None  # never ("old", "new") or ("new", "old")
    ov_export.publish_pair(staged_pair(tmp_path / "s3", "m", "newer"), out)
    assert readable_pair(out, "m") == ("newer", "newer")


def test_publish_order_is_unlink_xml_bin_then_xml(tmp_path: Path, monkeypatch) -> None:
    out = tmp_path / "out"
    out.mkdir()
    ov_export.publish_pair(staged_pair(tmp_path / "s1", "m", "old"), out)
    seen: list[tuple[str, tuple[str, str] | None]] = []
    real_replace, real_unlink = os.replace, os.unlink

    def replace(src, dst):
        real_replace(src, dst)
        seen.append((Path(dst).suffix, readable_pair(out, "m")))

    def unlink(path, *args, **kwargs):
        real_unlink(path, *args, **kwargs)
        seen.append(("unlink" + Path(path).suffix, readable_pair(out, "m")))

    monkeypatch.setattr(os, "replace", replace)
    monkeypatch.setattr(os, "unlink", unlink)
    ov_export.publish_pair(staged_pair(tmp_path / "s2", "m", "new"), out)
    assert seen == [("unlink.xml", None), (".bin", None), (".xml", ("new", "new"))]
