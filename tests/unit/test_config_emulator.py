"""The emulator always wins: with ``emulator=`` nothing reaches a configured base URL, however it was set.

A real recording server on loopback stands where a configured base URL points; the built-in providers
run against the emulator, and the server must receive nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from conftest import CANARY_KEY, make_image
from ideochar import AsyncClient, Client, IdeocharError
from ideochar.config import ConfigError
from ideochar.emulator import testing
from ideochar.plugins import collect_providers, get_plugin_manager
from ideochar.request import Generate
from recording import Recorder, recording_server

pytestmark = pytest.mark.socket

PNG = make_image(64, 64)


def installed() -> dict[str, Any]:
    return {name: p.info for name, p in collect_providers(get_plugin_manager()).items()}


#: Every installed provider's every base URL, pointed at the recorder (filled per test).
def towards(recorder: Recorder) -> dict[str, dict[str, str]]:
    return {name: {k: f"{recorder.url}/{name}/{k}" for k in info.base_urls} for name, info in installed().items()}


def as_toml(base_urls: dict[str, dict[str, str]]) -> str:
    lines = []
    for name, urls in base_urls.items():
        lines.append(f"[base_urls.{name}]")
        lines += [f'{key} = "{url}"' for key, url in urls.items()]
    return "\n".join(lines) + "\n"


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    with recording_server() as server:
        yield server


@pytest.fixture(scope="module")
def emulator() -> Iterator[Any]:
    with testing.running_emulator(model_seconds=0) as server:
        yield server


@pytest.mark.parametrize("configured_by", ["argument", "named file", "variable"])
def test_emulator_true_reaches_nothing_configured(recorder: Recorder, tmp_path: Path, configured_by: str) -> None:
    urls = towards(recorder)
    kwargs: dict[str, Any] = {"environ": {}, "config": False}
    if configured_by == "argument":
        kwargs["base_urls"] = urls
    elif configured_by == "named file":
        kwargs["config"] = tmp_path / "mine.toml"
        kwargs["config"].write_text(as_toml(urls))
    else:
        pairs = " ".join(f"{name}.{k}={url}" for name, named in urls.items() for k, url in named.items())
        kwargs["environ"] = {"IDEOCHAR_BASE_URLS": pairs}
    with Client(sorted(urls), emulator=True, journal=False, **kwargs) as client:
        assert client.settings.base_urls == urls  # configured, and valid: loopback over http
        plan = client.plan(client.build_request(Generate(), "a knight", PNG))
        assert sorted(c.provider.info.name for c in plan.candidates) == sorted(urls)
        for candidate in plan.candidates:
            assert set(candidate.ctx.base_urls) == set(urls[candidate.provider.info.name])
            assert not any(url.startswith(recorder.url) for url in candidate.ctx.base_urls.values())
        assert client.generate("a knight", PNG).provider == "fal"
    assert recorder.requests == []


def test_an_emulator_url_wins_over_configured_base_urls(
    recorder: Recorder, emulator: Any, caplog: pytest.LogCaptureFixture
) -> None:
    urls = towards(recorder)
    with Client(["fal"], emulator=emulator.url, base_urls=urls, keys={"fal": CANARY_KEY}, journal=False) as client:
        result = client.generate("a knight", PNG)
    assert result.provider == "fal" and len(result.images) == 1
    assert recorder.requests == []
    # ...and the caller who named both hears which of theirs went unused.
    assert any(
        "base_urls= for" in r.getMessage() and all(name in r.getMessage() for name in urls) for r in caplog.records
    )


def test_the_in_process_emulator_wins_over_configured_base_urls(recorder: Recorder) -> None:
    urls = towards(recorder)

    async def main() -> str:
        async with AsyncClient(["segmind"], emulator=True, base_urls=urls, journal=False, config=False) as client:
            return (await client.generate("a knight", PNG)).provider

    assert anyio.run(main) == "segmind"
    assert recorder.requests == []


def test_without_the_emulator_a_callers_base_url_gets_the_key_and_only_it(recorder: Recorder) -> None:
    # The caller named this server: it is where fal's key goes, and nowhere else is contacted.
    urls = {"fal": {"queue": f"{recorder.url}/fal"}}
    client = Client(["fal"], base_urls=urls, keys={"fal": CANARY_KEY}, journal=False, config=False)
    with client, pytest.raises(IdeocharError):  # the recorder answers 503; what matters is where it went
        # (inline: an upload would go to fal's own storage host, which is not this test's point)
        client.generate("a knight", PNG, extra={"fal": {"status": "poll", "image_transport": "data_uri"}})
    assert recorder.requests and all(r.path.startswith("/fal/") for r in recorder.requests)
    assert recorder.requests[0].headers.get("Authorization") == f"Key {CANARY_KEY}"


def test_a_plain_http_base_url_to_another_host_is_refused_before_anything_is_sent() -> None:
    with pytest.raises(ConfigError) as caught:
        Client(["fal"], base_urls={"fal": {"queue": "http://proxy.example/q"}}, keys={"fal": CANARY_KEY}, config=False)
    assert str(caught.value).startswith("the client's arguments: base_urls.fal.queue: must be https")


def test_an_emulator_on_another_host_over_plain_http_is_refused() -> None:
    client = Client(["fal"], emulator="http://ci.example:8000", journal=False, config=False)
    with client, pytest.raises(ConfigError, match="emulator: must be https"):
        client.generate("a knight", PNG)
