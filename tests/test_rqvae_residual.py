"""RQ-VAE residual gradients (issue 18, item 9): with ``detach_residual`` (LC-Rec's behaviour, the default) only
the first level's commitment loss reaches the encoder; without it every level's does. Checked against gradients
computed by hand from the model's own encoder and codebooks."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.optim.optimizer import register_optimizer_step_pre_hook

from mmgenrec.quantize.rqvae import RQVAE, train_rqvae

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def encoder_grads(model, loss):
    model.zero_grad(set_to_none=True)
    loss.backward()
    return [p.grad.clone() if p.grad is not None else torch.zeros_like(p) for p in model.encoder.parameters()]


def expected_quant(model, x, detach: bool):
    """The mean over levels of codebook + beta x commitment loss, written out level by level."""
    z = model.encoder(x)
    r, total = z, 0.0
    for book in model.codebooks:
        idx = ((r.detach()[:, None, :] - book.weight.detach()[None]) ** 2).sum(-1).argmin(1)
        q = book(idx)
        total = total + F.mse_loss(q, r.detach()) + model.beta * F.mse_loss(q.detach(), r)
        r = (r - q).detach() if detach else r - q.detach()
    return total / model.levels


@pytest.mark.parametrize("detach", [True, False])
def test_which_commitment_losses_reach_the_encoder(detach):
    torch.manual_seed(0)
    model = RQVAE(16, levels=3, codebook_size=8, hidden=[32], latent_dim=4, detach_residual=detach)
    x = torch.randn(64, 16)
    got = encoder_grads(model, model(x)[1]["quant"])
    want = encoder_grads(model, expected_quant(model, x, detach))
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, rtol=1e-5, atol=1e-7)
    # the first level's commitment term alone, with the other levels' terms cut off by hand
    z = model.encoder(x)
    idx0 = ((z.detach()[:, None, :] - model.codebooks[0].weight.detach()[None]) ** 2).sum(-1).argmin(1)
    first = encoder_grads(model, model.beta * F.mse_loss(model.codebooks[0](idx0).detach(), z) / model.levels)
    same = all(torch.allclose(g, f, rtol=1e-5, atol=1e-7) for g, f in zip(got, first))
    assert same == detach


def test_lc_rec_behaviour_is_the_default():
    assert RQVAE(8, levels=2, codebook_size=4, hidden=[8], latent_dim=4).detach_residual is True
    x = torch.randn(40, 8).numpy()
    kw = dict(levels=2, codebook_size=4, hidden=[8], latent_dim=4, epochs=2, batch_size=16, lr=1e-3, seed=0)
    default, _, _ = train_rqvae(x, **kw)
    other, _, _ = train_rqvae(x, detach_residual=False, **kw)
    assert default.detach_residual and not other.detach_residual
    assert any(not torch.equal(a, b) for a, b in zip(default.encoder.parameters(), other.encoder.parameters()))


def test_gradients_are_clipped_before_every_step_as_lc_rec_does():
    """LC-Rec's trainer clips the gradients' global norm at 1.0 before each AdamW step; ``grad_clip`` (default 1.0)
    does the same. Read at every optimizer step through torch's global step pre-hook."""
    x = (torch.randn(48, 8) * 30).numpy()  # large inputs: unclipped gradient norms well above 1
    kw = dict(levels=2, codebook_size=4, hidden=[16], latent_dim=4, epochs=3, batch_size=16, lr=1e-3, seed=0)
    norms: list[float] = []

    def record(optimizer, args, kwargs):
        grads = [p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        norms.append(float(torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))))

    handle = register_optimizer_step_pre_hook(record)
    try:
        train_rqvae(x, grad_clip=0, **kw)
        unclipped, norms[:] = list(norms), []
        train_rqvae(x, **kw)
        default, norms[:] = list(norms), []
        train_rqvae(x, grad_clip=0.05, **kw)
        tight = list(norms)
    finally:
        handle.remove()
    assert len(unclipped) == len(default) == len(tight) == 9  # 3 epochs x 3 batches
    assert max(unclipped) > 1.0
    assert max(default) <= 1.0 + 1e-4 and max(tight) <= 0.05 + 1e-6
    with pytest.raises(ValueError, match="grad_clip"):
        train_rqvae(x, grad_clip=-1, **kw)
