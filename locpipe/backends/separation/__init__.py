"""Music/effects separation engines (Spleeter 2-stem rebuilt in PyTorch from its TF checkpoint)."""

from locpipe.backends.registry import Registry

SEPARATORS: Registry = Registry("separation", ("locpipe.backends.separation.spleeter",))
