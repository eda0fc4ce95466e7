"""Byte-level tokenizer: 256 byte tokens plus a few special tokens.

The vocabulary of the local server's model. It lives at the top of the package,
stdlib only, because both sides need it and neither may import the other: the
server's model trains on it and the clients hand it out from ``get_tokenizer()``.
No vocabulary file, no download.

Ids: 0..255 are the bytes themselves, 256 is BOS, 257 is EOS, 258..263 are
reserved (valid ids that decode to nothing). ``vocab_size`` is 264, padded so
the embedding table has a round shape.
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["ByteTokenizer", "BOS_TOKEN_ID", "EOS_TOKEN_ID", "VOCAB_SIZE"]

BOS_TOKEN_ID = 256
EOS_TOKEN_ID = 257
VOCAB_SIZE = 264

_SPECIAL_NAMES = {BOS_TOKEN_ID: "<|bos|>", EOS_TOKEN_ID: "<|eos|>"}


class ByteTokenizer:
    """UTF-8 bytes as tokens. Stateless; one shared instance is enough."""

    bos_token_id: int = BOS_TOKEN_ID
    eos_token_id: int = EOS_TOKEN_ID
    vocab_size: int = VOCAB_SIZE
    name: str = "tinker-actors/byte"

    def encode(self, text: str, add_bos: bool = False, add_special_tokens: bool = False) -> list[int]:
        """Token ids of ``text`` (its UTF-8 bytes), with BOS first when asked.

        ``add_special_tokens`` is the Hugging Face spelling of ``add_bos``.
        """
        ids = list(text.encode("utf-8"))
        return [BOS_TOKEN_ID, *ids] if (add_bos or add_special_tokens) else ids

    def decode(self, tokens: Iterable[int], skip_special_tokens: bool = True) -> str:
        """Text of ``tokens``; invalid UTF-8 becomes U+FFFD rather than raising.

        Special tokens are dropped unless ``skip_special_tokens`` is false, in
        which case they render as ``<|bos|>``, ``<|eos|>``, ``<|reserved_N|>``.
        """
        out = bytearray()
        parts: list[str] = []
        for tok in tokens:
            tok = int(tok)
            if 0 <= tok < 256:
                out.append(tok)
                continue
            if not 256 <= tok < VOCAB_SIZE:
                raise ValueError(f"token id {tok} is outside the vocabulary [0, {VOCAB_SIZE})")
            if not skip_special_tokens:
                parts.append(out.decode("utf-8", errors="replace"))
                out.clear()
                parts.append(_SPECIAL_NAMES.get(tok, f"<|reserved_{tok}|>"))
        parts.append(out.decode("utf-8", errors="replace"))
        return "".join(parts)

    def __call__(self, text: str) -> dict[str, list[int]]:
        """Hugging Face call style: ``tokenizer(text)["input_ids"]``."""
        return {"input_ids": self.encode(text)}

    def token_bytes(self, token: int) -> bytes:
        """The bytes one token stands for (empty for special tokens)."""
        return bytes((token,)) if 0 <= token < 256 else b""

    def __repr__(self) -> str:
        return f"ByteTokenizer(vocab_size={VOCAB_SIZE})"
