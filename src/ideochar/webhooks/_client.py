"""Every call the webhook receiver makes into the client and the journal, in one place.

The receiver needs few things from a client: finish a journaled job by id, find a job by its vendor id,
its journal, its observers, and where its vendors' keys and secrets are. Each is a short function here,
so a change on the client's side is a change in this file alone.

**Finishing a job** is ``client.resume(job_id)``. ``client.wait`` is the same pickup by vendor id (nothing
is sent twice) plus waiting, up to the client's deadline, while another live process runs the job. That
waiting is right for a caller who wants the result, wrong for a receiver: it would hold one of its few
workers for minutes while another process (the submitting request, a worker's own ``wait``) finishes the
job anyway. So the receiver calls ``resume``, which raises ``JobBusy`` at once, and tries again a few
times within seconds before leaving the job to its owner (:data:`~ideochar.webhooks.BUSY_RETRY_SECONDS`).
"""

from __future__ import annotations

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
    "finish",
    "is_async",
    "journal_of",
    "replicate_secret_for",
]


def is_async(client: Client | AsyncClient) -> bool:
    from ideochar.client import AsyncClient

    return isinstance(client, AsyncClient)


def finish(client: Client, job_id: str) -> CharacterResult:
    """Finish the journaled job ``job_id`` with a blocking client (``JobBusy`` at once if it is run elsewhere)."""
    return client.resume(job_id)


async def await_job(client: AsyncClient, job_id: str) -> CharacterResult:
    """:func:`finish` with an ``AsyncClient``."""
    return await client.resume(job_id)


def journal_of(client: Client | AsyncClient) -> Journal | None:
    return client.journal


def dispatch(client: Client | AsyncClient, event: Event) -> None:
    """Hand an event to the client's observers (the ``ideochar_event`` hook and its ``on_event``)."""
    client._dispatch(event)


def find_job(journal: Journal, provider: str, vendor_request_id: str) -> JobRecord | None:
    """The journaled job one of whose attempts the vendor knows as ``vendor_request_id``, or None."""
    return journal.find_vendor_job(provider, vendor_request_id)


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
