// The `weir` package natively: events, outputs, errors, state, config, log.

import assert from 'node:assert/strict';
import { beforeEach, test } from 'node:test';

import * as weir from '../weir/index.js';
import * as t from '../weir/testing.js';

beforeEach(t.reset);

const bytes = (s) => new TextEncoder().encode(s);

test('events number themselves and encode payloads', () => {
  const a = t.event('in', { x: 1 }, { key: 'k', headers: [['h', 'v']] });
  const b = t.event('in', 'text');
  assert.deepEqual([a.id, a.offset, b.id, b.offset], ['test-0', 0, 'test-1', 1]);
  assert.deepEqual(a.json(), { x: 1 });
  assert.equal(a.key, 'k');
  assert.equal(a.header('h'), 'v');
  assert.equal(b.text(), 'text');
  assert.equal(b.header('h'), undefined);
  assert.equal(b.key, undefined);
  t.reset();
  assert.equal(t.event('in', new Uint8Array([1])).id, 'test-0');
});

test('malformed payloads reject', () => {
  assert.throws(() => t.event('in', '{not json', { id: 'e9' }).json(), (e) => {
    assert.ok(e instanceof weir.Reject && e instanceof weir.HandlerError);
    assert.ok(e.message.includes('e9') && !e.isRetry());
    return true;
  });
  assert.throws(() => t.event('in', new Uint8Array([0xff])).text(), weir.Reject);
});

test('outputs', () => {
  const out = weir.Output.json('t', { a: [1, 'é'] }, 'k').withHeader('x', '1');
  assert.deepEqual(out.payload, bytes('{"a":[1,"é"]}'));
  assert.equal(out.key, 'k');
  assert.deepEqual(out.headers, [['x', '1']]);
  assert.deepEqual(weir.Output.text('t', 'hi').payload, bytes('hi'));
  assert.equal(weir.Output.text('t', 'hi').withKey('z').key, 'z');
});

test('errors say retry or reject', () => {
  assert.ok(weir.HandlerError.retry('later').isRetry());
  assert.ok(!weir.HandlerError.reject('never').isRetry());
  assert.ok(weir.HandlerError.reject('x') instanceof weir.HandlerError);
  assert.equal(weir.HandlerError.retry('m').message, 'm');
});

test('state, config and log are in memory', () => {
  weir.state.set('s', 'text');
  weir.state.setJson('n', 41);
  assert.deepEqual(weir.state.get('s'), bytes('text'));
  assert.equal(weir.state.getJson('n'), 41);
  assert.equal(weir.state.getJson('missing', 7), 7);
  weir.state.delete('s');
  weir.state.delete('never-set');
  assert.deepEqual(t.stateSnapshot(), { n: '41' });
  weir.state.set('bad', bytes('{'));
  assert.throws(() => weir.state.getJson('bad'), weir.Reject);
  t.setConfig('b', '2');
  t.setConfig('a', '1');
  assert.equal(weir.config.get('a'), '1');
  assert.equal(weir.config.get('z'), undefined);
  assert.equal(weir.config.getOr('z', 'd'), 'd');
  assert.deepEqual(weir.config.getAll(), { a: '1', b: '2' });
  weir.log.warn('careful');
  weir.log.info('fine');
  assert.deepEqual(t.logs(), [['warn', 'careful'], ['info', 'fine']]);
});

test('exportHandler wraps the handler natively', () => {
  const guest = weir.exportHandler((event) => [weir.Output.json('out', event.json())]);
  assert.deepEqual(guest.handle(t.event('in', { v: 1 }))[0].payload, bytes('{"v":1}'));
});

test('inside a component, errors become the WIT handler-error and Math.random repeats per event', async () => {
  const backend = await import('../weir/backend.js');
  const calls = [];
  backend.useHost({
    state: { get: () => undefined, set: (k) => calls.push(k), delete: () => {} },
    log: { log: () => {} },
    config: { get: () => undefined, getAll: () => [] },
  });
  try {
    const wit = (id, payload) => ({
      id,
      topic: 'in',
      partition: 0,
      offset: 3n,
      key: undefined,
      payload: bytes(payload),
      headers: [],
      timestampMs: 5n,
    });
    const guest = weir.exportHandler((event) => {
      const body = event.json();
      if (body.crash) throw new TypeError('boom');
      weir.state.setJson('k', 1);
      return [weir.Output.json('out', { r: Math.random(), offset: event.offset, at: event.timestampMs })];
    });
    assert.throws(() => guest.handle(wit('e1', 'nope')), (e) => e.tag === 'reject' && e.val.includes('e1'));
    assert.throws(
      () => guest.handle(wit('e1', '{"crash":true}')),
      (e) => e.tag === 'retry' && e.val === 'uncaught exception: TypeError: boom',
    );
    const first = guest.handle(wit('e1', '{}'))[0];
    const other = guest.handle(wit('e2', '{}'))[0];
    const again = guest.handle(wit('e1', '{}'))[0];
    assert.deepEqual(first.payload, again.payload);
    assert.notDeepEqual(first.payload, other.payload);
    assert.equal(first.key, undefined);
    assert.deepEqual(JSON.parse(new TextDecoder().decode(first.payload)).offset, 3);
    assert.deepEqual(calls, ['k', 'k', 'k']);
  } finally {
    backend.useHost(null);
  }
});
