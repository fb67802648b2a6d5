"""Shrinking a failing fault schedule: simplify it one step at a time while it still fails the same way.

The search (test_fault_schedules.py) lets every drawn schedule run, so one run finds every kind of violation
rather than stopping at the first; hypothesis then has no failure to shrink, so this does it, knowing what
"simpler" means for a schedule: no interruption, fewer faults, faults that fire at once and always, two
vendors, the sync client, the default policy and modes, an earlier kill or journal failure. A step is kept
when the same kind of violation still shows (the kind names the invariant, where it showed and the kind of
interruption, so a step never trades one defect for another).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import replace

from reliability.job_hooks import Kill
from reliability.schedules import JournalFailure, Modes, Schedule

__all__ = ["shrink", "simpler", "size"]

#: At most this many runs per shrink (each is one job, about a tenth of a second).
MAX_RUNS = 80


def size(schedule: Schedule) -> tuple[int, ...]:
    """Orders schedules from simple to complex (the smallest found of a kind is reported first)."""
    defaults = Modes()
    return (
        len(schedule.faults),
        schedule.interruption is not None,
        len(schedule.providers),
        sum(spec.after + (spec.times is not None) + (spec.rate < 1) for spec in schedule.faults),
        schedule.driver != "sync",
        schedule.policy != "default",
        schedule.modes != defaults,
    )


def _simpler_faults(schedule: Schedule) -> Iterator[Schedule]:
    faults = schedule.faults
    for index, spec in enumerate(faults):
        yield replace(schedule, faults=faults[:index] + faults[index + 1 :])
        for plain in (replace(spec, after=0), replace(spec, times=None), replace(spec, rate=1.0)):
            if plain != spec:
                yield replace(schedule, faults=(*faults[:index], plain, *faults[index + 1 :]))


def _simpler_interruption(schedule: Schedule) -> Iterator[Schedule]:
    interruption = schedule.interruption
    if interruption is None:
        return
    yield replace(schedule, interruption=None)
    if isinstance(interruption, Kill) and interruption.at > 1:
        yield replace(schedule, interruption=Kill(interruption.at - 1, interruption.before))
    if isinstance(interruption, JournalFailure):
        if interruption.first > 1:
            yield replace(schedule, interruption=JournalFailure(interruption.first - 1, interruption.times))
        if interruption.times is not None:
            yield replace(schedule, interruption=JournalFailure(interruption.first, None))


def _simpler_setup(schedule: Schedule) -> Iterator[Schedule]:
    if len(schedule.providers) > 2:
        yield replace(schedule, providers=schedule.providers[:2])
    if schedule.driver != "sync":
        yield replace(schedule, driver="sync")
    if schedule.policy != "default":
        yield replace(schedule, policy="default")
    defaults = Modes()
    for name in ("fal", "segmind", "replicate_wait"):
        value = getattr(defaults, name)
        if getattr(schedule.modes, name) != value:
            yield replace(schedule, modes=replace(schedule.modes, **{name: value}))


def simpler(schedule: Schedule) -> Iterator[Schedule]:
    """Every schedule one step simpler than ``schedule``, the biggest steps first."""
    yield from _simpler_interruption(schedule)
    yield from _simpler_faults(schedule)
    yield from _simpler_setup(schedule)


def shrink(schedule: Schedule, fails: Callable[[Schedule], bool], max_runs: int = MAX_RUNS) -> Schedule:
    """The simplest schedule reached from ``schedule`` by steps that keep ``fails`` true."""
    runs = 0
    improved = True
    while improved and runs < max_runs:
        improved = False
        for candidate in simpler(schedule):
            if candidate.faults and not _targets_kept(candidate):
                continue
            runs += 1
            if fails(candidate):
                schedule, improved = candidate, True
                break
            if runs >= max_runs:
                break
    return schedule


def _targets_kept(schedule: Schedule) -> bool:
    """A fault on a vendor dropped from the providers would be a fault that cannot fire."""
    return all(spec.vendor in schedule.providers for spec in schedule.faults)
