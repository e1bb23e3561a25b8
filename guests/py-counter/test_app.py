import json

import pytest

import weir
import weir.testing as t
from app import handle


@pytest.fixture(autouse=True)
def fresh():
    t.reset()


def count(key=None):
    out = handle(t.event("clicks", {}, key=key))
    assert len(out) == 1 and out[0].topic == "counts"
    return json.loads(out[0].payload)


def test_counts_per_key_and_in_total():
    assert count("a") == {"key": "a", "count": 1, "total": 1}
    assert count("b") == {"key": "b", "count": 1, "total": 2}
    assert count("a") == {"key": "a", "count": 2, "total": 3}
    assert count() == {"key": "_", "count": 1, "total": 4}
    assert t.state_snapshot()["count/a"] == b"2"
    assert t.state_snapshot()["total"] == b"4"


def test_corrupt_state_is_rejected():
    weir.state.set("total", b"not a number")
    with pytest.raises(weir.Reject):
        handle(t.event("clicks", {}))


def test_fail_asks_for_a_retry():
    with pytest.raises(weir.HandlerError) as e:
        handle(t.event("clicks", {"fail": True}))
    assert e.value.is_retry()
