"""Origin floor of a falling object (高空抛物) from a facade camera's track.

CONTRACT.md §2 (camera) and §5 (``camera.falling_object``): a ``falling_object``
reading carries ``track``, ≥ 4 points ``[t_ms_since_first, x_px, y_px]`` with y
growing downwards. The camera's registry params calibrate it; a row ``y`` sees
the facade at height

    h = mount_height_m + distance_m · tan(radians(tilt_deg) + atan((cy_px − y) / focal_px))

and the heights are fitted with free fall, ``h(t) = h0 + v0·t − ½·g·t²``. The
release height is the parabola's apex ``h0 + v0²/(2g)``; an object leaves a
window of floor n at about ``(n − 1)·floor_height_m + 1.2`` m, so the origin floor
is ``round((apex − 1.2) / floor_height_m) + 1``, clamped to the building.

How the fit stays robust and fast:

* ``g`` is known, so ``z = h + ½·g·t² = h0 + v0·t`` is a straight line: the model
  is linear in ``(h0, v0)`` and its Jacobian is constant.
* Residuals are measured in pixels (height residual divided by the metres per
  pixel of the row), because the tracker's noise and its glitches are in pixels
  while a pixel spans a few millimetres near the camera's own height and tens
  of centimetres near the top of a tall facade. One threshold then fits every
  row of every camera.
* A least-median-of-squares line over pairs of points is a start that a glitched
  point (a bird, a reflection) cannot drag; a leave-one-out test deletes any
  glitch its cut lets through (on a 4-point track the LMedS scale is too coarse
  to catch a 30 px glitch); ``scipy.optimize.least_squares`` with a Cauchy loss
  then refines over all points from the least-squares fit of the rest, so a
  bad point has (almost) no say in the answer.
* The apex's standard error comes from the Jacobian of the inliers at the
  robust solution, scaled by the inliers' residual scale, through the delta
  method on ``h0 + v0²/(2g)``. On short tracks that scale is pooled with a
  1 px prior for the tracker, or a lucky 4-point track would claim millimetres.

A fit takes about 0.6 ms (median; 1.2 ms at the 99th percentile) on simulated
tracks of 4–130 points; it runs once per event.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt
from scipy.optimize import least_squares

__all__ = [
    "G_MPS2",
    "WINDOW_HEIGHT_M",
    "Calibration",
    "FallFit",
    "fit_fall",
    "row_heights",
    "simulate_track",
]

FloatArray = npt.NDArray[np.float64]

G_MPS2: Final = 9.81
"""Gravitational acceleration the contract fixes for the fit (m/s²)."""

WINDOW_HEIGHT_M: Final = 1.2
"""Height above its floor's level at which an object leaves a window (CONTRACT §2)."""

_MIN_POINTS: Final = 4  # the contract's minimum track length
# Two parameters, plus one spare time so that a single bad point can be outvoted.
_MIN_DISTINCT_TIMES: Final = 3
# LMedS over all pairs is O(n³) in the worst case; pairs among this many evenly spaced
# points are plenty to find a clean line, and keep the start well under a millisecond.
_LMEDS_SUBSET: Final = 24
# Cauchy's tuning constant for 95 % efficiency under Gaussian noise (Holland & Welsch 1977).
_CAUCHY_C: Final = 2.385
# Rousseeuw & Leroy (1987): 1.4826 makes the MAD consistent for σ; (1 + 5/(n − p))
# corrects the LMedS scale's downward bias on small samples.
_MAD_TO_SIGMA: Final = 1.4826
# Points within this many LMedS scales of the start line go on to the least-squares stage.
_REWEIGHT_SIGMAS: Final = 2.5
# A tracker's centroid is seldom better than half a pixel: a smaller LMedS scale is
# rounding or luck, and cutting at it would drop honest points of a clean track.
_SIGMA_FLOOR_PX: Final = 0.5
# What a tracker's noise is before the track says otherwise, and how many residuals that
# belief is worth (a scaled-inverse-χ² prior). A 4-point track has 2 degrees of freedom,
# 1 once a glitch is out: its own scale can be off tenfold, so it is pooled with this
# prior; a 60-point track outweighs it twenty to one.
_PRIOR_SIGMA_PX: Final = 1.0
_PRIOR_DOF: Final = 3.0
# Externally studentized residual beyond which a point is deleted as a glitch. Glitches
# are ≥ 20 px off against ~1 px of noise, so a high cut loses no glitch and keeps the
# heavy tail of a 1-degree-of-freedom t statistic from deleting honest points.
_DELETION_T: Final = 6.0
# Beyond 3 σ of the final fit a point is not counted as an inlier (nor in the error).
_INLIER_SIGMAS: Final = 3.0


