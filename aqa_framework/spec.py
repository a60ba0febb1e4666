"""The run spec: a YAML file validated in two passes.

Pass one (torch-free) checks the envelope: ``model``, ``data``, ``train``, ``eval``,
``output``, ``seed``. Pass two (:func:`resolve`) looks each component up in the registry and
validates its ``params`` against the component's own ``Params`` model. Every error carries the
full YAML path of the offending value, e.g. ``model.heads.caption.params.hidden``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from aqa_framework.errors import SpecError
from aqa_framework.yamlio import YAMLProblem, load_yaml, read_yaml_text, short_repr


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class ComponentSpec(_Strict):
    """A component by registry name, with its parameters."""

    name: str = Field(description="Registry name of the component (see `aqa plugins list`).")
    params: dict[str, Any] = Field(
        default_factory=dict, description="Parameters, validated against the component's Params."
    )


class HeadSpec(ComponentSpec):
    """A task head with its weight in the total loss (paper eq. 4)."""

    loss_weight: float = Field(1.0, ge=0, description="Weight of this task's loss in the total.")


class ModelSpec(_Strict):
    """The multitask model: one backbone, one aggregator, one head per task."""

    backbone: ComponentSpec = Field(description="Clip feature extractor.")
    aggregator: ComponentSpec = Field(
        default_factory=lambda: ComponentSpec(name="average"),
        description="Pools clip features into a video feature.",
    )
    heads: dict[str, HeadSpec] = Field(
        min_length=1, description="Task name -> head. Task names are free (score, cls, caption)."
    )


class PartnersSpec(_Strict):
    """Exemplars attached to each sample, drawn from the training samples (CoRe, TSA, TPT)."""

    group_by: str | None = Field(
        None,
        description="Class field or scalar open target an exemplar shares with its sample "
        "(difficulty, dive_number, an action class); null: any training sample.",
    )
    train: int = Field(1, ge=1, description="Exemplars per sample while training.")
    test: int = Field(10, ge=1, description="Exemplars per sample when evaluating (voters).")
    top_up: Literal["nearest", "any", "error"] = Field(
        "nearest",
        description="When a group has too few other training samples: fill up from the "
        "nearest group values ('nearest', numeric groups; else like 'any'), from any other "
        "training sample ('any'), or stop with an error ('error').",
    )
    seed: int | None = Field(
        None, ge=0, description="Seed of the exemplar draws; null: the spec's seed."
    )


class DataSpec(ComponentSpec):
    """The dataset and how it is loaded."""

    batch_size: int = Field(3, ge=1, description="Training batch size (the paper uses 3).")
    eval_batch_size: int | None = Field(
        None, ge=1, description="Evaluation batch size; defaults to batch_size."
    )
    num_workers: int | Literal["auto"] = Field(
        "auto",
        description="DataLoader worker processes per process. 'auto': none on a CPU (training "
        "already uses every core; the frame cache makes loading cheap), on a GPU one per free "
        "CPU core, at most 8.",
    )
    val_fraction: float = Field(
        0.0,
        ge=0.0,
        lt=1.0,
        description="Fraction of the training split held out for epoch selection. 0 selects "
        "on the last epoch and never looks at the test split while training.",
    )
    train_size: int | None = Field(
        None, ge=1, description="Train on a reproducible random subset of this many samples."
    )
    subset_seed: int = Field(0, description="Seed of the train_size subset and the val split.")
    partners: PartnersSpec | None = Field(
        None,
        description="Attach exemplars of known score from the training samples to every "
        "sample (never from val or test, never the sample itself), for heads that compare.",
    )

    @field_validator("num_workers", mode="before")
    @classmethod
    def _workers(cls, v: Any) -> Any:
        if v == "auto" or (isinstance(v, int) and not isinstance(v, bool) and v >= 0):
            return v
        raise ValueError("must be a number of processes >= 0 or 'auto'")


class OptimizerSpec(_Strict):
    """Optimizer, created through timm's ``create_optimizer_v2``."""

    name: str = Field(
        "adam",
        description="timm optimizer name (adam, adamw, momentum, sgd, ...). In timm 'sgd' and "
        "'nesterov' are SGD with Nesterov momentum; 'momentum' is torch's plain momentum SGD.",
    )
    lr: float = Field(1e-4, gt=0, description="Initial learning rate.")
    weight_decay: float = Field(0.0, ge=0, description="Weight decay.")
    momentum: float = Field(0.9, ge=0, description="Momentum (SGD-style optimizers).")
    decay_all: bool = Field(
        False,
        description="Apply weight decay to biases and normalisation weights too, as torch's "
        "optimizers do when given model.parameters(); default: not, as timm's factory does.",
    )


