// The auditors' page (docs/api.md §5.4, §6): the journal's chain verified, the journal searched
// with every filter of GET /journal page by page, the same selection exported as CSV or JSON
// lines, and everything linked to a PMR. The gateway journals each of these reads itself
// (audit.query) before it answers.
import { api, query, explain } from '/console/api.js';
import { h, fill, field, localTime } from '/console/ui.js';

// journal/kinds.hpp (docs/journal.md §4): GET /journal refuses any other kind.
const KINDS = ['gateway.start', 'gateway.stop', 'gateway.reload', 'gateway.drain', 'tunnel.connect', 'tunnel.auth',
  'tunnel.reauth', 'tunnel.close', 'session.key_issued', 'session.attach', 'session.grant', 'session.revoke',
  'session.transfer', 'session.end', 'channel.open', 'channel.approval', 'channel.close', 'file.upload',
  'file.download', 'user.login', 'user.lockout', 'admin.user', 'admin.machine', 'audit.query', 'journal.checkpoint'];
// The filters of GET /journal and GET /journal/export, in the order the form shows them.
const FILTERS = ['pmr', 'session', 'actor', 'subject', 'machine', 'kind', 'outcome', 'since', 'until', 'limit'];
const TIME_HELP = 'An RFC 3339 time (2026-11-27T09:00:00Z), a date (2026-11-27) or an age (90m, 2h, 7d).';

export function auditPage(app, _arg, _ctx) {
  const exporter = exportSection();
  const verify = verifySection();
  fill(app, h('h1', 'Journal'), verify.section, searchSection(exporter), exporter.section, pmrSection());
  verify.run();
  return null;
}

// --- chain verification ---

function verifySection() {
  const status = h('div#verify-status', { role: 'status', 'aria-live': 'polite' }, h('p.muted', 'Verifying…'));
  const again = h('button.secondary#verify-again', { type: 'button' }, 'Verify again');
  const run = async () => {
    again.disabled = true;
    status.setAttribute('aria-busy', 'true');
    status.className = '';
    fill(status, h('p.muted', 'Verifying the whole chain…'));
    try {
      const v = await api('GET', '/journal/verify');
      status.className = v.ok ? 'ok' : 'error';
      fill(status,
        h('p', h('strong', v.ok ? 'Verified: the chain, its checkpoints and the signed head are intact.'
          : 'FAILED: the journal does not verify.')),
        h('dl.facts',
          h('dt', 'Result'), h('dd#verify-ok', v.ok ? 'ok' : 'failed'),
          h('dt', 'Entries'), h('dd#verify-entries', String(v.entries)),
          h('dt', 'Head entry'), h('dd#verify-head-seq', `#${v.head_seq}`),
          h('dt', 'Head hash'), h('dd', h('code#verify-head-hash', v.head_hash || '—')),
          h('dt', 'Signed through'), h('dd#verify-signed', `#${v.signed_through}`),
          v.ok ? null : [h('dt', 'First bad entry'), h('dd#verify-bad-seq', `#${v.first_bad_seq}`),
            h('dt', 'Problem'), h('dd#verify-problem', v.problem || '—')]),
        h('p.help', `Checked at ${localTime(Date.now())} by this gateway with its own key. For independent evidence, run `,
          h('code', 'rsgate journal verify --pubkey'), ' on a copy with the public key you were given at installation.'));
    } catch (e) {
      status.className = 'error';
      fill(status, h('p.error', { role: 'alert' }, `The verification could not be run: ${explain(e)}`));
    } finally {
      status.removeAttribute('aria-busy');
      again.disabled = false;
    }
  };
  again.addEventListener('click', run);
  return { section: h('section#verify', h('h2', 'Chain verification'), status, again), run };
}

// --- journal search ---

