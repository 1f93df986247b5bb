// wacenter operator's console. Every value shown comes from the REST API and is put on the page
// with textContent, never as HTML: message texts are typed by strangers.
'use strict';

const TEXT = {
  en: {
    'nav.live': 'Live', 'nav.search': 'Search', 'nav.deadLetters': 'Dead letters',
    'nav.health': 'Health', 'nav.callback': 'Callback URL', 'nav.today': 'Today',
    'live.title': 'Live flow', 'live.hint': 'Every step of every message, as it happens.',
    'live.connected': 'Connected; waiting for messages…', 'live.lost': 'Connection lost; reconnecting…',
    'search.title': 'Find a message', 'search.placeholder': 'Phone, message id, kode_inbox or kode',
    'search.go': 'Search', 'search.searching': 'Searching…', 'search.notFound': 'Not found: no message matches “{q}”.',
    'search.found': '{n} message(s) for “{q}”', 'search.from': 'from',
    'dlq.title': 'Dead letters', 'dlq.hint': 'Messages that could not succeed. Replay sends one again once its cause is fixed.',
    'dlq.replayAll': 'Replay all', 'dlq.replay': 'Replay', 'dlq.force': 'Replay anyway',
    'dlq.none': 'No dead letters.', 'dlq.count': '{n} dead letter(s)',
    'dlq.uncertain': 'Uncertain: OtomaX (or the customer) may already have this message. Check there first; replaying may make the purchase twice.',
    'dlq.confirmForce': 'OtomaX may already have this message. Did you check that it does not? Replay anyway?',
    'dlq.confirmAll': 'Replay every dead letter (uncertain ones are left alone)?',
    'dlq.done': 'Replayed.', 'dlq.result': '{ok} of {n} replayed.',
    'common.refresh': 'Refresh', 'common.loading': 'Loading…', 'common.error': 'Error: {m}',
    'health.title': 'Health', 'health.ok': 'healthy', 'health.bad': 'unhealthy',
    'health.server': 'OtomaX server', 'health.reachable': 'Reachable', 'health.latency': 'Latency',
    'health.lastOk': 'Last success', 'health.lastError': 'Last error', 'health.nats': 'NATS',
    'health.lag': 'Waiting (consumer lag)', 'health.forwarder': 'to OtomaX', 'health.reply': 'to WhatsApp',
    'health.deadLetters': 'Dead letters', 'health.problems': 'Problems', 'health.yes': 'yes', 'health.no': 'no',
    'health.accounts': 'WhatsApp numbers', 'health.account': 'Number', 'health.loggedIn': 'Logged in',
    'health.notChecked': 'not checked (Meta)',
    'callback.title': 'Outbox callback URL', 'callback.hint': 'Where each OtomaX server posts transaction results.',
    'callback.current': 'Registered URL', 'callback.none': '(none)', 'callback.register': 'Register this service',
    'callback.registered': 'Registered: {u}',
    'today.title': 'Today', 'today.received': 'Messages received', 'today.forwarded': 'Forwarded to OtomaX',
    'today.autoReplies': 'Auto-replies', 'today.sent': 'WhatsApp messages sent', 'today.outbox': 'Transaction results',
    'today.sendFailures': 'Send failures', 'today.notices': 'Sorry notices', 'today.deadLetters': 'Dead letters by reason',
    'today.skipped': 'Not forwarded, by reason', 'today.byStatus': 'OtomaX answers by status', 'today.since': 'Since {t}',
    'step.received': 'received', 'step.skipped': 'skipped', 'step.forwarded': 'forwarded', 'step.otomax_failed': 'OtomaX failed',
    'step.notice_queued': 'notice queued', 'step.sent': 'sent', 'step.send_failed': 'send failed',
    'step.outbox_received': 'result from OtomaX', 'step.outbox_status': 'reported to OtomaX',
    'step.dead_lettered': 'dead letter', 'step.replayed': 'replayed', 'step.reply': 'auto-reply',
  },
  id: {
    'nav.live': 'Langsung', 'nav.search': 'Cari', 'nav.deadLetters': 'Pesan gagal',
    'nav.health': 'Kesehatan', 'nav.callback': 'URL callback', 'nav.today': 'Hari ini',
    'live.title': 'Arus langsung', 'live.hint': 'Setiap langkah setiap pesan, saat terjadi.',
    'live.connected': 'Terhubung; menunggu pesan…', 'live.lost': 'Koneksi terputus; menyambung ulang…',
    'search.title': 'Cari pesan', 'search.placeholder': 'Nomor HP, id pesan, kode_inbox atau kode',
    'search.go': 'Cari', 'search.searching': 'Mencari…', 'search.notFound': 'Tidak ditemukan: tidak ada pesan untuk “{q}”.',
    'search.found': '{n} pesan untuk “{q}”', 'search.from': 'dari',
    'dlq.title': 'Pesan gagal', 'dlq.hint': 'Pesan yang tidak berhasil. Kirim ulang setelah penyebabnya diperbaiki.',
    'dlq.replayAll': 'Kirim ulang semua', 'dlq.replay': 'Kirim ulang', 'dlq.force': 'Tetap kirim ulang',
    'dlq.none': 'Tidak ada pesan gagal.', 'dlq.count': '{n} pesan gagal',
    'dlq.uncertain': 'Tidak pasti: OtomaX (atau pelanggan) mungkin sudah menerima pesan ini. Periksa dulu; kirim ulang bisa membuat transaksi dua kali.',
    'dlq.confirmForce': 'OtomaX mungkin sudah menerima pesan ini. Sudah diperiksa bahwa belum? Tetap kirim ulang?',
    'dlq.confirmAll': 'Kirim ulang semua pesan gagal (yang tidak pasti dilewati)?',
    'dlq.done': 'Dikirim ulang.', 'dlq.result': '{ok} dari {n} dikirim ulang.',
    'common.refresh': 'Muat ulang', 'common.loading': 'Memuat…', 'common.error': 'Galat: {m}',
    'health.title': 'Kesehatan', 'health.ok': 'sehat', 'health.bad': 'bermasalah',
    'health.server': 'Server OtomaX', 'health.reachable': 'Terjangkau', 'health.latency': 'Latensi',
    'health.lastOk': 'Terakhir berhasil', 'health.lastError': 'Galat terakhir', 'health.nats': 'NATS',
    'health.lag': 'Antrean (consumer lag)', 'health.forwarder': 'ke OtomaX', 'health.reply': 'ke WhatsApp',
    'health.deadLetters': 'Pesan gagal', 'health.problems': 'Masalah', 'health.yes': 'ya', 'health.no': 'tidak',
    'health.accounts': 'Nomor WhatsApp', 'health.account': 'Nomor', 'health.loggedIn': 'Login',
    'health.notChecked': 'tidak dicek (Meta)',
    'callback.title': 'URL callback outbox', 'callback.hint': 'Tempat setiap server OtomaX mengirim hasil transaksi.',
    'callback.current': 'URL terdaftar', 'callback.none': '(belum ada)', 'callback.register': 'Daftarkan layanan ini',
    'callback.registered': 'Terdaftar: {u}',
    'today.title': 'Hari ini', 'today.received': 'Pesan masuk', 'today.forwarded': 'Diteruskan ke OtomaX',
    'today.autoReplies': 'Balasan otomatis', 'today.sent': 'Pesan WhatsApp terkirim', 'today.outbox': 'Hasil transaksi',
    'today.sendFailures': 'Gagal kirim', 'today.notices': 'Pemberitahuan maaf', 'today.deadLetters': 'Pesan gagal per alasan',
    'today.skipped': 'Tidak diteruskan, per alasan', 'today.byStatus': 'Jawaban OtomaX per status', 'today.since': 'Sejak {t}',
    'step.received': 'diterima', 'step.skipped': 'dilewati', 'step.forwarded': 'diteruskan', 'step.otomax_failed': 'OtomaX gagal',
    'step.notice_queued': 'pemberitahuan', 'step.sent': 'terkirim', 'step.send_failed': 'gagal kirim',
    'step.outbox_received': 'hasil dari OtomaX', 'step.outbox_status': 'dilaporkan ke OtomaX',
    'step.dead_lettered': 'pesan gagal', 'step.replayed': 'dikirim ulang', 'step.reply': 'balasan',
  },
};

