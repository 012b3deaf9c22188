#!/usr/bin/env python
"""Coverage-guided fuzzing of every file loader with atheris (libFuzzer for Python; `pip install atheris`).

    python -m fuzz.run                      # every target, 10,000 executions each (or python fuzz/run.py)
    python fuzz/run.py onnx keras --runs 50000
    python fuzz/run.py --list

For each target of `fuzz/targets.py`, the harness writes valid seed files (`targets.seeds()`) into a
fresh corpus directory, then runs that target in its own process (libFuzzer owns the process) for
`--runs` executions with the featuremaps package instrumented for coverage (every submodule is imported
inside `atheris.instrument_imports` before anything else imports featuremaps: a module imported earlier,
or lazily later, would run uninstrumented and the fuzzer would be blind). Each input is checked
against the contract (`targets.check`); a violation, a hang (`-timeout`) or an out-of-memory
(`-rss_limit_mb`) is a crash, saved by libFuzzer as `crash-*`/`timeout-*`/`oom-*`. Afterwards the
corpus is minimised by libFuzzer (`-merge=1`: the fewest inputs that keep its coverage) and saved with
every crasher under `tests/fuzz_cases/<target>/` (the smallest files first, at most `--keep-files`
files and `--keep-bytes` bytes per target; crashers always), where `tests/test_fuzz_cases.py` replays them.
The executions done per target are printed at the end (from libFuzzer's own `stat::number_of_executed_units`).
"""
from __future__ import annotations

import argparse
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
CASES = ROOT / "tests" / "fuzz_cases"
targets = None  # fuzz.targets, imported by main(): in the child only after the instrumentation is set up


def _instrumented_imports():
    """Import every featuremaps module with coverage instrumentation (featuremaps only: numpy, h5py, onnx
    stay fast). All of them, because loaders import some lazily (keras._npz, onnx._import, ...)."""
    import importlib
    import pkgutil

    import atheris
    assert "featuremaps" not in sys.modules, "featuremaps was imported before the instrumentation"
    with atheris.instrument_imports(include=["featuremaps"]):
        import featuremaps
        for m in pkgutil.walk_packages(featuremaps.__path__, "featuremaps."):
            try:
                importlib.import_module(m.name)
            except ImportError:  # an optional extra that is not installed (e.g. mpi4py)
                pass
    return atheris


def child(name: str, libfuzzer_args: list[str], atheris) -> None:
    """Inside the fuzzing process: one target, driven by libFuzzer."""
    import warnings
    warnings.simplefilter("ignore")  # damaged files make h5py/PIL/numpy warn; only exceptions matter
    # libFuzzer ends the process with exit(), past Python's atexit: the parent owns (and removes) the directory
    work = Path(os.environ.get("FM_FUZZ_WORK") or tempfile.mkdtemp(prefix=f"fm-fuzz-{name}-"))
    work.mkdir(parents=True, exist_ok=True)

    def one(data: bytes) -> None:
        targets.check(name, data, work)
        shutil.rmtree(work / "extracted", ignore_errors=True)

    atheris.Setup([sys.argv[0], *libfuzzer_args], one)
    atheris.Fuzz()


def _minimise(name: str, corpus: Path, base: Path, timeout: int) -> Path:
    """libFuzzer's `-merge=1` of `corpus` into a fresh directory: the fewest inputs with the same coverage
    (the full corpus back if the merge fails)."""
    merged = base / "merged"
    merged.mkdir()
    proc = subprocess.run([sys.executable, __file__, "--child", name, "--", "-merge=1", f"-timeout={timeout}",
                           "-rss_limit_mb=3072", f"-artifact_prefix={base}/merge-", str(merged), str(corpus)],
                          capture_output=True, text=True, cwd=ROOT,
                          env={**os.environ, "FM_FUZZ_WORK": str(base / "work")})
    return merged if proc.returncode == 0 and any(merged.iterdir()) else corpus


