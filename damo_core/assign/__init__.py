"""Label assignment: which anchors are trained as positives for which gt box."""

from damo_core.assign.align_ota import Assignment, assign

__all__ = ["Assignment", "assign"]
