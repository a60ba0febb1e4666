"""The public test-kit: its checks pass good components, catch broken ones, and every built-in
component passes them."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from aqa_framework import testing
from aqa_framework.errors import SpecError
from aqa_framework.interfaces import Aggregator, Backbone, TaskHead
from aqa_framework.registry import Registry
from aqa_framework.targets import ArrayTarget
from aqa_framework.testing import ContractError

# ---------------------------------------------------------------------------------------------
# toy components


class _WidthParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    width: int = Field(4, ge=1, description="Output channels.")


class ToyBackbone(Backbone):
    """A single 3-D convolution and global pooling."""

    name = "toy.conv"
    Params = _WidthParams
    layers = ("conv",)

    def __init__(self, params):
        super().__init__(params)
        self.conv = nn.Conv3d(3, params.width, 3, padding=1)

    def forward(self, clips):
        return self.conv(clips).mean(dim=(2, 3, 4))


class ToyMeanAggregator(Aggregator):
    """Averages clips."""

    name = "toy.mean"

    def forward(self, clip_features):
        return clip_features.mean(dim=1)


class BatchMixingAggregator(ToyMeanAggregator):
    """Subtracts the batch mean, so each video depends on the others."""

    name = "toy.mixing"

    def forward(self, clip_features):
        x = clip_features.mean(dim=1)
        return x - x.mean(dim=0, keepdim=True)


class ToyScoreHead(TaskHead):
    """Regresses the first score."""

    name = "toy.score"
    Params = _WidthParams

    def __init__(self, params, in_shape, targets):
        super().__init__(params, in_shape, targets)
        self.score = next(iter(targets.scores))
        self.fc = nn.Linear(in_shape[0], 1)

    def forward(self, features, batch=None):
        return {"score": self.fc(features).squeeze(1)}

    def loss(self, outputs, batch):
        return ((outputs["score"] - batch["scores"][self.score].float() / 100) ** 2).mean()

    def predict(self, outputs):
        return {self.score: [float(x) * 100 for x in outputs["score"]]}

    def references(self, batch):
        return {self.score: [float(x) for x in batch["scores"][self.score]]}

    def metrics(self, predictions, references):
        p, t = predictions[self.score], references[self.score]
        return {"mae": sum(abs(a - b) for a, b in zip(p, t, strict=True)) / len(t)}


class DetachedHead(ToyScoreHead):
    """Cuts the graph to the features."""

    name = "toy.detached"

    def forward(self, features, batch=None):
        return super().forward(features.detach(), batch)


class TensorPredictionsHead(ToyScoreHead):
    """Returns tensors instead of plain values."""

    name = "toy.tensors"

    def predict(self, outputs):
        return {self.score: list(outputs["score"])}


class UndescribedParamsHead(ToyScoreHead):
    """Has a parameter without description."""

    name = "toy.undescribed"

    class Params(BaseModel):
        model_config = ConfigDict(extra="forbid")
        width: int = 4


def tiny_dataset(**params):
    return testing.TinyVideoDataset(testing.TinyVideoDataset.parse_params(params), "train")


# ---------------------------------------------------------------------------------------------
# fixtures


def test_fake_batch_has_the_collated_layout():
    targets = testing.tiny_targets()
    batch = testing.fake_batch(targets, 3, video_shape=(2, 3, 4, 8, 8))
    assert batch["video"].shape == (3, 2, 3, 4, 8, 8)
    assert batch["scores"]["final_score"].shape == (3,)
    assert batch["classes"]["position"].dtype == torch.int64
    assert batch["caption"].shape == (3, targets.captions.max_length + 2)
    assert (batch["caption"][:, 0] == targets.captions.sos_index).all()
    for row, length in zip(batch["caption"], batch["caption_length"], strict=True):
        assert row[length - 1] == targets.captions.eos_index
    assert batch["key"] == ["sample-0000", "sample-0001", "sample-0002"]


def test_fake_samples_are_reproducible_and_within_range():
    targets = testing.tiny_targets(scores={"d": (2.0, 6.4)}, classes={"family": 3}, captions=False)
    a, b = (testing.fake_sample(targets, 5, seed=1) for _ in range(2))
    assert torch.equal(a["video"], b["video"]) and a["scores"] == b["scores"]
    assert 2.0 <= a["scores"]["d"] <= 6.4 and a["classes"]["family"] in range(3)
    assert "caption" not in a


def test_tiny_dataset_passes_its_own_check_and_score_follows_brightness():
    ds = tiny_dataset(num_samples=5)
    batch = testing.check_dataset(ds, max_samples=5)
    brightness = batch["video"].flatten(1).mean(1)
    assert torch.allclose(batch["scores"]["final_score"].float(), (brightness + 1) * 50, atol=1e-4)


# ---------------------------------------------------------------------------------------------
# checks accept good components and reject broken ones


def test_good_toy_components_pass():
    assert testing.check_backbone(ToyBackbone, {"width": 5}, input_shape=(3, 4, 8, 8)) == (5,)
    assert testing.check_aggregator(ToyMeanAggregator, in_shape=(6,)) == (6,)
    metrics = testing.check_head(ToyScoreHead, testing.tiny_targets(captions=False))
    assert set(metrics) == {"mae"}


def test_aggregator_that_mixes_the_batch_is_caught():
    with pytest.raises(ContractError, match="must not depend on the other videos"):
        testing.check_aggregator(BatchMixingAggregator)


def test_head_that_cuts_gradients_is_caught():
    with pytest.raises(ContractError, match="do not flow back to the features"):
        testing.check_head(DetachedHead)


def test_head_returning_tensors_is_caught():
    with pytest.raises(ContractError, match="plain Python values"):
        testing.check_head(TensorPredictionsHead)


def test_undescribed_param_is_caught():
    with pytest.raises(ContractError, match=r"Params.width needs Field\(description"):
        testing.check_component_class(UndescribedParamsHead)


def test_head_that_rejects_the_targets_is_caught():
    class CaptionOnly(ToyScoreHead):
        """Needs captions."""

        name = "toy.caption-only"
        target_kind = "captions"

    with pytest.raises(ContractError, match="rejects the test targets"):
        testing.check_head(CaptionOnly, testing.tiny_targets(captions=False))


def test_dataset_with_out_of_range_score_is_caught():
    class Shifted(testing.TinyVideoDataset):
        """Scores off the declared range."""

        def __getitem__(self, index):
            sample = super().__getitem__(index)
            sample["scores"]["final_score"] += 1000
            return sample

    with pytest.raises(ContractError, match=r"scores\['final_score'\] = .* is outside"):
        testing.check_dataset(Shifted(Shifted.parse_params({}), "train"))


def test_dataset_whose_samples_differ_from_its_declared_input_shape_is_caught():
    class Misdeclared(testing.TinyVideoDataset):
        """Declares 16 frames per clip, gives 8."""

        @classmethod
        def input_shape(cls, params):
            return (params.num_clips, 3, 16, params.size, params.size)

    with pytest.raises(ContractError, match=r"declares \(2, 3, 16, 32, 32\), but the samples"):
        testing.check_dataset(Misdeclared(Misdeclared.parse_params({}), "train"))


def test_dataset_with_wrong_key_is_caught():
    class WrongKey(testing.TinyVideoDataset):
        """Keys that do not match."""

        def __getitem__(self, index):
            return {**super().__getitem__(index), "key": "other"}

    with pytest.raises(ContractError, match="differs from keys"):
        testing.check_dataset(WrongKey(WrongKey.parse_params({}), "train"))


# ---------------------------------------------------------------------------------------------
# exemplars, feature inputs and padding masks


class ToyExemplarHead(ToyScoreHead):
    """Scores a sample as its exemplars' mean score plus a learned difference."""

    name = "toy.exemplar"
    uses_partners = True
    seen: list = []

    def fit(self, data):
        type(self).seen.append(("fit", len(data), data.group_by, data.groups))

    def forward(self, features, batch=None, partners=None):
        theirs = partners["features"]
        scores = partners["scores"][self.score] / 100
        type(self).seen.append(
            ("forward", tuple(theirs.shape), tuple(scores.shape), partners["key"],
             None if batch is None else batch["key"])
        )
        delta = self.fc(features.unsqueeze(1) - theirs).squeeze(-1)
        return {"score": (scores + delta).mean(1), "votes": scores + delta}


