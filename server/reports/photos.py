"""Photos: verified by decoding, stripped of metadata, thumbnailed, stored on disk once per client_id."""
from __future__ import annotations

import hashlib
import io
import os
import re
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
ORIENTATION = 0x0112  # EXIF tag


@dataclass(frozen=True)
class CleanImage:
    """An image with no metadata (its pixels as they were, or re-encoded upright), and its thumbnail."""

    data: bytes
    thumb: bytes
    content_type: str
    width: int
    height: int


def _bad(detail: str, code: str = "invalid-photo") -> DomainError:
    return DomainError(detail, fields=["file"], code=code, status=422)


def clean(raw: bytes) -> CleanImage:
    """Verify by decoding (refusing non-images, truncation and bombs) and strip EXIF/GPS/XMP/comments.

    An upright RGB or greyscale JPEG (Huffman-coded, baseline or progressive) keeps its compressed pixels: only
    its metadata segments are left out (`strip_jpeg`), and the stripped copy is decoded at a reduced size
    (`draft`: every coefficient is still read, so a truncated or broken file is refused) to make the thumbnail.
    Anything else (PNG, CMYK, an EXIF orientation to apply, a JPEG whose segments do not parse) is decoded fully
    and re-encoded.
    """
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
                if fmt == "JPEG" and probe.mode in ("RGB", "L") and not _needs_rotation(probe):
                    stripped = strip_jpeg(raw)
                    done = _clean_stripped(stripped, probe.size) if stripped is not None else None
                    if done is not None:
                        return done
                return _reencode(probe, fmt)
    except DomainError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise _bad("the image declares too many pixels (decompression bomb)", "photo-too-large") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        raise _bad("the file is not a readable JPEG or PNG image (or it is truncated)") from None


def _needs_rotation(img: Image.Image) -> bool:
    # The orientation exif_transpose would apply (it also reads XMP's tiff:Orientation when EXIF has none).
    return img.getexif().get(ORIENTATION, 1) in range(2, 9)


def _icc_ok(profile: bytes) -> bool:
    """An ICC profile whose header holds: its own length and the 'acsp' signature (ICC.1 7.2)."""
    return len(profile) >= 128 and int.from_bytes(profile[:4], "big") == len(profile) and profile[36:40] == b"acsp"


def _clean_stripped(data: bytes, size: tuple[int, int]) -> CleanImage | None:
    with Image.open(io.BytesIO(data)) as img:
        icc = img.info.get("icc_profile")
        if img.format != "JPEG" or img.size != size or img.mode not in ("RGB", "L") or (icc and not _icc_ok(icc)):
            return None  # not read the way the original was, or a damaged profile: re-encode the original instead
        img.draft(None, THUMB)  # DCT scaling to 1/2, 1/4 or 1/8 of the size, no smaller than the thumbnail
        img.load()  # still reads every coefficient: a truncated or broken file fails here
        img.thumbnail(THUMB)
        thumb = io.BytesIO()
        img.save(thumb, "JPEG", quality=80, **({"icc_profile": icc} if icc else {}))
    return CleanImage(data, thumb.getvalue(), ALLOWED["JPEG"], size[0], size[1])


def _reencode(probe: Image.Image, fmt: str) -> CleanImage:
    probe.load()  # full decode: a truncated file fails here
    icc = probe.info.get("icc_profile")
    icc = icc if icc and _icc_ok(icc) else None
    img = ImageOps.exif_transpose(probe)
    img = img.convert("RGBA" if fmt == "PNG" and img.mode in ("RGBA", "LA", "P") else "RGB")
    # Pillow's savers fall back on what was read (a JPEG comment, a PNG's text "comment"…): forget all of it, so
    # a fresh save writes pixels only (and the colour profile), and no EXIF, GPS, maker notes or comments survive.
    img.info = {}
    out, thumb = io.BytesIO(), io.BytesIO()
    save_fmt = "PNG" if img.mode == "RGBA" else "JPEG"
    extra = {"icc_profile": icc} if icc else {}
    img.save(out, save_fmt, **({"quality": 88} if save_fmt == "JPEG" else {}), **extra)
    t = img.copy()
    t.thumbnail(THUMB)
    t.save(thumb, save_fmt, **({"quality": 80} if save_fmt == "JPEG" else {}), **extra)
    return CleanImage(out.getvalue(), thumb.getvalue(), ALLOWED[save_fmt], img.width, img.height)


# JPEG markers (ITU-T T.81 B.1.1.3): between SOI and EOI, segments that each carry a two-byte length; a scan's
# entropy-coded data runs to the next marker that is not a byte stuffing (FF00), a restart (FFD0-FFD7) or a fill
# byte (FFFF).
_EOI, _SOS, _APP0, _APP2, _APP14, _COM = 0xD9, 0xDA, 0xE0, 0xE2, 0xEE, 0xFE
# Huffman-coded baseline, extended and progressive frames (what every viewer shows) and their tables, restart
# interval and scans. Arithmetic coding, lossless and hierarchical JPEGs are re-encoded instead.
_CODING = {0xC0, 0xC1, 0xC2, 0xC4, 0xDB, 0xDD, 0xDA}  # SOF0-2, DHT, DQT, DRI, SOS
_SCAN_END = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")


