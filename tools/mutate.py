#!/usr/bin/env python
"""Mutation testing: plant deliberate one-line bugs, one at a time, and check that the tests catch each.

Usage (from anywhere):  python tools/mutate.py [-k TEXT ...] [--list] [--timeout SECONDS] [--no-baseline]

Each mutant in MUTANTS replaces one fragment of one line (`old`, which must occur exactly once in
its file) with `new`: an operator swap, an off-by-one offset, a sign flip, a dropped term, a
transpose... It runs against the test files that check that code (TESTS, or the mutant's own
`tests`) with `pytest -x -q` and a timeout. A mutant is *killed* when they fail and *survives*
when they pass. A survivor needs a written `reason` (an equivalent mutant, or a behaviour no test
can observe); otherwise it is a gap to close with a test.

The working tree is never modified, so others can keep running tests on it: the repository's files
(tracked and untracked, minus what .gitignore ignores) are copied into a temporary directory, beside
a link to ../shared (the MNIST files some tests read), and each mutant is written into the copy and
undone there after its run. pytest runs in the copy with PYTHONPATH pointing at it; the script first
checks that `featuremaps` really imports from the copy (the editable install points at the real
tree). The copy is deleted on exit, Ctrl-C included. Hypothesis runs with the derandomized `ci`
profile (tests/conftest.py) unless HYPOTHESIS_PROFILE is set, so a run is repeatable.

Exit status: 0 when every mutant is killed or has a reason; 1 when a survivor has no reason, a
mutant's `old` no longer matches its file (stale), or a mutant with a reason is killed (the reason
is out of date: drop it); 130 after Ctrl-C (the results so far are printed).

Last full run (54 mutants, about 5 minutes here, 2026-12-03): 52 killed; the two survivors are the ones with a
`reason` below.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# The tests that check each mutated file (a mutant may name its own instead).
TESTS = {
    "featuremaps/functional/conv.py": ("tests/test_conv.py",),
    "featuremaps/functional/threads.py": ("tests/test_conv.py", "tests/test_pool.py"),
    "featuremaps/functional/_kernels.py": ("tests/test_conv.py", "tests/test_pool.py"),
    "featuremaps/functional/window.py": ("tests/test_window.py", "tests/test_geometry.py", "tests/test_conv.py",
                                         "tests/test_pool.py"),
    "featuremaps/functional/pool.py": ("tests/test_pool.py",),
    "featuremaps/functional/shape.py": ("tests/test_shape.py", "tests/test_tensor.py"),
    "featuremaps/functional/arith.py": ("tests/test_tensor.py",),
    "featuremaps/functional/activation.py": ("tests/test_activation.py",),
    "featuremaps/functional/norm.py": ("tests/test_norm.py",),
    "featuremaps/functional/linear.py": ("tests/test_linear.py",),
    "featuremaps/functional/loss.py": ("tests/test_loss.py",),
    "featuremaps/optim.py": ("tests/test_optim.py",),
    "featuremaps/inspect/explain.py": ("tests/test_explain.py", "tests/test_report.py"),
    "featuremaps/train.py": ("tests/test_train.py",),
    "featuremaps/commands/train.py": ("tests/test_cli.py", "tests/test_cli_options.py"),
}


@dataclass(frozen=True)
class Mutant:
    name: str
    path: str
    old: str
    new: str
    tests: tuple[str, ...] = ()
    reason: str | None = None  # why it may survive (equivalent, or nothing observable changes)
    env: tuple[tuple[str, str], ...] = ()  # extra environment for its test run


# NumPy code that a numba kernel replaces when numba is on runs only with the kernels off: test it
# as CI's second run does (.ci/run, FEATUREMAPS_NUMBA=0).
NUMPY_PATH = (("FEATUREMAPS_NUMBA", "0"),)


M = Mutant
ALGOS = "featuremaps/functional/conv_algos.py"
CONV, POOL, SHAPE, WINDOW = ("featuremaps/functional/conv.py", "featuremaps/functional/pool.py",
                             "featuremaps/functional/shape.py", "featuremaps/functional/window.py")
ACT, NORM, LOSS, OPTIM, EXPLAIN = ("featuremaps/functional/activation.py", "featuremaps/functional/norm.py",
                                   "featuremaps/functional/loss.py", "featuremaps/optim.py",
                                   "featuremaps/inspect/explain.py")
MUTANTS = [
    # --- conv: the formula's pieces and the paths only larger shapes reach --------------------------
    M("conv-pointwise-taller-dx", ALGOS, "and gh.size == gh.out and gw.size == gw.out)", "and True)",
      tests=("tests/test_conv.py", "tests/test_conv_algorithms.py")),  # issue 8's bug
    M("conv-rows-floor-not-ceil", WINDOW, "i0 = max(0, -(offset // stride))", "i0 = max(0, (-offset) // stride)"),
    M("conv-rows-window-off-by-one", CONV, "j_lo, width = gw.lo - (gw.span - 1),", "j_lo, width = gw.lo - gw.span,"),
    M("conv-col2im-top-for-left", WINDOW, "cols = [w.clipped(q) for q in range(w.k)]",
      "cols = [w._replace(lo=h.lo).clipped(q) for q in range(w.k)]"),  # numba on: groups > 1 and pooling run it
    M("conv-col2im-top-for-left-numpy", WINDOW, "cols = [w.clipped(q) for q in range(w.k)]",
      "cols = [w._replace(lo=h.lo).clipped(q) for q in range(w.k)]", env=NUMPY_PATH),
    M("conv-col2im-kernel-top-for-left", WINDOW, "kernels.col2im_add(blocks, h.lo, w.lo,",
      "kernels.col2im_add(blocks, h.lo, h.lo,"),
    M("conv-depthwise-kernel-half-flipped", CONV, "wf = w[::-1, ::-1].reshape(", "wf = w[::-1, :].reshape("),
    M("conv-folded-db-first-row", CONV, "(both[-1].copy() if need_b else None)",
      "(both[0].copy() if need_b else None)"),
    M("conv-chunks-drop-earlier-dw", CONV, "dw = part if dw is None else dw + part", "dw = part"),
    M("conv-transpose-bias-sign", CONV, "        y += b[0]", "        y -= b[0]"),
    M("conv-transpose-output-padding-dropped", WINDOW, "dilated_span(k, d) - lo - hi + a,",
      "dilated_span(k, d) - lo - hi,"),
    M("threads-second-range-never-runs", "featuremaps/functional/threads.py",
      "bounds[i + 1]) for i in range(1, parts)]", "bounds[i + 1]) for i in range(2, parts)]"),
    M("kernel-row-add-ignores-stride", "featuremaps/functional/_kernels.py", "r = r0[p] + t * sh", "r = r0[p] + t"),
    # paths that change no value: only a test that checks the path is taken can see them
    M("threads-never-split", "featuremaps/functional/threads.py", "MIN_BYTES = 4 << 20", "MIN_BYTES = 4 << 40"),
    M("conv-rows-path-never-taken", ALGOS, "rows_scratch_per_image(g) <= 2 * gh.out",
      "rows_scratch_per_image(g) <= 0 * gh.out", tests=("tests/test_conv.py", "tests/test_conv_algorithms.py")),
    M("conv-dw-orientation-rule-flipped", ALGOS, "return k_rows >= DT_MIN_K and", "return k_rows < DT_MIN_K and",
      tests=("tests/test_conv_algorithms.py",)),
    M("conv-phases-rule-ignores-inflation", ALGOS, "g.c >= r * phases_inflation(g) * g.o", "g.c >= r * g.o",
      tests=("tests/test_conv_algorithms.py",)),
    M("conv-dy-t-cols-computes-the-same", CONV, "return (np.ascontiguousarray(dy2d.T) @ c0).T",
      "return c0.T @ dy2d",
      reason="equivalent: both orientations compute colsᵀ·dy (the small-dW one is only faster); results differ "
             "only by rounding, within every tolerance"),
    # --- window and shape ops ---------------------------------------------------------------------------
    M("same-pad-extra-pixel-top-left", WINDOW, "pads.append((total // 2, total - total // 2))",
      "pads.append((total - total // 2, total // 2))"),
    M("ceil-mode-window-in-right-padding", WINDOW, "if (out - 1) * s >= size + lo:", "if (out - 1) * s > size + lo:"),
    M("pad-crop-offsets-swapped", SHAPE, "slice(lo, g.shape[i] - hi)", "slice(hi, g.shape[i] - lo)"),
    M("concat-gradients-reversed", SHAPE, "return tuple(np.split(g, cuts, axis=axis))",
      "return tuple(np.split(g, cuts, axis=axis))[::-1]"),
    M("transpose-backward-not-inverted", SHAPE, "np.transpose(g, np.argsort(ctx))", "np.transpose(g, ctx)"),
    M("getitem-repeated-index-overwrites", SHAPE, "np.add.at(gx, index, g)", "gx[index] = g"),
    M("div-gradient-sign", "featuremaps/functional/arith.py", "-g * a / (b * b) if n[1]", "g * a / (b * b) if n[1]"),
    # --- pooling ----------------------------------------------------------------------------------------
    M("maxpool-last-max-not-first", POOL, "np.multiply(tap > best, itype(k)", "np.multiply(tap >= best, itype(k)"),
    M("pool-scatter-tap-index-transposed", POOL, "arg == p * kw + q, out=buf", "arg == q * kw + p, out=buf"),
    M("avgpool-divisor-ignores-padding", POOL, "end = np.minimum(start + axis.span, axis.size + axis.hi)",
      "end = np.minimum(start + axis.span, axis.size)"),
    # --- activations, normalisation, linear -------------------------------------------------------------
    M("relu-gradient-at-zero", ACT, "np.where(x <= 0, 0, g)", "np.where(x < 0, 0, g)"),
    M("elu-gradient-at-zero", ACT, "np.where(x > 0, g, g * (alpha * np.exp(neg)))",
      "np.where(x >= 0, g, g * (alpha * np.exp(neg)))"),
    M("sigmoid-gradient-sign", ACT, "g * out * (1 - out)", "g * out * (1 + out)"),
    M("tanh-numpy-gradient-dropped-square", ACT, "return (g * (1 - out * out),)", "return (g * (1 - out),)",
      env=NUMPY_PATH),
    M("log-softmax-gradient-log-not-prob", ACT, "g - np.exp(out) * np.sum(g", "g - out * np.sum(g"),
    M("batchnorm-running-var-biased", NORM, "momentum * var * (m / (m - 1))", "momentum * var"),
    M("batchnorm-gradient-drops-mean-term", NORM, "(g2 - sum_g / m - xhat * (sum_gx / m))",
      "(g2 - xhat * (sum_gx / m))"),
    M("lrn-backward-window-not-transposed", NORM, "_channel_window_sum(g * out / d, hi, lo)",
      "_channel_window_sum(g * out / d, lo, hi)"),
    M("dropout-keeps-draw-equal-to-p", NORM, "(draw >= p).astype", "(draw > p).astype",
      reason="unobservable: a uniform draw equals p exactly with probability 2**-24 (float32) or 2**-53 per "
             "element, so the kept fraction moves by that much; no seeded test draws it"),
    M("linear-bias-gradient-mean", "featuremaps/functional/linear.py", "gb = g.sum(axis=0)", "gb = g.mean(axis=0)"),
    # --- losses -----------------------------------------------------------------------------------------
    M("ce-smoothing-gradient-dropped", LOSS, "        grad -= smoothing / c\n", "        pass\n"),
    M("mean-reduction-gradient-not-divided", LOSS, "scale = 1.0 / n if reduction", "scale = 1.0 if reduction"),
    M("mse-gradient-factor", LOSS, "scale = 2.0 / diff.size", "scale = 1.0 / diff.size"),
    M("nll-gradient-sign", LOSS, "= -_spread(g, shape[0], reduction, dtype)[:, 0]",
      "= _spread(g, shape[0], reduction, dtype)[:, 0]"),
    # --- optimisers ---------------------------------------------------------------------------------------
    M("sgd-nesterov-ignored", OPTIM, "            if self.nesterov:  # g + μ·b", "            if False:  # g + μ·b"),
    M("sgd-nesterov-takes-plain-kernel", OPTIM, "if self.momentum and not self.nesterov and not self.weight_decay:",
      "if self.momentum and not self.weight_decay:"),
    M("sgd-weight-decay-sign", OPTIM, "            g = g + self.weight_decay * p\n        if self.momentum:",
      "            g = g - self.weight_decay * p\n        if self.momentum:"),
    M("adam-no-second-bias-correction", OPTIM, "s /= math.sqrt(1 - b2 ** t)", "s /= 1.0"),
    M("adamw-decay-without-lr", OPTIM, "p *= 1 - self.lr * self.weight_decay", "p *= 1 - self.weight_decay"),
    # --- explain -----------------------------------------------------------------------------------------
    M("explain-partial-sums-float32", EXPLAIN, "np.dot(a.astype(np.float64).ravel(), b.astype(np.float64).ravel())",
      "np.dot(a.astype(np.float32).ravel(), b.astype(np.float32).ravel())"),
    M("explain-last-max-not-first", EXPLAIN, "if best is None or v > vals.ravel()[best] or np.isnan(v):",
      "if best is None or v >= vals.ravel()[best] or np.isnan(v):"),
    M("explain-bias-dropped", EXPLAIN, "total = math.fsum([bias or 0.0] + [t.partial_sum for t in terms])",
      "total = math.fsum([t.partial_sum for t in terms])"),
    M("explain-zero-pad-bottom-off-by-one", EXPLAIN, "(term.rows >= h - b)", "(term.rows > h - b)"),
    M("explain-avg-overhang-counted", EXPLAIN, "inside_padded = (idx >= -lo) & (idx < n + hi)",
      "inside_padded = (idx >= -lo) & (idx <= n + hi)"),
    # --- training and the CLI ----------------------------------------------------------------------------
    M("evaluate-confusion-transposed", "featuremaps/train.py", "np.add.at(confusion, (labels, pred), 1)",
      "np.add.at(confusion, (pred, labels), 1)"),
    M("cli-nesterov-ignored", "featuremaps/commands/train.py", '"nesterov": bool(s["nesterov"])', '"nesterov": False'),
]


# --------------------------------------------------------------------------------------------------
def _repo_files() -> list[str]:
    out = subprocess.run(["git", "-C", str(ROOT), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                         capture_output=True, text=True, check=True).stdout
    return [f for f in out.split("\0") if f and (ROOT / f).is_file()]


def _copy_repo(dest: Path) -> Path:
    """The working tree's files (as they are now, edits included) under dest/<repo name>, with
    dest/shared linked to ../shared so paths relative to the repo root still resolve."""
    copy = dest / ROOT.name
    for rel in _repo_files():
        target = copy / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / rel, target)
    shared = ROOT.parent / "shared"
    if shared.is_dir():
        (dest / "shared").symlink_to(shared, target_is_directory=True)
    return copy


def _env(copy: Path) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(copy) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.setdefault("HYPOTHESIS_PROFILE", "ci")
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def _check_imports_from(copy: Path, env: dict) -> None:
    out = subprocess.run([sys.executable, "-c", "import featuremaps; print(featuremaps.__file__)"], cwd=copy,
                         env=env, capture_output=True, text=True, check=True).stdout.strip()
    if not Path(out).resolve().is_relative_to(copy.resolve()):
        raise SystemExit(f"mutate: featuremaps imports from {out}, not from the copy {copy}; refusing to run")


def _pytest(copy: Path, env: dict, tests, timeout: float, extra_env=()) -> tuple[str, str, float]:
    """('passed' | 'failed' | 'timeout' | 'error', first failing test or message, seconds)."""
    cmd = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *tests]
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, cwd=copy, env=dict(env, **dict(extra_env)), capture_output=True, text=True,
                              timeout=timeout)
    except subprocess.TimeoutExpired:
        return "timeout", f"no result within {timeout:.0f} s", time.perf_counter() - t0
    dt = time.perf_counter() - t0
    lines = (proc.stdout + proc.stderr).splitlines()
    first = next((ln for ln in lines if ln.startswith(("FAILED ", "ERROR "))), None)
    if proc.returncode == 0:
        return "passed", "", dt
    if proc.returncode == 1:
        return "failed", first or "", dt
    return "error", first or (lines[-1] if lines else f"pytest exit code {proc.returncode}"), dt


def _tests_of(m: Mutant, copy: Path) -> list[str]:
    return [t for t in (m.tests or TESTS[m.path]) if (copy / t).is_file()]


def _run_one(m: Mutant, copy: Path, env: dict, timeout: float) -> tuple[str, str, float]:
    src = copy / m.path
    if not src.is_file():
        return "stale", f"{m.path} does not exist", 0.0
    text = src.read_text()
    if text.count(m.old) != 1:
        return "stale", f"`{m.old.strip()}` occurs {text.count(m.old)} times in {m.path} (expected once)", 0.0
    tests = _tests_of(m, copy)
    if not tests:
        return "stale", f"none of its test files exist: {', '.join(m.tests or TESTS[m.path])}", 0.0
    try:
        src.write_text(text.replace(m.old, m.new))
        status, detail, dt = _pytest(copy, env, tests, timeout, m.env)
    finally:
        src.write_text(text)
    verdict = {"passed": "survived", "failed": "killed", "timeout": "killed", "error": "killed"}[status]
    return verdict, detail if status != "error" else f"pytest error: {detail}", dt


def _baseline(chosen, copy: Path, env: dict, timeout: float) -> None:
    """The selected mutants' test files pass unmutated, in each environment a mutant asks for."""
    for extra in sorted({m.env for m in chosen}):
        tests = sorted({t for m in chosen if m.env == extra for t in _tests_of(m, copy)})
        status, detail, dt = _pytest(copy, env, tests, timeout * 2, extra)
        where = " ".join(f"{k}={v}" for k, v in extra) or "as set"
        if status != "passed":
            raise SystemExit(f"mutate: the unmutated tests do not pass ({where}): {detail}; fix them first")
        print(f"baseline ({where}): {len(tests)} test files pass unmutated ({dt:.0f} s)", flush=True)


