import assert from 'node:assert/strict';
import { beforeEach, test } from 'node:test';

import * as weir from '../../sdk/js/weir/index.js';
import * as t from '../../sdk/js/weir/testing.js';
import { handle } from './app.js';

beforeEach(t.reset);

function count(key) {
  const out = handle(t.event('clicks', {}, { key }));
  assert.equal(out.length, 1);
  assert.equal(out[0].topic, 'counts');
  return JSON.parse(new TextDecoder().decode(out[0].payload));
}

test('counts per key and in total', () => {
  assert.deepEqual(count('a'), { key: 'a', count: 1, total: 1 });
  assert.deepEqual(count('b'), { key: 'b', count: 1, total: 2 });
  assert.deepEqual(count('a'), { key: 'a', count: 2, total: 3 });
  assert.deepEqual(count(), { key: '_', count: 1, total: 4 });
  assert.equal(t.stateSnapshot()['count/a'], '2');
  assert.equal(t.stateSnapshot().total, '4');
});

test('corrupt state is rejected', () => {
  weir.state.set('total', 'not a number');
  assert.throws(() => handle(t.event('clicks', {})), weir.Reject);
});

test('fail asks for a retry', () => {
  assert.throws(
    () => handle(t.event('clicks', { fail: true })),
    (e) => e instanceof weir.HandlerError && e.isRetry(),
  );
});
