"""Finding a prediction whose create answer was lost, in Replicate's list of predictions.

Replicate has no idempotency key, so a create request whose answer never came (a dropped
connection, a timeout, Ctrl-C, a gateway's 502) is never sent again: the prediction may exist and
bill. It can still be found. ``GET /v1/predictions`` lists every prediction of the token's account,
newest first, 100 a page, each with its ``model``, ``input`` and ``created_at``; it takes
``created_after`` to start the list at a moment [V: HTTP API reference, predictions.list]. So:

* :func:`create_marker` says what identifies a create request's prediction in that list: JSON-safe,
  nothing secret. The router journals it with the intent to send, before the request goes out.
* :func:`find_prediction` pages through the list from the newest prediction back to the moment the
  request was sent, less :data:`CLOCK_SKEW_SECONDS` (Replicate's clock is not ours), and keeps the
  predictions of this model whose input matches the marker (:func:`input_matches`).
* One match is the job. None means the list does not show it. Several raise OutcomeUnknown naming
  them all: sending again or picking one could both cost money, so nothing is guessed.
* :func:`find_lost_create` is the lost-answer path of one exchange: it looks a few times over a few
  seconds (a prediction shows in the list within moments of its creation [I]), then gives up.

The marker, for a generate with a small local reference::

    {"v": 1,
     "model": "ideogram-ai/ideogram-character",
     "input": {"prompt": "a knight", "rendering_speed": "Default", "magic_prompt_option": "Auto",
               "seed": 1184042331},
     "images": {"character_reference_image": {"kind": "data_uri", "sha256": "9f2c…", "chars": 5124}}}

``input`` holds every scalar input exactly as sent; ``images`` a digest of each image string as sent
(its SHA-256, its form, its length): a data URI's bytes never go into the journal, nor a URL that may
carry a signature. The seed is always there (``mapping.create_body`` draws one when the caller gave
none), so siblings of a fanned-out request, which share prompt and images, are told apart.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Literal

import httpx
from pydantic import ValidationError

from ideochar._secrets import redact
from ideochar.errors import (
    AuthenticationFailed,
    OutcomeUnknown,
    ProviderError,
    ProviderUnavailable,
    RateLimited,
    UnexpectedResponse,
)
from ideochar.exchange import Send, Sleep
from ideochar.retry import parse_retry_after
from ideochar.spec import Exchange
from ideochar.toolkit import Done, PollSchedule, Retry, Unreadable, parse_reply, poll, read_body
from ideochar_replicate.errors import PROVIDER, problem_of
from ideochar_replicate.mapping import MODEL
from ideochar_replicate.wire import ListedPrediction, PredictionPage

__all__ = [
    "CLOCK_SKEW_SECONDS",
    "IMAGE_FIELDS",
    "LIST_ATTEMPTS",
    "LIST_PATH",
    "LOST_ANSWER_LOOKS_SECONDS",
    "MARKER_VERSION",
    "MAX_LIST_PAGES",
    "SCHEMA_DEFAULTS",
    "Listing",
    "create_marker",
    "find_lost_create",
    "find_prediction",
    "input_matches",
    "parse_time",
]

LIST_PATH = "/v1/predictions"
MARKER_VERSION = 1
#: How far our clock may run ahead of Replicate's: the list is searched from ``sent_at`` less this.
#: Generous on purpose [I]: a wider window can only add candidates (then OutcomeUnknown, never a
#: wrong pick), a narrower one could miss the job and leave it unfound.
CLOCK_SKEW_SECONDS = 120.0
#: Pages read at most (100 predictions each [V]); a longer window is reported, not half-searched.
MAX_LIST_PAGES = 20
#: Tries per page: a GET is safe to repeat (transport errors, 429, 5xx, unreadable bodies).
LIST_ATTEMPTS = 4
#: Waits before each look at the list after a lost create answer (the first at once). A prediction
#: shows in the list within moments of its creation [I]; a few seconds cover a create still being
#: written when the connection dropped.
LOST_ANSWER_LOOKS_SECONDS: tuple[float, ...] = (0.0, 0.5, 1.5, 3.0)

#: Image inputs (strings: URLs or data URIs) of the model's schema [V].
IMAGE_FIELDS: tuple[str, ...] = ("character_reference_image", "image", "mask")
#: The model's defaults for the scalar inputs it has one for [V: the model's input schema]: a listed
#: value equal to the default agrees with a request that did not send the field. ``seed`` has none
#: (random), so an unsent seed rules nothing out.
SCHEMA_DEFAULTS: Mapping[str, object] = {
    "rendering_speed": "Default",
    "style_type": "Auto",
    "magic_prompt_option": "Auto",
    "aspect_ratio": "1:1",
    "resolution": "None",
}


@dataclass(frozen=True)
class Listing:
    """Where and how to read the list: its first URL, the auth headers, and the trusted-origin check
    (a ``next`` URL outside the API base is rebuilt under it, so the token goes nowhere else)."""

    url: str
    headers: Mapping[str, str]
    trusted: Callable[[str], str | None]


# -- the marker ----------------------------------------------------------------------------------------


def create_marker(body: Mapping[str, Any]) -> dict[str, Any]:
    """What identifies the prediction the create ``body`` makes, for the journal (see the module docstring)."""
    sent: Mapping[str, Any] = body["input"]
    scalars = {name: value for name, value in sent.items() if name not in IMAGE_FIELDS}
    images = {name: _image_digest(sent[name]) for name in IMAGE_FIELDS if isinstance(sent.get(name), str)}
    return {"v": MARKER_VERSION, "model": MODEL, "input": scalars, "images": images}


def _image_digest(value: str) -> dict[str, Any]:
    return {"kind": _kind(value), "sha256": _sha256(value), "chars": len(value)}


def _kind(value: str) -> Literal["data_uri", "url"]:
    return "data_uri" if value[:5].lower() == "data:" else "url"


def _sha256(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8")).hexdigest()


# -- the matching rule [I] -------------------------------------------------------------------------------


def input_matches(marker: Mapping[str, Any], listed: Mapping[str, Any]) -> bool:
    """Whether a listed prediction's ``input`` can be the one the marker's request sent.

    [I] Replicate documents the listed ``input`` only by an example (echoed as sent). So the rule is
    strict where the list cannot legitimately differ and lenient where it might:

    * the prompt must be there and equal;
    * a scalar that was sent must be equal when listed (a missing one is not held against it);
    * a scalar that was not sent may only be listed with the model's default (``SCHEMA_DEFAULTS``);
    * an image that was sent rules a prediction out only when the listed value is comparable: same
      digest agrees; a different URL, or a different data URI at least as long as ours, disagrees;
      a shorter data URI (shortened?) or another form (stored as a file?) decides nothing;
    * an image that was not sent (``image``/``mask`` of a generate) must not be listed.
    """
    sent: Mapping[str, Any] = marker.get("input", {})
    if "prompt" not in listed or listed["prompt"] != sent.get("prompt"):
        return False
    if any(name in listed and listed[name] != value for name, value in sent.items()):
        return False
    unsent = (name for name in SCHEMA_DEFAULTS if name not in sent)
    if any(listed.get(name) not in (None, SCHEMA_DEFAULTS[name]) for name in unsent):
        return False
    digests: Mapping[str, Mapping[str, Any]] = marker.get("images", {})
    return all(_image_agrees(digests.get(name), listed.get(name)) for name in IMAGE_FIELDS)


def _image_agrees(digest: Mapping[str, Any] | None, listed: object) -> bool:
    if digest is None:
        return listed in (None, "")
    if not isinstance(listed, str) or not listed:
        return True
    if _sha256(listed) == digest["sha256"]:
        return True
    if _kind(listed) != digest["kind"]:
        return True  # another form of the same input, perhaps: it decides nothing
    if digest["kind"] == "url":
        return False
    return len(listed) < int(digest["chars"])  # a data URI shortened in the list decides nothing


# -- times ---------------------------------------------------------------------------------------------

_ISO = re.compile(r"^(\d{4}-\d{2}-\d{2})[T ](\d{2}:\d{2}:\d{2})(?:\.(\d+))?(Z|[+-]\d{2}:?\d{2})?$", re.IGNORECASE)


def parse_time(text: object) -> float | None:
    """Seconds since the epoch of an ISO 8601 time as Replicate writes it (``…T16:19:34.907244Z``);
    None when unreadable. Any number of fraction digits; no zone is read as UTC [I]."""
    match = _ISO.match(text.strip()) if isinstance(text, str) else None
    if match is None:
        return None
    day, clock, fraction, zone = match.groups()
    offset = "+00:00" if zone is None or zone.upper() == "Z" else zone[:3] + ":" + zone[-2:]
    try:
        moment = datetime.fromisoformat(f"{day}T{clock}{offset}").timestamp()
    except ValueError:
        return None
    return moment + (float(f"0.{fraction}") if fraction else 0.0)


def _iso(moment: float) -> str:
    return datetime.fromtimestamp(moment, timezone.utc).isoformat(timespec="microseconds").replace("+00:00", "Z")


# -- the search ----------------------------------------------------------------------------------------

Verdict = Literal["match", "removed", "other", "older"]


def _classify(item: ListedPrediction, marker: Mapping[str, Any], since: float) -> Verdict:
    created = parse_time(item.created_at)
    if created is not None and created < since:
        return "older"
    if item.source == "web" or item.model not in (None, marker.get("model")):
        return "other"
    if item.data_removed or not item.input:
        return "removed"  # could be the job; its input can no longer tell
    return "match" if input_matches(marker, item.input) else "other"


@dataclass
class _Search:
    marker: Mapping[str, Any]
    since: float
    matches: list[ListedPrediction] = field(default_factory=list)
    removed: list[ListedPrediction] = field(default_factory=list)

    def read(self, page: PredictionPage) -> bool:
        """Sort one page's items; True once the list reached predictions older than the window."""
        reached = False
        for raw in page.results:
            try:
                item = ListedPrediction.model_validate(raw)
            except ValidationError:
                continue  # no usable id: it could not be followed anyway
            verdict = _classify(item, self.marker, self.since)
            reached = reached or verdict == "older"
            if verdict == "match":
                self.matches.append(item)
            elif verdict == "removed":
                self.removed.append(item)
        return reached

    def verdict(self) -> ListedPrediction | None:
        if len(self.matches) == 1 and not self.removed:
            return self.matches[0]
        if not self.matches and not self.removed:
            return None
        raise self._ambiguous()

    def _ambiguous(self) -> OutcomeUnknown:
        found = []
        if self.matches:
            found.append(f"{_predictions(self.matches)} whose input matches this request")
        if self.removed:
            found.append(f"{_predictions(self.removed)} whose input was already removed")
        verdict = "which one this job created" if self.matches else "whether one of them is this job"
        return OutcomeUnknown(
            f"Replicate lists, since {_iso(self.since)}, {' and '.join(found)}; {verdict} cannot be told, so "
            "none is picked and nothing is sent again",
            provider=PROVIDER,
            body={"candidates": [p.id for p in self.matches + self.removed]},
        )


