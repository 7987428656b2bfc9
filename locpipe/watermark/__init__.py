"""Invisible forensic watermark: payload, error correction, embedding, detection, ledger.

``forensic.forensic_graph`` gives the render its ffmpeg pieces (enabled per render profile
with ``forensic_watermark: true``); ``detect.trace`` reads a copy back; ``ledger.Ledger``
records who got which payload; ``keys`` finds the studio key; ``trace.trace_report`` is
what ``locpipe trace`` (``locpipe.cli.trace``) prints. The visible watermark lives in ``locpipe.render.visible``.
"""

from locpipe.watermark.detect import TraceResult, trace
from locpipe.watermark.forensic import ForensicGraph, ForensicSpec, forensic_graph
from locpipe.watermark.keys import load_key
from locpipe.watermark.ledger import Ledger, LedgerEntry, ledger_path
from locpipe.watermark.payload import Payload

__all__ = ["ForensicGraph", "ForensicSpec", "Ledger", "LedgerEntry", "Payload", "TraceResult", "forensic_graph",
           "ledger_path", "load_key", "trace"]