class PerExemplarPredictionsHead(ToyExemplarHead):
    """Predicts one value per exemplar instead of one per sample."""

    name = "toy.per-exemplar"

    def predict(self, outputs):
        return {self.score: [float(x) * 100 for x in outputs["votes"].flatten()]}


class FeatureBackbone(Backbone):
    """A linear map of each pre-extracted clip feature vector."""

    name = "toy.features"
    Params = _WidthParams
    input_kind = "features"

    def __init__(self, params):
        super().__init__(params)
        self.fc = nn.Linear(6, params.width)

    def forward(self, clips):
        return self.fc(clips)


class ClipMixingBackbone(FeatureBackbone):
    """Subtracts the mean over the batch's clips, so padding leaks into real clips."""

    name = "toy.clip-mixing"

    def forward(self, clips):
        return self.fc(clips - clips.mean(dim=0, keepdim=True))


class MaskedMeanHead(ToyScoreHead):
    """Regresses the score from the mean of the real clips of a padded sequence."""

    name = "toy.masked-mean"
    consumes = "clips"
    uses_mask = True
    seen: list = []

    def _count(self, mask):
        return mask.sum(1, keepdim=True)

    def forward(self, features, batch=None):
        mask = torch.ones(features.shape[:2], dtype=torch.bool)
        if batch is not None and "video_mask" in batch:
            mask = batch["video_mask"]
            type(self).seen.append(sorted(batch))
        kept = features * mask.unsqueeze(-1)
        return {"score": self.fc(kept.sum(1) / self._count(mask)).squeeze(1)}


