// Drives Debian's Chromium through the page `mediaflow serve` serves, as a person would.
//
//   node page.mjs flow <base URL> <screenshot dir> <long video> <file>...
//     uploads the files through the file input, waits for each upload bar to reach 100 % and
//     each job to end, checks the job views (images decode, the video plays, a failed job says
//     why), reloads the list; then uploads the long video and cancels its running job from the
//     job view with the keyboard.
//   node page.mjs key <base URL> <screenshot dir> <API key>
//     on a server that needs a key: the prompt appears, a wrong key is refused, the right one
//     typed with the keyboard lists the jobs, stays after a reload and never shows in a URL.
//
// Prints one JSON line of what it saw; exits non-zero with the reason on the first thing that
// is wrong (the Rust test asserts on the JSON).
import { chromium } from 'playwright-core';
import path from 'node:path';

const [mode, base, shots, ...rest] = process.argv.slice(2);
const fail = (msg) => { console.error(`FAIL: ${msg}`); process.exit(1); };
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync',
    '--autoplay-policy=no-user-gesture-required'],
});
const TERMINAL = ['succeeded', 'failed', 'canceled', 'upload_failed'];
const shot = (page, name) => page.screenshot({ path: path.join(shots, `${name}.png`), fullPage: true });

// Waits for the upload of `name` to reach a state in `states`; returns what its row shows.
async function uploadState(page, name, states, timeout) {
  const li = page.locator(`li.upload[data-name="${name}"]`);
  await li.waitFor({ timeout: 10000 });
  await page.waitForFunction(([n, want]) => {
    const e = document.querySelector(`li.upload[data-name="${n}"]`);
    return e && want.includes(e.dataset.status);
  }, [name, states], { timeout });
  return li.evaluate((e) => ({
    uploaded: e.dataset.uploaded, status: e.dataset.status, job: e.dataset.job,
    bar: e.querySelector('progress[data-role=upload]').value,
    max: e.querySelector('progress[data-role=upload]').max,
    error: e.querySelector('[data-role=error]').textContent,
  }));
}

// Opens the job view of `id` and waits until it shows that job in one of `states`.
async function openJob(page, id, states) {
  await page.goto(`${base}/#/jobs/${id}`);
  await page.waitForFunction(([want, s]) => {
    const v = document.getElementById('job-view');
    return v.dataset.job === want && s.includes(v.dataset.status);
  }, [id, states], { timeout: 60000 });
  return page.locator('#job-view').getAttribute('data-status');
}

async function jobView(page, id) {
  const view = { status: await openJob(page, id, TERMINAL) };
  if (view.status !== 'succeeded') {
    view.error = await page.locator('#job-error').textContent();
    return view;
  }
  await page.waitForFunction(() => [...document.querySelectorAll('#images img')].every((i) => i.complete), null, { timeout: 20000 });
  view.images = await page.$$eval('#images img', (imgs) => imgs.map((i) => i.naturalWidth));
  view.downloads = await page.locator('#downloads a').count();
  if (!(await page.locator('#job-video').isHidden())) {
    await page.waitForFunction(() => document.getElementById('player').readyState >= 2, null, { timeout: 30000 });
    view.player = await page.locator('#player').getAttribute('data-player');
    const t0 = await page.$eval('#player', (v) => { v.muted = true; v.play(); return v.currentTime; });
    await page.waitForFunction((t) => document.getElementById('player').currentTime > t + 0.5, t0, { timeout: 30000 });
    view.played = await page.$eval('#player', (v) => v.currentTime);
    // Which codec plays, and which the HLS master offered (hls.js's levels).
    view.codec = await page.$eval('#player', (v) => v.dataset.codec || '');
    view.codecs = await page.$eval('#player', (v) => v.dataset.codecs || '');
    view.canPlayAv1 = await page.evaluate(() => MediaSource.isTypeSupported('video/mp4; codecs="av01.0.01M.08"'));
    view.poster = await page.$eval('#player', (v) => Boolean(v.poster));
    view.scenes = await page.locator('#scenes button').count();
  }
  return view;
}

