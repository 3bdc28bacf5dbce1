"""One writing run per data root: a lease file, held while a stage runs.

Why: two runs of a stage on one data root (a retried Airflow task next to the one it
replaced, ``cdp run silver`` typed twice, maintenance vacuuming next to the pipeline) commit
correct canonical tables thanks to Delta's conflict checks, but side tables and vacuum are not
protected by them. The pipeline is sequential anyway, so the simplest correct granularity is
one lock per data root, taken by every stage the runner runs, maintenance included.

The lease is ``<data_root>/_locks/pipeline.lock``, a small JSON document (owner = host, pid
and run id; the stage; ``acquired_at``; ``expires_at``; a random token). It is created with
``os.open(O_CREAT | O_EXCL)``, which exactly one process wins; a heartbeat thread pushes
``expires_at`` forward while the stage runs, so a long stage keeps it and a crashed one
(``kill -9``, a lost node) releases it when its lease expires. Only an expired lease is
stolen: it is first renamed away (one stealer wins the rename) and checked to be the one seen
expired.

A second run waits up to ``runner.lock_wait_seconds``, then :class:`LockHeld` names the
holder (stage, owner, since, until).

Local (and mounted) file systems only: ``O_EXCL`` and ``rename`` are not atomic on object
stores. For an ``s3://``-style data root the runner skips the lock with a log line, and the
orchestrator must serialise runs (Airflow: ``max_active_runs=1`` per DAG and one pool slot
shared by the pipeline and maintenance DAGs; Databricks: one job run at a time).

Re-entrancy: leases this process holds are remembered, so code running inside a stage (the
privacy stage's vacuum after an erasure) sees the lease as its own (:func:`check_free`), and
never waits for itself.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

log = logging.getLogger(__name__)

LOCK_DIR = "_locks"
DEFAULT_NAME = "pipeline"

# Tokens of the leases this process holds (see the module docstring: re-entrancy).
_held: set[str] = set()
_held_lock = threading.Lock()


@dataclass(frozen=True)
class Lease:
    """The content of a lease file."""

    stage: str
    owner: str  # "<host>:<pid>:<run id>"
    acquired_at: float  # epoch seconds (UTC), also written as ISO text for people
    expires_at: float
    token: str

    def expired(self, now: float) -> bool:
        return now >= self.expires_at

    def describe(self) -> str:
        return (
            f"stage '{self.stage}' (owner {self.owner}) since {_iso(self.acquired_at)} "
            f"until {_iso(self.expires_at)}"
        )

    def to_json(self) -> str:
        doc = asdict(self)
        doc["acquired_at_utc"] = _iso(self.acquired_at)
        doc["expires_at_utc"] = _iso(self.expires_at)
        return json.dumps(doc, indent=1)


class LockHeld(RuntimeError):
    """Another run holds the data root's lock (and did not release it in time)."""

    def __init__(self, path: str, holder: Lease | None, waited: float) -> None:
        who = holder.describe() if holder else "a run whose lease file cannot be read yet"
        super().__init__(
            f"data root is locked by {who}; waited {waited:.0f}s (runner.lock_wait_seconds). "
            f"The lease is renewed while that run lives and expires after it dies; lock "
            f"file: {path}"
        )
        self.path = path
        self.holder = holder


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, timezone.utc).isoformat(timespec="seconds")


def lock_path(root: str, name: str = DEFAULT_NAME) -> Path:
    """The lease file of ``name`` under the data root ``root`` (a local path)."""
    return Path(root.removeprefix("file://")) / LOCK_DIR / f"{name}.lock"


def is_local(root: str) -> bool:
    """Whether ``root`` is a local (or mounted) path, where the lease file works."""
    return "://" not in root or root.startswith("file://")


