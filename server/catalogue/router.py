"""GET /api/v1/categories: the catalogue as the field app and integrators see it."""
from __future__ import annotations

from fastapi import APIRouter

from server.catalogue.service import category_or_422, get_catalogue, public_view

router = APIRouter(prefix="/api/v1", tags=["categories"])


@router.get("/categories", summary="List categories with their questions")
def list_categories() -> list[dict]:
    """Every category with its code, name, group, asset layer and questions."""
    return [public_view(c) for c in get_catalogue().categories]


@router.get("/categories/{code}", summary="One category")
def get_category(code: str) -> dict:
    """One category by code (404 problem if unknown)."""
    from server.errors import NotFound

    try:
        return public_view(category_or_422(code))
    except Exception:
        raise NotFound(f"unknown category {code!r}", fields=["code"], code="unknown-category") from None
