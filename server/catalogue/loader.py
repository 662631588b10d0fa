"""Read and validate the category catalogue YAML, with errors that name the category and field."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from server.catalogue.schemas import Catalogue

DEFAULT_PATH = Path(__file__).resolve().parents[2] / "gis_data" / "categories.yaml"


class CatalogueError(ValueError):
    """The catalogue file is missing, not YAML, or breaks a rule; the message names where."""


def _where(raw: Any, loc: tuple) -> str:
    """Turn a pydantic loc into "category 'graffiti', field questions[offensive].values"."""
    parts = list(loc)
    prefix = ""
    node = raw
    if len(parts) >= 2 and parts[0] == "categories" and isinstance(parts[1], int):
        cats = raw.get("categories") if isinstance(raw, dict) else None
        entry = cats[parts[1]] if isinstance(cats, list) and parts[1] < len(cats) else None
        code = entry.get("code") if isinstance(entry, dict) else None
        prefix = f"category {code!r}" if code else f"category #{parts[1] + 1}"
        parts, node = parts[2:], entry
    out = ""
    for p in parts:
        if isinstance(p, int):
            # Name list items by their code/key where they have one: questions[offensive].
            item = node[p] if isinstance(node, list) and p < len(node) else None
            label = item.get("code") or item.get("key") if isinstance(item, dict) else None
            out += f"[{label}]" if label else f"[{p}]"
            node = item
        elif p in ("function-after", "function-before") or str(p).startswith(("function-", "tagged-union")):
            continue
        else:
            out += f".{p}" if out else str(p)
            node = node.get(p) if isinstance(node, dict) else None
    if prefix:
        return f"{prefix}, field {out}" if out else prefix
    return f"field {out}" if out else "top level"


def parse_catalogue(raw: Any, source: str = "catalogue") -> Catalogue:
    """Validate already-parsed YAML data; raises CatalogueError naming category and field."""
    try:
        return Catalogue.model_validate(raw)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            msg = err["msg"].removeprefix("Value error, ")
            lines.append(f"{_where(raw, err['loc'])}: {msg}")
        raise CatalogueError(f"{source}: invalid catalogue:\n  " + "\n  ".join(lines)) from None


def load_catalogue(path: str | Path = DEFAULT_PATH) -> Catalogue:
    """Load and validate the catalogue YAML at `path`; raises CatalogueError."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise CatalogueError(f"{path}: cannot read catalogue: {exc.strerror or exc}") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise CatalogueError(f"{path}:{where} not valid YAML: {getattr(exc, 'problem', None) or exc}") from None
    return parse_catalogue(raw, source=str(path))
