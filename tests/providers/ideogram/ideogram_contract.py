"""Validate a multipart form against the request schema of an Ideogram route in its OpenAPI document.

The document is the shared reference copy (``../shared/reference/ideogram-openapi.json``, Ideogram's
published spec) when it is there, else the subset the package ships
(``providers/ideochar_ideogram/openapi_v3.json``: the same four routes and schemas, copied unchanged,
which ``test_ideogram_contract.py`` checks against the reference when both exist).

How a form becomes a JSON instance the schema can judge (the OpenAPI rules for multipart bodies):

* a property whose schema is an ``array`` collects every part of that name (repeated fields); any
  other property must appear at most once;
* a ``format: binary`` value must be a *file* part (with a filename and an image content type); any
  other value must be a plain field;
* text is converted by the property's type: ``integer`` and ``number`` must parse, ``boolean`` is
  ``true``/``false``; a property with an ``encoding`` content type of ``application/json``
  (``color_palette``) must be sent with that content type and is parsed as JSON.

Then ``jsonschema`` checks types, enums, patterns, ``minimum``/``maximum``, ``required`` and ``oneOf``
(``$ref``s resolved inside the document), and this module adds what the schema says only in prose:
unknown field names (the schemas do not set ``additionalProperties: false``), ``aspect_ratio`` xor
``resolution``, ``style_codes`` not with ``style_type`` or ``style_reference_images``, at most one
character reference and as many masks as references.
"""

from __future__ import annotations

import functools
import json
import os
from pathlib import Path
from typing import Any

from ideogram_support import Form
from jsonschema import Draft7Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT7

__all__ = ["DOCUMENT_URI", "openapi", "openapi_path", "problems", "request_schema", "resolve"]

_REPO = Path(__file__).resolve().parents[3]
#: Ideogram's whole OpenAPI document, when this checkout has it beside it (or IDEOCHAR_IDEOGRAM_OPENAPI names it);
#: the package ships only the four routes' part of it.
SHARED = Path(
    os.environ.get("IDEOCHAR_IDEOGRAM_OPENAPI") or _REPO.parent / "shared" / "reference" / "ideogram-openapi.json"
)
#: Why the checks against the whole document are skipped without it (shown by pytest -ra).
NO_FULL_DOCUMENT = (
    "Ideogram's full OpenAPI document is not in this checkout; the packaged subset is checked on its own "
    "(IDEOCHAR_IDEOGRAM_OPENAPI=path/to/ideogram-openapi.json runs these checks)"
)
PACKAGED = _REPO / "providers" / "ideochar_ideogram" / "openapi_v3.json"
DOCUMENT_URI = "urn:ideogram:openapi"
_FORM = "multipart/form-data"


def openapi_path() -> Path:
    return SHARED if SHARED.exists() else PACKAGED


@functools.lru_cache(maxsize=1)
def openapi() -> dict[str, Any]:
    return json.loads(openapi_path().read_text(encoding="utf-8"))  # type: ignore[no-any-return]


def resolve(schema: dict[str, Any]) -> dict[str, Any]:
    """Follow ``$ref`` (``#/components/...``) until a schema without one."""
    seen = 0
    while "$ref" in schema:
        pointer = schema["$ref"]
        assert pointer.startswith("#/"), f"only local $refs are expected, not {pointer}"
        node: Any = openapi()
        for key in pointer[2:].split("/"):
            node = node[key]
        schema = node
        seen += 1
        assert seen < 32, f"$ref loop at {pointer}"
    return schema


def _media(route: str) -> dict[str, Any]:
    operation = openapi()["paths"][route]["post"]
    content = operation["requestBody"]["content"]
    assert _FORM in content, f"{route} takes no {_FORM} body"
    return content[_FORM]  # type: ignore[no-any-return]


def request_schema(route: str) -> dict[str, Any]:
    """The resolved request schema (``GenerateImageRequestV3`` etc.) of a route's multipart body."""
    return resolve(_media(route)["schema"])


def _json_parts(route: str) -> set[str]:
    encoding = _media(route).get("encoding", {})
    return {name for name, spec in encoding.items() if spec.get("contentType", "").startswith("application/json")}


