// The administrators' page (docs/api.md §2.3, §2.4): accounts (add, disable, enable, password
// and TOTP resets, whose secrets are shown once), enrolled machines with their tunnel state
// updating live and the one-time agent profile of a new enrollment, and bearer tokens.
// Administrators never see customer sessions; every change here is journaled by the gateway.
import { api, query, explain } from '/console/api.js';
import { h, fill, field, localTime, notify, copyButton } from '/console/ui.js';

const ROLES = ['representative', 'developer', 'auditor', 'admin'];
const USER_NAME = /^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$/;
const ADDRESS = /^\S+:\d{1,5}$/;
// A path segment: machines hold '*', PMRs ','; encodeURIComponent leaves '*' as it is.
const seg = (s) => encodeURIComponent(s).replace(/\*/g, '%2A');
const th = (cols) => h('thead', h('tr', cols.map((t) => h('th', { scope: 'col' }, t))));

// An alert line for a section: show(e) with the refusal explained, clear().
function alertLine(id) {
  const el = h('p.error', { id, role: 'alert' });
  el.hidden = true;
  return {
    el,
    show(e) {
      el.textContent = typeof e === 'string' ? e : explain(e);
      el.hidden = false;
    },
    clear() { el.hidden = true; },
  };
}

export function adminPage(app, _arg, ctx) {
  const users = usersSection(ctx);
  const machines = machinesSection();
  const tokens = tokensSection();
  fill(app, h('h1', 'Administration'), users.section, machines.section, tokens.section);
  users.load();
  machines.load();
  tokens.load();
  const off = ctx.onEvent((type, data) => { if (type === 'machine') machines.update(data); });
  return () => off();
}

// --- secrets shown once: a one-time password, a TOTP enrolment ---

function svgDataUrl(svg) {
  const bytesOf = new TextEncoder().encode(svg);
  let bin = '';
  for (let i = 0; i < bytesOf.length; i += 0x8000) bin += String.fromCharCode(...bytesOf.subarray(i, i + 0x8000));
  return `data:image/svg+xml;base64,${btoa(bin)}`;
}

function drawSecrets(out, a, what) {
  const parts = [h('h3', what)];
  if (a.one_time_password) {
    parts.push(h('p', `One-time password for ${a.user} (shown only now; they choose their own at their first sign-in):`),
      h('pre', h('code#one-time-password', a.one_time_password)), copyButton(a.one_time_password, 'Copy the password'));
  }
  if (a.totp) {
    parts.push(h('h4', 'Authenticator enrolment (shown only now)'),
      h('p', `Scan the QR code with ${a.user}\u2019s authenticator app, or enter the otpauth URI:`),
      h('img.qr#totp-qr', { src: svgDataUrl(a.totp.qr_svg), alt: `QR code of ${a.user}\u2019s authenticator enrolment (the otpauth URI below)`, width: 240, height: 240 }),
      h('pre', h('code#totp-uri', a.totp.uri)), copyButton(a.totp.uri, 'Copy the URI'),
      h('p', 'Recovery codes (each works once, in place of a code from the app):'),
      h('ol#recovery-codes', a.totp.recovery_codes.map((c) => h('li', h('code', c)))),
      copyButton(a.totp.recovery_codes.join('\n'), 'Copy the recovery codes'));
  }
  parts.push(h('p.help', 'Hand these over by a safe channel. The gateway keeps only hashes: it cannot show them again.'),
    h('button.secondary', { type: 'button', onclick: () => fill(out) }, 'Done: hide them'));
  fill(out, h('div.card.secret', parts));
  out.scrollIntoView({ block: 'nearest' });
}

// --- accounts ---

