"""Clip features of whole videos in sliding clips: ``aqa features extract``.

:func:`extract_clip_features` runs a backbone over every video of a clip dataset's splits:
clips of ``clip_length`` consecutive frames starting every ``stride`` frames (a video shorter
than one clip gives one clip of its frames resampled), with the dataset's evaluation
transforms (resize, crop, normalisation). Each clip's backbone output, pooled to a vector
(:class:`~aqa_framework.experiments.features.Pooling`), is one row of the video's
``<key>.npy`` ``float32 (L, D)``.

The folder's ``manifest.json`` (:data:`~aqa_framework.data.feature_files.MANIFEST`) records the
backbone, its params, the weight file's SHA-256, clip length, stride, the feature size and,
per video, its status, clips and the SHA-256 of its file. A second run with the same settings
skips the videos whose file is in the manifest with that hash (resumable); other settings are
refused rather than mixed in one folder. The ``features`` dataset reads the folder.

With a :class:`~aqa_framework.experiments.shards.Shard` (``--shard i/n``), ``n`` processes
fill one folder without overlap: shard ``i`` takes the videos at positions ``i, i + n, ...`` of
the ordered list of keys. The manifest is updated under a file lock, records each shard under
``shards`` (``running`` or ``done``) and sets ``complete`` once every video of the job is done.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from aqa_framework.data.feature_files import MANIFEST, read_manifest, sha256_file
from aqa_framework.errors import AQAError, DataError
from aqa_framework.experiments.shards import Shard, locked_json_update, shard_entry
from aqa_framework.files import atomic_file

__all__ = ["ExtractSettings", "ExtractSummary", "clip_starts", "extract_clip_features"]

FORMAT_VERSION = 1


@dataclass(frozen=True)
class ExtractSettings:
    """What makes the features of a folder (every run into it must match).

    Attributes:
        backbone: Registry name of the backbone.
        params: Its params (JSON form, ``pretrained`` excluded).
        weights_sha256: SHA-256 of the weight file, ``None`` for fresh weights.
        clip_length: Frames per clip.
        stride: Frames between the starts of two clips.
        dataset: Registry name of the dataset whose videos are read.
        transform: The dataset's frame settings (resize, crop, mean, std).
    """

    backbone: str
    params: dict[str, Any]
    weights_sha256: str | None
    clip_length: int
    stride: int
    dataset: str
    transform: dict[str, Any]

    def as_dict(self) -> dict[str, Any]:
        """The manifest fields these settings fill (in their JSON form: lists, not tuples)."""
        import json

        return json.loads(json.dumps({
            "format": FORMAT_VERSION,
            "backbone": self.backbone,
            "backbone_params": self.params,
            "weights_sha256": self.weights_sha256,
            "clip_length": self.clip_length,
            "stride": self.stride,
            "dataset": self.dataset,
            "transform": self.transform,
        }, default=str))


@dataclass
class ExtractSummary:
    """What a run did.

    Attributes:
        folder: The output folder.
        written: Keys whose features were computed now.
        skipped: Keys already done (verified through the manifest).
        failed: Key -> why it could not be read.
        feature_dim: Features per clip.
    """

    folder: Path
    written: list[str]
    skipped: list[str]
    failed: dict[str, str]
    feature_dim: int | None


def clip_starts(num_frames: int, clip_length: int, stride: int) -> np.ndarray:
    """First frames of the sliding clips: ``0, stride, ...`` while a whole clip fits.

    A video shorter than one clip has one clip (start 0; its frames are resampled).
    """
    if num_frames <= clip_length:
        return np.zeros(1, dtype=np.int64)
    return np.arange(0, num_frames - clip_length + 1, stride, dtype=np.int64)


def _clip_indices(num_frames: int, starts: np.ndarray, clip_length: int) -> np.ndarray:
    if num_frames < clip_length:
        one = np.round(np.linspace(0, num_frames - 1, clip_length)).astype(np.int64)
        return np.tile(one, (len(starts), 1))
    return starts[:, None] + np.arange(clip_length, dtype=np.int64)[None, :]


def _check_manifest(folder: Path, settings: ExtractSettings) -> dict[str, Any]:
    doc = read_manifest(folder)
    wanted = settings.as_dict()
    if doc is None:
        if folder.is_dir() and any(folder.glob("*.np[yz]")):
            raise AQAError(
                f"{folder} holds feature files but no {MANIFEST}; choose another --out folder"
            )
        return {**wanted, "feature_dim": None, "videos": {}}
    return _matching(folder, doc, wanted)


def _matching(folder: Path, doc: dict[str, Any], wanted: dict[str, Any]) -> dict[str, Any]:
    found = {k: doc.get(k) for k in wanted}
    if found != wanted:
        diff = ", ".join(f"{k}: {found[k]!r} (now {wanted[k]!r})" for k in wanted
                         if found[k] != wanted[k])
        raise AQAError(
            f"{folder} holds features made with other settings ({diff}); choose another --out "
            "folder or delete it"
        )
    doc.setdefault("videos", {})
    return doc


def _done(folder: Path, entry: Mapping[str, Any] | None) -> bool:
    if not entry or entry.get("status") != "done":
        return False
    path = folder / str(entry.get("file", ""))
    return path.is_file() and sha256_file(path) == entry.get("sha256")


def _video_features(
    backbone: Any, loader: Any, source: Path, settings: ExtractSettings, batch_clips: int,
    device: str,
) -> np.ndarray:
    import torch

    from aqa_framework.experiments.features import Pooling

    pooling = Pooling()
    reader = loader.reader(source)
    n = reader.num_frames
    starts = clip_starts(n, settings.clip_length, settings.stride)
    rows = []
    for i in range(0, len(starts), batch_clips):
        chunk = _clip_indices(n, starts[i : i + batch_clips], settings.clip_length)
        prepared = reader.read_prepared(chunk.reshape(-1), loader.transform.prepare)
        clips = loader.transform.finish(prepared, flip=False, clips=(len(chunk),
                                                                     settings.clip_length))
        with torch.inference_mode():
            out = backbone(clips.to(device, torch.float32))
        rows.append(pooling(out).float().cpu().numpy())
    feats = np.concatenate(rows).astype(np.float32)
    if not np.isfinite(feats).all():
        raise DataError(f"{source}: the backbone gave non-finite features")
    return feats


def extract_clip_features(
    backbone: Any,
    datasets: Mapping[str, Any],
    out: str | Path,
    settings: ExtractSettings,
    *,
    batch_clips: int = 32,
    device: str = "cpu",
    progress: Callable[[str, int, int], None] | None = None,
    shard: Shard | None = None,
) -> ExtractSummary:
    """Write one feature file per video of the given splits, and the manifest.

    Args:
        backbone: The backbone (weights loaded), put in eval mode here.
        datasets: Split name -> an opened clip dataset (records with ``key`` and ``source``,
            a ``clip_loader`` for its params).
        out: Output folder (created).
        settings: What makes the features; must match an existing manifest.
        batch_clips: Clips per backbone call.
        device: Where the backbone runs.
        progress: Called as ``progress(key, done, total)`` after each video of this shard.
        shard: The part of the videos this process extracts (default: all of them).

    Returns:
        What was written, skipped and could not be read.

    Raises:
        AQAError: If the folder holds features made with other settings.
    """
    shard = shard or Shard()
    folder = Path(out)
    doc = _check_manifest(folder, settings)
    folder.mkdir(parents=True, exist_ok=True)
    backbone.eval().to(device)
    todo = []
    for split, dataset in datasets.items():
        loader = type(dataset).clip_loader(dataset.params)
        todo += [(split, loader, rec) for rec in dataset.records]
    order = list(dict.fromkeys(rec.key for _s, _l, rec in todo))
    position = {key: i for i, key in enumerate(order)}
    mine = [t for t in todo if shard.owns(position[t[2].key])]
    _record(folder, settings, lambda d: d.setdefault("shards", {}).__setitem__(
        shard.label, shard_entry("running", videos=len(mine))))
    summary = ExtractSummary(folder, [], [], {}, doc.get("feature_dim"))
    for done, (split, loader, rec) in enumerate(mine, start=1):
        if "/" in rec.key or "\\" in rec.key:
            raise DataError(f"sample key {rec.key!r} cannot be a file name")
        if _done(folder, doc["videos"].get(rec.key)):
            summary.skipped.append(rec.key)
        else:
            entry = _extract_one(backbone, loader, rec, settings, folder,
                                 batch_clips=batch_clips, device=device)
            entry["split"] = split
            if entry["status"] == "done":
                summary.written.append(rec.key)
                summary.feature_dim = entry["dim"]
            else:
                summary.failed[rec.key] = entry["error"]
            _record(folder, settings, _set_video(rec.key, entry))
        if progress is not None:
            progress(rec.key, done, len(mine))

    def finish(d: dict[str, Any]) -> None:
        d.setdefault("shards", {})[shard.label] = shard_entry(
            "done", videos=len(mine), written=len(summary.written),
            skipped=len(summary.skipped), failed=len(summary.failed))
        videos = d.get("videos", {})
        d["expected_videos"] = len(order)
        d["complete"] = all((videos.get(k) or {}).get("status") == "done" for k in order)

    _record(folder, settings, finish)
    return summary


def _record(folder: Path, settings: ExtractSettings, change: Callable[[dict], Any]) -> None:
    """Change the manifest under its lock (re-read first: other shards write it too)."""
    wanted = settings.as_dict()

    def update(doc: dict[str, Any]) -> None:
        if not doc:
            doc.update({**wanted, "feature_dim": None, "videos": {}})
        _matching(folder, doc, wanted)
        change(doc)

    locked_json_update(folder / MANIFEST, update)


def _extract_one(
    backbone: Any, loader: Any, rec: Any, settings: ExtractSettings, folder: Path, *,
    batch_clips: int, device: str,
) -> dict[str, Any]:
    """Extract one video and write its file; return its manifest entry."""
    try:
        feats = _video_features(backbone, loader, rec.source, settings, batch_clips, device)
    except DataError as exc:
        return {"status": "failed", "error": str(exc)}
    name = f"{rec.key}.npy"
    with atomic_file(folder / name, "wb") as f:
        np.save(f, feats)
    return {"status": "done", "file": name, "clips": int(feats.shape[0]),
            "sha256": sha256_file(folder / name), "dim": int(feats.shape[1])}


def _set_video(key: str, entry: dict[str, Any]) -> Callable[[dict[str, Any]], None]:
    """A manifest change: the video's entry (and the feature size from a done one)."""
    entry = dict(entry)
    dim = entry.pop("dim", None)

    def change(doc: dict[str, Any]) -> None:
        doc.setdefault("videos", {})[key] = dict(entry)
        if dim is not None:
            doc["feature_dim"] = dim

    return change
