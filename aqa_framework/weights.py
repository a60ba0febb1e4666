"""Safe loading of weight files from local disk.

Only two formats are read, neither of which can run code:

* ``.safetensors`` files;
* files written by ``torch.save`` holding tensors only (``.pth``, ``.pt``, ``.pickle`` ...),
  read with ``torch.load(weights_only=True)``. The Sports-1M C3D weights ``c3d.pickle`` and
  the official MTL-AQA checkpoints are of this kind. A file that needs arbitrary Python objects
  to load is refused rather than unpickled.

Key layouts understood besides this project's own: the Sports-1M ``c3d.pickle``
(``conv1.weight`` ... ``fc8.bias``; the fully connected layers are dropped for the pool5
backbone) and the per-module checkpoints of the official MTL-AQA code
(:func:`load_official_mtl_aqa`, or each component's ``pretrained`` param in a spec). The
official caption model has 5779 words, ``vocab.json`` 5781: :func:`fill_vocabulary_rows` fits
it to the larger vocabulary.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from aqa_framework.errors import CheckpointError

if TYPE_CHECKING:
    from torch import Tensor, nn

_WRAPPERS = ("state_dict", "model_state_dict", "model", "module")
_MAX_LISTED = 12
CHECK_READ_LIMIT = 512 * 2**20
"""Bytes up to which :func:`check_weight_file` reads an old-format ``torch.save`` file whole."""


def load_state_dict(path: str | Path) -> dict[str, Tensor]:
    """Read a state dict (name -> tensor) from a local file without executing code.

    ``module.`` prefixes (``nn.DataParallel``) are removed and a dict that wraps the weights
    under ``state_dict`` / ``model`` is unwrapped.

    Args:
        path: A ``.safetensors`` file or a ``torch.save`` file of tensors.

    Returns:
        The tensors on the CPU.

    Raises:
        CheckpointError: If the file is missing, unreadable, holds Python objects other than
            tensors, or is not a mapping of names to tensors.
    """
    p = Path(path).expanduser()
    if not p.is_file():
        raise CheckpointError(f"weight file not found: {p}")
    if p.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            obj: object = load_file(str(p), device="cpu")
        except (SafetensorError, OSError, ValueError) as exc:
            raise CheckpointError(f"{p}: not a readable safetensors file ({exc})") from None
    else:
        obj = _torch_load(p)
    return _as_state_dict(obj, p)


def _torch_load(p: Path, mmap: bool = False) -> object:
    import torch

    try:
        return torch.load(p, map_location="cpu", weights_only=True, mmap=mmap)
    except Exception as exc:  # pickle.UnpicklingError, RuntimeError, EOFError ...
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(
            f"{p}: cannot be loaded safely. Only safetensors files and torch.save files of "
            "plain tensors are read (torch.load with weights_only=True); this one failed "
            f"({first}). If you trust its origin, convert it once to .safetensors "
            "(safetensors.torch.save_file) and point the spec at that file."
        ) from None


def check_weight_file(path: str | Path) -> None:
    """Check that :func:`load_state_dict` can read a weight file, reading as little as possible.

    A ``.safetensors`` file: its header only (names, dtypes, shapes). A ``torch.save`` zip file
    (the format of PyTorch 1.6 and later): its pickled index, with the tensors memory-mapped
    and never read. An older ``torch.save`` file is loaded whole up to
    :data:`CHECK_READ_LIMIT` bytes; a larger one is only checked to be readable. Whether the
    tensors fit the model is left to loading.

    Args:
        path: The weight file.

    Raises:
        CheckpointError: With the message :func:`load_state_dict` would give: the file is
            missing, unreadable, holds Python objects other than tensors, or is not a mapping
            of names to tensors.
    """
    import zipfile

    p = Path(path).expanduser()
    if not p.is_file():
        raise CheckpointError(f"weight file not found: {p}")
    if p.suffix == ".safetensors":
        from safetensors import SafetensorError, safe_open

        try:
            with safe_open(str(p), framework="pt", device="cpu") as f:
                f.keys()
        except (SafetensorError, OSError, ValueError) as exc:
            raise CheckpointError(f"{p}: not a readable safetensors file ({exc})") from None
        return
    try:
        is_zip = zipfile.is_zipfile(p)
        size = p.stat().st_size
        with p.open("rb") as fh:
            fh.read(1)
    except OSError:  # unreadable: loading it gives the message
        is_zip, size = False, 0
    if is_zip:
        _as_state_dict(_torch_load(p, mmap=True), p)
    elif size <= CHECK_READ_LIMIT:
        load_state_dict(p)


def _as_state_dict(obj: object, p: Path) -> dict[str, Tensor]:
    import torch

    for _ in range(2):
        if isinstance(obj, Mapping):
            wrapped = [k for k in _WRAPPERS if isinstance(obj.get(k), Mapping)]
            if wrapped and not any(isinstance(v, torch.Tensor) for v in obj.values()):
                obj = obj[wrapped[0]]
    if not isinstance(obj, Mapping):
        raise CheckpointError(
            f"{p}: expected a mapping of names to tensors, got {type(obj).__name__}"
        )
    bad = [str(k) for k, v in obj.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise CheckpointError(
            f"{p}: entries that are not tensors: {_listed(bad)}; expected a plain state dict"
        )
    out = {str(k): v for k, v in obj.items()}
    if out and all(k.startswith("module.") for k in out):
        out = {k[len("module.") :]: v for k, v in out.items()}
    return out


def _listed(names: Iterable[str]) -> str:
    names = sorted(names)
    shown = ", ".join(names[:_MAX_LISTED])
    more = f" (and {len(names) - _MAX_LISTED} more)" if len(names) > _MAX_LISTED else ""
    return shown + more


def strip_prefix(state_dict: Mapping[str, Tensor], prefix: str) -> dict[str, Tensor]:
    """Keep the entries under ``prefix`` (e.g. ``"backbone."``) with the prefix removed."""
    return {k[len(prefix) :]: v for k, v in state_dict.items() if k.startswith(prefix)}


def c3d_sports1m(state_dict: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Adapt the Sports-1M ``c3d.pickle`` layout to the pool5 C3D backbone.

    Drops ``fc6`` .. ``fc8`` (the backbone ends at pool5) and keeps ``conv1`` .. ``conv5b``.
    """
    return {k: v for k, v in state_dict.items() if not re.match(r"fc[678]\.", k)}


