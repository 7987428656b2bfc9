"""Chinese text-line OCR: RapidOCR's PP-OCRv4 ONNX models, shipped inside the wheel.

The engine behind the ``source_subs`` stage. Loading takes ~0.5 s, so a worker makes one
(``locpipe.core.resources.Resources.ocr``) and hands it to every episode.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np

from locpipe.backends.ocr import OCR
from locpipe.backends.registry import MODEL_LOADED
from locpipe.errors import BackendUnavailable

log = logging.getLogger(__name__)

BACKEND = "rapidocr-onnxruntime"
MODEL = "PP-OCRv4 det + rec (ch)"


@dataclass(frozen=True)
class Line:
    """One recognized text line in work coordinates (pixels of the scaled picture)."""

    x0: float
    y0: float
    x1: float
    y1: float
    text: str
    score: float

    @property
    def cy(self) -> float:
        return (self.y0 + self.y1) / 2

    @property
    def height(self) -> float:
        return self.y1 - self.y0



def quiet_session(session, threads: int):
    """The same ONNX model in a session whose worker threads sleep instead of spinning
    (``backends.onnx``; the memory arena is back on as well, RapidOCR turns it off).
    RapidOCR exposes neither option, so its session is rebuilt from the same model file."""
    from locpipe.backends.onnx import cpu_session

    return cpu_session(session._model_path, threads=threads)


@OCR.register("rapidocr")
class SubtitleOCR:
    """RapidOCR (PP-OCRv4 ONNX models shipped in the wheel), on work-scale luma images.

    Luma only: burned subtitles are drawn for contrast (fill plus outline or shadow), and
    skipping colour conversion keeps decoding cheap at any resolution.
    """

    def __init__(self, threads: int = 2):
        try:
            from rapidocr_onnxruntime import RapidOCR
        except ImportError as exc:
            raise BackendUnavailable(
                f"source subtitle OCR needs rapidocr-onnxruntime (pip install rapidocr-onnxruntime): {exc}") from None
        # limit_type=max: never upscale the (already work-scale) picture before detection
        started = time.perf_counter()
        self.engine = RapidOCR(det_limit_side_len=960, det_limit_type="max", intra_op_num_threads=threads,
                               inter_op_num_threads=1)
        for holder in (self.engine.text_det.infer, self.engine.text_rec.session):
            holder.session = quiet_session(holder.session, threads)
        self.calls = 0
        log.info(MODEL_LOADED, f"{MODEL} ({BACKEND}, {threads} threads)", time.perf_counter() - started)

    def read(self, gray: np.ndarray, *, dy: float = 0.0) -> list[Line]:
        """Detect and recognize text lines; boxes shifted down by ``dy`` rows."""
        self.calls += 1
        bgr = np.repeat(gray[:, :, None], 3, axis=2)
        result, _ = self.engine(bgr, use_cls=False)
        lines = []
        for box, text, score in result or []:
            pts = np.asarray(box, dtype=float)
            lines.append(Line(pts[:, 0].min(), pts[:, 1].min() + dy, pts[:, 0].max(), pts[:, 1].max() + dy,
                              str(text).strip(), float(score)))
        return lines

    def centred_text(self, gray: np.ndarray, tolerance: float, line_height: float | None) -> bool:
        """Detection only: is there a centred box shaped like a subtitle line (about
        ``line_height`` work pixels tall when known, wider than tall)?

        No recognition, and at half scale when the lines are tall enough to stay readable
        (30 work pixels; small subtitles are checked at full scale, or they vanish); while
        the band is empty and the scene moves this runs at every other sample, so it must
        be cheap.
        """
        import cv2

        self.calls += 1
        k = 2 if line_height is not None and line_height >= 30 else 1
        small = gray if k == 1 else cv2.resize(gray, (max(1, gray.shape[1] // k), max(1, gray.shape[0] // k)),
                                               interpolation=cv2.INTER_AREA)
        boxes, _ = self.engine.text_det(np.repeat(small[:, :, None], 3, axis=2))
        w = small.shape[1]
        for box in [] if boxes is None else boxes:
            x0, x1, y0, y1 = np.min(box[:, 0]), np.max(box[:, 0]), np.min(box[:, 1]), np.max(box[:, 1])
            tall = 1.0 if line_height is None else (y1 - y0) * k / line_height
            if abs((x0 + x1) / 2 - w / 2) <= tolerance * w and 0.5 <= tall <= 1.8 and x1 - x0 >= y1 - y0:
                return True
        return False
