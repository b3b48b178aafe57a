// The admin API client: bearer token kept in sessionStorage (this tab only, never in a
// URL), JSON in and out, errors carried with the API's own words.
const KEY = 'heliograph-console-token';

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

export function token() { return sessionStorage.getItem(KEY); }
export function setToken(t) { sessionStorage.setItem(KEY, t); }
export function forget() { sessionStorage.removeItem(KEY); }

/** Calls the admin API; resolves to the parsed JSON (or null), rejects with ApiError. */
export async function api(method, path, { json, body, headers = {} } = {}) {
  const h = { ...headers, authorization: 'Bearer ' + token() };
  if (json !== undefined) {
    h['content-type'] = 'application/json';
    body = JSON.stringify(json);
  }
  const r = await fetch(path, { method, headers: h, body, cache: 'no-store', credentials: 'omit', referrerPolicy: 'no-referrer' });
  const text = await r.text();
  let doc = null;
  try { doc = text ? JSON.parse(text) : null; } catch { doc = null; }
  if (!r.ok) {
    if (doc && doc.message) throw new ApiError(r.status, doc.error, doc.message);
    throw new ApiError(r.status, 'http_' + r.status, (text || r.statusText).trim());
  }
  return doc;
}

/** A path segment, percent-encoded. */
export const seg = (s) => encodeURIComponent(s);

/** Plain text from the admin listener (health, metrics): [status, text]. */
export async function text(path) {
  const r = await fetch(path, { cache: 'no-store', credentials: 'omit' });
  return [r.status, await r.text()];
}
