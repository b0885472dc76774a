// Small DOM helpers. Text from WeChat (names, messages) only ever goes in as textContent.

export const $ = (id) => document.getElementById(id);

/** `el('span', {className: 'x'}, 'text', child)`: strings become text nodes, never HTML. */
export function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value === undefined || value === null) continue;
    if (key === 'dataset') Object.assign(node.dataset, value);
    else if (key in node) node[key] = value;
    else node.setAttribute(key, String(value));
  }
  for (const child of children) {
    if (child === undefined || child === null || child === false) continue;
    node.append(typeof child === 'string' ? document.createTextNode(child) : child);
  }
  return node;
}

export function show(node, visible) {
  node.hidden = !visible;
}

/** Show `message` in an error/notice element, or hide it when empty. */
export function say(node, message) {
  node.textContent = message || '';
  node.hidden = !message;
}

// Images only from data URLs we expect (the QR PNG, WeChat's avatars) or our own origin.
const SAFE_IMAGE = /^data:(image|img)\/[a-z0-9.+-]+;base64,[a-z0-9+/=\s]+$/i;

export function safeImage(src) {
  if (typeof src !== 'string' || src === '') return null;
  if (SAFE_IMAGE.test(src)) return src;
  try {
    const url = new URL(src, window.location.href);
    return url.origin === window.location.origin ? url.href : null;
  } catch {
    return null;
  }
}

export const PLACEHOLDER_AVATAR = 'avatar.svg';

export function setAvatar(img, src) {
  img.src = safeImage(src) || PLACEHOLDER_AVATAR;
}
