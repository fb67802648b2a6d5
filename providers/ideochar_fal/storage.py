"""Local images through fal's storage, as fal's own clients upload them (reference/fal.md §3).

A CDN token from ``{rest}/storage/auth/token`` (held while it lives: by the upload cache when there is one,
else by this exchange), then ``POST {token base_url}/files/upload`` with the bytes and lifecycle headers;
when that path fails for any reason but a refused key, the initiate-and-PUT one
(``{rest}/storage/upload/initiate``, then ``PUT upload_url``), as fal_client falls back. Every step is a
``Send`` of the job's exchange, never admitting: both drivers make them and nothing is billed if one fails.
An uploaded image is reused by later jobs while it lives (``CallContext.uploads``, :mod:`ideochar.uploads`).

Kept apart from the job's flow (:mod:`ideochar_fal.provider`) because nothing here decides a job's fate:
it only turns local images into URLs fal can read.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from collections.abc import Mapping
from datetime import datetime
from types import MappingProxyType

import httpx

from ideochar._secrets import Secret
from ideochar.errors import ProviderUnavailable, UnexpectedResponse
from ideochar.exchange import ReaderStream, Send
from ideochar.media import ImageInput
from ideochar.request import CharacterRequest
from ideochar.spec import CallContext, Exchange
from ideochar.toolkit import (
    TrustedOrigins,
    Unreadable,
    image_digest,
    parse_reply,
    read_body,
    reuse_upload,
    upload_scope,
)
from ideochar.uploads import Upload, UploadToken
from ideochar_fal.errors import error_from_response
from ideochar_fal.wire import (
    CDN_TOKEN_PATH,
    CDN_UPLOAD_PATH,
    HEADER_FILE_NAME,
    HEADER_LIFECYCLE,
    HEADER_OBJECT_LIFECYCLE,
    INITIATE_PATH,
    CdnToken,
    CdnUpload,
    InitiatedUpload,
    lifecycle,
)

__all__ = ["UPLOAD_EXPIRATION_SECONDS", "upload_local_images"]

PROVIDER = "fal"

#: Read timeout of one upload request (a 10 MB reference over a slow line) and of a token or initiate POST.
UPLOAD_TIMEOUT_SECONDS = 120.0
TOKEN_TIMEOUT_SECONDS = 30.0
#: How long fal's storage is asked to keep an uploaded image (lifecycle headers). INFERRED that fal honours
#: it for uploads: the cache reuses an upload while an hour of this remains, never after.
UPLOAD_EXPIRATION_SECONDS = 24 * 3600
#: A CDN token whose answer gives no ``expires_at`` is used this long [I: fal_client always gets one].
CDN_TOKEN_FALLBACK_SECONDS = 300.0
#: fal_client's fallback repository ("fal") initiates uploads with this storage type [S].
INITIATE_STORAGE_TYPE = "gcs"
#: Hosts a CDN upload token may go to (fal's token names its upload ``base_url``), besides the configured ones.
CDN_DOMAINS: tuple[str, ...] = ("fal.media", "fal.run", "fal.ai")
#: File names given to uploads, by neutral field: the caller's own file name (which may say who is in the
#: picture) is not sent; the extension matches the sniffed bytes.
UPLOAD_STEMS: Mapping[str, str] = MappingProxyType(
    {"reference": "reference", "reference_mask": "reference_mask", "operation.image": "image", "operation.mask": "mask"}
)


def upload_local_images(
    request: CharacterRequest, ctx: CallContext, *, key_headers: Mapping[str, str], expiration_seconds: int
) -> Exchange[dict[str, str]]:
    """Each local image's URL in fal's storage, by field path: cached uploads reused, the rest uploaded
    (an image given twice is uploaded once). URL inputs are passed through untouched.

    ``key_headers`` carry the key; they go only to ``{rest}`` (a configured or fal origin), never to the
    CDN host a token names nor to a signed upload URL."""
    storage = _Storage(ctx, dict(key_headers), expiration_seconds)
    found: dict[str, str] = {}
    by_digest: dict[str, str] = {}
    scope = upload_scope(ctx, "rest")
    for path, image in request.images():
        if not image.is_local:
            continue
        digest = image_digest(image)
        if digest not in by_digest:
            upload = functools.partial(storage.store, image, _file_name(path, image))
            by_digest[digest] = yield from reuse_upload(ctx, image, scope=scope, upload=upload)
        found[path] = by_digest[digest]
    return found


def _file_name(path: str, image: ImageInput) -> str:
    stem = UPLOAD_STEMS.get(path) or path.replace(".", "_")
    return f"{stem}.{'jpg' if image.format == 'jpeg' else image.format or 'bin'}"


class _UseFallback(Exception):
    """The CDN path failed in a way the initiate-and-PUT path may not (fal_client falls back the same way)."""


@dataclasses.dataclass
class _Storage:
    """One exchange's uploads: its context, the key's headers, and its CDN token when no cache holds one."""

    ctx: CallContext
    key_headers: dict[str, str]
    expiration_seconds: int
    tokens: list[UploadToken] = dataclasses.field(default_factory=list)

    def store(self, image: ImageInput, name: str) -> Exchange[Upload]:
        """Upload ``image``: the CDN path, else the initiate-and-PUT path. It lives as long as the lifecycle
        headers ask, from now (the cache's clock, when there is one)."""
        now = self.ctx.uploads.clock() if self.ctx.uploads is not None else time.time()
        expires_at = now + self.expiration_seconds
        try:
            url = yield from self._cdn_upload(image, name)
        except _UseFallback:
            url = yield from self._initiated_upload(image, name)
        return Upload(url, expires_at)

    def _cdn_token(self) -> Exchange[UploadToken]:
        """A CDN upload token: one held that still lives, else a new one from ``{rest}/storage/auth/token``.
        A refused key is final (AuthenticationFailed); anything else sends the upload down the fallback path."""
        ctx = self.ctx
        scope = upload_scope(ctx, "rest")
        held = ctx.uploads.token(scope) if ctx.uploads is not None else next(iter(self.tokens), None)
        if held is not None:
            return held
        url = str(httpx.URL(ctx.url("rest", CDN_TOKEN_PATH)).copy_merge_params({"storage_type": "fal-cdn-v3"}))
        headers = {**self.key_headers, "Content-Type": "application/json"}
        try:
            response = yield Send(httpx.Request("POST", url, headers=headers, json={}), timeout=TOKEN_TIMEOUT_SECONDS)
        except ProviderUnavailable as exc:
            raise _UseFallback(exc.message) from exc
        if response.status_code in (401, 403):
            raise error_from_response(response)
        answer = parse_reply(response, CdnToken) if response.is_success else None
        if answer is None or isinstance(answer, Unreadable):
            raise _UseFallback(f"fal's CDN token answer: HTTP {response.status_code}")
        base = answer.base_url or ctx.url("cdn")
        if not TrustedOrigins.of(ctx.base_urls.values(), CDN_DOMAINS).trusts(base):
            raise _UseFallback("fal's CDN token names an upload host that is not fal's")
        token = UploadToken(Secret(f"{answer.token_type} {answer.token}"), base, _token_expiry(answer.expires_at))
        if ctx.uploads is not None:
            ctx.uploads.hold_token(scope, token)
        self.tokens[:] = [token]
        return token

    def _cdn_upload(self, image: ImageInput, name: str) -> Exchange[str]:
        """``POST {token base_url}/files/upload`` with the bytes (streamed) and lifecycle headers: the access URL."""
        token = yield from self._cdn_token()
        headers = {
            "Authorization": token.authorization.reveal(),
            "User-Agent": self.ctx.user_agent,
            "Accept": "application/json",
            "Content-Type": image.content_type,
            "Content-Length": str(image.size or 0),
            HEADER_FILE_NAME: name,
            **self._lifecycle_headers(),
        }
        url = token.base_url.rstrip("/") + CDN_UPLOAD_PATH
        stream = ReaderStream(image.open, size=image.size)
        try:
            response = yield Send(
                httpx.Request("POST", url, headers=headers, stream=stream), timeout=UPLOAD_TIMEOUT_SECONDS
            )
        except ProviderUnavailable as exc:
            raise _UseFallback(exc.message) from exc
        if response.status_code in (401, 403):  # stale or revoked: a new one next time
            self.tokens.clear()
            if self.ctx.uploads is not None:
                self.ctx.uploads.drop_token(upload_scope(self.ctx, "rest"))
        uploaded = parse_reply(response, CdnUpload) if response.is_success else None
        if uploaded is None or isinstance(uploaded, Unreadable) or not _http_url(uploaded.access_url):
            raise _UseFallback(f"fal's CDN upload answer: HTTP {response.status_code}")
        return uploaded.access_url

    def _initiated_upload(self, image: ImageInput, name: str) -> Exchange[str]:
        """fal_client's fallback: ``POST {rest}/storage/upload/initiate``, then ``PUT`` the bytes to its
        ``upload_url`` (a signed URL: no key goes there); the file's URL."""
        params = {"storage_type": INITIATE_STORAGE_TYPE}
        url = str(httpx.URL(self.ctx.url("rest", INITIATE_PATH)).copy_merge_params(params))
        headers = {**self.key_headers, "Content-Type": "application/json", **self._lifecycle_headers()}
        body = {"file_name": name, "content_type": image.content_type}
        response = yield Send(httpx.Request("POST", url, headers=headers, json=body), timeout=TOKEN_TIMEOUT_SECONDS)
        if not response.is_success:
            raise error_from_response(response)
        initiated = parse_reply(response, InitiatedUpload)
        if isinstance(initiated, Unreadable) or not (_http_url(initiated.upload_url) and _http_url(initiated.file_url)):
            reason = initiated.reason if isinstance(initiated, Unreadable) else "a URL that is not http(s)"
            raise UnexpectedResponse(f"fal's upload answer is unusable ({reason})", provider=PROVIDER, billed="no")
        put_headers = {"Content-Type": image.content_type, "Content-Length": str(image.size or 0)}
        stream = ReaderStream(image.open, size=image.size)
        put = httpx.Request("PUT", initiated.upload_url, headers=put_headers, stream=stream)
        answer = yield Send(put, untrusted_url=True, timeout=UPLOAD_TIMEOUT_SECONDS)
        if not answer.is_success:
            raise ProviderUnavailable(
                f"fal's storage refused the upload of {name} (HTTP {answer.status_code})",
                provider=PROVIDER,
                status=answer.status_code,
                body=read_body(answer).kept(),
            )
        return initiated.file_url

    def _lifecycle_headers(self) -> dict[str, str]:
        """How long fal's storage keeps an upload, in both headers fal_client sends."""
        value = lifecycle(self.expiration_seconds)
        return {HEADER_OBJECT_LIFECYCLE: value, HEADER_LIFECYCLE: value}


def _token_expiry(expires_at: str | None) -> float:
    if expires_at:
        try:
            moment = datetime.fromisoformat(expires_at.strip().replace("Z", "+00:00"))
        except ValueError:
            moment = None
        if moment is not None and moment.tzinfo is not None:
            return moment.timestamp()
    return time.time() + CDN_TOKEN_FALLBACK_SECONDS


def _http_url(url: str) -> bool:
    return url.lower().startswith(("https://", "http://"))
