"""Draw synthetic dives with vectorised numpy: a side view of a platform, a diver and the pool.

The camera follows the diver down (as broadcasts do), so the diver stays large, about 0.4 of
the frame height: the platform scrolls out at the top, the pool comes in at the bottom and the
camera stops at the entry to watch the splash. What is visible:

* **position**: the outline in the air: free = a long straight line with the arms stretched
  overhead, pike = a closed triangle (legs folded up, hands on the ankles), tuck = a compact
  ball with the arms round the shins (pike and tuck open straight before the entry); the legs
  are green, the torso yellow or red and the arms skin-coloured, so the fold shows even at low
  resolution;
* **armstand**: the dive starts from a handstand on the platform edge (body upside down);
* **rotation type**: the stance faces the water (forward, reverse) or the platform (back,
  inward), arms raised to the front; the body turns clockwise (forward, back) or
  counter-clockwise (inward, reverse);
* **somersaults**: the total turn in the air (``ss_no`` x 180 degrees);
* **twists**: the torso switches between yellow and red at every half twist;
* **execution**: the tilt of the body at the entry (over/under rotation) and the white splash.

Timeline inside the 103-frame window (offsets): ``lead`` (0-3) empty frames, 12 frames of
stance, 58 frames of flight, the entry at about offset 70-73, then 10 frames under water and a
26-frame splash, so everything that matters happens within the 96 frames the C3D-AVG clips
use.
"""

from __future__ import annotations

import math

import numpy as np

from aqa_framework.synth.dives import Dive

__all__ = ["FLIGHT", "STANCE", "WINDOW", "Scene"]

WINDOW = 103
STANCE = 12
FLIGHT = 58
UNDER = 10
SPLASH = 26

_SUIT_A = np.array([255.0, 214.0, 40.0], dtype=np.float32)  # yellow
_SUIT_B = np.array([235.0, 40.0, 45.0], dtype=np.float32)  # red (after a half twist)
_SKIN = np.array([255.0, 226.0, 196.0], dtype=np.float32)
_LEGS = np.array([70.0, 255.0, 120.0], dtype=np.float32)  # green, so the fold shows
_FOAM = np.array([240.0, 246.0, 252.0], dtype=np.float32)

# Body shapes in body units (y down, head up, +x = the diver's front). Five capsules each:
# thigh, shin, torso, head, arms as (ax, ay, bx, by, radius, alpha); legs green, torso in the
# suit colour, head and arms skin. The three flight positions differ in outline: a long line
# (free, arms stretched overhead), a closed triangle (pike, hands on the ankles) and a ball
# (tuck, arms round the shins).
_PX, _PY = 0.5736, -0.8192  # pike leg direction (145 degrees from "down")
_THIGH, _SHIN, _TORSO, _HEAD, _ARM = 0.13, 0.125, 0.14, 0.17, 0.08
_SHAPES = np.array(
    [
        # 0 straight (free position, take-off and entry): arms stretched overhead
        [
            (0, 0, 0, 0.26, _THIGH, 1),
            (0, 0.26, 0, 0.52, _SHIN, 1),
            (0, 0, 0, -0.40, _TORSO, 1),
            (0, -0.55, 0, -0.55, _HEAD, 1),
            (0, -0.40, 0, -0.90, _ARM, 1),
        ],
        # 1 pike: straight legs folded up in front of the body, hands on the ankles
        [
            (0, 0, 0.26 * _PX, 0.26 * _PY, _THIGH, 1),
            (0.26 * _PX, 0.26 * _PY, 0.52 * _PX, 0.52 * _PY, _SHIN, 1),
            (0, 0, 0, -0.40, _TORSO, 1),
            (0, -0.55, 0, -0.55, _HEAD, 1),
            (0, -0.38, 0.52 * _PX, 0.52 * _PY, _ARM, 1),
        ],
        # 2 tuck: knees to the chest, arms round the shins (a compact ball)
        [
            (0, 0, 0.24, -0.20, 1.3 * _THIGH, 1),
            (0.24, -0.20, 0.08, 0.04, 1.3 * _SHIN, 1),
            (0, 0, 0, -0.34, 1.25 * _TORSO, 1),
            (0, -0.48, 0, -0.48, _HEAD, 1),
            (0, -0.30, 0.26, -0.06, _ARM, 1),
        ],
        # 3 standing on the platform, arms raised to the front
        [
            (0, 0, 0, 0.26, _THIGH, 1),
            (0, 0.26, 0, 0.52, _SHIN, 1),
            (0, 0, 0, -0.40, _TORSO, 1),
            (0, -0.55, 0, -0.55, _HEAD, 1),
            (0, -0.38, 0.24, -0.70, _ARM, 1),
        ],
        # 4 armstand: upside down on straight arms (drawn with the body rotated 180 degrees)
        [
            (0, 0, 0, 0.26, _THIGH, 1),
            (0, 0.26, 0, 0.52, _SHIN, 1),
            (0, 0, 0, -0.40, _TORSO, 1),
            (0, -0.55, 0, -0.55, _HEAD, 1),
            (0.05, -0.38, 0.05, -0.84, _ARM, 1),
        ],
    ],
    dtype=np.float32,
)
_STRAIGHT, _STAND, _ARMSTAND = 0, 3, 4


