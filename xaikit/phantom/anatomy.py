"""Analytic anatomy of a frontal (PA) chest radiograph: shapes, masks and density components.

Everything is evaluated on a grid of *patient coordinates* ``(u, v)``: ``u`` runs from the image's left
edge (-1) to its right edge (+1) and ``v`` from the top (-1) to the bottom (+1) of the field of view, before
the pose (rotation, shift, scale) is applied. Standard radiological display: the patient's right side
appears on the image's left (``u < 0``), so the heart lies at ``u > 0``.

Densities are in arbitrary attenuation units (air 0, soft tissue about 1); :mod:`xaikit.phantom.chest`
turns their sum into a displayed radiograph. The shapes are hand-written because no library draws anatomy.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy import ndimage
from skimage import draw

__all__ = ["Anatomy", "Masks", "draw_anatomy", "draw_vessel_tree", "anatomy_masks", "anatomy_density"]

_SIDES = {"right_lung": -1.0, "left_lung": 1.0}  # image side of each lung (patient-right on image-left)


@dataclass(frozen=True)
class Anatomy:
    """Per-patient shape parameters (normalized patient coordinates, see the module docstring)."""

    body_w: float  # half-width of the chest wall
    shoulder_v: float  # level where the neck widens into the shoulders
    apex_v: float  # top of the lung apices
    apex_a: float  # lateral distance of the apex from the midline
    cp_v: tuple[float, float]  # costophrenic angle level (right, left)
    dome_v: tuple[float, float]  # diaphragm dome top (right higher than left)
    lat_a: tuple[float, float]  # lateral lung edge at the base (right, left)
    heart_c: tuple[float, float]  # heart centre (u, v)
    heart_ax: tuple[float, float]  # heart semi-axes (along, across its long axis)
    heart_tilt: float  # tilt of the heart's long axis, radians
    medi_w: float  # half-width of the superior mediastinum
    spine_w: float  # half-width of the vertebral bodies
    rib_v0: float  # level of the first posterior rib at the spine
    rib_dv: float  # spacing of the posterior ribs
    air: float  # how much the lungs lower the density (aeration)
    bubble: float  # size of the gastric air bubble (0 = none)

    def to_dict(self) -> dict:
        """Plain JSON-able dict of the parameters (tuples become lists)."""
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items()}


Masks = dict[str, np.ndarray]


def draw_anatomy(rng: np.random.Generator) -> Anatomy:
    """Draw one patient's anatomy; every parameter varies within a plausible adult/child range."""
    u = rng.uniform
    cp_r = u(0.46, 0.60)
    dome_r = cp_r - u(0.20, 0.30)
    lat_r = u(0.70, 0.80)
    heart_ax = (u(0.34, 0.42), u(0.22, 0.28))
    dome_l = dome_r + u(0.04, 0.09)
    return Anatomy(
        body_w=lat_r + u(0.10, 0.16),
        shoulder_v=u(-1.0, -0.9),
        apex_v=u(-0.80, -0.70),
        apex_a=u(0.26, 0.33),
        cp_v=(cp_r, cp_r + u(0.02, 0.07)),
        dome_v=(dome_r, dome_l),
        lat_a=(lat_r, lat_r * u(0.93, 0.99)),
        heart_c=(u(0.10, 0.16), dome_l - 0.55 * heart_ax[1]),
        heart_ax=heart_ax,
        heart_tilt=float(np.deg2rad(u(20.0, 35.0))),
        medi_w=u(0.10, 0.13),
        spine_w=u(0.065, 0.080),
        rib_v0=u(-0.80, -0.74),
        rib_dv=u(0.105, 0.125),
        air=u(0.62, 0.74),
        bubble=float(max(0.0, u(-0.5, 1.0))),
    )


# --- shapes -----------------------------------------------------------------------------------------


def _diaphragm(u: np.ndarray, an: Anatomy, lift: float) -> np.ndarray:
    """Level ``v`` of the diaphragm at each ``u``: two domes, lowest at the costophrenic angles."""
    side = (u > 0).astype(int)  # 0 = patient right (image left), 1 = patient left
    a = np.abs(u)
    cp = np.take(an.cp_v, side) - lift
    dome = np.take(an.dome_v, side) - lift
    lat = np.take(an.lat_a, side)
    peak = 0.45 * lat
    lateral = dome + (cp - dome) * np.clip((a - peak) / (lat - peak), 0, None) ** 2
    medial = dome + 0.25 * (cp - dome) * ((peak - a) / peak) ** 2
    return np.where(a >= peak, lateral, medial)


