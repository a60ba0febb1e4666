import pytest
import torch
import torch.nn.functional as F
from aqa_builtin.aggregators import AverageAggregator, IdentityAggregator, LSTMAggregator
from aqa_builtin.heads.caption import CaptionHead
from aqa_builtin.heads.classification import ClassificationHead
from aqa_builtin.heads.score import ScoreHead
from torch import nn

from aqa_framework.errors import SpecError
from aqa_framework.targets import Targets
from aqa_framework.testing import check_aggregator, check_head, fake_batch, tiny_targets
from aqa_framework.weights import official_to_head_keys

NO_JAVA = ["bleu", "rouge", "cider"]


pytestmark = pytest.mark.usefixtures("one_intra_op_thread")


def _head(cls, params, in_shape, targets=None):
    torch.manual_seed(0)
    return cls(cls.parse_params(params), tuple(in_shape), targets or tiny_targets())


# -- contracts -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cls", "params", "in_shape"),
    [
        (ScoreHead, {}, (16,)),
        (ScoreHead, {"hidden": 8, "dropout": 0.1}, (16,)),
        (ScoreHead, {"bottleneck": 4}, (8, 2, 4, 4)),
        (ClassificationHead, {"hidden": 8}, (16,)),
        (ClassificationHead, {"bottleneck": 4}, (8, 2, 4, 4)),
        (CaptionHead, {"hidden": 8, "word_dim": 8, "metrics": NO_JAVA}, (16,)),
        (
            CaptionHead,
            {"hidden": 8, "word_dim": 8, "metrics": NO_JAVA, "decoding": "beam",
             "beam_size": 3, "bottleneck": 4, "pool_size": [1, 2, 2]},
            (8, 2, 4, 4),
        ),
    ],
)
def test_heads_follow_the_head_contract(cls, params, in_shape):
    metrics = check_head(cls, params=params, in_shape=in_shape, num_clips=2)
    assert metrics


def test_aggregators_follow_the_contract():
    assert check_aggregator(AverageAggregator, {}, in_shape=(4, 2, 2, 2)) == (4, 2, 2, 2)
    assert check_aggregator(AverageAggregator, {"shared_fc": 8}, in_shape=(4, 2, 2, 2)) == (8,)
    assert check_aggregator(LSTMAggregator, {"hidden": 6}, in_shape=(16,)) == (6,)


def test_average_and_identity_aggregators():
    x = torch.randn(2, 3, 5)
    avg = AverageAggregator(AverageAggregator.parse_params({}), (5,))
    torch.testing.assert_close(avg(x), x.mean(1))
    shared = AverageAggregator(AverageAggregator.parse_params({"shared_fc": 4}), (5,))
    torch.testing.assert_close(shared(x), torch.relu(shared.fc(x.mean(1))))
    ident = IdentityAggregator(IdentityAggregator.parse_params({}), (5,))
    torch.testing.assert_close(ident(x[:, :1]), x[:, 0])
    with pytest.raises(SpecError, match="'identity' takes one clip per video but got 3"):
        ident(x)


# -- score ---------------------------------------------------------------------------------


def test_score_loss_is_mse_plus_l1_on_scaled_targets_and_predictions_in_points():
    targets = tiny_targets(scores={"final_score": (0, 100)}, captions=False)
    head = _head(ScoreHead, {"target_scale": 17}, (6,), targets)
    batch = {"scores": {"final_score": torch.tensor([34.0, 51.0])}}
    out = {"scores": torch.tensor([[1.0], [4.0]])}
    true = torch.tensor([[2.0], [3.0]])
    expected = F.mse_loss(out["scores"], true) + F.l1_loss(out["scores"], true)
    torch.testing.assert_close(head.loss(out, batch), expected)
    assert head.predict(out) == {"final_score": [17.0, 68.0]}
    assert head.references(batch) == {"final_score": [34.0, 51.0]}


def test_score_head_with_several_scores_reports_fisher_z_means():
    targets = tiny_targets(scores={"execution": (0, 10), "difficulty": (0, 6)}, captions=False)
    head = _head(ScoreHead, {}, (6,), targets)
    assert head.out.out_features == 2
    preds = {"execution": [1.0, 2.0, 3.0, 4.0], "difficulty": [4.0, 3.0, 2.0, 2.5]}
    refs = {"execution": [1.5, 2.5, 2.0, 4.0], "difficulty": [4.0, 3.1, 2.0, 1.0]}
    m = head.metrics(preds, refs)
    assert {"execution_spearman", "difficulty_rel_l2", "spearman", "pearson"} <= set(m)
    from aqa_framework.metrics import fisher_z_mean

    assert m["spearman"] == pytest.approx(
        fisher_z_mean([m["execution_spearman"], m["difficulty_spearman"]])
    )


