"""Cleaning a photo: metadata left out without touching the pixels when it can be, re-encoded upright when not."""
from __future__ import annotations

import io
import uuid

import numpy as np
import pytest
from PIL import Image, ImageCms, ImageOps, PngImagePlugin
from sqlalchemy import select

from server.config import get_settings
from server.errors import DomainError
from server.reports.models import Photo
from server.reports.photos import clean, strip_jpeg
from tests.conftest import auth
from tests.server.test_intake import body, post

GPS = {1: "N", 2: (51.0, 22.0, 48.0), 3: "W", 4: (2.0, 21.0, 32.0)}
XMP = (b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
       b'<rdf:Description xmlns:xmp="http://ns.adobe.com/xap/1.0/" xmp:CreatorTool="SecretXmpTool"/>'
       b'</rdf:RDF></x:xmpmeta>')
XMP_ROTATED = XMP.replace(b'xmp:CreatorTool="SecretXmpTool"',
                          b'xmlns:tiff="http://ns.adobe.com/tiff/1.0/" tiff:Orientation="6"')
ICC = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
SECRETS = (b"SecretPhoneMaker", b"SecretXmpTool", b"SecretComment", b"SecretTrailer")


def picture(size=(320, 200), mode="RGB", seed=1) -> Image.Image:
    """Noise over a gradient: every pixel matters, so a re-encode could not come out identical."""
    w, h = size
    rng = np.random.default_rng(seed)
    grad = np.linspace(0, 180, w)[None, :, None] + np.linspace(0, 60, h)[:, None, None]
    arr = (grad + rng.integers(0, 60, (h, w, 3))).clip(0, 255).astype(np.uint8)
    return Image.fromarray(arr).convert(mode)


def exif(orientation: int | None = None) -> Image.Exif:
    e = Image.Exif()
    e[0x010F] = "SecretPhoneMaker"  # Make
    e[0x8825] = GPS  # GPSInfo
    if orientation is not None:
        e[0x0112] = orientation
    return e


def jpeg(img: Image.Image, trailer: bytes = b"", **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=90, **kw)
    return buf.getvalue() + trailer


def laden(img: Image.Image, orientation: int | None = None, **kw) -> bytes:
    """A JPEG with EXIF (maker, GPS), XMP, a comment and an ICC profile, and a second image after its end."""
    trailer = jpeg(picture((16, 16), seed=9), exif=exif()) + b"SecretTrailer"
    return jpeg(img, trailer, exif=exif(orientation), xmp=XMP, comment=b"SecretComment", icc_profile=ICC, **kw)


def pixels(data: bytes) -> tuple[str, tuple[int, int], bytes]:
    with Image.open(io.BytesIO(data)) as im:
        return im.mode, im.size, im.tobytes()


def markers(data: bytes) -> list[tuple[int, bytes]]:
    """(marker, first bytes of its body) for the segments before the first scan."""
    out, i = [], 2
    while data[i + 1] != 0xDA:
        n = int.from_bytes(data[i + 2:i + 4], "big")
        out.append((data[i + 1], data[i + 4:i + 4 + 12]))
        i += 2 + n
    return out


@pytest.mark.parametrize("mode,options", [("RGB", {}), ("RGB", {"progressive": True}), ("L", {}),
                                          ("RGB", {"subsampling": 0, "optimize": True}), ("RGB", {"keep_rgb": True})],
                         ids=["baseline", "progressive", "greyscale", "444-optimized", "adobe-rgb"])
def test_an_upright_jpeg_loses_its_metadata_and_keeps_its_pixels(mode, options):
    raw = laden(picture(mode=mode), **options)
    assert all(s in raw for s in SECRETS) and Image.open(io.BytesIO(raw)).getexif().get_ifd(0x8825) == GPS
    c = clean(raw)
    assert not any(s in c.data + c.thumb for s in SECRETS)
    assert pixels(c.data) == pixels(raw)  # the compressed image itself is untouched: pixel for pixel
    assert (c.width, c.height, c.content_type) == (320, 200, "image/jpeg")
    with Image.open(io.BytesIO(c.data)) as stored:
        assert not stored.getexif() and "xmp" not in stored.info and "comment" not in stored.info
        assert stored.info.get("icc_profile") == ICC  # colour information stays
        assert stored.mode == mode
    assert c.data.endswith(b"\xff\xd9") and len(c.data) < len(raw)
    with Image.open(io.BytesIO(c.thumb)) as t:
        assert t.size == (320, 200) and t.mode == mode
        t.load()
    assert pixels(clean(jpeg(picture((1280, 800), mode=mode), exif=exif(), **options)).thumb)[1] == (320, 200)


