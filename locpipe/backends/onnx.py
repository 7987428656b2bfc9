"""ONNX Runtime sessions for the packaged CPU models (Kokoro TTS, RapidOCR's PP-OCR).

One place for the session options every such model wants on a shared CPU box: ORT's idle
intra-op threads busy-wait between operators by default, which measured ~20 % more CPU per
second of speech for Kokoro (1.57 vs 1.28 CPU-s) and, for OCR, 4.7 against 2.6 CPU-s (and 2.4
against 1.5 s wall) for 16 calls: CPU taken from the speech recognition running beside OCR and
from the other workers of a farm node.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def cpu_session(model: str | Path, *, threads: int = 1, sequential: bool = False) -> Any:
    """An ``InferenceSession`` on the CPU whose worker threads sleep when idle (full graph optimization)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 4
    opts.intra_op_num_threads = max(1, threads)
    opts.inter_op_num_threads = 1
    if sequential:
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(model), sess_options=opts, providers=["CPUExecutionProvider"])