let lang = localStorage.getItem('wacenter.lang') ||
  ((navigator.language || '').toLowerCase().startsWith('id') ? 'id' : 'en');

function t(key, vars) {
  let s = (TEXT[lang] && TEXT[lang][key]) || TEXT.en[key] || key;
  for (const [k, v] of Object.entries(vars || {})) s = s.split('{' + k + '}').join(String(v));
  return s;
}

function applyLanguage() {
  document.documentElement.lang = lang;
  for (const el of document.querySelectorAll('[data-i18n]')) el.textContent = t(el.dataset.i18n);
  for (const el of document.querySelectorAll('[data-i18n-placeholder]')) el.placeholder = t(el.dataset.i18nPlaceholder);
  document.getElementById('lang').textContent = lang === 'id' ? 'EN' : 'ID';
}

// An element with text (never HTML) and optional class and children.
function el(tag, opts, ...children) {
  const node = document.createElement(tag);
  if (opts && opts.cls) node.className = opts.cls;
  if (opts && opts.text !== undefined && opts.text !== null) node.textContent = String(opts.text);
  if (opts && opts.testid) node.dataset.testid = opts.testid;
  for (const c of children) if (c) node.append(c);
  return node;
}

function setStatus(id, text, kind) {
  const node = document.getElementById(id);
  node.textContent = text || '';
  node.className = 'status' + (kind ? ' ' + kind : '');
}

