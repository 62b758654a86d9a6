// The console end to end in a real browser (Debian's Chromium, driven by playwright-core) against
// a real gateway and a real agent on loopback: sign-in with TOTP (codes from Debian's oathtool),
// attach with the key the agent printed, a second representative sees the lock, a grant to a
// developer who signs in with the keyboard, sees the session, opens a channel with the command
// the page shows (the real rsgate connect) and watches its bytes; the owner revokes and ends;
// an auditor finds it all by PMR and exports CSV; an administrator enrolls a machine and
// downloads its profile. Every page is photographed at 1280x800 and 1920x1080; no page may log
// an error or a Content-Security-Policy violation.
//
// node console_test.mjs --rsgate BIN --agent BIN --out DIR
import { chromium } from 'playwright-core';
import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, mkdirSync, readFileSync, writeFileSync, rmSync } from 'node:fs';
import { createServer, connect as tcpConnect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes, createHash } from 'node:crypto';

const args = Object.fromEntries(process.argv.slice(2).reduce((acc, a, i, all) => (a.startsWith('--') ? [...acc, [a.slice(2), all[i + 1]]] : acc), []));
for (const k of ['rsgate', 'agent', 'out']) if (!args[k]) throw new Error(`--${k} is required`);
mkdirSync(args.out, { recursive: true });

const tmp = mkdtempSync(join(tmpdir(), 'rsgate-console-'));
const data = join(tmp, 'gw');
const children = [];
let failures = 0;
const check = (ok, what) => {
  if (ok) return;
  failures++;
  console.error(`FAILED: ${what}`);
};
const step = (what) => console.log(`- ${what}`);

// --- processes ---
function start(cmd, argv, input) {
  const p = spawn(cmd, argv, { stdio: ['pipe', 'pipe', 'pipe'] });
  children.push(p);
  const lines = [];
  const waiters = [];
  let buf = '';
  const onData = (chunk) => {
    buf += chunk.toString();
    let nl;
    while ((nl = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, nl);
      buf = buf.slice(nl + 1);
      lines.push(line);
      for (const w of [...waiters]) if (w.re.test(line)) { waiters.splice(waiters.indexOf(w), 1); w.resolve(line); }
    }
  };
  p.stdout.on('data', onData);
  p.stderr.on('data', onData);
  if (input !== undefined) p.stdin.end(input);
  return {
    proc: p,
    lines,
    waitFor(re, ms = 30000) {
      const seen = lines.find((l) => re.test(l));
      if (seen) return Promise.resolve(seen);
      return new Promise((resolve, reject) => {
        const w = { re, resolve };
        waiters.push(w);
        setTimeout(() => reject(new Error(`timed out waiting for ${re} in:\n${lines.slice(-20).join('\n')}`)), ms);
      });
    },
  };
}
const run = (cmd, argv, input) => execFileSync(cmd, argv, { input, encoding: 'utf8', timeout: 60000 });
const rsgate = (...a) => run(args.rsgate, [...a, '--data', data]);
const oathCode = (uri) => run('oathtool', ['--totp', '-b', new URL(uri).searchParams.get('secret')]).trim();

