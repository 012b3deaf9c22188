"""The machinery shared by the generated doc pages (`build_feature_maps.py`, `build_real_models.py`).

A page is a TEMPLATE with placeholders — `{{code:NAME}}` (a snippet's source), `{{out:NAME}}` (what
it printed), `{{fig:NAME}}` (a figure drawn from the snippets' namespace) and `{{v:NAME}}` (a number
computed for the prose) — and a dict of SNIPPETS run in order in one namespace. `--check` renders the
page again and compares it with the committed text byte for byte, and the figures by name, pixel size
and content (mean absolute difference per channel below 3 %, which tolerates anti-aliasing
differences between FreeType versions but not other weights or another layout).
"""
from __future__ import annotations

import argparse
import contextlib
import difflib
import io
import os
import re
import sys
import tempfile
from pathlib import Path


def run_snippets(snippets: dict[str, str], name: str, cwd: Path | None = None) -> tuple[dict, dict[str, str]]:
    """Run every snippet in order in one namespace (in `cwd` when given); return it and each snippet's output."""
    ns: dict = {"__name__": name}
    outputs = {}
    old = os.getcwd()
    try:
        if cwd is not None:
            os.chdir(cwd)
        for key, code in snippets.items():
            buf = io.StringIO()
            with contextlib.redirect_stdout(buf):
                exec(compile(code, f"<snippet {key}>", "exec"), ns)
            outputs[key] = buf.getvalue().rstrip("\n")
    finally:
        os.chdir(old)
    return ns, outputs


def render(template: str, snippets: dict[str, str], outputs: dict[str, str], figures: dict, values: dict,
           prefix: str) -> str:
    """The page: every placeholder of `template` replaced."""
    def sub(m: re.Match) -> str:
        kind, name = m.group(1), m.group(2)
        if kind == "code":
            return f"```python\n{snippets[name].rstrip()}\n```"
        if kind == "out":
            return f"```text\n{outputs[name]}\n```"
        if kind == "fig":
            return f"![{figures[name][0]}](img/{prefix}{name}.png)"
        return values[name]

    page = re.sub(r"\{\{(code|out|fig|v):([\w-]+)\}\}", sub, template)
    if "{{" in page:
        raise AssertionError(f"unresolved placeholder near: {page[page.index('{{'):][:40]!r}")
    return page


def draw(ns: dict, figures: dict, out_dir: Path, prefix: str) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, (_, fn) in figures.items():
        path = out_dir / f"{prefix}{name}.png"
        fn(ns, path)
        shrink(path)
        paths.append(path)
    return paths


def compare_pngs(new: list[Path], old_dir: Path, prefix: str) -> list[str]:
    """Problems between freshly drawn figures and the committed ones (name, size, content)."""
    import numpy as np
    from PIL import Image

    problems = []
    committed = {p.name for p in old_dir.glob(f"{prefix}*.png")}
    fresh = {p.name for p in new}
    for extra in sorted(committed - fresh):
        problems.append(f"docs/img/{extra} is committed but no longer drawn")
    for p in new:
        old = old_dir / p.name
        if not old.exists():
            problems.append(f"docs/img/{p.name} is missing")
            continue
        a = np.asarray(Image.open(p).convert("RGB"), dtype=np.float64)
        b = np.asarray(Image.open(old).convert("RGB"), dtype=np.float64)
        if a.shape != b.shape:
            problems.append(f"docs/img/{p.name}: committed size {b.shape[1]}×{b.shape[0]}, "
                            f"drawn now {a.shape[1]}×{a.shape[0]}")
        elif np.abs(a - b).mean() > 0.03 * 255:
            problems.append(f"docs/img/{p.name}: the picture changed (mean |Δ| = {np.abs(a - b).mean():.1f}/255)")
    return problems


def stale(page: str, drawn: list[Path], doc: Path, img_dir: Path, prefix: str) -> list[str]:
    """What differs between a freshly generated page/figures and the committed ones ([] = up to date)."""
    problems = []
    old = doc.read_text(encoding="utf-8") if doc.exists() else ""
    if old != page:
        diff = difflib.unified_diff(old.splitlines(), page.splitlines(), "committed", "regenerated", lineterm="", n=1)
        problems.append(f"{doc.name} is stale:\n" + "\n".join(list(diff)[:60]))
    return problems + compare_pngs(drawn, img_dir, prefix)


def build(generate, check: bool, doc: Path, img_dir: Path, prefix: str, script: str) -> int:
    """Write the page and figures (`generate(img_dir) -> (page, drawn)`), or with `check` report staleness."""
    if not check:
        page, drawn = generate(img_dir)
        doc.write_text(page, encoding="utf-8")
        for old in set(img_dir.glob(f"{prefix}*.png")) - set(drawn):
            old.unlink()
        print(f"wrote {doc} and {len(drawn)} figures in {img_dir}")
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        problems = stale(*generate(Path(tmp)), doc, img_dir, prefix)
    if problems:
        print("\n".join(problems), file=sys.stderr)
        print(f"run `python docs/{script}` and commit the result", file=sys.stderr)
        return 1
    print(f"{doc.name} and its figures are up to date")
    return 0


def shrink(path: Path) -> None:
    """Re-save a PNG with a palette when that loses nothing visible (figures are mostly flat colour)."""
    from PIL import Image

    img = Image.open(path).convert("RGB")
    img.quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(path, optimize=True)


def main(build_fn, description: str, argv=None) -> int:
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--check", action="store_true", help="fail if the committed page or figures are stale")
    args = ap.parse_args(argv)
    return build_fn(args.check)
