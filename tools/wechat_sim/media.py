"""Small but real media bytes: avatars, received images, voice, video and file bodies.

Generated with the standard library only, so the simulator needs no imaging package.
"""

from __future__ import annotations

import base64
import struct
import zlib
from functools import cache

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    crc = zlib.crc32(kind + payload) & 0xFFFFFFFF
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)


def solid_png(size: int, rgb: tuple[int, int, int], ring: tuple[int, int, int]) -> bytes:
    """A square RGB PNG: a filled disc on a ring colour, enough to look like an avatar."""
    centre = (size - 1) / 2
    radius2 = (size / 2.4) ** 2
    rows = bytearray()
    for y in range(size):
        rows.append(0)  # filter type "none" for every scanline
        for x in range(size):
            inside = (x - centre) ** 2 + (y - centre) ** 2 <= radius2
            rows.extend(rgb if inside else ring)
    header = struct.pack(">IIBBBBB", size, size, 8, 2, 0, 0, 0)
    return (
        PNG_SIGNATURE
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", zlib.compress(bytes(rows), 9))
        + _png_chunk(b"IEND", b"")
    )


@cache
def avatar_png() -> bytes:
    return solid_png(32, (0x07, 0xC1, 0x60), (0xF2, 0xF2, 0xF2))


@cache
def picture_png() -> bytes:
    return solid_png(48, (0xFF, 0x8C, 0x00), (0x33, 0x66, 0x99))


def avatar_data_url() -> str:
    # WeChat labels this "img/jpg" (not a MIME type at all); consumers have to sniff the
    # bytes anyway, so the label is kept verbatim while the payload is a PNG.
    return "data:img/jpg;base64," + base64.b64encode(avatar_png()).decode("ascii")


# An MPEG-1 layer III frame header followed by silence-ish padding: enough for a sniffer.
VOICE_MP3 = b"ID3\x04\x00\x00\x00\x00\x00\x00" + b"\xff\xfb\x90\x64" + b"\x00" * 413

# An ISO BMFF "ftyp" box, the first thing every MP4 file carries.
VIDEO_MP4 = struct.pack(">I", 24) + b"ftypisom" + b"\x00\x00\x02\x00" + b"isomiso2" + b"\x00" * 64

FILE_BODY = "wechat-sim 附件 📎\n".encode()
