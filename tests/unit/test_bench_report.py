"""bench/report.py, what `make bench` runs: the target lines it collects and the summary it ends with."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import report


def test_a_target_line_in_the_agreed_format_is_collected_and_other_lines_are_not() -> None:
    assert report.parse_target("  PASS  sqlite SyncPayment at 32 clients >= 50% of echo: 61.0%\n") == report.Target(
        "PASS", "sqlite SyncPayment at 32 clients >= 50% of echo", "61.0%"
    )
    # The figure may hold ": "; the label ends at the first one.
    assert report.parse_target("  FAIL  postgresql SyncPayment p99 < 20 ms: 31.5 ms (echo's own: 9.0 ms)") == (
        report.Target("FAIL", "postgresql SyncPayment p99 < 20 ms", "31.5 ms (echo's own: 9.0 ms)")
    )
    assert report.parse_target("sqlite: worker CPU per sync 1.3x raw (target <= 1.5x): PASS") is None
    assert report.parse_target("  PASS  no figure") is None


def _bench(directory: Path, name: str, body: str) -> None:
    (directory / f"{name}.py").write_text(f"import sys\n{body}\n")


def test_each_bench_runs_with_its_arguments_and_the_summary_lists_every_target_and_every_bench_not_run(
    tmp_path: Path,
) -> None:
    _bench(
        tmp_path,
        "good",
        "print('noise'); print(f'  PASS  enqueue {sys.argv[1]}: 12.0 s'); print('  FAIL  rss: 250 MiB')",
    )
    _bench(tmp_path, "silent", "print('nothing agreed'); sys.exit(3)")
    runs = [
        report.run_bench("good", ["of 10,000 jobs"], bench_dir=tmp_path),
        report.run_bench("silent", [], bench_dir=tmp_path),
        report.run_bench("missing", [], bench_dir=tmp_path),
    ]

    assert runs[0].targets == [
        report.Target("PASS", "enqueue of 10,000 jobs", "12.0 s"),
        report.Target("FAIL", "rss", "250 MiB"),
    ]
    assert (runs[1].exit_code, runs[1].targets) == (3, [])
    lines = report.summary(runs)
    assert any(line.split() == ["good", "PASS", "enqueue", "of", "10,000", "jobs:", "12.0", "s"] for line in lines)
    assert any(line.split()[:3] == ["good", "FAIL", "rss:"] for line in lines)
    assert any("silent" in line and "printed no target in the agreed format (exit code 3)" in line for line in lines)
    assert any("missing" in line and "not run: missing.py is not there" in line for line in lines)
    assert "1 PASS, 1 FAIL, 2 bench(es) not run" in lines[-1]


def test_a_bench_s_arguments_replace_its_defaults_unless_empty() -> None:
    chosen = report.bench_args(["backlog=--jobs 20000 --enqueue 2000", "api="])
    assert chosen["backlog"] == ["--jobs", "20000", "--enqueue", "2000"]
    assert chosen["api"] == report.bench_args([])["api"]
    with pytest.raises(SystemExit):
        report.bench_args(["nonesuch=--fast"])
