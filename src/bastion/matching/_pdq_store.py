"""On-disk snapshots of a PDQ index: atomic, checksummed and versioned, so a restart skips the database.

Why this shape: a snapshot holds only the live (id, hash) pairs sorted by id; the probe tables are rebuilt on load
(about as fast as reading them back and checksumming them, a third of the disk space, and a snapshot can never
carry a damaged table into memory). Layout of ``directory``::

    CURRENT                 name of the live snapshot, replaced atomically (os.replace) as the last step of a save
    snap-<unique>/          manifest.json (format, version, count, sizes and SHA-256 of each file, caller's meta)
                            ids.bin (little-endian int64, strictly increasing), hashes.bin (32 bytes per id)

A crash at any point of a save leaves CURRENT naming the previous complete snapshot. Anything unusable on load
raises :class:`~bastion.errors.IndexCorrupt` with ``details["reason"]`` so the caller can rebuild.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import secrets
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np

from bastion.errors import BastionError, IndexCorrupt, InvalidInput

FORMAT = "bastion.pdq-index"
VERSION = 1
CURRENT = "CURRENT"
_NAME = re.compile(r"snap-[0-9a-f]+-[0-9]+-[0-9a-f]+")
_STALE_TMP_SECONDS = 3600
_FILES = {"ids.bin": 8, "hashes.bin": 32}  # bytes per entry


def _canonical(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False).encode()


def _check_meta(meta: dict[str, Any] | None) -> dict[str, Any]:
    meta = {} if meta is None else meta
    if not isinstance(meta, dict):
        raise InvalidInput(f"index meta must be a dict, not {type(meta).__name__}")
    try:
        same = json.loads(_canonical(meta)) == meta
    except (TypeError, ValueError) as exc:
        raise InvalidInput(f"index meta must be JSON data: {exc}") from None
    if not same:
        raise InvalidInput("index meta must be JSON data (string keys, lists not tuples) to survive a save")
    return meta


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write(path: Path, data: np.ndarray) -> str:
    view = memoryview(np.ascontiguousarray(data).reshape(-1).view(np.uint8))
    with open(path, "wb") as f:
        f.write(view)
        f.flush()
        os.fsync(f.fileno())
    return hashlib.sha256(view).hexdigest()


def save(directory: Path, ids: np.ndarray, hashes: np.ndarray, meta: dict[str, Any] | None) -> None:
    """Write a new snapshot of (ids sorted ascending, hashes) and make it the current one."""
    meta = _check_meta(meta)
    name = f"snap-{time.time_ns():x}-{os.getpid()}-{secrets.token_hex(4)}"
    tmp = directory / f"{name}.tmp"
    try:
        directory.mkdir(parents=True, exist_ok=True)
        tmp.mkdir()
        arrays = {"ids.bin": ids.astype("<i8", copy=False), "hashes.bin": hashes}
        files = {}
        for fname, arr in arrays.items():
            files[fname] = {"bytes": int(arr.nbytes), "sha256": _write(tmp / fname, arr)}
        body = {"format": FORMAT, "version": VERSION, "count": len(ids), "files": files, "meta": meta}
        manifest = {"body": body, "sha256": hashlib.sha256(_canonical(body)).hexdigest()}
        with open(tmp / "manifest.json", "wb") as f:
            f.write(_canonical(manifest))
            f.flush()
            os.fsync(f.fileno())
        _fsync_dir(tmp)
        os.rename(tmp, directory / name)
        pointer = directory / f"{CURRENT}.{name}.tmp"
        with open(pointer, "w", encoding="ascii") as f:
            f.write(name + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(pointer, directory / CURRENT)
        _fsync_dir(directory)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise BastionError(f"could not save the PDQ index to {directory}: {exc}", code="index_save_failed") from None
    _remove_stale(directory, keep=name)


def _remove_stale(directory: Path, keep: str) -> None:
    """Delete older snapshots, and unfinished ones old enough that no save can still be writing them."""
    now = time.time()
    for entry in directory.iterdir():
        if not entry.name.startswith(("snap-", f"{CURRENT}.")) or entry.name == keep:
            continue
        with contextlib.suppress(OSError):
            if entry.name.endswith(".tmp") and now - entry.stat().st_mtime < _STALE_TMP_SECONDS:
                continue
            if entry.is_dir():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink()


def _corrupt(directory: Path, reason: str, what: str) -> IndexCorrupt:
    return IndexCorrupt(f"saved PDQ index in {directory} is unusable ({what}); rebuild it", reason=reason)


def _read_manifest(directory: Path) -> tuple[Path, dict[str, Any]]:
    try:
        name = (directory / CURRENT).read_text(encoding="ascii").strip()
    except FileNotFoundError:
        raise _corrupt(directory, "missing", "no snapshot saved there") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise _corrupt(directory, "unreadable", f"cannot read {CURRENT}: {exc}") from None
    if not _NAME.fullmatch(name):
        raise _corrupt(directory, "malformed", f"{CURRENT} names no snapshot")
    snap = directory / name
    try:
        manifest = json.loads((snap / "manifest.json").read_bytes())
        body, digest = manifest["body"], manifest["sha256"]
        ok = hashlib.sha256(_canonical(body)).hexdigest() == digest
    except FileNotFoundError:
        raise _corrupt(directory, "missing", f"{name}/manifest.json is missing") from None
    except OSError as exc:
        raise _corrupt(directory, "unreadable", f"cannot read the manifest: {exc}") from None
    except (ValueError, TypeError, KeyError) as exc:
        raise _corrupt(directory, "malformed", f"manifest is not valid: {exc}") from None
    if not ok:
        raise _corrupt(directory, "checksum", "manifest checksum mismatch")
    if not isinstance(body, dict) or body.get("format") != FORMAT:
        raise _corrupt(directory, "malformed", "not a Bastion PDQ index")
    if body.get("version") != VERSION:
        raise _corrupt(directory, "version", f"format version {body.get('version')!r}, this Bastion reads {VERSION}")
    return snap, body


def load(directory: Path) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Read the current snapshot: (ids int64 strictly increasing, hashes (n, 32) uint8, meta)."""
    snap, body = _read_manifest(directory)
    count, files, meta = body.get("count"), body.get("files"), body.get("meta")
    if not isinstance(count, int) or count < 0 or not isinstance(files, dict) or not isinstance(meta, dict):
        raise _corrupt(directory, "malformed", "manifest fields have the wrong types")
    out = {}
    for fname, per_entry in _FILES.items():
        info = files.get(fname)
        size = count * per_entry
        if not isinstance(info, dict) or info.get("bytes") != size or not isinstance(info.get("sha256"), str):
            raise _corrupt(directory, "malformed", f"manifest entry for {fname} is wrong")
        arr = np.empty(size, dtype=np.uint8)
        try:
            with open(snap / fname, "rb") as f:
                if os.fstat(f.fileno()).st_size != size:
                    raise _corrupt(directory, "truncated", f"{fname} is not {size} bytes")
                view, done = memoryview(arr), 0
                while done < size:
                    got = f.readinto(view[done:])
                    if not got:
                        raise _corrupt(directory, "truncated", f"{fname} ended early")
                    done += got
        except FileNotFoundError:
            raise _corrupt(directory, "missing", f"{fname} is missing") from None
        except OSError as exc:
            raise _corrupt(directory, "unreadable", f"cannot read {fname}: {exc}") from None
        if hashlib.sha256(arr).hexdigest() != info["sha256"]:
            raise _corrupt(directory, "checksum", f"{fname} checksum mismatch")
        out[fname] = arr
    ids = out["ids.bin"].view("<i8").astype(np.int64, copy=False)
    if count > 1 and not bool(np.all(ids[1:] > ids[:-1])):
        raise _corrupt(directory, "malformed", "ids are not strictly increasing")
    return ids, out["hashes.bin"].reshape(count, 32), meta
