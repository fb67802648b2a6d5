"""Defects the reliability suite found in code another helper owns and is still writing.

Each one has a regression test marked ``xfail(strict=True)`` that names it; the property tests skip
examples that hit it (``hypothesis.reject``) so that they keep hunting for *new* defects. When the
owner fixes one, its xfail test passes, strict mode turns that into a failure, and the entry here and
the marker there are removed together.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class KnownIssue:
    provider: str
    error: type[BaseException]
    text: str
    regression_test: str


#: Empty: the two fal defects found here (an unparsable job URL, an unfollowable request id) are fixed,
#: and their regression tests in test_found_defects.py now run as ordinary tests.
OPEN: tuple[KnownIssue, ...] = ()


def known(provider: str, error: BaseException) -> KnownIssue | None:
    for issue in OPEN:
        if issue.provider == provider and type(error) is issue.error and issue.text in str(error):
            return issue
    return None
