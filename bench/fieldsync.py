"""Field sync: 200 reports queued on the device, each with a 1–2 MB JPEG, sent by the field app's own core
(mobile/fieldapp/core: FieldCore, its outbox and sync loop, 4 in flight) to the real API over loopback.

Timed from the sync loop's start to the last item marked sent; then checked exactly-once in the database: each
client_id is one report, each photo's client_id one photo row, and the device holds the server's reference.
The photos are queued as taken (not through `photos.prepare`, which would re-encode anything over 1.5 MB), so
the bytes on the wire are the 1–2 MB asked for.

bench/suite.py calls `measure()`. On its own, before/after in one run (the API started from each checkout in
turn, rounds alternating which goes first; the client is this checkout's), on the shared bench database:

    git archive BASE | tar -x -C /tmp/kerbside-base
    .venv/bin/python -m bench.fieldsync --code /tmp/kerbside-base --code . --rounds 3
"""
from __future__ import annotations

import json
import os
import random
import shutil
import tempfile
import time
from pathlib import Path
from typing import Annotated

import psycopg
import typer

cli = typer.Typer(add_completion=False, pretty_exceptions_enable=False)

SIDES = (1080, 1140, 1200, 1260, 1320, 1380, 1440, 1480)  # 1.05–1.95 MB at quality 90


def make_photos(folder: Path, n: int, seed: int = 5) -> list[Path]:
    """n distinct JPEGs of 1–2 MB (noise over a gradient, so they neither compress away nor repeat)."""
    import io

    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        side = SIDES[i % len(SIDES)]  # a few sizes; each photo gets its own noise
        arr = rng.integers(0, 256, (side, side, 3), dtype=np.uint8)
        buf = io.BytesIO()
        Image.fromarray(arr).save(buf, "JPEG", quality=90)
        data = buf.getvalue()
        p = folder / f"photo-{i:03d}.jpg"
        p.write_bytes(data)
        out.append(p)
    return out


def measure(base_url: str, token: str, coords: Path, db_url: str, n: int = 200, timeout: float = 180) -> dict:
    """Queue n reports with photos, sync them, check exactly-once; figures."""
    from mobile.fieldapp.core.models import FAILED, SENT, Fix
    from mobile.fieldapp.core.reports import Draft
    from mobile.fieldapp.core.service import FieldCore

    pts = [tuple(map(float, line.split())) for line in coords.read_text().splitlines() if line.strip()]
    rng = random.Random(11)
    tmp = Path(tempfile.mkdtemp(prefix="kerbside-fieldsync-"))
    try:
        (tmp / "camera").mkdir()
        photos = make_photos(tmp / "camera", n)
        sizes = [p.stat().st_size for p in photos]
        core = FieldCore(tmp / "app")
        try:
            core.sign_in(base_url, token)
            cats = {c.code: c for c in core.categories()}
            ids = []
            for i in range(n):
                lat, lon = rng.choice(pts)
                d = Draft(cats["street_light"], fix=Fix(lat, lon, 5.0), answers={"fault": "out"},
                          photos=[str(photos[i])], description=f"bench sync {i}")
                ids.append(core.queue_report(d).client_id)
            t0 = time.monotonic()
            core.loop.start()
            while True:
                c = core.outbox.counts()
                if c[SENT] + c[FAILED] >= n:
                    break
                if time.monotonic() - t0 > timeout:
                    raise RuntimeError(f"sync did not finish within {timeout} s: {c}")
                time.sleep(0.01)
            seconds = time.monotonic() - t0
            items = {i.client_id: i for i in core.outbox.items()}
            photo_ids = [p.client_id for cid in ids for p in items[cid].photos]
        finally:
            core.close()
        with psycopg.connect(db_url) as conn:
            reps = dict(conn.execute("SELECT client_id::text, count(*) FROM reports WHERE client_id::text = ANY(%s) "
                                     "GROUP BY 1", (ids,)).fetchall())
            refs = dict(conn.execute("SELECT client_id::text, reference FROM reports WHERE client_id::text = ANY(%s)",
                                     (ids,)).fetchall())
            phs = conn.execute("SELECT count(*), count(DISTINCT client_id), sum(size_bytes) FROM photos "
                               "WHERE client_id::text = ANY(%s)", (photo_ids,)).fetchone()
        failed = [cid for cid in ids if items[cid].state != SENT]
        once = (not failed and len(reps) == n and set(reps.values()) == {1} and phs[0] == phs[1] == n
                and all(items[c].reference == refs[c] for c in ids))
        return {"reports": n, "seconds": seconds, "photo_mb_min": min(sizes) / 1e6, "photo_mb_max": max(sizes) / 1e6,
                "mb_total": sum(sizes) / 1e6, "exactly_once": once, "failed": len(failed),
                "server_reports": sum(reps.values()), "server_photos": phs[0],
                "server_photo_mb": (phs[2] or 0) / 1e6}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _cpu_seconds(pid: int) -> float:
    """CPU time (user + system) used so far by a process and its children's processes (Linux /proc)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for p in [pid, *map(int, Path(f"/proc/{pid}/task/{pid}/children").read_text().split())]:
        fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) / tick
    return total


@cli.command()
def run(
    code: Annotated[list[Path], typer.Option(help="checkout whose API is measured (repeat to alternate several)")]
    = None,
    rounds: Annotated[int, typer.Option(min=1)] = 1,
    workers: Annotated[int, typer.Option(help="uvicorn workers, as in the suite")] = 2,
    shared: Annotated[Path, typer.Option(help="the shared bench folder: tokens.json and points.txt")]
    = Path(".data/bench/shared"),
) -> None:
    """Field sync against the API of each checkout in turn; prints one JSON line per run."""
    from bench import intake as ib

    tokens = json.loads((shared / "tokens.json").read_text())
    dsn = tokens["url"].replace("postgresql+psycopg://", "postgresql://")
    codes = [c.resolve() for c in (code or [ib.ROOT])]
    for rnd in range(rounds):
        for checkout in (codes if rnd % 2 == 0 else codes[::-1]):
            photos = Path(tempfile.mkdtemp(prefix="kerbside-fieldsync-photos-"))
            env = {**ib._cli_env(tokens["url"]), "KERBSIDE_PHOTO_ROOT": str(photos)}
            here = ib.ROOT
            ib.ROOT = checkout  # ib.server starts uvicorn in ib.ROOT: this checkout's server code
            try:
                with ib.server(ib.INTAKE_APP, workers, env, ib.WORK / "fieldsync-server.log") as (base, pid):
                    before = _cpu_seconds(pid)
                    figures = measure(base, tokens["field_worker"], shared / "points.txt", dsn)
                    figures["api_cpu_seconds"] = round(_cpu_seconds(pid) - before, 2)  # sign-in and sync
            finally:
                ib.ROOT = here
                shutil.rmtree(photos, ignore_errors=True)
            print(json.dumps({"code": str(checkout), "round": rnd + 1, "load": round(os.getloadavg()[0], 1),
                              **{k: round(v, 3) if isinstance(v, float) else v for k, v in figures.items()}}),
                  flush=True)


if __name__ == "__main__":
    cli()
