"""Options shared by the commands, and their translation into request and client arguments.

Every request option maps to exactly one :class:`~ideochar.request.CharacterRequest` field, under the
same neutral name with dashes. Values are checked by the request model, not here, so the command line
and the library reject the same things with the same message (an ``InvalidRequest`` naming the field,
exit code 2). Only the syntax of compound options (``--color``, ``--extra``) is parsed here.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, TypeVar, get_args

import click

from ideochar.request import ASPECT_RATIOS, PalettePreset
from ideochar.router import Strategy

__all__ = [
    "FLAGS",
    "MIN_JOB_ID",
    "client_options",
    "config_option",
    "emulator_options",
    "flag_for",
    "image_option",
    "journal_options",
    "output_options",
    "parse_age",
    "parse_color",
    "parse_extra",
    "provider_names",
    "read_prompt",
    "request_fields",
    "request_options",
    "routing_options",
]

F = TypeVar("F", bound=Callable[..., Any])

_PALETTES: tuple[str, ...] = get_args(PalettePreset)
_STRATEGIES: tuple[str, ...] = get_args(Strategy)

#: The journal matches a job by a prefix of its id from this many characters on (``ideochar jobs show 3f2a``).
MIN_JOB_ID = 4
_AGE = re.compile(r"(?P<n>\d+(?:\.\d+)?)\s*(?P<unit>s|m|h|d|w)", re.IGNORECASE)
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}

#: Request field paths (the library's words) -> the flag a person typed (the command line's words).
FLAGS: Mapping[str, str] = {
    "prompt": "PROMPT",
    "reference": "--reference",
    "reference_mask": "--reference-mask",
    "aspect_ratio": "--aspect-ratio",
    "resolution": "--resolution",
    "style": "--style",
    "speed": "--speed",
    "magic_prompt": "--magic-prompt",
    "seed": "--seed",
    "num_images": "--num-images",
    "negative_prompt": "--negative-prompt",
    "color_palette.preset": "--palette",
    "color_palette.members": "--color",
    "color_palette": "--palette/--color",
    "style_codes": "--style-code",
    "style_references": "--style-reference",
    "extra": "--extra",
    "operation.image": "--image",
    "operation.mask": "--mask",
    "operation.strength": "--strength",
    "job_id": "JOB_ID",
}


def flag_for(path: str) -> str | None:
    """The flag behind a request field path (``operation.strength`` -> ``--strength``), or None.

    The longest known prefix decides, so ``color_palette.members.0.color`` is ``--color`` and
    ``extra.fal.mode`` is ``--extra fal.mode``.
    """
    parts = path.split(".")
    for end in range(len(parts), 0, -1):
        flag = FLAGS.get(".".join(parts[:end]))
        if flag is not None:
            rest = ".".join(parts[end:])
            return f"{flag} {rest}" if flag == "--extra" and rest else flag
    return None


def read_prompt(value: str) -> str:
    """PROMPT as given, or read from stdin when it is ``-`` (a long prompt, or one made by another tool)."""
    if value != "-":
        return value
    text = sys.stdin.read().strip()
    if not text:
        raise click.BadParameter("'-' reads the prompt from stdin, which was empty", param_hint="PROMPT")
    return text


def parse_age(text: str, flag: str) -> datetime:
    """The moment an age or a date names: ``7d`` is seven days ago, ``2026-01-31`` that day (UTC)."""
    value = text.strip()
    match = _AGE.fullmatch(value)
    if match:
        seconds = float(match["n"]) * _UNITS[match["unit"].lower()]
        return datetime.now(timezone.utc) - timedelta(seconds=seconds)
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(
            f"{text!r} is neither an age (30m, 12h, 7d, 2w) nor a date (2026-01-31)", param_hint=f"'{flag}'"
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def _not_a_folder(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    """An image given as a local path must be a file: ``-r .`` is a folder, not a missing file."""
    for item in value if isinstance(value, (tuple, list)) else [value]:
        if isinstance(item, str) and "://" not in item and not item.startswith("data:") and Path(item).is_dir():
            raise click.BadParameter(f"{item!r} is a folder; give an image file (PNG, JPEG or WebP)")
    return value


def image_option(*names: str, **kwargs: Any) -> Callable[[F], F]:
    """An option taking an image (a path, an http(s) URL or a data URI), checked not to be a folder."""
    return click.option(*names, metavar="IMAGE", callback=_not_a_folder, **kwargs)


def _apply(f: F, decorators: Sequence[Callable[[F], F]]) -> F:
    for decorator in reversed(decorators):
        f = decorator(f)
    return f


def parse_color(text: str) -> dict[str, Any]:
    """``'#FF0000'`` or ``'#FF0000:0.5'`` -> a palette member (the hex and range are checked by the request)."""
    colour, sep, weight = text.strip().partition(":")
    member: dict[str, Any] = {"color": colour.strip()}
    if sep:
        try:
            member["weight"] = float(weight)
        except ValueError:
            raise click.BadParameter(f"{text!r}: the weight after ':' must be a number, e.g. '#FF0000:0.5'") from None
    return member


def _value(text: str) -> Any:
    """JSON when it parses (``true``, ``3``, ``[1,2]``, ``"x"``), else the text itself."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def parse_extra(pairs: Sequence[str], extra_json: str | None) -> dict[str, dict[str, Any]]:
    """``--extra-json`` first, then each ``--extra provider.option=value`` on top.

    Dotted option names nest (``--extra fal.a.b=1`` is ``{"fal": {"a": {"b": 1}}}``). Which options
    exist is each provider's business: its options model validates them and names the bad one.
    """
    extra: dict[str, dict[str, Any]] = {}
    if extra_json:
        text = _json_text(extra_json)
        try:
            loaded = json.loads(text)
        except ValueError as exc:
            raise click.BadParameter(f"not valid JSON: {exc}", param_hint="'--extra-json'") from None
        if not isinstance(loaded, dict) or not all(isinstance(v, dict) for v in loaded.values()):
            raise click.BadParameter(
                'must be an object of objects, e.g. \'{"fal": {"sync_mode": true}}\'', param_hint="'--extra-json'"
            )
        extra = {str(k): dict(v) for k, v in loaded.items()}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        provider, dot, option = key.strip().partition(".")
        if not (sep and dot and provider and option):
            raise click.BadParameter(
                f"{pair!r}: expected PROVIDER.OPTION=VALUE, e.g. fal.sync_mode=true", param_hint="'--extra'"
            )
        target = extra.setdefault(provider, {})
        *parents, leaf = option.split(".")
        for parent in parents:
            nested = target.setdefault(parent, {})
            if not isinstance(nested, dict):
                raise click.BadParameter(f"{pair!r}: {parent!r} is already set to a value", param_hint="'--extra'")
            target = nested
        target[leaf] = _value(raw)
    return extra


