"""A model's input and output: an image brought to the model's size and normalisation, and its
raw output turned into a uint8 matte. Shared by the engine's sessions and the int8 study, so a
quantised model is judged on exactly the tensors it will serve."""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np
from numpy.typing import NDArray

from stolentee.removal.imaging.arrays import u8
from stolentee.removal.models import Activation, ModelSpec


def model_input(rgb: NDArray[np.uint8], size: int) -> NDArray[np.uint8]:
    """``rgb`` resized to ``size`` x ``size``: box-filtered to twice that size first when it is
    larger (OpenCV's area filter, multi-threaded), then Lanczos. That gave u2netp a better matte
    than one Lanczos step, in less than half of Pillow's time. A cheaper bilinear first step
    matted photos as well but moved the graph cut of artwork on textures, which starts from this
    matte, so it is not used. Figures: benchmarks/decisions.md, "resizing for the model and
    back"."""
    if min(rgb.shape[:2]) > 2 * size:
        rgb = u8(cv2.resize(rgb, (2 * size, 2 * size), interpolation=cv2.INTER_AREA))
    return u8(cv2.resize(rgb, (size, size), interpolation=cv2.INTER_LANCZOS4))


class Normaliser:
    """The family's input convention and output activation of one model spec."""

    def __init__(self, spec: ModelSpec) -> None:
        self.spec = spec
        self._mean = np.array(spec.mean, dtype=np.float32).reshape(1, 1, 3)
        self._inv_std = (1.0 / np.array(spec.std, dtype=np.float32)).reshape(1, 1, 3)

    def batch(self, small: NDArray[np.uint8]) -> NDArray[np.float32]:
        """A 1x3xSxS float32 batch of an image at the model's size: scaled by its own peak (the
        family's convention, as rembg does), then the spec's mean and std."""
        pixels = small.astype(np.float32)
        peak = max(float(pixels.max()), 1e-6)
        tensor = (pixels * (1.0 / peak) - self._mean) * self._inv_std
        return np.ascontiguousarray(tensor.transpose(2, 0, 1)[np.newaxis])

    def matte(self, raw: NDArray[np.float32]) -> NDArray[np.uint8]:
        """The 0..255 matte of a raw HxW output: sigmoid of logits, or min-max rescaled."""
        matte: NDArray[np.floating[Any]]
        if self.spec.activation is Activation.SIGMOID:
            matte = 1.0 / (1.0 + np.exp(-raw))
        else:
            low, high = float(raw.min()), float(raw.max())
            matte = (raw - low) / max(high - low, 1e-6)
        return u8((np.clip(matte, 0.0, 1.0) * 255).astype(np.uint8))