def _lung_shape(u: np.ndarray, v: np.ndarray, an: Anatomy, side: int, dia: np.ndarray) -> np.ndarray:
    """Lung outline before the heart and mediastinum carve it: rounded apex, sharp costophrenic angle."""
    a = u * (1.0 if side else -1.0)
    t = (v - an.apex_v) / (an.cp_v[side] - an.apex_v)
    tc = np.clip(t, 0.0, 1.0)
    lat = an.apex_a + (an.lat_a[side] - an.apex_a) * (1 - (1 - tc) ** 2.2) ** (1 / 2.2)
    med = an.apex_a - (an.apex_a - 0.05) * (1 - (1 - tc) ** 1.6) ** (1 / 1.6)
    return (t >= 0) & (t <= 1) & (a <= lat) & (a >= med) & (v <= dia)


def _heart(u: np.ndarray, v: np.ndarray, an: Anatomy, dia: np.ndarray) -> np.ndarray:
    c, s = np.cos(an.heart_tilt), np.sin(an.heart_tilt)
    du, dv = u - an.heart_c[0], v - an.heart_c[1]
    along, across = c * du + s * dv, -s * du + c * dv
    # the right heart border bulges less than the left ventricle: squash the ellipse's image-left half
    along = np.where(along < 0, along * 1.1, along)
    return ((along / an.heart_ax[0]) ** 2 + (across / an.heart_ax[1]) ** 2 <= 1.0) & (v <= dia + 0.01)


def _mediastinum(u: np.ndarray, v: np.ndarray, an: Anatomy) -> np.ndarray:
    width = an.medi_w * (1 + 0.25 * np.clip(v + 0.2, 0, None))
    column = (np.abs(u - 0.01) <= width) & (v <= an.heart_c[1])
    knob = ((u - an.medi_w) / 0.07) ** 2 + ((v + 0.33) / 0.11) ** 2 <= 1.0  # aortic knob, patient left
    return column | knob


def _body(u: np.ndarray, v: np.ndarray, an: Anatomy) -> tuple[np.ndarray, np.ndarray]:
    """Body mask and its half-width at each pixel (neck above the shoulders, chest, upper abdomen)."""
    grow = np.clip((v - an.shoulder_v + 0.06) / 0.22, 0, 1)
    grow = grow * grow * (3 - 2 * grow)  # smoothstep: sloping shoulders
    half = 0.22 + (an.body_w + 0.05 - 0.22) * grow - 0.12 * (v - 0.1) ** 2
    return np.abs(u) <= half, half


def anatomy_masks(u: np.ndarray, v: np.ndarray, an: Anatomy, lift: float = 0.0) -> Masks:
    """Boolean masks ``body, right_lung, left_lung, heart, mediastinum, abdomen`` on the grid ``(u, v)``.

    ``lift`` raises the diaphragm (positive) or lowers it (negative): the breath-hold of one image.
    """
    dia = _diaphragm(u, an, lift)
    body, _ = _body(u, v, an)
    heart = _heart(u, v, an, dia)
    # one smooth cardiomediastinal silhouette: blurring and re-thresholding rounds the joins
    sigma = 0.035 * u.shape[0] / (u.max() - u.min() + 1e-12)  # 0.035 normalized units, in pixels
    central = ndimage.gaussian_filter((heart | _mediastinum(u, v, an)).astype(np.float32), sigma) > 0.5
    central &= v <= dia + 0.01
    heart &= central
    medi = central & ~heart
    masks = {"body": body, "heart": heart & body, "mediastinum": medi & body}
    for name, side in _SIDES.items():
        masks[name] = _lung_shape(u, v, an, int(side > 0), dia) & ~central & body
    masks["abdomen"] = body & (v > dia)
    return masks


# --- densities --------------------------------------------------------------------------------------


def _tube(dist: np.ndarray, radius: float | np.ndarray) -> np.ndarray:
    """Projected density of a bone with a cortex: a tube whose edges are brighter than its middle."""
    x = np.abs(dist) / radius
    outer = np.sqrt(np.clip(1 - x**2, 0, None))
    inner = np.sqrt(np.clip(1 - (x / 0.72) ** 2, 0, None))
    return outer - 0.55 * inner


