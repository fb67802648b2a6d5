"""The documented plugin path works end to end: a package found only through its entry point serves a job."""

from __future__ import annotations

from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

import httpx
import pytest

from conftest import make_image
from ideochar import AuthenticationFailed, Client, RequestWarning
from ideochar.plugins import collect_providers, plugin_manager

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "ideochar-example-plugin"


@pytest.fixture
def installed_example(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Install the example as pip would: its code importable and a dist-info holding entry_points.txt."""
    dist = tmp_path / "ideochar_example_plugin-0.1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: ideochar-example-plugin\nVersion: 0.1.0\n")
    project = tomllib.loads((EXAMPLE / "pyproject.toml").read_text())["project"]
    lines = [f"{name} = {target}" for name, target in project["entry-points"]["ideochar"].items()]
    (dist / "entry_points.txt").write_text("[ideochar]\n" + "\n".join(lines) + "\n")
    monkeypatch.syspath_prepend(str(EXAMPLE))
    monkeypatch.syspath_prepend(str(tmp_path))


def test_the_example_is_discovered_through_its_entry_point(installed_example: None) -> None:
    providers = collect_providers(plugin_manager())
    assert "example" in providers
    assert providers["example"].info.title == "Example Images"
    assert "example" not in collect_providers(plugin_manager(load_entrypoints=False))


def test_the_example_serves_a_job_through_the_client(installed_example: None) -> None:
    png = make_image(16, 16)
    sent: list[httpx.Request] = []

    def vendor(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        if request.url.path == "/v1/images":
            return httpx.Response(200, json={"id": "ex-1", "images": [{"url": "https://cdn.test/1.png", "seed": 9}]})
        return httpx.Response(200, content=png)

    with Client(
        ["example"],
        keys={"example": "example-key-123"},
        http=httpx.Client(transport=httpx.MockTransport(vendor)),
        fetch_http=httpx.Client(transport=httpx.MockTransport(vendor)),  # the fake CDN, cdn.test
        plugin_manager=plugin_manager(),  # fresh, from entry points: the global one may predate the install
    ) as client:
        result = client.generate("a knight", reference=png, seed=9, negative_prompt="blur")
    assert result.provider == "example" and result.vendor_request_id == "ex-1"
    assert result.image.data == png and result.image.seed == 9
    assert str(result.cost_usd) == "0.04"
    assert [w.field for w in result.warnings] == ["negative_prompt"]
    assert isinstance(result.warnings[0], RequestWarning)
    assert sent[0].headers["authorization"] == "Bearer example-key-123"


def test_the_example_maps_a_refused_key(installed_example: None) -> None:
    def vendor(request: httpx.Request) -> httpx.Response:
        return httpx.Response(401, json={"message": "bad key"})

    with (
        Client(
            ["example"],
            keys={"example": "nope-123456"},
            http=httpx.Client(transport=httpx.MockTransport(vendor)),
            plugin_manager=plugin_manager(),
        ) as c,
        pytest.raises(AuthenticationFailed, match="refused the key"),
    ):
        c.generate("a knight", reference=make_image())