def _json_text(value: str) -> str:
    """``--extra-json``'s text: as given, or the file after ``@``."""
    if not value.startswith("@"):
        return value
    path = Path(value[1:]).expanduser()
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        problem = f"no file {str(path)!r} (after '@' comes a JSON file)"
    except IsADirectoryError:
        problem = f"{str(path)!r} is a folder, not a JSON file"
    except (OSError, UnicodeDecodeError) as exc:
        problem = f"cannot read {str(path)!r}: {getattr(exc, 'strerror', None) or exc}"
    raise click.BadParameter(problem, param_hint="'--extra-json'")


def provider_names(values: Sequence[str]) -> list[str] | None:
    """``-p fal,segmind`` and ``-p fal -p segmind`` both mean that order; nothing given means the default."""
    names = [n.strip() for value in values for n in value.split(",") if n.strip()]
    return names or None


def request_fields(params: Mapping[str, Any]) -> dict[str, Any]:
    """The optional request fields the user set, by their ``CharacterRequest`` names (unset: the vendor's default)."""
    fields: dict[str, Any] = {}
    simple = ("reference_mask", "style", "speed", "magic_prompt", "aspect_ratio", "resolution", "seed",
              "num_images", "negative_prompt")  # fmt: skip
    for name in simple:
        if params.get(name) is not None:
            fields[name] = params[name]
    palette, colors = params.get("palette"), params.get("color") or ()
    if palette is not None and colors:
        fields["color_palette"] = {"preset": palette, "members": list(colors)}  # the request names the conflict
    elif palette is not None:
        fields["color_palette"] = {"preset": palette}
    elif colors:
        fields["color_palette"] = {"members": list(colors)}
    if params.get("style_code"):
        fields["style_codes"] = list(params["style_code"])
    if params.get("style_reference"):
        fields["style_references"] = list(params["style_reference"])
    extra = parse_extra(params.get("extra") or (), params.get("extra_json"))
    if extra:
        fields["extra"] = extra
    return fields


