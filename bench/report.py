"""`make bench`: runs issue 12's benches one after another and ends with one table of every target.

    .venv/bin/python bench/report.py [--only api,backlog] [--args backlog="--jobs 20000"] ...

Each bench runs in a process of its own (as `python bench/<name>.py <its args>`), its output passed through
as it comes. Every bench prints each issue-12 target it measures as one line in the agreed format,
`  PASS  <label>: <figure>` or `  FAIL  <label>: <figure>` (bench/api.py's `_target`); those lines are
collected, and the summary lists them all, bench by bench. A bench whose file is not there is listed as
"not run", and so is one that ended without printing a target (its exit code said). Exit status 0 whatever
the verdicts (figures, not a test: the summary says them), 1 when a bench failed (a non-zero exit code).
"""

from __future__ import annotations

import argparse
import re
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent

# The benches that print issue 12's targets, in the order they run, with the arguments `make bench` gives
# them (`--args name=...` replaces these): chosen so that the whole run stays under 15 minutes on a shared
# 2-core machine. The backlog bench keeps its 100,000 pending jobs (seeding them is most of its time) but
# enqueues 1,000 (its target is a rate: 10,000 in 20 s), after the same on an empty database.
BENCHES: dict[str, str] = {
    "api": "",
    "worker_cpu": "",
    "qbo_calls": "",
    "qbo_calls_engine": "--path engine",
    "company_ceiling": "",
    "claims": "",
    "settings_lookups": "",
    "backlog": "--enqueue 1000 --seconds 2 --web-rounds 3",
}

# A bench run twice with different arguments has a name of its own for each run; this says whose script it is.
SCRIPTS: dict[str, str] = {"qbo_calls_engine": "qbo_calls"}

# The agreed format; the label is everything up to the first ": " (a figure may hold one: "(echo's own: 9 ms)").
TARGET_LINE = re.compile(r"^  (PASS|FAIL)  (.+?): (.+?)\s*$")


@dataclass
class Target:
    verdict: str  # PASS or FAIL
    label: str
    figure: str


@dataclass
class BenchRun:
    name: str
    status: str  # "ran", or why it did not ("not run: ...")
    seconds: float = 0.0
    exit_code: int | None = None
    targets: list[Target] = field(default_factory=list)


def parse_target(line: str) -> Target | None:
    """A target line in the agreed format, else None."""
    match = TARGET_LINE.match(line.rstrip("\n"))
    return Target(match.group(1), match.group(2), match.group(3)) if match else None


def run_bench(name: str, args: list[str], python: str = sys.executable, bench_dir: Path = BENCH_DIR) -> BenchRun:
    """Runs bench/<name>.py with `args`, echoing its output, and collects the target lines it prints."""
    script = bench_dir / f"{SCRIPTS.get(name, name)}.py"
    if not script.is_file():
        return BenchRun(name, f"not run: {script.name} is not there")
    print(f"\n=== bench/{script.name} {shlex.join(args)}", flush=True)
    began = time.monotonic()
    run = BenchRun(name, "ran")
    # Its stderr goes straight to ours; its stdout is read line by line (and echoed) for the targets.
    with subprocess.Popen([python, str(script), *args], stdout=subprocess.PIPE, text=True, bufsize=1) as process:
        assert process.stdout is not None
        for line in process.stdout:
            sys.stdout.write(line)
            sys.stdout.flush()
            if (target := parse_target(line)) is not None:
                run.targets.append(target)
    run.exit_code = process.returncode
    run.seconds = time.monotonic() - began
    if not run.targets:
        run.status = f"not run: bench/{script.name} printed no target in the agreed format (exit code {run.exit_code})"
    return run


def summary(runs: list[BenchRun]) -> list[str]:
    """The closing table: one line per target (bench, verdict, target, figure); one per bench not run."""
    lines = ["", "Summary of issue 12's targets", f"  {'bench':<16}{'verdict':<9}target: figure"]
    for run in runs:
        for target in run.targets:
            lines.append(f"  {run.name:<16}{target.verdict:<9}{target.label}: {target.figure}")
        if not run.targets:
            lines.append(f"  {run.name:<16}{'-':<9}{run.status}")
        elif run.exit_code:
            lines.append(f"  {run.name:<16}{'-':<9}(exit code {run.exit_code}: its other targets may be missing)")
    counted = [target.verdict for run in runs for target in run.targets]
    not_run = sum(1 for run in runs if not run.targets)
    lines.append(
        f"  {counted.count('PASS')} PASS, {counted.count('FAIL')} FAIL, {not_run} bench(es) not run"
        f" ({sum(run.seconds for run in runs):.0f} s)"
    )
    return lines


def bench_args(overrides: list[str]) -> dict[str, list[str]]:
    """Each bench's arguments: the defaults above, replaced by `name=ARGS` overrides (an empty ARGS keeps
    the default: `make bench` passes every NAME_BENCH_ARGS, set or not)."""
    chosen = {name: shlex.split(default) for name, default in BENCHES.items()}
    for override in overrides:
        name, sep, value = override.partition("=")
        if not sep or name not in BENCHES:
            raise SystemExit(f"--args wants NAME=ARGS with NAME one of {', '.join(BENCHES)}: {override!r}")
        if value.strip():
            chosen[name] = shlex.split(value)
    return chosen


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", default=",".join(BENCHES), help="comma-separated benches to run")
    parser.add_argument("--args", action="append", default=[], metavar="NAME=ARGS", help="a bench's arguments")
    args = parser.parse_args(argv)
    chosen = bench_args(args.args)
    only = [name for name in args.only.split(",") if name]
    unknown = sorted(set(only) - set(BENCHES))
    if unknown:
        raise SystemExit(f"unknown bench(es) {', '.join(unknown)}: one of {', '.join(BENCHES)}")
    runs = [run_bench(name, chosen[name]) for name in BENCHES if name in only]
    print("\n".join(summary(runs)))
    return 1 if any(run.exit_code for run in runs) else 0


if __name__ == "__main__":
    raise SystemExit(main())
