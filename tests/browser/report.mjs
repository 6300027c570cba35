// Opens the HTML report `mediaflow process` writes in Debian's Chromium and plays each video.
//
//   node report.mjs <path of index.html>
//
// Prints one JSON line: per player, the sources it offers (in order, with their `type`), the
// one Chromium chose (`currentSrc`) and how far it played; plus whether Chromium decodes AV1.
// Exits non-zero with the reason on the first thing that is wrong.
import { chromium } from 'playwright-core';
import { pathToFileURL } from 'node:url';

const [report] = process.argv.slice(2);
const fail = (msg) => { console.error(`FAIL: ${msg}`); process.exit(1); };
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking',
    '--disable-component-update', '--disable-sync', '--autoplay-policy=no-user-gesture-required',
    '--allow-file-access-from-files'],
});
try {
  const page = await browser.newPage();
  page.on('pageerror', (e) => fail(`page error: ${e.message}`));
  await page.goto(pathToFileURL(report).href);
  const count = await page.locator('video').count();
  const players = [];
  for (let i = 0; i < count; i++) {
    const video = page.locator('video').nth(i);
    await video.evaluate((v) => v.load());
    await page.waitForFunction((n) => document.querySelectorAll('video')[n].readyState >= 2, i, { timeout: 30000 });
    const t0 = await video.evaluate((v) => { v.muted = true; v.play(); return v.currentTime; });
    await page.waitForFunction(([n, t]) => document.querySelectorAll('video')[n].currentTime > t + 0.5, [i, t0], { timeout: 30000 });
    players.push(await video.evaluate((v) => ({
      sources: [...v.querySelectorAll('source')].map((s) => ({ src: s.getAttribute('src'), type: s.type })),
      current: v.currentSrc,
      played: v.currentTime,
      width: v.videoWidth,
    })));
  }
  const canPlayAv1 = await page.evaluate(() => document.createElement('video').canPlayType('video/mp4; codecs="av01.0.05M.08"'));
  console.log(JSON.stringify({ players, canPlayAv1 }));
} finally {
  await browser.close();
}
