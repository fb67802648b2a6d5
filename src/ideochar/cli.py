"""The ``ideochar`` command line: a thin layer over :class:`~ideochar.client.AsyncClient`.

::

    ideochar generate PROMPT -r face.png [--aspect-ratio 16:9 ...] [-p fal,segmind] [--out out/] [--json]
    ideochar edit PROMPT -r face.png --image scene.png --mask mask.png
    ideochar remix PROMPT -r face.png --image scene.png --strength 0.5
    ideochar quote PROMPT [-r face.png] [-n 4 --speed quality]      price, time and support per provider
    ideochar providers                                              what each provider can do
    ideochar jobs list|show|resume|prune                            the journal of jobs
    ideochar batch rows.jsonl [-r face.png] [--max-cost 25] [--dry-run]   one job per row, spread over vendors
    ideochar keys set|list|remove PROVIDER                          keys stored once
    ideochar emulator serve [--port 0]                              the vendors' protocols on loopback

Request options map one to one onto :class:`~ideochar.request.CharacterRequest` fields; the library
checks them, so both reject the same things in the same words (the command line names its flags where
the library names fields). ``-`` as PROMPT reads it from stdin. Every error of ideochar ends the command
with one readable message on stderr and the error class's ``exit_code`` (``--debug`` adds the traceback
and each HTTP exchange). Keys come from the environment, from ``ideochar keys set`` or from a credentials
plugin: a ``--key`` flag would leave them in shell history. ``--emulator`` runs everything against the
built-in emulator, with no key, and replaces every configured base URL; its jobs are journaled like
any other, marked emulated, and never counted as spent. ``--config FILE`` names the configuration file
to trust; a file merely found above the working folder may not set base URLs, options or paths (each one
it tries is a ``warning:`` line on stderr), and every base URL that is not the vendor's own is named once
on stderr.

Jobs run on an event loop of the command's own (:mod:`ideochar._cli.session`), so the calls of a
fanned-out job run together. Plugins add subcommands through the ``ideochar_register_commands(cli)``
hook; they are loaded only when a command that is not built in is asked for (or the help lists them),
so ``ideochar generate`` does not pay for them.
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

from ideochar._cli.batch import BATCH_HELP, batch_options
from ideochar._cli.options import (
    client_options,
    config_option,
    emulator_options,
    image_option,
    output_options,
    parse_age,
    provider_names,
    read_prompt,
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
    from ideochar._cli.session import Session
    from ideochar.client import AsyncClient
    from ideochar.journal import Journal
    from ideochar.request import CharacterRequest
    from ideochar.result import CharacterResult, JobHandle
    from ideochar.spec import Provider, ProviderInfo

__all__ = ["CliState", "cli", "main"]

logger = logging.getLogger("ideochar.cli")

_DEBUG = "ideochar.debug"
_JSON = "ideochar.json"
_PROGRESS = "ideochar.progress"
_JOURNALED = "ideochar.journaled"
_RESUMING = "ideochar.resuming"
_EMULATOR = "ideochar.emulator"
_INTERRUPTED_EXIT_CODE = 130
_TERMINATED_EXIT_CODE = 143
_SAVED_ELSEWHERE_EXIT_CODE = 1

F = TypeVar("F", bound=Callable[..., Any])
_Callback = Callable[..., Any]


@dataclass
class CliState:
    """What the commands share; tests pass their own (a plugin manager, an HTTP client) as ``obj``."""

    plugin_manager: pluggy.PluginManager | None = None
    http: httpx.Client | httpx.AsyncClient | None = None
    """Handed to every client for vendor calls (a test's MockTransport; a blocking one is driven from
    worker threads); None: each client makes its own."""
    environ: Mapping[str, str] | None = None
    """Where keys and settings are read from; None: ``os.environ``."""
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
        except KeyboardInterrupt as exc:
            from ideochar._cli.session import Terminated

            terminated = isinstance(exc, Terminated)
            _interrupted(ctx, terminated=terminated)
            ctx.exit(_TERMINATED_EXIT_CODE if terminated else _INTERRUPTED_EXIT_CODE)
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


def _resume_command(ctx: click.Context, job: str) -> str | None:
    """How to resume ``job`` from a shell, or None when it cannot be (its emulator died with this run)."""
    emulator = ctx.meta.get(_EMULATOR)
    if emulator == "here":
        return None
    suffix = f" --emulator-url {emulator}" if emulator else ""
    return f"ideochar jobs resume {job}{suffix}"


def _report(ctx: click.Context, exc: IdeocharError) -> None:
    from ideochar._cli.errors import error_document, error_lines

    if ctx.meta.get(_DEBUG):
        click.echo(redact("".join(traceback.format_exception(type(exc), exc, exc.__traceback__))), err=True)
    job = _journaled_job(ctx, exc)
    resume = _resume_command(ctx, job) if job else None
    lines = error_lines(
        exc,
        _state(ctx).infos(),
        resume_command=resume,
        resuming=ctx.meta.get(_RESUMING),
        emulated_here=ctx.meta.get(_EMULATOR) == "here",
    )
    for line in lines:
        click.echo(line, err=True)
    if ctx.meta.get(_JSON):
        document = error_document(exc)
        document["job_id"] = job
        click.echo(json.dumps({"error": document}, indent=2))


def _interrupted(ctx: click.Context, *, terminated: bool) -> None:
    progress: Progress | None = ctx.meta.get(_PROGRESS)
    click.echo("\nterminated." if terminated else "\ninterrupted.", err=True)
    job = _journaled_job(ctx)
    resume = _resume_command(ctx, job) if job else None
    if ctx.meta.get(_EMULATOR) == "here":
        if job:
            click.echo(
                f"job {job[:12]} ran against the emulator, which stopped with this command: nothing was charged, "
                "and nothing is left to fetch.",
                err=True,
            )
        return
    for submitted in progress.submitted if progress else []:
        click.echo(
            f"{submitted.provider} had admitted job {submitted.vendor_request_id}: it may still finish and be billed. "
            + (f"Fetch it with: {resume}" if resume else "Do not send it again."),
            err=True,
        )
    if resume and not (progress and progress.submitted):
        click.echo(f"the job is in the journal: {resume}", err=True)


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
    help="Show tracebacks, every job event and each HTTP exchange (method, URL, status, time) on stderr.",
)


@click.group(cls=IdeocharGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="ideochar", prog_name="ideochar")
@_debug_option
def cli() -> None:
    """Character-consistent images (Ideogram V3 Character) from fal.ai, Segmind, Ideogram or Replicate.

    Try it without keys: add --emulator to generate, edit or remix (the emulator is an extra:
    pip install "ideochar[emulator]"). Store a key once with: ideochar keys set PROVIDER.
    """


# -- generate / edit / remix --------------------------------------------------------------------------------


def _environ(state: CliState, config_file: Path | None) -> Mapping[str, str] | None:
    """The environment the library reads, with ``--config`` standing in for ``IDEOCHAR_CONFIG``."""
    if config_file is None:
        return state.environ
    return {**(os.environ if state.environ is None else state.environ), "IDEOCHAR_CONFIG": str(config_file)}


def _announce_base_urls(client: AsyncClient, state: CliState, *, emulated: bool) -> None:
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


def _session(
    ctx: click.Context,
    state: CliState,
    params: Mapping[str, Any],
    on_event: Callable[[Any], None] | None = None,
    journal_obj: Journal | None = None,
) -> Session:
    """The run's session: options left unset are None, so the configuration decides them.

    Every run is journaled unless ``--no-journal`` (or the configuration) says otherwise, emulated ones
    included: the journal marks them, so resuming works against an emulator and nothing emulated counts
    as spent.
    """
    from ideochar._cli.session import Session, require_emulator

    journal: Journal | bool | Path | None = journal_obj
    if journal_obj is None and params.get("no_journal"):
        journal = False
    elif journal_obj is None and params.get("journal_path") is not None:
        journal = params["journal_path"]
    emulator_url = params.get("emulator_url")
    if emulator_url and params.get("emulator"):
        raise click.UsageError("give --emulator or --emulator-url, not both")
    started_here = bool(params.get("emulator")) and not emulator_url
    if started_here:
        require_emulator("--emulator")
    ctx.meta[_EMULATOR] = "here" if started_here else emulator_url or None
    kwargs: dict[str, Any] = {
        "providers": provider_names(params.get("providers") or ()),
        "strict": True if params.get("strict") else None,
        "fan_out": False if params.get("no_fan_out") else None,
        "max_cost_usd": params.get("max_cost"),
        "strategy": params.get("strategy"),
        "deadline_seconds": params.get("deadline"),
        "on_event": on_event,
        "emulator": emulator_url or False,
        "plugin_manager": state.pm,
        "environ": _environ(state, params.get("config_file")),
        "journal": journal,
        "allow_private_urls": bool(params.get("allow_private_urls")),
    }
    return Session(
        kwargs,
        http=state.http,
        debug=bool(ctx.meta.get(_DEBUG)),
        start_emulator=started_here,
        plugin_manager=state.pm,
        emulator_url=emulator_url,
    )


def _client(ctx: click.Context, session: Session, state: CliState) -> AsyncClient:
    client = session.client()
    _announce_base_urls(client, state, emulated=bool(session.emulator_url))
    ctx.meta[_JOURNALED] = client.journal is not None
    return client


def _request(params: Mapping[str, Any], operation: dict[str, Any]) -> CharacterRequest:
    from ideochar.request import CharacterRequest

    return CharacterRequest(
        prompt=read_prompt(params["prompt"]),
        reference=params["reference"],
        operation=operation,
        **request_fields(params),
    )


def _progress(ctx: click.Context, params: Mapping[str, Any]) -> Progress:
    from ideochar._cli.progress import Progress

    mode = "off" if params.get("quiet") else params.get("progress", "auto")
    progress = Progress(sys.stderr, cast("ProgressMode", mode))
    ctx.meta[_PROGRESS] = progress
    return progress


def _drive(ctx: click.Context, session: Session, client: AsyncClient, work: Callable[[AsyncClient], Any]) -> Any:
    """Run ``work`` on the session's loop, SIGTERM handled as Ctrl-C (the hint names the job to resume)."""
    from ideochar._cli.session import Terminated, sigterm_as_interrupt

    with sigterm_as_interrupt() as terminated:
        try:
            return session.run(client, work)
        except KeyboardInterrupt:
            if terminated[0]:
                raise Terminated from None
            raise