def _money(ctx: click.Context, param: click.Parameter, value: str | None) -> Decimal | None:
    if value is None:
        return None
    try:
        amount = Decimal(value.strip().lstrip("$"))
    except InvalidOperation:
        raise click.BadParameter(f"{value!r} is not an amount in USD, e.g. 0.25") from None
    if not amount.is_finite() or amount < 0:
        raise click.BadParameter(f"{value!r} must be zero or more")
    return amount


def _colors(ctx: click.Context, param: click.Parameter, values: Sequence[str]) -> list[dict[str, Any]]:
    return [parse_color(v) for v in values]


def request_options(*, reference_required: bool = True) -> Callable[[F], F]:
    """The neutral request: a prompt argument and one option per ``CharacterRequest`` field."""
    reference_help = "The character's reference image: a path, an http(s) URL or a data URI."
    if not reference_required:
        reference_help += " Optional here: the shipped reference is used when omitted."
    decorators: list[Callable[[F], F]] = [
        click.argument("prompt"),
        image_option("-r", "--reference", required=reference_required, help=reference_help),
        image_option("--reference-mask", help="Grayscale mask of the reference marking the character."),
        click.option(
            "--aspect-ratio",
            type=click.Choice(ASPECT_RATIOS),
            metavar="W:H",
            help="Output aspect ratio, e.g. 16:9 (one of the 15 Ideogram ratios).",
        ),
        click.option(
            "--resolution", metavar="WxH", help="Exact output size, e.g. 1024x1024 (instead of --aspect-ratio)."
        ),
        click.option("--style", type=click.Choice(["auto", "realistic", "fiction"])),
        click.option(
            "--speed", type=click.Choice(["turbo", "default", "quality"]), help="Sets the price; turbo is cheapest."
        ),
        click.option(
            "--magic-prompt", type=click.Choice(["auto", "on", "off"]), help="Let the vendor rewrite the prompt."
        ),
        click.option("--seed", type=int),
        click.option(
            "-n", "--num-images", type=int, help="How many images (1-8); fanned out where a vendor makes fewer."
        ),
        click.option("--negative-prompt", metavar="TEXT"),
        click.option("--palette", type=click.Choice(_PALETTES), help="A colour palette preset."),
        click.option(
            "--color",
            multiple=True,
            callback=_colors,
            metavar="#RRGGBB[:WEIGHT]",
            help="A palette colour with an optional weight 0.05-1; repeat for more.",
        ),
        click.option("--style-code", multiple=True, metavar="HEX8", help="An 8-hex-digit style code; repeatable."),
        image_option("--style-reference", multiple=True, help="A style reference image; repeatable."),
        click.option(
            "--extra",
            multiple=True,
            metavar="PROVIDER.OPTION=VALUE",
            help="A vendor-only option, e.g. fal.sync_mode=true (VALUE is JSON or text); repeatable.",
        ),
        click.option("--extra-json", metavar="JSON|@FILE", help="Vendor-only options as JSON: '{\"fal\": {...}}'."),
    ]
    return lambda f: _apply(f, decorators)


