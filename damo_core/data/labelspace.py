"""A unified label space over several sources: the editable CSV mapping and its proposal.

The mapping file is CSV (``#`` lines are comments) with a ``name`` column (the unified class),
one column per source (its class ids or names, several joined by ``|`` for a merge; OpenImages
by MID) and an optional free-text ``origin`` column saying where the row comes from. A row
named ``__drop__`` lists source classes dropped on purpose. Every source class must appear at
most once; a class listed in the file but absent from its source is an error (a typo would
otherwise silently drop a class), while source classes the file does not list are reported
and their boxes dropped and counted by :mod:`damo_core.data.unify`.

Why proposals never merge on a name alone: "mouse" is a computer mouse in COCO and
Objects365 but a rodent in OpenImages (/m/04rmv), whose computer mouse is /m/020lf. Known
senses are keyed by source id where ids exist; names known to be ambiguous and not
disambiguated by such an entry stay apart and are reported as collisions.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from damo_core.data.errors import DatasetError
from damo_core.data.formats.base import SourceClass
from damo_core.errors import UserInputError
from damo_core.resources import read_data_text

__all__ = ["DROP", "PRESETS", "LabelSpace", "Proposal", "UnifiedClass", "load_preset",
           "normalise", "propose", "write_label_space"]

DROP = "__drop__"
PRESETS: dict[str, str] = {"coco-o365-oi": "coco-o365-oi.csv"}
_RESERVED = ("name", "origin")

# Spelling variants across COCO / Objects365 / OpenImages / VOC for the *same* thing.
SYNONYMS: dict[str, str] = {
    "aeroplane": "airplane", "motorbike": "motorcycle", "tvmonitor": "tv",
    "tv monitor": "tv", "television": "tv", "diningtable": "dining table",
    "pottedplant": "potted plant", "houseplant": "potted plant", "sofa": "couch",
    "cell phone": "mobile phone", "doughnut": "donut", "ski": "skis",
    "sports ball": "ball",
}
# Senses pinned by source id (OpenImages MIDs) or by name within a source format.
KNOWN_SENSES: dict[tuple[str, str], str] = {
    ("coco", "mouse"): "computer mouse",
    ("o365", "mouse"): "computer mouse",
    ("oi", "/m/020lf"): "computer mouse",
    ("oi", "/m/04rmv"): "mouse (rodent)",
    ("coco", "bat"): "baseball bat",
    ("oi", "/m/01h44"): "bat (animal)",
}
# Names with more than one common sense: without a KNOWN_SENSES entry they are never merged.
AMBIGUOUS: frozenset[str] = frozenset({"mouse", "bat", "crane", "seal", "glasses", "monitor",
                                       "tank", "pitcher", "mole", "jaguar", "nail"})


def normalise(name: str) -> str:
    """Lowercase, ``_ - /`` as spaces, collapsed whitespace: how names are compared."""
    return re.sub(r"\s+", " ", re.sub(r"[_\-/]", " ", name.lower())).strip()


@dataclass(frozen=True)
class UnifiedClass:
    """One unified class: ``members[source]`` are that source's class ids or names."""

    name: str
    members: Mapping[str, tuple[str, ...]]
    origin: str = ""


