// A representative's or developer's start page: the sessions they own or hold a grant on,
// updating live, and (representatives) the attach form.
import { api, explain } from '/console/api.js';
import { h, fill, field, since, notify } from '/console/ui.js';

export function sessionsPage(app, _arg, ctx) {
  const rows = new Map();  // id -> session object, as the events say
  const tbody = h('tbody');
  const empty = h('p.muted#no-sessions', 'No sessions yet. When you attach or someone grants you access, the session shows here.');
  const table = h('table#sessions',
    h('caption', 'Your sessions (owned or granted), updating live'),
    h('thead', h('tr', ['Machine', 'PMR', 'State', 'Owner', 'Since', ''].map((t) => h('th', { scope: 'col' }, t)))),
    tbody);

  const draw = () => {
    const list = [...rows.values()].sort((a, b) => (a.created_at < b.created_at ? 1 : -1));
    empty.hidden = list.length > 0;
    table.hidden = list.length === 0;
    fill(tbody, list.map((s) => h('tr', { dataset: { id: s.id } },
      h('td', h('a', { href: `#/session/${encodeURIComponent(s.id)}` }, s.machine)),
      h('td', s.pmr || '—'),
      h('td', h('span', { class: `state ${s.state}` }, stateText(s))),
      h('td', s.owner || '—'),
      h('td', { title: s.created_at }, since(s.created_at)),
      h('td', h('a.button', { href: `#/session/${encodeURIComponent(s.id)}` }, 'Open')))));
  };

  const off = ctx.onEvent((type, data) => {
    if (type === 'session') rows.set(data.id, data);
    else if (type === 'session.removed') rows.delete(data.id);
    else return;
    draw();
  });
  // The stream starts with the current state; this fills the page at once as well.
  api('GET', '/sessions?limit=200').then((r) => {
    for (const s of r.sessions) if (!rows.has(s.id)) rows.set(s.id, s);
    draw();
  }).catch((e) => notify(explain(e), 'error'));
  const tick = setInterval(draw, 10000);  // "since" moves on

  const parts = [h('h1', 'Sessions')];
  if (ctx.me.role === 'representative') parts.push(attachForm(ctx));
  parts.push(h('section', h('h2', 'Sessions'), empty, table));
  fill(app, parts);
  draw();
  return () => {
    off();
    clearInterval(tick);
  };
}

function stateText(s) {
  if (s.state === 'active' && !s.connected) return 'active (customer disconnected)';
  if (s.state === 'waiting') return 'waiting for a representative';
  return s.state;
}

function attachForm(ctx) {
  const key = field('Session key or machine', h('input', { name: 'key', autocomplete: 'off', maxlength: 40, spellcheck: 'false' }),
    'The key the customer read out, XXXX-XXXX-XXXX-X (case and hyphens do not matter), or the machine as type-model*serial, e.g. 9009-42A*7801234.');
  const pmr = field('PMR', h('input', { name: 'pmr', autocomplete: 'off', maxlength: 20, spellcheck: 'false' }),
    'The problem ticket: ppppp,bbb,ccc (e.g. 12345,677,000) or a case number TS + 9 digits (e.g. TS012345678).');
  const formError = h('p.error#attach-error', { role: 'alert' });
  formError.hidden = true;
  const submit = h('button', { type: 'submit' }, 'Attach');
  const form = h('form.card#attach', { novalidate: true }, h('h2', 'Attach to a customer\u2019s system'),
    key.row, pmr.row, formError, submit);
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    key.error('');
    pmr.error('');
    formError.hidden = true;
    const k = key.input.value.trim();
    const p = pmr.input.value.trim();
    if (!k) return key.error('Enter the session key or the machine.');
    if (!p) return pmr.error('Enter the PMR.');
    const body = { pmr: p };
    if (/[*]/.test(k)) body.machine = k;
    else body.session_key = k;
    submit.disabled = true;
    try {
      const s = await api('POST', '/sessions/attach', body);
      ctx.go(`#/session/${encodeURIComponent(s.id)}`);
    } catch (e) {
      const msg = e.message || '';
      if (e.code === 'bad_request' && /pmr/i.test(msg)) pmr.error(msg);
      else if (e.code === 'bad_request' || e.code === 'bad_key' || e.code === 'key_expired') {
        key.error(e.code === 'bad_key' ? 'No live session has this key: check it with the customer (a newer key replaces an older one).'
          : e.code === 'key_expired' ? 'This key has expired. The customer can issue a new one (rsgate-agent key).' : msg);
      } else {
        formError.textContent = e.code === 'locked' ? `Locked: ${msg}.` : explain(e);
        formError.hidden = false;
      }
    } finally {
      submit.disabled = false;
    }
  });
  return form;
}
