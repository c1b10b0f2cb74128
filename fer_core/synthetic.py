"""Procedural 48x48 grayscale expression faces: the built-in data set (``synthetic[:N]``).

A fresh machine has no CK+ and tests must not wait for a download, so :func:`make_faces`
draws a CK+48 look-alike from nothing but a seed: one face per image (oval, hair, eyes,
eyebrows, a hint of a nose, a mouth), showing one of the seven CK+48 emotions. Every
emotion is a combination of feature changes in the spirit of the facial action units
(a smile lifts the mouth corners, surprise opens the mouth and lifts the brows, contempt
lifts one corner only, ...).

The data set is meant to be *hard enough*: a hyperparameter search over CNNs must have
something to find. So the expression is a small signal on top of large nuisance
variation: every identity has its own face shape, feature layout, skin tone, hair and
"neutral" expression (some people's mouths turn down at rest), each image shows its
emotion at a random intensity, slightly mixed with another emotion, under random pose,
scale, lighting, blur and noise. The module-level constants below are the knobs.

Calibration (``make_faces(1000)``, stratified 80/20 split, one CPU thread): logistic
regression on raw pixels scores about 40%; the seed notebook's CNN (three valid-padded
conv blocks 32/64/128, flatten, dense 128, Adam 1e-3, 15 epochs, no augmentation) about
65-75%; a four-block batch-normalised CNN with dropout and global average pooling
(40 epochs, cosine schedule) about 90%. A search has a real gap to close.

Everything is drawn for all images at once with vectorized numpy on float32 grids, with
anti-aliased (coverage-weighted) edges so that sub-pixel changes of a feature still
show; 1,000 faces take well under a second on one core.
"""

from __future__ import annotations

import numpy as np

from fer_core.dataset import IMAGE_SIZE, Dataset

CLASS_NAMES = ("anger", "contempt", "disgust", "fear", "happy", "sadness", "surprise")  # CK+48's, sorted

# Relative class frequencies: CK+48's ranking (surprise and happy common, contempt and fear
# rare) but flattened, so that a stratified split of a few hundred faces still has every class.
CLASS_SHARES = (0.15, 0.08, 0.16, 0.10, 0.19, 0.12, 0.20)

IMAGES_PER_IDENTITY = 8  # about n/8 identities, each showing several emotions, as in CK+
MIN_IDENTITIES = 5  # enough for a subject split holding out 1/5, even for tiny n

# --- difficulty knobs (calibrated together; see the module docstring for what they give) ---
EXPRESSION_STRENGTH = 1.5  # global scale of every expression's feature changes (the table below is 1.0)
INTENSITY_RANGE = (0.5, 1.0)  # per-image expression intensity, drawn uniformly
BLEND_MAX = 0.35  # each image also shows up to this fraction of one other, random emotion
NEUTRAL_SPREAD = 0.3  # per-identity resting-face offsets, in units of a typical expression change
IMAGE_JITTER = 0.15  # per-image random feature wobble, same units as NEUTRAL_SPREAD
ROTATION_DEG = 10.0  # head roll, uniform in +-ROTATION_DEG
SHIFT_PX = 4.0  # face translation, uniform in +-SHIFT_PX pixels on each axis
SCALE_JITTER = 0.1  # per-image face scale, uniform in 1 +- SCALE_JITTER (on top of identity size)
LIGHT_GRADIENT = 0.35  # peak-to-peak strength of a random linear lighting gradient
CONTRAST_RANGE = (0.7, 1.15)  # per-image contrast gain about mid-gray
BLUR_SIGMA_RANGE = (0.3, 0.8)  # Gaussian blur sigma in pixels, per image
NOISE_STD = 0.03  # additive Gaussian pixel noise

RENDER_CHUNK = 128  # faces drawn per vectorized batch
FACE_PX = 19.0  # face half-width in pixels at scale 1: a tight CK+48-like crop