def test_the_stored_copy_keeps_only_coding_segments_and_colour_information():
    img = picture()
    raw = laden(img)
    kept = markers(clean(raw).data)
    apps = sorted({m for m, _ in kept if 0xE0 <= m <= 0xEF or m == 0xFE})
    assert apps == [0xE0, 0xE2]  # JFIF header and ICC profile; no APP1 (EXIF, XMP), no COM
    assert [b for m, b in kept if m == 0xE2] == [b"ICC_PROFILE\x00"]
    assert {0xDB, 0xC4, 0xC0} <= {m for m, _ in kept}  # quantisation and Huffman tables, the frame
    adobe = clean(jpeg(img, keep_rgb=True, exif=exif()))
    assert [m for m, _ in markers(adobe.data) if 0xE0 <= m <= 0xEF] == [0xEE]  # Adobe's colour transform


def test_a_jfif_thumbnail_and_jfxx_extension_are_left_out():
    raw = jpeg(picture())
    assert raw[2:4] == b"\xff\xe0" and raw[6:11] == b"JFIF\x00"
    rest = raw[4 + int.from_bytes(raw[4:6], "big"):]
    jfif = raw[6:18] + bytes([2, 2]) + b"SecretThumb!"  # the header with a 2x2 RGB thumbnail
    jfxx = b"JFXX\x00\x13\x02\x02" + b"SecretJfxx!!"  # an extension holding another thumbnail
    forged = (b"\xff\xd8" + b"\xff\xe0" + (2 + len(jfif)).to_bytes(2, "big") + jfif
              + b"\xff\xe0" + (2 + len(jfxx)).to_bytes(2, "big") + jfxx + rest)
    assert pixels(forged) == pixels(raw)
    out = strip_jpeg(forged)
    assert b"Secret" not in out
    assert out == raw  # the JFIF header is kept, with no thumbnail, exactly as Pillow wrote it


@pytest.mark.parametrize("source", ["exif", "xmp"])
def test_a_rotated_photo_is_stored_upright_without_metadata(source):
    img = picture((320, 200))
    raw = laden(img, orientation=6) if source == "exif" else jpeg(img, xmp=XMP_ROTATED, comment=b"SecretComment")
    c = clean(raw)
    assert (c.width, c.height) == (200, 320)
    with Image.open(io.BytesIO(c.data)) as stored:
        assert stored.size == (200, 320) and not stored.getexif() and "xmp" not in stored.info
        upright = np.asarray(ImageOps.exif_transpose(Image.open(io.BytesIO(raw))), np.int16)
        assert np.abs(np.asarray(stored, np.int16) - upright).mean() < 4  # re-encoded: close, not identical
    assert not any(s in c.data + c.thumb for s in SECRETS)  # the comment too (Pillow would carry it over)
    with Image.open(io.BytesIO(c.thumb)) as t:
        assert t.size == (200, 320)


def test_orientation_one_keeps_the_pixels():
    raw = laden(picture(), orientation=1)
    assert pixels(clean(raw).data) == pixels(raw)


def test_a_cmyk_jpeg_is_re_encoded_as_rgb():
    raw = jpeg(picture().convert("CMYK"), exif=exif(), comment=b"SecretComment")
    c = clean(raw)
    with Image.open(io.BytesIO(c.data)) as stored:
        assert stored.mode == "RGB" and not stored.getexif()
    assert not any(s in c.data + c.thumb for s in SECRETS)