function searchSection(exporter) {
  const input = (name, attrs = {}) => h('input', { name, autocomplete: 'off', spellcheck: 'false', ...attrs });
  const f = {
    pmr: field('PMR', input('pmr', { maxlength: 20 }), 'ppppp,bbb,ccc (e.g. 12345,677,000) or TS + 9 digits.'),
    session: field('Session', input('session', { maxlength: 256 }), 'A session id, e.g. S-2026-11-27-7KQ4M2XP.'),
    actor: field('Actor', input('actor', { maxlength: 256 }), 'The user, machine or component that acted (gateway, cli:root…).'),
    subject: field('Subject', input('subject', { maxlength: 256 }), 'The account an administration entry is about.'),
    machine: field('Machine', input('machine', { maxlength: 20 }), 'TTTT-MMM*SSSSSSS, e.g. 9009-42A*7801234.'),
    kind: field('Kind', h('select', { name: 'kind' }, h('option', { value: '' }, 'any kind'),
      KINDS.map((k) => h('option', { value: k }, k)))),
    outcome: field('Outcome', h('select', { name: 'outcome' },
      [['', 'any outcome'], ['ok', 'ok'], ['denied', 'denied'], ['error', 'error']].map(([v, t]) => h('option', { value: v }, t)))),
    since: field('Since', input('since', { maxlength: 40 }), TIME_HELP),
    until: field('Until', input('until', { maxlength: 40 }), TIME_HELP),
    limit: field('Entries per page', input('limit', { inputmode: 'numeric', maxlength: 4, placeholder: '100' }), '1 to 1000 (default 100).'),
  };
  const formError = h('p.error#journal-error', { role: 'alert' });
  formError.hidden = true;
  const submit = h('button', { type: 'submit' }, 'Search');
  const reset = h('button.secondary', { type: 'reset' }, 'Clear the filters');
  const form = h('form.card#journal-search', { novalidate: true }, h('h2', 'Search the journal'),
    FILTERS.map((k) => f[k].row), formError, h('div.inline', submit, ' ', reset));

  const summary = h('p#journal-summary', { role: 'status', 'aria-live': 'polite' });
  const results = h('div#journal-results');
  const next = h('button.secondary#journal-next', { type: 'button' }, 'Next page');
  next.hidden = true;
  let filters = {};  // those of the search shown
  let cursor = null; // next_cursor of the page shown
  let page = 0;
  let shown = 0;     // entries on the pages before this one

  const clearErrors = () => {
    for (const k of FILTERS) f[k].error('');
    formError.hidden = true;
  };
  const showError = (e) => {
    const k = e.status === 400 ? paramOf(e.message) : null;
    if (k) {
      f[k].error(e.message);
      f[k].input.focus();
    } else {
      formError.textContent = explain(e);
      formError.hidden = false;
    }
  };
  const load = async (params, more) => {
    submit.disabled = true;
    next.disabled = true;
    try {
      const r = await api('GET', `/journal${query(params)}`);
      if (!more) {
        filters = params;
        page = 0;
        shown = 0;
        exporter.update(filters);
      }
      page += 1;
      const first = shown + 1;
      fill(summary, r.entries.length ? `Page ${page}: entries ${first}–${shown + r.entries.length} of the selection, oldest first.`
        : page === 1 ? 'No entry matches these filters.' : 'No more entries.');
      shown += r.entries.length;
      fill(results, r.entries.length ? entriesTable(r.entries, 'journal-table', 'Journal entries') : null);
      cursor = r.next_cursor;
      next.hidden = !cursor;
    } catch (e) {
      showError(e);
    } finally {
      submit.disabled = false;
      next.disabled = false;
    }
  };
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    clearErrors();
    const params = {};
    for (const k of FILTERS) params[k] = f[k].input.value.trim();
    if (params.limit && !/^\d+$/.test(params.limit)) return f.limit.error('A whole number from 1 to 1000.');
    load(params, false);
  });
  form.addEventListener('reset', () => {
    clearErrors();
    setTimeout(() => f.pmr.input.focus());
  });
  next.addEventListener('click', () => {
    clearErrors();
    if (cursor) load({ ...filters, cursor }, true);
  });
  return h('section#journal', form, h('h2', 'Entries'), summary, results, next);
}

// Which filter a 400's message is about: the gateway names it ("a PMR is …", "unknown kind",
// "\"limit\" must be a whole number …", "since must be …").
function paramOf(message) {
  const m = (message || '').toLowerCase();
  if (/unknown query parameter|given more than once|cursor/.test(m)) return null;
  if (/\bpmr\b/.test(m)) return 'pmr';
  if (/^a machine is\b/.test(m)) return 'machine';
  for (const k of ['session', 'actor', 'subject', 'kind', 'outcome', 'since', 'until', 'limit']) {
    if (new RegExp(`(^|[^a-z_])${k}([^a-z_]|$)`).test(m)) return k;
  }
  return null;
}

// The journal's JSON entries (docs/journal.md §3) as a table; the detail and the other columns
// (subject, gateway, hashes) inside a <details> per row. Its twelve columns of ids and
// addresses may be wider than a narrow window: the table then scrolls sideways, not the page.
function entriesTable(entries, id, caption) {
  const cols = ['#', 'Time', 'Kind', 'Actor', 'Source', 'Session', 'PMR', 'Machine', 'Scope', 'Access type', 'Outcome', 'Detail'];
  return h('div.scroll-x', h('table.journal', { id }, caption ? h('caption', caption) : null,
    h('thead', h('tr', cols.map((t) => h('th', { scope: 'col' }, t)))),
    h('tbody', entries.map((e) => h('tr', { dataset: { seq: String(e.seq) } },
      h('td.num', String(e.seq)), h('td', { title: e.ts }, localTime(e.ts)), h('td', e.kind), h('td', e.actor || '—'),
      h('td', e.source || '—'), h('td', e.session_id || '—'), h('td', e.pmr || '—'), h('td', e.machine || '—'),
      h('td', e.scope || '—'), h('td', e.access_type || '—'), h('td', { class: `outcome ${e.outcome}` }, e.outcome),
      h('td', h('details',
        h('summary', { 'aria-label': `Detail of entry ${e.seq}` }, 'Detail'),
        h('pre.detail', typeof e.detail === 'string' ? e.detail : JSON.stringify(e.detail, null, 2)),
        h('dl.facts',
          e.subject ? [h('dt', 'Subject'), h('dd', e.subject)] : null,
          h('dt', 'Gateway'), h('dd', e.gateway),
          e.secret_hmac ? [h('dt', 'Secret (keyed hash)'), h('dd', h('code', e.secret_hmac))] : null,
          h('dt', 'Hash'), h('dd', h('code', e.hash)),
          h('dt', 'Previous hash'), h('dd', h('code', e.prev_hash))))))))));
}

