"""The checks of notebook 03_training, exercised with learner code written here (never llmcore's).

For every check: a correct implementation passes the visible and the hidden cases; each known
mistake, written as a learner would write it, is diagnosed by name; delegating to llmcore's or
PyTorch's implementation of the same exercise is refused; the release stub reads "not implemented
yet"; any other exception is reported with the case that raised it.
"""

from __future__ import annotations

from typing import Callable

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

import llmcore
from grader.checks.ch01 import training as checks
from check_test_helpers import broken, diagnosed, failure_message, stub
from grader.checks.framework import CheckFailure
from llmcore import (
    DecoderBlock,
    EncoderBlock,
    LayerNorm,
    SinusoidalPositionalEncoding,
    TokenEmbedding,
    and_masks,
    causal_mask,
    dense_mask,
    padding_mask,
)
from llmcore.data import ToySeq2SeqTask

PAD, BOS, EOS = 0, 1, 2










# ---------------------------------------------------------------------------------------------------
# teacher_forcing_batch
# ---------------------------------------------------------------------------------------------------


def teacher_forcing_batch(tgt):
    return tgt[:, :-1], tgt[:, 1:]


def not_shifted(tgt):
    return tgt[:, :-1], tgt[:, :-1]


def not_shifted_full_length(tgt):
    return tgt, tgt


def shifted_the_wrong_way(tgt):
    return tgt[:, 1:], tgt[:, :-1]


def start_token_replaced_by_padding(tgt):
    # "Shift the labels right" à la Hugging Face, but filling the new first column with <pad>.
    labels = tgt[:, 1:]
    decoder_input = torch.cat([torch.zeros_like(labels[:, :1]), labels[:, :-1]], dim=1)
    return decoder_input, labels


def last_column_kept(tgt):
    return tgt, tgt[:, 1:]


@pytest.mark.parametrize("hidden", [False, True])
def test_teacher_forcing_correct_passes(hidden: bool) -> None:
    checks.check_teacher_forcing_batch(teacher_forcing_batch, hidden=hidden)  # raises CheckFailure when wrong


@pytest.mark.parametrize(
    "learner, mistake",
    [
        (not_shifted, "nothing is shifted: the labels equal the decoder input"),
        (not_shifted_full_length, "nothing is shifted: the labels equal the decoder input"),
        (shifted_the_wrong_way, "the shift goes the wrong way"),
        (start_token_replaced_by_padding, "the start token <s> was dropped from the decoder input"),
        (last_column_kept, "the decoder input and the labels have different lengths"),
    ],
)
def test_teacher_forcing_mistakes_are_diagnosed(learner: Callable, mistake: str) -> None:
    message = failure_message(checks.check_teacher_forcing_batch, learner)
    assert mistake in message, message
    assert "case 1 of 4" in message


def test_teacher_forcing_stub_and_errors() -> None:
    assert "not implemented yet" in failure_message(checks.check_teacher_forcing_batch, stub)
    message = failure_message(checks.check_teacher_forcing_batch, broken)
    assert "raised ValueError on the case the batch <s> c b a </s>" in message
    assert "an index went out of range" in message


# ---------------------------------------------------------------------------------------------------
# Seq2SeqTransformer
# ---------------------------------------------------------------------------------------------------


