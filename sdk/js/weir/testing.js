// Run handler logic natively under `node --test`: state, config and log
// lines are in memory, and `event` builds events.
//
//     import { test, beforeEach } from 'node:test';
//     import assert from 'node:assert/strict';
//     import * as t from './weir/testing.js';
//     import { handle } from './app.js';
//
//     beforeEach(t.reset);
//
//     test('counts', () => {
//       t.setConfig('output_topic', 'tally');
//       const [out] = handle(t.event('in', { n: 1 }, { key: 'a' }));
//       assert.equal(out.topic, 'tally');
//       assert.deepEqual(t.stateSnapshot(), { 'count/a': '1' });
//     });
//
// Call `reset` before each test (the template's test does it with
// `beforeEach`).

import { memory } from './backend.js';
import { Event, toJson } from './index.js';

const decoder = new TextDecoder();

/** Clear state, config and captured logs, and restart event numbering. */
export function reset() {
  memory.state.clear();
  memory.config.clear();
  memory.logs.length = 0;
  memory.events = 0;
}

/** Set a config pair, as an operator would at deploy time.
 * @param {string} key @param {string} value */
export function setConfig(key, value) {
  memory.config.set(key, String(value));
}

/** The state, sorted by key, with values as UTF-8 text (JSON values read
 * as their text: `'2'`, `'{"a":1}'`). @returns {Record<string, string>} */
export function stateSnapshot() {
  const keys = [...memory.state.keys()].sort();
  return Object.fromEntries(keys.map((k) => [k, decoder.decode(memory.state.get(k))]));
}

/** The state's raw bytes, by key. @returns {Map<string, Uint8Array>} */
export function stateBytes() {
  return new Map([...memory.state.entries()].sort(([a], [b]) => (a < b ? -1 : 1)));
}

/** The `[level, message]` lines logged so far, oldest first.
 * @returns {Array<[string, string]>} */
export function logs() {
  return memory.logs.map(([l, m]) => [l, m]);
}

/**
 * A test event on `topic`: `payload` as bytes (a `Uint8Array`), a string
 * as UTF-8, anything else as JSON. Defaults: ID `test-<n>` and offset `n`,
 * counting the events built since the last `reset`.
 * @param {string} topic
 * @param {Uint8Array | string | unknown} payload
 * @param {{id?: string, key?: string, headers?: Array<[string, string]>, partition?: number, timestampMs?: number}} [options]
 * @returns {Event}
 */
export function event(topic, payload, options = {}) {
  const n = memory.events++;
  let body;
  if (payload instanceof Uint8Array) body = payload;
  else if (typeof payload === 'string') body = new TextEncoder().encode(payload);
  else body = toJson(payload);
  return new Event({
    id: options.id ?? `test-${n}`,
    topic,
    partition: options.partition ?? 0,
    offset: n,
    key: options.key,
    payload: body,
    headers: [...(options.headers ?? [])],
    timestampMs: options.timestampMs ?? 1_700_000_000_000,
  });
}