def load_into(
    module: nn.Module,
    state_dict: Mapping[str, Tensor],
    source: str,
    *,
    strict: bool = True,
    ignore_foreign: bool = False,
) -> None:
    """Copy tensors into a module, or say exactly why they do not fit.

    Args:
        module: The module to fill.
        state_dict: Name -> tensor, in the module's own key layout.
        source: What the tensors come from (file and part), for messages.
        strict: Require every key of the module to be present and no extra key.
        ignore_foreign: Drop keys whose top-level name is not a submodule or parameter of
            ``module`` (e.g. the classifier of a pretraining task) instead of reporting them.

    Raises:
        CheckpointError: Listing missing keys, unexpected keys and shape mismatches.
    """
    own = module.state_dict()
    if ignore_foreign:
        tops = {k.split(".", 1)[0] for k in own}
        state_dict = {k: v for k, v in state_dict.items() if k.split(".", 1)[0] in tops}
    missing = [k for k in own if k not in state_dict]
    unexpected = [k for k in state_dict if k not in own]
    mismatched = [
        f"{k} (file {tuple(state_dict[k].shape)}, model {tuple(own[k].shape)})"
        for k in own
        if k in state_dict and tuple(state_dict[k].shape) != tuple(own[k].shape)
    ]
    problems = []
    if mismatched:
        problems.append(f"shape mismatches: {_listed(mismatched)}")
    if strict and missing:
        problems.append(f"missing keys: {_listed(missing)}")
    if strict and unexpected:
        problems.append(f"unexpected keys: {_listed(unexpected)}")
    if strict and not (set(own) & set(state_dict)):
        problems.append("no key in common (is it a checkpoint of a different model?)")
    if problems:
        raise CheckpointError(
            f"{source} does not fit {type(module).__name__}: " + "; ".join(problems)
        )
    module.load_state_dict({k: v for k, v in state_dict.items() if k in own}, strict=False)


