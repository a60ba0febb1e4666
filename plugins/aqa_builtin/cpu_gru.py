"""A faster fp32 GRU for CPUs: the same computation as ``nn.GRU``, laid out for small batches.

On a CPU, ``nn.GRU`` steps through time inside ATen and autograd records every step: the
backward pass then computes the recurrent weights' gradient as one outer product per step
(``(3H, B) @ (B, H)`` for a batch of ``B``) and adds it into a ``3H x H`` buffer, ``T`` times
per layer. With the caption head's batch of 3 and 512 hidden units this bookkeeping, not the
arithmetic, is what a training step spends most of its GRU time on.

:func:`gru_forward` computes exactly what ``nn.GRU`` computes (the same gate equations and
operation order, the same dropout between layers, drawing the same random numbers) with the
recurrence as one autograd node per layer: its backward pass runs the step-by-step part (the
gradient of the hidden state) and then forms the weight and bias gradients of all steps in
one matrix product. Results agree with ``nn.GRU`` to float rounding (the weight gradients are
summed in another order); ``tests/test_cpu_gru.py`` checks outputs and gradients.

Where the batch has more than one row, the recurrent products run through oneDNN with the
weight packed once per call (``torch.ops.mkldnn``): the packing costs about as much as a
dozen unpacked products, and MKL's products with 2-16 rows are several times slower than
oneDNN's on some CPUs. Without oneDNN (or for one row) plain ``addmm`` is used.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

#: Shortest sequence for which the recurrent weights are packed for oneDNN.
PACK_MIN_STEPS = 12

_ONEDNN: bool | None = None


def _onednn_ok() -> bool:
    """Whether oneDNN's packed linear op is present and computes a product correctly."""
    global _ONEDNN
    if _ONEDNN is None:
        try:
            ops = torch.ops.mkldnn
            w = torch.arange(12.0).reshape(3, 4)
            x = torch.ones(2, 4)
            packed = ops._reorder_linear_weight(w, 2)
            out = ops._linear_pointwise(x, packed, None, "none", [], "")
            _ONEDNN = bool(torch.allclose(out, x @ w.t()))
        except (AttributeError, RuntimeError):
            _ONEDNN = False
    return _ONEDNN


def _packs(rows: int, steps: int) -> bool:
    """Whether the weight of a recurrence of ``rows`` rows and ``steps`` steps is packed."""
    if torch.compiler.is_compiling():  # inductor wants packed weights to be constants
        return False
    return rows > 1 and steps >= PACK_MIN_STEPS and _onednn_ok()


def _linear(weight: Tensor, bias: Tensor | None, rows: int, steps: int) -> Callable[..., Tensor]:
    """``x -> x @ weight.T + bias`` for the ``steps`` products of a recurrence of ``rows`` rows."""
    weight = weight.detach()
    bias = None if bias is None else bias.detach()
    if _packs(rows, steps):
        ops = torch.ops.mkldnn
        packed = ops._reorder_linear_weight(weight.contiguous(), rows)
        return lambda x: ops._linear_pointwise(x, packed, bias, "none", [], "")
    weight_t = weight.t()
    if bias is None:
        return lambda x: torch.mm(x, weight_t)
    return lambda x: torch.addmm(bias, x, weight_t)


def _cell(gi: Tensor, gh: Tensor, h: Tensor, out: tuple[Tensor, ...] | None = None) -> Tensor:
    """One GRU step from the input and hidden projections ``(B, 3H)``, in ATen's order.

    ``r, z = sigmoid(gh + gi)`` (first two thirds), ``n = tanh(gi_n + r * gh_n)``,
    ``h' = (h - n) * z + n``. ``out``: buffers ``(h', [r z], n)`` to write into.
    """
    hidden = h.shape[1]
    two = 2 * hidden
    h_out, rz_out, n_out = out if out is not None else (None, None, None)
    gates = torch.add(gh[:, :two], gi[:, :two], out=rz_out).sigmoid_()
    new = torch.addcmul(gi[:, two:], gh[:, two:], gates[:, :hidden], out=n_out).tanh_()
    return torch.sub(h, new, out=h_out).mul_(gates[:, hidden:]).add_(new)