def _smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


class Scene:
    """The pool of one event, filmed by a camera that follows the diver down.

    The scene is a world twice as tall as a frame; each frame shows the rows the camera looks
    at, so the diver stays large (about 0.4 of the frame height) and near the middle, as in a
    broadcast, while the platform scrolls out at the top and the pool comes in at the bottom.

    Args:
        width: Frame width in pixels (even).
        height: Frame height in pixels (even).
        rng: Varies the sky and water colours a little from event to event.
    """

    def __init__(self, width: int, height: int, rng: np.random.Generator) -> None:
        self.width, self.height = width, height
        self.world_height = 2 * height
        self.unit = 0.40 * height  # body length
        self.platform_y = 0.75 * height  # world coordinates
        self.water_y = 1.75 * height
        self.edge_x = 0.30 * width
        self.pad = int(math.ceil(0.95 * self.unit)) + 2
        self.world = self._background(rng)

    @property
    def background(self) -> np.ndarray:
        """The first frame's view of the empty pool (the platform)."""
        return self.world[: self.height]

    def _background(self, rng: np.random.Generator) -> np.ndarray:
        h, w = self.height, self.width
        y = np.arange(self.world_height, dtype=np.float32)[:, None, None]
        x = np.arange(w, dtype=np.float32)[None, :, None]
        tint = rng.uniform(-10, 10, size=3).astype(np.float32)
        sky_top = np.array([24, 30, 58], np.float32) + tint
        sky_low = np.array([70, 86, 124], np.float32) + tint
        frac = np.clip(y / self.water_y, 0, 1)
        img = sky_top * (1 - frac) + sky_low * frac + 0 * x
        stripes = (np.floor(y / (0.25 * h)) % 2 == 0) & (x > 0.9 * w)  # a wall that scrolls
        img = np.where(stripes, img + 14.0, img)
        water = np.array([24, 96, 160], np.float32) + tint
        ripple = 9.0 * np.sin(1.3 * y + 0.25 * np.sin(0.4 * x)) * (y >= self.water_y)
        img = np.where(y >= self.water_y, water + ripple, img)
        slab = (x < self.edge_x) & (y >= self.platform_y) & (y < self.platform_y + 0.05 * h)
        img = np.where(slab, np.float32(150.0), img)
        tower = (x < 0.12 * w) & (y >= self.platform_y + 0.05 * h) & (y < self.water_y)
        img = np.where(tower, np.array([82, 82, 96], np.float32), img)
        return np.clip(img, 0, 255).astype(np.uint8)

    # -- poses -------------------------------------------------------------------------------

    def poses(self, dive: Dive, offsets: np.ndarray) -> dict[str, np.ndarray]:
        """Per-frame pose of a dive at the window offsets ``offsets``, in world coordinates.

        Returns:
            Arrays ``visible`` (False where the diver is not shown), ``x``, ``y`` (hip),
            ``theta`` (radians, clockwise), ``facing``, ``shape``, ``twist_b`` (suit colour)
            and ``camera`` (top row of the view), one value per offset, and the scalars
            ``entry_offset`` and ``entry_x``.
        """
        t = offsets.astype(np.float32)
        facing = 1.0 if dive.rotation_type in (1, 3) else -1.0  # forward/reverse face the water
        spin = 1.0 if dive.rotation_type in (0, 1) else -1.0  # forward/back turn clockwise
        theta0 = math.pi if dive.armstand else 0.0
        turn = math.radians(dive.ss_no * 180.0 + dive.rotation_error)
        u = self.unit
        x0 = self.edge_x - 0.04 * self.width
        y0 = self.platform_y - (0.84 if dive.armstand else 0.52) * u
        x1 = self.edge_x + (0.14 + dive.drift) * self.width
        y1 = self.water_y - 0.15 * u
        lift = 0.15 * self.height
        t_stance = float(dive.lead)
        t0 = t_stance + STANCE
        t1 = t0 + FLIGHT

        p = np.clip((t - t0) / FLIGHT, 0.0, 1.0)
        x = np.where(t < t0, x0, x0 + (x1 - x0) * p)
        y = y0 - lift * p + (lift + y1 - y0) * p * p
        v_end = (2 * (lift + y1 - y0) - lift) / FLIGHT  # px per frame at the entry
        y = np.where(t > t1, y1 + v_end * (t - t1), y)
        rot = _smoothstep((p - 0.04) / 0.80)
        theta = theta0 + spin * turn * rot
        tucked = (p > 0.06) & (p < 0.86) & (t >= t0)
        shape = np.where(tucked, dive.position if dive.position else _STRAIGHT, _STRAIGHT)
        shape = np.where(t < t0, _ARMSTAND if dive.armstand else _STAND, shape)
        phase = math.pi * dive.tw_no * np.clip((p - 0.1) / 0.7, 0.0, 1.0)
        follow = np.minimum(y, y1)  # the camera stops at the entry and watches the splash
        camera = np.clip(np.round(follow - 0.45 * self.height), 0, self.world_height - self.height)
        return {
            "visible": (t >= t_stance) & (t <= t1 + UNDER),
            "x": x.astype(np.float32),
            "y": y.astype(np.float32),
            "theta": theta.astype(np.float32),
            "facing": np.full(t.shape, facing, np.float32),
            "shape": shape.astype(np.int64),
            "twist_b": np.cos(phase) < 0,
            "camera": camera.astype(np.int64),
            "entry_offset": np.float32(t1),
            "entry_x": np.float32(x1),
        }

    # -- drawing -----------------------------------------------------------------------------

    def render(self, dive: Dive | None, n_frames: int, window_start: int = 0) -> np.ndarray:
        """Frames ``(n_frames, H, W, 3)`` uint8 of one dive segment.

        Args:
            dive: The dive, or ``None`` for frames of the empty platform.
            n_frames: Frames in the segment.
            window_start: Index (within the segment) of the window's first frame.
        """
        if dive is None:
            return np.broadcast_to(self.background, (n_frames, *self.background.shape)).copy()
        offsets = np.arange(n_frames) - window_start
        pose = self.poses(dive, offsets)
        rows = pose["camera"][:, None] + np.arange(self.height)[None, :]
        frames = self.world[rows]  # (n, H, W, 3): each frame's view of the world
        idx = np.flatnonzero(pose["visible"])
        if idx.size:
            self._draw_diver(frames, idx, {k: v[idx] if np.ndim(v) else v for k, v in pose.items()})
        self._draw_splash(frames, offsets, dive, pose)
        return frames

    def _draw_diver(self, frames: np.ndarray, idx: np.ndarray, pose: dict) -> None:
        pad, u = self.pad, self.unit
        h, w = self.height, self.width
        canvas = np.pad(frames[idx], ((0, 0), (pad, pad), (pad, pad), (0, 0)), mode="edge")
        shapes = _SHAPES[pose["shape"]]  # (n, K, 6)
        facing = pose["facing"][:, None]
        ax, ay = shapes[..., 0] * facing, shapes[..., 1]
        bx, by = shapes[..., 2] * facing, shapes[..., 3]
        radius, alpha = shapes[..., 4] * u, shapes[..., 5]
        c, s = np.cos(pose["theta"])[:, None], np.sin(pose["theta"])[:, None]
        # rotate clockwise on screen by theta (y points down), scale, move to the hip
        hip_y = (pose["y"] - pose["camera"])[:, None]  # view coordinates
        water = (self.water_y - pose["camera"]).astype(np.float32)  # water line in each view
        pax = pose["x"][:, None] + u * (ax * c - ay * s)
        pay = hip_y + u * (ax * s + ay * c)
        pbx = pose["x"][:, None] + u * (bx * c - by * s)
        pby = hip_y + u * (bx * s + by * c)
        suit = np.where(pose["twist_b"][:, None], _SUIT_B, _SUIT_A)  # (n, 3)
        colours = [_LEGS, _LEGS, None, _SKIN, _SKIN]  # None: the suit (twist colour)
        for k in range(shapes.shape[1]):  # one capsule at a time, in a small box around it
            rows = np.flatnonzero(alpha[:, k] > 0)
            if rows.size == 0:
                continue
            a_x, a_y, b_x, b_y = pax[rows, k], pay[rows, k], pbx[rows, k], pby[rows, k]
            r = radius[rows, k]
            reach = np.hypot(b_x - a_x, b_y - a_y) / 2 + r
            half = min(int(math.ceil(float(reach.max()) + 1.5)), pad)
            rel = np.arange(-half, half + 1)
            ys = np.clip(
                np.round((a_y + b_y) / 2).astype(np.int64)[:, None] + rel, -pad, h + pad - 1
            )
            xs = np.clip(
                np.round((a_x + b_x) / 2).astype(np.int64)[:, None] + rel, -pad, w + pad - 1
            )
            ti = rows[:, None, None]
            where = (ti, ys[:, :, None] + pad, xs[:, None, :] + pad)
            patch = canvas[where].astype(np.float32)
            py = ys[:, :, None].astype(np.float32) + 0.5
            px = xs[:, None, :].astype(np.float32) + 0.5
            sx, sy = (b_x - a_x)[:, None, None], (b_y - a_y)[:, None, None]
            dx, dy = px - a_x[:, None, None], py - a_y[:, None, None]
            along = np.clip((dx * sx + dy * sy) / (sx * sx + sy * sy + 1e-6), 0.0, 1.0)
            dist = np.hypot(dx - along * sx, dy - along * sy)
            cov = np.clip(r[:, None, None] + 0.5 - dist, 0.0, 1.0)
            cov *= np.where(py > water[rows, None, None], np.float32(0.3), np.float32(1.0))
            fixed = colours[k]
            colour = suit[rows] if fixed is None else np.broadcast_to(fixed, (rows.size, 3))
            patch += cov[..., None] * (colour[:, None, None, :] - patch)
            canvas[where] = np.clip(patch + 0.5, 0, 255)
        frames[idx] = canvas[:, pad : pad + h, pad : pad + w]

    def _draw_splash(self, frames: np.ndarray, offsets: np.ndarray, dive: Dive, pose: dict) -> None:
        age = offsets - float(pose["entry_offset"])
        sel = np.flatnonzero((age >= 0) & (age < SPLASH))
        if sel.size == 0:
            return
        a = age[sel].astype(np.float32)
        env = np.minimum(a / 4.0, 1.0) * np.exp(-np.maximum(a - 4.0, 0.0) / 8.0)
        size = dive.splash
        x_entry = float(pose["entry_x"])
        half_w = (0.03 + 0.15 * size) * self.height
        height = (0.03 + 0.45 * size) * self.height * env + 1e-3
        y = np.arange(self.height, dtype=np.float32)[None, :, None] + 0.5
        x = np.arange(self.width, dtype=np.float32)[None, None, :] + 0.5
        wy = (self.water_y - pose["camera"][sel]).astype(np.float32)[:, None, None]
        r2 = ((x - x_entry) / half_w) ** 2 + ((y - wy) / height[:, None, None]) ** 2
        plume = np.clip((1.0 - r2) * 4.0, 0.0, 1.0) * (y < wy)
        foam_band = (y >= wy) & (y < wy + 0.05 * self.height)
        foam = (np.abs(x - x_entry) < 1.6 * half_w) * foam_band * (0.8 * env[:, None, None])
        cov = np.maximum(plume * 0.95, foam)[..., None]
        out = frames[sel].astype(np.float32)
        out += cov * (_FOAM - out)
        frames[sel] = np.clip(out + 0.5, 0, 255).astype(np.uint8)