def test_score_relative_l2_uses_the_evaluated_range_unless_a_fixed_one_is_asked_for():
    targets = tiny_targets(scores={"final_score": (0, 104.5)}, captions=False)
    preds = {"final_score": [23.0, 37.0, 82.5, 97.0]}
    refs = {"final_score": [18.0, 40.0, 77.5, 103.0]}
    sq = [(p - t) ** 2 for p, t in zip(preds["final_score"], refs["final_score"], strict=True)]

    def expected(low: float, high: float) -> float:
        return 100 * sum(sq) / len(sq) / (high - low) ** 2

    m = _head(ScoreHead, {}, (6,), targets).metrics(preds, refs)
    assert m["rel_l2"] == pytest.approx(expected(18, 103))
    assert (m["rel_l2_low"], m["rel_l2_high"]) == (18.0, 103.0)  # stated with the value
    m = _head(ScoreHead, {"rel_l2_range": "dataset"}, (6,), targets).metrics(preds, refs)
    assert m["rel_l2"] == pytest.approx(expected(0, 104.5)) and m["rel_l2_high"] == 104.5
    m = _head(ScoreHead, {"rel_l2_range": [10, 110]}, (6,), targets).metrics(preds, refs)
    assert m["rel_l2"] == pytest.approx(expected(10, 110)) and m["rel_l2_low"] == 10.0
    with pytest.raises(ValueError, match="high > low"):
        ScoreHead.parse_params({"rel_l2_range": [50, 50]})


def test_caption_metrics_follow_the_coco_convention_unless_told_otherwise(monkeypatch):
    from aqa_framework import metrics as M

    targets = tiny_targets(classes={}, max_length=3)
    params = {"hidden": 8, "word_dim": 8, "metrics": NO_JAVA}
    head = _head(CaptionHead, params, (16,), targets)
    batch = {
        "caption": torch.tensor([[1, 2, 3, 4, 0]]),  # cut to 3 words for training
        "caption_text": ["a clean dive . good entry"],  # the complete caption
    }
    refs = head.references(batch)
    assert refs == {"caption": ["a clean dive . good entry"]}
    full = head.metrics({"caption": ["a clean dive good entry"]}, refs)
    assert set(full) == {"bleu_1", "bleu_2", "bleu_3", "bleu_4", "rouge_l", "cider"}
    assert full["bleu_4"] == pytest.approx(1.0)  # PTB tokenization drops the "."

    raw = _head(CaptionHead, {**params, "tokenize": False}, (16,), targets)
    scores = raw.metrics({"caption": ["a clean dive good entry"]}, raw.references(batch))
    assert set(scores) == {f"{k}_raw" for k in full} and scores["bleu_4_raw"] < 1
    cut = _head(CaptionHead, {**params, "full_references": False}, (16,), targets)
    assert cut.references(batch) == {"caption": ["a clean dive"]}
    assert "cider_raw" in cut.metrics({"caption": ["a clean dive"]}, cut.references(batch))

    monkeypatch.setattr(M.shutil, "which", lambda name: None)  # no Java: labelled fallback
    with pytest.warns(M.CaptionMetricWarning, match="needs Java"):
        scores = head.metrics({"caption": ["A clean dive"]}, {"caption": ["A clean dive!"]})
    assert "bleu_4_raw" in scores and "bleu_4" not in scores
    assert "bleu_4" in head.metrics({"caption": ["a dive"]}, {"caption": ["a dive ."]})


def test_heads_explain_missing_targets():
    only_scores = tiny_targets(classes={}, captions=False)
    p = ScoreHead.parse_params({"scores": ["execution"]})
    assert "needs score targets ['execution']" in ScoreHead.check_targets(p, only_scores)
    p = ClassificationHead.parse_params({})
    assert "needs classes targets" in ClassificationHead.check_targets(p, only_scores)
    p = ClassificationHead.parse_params({"fields": ["twists"]})
    assert "needs class fields ['twists']" in ClassificationHead.check_targets(p, tiny_targets())
    p = CaptionHead.parse_params({})
    assert "needs captions targets" in CaptionHead.check_targets(p, Targets())
    p = CaptionHead.parse_params({"decoding": "beam", "beam_size": 50})
    assert "beam_size 50 > vocabulary size 10" in CaptionHead.check_targets(p, tiny_targets())


