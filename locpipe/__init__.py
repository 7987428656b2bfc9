"""locpipe: localization and dubbing pipeline for Chinese vertical micro-dramas."""

__version__ = "0.1.0"
