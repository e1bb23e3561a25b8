// Write Weir event handlers in JavaScript.
//
// A handler is a function from one `Event` to an array of `Output`s; it
// throws `HandlerError.retry(...)` or `HandlerError.reject(...)` when it
// cannot process the event. `exportHandler` turns it into the component's
// `guest` export:
//
//     import * as weir from './weir/index.js';
//
//     export function handle(event) {
//       const order = event.json();                 // malformed -> reject
//       order.handled_by = 'me';
//       return [weir.Output.json(weir.config.getOr('output_topic', 'out'), order)];
//     }
//
//     export const guest = weir.exportHandler(handle);
//
// `weir.state`, `weir.config` and `weir.log` reach the host inside a
// component (`weir build`) and in-memory maps natively (`./testing.js`,
// for `node --test`). Inside a component `Date.now()` is the event's
// timestamp, `crypto.getRandomValues` is seeded from the event by the host,
// and `Math.random` is reseeded from the event's ID and offset before each
// call, so a retry or a replay produces the same outputs.

import * as backend from './backend.js';

const encoder = new TextEncoder();
const decoder = new TextDecoder('utf-8', { fatal: true });

/** @typedef {[string, string]} Header A header: a name and a UTF-8 value. */

/**
 * `value` as compact UTF-8 JSON bytes (what outputs and state hold).
 * @param {unknown} value
 * @returns {Uint8Array}
 */
export function toJson(value) {
  return encoder.encode(JSON.stringify(value));
}

/** Why a handler could not process an event: throw `HandlerError.retry`
 * (transient: the host retries with backoff, then dead-letters) or
 * `HandlerError.reject` (the event can never succeed: dead-lettered at
 * once). Any other exception is reported to the host as a retry. */
export class HandlerError extends Error {
  /**
   * @param {string} message
   * @param {boolean} [retryable]
   */
  constructor(message, retryable = true) {
    super(message);
    this.name = retryable ? 'Retry' : 'Reject';
    /** Whether the host retries the event. */
    this.retryable = retryable;
  }

  /** A transient failure: retried with backoff, then dead-lettered.
   * @param {string} message @returns {Retry} */
  static retry(message) {
    return new Retry(message);
  }

  /** A permanent failure: dead-lettered at once.
   * @param {string} message @returns {Reject} */
  static reject(message) {
    return new Reject(message);
  }

  /** Whether the host would retry this error. @returns {boolean} */
  isRetry() {
    return this.retryable;
  }
}

/** A transient failure: the host retries the event with backoff. */
export class Retry extends HandlerError {
  /** @param {string} message */
  constructor(message) {
    super(message, true);
  }
}

/** The event can never succeed: the host dead-letters it at once. */
export class Reject extends HandlerError {
  /** @param {string} message */
  constructor(message) {
    super(message, false);
  }
}

/** One input event, as the host read it from its source. */
export class Event {
  /**
   * @param {object} fields
   * @param {string} fields.id The producer's message ID (a retry has the same one).
   * @param {string} fields.topic
   * @param {number} fields.partition
   * @param {number} fields.offset
   * @param {string | undefined} fields.key
   * @param {Uint8Array} fields.payload
   * @param {Header[]} [fields.headers]
   * @param {number} [fields.timestampMs] When the event was appended (ms since the Unix epoch).
   */
  constructor({ id, topic, partition, offset, key, payload, headers = [], timestampMs = 0 }) {
    /** @type {string} */ this.id = id;
    /** @type {string} */ this.topic = topic;
    /** @type {number} */ this.partition = partition;
    /** @type {number} */ this.offset = offset;
    /** @type {string | undefined} */ this.key = key ?? undefined;
    /** @type {Uint8Array} */ this.payload = payload;
    /** @type {Header[]} */ this.headers = headers;
    /** @type {number} */ this.timestampMs = timestampMs;
  }

  /** The payload as UTF-8 text; invalid UTF-8 rejects the event.
   * @returns {string} */
  text() {
    try {
      return decoder.decode(this.payload);
    } catch (e) {
      throw new Reject(`event ${this.id}: payload is not UTF-8: ${e.message}`);
    }
  }

  /** The payload parsed as JSON; a malformed payload rejects the event
   * (retrying would read the same bytes). @returns {any} */
  json() {
    const text = this.text();
    try {
      return JSON.parse(text);
    } catch (e) {
      throw new Reject(`event ${this.id}: payload is not valid JSON: ${e.message}`);
    }
  }

  /** The first header called `name` (case-sensitive), if any.
   * @param {string} name @returns {string | undefined} */
  header(name) {
    const found = this.headers.find(([n]) => n === name);
    return found ? found[1] : undefined;
  }
}

/** One output to publish: `topic` must be one of the handler's declared
 * outputs; without a `key` it keeps the input's partition. Header names
 * starting with `weir-` are reserved for the host. */
export class Output {
  /**
   * @param {string} topic
   * @param {Uint8Array} [payload]
   * @param {string} [key]
   * @param {Header[]} [headers]
   */
  constructor(topic, payload = new Uint8Array(), key = undefined, headers = []) {
    /** @type {string} */ this.topic = topic;
    /** @type {Uint8Array} */ this.payload = payload;
    /** @type {string | undefined} */ this.key = key ?? undefined;
    /** @type {Header[]} */ this.headers = headers;
  }

  /** An output whose payload is `value` as JSON.
   * @param {string} topic @param {unknown} value @param {string} [key] @returns {Output} */
  static json(topic, value, key) {
    return new Output(topic, toJson(value), key);
  }

  /** An output whose payload is `text` as UTF-8.
   * @param {string} topic @param {string} text @param {string} [key] @returns {Output} */
  static text(topic, text, key) {
    return new Output(topic, encoder.encode(text), key);
  }