@dataclass
class LabelSpace:
    """The unified classes in id order, the sources they cover and the dropped classes."""

    sources: tuple[str, ...]
    classes: list[UnifiedClass]
    dropped: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    where: str = "label space"  # the file it came from, for error messages

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.classes]

    # -- CSV ---------------------------------------------------------------------------------
    @classmethod
    def from_csv(cls, text: str, where: str) -> LabelSpace:
        """Parse and validate a mapping file (``where`` names it in errors)."""
        numbered = [(no, ln) for no, ln in enumerate(text.splitlines(), start=1)
                    if ln.strip() and not ln.lstrip().startswith("#")]
        rows = list(csv.reader(ln for _, ln in numbered))
        if len(rows) != len(numbered):
            raise DatasetError(f"{where}: quoted fields must not span lines")
        if not rows or "name" not in rows[0]:
            raise DatasetError(f"{where}: mapping needs a header row with a 'name' column")
        header = [h.strip() for h in rows[0]]
        sources = tuple(h for h in header if h not in _RESERVED)
        if not sources:
            raise DatasetError(f"{where}: header {header} has no source columns")
        classes: list[UnifiedClass] = []
        dropped: dict[str, tuple[str, ...]] = {}
        seen_names: dict[str, int] = {}
        seen_members: dict[tuple[str, str], tuple[int, str]] = {}
        for (rowno, _), row in zip(numbered[1:], rows[1:], strict=True):  # rowno: file line
            if len(row) != len(header):
                raise DatasetError(f"{where}: row {rowno}: {len(row)} fields, header has "
                                   f"{len(header)}")
            cells = dict(zip(header, (c.strip() for c in row), strict=True))
            name = cells["name"]
            if not name:
                raise DatasetError(f"{where}: row {rowno}: field 'name' is empty")
            if name != DROP and name in seen_names:
                raise DatasetError(f"{where}: row {rowno}: unified name {name!r} already used "
                                   f"in row {seen_names[name]}")
            seen_names[name] = rowno
            members = {s: tuple(m.strip() for m in cells[s].split("|") if m.strip())
                       for s in sources}
            for source, items in members.items():
                for item in items:
                    if (source, item) in seen_members:
                        first_row, first_name = seen_members[source, item]
                        raise DatasetError(
                            f"{where}: row {rowno} ({name}): source {source!r} class {item!r} "
                            f"is mapped twice (also row {first_row}, {first_name!r})")
                    seen_members[source, item] = (rowno, name)
            if name == DROP:
                for source, items in members.items():
                    dropped[source] = dropped.get(source, ()) + items
                continue
            if not any(members.values()):
                raise DatasetError(f"{where}: row {rowno} ({name}): no source class is mapped")
            classes.append(UnifiedClass(name, {s: v for s, v in members.items() if v},
                                        cells.get("origin", "")))
        if not classes:
            raise DatasetError(f"{where}: mapping has no classes")
        return cls(sources, classes, dropped, where)

    def to_csv(self, header_comment: str = "") -> str:
        out = io.StringIO()
        for line in header_comment.splitlines():
            out.write(f"# {line}\n" if line else "#\n")
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(["name", *self.sources, "origin"])
        for c in self.classes:
            writer.writerow([c.name, *("|".join(c.members.get(s, ())) for s in self.sources),
                             c.origin])
        if any(self.dropped.values()):
            writer.writerow([DROP, *("|".join(self.dropped.get(s, ())) for s in self.sources),
                             "dropped on purpose"])
        return out.getvalue()

    def to_json(self) -> dict[str, Any]:
        """What ``label_space.json`` holds (ids are list positions)."""
        return {"num_classes": len(self.classes), "sources": list(self.sources),
                "classes": [{"id": i, "name": c.name, "members": dict(c.members),
                             "origin": c.origin} for i, c in enumerate(self.classes)],
                "dropped": dict(self.dropped)}

    # -- resolution --------------------------------------------------------------------------
    def resolve(self, source: str, classes: Sequence[SourceClass],
                where: str | None = None) -> np.ndarray:
        """``lut[source label] = unified id`` (``-1`` for unlisted or dropped classes).

        A mapping entry matches a source class by id first, then exact name, then normalised
        name; an entry matching nothing, or a source class reached twice, is an error.
        """
        where = where or self.where
        if source not in self.sources:
            raise DatasetError(f"{where}: has no column for source {source!r} "
                               f"(columns: {list(self.sources)})")
        finder = _ClassFinder(classes)
        lut = np.full(len(classes), -1, dtype=np.int32)
        owner: dict[int, str] = {}
        targets = [(i, c.name, c.members.get(source, ())) for i, c in enumerate(self.classes)]
        targets.append((-1, DROP, self.dropped.get(source, ())))
        for uid, uname, items in targets:
            for item in items:
                index = finder.find(item)
                if index is None:
                    raise DatasetError(
                        f"{where}: class {uname!r}: source {source!r} has no class {item!r} "
                        f"(by id or name among its {len(classes)} classes)")
                if index in owner:
                    raise DatasetError(
                        f"{where}: source {source!r} class {classes[index].name!r} is mapped "
                        f"twice ({owner[index]!r} and {uname!r})")
                owner[index] = uname
                lut[index] = uid
        return lut


