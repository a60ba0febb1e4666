"""Generate a synthetic surgical-skill dataset in the JIGSAWS format of USDL/MUSDL.

The output folder reads exactly like MUSDL's files plus the release's video layout through the
``jigsaws`` dataset (``layout: videos``, ``video_pattern: '{task}/video/{trial}_{camera}.mp4'``)::

    OUT_DIR/
      label.pkl                     {trial: [6 GRS items, 1-5]}         (MUSDL format)
      splits.pkl                    {task: [fold 0, ..., fold 3]}        (MUSDL format)
      Suturing/video/Suturing_B001_capture1.mp4, ..._capture2.mp4, ...
      Needle_Passing/video/...
      Knot_Tying/video/...
      synthetic.json                generator settings, each trial's skill and frame count
      README.md                     says that the data is synthetic

THE DATA IS SYNTHETIC: a cartoon view of a tissue pad and one instrument, rendered with numpy.
It exists so that the ``jigsaws`` reader, whole-video sampling and the GRS targets can be
tried and tested anywhere; results on it say nothing about real surgery.

What a trial shows: the instrument tip visits the task's targets (Suturing: stitch points on
both sides of an incision; Needle_Passing: four rings; Knot_Tying: loops round a knot). Each
of the six GRS items (1-5) changes something visible:

* respect for tissue: red bruises appear on the tissue (more for lower scores);
* suture/needle handling: the needle at the tip wobbles in angle;
* time and motion: detours to extra waypoints, and a longer video (more frames);
* flow of operation: pauses where the instrument stops;
* overall performance: tremor of the tip;
* quality of final product: the stitches left at the targets lie off their places.

Trials are ``<Task>_<user><3-digit trial>`` with users B-I as in JIGSAWS; each user has a skill
level that the six items scatter around, so the items correlate as real GRS items do. Trials
last between ``min_frames`` and ``max_frames`` frames (longer for lower time and motion
scores), so samplers that spread a fixed number of frames over the whole video are exercised.
The right camera (``capture2``) sees the same scene a few pixels to the side.

Generation is deterministic for a seed (the videos' pixels; encoder bytes may differ between
library versions) and takes a few seconds at 64x48.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from aqa_framework.errors import DataError

__all__ = [
    "GENERATOR_VERSION",
    "MARKER",
    "TASKS",
    "JigsawsSummary",
    "SurgicalTrial",
    "generate_jigsaws",
    "plan_trials",
    "render_trial",
]

GENERATOR_VERSION = 1
"""Bumped whenever the same settings would produce different data."""

MARKER = "synthetic.json"
TASKS = ("Suturing", "Needle_Passing", "Knot_Tying")
USERS = "BCDEFGHI"
NUM_FOLDS = 4
MAX_TRIALS = 200
CAMERA_SHIFT = 4  # pixels between the two cameras' views

_TISSUE = np.array([214.0, 150.0, 140.0], dtype=np.float32)
_INCISION = np.array([120.0, 40.0, 50.0], dtype=np.float32)
_BRUISE = np.array([150.0, 20.0, 40.0], dtype=np.float32)
_STITCH = np.array([30.0, 30.0, 90.0], dtype=np.float32)
_METAL = np.array([200.0, 205.0, 215.0], dtype=np.float32)
_NEEDLE = np.array([250.0, 250.0, 120.0], dtype=np.float32)
_RING = np.array([60.0, 140.0, 70.0], dtype=np.float32)


@dataclass
class SurgicalTrial:
    """One synthetic trial: its name, GRS items and what the renderer does with them.

    Attributes:
        task: ``Suturing``, ``Needle_Passing`` or ``Knot_Tying``.
        name: Trial name, e.g. ``Suturing_B001``.
        items: The six GRS items (1-5) in meta-file order.
        skill: The latent skill (0-1) the items scatter around.
        frames: Frames in the trial's video.
    """

    task: str
    name: str
    items: list[int]
    skill: float
    frames: int

    @property
    def grs(self) -> int:
        """The GRS total (sum of the items)."""
        return int(sum(self.items))


@dataclass
class JigsawsSummary:
    """What :func:`generate_jigsaws` wrote.

    Attributes:
        root: The output folder.
        trials: Trials per task.
        folds: Fold sizes per task.
        frames: Frames in all videos of one camera.
        size: ``(width, height)``.
        grs: ``min``, ``max``, ``mean``, ``std`` of the GRS totals.
        seconds: Wall time of the generation.
        codec: Video codec used.
    """

    root: Path
    trials: dict[str, int]
    folds: dict[str, list[int]]
    frames: int
    size: tuple[int, int]
    grs: dict[str, float]
    seconds: float
    codec: str


def _draw_items(skill: float, rng: np.random.Generator) -> list[int]:
    raw = 1.0 + 4.0 * skill + rng.normal(0.0, 0.55, size=6)
    return [int(v) for v in np.clip(np.round(raw), 1, 5)]


def plan_trials(
    trials_per_task: int, seed: int, min_frames: int = 60, max_frames: int = 120
) -> tuple[list[SurgicalTrial], dict[str, list[list[str]]]]:
    """Draw every trial's items and length and the four folds per task (deterministic).

    Args:
        trials_per_task: Trials per task (8-200: users B-I in turn, trials numbered 001 on).
        seed: Random seed.
        min_frames: Frames of the fastest trial.
        max_frames: Frames of the slowest trial.

    Returns:
        The trials (all tasks) and ``{task: [fold 0, ..., fold 3]}`` of trial names.
    """
    rng = np.random.default_rng(seed)
    user_skill = {
        u: float(v) for u, v in zip(USERS, rng.uniform(0.05, 0.85, len(USERS)), strict=True)
    }
    trials: list[SurgicalTrial] = []
    splits: dict[str, list[list[str]]] = {}
    span = max_frames - min_frames
    for task in TASKS:
        names = []
        for i in range(trials_per_task):
            user, number = USERS[i % len(USERS)], i // len(USERS) + 1
            gain = 0.04 * min(number, 5)  # users improve over their first trials
            skill = float(np.clip(user_skill[user] + gain + rng.normal(0, 0.08), 0, 1))
            items = _draw_items(skill, rng)
            slow = (5 - items[2]) / 4 * 0.8 + (5 - items[3]) / 4 * 0.2  # time and motion, flow
            frames = min_frames + int(round(span * slow + rng.uniform(-0.08, 0.08) * span))
            frames = int(np.clip(frames, min_frames, max_frames))
            name = f"{task}_{user}{number:03d}"
            trials.append(SurgicalTrial(task, name, items, round(skill, 4), frames))
            names.append(name)
        order = rng.permutation(len(names))
        splits[task] = [[names[j] for j in order[k::NUM_FOLDS]] for k in range(NUM_FOLDS)]
    return trials, splits


# -- rendering ------------------------------------------------------------------------------


def _targets(task: str, width: int, height: int) -> np.ndarray:
    """Waypoints ``(K, 2)`` (x, y) the tip visits, in pixels."""
    if task == "Suturing":
        xs = np.linspace(0.25, 0.75, 4) * width
        pts = [(x, (0.38 if k % 2 == 0 else 0.62) * height) for x in xs for k in range(2)]
    elif task == "Needle_Passing":
        xs = np.linspace(0.2, 0.8, 4) * width
        pts = [(x, (0.5 + 0.12 * np.sin(k * 1.7)) * height) for k, x in enumerate(xs)]
    else:  # Knot_Tying: two loops round the knot
        angle = np.linspace(0, 4 * np.pi, 9)
        pts = [
            (0.5 * width + 0.2 * height * np.cos(a), 0.5 * height + 0.2 * height * np.sin(a))
            for a in angle
        ]
    return np.asarray(pts, dtype=np.float32)


def _path(trial: SurgicalTrial, width: int, height: int, rng: np.random.Generator) -> np.ndarray:
    """The tip's position ``(frames, 2)``: waypoints, detours, pauses and tremor."""
    respect, handling, motion, flow, overall, quality = trial.items
    del respect, handling, quality
    points = list(_targets(trial.task, width, height))
    for _ in range(2 * (5 - motion)):  # detours to random waypoints
        at = int(rng.integers(1, len(points)))
        points.insert(at, rng.uniform([0.1 * width, 0.15 * height], [0.9 * width, 0.85 * height]))
    start = np.array([0.9 * width, 0.1 * height], dtype=np.float32)
    pts = np.vstack([start, np.asarray(points, dtype=np.float32)])
    seg = np.linalg.norm(np.diff(pts, axis=0), axis=1) + 1e-3
    pauses = 2 * (5 - flow)
    hold = max(1, trial.frames // 12)
    moving = max(trial.frames - pauses * hold, len(seg) + 1)
    cum = np.concatenate([[0.0], np.cumsum(seg)]) / seg.sum()
    u = np.linspace(0.0, 1.0, moving)
    xy = np.stack([np.interp(u, cum, pts[:, 0]), np.interp(u, cum, pts[:, 1])], axis=1)
    for at in sorted(rng.integers(1, moving - 1, size=pauses).tolist(), reverse=True):
        xy = np.insert(xy, at, np.repeat(xy[at : at + 1], hold, axis=0), axis=0)
    xy = xy[: trial.frames]
    if len(xy) < trial.frames:
        xy = np.vstack([xy, np.repeat(xy[-1:], trial.frames - len(xy), axis=0)])
    amp = 0.15 + 0.55 * (5 - overall)
    tremor = rng.normal(0.0, amp, size=xy.shape)
    return (xy + tremor).astype(np.float32)


def _segment_cover(
    gx: np.ndarray, gy: np.ndarray, a: np.ndarray, b: np.ndarray, radius: float
) -> np.ndarray:
    """Anti-aliased coverage (0-1) of a capsule from ``a`` to ``b`` on the pixel grid."""
    d = b - a
    t = np.clip(((gx - a[0]) * d[0] + (gy - a[1]) * d[1]) / (d @ d + 1e-6), 0.0, 1.0)
    dist = np.hypot(gx - a[0] - t * d[0], gy - a[1] - t * d[1])
    return np.clip(radius + 0.5 - dist, 0.0, 1.0)


def _paint(img: np.ndarray, cover: np.ndarray, colour: np.ndarray) -> None:
    img += cover[..., None] * (colour - img)


def _background(task: str, width: int, height: int, rng: np.random.Generator) -> np.ndarray:
    gy, gx = np.mgrid[0:height, 0:width].astype(np.float32) + 0.5
    tint = rng.uniform(-12, 12, size=3).astype(np.float32)
    texture = rng.normal(0, 5, size=(height, width, 1)).astype(np.float32)
    img = np.broadcast_to(_TISSUE + tint, (height, width, 3)) + texture
    img = img.astype(np.float32).copy()
    if task == "Suturing":
        a = np.array([0.15 * width, 0.5 * height], np.float32)
        b = np.array([0.85 * width, 0.5 * height], np.float32)
        _paint(img, _segment_cover(gx, gy, a, b, 0.6), _INCISION)
    elif task == "Needle_Passing":
        for x, y in _targets(task, width, height):
            ring = np.clip(1.2 - np.abs(np.hypot(gx - x, gy - y) - 0.09 * height), 0, 1)
            _paint(img, ring, _RING)
    else:
        knot = np.clip(0.12 * height + 0.5 - np.hypot(gx - 0.5 * width, gy - 0.5 * height), 0, 1)
        _paint(img, knot * 0.6, _INCISION)
    return img


def render_trial(trial: SurgicalTrial, width: int, height: int, seed: int) -> np.ndarray:
    """All frames ``(F, H, W + CAMERA_SHIFT, 3)`` uint8 of a trial, both cameras' views.

    ``capture1`` is columns ``[0, W)``, ``capture2`` columns ``[CAMERA_SHIFT, W + CAMERA_SHIFT)``.
    """
    rng = np.random.default_rng(
        [seed, TASKS.index(trial.task), int(trial.name[-3:]), ord(trial.name[-4])]
    )
    respect, handling, _, _, _, quality = trial.items
    wide = width + CAMERA_SHIFT
    base = _background(trial.task, wide, height, rng)
    tip = _path(trial, width, height, rng) + np.array([CAMERA_SHIFT / 2, 0], np.float32)
    n = len(tip)
    targets = _targets(trial.task, width, height) + np.array([CAMERA_SHIFT / 2, 0], np.float32)
    stitches = targets + rng.normal(0.0, 0.45 * (5 - quality) + 0.1, size=targets.shape)
    visited = np.full(len(targets), n, dtype=np.int64)  # frame from which a stitch shows
    for k, p in enumerate(targets):
        near = np.flatnonzero(np.hypot(*(tip - p).T) < 2.5)
        visited[k] = int(near[0]) if near.size else n - 1
    bruises = rng.uniform(
        [0.1 * wide, 0.15 * height], [0.9 * wide, 0.85 * height], size=(3 * (5 - respect), 2)
    )
    bruise_at = np.sort(rng.integers(0, n, size=len(bruises)))
    wobble = np.cumsum(rng.normal(0.0, 0.05 + 0.12 * (5 - handling), size=n))
    wobble = 0.6 * np.tanh(wobble) + 0.3 * (5 - handling) / 4 * np.sin(np.arange(n) * 0.9)
    gy, gx = np.mgrid[0:height, 0:wide].astype(np.float32) + 0.5
    entry = np.array([wide + 2.0, -2.0], np.float32)
    marks = sorted(
        [
            (int(at), 0.8 * np.clip(2.0 - np.hypot(gx - x, gy - y), 0, 1), _BRUISE)
            for (x, y), at in zip(bruises, bruise_at, strict=True)
        ]
        + [
            (int(at), np.clip(1.6 - np.hypot(gx - x, gy - y), 0, 1), _STITCH)
            for (x, y), at in zip(stitches, visited, strict=True)
        ],
        key=lambda m: m[0],
    )
    out = np.empty((n, height, wide, 3), np.uint8)
    canvas = base  # the tissue with the marks made so far (they stay)
    for f in range(n):
        while marks and marks[0][0] <= f:
            _, cover, colour = marks.pop(0)
            _paint(canvas, cover, colour)
        img = canvas.copy()
        _paint(img, _segment_cover(gx, gy, entry, tip[f], 1.3), _METAL)
        angle = 0.8 + wobble[f]
        needle_end = tip[f] + 4.0 * np.array([np.cos(angle), np.sin(angle)], np.float32)
        _paint(img, _segment_cover(gx, gy, tip[f], needle_end, 0.6), _NEEDLE)
        out[f] = np.clip(img + 0.5, 0, 255).astype(np.uint8)
    return out


# -- writing --------------------------------------------------------------------------------


def _codec() -> tuple[str, dict[str, str]]:
    import av

    if "libx264" in av.codecs_available:
        return "libx264", {"crf": "12", "preset": "ultrafast", "bf": "0", "g": "16", "threads": "1"}
    return "mpeg4", {"qscale": "2", "bf": "0", "g": "16", "threads": "1"}


def _write_video(path: Path, frames: np.ndarray, fps: int) -> None:
    import av

    codec, options = _codec()
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.height, stream.width = frames.shape[1:3]
        stream.pix_fmt = "yuv420p"
        stream.options = options
        for frame in frames:
            for packet in stream.encode(
                av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
            ):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def _check_arguments(
    out: Path, trials: int, width: int, height: int, frames: tuple[int, int], overwrite: bool
) -> None:
    if width < 32 or height < 32 or width % 32 or height % 2:
        raise DataError(
            f"synthetic JIGSAWS frames must be at least 32x32, the width a multiple of 32 and "
            f"the height even, got {width}x{height}"
        )
    if not NUM_FOLDS * 2 <= trials <= MAX_TRIALS:
        raise DataError(f"trials per task must be {NUM_FOLDS * 2}-{MAX_TRIALS}, got {trials}")
    if not 16 <= frames[0] <= frames[1]:
        raise DataError(f"need 16 <= min_frames <= max_frames, got {frames[0]} and {frames[1]}")
    if out.exists() and not (overwrite and (out / MARKER).is_file()):
        hint = " (it is not a synthetic dataset)" if overwrite else " (use overwrite)"
        raise DataError(f"output folder already exists: {out}{hint}")


def generate_jigsaws(
    out_dir: str | Path,
    trials_per_task: int = 24,
    seed: int = 0,
    size: tuple[int, int] = (64, 48),
    *,
    min_frames: int = 60,
    max_frames: int = 120,
    fps: int = 10,
    overwrite: bool = False,
) -> JigsawsSummary:
    """Write a synthetic JIGSAWS dataset (MUSDL's pickles, the release's video layout).

    The folder is built in a temporary sibling folder and renamed into place, so a crash or a
    concurrent run never leaves a half-written dataset.

    Args:
        out_dir: Output folder (must not exist, or be an earlier synthetic dataset with
            ``overwrite``).
        trials_per_task: Trials per task, 8-200.
        seed: Random seed; the same seed gives the same trials and frames.
        size: Frame ``(width, height)``: width a multiple of 32, height even, both >= 32.
        min_frames: Frames of the fastest trial (>= 16).
        max_frames: Frames of the slowest trial.
        fps: Frame rate written in the videos.
        overwrite: Replace an earlier synthetic dataset at ``out_dir`` (the whole folder; refused
            when it holds files the generator did not write).

    Returns:
        A :class:`JigsawsSummary`.

    Raises:
        DataError: On bad arguments or if ``out_dir`` exists and may not be replaced.
    """
    width, height = int(size[0]), int(size[1])
    out = Path(out_dir)
    _check_arguments(out, trials_per_task, width, height, (min_frames, max_frames), overwrite)
    t_start = time.perf_counter()
    trials, splits = plan_trials(trials_per_task, seed, min_frames, max_frames)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        for trial in trials:
            frames = render_trial(trial, width, height, seed)
            folder = tmp / trial.task / "video"
            _write_video(folder / f"{trial.name}_capture1.mp4", frames[:, :, :width], fps)
            _write_video(folder / f"{trial.name}_capture2.mp4", frames[:, :, CAMERA_SHIFT:], fps)
        _dump(tmp / "label.pkl", {t.name: list(t.items) for t in trials})
        _dump(tmp / "splits.pkl", splits)
        meta = {
            "synthetic": True,
            "generator": "aqa_framework.synth.jigsaws",
            "version": GENERATOR_VERSION,
            "trials_per_task": trials_per_task,
            "seed": seed,
            "size": [width, height],
            "min_frames": min_frames,
            "max_frames": max_frames,
            "fps": fps,
            "codec": _codec()[0],
            "trials": {
                t.name: {"items": t.items, "skill": t.skill, "frames": t.frames} for t in trials
            },
        }
        (tmp / "README.md").write_text(_README.format(**meta), encoding="utf-8")
        meta["files"] = sorted(
            [*(f.relative_to(tmp).as_posix() for f in tmp.rglob("*") if f.is_file()), MARKER]
        )
        (tmp / MARKER).write_text(json.dumps(meta, indent=1), encoding="utf-8")
        _move_into_place(tmp, out, overwrite)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    totals = np.array([t.grs for t in trials], dtype=np.float64)
    return JigsawsSummary(
        root=out,
        trials={task: trials_per_task for task in TASKS},
        folds={task: [len(f) for f in folds] for task, folds in splits.items()},
        frames=int(sum(t.frames for t in trials)),
        size=(width, height),
        grs={
            "min": float(totals.min()),
            "max": float(totals.max()),
            "mean": float(totals.mean()),
            "std": float(totals.std()),
        },
        seconds=time.perf_counter() - t_start,
        codec=_codec()[0],
    )


def _dump(path: Path, obj: Any) -> None:
    with path.open("wb") as fh:
        pickle.dump(obj, fh, protocol=3)


def _move_into_place(tmp: Path, out: Path, overwrite: bool) -> None:
    """Rename the finished folder to ``out`` (swapping out an earlier generated one)."""
    if overwrite and out.exists():
        try:
            listed = set(json.loads((out / MARKER).read_text(encoding="utf-8"))["files"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise DataError(f"cannot read {out / MARKER} to replace {out}: {exc}") from exc
        present = {f.relative_to(out).as_posix() for f in out.rglob("*") if f.is_file()}
        foreign = sorted(present - listed)
        if foreign:
            raise DataError(
                f"{out} holds files the generator did not write ({', '.join(foreign[:3])}); "
                "move them away or choose another folder"
            )
        aside = out.with_name(f".{out.name}.old-{os.getpid()}")
        os.replace(out, aside)
        os.replace(tmp, out)
        shutil.rmtree(aside, ignore_errors=True)
        return
    try:
        os.replace(tmp, out)
    except OSError as exc:
        raise DataError(f"output folder appeared while generating: {out} ({exc})") from exc


_README = """# Synthetic JIGSAWS-format data (NOT real surgery)

This folder was written by `aqa data synth --kind jigsaws` / the `synthetic-jigsaws` dataset
(aqa_framework.synth.jigsaws, version {version}): {trials_per_task} cartoon trials per task
(Suturing, Needle_Passing, Knot_Tying) rendered at {size[0]}x{size[1]} pixels with seed {seed},
{min_frames}-{max_frames} frames each, two camera views. `label.pkl` and `splits.pkl` follow
MUSDL's format, so the `jigsaws` dataset reads them unchanged (`root:` this folder,
`layout: videos`, `video_pattern: '{{task}}/video/{{trial}}_{{camera}}.mp4'`).

The six GRS items (1-5) of a trial set what is visible: tissue bruises (respect for tissue),
needle wobble (suture/needle handling), detours and length (time and motion), pauses (flow of
operation), tremor (overall performance) and misplaced stitches (quality of final product).
`synthetic.json` holds every trial's items, latent skill and frame count.

Results on this data say nothing about real surgical skill.
"""
