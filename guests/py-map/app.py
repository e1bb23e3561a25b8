"""`py-map`: the `map` guest in Python (componentize-py), a stateless map.

Takes a JSON object and publishes it enriched with `"handled_by": "py-map"`,
`"source_id": <event id>` and, when config `greeting` is set,
`"greeting": <value>`, to config `output_topic` (default `"enriched"`),
keeping the input's key. A payload that is not a JSON object is rejected.

An object with `"entropy": true` also gets what a handler would read from
a clock or a random source (`time_ms`, `monotonic_ns`, `random`, `urandom`,
`uuid`): the host's determinism tests check a retry sees the same values.
"""

import os
import random
import time
import uuid

import weir


def handle(event: weir.Event) -> list:
    body = event.json()
    if not isinstance(body, dict):
        raise weir.HandlerError.reject(
            f"event {event.id}: payload must be a JSON object, got {type(body).__name__}"
        )
    body["handled_by"] = "py-map"
    body["source_id"] = event.id
    greeting = weir.config.get("greeting")
    if greeting is not None:
        body["greeting"] = greeting
    if body.get("entropy") is True:
        body["time_ms"] = int(time.time() * 1000)
        body["monotonic_ns"] = time.monotonic_ns()
        body["random"] = random.random()
        body["urandom"] = os.urandom(8).hex()
        body["uuid"] = str(uuid.uuid4())
    out = weir.Output.json(weir.config.get_or("output_topic", "enriched"), body)
    return [out.with_key(event.key)]


Guest = weir.export(handle)
