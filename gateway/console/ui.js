// DOM helpers for the console: elements are built with createElement and textContent only,
// never from HTML strings, so nothing the gateway or a user sends can become markup.

// h('tag.class#id', {attr: value, onclick: fn}, ...children): an element. Children are
// elements, strings (text nodes), arrays, or null/false (skipped).
export function h(spec, attrs, ...children) {
  const m = /^([a-z0-9]+)((?:[.#][\w-]+)*)$/.exec(spec);
  if (!m) throw new Error(`bad element spec ${spec}`);
  const el = document.createElement(m[1]);
  for (const part of m[2].match(/[.#][\w-]+/g) || []) {
    if (part[0] === '.') el.classList.add(part.slice(1));
    else el.id = part.slice(1);
  }
  if (attrs && (typeof attrs !== 'object' || attrs instanceof Node || Array.isArray(attrs))) {
    children.unshift(attrs);
    attrs = null;
  }
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

// Replaces the children of `el`.
export function fill(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

// "3 min ago", "2 h 5 min", from an RFC 3339 time or milliseconds.
export function since(t, now = Date.now()) {
  const ms = Math.max(0, now - (typeof t === 'string' ? Date.parse(t) : t));
  return duration(ms);
}

export function duration(ms) {
  const s = Math.floor(ms / 1000);
  if (s < 60) return `${s} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min ${s % 60} s`;
  const hh = Math.floor(m / 60);
  if (hh < 48) return `${hh} h ${m % 60} min`;
  return `${Math.floor(hh / 24)} d ${hh % 24} h`;
}

export function bytes(n) {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  if (n < 1024 * 1024 * 1024) return `${(n / 1024 / 1024).toFixed(1)} MiB`;
  return `${(n / 1024 / 1024 / 1024).toFixed(2)} GiB`;
}

export function localTime(t) {
  if (!t) return '—';
  const d = new Date(t);
  return d.toLocaleString(undefined, { dateStyle: 'medium', timeStyle: 'medium' });
}

// A labelled input with its help and its own error line: {row, input, error(msg)}.
export function field(label, input, help) {
  const id = input.id || `f-${Math.random().toString(36).slice(2, 9)}`;
  input.id = id;
  const err = h('p.field-error', { id: `${id}-error`, role: 'alert' });
  err.hidden = true;
  const helpEl = help ? h('p.help', { id: `${id}-help` }, help) : null;
  input.setAttribute('aria-describedby', [helpEl && helpEl.id, err.id].filter(Boolean).join(' '));
  const row = h('div.field', h('label', { for: id }, label), input, helpEl, err);
  return {
    row,
    input,
    error(msg) {
      err.textContent = msg || '';
      err.hidden = !msg;
      input.toggleAttribute('aria-invalid', !!msg);
    },
  };
}

// A short message at the top of the page (errors in red), cleared after a while.
let noticeTimer = 0;
export function notify(msg, kind = 'info') {
  const n = document.getElementById('notice');
  n.textContent = msg;
  n.className = `notice ${kind}`;
  n.hidden = false;
  clearTimeout(noticeTimer);
  noticeTimer = setTimeout(() => { n.hidden = true; }, kind === 'error' ? 15000 : 5000);
}

// Copies `text`; the button says so.
export function copyButton(text, label = 'Copy') {
  const b = h('button.secondary', { type: 'button' }, label);
  b.addEventListener('click', async () => {
    try {
      await navigator.clipboard.writeText(text);
      b.textContent = 'Copied';
    } catch {
      b.textContent = 'Select and copy';
    }
    setTimeout(() => { b.textContent = label; }, 2000);
  });
  return b;
}