  /** This output with partitioning key `key`. @param {string | undefined} key @returns {Output} */
  withKey(key) {
    this.key = key ?? undefined;
    return this;
  }

  /** This output with one more header. @param {string} name @param {string} value @returns {Output} */
  withHeader(name, value) {
    this.headers.push([name, value]);
    return this;
  }
}

/** The handler's own keyed state, committed atomically with its outputs.
 * Reads see the writes made earlier in the same batch, including those of
 * the current event; the writes of an event that fails are discarded. */
export const state = {
  /** The bytes stored under `key`, if any. @param {string} key @returns {Uint8Array | undefined} */
  get(key) {
    return backend.stateGet(key);
  },
  /** Store `value` (bytes, or a string as UTF-8) under `key`.
   * @param {string} key @param {Uint8Array | string} value */
  set(key, value) {
    backend.stateSet(key, typeof value === 'string' ? encoder.encode(value) : value);
  },
  /** Remove `key`; removing a missing key does nothing. @param {string} key */
  delete(key) {
    backend.stateDelete(key);
  },
  /** The JSON value stored under `key`, or `fallback`. A stored value that
   * is not JSON rejects the event (a retry would read the same bytes).
   * @template T @param {string} key @param {T} [fallback] @returns {any} */
  getJson(key, fallback = undefined) {
    const raw = backend.stateGet(key);
    if (raw === undefined) return fallback;
    try {
      return JSON.parse(decoder.decode(raw));
    } catch (e) {
      throw new Reject(`state key \`${key}\` does not hold JSON: ${e.message}`);
    }
  },
  /** Store `value` as JSON under `key`. @param {string} key @param {unknown} value */
  setJson(key, value) {
    backend.stateSet(key, toJson(value));
  },
};

/** The handler's deployment config: key/value pairs set by the operator. */
export const config = {
  /** The value of `key`, if set. @param {string} key @returns {string | undefined} */
  get(key) {
    return backend.configGet(key) ?? undefined;
  },
  /** The value of `key`, or `fallback`. @param {string} key @param {string} fallback @returns {string} */
  getOr(key, fallback) {
    return backend.configGet(key) ?? fallback;
  },
  /** Every pair, as an object with its keys sorted. @returns {Record<string, string>} */
  getAll() {
    return Object.fromEntries(backend.configAll());
  },
};

/** Log lines into the host's log, attributed to the handler and the event
 * (rate-limited by the host). `console.log` goes there too. */
export const log = Object.fromEntries(
  backend.LEVELS.map((level) => [level, (/** @type {string} */ message) => backend.log(level, String(message))]),
);

/**
 * The component's `guest` export for `handle`: assign it to `guest` in the
 * handler module (`export const guest = weir.exportHandler(handle)`).
 * @param {(event: Event) => Output[] | undefined} handle
 * @returns {{handle: (event: any) => any[]}}
 */
export function exportHandler(handle) {
  return {
    handle(witEvent) {
      const event = new Event({
        id: witEvent.id,
        topic: witEvent.topic,
        partition: Number(witEvent.partition),
        offset: Number(witEvent.offset),
        key: witEvent.key,
        payload: new Uint8Array(witEvent.payload),
        headers: (witEvent.headers ?? []).map(([n, v]) => [n, v]),
        timestampMs: Number(witEvent.timestampMs ?? 0),
      });
      if (!backend.inComponent()) return handle(event) ?? [];
      seedMathRandom(`${event.id}\0${event.offset}`);
      let outputs;
      try {
        outputs = handle(event) ?? [];
      } catch (e) {
        throw toWitError(e);
      }
      if (typeof outputs.then === 'function') {
        throw toWitError(new Error('the handler returned a Promise: handlers must be synchronous'));
      }
      return outputs.map((o) => ({
        topic: o.topic,
        key: o.key ?? undefined,
        payload: o.payload instanceof Uint8Array ? o.payload : new Uint8Array(o.payload),
        headers: (o.headers ?? []).map(([n, v]) => [n, v]),
      }));
    },
  };
}

/** A thrown error as the WIT `handler-error`: a `HandlerError` keeps its
 * kind; any other exception is a retry naming it (the host retries it with
 * backoff, like a trap, then dead-letters it). */
function toWitError(e) {
  if (e instanceof HandlerError) {
    return { tag: e.retryable ? 'retry' : 'reject', val: e.message };
  }
  const what = e instanceof Error ? `${e.name}: ${e.message}` : String(e);
  return { tag: 'retry', val: `uncaught exception: ${what}` };
}

/** Make `Math.random` a generator seeded from `seed` (the event's ID and
 * offset): componentize-js snapshots the initialised engine at build time,
 * so its own generator would run on from the snapshot, and a retry on a
 * reused instance would draw other numbers. */
function seedMathRandom(seed) {
  // FNV-1a into four words, then sfc32.
  const words = [0x811c9dc5, 0x9e3779b9, 0x85ebca6b, 0xc2b2ae35];
  for (let i = 0; i < seed.length; i++) {
    for (let w = 0; w < 4; w++) {
      words[w] = Math.imul(words[w] ^ seed.charCodeAt(i), 0x01000193 + 2 * w) >>> 0;
    }
  }
  let [a, b, c, d] = words;
  const next = () => {
    const t = (((a + b) >>> 0) + d) >>> 0;
    d = (d + 1) >>> 0;
    a = b ^ (b >>> 9);
    b = (c + (c << 3)) >>> 0;
    c = ((c << 21) | (c >>> 11)) >>> 0;
    c = (c + t) >>> 0;
    return t >>> 0;
  };
  for (let i = 0; i < 12; i++) next();
  Math.random = () => next() / 4294967296;
}
