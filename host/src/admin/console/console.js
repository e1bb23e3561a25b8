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