function usersSection(ctx) {
  const err = alertLine('users-error');
  const secrets = h('div#user-secret', { 'aria-live': 'polite' });
  const tbody = h('tbody');
  const table = h('table#users', h('caption', 'Accounts'),
    th(['User', 'Role', 'State', 'TOTP', 'Must change password', 'Created', 'Actions']), tbody);
  const load = async () => {
    try {
      const r = await api('GET', '/users');
      draw(r.users);
    } catch (e) { err.show(e); }
  };
  const change = async (u, action, question) => {
    if (question && !window.confirm(question)) return;
    err.clear();
    try {
      const a = await api('POST', `/users/${seg(u.user)}/${action}`);
      if (action === 'password' || action === 'totp') {
        drawSecrets(secrets, a, action === 'totp' ? `New TOTP for ${u.user}` : `New password for ${u.user}`);
      } else {
        notify(`${u.user} is ${a.disabled ? 'disabled' : 'enabled'}.`);
      }
    } catch (e) { err.show(e); }
    load();
  };
  const draw = (list) => fill(tbody, list.map((u) => h('tr', { dataset: { user: u.user } },
    h('th', { scope: 'row' }, u.user), h('td', u.role), h('td', u.disabled ? 'disabled' : 'active'),
    h('td', u.totp ? `enrolled (${u.recovery_codes_left} recovery codes left)` : 'not enrolled'),
    h('td', u.must_change_password ? 'yes' : 'no'), h('td', localTime(u.created_at)),
    h('td.actions',
      u.disabled
        ? h('button.secondary', { type: 'button', 'aria-label': `Enable ${u.user}`, onclick: () => change(u, 'enable') }, 'Enable')
        : u.user === ctx.me.user ? null
          : h('button.danger', { type: 'button', 'aria-label': `Disable ${u.user}`,
            onclick: () => change(u, 'disable', `Disable ${u.user}? Their sign-ins and tokens stop working at once, their sessions end or their grants are revoked.`) }, 'Disable'),
      ' ', h('button.secondary', { type: 'button', 'aria-label': `Reset ${u.user}'s password`,
        onclick: () => change(u, 'password', `Reset ${u.user}\u2019s password? Their password stops working and their console sign-ins end; you get a one-time password to hand over.`) }, 'Reset password'),
      ' ', h('button.secondary', { type: 'button', 'aria-label': `Reset ${u.user}'s TOTP`,
        onclick: () => change(u, 'totp', `Reset ${u.user}\u2019s TOTP? Their authenticator and recovery codes stop working and their console sign-ins end.`) }, 'Reset TOTP')))));
  const section = h('section#users-section', h('h2', 'Accounts'), err.el, table, secrets, addUserForm(secrets, load));
  return { section, load };
}

function addUserForm(secrets, reload) {
  const user = field('User name', h('input', { name: 'new-user', autocomplete: 'off', spellcheck: 'false', maxlength: 64 }),
    '1 to 64 of A-Z a-z 0-9 . _ @ -, starting with a letter or digit.');
  const role = field('Role', h('select', { name: 'new-role' }, ROLES.map((r) => h('option', { value: r }, r))),
    'Representatives and administrators get an authenticator (TOTP) enrolment, shown once.');
  const password = field('Password (optional)', h('input', { name: 'new-password', type: 'password', autocomplete: 'new-password', maxlength: 1024 }),
    'At least 12 characters. Leave it empty for a one-time password, shown once, that they change at their first sign-in.');
  const err = alertLine('add-user-error');
  const submit = h('button', { type: 'submit' }, 'Add the account');
  const form = h('form.card#add-user', { novalidate: true }, h('h3', 'Add an account'), user.row, role.row, password.row, err.el, submit);
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    for (const f of [user, role, password]) f.error('');
    err.clear();
    const body = { user: user.input.value.trim(), role: role.input.value };
    if (!USER_NAME.test(body.user)) return user.error('1 to 64 of A-Z a-z 0-9 . _ @ -, starting with a letter or digit.');
    if (password.input.value) {
      if (password.input.value.length < 12) return password.error('At least 12 characters, or leave it empty.');
      body.password = password.input.value;
    }
    submit.disabled = true;
    try {
      const a = await api('POST', '/users', body);
      form.reset();
      if (a.one_time_password || a.totp) drawSecrets(secrets, a, `Account ${a.user} (${a.role}) added`);
      else notify(`Account ${a.user} (${a.role}) added.`);
      reload();
    } catch (e) {
      const m = e.message || '';
      if (e.code === 'conflict' || (e.status === 400 && /"user"/.test(m))) user.error(m);
      else if (e.status === 400 && /"role"/.test(m)) role.error(m);
      else if (e.status === 400 && /"password"/.test(m)) password.error(m);
      else err.show(e);
    } finally {
      submit.disabled = false;
    }
  });
  return form;
}

// --- machines ---

