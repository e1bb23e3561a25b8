// `js-counter`: the `counter` guest in JavaScript (componentize-js), a
// stateful per-key counter.
//
// For each event it increments the count for the event's key (`"_"` when it
// has none) and a running total, and publishes
// `{"key": ..., "count": n, "total": t}` to config `output_topic` (default
// `"counts"`), keyed like the input. A payload of `{"fail": true}` writes
// state and then asks for a retry: the host must discard those writes.
//
// State layout (values are JSON numbers): `count/<key>` per key, and `total`.

import * as weir from '../../sdk/js/weir/index.js';

function increment(key) {
  const n = weir.state.getJson(key, 0) + 1;
  weir.state.setJson(key, n);
  return n;
}

function asksToFail(event) {
  try {
    const body = JSON.parse(new TextDecoder().decode(event.payload));
    return body !== null && typeof body === 'object' && body.fail === true;
  } catch {
    return false;
  }
}

export function handle(event) {
  const key = event.key ?? '_';
  const count = increment(`count/${key}`);
  const total = increment('total');
  if (asksToFail(event)) throw weir.HandlerError.retry('asked to fail after writing state');
  const body = { key, count, total };
  return [weir.Output.json(weir.config.getOr('output_topic', 'counts'), body, key)];
}

export const guest = weir.exportHandler(handle);
