// The WeChat login view, drawn from the latest `login` event alone (wechat-admin's contract:
// scan_qr_code, confirm_login, logged_out; plus our login_error).

import { $, safeImage, say, setAvatar, show } from './dom.js';

const LOGGED_OUT_WHY = {
  phone_logout: 'You logged out of WeChat Web on your phone.',
  elsewhere: 'WeChat was opened on another web client, which ended this session.',
  invalid_session: 'WeChat ended the session.',
  command: 'Logged out from this dashboard.',
  errors: 'WeChat failed too many requests in a row, so the session was dropped.',
  unknown: 'WeChat ended the session.',
};

const ERROR_TEXT = {
  refused: 'WeChat refused to log this account in on the web.',
  unreachable: 'WeChat cannot be reached right now.',
  protocol: 'WeChat answered something unexpected during login.',
  qr_timeout: 'Nobody scanned the QR code in time.',
};

function retryText(seconds) {
  if (typeof seconds !== 'number' || !(seconds > 0)) return '';
  return `Trying again by itself in ${Math.max(1, Math.round(seconds))} s.`;
}

export class LoginView {
  constructor() {
    this.section = $('view-login');
    this.image = $('login-image');
    this.status = $('login-status');
    this.detail = $('login-detail');
    this.error = $('login-error');
    this.button = $('relogin');
    this.asking = false;
  }

  /** Between "log in again" and the next login event: the button waits. */
  setAsking(asking) {
    this.asking = asking;
    this.button.disabled = asking;
    if (asking) {
      this.status.textContent = 'Asking WeChat for a new QR code…';
      say(this.error, '');
    }
  }

  render(login) {
    this.setAsking(false);
    const type = login && typeof login.type === 'string' ? login.type : 'none';
    this.section.dataset.phase = type;
    let image = null;
    let imageAlt = '';
    let status = 'Waiting for the login service…';
    let detail = 'The QR code appears here as soon as the login service offers one.';
    let error = '';
    let button = '';

    if (type === 'scan_qr_code') {
      image = safeImage(`data:image/png;base64,${login.extra}`);
      imageAlt = 'QR code: scan it with WeChat on your phone';
      status = 'Scan this QR code with WeChat on your phone.';
      detail = 'A fresh code appears here by itself when this one expires.';
      this.image.dataset.uuid = String(login.uuid || '');
    } else if (type === 'confirm_login') {
      image = 'avatar';
      imageAlt = 'The avatar of the WeChat account that scanned the code';
      status = 'Scanned — confirm on your phone.';
      detail = 'Tap “Log in” in WeChat on your phone to finish.';
    } else if (type === 'logged_out') {
      status = 'Logged out of WeChat.';
      detail = LOGGED_OUT_WHY[login.reason] || 'The WeChat session ended.';
      button = 'Log in again';
    } else if (type === 'login_error') {
      status = 'WeChat login failed.';
      error = ERROR_TEXT[login.reason] || 'The login failed.';
      detail = [typeof login.message === 'string' ? login.message : '', retryText(login.retry_in)]
        .filter(Boolean)
        .join(' ');
      button = login.reason === 'qr_timeout' ? 'Log in again' : 'Try again now';
    } else if (type === 'logged_in') {
      status = 'Logged in.';
      detail = '';
    }

    if (image === 'avatar') {
      setAvatar(this.image, login.extra);
      this.image.className = 'login-image avatar-large';
    } else if (image) {
      this.image.src = image;
      this.image.className = 'login-image qr';
    }
    this.image.alt = imageAlt;
    show(this.image, Boolean(image));
    this.status.textContent = status;
    this.detail.textContent = detail;
    say(this.error, error);
    this.button.textContent = button || 'Log in again';
    show(this.button, Boolean(button));
  }
}