def _predictions(items: list[ListedPrediction]) -> str:
    noun = "prediction" if len(items) == 1 else "predictions"
    return f"{len(items)} {noun} ({', '.join(p.id for p in items)})"


def find_prediction(
    marker: Mapping[str, Any], *, sent_at: float, listing: Listing
) -> Exchange[ListedPrediction | None]:
    """The one listed prediction the marker's request created since ``sent_at`` (less the skew margin),
    None when the list shows none; OutcomeUnknown when several could be it (see :class:`_Search`)."""
    since = sent_at - CLOCK_SKEW_SECONDS
    search = _Search(marker, since)
    url = str(httpx.URL(listing.url, params={"created_after": _iso(since)}))
    for _ in range(MAX_LIST_PAGES):
        page = yield from _page(url, listing.headers)
        if search.read(page) or not page.next:
            return search.verdict()
        url = _next_url(page.next, listing)
    raise OutcomeUnknown(
        f"Replicate lists more than {MAX_LIST_PAGES * 100} predictions since {_iso(since)}; they were not all "
        "searched, so whether one of them is this job cannot be told",
        provider=PROVIDER,
    )


def find_lost_create(
    lost: OutcomeUnknown, marker: Mapping[str, Any], *, sent_at: float, listing: Listing
) -> Exchange[ListedPrediction]:
    """The prediction a create request made although its answer was ``lost``, looked up in the list a
    few times (:data:`LOST_ANSWER_LOOKS_SECONDS`); else OutcomeUnknown again, saying what the list showed."""
    for delay in LOST_ANSWER_LOOKS_SECONDS:
        if delay:
            yield Sleep(delay)
        try:
            found = yield from find_prediction(marker, sent_at=sent_at, listing=listing)
        except OutcomeUnknown as ambiguous:
            raise _still_unknown(lost, ambiguous.message, ambiguous.body) from lost
        except ProviderError as failed:
            note = f"looking for it in Replicate's list of predictions failed ({failed.message})"
            raise _still_unknown(lost, note) from lost
        if found is not None:
            return found
    looks, seconds = len(LOST_ANSWER_LOOKS_SECONDS), sum(LOST_ANSWER_LOOKS_SECONDS)
    note = f"Replicate's list of predictions did not show it ({looks} looks over {seconds:g} s)"
    raise _still_unknown(lost, note) from lost