function machinesSection() {
  const err = alertLine('machines-error');
  const tbody = h('tbody');
  const table = h('table#machines', h('caption', 'Enrolled machines, tunnel state updating live'),
    th(['Machine', 'Tunnel', 'Enrolled', 'Revoked', 'MD5-CHAP', 'Actions']), tbody);
  const empty = h('p.muted#no-machines', 'No machine is enrolled.');
  empty.hidden = true;
  const rows = new Map();  // machine -> row of GET /machines, kept current by `machine` events
  const load = async () => {
    try {
      const r = await api('GET', '/machines');
      rows.clear();
      for (const m of r.machines) rows.set(m.machine, m);
      draw();
    } catch (e) { err.show(e); }
  };
  const update = (ev) => {
    const m = rows.get(ev.machine);
    if (!m) return load();  // enrolled since the list was read
    m.online = ev.online;
    m.since = ev.since;
    draw();
  };
  const revoke = async (m) => {
    if (!window.confirm(`Revoke ${m.machine}? Its agent can no longer connect and its live session ends within a second.`)) return;
    err.clear();
    try {
      await api('DELETE', `/machines/${seg(m.machine)}`);
      notify(`${m.machine} is revoked.`);
    } catch (e) { err.show(e); }
    load();
  };
  const draw = () => {
    const list = [...rows.values()].sort((a, b) => (a.machine < b.machine ? -1 : 1));
    empty.hidden = list.length > 0;
    table.hidden = list.length === 0;
    fill(tbody, list.map((m) => h('tr', { dataset: { machine: m.machine } },
        h('th', { scope: 'row' }, m.machine),
        h('td', { class: `state ${m.online ? 'online' : 'offline'}` },
          m.online ? `online since ${localTime(m.since)}` : m.since ? `offline since ${localTime(m.since)}` : 'never connected'),
        h('td', localTime(m.enrolled_at)), h('td', m.revoked ? `revoked ${localTime(m.revoked_at)}` : 'no'),
        h('td', m.md5 ? 'allowed' : 'no'),
        h('td', m.revoked ? null : h('button.danger', { type: 'button', 'aria-label': `Revoke ${m.machine}`, onclick: () => revoke(m) }, 'Revoke')))));
  };
  const section = h('section#machines-section', h('h2', 'Machines'), err.el, empty, table, enrollForm(load));
  return { section, load, update };
}

function enrollForm(reload) {
  const text = (name, max, attrs = {}) => h('input', { name, autocomplete: 'off', spellcheck: 'false', maxlength: max, ...attrs });
  const type = field('Type', text('type', 4), '4 letters or digits, e.g. 9009.');
  const model = field('Model', text('model', 3), '3 letters or digits, e.g. 42A.');
  const serial = field('Serial', text('serial', 7), '7 letters or digits, e.g. 7801234.');
  const scopes = field('Scopes', h('textarea', { name: 'scopes', rows: 4, spellcheck: 'false' }),
    'One a line, NAME=HOST:PORT as the agent reaches it, e.g. hmc=10.0.0.5:22 (at most 64).');
  const gateway = field('Gateway (optional)', text('gateway', 300, { placeholder: 'gw1.example.com:4433' }),
    'HOST:PORT the agent connects to. Empty: the configured tunnel address (tunnel.public_address).');
  const backup = field('Backup gateway (optional)', text('backup', 300),
    'HOST:PORT of the other gateway of a pair. Empty: the configured one, if any.');
  const md5 = h('input', { type: 'checkbox', name: 'md5' });
  const replace = h('input', { type: 'checkbox', name: 'replace' });
  const err = alertLine('enroll-error');
  const result = h('div#enroll-result', { 'aria-live': 'polite' });
  const submit = h('button', { type: 'submit' }, 'Enroll');
  const fields = [type, model, serial, scopes, gateway, backup];
  const form = h('form.card#enroll', { novalidate: true }, h('h3', 'Enroll a machine'),
    h('div.inline', type.row, model.row, serial.row), scopes.row, gateway.row, backup.row,
    h('label.check', md5, ' Also allow legacy MD5-CHAP (only if the agent cannot do SCRAM; the secret is then kept sealed on the gateway)'),
    h('label.check', replace, ' Replace an existing enrollment (a new secret: the old profile stops working)'),
    err.el, submit);
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    for (const f of fields) f.error('');
    err.clear();
    const v = (f) => f.input.value.trim();
    if (!/^[A-Za-z0-9]{4}$/.test(v(type))) return type.error('4 letters or digits.');
    if (!/^[A-Za-z0-9]{3}$/.test(v(model))) return model.error('3 letters or digits.');
    if (!/^[A-Za-z0-9]{7}$/.test(v(serial))) return serial.error('7 letters or digits.');
    const list = scopes.input.value.split('\n').map((s) => s.trim()).filter(Boolean);
    if (!list.length) return scopes.error('Give at least one scope, NAME=HOST:PORT.');
    const bad = list.find((s) => !/^[^=\s]+=\S+:\d{1,5}$/.test(s));
    if (bad) return scopes.error(`"${bad}" is not NAME=HOST:PORT.`);
    const body = { type: v(type), model: v(model), serial: v(serial), scopes: list, md5: md5.checked };
    for (const [f, k] of [[gateway, 'gateway'], [backup, 'backup']]) {
      if (!v(f)) continue;
      if (!ADDRESS.test(v(f))) return f.error('HOST:PORT, e.g. gw1.example.com:4433.');
      body[k] = v(f);
    }
    if (replace.checked) {
      if (!window.confirm(`Replace the enrollment of ${body.type}-${body.model}*${body.serial}? Its current agent profile stops working.`)) return;
      body.replace = true;
    }
    submit.disabled = true;
    try {
      const a = await api('POST', '/machines', body);
      form.reset();
      drawProfile(result, a);
      reload();
    } catch (e) {
      const m = e.message || '';
      if (e.status === 400 && /^a machine is/.test(m)) type.error(m);
      else if (e.status === 400 && /"scopes"/.test(m)) scopes.error(m);
      else if (e.status === 400 && /gateway/.test(m)) (body.gateway || !body.backup ? gateway : backup).error(m);
      else if (e.code === 'conflict') err.show(`${m} Tick \u201cReplace\u201d to enroll it again.`);
      else err.show(e);
    } finally {
      submit.disabled = false;
    }
  });
  return h('div', form, result);
}