def _ribs(u: np.ndarray, v: np.ndarray, an: Anatomy, half: np.ndarray, px: float) -> np.ndarray:
    """Posterior ribs (arched, thick) and anterior ribs (fainter, sloping down towards the sternum).

    A posterior rib leaves the spine nearly level, arches over its crest and bends down along the
    lateral chest wall, where it turns into its anterior part; upper ribs are shorter and more curved.
    """
    a, wall = np.abs(u), half - 0.05
    fade = np.clip((wall - a) / 0.06, 0, 1) * (a >= 0.7 * an.spine_w) * np.clip((0.75 - v) / 0.3, 0, 1)
    total = np.zeros_like(u)
    v_lo, v_hi = v.min(axis=1), v.max(axis=1)
    for i in range(10):
        level = an.rib_v0 + an.rib_dv * i * (1 + 0.03 * i)
        rows = np.flatnonzero((v_hi >= level - 0.15) & (v_lo <= level + 0.75))  # the rib's band, for speed
        if rows.size == 0:
            continue
        band = slice(rows[0], rows[-1] + 1)
        ab, vb = a[band], v[band]
        crest = 0.30 + 0.015 * i
        curv = np.where(ab < crest, 0.5, 2.6 - 0.14 * i)  # gentle rise medially, steep fall laterally
        post_c = level + curv * (ab - crest) ** 2 - 0.5 * (an.spine_w - crest) ** 2
        slope = 2 * curv * (ab - crest)
        post = _tube((vb - post_c) / np.sqrt(1 + slope**2), 0.028 + 0.0015 * i + px)
        ant_c = level + 0.26 + 0.5 * np.clip(wall[band] - ab, 0, None)
        ant = _tube((vb - ant_c) / 1.12, 0.02 + px) * np.clip((ab - 0.22) / 0.25, 0, 1)
        total[band] += post + 0.45 * ant
    return total * fade


def _clavicles(u: np.ndarray, v: np.ndarray, an: Anatomy, px: float) -> np.ndarray:
    a = np.abs(u)
    start = an.apex_v + 0.27
    centre = start - 0.32 * (a - 0.08) + 0.025 * np.sin((a - 0.08) / 0.6 * 2 * np.pi)
    span = np.clip((1 - np.abs(a - 0.41) / 0.33) / 0.15, 0, 1)
    return _tube(v - centre, 0.036 * (1 + 0.3 * np.clip((0.2 - a) / 0.1, 0, 1)) + px) * span


def _spine(u: np.ndarray, v: np.ndarray, an: Anatomy) -> np.ndarray:
    """Vertebral column: bodies with bright end plates, dark discs, pedicles and spinous processes."""
    w = an.spine_w * (1 + 0.25 * np.clip(v + 0.6, 0, None))
    column = np.sqrt(np.clip(1 - (u / w) ** 2, 0, None))
    phase = (v - an.rib_v0 + 0.02) / (an.rib_dv * 0.92)
    frac = phase - np.floor(phase)
    disc = np.exp(-(((frac - 0.93) / 0.05) ** 2))
    plate = np.exp(-(((frac - 0.83) / 0.035) ** 2)) + np.exp(-(((frac - 0.03) / 0.035) ** 2))
    pedicle = np.exp(-(((np.abs(u) - 0.7 * w) / (0.22 * w)) ** 2 + ((frac - 0.35) / 0.13) ** 2))
    spinous = np.exp(-((u / (0.18 * w)) ** 2 + ((frac - 0.6) / 0.12) ** 2))
    return column * (0.75 - 0.5 * disc + 0.3 * plate) + 0.5 * pedicle + 0.35 * spinous


