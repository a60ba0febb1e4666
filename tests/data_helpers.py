"""Helpers for the data tests: videos whose frames encode their index, release-format files."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np

BITS = 16
COLS, ROWS = 8, 2
W, H = 64, 32  # 8 x 2 blocks of 8 x 16 pixels, one bit each


def index_frame(i: int) -> np.ndarray:
    """A 64x32 RGB frame whose blocks spell ``i`` in binary (white = 1)."""
    frame = np.zeros((H, W, 3), np.uint8)
    bw, bh = W // COLS, H // ROWS
    for b in range(BITS):
        if (i >> b) & 1:
            r, c = divmod(b, COLS)
            frame[r * bh : (r + 1) * bh, c * bw : (c + 1) * bw] = 255
    return frame


def decode_index(frame: np.ndarray) -> int:
    """Read back the index of an (H, W, 3) uint8 frame written by :func:`index_frame`."""
    bw, bh = frame.shape[1] // COLS, frame.shape[0] // ROWS
    value = 0
    for b in range(BITS):
        r, c = divmod(b, COLS)
        block = frame[r * bh + 3 : (r + 1) * bh - 3, c * bw + 2 : (c + 1) * bw - 2]
        if block.mean() > 127:
            value |= 1 << b
    return value


def decode_clips(video) -> np.ndarray:
    """Indices of every frame of a ``(N, C, T, H, W)`` float video in [0, 1] -> ``(N, T)``."""
    arr = (video.permute(0, 2, 3, 4, 1).numpy() * 255).round().astype(np.uint8)
    return np.array([[decode_index(f) for f in clip] for clip in arr])


def write_index_video(path: Path, n_frames: int) -> Path:
    """An mp4 of ``n_frames`` index-encoded frames (PyAV, libx264 or mpeg4)."""
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    codec = "libx264" if "libx264" in av.codecs_available else "mpeg4"
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream(codec, rate=25)
        stream.width, stream.height, stream.pix_fmt = W, H, "yuv420p"
        stream.options = (
            {"preset": "ultrafast", "crf": "10", "g": "16"} if codec == "libx264" else {}
        )
        for i in range(n_frames):
            frame = av.VideoFrame.from_ndarray(index_frame(i), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def write_index_frames(
    folder: Path, n_frames: int, pattern: str = "{index:06d}.jpg", first: int = 1
) -> Path:
    """A folder of ``n_frames`` index-encoded JPEG frames named by ``pattern``."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n_frames):
        Image.fromarray(index_frame(i)).save(folder / pattern.format(index=i + first), quality=95)
    return folder


def annotation(end_frame: int, score: float = 70.0, **fields: int) -> dict:
    """One release-format annotation."""
    ann = {
        "primary_view": 0,
        "start_frame": end_frame - 100,
        "end_frame": end_frame,
        "position": 1,
        "difficulty": 3.0,
        "armstand": 0,
        "rotation_type": 2,
        "ss_no": 7,
        "tw_no": 0,
        "final_score": score,
    }
    ann.update(fields)
    return ann


def write_release(
    root: Path,
    annotations: dict,
    captions: dict,
    train: list,
    test: list,
    words: list[str] | None = None,
) -> Path:
    """Write the five MTL-AQA release files into ``root``."""
    root.mkdir(parents=True, exist_ok=True)
    if words is None:
        words = ["<eos>", "<sos>"] + sorted(
            {w for toks in captions.values() for w in toks} - {"<eos>", "<sos>"}
        )
    for name, obj in [
        ("final_annotations_dict.pkl", annotations),
        ("final_captions_dict.pkl", captions),
        ("train_split_0.pkl", train),
        ("test_split_0.pkl", test),
    ]:
        (root / name).write_bytes(pickle.dumps(obj, protocol=3))
    vocab = {
        "ix_to_word": {str(i): w for i, w in enumerate(words)},
        "word_to_ix": {w: i for i, w in enumerate(words)},
    }
    (root / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    return root
