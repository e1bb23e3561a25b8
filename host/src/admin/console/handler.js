// The Weir console: a handler's page (partitions, counters, revisions with
// what changed, deploy, roll back, pause, resume, rewind, dead letters).
// Uses the helpers of console.js; data goes on the page as text only.
'use strict';

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
  const canaryAction = (verb) => {
    const c = v.canary.running;
    const text = verb === 'promote'
      ? 'Promote canary r' + c.revision + ' of ' + name + ': it becomes the active revision on every partition, switching at a batch boundary; nothing is lost or processed twice.'
      : 'Abort canary r' + c.revision + ' of ' + name + ': the active revision r' + v.revision + ' takes partition ' + c.partitions.join(', ') +
        ' back at a batch boundary; the state the canary wrote there stays. Its dead letters stay too (replay them after).';
    const title = (verb === 'promote' ? 'Promote' : 'Abort') + ' canary r' + c.revision + '?';
    confirmed(title, text, verb === 'promote' ? 'Promote' : 'Abort canary', async () => {
      await api('POST', path + '/canary/' + verb);
      return (verb === 'promote' ? 'Promoted' : 'Aborted') + ' canary r' + c.revision + ' of ' + name;
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
    const running = v.canary && v.canary.running;
    const last = v.canary && v.canary.last;
    if (running) status.append(' · canary r' + running.revision + ' on partition ' + running.partitions.join(', '));
    else if (last) status.append(' · last canary r' + last.revision + ' ' + last.outcome + ' (' + last.reason + ')');
    const paused = v.state === 'paused';
    const key = v.state + '/' + v.revision + '/' + v.revisions.length + '/' + (running ? running.revision : '-');
    if (key !== actionsKey) {
      actionsKey = key;
      actions.replaceChildren(
        h('button', { type: 'button', id: 'pause-resume', onclick: pauseOrResume }, paused ? 'Resume…' : 'Pause…'),
        v.revisions.length > 1 && !running ? h('button', { type: 'button', id: 'rollback', onclick: () => rollback(previousRevision()) }, 'Roll back to r' + previousRevision() + '…') : null,
        running ? h('button', { type: 'button', id: 'canary-promote', onclick: () => canaryAction('promote') }, 'Promote canary r' + running.revision + '…') : null,
        running ? h('button', { type: 'button', id: 'canary-abort', onclick: () => canaryAction('abort') }, 'Abort canary…') : null);
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
