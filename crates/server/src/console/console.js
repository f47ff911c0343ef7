// The Janus console: polls the JSON under /console/api/ and draws it.
// Whatever the server sends reaches the DOM as text (textContent, dataset),
// never as HTML, so no key, path or value can inject markup.
'use strict';

const API = '/console/api/';
const TIMELINE_MS = 500;      // timeline poll
const PANELS_MS = 2000;       // cluster, sessions and leases poll
const REFRESH_MS = 5000;      // tree and keys, when the timeline shows nothing new
const TIMELINE_KEEP = 1000;   // rows kept on the page (the server keeps 2000)
const SETTLE_MS = 300;        // a burst of changes refreshes the panels once

const $ = (id) => document.getElementById(id);

// An element with attributes (`class`, `data` for dataset entries, others
// as is) and children (nodes, or strings as text nodes).
function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === 'class') e.className = v;
    else if (k === 'data') for (const [dk, dv] of Object.entries(v)) e.dataset[dk] = String(dv);
    else e.setAttribute(k, String(v));
  }
  for (const c of children) {
    if (c === null || c === undefined) continue;
    e.append(c instanceof Node ? c : String(c));
  }
  return e;
}

const td = (text, cls) => el('td', cls ? { class: cls } : {}, text);

async function getJSON(name, params = {}) {
  const url = new URL(API + name, location.href);
  for (const [k, v] of Object.entries(params)) url.searchParams.set(k, String(v));
  const resp = await fetch(url, { cache: 'no-store', headers: { Accept: 'application/json' } });
  if (!resp.ok) {
    const err = new Error(`${name}: HTTP ${resp.status}`);
    err.status = resp.status;
    throw err;
  }
  return resp.json();
}

// ---- formatting

