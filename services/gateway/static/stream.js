// The tab's one EventSource on GET /stream, and what to do when it fails.
//
// EventSource reconnects by itself after a dropped connection, sending Last-Event-ID, and
// the gateway resumes exactly after it. It gives up for good on any non-200 answer (401
// signed out, 503 draining, 429), and never says which: so on every error we ask
// GET /api/session. A 401 there means "signed out"; otherwise, if the browser gave up, we
// open a new EventSource ourselves after a jittered backoff, passing ?lastEventId= so the
// gateway still resumes where we were.

export const EVENTS = ['login', 'notification', 'message', 'reset'];

const BACKOFF_BASE_MS = 1000;
const BACKOFF_MAX_MS = 30000;

export class Stream {
  /**
   * @param {object} hooks
   * @param {(name: string, data: any, id: string) => void} hooks.onEvent
   * @param {(status: 'connecting'|'live'|'reconnecting'|'signed_out'|'closed') => void} hooks.onStatus
   * @param {() => Promise<'ok'|'signed_out'|'unknown'>} hooks.checkSession
   * @param {() => void} hooks.onSignedOut
   */
  constructor({ onEvent, onStatus, checkSession, onSignedOut }) {
    this.onEvent = onEvent;
    this.onStatus = onStatus;
    this.checkSession = checkSession;
    this.onSignedOut = onSignedOut;
    this.source = null;
    this.lastId = '';
    this.failures = 0;
    this.timer = 0;
    this.checking = false;
    this.recheck = false;
    this.stopped = true;
  }

  /** Open the stream unless it is open already: never a second EventSource per tab. */
  start() {
    this.stopped = false;
    if (this.source || this.timer) return;
    this.onStatus(this.lastId ? 'reconnecting' : 'connecting');
    this.open();
  }

  /** Close it (page hidden, signed out); `start()` later resumes after the last id seen. */
  stop(status = 'closed') {
    this.stopped = true;
    clearTimeout(this.timer);
    this.timer = 0;
    if (this.source) {
      this.source.close();
      this.source = null;
    }
    this.onStatus(status);
  }

  /** Forget the position: the next start gets the current state rather than a replay. */
  forget() {
    this.lastId = '';
  }

  open() {
    this.timer = 0;
    const url = this.lastId ? `/stream?lastEventId=${encodeURIComponent(this.lastId)}` : '/stream';
    const source = new EventSource(url, { withCredentials: false });
    this.source = source;
    source.addEventListener('open', () => {
      if (source !== this.source) return;
      this.failures = 0;
      this.onStatus('live');
    });
    for (const name of EVENTS) {
      source.addEventListener(name, (event) => this.dispatch(source, name, event));
    }
    source.addEventListener('error', () => this.failed(source));
  }

  dispatch(source, name, event) {
    if (source !== this.source) return;
    // `reset` carries no id on purpose; lastEventId then still holds the previous one.
    if (event.lastEventId) this.lastId = event.lastEventId;
    let data;
    try {
      data = JSON.parse(event.data);
    } catch {
      return; // the gateway relays only JSON; anything else is not ours to show
    }
    this.onEvent(name, data, event.lastEventId);
  }

  failed(source) {
    if (source !== this.source || this.stopped) return;
    this.onStatus('reconnecting');
    this.diagnose();
  }

  async diagnose() {
    if (this.checking) {
      this.recheck = true;
      return;
    }
    this.checking = true;
    try {
      do {
        this.recheck = false;
        const verdict = await this.checkSession();
        if (this.stopped || !this.source) return;
        if (verdict === 'signed_out') {
          this.stop('signed_out');
          this.onSignedOut();
          return;
        }
        if (this.source.readyState === EventSource.CLOSED) {
          this.reopenLater();
          return;
        }
        // CONNECTING: the browser is retrying by itself (after the server's retry: hint).
      } while (this.recheck);
    } finally {
      this.checking = false;
    }
  }

  reopenLater() {
    if (this.source) {
      this.source.close();
      this.source = null;
    }
    clearTimeout(this.timer);
    const ceiling = Math.min(BACKOFF_MAX_MS, BACKOFF_BASE_MS * 2 ** this.failures);
    this.failures += 1;
    // Full jitter over the upper half: a gateway restart must not bring every tab back at once.
    const delay = ceiling / 2 + Math.random() * (ceiling / 2);
    this.timer = setTimeout(() => {
      if (!this.stopped) this.open();
    }, delay);
  }
}
