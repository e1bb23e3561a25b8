// The Weir console: a small hand-written script over the /v1 API, the same
// routes the `weir` CLI calls (see /v1/openapi.json). Data goes on the page
// as text (textContent, DOM nodes), never as markup. The admin token lives
// in this tab's sessionStorage and is sent as an Authorization header; it
// never goes into a URL.
'use strict';

const TOKEN_KEY = 'weir.admin-token';
const POLL_MS = 2000;
const SVG = 'http://www.w3.org/2000/svg';

let timer = null;
let pageId = 0;

class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

const $ = (sel) => document.querySelector(sel);
const token = () => sessionStorage.getItem(TOKEN_KEY) || '';

async function api(method, path, body, type) {
  const headers = {};
  if (token()) headers.Authorization = 'Bearer ' + token();
  const init = { method, headers, cache: 'no-store' };
  if (body !== undefined) {
    headers['Content-Type'] = type || 'application/json';
    init.body = type ? body : JSON.stringify(body);
  }
  let res;
  try {
    res = await fetch(path, init);
  } catch (e) {
    throw new ApiError(0, 'unreachable', 'The host does not answer (' + e.message + '); is `weir serve` running?');
  }
  const text = await res.text();
  let json = null;
  try { json = text ? JSON.parse(text) : null; } catch (_) { json = null; }
  if (!res.ok) {
    const err = json && json.error ? json.error : { code: 'http_' + res.status, message: text || res.statusText };
    throw new ApiError(res.status, err.code, err.message);
  }
  return json;
}

// Build an element: attributes (`on*` are listeners), then children
// (strings become text nodes).
function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'class') el.className = v;
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat(3)) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : String(c));
  }
  return el;
}

const num = (n) => (n === null || n === undefined ? '–' : Number(n).toLocaleString('en-US'));
const rate = (n) => (n === null || n === undefined ? '–' : (n < 10 ? n.toFixed(1) : Math.round(n).toLocaleString('en-US')));
const ms = (n) => (n === null || n === undefined ? '–' : '≤ ' + (n < 1 ? n.toFixed(2) : String(n)) + ' ms');
const when = (t) => (t ? new Date(t).toISOString().replace('T', ' ').replace(/\.\d+Z$/, 'Z') : '–');
const short = (digest) => (digest && digest.length > 19 ? digest.slice(0, 19) + '…' : digest);
const handlerPath = (name) => '/v1/handlers/' + encodeURIComponent(name);

function table(id, caption, heads, body) {
  return h('div', { class: 'table-wrap' },
    h('table', { id },
      h('caption', {}, caption),
      h('thead', {}, h('tr', {}, heads.map((t) => h('th', { scope: 'col' }, t)))),
      body));
}

function notice(text, kind) {
  const n = $('#notice');
  n.textContent = text;
  n.className = 'notice ' + (kind || 'ok');
  n.setAttribute('role', kind === 'error' ? 'alert' : 'status');
  n.hidden = false;
}

function setLive(ok, why) {
  $('#live').textContent = ok ? 'live' : 'not updating: ' + why;
  $('#live').className = ok ? 'live' : 'live stale';
}

// Ask before an operation; resolves to true on Confirm.
function confirmAction(title, text, okLabel) {
  return new Promise((resolve) => {
    const d = $('#confirm');
    $('#confirm-title').textContent = title;
    $('#confirm-text').textContent = text;
    $('#confirm-ok').textContent = okLabel;
    const done = (v) => {
      $('#confirm-ok').onclick = null;
      $('#confirm-cancel').onclick = null;
      d.oncancel = null;
      if (d.open) d.close();
      resolve(v);
    };
    $('#confirm-ok').onclick = () => done(true);
    $('#confirm-cancel').onclick = () => done(false);
    d.oncancel = (e) => { e.preventDefault(); done(false); };
    d.showModal();
  });
}

// Run an operation, report its outcome, and whether it succeeded.
async function act(fn) {
  try {
    const text = await fn();
    if (text) notice(text, 'ok');
    return true;
  } catch (e) {
    if (!handleAuth(e)) notice(e.message + (e.code ? ' (' + e.code + ')' : ''), 'error');
    return false;
  }
}

function handleAuth(e) {
  if (e && e.status === 401) {
    showTokenForm(token() ? 'refused' : 'required');
    return true;
  }
  return false;
}

