"""The CPU GRU fast path computes what nn.GRU computes: outputs, states, every gradient and the
dropout between layers, with and without oneDNN packing."""

from __future__ import annotations

import pytest
import torch
from aqa_builtin import cpu_gru
from aqa_builtin.cpu_gru import StepwiseGRU, fast_path_applies, gru_forward
from torch import nn


def _pair(layers: int, dropout: float, inputs: int = 12, hidden: int = 16):
    torch.manual_seed(0)
    gru = nn.GRU(inputs, hidden, layers, batch_first=True, dropout=dropout)
    return gru


def _run(gru: nn.GRU, x: torch.Tensor, state, fast: bool, seed: int = 5):
    x = x.clone().requires_grad_(True)
    state = None if state is None else state.clone().requires_grad_(True)
    gru.zero_grad(set_to_none=True)
    torch.manual_seed(seed)
    out, final = gru_forward(gru, x, state) if fast else gru(x, state)
    # a loss that uses every output and the final state
    weights = torch.linspace(-1, 1, out.numel()).reshape(out.shape)
    ((out * weights).sum() + (final ** 2).sum()).backward()
    grads = {name: p.grad.clone() for name, p in gru.named_parameters()}
    grads["x"] = x.grad.clone()
    if state is not None:
        grads["state"] = state.grad.clone()
    return out.detach(), final.detach(), grads


@pytest.mark.parametrize("rows", [1, 3])
@pytest.mark.parametrize("steps", [1, 5, 14])
@pytest.mark.parametrize("with_state", [False, True])
def test_matches_nn_gru_outputs_and_gradients(rows, steps, with_state):
    gru = _pair(layers=2, dropout=0.0)
    x = torch.randn(rows, steps, 12)
    state = torch.randn(2, rows, 16) if with_state else None
    ref = _run(gru, x, state, fast=False)
    got = _run(gru, x, state, fast=True)
    torch.testing.assert_close(got[0], ref[0], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(got[1], ref[1], rtol=1e-5, atol=1e-6)
    assert set(got[2]) == set(ref[2])
    for name in ref[2]:
        torch.testing.assert_close(got[2][name], ref[2][name], rtol=1e-4, atol=1e-5, msg=name)


def test_dropout_between_layers_draws_the_same_masks():
    gru = _pair(layers=3, dropout=0.4).train()
    x = torch.randn(3, 9, 12)
    ref = _run(gru, x, None, fast=False, seed=11)
    got = _run(gru, x, None, fast=True, seed=11)
    torch.testing.assert_close(got[0], ref[0], rtol=1e-5, atol=1e-6)
    for name in ref[2]:
        torch.testing.assert_close(got[2][name], ref[2][name], rtol=1e-4, atol=1e-5, msg=name)
    # and the masks matter: another seed gives other outputs
    other = _run(gru, x, None, fast=True, seed=12)
    assert not torch.allclose(other[0], got[0])


def test_without_onednn_packing_the_plain_products_agree(monkeypatch):
    gru = _pair(layers=2, dropout=0.0)
    x = torch.randn(4, cpu_gru.PACK_MIN_STEPS + 2, 12)
    packed = _run(gru, x, None, fast=True)
    monkeypatch.setattr(cpu_gru, "_ONEDNN", False)
    plain = _run(gru, x, None, fast=True)
    torch.testing.assert_close(packed[0], plain[0], rtol=1e-5, atol=1e-6)
    for name in plain[2]:
        torch.testing.assert_close(packed[2][name], plain[2][name], rtol=1e-4, atol=1e-5)


def test_no_grad_inference_and_stepping_with_a_state_agree():
    gru = _pair(layers=2, dropout=0.3).eval()
    x = torch.randn(2, 6, 12)
    with torch.no_grad():
        ref_out, ref_state = gru(x)
        out, state = gru_forward(gru, x[:, :4])
        for t in range(4, 6):
            step, state = gru_forward(gru, x[:, t : t + 1], state)
            out = torch.cat([out, step], 1)
    torch.testing.assert_close(out, ref_out, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(state, ref_state, rtol=1e-5, atol=1e-6)


def test_falls_back_where_the_fast_path_does_not_apply():
    gru = _pair(layers=1, dropout=0.0)
    x = torch.randn(2, 3, 12)
    assert fast_path_applies(gru, x)
    assert not fast_path_applies(gru, x.double())
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert not fast_path_applies(gru, x)
    time_major = nn.GRU(12, 16)
    assert not fast_path_applies(time_major, x)
    out, _ = gru_forward(time_major, x.transpose(0, 1))
    assert out.shape == (3, 2, 16)


@pytest.mark.parametrize("training", [False, True])
def test_stepwise_gru_matches_nn_gru_on_the_concatenated_input(training):
    torch.manual_seed(0)
    gru = nn.GRU(12, 16, 2, batch_first=True, dropout=0.3).train(training)
    static, dynamic = torch.randn(3, 4, 8), torch.randn(3, 4, 4)
    state0 = torch.randn(2, 3, 16)
    stepper = StepwiseGRU(gru, static)
    state, outs, ref_outs, ref_state = state0, [], [], state0
    with torch.no_grad():
        for t in range(4):
            torch.manual_seed(t)
            out, state = stepper.step(t, dynamic[:, t], state)
            outs.append(out)
            torch.manual_seed(t)
            ref, ref_state = gru(torch.cat([static[:, t : t + 1], dynamic[:, t : t + 1]], 2),
                                 ref_state)
            ref_outs.append(ref[:, 0])
    torch.testing.assert_close(torch.stack(outs), torch.stack(ref_outs), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(state, ref_state, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("decoding", ["greedy", "beam"])
def test_caption_decoding_is_unchanged_by_the_fast_path(monkeypatch, decoding):
    from aqa_builtin.heads import caption as caption_module

    from aqa_framework.testing import tiny_targets

    targets = tiny_targets(captions=True)
    params = caption_module.CaptionHead.Params(hidden=16, word_dim=8, decoding=decoding,
                                               beam_size=3)
    torch.manual_seed(0)
    head = caption_module.CaptionHead(params, (24,), targets).eval()
    # no <eos>: every caption runs to the length limit
    with torch.no_grad():
        head.out.bias[targets.captions.eos_index] = -1e4
    features = torch.randn(2, 3, 24)
    fast = head(features, None)["tokens"]
    monkeypatch.setattr(cpu_gru, "fast_path_applies", lambda gru, x: False)
    plain = head(features, None)["tokens"]
    assert fast.shape[1] == head.max_steps
    torch.testing.assert_close(fast, plain)


def test_runs_under_torch_compile_without_packing():
    """Inductor wants oneDNN-packed weights to be constants: compiled code does not pack."""
    gru = _pair(layers=1, dropout=0.0)
    x = torch.randn(3, cpu_gru.PACK_MIN_STEPS, 12)
    compiled = torch.compile(lambda inp: gru_forward(gru, inp)[0])
    out = compiled(x)
    torch.testing.assert_close(out, gru(x)[0], rtol=1e-5, atol=1e-6)


def test_frozen_weights_get_no_gradient_and_the_input_still_does():
    gru = _pair(layers=2, dropout=0.0)
    for p in gru.parameters():
        p.requires_grad_(False)
    x = torch.randn(3, 5, 12, requires_grad=True)
    gru_forward(gru, x)[0].sum().backward()
    assert all(p.grad is None for p in gru.parameters())
    ref = x.detach().clone().requires_grad_(True)
    gru(ref)[0].sum().backward()
    torch.testing.assert_close(x.grad, ref.grad, rtol=1e-4, atol=1e-5)
