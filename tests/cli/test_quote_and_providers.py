"""quote and providers list every registered provider, configured or not, with prices; --json agrees."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import make_image
from ideochar.cli import CliState

from .conftest import Invoke, Vendors


def _rows(table: str) -> dict[str, list[str]]:
    """Provider name -> the cells of its first row (cells are separated by two or more spaces)."""
    import re

    rows: dict[str, list[str]] = {}
    for line in table.splitlines()[2:]:
        if not line.strip():
            break
        cells = re.split(r"\s{2,}", line.strip())
        if not line.startswith(" "):
            rows.setdefault(cells[0], cells)
    return rows


def test_quote_lists_every_registered_provider_without_keys_or_reference(
    state: CliState, invoke: Invoke, vendors: Vendors
) -> None:
    state.environ = {}
    result = invoke("quote", "a knight", "-n", "3", "--speed", "quality")
    assert result.exit_code == 0, result.output
    rows = _rows(result.stdout)
    assert list(rows) == ["alpha", "beta"]
    assert rows["alpha"][:6] == ["alpha", "yes", "$0.12", "3", "3", "$0.36"]
    assert rows["beta"][:6] == ["beta", "yes", "$0.08", "3", "3", "$0.24"]
    assert "price inferred" in rows["beta"][-1] and "price inferred" not in rows["alpha"][-1]
    assert "cheapest: beta at $0.24" in result.stdout and "Nothing was sent" in result.stdout
    assert vendors["alpha"].requests == [] and vendors["beta"].requests == []


def test_quote_honours_the_provider_order_and_says_why_one_cannot_serve(
    invoke: Invoke, reference: str, tmp_path: Path
) -> None:
    image = tmp_path / "scene.png"
    image.write_bytes(make_image(64, 64))
    result = invoke(
        "quote", "x", "-r", reference, "--image", str(image), "-p", "beta,alpha", "--style-code", "0A1B2C3D", "--json"
    )
    assert result.exit_code == 0, result.output
    quotes = json.loads(result.stdout)
    assert [q["provider"] for q in quotes] == ["beta", "alpha"]
    assert all(q["supported"] for q in quotes)
    assert quotes[0]["unit_price_usd"] == "0.04" and quotes[0]["total_usd"] == "0.04"
    assert [w["field"] for w in quotes[1]["warnings"]] == ["style_codes"]
    assert quotes[0]["price_inferred"] is True


def test_quote_of_an_edit_without_images_uses_placeholders(invoke: Invoke) -> None:
    result = invoke("quote", "x", "--operation", "edit", "--json")
    assert result.exit_code == 0, result.output
    assert [q["supported"] for q in json.loads(result.stdout)] == [True, True]


def test_quote_cheapest_strategy_sorts_by_total(invoke: Invoke) -> None:
    result = invoke("quote", "x", "--strategy", "cheapest", "-p", "alpha,beta")
    assert list(_rows(result.stdout)) == ["beta", "alpha"]


def test_quote_marks_over_budget_and_strict(invoke: Invoke) -> None:
    result = invoke(
        "quote",
        "x",
        "--max-cost",
        "0.05",
        "--strict",
        "--style-reference",
        "data:image/png;base64," + __import__("base64").b64encode(make_image(8, 8)).decode(),
    )
    rows = _rows(result.stdout)
    assert "over --max-cost $0.05" in rows["alpha"][-1] and "over --max-cost" not in rows["beta"][-1]
    assert "skipped with --strict" in rows["alpha"][-1]


def test_quote_of_a_provider_that_cannot_do_the_operation(state: CliState, invoke: Invoke, vendors: Vendors) -> None:
    from ideochar import hookimpl
    from ideochar.plugins import plugin_manager

    from .conftest import FakeProvider

    class Plugin:
        @hookimpl
        def ideochar_register_providers(self, register):  # type: ignore[no-untyped-def]
            register(FakeProvider("alpha", "0.06", vendors["alpha"], operations=frozenset({"generate"})))

    state.plugin_manager = plugin_manager(load_entrypoints=False, plugins=[Plugin()])
    result = invoke("quote", "x", "--operation", "remix")
    row = _rows(result.stdout)["alpha"]
    assert row[1] == "no" and "no remix operation" in row[-1]
    assert "no provider can serve this request" in result.stdout


def test_providers_lists_capabilities_prices_and_key_variables(
    state: CliState, invoke: Invoke, canary_key: str
) -> None:
    state.environ = {"ALPHA_KEY": canary_key}
    result = invoke("providers")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    alpha = next(line for line in lines if line.startswith("alpha "))
    assert alpha.split()[:5] == ["alpha", "generate", "$0.03", "$0.06", "$0.12"]
    assert "ALPHA_KEY or ALPHA_ID+ALPHA_SECRET (set)" in alpha
    beta = next(line for line in lines if line.startswith("beta "))
    assert "$0.04*" in beta and "(not set)" in beta
    assert any(line.split()[:2] == ["remix", "$0.03"] for line in lines)
    assert "beta, prices: made up" not in result.stdout  # the inferred facts' notes are asked for (--notes)
    assert result.stdout.rstrip().endswith("--notes lists them.")
    assert "beta, prices: made up" in invoke("providers", "--notes").stdout
    assert canary_key not in result.output


def test_providers_json_has_every_capability(invoke: Invoke) -> None:
    result = invoke("providers", "--json")
    document = json.loads(result.stdout)
    alpha, beta = document["providers"]
    assert (alpha["name"], beta["name"]) == ("alpha", "beta")
    assert alpha["operations"] == ["generate", "edit", "remix"]
    assert alpha["prices_usd"]["generate"] == {"turbo": "0.03", "default": "0.06", "quality": "0.12"}
    assert alpha["credential_variables"] == [["ALPHA_KEY"], ["ALPHA_ID", "ALPHA_SECRET"]]
    assert alpha["key_set"] is True and alpha["can_resume"] is True
    assert "seed" in alpha["supported_fields"]["edit"]
    assert beta["inferred"] == {"prices": "made up"}
