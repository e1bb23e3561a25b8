// Where state, config and log calls go: the host's imports inside a
// component (installed by `component.js`, the build's entry), in-memory
// maps natively (`testing.js`, for `node --test`).

/** The native backend: state, config, captured log lines, events built. */
export const memory = {
  /** @type {Map<string, Uint8Array>} */
  state: new Map(),
  /** @type {Map<string, string>} */
  config: new Map(),
  /** @type {Array<[string, string]>} */
  logs: [],
  events: 0,
};

/**
 * The `weir:handler` imports, when running inside a component.
 * @type {null | {state: any, log: any, config: any}}
 */
let host = null;

/** Route every call to the host's imports (called once, by `component.js`). */
export function useHost(imports) {
  host = imports;
}

/** Whether this code runs inside a component, against the host. */
export function inComponent() {
  return host !== null;
}

export const LEVELS = ['trace', 'debug', 'info', 'warn', 'error'];

export function stateGet(key) {
  if (host) {
    const value = host.state.get(key);
    return value === undefined ? undefined : new Uint8Array(value);
  }
  return memory.state.get(key);
}

export function stateSet(key, value) {
  if (host) host.state.set(key, value);
  else memory.state.set(key, new Uint8Array(value));
}

export function stateDelete(key) {
  if (host) host.state.delete(key);
  else memory.state.delete(key);
}

export function configGet(key) {
  return host ? host.config.get(key) : memory.config.get(key);
}

export function configAll() {
  if (host) return host.config.getAll().map(([k, v]) => [k, v]);
  return [...memory.config.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
}

export function log(level, message) {
  if (host) host.log.log(level, message);
  else memory.logs.push([level, message]);
}
