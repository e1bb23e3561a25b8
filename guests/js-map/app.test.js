import assert from 'node:assert/strict';
import { beforeEach, test } from 'node:test';

import * as weir from '../../sdk/js/weir/index.js';
import * as t from '../../sdk/js/weir/testing.js';
import { handle } from './app.js';

beforeEach(t.reset);

test('enriches one object to the default topic', () => {
  const out = handle(t.event('orders', { qty: 2 }, { id: 'e-1', key: 'k' }));
  assert.equal(out.length, 1);
  assert.equal(out[0].topic, 'enriched');
  assert.equal(out[0].key, 'k');
  const body = JSON.parse(new TextDecoder().decode(out[0].payload));
  assert.deepEqual(body, { qty: 2, handled_by: 'js-map', source_id: 'e-1' });
});

test('uses the configured topic and greeting', () => {
  t.setConfig('output_topic', 'out');
  t.setConfig('greeting', 'hello');
  const [out] = handle(t.event('in', {}));
  assert.equal(out.topic, 'out');
  assert.ok(new TextDecoder().decode(out.payload).includes('"greeting":"hello"'));
});

for (const payload of ['[1]', '42', 'null', 'not json']) {
  test(`rejects ${payload}`, () => {
    assert.throws(() => handle(t.event('in', payload)), weir.Reject);
  });
}