// --- the gateway, its users, a machine and its agent ---
step('rsgate init and serve on ephemeral loopback ports');
run(args.rsgate, ['init', '--data', data, '--name', 'gw-console']);
let cfg = readFileSync(join(data, 'rsgate.toml'), 'utf8');
cfg = cfg.replace('listen = "127.0.0.1:8443"', 'listen = "127.0.0.1:0"').replace('listen = "127.0.0.1:4433"', 'listen = "127.0.0.1:0"');
writeFileSync(join(data, 'rsgate.toml'), cfg);
const gw = start(args.rsgate, ['serve', '--config', join(data, 'rsgate.toml')]);
const base = (await gw.waitFor(/console: https:\/\//)).match(/(https:\/\/[^/\s]+)\//)[1];
const tunnel = (await gw.waitFor(/tunnel: /)).split('tunnel: ')[1].trim();

const PASSWORD = 'a long enough password';
const totpUri = {};
for (const [name, role] of [['alice', 'representative'], ['bob', 'representative'], ['dave', 'developer'],
  ['audrey', 'auditor'], ['adam', 'admin']]) {
  const out = run(args.rsgate, ['user', 'add', name, '--role', role, '--password-stdin', '--data', data], `${PASSWORD}\n`);
  const uri = out.split('\n').find((l) => l.startsWith('otpauth://'));
  if (uri) totpUri[name] = uri;
}
check(totpUri.alice && totpUri.bob && totpUri.adam && !totpUri.dave, 'user add prints a TOTP URI for representatives and admins only');

const echo = createServer((s) => {
  s.on('error', () => {});  // a revoked channel's connection is reset
  s.pipe(s);
});
await new Promise((r) => echo.listen(0, '127.0.0.1', r));
const profile = join(tmp, 'machine.toml');
rsgate('machine', 'enroll', '--type', '9009', '--model', '42A', '--serial', '7801800', '--gateway', tunnel,
  '--profile-out', profile, '--scope', `hmc=127.0.0.1:${echo.address().port}`, '--scope', 'vios=127.0.0.1:9');
const agent = start(args.agent, ['start', '--profile', profile, '--control', join(tmp, 'agent.sock')]);
const sessionKey = (await agent.waitFor(/Session key: /)).split('Session key: ')[1].trim();

// The browser trusts exactly the gateway's certificate (its public key's SHA-256), not any.
const spki = execFileSync('sh', ['-c', `openssl x509 -in '${join(data, 'server.pem')}' -pubkey -noout | openssl pkey -pubin -outform der | openssl dgst -sha256 -binary | base64`], { encoding: 'utf8' }).trim();
const browser = await chromium.launch({
  executablePath: '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update',
    '--no-first-run', `--ignore-certificate-errors-spki-list=${spki}`],
});

// Every page's errors: uncaught exceptions, console.error, CSP violations. The browser's own
// "Failed to load resource" line for an API answer of 4xx is the expected refusal a page
// then explains (a lock, a 401 before sign-in), not an error of the page.
const pageErrors = [];
async function newPage(who, viewport = { width: 1280, height: 800 }) {
  const ctx = await browser.newContext({ viewport, acceptDownloads: true });
  const page = await ctx.newPage();
  page.on('pageerror', (e) => pageErrors.push(`${who}: exception: ${e.message}`));
  page.on('console', (m) => {
    if (m.type() !== 'error') return;
    const t = m.text();
    if (/Failed to load resource: the server responded with a status of 4\d\d/.test(t) && m.location().url.includes('/api/v1/')) return;
    pageErrors.push(`${who}: console: ${t} (${m.location().url})`);
  });
  page.on('dialog', (d) => d.accept());
  await page.goto(`${base}/`);
  return page;
}

async function signIn(page, user, withTotp) {
  await page.fill('input[name=user]', user);
  await page.fill('input[name=password]', PASSWORD);
  if (withTotp) await page.fill('input[name=totp]', oathCode(totpUri[user]));
  await page.click('#signin button[type=submit]');
  await page.waitForSelector('#sign-out');
}

const shots = [];
async function photograph(page, name) {
  for (const [w, hgt] of [[1280, 800], [1920, 1080]]) {
    await page.setViewportSize({ width: w, height: hgt });
    const file = join(args.out, `${name}-${w}x${hgt}.png`);
    await page.screenshot({ path: file, fullPage: true });
    // Unbroken: nothing wider than the window (no horizontal scrolling).
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
    check(overflow <= 0, `${name} at ${w}x${hgt} scrolls sideways by ${overflow}px`);
    shots.push(file);
  }
  await page.setViewportSize({ width: 1280, height: 800 });
}

try {
  // --- the page itself: its headers ---
  step('the console page is served with a strict CSP');
  const headers = run('curl', ['-sS', '-D', '-', '-o', '/dev/null', '--cacert', join(data, 'ca.pem'), `${base}/`]).toLowerCase();
  check(headers.includes("content-security-policy: default-src 'none'; script-src 'self'; style-src 'self'"), 'CSP header on /');
  check(headers.includes("frame-ancestors 'none'"), 'frame-ancestors none');
  check(headers.includes('x-content-type-options: nosniff'), 'nosniff');

  // --- sign-in: the refusals say why ---
  step('alice: wrong password, missing code, then signs in with TOTP');
  const alice = await newPage('alice');
  await photograph(alice, 'signin');
  await alice.fill('input[name=user]', 'alice');
  await alice.fill('input[name=password]', 'not her password');
  await alice.click('#signin button[type=submit]');
  await alice.waitForSelector('#signin-error:not([hidden])');
  check((await alice.textContent('#signin-error')).includes('Wrong user name or password'), 'wrong password is explained');
  await alice.fill('input[name=password]', PASSWORD);
  await alice.click('#signin button[type=submit]');
  await alice.waitForSelector('.field-error:not([hidden])');
  check((await alice.textContent('.field-error:not([hidden])')).includes('authenticator'), 'a missing TOTP code is explained next to its field');
  await signIn(alice, 'alice', true);
  await alice.waitForSelector('#attach');
  await photograph(alice, 'sessions');

  step('alice attaches with the key the agent printed');
  await alice.fill('input[name=key]', sessionKey.toLowerCase());
  await alice.fill('input[name=pmr]', 'TS012300456');
  await alice.click('#attach button[type=submit]');
  await alice.waitForSelector('#owner');
  check((await alice.textContent('#owner')) === 'alice', 'alice owns the session');
  const sessionId = (await alice.textContent('#session-title code')).trim();
  await agent.waitFor(/alice/);

  step('bob sees the lock');
  const bob = await newPage('bob');
  await signIn(bob, 'bob', true);
  await bob.fill('input[name=key]', '9009-42A*7801800');
  await bob.fill('input[name=pmr]', '12345,677,000');
  await bob.click('#attach button[type=submit]');
  await bob.waitForSelector('#attach-error:not([hidden])');
  check((await bob.textContent('#attach-error')).includes('owned by alice'), 'the lock names its owner');
  await bob.fill('input[name=key]', 'ABCD-EFGH-JKMN-0');
  await bob.click('#attach button[type=submit]');
  await bob.waitForSelector('input[name=key][aria-invalid]');
  check(await bob.isVisible('#attach .field-error:not([hidden])'), 'a bad key is explained next to its field');

  step('alice grants dave ssh to hmc');
  await alice.fill('input[name=grant-user]', 'dave');
  await alice.check('input[name=grant-scope][value=hmc]');
  await alice.check('input[name=grant-type][value=ssh]');
  await alice.click('#grant-form button[type=submit]');
  await alice.waitForSelector('#grant-table tr[data-grant=G1]');
  await photograph(alice, 'session');

  step('dave signs in with the keyboard only, sees the session live, opens a channel');
  const dave = await newPage('dave');
  await dave.focus('input[name=user]');
  await dave.keyboard.type('dave');
  await dave.keyboard.press('Tab');
  await dave.keyboard.type(PASSWORD);
  await dave.keyboard.press('Enter');
  await dave.waitForSelector(`#sessions tr[data-id="${sessionId}"]`);
  await dave.click(`#sessions tr[data-id="${sessionId}"] a.button`);
  await dave.waitForSelector('#connect-text');
  await dave.selectOption('#open-scope', 'hmc');
  await dave.selectOption('#open-type', 'ssh');
  await dave.click('#make-token');
  await dave.waitForSelector('#token-text');
  const token = (await dave.textContent('#token-text')).trim();
  const command = (await dave.textContent('#connect-text')).replace(/\\\n\s*/g, ' ');
  check(command.includes(`--session ${sessionId} --scope hmc --access-type ssh`), `the command names the session, scope and type: ${command}`);
  // The command as shown, with the CA's real path and a free port.
  const argv = command.split(/\s+/).slice(2).map((a) => (a === 'CA.pem' ? join(data, 'ca.pem') : a === '127.0.0.1:2222' ? '127.0.0.1:0' : a));
  const conn = start(args.rsgate, ['connect', ...argv], `${token}\n`);
  const port = Number((await conn.waitFor(/listening on 127\.0\.0\.1:/)).match(/127\.0\.0\.1:(\d+)/)[1]);
  const payload = randomBytes(300 * 1024);
  const sock = tcpConnect(port, '127.0.0.1');
  const closed = new Promise((resolve) => sock.on('close', resolve));
  sock.on('error', () => {});  // the revocation resets it
  const back = [];
  let got = 0;
  const echoed = new Promise((resolve) => sock.on('data', (d) => { back.push(d); got += d.length; if (got >= payload.length) resolve(); }));
  sock.write(payload);
  await echoed;
  check(createHash('sha256').update(Buffer.concat(back)).digest('hex') === createHash('sha256').update(payload).digest('hex'), 'the bytes came back intact');
  // Both counts reach 300 KiB on dave's page while the channel stays open (live events).
  await dave.waitForFunction(() => ((document.querySelector('#channel-table tbody')?.textContent || '').match(/300\.0 KiB/g) || []).length === 2,
    null, { timeout: 15000 }).catch(async () => check(false, `the channel shows 300 KiB each way: ${await dave.textContent('#channels')}`));
  await photograph(dave, 'session-developer');

  step('alice revokes: dave loses the session and his channel');
  await alice.click('#grant-table tr[data-grant=G1] button.danger');
  await dave.waitForSelector('#no-access');
  await closed;
  step('alice ends the session');
  await alice.click('#end-session');
  await alice.waitForFunction(() => document.querySelector('#state')?.textContent.startsWith('ended'));
  await alice.waitForFunction(() => (document.querySelector('#timeline-table')?.textContent || '').includes('session.end'),
    null, { timeout: 10000 }).catch(() => check(false, 'the timeline shows the end'));

  step('audrey finds it all by PMR and exports CSV');
  const audrey = await newPage('audrey');
  await signIn(audrey, 'audrey', false);
  await audrey.waitForSelector('#verify-status');
  await audrey.fill('#pmr-lookup input', 'TS012300456');
  await audrey.click('#pmr-lookup button');
  await audrey.waitForFunction((sid) => (document.querySelector('#pmr-results')?.textContent || '').includes(sid), sessionId);
  await audrey.click('#journal-search button[type=submit]');
  await audrey.waitForSelector('#journal-results tbody tr');
  const [download] = await Promise.all([audrey.waitForEvent('download'), audrey.click('#export-csv')]);
  const csv = readFileSync(await download.path(), 'utf8');
  check(csv.startsWith('seq,') && csv.includes('TS012300456') && csv.includes('session.grant'), 'the CSV export has the session');
  await photograph(audrey, 'audit');

  step('adam enrolls a machine and downloads its profile');
  const adam = await newPage('adam');
  await signIn(adam, 'adam', true);
  await adam.waitForSelector('#enroll');
  await adam.fill('#enroll input[name=type]', '9009');
  await adam.fill('#enroll input[name=model]', '42A');
  await adam.fill('#enroll input[name=serial]', '7801801');
  await adam.fill('#enroll textarea[name=scopes]', 'hmc=127.0.0.1:22');
  await adam.fill('#enroll input[name=gateway]', tunnel);
  await adam.click('#enroll button[type=submit]');
  await adam.waitForSelector('#profile-link');
  const [prof] = await Promise.all([adam.waitForEvent('download'), adam.click('#profile-link')]);
  const toml = readFileSync(await prof.path(), 'utf8');
  check(toml.includes('7801801') && toml.includes('secret'), 'the downloaded profile is the new machine\'s');
  await adam.waitForFunction(() => (document.querySelector('#machines')?.textContent || '').includes('9009-42A*7801800'));
  await photograph(adam, 'admin');

  step('adam adds a representative; she signs in with her one-time password and the TOTP the page showed, and chooses her own');
  await adam.fill('#add-user input[name=new-user]', 'erin');
  await adam.selectOption('#add-user select[name=new-role]', 'representative');
  await adam.click('#add-user button[type=submit]');
  await adam.waitForSelector('#one-time-password');
  const otp = (await adam.textContent('#one-time-password')).trim();
  const erinUri = (await adam.textContent('#totp-uri')).trim();
  check(await adam.isVisible('#totp-qr'), 'the enrolment\'s QR code shows');
  check(await adam.evaluate(() => document.querySelector('#totp-qr').naturalWidth > 0), 'the QR code is an image the CSP allows');
  const erin = await newPage('erin');
  await erin.fill('input[name=user]', 'erin');
  await erin.fill('input[name=password]', otp);
  await erin.fill('input[name=totp]', oathCode(erinUri));
  await erin.click('#signin button[type=submit]');
  await erin.waitForSelector('input[name=new_password]');
  check((await erin.textContent('#signin-error')).includes('one-time password'), 'a one-time password is explained');
  await erin.fill('input[name=new_password]', 'erin chose this one herself');
  await erin.click('#signin button[type=submit]');
  await erin.waitForSelector('#attach');

  step('a sixth wrong password: the lock-out is explained with its duration');
  const locked = await newPage('lockout');
  for (let i = 0; i < 6; i++) {
    await locked.fill('input[name=user]', 'bob');
    await locked.fill('input[name=password]', `wrong password ${i}`);
    await Promise.all([locked.waitForResponse((r) => r.url().endsWith('/api/v1/login')), locked.click('#signin button[type=submit]')]);
    await locked.waitForSelector('#signin-error:not([hidden])');
  }
  const lockText = await locked.textContent('#signin-error');
  check(lockText.includes('locked out') && /15 minutes/.test(lockText), `the lock-out says for how long: ${lockText}`);
} catch (e) {
  failures++;
  console.error(`FAILED: ${e.stack || e}`);
} finally {
  for (const e of pageErrors) console.error(`FAILED: page error: ${e}`);
  failures += pageErrors.length;
  await browser.close().catch(() => {});
  echo.close();
  for (const c of children) if (c.exitCode === null) c.kill('SIGTERM');
  rmSync(tmp, { recursive: true, force: true });
}
console.log(`${shots.length} screenshots in ${args.out}`);
if (failures) {
  console.error(`${failures} failure(s)`);
  process.exit(1);
}
console.log('console_test: ok');
process.exit(0);