@dataclass(frozen=True)
class Calibration:
    """A falling-object camera's calibration (CONTRACT §2, camera registry params).

    ``tilt_deg`` is the upward pitch of the optical axis, ``distance_m`` the
    horizontal distance from the camera to the facade, ``cy_px`` the principal
    point's row (so the image is about ``2·cy_px`` rows tall).
    """

    mount_height_m: float
    distance_m: float
    tilt_deg: float
    focal_px: float
    cy_px: float

    def __post_init__(self) -> None:
        for name in ("mount_height_m", "distance_m", "tilt_deg", "focal_px", "cy_px"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Real):
                raise ValueError(f"camera calibration {name} must be a number, got {value!r}")
            if not math.isfinite(value):
                raise ValueError(
                    f"camera calibration {name} must be a finite number, got {value!r}"
                )
        if self.distance_m <= 0:
            raise ValueError(f"camera calibration distance_m must be > 0, got {self.distance_m}")
        if self.focal_px <= 0:
            raise ValueError(f"camera calibration focal_px must be > 0, got {self.focal_px}")
        if self.cy_px <= 0:
            raise ValueError(f"camera calibration cy_px must be > 0, got {self.cy_px}")
        if not -90.0 < self.tilt_deg < 90.0:
            raise ValueError(
                f"camera calibration tilt_deg must be in (-90, 90), got {self.tilt_deg}"
            )

    @classmethod
    def from_params(cls, params: Mapping[str, float]) -> Calibration:
        """Build from a device's registry ``params``; other keys are ignored.

        Raises ``ValueError`` naming the missing or invalid param.
        """
        values: dict[str, float] = {}
        for name in ("mount_height_m", "distance_m", "tilt_deg", "focal_px", "cy_px"):
            if name not in params:
                raise ValueError(f"camera calibration param {name!r} is missing")
            raw = params[name]
            # bool is an int to Python, never a calibration value to a human.
            if isinstance(raw, bool) or not isinstance(raw, numbers.Real):
                raise ValueError(f"camera calibration param {name!r} must be a number, got {raw!r}")
            values[name] = float(raw)
        return cls(**values)


@dataclass(frozen=True)
class FallFit:
    """The result of :func:`fit_fall`.

    ``h0_m`` and ``v0_mps`` are height and vertical speed (+ up) at the track's
    time 0; ``apex_m`` is the release height, ``apex_se_m`` its standard error;
    ``inliers`` of ``points`` track points agree with the fit, ``rms_m`` is their
    RMS height residual.
    """

    floor: int
    apex_m: float
    apex_se_m: float
    h0_m: float
    v0_mps: float
    inliers: int
    points: int
    rms_m: float


def _ray_angles(y_px: FloatArray, cal: Calibration) -> FloatArray:
    """Elevation (rad) of the ray through each row: the camera's tilt plus the row's offset."""
    return np.radians(cal.tilt_deg) + np.arctan((cal.cy_px - y_px) / cal.focal_px)


def row_heights(y_px: npt.ArrayLike, cal: Calibration) -> FloatArray:
    """Height (m) on the facade seen by each image row ``y_px`` (CONTRACT §2).

    A row whose ray points at or beyond the vertical never meets the facade:
    its height is NaN rather than the formula's meaningless wrap-around.
    """
    y = np.asarray(y_px, dtype=np.float64)
    angle = _ray_angles(y, cal)
    heights = cal.mount_height_m + cal.distance_m * np.tan(angle)
    return np.where(np.abs(angle) < np.pi / 2, heights, np.nan)


def _metres_per_px(y_px: FloatArray, cal: Calibration) -> FloatArray:
    """|dh/dy|: how many metres of facade one pixel spans at each row."""
    u = cal.cy_px - y_px
    cos_a = np.cos(_ray_angles(y_px, cal))
    return cal.distance_m * cal.focal_px / ((cal.focal_px**2 + u**2) * cos_a**2)


def _rows_of_heights(h_m: FloatArray, cal: Calibration) -> FloatArray:
    """Inverse of :func:`row_heights`: the image row that sees each facade height."""
    elevation = np.arctan((h_m - cal.mount_height_m) / cal.distance_m)
    offset = elevation - np.radians(cal.tilt_deg)
    rows = cal.cy_px - cal.focal_px * np.tan(offset)
    # A height more than 90° off the optical axis is behind the image plane.
    return np.where(np.abs(offset) < np.pi / 2, rows, np.nan)


