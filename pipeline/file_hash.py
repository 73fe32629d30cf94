"""Full content hash of an input file, read once per version of the file.

Part caches and the trainer key results by what their input files hold, every byte of it: a hash
of only part of a file would miss an edit elsewhere and bring back a stale result. Reading all of
a multi-GB recording takes seconds, so, like DVC's state database, the hash is remembered by
(path, inode, size, mtime): in memory, and for large files in a small SQLite table under the
project cache (`.cache/file_hashes.sqlite`), so later runs do not read the file again until one of
those changes.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from pipeline import paths

STATE_FILE = "file_hashes.sqlite"
REMEMBER_ON_DISK = 16 << 20  # smaller files are read again faster than a database is consulted
_CHUNK = 1 << 20

_Key = tuple[str, int, int, int]  # absolute path, inode, size, mtime_ns
_MEMO: dict[_Key, str] = {}
_LOCK = threading.Lock()


def file_hash(path: str | Path) -> str:
    """sha256 (hex) of every byte of `path`, remembered while the file's stat is unchanged."""
    key = _stat_key(path)
    with _LOCK:
        known = _MEMO.get(key)
    if known is not None:
        return known
    large = key[2] >= REMEMBER_ON_DISK
    digest = _stored(key) if large else None
    if digest is None:
        digest = _read_and_hash(key[0])
        if _stat_key(path) != key:  # written to while being read: use the hash, remember nothing
            return digest
        if large:
            _store(key, digest)
    with _LOCK:
        _MEMO[key] = digest
    return digest


def _stat_key(path: str | Path) -> _Key:
    absolute = os.path.abspath(path)
    stat = os.stat(absolute)
    return absolute, stat.st_ino, stat.st_size, stat.st_mtime_ns


def _read_and_hash(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


@contextmanager
def _state() -> Iterator[sqlite3.Connection]:
    """The state table, in one transaction, closed afterwards (one short connection per large file)."""
    paths.CACHE_DIR.mkdir(parents=True, exist_ok=True)
    connection = sqlite3.connect(paths.CACHE_DIR / STATE_FILE, timeout=30)
    try:
        with connection:
            connection.execute("CREATE TABLE IF NOT EXISTS hashes (path TEXT PRIMARY KEY, inode INTEGER,"
                               " size INTEGER, mtime_ns INTEGER, sha256 TEXT)")
            yield connection
    finally:
        connection.close()


def _stored(key: _Key) -> str | None:
    """The remembered hash, if the file still has the stat it had when it was hashed."""
    try:
        with _state() as connection:
            row = connection.execute("SELECT inode, size, mtime_ns, sha256 FROM hashes WHERE path = ?",
                                     (key[0],)).fetchone()
    except (sqlite3.Error, OSError):  # an unreadable state file costs a re-read, never a wrong hash
        return None
    return row[3] if row is not None and tuple(row[:3]) == key[1:] else None


def _store(key: _Key, digest: str) -> None:
    try:
        with _state() as connection:
            connection.execute("INSERT OR REPLACE INTO hashes VALUES (?, ?, ?, ?, ?)", (*key, digest))
    except (sqlite3.Error, OSError):
        pass


def tree_hash(path: str | Path) -> str:
    """`file_hash` of a file; of a folder, sha256 over its files' sorted `relative-path hash` lines,
    so adding, removing, renaming or editing any file under it changes the result."""
    path = Path(path)
    if path.is_file():
        return file_hash(path)
    digest = hashlib.sha256()
    for item in sorted(p for p in path.rglob("*") if p.is_file()):
        digest.update(f"{item.relative_to(path).as_posix()} {file_hash(item)}\n".encode())
    return digest.hexdigest()
