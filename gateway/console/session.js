// One session: who owns it, the grants (revoke, grant), the open channels with their bytes and
// durations updating live, how to open a channel (the exact `rsgate connect` command),
// transfer and end, and the session's journal timeline.
import { api, explain } from '/console/api.js';
import { h, fill, field, since, duration, bytes, localTime, notify, copyButton } from '/console/ui.js';

const ACCESS_TYPES = ['ssh', 'sftp', 'ftp', 'telnet-5250', 'https', 'ops-navigator', 'vterm', 'file-transfer', 'other'];

export function sessionPage(app, id, ctx) {
  let s = null;          // the session object, as GET and the events say
  let timeline = [];
  let gone = false;      // the session left the caller's view
  const head = h('section#summary');
  const grants = h('section#grants');
  const channels = h('section#channels');
  const open = h('section#open-channel');
  const owner = h('section#owner-actions');
  const history = h('section#timeline');
  const refused = h('p.error#action-error', { role: 'alert' });
  refused.hidden = true;
  fill(app, h('p', h('a', { href: '#/sessions' }, '\u2190 Sessions')), h('h1#session-title', 'Session ', h('code', id)),
       refused, head, grants, channels, open, owner, history);

  const fail = (e) => {
    refused.textContent = explain(e);
    refused.hidden = false;
    refused.scrollIntoView({ block: 'nearest' });
  };
  const ok = () => { refused.hidden = true; };
  const isOwner = () => s && s.owner === ctx.me.user && s.state !== 'ended';
  // Forms are made once and kept across redraws, so that what someone is typing survives an
  // event (a channel opening, another grant).
  const kept = {};
  const keep = (name, make) => (kept[name] = kept[name] || make());

  const load = async () => {
    try {
      const full = await api('GET', `/sessions/${encodeURIComponent(id)}`);
      timeline = full.timeline || [];
      delete full.timeline;
      s = full;
      draw();
    } catch (e) {
      if (e.status === 404) {
        gone = true;
        draw();
      } else {
        fail(e);
      }
    }
  };

  const draw = () => {
    if (gone || !s) {
      fill(head, h('p.error#no-access', gone ? 'This session is not (or no longer) visible to you: your grant was revoked or has lapsed, or it was never yours.' : 'Loading…'));
      for (const sec of [grants, channels, open, owner, history]) fill(sec);
      return;
    }
    drawSummary();
    drawGrants();
    drawChannels();
    drawOpen();
    drawOwner();
    drawTimeline();
  };

  const drawSummary = () => {
    fill(head, h('dl.facts',
      h('dt', 'Machine'), h('dd#machine', s.machine),
      h('dt', 'State'), h('dd#state', h('span', { class: `state ${s.state}` }, s.state),
        s.state !== 'ended' ? (s.connected ? ' \u2014 the customer is connected' : ' \u2014 the customer\u2019s tunnel is down (waiting for it to come back)') : ` \u2014 ${s.end_reason || 'ended'}`),
      h('dt', 'Owner'), h('dd#owner', s.owner || 'nobody yet'),
      h('dt', 'PMR'), h('dd#pmr', s.pmrs.length ? s.pmrs.join(', ') : '—'),
      h('dt', 'Offered scopes'), h('dd#scopes', s.scopes.length ? s.scopes.join(', ') : 'none'),
      h('dt', 'Created'), h('dd', localTime(s.created_at)),
      s.ended_at ? [h('dt', 'Ended'), h('dd', localTime(s.ended_at))] : null));
  };

  const drawGrants = () => {
    const list = s.grants;
    const rows = list.map((g) => h('tr', { dataset: { grant: g.id } },
      h('td', g.id), h('td', g.user), h('td', g.scopes.join(', ')), h('td', g.access_types.join(', ')),
      h('td', g.expires_at ? localTime(g.expires_at) : 'until revoked'),
      h('td', g.revoked ? 'revoked' : 'live'),
      h('td', isOwner() && !g.revoked ? h('button.danger', { type: 'button', 'aria-label': `Revoke ${g.user}'s grant ${g.id}`,
        onclick: async () => {
          try {
            s = await api('DELETE', `/sessions/${encodeURIComponent(id)}/grants/${g.id}`);
            ok();
            draw();
          } catch (e) { fail(e); }
        } }, 'Revoke') : null)));
    fill(grants, h('h2', 'Grants'),
      list.length ? h('table#grant-table', h('thead', h('tr', ['Id', 'User', 'Scopes', 'Access types', 'Expires', 'State', ''].map((t) => h('th', { scope: 'col' }, t)))), h('tbody', rows))
        : h('p.muted', 'No grants.'),
      isOwner() ? keep('grant', grantForm) : null);
  };

  const grantForm = () => {
    const user = field('User', h('input', { name: 'grant-user', autocomplete: 'off', maxlength: 64 }), 'A developer or another representative.');
    const scopeBoxes = s.scopes.map((sc) => h('label.check', h('input', { type: 'checkbox', name: 'grant-scope', value: sc }), ` ${sc}`));
    const typeBoxes = ACCESS_TYPES.map((t) => h('label.check', h('input', { type: 'checkbox', name: 'grant-type', value: t }), ` ${t}`));
    const expiry = field('Expires after', h('select', { name: 'grant-expiry' },
      [['', 'never (until revoked or the end)'], ['1h', '1 hour'], ['4h', '4 hours'], ['1d', '1 day'], ['7d', '7 days']]
        .map(([v, t]) => h('option', { value: v }, t))));
    const err = h('p.error#grant-error', { role: 'alert' });
    err.hidden = true;
    const form = h('form.card#grant-form', { novalidate: true }, h('h3', 'Grant access'), user.row,
      h('fieldset', h('legend', 'Scopes (none ticked: all)'), scopeBoxes),
      h('fieldset', h('legend', 'Access types (none ticked: all)'), typeBoxes),
      expiry.row, err, h('button', { type: 'submit' }, 'Grant'));
    form.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      user.error('');
      err.hidden = true;
      if (!user.input.value.trim()) return user.error('Enter the user to grant.');
      const body = { user: user.input.value.trim() };
      const scopes = [...form.querySelectorAll('input[name=grant-scope]:checked')].map((i) => i.value);
      const types = [...form.querySelectorAll('input[name=grant-type]:checked')].map((i) => i.value);
      if (scopes.length) body.scopes = scopes;
      if (types.length) body.access_types = types;
      if (expiry.input.value) body.expires_in = expiry.input.value;
      try {
        s = await api('POST', `/sessions/${encodeURIComponent(id)}/grants`, body);
        ok();
        draw();
        notify(`${body.user} was granted access.`);
      } catch (e) {
        if (e.code === 'bad_request' || e.code === 'not_found') user.error(e.message);
        else {
          err.textContent = explain(e);
          err.hidden = false;
        }
      }
    });
    return form;
  };

  const drawChannels = () => {
    const now = Date.now();
    fill(channels, h('h2', 'Open channels'),
      s.channels.length ? h('table#channel-table',
        h('thead', h('tr', ['Id', 'Who', 'Scope', 'Access type', 'To the customer', 'From the customer', 'Open for'].map((t) => h('th', { scope: 'col' }, t)))),
        h('tbody', s.channels.map((c) => h('tr', { dataset: { channel: String(c.id) } },
          h('td', String(c.id)), h('td', c.user), h('td', c.scope), h('td', c.access_type),
          h('td.num', bytes(c.bytes_to_agent)), h('td.num', bytes(c.bytes_from_agent)),
          h('td', duration(now - Date.parse(c.opened_at)))))))
        : h('p.muted#no-channels', 'No channel is open.'));
  };

  const drawOpen = () => {
    const mine = s.owner === ctx.me.user || s.grants.some((g) => g.user === ctx.me.user && !g.revoked);
    if (s.state === 'ended' || !mine) return fill(open);
    if (open.firstChild) return;  // drawn already: keep the choices made
    const scope = h('select#open-scope', { name: 'scope' }, s.scopes.map((sc) => h('option', { value: sc }, sc)));
    const type = h('select#open-type', { name: 'access_type' }, ACCESS_TYPES.map((t) => h('option', { value: t }, t)));
    const out = h('div#connect-command');
    const show = () => {
      const cmd = `rsgate connect --gateway https://${location.host} --ca CA.pem --token - \\\n  --session ${s.id} --scope ${scope.value} --access-type ${type.value} --listen 127.0.0.1:2222`;
      fill(out, h('pre', h('code#connect-text', cmd)), copyButton(cmd, 'Copy the command'),
        h('p.help', 'Run it where your SSH (or other) client runs; it reads your bearer token from standard input (rsgate token create, or the button below) and checks the gateway against the CA file. Then connect your client to 127.0.0.1:2222.'));
    };
    scope.addEventListener('change', show);
    type.addEventListener('change', show);
    const tokenOut = h('div#new-token');
    fill(open, h('h2', 'Open a channel'),
      h('div.inline', h('label', { for: 'open-scope' }, 'Scope '), scope, h('label', { for: 'open-type' }, ' Access type '), type),
      out,
      h('button.secondary#make-token', { type: 'button', onclick: async () => {
        try {
          const t = await api('POST', '/tokens', { expires_in: '12h' });
          fill(tokenOut, h('p', 'Your new token (valid 12 hours; shown once): '), h('pre', h('code#token-text', t.token)), copyButton(t.token, 'Copy the token'));
        } catch (e) { fail(e); }
      } }, 'Create a 12-hour token for it'), tokenOut);
    show();
  };

  const drawOwner = () => {
    if (!isOwner()) return fill(owner);
    if (owner.firstChild) return;  // drawn already: keep what is being typed
    const to = field('Transfer to', h('input', { name: 'transfer-user', autocomplete: 'off', maxlength: 64 }), 'Another representative becomes the owner; you lose access unless they grant it.');
    const form = h('form.card#transfer-form', { novalidate: true }, to.row, h('button', { type: 'submit' }, 'Transfer'));
    form.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      to.error('');
      if (!to.input.value.trim()) return to.error('Enter a representative.');
      try {
        s = await api('POST', `/sessions/${encodeURIComponent(id)}/transfer`, { user: to.input.value.trim() });
        ok();
        draw();
      } catch (e) {
        if (e.code === 'bad_request' || e.code === 'not_found' || e.code === 'forbidden') to.error(e.message);
        else fail(e);
      }
    });
    const end = h('button.danger#end-session', { type: 'button', onclick: async () => {
      if (!window.confirm('End this session? The customer\u2019s tunnel and every channel close.')) return;
      try {
        s = await api('DELETE', `/sessions/${encodeURIComponent(id)}`);
        ok();
        draw();
        setTimeout(load, 1500);  // its journal entry follows the end
      } catch (e) { fail(e); }
    } }, 'End the session');
    fill(owner, h('h2', 'Owner\u2019s actions'), form, end);
  };

  const drawTimeline = () => {
    fill(history, h('h2', 'Journal timeline'),
      h('table#timeline-table', h('thead', h('tr', ['#', 'When', 'What', 'Who', 'Outcome'].map((t) => h('th', { scope: 'col' }, t)))),
        h('tbody', timeline.map((e) => h('tr', h('td.num', String(e.seq)), h('td', { title: e.ts }, localTime(e.ts)),
          h('td', e.kind), h('td', e.actor), h('td', { class: `outcome ${e.outcome}` }, e.outcome))))));
  };

  const off = ctx.onEvent((type, data) => {
    if (data.id !== id) return;
    if (type === 'session.removed') {
      gone = true;
      draw();
      return;
    }
    if (type !== 'session') return;
    const changed = !s || s.state !== data.state || s.owner !== data.owner || s.grants.length !== data.grants.length ||
      s.channels.length !== data.channels.length || JSON.stringify(s.grants) !== JSON.stringify(data.grants);
    gone = false;
    s = data;
    // A removal (revocation, end) takes effect before its journal entry is written: look at
    // the timeline once more a moment later.
    if (changed && (data.state === 'ended' || data.grants.some((g) => g.revoked))) setTimeout(load, 1500);
    if (changed) load();  // the timeline follows what changed
    else drawChannels();  // only byte counts moved
  });
  const tick = setInterval(() => { if (s && s.channels.length) drawChannels(); }, 1000);
  load();
  return () => {
    off();
    clearInterval(tick);
  };
}

