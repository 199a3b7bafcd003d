"""Validate request bodies against an OpenAPI 3.1 document (the OpenAI and Discord specs)."""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError
from referencing import Registry
from referencing.jsonschema import DRAFT202012

SPECS_DIR = Path(__file__).resolve().parents[2].parent / "shared" / "specs"

HTTP_METHODS = frozenset({"get", "put", "post", "delete", "options", "head", "patch", "trace"})
JSON_MEDIA_TYPE = "application/json"
MULTIPART_MEDIA_TYPE = "multipart/form-data"
# Discord types every id as a string matching this pattern; discord.py sends some as integers.
SNOWFLAKE_PATTERN = "^(0|[1-9][0-9]*)$"
SPEC_URI = "urn:openapi-spec"
# Error messages quote the offending instance; a whole message list would drown the reason.
MAX_MESSAGE_CHARS = 300

Schema = dict[str, Any]


class OpenApiValidator:
    """Checks request bodies against the requestBody schemas of one OpenAPI 3.1 document."""

    def __init__(self, document: Mapping[str, Any]) -> None:
        self._document = document
        self._registry: Registry[Any] = Registry().with_resource(SPEC_URI, DRAFT202012.create_resource(document))
        self._templates = [(_template_segments(template), template) for template in document.get("paths", {})]
        self._validators: dict[str, Draft202012Validator] = {}

    @classmethod
    def load(cls, spec_path: Path, *, integer_snowflakes: bool = False) -> OpenApiValidator:
        """Load a spec file (YAML or JSON) once per process, optionally accepting integer snowflakes."""
        return _load_validator(spec_path.resolve(), integer_snowflakes)

    def check_json(self, method: str, path: str, body: object) -> list[str]:
        """Validate a JSON body (None: no body) sent to `method path`; an empty list means valid."""
        found = self._body_schema(method, path, JSON_MEDIA_TYPE)
        if not isinstance(found, tuple):
            return found
        if body is None:
            return ["the request body is required"]
        return _format_errors(self._validator(found[0]).iter_errors(body))

    def check_multipart(self, method: str, path: str, fields: dict[str, str], files: dict[str, str]) -> list[str]:
        """Validate a multipart form: text fields by name and file fields as field name -> filename."""
        found = self._body_schema(method, path, MULTIPART_MEDIA_TYPE)
        if not isinstance(found, tuple):
            return found
        pointer, schema = found
        properties = self._object_properties(schema)
        errors: list[str] = []
        form: dict[str, object] = {}
        for raw_name, value in fields.items():
            name = _form_name(raw_name)
            if self._is_binary(properties.get(name, {})):
                errors.append(f"{name}: must be a file upload, got a text field")
            form[name] = self._coerce(value, properties.get(name, {}))
        for raw_name, filename in files.items():
            name = _form_name(raw_name)
            if name in properties and not self._is_binary(properties[name]):
                errors.append(f"{name}: must be a text field, got a file upload")
            if not filename:
                errors.append(f"{name}: the uploaded file has no filename")
            # The filename stands in for the file's bytes, which the schema only types as a string.
            form[name] = [filename] if raw_name.endswith("[]") else filename
        errors.extend(_format_errors(self._validator(pointer).iter_errors(form)))
        return errors

    def _body_schema(self, method: str, path: str, media_type: str) -> list[str] | tuple[str, Schema]:
        """The operation's body schema for a media type as (JSON pointer, schema), or the errors to report.

        An operation without a request body gives an empty list: there is nothing to check.
        """
        template = self._match(path)
        if template is None:
            return [f"{method.upper()} {path} matches no path in the spec"]
        operation = self._document["paths"][template].get(method.lower())
        if method.lower() not in HTTP_METHODS or not isinstance(operation, dict):
            return [f"the spec has no {method.upper()} {template}"]
        content = operation.get("requestBody", {}).get("content", {})
        if not content:
            return []
        if media_type not in content:
            return [f"{method.upper()} {template} takes {' or '.join(content)}, not {media_type}"]
        pointer = "/".join(("", "paths", _escape(template), method.lower(), "requestBody", "content"))
        return f"{pointer}/{_escape(media_type)}/schema", content[media_type]["schema"]

    def _match(self, path: str) -> str | None:
        """The spec path template matching a concrete path, preferring the fewest template segments."""
        segments = path.strip("/").split("/")
        matches = [
            (sum(part is None for part in parts), template)
            for parts, template in self._templates
            if len(parts) == len(segments)
            and all(part in (None, segment) for part, segment in zip(parts, segments, strict=True))
        ]
        return min(matches)[1] if matches else None

    def _validator(self, pointer: str) -> Draft202012Validator:
        """A validator for the schema at a JSON pointer into the spec, built on first use."""
        if pointer not in self._validators:
            self._validators[pointer] = Draft202012Validator({"$ref": f"{SPEC_URI}#{pointer}"}, registry=self._registry)
        return self._validators[pointer]

    def _resolve(self, schema: Schema) -> Schema:
        """Follow local `$ref`s to the schema they name."""
        while "$ref" in schema:
            node: Any = self._document
            for part in schema["$ref"].removeprefix("#/").split("/"):
                node = node[part.replace("~1", "/").replace("~0", "~")]
            schema = node
        return schema

    def _alternatives(self, schema: Schema) -> Iterable[Schema]:
        """The schema itself and every schema reachable through `$ref`, anyOf, oneOf and allOf."""
        schema = self._resolve(schema)
        yield schema
        for keyword in ("anyOf", "oneOf", "allOf"):
            for branch in schema.get(keyword, ()):
                yield from self._alternatives(branch)

    def _object_properties(self, schema: Schema) -> dict[str, Schema]:
        """Property schemas of an object schema, merged across allOf branches."""
        properties: dict[str, Schema] = {}
        for branch in self._alternatives(schema):
            properties.update(branch.get("properties", {}))
        return properties

    def _types(self, schema: Schema) -> set[str]:
        """Every JSON type the schema (or one of its alternatives) allows."""
        types: set[str] = set()
        for branch in self._alternatives(schema):
            declared = branch.get("type", [])
            types.update([declared] if isinstance(declared, str) else declared)
        return types

    def _is_binary(self, schema: Schema) -> bool:
        """Whether the schema describes a file upload (alone or as an array of files)."""
        for branch in self._alternatives(schema):
            if "binary" in (branch.get("format"), branch.get("contentEncoding")) or "contentMediaType" in branch:
                return True
            if isinstance(branch.get("items"), dict) and self._is_binary(branch["items"]):
                return True
        return False

    def _coerce(self, value: str, schema: Schema) -> object:
        """Turn a form string into the number, boolean or array the property's schema asks for."""
        types = self._types(schema)
        if "string" in types or not types:
            return value
        if "integer" in types and re.fullmatch(r"-?\d+", value):
            return int(value)
        if "number" in types:
            try:
                return float(value)
            except ValueError:
                pass
        if "boolean" in types and value.lower() in ("true", "false"):
            return value.lower() == "true"
        if "array" in types:
            items: Schema = next(
                (b["items"] for b in self._alternatives(schema) if isinstance(b.get("items"), dict)), {}
            )
            return [self._coerce(value, items)]
        return value


