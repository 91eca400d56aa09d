"""Scanning: walk paths, hash every file in worker processes, match in this one, one result per file.

Hashing (decoding images and videos) is the expensive part and runs in a process pool; matching needs the
in-memory indexes, so it runs once, here. A file that cannot be read or decoded yields a result with an ``error``
and the scan goes on: one bad file never stops a scan of a million.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bastion import signals as signal_registry
from bastion.content import Content
from bastion.errors import BastionError, UnreadableFile
from bastion.matching.matcher import Matcher, MatchResult
from bastion.settings import Settings
from bastion.signals.base import Signal


@dataclass
class FileResult:
    """What one file gave: its type, signals, matches, or the error that stopped it."""

    path: str
    content_type: str | None = None
    signals: list[Signal] = field(default_factory=list)
    match: MatchResult | None = None
    error: dict[str, Any] | None = None

    def to_dict(self, *, with_matches: bool = True) -> dict[str, Any]:
        out: dict[str, Any] = {
            "path": self.path,
            "content_type": self.content_type,
            "signals": [s.to_dict() for s in self.signals],
        }
        if with_matches:
            out.update((self.match or MatchResult()).to_dict())
        out["error"] = self.error
        return out


def iter_files(paths: Iterable[str | os.PathLike[str]]) -> Iterator[tuple[str, BastionError | None]]:
    """Every file under ``paths``, recursively, in a stable order. Directory symlinks are not followed (no loops);
    a path that does not exist or cannot be listed is yielded with its error."""
    for raw in paths:
        path = Path(raw)
        if path.is_dir() and not path.is_symlink():
            errors: list[OSError] = []
            for root, dirs, files in os.walk(path, onerror=errors.append, followlinks=False):
                dirs.sort()
                for name in sorted(files):
                    yield os.path.join(root, name), None
                for name in dirs:
                    if Path(root, name).is_symlink():
                        link = os.path.join(root, name)
                        yield (
                            link,
                            UnreadableFile(
                                f"{link}: symbolic link to a directory, not followed", code="directory_symlink_skipped"
                            ),
                        )
            for exc in errors:
                yield (
                    str(exc.filename or path),
                    UnreadableFile(f"{exc.filename}: {exc.strerror}", code="unreadable_directory"),
                )
        else:
            yield str(path), None


def hash_file(path: str, settings: Settings | None = None) -> FileResult:
    """Sniff and hash one file; never raises for a bad file (the error goes into the result)."""
    result = FileResult(path=path)
    try:
        content = Content.from_path(path, settings)
        result.content_type = content.content_type.value
        result.signals, errors = signal_registry.compute_each(content)
        if errors:  # the signals that could be computed stay (e.g. md5/sha256 of a truncated image)
            result.error = {"code": errors[0].code, "message": errors[0].message}
    except BastionError as exc:
        result.error = {"code": exc.code, "message": exc.message}
        result.signals = []
    except Exception as exc:  # noqa: BLE001 - a decoder bug must not end the scan; it is reported with a code
        result.error = {"code": "internal_error", "message": f"{type(exc).__name__}: {exc}"}
        result.signals = []
    return result


def _hash_job(job: tuple[str, BastionError | None]) -> FileResult:
    path, error = job
    if error is not None:
        return FileResult(path=path, error={"code": error.code, "message": error.message})
    return hash_file(path)


def scan(paths: Iterable[str | os.PathLike[str]], matcher: Matcher | None, **kwargs: Any) -> Iterator[FileResult]:
    """Hash and match every file under ``paths`` (see :func:`scan_files`)."""
    return scan_files(list(iter_files(paths)), matcher, **kwargs)


def scan_files(
    files: list[tuple[str, BastionError | None]],
    matcher: Matcher | None,
    *,
    workers: int = 1,
    banks: set[str] | None = None,
) -> Iterator[FileResult]:
    """Hash and match walked ``files`` (from :func:`iter_files`); results come in walk order.

    ``banks`` limits the reported matches to those banks (allow-lists still suppress). With ``matcher=None``
    files are only hashed.
    """
    jobs = files
    if workers <= 1:
        results: Iterator[FileResult] = map(_hash_job, jobs)
        pool = None
    else:
        # forkserver, not fork: the parent may run threads (a progress bar); the preload means each worker
        # starts as a fork of a server that has already imported the hashing code, not a fresh interpreter.
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(["bastion.matching.scanner", "bastion.signals"])
        pool = ctx.Pool(workers, initializer=_worker_init)
        results = pool.imap(_hash_job, jobs, chunksize=4)
    try:
        for result in results:
            if matcher is not None and result.signals:
                result.match = matcher.match(result.signals)
                if banks is not None:
                    result.match.matches = [m for m in result.match.matches if m.bank in banks]
            yield result
    finally:
        if pool is not None:
            pool.terminate()
            pool.join()


def _worker_init() -> None:
    # Workers only hash; keep each one to one thread so --workers N means N cores.
    os.environ.setdefault("OMP_NUM_THREADS", "1")
