// The representatives' console (docs/console.md): a hash-routed page per task, each drawn from
// the public REST API and kept current by the live events stream (GET /api/v1/events).
import { api, setCsrf, ApiError } from '/console/api.js';
import { h, fill, notify } from '/console/ui.js';
import { signInPage } from '/console/signin.js';
import { sessionsPage } from '/console/sessions.js';
import { sessionPage } from '/console/session.js';
import { auditPage } from '/console/audit.js';
import { adminPage } from '/console/admin.js';

const app = document.getElementById('app');

// Who is signed in (GET /me), or null.
export const state = { me: null };

// --- live events: one EventSource for the tab; pages subscribe to what they show ---
const listeners = new Set();
let source = null;
export function onEvent(fn) {
  listeners.add(fn);
  return () => listeners.delete(fn);
}
function startEvents() {
  if (source) return;
  source = new EventSource('/api/v1/events');
  // A refused stream (the login ended) is not retried by the browser: ask who we are.
  source.addEventListener('error', () => {
    if (!source || source.readyState !== EventSource.CLOSED) return;
    source = null;
    api('GET', '/me').then(() => startEvents()).catch(() => onStreamEnd('the sign-in has ended'));
  });
  for (const type of ['ready', 'session', 'session.removed', 'machine', 'end']) {
    source.addEventListener(type, (ev) => {
      let data = {};
      try {
        data = JSON.parse(ev.data);
      } catch {
        return;
      }
      if (type === 'end') onStreamEnd(data.reason);
      for (const fn of [...listeners]) fn(type, data);
    });
  }
}
function stopEvents() {
  if (source) source.close();
  source = null;
}
function onStreamEnd(reason) {
  stopEvents();
  if (reason === 'overflow') {
    startEvents();  // it starts again from the current state
    return;
  }
  if (reason === 'gateway stopping') {
    notify('The gateway is restarting; the page will reconnect.', 'error');
    setTimeout(() => { if (state.me) startEvents(); }, 5000);
    return;
  }
  state.me = null;
  setCsrf(null);
  notify(`Signed out: ${reason}.`, 'error');
  go('#/signin');
}

// --- navigation ---
export function go(hash) {
  if (location.hash === hash) route();
  else location.hash = hash;
}

function home(role) {
  return role === 'auditor' ? '#/audit' : role === 'admin' ? '#/admin' : '#/sessions';
}

function drawNav() {
  const nav = document.getElementById('nav');
  const who = document.getElementById('who');
  if (!state.me) {
    fill(nav);
    fill(who);
    return;
  }
  const links = {
    representative: [['#/sessions', 'Sessions']],
    developer: [['#/sessions', 'Sessions']],
    auditor: [['#/audit', 'Journal']],
    admin: [['#/admin', 'Administration']],
  }[state.me.role] || [];
  fill(nav, links.map(([href, text]) => h('a', { href, 'aria-current': location.hash.startsWith(href) ? 'page' : null }, text)));
  fill(who, h('span', `${state.me.user} (${state.me.role})`), ' ',
       h('button.secondary#sign-out', { type: 'button', onclick: signOut }, 'Sign out'));
}

async function signOut() {
  try {
    await api('POST', '/logout');
  } catch {
    // signed out either way
  }
  stopEvents();
  state.me = null;
  setCsrf(null);
  go('#/signin');
}

let cleanup = null;  // the current page's teardown (its event listeners, timers)
async function route() {
  if (cleanup) cleanup();
  cleanup = null;
  const [, page = '', arg = ''] = location.hash.split('/');
  if (!state.me && page !== 'signin') {
    try {
      state.me = await api('GET', '/me');
      if (state.me.csrf_token) setCsrf(state.me.csrf_token);
    } catch (e) {
      if (!(e instanceof ApiError) || e.status !== 401) notify(e.message, 'error');
      state.me = null;
    }
  }
  if (!state.me) {
    stopEvents();
    drawNav();
    cleanup = signInPage(app, async (me) => {
      state.me = me;
      go(home(me.role));
    });
    return;
  }
  if (page === 'signin' || page === '') return go(home(state.me.role));
  startEvents();
  drawNav();
  const pages = { sessions: sessionsPage, session: sessionPage, audit: auditPage, admin: adminPage };
  const draw = pages[page];
  if (!draw) {
    fill(app, h('h1', 'Not found'), h('p', 'No such page. ', h('a', { href: home(state.me.role) }, 'Go to your start page.')));
    return;
  }
  cleanup = draw(app, decodeURIComponent(arg), { me: state.me, onEvent, go }) || null;
  app.focus();
}

window.addEventListener('hashchange', route);
route();