# ---------------------------------------------------------------------------------------------
# official MTL-AQA checkpoints

_TRUNK_RENAMES: tuple[tuple[str, str], ...] = (
    (r"^head_conv1\.", "trunk.reduce."),
    (r"^cntxt_conv(\d)\.", r"trunk.context.conv\1."),
    (r"^cntxt_bn(\d)\.", r"trunk.context.bn\1."),
    (r"^head_bn1\.", "trunk.bn."),
    (r"^head_conv2\.", "trunk.conv."),
    (r"^head_bn2\.", "trunk.conv_bn."),
)
_CLASS_FIELD_ALIASES = {"rot_type": ("rotation_type", "rot_type"), "position": ("position",)}

OFFICIAL_MODULES: tuple[str, ...] = (
    "model_CNN",
    "model_my_fc6",
    "model_score_regressor",
    "model_dive_classifier",
    "model_caption",
)
"""Module names of the official MTL-AQA checkpoint files (``<name>_<epoch>.pth``)."""


def _rename(sd: Mapping[str, Tensor], rules: Iterable[tuple[str, str]]) -> dict[str, Tensor]:
    rules = list(rules)
    out = {}
    for k, v in sd.items():
        new = k
        for pattern, repl in rules:
            new, n = re.subn(pattern, repl, new)
            if n:
                break
        out[new] = v
    return out


def _class_field(official: str, fields: Iterable[str]) -> str:
    fields = list(fields)
    for name in _CLASS_FIELD_ALIASES.get(official, (official,)):
        if name in fields:
            return name
    return official


def official_to_head_keys(
    kind: str, state_dict: Mapping[str, Tensor], fields: Iterable[str] = ()
) -> dict[str, Tensor]:
    """Rename an official MTL-AQA head checkpoint to this project's head layout.

    Args:
        kind: ``"score"``, ``"classification"`` or ``"caption"``.
        state_dict: Tensors of ``model_score_regressor``, ``model_dive_classifier`` (or
            ``model_position_classifier``) or ``model_caption``, C3D-AVG or MSCADC flavour.
        fields: The classification head's field names (``rot_type`` maps to
            ``rotation_type`` when the dataset calls it so).

    Returns:
        The renamed tensors.
    """
    rules = list(_TRUNK_RENAMES)
    if kind == "score":
        rules += [(r"^fc_final_score\.", "out."), (r"^head_conv3\.", "out.")]
        return _rename(state_dict, rules)
    if kind == "classification":
        out = {}
        for k, v in _rename(state_dict, rules).items():
            m = re.match(r"^(?:fc|head_conv3)_(\w+?)\.(weight|bias)$", k)
            if m:
                k = f"classifiers.{_class_field(m.group(1), fields)}.{m.group(2)}"
            elif k.startswith("head_pool3_"):
                continue
            out[k] = v
        return out
    if kind == "caption":
        rules += [(r"^rnn1\.", "encoder."), (r"^rnn2\.", "decoder."), (r"^head_conv3\.", "final.")]
        return _rename(state_dict, rules)
    raise ValueError(f"unknown head kind {kind!r}")


OFFICIAL_VOCAB_SIZE = 5779
"""Words of the official MTL-AQA caption model (``vocab_size`` in its ``opts.py``)."""

FILLED_WORD_BIAS = -1.0e4
"""Output bias given to words a caption checkpoint lacks: they are never generated."""

_VOCAB_KEYS = ("embedding.weight", "out.weight", "out.bias")