// --- export ---

function exportSection() {
  const csv = h('a.button#export-csv', { download: 'journal.csv' }, 'Export CSV');
  const jsonl = h('a.button#export-jsonl', { download: 'journal.jsonl' }, 'Export JSON lines');
  const what = h('p#export-filters', { 'aria-live': 'polite' });
  const update = (filters) => {
    const used = {};
    for (const k of FILTERS) if (filters[k]) used[k] = filters[k];  // no cursor: from the first entry
    csv.href = `/api/v1/journal/export${query({ format: 'csv', ...used })}`;
    jsonl.href = `/api/v1/journal/export${query({ format: 'jsonl', ...used })}`;
    const names = Object.entries(used).map(([k, v]) => `${k} = ${v}`);
    what.textContent = names.length ? `With the filters of the last search: ${names.join('; ')}.`
      : 'No filter: the whole journal (run a search to export its selection).';
  };
  update({});
  return {
    update,
    section: h('section#export', h('h2', 'Export'), what, h('div.inline', csv, ' ', jsonl),
      h('p.help', 'The file holds the entries oldest first, at most 10,000 (or the limit above) and about 16 MiB. ',
        'For a larger selection narrow the time (since, until), or use ', h('code', 'rsgate journal export --gateway'),
        ', which follows the pages. Each export is itself journaled.')),
  };
}

// --- PMR lookup ---

function pmrSection() {
  const pmr = field('PMR', h('input', { name: 'lookup-pmr', autocomplete: 'off', spellcheck: 'false', maxlength: 20 }),
    'ppppp,bbb,ccc (e.g. 12345,677,000) or a case number TS + 9 digits (e.g. TS012345678).');
  const formError = h('p.error#pmr-error', { role: 'alert' });
  formError.hidden = true;
  const submit = h('button', { type: 'submit' }, 'Look up');
  const out = h('div#pmr-results', { 'aria-live': 'polite' });
  const form = h('form.card#pmr-lookup', { novalidate: true }, h('h2', 'Everything about a PMR'), pmr.row, formError, submit);
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    pmr.error('');
    formError.hidden = true;
    const p = pmr.input.value.trim();
    if (!p) return pmr.error('Enter the PMR.');
    submit.disabled = true;
    try {
      const r = await api('GET', `/pmrs/${encodeURIComponent(p)}/sessions`);
      drawPmr(out, r);
    } catch (e) {
      fill(out);
      if (e.status === 400) pmr.error(e.message);
      else {
        formError.textContent = explain(e);
        formError.hidden = false;
      }
    } finally {
      submit.disabled = false;
    }
  });
  return h('section#pmr', form, out);
}

function drawPmr(out, r) {
  const first = (list) => (list.length ? list[0].ts : null);
  const last = (list) => (list.length ? list[list.length - 1].ts : null);
  const count = (list, kind) => list.filter((e) => e.kind === kind && e.outcome === 'ok').length;
  const owners = (list) => [...new Set(list.filter((e) => e.kind === 'session.attach' && e.outcome === 'ok').map((e) => e.actor))];
  const ended = (list) => list.find((e) => e.kind === 'session.end' && e.outcome === 'ok');
  fill(out, h('h3', `PMR ${r.pmr}: ${r.sessions.length} session${r.sessions.length === 1 ? '' : 's'}`),
    r.sessions.length ? h('table#pmr-sessions',
      h('caption', 'Sessions with at least one entry for this PMR, each with all of its entries'),
      h('thead', h('tr', ['Session', 'Machine', 'Attached by', 'First entry', 'Last entry', 'Ended', 'Channels', 'Entries']
        .map((t) => h('th', { scope: 'col' }, t)))),
      h('tbody', r.sessions.map((s) => {
        const end = ended(s.entries);
        return h('tr', { dataset: { session: s.id } },
          h('th', { scope: 'row' }, s.id), h('td', s.machine || '—'), h('td', owners(s.entries).join(', ') || '—'),
          h('td', localTime(first(s.entries))), h('td', localTime(last(s.entries))),
          h('td', end ? `${localTime(end.ts)} (${(end.detail && end.detail.reason) || 'ended'})` : 'not ended'),
          h('td.num', String(count(s.entries, 'channel.open'))),
          h('td', h('details', h('summary', `${s.entries.length} entries`),
            entriesTable(s.entries, `pmr-entries-${s.id}`, `Journal of ${s.id}`))));
      }))) : h('p.muted', 'No session has a journal entry with this PMR.'),
    r.other_entries.length ? [h('h3', 'Entries with this PMR and no session'),
      entriesTable(r.other_entries, 'pmr-other', null)] : null);
}
