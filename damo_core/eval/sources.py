"""What ``damo predict`` and ``damo infer`` are given, and where their results go.

Users have image files, folders of them (nested by camera, day or class), glob patterns and
videos, not a manifest. :func:`expand_sources` turns the command line's arguments into one
ordered list of :class:`MediaFile`: a directory is searched recursively, a pattern is
expanded, a video is marked as one. Every image found under a directory or a pattern's fixed
prefix keeps its path relative to that root, so the results mirror the input tree; an image
named on its own keeps only its file name. The list is sorted within each argument, so two
runs over the same files name their outputs the same way.

:func:`plan_outputs` decides every output path before any work starts. It reuses
:func:`annotated_paths`, so two inputs whose results would meet (``x.png`` under two roots)
get ``x.png`` and ``x_2.png``, and it refuses a plan in which a mirrored result would
overwrite an input (``--out`` equal to the input folder): renaming results inside the user's
own tree would mix them into the inputs. This module reads the file system only; it imports
neither torch nor PyAV, so a typo is reported before a model is loaded or a server contacted.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from damo_core.errors import InputNotFoundError, UserInputError

__all__ = [
    "IMAGE_SUFFIXES",
    "VIDEO_SUFFIXES",
    "MediaFile",
    "OutputPlan",
    "annotated_paths",
    "expand_sources",
    "free_path",
    "is_glob",
    "plan_outputs",
    "single_image_plan",
]

# What a directory or a pattern yields, by suffix (case-insensitive). A file named on its own
# is taken whatever its suffix: it is an image unless its suffix is a video's.
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif")
# Not ".ts": in a folder that is as likely TypeScript as an MPEG transport stream.
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv",
                  ".flv", ".mts", ".m2ts", ".3gp")
_MAGIC = frozenset("*?[")


@dataclass(frozen=True)
class MediaFile:
    """One input file: an image or a video.

    ``rel`` is the path below the directory or pattern root it was found under, or None for a
    file named on its own (whose result takes only its file name)."""

    path: Path
    rel: Path | None
    video: bool

    @property
    def out_rel(self) -> Path:
        """The result's path below the output folder, before any ``_2`` is added."""
        return self.rel if self.rel is not None else Path(self.path.name)


def is_glob(text: str) -> bool:
    """Whether ``text`` is a pattern (``*``, ``?``, ``[``; ``**`` spans folders)."""
    return not _MAGIC.isdisjoint(text)


def _is_video(path: Path) -> bool:
    return path.suffix.lower() in VIDEO_SUFFIXES


