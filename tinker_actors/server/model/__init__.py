"""The local server's model: a byte-level transformer in numpy with LoRA adapters.

Pure numpy, CPU, deterministic. The HTTP app uses only the names below.

Tokens and names
    ``ByteTokenizer`` (ids 0..255 = bytes, 256 BOS, 257 EOS, vocab_size 264;
    stdlib only), ``BASE_MODEL_NAME`` = "tinker-actors/byte-lm-tiny",
    ``BASE_MODELS`` (name -> ``ModelConfig``), ``get_model_config(name)``.

Configs
    ``LoraConfig(rank, seed, train_unembed, train_mlp, train_attn)`` (the
    create_model body's lora_config); ``AdamConfig(learning_rate, beta1, beta2,
    eps, weight_decay, grad_clip_norm)`` (the SDK's AdamParams).

Training: ``TrainableModel(lora, base_model)``
    ``.forward_backward(data, loss_fn, loss_fn_config=None, forward_only=False) -> FBResult``
        ``data``: a sequence of ``Datum(tokens, loss_fn_inputs)`` (or plain
        pairs): input token ids (length T) and a dict of numpy arrays of length
        T. ``FBResult.loss_fn_outputs``: one dict per datum with ``logprobs``
        and ``elementwise_loss`` (float32, length T); ``.metrics``:
        ``name:reduction`` floats (``loss:sum`` always; ``ratio:mean``,
        ``clip_fraction:mean`` for the policy-gradient losses). Gradients add
        up across calls until ``optim_step``. See ``losses`` for the formulas.
    ``.forward(data, loss_fn, loss_fn_config)``: the same with no gradients.
    ``.optim_step(AdamConfig) -> dict[str, float]`` (``grad_norm:mean``, ...).
    ``.sampler() -> Sampler``: a frozen copy of the current weights.
    ``.save(dir, optimizer=True)``, ``.save_sampler(dir)``,
    ``TrainableModel.load(dir, optimizer=False)``; ``load_sampler(dir)``.
    ``.step``: optimizer steps so far.

Sampling: ``Sampler`` (``Sampler.for_base_model(get_model_config(name))`` for a bare base)
    ``.sample(prompt_tokens, *, num_samples, max_tokens, temperature, top_k,
    top_p, stop, seed, include_prompt_logprobs, topk_prompt_logprobs,
    topk_sample_logprobs) -> SampleResult`` with ``.sequences`` (each a
    ``SampledSequence(tokens int64, logprobs float32, stop_reason, topk_logprobs)``),
    ``.prompt_logprobs`` (float32, NaN at index 0, or None),
    ``.topk_prompt_logprobs`` (``TopK`` arrays (L, k); row 0 is padding).
    ``.compute_prompt_logprobs(tokens)``; ``.prompt_distributions(tokens)``
    (full log-softmax rows, for target_prompt_logprobs and the like).
    Conventions (logprobs at temperature 1, seeds, stop) in ``sampling``.

Null compute: ``NullModel`` / ``NullSampler`` (``load_null_sampler``) answer
with the same types and shapes and do no math.

Errors: every bad input (unknown loss or base model, missing or mis-shaped
loss input, token outside the vocabulary, bad sampling parameter, missing or
foreign checkpoint) raises ``ValueError`` with a message fit for an HTTP 400.
``LOSS_FUNCTIONS`` is the set of supported loss names.

BLAS: importing this package sets numpy's OpenBLAS to one thread
(``blas.limit_blas_threads``); the model's matrices are too small for threads
to pay, and on a busy 2-core box two threads are ~50x slower.

State on disk: ``config.json`` + ``weights.npz`` (+ ``optimizer.npz``); see
``persistence``. Base weights are regenerated from the seed in the config.
"""

from .blas import limit_blas_threads
from .config import BASE_MODEL_NAME, BASE_MODELS, MAX_CONTEXT, AdamConfig, LoraConfig, ModelConfig, get_model_config
from .losses import LOSS_FUNCTIONS, LOSS_INPUTS
from .null import NullModel, NullSampler, load_null_sampler
from .sampling import DEFAULT_MAX_TOKENS, SampledSequence, SampleResult, Sampler, TopK
from ...byte_tokenizer import BOS_TOKEN_ID, EOS_TOKEN_ID, VOCAB_SIZE, ByteTokenizer
from .trainable import Datum, FBResult, TrainableModel, load_sampler

__all__ = [
    "BASE_MODEL_NAME",
    "BASE_MODELS",
    "MAX_CONTEXT",
    "DEFAULT_MAX_TOKENS",
    "AdamConfig",
    "LoraConfig",
    "ModelConfig",
    "get_model_config",
    "LOSS_FUNCTIONS",
    "LOSS_INPUTS",
    "ByteTokenizer",
    "BOS_TOKEN_ID",
    "EOS_TOKEN_ID",
    "VOCAB_SIZE",
    "Datum",
    "FBResult",
    "TrainableModel",
    "Sampler",
    "SampleResult",
    "SampledSequence",
    "TopK",
    "load_sampler",
    "NullModel",
    "NullSampler",
    "load_null_sampler",
    "limit_blas_threads",
]

limit_blas_threads(1)
