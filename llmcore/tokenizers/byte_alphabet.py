"""GPT-2's printable alphabet for bytes (字节到可打印字符的映射), used by byte-level BPE vocabularies.

Byte-level BPE (GPT-2, Radford et al., 2019; also RoBERTa, Qwen2, LLaMA-3) works on the 256 byte
values, but vocabulary files store tokens as text. GPT-2 maps every byte to one printable Unicode
character: the 188 bytes that are already visible Latin-1 characters (``!``..``~``, ``¡``..``¬``,
``®``..``ÿ``) stand for themselves, and the other 68 (control codes, space, ``0x7F``-``0xA0``,
soft hyphen) take the code points 256, 257, … in byte order. So the space ``0x20`` is ``"Ġ"``
(U+0120) and the newline ``0x0A`` is ``"Ċ"`` (U+010A).
"""

from __future__ import annotations

__all__ = ["BYTE_TO_CHAR", "CHAR_TO_BYTE", "bytes_to_token", "token_to_bytes"]


def _byte_to_char() -> tuple[str, ...]:
    visible = set(range(ord("!"), ord("~") + 1)) | set(range(ord("¡"), ord("¬") + 1)) | set(range(ord("®"), ord("ÿ") + 1))
    chars = []
    next_free = 256
    for byte in range(256):
        if byte in visible:
            chars.append(chr(byte))
        else:
            chars.append(chr(next_free))
            next_free += 1
    return tuple(chars)


BYTE_TO_CHAR: tuple[str, ...] = _byte_to_char()
CHAR_TO_BYTE: dict[str, int] = {char: byte for byte, char in enumerate(BYTE_TO_CHAR)}


def bytes_to_token(data: bytes) -> str:
    """The vocabulary spelling of ``data``, one printable character per byte."""
    return "".join(BYTE_TO_CHAR[byte] for byte in data)


def token_to_bytes(token: str) -> bytes:
    """The bytes a byte-level vocabulary entry stands for; a character outside the alphabet is an error."""
    try:
        return bytes(CHAR_TO_BYTE[char] for char in token)
    except KeyError as err:
        raise ValueError(f"token {token!r} has the character {err.args[0]!r}, which is not in GPT-2's byte alphabet") from None
