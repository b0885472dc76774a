// The dashboard: sign-in, WeChat login and the main view, fed by one EventSource per tab.
//
// What the page shows comes from two places that can race: the REST API (state, messages)
// and the stream. Login and notification events carry stream ids, so a fetched state older
// than an event already applied is ignored; messages are de-duplicated by their WeChat id.

import { ApiError, api, sessionStatus, setUnauthorizedHandler } from './api.js';
import { $, say, setAvatar, show } from './dom.js';
import { LoginView } from './login_view.js';
import { MessageList } from './messages.js';
import { Stream } from './stream.js';

const CONNECTION_TEXT = {
  idle: 'not connected',
  connecting: 'connecting…',
  live: 'live',
  reconnecting: 'reconnecting…',
  signed_out: 'signed out',
  closed: 'not connected',
};

const state = {
  signedIn: false,
  login: null,
  loginId: '',
  unread: 0,
  notificationId: '',
  olderCursor: null,
  view: '',
  expiryTimer: 0,
};

const loginView = new LoginView();
const messages = new MessageList($('messages'), $('messages-empty'));
const stream = new Stream({
  onEvent,
  onStatus: setConnection,
  checkSession: sessionStatus,
  onSignedOut: () => signedOut('Your session has ended: sign in again.'),
});

// --- stream ids --------------------------------------------------------------------------

function parseId(id) {
  const match = /^(\d+)-(\d+)$/.exec(id || '');
  return match ? [Number(match[1]), Number(match[2])] : null;
}

/** Is `id` at or after `known`? Without an id, only when nothing is known yet. */
function notOlder(id, known) {
  const a = parseId(id);
  const b = parseId(known);
  if (!b) return true;
  if (!a) return false;
  return a[0] > b[0] || (a[0] === b[0] && a[1] >= b[1]);
}

// --- rendering ---------------------------------------------------------------------------

function setConnection(status) {
  const box = $('conn');
  box.dataset.state = status;
  $('conn-text').textContent = CONNECTION_TEXT[status] || status;
}

function switchView(name) {
  for (const view of ['signin', 'login', 'main']) show($(`view-${view}`), view === name);
  show($('booting'), false);
  if (state.view === name) return;
  const previous = state.view;
  state.view = name;
  // Move focus to the new view's heading, unless the user is busy elsewhere (demo panel).
  const active = document.activeElement;
  const idle = !active || active === document.body || !active.offsetParent;
  if (previous && idle) {
    const heading = { signin: 'signin-title', login: 'login-title', main: 'account-name' }[name];
    $(heading).focus({ preventScroll: true });
  }
}

function render() {
  if (!state.signedIn) {
    switchView('signin');
    return;
  }
  const login = state.login;
  if (login && login.type === 'logged_in') {
    const user = login.user || {};
    $('account-name').textContent = String(user.name || 'WeChat');
    setAvatar($('account-avatar'), user.avatar);
    $('account-avatar').alt = `${user.name || 'Account'}'s avatar`;
    switchView('main');
  } else {
    loginView.render(login);
    switchView('login');
  }
}

function renderUnread() {
  const count = state.unread;
  const badge = $('unread-count');
  badge.textContent = count > 99 ? '99+' : String(count);
  badge.dataset.count = String(count);
  $('unread-label').textContent = count === 1 ? 'unread message' : 'unread messages';
  document.title = count > 0 ? `(${count}) wxstream` : 'wxstream';
}

// --- state -------------------------------------------------------------------------------

function applyLogin(data, id) {
  if (!notOlder(id, state.loginId)) return;
  state.loginId = id || state.loginId;
  state.login = data;
  render();
}

function applyNotification(count, id) {
  if (!notOlder(id, state.notificationId)) return;
  state.notificationId = id || state.notificationId;
  state.unread = Number.isInteger(count) && count >= 0 ? count : 0;
  renderUnread();
}

function onEvent(name, data, id) {
  if (name === 'login') {
    applyLogin(data, id);
  } else if (name === 'notification') {
    applyNotification(data.count, id);
  } else if (name === 'message') {
    messages.addLive(data);
  } else if (name === 'reset') {
    // Our place in the stream is gone: drop everything; the current state events follow,
    // and the messages are fetched again (the stream is already live, so nothing is lost).
    state.loginId = '';
    state.notificationId = '';
    messages.clear();
    refresh().catch(showMainError);
  }
}

async function loadState() {
  const current = await api.state();
  if (current.login) applyLogin(current.login, current.login_id || '');
  else if (!state.loginId) render();
  applyNotification(current.unread, current.notification_id || '');
}

async function loadMessages() {
  const page = await api.messages();
  messages.addPage(page.items || []);
  state.olderCursor = page.next_before || null;
  show($('older'), Boolean(state.olderCursor));
}

async function refresh() {
  await Promise.all([loadState(), loadMessages()]);
}

function applyConfig(config) {
  $('account-id').textContent = String(config.account || '');
  const url = typeof config.demo_phone_url === 'string' ? config.demo_phone_url : '';
  const valid = /^https?:\/\//i.test(url);
  show($('demo-phone-link'), valid);
  show($('demo-phone'), valid);
  if (valid) {
    $('demo-phone-link').href = url;
    $('demo-phone-tab').href = url;
    $('demo-phone-frame').dataset.src = url;
  }
}

// --- session -----------------------------------------------------------------------------

function watchExpiry(expiresAt) {
  clearTimeout(state.expiryTimer);
  if (typeof expiresAt !== 'number') return;
  // An open stream outlives its cookie; look again just after the session should end.
  const delay = Math.min(expiresAt * 1000 - Date.now() + 1000, 2 ** 31 - 1);
  state.expiryTimer = setTimeout(async () => {
    const verdict = await sessionStatus();
    if (verdict === 'signed_out') signedOut('Your session has expired: sign in again.');
  }, Math.max(delay, 1000));
}