def _run(ctx: click.Context, params: dict[str, Any], operation: dict[str, Any]) -> None:
    """Check the request and the output folder (before anything is sent), serve it, save it, report it."""
    from ideochar._cli.output import check_out_dir

    ctx.meta[_JSON] = params["as_json"]
    state = _state(ctx)
    request = _request(params, operation)
    check_out_dir(params["out_dir"])
    progress = _progress(ctx, params)
    with _session(ctx, state, params, on_event=progress) as session:
        client = _client(ctx, session, state)
        with progress:
            if params.get("no_wait"):
                handle = _drive(ctx, session, client, lambda c: c.submit(request))
            else:
                result = _drive(ctx, session, client, lambda c: c.run(request))
    if params.get("no_wait"):
        _report_handle(handle, as_json=params["as_json"])
        return
    _deliver(ctx, result, request, params)


def _report_handle(handle: JobHandle, *, as_json: bool) -> None:
    """What --no-wait prints: the job id on stdout (for scripts), the rest on stderr."""
    if as_json:
        click.echo(handle.model_dump_json(indent=2))
        return
    click.echo(handle.job_id)
    ids = ", ".join(handle.vendor_request_ids) or "none yet"
    state = "finished already" if handle.finished else "admitted"
    note = f"{handle.provider}: {state} (vendor ids: {ids}); finish it: ideochar jobs wait {handle.job_id}"
    click.echo(note, err=True)


