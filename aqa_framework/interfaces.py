"""The four plugin interfaces: Backbone, Aggregator, TaskHead and VideoDataset.

Data flow of a multitask model::

    video (B, N, C, T, H, W)      N clips of T frames per sample
      -> backbone on all B*N clips in one call -> clip features (B, N, *F)
      -> aggregator                            -> video features (B, *G)
      -> each head, on video or clip features  -> outputs, loss, predictions

The builder infers every shape (``in_shape`` arguments exclude the batch dimensions) and hands
each head the dataset's :class:`~aqa_framework.targets.Targets`; nothing about dimensions is
written in a spec. A backbone, aggregator or head whose params declare ``pretrained`` (a local
weight file, ``None`` by default; see :class:`PretrainedWeights`) gets it loaded by the
builder through its ``load_pretrained`` once the model is built.
"""

from __future__ import annotations

import warnings
from abc import ABC, abstractmethod
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import BaseModel
from torch import Tensor, nn
from torch.utils.data import Dataset

from aqa_framework.component import Component, NoParams
from aqa_framework.targets import TargetNeed, Targets

if TYPE_CHECKING:
    from aqa_framework.data.partners import FitData

FeatureLevel = Literal["video", "clips"]
InputKind = Literal["video", "features"]
"""What a sample's ``"video"`` holds: ``"video"`` for clips of frames ``(N, C, T, H, W)``,
``"features"`` for a sequence of pre-extracted clip features ``(L, D)``."""
TargetKind = str
"""``scores``, ``classes``, ``captions`` or an open :class:`~aqa_framework.targets.ArrayTarget`
kind (``judge_scores``, ``sub_scores``, a plugin's own)."""
MetricDirection = Literal["max", "min"]

__all__ = [
    "Aggregator",
    "Backbone",
    "Component",
    "FeatureLevel",
    "InputKind",
    "MetricDirection",
    "NoParams",
    "PretrainedWeights",
    "TargetKind",
    "TaskHead",
    "VideoDataset",
]


def _load_own_layout(module: Component, path: str | Path) -> None:
    from aqa_framework.weights import load_into, load_state_dict

    load_into(module, load_state_dict(path), source=f"{path} ({module.kind} {module.name})")


class PretrainedWeights:
    """Where a backbone, aggregator or head finds the weight file it starts from.

    The parameter named by :attr:`pretrained_param` (``pretrained`` unless a component says
    otherwise) names a local weight file, ``None`` for none. The builder loads it through the
    component's ``load_pretrained`` once the model is built, ``aqa validate`` checks its header,
    ``aqa probe`` loads it into a backbone alone, and a model rebuilt from a checkpoint drops
    it (the checkpoint holds every weight). A component whose ``Params`` do not declare that
    parameter starts from its own initialisation.

    Attributes:
        pretrained_param: Name of the ``Params`` field that names the weight file.
    """

    pretrained_param: ClassVar[str] = "pretrained"

    @classmethod
    def pretrained_file(cls, params: BaseModel) -> str | None:
        """The weight file these params name, or ``None``.

        Args:
            params: Validated :attr:`Params`.

        Returns:
            The value of the :attr:`pretrained_param` field as a string, ``None`` when it is
            empty or the ``Params`` do not declare it.
        """
        field = cls.pretrained_param
        if not field or field not in type(params).model_fields:
            return None
        value = getattr(params, field)
        return str(value) if value else None

    @classmethod
    def without_pretrained(cls, params: BaseModel) -> BaseModel:
        """These params naming no weight file (for a model whose weights come from elsewhere).

        Args:
            params: Validated :attr:`Params`.

        Returns:
            A copy with the :attr:`pretrained_param` field ``None``, or ``params`` itself when
            they name no file.
        """
        if cls.pretrained_file(params) is None:
            return params
        return params.model_copy(update={cls.pretrained_param: None})