async function enter(expiresAt) {
  state.signedIn = true;
  show($('sign-out'), true);
  watchExpiry(expiresAt);
  // Open the stream before fetching the messages: see messages.js on why that keeps order.
  stream.start();
  render();
  try {
    const [config] = await Promise.all([api.config(), loadState(), loadMessages()]);
    applyConfig(config);
  } catch (err) {
    showMainError(err);
  }
}

function signedOut(notice) {
  clearTimeout(state.expiryTimer);
  const wasSignedIn = state.signedIn;
  state.signedIn = false;
  stream.stop('signed_out');
  stream.forget();
  state.login = null;
  state.loginId = '';
  state.notificationId = '';
  state.unread = 0;
  messages.clear();
  renderUnread();
  show($('sign-out'), false);
  show($('demo-phone-link'), false);
  show($('demo-phone'), false);
  if (wasSignedIn || notice) say($('signin-notice'), notice);
  render();
}

function showMainError(err) {
  if (err instanceof ApiError && err.status === 401) return; // signedOut() says it
  const text = err instanceof Error ? err.message : String(err);
  say($('main-error'), text);
  say($('login-error'), text);
}

// --- controls ----------------------------------------------------------------------------

async function onSignIn(event) {
  event.preventDefault();
  const input = $('secret');
  const error = $('signin-error');
  const button = $('signin-submit');
  if (!input.value) {
    say(error, 'Enter the admin secret.');
    input.setAttribute('aria-invalid', 'true');
    input.focus();
    return;
  }
  button.disabled = true;
  say(error, '');
  try {
    const info = await api.signIn(input.value);
    input.value = '';
    input.removeAttribute('aria-invalid');
    say($('signin-notice'), '');
    await enter(info.expires_at);
  } catch (err) {
    let text = err instanceof Error ? err.message : String(err);
    if (err instanceof ApiError) {
      if (err.status === 401) text = 'Wrong secret. Check it and try again.';
      else if (err.status === 429) {
        const wait = err.retryAfter ? ` Try again in ${err.retryAfter} s.` : ' Try again later.';
        text = `Too many failed sign-ins.${wait}`;
      } else if (err.status === 0) text = 'The gateway cannot be reached. Is it running?';
    }
    say(error, text);
    input.setAttribute('aria-invalid', 'true');
    input.select();
  } finally {
    button.disabled = false;
  }
}

async function onSignOut() {
  try {
    await api.signOut();
  } catch (err) {
    if (!(err instanceof ApiError && err.status === 401)) {
      showMainError(err);
      return;
    }
  }
  signedOut('You signed out.');
}

/** Run a command button's request, with the button busy meanwhile. */
async function command(button, call) {
  button.disabled = true;
  button.setAttribute('aria-busy', 'true');
  say($('main-error'), '');
  try {
    await call();
  } catch (err) {
    showMainError(err);
  } finally {
    button.disabled = false;
    button.removeAttribute('aria-busy');
  }
}

const RELOGIN_PATIENCE_MS = 20000;

async function onRelogin() {
  loginView.setAsking(true);
  // The next login event redraws the view; should none come, give the button back.
  setTimeout(() => {
    if (loginView.asking) loginView.render(state.login);
  }, RELOGIN_PATIENCE_MS);
  try {
    await api.relogin();
  } catch (err) {
    loginView.render(state.login);
    showMainError(err);
  }
}

async function onOlder() {
  const button = $('older');
  if (!state.olderCursor) return;
  await command(button, async () => {
    const page = await api.messages(state.olderCursor);
    messages.addPage(page.items || []);
    state.olderCursor = page.next_before || null;
    show(button, Boolean(state.olderCursor));
  });
}

function onToggleDemoPhone() {
  const button = $('demo-phone-toggle');
  const box = $('demo-phone-frame-box');
  const frame = $('demo-phone-frame');
  const open = box.hidden;
  if (open && !frame.getAttribute('src')) frame.src = frame.dataset.src || 'about:blank';
  box.hidden = !open;
  button.setAttribute('aria-expanded', String(open));
  button.textContent = open ? 'Hide the phone' : 'Show the phone';
}

// --- start -------------------------------------------------------------------------------

async function boot() {
  setUnauthorizedHandler(() => {
    if (state.signedIn) signedOut('Your session has ended: sign in again.');
  });
  $('signin-form').addEventListener('submit', onSignIn);
  $('sign-out').addEventListener('click', onSignOut);
  $('mark-read').addEventListener('click', (e) => command(e.currentTarget, api.markRead));
  $('wechat-logout').addEventListener('click', (e) => command(e.currentTarget, api.logout));
  $('relogin').addEventListener('click', onRelogin);
  $('older').addEventListener('click', onOlder);
  $('demo-phone-toggle').addEventListener('click', onToggleDemoPhone);
  // One EventSource per tab, and none for a hidden page: browsers allow six connections per
  // origin, and a page in the back/forward cache must not hold one.
  window.addEventListener('pagehide', () => {
    if (state.signedIn) stream.stop();
  });
  window.addEventListener('pageshow', (event) => {
    if (event.persisted && state.signedIn) stream.start();
  });
  renderUnread();

  let info = null;
  try {
    info = await api.session();
  } catch (err) {
    if (err instanceof ApiError && err.status === 0) {
      say($('signin-notice'), 'The gateway cannot be reached. Is it running?');
    }
  }
  if (info && info.authenticated) {
    await enter(info.expires_at);
  } else {
    setConnection(info === null ? 'signed_out' : 'idle');
    render();
  }
}

boot();