function showTokenForm(reason) {
  pageId += 1;
  clearTimeout(timer);
  sessionStorage.removeItem(TOKEN_KEY);
  $('#forget').hidden = true;
  setLive(false, 'signed out');
  const input = h('input', { id: 'token', name: 'token', type: 'password', autocomplete: 'off', required: true });
  const form = h('form', { id: 'token-form', onsubmit: (ev) => {
    ev.preventDefault();
    sessionStorage.setItem(TOKEN_KEY, input.value.trim());
    $('#notice').hidden = true;
    route();
  } },
  h('label', { for: 'token' }, 'Admin token'), input,
  h('button', { type: 'submit' }, 'Open console'));
  const message = reason === 'refused'
    ? h('p', { id: 'token-error', class: 'error', role: 'alert' },
      'The host refused this token (401 unauthorized). It must match the host\'s admin.token, WEIR_ADMIN_TOKEN or --admin-token; enter it again.')
    : h('p', {}, 'This host requires its admin token (admin.token, WEIR_ADMIN_TOKEN or --admin-token). It is kept in this browser tab only and sent with each request, never in a URL.');
  $('#main').replaceChildren(h('section', { class: 'signin' }, h('h1', {}, 'Sign in to Weir'), message, form));
  input.focus();
}

// Call `fn` now and every POLL_MS while page `id` is shown.
async function poll(id, fn) {
  const tick = async () => {
    if (id !== pageId) return;
    try {
      await fn();
      if (id === pageId) setLive(true);
    } catch (e) {
      if (handleAuth(e)) return;
      setLive(false, e.message);
    }
    if (id === pageId) timer = setTimeout(tick, POLL_MS);
  };
  await tick();
}

// ---- Overview ----------------------------------------------------------

async function overviewPage(main, _arg, id) {
  const tbody = h('tbody');
  const charts = h('div', { class: 'charts', id: 'charts' });
  main.replaceChildren(
    h('h1', {}, 'Handlers'),
    table('handlers', 'Every handler, refreshed every 2 seconds',
      ['Handler', 'State', 'Revision', 'Events', 'Events/s', 'Lag', 'Commit p99 (1 min)', 'Errors', 'Dead letters'], tbody),
    h('h2', {}, 'Last 15 minutes'),
    charts);
  let prev = null;
  let historyAt = 0;
  let hist = new Map();
  await poll(id, async () => {
    const data = await api('GET', '/v1/handlers');
    const now = Date.now();
    if (now - historyAt >= 5000) {
      const answer = await api('GET', '/v1/history');
      hist = new Map(answer.handlers.map((x) => [x.name, x]));
      historyAt = now;
      drawCharts(charts, data.handlers, hist);
    }
    const rows = data.handlers.map((x) => {
      const past = hist.get(x.name) || {};
      let perSec = past.recent_events_per_sec;
      if (prev && prev.events.has(x.name)) {
        const secs = (now - prev.at) / 1000;
        perSec = Math.max(0, x.counters.events - prev.events.get(x.name)) / secs;
      }
      const cell = (col, value) => h('td', { 'data-col': col }, value);
      return h('tr', { 'data-handler': x.name },
        h('th', { scope: 'row' }, h('a', { href: '#/handler/' + encodeURIComponent(x.name) }, x.name)),
        cell('state', h('span', { class: 'badge ' + x.state }, x.state)),
        cell('revision', 'r' + x.revision),
        cell('events', num(x.counters.events)),
        cell('rate', rate(perSec)),
        cell('lag', num(x.lag)),
        cell('p99', ms(past.recent_commit_p99_ms)),
        cell('errors', num(x.counters.errors)),
        cell('dead', num(x.dead_letters)));
    });
    if (!rows.length) {
      rows.push(h('tr', {}, h('td', { colspan: 9 }, 'No handlers yet: deploy one with `weir deploy` or declare it in the config file.')));
    }
    tbody.replaceChildren(...rows);
    prev = { at: now, events: new Map(data.handlers.map((x) => [x.name, x.counters.events])) };
  });
}

function drawCharts(container, handlers, hist) {
  container.replaceChildren(...handlers.map((x) => {
    const points = (hist.get(x.name) || {}).points || [];
    return h('section', { class: 'chart-card', 'aria-label': 'History of ' + x.name },
      h('h3', {}, x.name),
      sparkline('Throughput (events/s)', points, 'events_per_sec'),
      sparkline('Lag (events)', points, 'lag'));
  }));
}