class Backbone(Component, PretrainedWeights, nn.Module, ABC):
    """Maps a batch of clips to clip features.

    Subclasses build their layers in ``__init__(params)`` without loading any file (the
    builder may construct them on the ``meta`` device to infer shapes) and load weights in
    :meth:`load_pretrained`.

    Attributes:
        layers: Names of the submodules whose activations are meaningful probe points
            (``aqa probe``), shallow to deep.
        input_kind: ``"video"`` for clips of frames ``(M, C, T, H, W)``; ``"features"`` for
            a backbone that takes pre-extracted clip features ``(M, D)`` (the ``identity``
            backbone of feature datasets, whose :attr:`VideoDataset.input_kind` is
            ``"features"``).
    """

    kind: ClassVar[str] = "backbone"
    layers: ClassVar[tuple[str, ...]] = ()
    input_kind: ClassVar[InputKind] = "video"

    def __init__(self, params: BaseModel) -> None:
        nn.Module.__init__(self)
        self.params = params

    @abstractmethod
    def forward(self, clips: Tensor) -> Tensor:
        """Compute clip features.

        Args:
            clips: ``(M, C, T, H, W)`` float tensor, M = batch x clips.

        Returns:
            ``(M, *F)`` features.
        """

    @classmethod
    def input_normalization(
        cls, params: BaseModel
    ) -> tuple[tuple[float, ...], tuple[float, ...]] | None:
        """The per-channel ``(mean, std)`` that the weights of these params expect, if known.

        Frames scaled to ``[0, 1]`` are expected normalised as ``(x - mean) / std``. ``aqa
        validate`` and ``aqa run`` warn when the backbone loads a ``pretrained`` file and the
        dataset's ``mean``/``std`` params differ from this (or it does not normalise). The
        default, ``None``, declares no expectation.

        Args:
            params: Validated :attr:`Params`.

        Returns:
            ``(mean, std)``, one value per input channel, or ``None``.
        """
        return None

    def load_pretrained(self, path: str | Path) -> None:  # noqa: B027 - optional hook
        """Load weights from a local file (never from a network).

        Called by the builder with :meth:`~PretrainedWeights.pretrained_file`. The default
        loads nothing.

        Args:
            path: A weight file in a layout the backbone understands.
        """


class Aggregator(Component, PretrainedWeights, nn.Module, ABC):
    """Pools the clip features of each video into one video-level feature.

    Attributes:
        uses_mask: ``True`` for an aggregator whose ``forward(clip_features, mask=None)``
            takes the ``(B, N)`` bool ``video_mask`` of zero-padded sequences (``True`` on
            real clips) and leaves the padding out; the model then hands it the mask, in
            training and at evaluation. See :meth:`takes_padding_mask`.
    """

    kind: ClassVar[str] = "aggregator"
    uses_mask: ClassVar[bool] = False

    @classmethod
    def takes_padding_mask(cls, params: BaseModel) -> bool:
        """Whether, with these params, zero padding masked out changes nothing it returns.

        Evaluation batches of sequences of different lengths are zero-padded only when it
        holds (see :mod:`aqa_framework.data.padding`). The default is :attr:`uses_mask`.

        Args:
            params: Validated :attr:`Params`.
        """
        return bool(cls.uses_mask)

    def __init__(self, params: BaseModel, in_shape: tuple[int, ...]) -> None:
        """Build the aggregator.

        Args:
            params: Validated :attr:`Params`.
            in_shape: Shape of one clip's features ``F`` (without batch and clip dims).
        """
        nn.Module.__init__(self)
        self.params = params
        self.in_shape = in_shape

    @abstractmethod
    def forward(self, clip_features: Tensor) -> Tensor:
        """Aggregate ``(B, N, *F)`` clip features into ``(B, *G)`` video features."""

    def load_pretrained(self, path: str | Path) -> None:
        """Load weights from a local file (its ``pretrained`` param, if it declares one).

        The default reads a state dict in this aggregator's own key layout.

        Raises:
            CheckpointError: If the file cannot be read safely or does not fit.
        """
        _load_own_layout(self, path)