def _deliver(
    ctx: click.Context,
    result: CharacterResult,
    request: CharacterRequest | None,
    params: Mapping[str, Any],
    *,
    cost_note: str | None = None,
) -> None:
    """Save the images and the sidecar under --out, then print the summary (or the JSON document).

    Paid images are never lost to a folder that stopped being writable: they go to a temporary folder
    instead, and the command fails (exit 1) naming it, so a script does not take them for saved in --out.
    """
    from ideochar._cli.output import open_images, save_result, summary_lines

    fallback: Path | None = None
    try:
        saved = save_result(result, params["out_dir"], request)
    except OSError as exc:
        import tempfile

        fallback = Path(tempfile.mkdtemp(prefix="ideochar-"))
        click.echo(
            f"error: cannot write to --out {params['out_dir']} ({exc.strerror or exc}); saved to {fallback} instead",
            err=True,
        )
        saved = save_result(result, fallback, request)
    if params["as_json"]:
        click.echo(json.dumps(saved.document, indent=2, ensure_ascii=False))
    else:
        for line in summary_lines(saved, emulated=bool(ctx.meta.get(_EMULATOR)), cost_note=cost_note):
            click.echo(line)
        if ctx.meta.get(_JOURNALED) and result.job_id:
            click.echo(f"journal: job {result.job_id} (ideochar jobs show {result.job_id[:12]})")
    if params.get("open_images"):
        for line in open_images(saved.images):
            click.echo(line, err=True)
    if fallback is not None:
        ctx.exit(_SAVED_ELSEWHERE_EXIT_CODE)