class _ClassFinder:
    """Find a source class by id, exact name or normalised name (unique matches only)."""

    def __init__(self, classes: Sequence[SourceClass]) -> None:
        self.by_key = {c.key: i for i, c in enumerate(classes)}
        self.by_name: dict[str, list[int]] = defaultdict(list)
        self.by_norm: dict[str, list[int]] = defaultdict(list)
        for i, c in enumerate(classes):
            self.by_name[c.name].append(i)
            self.by_norm[normalise(c.name)].append(i)

    def find(self, item: str) -> int | None:
        if item in self.by_key:
            return self.by_key[item]
        for table, key in ((self.by_name, item), (self.by_norm, normalise(item))):
            hits = table.get(key, [])
            if len(hits) == 1:
                return hits[0]
        return None


def load_preset(name: str) -> LabelSpace:
    """A label space shipped as package data (see :data:`PRESETS`)."""
    if name not in PRESETS:
        raise DatasetError(f"unknown label-space preset {name!r}; choose from {list(PRESETS)}")
    return LabelSpace.from_csv(_preset_text(name), f"preset {name}")


def _preset_text(name: str) -> str:
    """The preset file as shipped (with its provenance comments)."""
    return read_data_text("data", "label_spaces", PRESETS[name])


# -- proposal ---------------------------------------------------------------------------------
@dataclass
class Proposal:
    """A proposed label space plus what a person should review before using it."""

    label_space: LabelSpace
    merges: list[dict[str, Any]]
    collisions: list[dict[str, Any]]
    unmatched: list[dict[str, str]]

    def report(self) -> dict[str, Any]:
        return {"num_classes": len(self.label_space.classes), "merges": self.merges,
                "collisions": self.collisions, "unmatched": self.unmatched}


@dataclass(frozen=True)
class _Member:
    source: str
    fmt: str
    cls: SourceClass

    @property
    def ref(self) -> str:
        """How the mapping file cites it: OpenImages by MID, others by (readable) name."""
        return self.cls.key if self.fmt == "oi" else self.cls.name

    def describe(self) -> dict[str, str]:
        return {"source": self.source, "id": self.cls.key, "name": self.cls.name}


def _sense(m: _Member, synonyms: Mapping[str, str]) -> tuple[str, bool]:
    """(canonical meaning, whether it is pinned) for one source class."""
    norm = normalise(m.cls.name)
    for key in (m.cls.key, norm):
        if (m.fmt, key) in KNOWN_SENSES:
            return KNOWN_SENSES[m.fmt, key], True
    return synonyms.get(norm, norm), False