def test_conv_form_needs_feature_maps():
    with pytest.raises(ValueError, match="form 'conv' needs feature maps"):
        _head(ScoreHead, {"form": "conv"}, (16,))


# -- classification ------------------------------------------------------------------------


def test_classification_loss_is_the_sum_of_cross_entropies():
    targets = tiny_targets(classes={"position": 3, "armstand": 2, "twists": 8}, captions=False)
    head = _head(ClassificationHead, {}, (6,), targets)
    assert {f: c.out_features for f, c in head.classifiers.items()} == {
        "position": 3, "armstand": 2, "twists": 8
    }
    batch = fake_batch(targets, 5, video_shape=None)
    out = head(torch.randn(5, 6), batch)
    expected = sum(F.cross_entropy(out["logits"][f], batch["classes"][f]) for f in head.fields)
    torch.testing.assert_close(head.loss(out, batch), expected)
    m = head.metrics({"position": [0, 1], "armstand": [1, 1], "twists": [0, 0]},
                     {"position": [0, 1], "armstand": [0, 1], "twists": [1, 1]})
    assert m == {"position_acc": 1.0, "armstand_acc": 0.5, "twists_acc": 0.0, "accuracy": 0.5}


# -- official layouts ----------------------------------------------------------------------


class OfficialMSCADCScoreHead(nn.Module):
    """The official MTL-AQA MSCADC score head (head_fs_2.py) with a configurable bottleneck."""

    def __init__(self, cin, b):
        super().__init__()
        self.head_conv1 = nn.Conv3d(cin, b, 1, padding=1)
        self.cntxt_pad = nn.ReplicationPad3d(9)
        plan = [(b, 2 * b, 1), (2 * b, 2 * b, 1), (2 * b, 4 * b, 2), (4 * b, 8 * b, 4),
                (8 * b, 8 * b, 1)]
        for i, (ci, co, d) in enumerate(plan, 1):
            setattr(self, f"cntxt_conv{i}", nn.Conv3d(ci, co, 3, dilation=d))
            setattr(self, f"cntxt_bn{i}", nn.BatchNorm3d(co))
        self.cntxt_conv6 = nn.Conv3d(8 * b, b, 1)
        self.head_bn1 = nn.BatchNorm3d(b)
        self.head_pool1 = nn.MaxPool3d(2, 2)
        self.head_conv2 = nn.Conv3d(b, b, 3, padding=1)
        self.head_bn2 = nn.BatchNorm3d(b)
        self.head_conv3 = nn.Conv3d(b, 1, 3, padding=1)

    def forward(self, x):
        h = self.cntxt_pad(self.head_conv1(x))
        for i in range(1, 6):
            h = torch.relu(getattr(self, f"cntxt_bn{i}")(getattr(self, f"cntxt_conv{i}")(h)))
        h = self.head_pool1(torch.relu(self.head_bn1(self.cntxt_conv6(h))))
        h = torch.relu(self.head_bn2(self.head_conv2(h)))
        h = self.head_conv3(h)
        return F.avg_pool3d(h, h.shape[2:]).flatten()  # AvgPool(2, 11, 11) at 180x180 input


def test_mscadc_score_head_reproduces_the_official_head():
    torch.manual_seed(0)
    official = OfficialMSCADCScoreHead(16, 4).eval()
    for m in official.modules():
        if isinstance(m, nn.BatchNorm3d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 1.5)
    targets = tiny_targets(captions=False)
    ours = _head(ScoreHead, {"form": "conv", "bottleneck": 4}, (16, 2, 4, 4), targets).eval()
    ours.load_state_dict(official_to_head_keys("score", official.state_dict()))
    x = torch.randn(3, 16, 2, 4, 4)
    with torch.no_grad():
        torch.testing.assert_close(ours(x)["scores"][:, 0], official(x), rtol=1e-5, atol=1e-6)


def test_official_c3d_avg_classifier_keys_map_to_dataset_fields():
    fields = {"position": 3, "armstand": 2, "rotation_type": 4, "ss_no": 10, "tw_no": 8}
    targets = tiny_targets(classes=fields, captions=False)
    head = _head(ClassificationHead, {}, (32,), targets)
    official = {f"fc_{n}.{p}": torch.randn(k, 32) if p == "weight" else torch.randn(k)
                for n, k in [("position", 3), ("armstand", 2), ("rot_type", 4), ("ss_no", 10),
                             ("tw_no", 8)]
                for p in ("weight", "bias")}
    head.load_state_dict(official_to_head_keys("classification", official, head.fields))
    assert torch.equal(head.classifiers["rotation_type"].weight, official["fc_rot_type.weight"])


