"""Running the CLI in-process from tests: one home for the helpers several test modules share."""
from featuremaps import cli


def run_cli(capsys, *argv):
    """`featuremaps ARGV...` in this process: (exit code, stdout, stderr); arguments may be paths."""
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def one_error(code, err) -> str:
    """The single `featuremaps: error: ...` line of a usage error (exit code 2), in the CLI's words:
    no traceback and no Python `None`."""
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code == 2 and len(lines) == 1, (code, err)
    assert lines[0].startswith("featuremaps: error: ") and "Traceback" not in err, err
    assert "None" not in lines[0], lines[0]
    return lines[0]
