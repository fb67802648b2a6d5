"""The ``ideochar`` command line: a thin layer over :class:`~ideochar.client.Client`.

::

    ideochar generate PROMPT -r face.png [--aspect-ratio 16:9 ...] [-p fal,segmind] [--out out/] [--json]
    ideochar edit PROMPT -r face.png --image scene.png --mask mask.png
    ideochar remix PROMPT -r face.png --image scene.png --strength 0.5
    ideochar quote PROMPT [-r face.png] [-n 4 --speed quality]      price and support per provider, nothing sent
    ideochar providers                                              what each provider can do
    ideochar jobs list|show|resume                                  the journal of jobs
    ideochar emulator serve [--port 0]                              the vendors' protocols on loopback

Request options map one to one onto :class:`~ideochar.request.CharacterRequest` fields; the library
checks them, so both reject the same things in the same words. Every error of ideochar ends the
command with one readable message on stderr and the error class's ``exit_code`` (``--debug`` adds the
traceback). Keys are read from the environment (or a credentials plugin) only: a ``--key`` flag would
leave them in shell history. ``--emulator`` runs everything against the built-in emulator, with no key,
and replaces every configured base URL. ``--config FILE`` names the configuration file to trust; a file
merely found above the working folder may not set base URLs, options or paths (each one it tries is a
``warning:`` line on stderr), and every base URL that is not the vendor's own is named once on stderr.

Plugins add subcommands through the ``ideochar_register_commands(cli)`` hook; they are loaded only when
a command that is not built in is asked for (or the help lists them), so ``ideochar generate`` does not
pay for them.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
import traceback
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, cast

import click

from ideochar._cli.options import (
    client_options,
    config_option,
    emulator_options,
    output_options,
    provider_names,
    request_fields,
    request_options,
    routing_options,
)
from ideochar._secrets import RedactingFilter, redact
from ideochar.errors import IdeocharError

if TYPE_CHECKING:
    import httpx
    import pluggy

    from ideochar._cli.progress import Progress, ProgressMode
    from ideochar.client import Client
    from ideochar.events import Event
    from ideochar.journal import Journal
    from ideochar.request import CharacterRequest
    from ideochar.result import CharacterResult
    from ideochar.spec import Provider, ProviderInfo

__all__ = ["CliState", "cli", "main"]

logger = logging.getLogger("ideochar.cli")

_DEBUG = "ideochar.debug"
_JSON = "ideochar.json"
_PROGRESS = "ideochar.progress"
_JOURNALED = "ideochar.journaled"
_INTERRUPTED_EXIT_CODE = 130

F = TypeVar("F", bound=Callable[..., Any])
_Callback = Callable[..., Any]


@dataclass
class CliState:
    """What the commands share; tests pass their own (a plugin manager, an HTTP client) as ``obj``."""

    plugin_manager: pluggy.PluginManager | None = None
    http: httpx.Client | None = None
    """Handed to every Client (a test's MockTransport); None: each Client makes its own."""
    environ: Mapping[str, str] | None = None
    """Where keys are read from; None: ``os.environ``."""
    _providers: dict[str, Provider] | None = field(default=None, repr=False)

    @property
    def pm(self) -> pluggy.PluginManager:
        if self.plugin_manager is None:
            from ideochar.plugins import get_plugin_manager

            self.plugin_manager = get_plugin_manager()
        return self.plugin_manager

    @property
    def providers(self) -> dict[str, Provider]:
        """Every registered provider by name, configured or not."""
        if self._providers is None:
            from ideochar.plugins import collect_providers

            self._providers = collect_providers(self.pm)
        return self._providers

    def infos(self) -> dict[str, ProviderInfo]:
        try:
            return {name: p.info for name, p in self.providers.items()}
        except Exception:  # only used to word an error; never hide the original one
            return {}


def _state(ctx: click.Context) -> CliState:
    root = ctx.find_root()
    if not isinstance(root.obj, CliState):
        root.obj = CliState()
    return root.obj


# -- the group: plugin commands and error handling --------------------------------------------------------


class IdeocharGroup(click.Group):
    """A group that loads plugin commands on demand and turns ideochar errors into exit codes."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._loaded_from: set[int] = set()

    def _load_plugin_commands(self, ctx: click.Context) -> None:
        pm = _state(ctx).pm
        if id(pm) in self._loaded_from:
            return
        self._loaded_from.add(id(pm))
        try:
            pm.hook.ideochar_register_commands(cli=self)
        except Exception as exc:  # a broken plugin must not take the built-in commands down
            click.echo(f"warning: a plugin failed to add its commands: {redact(str(exc))}", err=True)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        command = super().get_command(ctx, cmd_name)
        if command is None:
            self._load_plugin_commands(ctx)
            command = super().get_command(ctx, cmd_name)
        return command

    def list_commands(self, ctx: click.Context) -> list[str]:
        self._load_plugin_commands(ctx)
        return super().list_commands(ctx)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            with _config_warnings():
                return super().invoke(ctx)
        except IdeocharError as exc:
            _report(ctx, exc)
            ctx.exit(exc.exit_code)
        except KeyboardInterrupt:
            _interrupted(ctx)
            ctx.exit(_INTERRUPTED_EXIT_CODE)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except Exception as exc:
            if ctx.meta.get(_DEBUG):
                raise
            click.echo(redact(f"internal error: {type(exc).__name__}: {exc} (--debug shows the traceback)"), err=True)
            ctx.exit(1)


class _EchoWarnings(logging.Handler):
    """A configuration warning (a found file's ignored settings) as one ``warning:`` line on stderr."""

    def emit(self, record: logging.LogRecord) -> None:
        click.echo(redact(f"warning: {record.getMessage()}"), err=True)


@contextlib.contextmanager
def _config_warnings() -> Iterator[None]:
    """Show the configuration's warnings on stderr, once: the library logs them, the command prints them
    (and stops them reaching Python's last-resort handler, which would print them a second time)."""
    config_logger = logging.getLogger("ideochar.config")
    handler = _EchoWarnings(logging.WARNING)
    propagate = config_logger.propagate
    config_logger.addHandler(handler)
    config_logger.propagate = False
    try:
        yield
    finally:
        config_logger.removeHandler(handler)
        config_logger.propagate = propagate


def _journaled_job(ctx: click.Context, exc: BaseException | None = None) -> str | None:
    """The id of the job this run recorded in a journal, if it did (for ``ideochar jobs resume``)."""
    if not ctx.meta.get(_JOURNALED):
        return None
    progress: Progress | None = ctx.meta.get(_PROGRESS)
    job_id = getattr(exc, "job_id", None) or (progress.job_id if progress is not None else None)
    return str(job_id) if job_id else None


def _report(ctx: click.Context, exc: IdeocharError) -> None:
    from ideochar._cli.errors import error_document, error_lines

    if ctx.meta.get(_DEBUG):
        click.echo(redact("".join(traceback.format_exception(type(exc), exc, exc.__traceback__))), err=True)
    job = _journaled_job(ctx, exc)
    for line in error_lines(exc, _state(ctx).infos(), resume_job=job):
        click.echo(line, err=True)
    if ctx.meta.get(_JSON):
        document = error_document(exc)
        document["job_id"] = job
        click.echo(json.dumps({"error": document}, indent=2))


def _interrupted(ctx: click.Context) -> None:
    progress: Progress | None = ctx.meta.get(_PROGRESS)
    click.echo("\ninterrupted.", err=True)
    job = _journaled_job(ctx)
    for submitted in progress.submitted if progress else []:
        click.echo(
            f"{submitted.provider} had admitted job {submitted.vendor_request_id}: it may still finish and be billed. "
            + (f"Fetch it with: ideochar jobs resume {job}" if job else "Do not send it again."),
            err=True,
        )
    if job and not (progress and progress.submitted):
        click.echo(f"the job is in the journal: ideochar jobs resume {job}", err=True)


def _debug(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    if not value or ctx.meta.get(_DEBUG):
        return
    ctx.meta[_DEBUG] = True
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
    handler.addFilter(RedactingFilter())  # records of child loggers skip the parent logger's own filter
    root = logging.getLogger("ideochar")
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)

    def restore() -> None:
        root.removeHandler(handler)
        root.setLevel(level)

    ctx.find_root().call_on_close(restore)


_debug_option = click.option(
    "--debug",
    is_flag=True,
    expose_value=False,
    is_eager=True,
    callback=_debug,
    help="Show tracebacks and log every job event on stderr.",
)


@click.group(cls=IdeocharGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="ideochar", prog_name="ideochar")
@_debug_option
def cli() -> None:
    """Character-consistent images (Ideogram V3 Character) from fal.ai, Segmind, Ideogram or Replicate.

    Try it without keys: add --emulator to generate, edit, remix or quote.
    """


# -- generate / edit / remix --------------------------------------------------------------------------------


def _environ(state: CliState, config_file: Path | None) -> Mapping[str, str] | None:
    """The environment the library reads, with ``--config`` standing in for ``IDEOCHAR_CONFIG``."""
    if config_file is None:
        return state.environ
    return {**(os.environ if state.environ is None else state.environ), "IDEOCHAR_CONFIG": str(config_file)}


def _announce_base_urls(client: Client, state: CliState, *, emulated: bool) -> None:
    """Name every base URL that is not its provider's own, once, on stderr, with where it was set.

    Traffic (and the key) going somewhere other than the vendor should never be a surprise. Only URLs
    are shown: a configured URL cannot hold a key (no user, password or query is accepted).
    """
    settings = client.settings
    infos = state.infos()
    for provider, urls in sorted(settings.base_urls.items()):
        if provider not in infos:
            click.echo(f"warning: base_urls.{provider}: no provider named {provider!r} is installed", err=True)
            continue
        for name, url in sorted(urls.items()):
            if infos[provider].base_urls.get(name) == url:
                continue
            source = settings.source_of(f"base_urls.{provider}.{name}") or "the configuration"
            if emulated:
                click.echo(
                    f"note: {provider} {name} → {url} (from {source}) is not used: the emulator replaces it", err=True
                )
            else:
                click.echo(f"{provider} {name} → {url} (from {source})", err=True)


def _client(
    state: CliState,
    params: Mapping[str, Any],
    on_event: Callable[[Event], None] | None = None,
    journal_obj: Journal | None = None,
) -> Client:
    """A Client from the options; options left unset are None, so the configuration decides them."""
    from ideochar.client import Client

    emulator: bool | str = params.get("emulator_url") or bool(params.get("emulator"))
    journal: Journal | bool | Path | None = journal_obj
    if journal_obj is None and params.get("no_journal"):
        journal = False
    elif journal_obj is None and emulator is True and params.get("journal_path") is None:
        journal = False  # the in-process emulator dies with this process: its jobs could never be resumed
    elif journal_obj is None and params.get("journal_path") is not None:
        journal = params["journal_path"]
    client = Client(
        provider_names(params.get("providers") or ()),
        strict=True if params.get("strict") else None,
        fan_out=False if params.get("no_fan_out") else None,
        max_cost_usd=params.get("max_cost"),
        strategy=params.get("strategy"),
        deadline_seconds=params.get("deadline"),
        on_event=on_event,
        emulator=emulator,
        plugin_manager=state.pm,
        http=state.http,
        environ=_environ(state, params.get("config_file")),
        journal=journal,
    )
    _announce_base_urls(client, state, emulated=bool(emulator))
    return client


def _request(params: Mapping[str, Any], operation: dict[str, Any]) -> CharacterRequest:
    from ideochar.request import CharacterRequest

    return CharacterRequest(
        prompt=params["prompt"], reference=params["reference"], operation=operation, **request_fields(params)
    )


def _progress(ctx: click.Context, params: Mapping[str, Any]) -> Progress:
    from ideochar._cli.progress import Progress

    mode = "off" if params.get("quiet") else params.get("progress", "auto")
    progress = Progress(sys.stderr, cast("ProgressMode", mode))
    ctx.meta[_PROGRESS] = progress
    return progress


def _run(ctx: click.Context, params: dict[str, Any], operation: dict[str, Any]) -> None:
    """Build the request (checked before anything is sent), serve it, save it, report it."""
    ctx.meta[_JSON] = params["as_json"]
    state = _state(ctx)
    request = _request(params, operation)
    progress = _progress(ctx, params)
    with _client(state, params, on_event=progress) as client:
        ctx.meta[_JOURNALED] = client.journal is not None
        with progress:
            result = client.run(request)
    _deliver(ctx, result, request, params)


def _deliver(
    ctx: click.Context, result: CharacterResult, request: CharacterRequest | None, params: Mapping[str, Any]
) -> None:
    """Save the images and the sidecar under --out, then print the summary (or the JSON document)."""
    from ideochar._cli.output import save_result, summary_lines

    try:
        saved = save_result(result, params["out_dir"], request)
    except OSError as exc:  # the images are paid for: keep them somewhere rather than lose them
        import tempfile

        fallback = Path(tempfile.mkdtemp(prefix="ideochar-"))
        click.echo(
            f"warning: cannot write to {params['out_dir']} ({exc.strerror or exc}); saving to {fallback}", err=True
        )
        saved = save_result(result, fallback, request)
    if params["as_json"]:
        click.echo(json.dumps(saved.document, indent=2, ensure_ascii=False))
        return
    for line in summary_lines(saved):
        click.echo(line)
    if ctx.meta.get(_JOURNALED) and result.job_id:
        click.echo(f"journal: job {result.job_id} (ideochar jobs show {result.job_id[:12]})")


def _edit_options(f: F) -> F:
    f = click.option(
        "--mask", required=True, metavar="IMAGE", help="Same size as --image: black = repaint, white = keep."
    )(f)
    return click.option("--image", required=True, metavar="IMAGE", help="The image to edit.")(f)


def _remix_options(f: F) -> F:
    f = click.option(
        "--strength",
        type=float,
        default=0.8,
        show_default=True,
        help="How strongly --image shapes the result (0.01 barely - 1 most).",
    )(f)
    return click.option("--image", required=True, metavar="IMAGE", help="The image to remix.")(f)


def _job_command(
    name: str, help_text: str, operation_options: Callable[[_Callback], _Callback] | None = None
) -> Callable[[_Callback], click.Command]:
    """The options every job command shares, in the order ``--help`` shows them."""

    def decorate(f: _Callback) -> click.Command:
        f = client_options(output_options(_debug_option(f)))
        if operation_options is not None:
            f = operation_options(f)
        return cli.command(name, help=help_text)(request_options()(f))

    return decorate


@_job_command("generate", "A new image of the character in --reference, as PROMPT describes.")
@click.pass_context
def generate(ctx: click.Context, /, **params: Any) -> None:
    _run(ctx, params, {"operation": "generate"})


@_job_command("edit", "Repaint the black area of --mask on --image, keeping the character.", _edit_options)
@click.pass_context
def edit(ctx: click.Context, /, image: str, mask: str, **params: Any) -> None:
    _run(ctx, params, {"operation": "edit", "image": image, "mask": mask})


@_job_command("remix", "A new image from --image with the character, changed by --strength.", _remix_options)
@click.pass_context
def remix(ctx: click.Context, /, image: str, strength: float, **params: Any) -> None:
    _run(ctx, params, {"operation": "remix", "image": image, "strength": strength})


# -- quote and providers -----------------------------------------------------------------------------------


def _chosen(state: CliState, params: Mapping[str, Any]) -> list[Provider]:
    """The providers named by ``--provider`` in that order, else every registered one (configured or not)."""
    available = state.providers
    names = provider_names(params.get("providers") or ()) or sorted(available)
    missing = [n for n in names if n not in available]
    if missing:
        from ideochar.errors import InvalidRequest

        installed = ", ".join(sorted(available)) or "none"
        raise InvalidRequest.for_field("providers", f"{missing[0]!r} is not installed; installed: {installed}")
    return [available[n] for n in names]


def _placeholder_mask(image: Any) -> bytes:
    """A mask the size of ``image`` (white, a black square in the middle) for quoting an edit."""
    import io

    from PIL import Image, ImageDraw

    from ideochar.media import ImageInput

    width, height = ImageInput.of(image).dimensions or (512, 512)
    mask = Image.new("L", (width, height), 255)
    ImageDraw.Draw(mask).rectangle((width // 4, height // 4, 3 * width // 4, 3 * height // 4), fill=0)
    buffer = io.BytesIO()
    mask.save(buffer, "PNG")
    return buffer.getvalue()


@cli.command()
@request_options(reference_required=False)
@click.option(
    "--operation",
    type=click.Choice(["generate", "edit", "remix"]),
    help="Default: edit with --mask, remix with --image, else generate.",
)
@click.option("--image", metavar="IMAGE", help="For edit/remix (optional: a placeholder is used).")
@click.option("--mask", metavar="IMAGE", help="For edit (optional: a placeholder is used).")
@click.option("--strength", type=float, default=0.8, show_default=True)
@routing_options
@emulator_options
@click.option("--json", "as_json", is_flag=True, help="Print the quotes as JSON on stdout.")
@_debug_option
@click.pass_context
def quote(
    ctx: click.Context, /, operation: str | None, image: str | None, mask: str | None, strength: float, **params: Any
) -> None:
    """Price and support of each provider for a request. Sends nothing, needs no key.

    Lists every registered provider unless --provider is given. Images are optional: quoting needs
    only what a request asks for, so the shipped reference stands in for any image left out.
    """
    from ideochar._cli.tables import QUOTE_HEADERS, QUOTE_RIGHT, quote_document, quote_rows, render
    from ideochar.assets import reference_bytes

    ctx.meta[_JSON] = params["as_json"]
    state = _state(ctx)
    operation = operation or ("edit" if mask else "remix" if image else "generate")
    if params.get("reference") is None:
        params["reference"] = reference_bytes()
    op: dict[str, Any] = {"operation": operation}
    if operation in ("edit", "remix"):
        op["image"] = image or params["reference"]
    if operation == "edit":
        op["mask"] = mask or _placeholder_mask(op["image"])
    if operation == "remix":
        op["strength"] = strength
    request = _request(params, op)
    fan_out = not params.get("no_fan_out")
    quotes = [p.quote(request, fan_out=fan_out) for p in _chosen(state, params)]
    if params.get("strategy") == "cheapest":
        quotes.sort(key=lambda q: (not q.supported, q.total_usd is None, q.total_usd or 0))
    max_cost, strict = params.get("max_cost"), bool(params.get("strict"))
    if params["as_json"]:
        click.echo(json.dumps(quote_document(quotes, max_cost=max_cost, strict=strict), indent=2))
        return
    click.echo(render(QUOTE_HEADERS, quote_rows(quotes, max_cost=max_cost, strict=strict), right=QUOTE_RIGHT))
    priced = [q for q in quotes if q.supported and q.total_usd is not None]
    if priced:
        from ideochar._cli.output import money

        low = min(q.total_usd for q in priced if q.total_usd is not None)
        best = [q.provider for q in priced if q.total_usd == low]
        images = priced[0].images
        click.echo(f"\ncheapest: {', '.join(best)} at {money(low)} for {images} image(s). Nothing was sent.")
    else:
        click.echo("\nno provider can serve this request. Nothing was sent.")


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print the capabilities as JSON on stdout.")
@_debug_option
@click.pass_context
def providers(ctx: click.Context, as_json: bool) -> None:
    """What each registered provider can do: operations, fields, prices, limits, keys."""
    from ideochar._cli.tables import (
        PROVIDER_HEADERS,
        PROVIDER_RIGHT,
        provider_document,
        provider_rows,
        render,
        supported_fields_rows,
    )
    from ideochar.plugins import broken_plugins

    state = _state(ctx)
    infos = [state.providers[name].info for name in sorted(state.providers)]
    if as_json:
        docs = [provider_document(info, state.environ) for info in infos]
        click.echo(json.dumps({"providers": docs, "broken_plugins": dict(broken_plugins)}, indent=2))
        return
    if not infos:
        click.echo("no provider is installed.")
    else:
        click.echo(render(PROVIDER_HEADERS, provider_rows(infos, state.environ), right=PROVIDER_RIGHT))
        headers, rows = supported_fields_rows(infos)
        click.echo("\nOptional fields honoured (G/E/R: generate/edit/remix; -: ignored with a warning):\n")
        click.echo(render(headers, rows))
        notes = [(info.name, topic, note) for info in infos for topic, note in sorted(info.inferred.items())]
        if notes:
            click.echo("\nInferred, not verified against the live vendor (* on a price):")
            for name, topic, note in notes:
                click.echo(f"  {name}, {topic}: {note}")
    for plugin, reason in sorted(broken_plugins.items()):
        click.echo(f"\nplugin {plugin} failed to load: {redact(reason)}", err=True)


# -- the journal ---------------------------------------------------------------------------------------------


def _open_journal(state: CliState, path: Path | None, config_file: Path | None) -> Journal:
    from ideochar.errors import InvalidRequest
    from ideochar.journal import Journal, default_journal

    if path is not None:
        if not path.is_file():
            raise InvalidRequest.for_field("journal", f"no journal file at {path}")
        return Journal(path)
    journal = default_journal(_environ(state, config_file))
    if journal is None:
        raise InvalidRequest.for_field(
            "journal",
            "the journal is off (journal = false in the configuration, or IDEOCHAR_JOURNAL); no jobs are kept",
        )
    return journal


_journal_file_option = click.option(
    "--journal",
    "journal_path",
    type=click.Path(dir_okay=False, path_type=Path),
    metavar="FILE",
    help="The journal file (default: the configuration, IDEOCHAR_JOURNAL, else the user data folder).",
)


@cli.group()
def jobs() -> None:
    """The journal: every job, its attempts and cost, its images; resume what a stopped run left."""


@jobs.command("list")
@click.option("-n", "--limit", type=int, default=20, show_default=True, help="How many jobs, newest first.")
@click.option("--status", type=click.Choice(["running", "succeeded", "partial", "failed", "unknown"]))
@_journal_file_option
@config_option
@click.option("--json", "as_json", is_flag=True, help="Print the jobs as JSON on stdout.")
@_debug_option
@click.pass_context
def jobs_list(
    ctx: click.Context,
    /,
    limit: int,
    status: str | None,
    journal_path: Path | None,
    config_file: Path | None,
    as_json: bool,
) -> None:
    """Recent jobs with their status, provider, images and spend."""
    from ideochar._cli.output import money
    from ideochar._cli.tables import JOB_HEADERS, JOB_RIGHT, job_rows, render

    ctx.meta[_JSON] = as_json
    with _open_journal(_state(ctx), journal_path, config_file) as journal:
        found = journal.jobs(limit=limit, status=status)
        totals = journal.totals()
    if as_json:
        document = {
            "journal": str(journal.path),
            "jobs": [job.to_dict() for job in found],
            "totals": {
                "jobs": totals.jobs,
                "images": totals.images,
                "spent_usd": str(totals.spent_usd),
                "possibly_billed_usd": str(totals.possibly_billed_usd),
            },
        }
        click.echo(json.dumps(document, indent=2, ensure_ascii=False))
        return
    if not found:
        click.echo(f"no jobs in {journal.path}")
        return
    click.echo(render(JOB_HEADERS, job_rows(found), right=JOB_RIGHT))
    line = f"\n{totals.jobs} job(s), {totals.images} image(s), spent {money(totals.spent_usd)}"
    if totals.possibly_billed_usd:
        line += f", possibly billed {money(totals.possibly_billed_usd)} more (outcome unknown)"
    click.echo(line + f" (journal {journal.path})")


@jobs.command("show")
@click.argument("job_id")
@_journal_file_option
@config_option
@click.option("--json", "as_json", is_flag=True, help="Print the job as JSON on stdout.")
@_debug_option
@click.pass_context
def jobs_show(
    ctx: click.Context, /, job_id: str, journal_path: Path | None, config_file: Path | None, as_json: bool
) -> None:
    """One job (a unique prefix of its id is enough): attempts, vendor ids, costs, saved images."""
    from ideochar._cli.tables import job_lines

    ctx.meta[_JSON] = as_json
    with _open_journal(_state(ctx), journal_path, config_file) as journal:
        job = journal.job(job_id)
    if as_json:
        click.echo(json.dumps(job.to_dict(), indent=2, ensure_ascii=False))
        return
    for line in job_lines(job):
        click.echo(line)


@jobs.command("resume")
@click.argument("job_id")
@_journal_file_option
@config_option
@emulator_options
@output_options
@_debug_option
@click.pass_context
def jobs_resume(ctx: click.Context, /, job_id: str, journal_path: Path | None, **params: Any) -> None:
    """Finish a job a stopped run left: admitted jobs are fetched by vendor id, nothing is sent twice.

    A job stopped before anything was sent is submitted now (the journal proves nothing left).
    Images already saved are read back. The result is saved under --out like generate's.
    """
    ctx.meta[_JSON] = params["as_json"]
    state = _state(ctx)
    progress = _progress(ctx, params)
    with (
        _open_journal(state, journal_path, params.get("config_file")) as journal,
        _client(state, params, on_event=progress, journal_obj=journal) as client,
    ):
        ctx.meta[_JOURNALED] = True
        with progress:
            result = client.resume(job_id)
    _deliver(ctx, result, None, params)


# -- the emulator ----------------------------------------------------------------------------------------


@cli.group()
def emulator() -> None:
    """The built-in emulator of the vendors' APIs (a development and test tool; its images are not the model's)."""


@emulator.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to bind (loopback by default).")
@click.option("--port", type=int, default=0, show_default=True, help="0 picks a free port.")
@click.option(
    "--faults",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="A fault profile (latency, errors, 429s, drops...) to inject.",
)
@click.option("--model-seconds", type=float, default=None, help="Emulated model time per job.")
@_debug_option
@click.pass_context
def emulator_serve(ctx: click.Context, host: str, port: int, faults: Path | None, model_seconds: float | None) -> None:
    """Serve every installed vendor's wire protocol on one port; prints each vendor's base URL."""
    from ideochar.emulator.server import serve

    kwargs: dict[str, Any] = {"host": host, "port": port, "faults": faults}
    if model_seconds is not None:
        kwargs["model_seconds"] = model_seconds
    serve(plugin_manager=_state(ctx).pm, **kwargs)


# -- entry point ----------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> Any:
    """The console script ``ideochar``."""
    return cli.main(args=argv, prog_name="ideochar", obj=CliState())


if __name__ == "__main__":  # pragma: no cover
    main()
