"""Spleeter's U-Net (``spleeter/model/functions/unet.py``) rebuilt in PyTorch for inference.

Why a rebuild: the weights ship as a TensorFlow checkpoint and TensorFlow cannot live in this
environment. The network is small and fully specified by Spleeter's source; what has to match
TensorFlow exactly is spelled out here:

* Layout: TF runs NHWC on (batch, T frames, F bins, 2 channels); here NCHW (batch, 2, T, F).
  Conv kernels (kh, kw, in, out) become (out, in, kh, kw); transposed-conv kernels
  (kh, kw, out, in) become (in, out, kh, kw). Neither is flipped: both frameworks' transposed
  convolution is the gradient of the same cross-correlation.
* TF 'same' padding with stride 2 pads asymmetrically (the odd pixel goes to the right/bottom):
  for a 5x5 kernel on an even size that is 1 before and 2 after.
* TF's 'same' stride-2 transposed convolution yields exactly twice the input: the full
  transposed output (2n + 3) cropped by the forward pad before (1) from the start.
* Encoder: conv -> batch norm -> LeakyReLU(0.2); skip connections carry the raw conv output,
  and the deepest conv goes to the decoder raw (its BN and activation are unused in Spleeter).
  Decoder: transposed conv -> ReLU -> batch norm (dropout is off at inference) -> concatenated
  after the matching encoder conv. Last: 4x4 conv, dilation 2, 'same', sigmoid; the output is
  that mask times the input magnitude.
* Keras names layers in creation order across the whole graph, one U-Net per instrument:
  the k-th U-Net owns conv2d_{7k..7k+6}, conv2d_transpose_{6k..6k+5} and
  batch_normalization_{12k..12k+11} (Keras omits the suffix for index 0). BN epsilon is
  Keras's default, 1e-3.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

ENCODER_FILTERS = (16, 32, 64, 128, 256, 512)
DECODER_FILTERS = (256, 128, 64, 32, 16, 1)
KERNEL = 5
BN_EPSILON = 1e-3
LEAKY_SLOPE = 0.2
CONVS_PER_UNET = 7
DECONVS_PER_UNET = 6
BNS_PER_UNET = 12


def keras_name(base: str, index: int) -> str:
    """Keras's unique layer name: ``base`` for the first, ``base_<i>`` after."""
    return base if index == 0 else f"{base}_{index}"


