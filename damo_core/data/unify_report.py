"""The unify step's page in the KFP UI: what each source brought, and what was lost on the way.

Why a page: unification silently decides a lot (which classes merge, which are dropped, how
often each source is drawn), and the person starting a 300-epoch training should see those
decisions before the GPUs do. The page is Markdown (KFP's Markdown viewer) with the two
sampling plots embedded as data URIs, so it needs nothing but the artifact itself.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping, Sequence
from typing import Any

from damo_core.storage import open_store

__all__ = ["unify_markdown"]

_PLOTS = (("source_share.png", "Source shares before and after smoothing"),
          ("class_frequency.png", "Boxes per class, once per epoch and as drawn"))


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return lines


def unify_markdown(manifest: str, collisions: Sequence[Mapping[str, Any]] = ()) -> str:
    """The page for the manifest directory ``manifest`` (``collisions``: those of a proposed
    label space; a given mapping has none)."""
    from damo_core.data.unify import read_summary

    store = open_store(manifest)
    summary = read_summary(manifest)
    space = json.loads(store.read_text("label_space.json"))
    sampling = summary.get("sampling", {})
    shares = sampling.get("source_shares", {})
    lines = [f"# Unified data: {summary['num_images']} images, {summary['num_boxes']} boxes, "
             f"{summary['num_classes']} classes", "",
             f"Splits: {summary.get('splits', {})}. Manifest: `{store.uri()}`.", ""]
    rows = [[name, st["format"], st["images"], st["boxes"], st.get("splits", {}),
             st["clipped"], st["dropped_outside"], st["dropped_unmapped"],
             st.get("skipped") or 0, f"{shares.get(name, 0):.1%}"]
            for name, st in summary["sources"].items()]
    lines += _table(["source", "format", "images", "boxes", "splits", "clipped",
                     "dropped outside", "dropped unmapped", "skipped", "drawn share"], rows)
    lines += ["", "## Dropped classes", ""]
    dropped = [[name, k, n] for name, st in summary["sources"].items()
               for k, n in st.get("unmapped_classes", {}).items()]
    lines += (_table(["source", "class", "boxes dropped"], dropped) if dropped
              else ["No box was dropped for its class."])
    on_purpose = {s: list(v) for s, v in space.get("dropped", {}).items() if v}
    if on_purpose:
        lines += ["", f"Dropped on purpose by the mapping: {on_purpose}."]
    lines += ["", "## Name collisions", ""]
    lines += ([f"- **{c.get('name')}**: {c.get('resolution', '')} "
               f"({c.get('meanings') or [m.get('source') for m in c.get('members', [])]})"
               for c in collisions] if collisions
              else ["None reported (a given mapping decides every merge)."])
    lines += ["", "## Sampling", "",
              f"Training draws by these weights: {'yes' if sampling.get('enabled') else 'no'}"
              f" (alpha {sampling.get('alpha')}, rare-class threshold "
              f"{sampling.get('rfs_threshold')}).", ""]
    for key, title in _PLOTS:
        if store.exists(key):
            data = base64.b64encode(store.read_bytes(key)).decode()
            lines += [f"![{title}](data:image/png;base64,{data})", ""]
    return "\n".join(lines)
