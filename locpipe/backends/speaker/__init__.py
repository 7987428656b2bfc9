"""Speaker-embedding engines (voice prints for speaker labels)."""

from locpipe.backends.registry import Registry

SPEAKER_ENCODERS: Registry = Registry("speaker encoder", ("locpipe.backends.speaker.resemblyzer_encoder",))
