"""On-disk form of adapters and optimizer state: JSON metadata beside npz arrays.

A state directory holds:

* ``config.json``: format tag, ``kind`` ("training" or "sampler"), base model
  name, the full ``ModelConfig`` and ``LoraConfig`` (null for a bare base
  model), the optimizer step and whether ``optimizer.npz`` is present;
* ``weights.npz``: the adapter arrays, keyed ``<matrix>.A`` / ``<matrix>.B``;
* ``optimizer.npz`` (training saves with optimizer only): ``m/<key>``,
  ``v/<key>`` and ``step``.

Base weights are never stored: the seed in ``ModelConfig`` regenerates them.
Arrays are read with ``allow_pickle=False``. Each file is written to a
temporary name and renamed, and ``config.json`` goes last, so a directory with
a config is complete.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .config import LoraConfig, ModelConfig
from .network import Params, init_lora

__all__ = ["StoredState", "write_state", "read_state", "FORMAT"]

FORMAT = "tinker-actors/lora-state/1"


@dataclass(slots=True)
class StoredState:
    kind: str
    model_config: ModelConfig
    lora_config: LoraConfig | None
    params: Params
    step: int
    moments: tuple[Params, Params] | None  # (m, v) when saved with the optimizer


def _write_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as fh:
        np.savez(fh, **arrays)
    os.replace(tmp, path)


def write_state(
    directory: str | os.PathLike[str],
    *,
    kind: str,
    model_config: ModelConfig,
    lora_config: LoraConfig | None,
    params: Params,
    step: int = 0,
    moments: tuple[Params, Params] | None = None,
) -> None:
    path = Path(directory)
    path.mkdir(parents=True, exist_ok=True)
    _write_npz(path / "weights.npz", dict(params))
    if moments is not None:
        m, v = moments
        arrays = {f"m/{k}": a for k, a in m.items()} | {f"v/{k}": a for k, a in v.items()}
        arrays["step"] = np.array(step, dtype=np.int64)
        _write_npz(path / "optimizer.npz", arrays)
    else:
        (path / "optimizer.npz").unlink(missing_ok=True)
    meta: dict[str, Any] = {
        "format": FORMAT,
        "kind": kind,
        "base_model": model_config.name,
        "model_config": model_config.to_json(),
        "lora_config": lora_config.to_json() if lora_config else None,
        "step": int(step),
        "has_optimizer": moments is not None,
    }
    tmp = path / "config.json.tmp"
    tmp.write_text(json.dumps(meta, indent=2, sort_keys=True))
    os.replace(tmp, path / "config.json")


def read_state(directory: str | os.PathLike[str], *, with_optimizer: bool) -> StoredState:
    """Load a state directory; ValueError when it is missing, foreign or incomplete."""
    path = Path(directory)
    try:
        meta = json.loads((path / "config.json").read_text())
    except FileNotFoundError:
        raise ValueError(f"no saved model state at {str(path)!r}") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"corrupt model state at {str(path)!r}: config.json: {exc}") from None
    if meta.get("format") != FORMAT:
        raise ValueError(f"model state at {str(path)!r} has unknown format {meta.get('format')!r}")
    model_config = ModelConfig.from_json(meta["model_config"])
    lora_config = LoraConfig.from_json(meta["lora_config"]) if meta["lora_config"] else None
    expected = init_lora(model_config, lora_config) if lora_config else {}
    params = _read_npz(path / "weights.npz", expected, "")
    moments = None
    if with_optimizer:
        if not meta.get("has_optimizer"):
            raise ValueError(f"model state at {str(path)!r} was saved without optimizer state")
        m = _read_npz(path / "optimizer.npz", expected, "m/")
        v = _read_npz(path / "optimizer.npz", expected, "v/")
        moments = (m, v)
    return StoredState(meta["kind"], model_config, lora_config, params, int(meta.get("step", 0)), moments)


def _read_npz(path: Path, expected: Params, prefix: str) -> Params:
    try:
        with np.load(path, allow_pickle=False) as data:
            out: Params = {}
            for key, ref in expected.items():
                name = prefix + key
                if name not in data:
                    raise ValueError(f"corrupt model state: {path.name} lacks {name!r}")
                arr = data[name]
                if arr.shape != ref.shape or arr.dtype != ref.dtype:
                    raise ValueError(
                        f"corrupt model state: {path.name}[{name!r}] is {arr.dtype}{list(arr.shape)},"
                        f" expected {ref.dtype}{list(ref.shape)}"
                    )
                out[key] = np.array(arr, copy=True)
            return out
    except FileNotFoundError:
        raise ValueError(f"corrupt model state: {path.name} is missing in {str(path.parent)!r}") from None