class SchedulerSpec(_Strict):
    """Learning-rate schedule, created through timm's ``create_scheduler_v2``."""

    name: str = Field("none", description="'none' or a timm scheduler (cosine, step, ...).")
    warmup_epochs: int = Field(0, ge=0, description="Linear warm-up epochs.")
    min_lr: float = Field(0.0, ge=0, description="Lowest learning rate.")
    decay_epochs: int = Field(30, ge=1, description="Step scheduler period.")
    decay_rate: float = Field(0.1, gt=0, description="Step scheduler factor.")


class ParamGroupSpec(_Strict):
    """Parameters of some modules trained with their own learning rate or weight decay."""

    modules: list[str] = Field(
        min_length=1,
        description="Dotted module paths of the model (backbone, aggregator, heads.<task>, "
        "heads.<task>.<layer>) or fnmatch patterns over parameter names; a parameter joins the "
        "first group that names it.",
    )
    lr_scale: float = Field(
        1.0, gt=0, description="Learning rate of these parameters = train.optimizer.lr x this."
    )
    weight_decay: float | None = Field(
        None, ge=0, description="Weight decay of these parameters; null: train.optimizer's."
    )


class TrainSpec(_Strict):
    """How the model is trained."""

    epochs: int = Field(100, ge=1, description="Number of epochs.")
    optimizer: OptimizerSpec = Field(default_factory=OptimizerSpec)
    scheduler: SchedulerSpec = Field(default_factory=SchedulerSpec)
    param_groups: list[ParamGroupSpec] = Field(
        default_factory=list,
        description="Modules with their own learning-rate multiplier and weight decay (e.g. "
        "the backbone at 0.1x); parameters no group names use train.optimizer's settings.",
    )
    freeze_bn: bool | list[str] = Field(
        False,
        description="Keep BatchNorm running statistics fixed while training (BatchNorm layers "
        "stay in evaluation mode; their weights still learn): true for every module, or a "
        "list of module paths (e.g. [backbone]).",
    )
    precision: Literal["auto", "fp32", "bf16", "fp16"] = Field(
        "auto",
        description="'auto' is bf16 autocast on a GPU that supports it and on a CPU with native "
        "bf16 (AVX-512 BF16, AMX, Arm BF16), else fp32.",
    )
    device: str = Field("auto", description="'auto', 'cpu', 'cuda' or 'cuda:N'.")
    compile: bool = Field(False, description="Wrap the model in torch.compile.")
    channels_last: bool = Field(
        True,
        description="Store 3D convolutions in channels_last_3d memory format (faster with cuDNN "
        "and with oneDNN on CPUs; values are unchanged up to float rounding).",
    )
    grad_clip: float | None = Field(None, gt=0, description="Clip gradient norm to this value.")
    select_metric: str = Field(
        "score.spearman", description="Metric (task.metric) that picks the best epoch."
    )
    select_mode: Literal["auto", "max", "min"] = Field(
        "auto",
        description="Whether a higher or lower select_metric is better; 'auto' takes what the "
        "task's head declares (metric_directions), else 'min' for error-like metric names "
        "(with l1, l2, mse, mae, error or loss) and 'max' otherwise.",
    )
    select_on: Literal["auto", "val", "test", "last", "last_mean"] = Field(
        "auto",
        description="Split that picks the epoch: 'val' (needs data.val_fraction > 0), 'last' "
        "(the last epoch), 'test' (the optimistic protocol of published code; the report says "
        "so), 'auto' (val when there is a validation split, else last), or 'last_mean' (a "
        "paper protocol, labelled so: the test split is evaluated after each of the last "
        "train.last_epochs epochs and every metric reported is the mean of those values).",
    )
    last_epochs: int = Field(
        10,
        ge=1,
        description="With select_on: last_mean, how many final epochs are evaluated on the "
        "test split and averaged (MUSDL on JIGSAWS: 10); at most train.epochs.",
    )
    max_steps_per_epoch: int | None = Field(
        None, ge=1, description="Stop each epoch after this many steps (quick experiments)."
    )
    checkpoint_every: int = Field(
        1, ge=1, description="Save a resumable checkpoint every N epochs."
    )
    max_nonfinite_steps: int | None = Field(
        10,
        ge=1,
        description="A step whose loss or gradient norm is NaN or infinite never updates the "
        "weights; this many such steps in a row stop the run with an error, keeping the last "
        "checkpoint. null: skip such steps without ever stopping.",
    )