function sparkline(label, points, key) {
  const w = 300;
  const ht = 60;
  const values = points.map((p) => p[key] || 0);
  const max = Math.max(1, ...values);
  // The x axis spans the samples there are (at most 15 minutes' worth).
  const end = points.length ? points[points.length - 1].at_ms : Date.now();
  const start = points.length > 1 ? points[0].at_ms : end - 5000;
  const minutes = Math.max(1, Math.round((end - start) / 60000));
  const last = values.length ? values[values.length - 1] : null;
  const summary = label + ': now ' + rate(last) + ', highest ' + rate(values.length ? max : null) + ' over the last ' + (minutes === 1 ? 'minute' : minutes + ' minutes');
  const svg = document.createElementNS(SVG, 'svg');
  svg.setAttribute('viewBox', '0 0 ' + w + ' ' + ht);
  svg.setAttribute('role', 'img');
  svg.setAttribute('aria-label', summary);
  svg.setAttribute('preserveAspectRatio', 'none');
  const base = document.createElementNS(SVG, 'line');
  for (const [k, v] of [['x1', 0], ['x2', w], ['y1', ht - 1], ['y2', ht - 1], ['class', 'axis']]) base.setAttribute(k, v);
  svg.append(base);
  if (points.length) {
    const xy = points.map((p, i) => {
      const x = Math.max(0, ((p.at_ms - start) / (end - start)) * w);
      const y = ht - 2 - (values[i] / max) * (ht - 6);
      return x.toFixed(1) + ',' + y.toFixed(1);
    });
    const area = document.createElementNS(SVG, 'polygon');
    area.setAttribute('points', xy[0].split(',')[0] + ',' + ht + ' ' + xy.join(' ') + ' ' + xy[xy.length - 1].split(',')[0] + ',' + ht);
    area.setAttribute('class', 'area');
    const line = document.createElementNS(SVG, 'polyline');
    line.setAttribute('points', xy.join(' '));
    line.setAttribute('class', 'series');
    const [lx, ly] = xy[xy.length - 1].split(',');
    const dot = document.createElementNS(SVG, 'circle');
    for (const [k, val] of [['cx', Math.min(Number(lx), w - 3)], ['cy', ly], ['r', 3], ['class', 'dot']]) dot.setAttribute(k, val);
    svg.append(area, line, dot);
  }
  return h('figure', { class: 'chart' }, svg,
    h('figcaption', {}, points.length ? summary : label + ': no samples yet (one every 5 s)'));
}

// ---- Handler -----------------------------------------------------------

// Flatten a spec to "key: value" pairs, for showing what changed.
function flatten(value, prefix, out) {
  if (value && typeof value === 'object' && !Array.isArray(value)) {
    for (const [k, v] of Object.entries(value)) flatten(v, prefix ? prefix + '.' + k : k, out);
  } else {
    out.set(prefix, Array.isArray(value) ? value.join(', ') : String(value));
  }
  return out;
}

function changes(before, after, revisions) {
  if (!before) return 'first revision';
  const a = flatten(before.spec, '', new Map());
  const b = flatten(after.spec, '', new Map());
  const list = [];
  for (const [k, v] of b) {
    if (!a.has(k)) list.push('added ' + k + ' = ' + v);
    else if (a.get(k) !== v) list.push(k + ': ' + (k === 'component' ? short(a.get(k)) + ' → ' + short(v) : a.get(k) + ' → ' + v));
  }
  for (const k of a.keys()) if (!b.has(k)) list.push('removed ' + k);
  const same = revisions.find((r) => r.revision < after.revision - 1 && JSON.stringify(r.spec) === JSON.stringify(after.spec));
  if (same) list.push('same spec as r' + same.revision + ' (a roll back)');
  return list.length ? list.join('; ') : 'no change';
}

function preview(event) {
  const text = event.payload !== undefined ? JSON.stringify(event.payload) : 'base64: ' + (event.payload_base64 || '');
  return text.length > 160 ? text.slice(0, 160) + '…' : text;
}

