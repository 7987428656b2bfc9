"""Text-line OCR engines for burned-in source subtitles."""

from locpipe.backends.registry import Registry

OCR: Registry = Registry("OCR", ("locpipe.backends.ocr.rapidocr",))
