"""TinyNAS structure text format: parse, write, round-trip, and clear errors."""

from __future__ import annotations

import pytest

from damo_core.models.backbones.structure import (
    StructureError,
    format_tinynas,
    parse_tinynas,
    read_structure_file,
)

TINYNAS_T = """[ {'class': 'ConvKXBNRELU', 'in': 3, 'k': 3, 'nbitsA': 8, 'nbitsW': 8,
    'out': 24, 's': 1},
  { 'L': 2, 'btn': 24, 'class': 'SuperResConvK1KX', 'in': 24, 'inner_class': 'ResConvK1KX',
    'k': 3, 'nbitsA': [8, 8, 8, 8], 'nbitsW': [8, 8, 8, 8], 'out': 64, 's': 2},
  { 'L': 1, 'btn': 64, 'class': 'SuperResConvKXKX', 'in': 64, 'inner_class': 'ResConvKXKX',
    'k': 5, 'out': 96, 's': 2}]"""


def test_parse_reads_tinynas_with_and_without_nbits():
    stages = parse_tinynas(TINYNAS_T)
    assert [s.block for s in stages] == ["conv", "res_k1kx", "res_kxkx"]
    assert (stages[1].depth, stages[1].btn, stages[1].out_channels) == (2, 24, 64)
    assert stages[2].kernel == 5


@pytest.mark.parametrize("with_nbits", [True, False])
def test_format_round_trips(with_nbits):
    stages = parse_tinynas(TINYNAS_T)
    text = format_tinynas(stages, with_nbits=with_nbits)
    assert parse_tinynas(text) == stages
    assert ("nbitsA" in text) is with_nbits


@pytest.mark.parametrize(
    ("text", "pattern"),
    [
        ("[{'class': 'Bogus', 'in': 3}]", r"structure\[0\].class = 'Bogus'"),
        ("{'class': 'ConvKXBNRELU'}", "expected a list"),
        ("[{'class': 'ConvKXBNRELU', 'in': 3, 'k': 3, 'out': 8}]", "lacks field 's'"),
        ("[{'class': 'ConvKXBNRELU', 'in': 3, 'k': 3, 'out': 8, 's': 3}]", "stride must be"),
        ("not python", "not a TinyNAS structure literal"),
    ],
)
def test_parse_errors_are_specific(text, pattern):
    with pytest.raises(StructureError, match=pattern):
        parse_tinynas(text, source="x.txt")


def test_unreadable_file_is_named(tmp_path):
    with pytest.raises(StructureError, match="gone.txt"):
        read_structure_file(tmp_path / "gone.txt")
