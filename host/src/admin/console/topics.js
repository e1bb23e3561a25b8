// The Weir console: the topics page (heads, find by ID, live tail) and the
// cluster page. Uses the helpers of console.js; data goes on the page as
// text only.
'use strict';

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
