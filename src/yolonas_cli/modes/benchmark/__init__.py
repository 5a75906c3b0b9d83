"""`yolo-nas benchmark model=... imgsz=... batch=... device=... formats=...`: time every backend (see
`yolonas_cli.modes.benchmark.measure`), print the table and the headline numbers, save benchmark.csv and benchmark.json
in the run folder (runs/benchmark/exp{N})."""

from __future__ import annotations

from yolonas_cli.cfg import BenchmarkArgs


def run(args: BenchmarkArgs) -> int:
    """Run the benchmark; exit code 1 when no row could be measured, else 0."""
    from yolonas_cli.core import console
    from yolonas_cli.data.sinks import make_run_dir
    from yolonas_cli.modes.benchmark.measure import render_table, run_benchmark, save_report, summary_lines

    previous = console.is_verbose()
    console.set_verbose(args.verbose)
    try:
        report = run_benchmark(args)
        console.out(render_table(report))
        for line in summary_lines(report):
            console.text(line)
        run_dir = make_run_dir(args.project, args.name, args.exist_ok, "benchmark", create=True)
        save_report(report, run_dir)
        console.info(f"Results saved to {run_dir}")
    finally:
        console.set_verbose(previous)
    return 0 if any(row.ok for row in report.rows) else 1