# -- captions ------------------------------------------------------------------------------


class OfficialS2VT(nn.Module):
    """The official MTL-AQA caption model's training pass (S2VTModel.py), one token a step."""

    def __init__(self, vocab, dim_vid, hidden, word, layers, dropout):
        super().__init__()
        self.rnn1 = nn.GRU(dim_vid, hidden, layers, batch_first=True, dropout=dropout)
        self.rnn2 = nn.GRU(hidden + word, hidden, layers, batch_first=True, dropout=dropout)
        self.embedding = nn.Embedding(vocab, word)
        self.out = nn.Linear(hidden, vocab)
        self.dim_vid, self.dim_word = dim_vid, word

    def forward(self, feats, captions):
        b, n, _ = feats.shape
        out1, s1 = self.rnn1(feats)
        out2, s2 = self.rnn2(torch.cat([out1, feats.new_zeros(b, n, self.dim_word)], 2))
        probs = []
        for i in range(captions.shape[1] - 1):
            out1, s1 = self.rnn1(feats.new_zeros(b, 1, self.dim_vid), s1)
            words = self.embedding(captions[:, i]).unsqueeze(1)
            out2, s2 = self.rnn2(torch.cat([out1, words], 2), s2)
            probs.append(F.log_softmax(self.out(out2.squeeze(1)), dim=1).unsqueeze(1))
        return torch.cat(probs, 1)


def test_teacher_forcing_in_one_gru_call_equals_the_per_token_loop():
    targets = tiny_targets(max_length=8)
    torch.manual_seed(1)
    official = OfficialS2VT(10, 12, 16, 8, 2, dropout=0.0)
    head = _head(CaptionHead, {"hidden": 16, "word_dim": 8, "dropout": 0.0}, (12,), targets)
    head.load_state_dict(official_to_head_keys("caption", official.state_dict()))
    batch = fake_batch(targets, 4, video_shape=None, seed=3)
    feats = torch.randn(4, 5, 12)
    head.train()
    out = head(feats, batch)
    loop = official(feats, batch["caption"])
    torch.testing.assert_close(out["log_probs"], loop, rtol=1e-5, atol=1e-5)
    # the official LanguageModelCriterion: masked NLL summed over tokens / batch size
    mask = (torch.arange(batch["caption"].shape[1]) < batch["caption_length"][:, None]).float()
    nll = -loop.gather(2, batch["caption"][:, 1:, None]).squeeze(2)
    expected = (nll * mask[:, 1:]).sum() / 4
    assert abs(float(head.loss(out, batch).detach()) - float(expected.detach())) < 1e-5
    assert "tokens" not in out  # no decoding while training


def _caption_head(**params):
    base = {"hidden": 16, "word_dim": 8, "dropout": 0.0}
    return _head(CaptionHead, {**base, **params}, (12,), tiny_targets(max_length=8)).eval()


def test_beam_search_of_width_one_is_greedy_and_samples_are_independent():
    head = _caption_head(decoding="beam", beam_size=1)
    feats = torch.randn(3, 4, 12)
    seq = head.encode_clips(feats)
    greedy = head.greedy(seq)
    torch.testing.assert_close(head.beam_search(seq, 1)[:, : greedy.shape[1]], greedy)
    beams = head.beam_search(seq, 4)
    for i in range(3):
        alone = head.beam_search(seq[i : i + 1], 4)[0]
        assert alone.tolist() == beams[i, : alone.shape[0]].tolist()
        assert not beams[i, alone.shape[0] :].any()  # padding (= <eos>) after the caption


def test_decoded_tokens_stop_at_eos_and_become_text():
    head = _caption_head()
    eos = head.targets.captions.eos_index
    with torch.no_grad():
        head.out.bias.fill_(-10.0)
        head.out.bias[3] = 5.0  # "clean" is likely at first ...
    out = head(torch.randn(2, 3, 12), None)
    assert out["tokens"].shape[1] == 9  # max_length words + <eos>, then the limit
    with torch.no_grad():
        head.out.bias[eos] = 20.0  # ... and <eos> beats everything
    out = head(torch.randn(2, 3, 12), None)
    assert out["tokens"].tolist() == [[eos], [eos]]
    assert head.predict(out) == {"caption": ["", ""]}
