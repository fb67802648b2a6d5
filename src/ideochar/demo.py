"""``make demo``: the shipped reference character through every vendor's protocol, with no key and no network.

What it does, in the words of the command line: ``ideochar quote`` for the request, then ``ideochar
generate --emulator --provider NAME`` once per registered provider that can serve it, writing each
result and its JSON sidecar under ``out/``, then the paths and a cost table.

The emulator is a local stand-in that speaks each vendor's wire protocol (the real requests, the real
answers, the real queue); it draws its images from the reference and the prompt and labels them as
emulated. So the demo proves the character went through every adapter, not what the model would
draw, and the costs are what each vendor *would* charge, from its price table.

Run ``python -m ideochar.demo --help`` for the few options.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ideochar._cli.output import SavedResult, money, save_result
from ideochar._cli.progress import Progress
from ideochar._cli.tables import COST_HEADERS, COST_RIGHT, QUOTE_HEADERS, QUOTE_RIGHT, cost_rows, quote_rows, render
from ideochar.assets import REFERENCE_NAME, reference_path
from ideochar.errors import IdeocharError

if TYPE_CHECKING:
    from ideochar.spec import Quote

__all__ = ["DEFAULT_PROMPT", "main", "run_demo"]

DEFAULT_PROMPT = (
    f"{REFERENCE_NAME}, the girl with the red bob, the cream streak and the yellow star hair clip, "
    "wandering a lantern-lit night market in the rain, cinematic wide shot"
)


def _say(text: str = "") -> None:
    print(text, flush=True)


def run_demo(
    out_dir: Path, *, prompt: str = DEFAULT_PROMPT, providers: Sequence[str] = (), aspect_ratio: str = "16:9"
) -> list[SavedResult]:
    """Quote, then generate once per provider against one emulator; returns what was saved."""
    from ideochar.client import Client
    from ideochar.emulator.registry import collect_emulated
    from ideochar.emulator.server import BackgroundServer
    from ideochar.plugins import collect_providers, get_plugin_manager
    from ideochar.request import CharacterRequest

    pm = get_plugin_manager()
    available = collect_providers(pm)
    emulated = collect_emulated(pm)
    names = list(providers) or sorted(available)
    saved: list[SavedResult] = []
    with reference_path() as reference:
        request = CharacterRequest(prompt=prompt, reference=reference, aspect_ratio=aspect_ratio, seed=7)
        _say(f"reference: {reference} ({REFERENCE_NAME}, drawn by this project)")
        _say(f"prompt:    {prompt}")
        _say(f"size:      {aspect_ratio}\n")

        quotes: dict[str, Quote] = {}
        for name in names:
            if name in available:
                quotes[name] = available[name].quote(request)
        _say("What each provider would charge (ideochar quote):\n")
        _say(render(QUOTE_HEADERS, quote_rows(list(quotes.values())), right=QUOTE_RIGHT))
        _say()

        server = BackgroundServer(pm).start()
        try:
            for name in names:
                quote = quotes.get(name)
                if quote is None:
                    _say(f"skipped {name}: not installed")
                    continue
                if not quote.supported:
                    _say(f"skipped {name}: {quote.reason}")
                    continue
                if name not in emulated:
                    _say(f"skipped {name}: it brings no emulator routes")
                    continue
                _say(f"$ ideochar generate --emulator --provider {name} --aspect-ratio {aspect_ratio} ...")
                progress = Progress(sys.stderr)  # the display the command line uses
                try:
                    # No configuration and no journal: the demo neither depends on nor adds to the user's own.
                    client = Client(
                        [name], emulator=server.url, plugin_manager=pm, on_event=progress, config=False, journal=False
                    )
                    with client, progress:
                        result = client.run(request)
                except IdeocharError as exc:
                    _say(f"  {name} failed: {exc}")
                    continue
                item = save_result(result, out_dir, request)
                saved.append(item)
                for path in item.images:
                    _say(f"  wrote {path}")
                _say(f"  wrote {item.sidecar}")
        finally:
            server.stop()

    if saved:
        _say("\nCost table (emulated runs: what each vendor would have charged):\n")
        pairs: list[tuple[Any, Quote | None]] = [(s.result, quotes.get(s.result.provider)) for s in saved]
        _say(render(COST_HEADERS, cost_rows(pairs), right=COST_RIGHT))
        total = sum((s.result.cost_usd for s in saved if s.result.cost_usd is not None), start=Decimal(0))
        _say(f"\ntotal {money(total)} for {sum(len(s.images) for s in saved)} image(s); nothing was charged.")
        _say("\nImages:")
        for item in saved:
            for path in item.images:
                _say(f"  {path}")
    return saved


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ideochar.demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("out"), help="folder for images and sidecars (default: out)")
    parser.add_argument("--prompt", default=DEFAULT_PROMPT)
    parser.add_argument("--provider", action="append", default=[], help="only these providers (repeatable)")
    parser.add_argument("--aspect-ratio", default="16:9")
    args = parser.parse_args(argv)
    _say("ideochar demo: every request goes to the built-in emulator (no keys, no network, no cost).")
    _say("Its images are drawn from the reference and the prompt and labelled as emulated; they are not the model's.\n")
    try:
        saved = run_demo(args.out, prompt=args.prompt, providers=args.provider, aspect_ratio=args.aspect_ratio)
    except IdeocharError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    if not saved:
        print("error: no provider produced an image", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