async function handlerPage(main, name, id) {
  const path = handlerPath(name);
  let v = await api('GET', path);
  const title = h('h1', {}, 'Handler ', h('code', {}, name));
  const status = h('p', { id: 'handler-status', class: 'status' });
  const actions = h('div', { class: 'actions', role: 'group', 'aria-label': 'Operations' });
  const partitions = h('tbody');
  const counters = h('dl', { class: 'counters', id: 'counters' });
  const revisions = h('tbody');
  const dead = h('tbody');
  const deadTitle = h('h2', { id: 'dead-letters-title' }, 'Dead letters');
  const selectAll = h('input', { type: 'checkbox', id: 'dlq-all', 'aria-label': 'Select every dead letter', onchange: () => {
    for (const c of dead.querySelectorAll('input[type=checkbox]')) c.checked = selectAll.checked;
  } });
  let deadCount = -1;
  let revisionKey = '';
  let actionsKey = '';
  let asked = 0;
  let shown = 0;

  // Show the handler as it is now; an answer older than the one shown
  // (a poll overtaken by an operation's reload) is dropped.
  const reload = async () => {
    const seq = ++asked;
    const answer = await api('GET', path);
    if (seq < shown) return;
    shown = seq;
    v = answer;
    render();
  };
  const loadDead = async () => {
    const answer = await api('GET', path + '/dead-letters');
    const kept = new Set([...dead.querySelectorAll('input:checked')].map((c) => c.value));
    const rows = answer.dead_letters.map((d) => h('tr', { 'data-id': d.event.id },
      h('td', {}, h('input', { type: 'checkbox', value: d.event.id, checked: kept.has(d.event.id), 'aria-label': 'Select ' + d.event.id })),
      h('td', {}, h('code', {}, d.event.id)),
      h('td', {}, d.event.topic + '/' + d.event.partition + ' @ ' + d.event.offset),
      h('td', {}, d.kind),
      h('td', { class: 'error-text', 'data-col': 'error' }, d.error),
      h('td', {}, num(d.attempts)),
      h('td', {}, when(d.at_ms)),
      h('td', {}, h('code', { class: 'payload' }, preview(d.event)))));
    if (!rows.length) rows.push(h('tr', {}, h('td', { colspan: 8 }, 'No dead letters.')));
    dead.replaceChildren(...rows);
    deadTitle.textContent = 'Dead letters (' + answer.dead_letters.length + ')';
    deadCount = answer.dead_letters.length;
  };

  const confirmed = async (title, text, okLabel, fn) => {
    if (!(await confirmAction(title, text, okLabel))) return;
    await act(async () => {
      const done = await fn();
      await reload();
      return done;
    });
  };
  const pauseOrResume = () => {
    const paused = v.state === 'paused';
    const text = paused
      ? 'Resume ' + name + ': its loops start again from the committed offsets and work through the lag (' + num(v.lag) + ' events).'
      : 'Pause ' + name + ': its loops stop after their current batch. Events keep arriving and wait (the lag grows) until you resume; nothing is lost.';
    confirmed(paused ? 'Resume ' + name + '?' : 'Pause ' + name + '?', text, paused ? 'Resume' : 'Pause', async () => {
      await api('POST', path + (paused ? '/resume' : '/pause'));
      return (paused ? 'Resumed ' : 'Paused ') + name;
    });
  };
  const rollback = (revision) => {
    const target = v.revisions.find((r) => r.revision === revision);
    const next = Math.max(...v.revisions.map((r) => r.revision)) + 1;
    const text = 'Roll ' + name + ' back to revision ' + revision + ' (component ' + short(target.spec.component) + '): its spec is deployed again as a new revision r' + next +
      ', switching at a batch boundary; nothing is lost or processed twice. Events already processed are not processed again.';
    confirmed('Roll back ' + name + ' to r' + revision + '?', text, 'Roll back', async () => {
      const r = await api('POST', path + '/rollback', { revision });
      return 'Rolled ' + name + ' back to r' + revision + ': now r' + r.handler.revision;
    });
  };

  const rewindTo = h('select', { id: 'rewind-to' },
    h('option', { value: 'earliest' }, 'earliest retained event'),
    h('option', { value: 'latest' }, 'latest (skip the backlog)'),
    h('option', { value: 'offset' }, 'offset'),
    h('option', { value: 'timestamp' }, 'time (ms since the epoch)'));
  const rewindValue = h('input', { id: 'rewind-value', type: 'number', min: 0, inputmode: 'numeric' });
  const reprocess = h('input', { id: 'rewind-reprocess', type: 'checkbox' });
  const rewind = (ev) => {
    ev.preventDefault();
    const kind = rewindTo.value;
    let to = kind;
    if (kind === 'offset' || kind === 'timestamp') {
      if (rewindValue.value === '') { notice('Give the ' + kind + ' to rewind to.', 'error'); return; }
      to = { [kind]: Number(rewindValue.value) };
    }
    const where = { earliest: 'back to the oldest retained event', latest: 'to the end of every partition', offset: 'to offset ' + rewindValue.value + ' in every partition', timestamp: 'to the first event appended at or after ' + when(Number(rewindValue.value)) }[kind];
    let text = 'Move every partition of ' + name + ' ' + where + '. ';
    if (kind === 'latest') text += 'The ' + num(v.lag) + ' events not yet processed are skipped: this handler will never process them. ';
    text += reprocess.checked
      ? 'With reprocess, the handler\'s dedup marks on those partitions are deleted: every event from there on is processed again, its state changes applied again and its outputs published again (with the same IDs as before, so consumers that deduplicate by ID still see each once).'
      : 'Without reprocess, events it already committed are read again but dropped as duplicates (within its dedup window): nothing is applied twice.';
    confirmed('Rewind ' + name + '?', text, 'Rewind', async () => {
      const r = await api('POST', path + '/rewind', { to, reprocess: reprocess.checked });
      return 'Rewound ' + name + ': ' + r.partitions.map((p) => p.topic + '/' + p.partition + ' → ' + p.committed).join(', ');
    });
  };

  const file = h('input', { id: 'deploy-file', type: 'file', accept: '.wasm,application/wasm', 'aria-describedby': 'deploy-file-help' });
  const config = h('textarea', { id: 'deploy-config', rows: 4, spellcheck: 'false', 'aria-describedby': 'deploy-config-help' });
  const subscribe = h('input', { id: 'deploy-subscribe', type: 'text' });
  const outputs = h('input', { id: 'deploy-outputs', type: 'text' });
  const fillDeploy = () => {
    const spec = v.spec || {};
    config.value = Object.entries(spec.config || {}).map(([k, val]) => k + '=' + val).join('\n');
    subscribe.value = (spec.subscribe || []).join(', ');
    outputs.value = (spec.outputs || []).join(', ');
  };
  const deploy = (ev) => {
    ev.preventDefault();
    act(async () => {
      const spec = JSON.parse(JSON.stringify(v.spec));
      spec.config = {};
      for (const [i, line] of config.value.split('\n').entries()) {
        if (!line.trim() || line.trim().startsWith('#')) continue;
        const at = line.indexOf('=');
        if (at < 1) throw new ApiError(0, 'invalid_config', 'Config line ' + (i + 1) + ' is not key=value: ' + line);
        spec.config[line.slice(0, at).trim()] = line.slice(at + 1).trim();
      }
      const list = (text) => text.split(',').map((s) => s.trim()).filter(Boolean);
      spec.subscribe = list(subscribe.value);
      spec.outputs = list(outputs.value);
      let uploaded = '';
      if (file.files.length) {
        const up = await api('POST', '/v1/components', await file.files[0].arrayBuffer(), 'application/wasm');
        spec.component = up.digest;
        uploaded = 'uploaded ' + file.files[0].name + ' as ' + short(up.digest) + '; ';
      }
      const r = await api('PUT', path, spec);
      file.value = '';
      await reload();
      return r.changed
        ? uploaded + 'deployed ' + name + ' revision r' + r.handler.revision
        : uploaded + 'nothing changed: the spec is the active revision\'s';
    });
  };

  const replay = async (all) => {
    const ids = all ? null : [...dead.querySelectorAll('input:checked')].map((c) => c.value);
    if (ids && !ids.length) { notice('Select the dead letters to replay first.', 'error'); return; }
    const what = ids ? ids.length + ' dead letter' + (ids.length === 1 ? '' : 's') + ' (' + ids.join(', ') + ')' : 'all ' + deadCount + ' dead letters';
    const text = 'Replay ' + what + ' of ' + name + ' with the active revision r' + v.revision + '. Each is processed once: on success its outputs, its state changes and the removal of the dead letter land in one atomic write; if it fails again it stays here with the new error.';
    if (!(await confirmAction('Replay dead letters?', text, 'Replay'))) return;
    await act(async () => {
      const r = await api('POST', path + '/dead-letters/replay', ids ? { ids } : undefined);
      setTimeout(() => loadDead().catch(() => {}), 1000);
      return 'Queued ' + r.queued + ' dead letter' + (r.queued === 1 ? '' : 's') + ' of ' + name + ' for replay';
    });
  };
  const purge = (all) => {
    const ids = all ? null : [...dead.querySelectorAll('input:checked')].map((c) => c.value);
    if (ids && !ids.length) { notice('Select the dead letters to purge first.', 'error'); return; }
    const what = ids ? ids.length + ' dead letter' + (ids.length === 1 ? '' : 's') + ' (' + ids.join(', ') + ')' : 'all ' + deadCount + ' dead letters';
    confirmed('Purge dead letters of ' + name + '?',
      'Delete ' + what + ' of ' + name + ' for good. Their events are not processed and this cannot be undone.',
      'Purge', async () => {
        const r = await api('DELETE', path + '/dead-letters', ids ? { ids } : undefined);
        await loadDead();
        return 'Purged ' + r.purged + ' dead letter' + (r.purged === 1 ? '' : 's') + ' of ' + name;
      });
  };

  const render = () => {
    status.replaceChildren(h('span', { class: 'badge ' + v.state }, v.state), ' revision r' + v.revision + ' · component ', h('code', {}, short(v.spec && v.spec.component)),
      ' · lag ' + num(v.lag) + ' · dead letters ' + num(v.dead_letters));
    const paused = v.state === 'paused';
    const key = v.state + '/' + v.revision + '/' + v.revisions.length;
    if (key !== actionsKey) {
      actionsKey = key;
      actions.replaceChildren(
        h('button', { type: 'button', id: 'pause-resume', onclick: pauseOrResume }, paused ? 'Resume…' : 'Pause…'),
        v.revisions.length > 1 ? h('button', { type: 'button', id: 'rollback', onclick: () => rollback(previousRevision()) }, 'Roll back to r' + previousRevision() + '…') : null);
    }
    partitions.replaceChildren(...v.partitions.map((p) => h('tr', {},
      h('td', {}, p.topic), h('td', {}, p.partition), h('td', {}, num(p.committed)), h('td', {}, num(p.head)), h('td', { 'data-col': 'lag' }, num(p.lag)))));
    counters.replaceChildren(...Object.entries(v.counters).map(([k, n]) => h('div', {}, h('dt', {}, k.replace('_', ' ')), h('dd', { 'data-counter': k }, num(n)))));
    if (key !== revisionKey) {
      revisionKey = key;
      fillDeploy();
      revisions.replaceChildren(...v.revisions.slice().reverse().map((r) => {
        const before = v.revisions.find((x) => x.revision === r.revision - 1);
        return h('tr', { 'data-revision': r.revision },
          h('th', { scope: 'row' }, 'r' + r.revision),
          h('td', {}, when(r.deployed_at_ms)),
          h('td', {}, h('code', {}, short(r.spec.component))),
          h('td', { class: 'changes' }, changes(before, r, v.revisions)),
          h('td', {}, r.revision === v.revision
            ? h('span', { class: 'badge running' }, 'active')
            : h('button', { type: 'button', onclick: () => rollback(r.revision), 'aria-label': 'Roll back to revision ' + r.revision }, 'Roll back to r' + r.revision + '…')));
      }));
    }
    if (v.dead_letters !== deadCount) loadDead().catch((e) => handleAuth(e));
  };
  const previousRevision = () => {
    const older = v.revisions.filter((r) => r.revision < v.revision);
    return older.length ? older[older.length - 1].revision : v.revisions[0].revision;
  };

  main.replaceChildren(
    h('p', { class: 'crumbs' }, h('a', { href: '#/' }, '← All handlers')),
    title, status, actions,
    h('form', { class: 'panel', id: 'rewind-form', onsubmit: rewind },
      h('h2', {}, 'Rewind'),
      h('div', { class: 'fields' },
        h('label', { for: 'rewind-to' }, 'Move to'), rewindTo,
        h('label', { for: 'rewind-value' }, 'Offset or time (for those choices)'), rewindValue,
        h('span', { class: 'check' }, reprocess, h('label', { for: 'rewind-reprocess' }, 'Reprocess: delete the dedup marks, so already processed events run again'))),
      h('button', { type: 'submit' }, 'Rewind…')),
    h('h2', {}, 'Partitions'),
    table('partitions', 'Committed offset, head and lag per source partition', ['Topic', 'Partition', 'Committed', 'Head', 'Lag'], partitions),
    h('h2', {}, 'Counters'), counters,
    h('form', { class: 'panel', id: 'deploy-form', onsubmit: deploy },
      h('h2', {}, 'Deploy a new revision'),
      h('div', { class: 'fields' },
        h('label', { for: 'deploy-file' }, 'Component (.wasm)'), file,
        h('p', { id: 'deploy-file-help', class: 'help' }, 'Leave empty to keep the active component.'),
        h('label', { for: 'deploy-config' }, 'Config'), config,
        h('p', { id: 'deploy-config-help', class: 'help' }, 'One key=value per line.'),
        h('label', { for: 'deploy-subscribe' }, 'Subscribe to (comma separated)'), subscribe,
        h('label', { for: 'deploy-outputs' }, 'Output topics (comma separated)'), outputs),
      h('button', { type: 'submit', id: 'deploy' }, 'Deploy new revision')),
    h('h2', {}, 'Revisions'),
    table('revisions', 'Newest first, with what changed from the revision before', ['Revision', 'Deployed', 'Component', 'What changed', ''], revisions),
    h('section', { 'aria-labelledby': 'dead-letters-title' },
      deadTitle,
      h('div', { class: 'actions', role: 'group', 'aria-label': 'Dead-letter operations' },
        h('button', { type: 'button', id: 'dlq-replay', onclick: () => replay(false) }, 'Replay selected…'),
        h('button', { type: 'button', id: 'dlq-replay-all', onclick: () => replay(true) }, 'Replay all…'),
        h('button', { type: 'button', id: 'dlq-purge', class: 'danger', onclick: () => purge(false) }, 'Purge selected…'),
        h('button', { type: 'button', id: 'dlq-purge-all', class: 'danger', onclick: () => purge(true) }, 'Purge all…'),
        h('button', { type: 'button', onclick: () => loadDead().catch((e) => handleAuth(e)) }, 'Refresh')),
      h('div', { class: 'table-wrap' }, h('table', { id: 'dead-letters' },
        h('caption', {}, 'Events the handler could not process, with why'),
        h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, selectAll),
          ['ID', 'Source', 'Kind', 'Error', 'Attempts', 'Dead-lettered', 'Payload'].map((t) => h('th', { scope: 'col' }, t)))),
        dead))));
  render();
  await poll(id, reload);
}

