"""``ideochar batch FILE``: every row of a JSONL or CSV file as one job, spread over the providers.

::

    ideochar batch rows.jsonl -r face.png --speed turbo -p fal,segmind --max-cost 25 --out out/
    ideochar batch rows.csv --dry-run                 # check every row, price it, estimate its time

The run, in order: every row is read and checked (all problems at once, with row numbers; nothing is
sent while any row is invalid, unless ``--skip-invalid``), the batch is priced and timed
(:func:`ideochar.batch.plan`; ``--dry-run`` stops there), then the rows run through
:meth:`AsyncClient.batch <ideochar.client.AsyncClient.batch>`. stdout carries nothing but the
manifest, one JSON line per row as it ends (also written to ``--out``/manifest.jsonl, put in the file's
order at the end); stderr the progress (a bar on a terminal; ``--json``: a JSON line a second) and the
summary, beside the images a chart of cost by vendor and latency (``batch-summary.png``) and
``summary.json``. Running the same command again picks up where it stopped.

Exit codes: 0 every row done; 1 some rows failed, were not sent (over the cap) or are left for the next
run; 2 invalid rows (nothing sent); other ideochar errors as for ``generate``.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from ideochar._cli.options import _money, config_option, emulator_options, image_option, parse_color

if TYPE_CHECKING:
    from ideochar.batch import BatchPlan, BatchSummary, RowSource
    from ideochar.client import AsyncClient

__all__ = ["BATCH_HELP", "batch_options", "run_batch"]

F = TypeVar("F", bound=Callable[..., Any])

BATCH_HELP = """Every row of FILE (JSONL or CSV) as one job, spread over the providers by their capacity.

