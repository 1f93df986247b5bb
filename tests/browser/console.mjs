// The operator's console in a real browser (Debian's Chromium, driven by playwright-core), against
// the live stack of `scripts/dev --once`: log in, watch a message appear live, search it by phone
// and see its timeline, replay a dead letter with a click and see it delivered; plus what a
// stranger's text does (nothing), a phone screen, both languages, and a cross-site change refused.
// A screenshot of each page goes to .local/browser/ (CONSOLE_SCREENSHOTS).
//
//   node tests/browser/console.mjs        (with scripts/dev running)
//
// Settings: CONSOLE_URL (http://127.0.0.1:3000), WA_SIM_URL (http://127.0.0.1:3100),
// OTOMAX_SIM_URL (http://127.0.0.1:5000), CONSOLE_USER / CONSOLE_PASSWORD (admin / admin),
// CHROMIUM (/usr/bin/chromium).
import { chromium } from 'playwright-core';
import { mkdirSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const BASE = process.env.CONSOLE_URL || 'http://127.0.0.1:3000';
const WA = process.env.WA_SIM_URL || 'http://127.0.0.1:3100';
const OTOMAX = process.env.OTOMAX_SIM_URL || 'http://127.0.0.1:5000';
const USER = process.env.CONSOLE_USER || 'admin';
const PASSWORD = process.env.CONSOLE_PASSWORD || 'admin';
const SHOTS = process.env.CONSOLE_SCREENSHOTS || resolve(here, '../../.local/browser');
const PHONE = '628123456789'; // the demo's reseller (R001)
const RUN = Date.now().toString(36).toUpperCase();

mkdirSync(SHOTS, { recursive: true });

let failures = 0;
async function check(name, body) {
  const started = Date.now();
  try {
    await body();
    console.log(`ok    ${name} (${Date.now() - started} ms)`);
  } catch (e) {
    failures += 1;
    console.log(`FAIL  ${name}: ${e && e.stack ? e.stack : e}`);
  }
}

function assert(condition, message) {
  if (!condition) throw new Error(message);
}

async function post(url, body, headers) {
  const r = await fetch(url, {
    method: 'POST',
    headers: Object.assign({ 'content-type': 'application/json' }, headers || {}),
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await r.text();
  return { status: r.status, text };
}

async function waitFor(what, fn, timeoutMs = 20000) {
  const end = Date.now() + timeoutMs;
  let last;
  while (Date.now() < end) {
    last = await fn();
    if (last) return last;
    await new Promise((r) => setTimeout(r, 250));
  }
  throw new Error(`timed out waiting for ${what}`);
}

async function sentTo(phone) {
  const r = await fetch(`${WA}/_sim/outbox`);
  const all = await r.json();
  return (Array.isArray(all) ? all : all.messages || []).filter((m) => JSON.stringify(m).includes(phone));
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});

try {
  await check('without the password the console is refused', async () => {
    // Chromium answers the password prompt it cannot show with ERR_INVALID_AUTH_CREDENTIALS.
    const context = await browser.newContext();
    const page = await context.newPage();
    const outcome = await page.goto(`${BASE}/console`).then((r) => String(r.status()), (e) => String(e));
    assert(outcome === '401' || outcome.includes('ERR_INVALID_AUTH_CREDENTIALS'), outcome);
    await context.close();
    const r = await fetch(`${BASE}/console`);
    assert(r.status === 401 && (r.headers.get('www-authenticate') || '').startsWith('Basic'), `status ${r.status}`);
  });

  const context = await browser.newContext({
    httpCredentials: { username: USER, password: PASSWORD },
    viewport: { width: 1100, height: 800 },
    locale: 'en-GB',
  });
  const page = await context.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(String(e)));
  page.on('console', (m) => { if (m.type() === 'error') errors.push(m.text()); });
  page.on('dialog', (d) => d.accept());

  await check('log in and watch a message appear live; a stranger\'s <script> stays text', async () => {
    const response = await page.goto(`${BASE}/console#live`);
    assert(response.status() === 200, `status ${response.status()}`);
    await page.getByText('Connected').waitFor({ timeout: 10000 });
    const hostile = `<img src=x onerror="window.__pwned=1"><script>window.__pwned=1</script> S.1234 ${RUN}`;
    const r = await post(`${WA}/_sim/incoming`, { from: PHONE, text: hostile, id: `LIVE-${RUN}` });
    assert(r.status === 200, `incoming: ${r.status} ${r.text}`);
    const row = page.locator('#live-list [data-testid=step]', { hasText: `LIVE-${RUN}` }).first();
    await row.waitFor({ timeout: 15000 });
    await page.locator('#live-list [data-testid=step]', { hasText: 'forwarded' }).first().waitFor({ timeout: 15000 });
    const shown = await page.locator('#live-list').innerText();
    assert(shown.includes('<script>window.__pwned=1</script>'), 'the text is shown as typed');
    assert(await page.evaluate(() => window.__pwned === undefined), 'the stranger\'s script ran');
    assert(await page.locator('#live-list img').count() === 0, 'an <img> was built from the text');
    await page.screenshot({ path: join(SHOTS, 'live.png'), fullPage: true });
  });

  await check('search by phone number and see the timeline', async () => {
    await page.click('a[data-page=search]');
    await page.fill('#search-q', '0812-3456-789');
    await page.click('#search-form button[type=submit]');
    const card = page.locator('[data-testid=timeline]', { hasText: `LIVE-${RUN}` });
    await card.waitFor({ timeout: 15000 });
    await waitFor('the auto-reply on the timeline', async () => {
      await page.click('#search-form button[type=submit]');
      await page.waitForTimeout(300);
      const text = await card.innerText();
      return text.includes('received') && text.includes('forwarded') && text.includes('sent');
    });
    assert((await card.innerText()).includes('kode_inbox'), 'the kode_inbox is shown');
    await page.screenshot({ path: join(SHOTS, 'search.png'), fullPage: true });
    // By the WhatsApp message id too; an unknown one is "not found", not an error page.
    await page.fill('#search-q', `LIVE-${RUN}`);
    await page.click('#search-form button[type=submit]');
    await page.locator('[data-testid=timeline]', { hasText: `LIVE-${RUN}` }).waitFor({ timeout: 10000 });
    await page.fill('#search-q', `NOTHING-${RUN}`);
    await page.click('#search-form button[type=submit]');
    await page.getByText('Not found').waitFor({ timeout: 10000 });
  });

  await check('replay a dead letter with a click and see it delivered', async () => {
    // OtomaX refuses every InsertInbox for a moment: the command becomes a dead letter.
    let r = await post(`${OTOMAX}/_sim/faults`, { reject_inbox: true });
    assert(r.status === 200, `faults: ${r.status} ${r.text}`);
    const before = (await sentTo(PHONE)).length;
    r = await post(`${WA}/_sim/incoming`, { from: PHONE, text: 'S.1234', id: `DLQ-${RUN}` });
    assert(r.status === 200, `incoming: ${r.status}`);
    await page.click('a[data-page=dead-letters]');
    const card = page.locator('[data-testid=dead-letter]', { hasText: `DLQ-${RUN}` });
    await waitFor('the dead letter', async () => {
      await page.click('#dlq-refresh');
      await page.waitForTimeout(300);
      return (await card.count()) === 1;
    });
    r = await post(`${OTOMAX}/_sim/faults`, { reject_inbox: false });
    assert(r.status === 200, `faults: ${r.status}`);
    await page.screenshot({ path: join(SHOTS, 'dead-letters.png'), fullPage: true });
    // Clicked twice: one replay.
    const button = card.locator('[data-testid=replay]');
    await button.click();
    await button.click({ force: true, timeout: 1000 }).catch(() => {});
    await page.getByText('1 of 1 replayed').waitFor({ timeout: 10000 });
    // Delivered: the notice of the refusal, then OtomaX's answer after the replay.
    const sent = await waitFor('the answer after the replay', async () => {
      const now = await sentTo(PHONE);
      return now.length >= before + 2 ? now : null;
    });
    assert(sent.length === before + 2, `sent ${sent.length - before}, expected 2`);
    await page.click('a[data-page=search]');
    await page.fill('#search-q', `DLQ-${RUN}`);
    await page.click('#search-form button[type=submit]');
    const timeline = page.locator('[data-testid=timeline]', { hasText: `DLQ-${RUN}` });
    await waitFor('the replay on the timeline', async () => {
      await page.click('#search-form button[type=submit]');
      await page.waitForTimeout(300);
      const text = await timeline.innerText().catch(() => '');
      return text.includes('dead letter') && text.includes('replayed') && text.includes('forwarded');
    });
    await page.screenshot({ path: join(SHOTS, 'replayed.png'), fullPage: true });
  });

  await check('health, callback URL and today\'s figures', async () => {
    await page.click('a[data-page=health]');
    await page.locator('[data-testid=servers]').waitFor({ timeout: 10000 });
    assert((await page.locator('[data-testid=servers]').innerText()).includes('default'), 'the default server');
    // Both numbers of the demo, each logged in on GOWA.
    const accounts = page.locator('[data-testid=accounts]');
    await accounts.waitFor({ timeout: 10000 });
    const text = await accounts.innerText();
    assert(text.includes('628987654321@s.whatsapp.net') && text.includes('628987654322@s.whatsapp.net'), text);
    assert((text.match(/\byes\b/g) || []).length === 2, `both logged in: ${text}`);
    await page.screenshot({ path: join(SHOTS, 'health.png'), fullPage: true });
    await page.click('a[data-page=callback]');
    await page.locator('[data-testid=register]').first().click();
    await page.getByText('Registered:').waitFor({ timeout: 10000 });
    assert(!(await page.locator('#page-callback').innerText()).includes('dev-callback-secret'), 'the secret is shown');
    await page.screenshot({ path: join(SHOTS, 'callback.png'), fullPage: true });
    await page.click('a[data-page=today]');
    const received = page.locator('[data-testid="today.received"] b');
    await received.waitFor({ timeout: 10000 });
    assert(Number(await received.innerText()) >= 2, 'messages received today');
    await page.screenshot({ path: join(SHOTS, 'today.png'), fullPage: true });
  });

  await check('Bahasa Indonesia', async () => {
    await page.click('#lang');
    await page.locator('a[data-page=search]', { hasText: 'Cari' }).waitFor({ timeout: 5000 });
    await page.click('a[data-page=dead-letters]');
    await page.getByRole('heading', { name: 'Pesan gagal' }).waitFor({ timeout: 5000 });
    await page.screenshot({ path: join(SHOTS, 'indonesian.png'), fullPage: true });
    await page.click('#lang');
  });

  await check('a phone screen: nothing wider than the screen', async () => {
    const phone = await browser.newContext({
      httpCredentials: { username: USER, password: PASSWORD },
      viewport: { width: 390, height: 844 }, isMobile: true, hasTouch: true,
    });
    const p = await phone.newPage();
    for (const name of ['live', 'search', 'dead-letters', 'health', 'today']) {
      await p.goto(`${BASE}/console#${name}`);
      await p.waitForTimeout(700);
      const overflow = await p.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
      assert(overflow <= 1, `#${name} is ${overflow}px wider than the screen`);
    }
    await p.goto(`${BASE}/console#search/${PHONE}`);
    await p.locator('[data-testid=timeline]').first().waitFor({ timeout: 10000 });
    await p.screenshot({ path: join(SHOTS, 'phone.png'), fullPage: true });
    await phone.close();
  });

  await check('a change asked from another site is refused', async () => {
    const auth = 'Basic ' + Buffer.from(`${USER}:${PASSWORD}`).toString('base64');
    const r = await post(`${BASE}/otomax/dead-letters/replay`, { all: true },
      { authorization: auth, origin: 'http://evil.example' });
    assert(r.status === 403, `status ${r.status}: ${r.text}`);
    // And from a page of that other site, in the browser, with the remembered password: a form
    // post needs no preflight, so only the server's origin check stands in the way.
    const evil = await context.newPage();
    await evil.route('http://evil.example/', (route) => route.fulfill({ contentType: 'text/html', body: '<p>hi</p>' }));
    await evil.goto('http://evil.example/');
    await evil.evaluate(async (url) => {
      try {
        await fetch(url, { method: 'POST', credentials: 'include', mode: 'no-cors',
          headers: { 'content-type': 'text/plain' }, body: '{"url":"http://evil.example/steal"}' });
      } catch (_) { /* the answer is opaque either way */ }
    }, `${BASE}/otomax/set-callback`);
    const stats = await (await fetch(`${OTOMAX}/_sim/stats`)).json();
    assert(!String(stats.callback_url || '').includes('evil.example'), `OtomaX was told ${stats.callback_url}`);
    await evil.close();
  });

  await check('no script errors on any page', async () => {
    const real = errors.filter((e) => !e.includes('401') && !e.includes('404') && !e.includes('net::ERR'));
    assert(real.length === 0, real.join('\n'));
  });
} finally {
  await browser.close();
}

console.log(failures ? `${failures} browser check(s) failed; screenshots in ${SHOTS}` : `all browser checks passed; screenshots in ${SHOTS}`);
process.exit(failures ? 1 : 0);