class Seq2Seq(nn.Module):
    """A correct assembly, written from llmcore's blocks the way the notebook asks."""

    def __init__(self, config: llmcore.TransformerConfig) -> None:
        super().__init__()
        self.config = c = config
        self.src_embed = self.make_embedding(c.src_vocab_size, c)
        self.tgt_embed = self.src_embed if c.share_embeddings else self.make_embedding(c.tgt_vocab_size, c)
        self.positions = SinusoidalPositionalEncoding(c.max_positions, c.d_model)
        self.embed_dropout = nn.Dropout(c.dropout)
        block = dict(dropout=c.dropout, norm_first=self.blocks_norm_first(c), norm_eps=c.norm_eps)
        self.encoder_layers = nn.ModuleList(EncoderBlock(c.d_model, c.n_heads, c.d_ff, **block) for _ in range(c.n_encoder_layers))
        self.decoder_layers = nn.ModuleList(DecoderBlock(c.d_model, c.n_heads, c.d_ff, **block) for _ in range(c.n_decoder_layers))
        self.encoder_norm = LayerNorm(c.d_model, c.norm_eps) if c.norm_first else nn.Identity()
        self.decoder_norm = LayerNorm(c.d_model, c.norm_eps) if c.norm_first else nn.Identity()
        self.lm_head = nn.Linear(c.d_model, c.tgt_vocab_size, bias=False)
        if self.tie(c):
            self.lm_head.weight = self.tgt_embed.weight

    # The knobs the mistaken subclasses below turn.
    def make_embedding(self, vocab_size: int, c: llmcore.TransformerConfig) -> nn.Module:
        return TokenEmbedding(vocab_size, c.d_model, padding_idx=c.pad_id)

    def blocks_norm_first(self, c: llmcore.TransformerConfig) -> bool:
        return c.norm_first

    def tie(self, c: llmcore.TransformerConfig) -> bool:
        return c.tie_output

    def embed_source(self, src_ids: Tensor) -> Tensor:
        return self.positions(self.src_embed(src_ids))

    def embed_target(self, tgt_ids: Tensor) -> Tensor:
        return self.positions(self.tgt_embed(tgt_ids))

    def encoder_mask(self, src_ids: Tensor) -> Tensor | None:
        batch, length = src_ids.shape
        return dense_mask(padding_mask(src_ids != self.config.pad_id), batch, 1, length, length)

    def self_mask(self, tgt_ids: Tensor) -> Tensor | None:
        batch, length = tgt_ids.shape
        return dense_mask(and_masks(causal_mask, padding_mask(tgt_ids != self.config.pad_id)), batch, 1, length, length)

    def cross_mask(self, tgt_ids: Tensor, src_ids: Tensor) -> Tensor | None:
        batch, src_len = src_ids.shape
        return dense_mask(padding_mask(src_ids != self.config.pad_id), batch, 1, tgt_ids.shape[1], src_len)

    def encode(self, src_ids: Tensor) -> Tensor:
        x = self.embed_dropout(self.embed_source(src_ids))
        mask = self.encoder_mask(src_ids)
        for layer in self.encoder_layers:
            x = layer(x, mask)
        return self.encoder_norm(x)

    def decode(self, tgt_ids: Tensor, memory: Tensor, src_ids: Tensor) -> Tensor:
        x = self.embed_dropout(self.embed_target(tgt_ids))
        self_mask, cross_mask = self.self_mask(tgt_ids), self.cross_mask(tgt_ids, src_ids)
        for layer in self.decoder_layers:
            x = layer(x, memory, self_mask, cross_mask)
        return self.lm_head(self.decoder_norm(x))

    def forward(self, src_ids: Tensor, tgt_ids: Tensor) -> Tensor:
        return self.decode(tgt_ids, self.encode(src_ids), src_ids)


class CausalOnlySelfMask(Seq2Seq):
    """Harmless: padded decoder positions never reach the loss, and real ones never see padding."""

    def self_mask(self, tgt_ids):
        length = tgt_ids.shape[1]
        return torch.ones(length, length, dtype=torch.bool).tril()


class EncoderWithoutPaddingMask(Seq2Seq):
    def encoder_mask(self, src_ids):
        return None


class DecoderNotCausal(Seq2Seq):
    def self_mask(self, tgt_ids):
        return (tgt_ids != self.config.pad_id)[:, None, None, :]


class CrossAttentionWithoutMask(Seq2Seq):
    def cross_mask(self, tgt_ids, src_ids):
        return None


class NoPositions(Seq2Seq):
    def embed_source(self, src_ids):
        return self.src_embed(src_ids)

    def embed_target(self, tgt_ids):
        return self.tgt_embed(tgt_ids)


class NoEncoderPositions(Seq2Seq):
    def embed_source(self, src_ids):
        return self.src_embed(src_ids)