def _as_track(track: Sequence[Sequence[float]]) -> FloatArray:
    """The track as an (n, 3) float array, or ``ValueError`` saying what is wrong."""
    try:
        arr = np.asarray(track, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"track must be a list of [t_ms, x_px, y_px] points: {exc}") from exc
    if arr.size == 0:
        raise ValueError(f"track has 0 points, a fall needs at least {_MIN_POINTS}")
    if arr.ndim != 2 or arr.shape[1] != 3:
        raise ValueError(
            f"track must be a list of [t_ms, x_px, y_px] points, got shape {arr.shape}"
        )
    if arr.shape[0] < _MIN_POINTS:
        raise ValueError(f"track has {arr.shape[0]} points, a fall needs at least {_MIN_POINTS}")
    if not np.all(np.isfinite(arr)):
        raise ValueError("track has a non-finite value")
    return arr


def _lmeds_line(t: FloatArray, z: FloatArray, w: FloatArray) -> tuple[FloatArray, float]:
    """Least-median-of-squares line ``z ≈ a + b·t`` with residuals weighted by ``w``.

    Every line through two points of a (evenly spaced) subset is scored by the
    h-th smallest |residual| over all points, h = ⌊n/2⌋ + 1, so up to half the
    points may be wild without moving the winner. Returns ``(a, b)`` and the
    Rousseeuw–Leroy scale of the residuals (in the units of ``w·z``).
    """
    n = t.size
    sub = np.unique(np.linspace(0, n - 1, min(n, _LMEDS_SUBSET)).round().astype(np.intp))
    i, j = np.triu_indices(sub.size, k=1)
    i, j = sub[i], sub[j]
    dt = t[j] - t[i]
    ok = dt != 0.0  # pairs at one time define no line
    i, j, dt = i[ok], j[ok], dt[ok]
    b = (z[j] - z[i]) / dt
    a = z[i] - b * t[i]
    resid = np.abs((z[None, :] - a[:, None] - b[:, None] * t[None, :]) * w[None, :])
    h = n // 2 + 1
    score = np.partition(resid, h - 1, axis=1)[:, h - 1]
    best = int(np.argmin(score))
    scale = _MAD_TO_SIGMA * (1.0 + 5.0 / (n - 2)) * float(score[best])
    return np.array([a[best], b[best]]), scale


def _pooled_sigma(rss_px2: float, dof: int) -> float:
    """Residual scale (px) from a fit's sum of squares, pooled with the tracker prior."""
    return math.sqrt((rss_px2 + _PRIOR_DOF * _PRIOR_SIGMA_PX**2) / (max(dof, 0) + _PRIOR_DOF))


def _delete_glitches(a: FloatArray, b: FloatArray, keep: npt.NDArray[np.bool_]) -> None:
    """Delete, one at a time, kept points whose externally studentized residual is wild.

    The LMedS scale that chose ``keep`` is inflated 3.5-fold on a 4-point track, so
    a glitch of a few tens of pixels can slip through it. Leaving each point out in
    turn and asking how far it lies from the fit of the others, in units of *their*
    scale, is the sharpest test for a single outlier (Cook & Weisberg 1982, §2.2).
    ``keep`` is updated in place.
    """
    while True:
        idx = np.flatnonzero(keep)
        m = idx.size
        if m < 4:  # after a deletion the rest must keep ≥ 1 degree of freedom
            return
        am, bm = a[idx], b[idx]
        inv = np.linalg.inv(am.T @ am)
        r = bm - am @ (inv @ (am.T @ bm))
        free = 1.0 - np.einsum("ij,jk,ik->i", am, inv, am)  # 1 − leverage
        # A point alone at its time (leverage 1) cannot be checked by the others.
        testable = free > 1e-9
        safe_free = np.where(testable, free, 1.0)
        rss_without = np.maximum(float(r @ r) - r**2 / safe_free, 0.0)
        sigma_without = np.sqrt(
            (rss_without + _PRIOR_DOF * _PRIOR_SIGMA_PX**2) / (m - 3 + _PRIOR_DOF)
        )
        t_stat = np.where(testable, np.abs(r) / (sigma_without * np.sqrt(safe_free)), 0.0)
        worst = int(np.argmax(t_stat))
        if t_stat[worst] <= _DELETION_T:
            return
        keep[idx[worst]] = False


