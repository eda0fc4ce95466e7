"""Tokenizers the clients hand out from ``get_tokenizer()``.

The local server's model is byte-level (ids 0..255 are bytes, 256 BOS, 257
EOS, 258..263 reserved). The client carries its own small copy of that
tokenizer instead of importing ``tinker_actors.server``: nothing of the client
may import the server (docs/architecture.md). For real models,
``get_tokenizer`` loads a Hugging Face tokenizer when ``transformers`` is
installed.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

__all__ = ["ByteTokenizer", "BYTE_TOKENIZER_IDS", "load_tokenizer"]

_BOS, _EOS, _VOCAB = 256, 257, 264
_SPECIAL = {_BOS: "<|bos|>", _EOS: "<|eos|>"}

# tokenizer_id / model names the local server reports for its byte model.
BYTE_TOKENIZER_IDS = frozenset({"tinker-actors/byte", "byte", "bytes"})


class ByteTokenizer:
    """UTF-8 bytes as token ids (the local server's vocabulary). Stateless."""

    bos_token_id = _BOS
    eos_token_id = _EOS
    vocab_size = _VOCAB
    name = "tinker-actors/byte"

    def encode(self, text: str, add_special_tokens: bool = False, add_bos: bool = False) -> list[int]:
        ids = list(text.encode("utf-8"))
        return [_BOS, *ids] if (add_bos or add_special_tokens) else ids

    def decode(self, tokens: Iterable[int], skip_special_tokens: bool = True) -> str:
        out = bytearray()
        parts: list[str] = []
        for tok in tokens:
            tok = int(tok)
            if 0 <= tok < 256:
                out.append(tok)
                continue
            if not 256 <= tok < _VOCAB:
                raise ValueError(f"token id {tok} is outside the vocabulary [0, {_VOCAB})")
            if not skip_special_tokens:
                parts.append(out.decode("utf-8", errors="replace"))
                out.clear()
                parts.append(_SPECIAL.get(tok, f"<|reserved_{tok}|>"))
        parts.append(out.decode("utf-8", errors="replace"))
        return "".join(parts)

    def __call__(self, text: str) -> dict[str, list[int]]:
        return {"input_ids": self.encode(text)}

    def __repr__(self) -> str:
        return f"ByteTokenizer(vocab_size={_VOCAB})"


def load_tokenizer(tokenizer_id: str | None, model_name: str | None = None) -> Any:
    """The tokenizer for a model: the byte tokenizer for local models, else Hugging Face's.

    Raises ImportError naming ``transformers`` when a real model's tokenizer
    is asked for and transformers is not installed.
    """
    for name in (tokenizer_id, model_name):
        if name is None:
            continue
        lowered = name.lower()
        if lowered in BYTE_TOKENIZER_IDS or "byte" in lowered or lowered.startswith("tinker-actors"):
            return ByteTokenizer()
    ident = tokenizer_id or model_name
    if ident is None:
        return ByteTokenizer()
    try:
        from transformers import AutoTokenizer  # type: ignore[import-not-found]
    except ImportError as exc:
        raise ImportError(
            f"the tokenizer for {ident!r} needs the optional 'transformers' package"
        ) from exc
    return AutoTokenizer.from_pretrained(ident, fast=True)