def read_lease(path: Path) -> Lease | None:
    """The lease in ``path``; None when there is none or it is not (yet) readable."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        return Lease(
            stage=str(doc["stage"]),
            owner=str(doc["owner"]),
            acquired_at=float(doc["acquired_at"]),
            expires_at=float(doc["expires_at"]),
            token=str(doc["token"]),
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None


def check_free(
    root: str, name: str = DEFAULT_NAME, *, clock: Callable[[], float] = time.time
) -> None:
    """Raise :class:`LockHeld` when another process holds an unexpired lease on ``root``;
    a lease this process holds (the calling stage's own) does not count."""
    if not is_local(root):
        return
    path = lock_path(root, name)
    lease = read_lease(path)
    if lease is None or lease.expired(clock()):
        return
    with _held_lock:
        ours = lease.token in _held
    if not ours:
        raise LockHeld(str(path), lease, 0.0)


class StageLock:
    """A lease on one data root; use as a context manager around a stage."""

    def __init__(
        self,
        root: str,
        *,
        stage: str,
        run_id: str,
        name: str = DEFAULT_NAME,
        ttl_seconds: float = 300.0,
        wait_seconds: float = 0.0,
        poll_seconds: float = 1.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.path = lock_path(root, name)
        self.stage = stage
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{run_id}"
        self.ttl = ttl_seconds
        self.wait = wait_seconds
        self.poll = poll_seconds
        self.clock = clock
        self.token = secrets.token_hex(16)
        self.lost = False  # the heartbeat found the lease gone or someone else's
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # ----------------------------------------------------------------------------------
    def _lease(self, acquired_at: float) -> Lease:
        return Lease(self.stage, self.owner, acquired_at, self.clock() + self.ttl, self.token)

    def _try_create(self) -> bool:
        """Create the lease file; False when it exists."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(self._lease(self.clock()).to_json())
            f.flush()
            os.fsync(f.fileno())
        return True

    def _steal(self, seen: Lease | None) -> None:
        """Move an expired lease (or an unreadable file older than the ttl) out of the way;
        a lease that turns out not to be the one seen expired is put back."""
        aside = self.path.with_name(f"{self.path.name}.{self.token}.stale")
        try:
            os.rename(self.path, aside)
        except FileNotFoundError:
            return  # released or stolen by someone else meanwhile
        moved = read_lease(aside)
        same = (moved is None and seen is None) or (
            moved is not None and seen is not None and moved.token == seen.token
        )
        if not same:
            with contextlib.suppress(FileExistsError):
                os.link(aside, self.path)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(aside)
        if same:
            log.warning(
                "stole the expired lock %s from %s",
                self.path,
                seen.describe() if seen else "an unreadable lease file",
            )

    def _stale(self, lease: Lease | None, now: float) -> bool:
        if lease is not None:
            return lease.expired(now)
        # Unreadable: a holder between create and write, or one that crashed there.
        try:
            return now - self.path.stat().st_mtime > self.ttl
        except FileNotFoundError:
            return False

    def acquire(self) -> None:
        """Take the lease, waiting up to ``wait_seconds``; :class:`LockHeld` otherwise."""
        start = self.clock()
        while True:
            if self._try_create():
                break
            now = self.clock()
            holder = read_lease(self.path)
            if self._stale(holder, now):
                self._steal(holder)
                continue
            if now - start >= self.wait:
                raise LockHeld(str(self.path), holder, now - start)
            time.sleep(max(0.01, min(self.poll, self.wait - (now - start))))
        with _held_lock:
            _held.add(self.token)
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._heartbeat, name=f"cdp-lock-{self.stage}", daemon=True
        )
        self._thread.start()
        log.info("lock %s taken by %s", self.path, self.owner)

    def renew(self) -> bool:
        """Push ``expires_at`` forward; False (and :attr:`lost`) when the lease is no longer
        ours (it expired and was stolen, or was removed by hand)."""
        current = read_lease(self.path)
        if current is None or current.token != self.token:
            self.lost = True
            return False
        tmp = self.path.with_name(f"{self.path.name}.{self.token}.tmp")
        tmp.write_text(self._lease(current.acquired_at).to_json(), encoding="utf-8")
        os.replace(tmp, self.path)
        return True

    def _heartbeat(self) -> None:
        interval = max(0.05, self.ttl / 3)
        while not self._stop.wait(interval):
            try:
                if not self.renew():
                    log.error(
                        "lock %s is no longer held by %s: another run may write now",
                        self.path,
                        self.owner,
                    )
                    return
            except OSError:
                log.exception("could not renew lock %s", self.path)

    def release(self) -> None:
        """Stop the heartbeat and remove the lease file, when it is still ours."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        with _held_lock:
            _held.discard(self.token)
        current = read_lease(self.path)
        if current is not None and current.token == self.token:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)

    def __enter__(self) -> StageLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


@contextlib.contextmanager
def hold(
    root: str,
    *,
    stage: str,
    run_id: str,
    ttl_seconds: float,
    wait_seconds: float,
    enabled: bool = True,
) -> Iterator[StageLock | None]:
    """The data root's lease for the duration of the block; None when it is not taken
    (disabled, or an object-store root: see the module docstring)."""
    if not enabled:
        yield None
        return
    if not is_local(root):
        log.info(
            "data root %s is not a local path: no lock taken; the orchestrator must "
            "serialise runs on it",
            root,
        )
        yield None
        return
    lock = StageLock(
        root, stage=stage, run_id=run_id, ttl_seconds=ttl_seconds, wait_seconds=wait_seconds
    )
    with lock:
        yield lock
