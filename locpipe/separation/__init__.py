"""Vocals / accompaniment separation (Spleeter 2-stem weights, rebuilt without TensorFlow)."""