class EvalSpec(_Strict):
    """How the model is evaluated."""

    every: int = Field(1, ge=1, description="Evaluate every N epochs (and after the last).")
    split: str = Field("test", description="Split reported as the final result.")
    track_test: bool = Field(
        False,
        description="Also evaluate the final split at every evaluation epoch and log it to "
        "metrics.jsonl (learning curves only; it never picks the epoch unless "
        "train.select_on is 'test').",
    )
    report_samples: int = Field(
        8, ge=0, description="Generated commentaries shown next to their references in report.md."
    )


class OutputSpec(_Strict):
    """Where the run folder goes."""

    dir: Path = Field(Path("runs"), description="Parent folder of run folders.")
    name: str | None = Field(None, description="Run folder name; defaults to spec name + time.")


class Spec(_Strict):
    """A complete run spec."""

    model: ModelSpec
    data: DataSpec
    train: TrainSpec = Field(default_factory=TrainSpec)
    eval: EvalSpec = Field(default_factory=EvalSpec)
    output: OutputSpec = Field(default_factory=OutputSpec)
    track: list[str | ComponentSpec] = Field(
        default_factory=list,
        description="Experiment trackers that also record the run, each offline: 'tensorboard', "
        "'mlflow', 'csv' (or {name, params}); plugins add more (hook register_trackers).",
    )
    callbacks: list[str] = Field(
        default_factory=list,
        description="Training callbacks of installed plugins to run (registered names, e.g. "
        "'gymnastics.podium'); a plugin's callback never runs unless named here (or it declares "
        "always = True).",
    )
    seed: int = Field(0, description="Seed of every random number generator.")
    description: str = Field("", description="Free text, copied to the report.")

    @field_validator("seed")
    @classmethod
    def _seed_range(cls, v: int) -> int:
        if not 0 <= v < 2**32:
            raise ValueError("seed must be in [0, 2**32)")
        return v


# ---------------------------------------------------------------------------------------------
# loading


def _path_str(loc: Iterable[Any]) -> str:
    return ".".join(str(p) for p in loc)