def fit_fall(
    track: Sequence[Sequence[float]],
    cal: Calibration,
    floors: int,
    floor_height_m: float,
) -> FallFit:
    """Fit free fall to a ``falling_object`` track and name the origin floor.

    ``track`` is ``[[t_ms_since_first, x_px, y_px], ...]`` (CONTRACT §2); ``floors``
    and ``floor_height_m`` describe the building the camera faces. Raises
    ``ValueError`` when the track has fewer than 4 usable points, fewer than 3
    distinct times, or is otherwise malformed, and when the building is.
    """
    if isinstance(floors, bool) or not isinstance(floors, numbers.Integral) or floors < 1:
        raise ValueError(f"floors must be an int ≥ 1, got {floors!r}")
    floors = int(floors)  # a numpy integer from a registry column is fine too
    if not (math.isfinite(floor_height_m) and floor_height_m > 0):
        raise ValueError(f"floor_height_m must be > 0, got {floor_height_m!r}")
    arr = _as_track(track)
    points = arr.shape[0]
    arr = arr[np.argsort(arr[:, 0], kind="stable")]
    t_all = arr[:, 0] / 1000.0
    h_all = row_heights(arr[:, 2], cal)
    # A row whose ray misses the facade cannot be a fall; treat it like any other bad point.
    usable = np.isfinite(h_all)
    if int(usable.sum()) < _MIN_POINTS:
        raise ValueError(
            f"track has {int(usable.sum())} points whose rows see the facade, "
            f"a fall needs at least {_MIN_POINTS}"
        )
    t, y, h = t_all[usable], arr[usable, 2], h_all[usable]
    if np.unique(t).size < _MIN_DISTINCT_TIMES:
        raise ValueError(
            f"track is degenerate: {np.unique(t).size} distinct times, "
            f"a fit needs at least {_MIN_DISTINCT_TIMES}"
        )

    z = h + 0.5 * G_MPS2 * t**2  # the fall minus gravity's share: a straight line in t
    w = 1.0 / _metres_per_px(y, cal)  # metres → pixels, where the noise lives
    jac = -w[:, None] * np.column_stack((np.ones_like(t), t))

    def residuals_px(p: FloatArray) -> FloatArray:
        return (z - p[0] - p[1] * t) * w

    def jacobian(_p: FloatArray) -> FloatArray:
        return jac  # linear model: the Jacobian does not depend on the parameters

    # 1. A start no single point can drag: the least-median-of-squares line, and the
    #    points near it. Keep at least half, on ≥ 2 distinct times, whatever the scale.
    start, scale0 = _lmeds_line(t, z, w)
    r_start = np.abs(residuals_px(start))
    keep = r_start <= _REWEIGHT_SIGMAS * max(scale0, _SIGMA_FLOOR_PX)
    half = t.size // 2 + 1
    if int(keep.sum()) < half or np.unique(t[keep]).size < 2:
        keep = np.zeros(t.size, dtype=bool)
        keep[np.argsort(r_start, kind="stable")[:half]] = True
        if np.unique(t[keep]).size < 2:  # the best half all at one instant: start from all
            keep[:] = True
    # 2. Delete whatever glitch the LMedS cut let through, then least squares on the rest.
    a_px, b_px = -jac, z * w  # residuals_px(p) == b_px − a_px @ p
    _delete_glitches(a_px, b_px, keep)
    ls = np.asarray(np.linalg.lstsq(a_px[keep], b_px[keep], rcond=None)[0], dtype=np.float64)
    r_ls = residuals_px(ls)[keep]
    scale = _pooled_sigma(float(r_ls @ r_ls), int(keep.sum()) - 2)
    # 3. Robust refinement over all points: a Cauchy loss tuned to that scale, so a point
    #    near the cut is weighed by how far off it is rather than kept or dropped outright.
    sol = least_squares(
        residuals_px, ls, jac=jacobian, loss="cauchy", f_scale=_CAUCHY_C * scale, method="trf"
    )
    h0, v0 = float(sol.x[0]), float(sol.x[1])
    r_px = residuals_px(sol.x)

    # 4. Uncertainty from the inliers of the robust solution: the Jacobian of their
    #    residuals, scaled by their own (prior-pooled) residual scale.
    inlier = np.abs(r_px) <= _INLIER_SIGMAS * scale
    if np.unique(t[inlier]).size < 2:  # cannot happen on sane data; keep the maths defined
        inlier = keep
    n_in = int(inlier.sum())
    sigma = _pooled_sigma(float(r_px[inlier] @ r_px[inlier]), n_in - 2)
    j_in = jac[inlier]
    cov = sigma**2 * np.linalg.inv(j_in.T @ j_in)

    apex = h0 + v0 * v0 / (2.0 * G_MPS2)
    grad = np.array([1.0, v0 / G_MPS2])  # delta method on h0 + v0²/(2g)
    apex_se = math.sqrt(max(float(grad @ cov @ grad), 0.0))
    rms_m = math.sqrt(float(np.mean((r_px[inlier] / w[inlier]) ** 2)))

    floor = round((apex - WINDOW_HEIGHT_M) / floor_height_m) + 1
    return FallFit(
        floor=min(max(floor, 1), floors),
        apex_m=apex,
        apex_se_m=apex_se,
        h0_m=h0,
        v0_mps=v0,
        inliers=n_in,
        points=points,
        rms_m=rms_m,
    )


