"""DRKF's progressive augmentation: a stack of residual autoencoder blocks applied position-wise.

Each block encodes the running representation through a narrow bottleneck and decodes a residual
that is added before the next block, so the augmented copy is refined block by block while staying
in the input's space; a two-layer transition maps the final state out. With widths (256, 128, 64)
at dim 1024 and 5 blocks this is the paper's 32-Linear, 5,139,520-parameter module.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn


def _bottleneck(dim: int, widths: Sequence[int]) -> tuple[nn.Sequential, nn.Sequential]:
    """Encoder dim -> widths[0] -> ... -> widths[-1] (LeakyReLU between, none at the end) and its mirror (ReLU)."""
    sizes = [dim, *widths]
    encoder: list[nn.Module] = []
    decoder: list[nn.Module] = []
    for i in range(len(widths)):
        encoder.append(nn.Linear(sizes[i], sizes[i + 1]))
        if i < len(widths) - 1:
            encoder.append(nn.LeakyReLU())
    back = sizes[::-1]
    for i in range(len(widths)):
        decoder.append(nn.Linear(back[i], back[i + 1]))
        if i < len(widths) - 1:
            decoder.append(nn.ReLU())
    return nn.Sequential(*encoder), nn.Sequential(*decoder)


class ResidualAutoencoder(nn.Module):
    """x^(k) = x^(k-1) + r^(k-1), r^(k) = D_k(E_k(x^(k))) for k = 1..blocks; output Tr(x^(K) + r^(K)).

    Works on the last dimension only, so a padded position never influences a real one.
    """

    def __init__(self, dim: int, widths: Sequence[int] = (256, 128, 64), blocks: int = 5) -> None:
        super().__init__()
        if dim <= 0 or blocks <= 0 or not widths or any(int(w) <= 0 for w in widths):
            raise ValueError(
                f"residual autoencoder: need dim > 0, blocks > 0, positive widths; got {dim}, {blocks}, {widths}"
            )
        pairs = [_bottleneck(dim, [int(w) for w in widths]) for _ in range(blocks)]
        self.encoders = nn.ModuleList(e for e, _ in pairs)
        self.decoders = nn.ModuleList(d for _, d in pairs)
        self.transition = nn.Sequential(nn.Linear(dim, dim), nn.ReLU(), nn.Linear(dim, dim))

    def forward(self, x: Tensor) -> Tensor:
        state, residual = x, None
        for encoder, decoder in zip(self.encoders, self.decoders):
            if residual is not None:
                state = state + residual
            residual = decoder(encoder(state))
        return self.transition(state + residual)