def test_a_png_is_re_encoded_without_its_metadata():
    text = PngImagePlugin.PngInfo()
    text.add_text("Comment", "SecretComment")
    text.add_text("comment", "SecretComment")
    buf = io.BytesIO()
    picture().save(buf, "PNG", exif=exif(), icc_profile=ICC, pnginfo=text)
    assert b"SecretComment" in buf.getvalue()
    c = clean(buf.getvalue())
    assert c.content_type == "image/jpeg" and not any(s in c.data + c.thumb for s in SECRETS)
    with Image.open(io.BytesIO(c.data)) as stored:
        assert not stored.getexif() and "comment" not in stored.info and stored.info.get("icc_profile") == ICC


def _cut_inside_the_scan(raw: bytes) -> bytes:
    return raw[:len(raw) - 300]


def _length_off_by_one(raw: bytes) -> bytes:
    i = raw.index(b"\xff\xdb")  # a quantisation table one byte longer than it is: the next marker is missed
    return raw[:i + 2] + (int.from_bytes(raw[i + 2:i + 4], "big") + 1).to_bytes(2, "big") + raw[i + 4:]


def _no_end_of_image(raw: bytes) -> bytes:
    return raw[:-2]


def _garbage_scan(raw: bytes) -> bytes:
    i = raw.index(b"\xff\xda")
    return raw[:i + 14] + bytes(range(256)) * 8  # the scan is noise, with no end


@pytest.mark.parametrize("damage", [_cut_inside_the_scan, _length_off_by_one, _no_end_of_image, _garbage_scan])
@pytest.mark.parametrize("options", [{}, {"progressive": True}], ids=["baseline", "progressive"])
def test_a_damaged_jpeg_is_refused(damage, options):
    raw = damage(jpeg(picture(), exif=exif(), comment=b"SecretComment", **options))
    assert strip_jpeg(raw) is None
    with pytest.raises(DomainError) as err:
        clean(raw)
    assert err.value.status == 422 and err.value.code == "invalid-photo"


def test_strip_refuses_what_is_not_a_jpeg_stream():
    assert strip_jpeg(b"") is None
    assert strip_jpeg(b"\x89PNG\r\n\x1a\n") is None
    assert strip_jpeg(b"\xff\xd8\xff") is None
    assert strip_jpeg(b"\xff\xd8\x00\x00") is None
    raw = jpeg(picture())
    assert strip_jpeg(raw) == raw  # Pillow writes nothing to leave out
    sof = raw.index(b"\xff\xc0")
    for other in (b"\xff\xc3", b"\xff\xc9", b"\xff\xca"):  # lossless, arithmetic: not every viewer shows them
        assert strip_jpeg(raw[:sof] + other + raw[sof + 2:]) is None
    assert strip_jpeg(raw[:sof] + b"\xff\xd0" + raw[sof:]) is None  # a restart marker outside a scan


@pytest.fixture
def photo_root(tmp_path, monkeypatch):
    monkeypatch.setattr(get_settings(), "photo_root", tmp_path)
    return tmp_path


def test_an_uploaded_photo_is_stored_stripped_with_its_pixels(client, tokens, db, photo_root):
    rep = post(client, tokens["field_worker"], body()).json()
    raw = laden(picture((640, 480)), progressive=True)
    r = client.post(f"/api/v1/reports/{rep['reference']}/photos", headers=auth(tokens["field_worker"]),
                    data={"client_id": str(uuid.uuid4())}, files={"file": ("p.jpg", raw, "image/jpeg")})
    assert r.status_code == 201, r.text
    p = r.json()
    assert (p["width"], p["height"]) == (640, 480)
    served = client.get(p["url"], headers=auth(tokens["advisor"])).content
    assert not any(s in served for s in SECRETS) and pixels(served) == pixels(raw)
    row = db.scalar(select(Photo).where(Photo.id == p["id"]))
    assert (photo_root / row.path).read_bytes() == served and row.size_bytes == len(served)
    thumb = client.get(p["thumbnail_url"], headers=auth(tokens["advisor"])).content
    with Image.open(io.BytesIO(thumb)) as t:
        assert t.size == (320, 240)