class NoDecoderPositions(Seq2Seq):
    def embed_target(self, tgt_ids):
        return self.tgt_embed(tgt_ids)


class PlainEmbedding(Seq2Seq):
    def make_embedding(self, vocab_size, c):
        return nn.Embedding(vocab_size, c.d_model, padding_idx=c.pad_id)


class Untied(Seq2Seq):
    def tie(self, c):
        return False


class AlwaysTied(Seq2Seq):
    def tie(self, c):
        return True


class NeverShared(Seq2Seq):
    def __init__(self, config):
        super().__init__(config)
        self.tgt_embed = self.make_embedding(config.tgt_vocab_size, config)
        if self.tie(config):
            self.lm_head.weight = self.tgt_embed.weight


class BlocksAlwaysPostNorm(Seq2Seq):
    def blocks_norm_first(self, c):
        return False


class OutputBias(Seq2Seq):
    def __init__(self, config):
        super().__init__(config)
        self.lm_head.bias = nn.Parameter(torch.zeros(config.tgt_vocab_size))


class RenamedHead(Seq2Seq):
    def __init__(self, config):
        super().__init__(config)
        self.generator = self.lm_head
        del self.lm_head

    def decode(self, tgt_ids, memory, src_ids):  # pragma: no cover - the names are refused first
        raise AssertionError("never reached")


class InheritsTheReference(llmcore.Transformer):
    pass


class CallsTheReferenceEncoder(Seq2Seq):
    def encode(self, src_ids):
        return llmcore.Transformer.encode(self, src_ids)


class StubModel(nn.Module):
    def __init__(self, config):
        super().__init__()
        raise NotImplementedError()


class StubEncode(Seq2Seq):
    def encode(self, src_ids):
        raise NotImplementedError()


class BrokenDecode(Seq2Seq):
    def decode(self, tgt_ids, memory, src_ids):
        raise RuntimeError("mat1 and mat2 shapes cannot be multiplied")


@pytest.mark.parametrize("hidden", [False, True])
@pytest.mark.parametrize("learner", [Seq2Seq, CausalOnlySelfMask], ids=["correct", "causal-only self mask"])
def test_seq2seq_correct_passes(learner: type, hidden: bool) -> None:
    checks.check_seq2seq_transformer(learner, hidden=hidden)  # raises CheckFailure when wrong


def test_the_variant_with_default_knobs_is_llmcore() -> None:
    for case in checks._seq2seq_cases(seed=0, hidden=True):
        expected = checks._assembled_outputs(llmcore.Transformer, *case.args)
        got = checks._assembled_outputs(checks._TransformerVariant, *case.args)
        for e, g in zip(expected, got):
            torch.testing.assert_close(g, e, rtol=0, atol=0)


@pytest.mark.parametrize(
    "learner, mistake",
    [
        (EncoderWithoutPaddingMask, "the encoder has no padding mask: real source tokens attend to <pad>"),
        (DecoderNotCausal, "the decoder's self-attention is not causal: each position sees the tokens it must predict"),
        (CrossAttentionWithoutMask, "the cross-attention mask does not hide the source padding"),
        (NoPositions, "no positions are added: the model cannot tell 'abc' from 'cba'"),
        (NoEncoderPositions, "the encoder does not add positions"),
        (NoDecoderPositions, "the decoder does not add positions"),
        (PlainEmbedding, "the embeddings are not multiplied by √d_model"),
        (Untied, "the output projection is not tied to the target embedding although config.tie_output is True"),
        (AlwaysTied, "the output projection is tied although config.tie_output is False"),
        (NeverShared, "the source and target embeddings are separate although config.share_embeddings is True"),
        (BlocksAlwaysPostNorm, "the blocks ignore config.norm_first"),
    ],
)
def test_seq2seq_mistakes_are_diagnosed(learner: type, mistake: str) -> None:
    message = failure_message(checks.check_seq2seq_transformer, learner)
    assert diagnosed(message, mistake), message


