// `js-map`: the `map` guest in JavaScript (componentize-js), a stateless map.
//
// Takes a JSON object and publishes it enriched with `"handled_by": "js-map"`,
// `"source_id": <event id>` and, when config `greeting` is set,
// `"greeting": <value>`, to config `output_topic` (default `"enriched"`),
// keeping the input's key. A payload that is not a JSON object is rejected.
//
// An object with `"entropy": true` also gets what a handler would read from
// a clock or a random source (`time_ms`, `random`, `bytes`, `uuid`): the
// host's determinism tests check a retry sees the same values.
// An object with `"crash": true` throws a `TypeError` (not a `HandlerError`),
// which the host sees as a retry naming it.

import * as weir from '../../sdk/js/weir/index.js';

export function handle(event) {
  const body = event.json();
  if (body === null || typeof body !== 'object' || Array.isArray(body)) {
    const kind = Array.isArray(body) ? 'array' : body === null ? 'null' : typeof body;
    throw weir.HandlerError.reject(`event ${event.id}: payload must be a JSON object, got ${kind}`);
  }
  if (body.crash === true) throw new TypeError('asked to crash');
  body.handled_by = 'js-map';
  body.source_id = event.id;
  const greeting = weir.config.get('greeting');
  if (greeting !== undefined) body.greeting = greeting;
  if (body.entropy === true) {
    body.time_ms = Date.now();
    body.random = Math.random();
    const bytes = crypto.getRandomValues(new Uint8Array(8));
    body.bytes = [...bytes].map((b) => b.toString(16).padStart(2, '0')).join('');
    body.uuid = crypto.randomUUID();
  }
  return [weir.Output.json(weir.config.getOr('output_topic', 'enriched'), body, event.key)];
}

export const guest = weir.exportHandler(handle);
