// The gateway's REST API as the dashboard uses it. Same-origin fetch: the HttpOnly session
// cookie rides along, and the browser adds the Origin header the gateway checks on POSTs.

export class ApiError extends Error {
  /**
   * @param {number} status HTTP status, 0 when the gateway could not be reached at all
   * @param {string} message the gateway's `error` text, or ours
   * @param {number} retryAfter seconds, from Retry-After (0 when absent)
   */
  constructor(status, message, retryAfter = 0) {
    super(message);
    this.name = 'ApiError';
    this.status = status;
    this.retryAfter = retryAfter;
  }
}

let onUnauthorized = () => {};

/** Called whenever a request that needed a session is answered 401. */
export function setUnauthorizedHandler(handler) {
  onUnauthorized = handler;
}

/**
 * One JSON request. Resolves with the parsed body (null for 204); rejects with ApiError.
 * `expect401` marks requests whose 401 is an answer, not a lost session (sign-in, whoami).
 */
export async function request(method, path, { body, expect401 = false } = {}) {
  const init = {
    method,
    credentials: 'same-origin',
    cache: 'no-store',
    headers: { Accept: 'application/json' },
  };
  if (body !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  let resp;
  try {
    resp = await fetch(path, init);
  } catch {
    throw new ApiError(0, 'The gateway cannot be reached.');
  }
  let data = null;
  if (resp.status !== 204) {
    try {
      data = await resp.json();
    } catch {
      data = null;
    }
  }
  if (!resp.ok) {
    const message = data && typeof data.error === 'string' ? data.error : `HTTP ${resp.status}`;
    const retryAfter = Number.parseInt(resp.headers.get('Retry-After') || '0', 10) || 0;
    const error = new ApiError(resp.status, message, retryAfter);
    if (resp.status === 401 && !expect401) onUnauthorized(error);
    throw error;
  }
  return data;
}

export const api = {
  signIn: (secret) => request('POST', '/api/session', { body: { secret }, expect401: true }),
  session: () => request('GET', '/api/session', { expect401: true }),
  signOut: () => request('DELETE', '/api/session'),
  config: () => request('GET', '/api/config'),
  state: () => request('GET', '/api/state'),
  messages: (before, limit = 30) => {
    const query = new URLSearchParams({ limit: String(limit) });
    if (before) query.set('before', before);
    return request('GET', `/api/messages?${query}`);
  },
  logout: () => request('POST', '/api/logout'),
  relogin: () => request('POST', '/api/relogin'),
  markRead: () => request('POST', '/api/notifications/read'),
};

/**
 * Does the session still hold? 'ok', 'signed_out' (401), or 'unknown' (gateway down, 5xx).
 * Asked when the stream fails, because EventSource never tells why.
 */
export async function sessionStatus() {
  try {
    await api.session();
    return 'ok';
  } catch (err) {
    return err instanceof ApiError && err.status === 401 ? 'signed_out' : 'unknown';
  }
}
