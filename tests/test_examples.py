"""The examples in examples/ run as shipped (the README points readers at them)."""
import runpy
import sys
from pathlib import Path

import pytest

EXAMPLES = sorted((Path(__file__).parents[1] / "examples").glob("*.py"))
ARGS = {"colour_experiment.py": ["--quick"], "corners_experiment.py": ["--quick"]}  # full runs too slow for the suite


def test_there_are_examples():
    assert EXAMPLES, "examples/ should hold at least one runnable script"


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_runs(path, capsys, monkeypatch, tmp_path):
    monkeypatch.setattr(sys, "argv", [str(path), *ARGS.get(path.name, [])])
    monkeypatch.chdir(tmp_path)  # files an example writes land in a scratch folder
    runpy.run_path(str(path), run_name="__main__")
    out = capsys.readouterr().out
    assert "64 maps, not 32 × 64" in out or path.name != "quickstart.py"
    if path.name == "colour_experiment.py":  # the claim, even on the quick run: 3-D kernels tell a
        rows = {line[:3]: float(line.split()[-3]) for line in out.splitlines()
                if line[:3] in ("(a)", "(b)", "(c)") and "±" in line}  # the table: its last column is "0 vs 1"
        assert rows["(a)"] >= 90 and rows["(c)"] >= 90, out  # red-green edge from red and green apart;
        assert rows["(b)"] <= 65, out  # separate 2-D convolutions stay near chance (50%) on those two classes


def test_readme_python_block_runs(capsys, tmp_path, monkeypatch):
    """The README's library examples are real code: run them as written (in a scratch folder)."""
    monkeypatch.chdir(tmp_path)
    text = (Path(__file__).parents[1] / "README.md").read_text(encoding="utf-8")
    blocks = text.split("```python\n")[1:]
    assert blocks, "README.md should hold a ```python example"
    for block in blocks:
        exec(compile(block.split("```")[0], "README.md", "exec"), {"__name__": "__readme__"})
    out = capsys.readouterr().out
    assert "C3 (Conv2D)" in out and "add (Add)" in out


def test_readme_first_lines_are_the_two_setup_commands():
    lines = (Path(__file__).parents[1] / "README.md").read_text(encoding="utf-8").splitlines()
    commands = [lines[i + 2] for i, line in enumerate(lines[:20]) if line.strip().startswith("<!-- ") and
                line.strip().endswith("-command -->")]
    assert commands == ["pip install -e '.[plot]' && featuremaps train",
                        "pip install -e '.[test]' && ruff check . && python -m pytest -q"]