def _save(name: str, corpus: Path, crashes: Path, keep_bytes: int, keep_files: int) -> tuple[int, int]:
    out = CASES / name
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("corpus-*"):  # replaced by the new (minimised, superset-seeded) corpus
        old.unlink()
    kept = total = 0
    for f in sorted(corpus.iterdir(), key=lambda p: (p.stat().st_size, p.name)):
        if kept >= keep_files or total + f.stat().st_size > keep_bytes:
            break
        data = f.read_bytes()
        dest = out / f"corpus-{hashlib.sha1(data).hexdigest()[:16]}"
        if dest.exists():  # the same input twice (a seed also saved by an earlier run)
            continue
        dest.write_bytes(data)
        kept, total = kept + 1, total + len(data)
    crashed = 0
    for f in crashes.glob("*"):
        if f.name.startswith(("crash-", "timeout-", "oom-", "leak-")):
            shutil.copy(f, out / f.name)
            crashed += 1
    return kept, crashed


def parent(names: list[str], runs: int, keep_bytes: int, keep_files: int, timeout: int) -> int:
    all_seeds = targets.seeds()
    results, status = [], 0
    for name in names:
        base = Path(tempfile.mkdtemp(prefix=f"fm-fuzz-{name}-"))
        corpus, crashes = base / "corpus", base / "crashes"
        corpus.mkdir()
        crashes.mkdir()
        for i, data in enumerate(all_seeds[name]):
            (corpus / f"seed-{i}").write_bytes(data)
        for old in (CASES / name).glob("corpus-*") if (CASES / name).is_dir() else ():
            shutil.copy(old, corpus / old.name)  # continue from the saved corpus
        args = [f"-runs={runs}", f"-timeout={timeout}", "-rss_limit_mb=3072", "-print_final_stats=1",
                f"-artifact_prefix={crashes}/", str(corpus)]
        proc = subprocess.run([sys.executable, __file__, "--child", name, "--", *args], capture_output=True,
                              text=True, cwd=ROOT, env={**os.environ, "FM_FUZZ_WORK": str(base / "work")})
        log = proc.stdout + proc.stderr
        m = re.search(r"stat::number_of_executed_units:\s*(\d+)", log)
        executed = int(m.group(1)) if m else 0
        kept, crashed = _save(name, _minimise(name, corpus, base, timeout), crashes, keep_bytes, keep_files)
        if proc.returncode != 0 or crashed:
            status = 1
            tail = "\n".join(log.splitlines()[-30:])
            print(f"--- {name}: exit {proc.returncode}\n{tail}", file=sys.stderr)
        results.append((name, executed, kept, crashed))
        print(f"{name:12s} {executed:>8,} executions  {kept:>4} corpus files kept  {crashed} crasher(s)", flush=True)
        shutil.rmtree(base, ignore_errors=True)
    return status


def main(argv=None) -> int:
    global targets
    argv = sys.argv[1:] if argv is None else argv
    os.environ.setdefault("KERAS_BACKEND", "torch")
    if argv[:1] == ["--child"]:
        atheris = _instrumented_imports()
        from fuzz import targets
        child(argv[1], argv[3:] if argv[2:3] == ["--"] else argv[2:], atheris)
        return 0
    from fuzz import targets
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("targets", nargs="*", help=f"default: all of {', '.join(targets.TARGETS)}")
    ap.add_argument("--runs", type=int, default=10_000, help="executions per target (default 10,000)")
    ap.add_argument("--keep-bytes", type=int, default=256_000, help="corpus bytes saved per target")
    ap.add_argument("--keep-files", type=int, default=30, help="corpus files saved per target")
    ap.add_argument("--timeout", type=int, default=20, help="seconds one input may take (a hang)")
    ap.add_argument("--list", action="store_true", help="list the targets and exit")
    a = ap.parse_args(argv)
    if a.list:
        print("\n".join(targets.TARGETS))
        return 0
    unknown = [t for t in a.targets if t not in targets.TARGETS]
    if unknown:
        ap.error(f"unknown target(s) {', '.join(unknown)}; known: {', '.join(targets.TARGETS)}")
    return parent(a.targets or list(targets.TARGETS), a.runs, a.keep_bytes, a.keep_files, a.timeout)


if __name__ == "__main__":
    sys.exit(main())