def test_seq2seq_always_shared_is_diagnosed() -> None:
    class AlwaysShared(Seq2Seq):
        def __init__(self, config):
            super().__init__(llmcore.TransformerConfig(**{**vars(config), "share_embeddings": True}))
            self.config = config

    # Case 1 has equal vocabularies, so the shared module loads; the shared rows then mix.
    message = failure_message(checks.check_seq2seq_transformer, AlwaysShared)
    assert diagnosed(message, "the source and target embeddings are shared although config.share_embeddings is False"), message


@pytest.mark.parametrize(
    "learner, expected",
    [(OutputBias, "unexpected: lm_head.bias"), (RenamedHead, "missing: lm_head.weight")],
)
def test_seq2seq_wrong_parameters_are_named(learner: type, expected: str) -> None:
    message = failure_message(checks.check_seq2seq_transformer, learner)
    assert expected in message and "parameters do not match" in message, message


@pytest.mark.parametrize("learner", [InheritsTheReference, CallsTheReferenceEncoder])
def test_seq2seq_delegation_is_refused(learner: type) -> None:
    message = failure_message(checks.check_seq2seq_transformer, learner)
    assert "calls llmcore.Transformer.encode" in message, message


def test_seq2seq_torch_transformer_is_refused() -> None:
    class WrapsTorchEncoder(Seq2Seq):
        def encode(self, src_ids):
            torch_encoder = nn.TransformerEncoder(
                nn.TransformerEncoderLayer(self.config.d_model, self.config.n_heads, batch_first=True), 1,
                enable_nested_tensor=False,
            ).to(self.lm_head.weight.dtype)
            torch_encoder(self.embed_source(src_ids))
            return super().encode(src_ids)

    message = failure_message(checks.check_seq2seq_transformer, WrapsTorchEncoder)
    assert "calls torch.nn.TransformerEncoder" in message, message


@pytest.mark.parametrize("learner", [StubModel, StubEncode])
def test_seq2seq_stub_reads_not_implemented(learner: type) -> None:
    assert "Seq2SeqTransformer is not implemented yet" in failure_message(checks.check_seq2seq_transformer, learner)


def test_seq2seq_other_errors_name_the_case() -> None:
    message = failure_message(checks.check_seq2seq_transformer, BrokenDecode)
    assert "raised RuntimeError on the case d_model=16, 2 heads" in message
    assert "mat1 and mat2" in message


def test_seq2seq_refuses_an_instance() -> None:
    config = llmcore.TransformerConfig(11, 11, d_model=16, n_heads=2, n_encoder_layers=1, n_decoder_layers=1, d_ff=32)
    assert "expected an nn.Module subclass" in failure_message(checks.check_seq2seq_transformer, Seq2Seq(config))


# ---------------------------------------------------------------------------------------------------
# label_smoothed_cross_entropy
# ---------------------------------------------------------------------------------------------------


def smoothed_loss(logits, targets, smoothing, ignore_index):
    log_probs = logits.log_softmax(dim=-1)
    keep = targets != ignore_index
    safe = targets.masked_fill(~keep, 0)
    nll = -log_probs.gather(-1, safe.unsqueeze(-1)).squeeze(-1)
    per_token = (1 - smoothing) * nll - smoothing * log_probs.mean(dim=-1)
    return (per_token * keep).sum() / keep.sum()


def smoothed_loss_with_a_target_distribution(logits, targets, smoothing, ignore_index):
    """The same loss written as a cross-entropy against the smoothed target distribution."""
    n_classes = logits.shape[-1]
    keep = targets != ignore_index
    target_dist = torch.full_like(logits, smoothing / n_classes)
    target_dist.scatter_add_(-1, targets.masked_fill(~keep, 0).unsqueeze(-1),
                             torch.full_like(logits[..., :1], 1 - smoothing))
    per_token = -(target_dist * torch.log_softmax(logits, dim=-1)).sum(-1)
    return per_token[keep].mean()