def same_pad(size: int, kernel: int, stride: int, dilation: int = 1) -> tuple[int, int]:
    """TF 'same' padding (before, after) along one axis; the extra pixel goes after."""
    effective = (kernel - 1) * dilation + 1
    out = -(-size // stride)
    total = max((out - 1) * stride + effective - size, 0)
    return total // 2, total - total // 2


class BatchNorm(nn.Module):
    """Inference batch norm with Keras's parameters (frozen moving statistics)."""

    def __init__(self, channels: int):
        super().__init__()
        self.register_buffer("scale", torch.ones(channels))
        self.register_buffer("shift", torch.zeros(channels))

    def load(self, gamma: np.ndarray, beta: np.ndarray, mean: np.ndarray, var: np.ndarray) -> None:
        scale = gamma / np.sqrt(var + BN_EPSILON)
        self.scale.copy_(torch.from_numpy(scale.astype(np.float32)))
        self.shift.copy_(torch.from_numpy((beta - mean * scale).astype(np.float32)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale.view(1, -1, 1, 1) + self.shift.view(1, -1, 1, 1)


class UNet(nn.Module):
    """One instrument's U-Net: mix magnitude (B, 2, T, F) -> estimated magnitude (B, 2, T, F)."""

    def __init__(self, channels: int = 2):
        super().__init__()
        ins = (channels, *ENCODER_FILTERS[:-1])
        self.enc = nn.ModuleList(nn.Conv2d(i, o, KERNEL, stride=2) for i, o in zip(ins, ENCODER_FILTERS))
        self.enc_bn = nn.ModuleList(BatchNorm(o) for o in ENCODER_FILTERS)
        # decoder inputs: the deepest conv, then [encoder conv, decoder output] concatenations
        dec_ins = (ENCODER_FILTERS[-1], *(2 * f for f in DECODER_FILTERS[:-1]))
        self.dec = nn.ModuleList(nn.ConvTranspose2d(i, o, KERNEL, stride=2) for i, o in zip(dec_ins, DECODER_FILTERS))
        self.dec_bn = nn.ModuleList(BatchNorm(o) for o in DECODER_FILTERS)
        self.last = nn.Conv2d(DECODER_FILTERS[-1], channels, 4, dilation=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        h = x
        for i, (conv, bn) in enumerate(zip(self.enc, self.enc_bn)):
            ph, pw = same_pad(h.shape[2], KERNEL, 2), same_pad(h.shape[3], KERNEL, 2)
            c = conv(F.pad(h, (*pw, *ph)))
            skips.append(c)
            h = F.leaky_relu(bn(c), LEAKY_SLOPE) if i < len(self.enc) - 1 else c
        for i, (deconv, bn) in enumerate(zip(self.dec, self.dec_bn)):
            target_h, target_w = 2 * h.shape[2], 2 * h.shape[3]
            before_h = same_pad(target_h, KERNEL, 2)[0]
            before_w = same_pad(target_w, KERNEL, 2)[0]
            u = deconv(h)[:, :, before_h:before_h + target_h, before_w:before_w + target_w]
            u = bn(F.relu(u))
            h = torch.cat([skips[-2 - i], u], dim=1) if i < len(self.dec) - 1 else u
        ph, pw = same_pad(h.shape[2], 4, 1, 2), same_pad(h.shape[3], 4, 1, 2)
        mask = torch.sigmoid(self.last(F.pad(h, (*pw, *ph))))
        return mask * x

    def load(self, tensor: Callable[[str], np.ndarray], index: int) -> None:
        """Copy the ``index``-th instrument's weights from a checkpoint (``tensor(name)`` reader)."""

        def conv(layer: nn.Module, name: str, transpose: bool) -> None:
            kernel = tensor(f"{name}/kernel")
            # conv: (kh, kw, in, out) -> (out, in, kh, kw); transposed: (kh, kw, out, in) -> (in, out, kh, kw)
            weight = kernel.transpose(3, 2, 0, 1)
            if tuple(weight.shape) != tuple(layer.weight.shape):
                raise ValueError(f"{name}/kernel has shape {kernel.shape}, expected {tuple(layer.weight.shape)} "
                                 f"({'transposed ' if transpose else ''}conv)")
            layer.weight.copy_(torch.from_numpy(np.ascontiguousarray(weight, dtype=np.float32)))
            layer.bias.copy_(torch.from_numpy(tensor(f"{name}/bias").astype(np.float32)))

        def bn(layer: BatchNorm, i: int) -> None:
            name = keras_name("batch_normalization", i)
            layer.load(*(tensor(f"{name}/{v}") for v in ("gamma", "beta", "moving_mean", "moving_variance")))

        with torch.no_grad():
            for k, layer in enumerate(self.enc):
                conv(layer, keras_name("conv2d", CONVS_PER_UNET * index + k), False)
            for k, layer in enumerate(self.dec):
                conv(layer, keras_name("conv2d_transpose", DECONVS_PER_UNET * index + k), True)
            conv(self.last, keras_name("conv2d", CONVS_PER_UNET * index + len(self.enc)), False)
            for k, layer in enumerate([*self.enc_bn, *self.dec_bn]):
                bn(layer, BNS_PER_UNET * index + k)


def load_unets(tensor: Callable[[str], np.ndarray], count: int) -> list[UNet]:
    """The ``count`` instruments' U-Nets in checkpoint order, in eval mode."""
    nets = []
    for index in range(count):
        net = UNet()
        net.load(tensor, index)
        nets.append(net.eval())
    return nets
