"""`py-counter`: the `counter` guest in Python (componentize-py), a
stateful per-key counter.

For each event it increments the count for the event's key (`"_"` when it
has none) and a running total, and publishes
`{"key": ..., "count": n, "total": t}` to config `output_topic` (default
`"counts"`), keyed like the input. A payload of `{"fail": true}` writes
state and then asks for a retry: the host must discard those writes.

State layout (values are JSON numbers): `count/<key>` per key, and `total`.
"""

import json

import weir


def increment(key: str) -> int:
    n = weir.state.get_json(key, 0) + 1
    weir.state.set_json(key, n)
    return n


def asks_to_fail(event: weir.Event) -> bool:
    try:
        body = json.loads(event.payload)
    except ValueError:
        return False
    return isinstance(body, dict) and body.get("fail") is True


def handle(event: weir.Event) -> list:
    key = event.key if event.key is not None else "_"
    count = increment(f"count/{key}")
    total = increment("total")
    if asks_to_fail(event):
        raise weir.HandlerError.retry("asked to fail after writing state")
    body = {"key": key, "count": count, "total": total}
    return [weir.Output.json(weir.config.get_or("output_topic", "counts"), body, key=key)]


Guest = weir.export(handle)