def _edit_options(f: F) -> F:
    f = image_option("--mask", required=True, help="Same size as --image: black = repaint, white = keep.")(f)
    return image_option("--image", required=True, help="The image to edit.")(f)


def _remix_options(f: F) -> F:
    f = click.option(
        "--strength",
        type=float,
        default=0.8,
        show_default=True,
        help="How strongly --image shapes the result (0.01 barely - 1 most).",
    )(f)
    return image_option("--image", required=True, help="The image to remix.")(f)


def _job_command(
    name: str, help_text: str, operation_options: Callable[[_Callback], _Callback] | None = None
) -> Callable[[_Callback], click.Command]:
    """The options every job command shares, in the order ``--help`` shows them."""

    def decorate(f: _Callback) -> click.Command:
        f = click.option(
            "--no-wait",
            is_flag=True,
            help="Return once the vendor admitted the job and print its id; finish it with 'ideochar jobs wait ID'.",
        )(f)
        f = client_options(output_options(_debug_option(f)))
        if operation_options is not None:
            f = operation_options(f)
        return cli.command(name, help=help_text)(request_options()(f))

    return decorate


@_job_command("generate", "A new image of the character in --reference, as PROMPT describes ('-': from stdin).")
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


def _quote_operation(
    params: dict[str, Any], operation: str | None, image: str | None, mask: str | None, strength: float
) -> dict[str, Any]:
    """The operation to quote; images left out are stood in for (quoting needs only what is asked)."""
    operation = operation or ("edit" if mask else "remix" if image else "generate")
    op: dict[str, Any] = {"operation": operation}
    if operation in ("edit", "remix"):
        op["image"] = image or params["reference"]
    if operation == "edit":
        op["mask"] = mask or _placeholder_mask(op["image"])
    if operation == "remix":
        op["strength"] = strength
    return op


@cli.command()
@request_options(reference_required=False)
@click.option(
    "--operation",
    type=click.Choice(["generate", "edit", "remix"]),
    help="Default: edit with --mask, remix with --image, else generate.",
)
@image_option("--image", help="For edit/remix (optional: a placeholder is used).")
@image_option("--mask", help="For edit (optional: a placeholder is used).")
@click.option("--strength", type=float, default=0.8, show_default=True)
@routing_options
@emulator_options
@config_option
@click.option("--json", "as_json", is_flag=True, help="Print the quotes as JSON on stdout.")
@click.option("--live", is_flag=True, help="Ask vendors that publish prices for the current one (needs their keys).")
@_debug_option
@click.pass_context
def quote(
    ctx: click.Context, /, operation: str | None, image: str | None, mask: str | None, strength: float, **params: Any
) -> None:
    """Price, typical time and support of each provider for a request. Sends nothing and needs no key,
    except with --live, which asks vendors that publish prices (fal) for the current one.

    Providers, strategy, budget and strict come from the options, else from the configuration
    (ideochar.toml, IDEOCHAR_* variables), as for generate; with neither, every installed provider is
    listed. Images are optional: quoting needs only what a request asks for, so the shipped reference
    stands in for any image left out.
    """
    from ideochar._cli.tables import QUOTE_HEADERS, QUOTE_RIGHT, quote_document, quote_rows, quote_summary, render
    from ideochar._cli.timing import estimates
    from ideochar.assets import reference_bytes
    from ideochar.client import Client

    ctx.meta[_JSON] = params["as_json"]
    state = _state(ctx)
    if params.get("reference") is None:
        params["reference"] = reference_bytes()
    request = _request(params, _quote_operation(params, operation, image, mask, strength))
    with Client(
        provider_names(params.get("providers") or ()),
        strict=True if params.get("strict") else None,
        fan_out=False if params.get("no_fan_out") else None,
        max_cost_usd=params.get("max_cost"),
        strategy=params.get("strategy"),
        plugin_manager=state.pm,
        environ=_environ(state, params.get("config_file")),
    ) as client:  # its journal is never opened: only read, for the times seen
        quotes = client.quote(request, live=True) if params.get("live") else client.quote(request)
        max_cost, strict = client.max_cost_usd, client.strict
        times = estimates(quotes, client.providers, client.settings.journal_location, request)
        if client.strategy == "cheapest":
            quotes.sort(key=lambda q: (not q.supported, q.total_usd is None, q.total_usd or 0))
    if params["as_json"]:
        click.echo(json.dumps(quote_document(quotes, max_cost=max_cost, strict=strict, times=times), indent=2))
        return
    rows = quote_rows(quotes, max_cost=max_cost, strict=strict, times=times)
    click.echo(render(QUOTE_HEADERS, rows, right=QUOTE_RIGHT) + "\n")
    for line in quote_summary(quotes, max_cost=max_cost, strict=strict, times=times):
        click.echo(line)


