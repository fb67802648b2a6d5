"""Fault schedules: what goes wrong during one job, drawn by hypothesis (test_fault_schedules.py).

A :class:`Schedule` is one job through two or three emulated vendors in failover order: how each vendor is
used (fal's status by stream or by polling, or fal.run; Segmind v1 or v2; Replicate waiting on the create or
polling), which client drives it (``Client`` or ``AsyncClient``), the failure policy (the default, or the
opt-in failover after admission), the emulator's fault rules (vendor, route, kind, and when: ``after`` so
many matching requests, ``times`` at most, at a ``rate``), and optionally an interruption: the process
killed at its n-th request (before the request reaches the vendor, or after, the answer lost), or the
journal failing from its n-th write. The route names are the emulator's (each vendor's ``emulator.py``).

Everything drawn is data: :meth:`Schedule.profile` is the emulator's fault profile, ``repr`` reads as one line
(what a failure lists), and shrink.py simplifies a failing schedule field by field.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from hypothesis import strategies as st

from reliability.job_hooks import Kill, Policy

__all__ = [
    "ADMITTING",
    "VENDORS",
    "FaultSpec",
    "JournalFailure",
    "Modes",
    "Schedule",
    "schedules",
]

VENDORS = ("fal", "segmind", "ideogram", "replicate")
#: Routes whose request creates the billable job (the emulator admits it there).
ADMITTING = frozenset({"submit", "run", "v1", "v2.submit", "generate", "create"})
#: Output files, served for every vendor under this route name.
FILES = "files"
STATUS_CODES = (400, 401, 402, 403, 404, 422, 429, 500, 502, 503)
#: Kinds any route can apply when a request arrives or its answer leaves.
REQUEST_KINDS = (
    "status",
    "rate_limit",
    "hang",
    "refuse",
    "truncate",
    "malformed_json",
    "wrong_content_type",
    "latency",
)
#: Kinds an admitting route applies after admitting the job.
JOB_KINDS = ("stuck", "drop_after_admit")
SEED = 7

Driver = Literal["sync", "async"]


@dataclass(frozen=True)
class Modes:
    """How each vendor is used; each choice changes the protocol (and the routes the job meets)."""

    fal: Literal["stream", "poll", "run"] = "stream"
    segmind: Literal["v1", "v2"] = "v1"
    replicate_wait: bool = True
    """Replicate: hold the create request until the prediction ends (``Prefer: wait``), or poll at once."""

    def options(self) -> dict[str, dict[str, Any]]:
        """The clients' per-vendor options (polls made quick: the emulator's model time is zero)."""
        fal: dict[str, Any] = {"mode": "run"} if self.fal == "run" else {"status": self.fal}
        segmind: dict[str, Any] = {"mode": self.segmind}
        if self.segmind == "v2":
            segmind.update(poll_interval_seconds=0.02, poll_max_interval_seconds=0.05)
        replicate: dict[str, Any] = {} if self.replicate_wait else {"wait": 0}
        return {"fal": fal, "segmind": segmind, "replicate": replicate}

    def routes(self, vendor: str) -> tuple[str, ...]:
        """The routes a job on ``vendor`` meets in these modes."""
        if vendor == "fal":
            if self.fal == "run":
                return ("run", FILES)
            follow = ("stream", "status") if self.fal == "stream" else ("status",)
            return ("submit", *follow, "result", FILES)
        if vendor == "segmind":
            return ("v1",) if self.segmind == "v1" else ("v2.submit", "v2.status", "v2.result", FILES)
        if vendor == "ideogram":
            return ("generate", FILES)
        return ("create", "get", "list", FILES)

    def __str__(self) -> str:
        replicate = "wait" if self.replicate_wait else "poll"
        return f"fal {self.fal}, segmind {self.segmind}, replicate {replicate}"


@dataclass(frozen=True)
class FaultSpec:
    """One emulator fault rule on one vendor."""

    vendor: str
    route: str
    kind: str
    status: int | None = None
    ingress: bool = False
    seconds: float | None = None
    retry_after: float | None = None
    after: int = 0
    times: int | None = None
    rate: float = 1.0

    def rule(self) -> dict[str, Any]:
        rule: dict[str, Any] = {"route": self.route, "kind": self.kind, "after": self.after, "rate": self.rate}
        optional = {
            "status": self.status,
            "seconds": self.seconds,
            "retry_after": self.retry_after,
            "times": self.times,
        }
        rule.update({k: v for k, v in optional.items() if v is not None})
        if self.ingress:
            rule["ingress"] = True
        return rule

    def __str__(self) -> str:
        what = self.kind
        if self.status is not None:
            what = f"{self.status}{' (ingress)' if self.ingress else ''}"
        if self.seconds is not None:
            what += f" {self.seconds:g}s"
        if self.retry_after is not None:
            what += f" retry-after {self.retry_after:g}s"
        when = f"after {self.after}" if self.after else "at once"
        often = "always" if self.times is None else f"{self.times}x"
        rate = "" if self.rate == 1.0 else f" at rate {self.rate:g}"
        return f"{self.vendor} {self.route}: {what}, {when}, {often}{rate}"


@dataclass(frozen=True)
class JournalFailure:
    """The journal's writes fail ("database is locked") from the ``first``-th, ``times`` of them (None: all)."""

    first: int
    times: int | None

    def __str__(self) -> str:
        often = "every write" if self.times is None else f"{self.times} write(s)"
        return f"journal fails {often} from write {self.first}"