function formatBytes(n) {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / 1024 / 1024).toFixed(1)} MiB`;
}

const zxid = (n) => `0x${n.toString(16)} (rev ${n})`;
const millis = (ms) => (ms > 0 ? new Date(ms).toISOString().replace('T', ' ').replace('Z', ' UTC') : '–');
const plural = (n, word) => `${n} ${word}${n === 1 ? '' : 's'}`;

// A value preview from the server ({text} or {hex}, {size}, {truncated}).
function valueText(v) {
  if (!v) return '';
  if (v.null) return 'null';
  const more = v.truncated ? ` … (${formatBytes(v.size)})` : '';
  if (v.text !== undefined) return v.text + more;
  return `hex ${v.hex}${more}`;
}

// ---- connection status

function ok() {
  const s = $('status');
  s.textContent = 'live';
  s.className = 'status ok';
  s.title = '';
}

function failed(err) {
  const s = $('status');
  s.textContent = 'unreachable, retrying';
  s.className = 'status down';
  s.title = String(err && err.message ? err.message : err);
}

// Run `fn` once soon, however many times this is asked meanwhile; never
// two runs at once.
function coalesced(fn) {
  let timer = null;
  let running = false;
  let again = false;
  const run = async () => {
    timer = null;
    if (running) { again = true; return; }
    running = true;
    try { await fn(); ok(); } catch (e) { failed(e); }
    running = false;
    if (again) { again = false; schedule(); }
  };
  const schedule = (delay = SETTLE_MS) => {
    if (timer === null) timer = setTimeout(run, delay);
  };
  return schedule;
}

// ---- timeline

const BADGES = { zookeeper: 'ZooKeeper', etcd: 'etcd', janus: 'Janus' };
const KINDS = {
  created: 'created', deleted: 'deleted', dataChanged: 'data set',
  put: 'put', delete: 'delete', more: 'more', gap: 'gap',
};

let after = 0;   // the highest revision on the page

function rowText(r) {
  if (r.kind === 'more') return `… and ${plural(r.count, 'more change')} in this revision`;
  if (r.kind === 'gap') return `${plural(r.count, 'change batch')} missed here (the console fell behind)`;
  if (r.name === null || r.name === undefined) {
    return r.personality === 'etcd' ? '(key hidden: etcd auth is on)' : '(path hidden: no world READ)';
  }
  return r.name;
}

function rowElement(r) {
  return el('li', {
    class: `row ${r.personality} ${r.kind}`,
    data: { rev: r.revision, personality: r.personality, kind: r.kind, name: r.name ?? '' },
  },
  el('span', { class: 'rev', title: `revision ${r.revision} = zxid 0x${r.revision.toString(16)}` }, r.revision),
  el('span', { class: `badge ${r.personality}` }, BADGES[r.personality] ?? r.personality),
  el('span', { class: 'kind' }, KINDS[r.kind] ?? r.kind),
  el('span', { class: 'name mono', title: rowText(r) }, rowText(r)),
  el('span', { class: 'size' }, r.size === undefined ? '' : formatBytes(r.size)));
}

function timelineNote(text) {
  $('timeline').append(el('li', { class: 'note' }, text));
}

function appendRows(rows) {
  const list = $('timeline');
  const atBottom = list.scrollHeight - list.scrollTop - list.clientHeight < 24;
  let zk = false;
  let etcd = false;
  const frag = document.createDocumentFragment();
  for (const r of rows) {
    frag.append(rowElement(r));
    after = Math.max(after, r.revision);
    if (r.personality === 'zookeeper') zk = true;
    if (r.personality === 'etcd') etcd = true;
  }
  list.querySelector('li.empty')?.remove();
  list.append(frag);
  while (list.children.length > TIMELINE_KEEP) list.firstElementChild.remove();
  if (atBottom) list.scrollTop = list.scrollHeight;
  if (zk) refreshTree();
  if (etcd) refreshKeys();
}

async function pollTimeline() {
  try {
    // Catch up a page at a time (the first load may take a few).
    for (let pages = 0; pages < 8; pages++) {
      const page = await getJSON('timeline', { after });
      if (page.revision < after) {
        // The clock went back: this is another cluster (a wiped data dir).
        timelineNote(`The revision went back from ${after} to ${page.revision}: a new cluster?`);
        after = 0;
        continue;
      }
      if (page.missed) {
        timelineNote(after === 0
          ? 'Older changes are no longer held (the console keeps the latest 2000).'
          : 'Some changes were dropped before this page read them.');
      }
      appendRows(page.rows);
      $('sum-revision').textContent = page.revision;
      $('timeline').dataset.revision = page.revision;
      if (!page.more) break;
    }
    ok();
  } catch (e) {
    failed(e);
  }
  setTimeout(pollTimeline, TIMELINE_MS);
}

// ---- cluster

function memberRole(m) {
  const parts = [m.voter ? 'voter' : 'learner'];
  if (m.leader) parts.unshift('leader');
  if (m.self) parts.push('this member');
  return parts.join(' · ');
}

async function loadCluster() {
  const c = await getJSON('cluster');
  $('sum-member').textContent = c.memberId;
  $('sum-state').textContent = c.state;
  $('sum-leader').textContent = c.leader ?? 'none';
  $('sum-term').textContent = c.term;
  $('sum-revision').textContent = c.revision;
  $('cluster').dataset.leader = c.leader ?? '';
  $('cluster').dataset.member = c.memberId;
  const rows = c.members.map((m) => el('tr', {
    class: m.leader ? 'leader' : '',
    data: { id: m.id },
  },
  td(m.id, 'mono'),
  td(m.name || '(not started)'),
  td(m.peerAddr, 'mono'),
  td(m.clientUrls.join(' '), 'mono'),
  td(m.zkClient || '–', 'mono'),
  td(memberRole(m))));
  fill('members', rows, 6, 'no members yet');
  document.title = `Janus console · member ${c.memberId}`;
}

// ---- sessions and leases

function fill(tableId, rows, columns, empty) {
  const body = $(tableId).tBodies[0];
  if (rows.length === 0) {
    body.replaceChildren(el('tr', { class: 'empty' }, el('td', { colspan: columns }, empty)));
  } else {
    body.replaceChildren(...rows);
  }
}

const shownOf = (shown, total) => (shown < total ? `${shown} of ${total}` : String(total));

async function loadSessions() {
  const s = await getJSON('sessions');
  fill('sessions', s.sessions.map((x) => el('tr', { data: { session: x.id } },
    td(x.id, 'mono'), td(`${x.timeoutMs / 1000} s`), td(x.ephemerals))), 3, 'no sessions');
  fill('leases', s.leases.map((x) => el('tr', { data: { lease: x.id } },
    td(x.id, 'mono'), td(`${x.ttlSecs} s`), td(x.keys))), 3, 'no leases');
  $('sessions-total').textContent = shownOf(s.sessions.length, s.sessionsTotal);
  $('leases-total').textContent = shownOf(s.leases.length, s.leasesTotal);
}

async function pollPanels() {
  try {
    await loadCluster();
    await loadSessions();
    ok();
  } catch (e) {
    failed(e);
  }
  setTimeout(pollPanels, PANELS_MS);
}

// ---- ZNode tree

const expanded = new Set(['/']);
let selected = null;

function nameButton(path, name, extra) {
  const b = el('button', { type: 'button', class: `name${extra ? ` ${extra}` : ''}` }, name);
  b.addEventListener('click', () => {
    selected = path;
    markSelected();
    showZnode(path).then(ok, failed);
  });
  return b;
}

function markSelected() {
  for (const li of $('tree').querySelectorAll('li[data-path]')) {
    li.classList.toggle('selected', li.dataset.path === selected);
  }
}

async function buildNode(child) {
  const open = child.numChildren > 0 && expanded.has(child.path);
  const li = el('li', { data: { path: child.path } });
  const toggle = el('button', {
    type: 'button',
    class: 'toggle',
    'aria-expanded': open,
    'aria-label': open ? 'collapse' : 'expand',
  }, child.numChildren > 0 ? (open ? '▾' : '▸') : '');
  if (child.numChildren > 0) {
    toggle.addEventListener('click', () => {
      if (expanded.has(child.path)) expanded.delete(child.path);
      else expanded.add(child.path);
      refreshTree(0);
    });
  } else {
    toggle.disabled = true;
  }
  li.append(toggle, nameButton(child.path, child.name, child.ephemeral ? 'ephemeral' : ''));
  if (child.numChildren > 0) li.append(el('span', { class: 'count' }, child.numChildren));
  if (open) li.append(await buildChildren(child.path));
  return li;
}

async function buildChildren(path) {
  const ul = el('ul');
  let n;
  try {
    n = await getJSON('znode', { path });
  } catch (e) {
    if (e.status !== 404) throw e;
    expanded.delete(path);
    return ul;
  }
  if (!n.readable) {
    ul.append(el('li', { class: 'note' }, 'children hidden: no world READ'));
    return ul;
  }
  for (const c of n.children) {
    if (c.path === null) ul.append(el('li', { class: 'note' }, `${c.name} (path too long to open)`));
    else ul.append(await buildNode(c));
  }
  if (n.more) ul.append(el('li', { class: 'note' }, `… ${n.childrenTotal - n.children.length} more not shown`));
  return ul;
}

// The whole visible tree is fetched, then swapped in at once.
const refreshTree = coalesced(async () => {
  const root = el('li', { data: { path: '/' } },
    el('button', { type: 'button', class: 'toggle', disabled: '' }, '▾'),
    nameButton('/', '/'),
    await buildChildren('/'));
  $('tree').replaceChildren(root);
  markSelected();
  if (selected !== null) await showZnode(selected);
});

function statRow(name, value) {
  return el('tr', {}, el('th', {}, name), td(value, 'mono'));
}

async function showZnode(path) {
  let n;
  try {
    n = await getJSON('znode', { path });
  } catch (e) {
    if (e.status !== 404) throw e;
    $('znode-path').textContent = `${path} (deleted)`;
    $('znode-data').textContent = '';
    $('znode-stat').tBodies[0].replaceChildren();
    return;
  }
  const st = n.stat;
  $('znode').dataset.path = path;
  $('znode-path').textContent = n.path;
  $('znode-data').textContent = n.readable ? valueText(n.data) : '(hidden: no world READ)';
  $('znode-stat').tBodies[0].replaceChildren(
    statRow('cZxid', zxid(st.czxid)),
    statRow('mZxid', zxid(st.mzxid)),
    statRow('pZxid', zxid(st.pzxid)),
    statRow('ctime', millis(st.ctime)),
    statRow('mtime', millis(st.mtime)),
    statRow('version', st.version),
    statRow('cversion', st.cversion),
    statRow('aversion', st.aversion),
    statRow('ephemeralOwner', st.ephemeralOwner),
    statRow('dataLength', st.dataLength),
    statRow('numChildren', st.numChildren),
    statRow('ACL', n.acl.join(', ') || '–'));
}

// ---- key space

const refreshKeys = coalesced(async () => {
  const k = await getJSON('keys', { prefix: $('key-prefix').value, limit: $('key-limit').value });
  const rows = k.keys.map((kv) => el('tr', { data: { key: kv.key, rev: kv.modRevision } },
    td(kv.key, 'mono key'),
    el('td', { class: 'mono value', title: valueText(kv.value) }, valueText(kv.value)),
    td(kv.modRevision),
    td(kv.version),
    td(kv.lease ?? '', 'mono')));
  fill('keys', rows, 5, k.hidden ? 'etcd auth is on: keys are not shown here' : 'no keys');
  $('keys-note').textContent = k.more
    ? `The first ${k.keys.length} keys; narrow the prefix to see others.`
    : '';
});

// ---- start

function start() {
  $('timeline').append(el('li', { class: 'note empty' }, 'No changes since this member started.'));
  $('key-filter').addEventListener('submit', (e) => { e.preventDefault(); refreshKeys(0); });
  $('key-prefix').addEventListener('input', () => refreshKeys());
  $('key-limit').addEventListener('change', () => refreshKeys(0));
  pollPanels();
  pollTimeline();
  refreshTree(0);
  refreshKeys(0);
  // Changes the timeline did not see (before this member started, or
  // dropped) still reach the panels.
  setInterval(() => { refreshTree(0); refreshKeys(0); }, REFRESH_MS);
}

start();
