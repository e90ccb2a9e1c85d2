"""``vimscope batch INPUT -o OUT``: the segment (or features) pipeline over a folder, list or manifest of slides.

Resumable (per-slide state and leases in OUT), failure-tolerant (a bad slide is recorded, the run goes on), on
local worker processes or a dask.distributed cluster. The pipeline options are those of ``vimscope segment``
(imported from ``vimscope.cli.segment``, not copied), so a batch row gets exactly what ``segment`` would do.
"""

from __future__ import annotations

from pathlib import Path

import click

from vimscope.errors import BatchFailedError, ConfigError


def run_batch_command(
    input_path: Path,
    out: Path,
    config,
    *,
    patterns: tuple[str, ...] = (),
    workers: str = "local",
    scheduler: str | None = None,
    scheduler_file: str | None = None,
    retry_failed: bool = False,
    retries: int = 2,
    threads: int | None = None,
    quiet: bool = False,
) -> int:
    """The body of ``vimscope batch`` (also used by benchmarks and tests); returns the exit status."""
    from vimscope.runners import executor_factory, read_inputs, run_batch

    make_executor = executor_factory(
        workers=workers, scheduler=scheduler, scheduler_file=scheduler_file, retries=retries, threads=threads
    )
    out = Path(out).expanduser().resolve()
    jobs = read_inputs(input_path, patterns=list(patterns) or None, exclude=out)
    echo = (lambda *a, **k: None) if quiet else (lambda msg: click.echo(msg, err=True))
    width = len(str(len(jobs)))
    skipped = []

    def on_outcome(outcome, n_done: int, n_total: int) -> None:
        if outcome.status == "skipped":
            skipped.append(outcome)
            return
        what = {"done": f"done in {outcome.seconds:.1f} s", "failed": f"FAILED: {outcome.reason}"}.get(
            outcome.status, f"{outcome.status}: {outcome.reason}"
        )
        echo(f"[{n_done:>{width}}/{n_total}] {outcome.name}: {what}")

    echo(f"vimscope batch: {len(jobs)} slide(s) -> {out}")
    try:
        result = run_batch(
            jobs,
            config,
            out,
            make_executor,
            retry_failed=retry_failed,
            on_outcome=on_outcome,
            input_label=str(input_path),
        )
    except KeyboardInterrupt:
        click.echo(
            f"vimscope batch: interrupted; slides in progress stopped where they were (report: {out / 'report.md'}); "
            "run the same command again to resume",
            err=True,
        )
        raise
    report = result.report
    counts, run = report["counts"], report["run"]
    if skipped:
        done_before = sum(1 for o in skipped if o.reason and o.reason.startswith("done"))
        echo(f"{done_before} slide(s) done before, {len(skipped) - done_before} failed before (--retry-failed)")
    echo(
        f"{counts['done']} of {counts['total']} slides done, {counts['failed']} failed, in {run['seconds']:.1f} s "
        f"({run['execution']}); report: {result.report_md}"
    )
    if counts["failed"]:
        raise BatchFailedError(f"{counts['failed']} of {counts['total']} slides failed; reasons in {result.report_md}")
    return 0


# segment's options that batch defines itself: --workers means processes here (reader threads are
# --reader-threads), -o is required, and the slides come from INPUT.
OWN_OPTIONS = {"slides", "out", "workers"}


def pipeline_options(f):
    """Every option of ``vimscope segment`` (taken from the command itself, so batch follows it), less OWN_OPTIONS."""
    from vimscope.cli.segment import segment

    params = getattr(f, "__click_params__", [])
    # click.command() reverses __click_params__, so append in reverse to keep segment's order in --help
    params.extend(p for p in reversed(segment.params) if p.name not in OWN_OPTIONS)
    f.__click_params__ = params
    return f


def batch_options(f):
    """The options that are the batch runner's own."""
    decorators = [
        click.argument("input_path", metavar="INPUT", type=click.Path(path_type=Path)),
        click.option(
            "-o",
            "--out",
            required=True,
            type=click.Path(path_type=Path),
            help="Output folder (state, outputs, report).",
        ),
        click.option(
            "--pattern",
            "patterns",
            multiple=True,
            help="Glob of slide names when INPUT is a folder (repeatable; default: common slide formats).",
        ),
        click.option(
            "--workers",
            default="local",
            show_default=True,
            help="'local': one process per visible GPU, else CPU processes; or N local processes (shared round-robin"
            " over the visible GPUs).",
        ),
        click.option("--scheduler", metavar="tcp://HOST:PORT", help="Run on this dask.distributed scheduler."),
        click.option(
            "--scheduler-file", type=click.Path(dir_okay=False), help="Run on the dask scheduler this file names."
        ),
        click.option("--retry-failed", is_flag=True, help="Run slides that failed before again."),
        click.option(
            "--retries", default=2, show_default=True, help="Times a slide is retried after its worker process dies."
        ),
        click.option("--threads", type=int, help="Torch threads per worker (default: cores / local CPU workers)."),
        click.option("--reader-threads", type=int, default=None, help="Tile reader threads per worker (0: auto)."),
        click.option("--features", "features_mode", is_flag=True, help="Run `vimscope features` instead of segment."),
    ]
    for decorator in reversed(decorators):
        f = decorator(f)
    return f


def batch_config(*, features_mode: bool, reader_threads, formats=(), probabilities=False, no_image_copy=False, **opts):
    """The PipelineConfig every slide gets: what ``vimscope segment`` (or ``features``) builds from these options."""
    from vimscope.cli.segment import build_config, segment_config

    opts["workers"] = reader_threads
    if features_mode:
        if formats or probabilities or no_image_copy:
            raise ConfigError("--format, --probabilities and --no-image-copy apply to segmentation, not --features")
        return build_config(outputs=["features", "summary"], **opts)
    return segment_config(formats, probabilities, no_image_copy, **opts)


@click.command()
@batch_options
@pipeline_options
def batch(input_path, out, patterns, workers, scheduler, scheduler_file, retry_failed, retries, threads, quiet, **opts):
    """Run the segment (or --features) pipeline on every slide of INPUT: a folder (searched recursively), a text
    list of paths, or a CSV/TSV manifest with a path column and optional mpp, target_mpp, roi and name columns
    that override the options for their row.

    \b
    Per-slide state and leases live in OUT/_batch; run the same command again to resume: slides done with the
    same settings are skipped, interrupted ones resume where they stopped, failed ones rerun with --retry-failed.
    A slide that fails is recorded with its reason and the run goes on; the exit status is non-zero if any
    slide failed. OUT/report.md and OUT/report.json summarise the run.
    """
    config = batch_config(**opts)
    code = run_batch_command(
        input_path,
        out,
        config,
        patterns=patterns,
        workers=workers,
        scheduler=scheduler,
        scheduler_file=scheduler_file,
        retry_failed=retry_failed,
        retries=retries,
        threads=threads,
        quiet=quiet,
    )
    if code:
        click.get_current_context().exit(code)
