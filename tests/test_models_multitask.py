import fakedives as fd
import pytest
import torch

from aqa_framework.builder import build_model, open_dataset

pytestmark = pytest.mark.usefixtures("one_intra_op_thread")


def _overfit(model_spec, data_params, lr, max_steps):
    torch.manual_seed(0)
    res = fd.resolved(model_spec, data_params)
    dataset = open_dataset(res, "train", train=True)
    model = build_model(res, dataset.targets, input_shape=dataset.input_shape)
    batch = fd.batch_of(dataset)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    first = None
    cls = model.heads["cls"]
    for _ in range(max_steps):
        outputs = model(batch["video"], batch)
        total, per_task = model.loss(outputs, batch)
        loss, caption_loss = float(total.detach()), float(per_task["caption"].detach())
        first = loss if first is None else first
        learned = cls.predict(outputs["cls"]) == cls.references(batch)
        if learned and loss < first / 20 and caption_loss < 0.15:
            break
        opt.zero_grad()
        total.backward()
        opt.step()
    with torch.no_grad():
        final, _ = model.loss(model(batch["video"], batch), batch)
        # after so few steps BatchNorm's running averages still lag: recompute them exactly
        for m in model.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.reset_running_stats()
                m.momentum = None
        model(batch["video"], batch)
    return model, batch, first, float(final)


@pytest.mark.parametrize(
    ("model_spec", "data_params", "lr"),
    [(fd.C3D_AVG_MTL, {}, 3e-3), (fd.MSCADC_MTL, {"num_clips": 1}, 5e-3)],
    ids=["c3d-avg-mtl", "mscadc-mtl"],
)
def test_multitask_model_overfits_a_handful_of_samples(model_spec, data_params, lr):
    model, batch, first, final = _overfit(model_spec, data_params, lr, max_steps=250)
    assert final < first / 10, f"total loss only fell from {first:.3f} to {final:.3f}"

    model.eval()
    refs = model.references(batch)
    caption = model.heads["caption"]
    eos = model.targets.captions.eos_index
    for decoding in ("greedy", "beam"):
        caption.params.decoding = decoding
        caption.params.beam_size = 3
        with torch.no_grad():
            outputs = model(batch["video"])
        assert all(eos in row for row in outputs["caption"]["tokens"].tolist()), decoding
        preds = model.predict(outputs)
        assert preds["caption"] == refs["caption"], decoding
    assert preds["cls"] == refs["cls"]
    assert set(preds) == {"score", "cls", "caption"}
    assert len(preds["score"]["final_score"]) == len(batch["key"])


def test_forward_runs_the_backbone_once_on_all_clips():
    res = fd.resolved(fd.C3D_AVG_MTL, {"num_clips": 3})
    dataset = open_dataset(res, "train")
    model = build_model(res, dataset.targets, input_shape=dataset.input_shape)
    calls = []
    model.backbone.register_forward_hook(lambda m, args, out: calls.append(args[0].shape))
    batch = fd.batch_of(dataset)
    model.train()
    outputs = model(batch["video"], batch)
    assert calls == [(4 * 3, 3, 16, 32, 32)]
    total, losses = model.loss(outputs, batch)
    assert set(losses) == {"score", "cls", "caption"}
    torch.testing.assert_close(total, sum(losses.values()))
    with pytest.raises(Exception, match=r"model input must be \(batch, clips"):
        model(batch["video"][:, 0])


def test_channels_last_gives_the_same_outputs():
    torch.manual_seed(0)
    res = fd.resolved(
        {**fd.C3D_AVG_MTL, "heads": {"score": {"name": "score"}}}, {"num_samples": 2}
    )
    dataset = open_dataset(res, "train")
    model = build_model(res, dataset.targets, input_shape=dataset.input_shape).eval()
    video = fd.batch_of(dataset)["video"]
    with torch.no_grad():
        plain = model(video)["score"]["scores"]
        fast = model.to_channels_last()(video)["score"]["scores"]
    assert model.backbone.conv2.weight.is_contiguous(memory_format=torch.channels_last_3d)
    torch.testing.assert_close(plain, fast, rtol=1e-4, atol=1e-5)