class PaddingCountingHead(MaskedMeanHead):
    """Zeroes the padded clips but divides by the padded length."""

    name = "toy.padding-counting"

    def _count(self, mask):
        return torch.full_like(mask.sum(1, keepdim=True), mask.shape[1])


class ToyMaskedAggregator(ToyMeanAggregator):
    """Averages the real clips of padded sequences."""

    name = "toy.masked"
    uses_mask = True

    def forward(self, clip_features, mask=None):
        if mask is None:
            return clip_features.mean(dim=1)
        weights = mask.to(clip_features.dtype).unsqueeze(-1)
        return (clip_features * weights).sum(1) / weights.sum(1)


class MaskIgnoringAggregator(ToyMaskedAggregator):
    """Declares uses_mask but averages the padding too."""

    name = "toy.mask-ignoring"

    def forward(self, clip_features, mask=None):
        return clip_features.mean(dim=1)


def test_exemplar_heads_get_exemplars_drawn_and_collated_as_the_engine_does():
    ToyExemplarHead.seen.clear()
    targets = testing.tiny_targets(captions=False)
    partners = {"train": 1, "test": 3, "group_by": "position"}
    testing.check_head(ToyExemplarHead, targets, in_shape=(5,), batch_size=4, partners=partners)
    fits = [s for s in ToyExemplarHead.seen if s[0] == "fit"]
    assert len(fits) == 1 and fits[0][1:3] == (11, "position")  # 2 x 4 samples + 3 voters
    assert len(fits[0][3]) == 11 and set(fits[0][3]) <= {0, 1, 2}
    calls = [s for s in ToyExemplarHead.seen if s[0] == "forward"]
    (train, *evals) = calls
    assert train[1:3] == ((4, 1, 5), (4, 1))  # one exemplar per sample while training
    assert all(c[1:3] == ((4, 3, 5), (4, 3)) and c[4] is None for c in evals)
    for _, _, _, exemplar_keys, own_keys in calls[:1]:
        assert len(exemplar_keys) == 1 and len(exemplar_keys[0]) == 4  # K lists of B keys
        assert all(e != k for e, k in zip(exemplar_keys[0], own_keys, strict=True))
    assert all(k.startswith("sample-00") for c in evals for keys in c[3] for k in keys)


def test_exemplar_head_checks_catch_a_broken_head():
    with pytest.raises(ContractError, match=r"must be a list with one value per sample \(4\)"):
        testing.check_head(PerExemplarPredictionsHead, testing.tiny_targets(captions=False))
    with pytest.raises(SpecError, match="data.partners.group_by"):
        testing.check_head(ToyExemplarHead, partners={"group_by": "final_score"})


def test_feature_input_backbones_take_clip_feature_vectors():
    assert testing.check_backbone(FeatureBackbone, {"width": 3}, input_shape=(6,)) == (3,)
    with pytest.raises(ContractError, match=r"input_shape=\(D,\)"):
        testing.check_backbone(FeatureBackbone, input_shape=(3, 4, 8, 8))  # a video clip
    with pytest.raises(ContractError, match="must not depend on the other clips"):
        testing.check_backbone(ClipMixingBackbone, input_shape=(6,), batch=3)