def errors_from_validation(exc: ValidationError, prefix: str = "") -> list[tuple[str, str]]:
    """Turn a pydantic error into ``(dotted path, message)`` pairs.

    Args:
        exc: The validation error.
        prefix: Path of the validated object inside the spec.
    """
    problems = []
    for err in exc.errors(include_url=False):
        loc = [p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-"))]
        path = _path_str([prefix, *loc] if prefix else loc)
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        elif err["type"] == "missing":
            msg = "required key is missing"
        elif err["type"] == "value_error":
            msg = msg.removeprefix("Value error, ")
        if "input" in err and err["type"] not in {"missing", "extra_forbidden"}:
            msg += f" (got {short_repr(err['input'])})"
        problems.append((path, msg))
    return problems


def flat_paths(d: Any, prefix: str = "") -> dict[str, Any]:
    """A nested mapping as ``{"a.b.c": value}``, the dotted paths ``--set`` uses.

    Lists and empty mappings are values.
    """
    if not isinstance(d, dict):
        return {prefix: d}
    out: dict[str, Any] = {}
    for k, v in d.items():
        path = f"{prefix}.{k}" if prefix else str(k)
        if isinstance(v, dict) and v:
            out.update(flat_paths(v, path))
        else:
            out[path] = v
    return out


def parse_value(text: str) -> Any:
    """Parse an override value as YAML (``3``, ``1e-4``, ``true``, ``[a, b]``, ``null``)."""
    import yaml

    try:
        value = load_yaml(text)
    except yaml.YAMLError:
        return text
    except YAMLProblem as exc:
        raise SpecError([("", f"override value {short_repr(text)}: {exc}")]) from None
    if isinstance(value, str):  # YAML 1.1 reads "3e-4" as a string
        try:
            number = float(value)
        except ValueError:
            return value
        return number if math.isfinite(number) else value  # "nan", "inf": left as text
    return value


def set_path(raw: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """Set the value at a dotted path of a raw spec mapping (in place), creating mappings.

    Args:
        raw: The raw spec mapping.
        path: Dotted path, e.g. ``train.optimizer.lr``.
        value: The value to store (already parsed).

    Raises:
        SpecError: If a step of the path is a value rather than a mapping.
    """
    keys = path.strip().split(".")
    node: Any = raw
    for i, key in enumerate(keys[:-1]):
        nxt = node.get(key) if isinstance(node, dict) else None
        if nxt is None:
            nxt = node[key] = {}
        elif not isinstance(nxt, dict):
            where = ".".join(keys[: i + 1])
            raise SpecError([(where, f"cannot set {path}: {where} is not a mapping")])
        node = nxt
    node[keys[-1]] = value
    return raw


def delete_path(raw: dict[str, Any], path: str) -> dict[str, Any]:
    """Remove the key at a dotted path of a raw spec mapping (in place).

    Used to drop a whole entry, e.g. ``model.heads.caption`` to turn a multitask spec into a
    single-task one; the envelope default (if any) then applies.

    Args:
        raw: The raw spec mapping.
        path: Dotted path of the key to remove.

    Raises:
        SpecError: If the key does not exist (a typo would otherwise go unnoticed).
    """
    keys = path.strip().split(".")
    node: Any = raw
    for i, key in enumerate(keys):
        if not isinstance(node, dict) or key not in node:
            where = ".".join(keys[:i]) or "the spec"
            have = ", ".join(map(str, node)) if isinstance(node, dict) else "not a mapping"
            raise SpecError([(path, f"cannot delete: no key {key!r} in {where} (has: {have})")])
        if i == len(keys) - 1:
            del node[key]
        else:
            node = node[key]
    return raw


HEADS_PATH = ("model", "heads")
"""Where the task heads are: an override that sets a head to ``null`` drops the head."""


def parse_override(item: str) -> tuple[str, Any, bool]:
    """Parse one ``--set`` string: ``a.b.c=value`` or ``~a.b.c``.

    This is the one override dialect of the framework: ``--set``, a sweep's ``set`` and a
    sweep's override sets all mean the same by it (see :func:`apply_override`).

    Args:
        item: The override text.

    Returns:
        ``(path, value, remove)``: the dotted path, the value parsed as YAML
        (:func:`parse_value`; ``None`` for ``~path``) and whether the key is removed.

    Raises:
        SpecError: If the text is neither ``path=value`` nor ``~path``.
    """
    stripped = item.strip()
    if stripped.startswith("~") and "=" not in stripped:
        return (
            _override_path(stripped[1:], f"override {item!r}: ~ must be followed by a.b.c"),
            None,
            True,
        )
    path, sep, value = item.partition("=")
    if not sep or not path.strip():
        raise SpecError(
            [("", f"override {item!r} is not of the form a.b.c=value (or ~a.b.c to remove)")]
        )
    return path.strip(), parse_value(value), False


def override_entry(key: str, value: Any) -> tuple[str, Any, bool]:
    """An override written as a mapping entry (a sweep's override set): ``{a.b.c: value}``.

    ``{~a.b.c: null}`` removes the key, like the ``--set`` string ``~a.b.c``; any other key
    sets its path to ``value`` exactly as ``--set a.b.c=value`` would.

    Args:
        key: The dotted path, with a leading ``~`` to remove the key.
        value: The value (already YAML); must be ``null`` with ``~``.

    Returns:
        ``(path, value, remove)`` as :func:`parse_override`.

    Raises:
        SpecError: If the path is empty or ``~path`` has a value other than ``null``.
    """
    text = str(key).strip()
    if text.startswith("~"):
        if value is not None:
            raise SpecError([(text, "~path removes the key: its value must be null")])
        return (
            _override_path(text[1:], f"override {text!r}: ~ must be followed by a.b.c"),
            None,
            True,
        )
    return (
        _override_path(text, f"override {text!r}: the path must be of the form a.b.c"),
        value,
        False,
    )


def _override_path(path: str, problem: str) -> str:
    path = path.strip()
    if not path or any(not k for k in path.split(".")):
        raise SpecError([("", problem)])
    return path


def apply_override(raw: dict[str, Any], path: str, value: Any, remove: bool = False) -> None:
    """Apply one parsed override to a raw spec mapping (in place).

    ``null`` means what it means in a spec file: the value becomes ``None`` (e.g.
    ``train.max_nonfinite_steps: null``). Setting a head (``model.heads.<task>``) to ``null``
    drops the head, and ``remove`` removes any key so that its default applies; both refuse a
    key that does not exist (a typo would otherwise go unnoticed).

    Args:
        raw: The raw spec mapping.
        path: Dotted path.
        value: The value to store (already parsed).
        remove: Remove the key instead of setting it.

    Raises:
        SpecError: If the path does not apply.
    """
    keys = path.strip().split(".")
    if remove or (value is None and len(keys) == 3 and tuple(keys[:2]) == HEADS_PATH):
        delete_path(raw, path)
    else:
        set_path(raw, path, value)


def apply_overrides(raw: dict[str, Any], overrides: Iterable[str]) -> dict[str, Any]:
    """Apply ``a.b.c=value`` overrides to a raw spec mapping (in place).

    ``~a.b.c`` (no value) removes the key instead, e.g. ``~model.heads.caption`` drops the
    caption head; ``a.b.c=null`` stores ``None``, except that a head set to ``null``
    (``model.heads.caption=null``) is dropped (:func:`apply_override`).

    Raises:
        SpecError: If an override is not of the form ``path=value`` or ``~path``, or a
            ``~path`` names a key that does not exist.
    """
    for item in overrides:
        apply_override(raw, *parse_override(item))
    return raw


def load_raw(path: str | Path) -> dict[str, Any]:
    """Read a YAML spec file into a mapping.

    The file is read with :func:`aqa_framework.yamlio.load_yaml`: at most 1 MB, at most
    100,000 values with aliases expanded, and no mapping may repeat a key.

    Raises:
        SpecError: If the file is missing, too large, not YAML, repeats a key, or is not a
            mapping.
    """
    import yaml

    p = Path(path)
    if not p.is_file():
        raise SpecError([("", f"spec file not found: {p}")])
    try:
        data = load_yaml(read_yaml_text(p))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise SpecError([("", f"not valid YAML{where}: {problem}")], source=str(p)) from None
    except YAMLProblem as exc:
        raise SpecError([(exc.path, exc.message)], source=str(p)) from None
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise SpecError([("", f"cannot read the file: {reason}")], source=str(p)) from None
    if data is None:
        raise SpecError([("", "the spec is empty")], source=str(p))
    if not isinstance(data, dict):
        raise SpecError([("", "the spec must be a mapping at the top level")], source=str(p))
    return data


def _yaml_number(value: float) -> str:
    if math.isnan(value):
        return ".nan"
    return ".inf" if value > 0 else "-.inf"


def nonfinite_values(value: Any, prefix: str = "") -> list[tuple[str, str]]:
    """``(dotted path, message)`` for every NaN or infinite number in a (raw) spec value.

    No number in a spec may be ``.nan`` or ``.inf``: a learning rate, a loss weight or a
    component parameter of that value trains nothing. The walk covers the whole mapping,
    component ``params`` included, whatever the component's own ``Params`` accept.

    Args:
        value: A raw spec mapping, or any part of one.
        prefix: Dotted path of ``value`` inside the spec.
    """
    found: list[tuple[str, str]] = []
    stack: list[tuple[str, Any]] = [(prefix, value)]
    while stack:
        path, node = stack.pop()
        if isinstance(node, float) and not math.isfinite(node):
            found.append((path, f"must be a finite number (got {_yaml_number(node)})"))
        elif isinstance(node, Mapping):
            stack += [(f"{path}.{k}" if path else str(k), v) for k, v in node.items()]
        elif isinstance(node, list | tuple):
            stack += [(f"{path}.{i}" if path else str(i), v) for i, v in enumerate(node)]
    return sorted(found)


def parse_spec(raw: Mapping[str, Any], source: str | None = None) -> Spec:
    """Validate the envelope of a raw spec mapping (pass one, torch-free).

    Besides the envelope's own rules, no number anywhere in the mapping (component
    ``params`` included) may be NaN or infinite (:func:`nonfinite_values`).

    Raises:
        SpecError: Listing every problem with its path.
    """
    problems = nonfinite_values(raw)
    try:
        spec = Spec.model_validate(dict(raw))
    except ValidationError as exc:
        reported = {path for path, _ in problems}
        problems += [p for p in errors_from_validation(exc) if p[0] not in reported]
    if problems:
        raise SpecError(problems, source=source)
    return spec


def load_spec(path: str | Path, overrides: Iterable[str] = ()) -> Spec:
    """Read, override and validate a spec file (pass one).

    Args:
        path: The YAML file.
        overrides: ``a.b.c=value`` strings applied before validation.
    """
    raw = apply_overrides(load_raw(path), overrides)
    return parse_spec(raw, source=str(path))


def json_schema() -> dict[str, Any]:
    """JSON Schema of the spec envelope, for editors."""
    schema = Spec.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "aqa-framework run spec"
    return schema


def dump_spec(spec: Spec) -> str:
    """The spec as YAML, with every default filled in."""
    import yaml

    return yaml.safe_dump(spec.model_dump(mode="json"), sort_keys=False)
