"""The toolkit's explicit defaults: the seed ideochar draws, the size an unset request means, the ratio
table (the emulators' own sizes agree), and a vendor's yes/no retry hint."""

from __future__ import annotations

import httpx
import pytest

import ideochar.toolkit as toolkit
from conftest import make_image
from ideochar.emulator.kit import size_for_aspect_ratio
from ideochar.request import ASPECT_RATIOS, RESOLUTIONS, CharacterRequest, Edit, Remix
from ideochar.toolkit import DEFAULT_ASPECT_RATIO, MAX_SEED, RATIO_SIZES, draw_seed, output_size, retryable_hint

PNG = make_image()


def test_drawn_seeds_cover_every_vendors_range_and_differ() -> None:
    seeds = {draw_seed() for _ in range(200)}
    assert len(seeds) > 190 and all(0 <= s <= MAX_SEED == 2_147_483_647 for s in seeds)


def test_a_drawn_seed_can_be_pinned_for_a_test(pinned_seed: int) -> None:
    assert draw_seed() == pinned_seed
    assert toolkit._random_below(10) == pinned_seed % 10


@pytest.mark.parametrize(
    ("fields", "size"),
    [
        ({}, (1024, 1024)),
        ({"aspect_ratio": "16:9"}, (1312, 736)),
        ({"resolution": "832x1248"}, (832, 1248)),
        ({"operation": Remix(image=PNG)}, (1024, 1024)),
        ({"operation": Edit(image=PNG, mask=PNG)}, None),
    ],
)
def test_the_size_a_request_means(fields: dict[str, object], size: tuple[int, int] | None) -> None:
    assert output_size(CharacterRequest(prompt="p", reference=PNG, **fields)) == size  # type: ignore[arg-type]


def test_unset_means_square() -> None:
    assert RATIO_SIZES[DEFAULT_ASPECT_RATIO] == (1024, 1024)


@pytest.mark.parametrize("ratio", ASPECT_RATIOS)
def test_the_ratio_table_holds_legal_sizes_the_emulators_render_the_same(ratio: str) -> None:
    width, height = RATIO_SIZES[ratio]
    assert f"{width}x{height}" in RESOLUTIONS
    assert size_for_aspect_ratio(ratio) == (width, height)


@pytest.mark.parametrize(
    ("headers", "hint"),
    [
        ({"X-Fal-Retryable": "true"}, True),
        ({"X-Fal-Retryable": " False "}, False),
        ({"X-Fal-Needs-Retry": "1"}, True),
        ({"X-Fal-Retryable": "maybe"}, None),
        ({}, None),
    ],
)
def test_a_vendors_retry_hint_is_read_as_a_bool(headers: dict[str, str], hint: bool | None) -> None:
    assert retryable_hint(httpx.Headers(headers), "x-fal-retryable", "x-fal-needs-retry") is hint
