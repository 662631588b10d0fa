"""GeoReport v2 documents rendered as XML or JSON from one canonical form (no web framework here).

A document is a root name and a body. In JSON the body is the answer itself (a list or an object);
in XML the root name is the root element and every list gets one child element per item, named
as GeoReport v2 and the updates extension write them (`<service_requests><request>…`).
"""
from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import Any

FORMATS = ("xml", "json")
MEDIA_TYPES = {"xml": "text/xml; charset=utf-8", "json": "application/json; charset=utf-8"}

# The element of one item of each list.
ITEM_NAMES = {
    "services": "service", "service_requests": "request", "service_request_updates": "request_update",
    "attributes": "attribute", "values": "value", "errors": "error", "endpoints": "endpoint",
    "formats": "format",
}

# Characters XML 1.0 cannot carry at all (user text may hold them; the document must stay well-formed).
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff\ud800-\udfff]")


@dataclass(frozen=True)
class Document:
    """One answer: `root` names the XML root element; `body` is the JSON answer."""

    root: str
    body: list | dict


class Repeated(list):
    """A field that may hold several values: in XML the element repeats (FixMyStreet reads `<media_url>` twice
    as a list); in JSON, whose clients expect one string, it is the first value (or "")."""


@dataclass(frozen=True)
class JsonOnly:
    """A field only the JSON form carries (the XML form says the same another way)."""

    value: Any


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return _NOT_XML.sub("\ufffd", str(value))


def _fill(element: ET.Element, name: str, value: Any) -> None:
    if isinstance(value, list):
        item = ITEM_NAMES.get(name, name[:-1] if name.endswith("s") else name + "_item")
        for entry in value:
            _fill(ET.SubElement(element, item), item, entry)
    elif isinstance(value, dict):
        for key, sub in value.items():
            if isinstance(sub, JsonOnly):
                continue
            if isinstance(sub, Repeated):
                for entry in sub or [""]:
                    ET.SubElement(element, key).text = _text(entry)
                continue
            _fill(ET.SubElement(element, key), key, sub)
    else:
        element.text = _text(value)


def to_xml(doc: Document) -> bytes:
    """The document as UTF-8 XML with the declaration GeoReport v2 asks for."""
    root = ET.Element(doc.root)
    _fill(root, doc.root, doc.body)
    ET.indent(root)
    return b'<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(root, encoding="utf-8",
                                                                       xml_declaration=False) + b"\n"


def to_json(doc: Document) -> bytes:
    """The document's body as UTF-8 JSON."""
    return json.dumps(_json_form(doc.body), ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def _json_form(value: Any) -> Any:
    if isinstance(value, Repeated):
        return _json_form(value[0]) if value else ""
    if isinstance(value, JsonOnly):
        return _json_form(value.value)
    if isinstance(value, list):
        return [_json_form(v) for v in value]
    if isinstance(value, dict):
        return {k: _json_form(v) for k, v in value.items()}
    return value


def render(doc: Document, fmt: str) -> tuple[bytes, str]:
    """(bytes, media type) of the document in `fmt` ("xml" or "json")."""
    if fmt == "json":
        return to_json(doc), MEDIA_TYPES["json"]
    return to_xml(doc), MEDIA_TYPES["xml"]


def errors(status: int, descriptions: list[str]) -> Document:
    """GeoReport's error list: one {code, description} per problem."""
    return Document("errors", [{"code": status, "description": d} for d in descriptions])
