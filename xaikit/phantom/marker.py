"""Burned-in corner tags: the hospital-token shortcut of real chest X-ray datasets.

A tag is a bright rectangle with a dark letter (5 x 7 bitmap glyphs, like the side markers and portable
tokens printed on radiographs), written into the displayed image after exposure: it is part of the
picture, not of the patient, so it ignores the patient's pose.
"""
from __future__ import annotations

import numpy as np

__all__ = ["GLYPHS", "MARKER_CORNERS", "burn_marker"]

MARKER_CORNERS = ("top_left", "top_right", "bottom_left", "bottom_right")

#: 5 x 7 bitmaps of the letters a tag may carry.
GLYPHS = {
    "L": ("10000", "10000", "10000", "10000", "10000", "10000", "11111"),
    "R": ("11110", "10001", "10001", "11110", "10100", "10010", "10001"),
    "P": ("11110", "10001", "10001", "11110", "10000", "10000", "10000"),
    "A": ("01110", "10001", "10001", "11111", "10001", "10001", "10001"),
    "H": ("10001", "10001", "10001", "11111", "10001", "10001", "10001"),
}


def _glyph(letter: str, scale: int) -> np.ndarray:
    bits = np.array([[c == "1" for c in row] for row in GLYPHS[letter]])
    return np.kron(bits, np.ones((scale, scale), bool))


def burn_marker(rng: np.random.Generator, image: np.ndarray, corner: str) -> tuple[np.ndarray, np.ndarray, dict]:
    """Write a tag into a copy of ``image`` near ``corner``; return the image, the tag mask and its parameters."""
    size = image.shape[0]
    letter = str(rng.choice(sorted(GLYPHS)))
    scale = max(1, round(size * 0.011))
    glyph = _glyph(letter, scale)
    pad = max(1, round(size * 0.012))
    h, w = glyph.shape[0] + 2 * pad, glyph.shape[1] + 2 * pad
    margin = round(size * 0.03) + int(rng.integers(0, max(1, round(size * 0.02)) + 1))
    top = margin if corner.startswith("top") else size - margin - h
    left = margin if corner.endswith("left") else size - margin - w
    tag = np.full((h, w), rng.uniform(0.85, 0.97), np.float32)
    tag[pad : pad + glyph.shape[0], pad : pad + glyph.shape[1]][glyph] = rng.uniform(0.05, 0.2)
    out = image.copy()
    out[top : top + h, left : left + w] = tag
    mask = np.zeros(image.shape, bool)
    mask[top : top + h, left : left + w] = True
    return out, mask, {"corner": corner, "letter": letter, "box": [int(top), int(left), int(h), int(w)]}
