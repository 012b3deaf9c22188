"""The saved fuzzing cases, replayed (issue 14 §1): every file under `tests/fuzz_cases/<target>/` goes through
that target's contract check, `fuzz.targets.check` (the same function the atheris harness `fuzz/run.py` calls
on each input, so a case means here what it meant to the fuzzer).

`corpus-*` files are the minimised corpus of a run (inputs that reached new code); `crash-*`, `timeout-*`
and `oom-*` files are inputs that once broke the contract, kept as regression files after the loader was
fixed. A crasher whose fix is still open is listed in OPEN with where it fails: it must still fail (a
strict xfail), so the entry goes once the loader is fixed.
"""
from __future__ import annotations

import time
from pathlib import Path

import pytest

from fuzz import targets

CASES = Path(__file__).resolve().parent / "fuzz_cases"
# target/file name -> why it still breaks the contract
OPEN: dict[str, str] = {}
SLOW = 10.0  # seconds: a case that takes longer is a hang (the fuzzer's -timeout is 20 s)


def _cases() -> list:
    out = []
    for d in sorted(p for p in CASES.iterdir() if p.is_dir()) if CASES.is_dir() else ():
        for f in sorted(p for p in d.iterdir() if p.is_file()):
            key = f"{d.name}/{f.name}"
            marks = [pytest.mark.xfail(strict=True, raises=targets.ContractViolation, reason=OPEN[key])] \
                if key in OPEN else []
            out.append(pytest.param(d.name, f, id=key, marks=marks))
    return out


def test_every_case_directory_is_a_target():
    dirs = {p.name for p in CASES.iterdir() if p.is_dir()}
    assert dirs, f"no saved fuzz cases under {CASES}"
    assert dirs <= set(targets.TARGETS), f"directories without a fuzz target: {sorted(dirs - set(targets.TARGETS))}"
    assert set(OPEN) <= {f"{p.parent.name}/{p.name}" for p in CASES.glob("*/*")}, "OPEN names a missing file"


@pytest.mark.filterwarnings("ignore")  # damaged files make h5py/PIL/numpy warn; only exceptions matter
@pytest.mark.parametrize("target, case", _cases())
def test_saved_case_keeps_the_contract(target, case, tmp_path):
    start = time.perf_counter()
    result = targets.check(target, case.read_bytes(), tmp_path)  # raises ContractViolation on a broken contract
    assert time.perf_counter() - start < SLOW, f"{case.name} took over {SLOW} s ({result}): a hang"
