"""What ``damo predict`` and ``damo infer`` accept and where their results go: folders searched
recursively, patterns, videos, each image keeping its path below its root; output names that
mirror the tree, never meet and never overwrite an input. File-system only: no model."""

from __future__ import annotations

from pathlib import Path

import pytest

from damo_core.errors import InputNotFoundError, UserInputError
from damo_core.eval.sources import (
    MediaFile,
    annotated_paths,
    expand_sources,
    plan_outputs,
    single_image_plan,
)


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """``a/b/x.png a/y.jpg c/x.png c/clip.mp4`` plus files a search must pass over."""
    root = tmp_path / "in"
    for rel in ["a/b/x.png", "a/y.jpg", "c/x.png", "c/clip.mp4", "notes.txt",
                ".hidden/z.png", "a/.tmp.png"]:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(rel.encode())
    return root


def _rels(media: list[MediaFile]) -> list[str]:
    return [m.out_rel.as_posix() for m in media]


def test_a_directory_is_searched_recursively_in_sorted_order(tree: Path) -> None:
    media = expand_sources([tree])
    assert _rels(media) == ["a/b/x.png", "a/y.jpg", "c/clip.mp4", "c/x.png"]
    assert [m.path for m in media] == [tree / r for r in _rels(media)]
    assert [m.video for m in media] == [False, False, True, False]


def test_patterns_keep_paths_below_their_fixed_prefix(tree: Path) -> None:
    assert _rels(expand_sources([f"{tree}/**/*.png"])) == ["a/b/x.png", "c/x.png"]
    assert _rels(expand_sources([f"{tree}/a/*.jpg"])) == ["y.jpg"]
    assert _rels(expand_sources([f"{tree}/*/x.png"])) == ["c/x.png"]
    assert _rels(expand_sources([f"{tree}/[ac]"])) == ["a/b/x.png", "a/y.jpg", "c/clip.mp4",
                                                       "c/x.png"]  # matched folders searched
    (video,) = expand_sources([f"{tree}/c/*.mp4"])
    assert video.video and video.rel == Path("clip.mp4")


def test_a_file_named_on_its_own_keeps_its_name_and_is_listed_once(tree: Path) -> None:
    media = expand_sources([tree / "a" / "y.jpg", tree / "notes.txt", tree / "a"])
    assert [(m.path, m.rel) for m in media] == [
        (tree / "a" / "y.jpg", None),  # named first: not repeated by the folder
        (tree / "notes.txt", None),  # taken whatever its suffix when named explicitly
        (tree / "a" / "b" / "x.png", Path("b/x.png")),
    ]


@pytest.mark.parametrize(("source", "error", "fragment"), [
    ("missing.png", InputNotFoundError, "no such file or directory"),
    ("in/**/*.gif", InputNotFoundError, "the pattern matches no image or video file"),
    ("empty", InputNotFoundError, "the directory holds no image or video file"),
])
def test_bad_sources_name_the_argument(tmp_path: Path, tree: Path, source: str,
                                       error: type[Exception], fragment: str) -> None:
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    (tmp_path / "empty" / "sub" / "readme.txt").write_text("no images here")
    with pytest.raises(error, match=fragment) as info:
        expand_sources([tree / "a", tmp_path / source])
    assert str(info.value).startswith(f"{tmp_path / source}: ")


def test_no_sources_at_all() -> None:
    with pytest.raises(UserInputError, match="no image or video"):
        expand_sources([])


def test_plan_mirrors_the_tree_and_separates_equal_names(tmp_path: Path, tree: Path) -> None:
    other = tmp_path / "other"
    other.mkdir()
    (other / "x.png").write_bytes(b"x")
    out = tmp_path / "out"
    plan = plan_outputs(expand_sources([tree, other, f"{tree}/c/*.mp4"]), out)
    assert plan.images == [out / "a/b/x.png", out / "a/y.jpg", out / "c/x.png", out / "x.png"]
    assert plan.jsonl == out / "detections.jsonl"
    assert plan.videos == [(out / "c/clip.mp4", out / "c/clip.jsonl")]  # listed once
    twice = plan_outputs(expand_sources([f"{tree}/c/x.png", other / "x.png"]), out)
    assert twice.images == [out / "x.png", out / "x_2.png"]


def test_plan_refuses_to_write_over_the_inputs(tree: Path) -> None:
    with pytest.raises(UserInputError, match="would overwrite this input") as info:
        plan_outputs(expand_sources([tree]), tree)
    assert str(info.value).startswith(f"{tree / 'a' / 'b' / 'x.png'}: ")
    with pytest.raises(UserInputError, match="would overwrite this input"):
        plan_outputs(expand_sources([tree / "c"]), tree / "c")  # the video's copy too
    # a file named on its own keeps the older rule: its copy is renamed, not refused
    plan = plan_outputs(expand_sources([tree / "a" / "y.jpg"]), tree / "a")
    assert plan.images == [tree / "a" / "y_2.jpg"]


def test_plan_refuses_an_output_folder_that_is_a_file(tree: Path) -> None:
    with pytest.raises(UserInputError, match="is an existing file"):
        plan_outputs(expand_sources([tree / "a"]), tree / "notes.txt")


def test_without_an_output_folder_nothing_is_written_and_videos_are_refused(tree: Path) -> None:
    plan = plan_outputs(expand_sources([tree / "a"]), None)
    assert plan.images == [None, None] and plan.jsonl is None and plan.videos == []
    with pytest.raises(UserInputError, match="name an output folder"):
        plan_outputs(expand_sources([tree / "c"]), None)


def test_single_image_plan_is_the_old_save_file(tree: Path, tmp_path: Path) -> None:
    one = expand_sources([tree / "a" / "y.jpg"])
    assert single_image_plan(one, tmp_path / "shown.png").images == [tmp_path / "shown.png"]
    assert single_image_plan(one, tmp_path / "folder") is None  # no image suffix: a folder
    assert single_image_plan(expand_sources([tree / "a"]), tmp_path / "x.png") is None
    with pytest.raises(UserInputError, match="would overwrite this input"):
        single_image_plan(one, tree / "a" / "y.jpg")


def test_annotated_paths_keeps_its_rule_for_files_named_on_their_own(tmp_path: Path) -> None:
    out = tmp_path / "out"
    inputs = [out / "a.jpg", tmp_path / "x" / "b.jpg", tmp_path / "y" / "b.jpg"]
    assert annotated_paths(inputs, out) == [out / "a_2.jpg", out / "b.jpg", out / "b_2.jpg"]
    mirrored = annotated_paths(inputs[1:], out, relative=[Path("x/b.jpg"), Path("y/b.jpg")])
    assert mirrored == [out / "x" / "b.jpg", out / "y" / "b.jpg"]
