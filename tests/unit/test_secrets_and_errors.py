"""Keys never appear in reprs, messages, logs or pickles; errors carry their facts and pickle whole."""

from __future__ import annotations

import logging
import pickle

import pytest

from ideochar import (
    AllProvidersFailed,
    ContentFiltered,
    IdeocharError,
    MissingCredentials,
    OutcomeUnknown,
    ProviderError,
    Secret,
)
from ideochar import errors as error_module
from ideochar._secrets import REDACTED, redact


def test_secret_never_shows_itself(canary_key: str) -> None:
    secret = Secret(canary_key)
    assert canary_key not in repr(secret)
    assert canary_key not in str(secret)
    assert canary_key not in f"{secret}"
    assert secret.reveal() == canary_key
    assert canary_key not in str(pickle.dumps(secret))


def test_error_messages_and_bodies_are_redacted(canary_key: str) -> None:
    Secret(canary_key)
    error = ProviderError(f"vendor said: bad key {canary_key}", provider="x", body={"echo": f"Key {canary_key}"})
    for text in (str(error), repr(error), str(error.body), str(pickle.dumps(error))):
        assert canary_key not in text
    assert REDACTED in str(error)


def test_halves_of_an_id_secret_key_are_redacted_too() -> None:
    Secret("keyid-12345678:secret-abcdefgh")
    assert redact("id keyid-12345678 and secret-abcdefgh") == f"id {REDACTED} and {REDACTED}"


def test_log_records_are_redacted(caplog: pytest.LogCaptureFixture, canary_key: str) -> None:
    import ideochar.client  # noqa: F401 - installs the filter on the "ideochar" logger

    Secret(canary_key)
    with caplog.at_level(logging.DEBUG, logger="ideochar"):
        logging.getLogger("ideochar").debug("sending with %s", canary_key)
    assert caplog.records
    assert all(canary_key not in r.getMessage() for r in caplog.records)


def test_errors_pickle_with_their_attributes() -> None:
    error = ContentFiltered("refused", provider="p", status=422, vendor_request_id="r1", billed="no")
    clone = pickle.loads(pickle.dumps(error))
    assert type(clone) is ContentFiltered
    assert (clone.message, clone.provider, clone.status, clone.vendor_request_id, clone.billed) == (
        "refused",
        "p",
        422,
        "r1",
        "no",
    )
    missing = pickle.loads(pickle.dumps(MissingCredentials("fal", ["FAL_KEY"])))
    assert missing.variables == ["FAL_KEY"] and missing.by_provider == {"fal": ["FAL_KEY"]}
    assert "emulator=True" in str(missing) and "--emulator" not in str(missing)  # Python's words, not the CLI's


def test_billed_defaults_follow_what_is_known() -> None:
    assert OutcomeUnknown("lost").billed == "unknown"
    assert ProviderError("x").billed == "no"
    combined = AllProvidersFailed("all", errors=[ProviderError("a"), OutcomeUnknown("b")])
    assert combined.billed == "unknown"


def test_every_error_class_has_a_distinct_exit_code() -> None:
    classes = [
        obj
        for obj in vars(error_module).values()
        if isinstance(obj, type) and issubclass(obj, IdeocharError) and obj is not IdeocharError
    ]
    codes = {c: c.exit_code for c in classes if c is not error_module.MissingCredentials}
    assert len(set(codes.values())) == len(codes), codes
    assert all(code != 0 for code in codes.values())