def simulate_track(
    rng: np.random.Generator,
    cal: Calibration,
    floor: int,
    floor_height_m: float,
    *,
    n_points: int | None = None,
    noise_px: float = 1.0,
    glitch_prob: float = 0.05,
    fps: float = 20.0,
) -> list[list[float]]:
    """A realistic ``falling_object`` track of an object thrown from ``floor``.

    The object leaves the window at ``(floor − 1)·floor_height_m + 1.2`` m ± 0.3 m,
    dropped (30 %) or tossed up at up to 2 m/s, at a random phase of the camera's
    frame clock. The tracker picks it up 0–6 frames after release (or once it is in
    view) and follows it until it leaves the image (rows ``0..2·cy_px``) or hits the
    ground, at most ``n_points`` points. Each row gets Gaussian noise of
    ``noise_px``; with probability ``glitch_prob`` ONE point lands 20–300 px off
    (a bird, a reflection). Raises ``ValueError`` when the camera cannot see at
    least 4 frames of the fall.
    """
    if floor < 1:
        raise ValueError(f"floor must be ≥ 1, got {floor}")
    if not floor_height_m > 0:
        raise ValueError(f"floor_height_m must be > 0, got {floor_height_m}")
    if not fps > 0:
        raise ValueError(f"fps must be > 0, got {fps}")
    if noise_px < 0 or not 0.0 <= glitch_prob <= 1.0:
        raise ValueError("noise_px must be ≥ 0 and glitch_prob in [0, 1]")
    if n_points is not None and n_points < _MIN_POINTS:
        raise ValueError(f"n_points must be ≥ {_MIN_POINTS}, got {n_points}")

    release_m = (floor - 1) * floor_height_m + WINDOW_HEIGHT_M + rng.uniform(-0.3, 0.3)
    v_up = 0.0 if rng.random() < 0.3 else rng.uniform(0.0, 2.0)
    phase_s = rng.uniform(0.0, 1.0 / fps)  # release falls between two frames
    # Time from release until it reaches the ground.
    t_ground = (v_up + math.sqrt(v_up**2 + 2.0 * G_MPS2 * release_m)) / G_MPS2
    n_frames = max(math.floor((t_ground - phase_s) * fps) + 1, 0)
    tau = phase_s + np.arange(n_frames) / fps
    height = release_m + v_up * tau - 0.5 * G_MPS2 * tau**2
    rows = _rows_of_heights(height, cal)
    visible = np.flatnonzero(np.isfinite(rows) & (rows >= 0.0) & (rows <= 2.0 * cal.cy_px))
    if visible.size < _MIN_POINTS:
        raise ValueError(
            f"floor {floor} is not in view of this camera: {visible.size} frames of the fall "
            f"are in the image, a track needs {_MIN_POINTS}"
        )
    # The tracker's lag, shortened where it would leave fewer than 4 frames.
    lag = min(int(rng.integers(0, 7)), int(visible[-_MIN_POINTS]))
    kept = visible[visible >= lag]
    if n_points is not None:
        kept = kept[:n_points]

    width_px = 2.0 * cal.cy_px * 16.0 / 9.0  # only for a plausible x; the fit ignores it
    x = rng.uniform(0.25, 0.75) * width_px + rng.normal(0.0, 20.0) * tau[kept]
    y = rows[kept].copy()
    if noise_px > 0:
        x = x + rng.normal(0.0, noise_px, kept.size)
        y = y + rng.normal(0.0, noise_px, kept.size)
    if rng.random() < glitch_prob:
        k = int(rng.integers(kept.size))
        jump = rng.uniform(20.0, 300.0) * (1.0 if rng.random() < 0.5 else -1.0)
        if not 0.0 <= y[k] + jump <= 2.0 * cal.cy_px:
            jump = -jump  # keep the glitch inside the image, where a tracker reports it
        y[k] += jump
        x[k] += rng.uniform(-300.0, 300.0)
    y = np.clip(y, 0.0, 2.0 * cal.cy_px)

    t_ms = np.rint((tau[kept] - tau[kept[0]]) * 1000.0)
    return [[int(tm), float(xi), float(yi)] for tm, xi, yi in zip(t_ms, x, y, strict=True)]