function drawProfile(out, a) {
  const file = `${a.machine.replace('*', '_')}.toml`;
  const note = h('p#profile-note', { 'aria-live': 'polite' });
  const link = h('a.button#profile-link', { href: `/api/v1/machines/${seg(a.machine)}/profile`, download: file },
    'Download the agent profile');
  link.addEventListener('click', () => {
    note.textContent = 'The gateway hands the profile out once. If the download failed (not found), enroll the machine again with \u201cReplace\u201d.';
  });
  fill(out, h('div.card',
    h('p', `${a.machine} is ${a.replaced ? 'enrolled again (its earlier enrollment is replaced)' : 'enrolled'}.`),
    link, note,
    h('p.help', `The profile (${file}) holds the machine\u2019s secret. It can be downloaded once, until `,
      localTime(a.profile_expires_at), ' (15 minutes); a gateway restart drops it. Then enroll again with \u201cReplace\u201d. ',
      'Copy it to the customer\u2019s system with mode 0600 (chmod 600): the agent refuses a profile others can read.')));
}

// --- tokens ---

function tokensSection() {
  const err = alertLine('tokens-error');
  const user = field('Account', h('input', { name: 'token-user', autocomplete: 'off', spellcheck: 'false', maxlength: 64 }),
    'Empty: every account\u2019s tokens.');
  const tbody = h('tbody');
  const caption = h('caption');
  const table = h('table#tokens', caption, th(['Id', 'Account', 'Created', 'Expires', 'State', 'Actions']), tbody);
  const empty = h('p.muted#no-tokens', 'No token.');
  empty.hidden = true;
  let shownUser = '';
  const load = async () => {
    try {
      const r = await api('GET', `/tokens${query({ user: shownUser })}`);
      draw(r.tokens);
    } catch (e) {
      if (e.status === 400) user.error(e.message);
      else err.show(e);
    }
  };
  const revoke = async (t) => {
    if (!window.confirm(`Revoke token ${t.id} of ${t.user}? Tools using it are refused from their next request.`)) return;
    err.clear();
    try {
      await api('DELETE', `/tokens/${seg(t.id)}`);
      notify(`Token ${t.id} is revoked.`);
    } catch (e) { err.show(e); }
    load();
  };
  const draw = (list) => {
    caption.textContent = shownUser ? `Bearer tokens of ${shownUser}, newest first` : 'Bearer tokens of every account, newest first';
    empty.hidden = list.length > 0;
    table.hidden = list.length === 0;
    fill(tbody, list.map((t) => h('tr', { dataset: { token: t.id } },
      h('th', { scope: 'row' }, h('code', t.id)), h('td', t.user), h('td', localTime(t.created_at)),
      h('td', t.expires_at ? localTime(t.expires_at) : 'never'),
      h('td', { class: `state ${t.state}` }, t.current ? `${t.state} (this request's)` : t.state),
      h('td', t.state === 'active' ? h('button.danger', { type: 'button', 'aria-label': `Revoke token ${t.id} of ${t.user}`,
        onclick: () => revoke(t) }, 'Revoke') : null))));
  };
  const form = h('form.inline#token-filter', { novalidate: true }, user.row, h('button.secondary', { type: 'submit' }, 'Show'));
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    user.error('');
    err.clear();
    const u = user.input.value.trim();
    if (u && !USER_NAME.test(u)) return user.error('Not a user name.');
    shownUser = u;
    load();
  });
  const section = h('section#tokens-section', h('h2', 'Bearer tokens'), err.el, form, empty, table,
    h('p.help', 'Tokens act as their account without TOTP. Tokens for others are made on the gateway host (',
      h('code', 'rsgate token create --user NAME'), '); resetting a password or TOTP does not revoke them.'));
  return { section, load };
}
