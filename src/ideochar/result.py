"""What comes back: one :class:`CharacterResult` for every vendor.

Images are downloaded eagerly (vendor URLs expire within 1 to 24 hours), so ``GeneratedImage.data``
holds the bytes; ``vendor_url`` is kept for reference only. ``attempts`` lists every provider tried on
the way, with whether it billed, so a caller can always answer "what did this cost me, and where?".
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timezone
from decimal import Decimal
from functools import cached_property
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, computed_field

from ideochar._secrets import redact, redact_any
from ideochar.errors import Billed

__all__ = [
    "Attempt",
    "CharacterResult",
    "CostSource",
    "GeneratedImage",
    "ImageFailure",
    "JobHandle",
    "RequestWarning",
    "WarningKind",
]

CostSource = Literal["vendor", "price_table", "unknown"]
WarningKind = Literal["unsupported", "adjusted", "withheld", "fanned_out", "other"]


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _scrub(value: str | None) -> str | None:
    return redact(value) if value else value


#: Text that comes from a vendor's answer (an id, a message), which may echo the key back.
VendorText = Annotated[str | None, AfterValidator(_scrub)]


class _Frozen(BaseModel):
    # Built on first use, not at import: ``import ideochar`` stays close to importing its dependencies
    # (docs/benchmarks.md). The attribute docstrings are for readers; nothing consumes them as descriptions.
    model_config = ConfigDict(frozen=True, defer_build=True)


class RequestWarning(_Frozen):
    """Something the vendor could not do as asked. ``strict=True`` turns these into errors before sending."""

    kind: WarningKind
    field: str | None
    """Neutral field path the warning is about (``negative_prompt``), if any."""
    message: str
    provider: str | None = None

    def __str__(self) -> str:
        where = f"{self.provider}: " if self.provider else ""
        return f"{where}{self.message}"


class GeneratedImage(_Frozen):
    """One output image, with its bytes."""

    data: bytes = Field(repr=False)
    content_type: str
    width: int | None = None
    height: int | None = None
    seed: int | None = None
    vendor_url: str | None = Field(default=None, repr=False)
    """Where the vendor served it (expires; data URIs are not kept)."""
    prompt: VendorText = None
    """The prompt the vendor actually used (after MagicPrompt), when it says."""

    @computed_field  # type: ignore[prop-decorator]
    @cached_property
    def sha256(self) -> str:
        """Hex digest of the bytes, worked out when first read (the journal, sidecars and events read it).

        Hashing a 300 KB image takes longer than the rest of handling the answer; a caller who never
        looks at the digest does not pay for it.
        """
        return hashlib.sha256(self.data).hexdigest()

    @property
    def extension(self) -> str:
        return {"image/jpeg": "jpg", "image/png": "png", "image/webp": "webp"}.get(self.content_type, "bin")

    def save(self, path: str | Path) -> Path:
        """Write the bytes; a path without a suffix gets the right one."""
        target = Path(path)
        if not target.suffix:
            target = target.with_suffix(f".{self.extension}")
        target.write_bytes(self.data)
        return target


class ImageFailure(_Frozen):
    """An image that was asked for and did not arrive (withheld by a safety check, or a failed part of a fan-out)."""

    index: int | None = None
    reason: str
    billed: Billed = "unknown"
    provider: str | None = None
    error_type: str | None = None
    """Name of the ideochar error class that explains it, if any."""


class Attempt(_Frozen):
    """One try at one provider."""

    provider: str
    outcome: Literal["succeeded", "failed", "skipped"]
    billed: Billed
    vendor_request_id: VendorText = None
    error_type: str | None = None
    message: VendorText = None
    started_at: datetime = Field(default_factory=_now)
    elapsed_seconds: float = 0.0
    cost_usd: Decimal | None = None


class CharacterResult(_Frozen):
    """The answer to one request, whichever vendor served it."""

    images: list[GeneratedImage]
    provider: str
    vendor_request_id: VendorText = None
    cost_usd: Decimal | None = None
    cost_source: CostSource = "unknown"
    warnings: list[RequestWarning] = Field(default_factory=list)
    failures: list[ImageFailure] = Field(default_factory=list)
    """Images asked for that did not come (never silently dropped)."""
    attempts: list[Attempt] = Field(default_factory=list)
    job_id: str | None = None
    """Journal id, when a journal is in use (``ideochar jobs show``)."""
    vendor_metadata: Annotated[dict[str, object], AfterValidator(redact_any)] = Field(default_factory=dict, repr=False)
    """Vendor extras (remaining credits, timings), keyed by name; never keys."""

    @property
    def image(self) -> GeneratedImage:
        """The first image (most requests ask for one)."""
        return self.images[0]


class JobHandle(_Frozen):
    """A job the vendors have admitted and that runs without you: ``client.submit`` returns it at once.

    Finish it with ``client.wait(handle)`` (now, later, or from another process: it is journaled), or stop
    it with ``client.cancel(handle)``. A vendor that answers only with the finished image (no job id first)
    has finished it already: ``wait`` then returns the saved images without sending anything.
    """

    job_id: str
    provider: str
    """The provider the job (or its first call) went to."""
    vendor_request_ids: list[str] = Field(default_factory=list)
    """The vendors' ids for the job's calls, in order."""
    quote_usd: Decimal | None = None
    """What the admitted calls will cost at the price table (the vendor may report the actual cost)."""
    finished: bool = False
    """True when every call had already finished when ``submit`` returned."""
    attempts: list[Attempt] = Field(default_factory=list)
    failures: list[ImageFailure] = Field(default_factory=list)
    """Calls that failed before any vendor admitted them (nothing to wait for)."""
