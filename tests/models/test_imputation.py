"""Every imputation strategy gives finite values and correct masks."""
import pytest
import torch

from resmm.models.imputation import IMPUTERS, build_imputer

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
    else:  # filled rows are marked present; in 'nearest'/'generative' a row with nothing to go on stays absent
        assert out_present["image"][1] == 1 and out_present["audio"][4] == 1
        assert not torch.equal(out["image"][1], emb["image"][1])
    if name in ("nearest", "generative"):
        assert all(out_present[m][3] == 0 for m in M)
    if name == "generative":
        assert aux is not None and torch.isfinite(aux)


def test_learned_token_gets_gradient():
    imputer = build_imputer("learned", M, D)
    emb, present = inputs()
    out, _, _ = imputer(emb, present)
    out["image"].sum().backward()
    assert imputer.tokens.grad[0].abs().sum() > 0
