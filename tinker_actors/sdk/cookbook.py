"""tinker-cookbook recipes against the local server, offline.

The cookbook loads a model's tokenizer by name (``tinker_cookbook.tokenizer_utils.get_tokenizer``),
from Hugging Face unless a factory was registered for that name. The local
server's models use the byte tokenizer (:mod:`tinker_actors.byte_tokenizer`),
which needs no download; :func:`register_local_tokenizers` registers it under
every local model name, so a recipe's ``model_name="tinker-actors/byte-lm-tiny"``
works with no network::

    import tinker_actors.sdk
    tinker_actors.sdk.install()                      # `import tinker` -> the drop-in
    from tinker_actors.sdk.cookbook import register_local_tokenizers
    register_local_tokenizers()
    # ...then build and run a cookbook config against `tinker-actors serve`

(docs/cookbook.md has a supervised run and an RL run.) This module imports
the cookbook only when called; tinker_actors does not depend on it.
"""

from __future__ import annotations

from collections.abc import Iterable

from ..byte_tokenizer import BOS_TOKEN_ID, EOS_TOKEN_ID, VOCAB_SIZE, ByteTokenizer

__all__ = ["LOCAL_MODELS", "CookbookByteTokenizer", "register_local_tokenizers"]

#: The base models `tinker-actors serve` trains and samples.
LOCAL_MODELS = ("tinker-actors/byte-lm-tiny", "tinker-actors/byte-lm-small")


class CookbookByteTokenizer(ByteTokenizer):
    """The byte tokenizer with the Hugging Face attributes the cookbook's renderers read.

    ``bos_token`` is None: renderers would otherwise encode its text as bytes.
    """

    bos_token: str | None = None
    eos_token: str = "<|eos|>"
    all_special_ids: list[int] = list(range(BOS_TOKEN_ID, VOCAB_SIZE))

    def __init__(self, name_or_path: str = "tinker-actors/byte") -> None:
        self.name_or_path = name_or_path

    def is_special_token(self, token_id: int) -> bool:
        return BOS_TOKEN_ID <= int(token_id) < VOCAB_SIZE

    def get_vocab(self) -> dict[str, int]:
        vocab = {bytes((i,)).decode("latin-1"): i for i in range(256)}
        vocab.update({"<|bos|>": BOS_TOKEN_ID, "<|eos|>": EOS_TOKEN_ID})
        return vocab


def register_local_tokenizers(model_names: Iterable[str] = LOCAL_MODELS) -> list[str]:
    """Register the byte tokenizer with the cookbook under each local model name; the names registered."""
    from tinker_cookbook.tokenizer_utils import register_tokenizer

    names = list(model_names)
    for name in names:
        register_tokenizer(name, lambda name=name: CookbookByteTokenizer(name))
    return names