def test_mask_heads_get_padded_sequences_and_must_leave_the_padding_out():
    MaskedMeanHead.seen.clear()
    targets = testing.tiny_targets(captions=False)
    assert testing.check_head(MaskedMeanHead, targets, in_shape=(4,), num_clips=3)
    # training: the whole batch with its video_mask; evaluation: the mask alone
    assert "scores" in MaskedMeanHead.seen[0] and "video_mask" in MaskedMeanHead.seen[0]
    assert ["video_mask"] in MaskedMeanHead.seen[1:]
    with pytest.raises(ContractError, match="changes alone, without its padding"):
        testing.check_head(PaddingCountingHead, targets, in_shape=(4,), num_clips=3)


def test_mask_aggregators_must_leave_the_padding_out():
    assert testing.check_aggregator(ToyMaskedAggregator, in_shape=(4,)) == (4,)
    with pytest.raises(ContractError, match="other features than the video alone"):
        testing.check_aggregator(MaskIgnoringAggregator, in_shape=(4,))


def test_registry_with_and_check_registered():
    reg = testing.registry_with("toy", [ToyBackbone, ToyScoreHead], builtins=False)
    assert reg.names("backbone") == ["toy.conv"] and reg.names("head") == ["toy.score"]
    with pytest.raises(ContractError, match="'toy.nothing' is not registered.*pip install"):
        testing.check_registered("toy.nothing", "head")


# ---------------------------------------------------------------------------------------------
# every built-in component passes the checks (small params keep this fast)

class CheckedIn(str):
    """A component tested in another test (``file.py::test``) instead of here, because it needs
    data or doors the generic checks here do not build (release files, feature files)."""


BACKBONES = {
    "c3d": ({"width": 0.0625}, (3, 16, 32, 32)),
    "mscadc": ({"width": 0.0625}, (3, 16, 32, 32)),
    "timm": ({"model": "resnet18"}, (3, 2, 32, 32)),
    "i3d": CheckedIn("test_backbones_video.py::test_i3d_passes_the_backbone_contract"),
    "torchvision-video": CheckedIn(
        "test_backbones_video.py::test_torchvision_r3d_passes_the_backbone_contract_and_can_be_"
        "frozen"
    ),
    "identity": ({}, (12,)),  # (M, D) clip features
}
AGGREGATORS = {
    "average": [({}, 3), ({"shared_fc": 8, "dropout": 0.1}, 3)],
    "identity": [({}, 1)],
    "lstm": [({"hidden": 8}, 3)],
    "transformer": [({"dim": 8, "heads": 2, "ffn": 16}, 3)],
}
_JUDGES = {
    "judge_scores": ArrayTarget(
        kind="judge_scores", shape=(7,), low=0, high=10, info={"step": 0.5}
    ),
    "difficulty": ArrayTarget(kind="difficulty", low=1, high=4),
}
_DIVES = {  # three difficulty values, so that exemplars share one
    "difficulty": ArrayTarget(kind="difficulty", low=2, high=3, info={"step": 0.5}),
}
_PAIRS = {"preference": ArrayTarget(kind="pair_order", low=0, high=1, info={"step": 1})}
# name -> (params, open targets[, other check_head arguments])
HEADS = {
    "score": ({}, None),
    "classification": ({}, None),
    "caption": ({"hidden": 16, "word_dim": 8, "layers": 1, "metrics": ["bleu", "rouge"]}, None),
    "usdl": ({"hidden": [8], "bins": 21}, None),
    "musdl": ({"hidden": [8], "rule": "diving"}, _JUDGES),
    "gdlt": ({"in_hidden": 8, "dim": 8, "ffn": 16}, None),  # masked clip sequences
    "core": (  # exemplars grouped by difficulty, 3 voters when evaluating
        {"hidden": 8, "depth": 3, "difficulty": "difficulty", "score_range": 100},
        _DIVES,
        {"partners": {"train": 1, "test": 3, "group_by": "difficulty"}},
    ),
    "ranking": ({"hidden": 8}, _PAIRS, {"partners": {"train": 1, "test": 1}}),  # pair mates
    "tpt": CheckedIn("test_tpt_head.py::test_the_kit_with_exemplars"),  # clips of 8 frames
}
REGISTRY = Registry(entry_points=[], builtins=True, strict=True)  # built-ins only


def _names(kind):
    return REGISTRY.names(kind)