class TaskHead(Component, PretrainedWeights, nn.Module, ABC):
    """One task: owns its layers, its loss, its predictions and its metrics.

    Attributes:
        consumes: ``"video"`` for aggregated features ``(B, *G)`` or ``"clips"`` for the
            clip sequence ``(B, N, *F)``.
        target_kind: The kind of target it learns from (``scores``, ``classes``,
            ``captions`` or an open array kind); the default :meth:`target_needs` asks for
            one target of this kind. Heads that need several targets, or targets by name,
            override :meth:`target_needs`.
        metric_directions: Metric name -> ``"max"`` (higher is better) or ``"min"`` (lower is
            better), for the names :meth:`metrics` reports; a key also covers the per-column
            names ``<column>_<key>``. Epoch selection (``train.select_mode: auto``) follows it.
        uses_partners: ``True`` for a head that compares each sample with exemplars of known
            score (``data.partners``, see :mod:`aqa_framework.data.partners`). It is then
            called as ``forward(features, batch, partners)``, where ``partners`` holds the
            exemplars' ``"features"`` ``(B, K, ...)`` (at the level of :attr:`consumes`) and
            their ``"scores"``, ``"classes"``, ``"arrays"`` (``(B, K, ...)`` each) and
            ``"key"``; K is ``data.partners.train`` while training and
            ``data.partners.test`` when evaluating, so a head's own test-time procedure
            (voting over K exemplars) lives in its forward and :meth:`predict`. A spec with
            such a head and no ``data.partners`` is refused.
        uses_mask: ``True`` for a head that reads the ``video_mask`` of zero-padded
            sequences from its ``batch``; at evaluation it is then called with
            ``batch={"video_mask": mask}`` (no targets). See :meth:`takes_padding_mask`.
    """

    kind: ClassVar[str] = "head"
    consumes: ClassVar[FeatureLevel] = "video"
    target_kind: ClassVar[TargetKind] = "scores"
    metric_directions: ClassVar[Mapping[str, MetricDirection]] = {}
    uses_partners: ClassVar[bool] = False
    uses_mask: ClassVar[bool] = False

    @classmethod
    def takes_padding_mask(cls, params: BaseModel) -> bool:
        """Whether, with these params, zero padding masked out changes none of its outputs.

        Matters for heads that consume the clip sequence (``consumes = "clips"``): evaluation
        batches of sequences of different lengths are zero-padded only when it holds (see
        :mod:`aqa_framework.data.padding`). The default is :attr:`uses_mask`.

        Args:
            params: Validated :attr:`Params`.
        """
        return bool(cls.uses_mask)

    @classmethod
    def metric_direction(cls, metric: str) -> MetricDirection:
        """Whether one of this head's metrics is better higher (``"max"``) or lower (``"min"``).

        Looks ``metric`` up in :attr:`metric_directions`: the name itself, else the longest
        key it ends with after an underscore (``final_score_rel_l2`` -> ``rel_l2``). A metric
        not declared there (every metric of a head that declares nothing) falls back to the
        name rule :func:`aqa_framework.metrics.direction_from_name`.

        Args:
            metric: Metric name as :meth:`metrics` reports it, without the task prefix.

        Returns:
            ``"max"`` or ``"min"``.
        """
        from aqa_framework.metrics import direction_from_name

        declared = cls.metric_directions
        if metric in declared:
            return declared[metric]
        for key in sorted(declared, key=len, reverse=True):
            if metric.endswith("_" + key):
                return declared[key]
        return direction_from_name(metric)

    def __init__(self, params: BaseModel, in_shape: tuple[int, ...], targets: Targets) -> None:
        """Build the head.

        Args:
            params: Validated :attr:`Params`.
            in_shape: Shape of the features it consumes, without batch (and clip) dims.
            targets: What the dataset provides (already checked by :meth:`check_targets`).
        """
        nn.Module.__init__(self)
        self.params = params
        self.in_shape = in_shape
        self.targets = targets

    @classmethod
    def target_needs(cls, params: BaseModel) -> list[TargetNeed]:
        """What this head needs from the dataset, for these params.

        The default is one target of :attr:`target_kind`, any name. A head that reads targets
        by name (``judges: judge_scores``) or needs several (marks and a difficulty) returns
        one :class:`~aqa_framework.targets.TargetNeed` each; the default
        :meth:`check_targets` then explains any that is not met.

        Args:
            params: Validated :attr:`Params`.
        """
        return [TargetNeed(cls.target_kind)]

    @classmethod
    def prediction_inputs(cls, params: BaseModel) -> list[str]:
        """Targets known *before* a performance is judged that :meth:`predict` reads.

        The diving degree of difficulty is announced before the dive, so a head that turns
        judges' marks into a final score may multiply by it. The engine then calls
        ``predict(outputs, inputs)`` with ``inputs = {"arrays": {name: (B, ...)}, "scores":
        {name: (B,)}}`` holding exactly these targets of the batch, and nothing else: a head
        never sees the values it is judged against. The default, no input, keeps the 0.1 call
        ``predict(outputs)``. ``aqa predict`` on a bare video has no such values; a head that
        needs them says so.

        Args:
            params: Validated :attr:`Params`.

        Returns:
            Names of score or open targets (``["difficulty"]``).
        """
        return []

    def fit(self, data: FitData) -> None:  # noqa: B027 - optional hook
        """Fit state on the training samples' targets before training starts.

        The engine calls it once, on every process, when a run starts (not when it resumes),
        with the targets of the training samples only (never validation or test samples).
        Keep what it computes in registered buffers: they are saved in every checkpoint and
        restored on resume, ``aqa evaluate`` and ``aqa predict``. CoRe's score intervals are
        quantiles of the score differences of training pairs. The default fits nothing.

        Args:
            data: The training samples' targets (:class:`~aqa_framework.data.partners.FitData`),
                with their ``data.partners.group_by`` values when the spec has partners.
        """

    @classmethod
    def check_targets(cls, params: BaseModel, targets: Targets) -> str | None:
        """Say why the dataset's targets do not suit this head, or ``None`` if they do.

        The default checks every need of :meth:`target_needs` with
        :meth:`Targets.explain <aqa_framework.targets.Targets.explain>`.
        """
        problems = [
            problem
            for need in cls.target_needs(params)
            if (problem := targets.explain(need, f"head '{cls.name}'"))
        ]
        return "; ".join(problems) or None

    @abstractmethod
    def forward(self, features: Tensor, batch: Mapping[str, Any] | None = None) -> dict:
        """Compute raw outputs (logits, scores, token log-probabilities).

        Args:
            features: Features at the level given by :attr:`consumes`.
            batch: The collated batch during training (teacher forcing needs the targets);
                ``None`` at inference.

        Returns:
            A dict of tensors that :meth:`loss` and :meth:`predict` understand.
        """

    @abstractmethod
    def loss(self, outputs: dict, batch: Mapping[str, Any]) -> Tensor:
        """Scalar loss of this task on a batch (before its ``loss_weight``)."""

    @abstractmethod
    def predict(self, outputs: dict) -> dict[str, list]:
        """Per-sample predictions in plain Python types (points, class ids, text).

        Returns:
            Column name -> one value per sample, e.g. ``{"final_score": [81.3, ...]}``.
        """

    @abstractmethod
    def references(self, batch: Mapping[str, Any]) -> dict[str, list]:
        """The ground truth of a batch under the same column names as :meth:`predict`."""

    def load_pretrained(self, path: str | Path) -> None:
        """Load weights from a local file (its ``pretrained`` param, if it declares one).

        The default reads a state dict in this head's own key layout; built-in heads also
        read the official MTL-AQA checkpoints.

        Raises:
            CheckpointError: If the file cannot be read safely or does not fit.
        """
        _load_own_layout(self, path)

    @abstractmethod
    def metrics(self, predictions: dict[str, list], references: dict[str, list]) -> dict:
        """Metrics over a whole split, e.g. ``{"spearman": 0.87}`` (float values)."""