def _complete_providers(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[str]:
    """Shell completion of ``-p``: the installed providers, after any already typed (``fal,seg`` -> ``fal,segmind``)."""
    from ideochar.plugins import collect_providers, get_plugin_manager

    root = ctx.find_root().obj
    pm = getattr(root, "pm", None) or get_plugin_manager()
    done, _, partial = incomplete.rpartition(",")
    prefix = f"{done}," if done else ""
    return [prefix + name for name in sorted(collect_providers(pm)) if name.startswith(partial)]


def routing_options(f: F) -> F:
    """Who serves the request and under which rules. Unset options come from the configuration
    (``ideochar.toml``, ``IDEOCHAR_*`` variables), as they do for :class:`~ideochar.client.Client`."""
    decorators: list[Callable[[F], F]] = [
        click.option(
            "-p",
            "--provider",
            "providers",
            multiple=True,
            metavar="NAME[,NAME...]",
            shell_complete=_complete_providers,
            help="Providers in failover order (default: the configuration or IDEOCHAR_PROVIDERS, else all).",
        ),
        click.option(
            "--strategy",
            type=click.Choice(_STRATEGIES),
            help="Order of the providers: as listed (default), cheapest first, or fastest observed.",
        ),
        click.option("--strict", is_flag=True, help="Skip a provider that would ignore any field you set."),
        click.option("--max-cost", callback=_money, metavar="USD", help="Skip providers whose quote is above this."),
        click.option("--no-fan-out", is_flag=True, help="Refuse providers that need several calls for --num-images."),
        click.option(
            "--deadline", type=float, metavar="SECONDS", help="Bound on the whole job, failover included (default 300)."
        ),
    ]
    return _apply(f, decorators)


def emulator_options(f: F) -> F:
    decorators: list[Callable[[F], F]] = [
        click.option(
            "--emulator",
            is_flag=True,
            help="Run against the built-in emulator (the emulator extra): no keys, no network, no cost; "
            "journaled, marked emulated.",
        ),
        click.option(
            "--emulator-url", metavar="URL", help="Use an emulator already running (ideochar emulator serve)."
        ),
    ]
    return _apply(f, decorators)


def journal_options(f: F) -> F:
    """Where jobs are recorded (so a killed run can be resumed): the configured journal by default."""
    decorators: list[Callable[[F], F]] = [
        click.option(
            "--journal",
            "journal_path",
            type=click.Path(dir_okay=False, path_type=Path),
            metavar="FILE",
            help="The journal file (default: the configuration, IDEOCHAR_JOURNAL, else the user data folder).",
        ),
        click.option("--no-journal", is_flag=True, help="Record nothing (a killed run cannot be resumed)."),
    ]
    return _apply(f, decorators)


def config_option(f: F) -> F:
    """``--config FILE``: the configuration file to trust, as ``IDEOCHAR_CONFIG`` would name it.

    A file merely found above the working folder may not set base URLs, vendor options or file paths
    (:data:`ideochar.config.CALLER_ONLY_SETTINGS`); naming it here says it is yours.
    """
    return click.option(
        "--config",
        "config_file",
        type=click.Path(exists=True, dir_okay=False, path_type=Path),
        metavar="FILE",
        help="The configuration file to trust (ideochar.toml, or pyproject.toml with [tool.ideochar]); "
        "default: IDEOCHAR_CONFIG, else the nearest one above the working folder, which may not set base "
        "URLs, options or paths.",
    )(f)


def client_options(f: F) -> F:
    """Everything a job command passes to :class:`~ideochar.client.Client`."""
    private = click.option(
        "--allow-private-urls",
        is_flag=True,
        help="Fetch image URLs on private, loopback or link-local addresses (an internal CDN); refused by default.",
    )
    return routing_options(emulator_options(journal_options(config_option(private(f)))))


def output_options(f: F) -> F:
    decorators: list[Callable[[F], F]] = [
        click.option(
            "-o",
            "--out",
            "out_dir",
            type=click.Path(file_okay=False, path_type=Path),
            default=Path("out"),
            show_default=True,
            help="Folder for the images and their JSON sidecar.",
        ),
        click.option("--json", "as_json", is_flag=True, help="Print the result as JSON on stdout."),
        click.option(
            "--progress",
            type=click.Choice(["auto", "live", "plain", "off"]),
            default="auto",
            show_default=True,
            help="Progress on stderr: a live line on a terminal, plain lines otherwise.",
        ),
        click.option("-q", "--quiet", is_flag=True, help="No progress output (same as --progress off)."),
        click.option(
            "--open",
            "open_images",
            is_flag=True,
            help="Open the saved images with the system's viewer (skipped where there is no display).",
        ),
    ]
    return _apply(f, decorators)
