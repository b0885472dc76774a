// The recent-messages list: the first page from GET /api/messages, then live `message` events.
//
// Rows are keyed by the WeChat message id, so a replay after a reconnect, a `reset` followed by
// a re-fetch, or a message that is both in the fetched page and live never shows twice.
//
// Order without comparing ids of two different streams: the stream is opened before the page
// is fetched, so a live message is newer than every fetched one it does not duplicate. Live
// rows go on top, fetched rows (newest first) go below them.

import { el } from './dom.js';

const KIND_LABEL = {
  friend: 'Friend',
  group: 'Group',
  mp: 'Official account',
  self: 'You',
  system: 'WeChat',
};

const TYPE_LABEL = {
  image: 'Image',
  voice: 'Voice message',
  video: 'Video',
  file: 'File',
  link: 'Link',
  card: 'Contact card',
  friend_request: 'Friend request',
  map: 'Location',
  system: 'Notice',
  other: 'Message',
};

const timeFormat = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit' });
const dateTimeFormat = new Intl.DateTimeFormat(undefined, {
  month: 'short',
  day: 'numeric',
  hour: '2-digit',
  minute: '2-digit',
});

function formatTime(seconds) {
  const date = new Date(seconds * 1000);
  const today = new Date();
  const sameDay = date.toDateString() === today.toDateString();
  return (sameDay ? timeFormat : dateTimeFormat).format(date);
}

function duration(ms) {
  const s = Math.round(ms / 1000);
  return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, '0')}`;
}

/** What a person reads for a message, by type: WeChat text, a file name, a link title... */
function body(message) {
  const full = typeof message.text === 'string' ? message.text : '';
  // A very long text arrives cut in the live event; GET /api/messages has all of it.
  const text = message.truncated ? `${full} …` : full;
  const media = message.media || {};
  switch (message.type) {
    case 'text':
    case 'system':
      return text;
    case 'voice':
      return media.duration_ms ? duration(media.duration_ms) : '';
    case 'file':
      return text || media.file_name || '';
    case 'card':
      return message.card ? message.card.name : text;
    default:
      return text;
  }
}

export function renderMessage(message) {
  const type = String(message.type || 'other');
  const kind = String(message.chat || 'friend');
  const row = el('li', {
    className: `msg msg-${kind}`,
    dataset: { id: String(message.id), type, kind },
  });
  const head = el(
    'div',
    { className: 'msg-head' },
    el('span', { className: 'msg-chat' }, String(message.chat_name || message.chat_id || '')),
    el('span', { className: `msg-kind kind-${kind}` }, KIND_LABEL[kind] || kind),
    message.mentioned ? el('span', { className: 'msg-mention' }, '@ you') : null,
    el(
      'time',
      { className: 'msg-time', dateTime: new Date(message.created_at * 1000).toISOString() },
      formatTime(message.created_at),
    ),
  );
  row.append(head);
  if (kind === 'group' && message.sender_name) {
    row.append(el('div', { className: 'msg-sender' }, String(message.sender_name)));
  }
  const text = body(message);
  row.append(
    el(
      'p',
      { className: 'msg-body' },
      type !== 'text' ? el('span', { className: 'msg-type' }, TYPE_LABEL[type] || type) : null,
      text ? el('span', { className: 'msg-text' }, text) : null,
    ),
  );
  return row;
}

export class MessageList {
  /**
   * @param {HTMLOListElement} list
   * @param {HTMLElement} empty shown while there is no row
   */
  constructor(list, empty) {
    this.list = list;
    this.empty = empty;
    this.rows = new Map(); // WeChat message id -> <li>
  }

  get size() {
    return this.rows.size;
  }

  clear() {
    this.rows.clear();
    this.list.replaceChildren();
    this.empty.hidden = false;
  }

  /** A live message: on top, unless it is already shown. */
  addLive(message) {
    if (!message || typeof message.id !== 'string' || this.rows.has(message.id)) return false;
    const row = renderMessage(message);
    this.rows.set(message.id, row);
    this.list.prepend(row);
    this.empty.hidden = true;
    return true;
  }

  /** A fetched page, newest first: below what is shown, skipping what is already there. */
  addPage(items) {
    const fragment = document.createDocumentFragment();
    for (const item of items) {
      const message = item && item.message;
      if (!message || typeof message.id !== 'string' || this.rows.has(message.id)) continue;
      const row = renderMessage(message);
      this.rows.set(message.id, row);
      fragment.append(row);
    }
    this.list.append(fragment);
    this.empty.hidden = this.rows.size > 0;
  }
}
