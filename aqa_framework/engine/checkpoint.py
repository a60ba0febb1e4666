"""Checkpoints that are safe to load and safe to write.

A checkpoint is a folder::

    checkpoints/last/
      model.safetensors     the model weights (safetensors; loadable without this framework)
      state.safetensors     tensors of the training state (optimizer moments, RNG states)
      checkpoint.json       spec, dataset targets, epoch, metrics, best-so-far, the rest of the
                            training state, and the SHA-256 of both tensor files

Nothing is pickled, so loading an untrusted checkpoint cannot run code. A checkpoint is written
into a temporary folder (a name unique to the writing process) and moved into place with
``os.replace``; a crash at any moment leaves the previous complete checkpoint (``last`` or, for
an instant, ``last.prev``) readable. ``best`` holds copies of its files, not links to those of
``last``, so damage to one never reaches the other. The folder is self-contained:
``aqa predict`` needs nothing else.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from aqa_framework import jsonio
from aqa_framework.engine.state_codec import decode, encode
from aqa_framework.errors import CheckpointError

FORMAT = "aqa-checkpoint"
VERSION = 1
META_FILE = "checkpoint.json"
MODEL_FILE = "model.safetensors"
STATE_FILE = "state.safetensors"
CHECKPOINTS_DIR = "checkpoints"


@dataclass
class Checkpoint:
    """A loaded checkpoint.

    Attributes:
        path: The checkpoint folder.
        meta: The JSON metadata (``epoch``, ``spec``, ``targets``, ``metrics``, ``best``, ...).
        model_state: Weights by parameter name.
        training_state: Optimizer, scheduler, scaler and RNG states, if loaded.
    """

    path: Path
    meta: dict[str, Any]
    model_state: dict[str, torch.Tensor]
    training_state: dict[str, Any] | None = field(default=None)

    @property
    def epoch(self) -> int:
        """Number of completed epochs."""
        return int(self.meta["epoch"])

    @property
    def spec(self) -> dict[str, Any]:
        """The resolved spec (with defaults) as a raw mapping."""
        return self.meta["spec"]

    @property
    def targets(self):
        """The dataset's :class:`~aqa_framework.targets.Targets`."""
        from aqa_framework.targets import Targets

        return Targets.model_validate(self.meta["targets"])


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _fsync(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _unshared(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """CPU, contiguous tensors, each with storage of its own (safetensors rejects sharing)."""
    out: dict[str, torch.Tensor] = {}
    seen: set[int] = set()
    for k, v in state.items():
        t = v.detach().to("cpu").contiguous()
        storage = t.untyped_storage()
        if t.numel() and (storage.data_ptr() in seen or storage.nbytes() != t.nbytes):
            t = t.clone()
        seen.add(t.untyped_storage().data_ptr())
        out[k] = t
    return out


def _write_folder(
    folder: Path,
    model_state: Mapping[str, torch.Tensor],
    meta: dict[str, Any],
    training_state: Any | None,
) -> None:
    from safetensors.torch import save_file

    folder.mkdir(parents=True)
    files: dict[str, str] = {}
    save_file(_unshared(model_state), str(folder / MODEL_FILE))
    files[MODEL_FILE] = _sha256(folder / MODEL_FILE)
    doc = {"format": FORMAT, "version": VERSION, **meta}
    if training_state is not None:
        tree, tensors = encode(training_state, "state")
        save_file(tensors, str(folder / STATE_FILE))
        files[STATE_FILE] = _sha256(folder / STATE_FILE)
        doc["training_state"] = tree
    doc["files"] = files
    (folder / META_FILE).write_text(jsonio.dumps(doc, indent=1), encoding="utf-8")
    for name in (*files, META_FILE):
        _fsync(folder / name)
    _fsync(folder)


_TMP_NAME = re.compile(r"^\.(?P<name>.+)\.tmp(?:-(?P<pid>\d+)-[0-9a-f]+)?$")


def _temporary(directory: Path, name: str) -> Path:
    """A temporary folder name for checkpoint ``name`` that no other writer can pick."""
    _remove_stale_temporaries(directory, name)
    return directory / f".{name}.tmp-{os.getpid()}-{secrets.token_hex(4)}"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # e.g. another user's process
        return True
    return True


def _remove_stale_temporaries(directory: Path, name: str) -> None:
    """Remove temporaries of ``name`` left by writers that died (or by older versions)."""
    if not directory.is_dir():
        return
    for p in directory.iterdir():
        m = _TMP_NAME.match(p.name)
        if m is None or m["name"] != name:
            continue
        if m["pid"] is None or (int(m["pid"]) != os.getpid() and not _pid_alive(int(m["pid"]))):
            shutil.rmtree(p, ignore_errors=True)


def remove_temporaries(directory: str | Path) -> None:
    """Remove every checkpoint temporary in a ``checkpoints`` folder.

    Only call it while holding the run folder's lock (no other writer can be at work).
    """
    directory = Path(directory)
    if not directory.is_dir():
        return
    for p in directory.iterdir():
        if _TMP_NAME.match(p.name):
            shutil.rmtree(p, ignore_errors=True)


def _swap_into_place(src: Path, dst: Path) -> None:
    """Move a complete folder to ``dst``; ``dst.prev`` holds the old one for an instant."""
    prev = dst.with_name(dst.name + ".prev")
    if prev.exists() and dst.exists():
        shutil.rmtree(prev)
    if dst.exists():
        if prev.exists():
            shutil.rmtree(prev)
        os.replace(dst, prev)
    os.replace(src, dst)
    _fsync(dst.parent)
    if prev.exists():
        shutil.rmtree(prev, ignore_errors=True)


def save_checkpoint(
    directory: str | Path,
    name: str,
    model_state: Mapping[str, torch.Tensor],
    meta: dict[str, Any],
    training_state: Any | None = None,
    also_as: tuple[str, ...] = (),
) -> Path:
    """Write a checkpoint folder atomically.

    Args:
        directory: The ``checkpoints`` folder of a run.
        name: Checkpoint name (``last``).
        model_state: The model's ``state_dict()``.
        meta: JSON-able metadata; must hold ``epoch``, ``spec`` and ``targets``.
        training_state: Optimizer/scheduler/RNG states (tensors allowed), or ``None``.
        also_as: Further names that get a copy of the same files (``best``).

    Returns:
        The checkpoint folder.
    """
    for key in ("epoch", "spec", "targets"):
        if key not in meta:
            raise ValueError(f"checkpoint metadata needs {key!r}")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tmp = _temporary(directory, name)
    try:
        _write_folder(tmp, model_state, meta, training_state)
        dst = directory / name
        _swap_into_place(tmp, dst)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    for alias in also_as:
        copy_checkpoint(directory, name, alias)
    return dst


def copy_checkpoint(directory: str | Path, src: str, dst: str) -> Path:
    """Copy checkpoint ``src`` to a second name ``dst`` atomically.

    The files are copied, not hard-linked: a file damaged in one checkpoint (a disk error, an
    edit) must not damage the other.

    Returns:
        The ``dst`` folder.
    """
    directory = Path(directory)
    source = directory / src
    tmp = _temporary(directory, dst)
    try:
        tmp.mkdir()
        for f in source.iterdir():
            shutil.copyfile(f, tmp / f.name)
            _fsync(tmp / f.name)
        _fsync(tmp)
        _swap_into_place(tmp, directory / dst)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return directory / dst


def checkpoint_epoch(path: str | Path) -> int | None:
    """The epoch recorded in a checkpoint folder, or ``None`` if there is none readable."""
    folder = _candidate(Path(path))
    if folder is None:
        return None
    try:
        return int(json.loads((folder / META_FILE).read_text(encoding="utf-8"))["epoch"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _candidate(folder: Path) -> Path | None:
    if (folder / META_FILE).is_file():
        return folder
    prev = folder.with_name(folder.name + ".prev")
    if (prev / META_FILE).is_file():
        return prev
    return None


def find_checkpoint(path: str | Path, prefer: tuple[str, ...] = ("best", "last")) -> Path:
    """The checkpoint folder a user means by a path.

    Args:
        path: A checkpoint folder, or a run folder (its ``checkpoints/<name>`` is used, the
            first of ``prefer`` that exists).
        prefer: Checkpoint names to try in a run folder, in order.

    Raises:
        CheckpointError: If the path does not exist or holds no checkpoint.
    """
    p = Path(path)
    if not p.exists():
        found = _candidate(p)  # a crash may leave only <name>.prev for an instant
        if found is not None:
            return found
        raise CheckpointError(f"no such run folder or checkpoint: {p}")
    if p.is_file():
        if p.name in {META_FILE, MODEL_FILE, STATE_FILE}:
            p = p.parent
        else:
            raise CheckpointError(
                f"{p} is a file; give a run folder or a checkpoint folder (one holding "
                f"{META_FILE} and {MODEL_FILE})"
            )
    found = _candidate(p)
    if found is not None:
        return found
    ckdir = p / CHECKPOINTS_DIR
    if ckdir.is_dir():
        for i, name in enumerate(prefer):
            found = _candidate(ckdir / name)
            later = prefer[i + 1 :]
            if found is not None:
                return found
            if (ckdir / name).exists():
                raise CheckpointError(
                    f"checkpoint {ckdir / name} is damaged (it has no {META_FILE})"
                    + _instead(ckdir, later)
                )
            if name == "best" and later:
                _check_best_not_lost(ckdir, later)
        raise CheckpointError(
            f"run folder {p} has no completed checkpoint yet (looked for "
            f"{', '.join(f'{CHECKPOINTS_DIR}/{n}' for n in prefer)}); a run writes one at the "
            "end of each epoch"
        )
    raise CheckpointError(
        f"{p} is not a run folder (no {CHECKPOINTS_DIR}/ inside) nor a checkpoint folder "
        f"(no {META_FILE} inside)"
    )


def _instead(ckdir: Path, names: tuple[str, ...]) -> str:
    """The hint that names the checkpoint to give instead of a broken preferred one."""
    for name in names:
        if _candidate(ckdir / name) is not None:
            return f"; give {ckdir / name} to use the {name} checkpoint instead"
    return ""


def _check_best_not_lost(ckdir: Path, later: tuple[str, ...]) -> None:
    """Refuse to stand in ``last`` for a ``best`` of another epoch that has gone missing."""
    for name in later:
        folder = _candidate(ckdir / name)
        if folder is None:
            continue
        try:
            meta = json.loads((folder / META_FILE).read_text(encoding="utf-8"))
            selected, epoch = meta["best"]["epoch"], meta["epoch"]
        except (OSError, ValueError, KeyError, TypeError):
            return  # load_checkpoint reports a damaged metadata file
        if selected is not None and selected != epoch:
            raise CheckpointError(
                f"checkpoint {ckdir / 'best'} (the selected epoch {selected}) is missing"
                + _instead(ckdir, later)
                + f" (epoch {epoch})"
            )
        return


def _read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except Exception as exc:  # safetensors raises its own error types
        raise CheckpointError(f"checkpoint file {path} is corrupt: {exc}") from None


def load_checkpoint(path: str | Path, training_state: bool = True) -> Checkpoint:
    """Read and verify a checkpoint folder (or the checkpoint of a run folder).

    Args:
        path: Checkpoint folder or run folder (see :func:`find_checkpoint`).
        training_state: Also load the optimizer/scheduler/RNG states.

    Raises:
        CheckpointError: If files are missing, damaged (checksum mismatch) or of an unknown
            format.
    """
    folder = find_checkpoint(path)
    try:
        return _load(folder, training_state)
    except CheckpointError as exc:
        hint = ""
        if folder.parent.name == CHECKPOINTS_DIR and folder.name.startswith("best"):
            hint = _instead(folder.parent, ("last",))
        if not hint:
            raise
        raise CheckpointError(f"{exc}{hint}") from None


def _load(folder: Path, training_state: bool) -> Checkpoint:
    meta_path = folder / META_FILE
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"checkpoint metadata {meta_path} is corrupt: {exc}") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(f"{meta_path} is not an aqa-framework checkpoint")
    if meta.get("version") != VERSION:
        raise CheckpointError(
            f"{meta_path} has checkpoint format version {meta.get('version')}; this version of "
            f"aqa-framework reads version {VERSION}"
        )
    files = meta.get("files") or {}
    wanted = [MODEL_FILE] + ([STATE_FILE] if training_state else [])
    for name in wanted:
        f = folder / name
        if name not in files:
            raise CheckpointError(f"checkpoint {folder} has no {name} (it holds weights only)")
        if not f.is_file():
            raise CheckpointError(f"checkpoint {folder} is incomplete: {name} is missing")
        if _sha256(f) != files[name]:
            raise CheckpointError(
                f"checkpoint file {f} is corrupt (its SHA-256 does not match {META_FILE})"
            )
    model_state = _read_safetensors(folder / MODEL_FILE)
    state = None
    if training_state:
        tensors = _read_safetensors(folder / STATE_FILE)
        try:
            state = decode(meta.get("training_state"), tensors)
        except (KeyError, ValueError, TypeError) as exc:
            raise CheckpointError(f"training state in {folder} is corrupt: {exc}") from None
    meta.pop("training_state", None)
    for key in ("epoch", "spec", "targets"):
        if key not in meta:
            raise CheckpointError(f"{meta_path} lacks {key!r}")
    return Checkpoint(folder, meta, model_state, state)


def load_weights(model: torch.nn.Module, state: Mapping[str, torch.Tensor], source: Any) -> None:
    """Copy checkpoint weights into a model, with a clear error when they do not fit.

    Raises:
        CheckpointError: Naming missing, unexpected or mis-shaped parameters.
    """
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [
        f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}"
        for k, v in own.items()
        if k in state and tuple(state[k].shape) != tuple(v.shape)
    ]
    if missing or unexpected or shapes:
        parts = []
        for label, items in (
            ("missing", missing),
            ("unexpected", unexpected),
            ("wrong shape", shapes),
        ):
            if items:
                more = f" (+{len(items) - 3} more)" if len(items) > 3 else ""
                parts.append(f"{label}: {', '.join(items[:3])}{more}")
        raise CheckpointError(f"weights in {source} do not fit the model; " + "; ".join(parts))
    model.load_state_dict(dict(state), strict=True)
