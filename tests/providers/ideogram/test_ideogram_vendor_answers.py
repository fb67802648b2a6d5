"""Ideogram's answers are not trusted: a key echoed back is redacted before anything is cut, 300 images
named for one asked cost one download, and a malformed field never costs a paid image
(docs/security.md, "Vendor answers")."""

from __future__ import annotations

from typing import Any

import pytest
from ideogram_support import DRIVERS, IMAGE_URL, KEY, Driver, FakeIdeogram, exchange_flow, generation, image_object, run
from ideogram_support import make_image as ideogram_image

from echoed_keys import error_fragments, straddling
from ideochar.errors import ProviderError, UnexpectedResponse
from ideochar.request import CharacterRequest

PNG = ideogram_image(64, 48)


@pytest.fixture(params=DRIVERS)
def driver(request: pytest.FixtureRequest) -> Driver:
    return request.param  # type: ignore[no-any-return]


def _request(**fields: Any) -> CharacterRequest:
    return CharacterRequest(prompt="a knight", reference=PNG, **fields)


def fail(fake: FakeIdeogram, driver: Driver, request: CharacterRequest | None = None) -> ProviderError:
    with pytest.raises(ProviderError) as caught:
        run(driver, exchange_flow(request or _request()), fake)
    return caught.value


@pytest.mark.parametrize(
    ("status", "answer", "headers"),
    [
        (401, straddling(key=KEY), {"content-type": "text/plain"}),
        (400, {"error": straddling(key=KEY), "reject_reason": "x"}, {}),
        (502, f"<html><title>{straddling(key=KEY)}</title></html>", {"content-type": "text/html"}),
        (200, straddling(key=KEY), {"content-type": "text/plain"}),  # a paid answer that is not JSON
        (200, {"data": straddling(key=KEY)}, {}),  # a paid answer without an image list
    ],
    ids=["text-401", "json-400", "html-502", "text-200", "json-200"],
)
def test_a_key_echoed_by_ideogram_is_redacted_before_it_is_cut(
    driver: Driver, status: int, answer: Any, headers: dict[str, str]
) -> None:
    error = fail(FakeIdeogram(answer=answer, status=status, headers=headers), driver)
    assert error_fragments(error, key=KEY) == []


def test_an_answer_naming_300_images_for_one_asked_costs_one_download(driver: Driver) -> None:
    urls = [IMAGE_URL.replace("xtdZiqPwRxqY1Y7NExFmzB", f"n{i}") for i in range(300)]
    fake = FakeIdeogram(answer=generation(*(image_object(url) for url in urls)), images={url: PNG for url in urls})
    output = run(driver, exchange_flow(_request()), fake)
    assert [r.method for r in fake.seen] == ["POST", "GET"] and len(output.images) == 1
    assert any("300" in w.message and w.field == "num_images" for w in output.warnings)


@pytest.mark.parametrize(
    "bad",
    [
        {"seed": 2**64},
        {"seed": 1.5},
        {"is_image_safe": "perhaps"},
        {"resolution": 1024},
        {"prompt": ["a", "b"]},
    ],
    ids=["huge-seed", "float-seed", "safety-flag", "resolution", "prompt"],
)
def test_a_malformed_field_never_costs_the_paid_image(driver: Driver, bad: dict[str, Any]) -> None:
    fake = FakeIdeogram(answer=generation(image_object(IMAGE_URL, **bad)), images={IMAGE_URL: PNG})
    output = run(driver, exchange_flow(_request()), fake)
    assert len(output.images) == 1 and output.failures == []
    if "seed" in bad:
        assert output.images[0].seed is None


def test_an_answer_without_a_usable_list_is_still_unreadable(driver: Driver) -> None:
    error = fail(FakeIdeogram(answer={"data": [{"url": IMAGE_URL}, "not an object"]}), driver)
    assert isinstance(error, UnexpectedResponse) and error.billed == "unknown" and error.admitted


def test_download_urls_never_get_the_key(driver: Driver) -> None:
    fake = FakeIdeogram(answer=generation(image_object(IMAGE_URL)), images={IMAGE_URL: PNG})
    run(driver, exchange_flow(_request()), fake)
    assert [("api-key" in r.headers) for r in fake.seen] == [True, False]