def log_of_softmax(logits, targets, smoothing, ignore_index):
    log_probs = torch.log(torch.softmax(logits, dim=-1))
    keep = targets != ignore_index
    nll = -log_probs.gather(-1, targets.masked_fill(~keep, 0).unsqueeze(-1)).squeeze(-1)
    per_token = (1 - smoothing) * nll - smoothing * log_probs.mean(dim=-1)
    return (per_token * keep).sum() / keep.sum()


def padding_not_ignored(logits, targets, smoothing, ignore_index):
    log_probs = logits.log_softmax(dim=-1)
    safe = targets.clamp(min=0)
    nll = -log_probs.gather(-1, safe.unsqueeze(-1)).squeeze(-1)
    return ((1 - smoothing) * nll - smoothing * log_probs.mean(dim=-1)).mean()


def divides_by_every_position(logits, targets, smoothing, ignore_index):
    log_probs = logits.log_softmax(dim=-1)
    keep = targets != ignore_index
    nll = -log_probs.gather(-1, targets.masked_fill(~keep, 0).unsqueeze(-1)).squeeze(-1)
    per_token = (1 - smoothing) * nll - smoothing * log_probs.mean(dim=-1)
    return (per_token * keep).mean()


def smoothing_ignored(logits, targets, smoothing, ignore_index):
    log_probs = logits.log_softmax(dim=-1)
    keep = targets != ignore_index
    nll = -log_probs.gather(-1, targets.masked_fill(~keep, 0).unsqueeze(-1)).squeeze(-1)
    return nll[keep].mean()


def smoothing_over_wrong_classes(logits, targets, smoothing, ignore_index):
    n_classes = logits.shape[-1]
    keep = targets != ignore_index
    target_dist = torch.full_like(logits, smoothing / (n_classes - 1))
    target_dist.scatter_(-1, targets.masked_fill(~keep, 0).unsqueeze(-1), 1 - smoothing)
    return -(target_dist * logits.log_softmax(-1)).sum(-1)[keep].mean()


def annotated_transformer_smoothing(logits, targets, smoothing, ignore_index):
    """The Annotated Transformer's LabelSmoothing: ε/(V−2) on classes that are neither right nor padding."""
    n_classes = logits.shape[-1]
    keep = targets != ignore_index
    target_dist = torch.full_like(logits, smoothing / (n_classes - 2))
    target_dist.scatter_(-1, targets.masked_fill(~keep, 0).unsqueeze(-1), 1 - smoothing)
    if 0 <= ignore_index < n_classes:
        target_dist[..., ignore_index] = 0
    return -(target_dist * logits.log_softmax(-1)).sum(-1)[keep].mean()


def smoothing_over_non_padding_classes(logits, targets, smoothing, ignore_index):
    n_classes = logits.shape[-1]
    keep = targets != ignore_index
    not_pad = torch.ones(n_classes, dtype=logits.dtype)
    if 0 <= ignore_index < n_classes:
        not_pad[ignore_index] = 0
    target_dist = (1 - smoothing) * F.one_hot(targets.masked_fill(~keep, 0), n_classes).to(logits.dtype)
    target_dist = target_dist + smoothing / (n_classes - 1) * not_pad
    return -(target_dist * logits.log_softmax(-1)).sum(-1)[keep].mean()


def target_keeps_full_weight(logits, targets, smoothing, ignore_index):
    log_probs = logits.log_softmax(dim=-1)
    keep = targets != ignore_index
    nll = -log_probs.gather(-1, targets.masked_fill(~keep, 0).unsqueeze(-1)).squeeze(-1)
    return (nll - smoothing * log_probs.mean(dim=-1))[keep].mean()


def summed(logits, targets, smoothing, ignore_index):
    log_probs = logits.log_softmax(dim=-1)
    keep = targets != ignore_index
    nll = -log_probs.gather(-1, targets.masked_fill(~keep, 0).unsqueeze(-1)).squeeze(-1)
    return ((1 - smoothing) * nll - smoothing * log_probs.mean(dim=-1))[keep].sum()