def fill_vocabulary_rows(state_dict: Mapping[str, Tensor], module: nn.Module) -> dict[str, Tensor]:
    """Fit a caption checkpoint made for fewer words to a caption head with more.

    The official MTL-AQA caption model is built for 5779 words, while the release's
    ``vocab.json`` (which the ``mtl-aqa`` dataset uses, so that every caption index is valid)
    has 5781; the two last words occur in one test caption only. The checkpoint's rows fill
    the first rows of the word embedding and of the output layer; each extra word keeps the
    head's own embedding row and gets output weights 0 and bias :data:`FILLED_WORD_BIAS`, so
    its probability is 0 (below float precision) and the head generates exactly what the
    official model generates. Fine-tuning can still learn the extra words.

    Args:
        state_dict: Caption head tensors (this project's key layout).
        module: The caption head to be loaded.

    Returns:
        The tensors, with ``embedding.weight``, ``out.weight`` and ``out.bias`` padded where
        the file has fewer rows than the head and the other dimensions agree (else unchanged,
        so that loading reports the mismatch).
    """
    import torch

    own = module.state_dict()
    present = [k for k in _VOCAB_KEYS if k in state_dict and k in own]
    rows = {state_dict[k].shape[0] for k in present}
    if not present or len(rows) != 1:
        return dict(state_dict)
    n = rows.pop()
    if any(
        n >= own[k].shape[0] or tuple(state_dict[k].shape[1:]) != tuple(own[k].shape[1:])
        for k in present
    ):
        return dict(state_dict)
    out = dict(state_dict)
    with torch.no_grad():
        for k in present:
            filled = own[k].detach().clone()
            if k != "embedding.weight":
                filled[n:] = FILLED_WORD_BIAS if k == "out.bias" else 0.0
            filled[:n] = state_dict[k].to(filled.dtype)
            out[k] = filled
    return out


def load_official_mtl_aqa(model: nn.Module, checkpoints: Mapping[str, str | Path]) -> list[str]:
    """Load the per-module checkpoints of the official MTL-AQA code into a model.

    The official code saves each module separately (``model_CNN_<epoch>.pth``,
    ``model_my_fc6_<epoch>.pth``, ``model_score_regressor_<epoch>.pth``,
    ``model_dive_classifier_<epoch>.pth`` / ``model_position_classifier_<epoch>.pth``,
    ``model_caption_<epoch>.pth``). Build the matching model first (``c3d`` + ``average``
    with ``shared_fc: 4096`` + fc heads, or ``mscadc`` + ``identity`` + conv heads). A spec
    does the same with each component's ``pretrained`` param. The 5779-word caption model
    loads into the 5781-word head of the ``mtl-aqa`` dataset (:func:`fill_vocabulary_rows`).

    Args:
        model: A :class:`~aqa_framework.model.MultitaskModel`.
        checkpoints: Official module name (``model_CNN`` ...; ``model_position_classifier`` is
            accepted for the classifier) -> file.

    Returns:
        What was loaded, e.g. ``["backbone", "aggregator", "heads.score"]``.

    Raises:
        CheckpointError: For unknown module names, a module the model lacks, or keys that
            do not fit.
    """
    kinds = {"score": "model_score_regressor", "classification": "model_dive_classifier",
             "caption": "model_caption"}
    by_official: dict[str, tuple[str, nn.Module]] = {
        "model_CNN": ("backbone", model.backbone),
        "model_my_fc6": ("aggregator", model.aggregator),
    }
    for task, head in model.heads.items():
        kind = type(head).name
        if kind in kinds and kinds[kind] not in by_official:
            by_official[kinds[kind]] = (f"heads.{task}", head)
    loaded = []
    for name, path in checkpoints.items():
        key = "model_dive_classifier" if name == "model_position_classifier" else name
        if key not in OFFICIAL_MODULES:
            raise CheckpointError(
                f"unknown official module {name!r}; expected one of {', '.join(OFFICIAL_MODULES)}"
            )
        if key not in by_official:
            raise CheckpointError(f"{path}: the model has no part that takes {name!r}")
        part, module = by_official[key]
        sd = load_state_dict(path)
        if key == "model_CNN":
            sd = c3d_sports1m(sd)
        elif key != "model_my_fc6":
            fields = list(getattr(module, "fields", ()))
            sd = fill_vocabulary_rows(official_to_head_keys(type(module).name, sd, fields), module)
        load_into(module, sd, source=f"{path} ({name} -> {part})")
        loaded.append(part)
    return loaded
