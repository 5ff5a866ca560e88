"""Artwork on a textured background: the model's matte, refined by a graph cut.

A logo or cartoon printed over grass, gravel, brick or fabric is not a graphic on a plain
background (the colour key does not apply) and u2netp, which sees it at 320x320, gives it a
soft, approximate outline. Such an image has a signature: the subject is flat, few-coloured
artwork while the background is busy everywhere. For those (:func:`is_artwork_on_texture`),
:func:`refine` runs OpenCV's GrabCut at ~640 px, started from the model's matte: its colour
models of subject and background, with the smoothness term of the cut, put the outline on the
artwork's real edge. The image is median-filtered first, which turns a texture into a nearly
uniform shade while the artwork's flat fills and edges stay as they are: without it, the dark
outline of a cartoon and the dark grains of gravel fall into one colour cluster.

On the evaluation set (``stolentee bench quality``) only artwork over a texture photo passes
the test, and nearly all of those images cut better; no photographed person passes it
(benchmarks/decisions.md, "artwork on textures").
"""

from __future__ import annotations

import cv2
import numpy as np

from stolentee.removal.imaging.arrays import U8, u8

WORK_SIDE_PX = 640  # long side of the copy the graph cut runs on
_FLAT_STEP = 6  # a pixel is "flat" when its 3x3 neighbourhood spans at most this many levels
_MIN_ARTWORK_FLAT = 0.25  # artwork: at least this share of the subject's pixels is flat ...
_MIN_ARTWORK_PALETTE = 0.7  # ... and its 16 commonest colours (4 bits a channel) cover this
_MAX_TEXTURE_FLAT = 0.2  # texture: at most this share of the background's pixels is flat
_PALETTE_SAMPLES = 1 << 18  # pixels sampled (on a grid) for the subject's palette
_MEDIAN_PX = 5  # median filter before the cut, at the working size
_SURE_PX = 5  # the model's confident regions, eroded twice by this square, are fixed
_SURE_LEVEL = 25  # the model's matte below this (above 255 minus it) counts as confident
_ITERATIONS = 3


def is_artwork_on_texture(rgb: U8, alpha: U8) -> bool:
    """Whether ``rgb`` (HxWx3) looks like flat artwork over a busy texture, given the model's
    matte ``alpha`` at the same size (HxW, 255 = subject).

    Artwork: the 16 commonest colours (4 bits a channel) cover most of the subject, and many of
    its pixels are flat (their 3x3 neighbourhood spans at most ``_FLAT_STEP`` brightness
    levels, at full size). Texture: few of the background's pixels are flat. Photographed
    subjects have shading and grain (a wide palette, few flat pixels); photographed
    backgrounds are seldom busy at every pixel. The palette, measured on a sample, is checked
    first: most photos stop there, before the full-size pass.
    """
    height, width = alpha.shape
    stride = max(1, round((height * width / _PALETTE_SAMPLES) ** 0.5))
    sampled = alpha[::stride, ::stride] > 127
    if not sampled.any() or sampled.all():
        return False
    colours = (rgb[::stride, ::stride][sampled] >> 4).astype(np.int32)
    codes = (colours[:, 0] << 8) | (colours[:, 1] << 4) | colours[:, 2]
    counts = np.sort(np.bincount(codes, minlength=4096))[::-1]
    if float(counts[:16].sum()) < _MIN_ARTWORK_PALETTE * len(codes):
        return False
    subject = alpha > 127
    subject_px = int(np.count_nonzero(subject))
    if subject_px == 0 or subject_px == subject.size:
        return False
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    spread = cv2.morphologyEx(grey, cv2.MORPH_GRADIENT, np.ones((3, 3), dtype=np.uint8))
    flat = spread <= _FLAT_STEP
    flat_subject = int(np.count_nonzero(flat & subject))
    texture_flat = (int(np.count_nonzero(flat)) - flat_subject) / (subject.size - subject_px)
    return texture_flat <= _MAX_TEXTURE_FLAT and flat_subject >= _MIN_ARTWORK_FLAT * subject_px


def refine(rgb: U8, matte: U8) -> U8:
    """A hard matte (HxW uint8, 0 or 255, soft only where upscaled) of ``rgb`` (HxWx3) by a
    graph cut started from the model's ``matte`` (any size covering the same frame)."""
    height, width = rgb.shape[:2]
    factor = max(1, -(-max(height, width) // WORK_SIDE_PX))
    size = (max(1, width // factor), max(1, height // factor))
    small = u8(cv2.resize(rgb, size, interpolation=cv2.INTER_AREA))
    small = u8(cv2.medianBlur(small, _MEDIAN_PX))
    start = u8(cv2.resize(matte, size, interpolation=cv2.INTER_CUBIC))
    labels = np.where(start > 127, cv2.GC_PR_FGD, cv2.GC_PR_BGD).astype(np.uint8)
    square = np.ones((_SURE_PX, _SURE_PX), dtype=np.uint8)
    sure_subject = cv2.erode((start > 255 - _SURE_LEVEL).astype(np.uint8), square, iterations=2)
    sure_background = cv2.erode((start < _SURE_LEVEL).astype(np.uint8), square, iterations=2)
    labels[sure_subject > 0] = cv2.GC_FGD
    labels[sure_background > 0] = cv2.GC_BGD
    background_model = np.zeros((1, 65), dtype=np.float64)
    subject_model = np.zeros((1, 65), dtype=np.float64)
    try:
        cv2.grabCut(
            small,
            labels,
            (0, 0, 0, 0),  # no rectangle: started from the labels
            background_model,
            subject_model,
            _ITERATIONS,
            cv2.GC_INIT_WITH_MASK,
        )
    except cv2.error:  # no pixel left to decide (a matte confident everywhere): keep it
        return u8(cv2.resize(matte, (width, height), interpolation=cv2.INTER_CUBIC))
    cut = np.where((labels == cv2.GC_FGD) | (labels == cv2.GC_PR_FGD), 255, 0).astype(np.uint8)
    return u8(cv2.resize(cut, (width, height), interpolation=cv2.INTER_LINEAR))