# Feature parameters whose values make an expression. Units: face half-widths for
# positions, fractions for eye_open / mouth_width (multiplicative), 0..1 for the strength
# of a crease or shading (drawn saturated above 1).
PARAMS = ("brow_raise", "brow_tilt", "eye_open", "mouth_curve", "mouth_open", "mouth_width",
          "smirk", "lip_raise", "wrinkle", "folds", "lip_press", "furrow", "forehead", "cheek", "chin")
# A typical expression change of each parameter: scales the identity and image noise so
# that NEUTRAL_SPREAD and IMAGE_JITTER mean the same thing for every feature.
PARAM_SCALE = np.array([0.06, 0.06, 0.3, 0.06, 0.05, 0.12, 0.06, 0.04, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5],
                       dtype=np.float32)
# Parameters that cannot go negative (an opening, a strength); smirk is signed (its side).
NON_NEGATIVE = ("mouth_open", "lip_raise", "wrinkle", "folds", "lip_press", "furrow", "forehead", "cheek", "chin")

# Each emotion at full intensity, as changes from the resting face. Signs: brow_raise > 0
# lifts the brows, brow_tilt > 0 lowers their inner ends (a frown), mouth_curve > 0 lifts
# both corners, smirk lifts one corner (its sign picks the side, drawn per image).
EXPRESSIONS: dict[str, dict[str, float]] = {
    "anger": dict(brow_raise=-0.07, brow_tilt=0.09, eye_open=-0.15, mouth_curve=-0.02,
                  mouth_width=-0.15, lip_press=1.0, furrow=1.0, chin=0.7),
    "contempt": dict(smirk=0.11, mouth_width=0.04, eye_open=-0.05),
    "disgust": dict(brow_raise=-0.04, brow_tilt=0.04, eye_open=-0.35, mouth_curve=-0.03,
                    lip_raise=0.06, wrinkle=1.0, folds=0.6, furrow=0.4, cheek=0.3),
    "fear": dict(brow_raise=0.06, brow_tilt=-0.05, eye_open=0.45, mouth_curve=-0.02,
                 mouth_open=0.07, mouth_width=0.15, forehead=0.7, furrow=0.3),
    "happy": dict(mouth_curve=0.10, mouth_width=0.18, mouth_open=0.03, eye_open=-0.2, folds=1.0,
                  cheek=1.0),
    "sadness": dict(brow_raise=0.01, brow_tilt=-0.09, eye_open=-0.15, mouth_curve=-0.08,
                    mouth_width=-0.05, forehead=0.4, chin=1.0),
    "surprise": dict(brow_raise=0.10, eye_open=0.55, mouth_open=0.16, mouth_width=-0.3, forehead=1.0),
}

_P = {name: i for i, name in enumerate(PARAMS)}
_EXPRESSION_TABLE = np.array([[EXPRESSIONS[c].get(p, 0.0) for p in PARAMS] for c in CLASS_NAMES],
                             dtype=np.float32)


def make_faces(n: int = 1000, seed: int = 0) -> Dataset:
    """Draw ``n`` synthetic 48x48 expression faces of the seven CK+48 emotions.

    Labels follow :data:`CLASS_SHARES` (every class gets at least two images when
    ``n >= 14``); about ``n / 8`` identities (``groups`` like ``"ID017"``) each show
    several emotions, so a subject split works as on CK+. The result is a
    :class:`~fer_core.dataset.Dataset` with ``float32 [n, 48, 48, 1]`` images in [0, 1],
    ``source="synthetic:n"`` and no usage column; it depends only on ``n`` and ``seed``
    (``np.random.default_rng(seed)``). Raises ``ValueError`` for ``n < 1``.
    """
    if n < 1:
        raise ValueError(f"make_faces: n={n}; expected at least 1 face")
    rng = np.random.default_rng(seed)
    labels, identity = _labels_and_identities(n, rng)
    n_ids = int(identity.max()) + 1
    ident = _identity_traits(n_ids, rng)
    params = _expression_params(labels, identity, ident["neutral"], rng)
    traits = {k: v[identity] for k, v in ident.items() if k != "neutral"}
    # Rendering in chunks keeps the float32 temporaries cache-sized: time stays linear in n.
    images = np.concatenate([
        _render(params[i:i + RENDER_CHUNK], {k: v[i:i + RENDER_CHUNK] for k, v in traits.items()}, rng)
        for i in range(0, n, RENDER_CHUNK)])
    groups = np.asarray([f"ID{i:03d}" for i in identity])
    return Dataset(images=images[..., np.newaxis], labels=labels, class_names=CLASS_NAMES,
                   groups=groups, usage=None, source=f"synthetic:{n}")


