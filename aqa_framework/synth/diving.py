"""Generate a synthetic diving dataset in the MTL-AQA release format.

The output folder reads exactly like the real release through the ``mtl-aqa`` dataset::

    OUT_DIR/
      final_annotations_dict.pkl   {(event, dive): {start_frame, end_frame, position, ...,
                                    judge_scores}} (judge_scores: float64 array of 7 marks)
      final_captions_dict.pkl      {(event, dive): ["<sos>", ..., "<eos>"]}
      train_split_0.pkl            [(event, dive), ...]
      test_split_0.pkl
      vocab.json                   {"ix_to_word": {...}, "word_to_ix": {...}}
      whole_videos/01.mp4 ...      one video per event, several dives each
      synthetic.json               generator settings and each dive's judges and faults
      README.md                    says that the data is synthetic

THE DATA IS SYNTHETIC: cartoon divers rendered with numpy (see :mod:`aqa_framework.synth.render`
for what is visible and :mod:`aqa_framework.synth.dives` for how scores and captions are
made). It exists so that the quickstart and the tests run anywhere without downloading
broadcasts; results on it say nothing about real diving.

Generation is deterministic for a seed (the videos' pixels; encoder bytes may differ between
library versions) and fast: one process renders and encodes a few hundred dives per ten
seconds at 96x72.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from aqa_framework.errors import DataError
from aqa_framework.synth.dives import POSITIONS, ROTATIONS, Dive, sample_dive
from aqa_framework.synth.render import WINDOW, Scene

__all__ = ["GENERATOR_VERSION", "EventPlan", "SynthSummary", "generate_diving", "plan_dataset"]

GENERATOR_VERSION = 5
"""Bumped whenever the same settings would produce different data (5: ``judge_scores``)."""

MARKER = "synthetic.json"


@dataclass
class EventPlan:
    """One event video: its dives and where each dive's segment and window lie.

    Attributes:
        event: Event number (the video is ``whole_videos/{event:02d}.mp4``).
        dives: The dives, in order.
        segments: ``(first_frame, n_frames, window_start)`` of each dive's segment, where
            ``window_start`` is the absolute index of the window's first frame.
    """

    event: int
    dives: list[Dive]
    segments: list[tuple[int, int, int]] = field(default_factory=list)

    @property
    def num_frames(self) -> int:
        """Frames in the event video."""
        first, n, _ = self.segments[-1]
        return first + n


@dataclass
class SynthSummary:
    """What :func:`generate_diving` wrote.

    Attributes:
        root: The output folder.
        dives: Number of dives.
        events: Number of event videos.
        train: Train keys.
        test: Test keys.
        frames: Frames in all videos.
        size: ``(width, height)``.
        seconds: Wall time of the generation.
        vocab_size: Words in ``vocab.json``.
        scores: ``min``, ``max``, ``mean``, ``std`` of the final scores.
        classes: Field -> counts per class.
        codec: Video codec used.
        generated: False if the folder already existed and was reused.
    """

    root: Path
    dives: int
    events: int
    train: int
    test: int
    frames: int
    size: tuple[int, int]
    seconds: float
    vocab_size: int
    scores: dict[str, float]
    classes: dict[str, list[int]]
    codec: str
    generated: bool = True


def plan_dataset(
    dives: int, seed: int, dives_per_event: int = 30
) -> tuple[list[EventPlan], np.random.Generator]:
    """Draw every dive and lay the dives out in event videos (deterministic for a seed).

    Returns:
        The event plans and the generator, positioned after the draws (for the split).
    """
    rng = np.random.default_rng(seed)
    all_dives = [sample_dive(rng) for _ in range(dives)]
    events: list[EventPlan] = []
    for e, first in enumerate(range(0, dives, dives_per_event), start=1):
        plan = EventPlan(event=e, dives=all_dives[first : first + dives_per_event])
        cursor = 0
        for _ in plan.dives:
            gap = int(rng.integers(4, 20))  # empty pool before the window (>= jitter)
            tail = int(rng.integers(3, 10))  # after the window
            n = gap + WINDOW + tail
            plan.segments.append((cursor, n, cursor + gap))
            cursor += n
        events.append(plan)
    return events, rng


def _codec() -> tuple[str, dict[str, str]]:
    import av

    if "libx264" in av.codecs_available:
        return "libx264", {"crf": "12", "preset": "ultrafast", "bf": "0", "g": "32", "threads": "1"}
    return "mpeg4", {"qscale": "2", "bf": "0", "g": "32", "threads": "1"}


def render_event(plan: EventPlan, width: int, height: int, seed: int) -> np.ndarray:
    """All frames ``(F, H, W, 3)`` of one event video (used by tests to check decoding)."""
    scene = Scene(width, height, np.random.default_rng([seed, plan.event]))
    parts = [
        scene.render(dive, n, window - first)
        for dive, (first, n, window) in zip(plan.dives, plan.segments, strict=True)
    ]
    return np.concatenate(parts)


def _write_event(args: tuple[EventPlan, int, int, int, str, int]) -> int:
    import av

    plan, width, height, seed, path, fps = args
    codec, options = _codec()
    scene = Scene(width, height, np.random.default_rng([seed, plan.event]))
    container = av.open(path, mode="w")
    try:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height = width, height
        stream.pix_fmt = "yuv420p"
        stream.options = options
        for dive, (first, n, window) in zip(plan.dives, plan.segments, strict=True):
            for frame in scene.render(dive, n, window - first):
                for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                    container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    finally:
        container.close()
    return plan.num_frames


def _write_events(jobs: list[tuple], workers: int) -> int:
    if workers > 1 and len(jobs) > 1:
        import multiprocessing
        from concurrent.futures.process import BrokenProcessPool

        ctx = multiprocessing.get_context("spawn")
        try:
            with ProcessPoolExecutor(min(workers, len(jobs)), mp_context=ctx) as pool:
                return sum(pool.map(_write_event, jobs))
        except BrokenProcessPool:  # e.g. a __main__ that spawn cannot re-import: go serial
            pass
    return sum(_write_event(job) for job in jobs)


@dataclass(frozen=True)
class DivingOptions:
    """How :func:`generate_diving` lays out and writes the dataset.

    Attributes:
        dives_per_event: Dives per event video.
        test_fraction: Share of dives in the test split.
        fps: Frame rate written in the videos.
        workers: Processes rendering event videos in parallel.
        overwrite: Replace an existing synthetic dataset at the output folder. Only the files
            the generator wrote there (listed in its ``synthetic.json``) are replaced or
            removed; files added to the folder since are kept.
    """

    dives_per_event: int = 30
    test_fraction: float = 0.25
    fps: int = 25
    workers: int = 1
    overwrite: bool = False


def generate_diving(
    out_dir: str | Path,
    dives: int = 300,
    seed: int = 0,
    size: tuple[int, int] = (96, 72),
    **options: Any,
) -> SynthSummary:
    """Write a synthetic diving dataset in the MTL-AQA format.

    The folder is built in a temporary sibling folder and renamed into place, so a crash or a
    concurrent run never leaves a half-written dataset.

    Args:
        out_dir: Output folder (must not exist, or be an earlier synthetic dataset with
            ``overwrite``).
        dives: Number of dives (>= 4).
        seed: Random seed; the same seed gives the same dives and frames.
        size: Frame ``(width, height)``, even numbers >= 32.
        **options: The fields of :class:`DivingOptions`, by name: ``dives_per_event``,
            ``test_fraction``, ``fps``, ``workers``, ``overwrite``.

    Returns:
        A :class:`SynthSummary`.

    Raises:
        DataError: On bad arguments or if ``out_dir`` exists and may not be replaced.
        TypeError: For an option :class:`DivingOptions` does not have.
    """
    opts = DivingOptions(**options)
    width, height = int(size[0]), int(size[1])
    out = Path(out_dir)
    _check_arguments(out, dives, width, height, opts)

    t_start = time.perf_counter()
    events, rng = plan_dataset(dives, seed, opts.dives_per_event)
    keys = [(p.event, i + 1) for p in events for i in range(len(p.dives))]
    order = rng.permutation(len(keys))
    n_test = min(len(keys) - 1, max(1, int(opts.test_fraction * len(keys) + 0.5)))
    test_keys = [keys[i] for i in order[:n_test]]
    train_keys = [keys[i] for i in order[n_test:]]

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        videos = tmp / "whole_videos"
        videos.mkdir()
        jobs = [
            (p, width, height, seed, str(videos / f"{p.event:02d}.mp4"), opts.fps) for p in events
        ]
        frames = _write_events(jobs, opts.workers)
        annotations, captions, details = _annotations(events)
        vocab = _vocab(captions.values())
        _dump(tmp / "final_annotations_dict.pkl", annotations)
        _dump(tmp / "final_captions_dict.pkl", captions)
        _dump(tmp / "train_split_0.pkl", train_keys)
        _dump(tmp / "test_split_0.pkl", test_keys)
        (tmp / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
        codec = _codec()[0]
        meta = {
            "synthetic": True,
            "generator": "aqa_framework.synth.diving",
            "version": GENERATOR_VERSION,
            "dives": dives,
            "seed": seed,
            "size": [width, height],
            "fps": opts.fps,
            "dives_per_event": opts.dives_per_event,
            "test_fraction": opts.test_fraction,
            "codec": codec,
            "details": details,
        }
        _write_description(tmp, meta)
        _move_into_place(tmp, out, opts.overwrite)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise

    return SynthSummary(
        root=out,
        dives=dives,
        events=len(events),
        train=len(train_keys),
        test=len(test_keys),
        frames=frames,
        size=(width, height),
        seconds=time.perf_counter() - t_start,
        vocab_size=len(vocab["ix_to_word"]),
        scores=_score_stats(annotations),
        classes=_class_counts(annotations),
        codec=codec,
    )


def _check_arguments(out: Path, dives: int, width: int, height: int, opts: DivingOptions) -> None:
    """Raise :class:`DataError` for arguments :func:`generate_diving` cannot honour."""
    if width < 32 or height < 32 or width % 2 or height % 2:
        raise DataError(f"synthetic frame size must be even and >= 32x32, got {width}x{height}")
    if dives < 4:
        raise DataError(f"need at least 4 dives for a train and a test split, got {dives}")
    if opts.dives_per_event < 1:
        raise DataError("dives_per_event must be >= 1")
    if not 0.0 < opts.test_fraction < 1.0:
        raise DataError(f"test_fraction must be between 0 and 1, got {opts.test_fraction}")
    if out.exists() and not (opts.overwrite and (out / MARKER).is_file()):
        hint = " (it is not a synthetic dataset)" if opts.overwrite else " (use --overwrite)"
        raise DataError(f"output folder already exists: {out}{hint}")


def _write_description(tmp: Path, meta: dict[str, Any]) -> None:
    """Write the README and the marker file (``meta`` plus the list of files written)."""
    (tmp / "README.md").write_text(_README.format(**meta), encoding="utf-8")
    meta["files"] = sorted(
        [*(f.relative_to(tmp).as_posix() for f in tmp.rglob("*") if f.is_file()), MARKER]
    )
    (tmp / MARKER).write_text(json.dumps(meta, indent=1), encoding="utf-8")


def _move_into_place(tmp: Path, out: Path, overwrite: bool) -> None:
    """Rename the finished folder to ``out`` (replacing the generated files of an old one)."""
    if overwrite and out.exists():
        _replace_generated(tmp, out)
        return
    try:
        os.replace(tmp, out)
    except OSError as exc:
        raise DataError(f"output folder appeared while generating: {out} ({exc})") from exc


def _score_stats(annotations: dict[Any, dict[str, Any]]) -> dict[str, float]:
    scores = np.array([a["final_score"] for a in annotations.values()])
    return {
        "min": float(scores.min()),
        "max": float(scores.max()),
        "mean": float(scores.mean()),
        "std": float(scores.std()),
    }


_FIXED_FILES = (
    "final_annotations_dict.pkl",
    "final_captions_dict.pkl",
    "train_split_0.pkl",
    "test_split_0.pkl",
    "vocab.json",
    "README.md",
    MARKER,
)


def _generated_files(root: Path) -> set[str]:
    """The files (relative paths) an earlier run of the generator wrote into ``root``.

    Its ``synthetic.json`` lists them; one written before the list existed implies the fixed
    names and ``whole_videos/NN.mp4``.
    """
    try:
        listed = json.loads((root / MARKER).read_text(encoding="utf-8")).get("files")
    except (OSError, ValueError, AttributeError):
        listed = None
    if isinstance(listed, list) and all(isinstance(f, str) for f in listed):
        names = set(listed)
    else:
        names = set(_FIXED_FILES)
        videos = root / "whole_videos"
        if videos.is_dir():
            names |= {
                f"whole_videos/{f.name}"
                for f in videos.iterdir()
                if f.suffix == ".mp4" and f.stem.isdigit()
            }
    # never anything outside the folder, whatever the file says
    return {n for n in names if n and not Path(n).is_absolute() and ".." not in Path(n).parts}


def _replace_generated(tmp: Path, out: Path) -> None:
    """Put a freshly generated dataset (``tmp``) in place of an earlier one at ``out``.

    Files the earlier generator wrote are replaced or removed; anything else in ``out`` stays.
    If nothing else is there, the whole folder is swapped at once.
    """
    old = _generated_files(out)
    ours = old | {p.as_posix() for f in old for p in Path(f).parents if p != Path(".")}
    present = {f.relative_to(out).as_posix() for f in out.rglob("*")}
    if present <= ours:  # nothing of the user's: swap the folders
        aside = out.with_name(f".{out.name}.old-{os.getpid()}")
        os.replace(out, aside)
        os.replace(tmp, out)
        shutil.rmtree(aside, ignore_errors=True)
        return
    new = {f.relative_to(tmp).as_posix() for f in tmp.rglob("*") if f.is_file()}
    for name in sorted(new - {MARKER}):  # the marker last: it says the folder is complete
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp / name, out / name)
    for name in sorted(old - new):
        (out / name).unlink(missing_ok=True)
    os.replace(tmp / MARKER, out / MARKER)
    shutil.rmtree(tmp, ignore_errors=True)


def _annotations(
    events: list[EventPlan],
) -> tuple[dict[tuple[int, int], dict], dict[tuple[Any, int], list[str]], dict[str, dict]]:
    annotations: dict[tuple[int, int], dict] = {}
    captions: dict[tuple[Any, int], list[str]] = {}
    details: dict[str, dict] = {}
    for plan in events:
        for i, (dive, (_, _, window)) in enumerate(zip(plan.dives, plan.segments, strict=True)):
            key = (plan.event, i + 1)
            annotations[key] = {
                "primary_view": 0,
                "start_frame": window + dive.lead,
                "end_frame": window + WINDOW,
                "position": dive.position,
                "difficulty": dive.difficulty,
                "armstand": dive.armstand,
                "rotation_type": dive.rotation_type,
                "ss_no": dive.ss_no,
                "tw_no": dive.tw_no,
                "final_score": dive.final_score,
                # the seven marks, as MUSDL's and CoRe's annotation files hold them
                "judge_scores": np.array(dive.judges, dtype=np.float64),
            }
            # the release keys its captions with numpy integers; do the same
            captions[(np.int64(plan.event), i + 1)] = ["<sos>", *dive.caption, "<eos>"]
            info = asdict(dive)
            info.pop("caption")
            info["execution"] = round(dive.execution, 3)
            info["position_name"] = POSITIONS[dive.position]
            info["rotation_name"] = ROTATIONS[dive.rotation_type]
            details[f"{plan.event:02d}_{i + 1:02d}"] = info
    return annotations, captions, details


def _vocab(captions: Any) -> dict[str, dict]:
    words = ["<eos>", "<sos>"]
    seen = set(words)
    for tokens in captions:
        for w in tokens:
            if w not in seen:
                seen.add(w)
                words.append(w)
    return {
        "ix_to_word": {str(i): w for i, w in enumerate(words)},
        "word_to_ix": {w: i for i, w in enumerate(words)},
    }


def _dump(path: Path, obj: Any) -> None:
    with path.open("wb") as fh:
        pickle.dump(obj, fh, protocol=3)


def _class_counts(annotations: dict) -> dict[str, list[int]]:
    sizes = {"position": 3, "armstand": 2, "rotation_type": 4, "ss_no": 10, "tw_no": 8}
    counts = {k: [0] * n for k, n in sizes.items()}
    for a in annotations.values():
        for k in sizes:
            counts[k][a[k]] += 1
    return counts


def default_workers() -> int:
    """Processes worth using for generation: the CPUs this process may run on, at most 4."""
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not on Linux
        n = os.cpu_count() or 1
    return max(1, min(4, n))


_README = """# Synthetic diving data (NOT real diving)

This folder was written by `aqa data synth` / the `synthetic-diving` dataset
(aqa_framework.synth.diving, version {version}): {dives} cartoon dives rendered at
{size[0]}x{size[1]} pixels with seed {seed}. The annotation files follow the MTL-AQA release
format, so the `mtl-aqa` dataset reads them unchanged (`root:` this folder).

Divers differ visibly by position (body shape), armstand start, rotation type (stance and
turning direction), somersaults (total turn) and twists (suit colour flips). Entry angle and
splash size set seven judges' marks (`judge_scores` in the annotations, as in MUSDL's and
CoRe's versions of the files); final score = difficulty x sum of the middle three marks.
Captions are templated descriptions. `synthetic.json` holds every dive's faults and marks.

Results on this data say nothing about real diving.
"""
