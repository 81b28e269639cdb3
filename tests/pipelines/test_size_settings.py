"""Per-size student settings: one size changes what it needs, the rest keep the shared ones."""

from __future__ import annotations

import pytest

from damo_core.errors import UserInputError
from damo_core.steps._training import settings_for_size

SHARED = {"epochs": 6, "img_size": 96, "augment": {"mosaic_prob": 1.0, "mixup_prob": 0.2}}


def test_a_size_entry_is_laid_over_the_shared_settings_section_by_section() -> None:
    per_size = {"M": {"epochs": 10, "augment": {"mixup_prob": 0.0}}}
    assert settings_for_size(SHARED, per_size, "M") == {
        "epochs": 10, "img_size": 96, "augment": {"mosaic_prob": 1.0, "mixup_prob": 0.0}}
    assert settings_for_size(SHARED, per_size, "S") == SHARED  # no entry: the shared ones
    assert settings_for_size(SHARED, per_size, "") == SHARED  # the teacher: none applies
    assert SHARED["augment"]["mixup_prob"] == 0.2  # the shared mapping is left as it was


def test_a_size_entry_may_add_a_section_the_shared_settings_lack() -> None:
    assert settings_for_size({}, {"T": {"augment": {"mosaic_prob": 0}}}, "T") == {
        "augment": {"mosaic_prob": 0}}
    assert settings_for_size(None, None, "T") == {}


@pytest.mark.parametrize(("per_size", "message"), [
    ({"L": {"epochs": 9}}, "student_size_settings: unknown size 'L'"),
    ({"M": [9]}, "student_size_settings.M = [9]: must be a mapping"),
])
def test_a_bad_entry_is_named(per_size: dict, message: str) -> None:
    with pytest.raises(UserInputError, match=message.replace("[", r"\[").replace("]", r"\]")):
        settings_for_size(SHARED, per_size, "M")