async function api(path, options) {
  const opts = Object.assign({ credentials: 'same-origin', headers: { Accept: 'application/json' } }, options || {});
  if (opts.json !== undefined) {
    opts.method = opts.method || 'POST';
    opts.headers['Content-Type'] = 'application/json';
    opts.body = JSON.stringify(opts.json);
  }
  const response = await fetch(path, opts);
  let body = null;
  try { body = await response.json(); } catch (_) { body = null; }
  return { status: response.status, body: body || {} };
}

function localTime(iso, withDate) {
  const d = new Date(iso);
  if (isNaN(d)) return String(iso || '');
  const opts = withDate
    ? { year: 'numeric', month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit', second: '2-digit' }
    : { hour: '2-digit', minute: '2-digit', second: '2-digit' };
  return d.toLocaleString(lang === 'id' ? 'id-ID' : 'en-GB', opts);
}

// What a step says, in one line: its codes, its words, its texts.
function describe(step) {
  const parts = [];
  if (step.kode_inbox !== undefined) parts.push('kode_inbox ' + step.kode_inbox);
  if (step.kode !== undefined) parts.push('kode ' + step.kode);
  if (step.status !== undefined) parts.push('status ' + step.status);
  if (step.detail) parts.push(step.detail);
  if (step.text) parts.push('“' + step.text + '”');
  if (step.reply) parts.push(t('step.reply') + ': “' + step.reply + '”');
  if (step.otomax) parts.push('OtomaX ' + step.otomax);
  return parts.join(' · ');
}

// The provider's message id of a step's message (the last part of "gowa:<account>:<id>").
function messageId(id) {
  const parts = String(id || '').split('#')[0].split(':');
  return parts[parts.length - 1];
}

function stepItem(step, live) {
  const what = describe(step);
  const item = el('li', { testid: 'step' },
    el('span', { cls: 'time', text: localTime(step.at) }),
    el('span', { cls: 'step ' + step.step, text: t('step.' + step.step) }),
    el('span', { text: live ? (step.phone || '?') + ' · ' + messageId(step.id) + ' · ' + what : what }));
  if (live && step.phone) {
    // A click on a live step opens its message's timeline.
    item.classList.add('link');
    item.addEventListener('click', () => { location.hash = 'search/' + encodeURIComponent(messageId(step.id)); });
  }
  return item;
}

// ---- live --------------------------------------------------------------------------------
let live = null;
function startLive() {
  if (live) return;
  live = new EventSource('/otomax/trail/live');
  live.onopen = () => setStatus('live-status', t('live.connected'), 'ok');
  live.onerror = () => setStatus('live-status', t('live.lost'), 'bad');
  live.addEventListener('step', (e) => {
    let step;
    try { step = JSON.parse(e.data); } catch (_) { return; }
    const list = document.getElementById('live-list');
    list.prepend(stepItem(step, true));
    while (list.children.length > 200) list.lastChild.remove();
  });
}

// ---- search ------------------------------------------------------------------------------
async function search(q) {
  const results = document.getElementById('search-results');
  results.replaceChildren();
  q = (q || '').trim();
  if (!q) return;
  document.getElementById('search-q').value = q;
  setStatus('search-status', t('search.searching'));
  const r = await api('/otomax/trail?q=' + encodeURIComponent(q));
  if (r.status === 404) return setStatus('search-status', t('search.notFound', { q }), 'bad');
  if (r.status !== 200) return setStatus('search-status', t('common.error', { m: r.body.message || r.status }), 'bad');
  const messages = r.body.results.messages || [];
  setStatus('search-status', t('search.found', { n: messages.length, q }), 'ok');
  for (const m of messages) {
    const list = el('ol', { cls: 'steps' });
    for (const s of m.steps) list.append(stepItem(s, false));
    results.append(el('div', { cls: 'card', testid: 'timeline' },
      el('div', { cls: 'meta', text: m.id + ' · ' + t('search.from') + ' ' + (m.phone || '?') + ' · ' + localTime(m.started, true) }),
      list));
  }
}

// ---- dead letters ------------------------------------------------------------------------
async function replay(body, button) {
  button.disabled = true; // one click, one replay
  const r = await api('/otomax/dead-letters/replay', { json: body });
  if (r.status !== 200) {
    setStatus('dlq-status', t('common.error', { m: r.body.message || r.status }), 'bad');
    return loadDeadLetters(false);
  }
  const res = r.body.results;
  setStatus('dlq-status', t('dlq.result', { ok: res.replayed, n: res.results.length }), res.replayed ? 'ok' : 'bad');
  await loadDeadLetters(false);
}

async function loadDeadLetters(clearStatus) {
  const list = document.getElementById('dlq-list');
  if (clearStatus !== false) setStatus('dlq-status', t('common.loading'));
  const r = await api('/otomax/dead-letters');
  if (r.status !== 200) return setStatus('dlq-status', t('common.error', { m: r.body.message || r.status }), 'bad');
  const letters = r.body.results.letters || [];
  list.replaceChildren();
  if (clearStatus !== false) setStatus('dlq-status', letters.length ? t('dlq.count', { n: letters.length }) : t('dlq.none'));
  for (const { sequence, letter } of letters) {
    const p = letter.payload && typeof letter.payload === 'object' ? letter.payload : {};
    const who = p.sender || p.to || '';
    const card = el('div', { cls: 'card', testid: 'dead-letter' },
      el('div', { cls: 'meta', text: '#' + sequence + ' · ' + localTime(letter.failed_at, true) + ' · ' + letter.reason }),
      el('div', { text: letter.id }),
      who ? el('div', { text: who + (p.text ? ' · “' + p.text + '”' : '') }) : null,
      el('div', { cls: 'meta', text: letter.error }));
    const uncertain = letter.reason === 'uncertain';
    if (uncertain) card.append(el('p', { cls: 'warn', text: t('dlq.uncertain') }));
    const button = el('button', { cls: uncertain ? 'danger' : '', text: uncertain ? t('dlq.force') : t('dlq.replay'), testid: 'replay' });
    button.type = 'button';
    button.addEventListener('click', () => {
      if (uncertain && !window.confirm(t('dlq.confirmForce'))) return;
      replay({ id: String(sequence), force: uncertain, fresh: true }, button);
    });
    card.append(el('div', { cls: 'row' }, button));
    list.append(card);
  }
}

// ---- health ------------------------------------------------------------------------------
function yesNo(v) {
  if (v === true) return el('span', { cls: 'pill ok', text: t('health.yes') });
  if (v === false) return el('span', { cls: 'pill bad', text: t('health.no') });
  return el('span', { text: '–' });
}

function row(...cells) {
  return el('tr', null, ...cells.map((c) => (c instanceof Node ? el('td', null, c) : el('td', { text: c }))));
}

async function loadHealth() {
  const body = document.getElementById('health-body');
  setStatus('health-status', t('common.loading'));
  const r = await api('/otomax/health');
  const h = r.body.results;
  if (!h) return setStatus('health-status', t('common.error', { m: r.body.message || r.status }), 'bad');
  setStatus('health-status', h.status === 'healthy' ? t('health.ok') : t('health.bad'), h.status === 'healthy' ? 'ok' : 'bad');
  body.replaceChildren();
  if (h.problems && h.problems.length) {
    body.append(el('h2', { text: t('health.problems') }), el('ul', null, ...h.problems.map((p) => el('li', { cls: 'warn', text: p }))));
  }
  const servers = h.servers && Object.keys(h.servers).length ? h.servers : { default: h.otomax };
  const table = el('table', { testid: 'servers' },
    el('tr', null, ...['health.server', 'health.reachable', 'health.latency', 'health.lastOk', 'health.lastError'].map((k) => el('th', { text: t(k) }))));
  for (const [name, s] of Object.entries(servers)) {
    table.append(row(name, yesNo(s.reachable), s.latency_ms !== undefined && s.latency_ms !== null ? Math.round(s.latency_ms) + ' ms' : '–',
      s.last_success_at ? localTime(s.last_success_at, true) : '–',
      s.last_error ? (s.last_error_at ? localTime(s.last_error_at, true) + ' · ' : '') + s.last_error : '–'));
  }
  body.append(table);
  body.append(el('h2', { text: t('health.nats') }), el('p', null, yesNo(h.nats && h.nats.connected), h.nats && h.nats.error ? el('span', { cls: 'warn', text: ' ' + h.nats.error }) : null));
  const lag = el('table', null, el('tr', null, el('th', { text: t('health.server') }), el('th', { text: t('health.forwarder') }), el('th', { text: t('health.reply') })));
  const lanes = h.consumer_lag && h.consumer_lag.servers && Object.keys(h.consumer_lag.servers).length
    ? h.consumer_lag.servers : { default: h.consumer_lag || {} };
  for (const [name, l] of Object.entries(lanes)) lag.append(row(name, String(l.forwarder ?? '–'), String(l.reply ?? '–')));
  body.append(el('h2', { text: t('health.lag') }), lag);
  body.append(el('h2', { text: t('health.deadLetters') }), el('p', { text: String(h.dead_letters ?? '–') }));
  const wa = await api('/otomax/whatsapp');
  if (wa.status === 200) {
    const accounts = el('table', { testid: 'accounts' },
      el('tr', null, ...['health.account', 'health.server', 'health.loggedIn'].map((k) => el('th', { text: t(k) }))));
    for (const a of wa.body.results.accounts || []) {
      const state = !a.checked ? el('span', { text: t('health.notChecked') })
        : a.error ? el('span', { cls: 'warn', text: a.error })
          : yesNo(a.logged_in && a.connected);
      accounts.append(row(a.provider + ' · ' + a.account, a.otomax, state));
    }
    body.append(el('h2', { text: t('health.accounts') }), accounts);
  }
  return servers;
}

// ---- callback URL ------------------------------------------------------------------------
async function loadCallback() {
  const body = document.getElementById('callback-body');
  body.replaceChildren();
  const h = await api('/otomax/health');
  const names = h.body.results && h.body.results.servers ? Object.keys(h.body.results.servers) : ['default'];
  setStatus('callback-status', '');
  for (const name of names.length ? names : ['default']) {
    const current = el('div', { text: t('common.loading'), testid: 'callback-url' });
    const button = el('button', { text: t('callback.register'), testid: 'register' });
    button.type = 'button';
    const note = el('p', { cls: 'status' });
    button.addEventListener('click', async () => {
      button.disabled = true;
      const r = await api('/otomax/set-callback?otomax=' + encodeURIComponent(name), { method: 'POST' });
      button.disabled = false;
      if (r.status === 200) {
        note.className = 'status ok';
        note.textContent = t('callback.registered', { u: r.body.results.url });
        current.textContent = r.body.results.url;
      } else {
        note.className = 'status bad';
        note.textContent = t('common.error', { m: r.body.message || r.status });
      }
    });
    body.append(el('div', { cls: 'card' }, el('h2', { text: name }), el('div', { cls: 'meta', text: t('callback.current') }), current, el('div', { cls: 'row' }, button), note));
    const r = await api('/otomax/get-callback?otomax=' + encodeURIComponent(name));
    current.textContent = r.status === 200 ? (r.body.results.url || t('callback.none')) : t('common.error', { m: r.body.message || r.status });
  }
}

// ---- today -------------------------------------------------------------------------------
async function loadToday() {
  const body = document.getElementById('today-body');
  const midnight = new Date();
  midnight.setHours(0, 0, 0, 0);
  setStatus('today-status', t('common.loading'));
  const r = await api('/otomax/figures?since=' + encodeURIComponent(midnight.toISOString()));
  if (r.status !== 200) return setStatus('today-status', t('common.error', { m: r.body.message || r.status }), 'bad');
  const f = r.body.results;
  setStatus('today-status', t('today.since', { t: localTime(f.since, true) }));
  body.replaceChildren();
  for (const [key, value] of [['today.received', f.received], ['today.forwarded', f.forwarded], ['today.autoReplies', f.auto_replies],
    ['today.sent', f.sent], ['today.outbox', f.outbox_rows], ['today.sendFailures', f.send_failures], ['today.notices', f.notices]]) {
    body.append(el('span', { cls: 'figure', testid: key }, el('b', { text: value }), el('span', { text: t(key) })));
  }
  for (const [key, map] of [['today.byStatus', f.forwarded_by_status], ['today.deadLetters', f.dead_letters], ['today.skipped', f.skipped]]) {
    const entries = Object.entries(map || {});
    if (!entries.length) continue;
    body.append(el('h2', { text: t(key) }), el('table', null, ...entries.map(([k, v]) => row(k || '–', String(v)))));
  }
}

// ---- pages -------------------------------------------------------------------------------
const LOADERS = {
  live: startLive,
  search: () => search(decodeURIComponent((location.hash.split('/')[1] || ''))),
  'dead-letters': () => loadDeadLetters(),
  health: loadHealth,
  callback: loadCallback,
  today: loadToday,
};

function show() {
  const page = (location.hash.slice(1).split('/')[0]) || 'live';
  const name = LOADERS[page] ? page : 'live';
  for (const s of document.querySelectorAll('.page')) s.classList.toggle('active', s.id === 'page-' + name);
  for (const a of document.querySelectorAll('#nav a')) a.classList.toggle('active', a.dataset.page === name);
  Promise.resolve(LOADERS[name]()).catch((e) => console.error(e));
}

document.addEventListener('DOMContentLoaded', () => {
  applyLanguage();
  document.getElementById('lang').addEventListener('click', () => {
    lang = lang === 'id' ? 'en' : 'id';
    localStorage.setItem('wacenter.lang', lang);
    applyLanguage();
    show();
  });
  document.getElementById('search-form').addEventListener('submit', (e) => {
    e.preventDefault();
    const q = document.getElementById('search-q').value.trim();
    if (location.hash === '#search/' + encodeURIComponent(q)) search(q);
    else location.hash = 'search/' + encodeURIComponent(q);
  });
  document.getElementById('dlq-refresh').addEventListener('click', () => loadDeadLetters());
  document.getElementById('dlq-replay-all').addEventListener('click', (e) => {
    if (window.confirm(t('dlq.confirmAll'))) replay({ all: true, fresh: true }, e.target).then(() => { e.target.disabled = false; });
  });
  document.getElementById('health-refresh').addEventListener('click', loadHealth);
  document.getElementById('today-refresh').addEventListener('click', loadToday);
  window.addEventListener('hashchange', show);
  startLive();
  show();
});