def _is_media(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES or _is_video(path)


def _walk(root: Path) -> Iterator[Path]:
    """Media files below ``root``, relative to it and sorted. Hidden files and folders (a
    leading dot: ``.git``, ``.ipynb_checkpoints``, this project's temporary files) are
    skipped, as a shell's ``*`` skips them; symbolic links to folders are not followed, so a
    link cycle cannot loop."""
    found = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        here = Path(folder).relative_to(root)
        found += [here / f for f in files if not f.startswith(".") and _is_media(Path(f))]
    return iter(sorted(found, key=lambda p: p.as_posix()))


def _glob_root(pattern: str) -> Path:
    """The pattern's leading folders before the first component with a wildcard: what its
    matches' relative paths are taken from (``photos/**/*.jpg`` → ``photos``)."""
    parts = Path(pattern).parts
    fixed = []
    for part in parts[:-1]:
        if is_glob(part):
            break
        fixed.append(part)
    return Path(*fixed) if fixed else Path(".")


def _expand_glob(pattern: str) -> list[MediaFile]:
    root = _glob_root(pattern)
    rest = Path(pattern).relative_to(root) if root != Path(".") else Path(pattern)
    found: list[MediaFile] = []
    for match in sorted(glob.glob(str(rest), root_dir=root, recursive=True)):
        rel = Path(match)
        if (root / rel).is_dir():  # a matched folder is searched like a folder argument
            found += [MediaFile(root / rel / r, rel / r, _is_video(r)) for r in _walk(root / rel)]
        elif _is_media(rel):
            found.append(MediaFile(root / rel, rel, _is_video(rel)))
    if not found:
        raise InputNotFoundError(f"{pattern}: the pattern matches no image or video file "
                                 f"(looked for {', '.join(IMAGE_SUFFIXES + VIDEO_SUFFIXES)})")
    return found


def _expand_one(source: str | Path) -> list[MediaFile]:
    path = Path(source)
    if path.is_dir():
        found = [MediaFile(path / rel, rel, _is_video(rel)) for rel in _walk(path)]
        if not found:
            raise InputNotFoundError(
                f"{path}: the directory holds no image or video file (searched recursively "
                f"for {', '.join(IMAGE_SUFFIXES + VIDEO_SUFFIXES)})")
        return found
    if path.is_file():
        return [MediaFile(path, None, _is_video(path))]
    if path.exists():  # a socket, a device
        raise UserInputError(f"{path}: not a regular file or directory")
    if is_glob(str(source)):  # a name with a literal '[' that exists is taken as a file above
        return _expand_glob(str(source))
    raise InputNotFoundError(f"{path}: no such file or directory")


def expand_sources(sources: Iterable[str | Path]) -> list[MediaFile]:
    """Every image and video the arguments name, in argument order.

    A directory gives all images and videos below it (recursively, sorted; see
    :data:`IMAGE_SUFFIXES` and :data:`VIDEO_SUFFIXES`); a pattern its matching ones (``**``
    spans any depth; a matched folder is searched); a file itself. A file reached twice (a
    folder and a file in it) is listed once, where it was first reached. A missing path, a
    pattern without a match and a folder without media are each an error naming the
    argument, raised before anything is read."""
    media: list[MediaFile] = []
    seen: set[Path] = set()
    for source in sources:
        for item in _expand_one(source):
            key = item.path.resolve()
            if key not in seen:
                seen.add(key)
                media.append(item)
    if not media:
        raise UserInputError("no image or video to predict on: name files, directories or "
                             "patterns")
    return media


# ----------------------------------------------------------------------------- output names


def annotated_paths(images: Sequence[str | Path], out_dir: str | Path, *,
                    relative: Sequence[Path | None] | None = None,
                    taken: set[Path] | None = None) -> list[Path]:
    """Where each input's annotated copy goes.

    An image without a relative path (named on its own) goes to ``out_dir/<name>``, unless
    that would overwrite an input or another input's result (same file name from two
    folders); then it becomes ``<stem>_2<suffix>``, ``_3``... An image with a relative path
    (found under a folder or pattern root) goes to ``out_dir/<relative path>``, mirroring its
    tree; if that is an input file the plan is refused (:class:`UserInputError`), since
    renaming inside the user's tree would mix results into the inputs. Results that meet each
    other get ``_2``, ``_3``... either way, so a run never destroys what it was given or loses
    a result. ``taken`` (resolved paths) holds names already handed out and is updated.
    """
    out_dir = Path(out_dir)
    paths = [Path(p) for p in images]
    inputs = {p.resolve() for p in paths}
    avoid = inputs | (taken if taken is not None else set())
    targets = []
    for image, rel in zip(paths, relative or [None] * len(paths), strict=True):
        if rel is None:
            targets.append(free_path(out_dir, image.stem, image.suffix, avoid))
            continue
        _refuse_input(out_dir / rel, inputs)
        targets.append(free_path(out_dir / rel.parent, rel.stem, rel.suffix, avoid))
    if taken is not None:
        taken |= avoid
    return targets


def free_path(out_dir: Path, stem: str, suffix: str, avoid: set[Path]) -> Path:
    """``out_dir/<stem><suffix>``, else the first free ``<stem>_2<suffix>``, ``_3``...: one
    not in ``avoid`` (resolved paths: inputs and targets already handed out), then added."""
    return free_paths(out_dir, stem, (suffix,), avoid)[0]


def free_paths(out_dir: Path, stem: str, suffixes: Sequence[str],
               avoid: set[Path]) -> list[Path]:
    """:func:`free_path` for files that belong together (a video and its frame records): one
    stem, ``_2``... counted until every suffix is free, so the pair keeps one name."""
    k, name = 2, stem
    while any((out_dir / f"{name}{s}").resolve() in avoid for s in suffixes):
        name, k = f"{stem}_{k}", k + 1
    targets = [out_dir / f"{name}{s}" for s in suffixes]
    avoid.update(t.resolve() for t in targets)
    return targets


def _refuse_input(target: Path, inputs: set[Path]) -> None:
    if target.resolve() in inputs:
        raise UserInputError(
            f"{target}: the result would overwrite this input file; write the results to a "
            "folder outside the input folders")


@dataclass(frozen=True)
class OutputPlan:
    """Every file a run writes, decided before it starts.

    ``images`` has one entry per image in input order (None: detections only, nothing drawn);
    ``jsonl`` is the images' ``detections.jsonl`` (None: not written); ``videos`` has one
    ``(annotated video, frame records)`` pair per video."""

    images: list[Path | None]
    jsonl: Path | None
    videos: list[tuple[Path, Path]]


def plan_outputs(media: Sequence[MediaFile], out_dir: str | Path | None) -> OutputPlan:
    """The output files for ``media`` under ``out_dir``: each image's annotated copy at its
    mirrored path (see :func:`annotated_paths`), ``detections.jsonl`` when there are images,
    and per video ``<name>.mp4`` plus ``<name>.jsonl`` at its mirrored path (an MP4 whatever
    the input's container). ``out_dir`` None writes nothing, which a video cannot do.

    Refused before any work: a folder's or pattern's file whose result would overwrite an
    input (a file named on its own is given a ``_2`` name instead), and an ``out_dir`` that
    is an existing file."""
    images = [m for m in media if not m.video]
    videos = [m for m in media if m.video]
    if out_dir is None:
        if videos:
            raise UserInputError(f"{videos[0].path}: a video's results are an annotated video "
                                 "and a JSON-lines file; name an output folder for them")
        return OutputPlan([None] * len(images), None, [])
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise UserInputError(f"{out_dir}: the output folder is an existing file")
    inputs = {m.path.resolve() for m in media}
    taken = set(inputs)
    jsonl = None
    if images:
        jsonl = free_path(out_dir, "detections", ".jsonl", taken)
    targets = annotated_paths([m.path for m in images], out_dir,
                              relative=[m.rel for m in images], taken=taken)
    pairs = []
    for video in videos:
        rel = video.out_rel
        if video.rel is not None:
            _refuse_input(out_dir / rel.with_suffix(".mp4"), inputs)
        mp4, lines = free_paths(out_dir / rel.parent, rel.stem, (".mp4", ".jsonl"), taken)
        pairs.append((mp4, lines))
    return OutputPlan(list(targets), jsonl, pairs)


def single_image_plan(media: Sequence[MediaFile], target: str | Path) -> OutputPlan | None:
    """The one-image plan ``damo infer IMAGE --save FILE.png`` has always had: the annotated
    image at exactly ``target``, no detections file. None when ``media`` is not one image
    file named on its own or ``target``'s suffix is not an image's (then it is a folder).
    Refused when ``target`` is the input itself."""
    target = Path(target)
    if (len(media) != 1 or media[0].video or media[0].rel is not None
            or target.suffix.lower() not in IMAGE_SUFFIXES or target.is_dir()):
        return None
    _refuse_input(target, {media[0].path.resolve()})
    return OutputPlan([target], None, [])