@cli.command()
@click.option("--notes", is_flag=True, help="Also list the facts each provider inferred rather than verified.")
@click.option("--json", "as_json", is_flag=True, help="Print the capabilities as JSON on stdout.")
@_debug_option
@click.pass_context
def providers(ctx: click.Context, notes: bool, as_json: bool) -> None:
    """What each registered provider can do: operations, fields, prices, limits, keys."""
    from ideochar._cli.tables import (
        PROVIDER_HEADERS,
        PROVIDER_RIGHT,
        provider_document,
        provider_rows,
        render,
        supported_fields_rows,
    )
    from ideochar.keystore import key_store
    from ideochar.plugins import broken_plugins

    state = _state(ctx)
    infos = [state.providers[name].info for name in sorted(state.providers)]
    stored = _stored_keys(key_store(state.environ), [info.name for info in infos])
    if as_json:
        docs = [provider_document(info, state.environ, stored=info.name in stored) for info in infos]
        click.echo(json.dumps({"providers": docs, "broken_plugins": dict(broken_plugins)}, indent=2))
        return
    if not infos:
        click.echo("no provider is installed.")
    else:
        click.echo(render(PROVIDER_HEADERS, provider_rows(infos, state.environ, stored=stored), right=PROVIDER_RIGHT))
        headers, rows = supported_fields_rows(infos)
        click.echo("\nOptional fields honoured (G/E/R: generate/edit/remix; -: ignored with a warning):\n")
        click.echo(render(headers, rows))
        inferred = [(info.name, topic, note) for info in infos for topic, note in sorted(info.inferred.items())]
        if inferred and notes:
            click.echo("\nInferred, not verified against the live vendor (* on a price):")
            for name, topic, note in inferred:
                click.echo(f"  {name}, {topic}: {note}")
        elif inferred:
            click.echo(
                f"\n* price inferred, not verified. {len(inferred)} facts are inferred rather than verified "
                "against the live vendors: --notes lists them."
            )
    for plugin, reason in sorted(broken_plugins.items()):
        click.echo(f"\nplugin {plugin} failed to load: {redact(reason)}", err=True)


def _stored_keys(store: Any, names: list[str]) -> set[str]:
    """Which of ``names`` have a stored key (presence only); an unreadable store counts as none."""
    found: set[str] = set()
    for name in names:
        try:
            if store.get(name):
                found.add(name)
        except Exception:  # shown as "not set"; `ideochar keys list` says what is wrong with the store
            return found
    return found


# -- the journal ---------------------------------------------------------------------------------------------


def _open_journal(state: CliState, path: Path | None, config_file: Path | None) -> Journal:
    from ideochar.errors import InvalidRequest
    from ideochar.journal import Journal, default_journal

    if path is not None:
        if not path.is_file():
            raise InvalidRequest.for_field("--journal", f"no journal file at {path}")
        return Journal(path)
    journal = default_journal(_environ(state, config_file))
    if journal is None:
        raise InvalidRequest.for_field(
            "--journal",
            "the journal is off (journal = false in the configuration, or IDEOCHAR_JOURNAL); no jobs are kept",
        )
    return journal