@dataclass(frozen=True)
class Schedule:
    providers: tuple[str, ...]
    modes: Modes
    driver: Driver
    policy: Policy
    faults: tuple[FaultSpec, ...] = ()
    interruption: Kill | JournalFailure | None = None
    seed: int = field(default=SEED)

    def profile(self) -> dict[str, Any]:
        """The emulator's fault profile for this schedule."""
        document: dict[str, Any] = {"seed": self.seed}
        for spec in self.faults:
            document.setdefault(spec.vendor, []).append(spec.rule())
        return document

    @property
    def kill(self) -> Kill | None:
        return self.interruption if isinstance(self.interruption, Kill) else None

    @property
    def journal_failure(self) -> JournalFailure | None:
        return self.interruption if isinstance(self.interruption, JournalFailure) else None

    def __repr__(self) -> str:
        faults = "; ".join(str(f) for f in self.faults) or "no faults"
        interruption = f"; {self.interruption}" if self.interruption is not None else ""
        return f"<{self.driver} {'>'.join(self.providers)}, policy {self.policy}, {self.modes}; {faults}{interruption}>"


# -- strategies ----------------------------------------------------------------------------------------------

_times = st.one_of(st.sampled_from([1, 2, 3]), st.none())
#: A route met once per job (a result, a download) fires only at once: ``after`` 0 is drawn most often.
_after = st.sampled_from([0, 0, 0, 1, 2, 3])
_rate = st.sampled_from([1.0, 1.0, 1.0, 0.5])


def _kind_details(kind: str) -> st.SearchStrategy[dict[str, Any]]:
    if kind == "status":
        return st.builds(
            lambda status, ingress: {"status": status, "ingress": ingress and status >= 500},
            st.sampled_from(STATUS_CODES),
            st.booleans(),
        )
    if kind == "rate_limit":
        return st.builds(lambda wait: {"retry_after": wait}, st.sampled_from([0.0, 0.05]))
    if kind == "hang":
        return st.builds(lambda seconds: {"seconds": seconds}, st.sampled_from([0.05, None]))
    if kind == "latency":
        return st.just({"seconds": 0.02})
    return st.just({})


def _kinds(route: str) -> tuple[str, ...]:
    """The kinds a rule on ``route`` may have; an HTTP status (the most varied answer) three times as often."""
    kinds = (*REQUEST_KINDS, "status", "status")
    if route in ADMITTING:
        kinds = (*kinds, *JOB_KINDS)
    if route == FILES:
        kinds = (*kinds, "expire")
    return kinds


@st.composite
def fault_specs(draw: st.DrawFn, vendor: str, modes: Modes) -> FaultSpec:
    # Routes that follow an admitted job (status, result) decide whether a paid job is told truly: twice as often.
    routes = modes.routes(vendor)
    following = [r for r in routes if r not in ADMITTING and r != FILES]
    route = draw(st.sampled_from((*routes, *following)))
    kind = draw(st.sampled_from(_kinds(route)))
    details = draw(_kind_details(kind))
    return FaultSpec(
        vendor,
        route,
        kind,
        after=draw(_after),
        times=draw(_times),
        rate=draw(_rate),
        **details,
    )


def interruptions() -> st.SearchStrategy[Kill | JournalFailure | None]:
    kill = st.builds(Kill, at=st.integers(min_value=1, max_value=8), before=st.booleans())
    journal = st.builds(JournalFailure, first=st.integers(min_value=1, max_value=8), times=_times)
    # Half the schedules run to their end: faults alone decide them.
    return st.one_of(st.none(), st.one_of(kill, journal))


@st.composite
def schedules(draw: st.DrawFn) -> Schedule:
    """A job's providers, modes, driver, policy, faults (mostly on the first vendor) and interruption."""
    providers = tuple(draw(st.permutations(VENDORS))[: draw(st.integers(min_value=2, max_value=3))])
    modes = Modes(
        fal=draw(st.sampled_from(["stream", "poll", "run"])),
        segmind=draw(st.sampled_from(["v1", "v2"])),
        replicate_wait=draw(st.booleans()),
    )
    # The first vendor is where a fault decides between a second charge and none; the others get some too.
    targets = st.one_of(st.just(providers[0]), st.just(providers[0]), st.sampled_from(providers))
    faults = draw(st.lists(targets.flatmap(lambda vendor: fault_specs(vendor, modes)), min_size=1, max_size=3))
    return Schedule(
        providers=providers,
        modes=modes,
        driver=draw(st.sampled_from(["sync", "async"])),
        policy=draw(st.sampled_from(["default", "default", "fail_over"])),
        faults=tuple(faults),
        interruption=draw(interruptions()),
    )
