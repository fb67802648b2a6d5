"""Images going in: one type, :class:`ImageInput`, for a path, bytes, an http(s) URL or a data URI.

Why one type: each vendor wants images differently (fal a URL or data URI, Segmind a URL or a file
part, Ideogram a file part, Replicate a URL, data URI or upload). The caller should not care, and every
check that needs no network (format from the bytes, size, pixel dimensions) should happen before any
money is spent.

Reading is lazy. A path is stat'ed and its first bytes sniffed; the whole file is read only when a
vendor needs it, and a multipart upload streams it in chunks. Pixel dimensions come from the image
header (Pillow parses headers without decoding pixels), and Pillow is imported only when asked.

Image bytes and the strings that name images are not trusted (docs/security.md). :class:`InputKinds`
says which kinds of input a caller accepts: a server that passes on its users' strings accepts URLs
and bytes only, and a path is then refused before the file system is touched. :meth:`ImageInput.check`
proves a local image is a complete JPEG, PNG or WebP file within :data:`MAX_INPUT_PIXELS` without
decoding it (a decompression bomb is one more ``InvalidRequest``), and :func:`is_grayscale` reads a
mask's pixels in bounded memory.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import math
import os
import re
import struct
import zlib
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, ClassVar, Literal, get_args
from urllib.parse import unquote_to_bytes, urlsplit

from pydantic import GetCoreSchemaHandler
from pydantic_core import core_schema

from ideochar._constants import (
    MAX_INPUT_PIXELS,
    MAX_MASK_DECODE_PIXELS,
    PIXEL_STRIP_BYTES,
    READ_CHUNK_BYTES,
    SNIFF_BYTES,
)
from ideochar._secrets import redact_url
from ideochar.errors import InvalidRequest

if TYPE_CHECKING:
    from PIL import Image as PILImage

__all__ = [
    "ALL_INPUTS",
    "CONTENT_TYPES",
    "SERVER_INPUTS",
    "ImageFormat",
    "ImageInput",
    "InputKind",
    "InputKinds",
    "SourceKind",
    "accepting",
    "input_kind",
    "is_grayscale",
    "pixel_strips",
    "sniff_format",
]

ImageFormat = Literal["jpeg", "png", "webp"]
SourceKind = Literal["path", "bytes", "url", "data_uri"]
#: What a caller may accept: a data URI carries its bytes, so it is ``"bytes"``.
InputKind = Literal["path", "url", "bytes"]

CONTENT_TYPES: dict[str, str] = {"jpeg": "image/jpeg", "png": "image/png", "webp": "image/webp"}
_EXTENSIONS: dict[str, str] = {"jpeg": "jpg", "png": "png", "webp": "webp"}
# What Pillow raises for bytes it cannot parse (struct.error and zlib.error from short or bad data).
_UNREADABLE: tuple[type[Exception], ...] = (OSError, SyntaxError, ValueError, EOFError, struct.error, zlib.error)
_DATA_URI = re.compile(r"^data:(?P<mime>[\w.+-]+/[\w.+-]+)?(?P<params>(?:;[\w-]+=[^;,]*)*)(?P<b64>;base64)?,", re.I)


def sniff_format(head: bytes) -> ImageFormat | None:
    """The real format from the first bytes; a file's name or a declared type proves nothing."""
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if len(head) >= 12 and head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    return None


# pydantic does not hand a validation context to a model with its own __init__ (ours convert errors), nor
# to the models nested in it: the kinds accepted travel beside the validation instead, for its duration.
_accepted: ContextVar[InputKinds | None] = ContextVar("ideochar_accepted_inputs", default=None)
_INPUT_KIND: dict[SourceKind, InputKind] = {"path": "path", "url": "url", "bytes": "bytes", "data_uri": "bytes"}
_KIND_WORDS: dict[InputKind, tuple[str, str]] = {
    "path": ("file paths", "a file path"),
    "url": ("URLs", "an http(s) URL"),
    "bytes": ("bytes and data URIs", "the image's bytes or a data URI"),
}


