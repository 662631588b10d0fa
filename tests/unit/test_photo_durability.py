"""A stored photo survives a power cut: its bytes are on disk before its name, its name before the row."""
from __future__ import annotations

import os
from pathlib import Path

from server.reports import photos


def _record_fsyncs(monkeypatch, watch: Path) -> list[tuple[str, list[str]]]:
    """Every fsync, through to the real one: (what was synced, the names in `watch` at that moment)."""
    seen: list[tuple[str, list[str]]] = []
    real = os.fsync

    def fsync(fd: int) -> None:
        names = sorted(p.name for p in watch.iterdir()) if watch.is_dir() else []
        seen.append((os.readlink(f"/proc/self/fd/{fd}"), names))
        real(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    return seen


def test_the_bytes_are_synced_under_a_temporary_name_before_the_rename(tmp_path, monkeypatch):
    job_dir = tmp_path / "KS-000001"
    seen = _record_fsyncs(monkeypatch, job_dir)
    target = job_dir / "photo.jpg"

    photos._write(target, b"\xff\xd8 not really a jpeg")

    assert target.read_bytes() == b"\xff\xd8 not really a jpeg"
    assert not (job_dir / "photo.jpg.tmp").exists()
    synced = [path for path, _ in seen]
    # The new job directory is made durable in its parent, then the file's bytes, before it has its name.
    assert synced == [str(tmp_path), str(job_dir / "photo.jpg.tmp")]
    assert seen[1][1] == ["photo.jpg.tmp"]


def test_the_directory_is_synced_after_both_renames(tmp_path, monkeypatch):
    job_dir = tmp_path / "KS-000002"
    job_dir.mkdir()
    seen = _record_fsyncs(monkeypatch, job_dir)

    photos._write(job_dir / "a.jpg", b"photo")
    photos._write(job_dir / "a.thumb.jpg", b"thumb")
    photos._sync_dir(job_dir)

    # An existing directory is not synced again for each file; the last sync is the directory, with both names.
    assert [path for path, _ in seen] == [str(job_dir / "a.jpg.tmp"), str(job_dir / "a.thumb.jpg.tmp"), str(job_dir)]
    assert seen[-1][1] == ["a.jpg", "a.thumb.jpg"]
