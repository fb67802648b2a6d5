"""What the journal returns: jobs, their parts, attempts and outputs, as frozen records.

Kept apart from :mod:`ideochar.journal` (which writes) so the rules that read a record ("may this
attempt still bill?", "what did this job cost?") sit in one short place; import them from
:mod:`ideochar.journal`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, Literal

from ideochar._secrets import redact_any, redact_url
from ideochar.errors import InvalidRequest
from ideochar.request import CharacterRequest
from ideochar.result import GeneratedImage

__all__ = [
    "OPEN_STATUSES",
    "AttemptRecord",
    "AttemptStatus",
    "JobRecord",
    "JobStatus",
    "OutputRecord",
    "PartRecord",
    "PartState",
    "SpendTotals",
    "describe_request",
    "rebuild_request",
]

JobStatus = Literal["running", "succeeded", "partial", "failed", "unknown"]
AttemptStatus = Literal["started", "sending", "submitted", "succeeded", "failed", "unknown"]
PartState = Literal["planned", "sent", "split"]
"""``planned``: positively nothing of the part was sent (the state changes in the same transaction as the
first intent to send). ``sent``: an admitting request may have left. ``split``: a fallback serves it in
smaller parts, which have rows of their own."""

#: Attempt states whose job may still exist (and bill) at the vendor. "started" is not one: an attempt
#: records its intent ("sending") before its first billable request.
OPEN_STATUSES: frozenset[str] = frozenset({"sending", "submitted", "unknown"})


# -- records (what the API returns) ----------------------------------------------------------------------


def _dec(text: str | None) -> Decimal | None:
    if text is None:
        return None
    try:
        return Decimal(text)
    except InvalidOperation:
        return None


def _when(seconds: float | None) -> datetime | None:
    return None if seconds is None else datetime.fromtimestamp(seconds, timezone.utc)


@dataclass(frozen=True)
class PartRecord:
    """One call of a job, as planned (or as a fallback split it)."""

    label: str
    parent: str | None
    num_images: int
    seed: int | None
    state: PartState


@dataclass(frozen=True)
class AttemptRecord:
    key: str
    job_id: str
    seq: int
    part: str
    """Which call of a fanned-out job ("0", "1", ...; "1.0" when a fallback split it further)."""
    provider: str
    try_number: int
    num_images: int
    seed: int | None
    quote_usd: Decimal | None
    status: AttemptStatus
    vendor_request_id: str | None
    resume: dict[str, Any] | None
    vendor_status: str | None
    queue_position: int | None
    billed: str | None
    cost_usd: Decimal | None
    error_type: str | None
    message: str | None
    admitted: bool
    resumes: int
    started_at: datetime
    finished_at: datetime | None
    intent_at: datetime | None = None
    """When the intent to send the billable request was recorded (None: it never was, so it was not sent)."""
    marker: dict[str, Any] | None = None
    """What identifies the job in the vendor's listing (for reconciling a lost answer)."""

    @property
    def open(self) -> bool:
        """The vendor may still be running (and billing) this attempt."""
        return self.status in OPEN_STATUSES

    @property
    def resumable(self) -> bool:
        """Open, with resume data: it can be picked up without sending it again.

        The data is usually keyed by the vendor's job id; a vendor without job ids may journal its answer
        itself (the image URLs to download again).
        """
        return self.open and self.resume is not None

    @property
    def lost(self) -> bool:
        """Open with no resume data: sent, maybe admitted, and its id never came back."""
        return self.open and self.resume is None

    @property
    def spent_usd(self) -> Decimal:
        if self.status == "succeeded":
            return self.cost_usd if self.cost_usd is not None else self.quote_usd or Decimal(0)
        if self.status == "failed" and self.billed == "yes":
            return self.cost_usd if self.cost_usd is not None else self.quote_usd or Decimal(0)
        return Decimal(0)

    @property
    def possibly_billed_usd(self) -> Decimal:
        if self.open or (self.status == "failed" and self.billed == "unknown"):
            return self.quote_usd or Decimal(0)
        return Decimal(0)


