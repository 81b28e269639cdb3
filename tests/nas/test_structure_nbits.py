"""Structure files with TinyNAS's own class names and bit-width fields (interop extension)."""

from __future__ import annotations

import pytest

from damo_core.models.backbones.structure import StructureError, format_tinynas, parse_tinynas

TINYNAS_NATIVE = """[{'class': 'ConvKXBNRELU', 'in': 3, 'k': 3, 'nbitsA': 8, 'nbitsW': 6,
  'out': 16, 's': 1},
 {'L': 1, 'btn': 16, 'class': 'SuperResK1KX', 'in': 16, 'inner_class': 'ResK1KX', 'k': 3,
  'nbitsA': [8, 4], 'nbitsW': [8, 5], 'out': 32, 's': 2}]"""


def test_tinynas_class_names_and_bits_are_read_and_kept():
    stages = parse_tinynas(TINYNAS_NATIVE)
    assert [s.block for s in stages] == ["conv", "res_k1kx"]
    assert (stages[0].nbits_a, stages[0].nbits_w) == (8, 6)
    assert (stages[1].nbits_a, stages[1].nbits_w) == ((8, 4), (8, 5))
    text = format_tinynas(stages, with_nbits=True)
    assert "'nbitsA': [8, 4]" in text and "SuperResConvK1KX" in text
    again = parse_tinynas(text)
    assert again == stages and again[1].nbits_w == (8, 5)


def test_bad_bit_width_names_field():
    text = TINYNAS_NATIVE.replace("'nbitsW': 6", "'nbitsW': 'eight'")
    with pytest.raises(StructureError, match=r"structure\[0\].nbitsW = 'eight'"):
        parse_tinynas(text, source="s.txt")