def softmax_over_dim_one(logits, targets, smoothing, ignore_index):
    log_probs = logits.log_softmax(dim=1)
    keep = targets != ignore_index
    nll = -log_probs.gather(-1, targets.masked_fill(~keep, 0).unsqueeze(-1)).squeeze(-1)
    return ((1 - smoothing) * nll - smoothing * log_probs.mean(dim=-1))[keep].mean()


@pytest.mark.parametrize("hidden", [False, True])
@pytest.mark.parametrize("learner", [smoothed_loss, smoothed_loss_with_a_target_distribution])
def test_loss_correct_passes(learner: Callable, hidden: bool) -> None:
    checks.check_label_smoothed_cross_entropy(learner, hidden=hidden)  # raises CheckFailure when wrong


@pytest.mark.parametrize(
    "learner, mistake",
    [
        (log_of_softmax, "log(softmax(…)) underflows"),
        (padding_not_ignored, "padding is not ignored: <pad> targets are averaged into the loss"),
        (divides_by_every_position, "the padded tokens are zeroed but the mean still divides by every position"),
        (smoothing_ignored, "label smoothing is ignored"),
        (smoothing_over_wrong_classes, "the smoothing mass ε is spread over the V−1 wrong classes only"),
        (annotated_transformer_smoothing, "the smoothing mass skips the padding class (the Annotated Transformer's convention)"),
        (smoothing_over_non_padding_classes, "the smoothing mass skips the padding class (ε spread over the V−1 other classes)"),
        (target_keeps_full_weight, "the right class keeps weight 1 instead of 1 − ε"),
        (summed, "the loss is summed instead of averaged over the real tokens"),
        (softmax_over_dim_one, "the softmax runs over the wrong dimension"),
    ],
)
def test_loss_mistakes_are_diagnosed(learner: Callable, mistake: str) -> None:
    message = failure_message(checks.check_label_smoothed_cross_entropy, learner)
    assert "Diagnosis: " + mistake in message, message


def test_log_of_softmax_passes_the_ordinary_cases() -> None:
    """log(softmax) is numerically fine until a probability underflows: only the confident case fails."""
    message = failure_message(checks.check_label_smoothed_cross_entropy, log_of_softmax)
    assert "case 4 of 4 (B=2, T=4, V=5, float32, smoothing 0.1, confident logits" in message, message


def test_every_loss_mistake_differs_from_the_reference_on_a_visible_case() -> None:
    cases = [case for case in checks._loss_cases(seed=0, hidden=False) if case.args[3] >= 0]
    for mistake in checks.LOSS_MISTAKES:
        if mistake.output is not None:
            assert any(
                not torch.allclose(mistake.output(*case.args), checks._loss_reference(*case.args)) for case in cases
            ), mistake.name


@pytest.mark.parametrize(
    "learner, forbidden",
    [
        (lambda logits, targets, s, i: llmcore.cross_entropy(logits, targets, label_smoothing=s, ignore_index=i),
         "llmcore.cross_entropy"),
        (lambda logits, targets, s, i: F.cross_entropy(logits.flatten(0, -2), targets.flatten(), label_smoothing=s,
                                                       ignore_index=i), "torch.nn.functional.cross_entropy"),
        (lambda logits, targets, s, i: nn.CrossEntropyLoss(ignore_index=i, label_smoothing=s)(
            logits.flatten(0, -2), targets.flatten()), "torch.nn.CrossEntropyLoss"),
        (lambda logits, targets, s, i: F.nll_loss(logits.log_softmax(-1).flatten(0, -2), targets.flatten(),
                                                  ignore_index=i), "torch.nn.functional.nll_loss"),
    ],
    ids=["llmcore", "functional", "module", "nll_loss"],
)
def test_loss_delegation_is_refused(learner: Callable, forbidden: str) -> None:
    message = failure_message(checks.check_label_smoothed_cross_entropy, learner)
    assert "calls" in message and forbidden in message, message


