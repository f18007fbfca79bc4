"""The retrain lease: one holder at a time, expired leases are taken over, only the owner releases."""
import json
import multiprocessing
import time

import pytest

from resmm.lease import Lease, LeaseHeld


def test_second_holder_is_refused_until_release(tmp_path):
    first = Lease(tmp_path / "retrain.lock", ttl_seconds=60).acquire()
    with pytest.raises(LeaseHeld, match="another retrain or champion move holds the lock"):
        Lease(tmp_path / "retrain.lock", ttl_seconds=60).acquire()
    first.release()
    Lease(tmp_path / "retrain.lock", ttl_seconds=60).acquire().release()


def test_expired_lease_of_a_crashed_holder_is_taken_over(tmp_path):
    path = tmp_path / "retrain.lock"
    path.write_text(json.dumps({"owner": "crashed", "expires_at": time.time() - 1}))
    lease = Lease(path, ttl_seconds=60).acquire()
    assert lease.holder()["owner"] == lease.owner


def test_only_the_owner_releases(tmp_path):
    path = tmp_path / "retrain.lock"
    lease = Lease(path, ttl_seconds=60).acquire()
    Lease(path, ttl_seconds=60).release()  # not the owner: no effect
    assert path.exists()
    lease.release()
    assert not path.exists()


def _try(path, results):
    try:
        Lease(path, ttl_seconds=60).acquire()
        results.put("won")
    except LeaseHeld:
        results.put("lost")


def test_of_many_simultaneous_callers_exactly_one_wins(tmp_path):
    results = multiprocessing.Queue()
    procs = [multiprocessing.Process(target=_try, args=(tmp_path / "l", results)) for _ in range(6)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(30)
    outcomes = sorted(results.get(timeout=5) for _ in procs)
    assert outcomes.count("won") == 1 and outcomes.count("lost") == 5
