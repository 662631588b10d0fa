"""Photos for the queue: copied into the app's store, downscaled on the device when too large (Pillow)."""
from __future__ import annotations

import io
import uuid
from pathlib import Path

from PIL import Image, ImageOps

MAX_SIDE = 2048  # plenty to see a fault; a 12 MP original is 4000 px
MAX_BYTES = 1_500_000  # well under the server's 10 MB limit, and kind to a weak signal
QUALITY = 85


def prepare(source: str | Path, dest_dir: str | Path, max_side: int = MAX_SIDE, max_bytes: int = MAX_BYTES) -> Path:
    """A copy of the photo in dest_dir, downscaled and re-encoded as JPEG if it is too big; its path."""
    src = Path(source)
    raw = src.read_bytes()
    dest = Path(dest_dir) / f"{uuid.uuid4()}.jpg"
    with Image.open(io.BytesIO(raw)) as probe:
        fmt, size = probe.format, probe.size
        if fmt in ("JPEG", "PNG") and len(raw) <= max_bytes and max(size) <= max_side:
            dest = dest.with_suffix(".png" if fmt == "PNG" else ".jpg")
            dest.write_bytes(raw)  # small enough: send as taken
            return dest
        img = ImageOps.exif_transpose(probe)  # the phone's rotation, before the EXIF is dropped
        img = img.convert("RGB")
    img.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    quality = QUALITY
    while True:
        buf = io.BytesIO()
        img.save(buf, "JPEG", quality=quality, optimize=True)
        if buf.tell() <= max_bytes or quality <= 40:
            break
        quality -= 15  # rare: a very detailed picture
    dest.write_bytes(buf.getvalue())
    return dest


def size_of(path: str | Path) -> tuple[int, int]:
    """(width, height) of an image file."""
    with Image.open(path) as im:
        return im.size