Rows have generate's fields under their request names (prompt, reference, aspect_ratio, seed, ...;
operation with image, mask, strength for edits and remixes; an optional id); the options below give
defaults for every row. The manifest (one JSON line per row) goes to stdout and --out; progress and
the summary to stderr. Run the same command again to pick up where it stopped: rows already done are
skipped, jobs a stopped run left are finished by their vendor ids, nothing is sent twice, and an edited
row runs again alone. --dry-run checks every row, prices the batch and estimates its time; nothing is
sent.
"""

_INVALID_EXIT_CODE = 2
_INCOMPLETE_EXIT_CODE = 1
_SHOWN_ERRORS = 50
_STRATEGIES = ("as_listed", "cheapest", "fastest")


def _apply(f: F, decorators: Sequence[Callable[[F], F]]) -> F:
    for decorator in reversed(decorators):
        f = decorator(f)
    return f


def _colors(ctx: click.Context, param: click.Parameter, values: Sequence[str]) -> list[dict[str, Any]]:
    return [parse_color(v) for v in values]


def batch_options(f: F) -> F:
    """The command's options: the file, defaults for every row, routing, the batch's own, output."""
    decorators: list[Callable[[F], F]] = [
        click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path)),
        click.option(
            "--format", "file_format", type=click.Choice(["jsonl", "csv"]), help="Default: from FILE's suffix."
        ),
        *_row_defaults(),
        *_routing(),
        *_batch_own(),
        *_output(),
    ]
    return _apply(emulator_options(config_option(f)), decorators)


def _row_defaults() -> list[Callable[[F], F]]:
    """Defaults for every row that leaves the field out (generate's options, under the same names)."""
    return [
        click.option("--prompt", metavar="TEXT", help="Default prompt for rows without one."),
        image_option("-r", "--reference", help="Default reference image for rows without one."),
        image_option("--reference-mask", help="Default reference mask."),
        click.option("--operation", type=click.Choice(["generate", "edit", "remix"]), help="Default operation."),
        image_option("--image", help="Default image to edit or remix."),
        image_option("--mask", help="Default mask for edit rows."),
        click.option("--strength", type=float, help="Default strength for remix rows (0.01-1; else 0.8)."),
        click.option("--aspect-ratio", metavar="W:H"),
        click.option("--resolution", metavar="WxH"),
        click.option("--style", type=click.Choice(["auto", "realistic", "fiction"])),
        click.option("--speed", type=click.Choice(["turbo", "default", "quality"])),
        click.option("--magic-prompt", type=click.Choice(["auto", "on", "off"])),
        click.option("-n", "--num-images", type=int),
        click.option("--negative-prompt", metavar="TEXT"),
        click.option("--palette", metavar="PRESET"),
        click.option("--color", multiple=True, callback=_colors, metavar="#RRGGBB[:WEIGHT]"),
        click.option("--style-code", multiple=True, metavar="HEX8"),
        image_option("--style-reference", multiple=True),
        click.option("--extra", multiple=True, metavar="PROVIDER.OPTION=VALUE"),
        click.option("--extra-json", metavar="JSON|@FILE"),
    ]


def _routing() -> list[Callable[[F], F]]:
    """Which providers each row may go to, and in what order."""
    return [
        click.option(
            "-p",
            "--provider",
            "providers",
            multiple=True,
            metavar="NAME[,NAME...]",
            help="Providers in order of preference (default: the configuration, else all).",
        ),
        click.option(
            "--strategy",
            type=click.Choice(_STRATEGIES),
            help="Order of preference: as listed (default), cheapest first, or fastest observed.",
        ),
        click.option("--strict", is_flag=True, help="Skip a provider that would ignore any field a row sets."),
        click.option("--no-fan-out", is_flag=True, help="Refuse providers that need several calls for num_images."),
        click.option("--deadline", type=float, metavar="SECONDS", help="Bound on each job, failover included."),
    ]


def _batch_own() -> list[Callable[[F], F]]:
    """The batch's own: its cap, spilling, its name, a dry run."""
    return [
        click.option(
            "--max-cost",
            "batch_cap",
            callback=_money,
            metavar="USD",
            help="Cap on the whole batch, over all its runs: a job is sent only if its quote still fits.",
        ),
        click.option(
            "--max-job-cost",
            "max_cost",
            callback=_money,
            metavar="USD",
            help="Price cap per row: providers quoting more are not used for it.",
        ),
        click.option(
            "--no-spill",
            is_flag=True,
            help="Wait for each row's preferred provider instead of sending it to the next one with room.",
        ),
        click.option(
            "--in-flight",
            type=click.IntRange(min=1),
            metavar="N",
            help="Images in flight per provider that declares no limit (default 16).",
        ),
        click.option(
            "--retry-failed", is_flag=True, help="Send again rows that failed after a vendor may have charged for them."
        ),
        click.option("--skip-invalid", is_flag=True, help="Run the valid rows even when some are invalid."),
        click.option(
            "--dry-run", is_flag=True, help="Check every row, price the batch, estimate its time; send nothing."
        ),
        click.option("--name", metavar="NAME", help="The batch's name in the journal (default: the --out folder)."),
    ]


def _output() -> list[Callable[[F], F]]:
    """Where the journal, the images, the manifest and the progress go."""
    return [
        click.option(
            "--journal",
            "journal_path",
            type=click.Path(dir_okay=False, path_type=Path),
            metavar="FILE",
            help="The journal file (default: the configuration, IDEOCHAR_JOURNAL, else the user data folder).",
        ),
        click.option(
            "-o",
            "--out",
            "out_dir",
            type=click.Path(file_okay=False, path_type=Path),
            default=Path("out"),
            show_default=True,
            help="Folder for the images, manifest.jsonl, summary.json and the chart.",
        ),
        click.option(
            "--json",
            "as_json",
            is_flag=True,
            help="Progress and summary on stderr as JSON lines; --dry-run prints its plan as JSON.",
        ),
        click.option(
            "--progress",
            type=click.Choice(["auto", "live", "plain", "off"]),
            default="auto",
            show_default=True,
            help="Progress on stderr: a bar on a terminal, else a line every few seconds.",
        ),
        click.option("-q", "--quiet", is_flag=True, help="No progress output (same as --progress off)."),
        click.option(
            "--allow-private-urls",
            is_flag=True,
            help="Fetch image URLs on private, loopback or link-local addresses; refused by default.",
        ),
    ]


def defaults_of(params: Mapping[str, Any]) -> dict[str, Any]:
    """The flags given as defaults for every row, in the rows' words (unset flags are left out)."""
    from ideochar._cli.options import request_fields

    defaults = request_fields(params)
    for name in ("prompt", "reference", "operation", "image", "mask", "strength"):
        if params.get(name) is not None:
            defaults[name] = params[name]
    if "reference_mask" in defaults:
        defaults["reference_mask"] = params["reference_mask"]
    return defaults


def run_batch(ctx: click.Context, params: dict[str, Any]) -> None:
    """The command (module docstring)."""
    from ideochar import cli as commands
    from ideochar.batch import DEFAULT_IN_FLIGHT, RowSource, plan

    ctx.meta["ideochar.json"] = False  # errors in words on stderr: stdout is the manifest's
    state = commands._state(ctx)
    source = RowSource(params["file"], defaults=defaults_of(params), file_format=params.get("file_format"))
    with commands._session(ctx, state, params) as session:
        client = commands._client(ctx, session, state)
        if client.journal is None:
            raise click.UsageError("a batch needs the journal (it is how a stopped batch picks up): turn it back on")
        planned = plan(
            client,
            source,
            spill=not params["no_spill"],
            cap=params.get("batch_cap"),
            in_flight=params.get("in_flight") or DEFAULT_IN_FLIGHT,
            seconds=_seen(client, source),
        )
        if params["dry_run"]:
            _print_plan(planned, as_json=params["as_json"])
            ctx.exit(_INVALID_EXIT_CODE if planned.invalid else 0)
        if planned.invalid:
            _print_errors(planned)
            if not params["skip_invalid"]:
                click.echo(
                    f"nothing was sent: {planned.invalid} of {planned.rows} rows are invalid (fix them, or "
                    "--skip-invalid to run the others)",
                    err=True,
                )
                ctx.exit(_INVALID_EXIT_CODE)
        from ideochar._cli.output import check_out_dir

        check_out_dir(params["out_dir"])
        summary = _run(ctx, session, client, source, planned, params)
    code = _finish(summary, params)
    ctx.exit(code)


def _seen(client: AsyncClient, source: RowSource) -> dict[str, tuple[float, Any]]:
    """Time per job each provider took in your journal (non-emulated jobs like the first valid row)."""
    from ideochar._cli.timing import observed_seconds

    first = next((row.request for row in source if row.request is not None), None)
    if first is None:
        return {}
    seen = observed_seconds(client.settings.journal_path, first)
    return {name: (seconds, "seen") for name, (seconds, _) in seen.items()}


def _run(
    ctx: click.Context,
    session: Any,
    client: AsyncClient,
    source: RowSource,
    planned: BatchPlan,
    params: Mapping[str, Any],
) -> BatchSummary:
    from ideochar import cli as commands
    from ideochar._cli.batch_progress import BatchDisplay
    from ideochar.batch._manifest import line

    mode = "off" if params.get("quiet") else params.get("progress", "auto")
    display = BatchDisplay(sys.stderr, mode, as_json=params["as_json"])

    async def work(c: AsyncClient) -> BatchSummary:
        batch = c.batch(
            source,
            out=params["out_dir"],
            name=params.get("name"),
            max_cost_usd=params.get("batch_cap"),
            spill=not params["no_spill"],
            retry_failed=params["retry_failed"],
            in_flight=params.get("in_flight"),
            strict=True if params.get("strict") else None,
            total=planned.rows,
        )
        display.watch(batch.progress)
        async with batch:
            async for row in batch:
                click.echo(line(row.to_json()))
                display.row(row)
        return batch.summary

    with display:
        try:
            summary: BatchSummary = commands._drive(ctx, session, client, work)
        except KeyboardInterrupt:
            display.close()
            click.echo(
                "\nstopped: the rows in flight are in the journal; run the same command again to pick up where it "
                "stopped (nothing is sent twice).",
                err=True,
            )
            raise
    return summary


def _finish(summary: BatchSummary, params: Mapping[str, Any]) -> int:
    """The summary on stderr, summary.json and the chart beside the images; the exit code."""
    from ideochar._cli.batch_progress import summary_lines
    from ideochar.batch._chart import draw_summary

    out: Path = params["out_dir"]
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.json").write_text(json.dumps(summary.to_json(), indent=2) + "\n", encoding="utf-8")
    chart = draw_summary(summary, out / "batch-summary.png")
    if params["as_json"]:
        document = {"event": "summary", **summary.to_json(), "chart": str(chart) if chart else None}
        click.echo(json.dumps(document), err=True)
    elif not params.get("quiet"):
        for text in summary_lines(summary, out=out, chart=chart):
            click.echo(text, err=True)
    return 0 if summary.complete else _INCOMPLETE_EXIT_CODE


def _print_errors(planned: BatchPlan) -> None:
    for number, error in planned.errors[:_SHOWN_ERRORS]:
        click.echo(f"row {number}: {error.field}: {error.problem}", err=True)
    hidden = len(planned.errors) - _SHOWN_ERRORS
    if hidden > 0 or planned.invalid > len({n for n, _ in planned.errors}):
        click.echo(f"... and more: {planned.invalid} invalid rows in all (--dry-run --json lists them)", err=True)


def _print_plan(planned: BatchPlan, *, as_json: bool) -> None:
    from ideochar._cli.batch_progress import plan_lines

    if as_json:
        click.echo(json.dumps(planned.to_json(), indent=2))
        return
    _print_errors(planned)
    for text in plan_lines(planned):
        click.echo(text)