@dataclass(frozen=True)
class OutputRecord:
    job_id: str
    index: int
    part: str | None
    attempt: str | None
    provider: str | None
    vendor_request_id: str | None
    path: Path
    sha256: str
    size_bytes: int
    content_type: str
    width: int | None
    height: int | None
    seed: int | None
    created_at: datetime

    def read(self) -> GeneratedImage:
        """The saved image, checked against its recorded hash (a changed file is not passed off as ours)."""
        import hashlib

        data = self.path.read_bytes()
        if hashlib.sha256(data).hexdigest() != self.sha256:
            raise OSError(f"{self.path} no longer matches the image the journal recorded")
        return GeneratedImage(
            data=data,
            content_type=self.content_type,
            width=self.width,
            height=self.height,
            seed=self.seed,
        )


@dataclass(frozen=True)
class JobRecord:
    id: str
    created_at: datetime
    updated_at: datetime
    status: JobStatus
    operation: str
    prompt: str
    num_images: int
    request: dict[str, Any]
    plan: dict[str, Any]
    max_cost_usd: Decimal | None
    provider: str | None
    vendor_request_id: str | None
    cost_usd: Decimal | None
    cost_source: str | None
    error_type: str | None
    error_message: str | None
    attempts: list[AttemptRecord] = field(default_factory=list)
    outputs: list[OutputRecord] = field(default_factory=list)
    parts: list[PartRecord] = field(default_factory=list)
    owner: str | None = None
    """Who runs the job now ("process 123 on host"), or None when nobody does."""
    emulated: bool = False
    """The job ran against the emulator: nothing it did cost money (see :attr:`emulated_cost_usd`)."""

    @property
    def spent_usd(self) -> Decimal:
        """What the job cost; zero for an emulated job."""
        return Decimal(0) if self.emulated else self._charged()

    @property
    def possibly_billed_usd(self) -> Decimal:
        if self.emulated:
            return Decimal(0)
        return sum((a.possibly_billed_usd for a in self.attempts), Decimal(0))

    @property
    def emulated_cost_usd(self) -> Decimal:
        """For an emulated job, what a vendor would have charged for it; zero for a real one."""
        return self._charged() if self.emulated else Decimal(0)

    def _charged(self) -> Decimal:
        return sum((a.spent_usd for a in self.attempts), Decimal(0))

    @property
    def resumable(self) -> list[AttemptRecord]:
        return [a for a in self.attempts if a.resumable]

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe (Decimals and paths as strings, times in ISO 8601)."""

        def plain(value: Any) -> Any:
            if isinstance(value, (Decimal, Path)):
                return str(value)
            if isinstance(value, datetime):
                return value.isoformat()
            if isinstance(value, dict):
                return {k: plain(v) for k, v in value.items()}
            if isinstance(value, list):
                return [plain(v) for v in value]
            return value

        document = plain(asdict(self))
        document["spent_usd"] = str(self.spent_usd)
        document["possibly_billed_usd"] = str(self.possibly_billed_usd)
        if self.emulated:
            document["emulated_cost_usd"] = str(self.emulated_cost_usd)
        return document  # type: ignore[no-any-return]


@dataclass(frozen=True)
class SpendTotals:
    jobs: int
    """Jobs run against vendors (emulated ones are in ``emulated_jobs``)."""
    images: int
    spent_usd: Decimal
    possibly_billed_usd: Decimal
    emulated_jobs: int = 0
    """Jobs run against the emulator: not counted in the others."""


# -- the request, without bytes ---------------------------------------------------------------------------


def describe_request(request: CharacterRequest) -> dict[str, Any]:
    """The request as JSON, images replaced by ``{kind, path|url, sha256, size}`` descriptors.

    Paths are made absolute so a resume from another folder finds them; bytes and data URIs are
    described by hash only (the bytes stay out of the journal).
    """
    document: dict[str, Any] = request.model_dump(mode="json")
    inputs: dict[str, Any] = {}
    for name, image in request.images():
        entry: dict[str, Any] = {"kind": image.kind}
        if image.kind == "url":
            # A signed or password-bearing URL is a secret: the journal keeps it without its secrets,
            # and a resume that would need it whole asks for the request again (rebuild_request).
            shown = redact_url(image.url or "")
            entry["url"] = shown
            if shown != image.url:
                entry["redacted"] = True
        else:
            entry["sha256"] = image.sha256
            entry["size"] = image.size
            if image.path is not None:
                entry["path"] = str(image.path.resolve())
        inputs[name] = entry
        _set_path(document, name, entry.get("path") or entry.get("url") or f"<{image.kind}>")
    document["inputs"] = inputs
    return redact_any(document)  # type: ignore[no-any-return]


def _set_path(document: dict[str, Any], dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    target: Any = document
    for part in parts[:-1]:
        target = target[int(part)] if isinstance(target, list) else target[part]
    last = parts[-1]
    if isinstance(target, list):
        target[int(last)] = value
    else:
        target[last] = value


def rebuild_request(document: Mapping[str, Any]) -> CharacterRequest:
    """The request again, from :func:`describe_request`'s document; raises when an input is not here.

    A path must still hold the same bytes (same hash); URLs are taken as they are; inputs that were
    given as bytes were never stored, so such a request cannot be rebuilt.
    """
    import hashlib

    data = {k: v for k, v in document.items() if k != "inputs"}
    data = json.loads(json.dumps(data))
    for name, entry in dict(document.get("inputs") or {}).items():
        kind = entry.get("kind")
        if kind == "url" and entry.get("redacted"):
            raise InvalidRequest.for_field(
                name, "was a URL with a signature or a password, which the journal does not keep; run the request again"
            )
        if kind == "url":
            continue
        path = entry.get("path")
        if kind != "path" or not path:
            raise InvalidRequest.for_field(
                name, "was given as bytes, which the journal does not keep; run the request again"
            )
        try:
            digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()
        except OSError:
            raise InvalidRequest.for_field(name, f"{path} is gone; run the request again") from None
        if digest != entry.get("sha256"):
            raise InvalidRequest.for_field(name, f"{path} has changed since the job was created")
    return CharacterRequest.model_validate(data)


# -- rows -> records -----------------------------------------------------------------------------------


def job_record(
    row: Any, attempts: list[AttemptRecord], outputs: list[OutputRecord], parts: list[PartRecord]
) -> JobRecord:
    return JobRecord(
        id=row["id"],
        created_at=_when(row["created_at"]) or datetime.now(timezone.utc),
        updated_at=_when(row["updated_at"]) or datetime.now(timezone.utc),
        status=row["status"],
        operation=row["operation"],
        prompt=row["prompt"],
        num_images=row["num_images"],
        request=json.loads(row["request"]),
        plan=json.loads(row["plan"]),
        max_cost_usd=_dec(row["max_cost_usd"]),
        provider=row["provider"],
        vendor_request_id=row["vendor_request_id"],
        cost_usd=_dec(row["cost_usd"]),
        cost_source=row["cost_source"],
        error_type=row["error_type"],
        error_message=row["error_message"],
        attempts=attempts,
        outputs=outputs,
        parts=parts,
        owner=_owner_text(row),
        emulated=bool(row["emulated"]),
    )


def attempt_record(row: Any) -> AttemptRecord:
    return AttemptRecord(
        key=row["key"],
        job_id=row["job_id"],
        seq=row["seq"],
        part=row["part"],
        provider=row["provider"],
        try_number=row["try"],
        num_images=row["num_images"],
        seed=row["seed"],
        quote_usd=_dec(row["quote_usd"]),
        status=row["status"],
        vendor_request_id=row["vendor_request_id"],
        resume=json.loads(row["resume"]) if row["resume"] else None,
        vendor_status=row["vendor_status"],
        queue_position=row["queue_position"],
        billed=row["billed"],
        cost_usd=_dec(row["cost_usd"]),
        error_type=row["error_type"],
        message=row["message"],
        admitted=bool(row["admitted"]),
        resumes=row["resumes"],
        started_at=_when(row["started_at"]) or datetime.now(timezone.utc),
        finished_at=_when(row["finished_at"]),
        intent_at=_when(row["intent_at"]),
        marker=json.loads(row["marker"]) if row["marker"] else None,
    )


def output_record(row: Any) -> OutputRecord:
    return OutputRecord(
        job_id=row["job_id"],
        index=row["idx"],
        part=row["part"],
        attempt=row["attempt"],
        provider=row["provider"],
        vendor_request_id=row["vendor_request_id"],
        path=Path(row["path"]),
        sha256=row["sha256"],
        size_bytes=row["size_bytes"],
        content_type=row["content_type"],
        width=row["width"],
        height=row["height"],
        seed=row["seed"],
        created_at=_when(row["created_at"]) or datetime.now(timezone.utc),
    )


def part_record(row: Any) -> PartRecord:
    return PartRecord(
        label=row["label"], parent=row["parent"], num_images=row["num_images"], seed=row["seed"], state=row["state"]
    )


def _owner_text(row: Any) -> str | None:
    if not row["owner_token"]:
        return None
    host = str(row["owner_host"] or "?").split("/")[0]
    return f"process {row['owner_pid']} on {host}"
