"""The `weir` package natively: events, outputs, errors, state, config, log."""

import pytest

import weir
import weir.testing as t


@pytest.fixture(autouse=True)
def fresh():
    t.reset()


def test_events_number_themselves_and_encode_payloads():
    a = t.event("in", {"x": 1}, key="k", headers=[("h", "v")])
    b = t.event("in", "text")
    assert (a.id, a.offset, b.id, b.offset) == ("test-0", 0, "test-1", 1)
    assert a.json() == {"x": 1} and a.key == "k" and a.header("h") == "v"
    assert b.text() == "text" and b.header("h") is None
    t.reset()
    assert t.event("in", b"raw").id == "test-0"


def test_malformed_payloads_reject():
    with pytest.raises(weir.Reject) as e:
        t.event("in", "{not json", id="e9").json()
    assert "e9" in str(e.value) and not e.value.is_retry()
    with pytest.raises(weir.Reject):
        t.event("in", b"\xff").text()


def test_outputs():
    out = weir.Output.json("t", {"a": [1, "é"]}, key="k").with_header("x", "1")
    assert out.payload == '{"a":[1,"é"]}'.encode() and out.key == "k"
    assert out.headers == [("x", "1")]
    assert weir.Output.text("t", "hi").payload == b"hi"


def test_errors_say_retry_or_reject():
    assert weir.HandlerError.retry("later").is_retry()
    assert not weir.HandlerError.reject("never").is_retry()
    assert isinstance(weir.HandlerError.reject("x"), weir.HandlerError)
    assert weir.HandlerError.retry("m").message == "m"


def test_state_config_and_log_are_in_memory():
    weir.state.set("s", "text")
    weir.state.set_json("n", 41)
    assert weir.state.get("s") == b"text" and weir.state.get_json("n") == 41
    assert weir.state.get_json("missing", 7) == 7
    weir.state.delete("s")
    weir.state.delete("never-set")
    assert t.state_snapshot() == {"n": b"41"}
    weir.state.set("bad", b"{")
    with pytest.raises(weir.Reject):
        weir.state.get_json("bad")
    t.set_config("b", "2")
    t.set_config("a", "1")
    assert weir.config.get("a") == "1" and weir.config.get("z") is None
    assert weir.config.get_or("z", "d") == "d"
    assert weir.config.get_all() == {"a": "1", "b": "2"}
    weir.log.warn("careful")
    weir.log.info("fine")
    assert t.logs() == [("warn", "careful"), ("info", "fine")]


def test_export_wraps_the_handler_natively():
    def handle(event):
        return [weir.Output.json("out", event.json())]

    guest = weir.export(handle)()
    assert guest.handle(t.event("in", {"v": 1}))[0].payload == b'{"v":1}'
