"""Parity of the feature-distillation loss with the reference DAMO-YOLO's ``FeatureLoss`` (CWD).

The reference (tinyvision/DAMO-YOLO, ``damo/base_models/losses/distill_loss.py``, used by its
trainer with ``distiller='cwd'`` and weight 1) computes, per neck level:

1. a 1x1 conv (with bias) mapping the student's channels to the teacher's;
2. one ``BatchNorm2d(teacher_channels, affine=False)`` per level, applied separately to the
   aligned student map and to the teacher map. Those norms are kept in a plain Python list, so
   they are never registered as submodules: they are not in the state dict (never saved or
   resumed), ``.train()`` / ``.eval()`` on the loss module never reach them, and they stay in
   the training mode they were created in. Each call therefore standardises with the *batch*
   statistics of the map it is given (mean and biased variance over N, H, W; eps 1e-5); the
   running statistics they accumulate are never read;
3. CWD with tau = 1: per (sample, channel) a softmax over the H*W positions, the sum over all
   of them of ``p_T * (log p_T - log p_S)``, times tau^2, divided by N * C;

and sums the levels. This module writes those formulas out independently (float64, no
``conv2d`` / ``batch_norm`` / ``kl_div``) and checks :class:`FeatureDistillLoss` against them on
the same tensors and weights, in train and in eval mode.
"""

from __future__ import annotations

import pytest
import torch
from torch import Tensor

from damo_core.train.distill import FeatureDistillLoss

STUDENT_CHANNELS = (8, 16, 32)
TEACHER_CHANNELS = (16, 32, 64)
SIZES = ((16, 20), (8, 10), (4, 5))  # non-square maps, as strides 8/16/32 of a 128x160 input
BATCH = 3
# float32 module vs float64 formula; measured differences are ~1e-7 relative at most.
REL_TOL = 1e-6


def reference_cwd(student: list[Tensor], teacher: list[Tensor], weights: list[Tensor],
                  biases: list[Tensor], tau: float = 1.0, bn_eps: float = 1e-5) -> Tensor:
    """The reference's feature loss, written out in float64 (see the module docstring)."""
    total = torch.zeros((), dtype=torch.float64)
    for s, t, w, b in zip(student, teacher, weights, biases, strict=True):
        s, t = s.double(), t.double()
        aligned = (torch.einsum("nchw,oc->nohw", s, w.double()[:, :, 0, 0])
                   + b.double()[None, :, None, None])

        def standardise(x: Tensor) -> Tensor:
            mean = x.mean(dim=(0, 2, 3), keepdim=True)
            var = ((x - mean) ** 2).mean(dim=(0, 2, 3), keepdim=True)
            return (x - mean) / torch.sqrt(var + bn_eps)

        n, c = t.shape[:2]
        z_s = standardise(aligned).reshape(n * c, -1) / tau
        z_t = standardise(t).reshape(n * c, -1) / tau
        log_p_s = z_s - z_s.logsumexp(dim=1, keepdim=True)
        log_p_t = z_t - z_t.logsumexp(dim=1, keepdim=True)
        total = total + (log_p_t.exp() * (log_p_t - log_p_s)).sum() * tau**2 / (n * c)
    return total


def _batch(seed: int) -> tuple[list[Tensor], list[Tensor]]:
    """Student and teacher maps with per-channel offsets and spreads, so the standardisation
    matters (raw maps of two networks are not on the same scale)."""
    g = torch.Generator().manual_seed(seed)
    student = [torch.randn(BATCH, c, h, w, generator=g) * 2.0 + 0.5
               for c, (h, w) in zip(STUDENT_CHANNELS, SIZES, strict=True)]
    teacher = [torch.randn(BATCH, c, h, w, generator=g) * (torch.rand(1, c, 1, 1, generator=g) * 3)
               + torch.randn(1, c, 1, 1, generator=g)
               for c, (h, w) in zip(TEACHER_CHANNELS, SIZES, strict=True)]
    return student, teacher


def _loss_module(seed: int, tau: float = 1.0) -> FeatureDistillLoss:
    """The project's loss with perturbed (not default-initialised) align convs."""
    module = FeatureDistillLoss(STUDENT_CHANNELS, TEACHER_CHANNELS, tau)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for conv in module.align.convs:
            conv.weight.copy_(torch.randn(conv.weight.shape, generator=g) * 0.5)
            conv.bias.copy_(torch.randn(conv.bias.shape, generator=g))
    return module


def _reference(module: FeatureDistillLoss, student, teacher, tau: float = 1.0) -> Tensor:
    convs = module.align.convs
    return reference_cwd(student, teacher, [c.weight.detach() for c in convs],
                         [c.bias.detach() for c in convs], tau)


def _rel(ours: Tensor, ref: Tensor) -> float:
    return abs(float(ours.detach()) - float(ref)) / abs(float(ref))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_feature_loss_matches_reference_formula(seed):
    student, teacher = _batch(seed)
    module = _loss_module(100 + seed)
    ref = _reference(module, student, teacher)
    assert float(ref) > 0.1  # a meaningful, non-degenerate value
    ours = module(student, teacher)
    assert ours.dtype == torch.float32
    assert _rel(ours, ref) <= REL_TOL, f"ours {float(ours)} vs reference {float(ref)}"


def test_tau_enters_as_in_the_reference():
    """tau divides the logits of both softmaxes and multiplies the KL by tau^2."""
    student, teacher = _batch(3)
    module = _loss_module(103, tau=2.0)
    assert _rel(module(student, teacher), _reference(module, student, teacher, 2.0)) <= REL_TOL


def test_eval_mode_still_uses_batch_statistics_and_saves_no_norm_state():
    """As in the reference, where the norms are never registered: eval mode changes nothing,
    and only the align convs are state (what ``last.pt`` carries for an exact resume)."""
    student, teacher = _batch(4)
    module = _loss_module(104)
    ref = _reference(module, student, teacher)
    train_value = float(module.train()(student, teacher).detach())
    eval_value = float(module.eval()(student, teacher).detach())
    assert eval_value == train_value
    assert _rel(torch.tensor(eval_value), ref) <= REL_TOL
    # Running a batch must not leave anything behind that would change the next one.
    assert float(module(student, teacher).detach()) == eval_value
    assert sorted(module.state_dict()) == sorted(
        f"align.convs.{i}.{p}" for i in range(len(STUDENT_CHANNELS)) for p in ("weight", "bias"))


def test_align_gradients_match_reference_formula():
    """The align convs are trained by this loss, so their gradients must agree too."""
    student, teacher = _batch(5)
    module = _loss_module(105)
    module(student, teacher).backward()
    weights = [c.weight.detach().double().requires_grad_() for c in module.align.convs]
    biases = [c.bias.detach().double().requires_grad_() for c in module.align.convs]
    reference_cwd(student, teacher, weights, biases).backward()
    for conv, w, b in zip(module.align.convs, weights, biases, strict=True):
        assert w.grad is not None and b.grad is not None
        # The bias's true gradient is 0 (the batch standardisation removes any per-channel
        # offset), so both gradients are judged on the scale of the weight gradient.
        scale = w.grad.abs().max().item()
        assert scale > 0
        for ours, ref in ((conv.weight.grad, w.grad), (conv.bias.grad, b.grad)):
            assert ours is not None
            err = (ours.double() - ref).abs().max().item()
            assert err <= 1e-5 * scale, f"max |grad - reference| = {err:.3g} (scale {scale:.3g})"