def test_loss_stub_and_errors() -> None:
    assert "label_smoothed_cross_entropy is not implemented yet" in failure_message(
        checks.check_label_smoothed_cross_entropy, stub
    )
    message = failure_message(checks.check_label_smoothed_cross_entropy, broken)
    assert "raised ValueError on the case N=5 tokens, V=3" in message


def test_loss_gradient_is_checked() -> None:
    def detached_smoothing(logits, targets, smoothing, ignore_index):
        log_probs = logits.log_softmax(dim=-1)
        keep = targets != ignore_index
        nll = -log_probs.gather(-1, targets.masked_fill(~keep, 0).unsqueeze(-1)).squeeze(-1)
        per_token = (1 - smoothing) * nll - smoothing * log_probs.detach().mean(dim=-1)
        return (per_token * keep).sum() / keep.sum()

    message = failure_message(checks.check_label_smoothed_cross_entropy, detached_smoothing)
    assert "the outputs match but the gradient with respect to input 0 differs on case 2 of 4" in message, message


# ---------------------------------------------------------------------------------------------------
# greedy_decode
# ---------------------------------------------------------------------------------------------------


def make_greedy(*, keep_start=False, position=-1, pad_after_end=True, stop_when="all", end_becomes_pad=False,
                reencode=False):
    """Greedy decoding as a learner writes it; the keyword arguments reproduce the known mistakes."""

    @torch.no_grad()
    def greedy_decode(model, src_ids, bos_id, eos_id, pad_id, max_new_tokens):
        memory = model.encode(src_ids)
        tokens = torch.full((src_ids.shape[0], 1), bos_id, dtype=torch.long)
        done = torch.zeros(src_ids.shape[0], dtype=torch.bool)
        for _ in range(max_new_tokens):
            if reencode:
                memory = model.encode(src_ids)
            logits = model.decode(tokens, memory, src_ids)
            next_token = logits[:, position].argmax(dim=-1)
            if end_becomes_pad:
                done = done | (next_token == eos_id)
            if pad_after_end:
                next_token = torch.where(done, torch.full_like(next_token, pad_id), next_token)
            tokens = torch.cat([tokens, next_token[:, None]], dim=1)
            done = done | (next_token == eos_id)
            if (stop_when == "all" and done.all()) or (stop_when == "any" and done.any()):
                break
        return tokens if keep_start else tokens[:, 1:]

    return greedy_decode


@pytest.mark.parametrize("hidden", [False, True])
@pytest.mark.parametrize("reencode", [False, True], ids=["encode once", "re-encode every step"])
def test_greedy_correct_passes(hidden: bool, reencode: bool) -> None:
    checks.check_greedy_decode(make_greedy(reencode=reencode), hidden=hidden)  # raises CheckFailure when wrong


@pytest.mark.parametrize(
    "knobs, mistake",
    [
        (dict(keep_start=True), "the start token <s> is included in the output"),
        (dict(position=0), "every step decodes from the first position (logits[:, 0]) instead of the last"),
        (dict(pad_after_end=False, stop_when="never"), "generation does not stop at </s>"),
        (dict(pad_after_end=False), "tokens after </s> are not replaced by <pad>"),
        (dict(end_becomes_pad=True), "the </s> token itself is replaced by <pad>"),
        (dict(stop_when="any"), "decoding stops as soon as one row finishes"),
        (dict(stop_when="never"), "decoding goes on to max_new_tokens after every row has finished"),
    ],
)
def test_greedy_mistakes_are_diagnosed(knobs: dict, mistake: str) -> None:
    message = failure_message(checks.check_greedy_decode, make_greedy(**knobs))
    assert "Diagnosis: " + mistake in message, message


def test_greedy_delegation_is_refused() -> None:
    def delegates(model, src_ids, bos_id, eos_id, pad_id, max_new_tokens):
        return llmcore.greedy_decode(model, src_ids, bos_id=bos_id, eos_id=eos_id, pad_id=pad_id,
                                     max_new_tokens=max_new_tokens)

    assert "calls llmcore.greedy_decode" in failure_message(checks.check_greedy_decode, delegates)