def _small(table, kind, name):
    if name not in table:
        pytest.fail(f"add small test params for the built-in {kind} '{name}' to {kind.upper()}S")
    entry = table[name]
    if isinstance(entry, CheckedIn):
        file, _, test = entry.partition("::")
        source = (Path(__file__).parent / file).read_text(encoding="utf-8")
        assert f"def {test}(" in source, f"{kind} '{name}': {entry} does not exist"
        pytest.skip(f"the {kind} '{name}' is tested in {entry}")
    return entry


@pytest.mark.parametrize("name", _names("backbone"))
def test_builtin_backbone(name):
    params, shape = _small(BACKBONES, "backbone", name)
    feat = testing.check_backbone(REGISTRY.get("backbone", name), params, input_shape=shape)
    assert all(d > 0 for d in feat)


@pytest.mark.parametrize("name", _names("aggregator"))
def test_builtin_aggregator(name):
    for params, clips in _small(AGGREGATORS, "aggregator", name):
        testing.check_aggregator(REGISTRY.get("aggregator", name), params, num_clips=clips)


@pytest.mark.parametrize("name", _names("head"))
def test_builtin_head(name):
    cls = REGISTRY.get("head", name)
    params, arrays, *kit = _small(HEADS, "head", name)
    kit_args = kit[0] if kit else {}
    metrics = testing.check_head(cls, testing.tiny_targets(arrays=arrays), params, **kit_args)
    assert metrics


@pytest.fixture(scope="module")
def dataset_roots(tmp_path_factory):
    """Tiny data every built-in dataset can open: 8 synthetic dives in the MTL-AQA release
    layout (read by mtl-aqa too) and an AQA-7 vault split with two samples of JPEG frames."""
    import numpy as np
    import scipy.io
    from PIL import Image

    synthetic = tmp_path_factory.mktemp("data") / "synthetic-diving"  # must not exist yet
    cls = REGISTRY.get("dataset", "synthetic-diving")
    cls(cls.parse_params({"root": str(synthetic), **_SYNTHETIC}), "train")  # generates
    aqa7 = tmp_path_factory.mktemp("aqa-7")
    for name, sample, score in (("train", 1, 1450.0), ("test", 2, 1525.0)):
        rows = np.array([[2.0, sample, score]])
        variable = f"consolidated_{name}_list"
        scipy.io.savemat(aqa7 / f"{variable}.mat", {variable: rows})
        frames = aqa7 / "gym_vault-out" / f"{sample:03d}"
        frames.mkdir(parents=True)
        for i in range(1, 104):
            Image.new("RGB", (40, 30), (i, 2 * i, 50)).save(frames / f"img_{i:05d}.jpg")
    return {"synthetic": synthetic, "aqa-7": aqa7}


_SYNTHETIC = {"dives": 8, "dives_per_event": 4}
DATASETS = {
    "synthetic-diving": lambda roots: {"root": str(roots["synthetic"]), **_SYNTHETIC},
    "mtl-aqa": lambda roots: {"root": str(roots["synthetic"]), "resize": None, "crop": 32},
    "aqa-7": lambda roots: {"root": str(roots["aqa-7"]), "resize": None, "crop": 24},
    "jigsaws": CheckedIn("test_data_jigsaws.py::test_synthetic_folder_reads_back_through_jigsaws"),
    "synthetic-jigsaws": CheckedIn(
        "test_data_jigsaws.py::test_synthetic_folder_reads_back_through_jigsaws"
    ),
    "features": CheckedIn("test_gdlt.py::test_model_on_feature_sequences"),
    "synthetic-routines": CheckedIn("test_gdlt.py::test_model_on_feature_sequences"),
    "rhythmic-gymnastics": CheckedIn("test_data_rg.py::test_features_load_and_window"),
    "synthetic-pairs": CheckedIn(
        "test_pairwise.py::test_synthetic_pairs_order_by_hidden_execution_within_a_split"
    ),
    "epic-skills": CheckedIn("test_pairwise.py::test_epic_skills_counts_match_stats"),
    "best": CheckedIn("test_pairwise.py::test_best_counts_match_stats"),
    "finediving": CheckedIn("test_data_finediving.py::test_default_transforms_and_kit"),
}


@pytest.mark.parametrize("name", _names("dataset"))
def test_builtin_dataset(name, dataset_roots):
    cls = REGISTRY.get("dataset", name)
    params = cls.parse_params(_small(DATASETS, "dataset", name)(dataset_roots))
    for split in ("train", "test"):
        for train in (False, True):
            batch = testing.check_dataset(cls(params, split, train=train), max_samples=2)
            assert batch["video"].ndim == 6


