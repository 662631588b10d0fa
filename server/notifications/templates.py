"""Which message each job change sends, the Notify templates' text, and the plain-language catalogue."""
from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
TEMPLATES_FILE = HERE / "templates.yaml"
PLACEHOLDER = re.compile(r"\(\(([a-z_]+)\)\)")
KINDS = ("email", "sms")


@lru_cache
def templates(path: str = str(TEMPLATES_FILE)) -> dict[str, dict[str, dict]]:
    """{event key: {kind: {id, subject?, body}}} as in templates.yaml."""
    return yaml.safe_load(Path(path).read_text())


def template_id(key: str, kind: str) -> str:
    """The Notify template id for this event and kind."""
    return templates()[key][kind]["id"]


def placeholders(text: str) -> list[str]:
    """The ((placeholders)) of a template text, in order, once each."""
    return list(dict.fromkeys(PLACEHOLDER.findall(text)))


def render(text: str, values: dict[str, str]) -> str:
    """Fill ((placeholders)) the way Notify does (every one must have a value)."""
    return PLACEHOLDER.sub(lambda m: str(values[m.group(1)]), text)


def event_template(to_status: str, data: dict | None) -> str | None:
    """The message a move to `to_status` sends reporters, or None (most moves send nothing)."""
    data = data or {}
    if to_status == "scheduled":
        return "scheduled"
    if to_status == "completed":
        return "fixed"
    if to_status == "duplicate":
        return "duplicate"
    if to_status == "cancelled":
        return "not_ours" if data.get("reason") == "not_councils_responsibility" else "closed"
    return None


@lru_cache
def catalogue(lang: str = "en") -> dict:
    """The status page's words in `lang`, falling back to English key by key."""
    english = yaml.safe_load((HERE / "messages" / "en.yaml").read_text())
    path = HERE / "messages" / f"{lang}.yaml"
    if lang == "en" or not path.is_file():
        return english
    other = yaml.safe_load(path.read_text()) or {}
    return {**english, **other, "status_words": {**english["status_words"], **other.get("status_words", {})}}
