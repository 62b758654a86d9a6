// The console's only way to the gateway: its public REST API (docs/api.md), same origin, the
// login cookie (HttpOnly, so never seen here) and the CSRF token the login answered, which is
// kept in sessionStorage for this tab and sent with every state-changing request.

export class ApiError extends Error {
  constructor(status, code, message, retryAfter) {
    super(message);
    this.status = status;
    this.code = code;
    this.retryAfter = retryAfter;
  }
}

const CSRF = 'rsgate.csrf';
export function setCsrf(token) {
  if (token) sessionStorage.setItem(CSRF, token);
  else sessionStorage.removeItem(CSRF);
}

// One request; resolves with the parsed JSON answer, or rejects with ApiError (status 0 when
// the gateway could not be reached).
export async function api(method, path, body) {
  const headers = { Accept: 'application/json' };
  if (method !== 'GET' && method !== 'HEAD') {
    const csrf = sessionStorage.getItem(CSRF);
    if (csrf) headers['X-CSRF-Token'] = csrf;
  }
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  let resp;
  try {
    resp = await fetch(`/api/v1${path}`, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: 'same-origin',
      cache: 'no-store',
    });
  } catch (e) {
    throw new ApiError(0, 'unreachable', 'The gateway cannot be reached. Check the connection and try again.');
  }
  const text = await resp.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = null;
  }
  if (!resp.ok) {
    const err = (data && data.error) || {};
    throw new ApiError(resp.status, err.code || 'http_' + resp.status, err.message || resp.statusText,
                       resp.headers.get('Retry-After'));
  }
  return data;
}

// A query string from an object, leaving out empty values.
export function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== '') q.set(k, v);
  const s = q.toString();
  return s ? `?${s}` : '';
}

// What a refusal means for a person (the code's explanation, then the gateway's message).
export function explain(e) {
  const why = {
    journal_unavailable: 'The gateway\u2019s journal cannot record this action now, so it was refused. Nothing changed.',
    state_unavailable: 'The gateway could not store the change. Nothing changed; try again.',
    not_owner: 'Only the session\u2019s owner can do this.',
    locked: 'The session is locked: it already has an owner.',
    csrf: 'The page is out of date. Reload it and try again.',
    busy: 'The gateway is busy with this session. Try again in a moment.',
    rate_limited: 'Too many attempts. Wait before trying again.',
    unauthorized: 'Your sign-in has ended. Sign in again.',
    forbidden: 'Your role may not do this.',
  }[e.code];
  return why ? `${why} (${e.message})` : e.message;
}
