"""Pages for the public, no sign-in: a report's status (/r/{reference}) and the unsubscribe link (/u/{token}).

Server-rendered HTML that works without JavaScript (the map is an enhancement; the place is also in words).
Nothing personal: no names, contacts, descriptions (free text may hold them) or photos.
"""
from __future__ import annotations

import re
from datetime import datetime, timezone
from html import escape
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Query
from fastapi.responses import HTMLResponse
from sqlalchemy import select, text

from server.catalogue.service import get_catalogue
from server.config import get_settings
from server.contact_centre.web import _csp
from server.jobs import sla
from server.notifications import contacts
from server.notifications.templates import catalogue
from server.reports.models import Report
from server.deps import SessionDep

router = APIRouter(tags=["public"])
_REFERENCE = re.compile(r"\b[JR]-\d{6}\b")
Lang = Query("en", pattern="^(en|cy)$", description="en or cy (Welsh; English where not yet translated)")

_STATUS = text("""
    SELECT j.reference, j.status, j.category_code, j.street, j.due_at, j.updated_at,
           ST_Y(ST_Transform(j.geom, 4326)) AS lat, ST_X(ST_Transform(j.geom, 4326)) AS lon,
           (SELECT a.name FROM areas a WHERE a.id = j.ward_id) AS ward,
           (SELECT e.data || jsonb_build_object('note', e.note) FROM job_events e
             WHERE e.job_id = j.id AND e.type = 'status_changed' ORDER BY e.id DESC LIMIT 1) AS last_move
      FROM reports r JOIN jobs j ON j.id = r.job_id WHERE r.reference = :reference
""")


def _page(title: str, body: str, lang: str, status: int = 200, head: str = "") -> HTMLResponse:
    html = f"""<!doctype html>
<html lang="{lang}">
<head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{escape(title)} – {escape(get_settings().council_name)}</title>{head}
<style>
body {{ font-family: system-ui, sans-serif; font-size: 1.1rem; line-height: 1.5; margin: 0; color: #0b0c0c; }}
header {{ background: #0b0c0c; color: #fff; padding: .75rem 1rem; }}
main {{ max-width: 40rem; margin: 0 auto; padding: 1rem; }}
dt {{ font-weight: 700; margin-top: 1rem; }} dd {{ margin: 0; }}
#map {{ height: 16rem; margin-top: .5rem; border: 1px solid #505a5f; }} #map:empty {{ display: none; }}
a {{ color: #1d70b8; }} a:focus, button:focus {{ outline: 3px solid #fd0; }}
button {{ font-size: 1.1rem; padding: .5rem 1rem; background: #00703c; color: #fff; border: 0; }}
.small {{ color: #505a5f; font-size: 1rem; }}
</style></head>
<body><header><span>{escape(get_settings().council_name)}</span></header>
<main id="content">{body}</main></body></html>"""
    return HTMLResponse(html, status_code=status, headers={
        "Content-Security-Policy": _csp(), "X-Frame-Options": "DENY", "Cache-Control": "no-cache",
        "Referrer-Policy": "no-referrer"})


def _when(dt: datetime, tz: str) -> str:
    return dt.astimezone(ZoneInfo(tz)).strftime("%-d %B %Y at %H:%M")


def _status_words(words: dict, status: str, last_move: dict | None) -> str:
    move = last_move or {}
    if status == "cancelled" and move.get("reason") == "not_councils_responsibility":
        return words["cancelled_not_councils_responsibility"]
    if status == "duplicate":
        found = _REFERENCE.search(" ".join(str(v) for v in (move.get("reason"), move.get("note")) if v))
        return words["duplicate"].format(other=found.group(0) if found else "another report")
    return words[status]