@functools.lru_cache(maxsize=1)
def _registry() -> Registry[Any]:
    registry: Registry[Any] = Registry().with_resource(
        DOCUMENT_URI, Resource.from_contents(openapi(), default_specification=DRAFT7)
    )
    return registry


def _validator(route: str) -> Draft7Validator:
    reference = _media(route)["schema"]["$ref"]
    return Draft7Validator({"$ref": DOCUMENT_URI + reference}, registry=_registry())


def _convert(name: str, text: str, schema: dict[str, Any]) -> tuple[Any, str | None]:
    kind = schema.get("type")
    if kind == "integer":
        try:
            return int(text), None
        except ValueError:
            return text, f"{name}: {text!r} is not an integer"
    if kind == "number":
        try:
            return float(text), None
        except ValueError:
            return text, f"{name}: {text!r} is not a number"
    if kind == "boolean":
        if text in ("true", "false"):
            return text == "true", None
        return text, f"{name}: {text!r} is not true or false"
    return text, None


def problems(route: str, form: Form) -> list[str]:
    """Everything wrong with ``form`` as a request to ``route``; empty when it is valid."""
    schema = request_schema(route)
    properties: dict[str, Any] = schema.get("properties", {})
    json_parts = _json_parts(route)
    found: list[str] = []
    instance: dict[str, Any] = {}
    for name in dict.fromkeys(form.names()):
        parts = form.all(name)
        if name not in properties:
            found.append(f"{name}: not a field of {route}")
            continue
        prop = resolve(properties[name])
        is_array = prop.get("type") == "array"
        item = resolve(prop.get("items", {})) if is_array else prop
        if not is_array and len(parts) > 1:
            found.append(f"{name}: sent {len(parts)} times but is not an array")
        values = []
        for part in parts:
            if item.get("format") == "binary":
                if part.filename is None:
                    found.append(f"{name}: must be a file part (with a filename)")
                if not (part.content_type or "").startswith("image/"):
                    found.append(f"{name}: file part content type is {part.content_type!r}, not an image type")
                values.append(f"<file {part.filename} {len(part.value)} bytes>")
                continue
            if part.filename is not None:
                found.append(f"{name}: sent as a file part but is a plain field")
            if name in json_parts:
                if (part.content_type or "").split(";")[0].strip() != "application/json":
                    found.append(
                        f"{name}: must be one part of content type application/json, not {part.content_type!r}"
                    )
                try:
                    values.append(json.loads(part.text))
                except ValueError:
                    found.append(f"{name}: {part.text!r} is not JSON")
                    values.append(part.text)
                continue
            value, problem = _convert(name, part.text, item)
            if problem:
                found.append(problem)
            values.append(value)
        instance[name] = values if is_array else values[0]
    for error in sorted(_validator(route).iter_errors(instance), key=lambda e: list(e.absolute_path)):
        where = ".".join(str(p) for p in error.absolute_path) or "form"
        detail = ""
        if error.context:  # oneOf/anyOf: say why each branch failed
            reasons = [f"{'.'.join(str(p) for p in sub.absolute_path)}: {sub.message}" for sub in error.context]
            detail = f" ({'; '.join(reasons)})"
        found.append(f"{where}: {error.message}{detail}")
    found.extend(_prose_rules(instance))
    return found


def _prose_rules(instance: dict[str, Any]) -> list[str]:
    """Rules the schemas state in descriptions, not in keywords."""
    found = []
    if "aspect_ratio" in instance and "resolution" in instance:
        found.append("aspect_ratio: cannot be used in conjunction with resolution")
    if "style_codes" in instance and ("style_type" in instance or "style_reference_images" in instance):
        found.append("style_codes: cannot be used with style_reference_images or style_type")
    references = instance.get("character_reference_images", [])
    if len(references) > 1:
        found.append(f"character_reference_images: only 1 is supported, {len(references)} sent")
    masks = instance.get("character_reference_images_mask")
    if masks is not None and len(masks) != len(references):
        found.append(f"character_reference_images_mask: {len(masks)} masks for {len(references)} references")
    return found