class VideoDataset(Component, Dataset, ABC):
    """A split of a video dataset that yields sample dicts.

    A sample is a dict with ``"key"`` (str), ``"video"`` (float tensor ``(N, C, T, H, W)``) and
    the targets it provides (see :mod:`aqa_framework.targets`). :meth:`input_shape` says what
    ``"video"`` looks like for given params, so that the model can be sized (and ``aqa
    validate`` can count its parameters) without reading any data.

    A dataset of pre-extracted clip features sets :attr:`input_kind` to ``"features"``: its
    ``"video"`` is then a float tensor ``(L, D)`` (L clips of D features, L may differ between
    samples), with ``"video_mask"`` (bool ``(L,)``, ``True`` on real clips, ``False`` on zero
    padding), and :meth:`input_shape` returns ``(L, D)``. The model then runs a backbone whose
    ``input_kind`` is ``"features"`` (``identity``) on each clip's features.

    Attributes:
        splits: Names of the splits the dataset offers (``train`` and ``test`` at least).
        input_kind: ``"video"`` (clips of frames) or ``"features"`` (clip feature sequences).
    """

    kind: ClassVar[str] = "dataset"
    splits: ClassVar[tuple[str, ...]] = ("train", "test")
    input_kind: ClassVar[InputKind] = "video"

    def __init__(self, params: BaseModel, split: str = "train", train: bool = False) -> None:
        """Open one split.

        Args:
            params: Validated :attr:`Params`.
            split: Which split to open.
            train: Whether to apply training-time augmentation (temporal jitter, flips).
        """
        Dataset.__init__(self)
        self.params = params
        self.split = split
        self.train = train

    @property
    @abstractmethod
    def targets(self) -> Targets:
        """What this dataset provides."""

    @property
    @abstractmethod
    def keys(self) -> list[str]:
        """Sample keys of this split, in index order."""

    @abstractmethod
    def __len__(self) -> int:
        """Number of samples in the split."""

    @abstractmethod
    def __getitem__(self, index: int) -> dict[str, Any]:
        """Load one sample."""

    @classmethod
    def input_shape(cls, params: BaseModel) -> tuple[int, ...] | None:
        """One sample's ``(N, C, T, H, W)`` video shape for these params, without opening data.

        The builder sizes the model for it (``aqa run`` and ``aqa validate`` alike), so it must
        equal ``self[i]["video"].shape`` for every sample. Datasets built on
        :class:`~aqa_framework.video.dataset.ClipDataset` get it from their sampling and crop
        params; others override it. The default, ``None``, means "only a sample tells": ``aqa
        run`` then reads the first sample, and ``aqa validate`` derives the shape from the
        common video params (``num_clips``, ``clip_length``, ``crop``/``resize``, see
        :func:`~aqa_framework.video.params.video_input_shape`) if the params have them, else
        reads the first sample too.

        Args:
            params: Validated :attr:`Params`.

        Returns:
            ``(N, C, T, H, W)``, or ``None`` if it depends on the data.
        """
        return None

    def sample_targets(self, index: int) -> dict[str, Any]:
        """Key and targets of sample ``index`` without its video.

        Exemplar pools (``data.partners``) and heads that fit state before training read
        the targets of every training sample through it. The default loads the sample and
        drops its video; datasets that know their targets from annotations override it.

        Returns:
            The sample dict without ``"video"`` (``key``, ``scores``, ``classes``,
            ``arrays``), or a skipped-sample marker.
        """
        sample = self[index]
        return {k: v for k, v in sample.items() if k != "video"}

    @classmethod
    def varying_eval_lengths(cls, params: BaseModel) -> str | None:
        """Why evaluation samples may differ in length, or ``None`` if they cannot.

        A dataset that evaluates whole sequences (clip features with ``test_length: null``)
        returns the setting responsible, e.g. ``"test_length: null"``; ``aqa validate`` and
        ``aqa run`` then refuse evaluation batches of several samples for a model that cannot
        mask zero padding out (see :mod:`aqa_framework.data.padding`). The default, ``None``,
        means every evaluation sample has the shape :meth:`input_shape` gives.

        Args:
            params: Validated :attr:`Params`.
        """
        return None

    def check_samples(self) -> None:  # noqa: B027 - optional hook
        """Find, without decoding clips, the problems that loading the samples would raise.

        ``aqa validate`` calls it on the training split and the evaluation split, so that a
        missing video, a window past the end of its video (a wrong ``end_frame``) or a crop
        larger than the frames is reported before a run starts. Raise what
        :meth:`__getitem__` would raise (a :class:`~aqa_framework.errors.DataError`), or warn
        where the dataset skips bad samples. The default checks nothing.
        """

    def frame_size(self) -> tuple[int, int] | None:
        """``(width, height)`` of the dataset's video frames as stored (before any resize).

        Runs record it in their checkpoints, so that ``aqa predict`` can give a video of
        another size the field of view of training (the ``frame_size`` argument of
        :meth:`read_video`). The default, ``None``, means unknown; clip datasets read it from
        their first video.
        """
        return None

    @classmethod
    def frame_cache_dir(cls, params: BaseModel) -> str | None:
        """The decoded-frame cache folder these params name, or ``None`` for none.

        ``aqa data cache`` fills it by loading every sample once. The default reads the
        ``cache_dir`` parameter when the ``Params`` declare one (as
        :class:`~aqa_framework.video.params.VideoParams` does); a dataset that caches
        elsewhere overrides it.

        Args:
            params: Validated :attr:`Params`.
        """
        value = dict(params).get("cache_dir")
        return str(value) if value else None

    @classmethod
    def read_video(
        cls,
        params: BaseModel,
        path: str | Path,
        *,
        frame_size: tuple[int, int] | None = None,
    ) -> Tensor:
        """Turn an arbitrary video file into the model input this dataset would produce.

        ``aqa predict`` calls it, for every dataset, with the params stored in the
        checkpoint; the dataset is not opened, so its files are not needed. Use the
        evaluation transforms (no augmentation) and return what :meth:`__getitem__` returns as
        ``"video"``. :class:`~aqa_framework.video.dataset.ClipDataset` implements it; other
        datasets implement it to support ``aqa predict``.

        The default supports no video, except for a dataset written for 0.1 that overrides
        the instance method :meth:`load_video` instead: it opens the dataset's ``test`` split
        and asks that (deprecated; implement this class method).

        Args:
            params: Validated :attr:`Params`.
            path: A video file (or frame folder).
            frame_size: ``(width, height)`` of the training videos' frames (their
                :meth:`frame_size`, recorded in the checkpoint), ``None`` if unknown. A video
                of another size should be shown to the model with the field of view of
                training.

        Returns:
            ``(N, C, T, H, W)`` float tensor.

        Raises:
            PredictNotSupported: If the dataset cannot read arbitrary videos.
            DataError: If the video cannot be read.
        """
        if not _overrides_load_video(cls):
            raise _predict_not_supported(cls)
        warnings.warn(
            f"dataset '{cls.name}' ({cls.__module__}.{cls.__qualname__}) implements "
            "VideoDataset.load_video(path), which aqa predict calls by opening the dataset's "
            "test split; implement the class method VideoDataset.read_video(params, path, "
            "frame_size=...) instead, which needs no dataset files",
            DeprecationWarning,
            stacklevel=2,
        )
        split = "test" if "test" in cls.splits else cls.splits[0]
        return cls(params, split=split, train=False).load_video(path)

    def load_video(self, path: str | Path) -> Tensor:
        """Turn an arbitrary video file into the model input, with this dataset's settings.

        The default is :meth:`read_video` with this dataset's params and :meth:`frame_size`.
        Datasets written for 0.1 override it to support ``aqa predict``; new datasets
        implement :meth:`read_video`, which needs no dataset files.

        Args:
            path: A video file (or frame folder).

        Returns:
            ``(N, C, T, H, W)`` float tensor.

        Raises:
            PredictNotSupported: If the dataset cannot read arbitrary videos.
        """
        cls = type(self)
        if _overrides_load_video(cls):  # reached through super() from an override
            raise _predict_not_supported(cls)
        return cls.read_video(self.params, path, frame_size=self.frame_size())


def _defined_in(cls: type, attr: str) -> type:
    """The class of ``cls``'s MRO that defines ``attr``."""
    return next(klass for klass in cls.__mro__ if attr in vars(klass))


def _overrides_load_video(cls: type) -> bool:
    """Whether ``cls`` overrides ``load_video`` below the class its ``read_video`` comes from.

    Such a dataset was written for 0.1, when ``aqa predict`` used ``load_video``.
    """
    own, reader = _defined_in(cls, "load_video"), _defined_in(cls, "read_video")
    return own is not reader and issubclass(own, reader)


def _predict_not_supported(cls: type) -> Exception:
    from aqa_framework.errors import PredictNotSupported

    return PredictNotSupported(
        f"dataset '{getattr(cls, 'name', cls.__qualname__)}' does not support predict "
        "(implement VideoDataset.read_video)"
    )

