"""The data root's run lock (lib/cdp/lock.py): acquire, refuse naming the holder, renew,
steal after expiry, release on crash by expiry, and two real processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from cdp.lock import LockHeld, StageLock, check_free, hold, lock_path, read_lease


class Clock:
    """A hand-moved clock, so expiry is tested without sleeping."""

    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


def test_acquire_writes_the_lease_and_release_removes_it(tmp_path: Path) -> None:
    root = str(tmp_path / "data")
    with StageLock(root, stage="silver", run_id="r1", ttl_seconds=60) as lock:
        lease = read_lease(lock_path(root))
        assert lease is not None and lease.stage == "silver" and lease.token == lock.token
        assert lease.owner.endswith(f":{os.getpid()}:r1")
        assert lease.expires_at - lease.acquired_at == pytest.approx(60, abs=1)
        doc = json.loads(lock_path(root).read_text())
        assert doc["acquired_at_utc"].endswith("+00:00")  # readable by people, too
        check_free(root)  # our own lease: no obstacle in this process
    assert not lock_path(root).exists()


def test_a_second_run_is_refused_naming_the_holder(tmp_path: Path) -> None:
    root = str(tmp_path / "data")
    with StageLock(root, stage="silver", run_id="first"):
        second = StageLock(
            root, stage="identity", run_id="second", wait_seconds=0.3, poll_seconds=0.1
        )
        t0 = time.monotonic()
        with pytest.raises(LockHeld) as err:
            second.acquire()
        assert time.monotonic() - t0 >= 0.25  # it waited as configured
        message = str(err.value)
        assert "locked by stage 'silver'" in message and ":first)" in message
        assert " since " in message and " until " in message and "waited 0s" in message
        assert err.value.holder is not None and err.value.holder.stage == "silver"
    # Released: the next run gets it at once.
    with StageLock(root, stage="identity", run_id="third"):
        pass


def test_a_waiting_run_gets_the_lock_once_the_holder_releases(tmp_path: Path) -> None:
    import threading

    root = str(tmp_path / "data")
    first = StageLock(root, stage="silver", run_id="first")
    first.acquire()
    timer = threading.Timer(0.3, first.release)
    timer.start()
    with StageLock(root, stage="silver", run_id="second", wait_seconds=10, poll_seconds=0.05):
        lease = read_lease(lock_path(root))
        assert lease is not None and lease.owner.endswith(":second")
    timer.join()


def test_the_heartbeat_renews_and_a_lease_is_stolen_only_after_expiry(tmp_path: Path) -> None:
    root = str(tmp_path / "data")
    clock = Clock()
    holder = StageLock(root, stage="silver", run_id="old", ttl_seconds=100, clock=clock)
    holder._try_create()  # taken without a heartbeat: a holder that then stops renewing
    clock.now += 99
    with pytest.raises(LockHeld):
        StageLock(root, stage="x", run_id="early", ttl_seconds=100, clock=clock).acquire()
    assert holder.renew()  # a live holder pushes its expiry forward
    clock.now += 99
    with pytest.raises(LockHeld):
        StageLock(root, stage="x", run_id="still-early", ttl_seconds=100, clock=clock).acquire()
    clock.now += 2  # 101 s since the last renewal: expired
    thief = StageLock(root, stage="identity", run_id="new", ttl_seconds=100, clock=clock)
    thief.acquire()
    try:
        lease = read_lease(lock_path(root))
        assert lease is not None and lease.token == thief.token
        assert not holder.renew() and holder.lost  # the old holder learns it lost the lease
    finally:
        thief.release()
    assert not lock_path(root).exists()
    assert list(lock_path(root).parent.iterdir()) == []  # nothing left aside


def test_an_unreadable_lease_file_counts_as_held_until_it_is_older_than_the_ttl(
    tmp_path: Path,
) -> None:
    root = str(tmp_path / "data")
    path = lock_path(root)
    path.parent.mkdir(parents=True)
    path.write_text("")  # a holder that died between creating the file and writing it
    with pytest.raises(LockHeld, match="cannot be read yet"):
        StageLock(root, stage="silver", run_id="r", ttl_seconds=60).acquire()
    old = time.time() - 120
    os.utime(path, (old, old))
    with StageLock(root, stage="silver", run_id="r", ttl_seconds=60) as lock:
        lease = read_lease(path)
        assert lease is not None and lease.token == lock.token


def test_an_object_store_root_takes_no_lock(caplog: pytest.LogCaptureFixture) -> None:
    root = "s3a://bucket/cdp"
    with (
        caplog.at_level("INFO", logger="cdp.lock"),
        hold(root, stage="silver", run_id="r", ttl_seconds=60, wait_seconds=0) as lock,
    ):
        assert lock is None
    assert "orchestrator must serialise" in caplog.text
    check_free("s3a://bucket/cdp")  # nothing to check there


CHILD = textwrap.dedent(
    """
    import sys, time
    from cdp.lock import LockHeld, StageLock
    root, run_id, hold_s, ttl = sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4])
    lock = StageLock(root, stage="silver", run_id=run_id, ttl_seconds=ttl, wait_seconds=0)
    try:
        lock.acquire()
    except LockHeld as exc:
        print("refused:", exc, flush=True)
        sys.exit(3)
    print("acquired", flush=True)
    if hold_s < 0:
        import os
        os._exit(137)  # killed: no release, the lease stays until it expires
    time.sleep(hold_s)
    lock.release()
    print("released", flush=True)
    """
)


def _child(tmp_path: Path, run_id: str, hold_s: float, ttl: float = 60) -> subprocess.Popen[str]:
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1] / "lib")}
    return subprocess.Popen(
        [sys.executable, str(script), str(tmp_path / "data"), run_id, str(hold_s), str(ttl)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )


def test_two_processes_one_holds_the_other_is_refused(tmp_path: Path) -> None:
    first = _child(tmp_path, "p1", hold_s=30)
    assert first.stdout is not None and first.stdout.readline().strip() == "acquired"
    second = _child(tmp_path, "p2", hold_s=0)
    out, _ = second.communicate(timeout=60)
    assert second.returncode == 3, out
    assert "refused: data root is locked by stage 'silver'" in out and ":p1)" in out
    first.kill()
    first.wait(timeout=60)


def test_a_killed_holder_releases_the_lock_by_expiry(tmp_path: Path) -> None:
    crashed = _child(tmp_path, "dies", hold_s=-1, ttl=1)
    out, _ = crashed.communicate(timeout=60)
    assert crashed.returncode == 137 and "acquired" in out
    lease = read_lease(lock_path(str(tmp_path / "data")))
    assert lease is not None and lease.owner.endswith(":dies")  # left behind by the crash
    time.sleep(1.2)
    after = _child(tmp_path, "after", hold_s=0)
    out, _ = after.communicate(timeout=60)
    assert after.returncode == 0 and "acquired" in out and "released" in out, out
