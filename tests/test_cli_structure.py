"""The CLI's layout: `featuremaps.commands` never imports `featuremaps.cli` (no runtime cycle), the
front end stays small, and every registered subcommand comes from its own module."""
import ast
from pathlib import Path

import featuremaps
from featuremaps import cli

PKG = Path(featuremaps.__file__).resolve().parent
COMMANDS = sorted((PKG / "commands").glob("*.py"))


def _imports(path: Path) -> list[str]:
    """Every module `path` imports, resolved to absolute names (relative imports included)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    here = ["featuremaps", "commands"]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = here[:len(here) - node.level + 1] if node.level else []
            mod = ".".join(base + ([node.module] if node.module else []))
            found.append(mod)
            found += [f"{mod}.{a.name}" for a in node.names]  # `from .. import cli`
    return found


def test_the_import_walker_sees_relative_and_absolute_imports(tmp_path):
    f = tmp_path / "x.py"
    f.write_text("from .. import cli\nfrom ..cli import main\nimport featuremaps.cli\nfrom . import _common\n")
    got = _imports(f)
    assert "featuremaps.cli" in got and "featuremaps.cli.main" in got and "featuremaps.commands._common" in got


def test_commands_never_import_cli():
    assert len(COMMANDS) >= 12  # _common, inputs and the ten subcommands
    for path in COMMANDS:
        bad = [m for m in _imports(path) if m == "featuremaps.cli" or m.startswith("featuremaps.cli.")]
        assert not bad, f"{path.name} imports {bad}"


def test_cli_is_only_the_front_end():
    assert len((PKG / "cli.py").read_text(encoding="utf-8").splitlines()) < 300
    assert set(cli.__all__) >= {"main", "command", "build_parser", "CLIError"}
    from featuremaps.commands._common import CLIError
    assert cli.CLIError is CLIError


def test_each_subcommand_has_its_own_module():
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    assert list(sub.choices) == list(cli.BUILTIN)
    for name in cli.BUILTIN:
        assert (PKG / "commands" / f"{name}.py").exists(), name
        run = sub.choices[name].get_default("_run")
        assert run.__module__ == f"featuremaps.commands.{name}"


def test_no_dead_add_parser_in_explain_and_show():
    from featuremaps.commands import explain, show
    assert not hasattr(explain, "add_parser") and not hasattr(show, "add_parser")


def test_one_index_type_and_one_checkpoint_reader():
    """--index parses the same in every command that has it, and every command opens checkpoints
    through the same helper."""
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    types = set()
    for name, p in sub.choices.items():
        for action in _all_actions(p):
            if "--index" in action.option_strings:
                types.add(action.type)
    from featuremaps.commands._common import nonneg_int
    assert types == {nonneg_int}
    for path in COMMANDS:
        if path.name != "_common.py":
            assert "load_checkpoint" not in path.read_text(encoding="utf-8"), path.name


def _all_actions(p):
    for action in p._actions:
        yield action
        for child in getattr(action, "choices", None) or {}:
            if isinstance(action.choices, dict):
                yield from _all_actions(action.choices[child])
