"""Tokenizers the clients hand out from ``get_tokenizer()``.

The local server's model is byte-level (:mod:`tinker_actors.byte_tokenizer`,
shared by both sides without either importing the other). For real models,
``get_tokenizer`` loads a Hugging Face tokenizer when ``transformers`` is
installed.
"""

from __future__ import annotations

from typing import Any

from ..byte_tokenizer import ByteTokenizer

__all__ = ["ByteTokenizer", "BYTE_TOKENIZER_IDS", "load_tokenizer"]

# tokenizer_id / model names the local server reports for its byte model.
BYTE_TOKENIZER_IDS = frozenset({"tinker-actors/byte", "byte", "bytes"})


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