def input_kind(value: Any) -> InputKind | None:
    """The kind of input ``value`` would make, judged from the value alone: no file is looked at.

    None for a value that is no image input at all (:meth:`ImageInput.of` says why).
    """
    if isinstance(value, ImageInput):
        return _INPUT_KIND[value.kind]
    if isinstance(value, (bytes, bytearray, memoryview)):
        return "bytes"
    if isinstance(value, os.PathLike):
        return "path"
    if isinstance(value, str):
        head = value.strip()[:16].lower()
        if head.startswith("data:"):
            return "bytes"
        return "url" if "://" in head else "path"
    return None


@dataclass(frozen=True)
class InputKinds:
    """Which kinds of image input a caller accepts: ``"path"``, ``"url"`` and ``"bytes"`` (data URIs too).

    All three by default: a script or the command line names its own files. A server that passes on its
    users' strings must not let them name files on the server, so it accepts :data:`SERVER_INPUTS`
    (URLs and bytes): a path is then refused from the value alone, before any file is looked at, with
    one message whether the file exists, is missing, unreadable or a folder.

    Example::

        Client(accept_inputs={"url", "bytes"})
        CharacterRequest.model_validate(data, context=SERVER_INPUTS.context())
    """

    kinds: frozenset[InputKind] = frozenset(get_args(InputKind))

    #: The key under which a pydantic validation context carries the kinds accepted.
    CONTEXT_KEY: ClassVar[str] = "accept_inputs"

    def __post_init__(self) -> None:
        object.__setattr__(self, "kinds", frozenset(self.kinds))  # a plain set given: hashable all the same
        unknown = sorted(set(self.kinds) - set(get_args(InputKind)))
        if unknown:
            raise InvalidRequest.for_field("accept_inputs", f"{unknown[0]!r} is not a kind; choose path, url, bytes")
        if not self.kinds:
            raise InvalidRequest.for_field("accept_inputs", "accept at least one kind of input: path, url, bytes")

    @classmethod
    def of(cls, value: InputKinds | Iterable[str] | str | None) -> InputKinds:
        """From what a caller writes: ``{"url", "bytes"}``, ``"url,bytes"``, an ``InputKinds``, or None (all)."""
        if value is None:
            return ALL_INPUTS
        if isinstance(value, InputKinds):
            return value
        names = value.replace(",", " ").split() if isinstance(value, str) else list(value)
        return cls(frozenset(str(name).strip().lower() for name in names))  # type: ignore[misc]

    @classmethod
    def from_context(cls, context: Any) -> InputKinds:
        """The kinds a pydantic validation context accepts; else those of the enclosing
        :func:`accepting` block; else all of them."""
        if isinstance(context, Mapping) and context.get(cls.CONTEXT_KEY) is not None:
            return cls.of(context[cls.CONTEXT_KEY])
        return _accepted.get() or ALL_INPUTS

    def context(self) -> dict[str, Any]:
        """A pydantic validation context carrying these kinds (``model_validate(..., context=...)``)."""
        return {self.CONTEXT_KEY: self}

    def require(self, value: Any) -> None:
        """Raise InvalidRequest when ``value`` is of a kind not accepted; touches no file."""
        kind = input_kind(value)
        if kind is not None and kind not in self.kinds:
            raise InvalidRequest(self._refusal(kind))

    def check_images(self, images: Iterable[tuple[str, ImageInput]]) -> None:
        """Refuse, naming the field, the first image of a kind not accepted (a request built elsewhere)."""
        for field, image in images:
            kind = _INPUT_KIND[image.kind]
            if kind not in self.kinds:
                raise InvalidRequest.for_field(field, self._refusal(kind))

    def _refusal(self, kind: InputKind) -> str:
        accepted = " or ".join(_KIND_WORDS[k][1] for k in get_args(InputKind) if k in self.kinds)
        return f"{_KIND_WORDS[kind][0]} are not accepted here; give {accepted}"


