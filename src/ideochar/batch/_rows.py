"""Rows: a batch file read one row at a time, each row checked and given its identity by content.

A batch file is JSONL (one JSON object per line) or CSV (a header, then one row per line); each row has
the fields of ``ideochar generate`` under their request names (``prompt``, ``reference``,
``aspect_ratio``, ...; ``operation`` with ``image``, ``mask``, ``strength`` for edits and remixes), plus
an optional ``id`` of the caller's own. Defaults for every row (the command's flags, the caller's
``defaults=``) fill what a row leaves out. Relative image paths in a row are read from the file's own
folder, so a batch runs the same from anywhere.

Why a row's identity is its content (:func:`row_key`): a batch is resumed by running it again, and an
edited file must re-run only the rows that changed. So the key is a digest of the request the row
makes after defaults (local images by the SHA-256 of their bytes, not their path; the ``id`` included),
and not of its position: moving rows around re-runs nothing. Two identical rows are one row.

The file is never held in memory: :class:`RowSource` reads it again on each pass, row by row, and a
local image named by many rows is read (and hashed) once while it is unchanged (:class:`_Images`).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from ideochar.errors import IdeocharError, InvalidRequest
from ideochar.media import ALL_INPUTS, ImageInput, InputKinds, input_kind
from ideochar.request import CharacterRequest

__all__ = ["FIELDS", "Row", "RowError", "RowSource", "row_key", "rows_of"]

FileFormat = Literal["jsonl", "csv"]

#: Every field a row may have (dashes in a CSV header are read as underscores).
FIELDS: frozenset[str] = frozenset(
    {
        "id",
        "prompt",
        "reference",
        "reference_mask",
        "operation",
        "image",
        "mask",
        "strength",
        "style",
        "speed",
        "magic_prompt",
        "aspect_ratio",
        "resolution",
        "seed",
        "num_images",
        "negative_prompt",
        "color_palette",
        "palette",
        "style_codes",
        "style_references",
        "extra",
    }
)
_IMAGE_FIELDS = ("reference", "reference_mask", "image", "mask")
_OPERATION_FIELDS = {"edit": ("image", "mask"), "remix": ("image", "strength"), "generate": ()}
#: The version of the identity: bump it only to make every row new again.
_KEY_VERSION = "ideochar-batch-row-1"
#: Images remembered by path while unchanged (each is read and hashed once).
_IMAGE_CACHE_SIZE = 256
_JSONL_SUFFIXES = {".jsonl", ".ndjson", ".json"}


@dataclass(frozen=True)
class RowError:
    """One problem with one row: which field (as the row names it), and what is wrong."""

    field: str
    problem: str

    def __str__(self) -> str:
        return f"{self.field}: {self.problem}"


@dataclass(frozen=True)
class Row:
    """One row, checked: its ``request`` or its ``errors`` (every one found, never just the first)."""

    number: int
    """1-based: the line of a JSONL file, the data row of a CSV file (the header is not counted)."""
    key: str
    """The row's identity (:func:`row_key`); for an invalid row, a digest of its text."""
    request: CharacterRequest | None = None
    errors: tuple[RowError, ...] = ()
    label: str | None = None
    """The row's ``id``, when it has one."""

    @property
    def valid(self) -> bool:
        return self.request is not None