// ---- Topics ------------------------------------------------------------

async function topicsPage(main, _arg, id) {
  const tbody = h('tbody');
  let topics = [];
  const findTopic = h('select', { id: 'find-topic' });
  const findId = h('input', { id: 'find-id', type: 'text', required: true });
  const found = h('div', { id: 'find-result', role: 'status' });
  const tailTopic = h('select', { id: 'tail-topic' });
  const tailButton = h('button', { type: 'submit', id: 'tail-toggle' }, 'Start tail');
  const tailRows = h('tbody');
  let tail = null;

  const find = async (ev) => {
    ev.preventDefault();
    const t = topics.find((x) => x.name === findTopic.value);
    const wanted = findId.value.trim();
    if (!t || !wanted) return;
    found.textContent = 'Searching ' + t.name + '…';
    await act(async () => {
      let scanned = 0;
      for (let p = 0; p < t.partitions; p++) {
        let from = 0;
        while (scanned < 200000) {
          const page = await api('GET', '/v1/topics/' + encodeURIComponent(t.name) + '/events?partition=' + p + '&from=' + from + '&limit=1000');
          const hit = page.events.find((e) => e.id === wanted);
          if (hit) { found.replaceChildren(eventCard(hit)); return ''; }
          scanned += page.events.length;
          if (!page.events.length || page.next >= page.head) break;
          from = page.next;
        }
      }
      found.textContent = 'No event with ID ' + wanted + ' in ' + t.name + ' (' + num(scanned) + ' events searched' + (scanned >= 200000 ? ', stopped at the limit' : '') + ').';
      return '';
    });
  };
  const toggleTail = (ev) => {
    ev.preventDefault();
    if (tail) {
      tail = null;
      tailButton.textContent = 'Start tail';
      return;
    }
    const t = topics.find((x) => x.name === tailTopic.value);
    if (!t) return;
    tail = { topic: t.name, from: t.heads.map((hd) => Math.max(0, hd - 10)) };
    tailRows.replaceChildren();
    tailButton.textContent = 'Stop tail';
  };
  const readTail = async () => {
    if (!tail) return;
    const current = tail;
    const fresh = [];
    for (let p = 0; p < current.from.length; p++) {
      const page = await api('GET', '/v1/topics/' + encodeURIComponent(current.topic) + '/events?partition=' + p + '&from=' + current.from[p] + '&limit=100');
      current.from[p] = page.next;
      fresh.push(...page.events);
    }
    // Oldest first, so that prepending leaves the newest on top.
    fresh.sort((a, b) => a.timestamp_ms - b.timestamp_ms || a.partition - b.partition || a.offset - b.offset);
    for (const e of fresh) {
      tailRows.prepend(h('tr', {}, h('td', {}, e.partition), h('td', {}, num(e.offset)), h('td', {}, h('code', {}, e.id)), h('td', {}, e.key || ''), h('td', {}, when(e.timestamp_ms)), h('td', {}, h('code', { class: 'payload' }, preview(e)))));
    }
    while (tailRows.children.length > 200) tailRows.lastChild.remove();
  };

  main.replaceChildren(
    h('h1', {}, 'Topics'),
    table('topics', 'Partition heads: events appended so far', ['Topic', 'Partitions', 'Heads', 'Events'], tbody),
    h('form', { class: 'panel', id: 'find-form', onsubmit: find },
      h('h2', {}, 'Find an event by ID'),
      h('div', { class: 'fields' }, h('label', { for: 'find-topic' }, 'Topic'), findTopic, h('label', { for: 'find-id' }, 'Message ID'), findId),
      h('button', { type: 'submit' }, 'Find'), found),
    h('form', { class: 'panel', id: 'tail-form', onsubmit: toggleTail },
      h('h2', {}, 'Live tail'),
      h('div', { class: 'fields' }, h('label', { for: 'tail-topic' }, 'Topic'), tailTopic),
      tailButton),
    table('tail', 'Newest first: the last 10 events per partition when started, then each new one', ['Partition', 'Offset', 'ID', 'Key', 'Appended', 'Payload'], tailRows));
  await poll(id, async () => {
    const answer = await api('GET', '/v1/topics');
    const names = answer.topics.map((t) => t.name).join();
    if (names !== topics.map((t) => t.name).join()) {
      for (const select of [findTopic, tailTopic]) {
        const keep = select.value;
        select.replaceChildren(...answer.topics.map((t) => h('option', { value: t.name, selected: t.name === keep }, t.name)));
      }
    }
    topics = answer.topics;
    tbody.replaceChildren(...topics.map((t) => h('tr', { 'data-topic': t.name },
      h('th', { scope: 'row' }, t.name), h('td', {}, t.partitions), h('td', {}, t.heads.map(num).join(' · ')),
      h('td', {}, num(t.heads.reduce((a, b) => a + b, 0))))));
    await readTail();
  });
}