#: Local files that passed :meth:`ImageInput.check`, by identity (device, inode, size, mtime): a reference
#: reused by a thousand jobs is verified once (verifying reads the whole file), a changed one again.
_CHECKED_FILES: dict[tuple[int, int, int, int], None] = {}
_CHECKED_FILES_MAX = 1024


def _remember_checked(identity: tuple[int, int, int, int]) -> None:
    if len(_CHECKED_FILES) >= _CHECKED_FILES_MAX:
        _CHECKED_FILES.pop(next(iter(_CHECKED_FILES)))  # the oldest: insertion order
    _CHECKED_FILES[identity] = None


class ImageInput:
    """An image given by the caller. :meth:`of` accepts what the caller has; the ``from_*`` constructors
    say which kind they expect, for code that must not read a string as a path.

    Example::

        ImageInput.of("face.png")                       # a path
        ImageInput.of(Path("face.png").read_bytes())    # bytes
        ImageInput.of("https://example.com/face.jpg")   # fetched by the vendor, or by us if it needs bytes
        ImageInput.of("data:image/png;base64,iVBOR...")
        ImageInput.from_url(user_supplied)              # never a path, whatever the string says
    """

    __slots__ = ("__dict__", "_bytes", "_path", "_url", "kind")

    def __init__(
        self,
        *,
        kind: SourceKind,
        path: Path | None = None,
        data: bytes | None = None,
        url: str | None = None,
    ) -> None:
        self.kind: SourceKind = kind
        self._path = path
        self._bytes = data
        self._url = url

    # -- construction ---------------------------------------------------------------------------

    @classmethod
    def of(cls, value: Any) -> ImageInput:
        """Make an input from a path, ``bytes``, an http(s) URL, a data URI, or an ``ImageInput``.

        A string that is neither a URL nor a data URI is a path (``~`` expanded): convenient for a
        caller naming its own files, and why a server limits the kinds it accepts (:class:`InputKinds`).
        """
        if isinstance(value, ImageInput):
            return value
        if isinstance(value, (bytes, bytearray, memoryview)):
            return cls.from_bytes(value)
        if isinstance(value, os.PathLike):
            return cls.from_path(value)
        if isinstance(value, str):
            kind = input_kind(value)
            if kind == "url":
                return cls.from_url(value)
            if kind == "bytes":
                return cls.from_data_uri(value)
            return cls.from_path(value)
        raise InvalidRequest(
            f"an image must be a path, bytes, an http(s) URL or a data URI, not {type(value).__name__}"
        )

    @classmethod
    def from_path(cls, path: str | os.PathLike[str]) -> ImageInput:
        """A local file (``~`` expanded). Its messages name the file and say whether it exists: the
        caller named it, so they help; a server that must not reveal that refuses paths instead."""
        where = Path(path).expanduser()
        try:
            if not where.is_file():
                raise InvalidRequest(f"no such image file: {where}")
        except OSError as exc:
            raise InvalidRequest(f"cannot read image file {where}: {exc.strerror or exc}") from None
        image = cls(kind="path", path=where)
        image._require_image()
        return image

    @classmethod
    def from_bytes(cls, data: bytes | bytearray | memoryview) -> ImageInput:
        """The image's bytes (kept without a copy when given as ``bytes``)."""
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise InvalidRequest(f"from_bytes takes bytes, not {type(data).__name__}")
        image = cls(kind="bytes", data=data if isinstance(data, bytes) else bytes(data))
        image._require_image()
        return image

    @classmethod
    def from_url(cls, url: str) -> ImageInput:
        """An http(s) URL, fetched later (by the vendor, or by us for a vendor that needs the bytes)."""
        text = url.strip() if isinstance(url, str) else ""
        try:
            parts = urlsplit(text)
            usable = parts.scheme.lower() in ("http", "https") and bool(parts.hostname)
        except ValueError:  # a malformed authority ("http://[::1")
            usable = False
        if not usable:
            scheme = text.split("://", 1)[0] if "://" in text[:16] else ""
            if scheme and scheme.lower() not in ("http", "https"):
                raise InvalidRequest(f"only http(s) URLs are accepted, not {scheme}://")
            raise InvalidRequest(f"not a usable http(s) URL: {redact_url(text)!r}")
        return cls(kind="url", url=text)

    @classmethod
    def from_data_uri(cls, uri: str) -> ImageInput:
        """``data:image/png;base64,...``: bytes carried in a string, checked like bytes."""
        text = uri.strip() if isinstance(uri, str) else ""
        match = _DATA_URI.match(text)
        if not match:
            raise InvalidRequest("malformed data URI: expected data:<type>;base64,<data>")
        payload = text[match.end() :]
        try:
            data = base64.b64decode(payload, validate=True) if match["b64"] else unquote_to_bytes(payload)
        except (binascii.Error, ValueError):
            raise InvalidRequest("the data URI's base64 payload is not valid base64") from None
        image = cls(kind="data_uri", data=data)
        image._require_image()
        declared = (match["mime"] or "").lower()
        actual = image.content_type
        if declared and declared != actual and not (declared == "image/jpg" and actual == "image/jpeg"):
            raise InvalidRequest(f"the data URI says {declared} but its bytes are {actual}")
        return image

    def _require_image(self) -> None:
        if self.format is None:
            where = f" ({self._path})" if self._path else ""
            raise InvalidRequest(f"not a JPEG, PNG or WebP image{where}: the first bytes match none of them")

    # -- pydantic integration -------------------------------------------------------------------

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: GetCoreSchemaHandler) -> core_schema.CoreSchema:
        return core_schema.with_info_plain_validator_function(
            cls._validate,
            serialization=core_schema.plain_serializer_function_ser_schema(lambda v: v.describe()),
            json_schema_input_schema=core_schema.str_schema(),
        )

    @classmethod
    def _validate(cls, value: Any, info: core_schema.ValidationInfo) -> ImageInput:
        # The kind is judged before `of` looks at any file: a refused path is never stat'ed or opened.
        InputKinds.from_context(info.context).require(value)
        return cls.of(value)

    # -- what is known ---------------------------------------------------------------------------

    @property
    def url(self) -> str | None:
        """The http(s) URL, for URL inputs only."""
        return self._url

    @property
    def path(self) -> Path | None:
        return self._path

    @property
    def is_local(self) -> bool:
        """True when the bytes are here (path, bytes, data URI); False for a URL."""
        return self.kind != "url"

    @cached_property
    def head(self) -> bytes:
        """The first bytes, enough to sniff the format and usually the pixel size."""
        if self._bytes is not None:
            return self._bytes[:SNIFF_BYTES]
        if self._path is not None:
            with self._path.open("rb") as handle:
                return handle.read(SNIFF_BYTES)
        return b""

    @cached_property
    def format(self) -> ImageFormat | None:
        """Sniffed from the bytes; None for a URL (unknown until fetched)."""
        return sniff_format(self.head) if self.is_local else None

    @property
    def content_type(self) -> str:
        return CONTENT_TYPES.get(self.format or "", "application/octet-stream")

    @cached_property
    def size(self) -> int | None:
        """Size in bytes; None for a URL."""
        if self._bytes is not None:
            return len(self._bytes)
        if self._path is not None:
            return self._path.stat().st_size
        return None

    @cached_property
    def dimensions(self) -> tuple[int, int] | None:
        """``(width, height)`` in pixels from the image header; None for a URL.

        Raises InvalidRequest for a header Pillow cannot read and for more than ``MAX_INPUT_PIXELS``
        pixels (decompression bombs included), so nothing downstream decodes such an image.
        """
        if not self.is_local:
            return None
        width, height = self._header_size()
        if width * height > MAX_INPUT_PIXELS:
            raise InvalidRequest(
                f"is {width}x{height} pixels ({width * height:,}); the limit is {MAX_INPUT_PIXELS:,} pixels"
            )
        return width, height

    def _header_size(self) -> tuple[int, int]:
        from PIL import Image  # deferred: Pillow is only needed here

        # Pillow told which format to expect, and first given the bytes already read: the header is
        # nearly always in them, and opening the file again costs more than parsing it.
        formats = [self.format.upper()] if self.format else None
        whole = self.size is not None and len(self.head) >= self.size
        with self._pillow_errors("cannot be read"):
            try:
                with Image.open(io.BytesIO(self.head), formats=formats) as img:
                    return (int(img.width), int(img.height))
            except _UNREADABLE:
                if whole:
                    raise
            # A header larger than the first bytes (big metadata): read the file itself.
            with self.open() as handle, Image.open(handle, formats=formats) as img:
                return (int(img.width), int(img.height))
        raise AssertionError("unreachable")  # pragma: no cover - the context manager raises or returns

    @contextmanager
    def _pillow_errors(self, problem: str) -> Iterator[None]:
        """Pillow's (and zlib's) complaints about these bytes as InvalidRequest: never a raw error."""
        from PIL import Image

        try:
            yield
        except InvalidRequest:
            raise
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            raise InvalidRequest(
                f"declares more pixels than the limit of {MAX_INPUT_PIXELS:,} (a decompression bomb?)"
            ) from None
        except _UNREADABLE as exc:  # UnidentifiedImageError is an OSError
            raise InvalidRequest(f"the {self.format} image {problem}: {exc}") from None

    def check(self) -> None:
        """Raise InvalidRequest unless a local image is a complete JPEG, PNG or WebP file within
        ``MAX_INPUT_PIXELS``. URL inputs are checked once fetched (they are not here yet).

        Why: a vendor refuses a cut-short file only after the request is sent, and the header alone
        does not show the cut. Cheap and bounded: a PNG's chunks are read (CRCs, up to IEND) without
        inflating them; a JPEG must end in its end marker, else it is decoded at 1/8 scale to prove its
        data is all there (phones append videos after the marker); a WebP must hold the length its
        RIFF header declares. Done once per input.
        """
        if self.is_local:
            self._checked  # noqa: B018 - cached: raises, or remembers that the image passed

    @cached_property
    def _checked(self) -> bool:
        self.dimensions  # noqa: B018 - readable header, pixel limit
        seen = self._file_identity()
        if seen is not None and seen in _CHECKED_FILES:
            return True  # the same file, unchanged since it passed (a reference reused by many jobs)
        with self._pillow_errors("is cut short or damaged"):
            if self.format == "png":
                self._verify_png()
            elif self.format == "jpeg":
                self._verify_jpeg()
            elif self.format == "webp":
                self._verify_webp()
        if seen is not None:
            _remember_checked(seen)
        return True

    def _file_identity(self) -> tuple[int, int, int, int] | None:
        """What tells this file from any other and from itself once changed: device, inode, size, mtime."""
        if self._path is None:
            return None
        try:
            stat = self._path.stat()
        except OSError:
            return None
        return (stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns)

    def _verify_png(self) -> None:
        from PIL import Image

        with self.open() as handle, Image.open(handle, formats=["PNG"]) as img:
            img.verify()

    def _verify_jpeg(self) -> None:
        if self._tail(2) == b"\xff\xd9":
            return
        from PIL import Image

        with self.open() as handle, Image.open(handle, formats=["JPEG"]) as img:
            img.draft(None, (max(1, img.width // 8), max(1, img.height // 8)))
            img.load()

    def _verify_webp(self) -> None:
        declared = int.from_bytes(self.head[4:8], "little") + 8
        if self.size is not None and declared > self.size:
            raise InvalidRequest(f"the webp image is cut short: it declares {declared:,} bytes and holds {self.size:,}")

    def _tail(self, count: int) -> bytes:
        if self._bytes is not None:
            return self._bytes[-count:]
        with self.open() as handle:
            handle.seek(max(0, (self.size or 0) - count))
            return handle.read(count)

    @property
    def filename(self) -> str:
        """A file name for multipart parts: the path's own name, else ``image.<ext>``."""
        if self._path is not None:
            return self._path.name
        if self._url is not None:
            name = urlsplit(self._url).path.rsplit("/", 1)[-1]
            return name or "image"
        return f"image.{_EXTENSIONS.get(self.format or '', 'bin')}"

    @cached_property
    def sha256(self) -> str:
        """Hex digest of the bytes (for cassettes and the journal); streams a path."""
        digest = hashlib.sha256()
        for chunk in self.iter_chunks():
            digest.update(chunk)
        return digest.hexdigest()

    # -- reading ---------------------------------------------------------------------------------

    def open(self) -> BinaryIO:
        """A fresh binary file object over the bytes; the caller closes it."""
        if self._bytes is not None:
            return io.BytesIO(self._bytes)
        if self._path is not None:
            return self._path.open("rb")
        raise InvalidRequest(f"{redact_url(self._url or '')} is a URL: its bytes are not here")

    def read(self) -> bytes:
        """All the bytes. Holds them once: bytes inputs are returned without a copy."""
        if self._bytes is not None:
            return self._bytes
        with self.open() as handle:
            return handle.read()

    def iter_chunks(self, size: int = READ_CHUNK_BYTES) -> Iterator[bytes]:
        with self.open() as handle:
            while chunk := handle.read(size):
                yield chunk

    def data_uri(self) -> str:
        """``data:<type>;base64,...``. Built in one pass (base64 of the bytes, no extra copies kept)."""
        encoded = base64.b64encode(self.read()).decode("ascii")
        return f"data:{self.content_type};base64,{encoded}"

    def describe(self) -> str:
        """A short, key-free description for logs, the journal and JSON output (a URL's secrets hidden)."""
        if self._url is not None:
            return redact_url(self._url)
        if self._path is not None:
            return str(self._path)
        return f"<{self.kind} {self.content_type}, {self.size} bytes, sha256:{self.sha256[:12]}>"

    def __repr__(self) -> str:
        return f"ImageInput({self.describe()})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ImageInput):
            return NotImplemented
        if self.kind == "url" or other.kind == "url":
            return self._url == other._url
        return self.sha256 == other.sha256

    def __hash__(self) -> int:
        return hash(self._url) if self.kind == "url" else hash(self.sha256)


# -- pixels in bounded memory ----------------------------------------------------------------------------

#: Pillow modes that hold nothing but shades of grey.
_GRAY_MODES = frozenset({"1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"})
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
#: PNG colour types read strip by strip at bit depth 8: (Pillow mode, bytes per pixel).
_PNG_STRIP_MODES: dict[int, tuple[str, int]] = {0: ("L", 1), 2: ("RGB", 3), 3: ("P", 1), 4: ("LA", 2), 6: ("RGBA", 4)}


def is_grayscale(image: ImageInput) -> bool:
    """True when every pixel of a local image is a shade of grey (R = G = B; alpha ignored), read in
    bounded memory: a grey mode or an all-grey palette answers from the header, anything else is read
    through :func:`pixel_strips`.

    Why bounded: a mask is small on disk and huge decoded (490 KB of PNG once took 1.8 GB to check).
    Raises InvalidRequest without a field (callers name it). Example::

        if not is_grayscale(mask):
            raise InvalidRequest.for_field("operation.mask", "has colour in it")
    """
    _require_local(image)
    from PIL import Image

    with image._pillow_errors("cannot be decoded"), image.open() as handle, Image.open(handle) as img:
        palette = _header_palette(img)
        if img.mode in _GRAY_MODES or (palette and not _coloured_entries(palette)):
            return True
    return not any(_has_colour(strip) for strip in pixel_strips(image))


def pixel_strips(image: ImageInput) -> Iterator[PILImage.Image]:
    """A local image's pixels as strips of rows, top to bottom, in bounded memory: for checks that
    must look at every pixel of a mask that may declare up to ``MAX_INPUT_PIXELS``.

    An 8-bit non-interlaced PNG (the usual mask) is read strip by strip, whatever its size
    (``PIXEL_STRIP_BYTES`` of rows at a time; palette strips carry the palette). A JPEG is decoded at
    the largest scale that fits ``MAX_MASK_DECODE_PIXELS``: full size up to it, then 1/2 (as exact for
    the usual 4:2:0 JPEG, whose colour is stored at half size anyway), 1/4 or 1/8 above 32 MP (a speck
    smaller than the scale may blur away); its strips are then as wide as that scale. Any other image
    (WebP, 16-bit or interlaced PNG) is decoded whole up to ``MAX_MASK_DECODE_PIXELS`` and refused
    above it. Raises InvalidRequest (no field: callers name it).
    """
    _require_local(image)
    from PIL import Image

    with image._pillow_errors("cannot be decoded"), image.open() as handle, Image.open(handle) as img:
        yield from _strips(img, handle)


def _require_local(image: ImageInput) -> None:
    if not image.is_local:
        raise InvalidRequest(f"{image.describe()} is a URL: fetch it before reading its pixels")
    image.check()


def _header_palette(img: PILImage.Image) -> list[int]:
    """The palette as the file declares it, read without decoding (``getpalette`` decodes the image)."""
    if img.mode != "P" or img.palette is None:
        return []
    rawmode, data = img.palette.getdata()
    return list(data) if rawmode == "RGB" else []


def _coloured_entries(palette: list[int]) -> frozenset[int]:
    return frozenset(index for index in range(len(palette) // 3) if len(set(palette[3 * index : 3 * index + 3])) > 1)


def _has_colour(strip: PILImage.Image) -> bool:
    from PIL import ImageChops

    if strip.mode in _GRAY_MODES:
        return False
    if strip.mode == "P":
        counts = strip.histogram()
        return any(counts[index] for index in _coloured_entries(strip.getpalette("RGB") or []) if index < len(counts))
    red, green, blue = strip.convert("RGB").split()
    return bool(ImageChops.difference(red, green).getbbox() or ImageChops.difference(green, blue).getbbox())


def _strips(img: PILImage.Image, handle: BinaryIO) -> Iterator[PILImage.Image]:
    """The image as strips of rows, never more than ``MAX_MASK_DECODE_PIXELS`` decoded at once."""
    if img.format == "PNG":
        rows = _png_strips(img, handle)
        if rows is not None:
            return rows
    if img.format == "JPEG":
        _draft_within_budget(img)
    width, height = img.size
    if width * height > MAX_MASK_DECODE_PIXELS:
        raise InvalidRequest(
            f"is a {img.format} of {width}x{height} pixels, too many to check at once (at most "
            f"{MAX_MASK_DECODE_PIXELS:,}); give it as an 8-bit PNG, which is read in strips"
        )
    img.load()
    return _cut(img)


def _draft_within_budget(img: PILImage.Image) -> None:
    """Ask the JPEG decoder for the largest scale (1, 1/2, 1/4, 1/8) whose pixels fit the budget."""
    width, height = img.size
    for scale in (1, 2, 4, 8):
        if math.ceil(width / scale) * math.ceil(height / scale) <= MAX_MASK_DECODE_PIXELS:
            break
    if scale > 1:
        img.draft(None, (max(1, width // scale), max(1, height // scale)))


def _cut(img: PILImage.Image) -> Iterator[PILImage.Image]:
    """A decoded image in strips, so converting a strip copies a strip, not the image."""
    width, height = img.size
    rows = max(1, PIXEL_STRIP_BYTES // (4 * width))
    for top in range(0, height, rows):
        yield img.crop((0, top, width, min(height, top + rows)))


def _png_strips(img: PILImage.Image, handle: BinaryIO) -> Iterator[PILImage.Image] | None:
    """An 8-bit, non-interlaced PNG as strips of rows; None for any other PNG.

    Pillow decodes a PNG only whole. Here the image data is inflated a strip at a time (zlib) and each
    strip is handed to Pillow's own PNG row decoder (``Image.frombytes(..., "zip")``), preceded by the
    previous strip's last row, unfiltered, so the rows that refer to the row above decode exactly.
    """
    handle.seek(len(_PNG_SIGNATURE))
    header = handle.read(8 + 13)
    if len(header) < 21 or header[4:8] != b"IHDR":
        return None
    width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", header[8:21])
    layout = _PNG_STRIP_MODES.get(colour)
    if depth != 8 or layout is None or interlace or not width or not height:
        return None
    handle.seek(4, os.SEEK_CUR)  # the IHDR's CRC
    strips = _png_rows(_inflate(_png_image_data(handle)), width, height, *layout)
    return _with_palette(strips, palette) if (palette := _header_palette(img)) else strips


def _with_palette(strips: Iterator[PILImage.Image], palette: list[int]) -> Iterator[PILImage.Image]:
    for strip in strips:
        strip.putpalette(palette, "RGB")
        yield strip


def _png_rows(raw: Iterator[bytes], width: int, height: int, mode: str, pixel_bytes: int) -> Iterator[PILImage.Image]:
    line = 1 + width * pixel_bytes  # each row starts with its filter type
    per_strip = max(1, PIXEL_STRIP_BYTES // line)
    pending = bytearray()
    previous = b""
    done = 0
    for piece in raw:
        pending += piece
        while done < height and len(pending) >= (count := min(per_strip, height - done)) * line:
            rows = bytes(pending[: count * line])
            del pending[: count * line]
            strip, previous = _decode_png_rows(rows, previous, width, count, mode)
            done += count
            yield strip
        if done >= height:
            return
    raise InvalidRequest(f"the png image's pixel data ends after {done + len(pending) // line} of its {height} rows")


def _decode_png_rows(rows: bytes, previous: bytes, width: int, count: int, mode: str) -> tuple[PILImage.Image, bytes]:
    """Rows still filtered, decoded by Pillow; and the last row unfiltered, for the next strip."""
    from PIL import Image

    prefix = b"\x00" + previous if previous else b""  # filter type 0: the row as it is
    height = count + (1 if previous else 0)
    decoded = Image.frombytes(mode, (width, height), zlib.compress(prefix + rows, 0), "zip", mode)
    strip = decoded.crop((0, height - count, width, height)) if previous else decoded
    return strip, strip.crop((0, count - 1, width, count)).tobytes()


def _png_image_data(handle: BinaryIO) -> Iterator[bytes]:
    """The IDAT chunks' bytes, a piece at a time, from after the IHDR to the IEND."""
    while len(header := handle.read(8)) == 8:
        length, kind = struct.unpack(">I4s", header)
        if kind == b"IEND":
            return
        if kind != b"IDAT":
            handle.seek(length + 4, os.SEEK_CUR)
            continue
        while length:
            piece = handle.read(min(length, READ_CHUNK_BYTES))
            if not piece:
                return
            length -= len(piece)
            yield piece
        handle.seek(4, os.SEEK_CUR)


def _inflate(pieces: Iterable[bytes]) -> Iterator[bytes]:
    """zlib-inflate ``pieces``, never more than ``PIXEL_STRIP_BYTES`` out per step (a bomb stays small)."""
    inflater = zlib.decompressobj()
    for piece in pieces:
        data = piece
        while data and not inflater.eof:
            yield inflater.decompress(data, PIXEL_STRIP_BYTES)
            data = inflater.unconsumed_tail


@contextmanager
def accepting(kinds: InputKinds | Iterable[str] | str | None) -> Iterator[InputKinds]:
    """Within the block, every image input pydantic validates must be of ``kinds`` (nested models too).

    What ``CharacterRequest.model_validate(data, context=kinds.context())`` uses; also for code that
    builds requests with the constructor. Example::

        with accepting({"url", "bytes"}):
            request = CharacterRequest(prompt=prompt, reference=user_value)
    """
    chosen = InputKinds.of(kinds)
    token = _accepted.set(chosen)
    try:
        yield chosen
    finally:
        _accepted.reset(token)


#: Every kind of input: for callers who name their own files (scripts, the command line).
ALL_INPUTS = InputKinds()
#: URLs and bytes, never a path: for a server passing on its users' strings.
SERVER_INPUTS = InputKinds(frozenset({"url", "bytes"}))