@functools.cache
def _load_validator(spec_path: Path, integer_snowflakes: bool) -> OpenApiValidator:
    """Parse and convert a spec; cached because the OpenAI spec takes about a second to load."""
    return OpenApiValidator(_to_json_schema(_read_document(spec_path), integer_snowflakes))


@functools.cache
def _read_document(spec_path: Path) -> Any:
    """The parsed spec file, shared by both snowflake settings."""
    text = spec_path.read_text(encoding="utf-8")
    if spec_path.suffix == ".json":
        return json.loads(text)
    return yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))


def _to_json_schema(node: Any, integer_snowflakes: bool) -> Any:
    """Rewrite OpenAPI schema dialect into plain JSON Schema 2020-12, returning a new document."""
    if isinstance(node, list):
        return [_to_json_schema(item, integer_snowflakes) for item in node]
    if not isinstance(node, dict):
        return node
    schema = {key: _to_json_schema(value, integer_snowflakes) for key, value in node.items()}
    # OpenAPI 3.0 style, still present in the OpenAI spec: boolean exclusive bounds beside minimum/maximum.
    for exclusive, bound in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
        if isinstance(schema.get(exclusive), bool) and schema.pop(exclusive) and bound in schema:
            schema[exclusive] = schema.pop(bound)
    if integer_snowflakes and schema.get("pattern") == SNOWFLAKE_PATTERN and schema.get("type") == "string":
        schema["type"] = ["string", "integer"]
    # Wrapping rather than extending `type` keeps enums and $refs working with null; `nullable: false` just goes.
    if isinstance(schema.get("nullable"), bool) and schema.pop("nullable"):
        return {"anyOf": [schema, {"type": "null"}]}
    return schema


def _template_segments(template: str) -> tuple[str | None, ...]:
    """A path template's segments, None standing for a `{parameter}` segment."""
    return tuple(
        None if segment.startswith("{") and segment.endswith("}") else segment
        for segment in template.strip("/").split("/")
    )


def _escape(part: str) -> str:
    """Escape one JSON-pointer segment."""
    return part.replace("~", "~0").replace("/", "~1")


def _form_name(name: str) -> str:
    """A form field's property name: `image[]` (a repeated field) is the property `image`."""
    return name.removesuffix("[]")


def _format_errors(errors: Iterable[ValidationError]) -> list[str]:
    """Readable one-line messages, naming the closest branch for oneOf/anyOf failures."""
    messages = []
    for error in sorted(errors, key=lambda e: e.json_path):
        message = _shorten(error.message)
        if error.context:
            # A type mismatch only says the branch was the wrong one; a deeper error says what is wrong.
            closest = min(error.context, key=lambda e: (e.validator == "type", -len(e.relative_path)))
            reason = closest.message
            if closest.validator == "enum":
                # Branches told apart by an enum (a discriminator such as `role`): list every allowed value.
                allowed = [
                    value
                    for branch in error.context
                    if branch.validator == "enum" and branch.relative_path == closest.relative_path
                    for value in branch.validator_value
                ]
                reason = f"{closest.instance!r} is not one of {allowed}"
            message += f" (closest: {closest.json_path}: {_shorten(reason)})"
        messages.append(f"{error.json_path}: {message}")
    return messages


def _shorten(text: str) -> str:
    """Cut a message to MAX_MESSAGE_CHARS."""
    return text if len(text) <= MAX_MESSAGE_CHARS else text[: MAX_MESSAGE_CHARS - 1] + "…"