# ----------------------------------------------------------------------------- sampling

def _class_counts(n: int) -> np.ndarray:
    shares = np.asarray(CLASS_SHARES, dtype=np.float64)
    shares /= shares.sum()
    counts = np.floor(shares * n).astype(np.int64)
    # largest remainder, so the counts add up to n exactly
    order = np.argsort(-(shares * n - counts), kind="stable")
    counts[order[: n - counts.sum()]] += 1
    k = len(CLASS_NAMES)
    if n >= 2 * k:
        # a stratified split needs two of every class; take them from the largest classes
        while counts.min() < 2:
            counts[np.argmin(counts)] += 1
            counts[np.argmax(counts)] -= 1
    return counts


def _labels_and_identities(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    counts = _class_counts(n)
    sorted_labels = np.repeat(np.arange(len(CLASS_NAMES), dtype=np.int64), counts)
    n_ids = max(1, min(n // 2, max(MIN_IDENTITIES, int(round(n / IMAGES_PER_IDENTITY)))))
    # Dealing the label-sorted images round-robin gives every identity images spread over
    # the whole label range (several emotions) and every class min(count, n_ids) identities.
    identity = rng.permutation(n_ids)[np.arange(n) % n_ids]
    order = rng.permutation(n)
    return sorted_labels[order], identity[order].astype(np.int64)


def _identity_traits(n_ids: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    def u(lo: float, hi: float) -> np.ndarray:
        return rng.uniform(lo, hi, n_ids).astype(np.float32)

    traits = {
        "face_a": u(0.88, 1.08),  # half-width of the oval, in face units
        "face_b": u(1.22, 1.45),  # half-height
        "size": u(0.92, 1.08),
        "skin": u(0.45, 0.8),
        "hair": u(0.05, 0.45),
        "hairline": u(-1.0, -0.78),
        "background": u(0.05, 0.6),
        "eye_x": u(0.34, 0.45),
        "eye_y": u(-0.32, -0.18),
        "eye_w": u(0.14, 0.19),
        "eye_h": u(0.06, 0.09),
        "brow_gap": u(0.17, 0.26),
        "brow_w": u(0.16, 0.23),
        "brow_t": u(0.035, 0.06),
        "brow_dark": u(0.35, 0.8),
        "nose_y": u(0.14, 0.26),
        "mouth_y": u(0.5, 0.66),
        "mouth_w": u(0.26, 0.36),
        "lip_t": u(0.025, 0.05),
    }
    traits["neutral"] = (rng.standard_normal((n_ids, len(PARAMS))) * NEUTRAL_SPREAD * PARAM_SCALE).astype(np.float32)
    return traits


def _expression_params(labels: np.ndarray, identity: np.ndarray, neutral: np.ndarray,
                       rng: np.random.Generator) -> np.ndarray:
    n, k = len(labels), len(CLASS_NAMES)
    intensity = rng.uniform(*INTENSITY_RANGE, n).astype(np.float32)
    # the other emotion mixed in (never the label itself): real faces are rarely pure
    other = (labels + rng.integers(1, k, n)) % k
    blend = rng.uniform(0.0, BLEND_MAX, n).astype(np.float32)
    table = np.repeat(_EXPRESSION_TABLE[None], n, axis=0)
    # contempt's smirk lifts the left or the right corner, whichever the image draws
    side = np.where(rng.random(n) < 0.5, -1.0, 1.0).astype(np.float32)
    table[:, :, _P["smirk"]] *= side[:, None]
    rows = np.arange(n)
    expression = table[rows, labels] + blend[:, None] * table[rows, other]
    params = (neutral[identity] + EXPRESSION_STRENGTH * intensity[:, None] * expression
              + rng.standard_normal((n, len(PARAMS))).astype(np.float32) * IMAGE_JITTER * PARAM_SCALE)
    for name in NON_NEGATIVE:
        np.maximum(params[:, _P[name]], 0.0, out=params[:, _P[name]])
    return params.astype(np.float32)


# ----------------------------------------------------------------------------- drawing

def _cover(signed_px: np.ndarray) -> np.ndarray:
    """Pixel coverage of a shape from its signed distance in pixels (negative inside)."""
    return np.clip(0.5 - signed_px, 0.0, 1.0)


def _paint(image: np.ndarray, alpha: np.ndarray, value) -> None:
    image += alpha * (value - image)


def _render(params: np.ndarray, t: dict[str, np.ndarray], rng: np.random.Generator) -> np.ndarray:
    n = params.shape[0]

    def col(x: np.ndarray) -> np.ndarray:
        return np.asarray(x, dtype=np.float32).reshape(n, 1, 1)

    def p(name: str) -> np.ndarray:
        return col(params[:, _P[name]])

    # pose: map every output pixel back into face coordinates (face half-width = 1, y down)
    angle = np.deg2rad(rng.uniform(-ROTATION_DEG, ROTATION_DEG, n))
    scale = t["size"] * rng.uniform(1 - SCALE_JITTER, 1 + SCALE_JITTER, n)
    shift = rng.uniform(-SHIFT_PX, SHIFT_PX, (n, 2))
    centre = (IMAGE_SIZE - 1) / 2.0
    grid = np.arange(IMAGE_SIZE, dtype=np.float32) - centre
    gx = grid[None, None, :] - col(shift[:, 0])
    gy = grid[None, :, None] - col(shift[:, 1]) - 2.0  # faces sit a little low, like CK+48 crops
    cos, sin = col(np.cos(angle)), col(np.sin(angle))
    px = col(FACE_PX * scale)  # pixels per face unit: converts face-unit distances to pixels
    u = (cos * gx + sin * gy) / px
    v = (-sin * gx + cos * gy) / px
    au = np.abs(u)  # features are mirrored, except the smirk

    skin = col(t["skin"])
    image = np.broadcast_to(col(t["background"]), u.shape).astype(np.float32)

    # hair behind and above the face, then the face oval
    head = np.sqrt((u / (col(t["face_a"]) * 1.08)) ** 2 + ((v + 0.08) / (col(t["face_b"]) * 1.05)) ** 2)
    _paint(image, _cover((head - 1.0) * px) * _cover((v - col(t["hairline"]) - 0.25 * u ** 2) * px), col(t["hair"]))
    # an open mouth drops the jaw, lengthening the lower face
    jaw = col(t["face_b"]) * (1.0 + 0.6 * p("mouth_open") * (v > 0))
    face = np.sqrt((u / col(t["face_a"])) ** 2 + (v / jaw) ** 2)
    face_alpha = _cover((face - 1.0) * px) * _cover((col(t["hairline"]) + 0.25 * u ** 2 - v) * px)
    _paint(image, face_alpha, skin)
    # soft shading towards the face edge gives the oval some volume
    image -= 0.12 * skin * np.clip(face - 0.6, 0.0, 0.4) * face_alpha

    # eyes: a sclera ellipse, an iris clipped by the lids, and a dark upper lid line
    ex, ey = col(t["eye_x"]), col(t["eye_y"])
    ew = col(t["eye_w"])
    eh = col(t["eye_h"]) * np.maximum(1.0 + p("eye_open"), 0.2)
    du, dv = (au - ex) / ew, (v - ey) / eh
    er = np.sqrt(du ** 2 + dv ** 2)
    eye = _cover((er - 1.0) * eh * px)
    _paint(image, eye, np.minimum(skin + 0.15, 1.0))
    iris = _cover((np.sqrt((au - ex) ** 2 + (v - ey) ** 2) - 0.075) * px) * eye
    _paint(image, iris, 0.08)
    lid = _cover((np.abs(er - 1.0) * eh - 0.02) * px - 0.3) * (dv < 0.3)
    _paint(image, 0.8 * lid, 0.1 * skin)

    # eyebrows: a tilted, slightly arched band above each eye
    bw = col(t["brow_w"])
    tb = (au - ex) / bw  # -1 at the inner end, +1 at the outer end
    brow_v = ey - col(t["brow_gap"]) - p("brow_raise") - p("brow_tilt") * tb - 0.04 * (1.0 - tb ** 2)
    brow = _cover((np.abs(v - brow_v) - col(t["brow_t"])) * px) * _cover((np.abs(tb) - 1.0) * bw * px)
    _paint(image, brow * col(t["brow_dark"]), 0.1 * skin)

    # glabellar furrows between the brows (anger): two short vertical creases
    inner_v = ey - col(t["brow_gap"]) - p("brow_raise") + p("brow_tilt")
    furrow = _cover((np.abs(au - 0.06) - 0.012) * px) * _cover((np.abs(v - inner_v - 0.02) - 0.09) * px)
    _paint(image, 0.5 * np.minimum(p("furrow"), 1.0) * furrow, 0.3 * skin)
    # horizontal forehead lines (surprise, fear, sadness), between the brows and the hairline
    top = ey - col(t["brow_gap"]) - p("brow_raise")
    wave = (v - top + 0.16 + 0.12 * u ** 2) / 0.09
    lines = _cover((np.abs(wave - np.round(np.clip(wave, -2.0, 0.0))) * 0.09 - 0.012) * px)
    lines *= _cover((au - 0.42) * px) * (wave > -2.5) * (wave < 0.5)
    _paint(image, 0.45 * np.minimum(p("forehead"), 1.0) * lines, 0.3 * skin)
    # raised cheeks (smile): lit cheek bulges and a crease under each eye
    cheek = np.minimum(p("cheek"), 1.0)
    image += 0.12 * skin * cheek * np.exp(-((au - ex - 0.04) ** 2 + (v - ey - 0.32) ** 2) / 0.02)
    under = (_cover((np.abs(v - ey - eh - 0.07 + 0.5 * (au - ex) ** 2) - 0.012) * px)
             * _cover((np.abs(au - ex) - 0.13) * px))
    _paint(image, 0.45 * cheek * under, 0.3 * skin)

    # nose: a faint shadow down one side of the bridge and two nostrils
    ny = col(t["nose_y"])
    bridge = _cover((np.abs(u - 0.07) - 0.025) * px) * (v > ey) * (v < ny)
    _paint(image, 0.15 * bridge, 0.3 * skin)
    nostril = _cover((np.sqrt(((au - 0.09) / 1.4) ** 2 + (v - ny - 0.03) ** 2) - 0.035) * px)
    _paint(image, 0.7 * nostril, 0.25 * skin)
    # disgust's nose wrinkle: short creases across the bridge
    crease = _cover((np.abs(np.abs(v - (ey + 0.12)) - 0.05) - 0.012) * px) * _cover((au - 0.1) * px)
    _paint(image, 0.5 * np.minimum(p("wrinkle"), 1.0) * crease, 0.3 * skin)

    # mouth: a curved centre line with a cavity that opens around it, lips on both sides
    mw = col(t["mouth_w"]) * np.maximum(1.0 + p("mouth_width"), 0.3)
    smirk = p("smirk")
    um = u / mw
    inside = np.clip(1.0 - um ** 2, 0.0, 1.0)
    centre_v = (col(t["mouth_y"]) - p("mouth_curve") * um ** 2
                - np.abs(smirk) * np.maximum(np.sign(smirk) * um, 0.0) ** 2)
    opening = p("mouth_open") * np.sqrt(inside)
    upper = centre_v - 0.4 * opening - p("lip_raise") * np.sqrt(inside)
    lower = centre_v + 0.6 * opening
    lip_t = col(t["lip_t"]) * (1.0 - 0.6 * np.minimum(p("lip_press"), 1.0))
    ends = _cover((np.abs(um) - 1.0) * mw * px)
    lips = _cover((np.maximum(upper - lip_t - v, v - lower - lip_t)) * px) * ends
    _paint(image, 0.5 * lips, 0.55 * skin)
    cavity = _cover(np.maximum(upper - v, v - lower) * px) * ends
    _paint(image, cavity, 0.06)
    # teeth show in the top of a wide opening of a widened mouth (a grin, a fear grimace),
    # not in surprise's round "O", so they separate those classes
    teeth = cavity * _cover((v - upper - 0.35 * (lower - upper)) * px)
    show = np.clip((p("mouth_open") - 0.02) * 15.0, 0.0, 0.8) * np.clip(p("mouth_width") * 6.0, 0.0, 1.0)
    _paint(image, teeth * show, 0.85)
    # the line where the lips meet: darker when pressed together
    line = _cover((np.abs(v - centre_v) - 0.012) * px) * ends
    _paint(image, line * (0.55 + 0.35 * np.minimum(p("lip_press"), 1.0)), 0.1 * skin)

    # chin raiser (sadness, anger): a crease below the lower lip and a shadow on the chin
    chin_v = col(t["mouth_y"]) + 0.2
    sulcus = _cover((np.abs(v - chin_v - 0.3 * u ** 2) - 0.015) * px) * _cover((au - 0.14) * px)
    _paint(image, 0.45 * np.minimum(p("chin"), 1.0) * sulcus, 0.3 * skin)
    image -= 0.12 * skin * np.minimum(p("chin"), 1.0) * np.exp(-(u ** 2 + (v - chin_v - 0.18) ** 2) / 0.015)

    # nasolabial folds (smile, disgust): lines from the nose wings past the mouth corners
    fold_u = 0.16 + (v - ny) * (mw + 0.06 - 0.16) / np.maximum(col(t["mouth_y"]) - ny, 0.05)
    fold = _cover((np.abs(au - fold_u) - 0.015) * px) * (v > ny + 0.02) * (v < col(t["mouth_y"]) + 0.05)
    _paint(image, 0.45 * np.minimum(p("folds"), 1.0) * fold, 0.3 * skin)

    # lighting, contrast, lens softness and sensor noise
    direction = rng.uniform(0.0, 2.0 * np.pi, n)
    ramp = (col(np.cos(direction)) * grid[None, None, :] + col(np.sin(direction)) * grid[None, :, None]) / IMAGE_SIZE
    image *= 1.0 + LIGHT_GRADIENT * col(rng.uniform(0.3, 1.0, n)) * ramp
    image = 0.5 + (image - 0.5) * col(rng.uniform(*CONTRAST_RANGE, n))
    image = _blur(image, rng.uniform(*BLUR_SIGMA_RANGE, n))
    image += rng.standard_normal(image.shape, dtype=np.float32) * NOISE_STD
    return np.clip(image, 0.0, 1.0).astype(np.float32)


def _blur(images: np.ndarray, sigma: np.ndarray) -> np.ndarray:
    """Separable Gaussian blur with a per-image sigma (edge pixels repeated)."""
    radius = 3
    offsets = np.arange(-radius, radius + 1, dtype=np.float32)
    weights = np.exp(-0.5 * (offsets[None, :] / sigma[:, None].astype(np.float32)) ** 2)
    weights /= weights.sum(axis=1, keepdims=True)
    size = images.shape[1]
    for axis in (1, 2):
        padded = np.pad(images, [(0, 0)] + [(radius, radius) if a == axis else (0, 0) for a in (1, 2)], mode="edge")
        out = np.zeros_like(images)
        for k in range(2 * radius + 1):
            window = padded[:, k:k + size, :] if axis == 1 else padded[:, :, k:k + size]
            out += weights[:, k, None, None] * window
        images = out
    return images