def draw_vessel_tree(rng: np.random.Generator, an: Anatomy) -> np.ndarray:
    """Bronchovascular tree of both lungs as segments ``(u0, v0, u1, v1, generation)``.

    From each hilum a fan of trunks points into the lung; every segment forks in two, shorter and at an
    angle, for four generations (the branching of pulmonary vessels, simplified).
    """
    segments = []
    for sign in (-1.0, 1.0):
        hilum = (sign * (an.medi_w + 0.07), an.heart_c[1] - 0.34)
        fan = np.linspace(np.pi - 1.4, np.pi + 1.35, 6)  # right lung: down-lateral to up-lateral
        stack = [(hilum, float(t if sign < 0 else np.pi - t), 0.12, 0) for t in fan]
        while stack:
            (u0, v0), theta, length, gen = stack.pop()
            theta += rng.normal(0, 0.22)
            u1, v1 = u0 + length * np.cos(theta), v0 + length * np.sin(theta)
            segments.append((u0, v0, u1, v1, gen))
            if gen < 4:
                spread = rng.uniform(0.2, 0.55)
                for turn in (-spread, spread):
                    stack.append(((u1, v1), theta + turn, length * rng.uniform(0.55, 0.8), gen + 1))
    return np.array(segments, dtype=np.float64)


def _bubble(u: np.ndarray, v: np.ndarray, an: Anatomy) -> np.ndarray:
    """Gas in the stomach under the left dome (a dark, flat-topped bubble)."""
    du, dv = (u - 0.45 * an.lat_a[1]) / 0.13, (v - an.dome_v[1] - 0.13) / 0.07
    return np.clip(1 - du**2 - dv**2, 0, None) ** 0.5 * (dv < 0.3) * an.bubble  # flat air-fluid level


def _vessels(tree_px: np.ndarray, shape: tuple[int, int], px: float) -> np.ndarray:
    """Rasterize the vessel tree (segments in pixel coordinates): thick bright trunks, thin distal twigs."""
    total = np.zeros(shape)
    for gens, width, weight in (((0, 1), 0.010, 2.4), ((2, 3, 4), 0.006, 2.0)):
        lines = [draw.line_aa(*np.rint([r0, c0, r1, c1]).astype(int)) for c0, r0, c1, r1, g in tree_px if g in gens]
        rr, cc, val = (np.concatenate(k) for k in zip(*lines))
        keep = (rr >= 0) & (rr < shape[0]) & (cc >= 0) & (cc < shape[1])
        layer = np.zeros(shape)
        np.maximum.at(layer, (rr[keep], cc[keep]), val[keep])
        sigma = max(width / px, 0.5)
        total += ndimage.gaussian_filter(layer, sigma) * weight * sigma
    return total


def anatomy_density(
    u: np.ndarray, v: np.ndarray, an: Anatomy, masks: Masks, px: float, tree_px: np.ndarray
) -> np.ndarray:
    """Attenuation of the patient (no lesion) on the grid.

    ``px`` is one pixel in normalized units; ``tree_px`` the vessel tree in pixel coordinates
    (:func:`draw_vessel_tree`, mapped through the pose).
    """
    _, half = _body(u, v, an)
    path = np.sqrt(np.clip(1 - (u / half) ** 2, 0, None))
    soft = ndimage.gaussian_filter(masks["body"] * (0.45 + 0.55 * path**0.5), 0.6)
    lungs = (masks["right_lung"] | masks["left_lung"]).astype(np.float64)
    sigma = max(0.015 / px, 0.6)
    aeration = ndimage.gaussian_filter(lungs, sigma)
    aeration *= 1 - 0.45 * np.clip((an.apex_v + 0.25 - v) / 0.25, 0, 1)  # thin apices
    aeration *= 0.8 + 0.2 * np.clip((np.abs(u) - an.medi_w) / 0.4, 0, 1)  # more air laterally
    central = ndimage.gaussian_filter((masks["heart"] | masks["mediastinum"]).astype(np.float64), sigma)
    belly = ndimage.gaussian_filter(masks["abdomen"].astype(np.float64), sigma) * (1 - 2 * _bubble(u, v, an))
    trachea = _tube(u - 0.01, 0.045) * np.clip((an.heart_c[1] - 0.45 - v) / 0.1, 0, 1)
    bones = 0.20 * _ribs(u, v, an, half, px) + 0.40 * _clavicles(u, v, an, px) + 0.10 * _spine(u, v, an)
    hila = ndimage.gaussian_filter(lungs, 3 * sigma) * central  # hilar vessels at the lung roots
    vessels = 0.13 * _vessels(tree_px, u.shape, px) * (0.3 + aeration)
    return (soft - an.air * aeration + 0.2 * central + 0.22 * belly - 0.3 * trachea
            + bones * masks["body"] + vessels * masks["body"] + 0.1 * hila)
