"""Replicate's wire shapes for ``ideogram-ai/ideogram-character``, as pydantic models.

Every reply is parsed through these models, so a change on Replicate's side fails here, in one place,
with a readable message, instead of as a ``KeyError`` deep in the exchange. Replies are parsed
leniently (unknown keys ignored: Replicate adds fields over time); what we send is strict
(``extra="forbid"``), so a typo in the mapping cannot reach the wire.

Sources (see ``reference/vendors.md`` §3): the model's input schema on replicate.com (versions
``1f8e1982…`` and later, which added ``image``/``mask``), the prediction object of the HTTP API and
the official Python client (``Prediction``, ``File``, ``ReplicateError``).
"""

from __future__ import annotations

from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field

from ideochar.toolkit import Count, VendorModel

__all__ = [
    "TERMINAL_STATUSES",
    "AspectRatio",
    "CreatePrediction",
    "FileUrls",
    "ListedPrediction",
    "MagicPromptOption",
    "Prediction",
    "PredictionInput",
    "PredictionPage",
    "PredictionStatus",
    "PredictionUrls",
    "Problem",
    "RenderingSpeed",
    "StyleType",
    "UploadedFile",
    "WebhookEvent",
]

RenderingSpeed = Literal["Default", "Turbo", "Quality"]
StyleType = Literal["Auto", "Fiction", "Realistic"]
MagicPromptOption = Literal["Auto", "On", "Off"]
AspectRatio = Literal[
    "1:3", "3:1", "1:2", "2:1", "9:16", "16:9", "10:16", "16:10", "2:3", "3:2", "3:4", "4:3", "4:5", "5:4", "1:1",
]  # fmt: skip
WebhookEvent = Literal["start", "output", "logs", "completed"]

#: ``aborted`` is newer than the client libraries: a ``Cancel-After`` deadline passed before the
#: prediction started (replicate.com changelog 2025-10-16).
PredictionStatus = Literal["starting", "processing", "succeeded", "failed", "canceled", "aborted"]
TERMINAL_STATUSES: frozenset[str] = frozenset({"succeeded", "failed", "canceled", "aborted"})
_STATUSES: frozenset[str] = frozenset(get_args(PredictionStatus))


class _Sent(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _Received(VendorModel):
    """Replicate's documents: unknown keys ignored, a malformed optional field dropped (never the id)."""


class PredictionInput(_Sent):
    """The model's ``input`` object. ``None`` fields are left out, so the model's defaults apply.

    ``resolution`` is never sent as the string ``"None"`` (the schema's way of saying "unset"):
    leaving it out says the same and cannot be mistaken for a size.
    """

    prompt: str
    character_reference_image: str
    rendering_speed: RenderingSpeed | None = None
    style_type: StyleType | None = None
    magic_prompt_option: MagicPromptOption | None = None
    aspect_ratio: AspectRatio | None = None
    resolution: str | None = Field(default=None, pattern=r"^\d{3,4}x\d{3,4}$")
    seed: int | None = Field(default=None, ge=0, le=2_147_483_647)
    image: str | None = None
    mask: str | None = None


class CreatePrediction(_Sent):
    """Body of ``POST /v1/models/{owner}/{name}/predictions``."""

    input: PredictionInput
    webhook: str | None = None
    webhook_events_filter: list[WebhookEvent] | None = None

    def payload(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_none=True)


class PredictionUrls(_Received):
    get: str | None = None
    cancel: str | None = None
    stream: str | None = None
    web: str | None = None


class Prediction(_Received):
    """A prediction as ``POST …/predictions`` and ``GET /v1/predictions/{id}`` return it."""

    id: str = Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9_-]+$")
    status: PredictionStatus
    output: str | list[str] | None = None
    """One URL for this model; a list is accepted too (the client libraries allow both)."""
    error: Any = None
    """A string in practice; kept loose because it is only read as text."""
    logs: str | None = None
    urls: PredictionUrls = Field(default_factory=PredictionUrls)
    data_removed: bool = False
    """True once Replicate deleted inputs and outputs (an hour after an API prediction ends)."""
    metrics: dict[str, Any] = Field(default_factory=dict)
    input: dict[str, Any] = Field(default_factory=dict)
    """What was sent (also removed after an hour); read for the seed when the logs lack it."""
    model: str | None = None
    version: str | None = None
    created_at: str | None = None
    started_at: str | None = None
    completed_at: str | None = None

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES

    @property
    def output_urls(self) -> list[str]:
        if self.output is None:
            return []
        if isinstance(self.output, str):
            return [self.output] if self.output else []
        return [url for url in self.output if url]

    @property
    def error_text(self) -> str:
        if self.error is None:
            return ""
        return self.error if isinstance(self.error, str) else str(self.error)


class ListedPrediction(_Received):
    """One item of ``GET /v1/predictions``, read loosely: only what finding a lost prediction needs.

    The listing holds every prediction of the account (the website's too), of every model, so an
    item this adapter cannot fully read (a status newer than this code, a model with another output
    shape) must not make the whole page unreadable; only an item without an id is useless.
    """

    id: str = Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9_-]+$")
    status: str = ""
    model: str | None = None
    input: dict[str, Any] | None = None
    """What was sent, as Replicate echoes it (how it echoes image inputs is not documented [I])."""
    created_at: str | None = None
    source: str | None = None
    """``api`` or ``web`` [V]."""
    data_removed: bool = False
    urls: PredictionUrls = Field(default_factory=PredictionUrls)

    def as_prediction(self) -> Prediction:
        """A :class:`Prediction` to follow by its id (a status this code does not know reads as starting)."""
        status = self.status if self.status in _STATUSES else "starting"
        return Prediction.model_validate({"id": self.id, "status": status, "urls": self.urls.model_dump()})


class PredictionPage(_Received):
    """A page of ``GET /v1/predictions``: newest first, 100 per page, ``next``/``previous`` as full URLs
    carrying a ``cursor`` query parameter, or null [V: HTTP API reference, predictions.list]."""

    results: list[dict[str, Any]]
    """Kept raw: each item is read on its own (:class:`ListedPrediction`), so one odd item spoils nothing."""
    next: str | None = None
    previous: str | None = None


class FileUrls(_Received):
    get: str


class UploadedFile(_Received):
    """Answer of ``POST /v1/files``; ``urls.get`` is what a prediction input takes."""

    id: str
    urls: FileUrls
    name: str | None = None
    content_type: str | None = None
    size: Count | None = None
    expires_at: str | None = None


class Problem(_Received):
    """An RFC 7807 problem body, Replicate's error envelope: ``{"title", "detail", "status"}``.

    422 answers add ``invalid_fields``. Every member is optional: a gateway in front of the API
    may answer with something else entirely, and the status code still says what happened.
    """

    type: str | None = None
    title: str | None = None
    detail: str | None = None
    status: int | None = None
    instance: str | None = None
    invalid_fields: list[dict[str, Any]] | None = None
