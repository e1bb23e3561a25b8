import json

import pytest

import weir
import weir.testing as t
from app import handle


@pytest.fixture(autouse=True)
def fresh():
    t.reset()


def test_enriches_one_object_to_the_default_topic():
    out = handle(t.event("orders", {"qty": 2}, id="e-1", key="k"))
    assert len(out) == 1 and out[0].topic == "enriched" and out[0].key == "k"
    body = json.loads(out[0].payload)
    assert body == {"qty": 2, "handled_by": "py-map", "source_id": "e-1"}


def test_uses_configured_topic_and_greeting():
    t.set_config("output_topic", "out")
    t.set_config("greeting", "hello")
    out = handle(t.event("in", {}))
    assert out[0].topic == "out"
    assert b'"greeting":"hello"' in out[0].payload


@pytest.mark.parametrize("payload", ["[1]", "42", "not json"])
def test_rejects_non_objects(payload):
    with pytest.raises(weir.Reject):
        handle(t.event("in", payload))
