"""Every imputation strategy gives finite values and correct masks; the MVAE is a product-of-experts VAE."""
import math

import pytest
import torch

from resmm.models.imputation import IMPUTERS, MVAEImputer, build_imputer, product_of_experts

M = ["image", "text", "audio"]
D = 8


def inputs(seed=0):
    g = torch.Generator().manual_seed(seed)
    emb = {m: torch.randn(5, D, generator=g) for m in M}
    present = {
        "image": torch.tensor([1.0, 0.0, 1.0, 0.0, 1.0]),
        "text": torch.tensor([1.0, 1.0, 0.0, 0.0, 1.0]),
        "audio": torch.tensor([1.0, 1.0, 1.0, 0.0, 0.0]),  # row 3 has nothing
    }
    return emb, present


@pytest.mark.parametrize("name", IMPUTERS)
def test_imputers_give_finite_values_and_correct_masks(name):
    torch.manual_seed(0)
    imputer = build_imputer(name, M, D)
    emb, present = inputs()
    imputer.train()
    for _ in range(2):  # let running statistics and the neighbour bank fill
        out, out_present, aux = imputer(emb, present)
    imputer.eval()
    out, out_present, aux = imputer(emb, present)
    for m in M:
        assert torch.isfinite(out[m]).all()
        was_present = present[m] > 0
        assert torch.equal(out[m][was_present], emb[m][was_present]), "present rows must stay untouched"
        assert torch.equal(out_present[m][was_present], present[m][was_present])
    if name == "zero":
        assert all(torch.equal(out_present[m], present[m]) for m in M)
    else:  # filled rows are marked present; in 'nearest'/'regress'/'mvae' a row with nothing to go on stays absent
        assert out_present["image"][1] == 1 and out_present["audio"][4] == 1
        assert not torch.equal(out["image"][1], emb["image"][1])
    if name in ("nearest", "regress", "mvae"):
        assert all(out_present[m][3] == 0 for m in M)
    if name in ("regress", "mvae"):
        imputer.train()
        assert torch.isfinite(imputer(emb, present)[2])


def test_the_former_generative_name_builds_the_regressor():
    from resmm.config import load_config

    assert type(build_imputer("generative", M, D)).__name__ == "RegressionImputer"
    assert load_config(None, ["data.impute=generative"]).data.impute == "regress"


def test_learned_token_gets_gradient():
    imputer = build_imputer("learned", M, D)
    emb, present = inputs()
    out, _, _ = imputer(emb, present)
    out["image"].sum().backward()
    assert imputer.tokens.grad[0].abs().sum() > 0


# --- the multimodal VAE (Wu & Goodman 2018) ----------------------------------------------------------------------


def test_the_product_of_one_expert_is_that_expert():
    g = torch.Generator().manual_seed(0)
    mu, logvar = torch.randn(1, 4, 6, generator=g), torch.randn(1, 4, 6, generator=g)
    joint_mu, joint_logvar = product_of_experts(mu, logvar)
    torch.testing.assert_close((joint_mu, joint_logvar), (mu[0], logvar[0]))
    # Two equal experts: the same mean, half the variance.
    twice_mu, twice_logvar = product_of_experts(mu.repeat(2, 1, 1), logvar.repeat(2, 1, 1))
    torch.testing.assert_close((twice_mu, twice_logvar), (mu[0], logvar[0] - math.log(2.0)))


def test_a_row_with_one_modality_and_a_flat_prior_has_that_modalitys_expert_as_posterior():
    torch.manual_seed(0)
    mvae = MVAEImputer(M, D, latent_dim=4)
    with torch.no_grad():
        mvae.prior_logvar.fill_(30.0)  # a prior so wide that its precision vanishes
    emb, _ = inputs()
    only_text = torch.tensor([[0.0, 1.0, 0.0]] * 5)
    mu, logvar = mvae.posterior(emb, only_text)
    expert_mu, expert_logvar = mvae.experts["text"](emb["text"]).chunk(2, dim=-1)
    torch.testing.assert_close((mu, logvar), (expert_mu, expert_logvar.clamp(-8, 8)), rtol=1e-4, atol=1e-4)


def test_the_kl_is_zero_when_the_posterior_is_the_prior():
    torch.manual_seed(0)
    mvae = MVAEImputer(M, D, latent_dim=4)
    with torch.no_grad():
        mvae.prior_mu.uniform_(-1, 1)
        mvae.prior_logvar.uniform_(-1, 1)
    emb, _ = inputs()
    mu, logvar = mvae.posterior(emb, torch.zeros(5, 3))  # nothing present: the prior expert alone
    assert torch.allclose(mvae.kl_from_prior(mu, logvar), torch.zeros(5), atol=1e-6)
    mu, logvar = mvae.posterior(emb, torch.ones(5, 3))
    assert (mvae.kl_from_prior(mu, logvar) > 1e-3).all()


def test_a_sampled_imputation_varies_and_the_mean_imputation_does_not():
    torch.manual_seed(0)
    mvae = MVAEImputer(M, D).eval()
    emb, present = inputs()
    first = mvae(emb, present)[0]["image"]
    assert torch.equal(first, mvae(emb, present)[0]["image"])
    draws = [mvae.sample(emb, present, torch.Generator().manual_seed(s))["image"] for s in range(2)]
    assert not torch.allclose(draws[0][1], draws[1][1])
    uncertainty = mvae.uncertainty(emb, present)
    assert uncertainty[0] == 0 and (uncertainty[[1, 2, 4]] > 0).all()  # row 0 is complete


def test_the_mvae_learns_to_impute_a_modality_from_the_others():
    """Two modalities that share a latent factor: after ELBO training, the imputed text of rows without text is
    close to their real text embedding, far closer than the mean imputer's constant."""
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(1)
    mixing = torch.randn(2, 3, D, generator=g)

    def batch(rows):
        factor = torch.randn(rows, 3, generator=g)
        emb = {"image": factor @ mixing[0], "text": factor @ mixing[1]}
        return emb, {"image": torch.ones(rows), "text": (torch.rand(rows, generator=g) < 0.5).float()}

    mvae = MVAEImputer(["image", "text"], D, latent_dim=4, beta=0.1)
    optimizer = torch.optim.Adam(mvae.parameters(), lr=1e-2)
    mvae.train()
    for _ in range(300):
        loss = mvae(*batch(128))[2]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    mvae.eval()
    emb, _ = batch(256)
    hidden = {"image": torch.ones(256), "text": torch.zeros(256)}
    imputed = mvae(emb, hidden)[0]["text"]
    error = ((imputed - emb["text"]) ** 2).mean()
    baseline = ((emb["text"] - emb["text"].mean(0)) ** 2).mean()
    assert error < 0.3 * baseline, (error, baseline)  # 0.16 measured; the mean imputer is 1.0
