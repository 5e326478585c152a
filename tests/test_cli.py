"""The command line: step discovery, one-line errors, no torch import for pool steps."""

import subprocess
import sys

from bioprune import cli


def test_help_lists_pool_steps(capsys):
    try:
        cli.main(["--help"])
    except SystemExit as exc:
        assert exc.code == 0
    out = capsys.readouterr().out
    for step in ("ingest", "dedup", "decontaminate", "cluster", "shard"):
        assert step in out


def test_pool_steps_do_not_import_torch():
    code = "import sys; from bioprune import cli; cli.build_parser('ingest'); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_user_error_is_one_line_without_traceback(tmp_path):
    missing = tmp_path / "missing.fa"
    out_dir = tmp_path / "o"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "bioprune",
            "ingest",
            "--alphabet",
            "rna",
            "--out",
            str(out_dir),
            str(missing),
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert str(missing) in lines[0] and "no such file" in lines[0]
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())