def row_key(request: CharacterRequest, label: str | None = None) -> str:
    """The identity of a row: a digest of what it asks for, local images by their bytes' SHA-256.

    Fields left at their defaults are not part of it, so a later ideochar adding a field with a default
    leaves every key as it was.
    """
    document: dict[str, Any] = request.model_dump(mode="json", exclude_defaults=True)
    for path, image in request.images():
        _replace(document, path, {"url": image.url} if image.url is not None else {"sha256": image.sha256})
    document["id"] = label
    text = json.dumps([_KEY_VERSION, document], sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


def _replace(document: dict[str, Any], dotted: str, value: Any) -> None:
    target: Any = document
    *parents, last = dotted.split(".")
    for part in parents:
        target = target[int(part)] if isinstance(target, list) else target.setdefault(part, {})
    if isinstance(target, list):
        target[int(last)] = value
    else:
        target[last] = value


class _Images:
    """Local images by resolved path, reused while the file's size and modification time are unchanged:
    ten thousand rows naming one reference read and hash it once. Bounded (least recently used go)."""

    def __init__(self) -> None:
        self._known: OrderedDict[str, tuple[tuple[int, int], ImageInput]] = OrderedDict()

    def get(self, path: Path) -> ImageInput:
        name = str(path)
        try:
            stat = path.stat()
        except OSError:
            return ImageInput.of(path)  # raises the readable error (missing, a folder...)
        signature = (stat.st_size, stat.st_mtime_ns)
        found = self._known.get(name)
        if found is not None and found[0] == signature:
            self._known.move_to_end(name)
            return found[1]
        image = ImageInput.of(path)
        self._known[name] = (signature, image)
        if len(self._known) > _IMAGE_CACHE_SIZE:
            self._known.popitem(last=False)
        return image


class _Maker:
    """Builds checked rows from raw values: defaults, relative paths, operations, errors named by field."""

    def __init__(self, defaults: Mapping[str, Any], base: Path | None, accept: InputKinds) -> None:
        self.base = base
        self.accept = accept
        self.images = _Images()
        self.defaults = self._defaults(defaults)

    def _defaults(self, defaults: Mapping[str, Any]) -> dict[str, Any]:
        """The defaults' own images, read from the working folder (they came from a flag or the caller);
        a bad one is wrong for every row, so it stops the batch here."""
        checked: dict[str, Any] = {}
        errors: list[RowError] = []
        for name, value in defaults.items():
            field = name.replace("-", "_")
            if field not in FIELDS:
                errors.append(RowError(field, "is not a field a row can have"))
            elif field in (*_IMAGE_FIELDS, "style_references"):
                checked[field] = self._image(field, value, errors, relative=False)
            else:
                checked[field] = value
        if errors:
            problems = [(e.field, e.problem) for e in errors]
            raise InvalidRequest("defaults: " + "; ".join(map(str, errors)), problems=problems)
        return checked

    def row(self, number: int, raw: Mapping[str, Any] | CharacterRequest, text: str = "") -> Row:
        if isinstance(raw, CharacterRequest):
            return self._checked(number, raw, None)
        errors: list[RowError] = []
        values = self._values(raw, errors)
        label = values.pop("id", None)
        label = None if label is None else str(label)
        data = self._request_data(values, errors)
        try:
            request = CharacterRequest.model_validate(data, context=self.accept.context())
        except InvalidRequest as exc:  # every problem at once: those found above, then the model's own
            reported = {e.field.split(".")[0] for e in errors}
            errors += [e for e in _problems(exc) if e.field.split(".")[0] not in reported]
        if errors:
            return Row(number, _text_key(text or repr(sorted(raw.items(), key=str))), errors=tuple(errors), label=label)
        return self._checked(number, request, label)

    def _checked(self, number: int, request: CharacterRequest, label: str | None) -> Row:
        try:
            self.accept.check_images(request.images())
            for _, image in request.images():
                image.check()
            key = row_key(request, label)
        except InvalidRequest as exc:
            return Row(number, _text_key(repr(request)), errors=_problems(exc), label=label)
        except OSError as exc:  # an image vanished between the check and the hash
            error = RowError("reference", f"cannot be read: {exc.strerror or exc}")
            return Row(number, _text_key(repr(request)), errors=(error,), label=label)
        return Row(number, key, request=request, label=label)

    def _values(self, raw: Mapping[str, Any], errors: list[RowError]) -> dict[str, Any]:
        """The row's own values by field name (unknown fields are errors; empty CSV cells are unset)."""
        values: dict[str, Any] = {}
        for name, value in raw.items():
            field = str(name).strip().replace("-", "_")
            if field not in FIELDS:
                errors.append(RowError(str(name), f"is not a field; the fields are {', '.join(sorted(FIELDS))}"))
                continue
            if value is None or (isinstance(value, str) and not value.strip()):
                continue
            values[field] = value
        for field in ("palette", "color_palette"):
            if field in values and isinstance(values[field], str) and values[field].lstrip().startswith("{"):
                values[field] = _json_cell(field, values[field], errors)
        for field in ("style_codes", "style_references"):
            if isinstance(values.get(field), str):
                values[field] = _list_cell(values[field])
        if isinstance(values.get("extra"), str):
            values["extra"] = _json_cell("extra", values["extra"], errors)
        for field in (*_IMAGE_FIELDS, "style_references"):
            if field in values:
                values[field] = self._image(field, values[field], errors, relative=True)
                if values[field] is None:
                    del values[field]
        return values

    def _image(self, field: str, value: Any, errors: list[RowError], *, relative: bool) -> Any:
        """A row's image: its kind checked before any file is looked at, a relative path read from the
        file's folder, a local file shared by the rows that name it."""
        if isinstance(value, list):
            return [self._image(f"{field}.{i}", item, errors, relative=relative) for i, item in enumerate(value)]
        try:
            self.accept.require(value)
            if input_kind(value) != "path" or isinstance(value, ImageInput):
                return value
            path = Path(os.fspath(value)).expanduser()
            if relative and self.base is not None and not path.is_absolute():
                path = self.base / path
            return self.images.get(path)
        except InvalidRequest as exc:
            errors.append(RowError(field, str(exc)))
            return None

    def _request_data(self, values: dict[str, Any], errors: list[RowError]) -> dict[str, Any]:
        """Defaults under the row's values, the operation built from its flat fields."""
        merged = {**self.defaults, **values}
        extra = {**dict(self.defaults.get("extra") or {}), **dict(values.get("extra") or {})}
        if extra:
            merged["extra"] = extra
        if "palette" in merged:
            palette = merged.pop("palette")
            if "color_palette" in values and "palette" in values:
                errors.append(RowError("palette", "give palette or color_palette, not both"))
            elif "color_palette" not in values:
                merged["color_palette"] = palette
        name = str(merged.pop("operation", "") or "").strip().lower()
        if not name:
            name = "edit" if merged.get("mask") is not None else "generate"
            name = "remix" if name == "generate" and merged.get("image") is not None else name
        if name not in _OPERATION_FIELDS:
            errors.append(RowError("operation", f"{name!r} is not an operation; choose generate, edit or remix"))
            return merged
        operation: dict[str, Any] = {"operation": name}
        for field in ("image", "mask", "strength"):
            value = merged.pop(field, None)
            if field in _OPERATION_FIELDS[name]:
                if value is not None:
                    operation[field] = value
            elif field in values:  # a default that does not apply to this row's operation is not the row's
                errors.append(RowError(field, f"is for {_owner_of(field)}, and this row is {name}"))
        merged["operation"] = operation
        if "strength" in _OPERATION_FIELDS[name] and "strength" not in operation:
            operation["strength"] = 0.8  # the command line's default for remix
        return merged


def _owner_of(field: str) -> str:
    return " and ".join(op for op, fields in _OPERATION_FIELDS.items() if field in fields)


def _problems(exc: InvalidRequest) -> tuple[RowError, ...]:
    if exc.problems:
        return tuple(RowError(_row_field(p.field), p.problem) for p in exc.problems)
    return (RowError("request", exc.message if isinstance(exc, IdeocharError) else str(exc)),)


def _row_field(path: str) -> str:
    """A request field path in the row's words: ``operation.strength`` is the row's ``strength``."""
    return path.removeprefix("operation.") if path.startswith("operation.") else path


def _json_cell(field: str, text: str, errors: list[RowError]) -> Any:
    try:
        return json.loads(text)
    except ValueError as exc:
        errors.append(RowError(field, f"is not valid JSON: {exc}"))
        return None


def _list_cell(text: str) -> Any:
    """A list in one CSV cell: JSON (``["a", "b"]``), else items separated by ``;`` (paths may hold commas)."""
    stripped = text.strip()
    if stripped.startswith("["):
        try:
            return json.loads(stripped)
        except ValueError:
            pass
    separator = ";" if ";" in stripped else ","
    return [item.strip() for item in stripped.split(separator) if item.strip()]


def _text_key(text: str) -> str:
    return "invalid-" + hashlib.sha256(text.encode("utf-8", "replace")).hexdigest()[:24]


class RowSource:
    """A batch file, read afresh on each iteration (never held whole), every row checked.

    Example::

        source = RowSource("rows.jsonl", defaults={"reference": "face.png", "speed": "turbo"})
        for row in source:
            print(row.number, row.key, row.errors or row.request.prompt)
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        defaults: Mapping[str, Any] | None = None,
        file_format: FileFormat | None = None,
        accept_inputs: InputKinds | None = None,
    ) -> None:
        self.path = Path(path).expanduser()
        self.format: FileFormat = file_format or _format_of(self.path)
        self.defaults = dict(defaults or {})
        self.accept = accept_inputs or ALL_INPUTS

    def __iter__(self) -> Iterator[Row]:
        maker = _Maker(self.defaults, self.path.resolve().parent, self.accept)
        for number, raw, text in self._raw():
            if isinstance(raw, RowError):
                yield Row(number, _text_key(text), errors=(raw,))
            else:
                yield maker.row(number, raw, text)

    def _raw(self) -> Iterator[tuple[int, Mapping[str, Any] | RowError, str]]:
        try:
            handle = self.path.open(encoding="utf-8", newline="")
        except OSError as exc:
            raise InvalidRequest.for_field("FILE", f"cannot read {self.path}: {exc.strerror or exc}") from None
        with handle:
            if self.format == "csv":
                yield from _csv_rows(handle)
            else:
                yield from _jsonl_rows(handle)

    def __repr__(self) -> str:
        return f"RowSource({str(self.path)!r}, {self.format})"


def _format_of(path: Path) -> FileFormat:
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return "csv"
    if suffix in _JSONL_SUFFIXES:
        return "jsonl"
    raise InvalidRequest.for_field(
        "FILE", f"{path.name}: name the format (.jsonl or .csv), or give it (--format jsonl|csv)"
    )


def _jsonl_rows(handle: io.TextIOBase) -> Iterator[tuple[int, Mapping[str, Any] | RowError, str]]:
    for number, line in enumerate(handle, start=1):
        text = line.strip()
        if not text:
            continue
        try:
            value = json.loads(text)
        except ValueError as exc:
            yield number, RowError("line", f"is not valid JSON: {exc}"), text
            continue
        if not isinstance(value, dict):
            yield number, RowError("line", f"must be a JSON object, not {type(value).__name__}"), text
            continue
        yield number, value, text


def _csv_rows(handle: io.TextIOBase) -> Iterator[tuple[int, Mapping[str, Any] | RowError, str]]:
    reader = csv.reader(handle)
    header: list[str] | None = None
    number = 0
    for cells in reader:
        if not any(cell.strip() for cell in cells):
            continue
        if header is None:
            header = [cell.strip() for cell in cells]
            continue
        number += 1
        text = "\x1f".join(cells)
        if len(cells) > len(header):
            yield number, RowError("row", f"has {len(cells)} cells and the header {len(header)}"), text
            continue
        yield number, dict(zip(header, cells, strict=False)), text


def rows_of(
    requests: Iterable[CharacterRequest | Mapping[str, Any] | Row] | RowSource,
    *,
    defaults: Mapping[str, Any] | None = None,
    accept_inputs: InputKinds | None = None,
) -> Iterator[Row]:
    """Rows from what a Python caller has: a :class:`RowSource`, rows read from one, or requests and
    mappings (numbered from 1).

    A mapping has a row's fields (its relative paths are read from the working folder); a prepared
    :class:`~ideochar.request.CharacterRequest` is taken as it is (defaults do not apply to it).
    """
    if isinstance(requests, RowSource):
        yield from requests
        return
    maker = _Maker(defaults or {}, None, accept_inputs or ALL_INPUTS)
    for number, item in enumerate(requests, start=1):
        if isinstance(item, Row):  # already read and checked (rows of a RowSource, filtered by the caller)
            yield item
        elif isinstance(item, (CharacterRequest, Mapping)):
            yield maker.row(number, item)
        else:
            problem = f"must be a CharacterRequest or a mapping of fields, not {type(item).__name__}"
            yield Row(number, _text_key(repr(item)), errors=(RowError("row", problem),))
