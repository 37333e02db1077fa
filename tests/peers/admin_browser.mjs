// Drives the Portcullis admin page in real headless Chromium (Debian's `chromium`) with
// playwright-core: signs in, waits for the pending approval a real call raised, approves it,
// visits every page (a screenshot of each), and checks that a POST without the CSRF token and
// a cross-site form are refused and that the page breaks no Content-Security-Policy rule.
//
// Usage: node admin_browser.mjs BASE_URL PASSWORD SCREENSHOT_DIR RECIPIENT
// Prints `APPROVED` once it clicked approve, `OK` at the end; exits non-zero on any failure.

import { chromium } from 'playwright-core';

const [base, password, shots, recipient] = process.argv.slice(2);
const fail = (why) => {
  console.error(`FAIL: ${why}`);
  process.exit(1);
};

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  // Containers run as root, where Chromium's sandbox cannot start.
  args: ['--no-sandbox'],
});
try {
  const context = await browser.newContext();
  const page = await context.newPage();
  const cspViolations = [];
  page.on('console', (m) => {
    if (/Content Security Policy/i.test(m.text())) cspViolations.push(m.text());
  });

  // Not signed in: to the sign-in page.
  await page.goto(`${base}/approvals`);
  if (!page.url().endsWith('/login')) fail(`expected the sign-in page, got ${page.url()}`);
  await page.screenshot({ path: `${shots}/login.png` });
  await page.fill('#password', 'wrong password!!');
  await page.click('button[type=submit]');
  if (!(await page.content()).includes('Wrong password')) fail('a wrong password was not refused');
  await page.fill('#password', password);
  await Promise.all([page.waitForURL('**/approvals'), page.click('button[type=submit]')]);

  const cookie = (await context.cookies()).find((c) => c.name === '__Host-portcullis-admin');
  if (!cookie) fail('no session cookie');
  if (!cookie.httpOnly || !cookie.secure || cookie.sameSite !== 'Strict') {
    fail(`session cookie flags: ${JSON.stringify(cookie)}`);
  }

  // The pending approval a real call raised (live update, no reload needed).
  const card = page.locator('article.approval', { hasText: recipient });
  await card.waitFor({ timeout: 30000 });
  const text = await card.innerText();
  if (!text.includes('send_message') || !text.includes('sends-need-approval')) fail(`approval card: ${text}`);
  await page.screenshot({ path: `${shots}/approvals.png`, fullPage: true });
  const [decided] = await Promise.all([
    page.waitForResponse((r) => r.request().method() === 'POST' && r.url().includes('/approvals/')),
    card.locator('button.approve').first().click(),
  ]);
  if (decided.status() !== 303) fail(`approving answered ${decided.status()}: ${await decided.text()}`);
  console.log('APPROVED');
  await page.waitForLoadState();
  try {
    await page.locator('p.empty').waitFor({ timeout: 10000 });
  } catch (e) {
    fail(`still pending after approval: ${await page.content()}`);
  }
  if (!(await page.content()).includes('web:admin')) fail('the decision is not in the recent list');

  for (const [path, name, must] of [
    ['/tools', 'tools', 'raw__send_message'],
    ['/audit', 'audit', 'intact'],
    ['/credentials', 'credentials', 'Vault secrets'],
    ['/sessions', 'sessions', 'Session'],
  ]) {
    await page.goto(`${base}${path}`);
    const html = await page.content();
    if (!html.includes(must)) fail(`${path} lacks ${must}`);
    await page.screenshot({ path: `${shots}/${name}.png`, fullPage: true });
  }
  // The audit log shows the approval's events.
  await page.goto(`${base}/audit?kind=approval`);
  if (!(await page.content()).includes('approved')) fail('no approval event in the audit page');

  // A POST without the form token, from the signed-in page itself: refused.
  const status = await page.evaluate(async () => {
    const r = await fetch('/sessions/clear', {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: 'scope=anything',
    });
    return r.status;
  });
  if (status !== 403) fail(`a POST without the CSRF token got ${status}`);

  // A cross-site form aimed at the page (another origin, same browser): refused.
  const evil = await context.newPage();
  await evil.setContent(
    `<form method="post" action="${base}/sessions/clear"><input name="scope" value="x"><input name="csrf" value="guess"></form>`,
  );
  const [resp] = await Promise.all([
    evil.waitForResponse((r) => r.url().startsWith(`${base}/sessions/clear`)),
    evil.evaluate(() => document.forms[0].submit()),
  ]);
  if (resp.status() !== 403) fail(`a cross-site form got ${resp.status()}`);

  if (cspViolations.length) fail(`CSP violations: ${cspViolations.join(' | ')}`);
  console.log('OK');
} finally {
  await browser.close();
}
