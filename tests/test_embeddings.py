"""llmcore.embeddings: TokenEmbedding against direct lookups in its own table (rows scaled by √d_model or not),
the padding row's zero start and zero gradient, the initial standard deviation d_model^-½, and id validation.
"""
import pytest
import torch

from llmcore.embeddings import TokenEmbedding


def test_token_embedding_scales_rows_by_sqrt_d_model():
    embed = TokenEmbedding(10, 16)
    ids = torch.tensor([[3, 0, 9], [1, 1, 2]])
    table = embed.weight.detach()
    expected = torch.stack([torch.stack([table[i] * 4.0 for i in row]) for row in ids.tolist()])
    torch.testing.assert_close(embed(ids), expected)


def test_token_embedding_without_scale():
    embed = TokenEmbedding(5, 9, scale=False)
    torch.testing.assert_close(embed(torch.tensor([[4]])), embed.weight.detach()[4].view(1, 1, 9))


def test_token_embedding_padding_row_starts_at_zero_and_gets_no_gradient():
    embed = TokenEmbedding(6, 4, padding_idx=0)
    assert torch.equal(embed.weight[0], torch.zeros(4))
    embed(torch.tensor([[0, 2, 0]])).sum().backward()
    assert torch.equal(embed.weight.grad[0], torch.zeros(4))
    assert torch.equal(embed.weight.grad[2], torch.full((4,), 2.0))  # d(x·√4)/dx = 2


def test_token_embedding_initial_std_is_d_model_to_the_minus_half():
    torch.manual_seed(0)
    embed = TokenEmbedding(2000, 64)
    assert embed.weight.std().item() == pytest.approx(64**-0.5, rel=0.05)


def test_token_embedding_rejects_float_ids():
    with pytest.raises(TypeError, match="integers"):
        TokenEmbedding(5, 4)(torch.zeros(1, 2))
