"""How WeChat's web servers encode text, so that itchat's decoders have real work to do.

Message bodies arrive HTML-escaped with ``<br/>`` for newlines (itchat runs
``utils.msg_formatter``); names and message bodies carry emoji as
``<span class="emoji emoji1f431"></span>`` (itchat runs ``utils.emoji_formatter``).
"""

from __future__ import annotations

import html

# itchat "repairs" these codes into different emoji (see itchat.utils.emoji_formatter), so a
# span for one of them would reach the user as the wrong face; WeChat-like servers send such
# characters raw instead, which itchat passes through untouched.
_REMAPPED_BY_ITCHAT = frozenset(
    {0x1F63C, 0x1F639, 0x1F63A, 0x1F4AB, 0x1F64D, 0x1F63B, 0x1F63D, 0x1F64E, 0x1F63F, 0x1F450}
)

# Astral-plane pictographs are what WeChat wraps in spans; everything else (CJK, ZWJ, variation
# selectors, BMP symbols) travels as plain UTF-8.
_SPAN_RANGES = ((0x1F000, 0x1FAFF),)


def _spannable(codepoint: int) -> bool:
    if codepoint in _REMAPPED_BY_ITCHAT:
        return False
    return any(lo <= codepoint <= hi for lo, hi in _SPAN_RANGES)


def emoji_spans(text: str) -> str:
    """Replace astral emoji by WeChat's ``<span class="emoji emojiXXXX"></span>`` markup."""
    return "".join(
        f'<span class="emoji emoji{ord(ch):x}"></span>' if _spannable(ord(ch)) else ch
        for ch in text
    )


def wire_name(name: str) -> str:
    """A contact name as WeChat sends it: emoji as spans, otherwise verbatim.

    itchat only undoes the emoji spans in names, never HTML escaping, so escaping a name here
    would show up as ``&amp;`` in every consumer.
    """
    return emoji_spans(name)


def wire_content(text: str) -> str:
    """A message body as WeChat sends it: escaped, ``<br/>`` newlines, emoji spans."""
    escaped = html.escape(text, quote=False)
    return emoji_spans(escaped).replace("\r\n", "\n").replace("\n", "<br/>")
