// Headless Chromium for the pytest e2e tests, remote-controlled over stdin/stdout.
//
// pytest (tests/e2e/browser.py) starts `node driver.mjs`, writes one JSON command per
// line on stdin and reads one JSON line per answer on stdout:
//
//   -> {"id": 1, "op": "goto", "url": "http://127.0.0.1:PORT/"}
//   <- {"id": 1, "ok": true, "value": null}
//   <- {"event": "console", "type": "error", "text": "..."}      (unsolicited)
//
// ops: goto {url} · waitFor {expr, timeout} (a JS expression, polled until truthy; the
// answer is its value) · eval {expr} · fill {selector, value} · click {selector} ·
// submit {selector, value} (fill the input, press Enter) · setContent {html} ·
// screenshot {path, fullPage} · close.
// Errors answer {"id", "ok": false, "error"}. Uses Debian's Chromium (CHROMIUM_PATH,
// default /usr/bin/chromium) through playwright-core: no browser is downloaded.
import { createInterface } from 'node:readline';
import { chromium } from 'playwright-core';

const executablePath = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
const ARGS = [
  '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
];

function emit(obj) {
  process.stdout.write(`${JSON.stringify(obj)}\n`);
}

let browser;
try {
  browser = await chromium.launch({ executablePath, args: ARGS, headless: true, timeout: 30000 });
} catch (err) {
  emit({ event: 'fatal', error: `cannot launch ${executablePath}: ${err.message}` });
  process.exit(1);
}
const context = await browser.newContext({ viewport: { width: 1280, height: 900 }, deviceScaleFactor: 1 });
const page = await context.newPage();
page.on('console', (msg) => emit({ event: 'console', type: msg.type(), text: msg.text() }));
page.on('pageerror', (err) => emit({ event: 'pageerror', text: String(err && err.stack || err) }));
page.on('requestfailed', (req) => emit({ event: 'requestfailed', url: req.url(), text: req.failure()?.errorText ?? '' }));
page.on('response', (res) => {
  if (res.status() >= 400) emit({ event: 'httperror', url: res.url(), status: res.status() });
});
emit({ event: 'ready', version: browser.version() });

const ops = {
  async goto({ url }) {
    const res = await page.goto(url, { waitUntil: 'load', timeout: 15000 });
    return res ? res.status() : null;
  },
  async setContent({ html }) {
    await page.setContent(html, { waitUntil: 'load', timeout: 15000 });
    return null;
  },
  async waitFor({ expr, timeout = 10000 }) {
    const handle = await page.waitForFunction(expr, null, { timeout, polling: 50 });
    return handle.jsonValue();
  },
  async eval({ expr }) {
    return page.evaluate(expr);
  },
  async fill({ selector, value }) {
    await page.fill(selector, value, { timeout: 5000 });
    return null;
  },
  async click({ selector }) {
    await page.click(selector, { timeout: 5000 });
    return null;
  },
  async submit({ selector, value }) {
    await page.fill(selector, value, { timeout: 5000 });
    await page.press(selector, 'Enter', { timeout: 5000 });
    return null;
  },
  async screenshot({ path, fullPage = true }) {
    await page.screenshot({ path, fullPage, animations: 'disabled', caret: 'hide' });
    return path;
  },
};

async function shutdown(code) {
  await browser.close().catch(() => {});
  process.exit(code);
}

const lines = createInterface({ input: process.stdin });
for await (const line of lines) {
  if (!line.trim()) continue;
  let cmd;
  try {
    cmd = JSON.parse(line);
  } catch (err) {
    emit({ event: 'fatal', error: `bad command line: ${err.message}` });
    continue;
  }
  if (cmd.op === 'close') {
    emit({ id: cmd.id, ok: true, value: null });
    await shutdown(0);
  }
  const op = ops[cmd.op];
  if (!op) {
    emit({ id: cmd.id, ok: false, error: `unknown op ${cmd.op}` });
    continue;
  }
  try {
    emit({ id: cmd.id, ok: true, value: (await op(cmd)) ?? null });
  } catch (err) {
    emit({ id: cmd.id, ok: false, error: String(err && err.message || err) });
  }
}
await shutdown(0); // stdin closed: pytest is gone
