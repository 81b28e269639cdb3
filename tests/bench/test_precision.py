"""Which precision runs where: cpuinfo parsing, the BF16 refusal, and ``auto``'s choice rule
on measured rows (fastest within the accuracy limit, FP32 the fallback)."""

from __future__ import annotations

from pathlib import Path

import pytest

from damo_core.bench.precision import (
    AP50_LOSS_LIMIT,
    Measured,
    auto_candidates,
    check_precision,
    choose,
    cpu_features,
    parse_cpuinfo,
    require_supported,
    supported,
)
from damo_core.errors import UserInputError

XEON = ("processor\t: 0\nmodel name\t: Intel(R) Xeon(R) Platinum 8480+\n"
        "flags\t\t: fpu sse2 avx2 avx512f avx512_vnni avx512_bf16 amx_bf16 amx_int8 amx_tile\n"
        "processor\t: 1\nmodel name\t: other\nflags\t\t: fpu\n")
EPYC = "processor\t: 0\nmodel name\t: AMD EPYC 7B13\nflags\t\t: fpu sse2 avx2 fma\n"


def test_cpuinfo_flags_decide_bf16_and_int8_dot() -> None:
    xeon, epyc = parse_cpuinfo(XEON), parse_cpuinfo(EPYC)
    assert xeon.model.startswith("Intel(R) Xeon") and epyc.model == "AMD EPYC 7B13"
    assert xeon.bf16 and xeon.amx and xeon.int8_dot
    assert not (epyc.bf16 or epyc.amx or epyc.int8_dot)
    assert xeon.summary()["bf16"] == "yes" and "amx_bf16" in xeon.summary()["isa"]
    assert epyc.summary() == {"isa": "avx2", "bf16": "no"}
    assert supported(xeon) == ("fp32", "bf16", "int8")
    assert supported(epyc) == ("fp32", "int8")
    assert auto_candidates(epyc, int8=False) == ["fp32"]


def test_env_variable_names_another_cpuinfo(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "cpuinfo").write_text(XEON)
    monkeypatch.setenv("DAMO_CPUINFO", str(tmp_path / "cpuinfo"))
    assert cpu_features().bf16
    monkeypatch.setenv("DAMO_CPUINFO", str(tmp_path / "missing"))
    assert cpu_features().flags == frozenset()


def test_bf16_refused_without_native_bf16() -> None:
    epyc = parse_cpuinfo(EPYC)
    with pytest.raises(UserInputError, match=r"AMD EPYC 7B13.*avx2"):
        require_supported("bf16", epyc)
    assert require_supported("BF16", parse_cpuinfo(XEON)) == "bf16"
    assert require_supported("int8", epyc) == "int8"
    with pytest.raises(UserInputError, match="must be resolved"):
        require_supported("auto", epyc)
    with pytest.raises(UserInputError, match=r"--precision: 'half' is not a precision"):
        check_precision("half", field="--precision")


def test_auto_takes_the_fastest_within_its_accuracy_limit() -> None:
    limit = AP50_LOSS_LIMIT["int8"]
    rows = [Measured("fp32", 10.0, 0.60), Measured("bf16", 4.0, 0.60 - 2 * AP50_LOSS_LIMIT["bf16"]),
            Measured("int8", 5.0, 0.60 - limit / 2)]
    precision, reason = choose(rows)
    assert precision == "int8"  # bf16 is faster but loses more than its limit
    assert "2.00x faster" in reason
    assert choose([Measured("fp32", 10.0, 0.6), Measured("int8", 5.0, 0.6 - 2 * limit)])[0] \
        == "fp32"
    assert choose([Measured("fp32", 10.0, 0.6), Measured("int8", 12.0, 0.6)])[0] == "fp32"
    assert choose([Measured("fp32", 10.0, 0.6), Measured("int8", 5.0, None)])[0] == "fp32"
    with pytest.raises(UserInputError, match="fp32"):
        choose([Measured("int8", 5.0, 0.6)])