def _job_id(value: str) -> str:
    """A job id or a prefix long enough to look up (the journal matches prefixes of 4 characters or more)."""
    from ideochar._cli.options import MIN_JOB_ID

    text = value.strip()
    if len(text) < MIN_JOB_ID:
        raise click.BadParameter(
            f"{value!r} is too short: give at least {MIN_JOB_ID} characters of the job's id "
            "(ideochar jobs list shows 12)",
            param_hint="JOB_ID",
        )
    return text


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
@click.option(
    "--since",
    metavar="AGE|DATE",
    help="Only jobs created since then: an age (30m, 12h, 7d, 2w) or a date (2026-01-31).",
)
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
    since: str | None,
    journal_path: Path | None,
    config_file: Path | None,
    as_json: bool,
) -> None:
    """Recent jobs with their status, provider, images and spend (emulated jobs are marked, never counted)."""
    from ideochar._cli.tables import JOB_HEADERS, JOB_RIGHT, job_rows, render, totals_line

    ctx.meta[_JSON] = as_json
    cutoff = parse_age(since, "--since") if since else None
    with _open_journal(_state(ctx), journal_path, config_file) as journal:
        if cutoff is None:
            found = journal.jobs(limit=limit, status=status)
        else:
            found = [j for j in journal.jobs(limit=None, status=status) if j.created_at >= cutoff][:limit]
        totals = journal.totals()
    if as_json:
        document = {
            "journal": journal.where,
            "jobs": [job.to_dict() for job in found],
            "totals": {
                "jobs": totals.jobs,
                "images": totals.images,
                "spent_usd": str(totals.spent_usd),
                "possibly_billed_usd": str(totals.possibly_billed_usd),
                "emulated_jobs": totals.emulated_jobs,
            },
        }
        click.echo(json.dumps(document, indent=2, ensure_ascii=False))
        return
    if not found:
        click.echo(f"no jobs in {journal.where}" + (f" since {since}" if since else ""))
        return
    click.echo(render(JOB_HEADERS, job_rows(found), right=JOB_RIGHT))
    click.echo("\n" + totals_line(totals) + f" (journal {journal.where})")


@jobs.command("show")
@click.argument("job_id", type=_job_id)
@_journal_file_option
@config_option
@click.option("--json", "as_json", is_flag=True, help="Print the job as JSON on stdout.")
@_debug_option
@click.pass_context
def jobs_show(
    ctx: click.Context, /, job_id: str, journal_path: Path | None, config_file: Path | None, as_json: bool
) -> None:
    """One job (4 or more characters of its id are enough): attempts, vendor ids, costs, saved images."""
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
@click.argument("job_id", type=_job_id)
@_journal_file_option
@config_option
@emulator_options
@click.option(
    "--deadline",
    type=float,
    metavar="SECONDS",
    help="Give up waiting after this long (default: the configuration's, 300); the job stays resumable.",
)
@click.option(
    "--allow-private-urls",
    is_flag=True,
    help="Fetch image URLs on private, loopback or link-local addresses (an internal CDN); refused by default.",
)
@output_options
@_debug_option
@click.pass_context
def jobs_resume(ctx: click.Context, /, job_id: str, journal_path: Path | None, **params: Any) -> None:
    """Finish a job a stopped run left: admitted jobs are fetched by vendor id, nothing is sent twice.

    A job stopped before anything was sent is submitted now (the journal proves nothing left). Images
    already saved are read back. The result is saved under --out like generate's. Progress is shown
    while it waits; a vendor that has not finished by --deadline leaves the job resumable.
    """
    from ideochar._cli.output import check_out_dir
    from ideochar._cli.tables import resume_cost_note

    ctx.meta[_JSON] = params["as_json"]
    ctx.meta[_RESUMING] = job_id
    state = _state(ctx)
    check_out_dir(params["out_dir"])
    progress = _progress(ctx, params)
    with _open_journal(state, journal_path, params.get("config_file")) as journal:
        before = journal.job(job_id)
        ctx.meta[_RESUMING] = before.id
        progress.note_resuming(before)
        with _session(ctx, state, params, on_event=progress, journal_obj=journal) as session:
            client = _client(ctx, session, state)
            with progress:
                result = _drive(ctx, session, client, lambda c: c.resume(before.id))
        note = resume_cost_note(before, journal.job(before.id))
    _deliver(ctx, result, None, params, cost_note=note)


