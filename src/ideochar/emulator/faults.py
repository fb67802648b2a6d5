"""Fault profiles: which requests to a vendor go wrong, and how.

A profile is a list of rules per vendor, read from JSON or TOML (``ideochar emulator serve --faults``),
posted to ``/_emulator/faults``, or set from Python (``app.state.emulator.set_profile(...)``)::

    {
      "seed": 7,
      "fal": [
        {"route": "submit", "kind": "status", "status": 503, "ingress": true, "times": 2},
        {"route": "status", "kind": "latency", "seconds": 0.2, "rate": 0.5},
        {"route": "result", "kind": "drop_after_admit"}
      ],
      "segmind": [{"route": "v1", "kind": "rate_limit", "retry_after": 3, "after": 1}],
      "*": [{"route": "files", "kind": "expire"}]
    }

The same in TOML: ``seed = 7`` then ``[[fal]]`` tables with the same keys.

Each rule names a route with a glob (a vendor module documents its route names: fal's ``submit``,
``status``, ``stream``, ``result``, ``cancel``, ``run``; every vendor's output files are ``files``), a
``kind`` (:data:`FAULT_KINDS`), and when it fires: ``rate`` (a probability, default 1), ``after`` (let
this many matching requests through first) and ``times`` (fire at most this often). With a ``seed`` the
draws are reproducible, so a test with ``rate`` below 1 is not flaky; without one they are random.

Kinds, and who applies them:

=====================  =========================================================================
``latency``            wait ``seconds`` then answer normally (adds up with one other fault)
``status``             answer ``status`` with the vendor's error body (``ingress``: a proxy's page)
``rate_limit``         429 with ``Retry-After: retry_after`` (vendors that signal it otherwise adapt it)
``hang``               never answer: wait until the client gives up (or ``seconds``, then cut)
``refuse``             cut the connection before reading the request (nothing admitted)
``truncate``           send the headers and half of the body, then cut the connection
``malformed_json``     answer 200 with the first half of the body (a complete, broken message)
``wrong_content_type`` answer with ``Content-Type: text/html``
``expire``             (route ``files``) the output file is gone: 404
``stuck``              (job routes) the job is admitted and never completes
``drop_after_admit``   (job routes) the job is admitted and billed, then the connection is cut
=====================  =========================================================================

The first seven are decided when a route calls ``kit.fault(route, request)``; ``stuck`` and
``drop_after_admit`` when it calls ``kit.choose_fault(route)`` at the moment it admits a job.

Callbacks (route ``callback``: what fal and Replicate send to a request's webhook URL) have kinds of
their own, decided when the emulator is about to send one (:mod:`ideochar.emulator.callbacks`):

=============================  =====================================================================
``callback_lost``              never delivered, however often retried (polling must finish the job)
``callback_duplicate``         delivered twice
``callback_late``              delivered after ``seconds`` (default 2)
``callback_out_of_order``      held back until the vendor's next callback has gone (or ``seconds``)
``callback_bad_signature``     a copy with a broken signature goes first, then the genuine one
``callback_stale``             a copy signed ten minutes ago goes first, then the genuine one
=============================  =====================================================================

E.g. 5% of each: ``{"seed": 1, "*": [{"route": "callback", "kind": "callback_duplicate", "rate": 0.05},
...]}``. A ``latency`` rule at route ``callback`` delays deliveries too.
"""

from __future__ import annotations

import fnmatch
import importlib
import json
import random
import sys
import threading
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from typing_extensions import Self

from ideochar.emulator.kit import Fault

__all__ = [
    "CALLBACK_KINDS",
    "FAULT_KINDS",
    "JOB_KINDS",
    "REQUEST_KINDS",
    "RESPONSE_KINDS",
    "FaultProfile",
    "FaultRule",
    "Faults",
    "load_profile",
]

FaultKind = Literal[
    "latency", "status", "rate_limit", "hang", "refuse", "truncate", "malformed_json", "wrong_content_type",
    "expire", "stuck", "drop_after_admit",
    "callback_lost", "callback_duplicate", "callback_late", "callback_out_of_order", "callback_bad_signature",
    "callback_stale",
]  # fmt: skip
FAULT_KINDS: tuple[str, ...] = get_args(FaultKind)
#: Decided by ``kit.choose_fault`` when a route admits a job.
JOB_KINDS = frozenset({"stuck", "drop_after_admit"})
#: Applied to the answer on its way out (by the emulator's middleware), not by the route.
RESPONSE_KINDS = frozenset({"truncate", "malformed_json", "wrong_content_type"})
#: Decided when the emulator is about to send a callback (:mod:`ideochar.emulator.callbacks`).
CALLBACK_KINDS = frozenset(kind for kind in FAULT_KINDS if kind.startswith("callback_"))
#: Decided by ``kit.fault`` when a request arrives.
REQUEST_KINDS = frozenset(FAULT_KINDS) - JOB_KINDS - CALLBACK_KINDS

#: Retry-After of a ``rate_limit`` rule that names none.
DEFAULT_RETRY_AFTER_SECONDS = 1.0


