"""The live catalogue: loaded once from YAML, synced into the categories table."""
from __future__ import annotations

from functools import lru_cache

from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from server.catalogue.loader import load_catalogue
from server.catalogue.models import Category
from server.catalogue.schemas import Catalogue, CategoryDef, UnknownCategory
from server.config import get_settings
from server.errors import DomainError


@lru_cache
def get_catalogue() -> Catalogue:
    """The catalogue named by settings (validated; a bad file fails at start, not on first use)."""
    return load_catalogue(get_settings().catalogue_file)


def known_category(code: str) -> CategoryDef | None:
    """The category with this code, or None when there is none."""
    try:
        return get_catalogue().get(code)
    except UnknownCategory:
        return None


def category_or_422(code: str) -> CategoryDef:
    """The category with this code, or an `unknown-category` problem naming the field."""
    category = known_category(code)
    if category is None:
        raise DomainError(f"unknown category {code!r}; GET /api/v1/categories lists them",
                          fields=["category"], code="unknown-category", status=422)
    return category


def sync_to_db(session: Session) -> int:
    """Upsert every category into the table (jobs and reports reference it); returns the count."""
    cat = get_catalogue()
    for c in cat.categories:
        row = dict(code=c.code, name=c.name, group=c.group, layer=c.layer, definition=c.model_dump(mode="json"),
                   active=True)
        stmt = insert(Category).values(**row)
        session.execute(stmt.on_conflict_do_update(index_elements=["code"], set_=row))
    # Categories removed from the YAML stay (old jobs refer to them) but stop taking reports.
    session.query(Category).filter(Category.code.notin_(cat.codes())).update({"active": False})
    return len(cat.categories)


def public_view(c: CategoryDef) -> dict:
    """A category as the API and the field app see it."""
    return {
        "code": c.code,
        "name": c.name,
        "group": c.group,
        "keywords": c.keywords,
        "layer": c.layer,
        "snap_radius_m": c.snap_radius_m,
        "max_accuracy_m": c.max_accuracy_m,
        "default_priority": c.default_priority,
        "questions": [
            {
                "code": q.code,
                "prompt": q.prompt,
                "datatype": q.datatype,
                "required": q.required,
                "order": q.order,
                "values": [{"key": v.key, "name": v.name} for v in (q.values or [])],
            }
            for q in c.ordered_questions()
        ],
    }