def test_greedy_stub_and_errors() -> None:
    assert "greedy_decode is not implemented yet" in failure_message(checks.check_greedy_decode, stub)
    message = failure_message(checks.check_greedy_decode, broken)
    assert "raised ValueError on the case scripted model: 3 rows ending" in message


def test_greedy_one_step_too_many_is_explained() -> None:
    def one_step_too_many(model, src_ids, bos_id, eos_id, pad_id, max_new_tokens):
        tokens = torch.full((src_ids.shape[0], 1), bos_id)
        memory = model.encode(src_ids)
        for _ in range(max_new_tokens + 1):
            tokens = torch.cat([tokens, model.decode(tokens, memory, src_ids)[:, -1].argmax(-1, keepdim=True)], 1)
        return tokens[:, 1:]

    message = failure_message(checks.check_greedy_decode, one_step_too_many)
    assert "max_new_tokens allows at most 8" in message, message


def test_rows_end_after_their_source_length() -> None:
    """The wrapped random models really do finish rows at different, known steps."""
    case = checks._greedy_cases(seed=0, hidden=False)[3]
    model, src = case.args
    generated = checks._greedy_reference(model, src, **case.kwargs)
    source_lengths = (src != PAD).sum(1)
    ends = (generated == EOS).int().argmax(1)
    assert torch.equal(ends, source_lengths)
    assert len(set(ends.tolist())) == len(ends)


# ---------------------------------------------------------------------------------------------------
# check_trained_model
# ---------------------------------------------------------------------------------------------------


class ReversingOracle(nn.Module):
    """Reverses its source exactly (memory = the source ids); ``wrong_lengths`` makes it fail on some."""

    def __init__(self, wrong_lengths: tuple[int, ...] = ()) -> None:
        super().__init__()
        self.wrong_lengths = wrong_lengths
        self.vocab_size = ToySeq2SeqTask().vocab_size

    def encode(self, src_ids):
        return src_ids

    def decode(self, tgt_ids, memory, src_ids):
        batch, length = tgt_ids.shape
        letters = (src_ids != PAD) & (src_ids != EOS)
        n_letters = letters.sum(1)
        logits = torch.zeros(batch, length, self.vocab_size)
        for b in range(batch):
            reversed_letters = src_ids[b, : n_letters[b]].flip(0).tolist() + [EOS]
            if int(n_letters[b]) in self.wrong_lengths:
                reversed_letters = reversed_letters[1:] + [EOS]
            for t in range(length):
                logits[b, t, reversed_letters[min(t, len(reversed_letters) - 1)]] = 1.0
        return logits


def test_trained_model_passes_when_it_reverses() -> None:
    checks.check_trained_model(ReversingOracle())  # raises CheckFailure when wrong
    checks.check_trained_model(ReversingOracle(), hidden=True)  # raises CheckFailure when wrong


def test_trained_model_below_the_bar_fails_with_examples_and_hints() -> None:
    model = ReversingOracle(wrong_lengths=(3, 4, 5, 6))  # wrong on 4 of the 8 lengths 3…10
    message = failure_message(checks.check_trained_model, model)
    assert "it needs at least 80%" in message and "(expected " in message and "Hint: look at the loss curve" in message


def test_trained_model_not_built_yet_reads_not_implemented() -> None:
    assert "not implemented yet" in failure_message(checks.check_trained_model, None)

    class StubbedDecode(ReversingOracle):
        def decode(self, tgt_ids, memory, src_ids):
            raise NotImplementedError()

    assert "not implemented yet" in failure_message(checks.check_trained_model, StubbedDecode())


def test_trained_model_errors_are_reported() -> None:
    class Broken(ReversingOracle):
        def decode(self, tgt_ids, memory, src_ids):
            raise IndexError("index 12 is out of bounds")

    message = failure_message(checks.check_trained_model, Broken())
    assert "raised IndexError: index 12 is out of bounds" in message
    assert "expected the trained Seq2SeqTransformer" in failure_message(checks.check_trained_model, "a model")