def _select(patterns) -> list[Mutant]:
    if not patterns:
        return list(MUTANTS)
    return [m for m in MUTANTS if any(p in m.name for p in patterns)]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-k", dest="patterns", action="append", metavar="TEXT",
                    help="only mutants whose name contains TEXT (repeatable)")
    ap.add_argument("--list", action="store_true", help="list the mutants and their test files, then exit")
    ap.add_argument("--timeout", type=float, default=600.0, help="seconds per mutant's test run (default 600)")
    ap.add_argument("--no-baseline", action="store_true", help="skip the unmutated run of the selected tests")
    args = ap.parse_args(argv)
    names = [m.name for m in MUTANTS]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise SystemExit(f"mutate: duplicate mutant names: {', '.join(dup)}")
    chosen = _select(args.patterns)
    if args.list:
        for m in chosen:
            extra = "".join(f" {k}={v}" for k, v in m.env)
            print(f"{m.name:42s} {m.path}  ->{extra} {' '.join(m.tests or TESTS[m.path])}"
                  + (f"\n{'':42s} reason: {m.reason}" if m.reason else ""))
        return 0
    if not chosen:
        raise SystemExit(f"mutate: no mutant name contains {' or '.join(args.patterns)}")
    results, interrupted = [], False
    with tempfile.TemporaryDirectory(prefix="featuremaps-mutate-") as tmp:
        copy = _copy_repo(Path(tmp))
        env = _env(copy)
        _check_imports_from(copy, env)
        print(f"mutate: {len(chosen)} mutants, tests run in {copy} (featuremaps imports from there)", flush=True)
        if not args.no_baseline:
            _baseline(chosen, copy, env, args.timeout)
        try:
            for i, m in enumerate(chosen, 1):
                verdict, detail, dt = _run_one(m, copy, env, args.timeout)
                results.append((m, verdict, detail))
                print(f"[{i:2d}/{len(chosen)}] {verdict:8s} {dt:5.1f}s  {m.name}" + (f"  ({detail})" if detail else ""),
                      flush=True)
        except KeyboardInterrupt:
            interrupted = True
            print("\nmutate: interrupted; the working tree was never touched and the copy is removed", flush=True)
    code = _report(results)
    return 130 if interrupted else code


def _report(results) -> int:
    survivors = [(m, d) for m, v, d in results if v == "survived"]
    stale = [(m, d) for m, v, d in results if v == "stale"]
    stale_reasons = [m for m, v, _ in results if v == "killed" and m.reason]
    killed = sum(v == "killed" for _, v, _ in results)
    print(f"\n{killed} of {len(results)} mutants killed, {len(survivors)} survived, {len(stale)} stale")
    for m, _ in survivors:
        print(f"  survived: {m.name} ({m.path}): " + (f"reason: {m.reason}" if m.reason else "NO REASON: add a test"))
    for m, d in stale:
        print(f"  stale: {m.name}: {d}")
    for m in stale_reasons:
        print(f"  killed but has a reason (drop it): {m.name}")
    unexplained = [m for m, _ in survivors if not m.reason]
    return 1 if unexplained or stale or stale_reasons else 0


if __name__ == "__main__":
    sys.exit(main())