class _Recurrence(torch.autograd.Function):
    """The hidden-state recurrence of one GRU layer over precomputed input projections.

    Per step, as ATen's GRU cell: ``gh = W_hh h + b_hh``, ``r, z = sigmoid(gh + gi)`` (first
    two thirds), ``n = tanh(gi_n + r * gh_n)``, ``h' = (h - n) * z + n``.
    """

    @staticmethod
    def forward(ctx, gi: Tensor, h0: Tensor, w_hh: Tensor, b_hh: Tensor) -> Tensor:  # noqa: D102
        steps, rows, hidden = gi.shape[0], h0.shape[0], h0.shape[1]
        two = 2 * hidden
        linear = _linear(w_hh, b_hh, rows, steps)
        states = gi.new_empty(steps + 1, rows, hidden)
        states[0] = h0
        rz = gi.new_empty(steps, rows, two)  # the reset and update gates
        n = gi.new_empty(steps, rows, hidden)  # the new gate
        h_n = gi.new_empty(steps, rows, hidden)  # W_hn h + b_hn
        h = states[0]
        for t in range(steps):
            gh = linear(h)
            h_n[t] = gh[:, two:]
            h = _cell(gi[t], gh, h, out=(states[t + 1], rz[t], n[t]))
        ctx.save_for_backward(states, rz, n, h_n, w_hh)
        return states[1:]

    @staticmethod
    def backward(ctx, grad_out: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:  # noqa: D102
        states, rz, n, h_n, w_hh = ctx.saved_tensors
        steps, rows, hidden = grad_out.shape
        two = 2 * hidden
        r, z = rz[..., :hidden], rz[..., hidden:]
        # the factors of each step's gradients that do not depend on the incoming gradient
        to_n = (1 - z) * (1 - n * n)  # dh -> d(gi_n)
        to_z = (states[:-1] - n) * z * (1 - z)  # dh -> d(gi_z) = d(gh_z)
        to_r = h_n * r * (1 - r)  # d(gi_n) -> d(gi_r) = d(gh_r)
        # d(W_hh h) / dh: products with W_hh itself, i.e. x @ (W_hh.T).T
        if _packs(rows, steps):
            back = _linear(w_hh.t().contiguous(), None, rows, steps)
        else:
            w = w_hh.detach()
            back = lambda x: torch.mm(x, w)  # noqa: E731
        d_gi = grad_out.new_empty(steps, rows, 3 * hidden)
        d_gh = grad_out.new_empty(steps, rows, 3 * hidden)
        dh = torch.zeros_like(grad_out[0])
        for t in range(steps - 1, -1, -1):
            dh = dh + grad_out[t]
            d_n = torch.mul(dh, to_n[t], out=d_gi[t, :, two:])
            torch.mul(dh, to_z[t], out=d_gh[t, :, hidden:two])
            torch.mul(d_n, to_r[t], out=d_gh[t, :, :hidden])
            torch.mul(d_n, r[t], out=d_gh[t, :, two:])
            dh = back(d_gh[t]).addcmul_(dh, z[t])
        d_gi[:, :, :two] = d_gh[:, :, :two]
        flat = d_gh.reshape(steps * rows, 3 * hidden)
        d_w = d_b = None
        if ctx.needs_input_grad[2]:
            d_w = flat.t() @ states[:-1].reshape(steps * rows, hidden)
        if ctx.needs_input_grad[3]:
            d_b = flat.sum(0)
        return d_gi, dh, d_w, d_b


def fast_path_applies(gru: nn.GRU, x: Tensor) -> bool:
    """Whether :func:`gru_forward` replaces ``gru(x, state)``: a plain fp32 GRU on the CPU."""
    return (
        isinstance(x, Tensor)
        and x.device.type == "cpu"
        and x.dtype == torch.float32
        and gru.batch_first
        and gru.bias
        and not gru.bidirectional
        and getattr(gru, "proj_size", 0) == 0
        and not torch.is_autocast_enabled("cpu")
    )


def gru_forward(gru: nn.GRU, x: Tensor, state: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """``gru(x, state)`` for a batch-first GRU, faster on a CPU (see the module docstring).

    Falls back to ``gru(x, state)`` where :func:`fast_path_applies` says no.

    Args:
        gru: The GRU whose parameters are used.
        x: Input ``(B, T, D)``.
        state: Initial hidden state ``(layers, B, H)``; zeros when ``None``.

    Returns:
        ``(output (B, T, H), final state (layers, B, H))`` as ``nn.GRU`` returns them.
    """
    if not fast_path_applies(gru, x):
        return gru(x, state)
    rows = x.shape[0]
    if state is None:
        state = x.new_zeros(gru.num_layers, rows, gru.hidden_size)
    layer_input = x.transpose(0, 1)  # time-major, as ATen runs it (and draws dropout)
    finals = []
    for layer in range(gru.num_layers):
        w_ih, w_hh, b_ih, b_hh = (getattr(gru, f"{k}_l{layer}")
                                  for k in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"))
        gi = F.linear(layer_input, w_ih, b_ih)
        out = _Recurrence.apply(gi, state[layer], w_hh, b_hh)
        finals.append(out[-1])
        if gru.dropout and gru.training and layer < gru.num_layers - 1:
            out = F.dropout(out, gru.dropout, training=True)
        layer_input = out
    return out.transpose(0, 1), torch.stack(finals)


class StepwiseGRU:
    """A batch-first GRU run one time step at a time, as decoding loops run it.

    Each step's input is ``cat([static[:, t], dynamic], -1)``: the part known before the loop
    (``static``, e.g. the encoder outputs) goes through the first layer's input weights for all
    steps in one product up front, and only the part chosen in the loop (``dynamic``, e.g. the
    embedding of the previous word) is projected per step. Computes what ``gru`` computes on
    the concatenated input (to float rounding), dropout between layers included in training
    mode.

    Args:
        gru: A batch-first GRU with biases.
        static: ``(B, T, S)``: the first ``S`` input features of each of the ``T`` steps.
    """

    def __init__(self, gru: nn.GRU, static: Tensor) -> None:
        self.gru = gru
        split = static.shape[-1]
        w_ih = gru.weight_ih_l0
        self.static = F.linear(static, w_ih[:, :split], gru.bias_ih_l0)
        self.w_dynamic = w_ih[:, split:].contiguous()

    def step(self, t: int, dynamic: Tensor, state: Tensor) -> tuple[Tensor, Tensor]:
        """Advance one step.

        Args:
            t: Step index into ``static``.
            dynamic: ``(B, D)`` the rest of this step's input.
            state: ``(layers, B, H)`` hidden state.

        Returns:
            ``(output (B, H), new state (layers, B, H))``.
        """
        gru = self.gru
        gi = torch.addmm(self.static[:, t], dynamic, self.w_dynamic.t())
        states: list[Tensor] = []
        for layer in range(gru.num_layers):
            if states:
                below = states[-1]
                if gru.dropout and gru.training:
                    below = F.dropout(below, gru.dropout, training=True)
                gi = F.linear(below, getattr(gru, f"weight_ih_l{layer}"),
                              getattr(gru, f"bias_ih_l{layer}"))
            gh = F.linear(state[layer], getattr(gru, f"weight_hh_l{layer}"),
                          getattr(gru, f"bias_hh_l{layer}"))
            states.append(_cell(gi, gh, state[layer]))
        return states[-1], torch.stack(states)
