"""Every call the webhook receiver makes into the client and the journal, in one place.

The receiver only needs a few things from a client: finish a journaled job by id (``wait``), find a job
by its vendor id, its journal, its observers, and where its vendors' keys and secrets are. Keeping each
in a short function here means a change on the client's side is a change in this file alone.

``wait`` is :meth:`Client.resume` under another name (it picks up admitted jobs by vendor id and never
sends them again); until a client has ``wait``, ``resume`` is called. ``Journal.find_vendor_job`` is
likewise read from the journal's own tables until the journal has it.
"""

from __future__ import annotations

import sqlite3
import threading
from typing import TYPE_CHECKING, Any

import httpx

from ideochar.events import Event

if TYPE_CHECKING:
    from ideochar.client import AsyncClient, Client
    from ideochar.journal import JobRecord, Journal
    from ideochar.result import CharacterResult
    from ideochar.webhooks._fal import FalKeys
    from ideochar.webhooks._replicate import ReplicateSecret

__all__ = [
    "await_job",
    "dispatch",
    "fal_keys_for",
    "find_job",
    "is_async",
    "journal_of",
    "replicate_secret_for",
    "wait",
]


def is_async(client: Client | AsyncClient) -> bool:
    from ideochar.client import AsyncClient

    return isinstance(client, AsyncClient)


def wait(client: Client, job_id: str) -> CharacterResult:
    """Finish the journaled job ``job_id`` with a blocking client."""
    finish = getattr(client, "wait", None) or client.resume
    result: CharacterResult = finish(job_id)
    return result


async def await_job(client: AsyncClient, job_id: str) -> CharacterResult:
    """Finish the journaled job ``job_id`` with an ``AsyncClient``."""
    finish = getattr(client, "wait", None) or client.resume
    result: CharacterResult = await finish(job_id)
    return result


def journal_of(client: Client | AsyncClient) -> Journal | None:
    return client.journal


def dispatch(client: Client | AsyncClient, event: Event) -> None:
    """Hand an event to the client's observers (the ``ideochar_event`` hook and its ``on_event``)."""
    client._dispatch(event)


# -- finding a job by its vendor id --------------------------------------------------------------------------

_indexes: dict[str, _VendorIndex] = {}
_indexes_lock = threading.Lock()


class _VendorIndex:
    """A connection of its own to a journal file, only to look a vendor id up in its attempts."""

    def __init__(self, path: str) -> None:
        self._db = sqlite3.connect(path, check_same_thread=False, timeout=30)
        self._lock = threading.Lock()

    def job_id(self, provider: str, vendor_request_id: str) -> str | None:
        with self._lock:
            row = self._db.execute(
                "SELECT job_id FROM attempts WHERE provider = ? AND vendor_request_id = ?"
                " ORDER BY started_at DESC LIMIT 1",
                (provider, vendor_request_id),
            ).fetchone()
        return None if row is None else str(row[0])


def find_job(journal: Journal, provider: str, vendor_request_id: str) -> JobRecord | None:
    """The journaled job one of whose attempts the vendor knows as ``vendor_request_id``, or None."""
    finder = getattr(journal, "find_vendor_job", None)
    if finder is not None:
        found: JobRecord | None = finder(provider, vendor_request_id)
        return found
    path = str(journal.path)
    with _indexes_lock:
        index = _indexes.get(path)
        if index is None:
            index = _indexes[path] = _VendorIndex(path)
    job_id = index.job_id(provider, vendor_request_id)
    return None if job_id is None else journal.job(job_id)


# -- where the vendors' keys are ----------------------------------------------------------------------------


def _base_urls(client: Client | AsyncClient, provider: str) -> dict[str, str]:
    return client._base_urls(client.available[provider])


def fal_keys_for(client: Client | AsyncClient) -> FalKeys:
    """fal's keys, fetched with the client's guarded fetch client.

    The JWKS is fal's documented one, unless the client sends fal's calls elsewhere (the emulator, a
    proxy): then it is ``{rest base URL}/.well-known/jwks.json`` on that origin [I: where the emulator
    serves its own keys].
    """
    from ideochar.webhooks._fal import FAL_JWKS_URL, FalKeys

    rest = _base_urls(client, "fal").get("rest", "")
    default = client.available["fal"].info.base_urls.get("rest")
    url = FAL_JWKS_URL if rest in ("", default) else rest.rstrip("/") + "/.well-known/jwks.json"
    if is_async(client):
        return FalKeys(url, afetch=lambda u: _aget(client, u, {}))
    return FalKeys(url, fetch=lambda u: _get(client, u, {}))


def replicate_secret_for(client: Client | AsyncClient) -> ReplicateSecret:
    """Replicate's signing secret, read with the client's Replicate token from the configured API origin."""
    from ideochar.webhooks._replicate import SECRET_PATH, ReplicateSecret

    provider = client.available["replicate"]
    url = _base_urls(client, "replicate")["api"].rstrip("/") + SECRET_PATH

    def headers() -> dict[str, str]:
        token = client._credentials(provider).reveal()
        return {"Authorization": f"Bearer {token}", "Accept": "application/json"}

    if is_async(client):
        return ReplicateSecret(url=url, afetch=lambda u: _aget(client, u, headers(), vendor=True))
    return ReplicateSecret(url=url, fetch=lambda u: _get(client, u, headers(), vendor=True))


def _get(client: Client | AsyncClient, url: str, headers: dict[str, str], *, vendor: bool = False) -> bytes:
    http: Any = client.http if vendor else client.fetch_http
    response: httpx.Response = http.get(url, headers=headers, timeout=10.0)
    response.raise_for_status()
    return response.content


async def _aget(client: Client | AsyncClient, url: str, headers: dict[str, str], *, vendor: bool = False) -> bytes:
    http: Any = client.http if vendor else client.fetch_http
    response: httpx.Response = await http.get(url, headers=headers, timeout=10.0)
    response.raise_for_status()
    return response.content