def _still_unknown(lost: OutcomeUnknown, note: str, body: Any = None) -> OutcomeUnknown:
    return OutcomeUnknown(
        f"{lost.message.rstrip('. ')}; {note}",
        provider=lost.provider or PROVIDER,
        status=lost.status,
        body=body if body is not None else lost.body,
    )


# -- reading pages ---------------------------------------------------------------------------------------


def _page(url: str, headers: Mapping[str, str]) -> Exchange[PredictionPage]:
    """One page of the list, the GET repeated through transient failures (LIST_ATTEMPTS in all)."""

    def send() -> Send:
        return Send(httpx.Request("GET", url, headers=dict(headers)))

    return (yield from poll(send, _read_page, PollSchedule(failures=LIST_ATTEMPTS - 1)))


def _read_page(response: httpx.Response) -> Done[PredictionPage] | Retry:
    if response.status_code == 429 or response.status_code >= 500:
        return Retry(_listing_error(response))
    if not response.is_success:
        raise _listing_error(response)
    page = parse_reply(response, PredictionPage)
    if isinstance(page, Unreadable):
        return Retry(
            UnexpectedResponse(
                "Replicate's list of predictions is unreadable", status=response.status_code, body=page.body
            )
        )
    return Done(page)


def _listing_error(response: httpx.Response) -> ProviderError:
    status = response.status_code
    problem = problem_of(response)
    detail = (problem.detail or problem.title) if problem is not None else None
    text = f"Replicate's list of predictions answered HTTP {status}" + (f": {detail}" if detail else "")
    body = problem.model_dump(exclude_none=True) if problem is not None else read_body(response).excerpt()
    common: dict[str, Any] = {"provider": PROVIDER, "status": status, "body": body}
    if status in (401, 403):
        return AuthenticationFailed(text, **common)
    if status == 429:
        return RateLimited(text, retry_after=parse_retry_after(response.headers), **common)
    return ProviderUnavailable(text, **common)


def _next_url(next_url: str, listing: Listing) -> str:
    """The next page's URL: as given when it lies under the API base, else its query on the base's path."""
    trusted = listing.trusted(next_url)
    if trusted is not None:
        return trusted
    try:
        query = httpx.URL(next_url).query
    except httpx.InvalidURL:
        raise UnexpectedResponse(
            f"Replicate's list of predictions gave an unusable next page: {redact(next_url)[:200]!r}"
        )
    return str(httpx.URL(listing.url).copy_with(query=query))