def strip_jpeg(raw: bytes) -> bytes | None:
    """The JPEG with its metadata segments left out and nothing after its end of image; None if it does not parse.

    Kept: the coding segments (quantisation and Huffman tables, frame, scans, restart interval…), the JFIF
    header (APP0, without its embedded thumbnail) and the colour information a viewer needs: the ICC profile
    (APP2 ICC_PROFILE) and Adobe's colour transform (APP14). Left out: EXIF (with GPS and its own thumbnail) and
    XMP (APP1), every other APPn (MPF, IPTC/Photoshop, maker data, JFXX thumbnails), comments (COM), and
    whatever follows the EOI (e.g. the extra images of a multi-picture or gain-map file). Anything but a
    Huffman-coded baseline or progressive JPEG (arithmetic coding, lossless, hierarchical, a reserved marker)
    answers None too, so that it is re-encoded into something every viewer shows.
    """
    n = len(raw)
    if raw[:2] != b"\xff\xd8":
        return None
    view = memoryview(raw)  # slices of it are not copies: the only copy is the join at the end
    out: list[bytes | memoryview] = [b"\xff\xd8"]
    i = 2
    while True:
        if i >= n or raw[i] != 0xFF:
            return None
        while i < n and raw[i] == 0xFF:  # fill bytes before a marker
            i += 1
        if i >= n:
            return None
        marker = raw[i]
        i += 1
        if marker == _EOI:
            out.append(b"\xff\xd9")
            return b"".join(out)
        if i + 2 > n:
            return None
        end = i + int.from_bytes(raw[i:i + 2], "big")
        if end < i + 2 or end > n:
            return None
        if _APP0 <= marker <= 0xEF or marker == _COM:
            if marker == _APP0 and raw.startswith(b"JFIF\x00", i + 2, end) and end - i >= 16:
                out.append(b"\xff\xe0\x00\x10" + raw[i + 2:i + 14] + b"\x00\x00")  # no embedded thumbnail
            elif (marker == _APP2 and raw.startswith(b"ICC_PROFILE\x00", i + 2, end)) or \
                    (marker == _APP14 and raw.startswith(b"Adobe", i + 2, end)):
                out.append(view[i - 2:end])
            i = end
            continue
        if marker not in _CODING:
            return None  # another kind of JPEG, or a marker that has no business here: re-encode
        out.append(view[i - 2:end])
        i = end
        if marker == _SOS:
            found = _SCAN_END.search(raw, i)
            if found is None:
                return None  # no marker after the scan: truncated
            out.append(view[i:found.start()])
            i = found.start()


def _write(path: Path, data: bytes) -> None:
    """Write a file durably and atomically: the bytes reach the disk under a temporary name (fsync), then the
    rename; a directory made on the way is synced into its parent. The caller syncs the file's directory
    (_sync_dir) once its files are in place, before the row that points at them commits."""
    if not path.parent.is_dir():
        path.parent.mkdir(parents=True, exist_ok=True)
        _sync_dir(path.parent.parent)
    tmp = path.with_suffix(path.suffix + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)  # atomic: a reader never sees half a file


def _sync_dir(directory: Path) -> None:
    """fsync a directory: its entries (a rename, a new file) survive a power cut."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def add_photo(session: Session, who: Principal, report: Report, client_id: uuid.UUID, raw: bytes,
              kind: str = "report", *, cleaned: CleanImage | None = None) -> tuple[int, Photo]:
    """Store a photo for a report; the same client_id with the same bytes answers the original (200).
    `cleaned`: clean(raw), when the caller has already checked the photo with it."""
    job = session.get(Job, report.job_id)
    return _store(session, who, job, report, client_id, raw, kind, cleaned)


def add_job_photo(session: Session, who: Principal, job: Job, client_id: uuid.UUID, raw: bytes,
                  kind: str = "completion") -> tuple[int, Photo]:
    """Store a photo taken on a job (e.g. a crew's completion photo), with no report; idempotent per client_id."""
    return _store(session, who, job, None, client_id, raw, kind)


def _store(session: Session, who: Principal, job: Job, report: Report | None, client_id: uuid.UUID, raw: bytes,
           kind: str, cleaned: CleanImage | None = None) -> tuple[int, Photo]:
    digest = hashlib.sha256(raw).hexdigest()
    report_id = report.id if report is not None else None
    existing = session.scalar(select(Photo).where(Photo.client_id == client_id))
    if existing is not None:
        if existing.sha256 != digest or existing.report_id != report_id or existing.job_id != job.id:
            raise Conflict("this photo client_id was already used for a different photo", fields=["client_id"],
                           code="idempotency-conflict")
        return 200, existing
    img = cleaned if cleaned is not None else clean(raw)
    ext = "png" if img.content_type == "image/png" else "jpg"
    rel = Path(job.reference) / f"{client_id}.{ext}"
    root = get_settings().photo_root
    # Files first (on disk), row second: a crash between leaves an orphan file, never a row without a file.
    _write(root / rel, img.data)
    _write(root / rel.with_name(f"{client_id}.thumb.{ext}"), img.thumb)
    _sync_dir((root / rel).parent)  # both renames on disk before the row commits
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