class FaultRule(BaseModel):
    """One rule of a profile (see the module docstring)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    route: str = "*"
    kind: FaultKind
    rate: float = Field(default=1.0, ge=0.0, le=1.0)
    after: int = Field(default=0, ge=0)
    times: int | None = Field(default=None, ge=0)
    status: int | None = Field(default=None, ge=100, le=599)
    retry_after: float | None = Field(default=None, ge=0)
    seconds: float | None = Field(default=None, ge=0)
    ingress: bool = False
    """A ``status`` from the vendor's edge proxy (plain text, none of the vendor's headers)."""
    body: Any = None
    """Overrides the vendor's error body (a JSON value, or text)."""

    @model_validator(mode="after")
    def _complete(self) -> Self:
        if self.kind == "status" and self.status is None:
            raise ValueError("a 'status' fault needs a status code")
        if self.kind == "latency" and self.seconds is None:
            raise ValueError("a 'latency' fault needs seconds")
        return self

    def fault(self) -> Fault:
        status = self.status
        retry_after = self.retry_after
        if self.kind == "rate_limit":
            status = status or 429
            retry_after = DEFAULT_RETRY_AFTER_SECONDS if retry_after is None else retry_after
        return Fault(
            kind=self.kind, status=status, retry_after=retry_after, seconds=self.seconds, body=self.body,
            ingress=self.ingress,
        )  # fmt: skip


class FaultProfile(BaseModel):
    """Rules per vendor name (``"*"``: every vendor), and the seed of their draws."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    seed: int | None = None
    vendors: dict[str, list[FaultRule]] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _flat(cls, data: Any) -> Any:
        """Accept the file form: vendor names as top-level keys beside ``seed``."""
        if isinstance(data, Mapping) and "vendors" not in data:
            data = dict(data)
            seed = data.pop("seed", None)
            return {"seed": seed, "vendors": data}
        return data

    def rules_for(self, vendor: str) -> list[FaultRule]:
        return [*self.vendors.get(vendor, ()), *self.vendors.get("*", ())]

    def to_document(self) -> dict[str, Any]:
        document: dict[str, Any] = {"seed": self.seed} if self.seed is not None else {}
        for vendor, rules in self.vendors.items():
            document[vendor] = [rule.model_dump(exclude_defaults=True) | {"kind": rule.kind} for rule in rules]
        return document


def load_profile(source: FaultProfile | Mapping[str, Any] | str | Path | None) -> FaultProfile:
    """A profile from a model, a mapping, a JSON/TOML file path, or JSON/TOML text; empty for None.

    Raises ``ValueError`` with a readable message when the profile is not valid.
    """
    if source is None:
        return FaultProfile()
    if isinstance(source, FaultProfile):
        return source
    if isinstance(source, Path) or (isinstance(source, str) and _is_file(source)):
        path = Path(source)
        return _parse(path.read_text("utf-8"), toml=path.suffix.lower() == ".toml", origin=str(path))
    if isinstance(source, str):
        if not any(mark in source for mark in ("{", "=", "[", "\n")):
            raise ValueError(f"{source}: no such fault profile file")
        return _parse(source, toml=not source.lstrip().startswith("{"), origin="profile")
    return _validate(source, "profile")


def _is_file(source: str) -> bool:
    """A file name rather than a profile written out (JSON or TOML text)."""
    if "\n" in source or source.lstrip().startswith("{"):
        return False
    try:
        return Path(source).is_file()
    except (OSError, ValueError):
        return False


def _parse(text: str, *, toml: bool, origin: str) -> FaultProfile:
    try:
        if toml:
            toml_module = importlib.import_module("tomllib" if sys.version_info >= (3, 11) else "tomli")
            data: Any = toml_module.loads(text)
        else:
            data = json.loads(text)
    except ValueError as exc:
        raise ValueError(f"{origin} is not valid {'TOML' if toml else 'JSON'}: {exc}") from None
    return _validate(data, origin)


def _validate(data: Any, origin: str) -> FaultProfile:
    try:
        return FaultProfile.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"] if p != "vendors") or "profile"
        raise ValueError(f"{origin}: {where}: {first['msg']}") from None


class _RuleState:
    __slots__ = ("fired", "rng", "rule", "seen")

    def __init__(self, rule: FaultRule, rng: random.Random) -> None:
        self.rule = rule
        self.rng = rng
        self.seen = 0
        self.fired = 0

    def fires(self) -> bool:
        self.seen += 1
        rule = self.rule
        if self.seen <= rule.after or (rule.times is not None and self.fired >= rule.times):
            return False
        if rule.rate < 1.0 and self.rng.random() >= rule.rate:
            return False
        self.fired += 1
        return True


class Faults:
    """The live profile of one emulator: rules with their counters and random draws."""

    def __init__(self, profile: FaultProfile | None = None) -> None:
        self._lock = threading.Lock()
        self._states: dict[str, list[_RuleState]] = {}
        self.profile = FaultProfile()
        self.set(profile or FaultProfile())

    def set(self, profile: FaultProfile) -> None:
        """Replace the profile; counters (``after``, ``times``) start again."""
        with self._lock:
            self.profile = profile
            self._states = {}

    def _rules(self, vendor: str) -> list[_RuleState]:
        states = self._states.get(vendor)
        if states is None:
            seed = self.profile.seed
            states = [
                _RuleState(rule, random.Random(f"{seed}/{vendor}/{index}") if seed is not None else random.Random())
                for index, rule in enumerate(self.profile.rules_for(vendor))
            ]
            self._states[vendor] = states
        return states

    def decide(self, vendor: str, route: str, kinds: Iterable[str]) -> tuple[float, Fault | None]:
        """``(latency seconds, the fault)`` for one request at ``route``, among rules of ``kinds``.

        Every latency rule that fires adds up; the first other rule that fires is the fault.
        """
        allowed = frozenset(kinds)
        latency = 0.0
        with self._lock:
            for state in self._rules(vendor):
                rule = state.rule
                if rule.kind not in allowed or not fnmatch.fnmatchcase(route, rule.route):
                    continue
                if not state.fires():
                    continue
                if rule.kind == "latency":
                    latency += rule.seconds or 0.0
                    continue
                return latency, rule.fault()
        return latency, None