async function flow(page, [long, ...files]) {
  const seen = { uploads: {}, jobs: {} };
  await page.goto(base);
  await page.setInputFiles('#file-input', files);
  for (const f of files) {
    const name = path.basename(f);
    seen.uploads[name] = await uploadState(page, name, TERMINAL, 120000);
  }
  await shot(page, 'uploads');
  for (const [name, u] of Object.entries(seen.uploads)) {
    seen.jobs[name] = await jobView(page, u.job);
    await shot(page, `job-${name}`);
  }
  await page.goto(base);
  await page.reload();
  await page.waitForFunction((n) => document.querySelectorAll('#jobs tbody tr').length >= n, files.length, { timeout: 10000 });
  seen.listed = await page.$$eval('#jobs tbody tr', (rows) => rows.map((r) => r.dataset.status));
  await page.selectOption('#status-filter', 'failed');
  await page.waitForFunction(() => [...document.querySelectorAll('#jobs tbody tr')].every((r) => r.dataset.status === 'failed'), null, { timeout: 10000 });
  seen.failedOnly = await page.$$eval('#jobs tbody tr', (rows) => rows.map((r) => r.dataset.status));
  await page.selectOption('#status-filter', '');
  await shot(page, 'list');

  // A running job cancelled from its view, with the keyboard.
  const name = path.basename(long);
  await page.setInputFiles('#file-input', [long]);
  const running = await uploadState(page, name, ['running', ...TERMINAL], 120000);
  await openJob(page, running.job, ['running', ...TERMINAL]);
  const before = await page.locator('#job-view').getAttribute('data-status');
  if (before === 'running') {
    await shot(page, 'job-running');
    await page.focus('#cancel');
    await page.keyboard.press('Enter');
  }
  await openJob(page, running.job, TERMINAL);
  seen.cancel = { job: running.job, before, after: await page.locator('#job-view').getAttribute('data-status') };
  await shot(page, 'job-canceled');
  return seen;
}

async function key(page, [secret]) {
  const seen = { urls: [] };
  page.on('request', (r) => seen.urls.push(r.url()));
  await page.goto(base);
  await page.locator('#key-prompt').waitFor({ state: 'visible', timeout: 10000 });
  seen.focused = await page.evaluate(() => document.activeElement && document.activeElement.id);
  seen.listMessage = await page.locator('#jobs-empty').textContent();
  await shot(page, 'key-prompt');
  await page.keyboard.type('mfk_not_a_key');
  await page.keyboard.press('Enter');
  await page.locator('#key-prompt').waitFor({ state: 'visible', timeout: 10000 });
  seen.wrongKeyReason = await page.locator('#key-reason').textContent();
  await page.focus('#key-input');
  await page.keyboard.type(secret);
  await page.keyboard.press('Enter');
  await page.waitForFunction(() => document.querySelectorAll('#jobs tbody tr').length > 0, null, { timeout: 10000 });
  seen.promptHidden = await page.locator('#key-prompt').isHidden();
  await page.reload();
  await page.waitForFunction(() => document.querySelectorAll('#jobs tbody tr').length > 0, null, { timeout: 10000 });
  seen.listedAfterReload = await page.locator('#jobs tbody tr').count();
  seen.promptHiddenAfterReload = await page.locator('#key-prompt').isHidden();
  // Phone-sized: nothing wider than the screen.
  await page.setViewportSize({ width: 390, height: 844 });
  seen.phoneOverflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  await shot(page, 'phone-list');
  seen.keyInUrl = seen.urls.some((u) => u.includes(secret));
  delete seen.urls;
  return seen;
}

try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  page.on('pageerror', (e) => fail(`page error: ${e.message}`));
  const run = { flow, key }[mode];
  if (!run) fail(`unknown mode ${mode}`);
  console.log(JSON.stringify(await run(page, rest)));
} finally {
  await browser.close();
}
