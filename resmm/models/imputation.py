"""Missing-modality imputation in embedding space, selected by `data.impute`.

Every imputer maps `(embeddings, present) -> (embeddings, present, aux_loss)`. `zero` leaves absent modalities
masked, so the fusion ignores them. The others fill absent rows with an estimate and mark them present:
- `mean`: running mean of the modality's embeddings over present rows (the dataset mean in feature space);
- `learned`: a learned missing-modality token per modality;
- `nearest`: the modality's embedding from the nearest complete training row, matched on the modalities the
  row does have (a bank of recent complete rows, kept with the model);
- `regress`: an MLP predicts the missing embedding from the present ones, trained with a reconstruction
  loss on rows where the modality is present: one point estimate, no uncertainty (named `generative` before
  issue 28; that name still loads);
- `mvae`: a multimodal VAE (Wu & Goodman 2018): a Gaussian expert per modality and a learned prior expert,
  combined by product of experts over the modalities a row has; each absent modality is its decoder's output at
  the joint posterior mean, and the posterior variance is the row's imputation uncertainty.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from resmm.choices import RENAMED_IMPUTERS


def _mean_present(embeddings: dict, present: dict, names: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    e = torch.stack([embeddings[m] * present[m].unsqueeze(-1) for m in names], 1)  # (B, M, D)
    count = torch.stack([present[m] for m in names], 1).sum(1, keepdim=True)  # (B, 1)
    return e.sum(1) / count.clamp(min=1.0), count


def _fill(embeddings: dict, present: dict, m: str, estimate: torch.Tensor, usable: torch.Tensor):
    """Replace absent rows of modality m with `estimate` where `usable`, and mark them present."""
    take = (present[m] < 0.5) & usable
    embeddings[m] = torch.where(take.unsqueeze(-1), estimate.to(embeddings[m].dtype), embeddings[m])
    present[m] = torch.where(take, torch.ones_like(present[m]), present[m])


class ZeroImputer(nn.Module):
    def __init__(self, modalities: list[str], embed_dim: int):
        super().__init__()

    def forward(self, embeddings: dict, present: dict):
        return dict(embeddings), dict(present), None


class MeanImputer(nn.Module):
    def __init__(self, modalities: list[str], embed_dim: int, momentum: float = 0.01):
        super().__init__()
        self.modalities, self.momentum = list(modalities), momentum
        self.register_buffer("means", torch.zeros(len(modalities), embed_dim))
        self.register_buffer("seen", torch.zeros(len(modalities)))

    def forward(self, embeddings: dict, present: dict):
        embeddings, present = dict(embeddings), dict(present)
        for i, m in enumerate(self.modalities):
            rows = present[m] > 0.5
            if self.training and rows.any():
                with torch.no_grad():
                    batch_mean = embeddings[m][rows].float().mean(0)
                    rate = 1.0 if self.seen[i] == 0 else self.momentum
                    self.means[i].mul_(1 - rate).add_(rate * batch_mean)
                    self.seen[i] += 1
            _fill(embeddings, present, m, self.means[i].expand_as(embeddings[m]), torch.ones_like(rows))
        return embeddings, present, None


class LearnedTokenImputer(nn.Module):
    def __init__(self, modalities: list[str], embed_dim: int):
        super().__init__()
        self.modalities = list(modalities)
        self.tokens = nn.Parameter(torch.zeros(len(modalities), embed_dim))

    def forward(self, embeddings: dict, present: dict):
        embeddings, present = dict(embeddings), dict(present)
        for i, m in enumerate(self.modalities):
            _fill(embeddings, present, m, self.tokens[i].expand_as(embeddings[m]), torch.ones_like(present[m] > 0))
        return embeddings, present, None


class NearestNeighbourImputer(nn.Module):
    def __init__(self, modalities: list[str], embed_dim: int, bank_rows: int = 512):
        super().__init__()
        self.modalities = list(modalities)
        self.register_buffer("bank", torch.zeros(bank_rows, len(modalities), embed_dim))
        self.register_buffer("filled", torch.zeros((), dtype=torch.long))
        self.register_buffer("cursor", torch.zeros((), dtype=torch.long))

    @torch.no_grad()
    def _remember_complete_rows(self, embeddings: dict, present: dict) -> None:
        complete = torch.stack([present[m] > 0.5 for m in self.modalities], 1).all(1)
        rows = torch.stack([embeddings[m] for m in self.modalities], 1)[complete].float()  # (n, M, D)
        for row in rows[-self.bank.shape[0]:]:
            self.bank[self.cursor] = row
            self.cursor.copy_((self.cursor + 1) % self.bank.shape[0])
            self.filled.copy_(torch.clamp(self.filled + 1, max=self.bank.shape[0]))

    def forward(self, embeddings: dict, present: dict):
        embeddings, present = dict(embeddings), dict(present)
        if self.training:
            self._remember_complete_rows(embeddings, present)
        n = int(self.filled)
        if n == 0 or len(self.modalities) < 2:
            return embeddings, present, None
        bank = self.bank[:n]  # (K, M, D)
        mask = torch.stack([present[m] for m in self.modalities], 1).float()  # (B, M)
        query, count = _mean_present(embeddings, present, self.modalities)  # (B, D)
        keys = torch.einsum("bm,kmd->bkd", mask, bank) / count.unsqueeze(-1).clamp(min=1.0)  # (B, K, D)
        similarity = F.cosine_similarity(query.unsqueeze(1).float(), keys, dim=-1)  # (B, K)
        nearest = bank[similarity.argmax(1)]  # (B, M, D)
        usable = count.squeeze(1) > 0
        for i, m in enumerate(self.modalities):
            _fill(embeddings, present, m, nearest[:, i], usable)
        return embeddings, present, None


class RegressionImputer(nn.Module):
    def __init__(self, modalities: list[str], embed_dim: int):
        super().__init__()
        self.modalities = list(modalities)
        m = len(self.modalities)
        self.predictors = nn.ModuleDict(
            {name: nn.Sequential(nn.Linear(embed_dim + m, embed_dim), nn.GELU(), nn.Linear(embed_dim, embed_dim))
             for name in self.modalities}
        )

    def forward(self, embeddings: dict, present: dict):
        original = dict(embeddings)
        embeddings, present = dict(embeddings), dict(present)
        flags = torch.stack([present[m] for m in self.modalities], 1).to(original[self.modalities[0]].dtype)
        losses = []
        for i, m in enumerate(self.modalities):
            others = [o for o in self.modalities if o != m]
            if not others:
                continue
            context, count = _mean_present(original, present, others)  # (B, D)
            others_flags = flags.clone()
            others_flags[:, i] = 0
            prediction = self.predictors[m](torch.cat([context, others_flags], 1))  # (B, D)
            usable = count.squeeze(1) > 0
            target_rows = (present[m] > 0.5) & usable
            if target_rows.any():  # reconstruction loss where the truth is known
                losses.append(F.mse_loss(prediction[target_rows].float(), original[m][target_rows].detach().float()))
            else:
                losses.append(prediction.sum() * 0.0)
            _fill(embeddings, present, m, prediction, usable)
        aux = torch.stack(losses).mean() if losses else None
        return embeddings, present, aux


class MVAEImputer(nn.Module):
    """Multimodal VAE over the modality embeddings (Wu & Goodman 2018, "Multimodal Generative Models for Scalable
    Weakly-Supervised Learning"). q(z | present modalities) is the product of a learned prior expert and one
    Gaussian expert per present modality; the prior p(z) is that prior expert, so a row with nothing present has
    posterior = prior and KL 0. Training maximises the ELBO (reconstruction + beta · KL) of the observed set, of
    each observed modality alone, and of one random observed subset per row, as in the paper's subsampling;
    the targets are the encoders' embeddings, detached, so the ELBO cannot pull the encoders towards collapse."""

    def __init__(self, modalities: list[str], embed_dim: int, latent_dim: int | None = None, beta: float = 1.0):
        super().__init__()
        self.modalities, self.beta = list(modalities), beta
        latent = latent_dim or max(8, embed_dim // 2)
        hidden = embed_dim
        self.experts = nn.ModuleDict({m: nn.Sequential(nn.LayerNorm(embed_dim), nn.Linear(embed_dim, hidden),
                                                       nn.GELU(), nn.Linear(hidden, 2 * latent))
                                      for m in self.modalities})
        self.decoders = nn.ModuleDict({m: nn.Sequential(nn.Linear(latent, hidden), nn.GELU(),
                                                        nn.Linear(hidden, embed_dim)) for m in self.modalities})
        self.prior_mu = nn.Parameter(torch.zeros(latent))
        self.prior_logvar = nn.Parameter(torch.zeros(latent))

    def expert_params(self, embeddings: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """(mus, logvars), each (M, B, L): every modality's Gaussian expert. They do not depend on which
        modalities a posterior multiplies, so one pass serves every subset."""
        halves = [self.experts[m](embeddings[m].float()).chunk(2, dim=-1) for m in self.modalities]
        return torch.stack([mu for mu, _ in halves]), torch.stack([logvar.clamp(-8.0, 8.0) for _, logvar in halves])

    def posterior(self, embeddings: dict, mask: torch.Tensor,
                  experts: tuple[torch.Tensor, torch.Tensor] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(mu, logvar), each (B, L): the product of the prior expert and the experts where mask (B, M) is 1.
        `experts`: expert_params(embeddings), when the caller has them already."""
        mus, logvars = self.expert_params(embeddings) if experts is None else experts
        b = mask.shape[0]
        off = (1.0 - mask).T.unsqueeze(-1)  # (M, B, 1): an absent expert gets zero precision (infinite variance)
        return product_of_experts(torch.cat([self.prior_mu.expand(b, -1)[None], mus]),
                                  torch.cat([self.prior_logvar.expand(b, -1)[None], logvars + off * 1e4]))

    def kl_from_prior(self, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
        """(B,) KL(N(mu, var) || the prior expert), summed over latent dimensions."""
        prior_var = self.prior_logvar.exp()
        return 0.5 * (self.prior_logvar - logvar + (logvar.exp() + (mu - self.prior_mu) ** 2) / prior_var
                      - 1.0).sum(-1)

    def decode(self, z: torch.Tensor) -> dict[str, torch.Tensor]:
        return {m: decoder(z) for m, decoder in self.decoders.items()}

    def forward(self, embeddings: dict, present: dict):
        original = dict(embeddings)
        embeddings, present = dict(embeddings), dict(present)
        mask = torch.stack([present[m] for m in self.modalities], 1).float()  # (B, M)
        experts = self.expert_params(original)
        mu, _ = self.posterior(original, mask, experts)
        estimates = self.decode(mu)
        usable = mask.sum(1) > 0
        aux = self.elbo_loss(original, mask, experts) if self.training else None
        for m in self.modalities:
            _fill(embeddings, present, m, estimates[m], usable)
        return embeddings, present, aux

    def elbo_loss(self, embeddings: dict, mask: torch.Tensor,
                  experts: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        """Negative ELBO per embedding dimension, averaged over the observed set, each observed modality alone and
        one random non-empty observed subset of each row."""
        experts = self.expert_params(embeddings) if experts is None else experts
        subsets = [mask] + [mask * F.one_hot(torch.tensor(i), len(self.modalities)).to(mask)
                            for i in range(len(self.modalities))]
        subsets.append(mask * (torch.rand_like(mask) < 0.5))
        targets = torch.stack([embeddings[m].detach().float() for m in self.modalities], 1)  # (B, M, D)
        terms = []
        for subset in subsets:
            rows = subset.sum(1) > 0
            if not rows.any():
                continue
            mu, logvar = self.posterior(embeddings, subset, experts)
            z = mu + torch.randn_like(mu) * (0.5 * logvar).exp()
            reconstruction = torch.stack(list(self.decode(z).values()), 1)  # (B, M, D)
            squared = ((reconstruction - targets) ** 2).mean(-1)  # (B, M)
            recon = (squared * mask).sum(1) / mask.sum(1).clamp(min=1.0)  # every observed modality is a target
            negative_elbo = recon + self.beta * self.kl_from_prior(mu, logvar) / targets.shape[-1]
            terms.append(negative_elbo[rows].mean())
        return torch.stack(terms).mean() if terms else mask.sum() * 0.0

    @torch.no_grad()
    def uncertainty(self, embeddings: dict, present: dict) -> torch.Tensor:
        """(B,) mean posterior variance of the rows that lack a modality (what their imputation rests on); 0 for
        complete rows, which impute nothing."""
        mask = torch.stack([present[m] for m in self.modalities], 1).float()
        _, logvar = self.posterior(embeddings, mask)
        incomplete = (mask < 0.5).any(1)
        return torch.where(incomplete, logvar.exp().mean(-1), torch.zeros_like(logvar[:, 0]))

    @torch.no_grad()
    def sample(self, embeddings: dict, present: dict, generator: torch.Generator | None = None) -> dict:
        """Each modality drawn from the decoder at one sample of the joint posterior of the present ones."""
        mask = torch.stack([present[m] for m in self.modalities], 1).float()
        mu, logvar = self.posterior(embeddings, mask)
        noise = torch.randn(mu.shape, generator=generator).to(mu)
        return self.decode(mu + noise * (0.5 * logvar).exp())


def product_of_experts(mus: torch.Tensor, logvars: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Gaussian experts (E, B, L) -> their product (B, L): precisions add, means are precision-weighted."""
    precision = torch.exp(-logvars)
    total = precision.sum(0)
    return (mus * precision).sum(0) / total, -torch.log(total)


# `data.impute` name -> imputer class; each takes (modalities, embed_dim).
IMPUTERS = {"zero": ZeroImputer, "mean": MeanImputer, "learned": LearnedTokenImputer,
            "nearest": NearestNeighbourImputer, "regress": RegressionImputer, "mvae": MVAEImputer}


def build_imputer(name: str, modalities: list[str], embed_dim: int) -> nn.Module:
    name = RENAMED_IMPUTERS.get(name, name)
    if name not in IMPUTERS:
        raise ValueError(f"unknown imputation '{name}'")
    return IMPUTERS[name](list(modalities), embed_dim)