@jobs.command("wait")
@click.argument("job_id", type=_job_id)
@_journal_file_option
@config_option
@emulator_options
@click.option("--timeout", type=float, metavar="SECONDS", help="Give up after this long; the job stays waitable.")
@output_options
@_debug_option
@click.pass_context
def jobs_wait(
    ctx: click.Context, /, job_id: str, journal_path: Path | None, timeout: float | None, **params: Any
) -> None:
    """Finish a job sent with --no-wait (or any journaled job): picked up by vendor id, nothing sent twice.

    While another live process finishes it (a webhook handler, another worker), this waits for it, then
    saves the images under --out like generate's.
    """
    from ideochar._cli.output import check_out_dir

    ctx.meta[_JSON] = params["as_json"]
    state = _state(ctx)
    check_out_dir(params["out_dir"])
    progress = _progress(ctx, params)
    with _open_journal(state, journal_path, params.get("config_file")) as journal:
        found = journal.job(job_id)
        with _session(ctx, state, params, on_event=progress, journal_obj=journal) as session:
            client = _client(ctx, session, state)
            with progress:
                result = _drive(ctx, session, client, lambda c: c.wait(found.id, timeout=timeout))
    _deliver(ctx, result, None, params)


@jobs.command("cancel")
@click.argument("job_id", type=_job_id)
@_journal_file_option
@config_option
@emulator_options
@click.option("--json", "as_json", is_flag=True, help="Print each vendor's answer as JSON on stdout.")
@_debug_option
@click.pass_context
def jobs_cancel(ctx: click.Context, /, job_id: str, journal_path: Path | None, as_json: bool, **params: Any) -> None:
    """Ask every vendor still running a call of the job to stop it (each request sent once).

    A call that had already finished stays billed; one stopped in time may not be (the vendor decides).
    """
    ctx.meta[_JSON] = as_json
    state = _state(ctx)
    params["as_json"] = as_json
    with _open_journal(state, journal_path, params.get("config_file")) as journal:
        found = journal.job(job_id)
        with _session(ctx, state, params, journal_obj=journal) as session:
            client = _client(ctx, session, state)
            outcomes = _drive(ctx, session, client, lambda c: c.cancel(found.id))
    if as_json:
        click.echo(json.dumps({"job_id": found.id, "cancelled": outcomes}, indent=2))
        return
    if not outcomes:
        click.echo(f"job {found.id}: no vendor is running a call of it; nothing to cancel")
    for vendor_id, outcome in outcomes.items():
        click.echo(f"{vendor_id}: {outcome}")


@jobs.command("prune")
@click.option(
    "--older-than",
    "older_than",
    required=True,
    metavar="AGE|DATE",
    help="Forget jobs untouched since then: an age (30m, 12h, 7d, 2w) or a date (2026-01-31).",
)
@click.option(
    "--status",
    "statuses",
    multiple=True,
    type=click.Choice(["succeeded", "partial", "failed", "running", "unknown"]),
    help="Only jobs in this state; repeatable (default: any; running and unknown ones need --force).",
)
@click.option(
    "--force",
    is_flag=True,
    help="Also forget running and unknown jobs no live process holds (a vendor may still bill them).",
)
@click.option("--dry-run", is_flag=True, help="Say what would go, and change nothing.")
@_journal_file_option
@config_option
@click.option("--json", "as_json", is_flag=True, help="Print what was (or would be) removed as JSON on stdout.")
@_debug_option
@click.pass_context
def jobs_prune(
    ctx: click.Context,
    /,
    older_than: str,
    statuses: tuple[str, ...],
    force: bool,
    dry_run: bool,
    journal_path: Path | None,
    config_file: Path | None,
    as_json: bool,
) -> None:
    """Forget old jobs: their journal rows and the images the journal saved for them.

    Finished jobs only, unless --force: a running or unknown job may still be billed, and resuming is
    the only way to fetch what it paid for. A job a live process runs is never removed. Files under
    --out (what generate saved for you) are not the journal's and are never touched.
    """
    from ideochar._cli.prune import prune_jobs

    ctx.meta[_JSON] = as_json
    cutoff = parse_age(older_than, "--older-than")
    with _open_journal(_state(ctx), journal_path, config_file) as journal:
        report = prune_jobs(journal, cutoff, statuses=set(statuses), force=force, dry_run=dry_run)
    if as_json:
        click.echo(json.dumps(report.document(), indent=2))
        return
    for line in report.lines():
        click.echo(line)