def propose(sources: Mapping[str, tuple[str, Sequence[SourceClass]]],
            synonyms: Mapping[str, str] | None = None) -> Proposal:
    """Propose a label space from ``{source name: (format, classes)}``.

    Classes join when their canonical meaning (pinned sense, else synonym, else normalised
    name) is equal -- except an ambiguous name without a pinned sense, and two classes of the
    same source (its ids say they differ): those stay apart and are reported as collisions.
    """
    table = {**SYNONYMS, **(synonyms or {})}
    groups: dict[str, list[_Member]] = defaultdict(list)
    by_norm: dict[str, set[str]] = defaultdict(set)
    collisions: list[dict[str, Any]] = []
    for source, (fmt, classes) in sources.items():
        for cls in classes:
            m = _Member(source, fmt, cls)
            meaning, pinned = _sense(m, table)
            if meaning in AMBIGUOUS and not pinned:
                collisions.append({"name": cls.name, "members": [m.describe()],
                                   "resolution": "ambiguous name without a known sense: "
                                                 "kept as its own class"})
                meaning = f"{meaning} [{source}]"
            groups[meaning].append(m)
            by_norm[normalise(cls.name)].add(meaning)
    classes, merges, unmatched = _group_classes(groups, collisions)
    for norm, meanings in sorted(by_norm.items()):
        if len(meanings) > 1:
            collisions.append({"name": norm, "meanings": sorted(meanings),
                               "resolution": "same name, different meanings: kept apart"})
    names = tuple(sources)
    return Proposal(LabelSpace(names, classes), merges, collisions, unmatched)


def _group_classes(groups: Mapping[str, list[_Member]], collisions: list[dict[str, Any]]
                   ) -> tuple[list[UnifiedClass], list[dict[str, Any]], list[dict[str, str]]]:
    classes: list[UnifiedClass] = []
    merges: list[dict[str, Any]] = []
    unmatched: list[dict[str, str]] = []
    for meaning, members in groups.items():
        per_source: dict[str, list[_Member]] = defaultdict(list)
        for m in members:
            per_source[m.source].append(m)
        if any(len(v) > 1 for v in per_source.values()):
            collisions.append({"name": meaning, "members": [m.describe() for m in members],
                               "resolution": "one source has several classes of this name: "
                                             "each kept as its own class"})
            for m in members:
                classes.append(UnifiedClass(f"{meaning} [{m.source}:{m.cls.key}]",
                                            {m.source: (m.cls.key,)}, "proposed: split"))
            continue
        mapped = {s: (v[0].ref,) for s, v in per_source.items()}
        if len(per_source) > 1:
            merges.append({"name": meaning, "members": [m.describe() for m in members]})
            origin = "proposed: merged " + ", ".join(
                f"{m.source}:{m.cls.name}" for m in members)
        else:
            unmatched.append(members[0].describe())
            origin = f"proposed: only in {members[0].source}"
        classes.append(UnifiedClass(meaning, mapped, origin))
    return classes, merges, unmatched


def write_label_space(out: str, *, sources: Sequence[str] = (), preset: str | None = None
                      ) -> dict[str, Any]:
    """``damo data labelspace``: write a preset, or a proposal from ``sources`` (specs as for
    :func:`damo_core.data.formats.parse_source`), as an editable CSV at ``out`` (local path
    or ``s3://``); a proposal's review report goes to ``<out>.report.json``."""
    from damo_core.data.formats import open_source, parse_source
    from damo_core.storage import open_store

    if bool(preset) == bool(sources):
        raise UserInputError("give either --preset or at least one --source, not both")
    store_uri, _, key = out.rpartition("/")
    store = open_store(store_uri or ".")
    if preset:
        space = load_preset(name=preset)  # validates the name and the file
        store.write_text(key, _preset_text(preset))
        return {"out": store.uri(key), "num_classes": len(space.classes)}
    specs = [parse_source(s) for s in sources]
    readers = {s.name: open_source(s) for s in specs}
    proposal = propose({n: (r.format_name, r.classes) for n, r in readers.items()})
    header = ("Proposed by `damo data labelspace` from: "
              + ", ".join(s.uri for s in specs)
              + "\nReview the collisions in the report, then edit rows (merge with |, "
              "move classes to __drop__).")
    store.write_text(key, proposal.label_space.to_csv(header))
    report = proposal.report()
    store.write_text(f"{key}.report.json", json.dumps(report, indent=1))
    return {"out": store.uri(key), "report": store.uri(f"{key}.report.json"),
            "num_classes": report["num_classes"], "merges": len(report["merges"]),
            "collisions": len(report["collisions"]), "unmatched": len(report["unmatched"])}