# ---------------------------------------------------------------------------------------------
# the package, its pytest plugin and fixtures

# every name ``aqa_framework.testing`` had as a module (0.1), which must keep importing from it
NAMES_01 = [
    "ContractError", "TinyVideoDataset", "TinyVideoDatasetParams", "check_aggregator",
    "check_backbone", "check_component_class", "check_dataset", "check_head",
    "check_registered", "fake_batch", "fake_sample", "registry_with", "tiny_targets",
]


def test_every_public_name_imports_from_the_package():
    import importlib

    fresh = importlib.import_module("aqa_framework.testing")
    assert set(NAMES_01) <= set(fresh.__all__) <= set(dir(fresh))
    for name in fresh.__all__:
        assert getattr(fresh, name) is not None
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        _ = fresh.nothing


def test_the_pytest_plugin_is_registered_and_imports_nothing_heavy():
    import subprocess
    import sys
    from importlib.metadata import entry_points

    (ep,) = [ep for ep in entry_points(group="pytest11") if ep.name == "aqa"]
    assert ep.value == "aqa_framework.testing.plugin"
    code = (
        "import sys, aqa_framework.testing.plugin as p; "
        "print(sorted({'torch', 'av', 'decord', 'numpy', 'aqa_framework.engine'} "
        "& set(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_write_video_fixture_writes_what_decord_reads(write_video, tmp_path):
    import numpy as np

    from aqa_framework.video.readers import DecordVideoReader

    path = write_video("clips/a.mp4", (5, 30, 40))  # the width rounds up to 64
    assert path == tmp_path / "clips" / "a.mp4"
    reader = DecordVideoReader(path)
    frames = reader.read(list(range(5)))
    assert reader.backend == "decord" and tuple(np.asarray(frames).shape) == (5, 30, 64, 3)
    expected = testing.synthetic_frames(5, 30, 64)
    assert np.abs(np.asarray(frames).astype(int) - expected).mean() < 8

    gray = np.linspace(0, 1, 4)[:, None, None] * np.ones((4, 32, 96))
    assert testing.decord_safe_size(32, 96) == (32, 96)
    got = np.asarray(DecordVideoReader(write_video("gray.mp4", gray)).read([0, 3]))
    assert got.shape == (2, 32, 96, 3) and got[0].mean() < 10 and got[1].mean() > 245


def test_write_video_refuses_sizes_decord_cannot_read(write_video):
    import numpy as np

    with pytest.raises(ValueError, match="48 px wide.*multiple of 32"):
        write_video("narrow.mp4", np.zeros((2, 32, 48, 3), np.uint8))
    with pytest.raises(ValueError, match="even frame size"):
        write_video("odd.mp4", np.zeros((2, 31, 64, 3), np.uint8))
    assert write_video("narrow.mp4", np.zeros((2, 32, 48, 3), np.uint8), decord_safe=False)


TINY_SPEC = """\
model:
  backbone: {name: c3d, params: {width: 0.0625}}
  aggregator: {name: average}
  heads: {score: {name: score}}
data:
  name: testing.tiny
  params: {num_samples: 4, num_clips: 1, frames: 16, size: 32, captions: false}
  batch_size: 2
train: {epochs: 2}
"""


def test_run_spec_fixture_trains_yaml_text_or_a_mapping(run_spec, tmp_path):
    import yaml

    reg = testing.registry_with("testing", [testing.TinyVideoDataset])
    run = run_spec(TINY_SPEC, "train.epochs=1", registry=reg)
    assert run.folder == tmp_path / "run-1" and (run.folder / "results.json").is_file()
    assert "score.spearman" in run.metrics and run.results["split"] == "test"
    assert [r["epoch"] for r in run.history] == [1]
    assert len(run.predictions) == 4

    raw = yaml.safe_load(TINY_SPEC)
    again = run_spec(raw, "train.epochs=1", registry=reg)
    assert again.folder == tmp_path / "run-2"
    assert again.metrics == run.metrics  # same seed, same data, same results
    assert raw == yaml.safe_load(TINY_SPEC)  # the mapping was not changed


def test_run_spec_reports_an_invalid_spec_with_its_path(run_spec):
    from aqa_framework.errors import SpecError

    reg = testing.registry_with("testing", [testing.TinyVideoDataset])
    with pytest.raises(SpecError, match="train.epochs"):
        run_spec(TINY_SPEC, "train.epochs=0", registry=reg)
