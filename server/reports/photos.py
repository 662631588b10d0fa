"""Photos: verified by decoding, stripped of metadata, thumbnailed, stored on disk once per client_id."""
from __future__ import annotations

import hashlib
import io
import os
import uuid
import warnings
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageOps, UnidentifiedImageError
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from server import events
from server.config import get_settings
from server.deps import Principal
from server.errors import Conflict, DomainError, PayloadTooLarge
from server.jobs.models import Job
from server.jobs.service import append_event
from server.reports.models import Photo, Report

ALLOWED = {"JPEG": "image/jpeg", "PNG": "image/png"}
MAX_PIXELS = 40_000_000  # 40 MP: bigger than any phone camera, far below a decompression bomb
THUMB = (320, 320)


@dataclass(frozen=True)
class CleanImage:
    """A decoded, re-encoded image with no metadata, and its thumbnail."""

    data: bytes
    thumb: bytes
    content_type: str
    width: int
    height: int


def _bad(detail: str, code: str = "invalid-photo") -> DomainError:
    return DomainError(detail, fields=["file"], code=code, status=422)


def clean(raw: bytes) -> CleanImage:
    """Decode fully (refusing non-images, truncation and bombs) and re-encode without EXIF/GPS tags."""
    limit = get_settings().max_photo_bytes
    if len(raw) > limit:
        raise PayloadTooLarge(f"the photo is {len(raw)} bytes; the limit is {limit}", fields=["file"])
    if not raw:
        raise _bad("the file is empty")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(raw)) as probe:
                fmt = probe.format
                if fmt not in ALLOWED:
                    raise _bad(f"only JPEG and PNG are accepted, not {fmt}", "unsupported-photo-type")
                if probe.width * probe.height > MAX_PIXELS:
                    raise _bad(f"{probe.width}x{probe.height} is too many pixels", "photo-too-large")
                probe.load()  # full decode: a truncated file fails here
                img = ImageOps.exif_transpose(probe)
                img = img.convert("RGBA" if fmt == "PNG" and img.mode in ("RGBA", "LA", "P") else "RGB")
    except DomainError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise _bad("the image declares too many pixels (decompression bomb)", "photo-too-large") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        raise _bad("the file is not a readable JPEG or PNG image (or it is truncated)") from None
    out, thumb = io.BytesIO(), io.BytesIO()
    save_fmt = "PNG" if img.mode == "RGBA" else "JPEG"
    # A fresh save writes pixels only: no EXIF, GPS or maker notes survive.
    img.save(out, save_fmt, **({"quality": 88} if save_fmt == "JPEG" else {}))
    t = img.copy()
    t.thumbnail(THUMB)
    t.save(thumb, save_fmt, **({"quality": 80} if save_fmt == "JPEG" else {}))
    return CleanImage(out.getvalue(), thumb.getvalue(), ALLOWED[save_fmt], img.width, img.height)


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)  # atomic: a reader never sees half a file


def add_photo(session: Session, who: Principal, report: Report, client_id: uuid.UUID, raw: bytes,
              kind: str = "report") -> tuple[int, Photo]:
    """Store a photo for a report; the same client_id with the same bytes answers the original (200)."""
    job = session.get(Job, report.job_id)
    return _store(session, who, job, report, client_id, raw, kind)


def add_job_photo(session: Session, who: Principal, job: Job, client_id: uuid.UUID, raw: bytes,
                  kind: str = "completion") -> tuple[int, Photo]:
    """Store a photo taken on a job (e.g. a crew's completion photo), with no report; idempotent per client_id."""
    return _store(session, who, job, None, client_id, raw, kind)


def _store(session: Session, who: Principal, job: Job, report: Report | None, client_id: uuid.UUID, raw: bytes,
           kind: str) -> tuple[int, Photo]:
    digest = hashlib.sha256(raw).hexdigest()
    report_id = report.id if report is not None else None
    existing = session.scalar(select(Photo).where(Photo.client_id == client_id))
    if existing is not None:
        if existing.sha256 != digest or existing.report_id != report_id or existing.job_id != job.id:
            raise Conflict("this photo client_id was already used for a different photo", fields=["client_id"],
                           code="idempotency-conflict")
        return 200, existing
    img = clean(raw)
    ext = "png" if img.content_type == "image/png" else "jpg"
    rel = Path(job.reference) / f"{client_id}.{ext}"
    root = get_settings().photo_root
    # Files first, row second: a crash between leaves an orphan file, never a row without a file.
    _write(root / rel, img.data)
    _write(root / rel.with_name(f"{client_id}.thumb.{ext}"), img.thumb)
    photo = Photo(client_id=client_id, report_id=report_id, job_id=job.id, kind=kind,
                  content_type=img.content_type, width=img.width, height=img.height, size_bytes=len(img.data),
                  sha256=digest, path=str(rel), thumb_path=str(rel.with_name(f"{client_id}.thumb.{ext}")),
                  token_id=who.token_id)
    session.add(photo)
    try:
        session.flush()
        data = {"photo": photo.id, "report": report.reference} if report is not None else {"photo": photo.id,
                                                                                          "kind": kind}
        append_event(session, job, events.PHOTO_ADDED, who, data=data)
        session.commit()
    except IntegrityError:
        session.rollback()
        again = session.scalar(select(Photo).where(Photo.client_id == client_id))
        if again is not None and again.sha256 == digest:
            return 200, again
        raise
    return 201, photo


def photo_view(p: Photo) -> dict:
    """A photo as the API shows it."""
    return {"id": p.id, "client_id": str(p.client_id), "kind": p.kind, "content_type": p.content_type,
            "width": p.width, "height": p.height, "size_bytes": p.size_bytes,
            "url": f"/api/v1/photos/{p.id}", "thumbnail_url": f"/api/v1/photos/{p.id}?thumbnail=true",
            "created_at": p.created_at.isoformat() if p.created_at else None}