# -- keys --------------------------------------------------------------------------------------------------


@cli.group()
def keys() -> None:
    """Keys stored once: in the system keyring where there is one, else in a file only you can read.

    A stored key is used when the provider's environment variables are not set (they win, for one
    command); keys= in Python and credentials plugins come first. A key is never printed back.
    """


def _known_provider(state: CliState, name: str) -> str:
    if name not in state.providers:
        installed = ", ".join(sorted(state.providers)) or "none"
        raise click.BadParameter(f"no provider named {name!r} is installed (installed: {installed})")
    return name


@keys.command("set")
@click.argument("provider")
@_debug_option
@click.pass_context
def keys_set(ctx: click.Context, provider: str) -> None:
    """Store PROVIDER's key: typed at a hidden prompt, or piped in on stdin."""
    from ideochar._cli.keys import read_key
    from ideochar.keystore import key_store

    state = _state(ctx)
    name = _known_provider(state, provider)
    store = key_store(state.environ)
    store.set(name, read_key(name))
    click.echo(f"stored the key for {name} in {store.where}", err=True)
    for line in _environment_note(state, name):
        click.echo(line, err=True)


def _environment_note(state: CliState, name: str) -> list[str]:
    from ideochar._cli.tables import key_is_set, key_variables

    info = state.providers[name].info
    if key_is_set(info, state.environ):
        return [f"note: {key_variables(info)} is set in this environment, and wins over the stored key."]
    return []


@keys.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print which keys are set as JSON on stdout.")
@_debug_option
@click.pass_context
def keys_list(ctx: click.Context, as_json: bool) -> None:
    """Which providers have a key, and where it comes from. Never shows a key."""
    from ideochar._cli.keys import key_rows
    from ideochar._cli.tables import render
    from ideochar.keystore import key_store

    state = _state(ctx)
    store = key_store(state.environ)
    infos = [state.providers[name].info for name in sorted(state.providers)]
    headers, rows, document = key_rows(infos, store, state.environ)
    if as_json:
        click.echo(json.dumps({"stored_in": store.where, "providers": document}, indent=2))
        return
    click.echo(render(headers, rows))
    click.echo(f"\nstored keys are in {store.where}")


@keys.command("remove")
@click.argument("provider")
@_debug_option
@click.pass_context
def keys_remove(ctx: click.Context, provider: str) -> None:
    """Forget PROVIDER's stored key (its environment variables are not touched)."""
    from ideochar.keystore import key_store

    state = _state(ctx)
    store = key_store(state.environ)
    if store.delete(provider):
        click.echo(f"removed the key for {provider} from {store.where}", err=True)
    else:
        click.echo(f"no key for {provider} is stored in {store.where}", err=True)
    for line in _environment_note(state, provider) if provider in state.providers else []:
        click.echo(line, err=True)


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
    """Serve every installed vendor's wire protocol on one port; prints each vendor's base URL.

    Needs the emulator extra: pip install "ideochar[emulator]".
    """
    from ideochar._cli.session import require_emulator

    require_emulator("ideochar emulator serve")
    from ideochar.emulator.server import serve

    kwargs: dict[str, Any] = {"host": host, "port": port, "faults": faults}
    if model_seconds is not None:
        kwargs["model_seconds"] = model_seconds
    serve(plugin_manager=_state(ctx).pm, **kwargs)


# -- batch: many rows from one file (the command lives in ideochar._cli.batch) --------------------------------


@cli.command("batch", help=BATCH_HELP)
@batch_options
@_debug_option
@click.pass_context
def batch(ctx: click.Context, /, **params: Any) -> None:
    from ideochar._cli.batch import run_batch

    run_batch(ctx, params)


# -- entry point ----------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> Any:
    """The console script ``ideochar``."""
    return cli.main(args=argv, prog_name="ideochar", obj=CliState())


if __name__ == "__main__":  # pragma: no cover
    main()