function eventCard(e) {
  const fields = [['Topic', e.topic], ['Partition', e.partition], ['Offset', e.offset], ['ID', e.id], ['Key', e.key || '–'], ['Appended', when(e.timestamp_ms)],
    ['Headers', e.headers.map(([k, val]) => k + ': ' + val).join(', ') || '–']];
  return h('div', { class: 'event' },
    h('dl', {}, fields.flatMap(([k, val]) => [h('dt', {}, k), h('dd', {}, String(val))])),
    h('pre', {}, e.payload !== undefined ? JSON.stringify(e.payload, null, 2) : 'base64: ' + e.payload_base64));
}

// ---- Cluster -----------------------------------------------------------

async function clusterPage(main, _arg, id) {
  const body = h('div');
  main.replaceChildren(h('h1', {}, 'Cluster'), body);
  await poll(id, async () => {
    let c;
    try {
      c = await api('GET', '/v1/cluster');
    } catch (e) {
      if (e.code !== 'cluster_off') throw e;
      body.replaceChildren(h('p', {}, 'This host runs without [cluster]: it owns every partition of its handlers. See docs/cluster.md to run several hosts.'));
      return;
    }
    const leases = Object.entries(c.leases || {}).map(([k, n]) => h('div', {}, h('dt', {}, k), h('dd', {}, num(n))));
    body.replaceChildren(
      h('p', {}, 'This host: ', h('code', {}, c.host), ' · live hosts: ', c.members.join(', '), ' · fenced writes: ' + num(c.fenced_writes)),
      h('h2', {}, 'Lease counts on this host'), h('dl', { class: 'counters' }, leases),
      table('cluster-partitions', 'Every partition: its owner and epoch; position, lag and last take-over for those this host owns',
        ['Handler', 'Partition', 'Owner', 'Epoch', 'Lag', 'Last take-over'],
        h('tbody', {}, c.partitions.map((p) => h('tr', {},
          h('td', {}, p.handler), h('td', {}, p.partition), h('td', {}, p.owner || 'none'), h('td', {}, p.epoch === null || p.epoch === undefined ? '–' : p.epoch),
          h('td', {}, p.lag === undefined ? '–' : num(p.lag)),
          h('td', {}, p.last_takeover ? when(p.last_takeover.at_ms) + ' (idle ' + (p.last_takeover.idle_ms === null ? '–' : p.last_takeover.idle_ms + ' ms') + ', restore ' + p.last_takeover.restore_ms + ' ms)' : '–'))))));
  });
}

// ---- Routing -----------------------------------------------------------

async function route() {
  pageId += 1;
  clearTimeout(timer);
  const id = pageId;
  const parts = (location.hash || '#/').slice(2).split('/').map(decodeURIComponent);
  const [page, arg] = parts[0] === 'handler' && parts[1] ? [handlerPage, parts[1]]
    : parts[0] === 'topics' ? [topicsPage] : parts[0] === 'cluster' ? [clusterPage] : [overviewPage];
  const section = page === handlerPage ? 'overview' : parts[0] || 'overview';
  for (const a of document.querySelectorAll('[data-nav]')) {
    if (a.dataset.nav === section) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  $('#forget').hidden = !token();
  try {
    await page($('#main'), arg, id);
  } catch (e) {
    if (id !== pageId || handleAuth(e)) return;
    $('#main').replaceChildren(h('h1', {}, 'Something went wrong'), h('p', { class: 'error', role: 'alert' }, e.message + (e.code ? ' (' + e.code + ')' : '')));
  }
}

document.addEventListener('DOMContentLoaded', () => {
  $('#forget').addEventListener('click', () => showTokenForm('required'));
  window.addEventListener('hashchange', () => {
    $('#notice').hidden = true;
    route();
  });
  route();
});