@router.get("/r/{reference}", response_class=HTMLResponse, summary="Public: the status of a report (HTML)")
def status_page(reference: str, session: SessionDep, lang: str = Lang) -> HTMLResponse:
    """What was reported, where, what is happening, the promised date and the last update; nothing personal."""
    m = catalogue(lang)
    s = get_settings()
    ref = reference.upper()[:32]
    row = session.execute(_STATUS, {"reference": ref}).first()
    if row is None:
        return _page(m["not_found_title"], f"<h1>{escape(m['not_found_title'])}</h1>"
                     f"<p>{escape(m['not_found'].format(reference=ref))}</p>", lang, 404)
    try:
        what = get_catalogue().get(row.category_code).name
    except Exception:
        what = row.category_code.replace("_", " ")
    where = ", ".join(escape(v) for v in (row.street, row.ward) if v) or escape(s.council_name)
    now = datetime.now(timezone.utc)
    finished = row.status in ("completed", "closed", "cancelled", "duplicate")
    promised = (escape(sla.describe_due(row.due_at, now, s.timezone)) if row.due_at and not finished
                else escape(m["promised_none"]) if not finished else "—")
    lat, lon = round(row.lat, 4), round(row.lon, 4)
    osm = f"https://www.openstreetmap.org/?mlat={lat}&amp;mlon={lon}#map=18/{lat}/{lon}"
    body = f"""<h1>{escape(m['heading'].format(reference=ref))}</h1>
<dl>
<dt>{escape(m['what'])}</dt><dd>{escape(what)}</dd>
<dt>{escape(m['where'])}</dt><dd>{where}
  <p><a href="{osm}">{escape(m['map_fallback'])}</a></p>
  <div id="map" role="region" aria-label="{escape(m['map_label'])}" data-lat="{lat}" data-lon="{lon}"
       data-tiles="{escape(s.map_tiles_url)}" data-attribution="{escape(s.map_tiles_attribution)}"></div></dd>
<dt>{escape(m['status'])}</dt><dd id="status">{escape(_status_words(m['status_words'], row.status, row.last_move))}</dd>
<dt>{escape(m['promised'])}</dt><dd id="promised">{promised}</dd>
<dt>{escape(m['last_update'])}</dt><dd id="updated">{escape(_when(row.updated_at, s.timezone))}</dd>
<dt>{escape(m['reference_of_job'])}</dt><dd>{escape(row.reference)}</dd>
</dl>
<p class="small">{escape(m['no_personal_data'])}</p>
<script src="/dashboard/vendor/leaflet/leaflet.js" defer></script>
<script src="/dashboard/js/status-map.js" defer></script>"""
    head = '\n<link rel="stylesheet" href="/dashboard/vendor/leaflet/leaflet.css">'
    return _page(m["page_title"].format(reference=ref), body, lang, head=head)


def _token_report(session, token: str) -> str | None:
    return session.scalar(select(Report.reference).join(
        contacts.ReporterContact, contacts.ReporterContact.report_id == Report.id)
        .where(contacts.by_token(token)))


@router.get("/u/{token}", response_class=HTMLResponse, summary="Public: the unsubscribe page of a message")
def unsubscribe_page(token: str, session: SessionDep, lang: str = Lang) -> HTMLResponse:
    """A button that stops updates about one report (a GET alone changes nothing: mail scanners follow links)."""
    m = catalogue(lang)
    ref = _token_report(session, token)
    if ref is None:
        return _page(m["unsubscribe_unknown"], f"<h1>{escape(m['unsubscribe_unknown'])}</h1>", lang, 404)
    title = m["unsubscribe_title"].format(reference=ref)
    return _page(title, f"""<h1>{escape(title)}</h1><p>{escape(m['unsubscribe_ask'])}</p>
<form method="post" action="/u/{escape(token)}"><button type="submit">{escape(m['unsubscribe_button'])}</button></form>""",
                 lang)


@router.post("/u/{token}", response_class=HTMLResponse, summary="Public: stop updates (also one-click, RFC 8058)")
def unsubscribe(token: str, session: SessionDep, lang: str = Lang) -> HTMLResponse:
    """Stop every message about this report to this reporter (the one-click body is not needed)."""
    m = catalogue(lang)
    c = contacts.unsubscribe_token(session, token)
    if c is None:
        return _page(m["unsubscribe_unknown"], f"<h1>{escape(m['unsubscribe_unknown'])}</h1>", lang, 404)
    ref = session.scalar(select(Report.reference).where(Report.id == c.report_id))
    done = m["unsubscribed"].format(reference=ref)
    return _page(done, f"<h1>{escape(done)}</h1><p><a href=\"/r/{escape(ref)}\">{escape(ref)}</a></p>", lang)
