"""Diagonal-Gaussian machinery shared by CMATH's variational fusion and LFVD's variational distillation.

Each modality's utterance representation is mapped to N(mu, diag(sigma^2)). The variance head
predicts a clamped log-variance, so sigma is always positive and KLs stay finite. KLs are returned
per dimension; callers choose the reduction (LFVD sums for its loss and averages for its fusion
weights, so the sigmoid does not saturate).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from models.layers.checks import choice

SIGMA_FUSION = ("mean_std", "mean_var", "poe")


class GaussianEncoder(nn.Module):
    """x [..., D_in] -> (mu, logvar) [..., D_z], each from Linear -> ReLU -> Linear."""

    def __init__(
        self,
        in_dim: int,
        latent_dim: int,
        hidden_dim: int | None = None,
        logvar_clamp: float = 10.0,
        initial_logvar: float = 0.0,
    ) -> None:
        super().__init__()
        hidden_dim = hidden_dim or in_dim
        self.mean = nn.Sequential(nn.Linear(in_dim, hidden_dim), nn.ReLU(), nn.Linear(hidden_dim, latent_dim))
        self.log_variance = nn.Sequential(nn.Linear(in_dim, hidden_dim), nn.ReLU(), nn.Linear(hidden_dim, latent_dim))
        with torch.no_grad():  # where the variance starts: 0 = unit variance; negative = a quieter start
            self.log_variance[2].bias.add_(float(initial_logvar))
        self.logvar_clamp = float(logvar_clamp)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        logvar = self.log_variance(x).clamp(-self.logvar_clamp, self.logvar_clamp)
        return self.mean(x), logvar


def gaussian_kl(mu_p: Tensor, logvar_p: Tensor, mu_q: Tensor, logvar_q: Tensor) -> Tensor:
    """KL(N_p || N_q) per dimension, for diagonal Gaussians given by mean and log-variance."""
    return 0.5 * (logvar_q - logvar_p + (logvar_p.exp() + (mu_p - mu_q).pow(2)) / logvar_q.exp() - 1.0)


def standard_normal_kl(mu: Tensor, logvar: Tensor) -> Tensor:
    """KL(N(mu, sigma^2) || N(0, I)) per dimension."""
    return 0.5 * (mu.pow(2) + logvar.exp() - logvar - 1.0)


def symmetric_kl(mu_p: Tensor, logvar_p: Tensor, mu_q: Tensor, logvar_q: Tensor) -> Tensor:
    """(KL(p||q) + KL(q||p)) / 2 per dimension."""
    return 0.5 * (gaussian_kl(mu_p, logvar_p, mu_q, logvar_q) + gaussian_kl(mu_q, logvar_q, mu_p, logvar_p))


def reparameterize(mu: Tensor, logvar: Tensor) -> Tensor:
    """A differentiable sample mu + sigma * eps, eps ~ N(0, I)."""
    return mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)


def fuse_gaussians(
    mus: Sequence[Tensor], logvars: Sequence[Tensor], weights: Tensor | None = None, rule: str = "mean_std"
) -> tuple[Tensor, Tensor]:
    """One Gaussian from K per-modality Gaussians [..., D] -> (mu, logvar) [..., D].

    `weights` [K, ...] (1 = modality present, 0 = absent) restricts the fusion to the modalities an
    utterance has; where none is present every modality counts. Rules for sigma (mu is the weighted
    mean for the first two):
    mean_std: sigma = mean of the sigmas (CMATH as published);
    mean_var: the distribution of the mean of independent Gaussians, sigma^2 = sum sigma_k^2 / K^2;
    poe: product of experts, precision = sum of precisions, mu precision-weighted.
    """
    choice("variational fusion", "sigma_fusion", rule, SIGMA_FUSION)
    mu = torch.stack(list(mus))
    logvar = torch.stack(list(logvars))
    if weights is None:
        w = torch.ones_like(mu[..., :1])
    else:
        w = weights.to(mu.dtype).unsqueeze(-1)
        none = w.sum(dim=0, keepdim=True) == 0
        w = torch.where(none, torch.ones_like(w), w)
    total = w.sum(dim=0)
    if rule == "poe":
        precision = (w * torch.exp(-logvar)).sum(dim=0)
        fused_var = 1.0 / precision
        fused_mu = fused_var * (w * mu * torch.exp(-logvar)).sum(dim=0)
        return fused_mu, torch.log(fused_var)
    fused_mu = (w * mu).sum(dim=0) / total
    if rule == "mean_std":
        sigma = (w * torch.exp(0.5 * logvar)).sum(dim=0) / total
        return fused_mu, 2.0 * torch.log(sigma)
    variance = (w * logvar.exp()).sum(dim=0) / total.pow(2)
    return fused_mu, torch.log(variance)
