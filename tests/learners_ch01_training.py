"""Learner code for the exercises of notebook 03_training, written as learners write it (never llmcore's).

``CORRECT[exercise_id]``: correct implementations written differently. ``MISTAKES[exercise_id][mistake_id]``:
one wrong implementation per declared mistake, with the bug as a learner would make it.
Read by tests/test_exercise_contracts.py; tests/test_checks_ch01_training.py uses some of them too.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

import llmcore
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


def rows_sliced(tgt):
    return tgt[:-1], tgt[1:]


def shifted_with_roll(tgt):
    labels = torch.roll(tgt, shifts=-1, dims=1)   # "shift left by one"
    return tgt, labels


def padding_labels_as_minus_100(tgt):
    labels = tgt[:, 1:].clone()
    labels[labels == 0] = -100   # as Hugging Face's data collators do
    return tgt[:, :-1], labels


def teacher_forcing_by_narrowing(tgt):
    length = tgt.size(1) - 1
    return tgt.narrow(1, 0, length).clone(), tgt.narrow(1, 1, length).clone()


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


class PositionsAddedTwice(Seq2Seq):
    """``self.positions(x)`` already returns x + PE; adding x once more doubles the embedding."""

    def embed_source(self, src_ids):
        x = self.src_embed(src_ids)
        return x + self.positions(x)

    def embed_target(self, tgt_ids):
        x = self.tgt_embed(tgt_ids)
        return x + self.positions(x)


class AlwaysShared(Seq2Seq):
    def __init__(self, config):
        super().__init__(llmcore.TransformerConfig(**{**vars(config), "share_embeddings": True}))
        self.config = config


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


def smoothing_summed(logits, targets, smoothing, ignore_index):
    log_probs = logits.log_softmax(dim=-1)
    keep = targets != ignore_index
    nll = -log_probs.gather(-1, targets.masked_fill(~keep, 0).unsqueeze(-1)).squeeze(-1)
    smooth = -log_probs.sum(dim=-1)
    return ((1 - smoothing) * nll + smoothing * smooth)[keep].mean()


def padding_masked_in_nll_only(logits, targets, smoothing, ignore_index):
    log_probs = logits.log_softmax(dim=-1)
    keep = targets != ignore_index
    nll = -log_probs.gather(-1, targets.masked_fill(~keep, 0).unsqueeze(-1)).squeeze(-1)
    nll = nll * keep   # padding removed from the cross-entropy…
    smooth = -log_probs.mean(dim=-1)   # …but not from the smoothing term
    return ((1 - smoothing) * nll + smoothing * smooth).sum() / keep.sum()


def softmax_over_dim_one(logits, targets, smoothing, ignore_index):
    log_probs = logits.log_softmax(dim=1)
    keep = targets != ignore_index
    nll = -log_probs.gather(-1, targets.masked_fill(~keep, 0).unsqueeze(-1)).squeeze(-1)
    return ((1 - smoothing) * nll - smoothing * log_probs.mean(dim=-1))[keep].mean()


# ---------------------------------------------------------------------------------------------------
# greedy_decode
# ---------------------------------------------------------------------------------------------------


def make_greedy(*, keep_start=False, position=-1, pad_after_end=True, stop_when="all", end_becomes_pad=False,
                reencode=False, overwrite_done=False):
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
            done = (next_token == eos_id) if overwrite_done else done | (next_token == eos_id)
            if (stop_when == "all" and done.all()) or (stop_when == "any" and done.any()):
                break
        return tokens if keep_start else tokens[:, 1:]

    return greedy_decode


@torch.no_grad()
def greedy_decode_with_a_list(model, src_ids, bos_id, eos_id, pad_id, max_new_tokens):
    """Another way to write it: generated columns kept in a Python list, a while loop, torch.where."""
    memory = model.encode(src_ids)
    batch = src_ids.size(0)
    columns = [torch.full((batch,), bos_id, dtype=torch.long)]
    ended = torch.zeros(batch, dtype=torch.bool)
    while len(columns) <= max_new_tokens and not bool(ended.all()):
        decoder_input = torch.stack(columns, dim=1)
        scores = model.decode(decoder_input, memory, src_ids)
        best = scores[:, decoder_input.size(1) - 1, :].argmax(-1)
        best = torch.where(ended, torch.full_like(best, pad_id), best)
        ended = ended | (best == eos_id)
        columns.append(best)
    return torch.stack(columns[1:], dim=1) if len(columns) > 1 else torch.empty(batch, 0, dtype=torch.long)


@torch.no_grad()
def greedy_decode_calling_forward(model, src_ids, bos_id, eos_id, pad_id, max_new_tokens):
    """Calls the whole model at every step (the source is encoded again each time: slower, the same result)."""
    tokens = torch.full((src_ids.shape[0], 1), bos_id, dtype=torch.long)
    finished = torch.zeros(src_ids.shape[0], dtype=torch.bool)
    for _ in range(max_new_tokens):
        next_token = model(src_ids, tokens)[:, -1].argmax(-1)
        next_token[finished] = pad_id
        tokens = torch.cat([tokens, next_token[:, None]], dim=1)
        finished |= next_token == eos_id
        if finished.all():
            break
    return tokens[:, 1:]


@torch.no_grad()
def greedy_decode_not_fed_back(model, src_ids, bos_id, eos_id, pad_id, max_new_tokens):
    memory = model.encode(src_ids)
    start = torch.full((src_ids.shape[0], 1), bos_id, dtype=torch.long)
    generated, finished = [], torch.zeros(src_ids.shape[0], dtype=torch.bool)
    for _ in range(max_new_tokens):
        next_token = model.decode(start, memory, src_ids)[:, -1].argmax(-1)   # `start` never grows
        next_token = next_token.masked_fill(finished, pad_id)
        generated.append(next_token)
        finished |= next_token == eos_id
        if finished.all():
            break
    return torch.stack(generated, dim=1)


@torch.no_grad()
def greedy_decode_counting_the_start_token(model, src_ids, bos_id, eos_id, pad_id, max_new_tokens):
    memory = model.encode(src_ids)
    tokens = torch.full((src_ids.shape[0], 1), bos_id, dtype=torch.long)
    finished = torch.zeros(src_ids.shape[0], dtype=torch.bool)
    while tokens.shape[1] < max_new_tokens:
        next_token = model.decode(tokens, memory, src_ids)[:, -1].argmax(-1)
        next_token = next_token.masked_fill(finished, pad_id)
        tokens = torch.cat([tokens, next_token[:, None]], dim=1)
        finished |= next_token == eos_id
        if finished.all():
            break
    return tokens[:, 1:]


@torch.no_grad()
def greedy_decode_argmax_dim_one(model, src_ids, bos_id, eos_id, pad_id, max_new_tokens):
    memory = model.encode(src_ids)
    tokens = torch.full((src_ids.shape[0], 1), bos_id, dtype=torch.long)
    finished = torch.zeros(src_ids.shape[0], dtype=torch.bool)
    for _ in range(max_new_tokens):
        next_token = model.decode(tokens, memory, src_ids).argmax(dim=1)[:, -1]
        next_token = next_token.masked_fill(finished, pad_id)
        tokens = torch.cat([tokens, next_token[:, None]], dim=1)
        finished |= next_token == eos_id
        if finished.all():
            break
    return tokens[:, 1:]


CORRECT = {
    "teacher_forcing_batch": [teacher_forcing_batch, teacher_forcing_by_narrowing],
    "seq2seq_transformer": [Seq2Seq, CausalOnlySelfMask],
    "label_smoothed_cross_entropy": [smoothed_loss, smoothed_loss_with_a_target_distribution],
    "greedy_decode": [make_greedy(), make_greedy(reencode=True), greedy_decode_with_a_list, greedy_decode_calling_forward],
}

MISTAKES = {
    "teacher_forcing_batch": {
        "shift_reversed": shifted_the_wrong_way,
        "not_shifted": not_shifted,
        "start_token_dropped": start_token_replaced_by_padding,
        "lengths_differ": last_column_kept,
        "batch_dim_sliced": rows_sliced,
        "rolled": shifted_with_roll,
        "padding_labels_replaced": padding_labels_as_minus_100,
    },
    "seq2seq_transformer": {
        "encoder_no_padding_mask": EncoderWithoutPaddingMask,
        "decoder_not_causal": DecoderNotCausal,
        "cross_no_padding_mask": CrossAttentionWithoutMask,
        "no_positions": NoPositions,
        "encoder_no_positions": NoEncoderPositions,
        "decoder_no_positions": NoDecoderPositions,
        "positions_added_twice": PositionsAddedTwice,
        "embeddings_not_scaled": PlainEmbedding,
        "output_not_tied": Untied,
        "output_tied_wrongly": AlwaysTied,
        "embeddings_not_shared": NeverShared,
        "embeddings_shared_wrongly": AlwaysShared,
        "blocks_ignore_norm_first": BlocksAlwaysPostNorm,
    },
    "label_smoothed_cross_entropy": {
        "log_of_softmax": log_of_softmax,
        "padding_not_ignored": padding_not_ignored,
        "mean_over_all_positions": divides_by_every_position,
        "smoothing_ignored": smoothing_ignored,
        "smoothing_over_wrong_classes": smoothing_over_wrong_classes,
        "smoothing_skips_padding_and_target": annotated_transformer_smoothing,
        "smoothing_skips_padding": smoothing_over_non_padding_classes,
        "target_full_weight": target_keeps_full_weight,
        "summed": summed,
        "softmax_wrong_dim": softmax_over_dim_one,
        "smoothing_summed_over_classes": smoothing_summed,
        "smoothing_term_includes_padding": padding_masked_in_nll_only,
    },
    "greedy_decode": {
        "start_token_kept": make_greedy(keep_start=True),
        "first_position": make_greedy(position=0),
        "never_stops": make_greedy(pad_after_end=False, stop_when="never"),
        "no_padding_after_end": make_greedy(pad_after_end=False),
        "end_token_padded": make_greedy(end_becomes_pad=True),
        "stops_at_first_end": make_greedy(stop_when="any"),
        "runs_to_max_new_tokens": make_greedy(stop_when="never"),
        "one_token_short": greedy_decode_counting_the_start_token,
        "argmax_over_positions": greedy_decode_argmax_dim_one,
        "finished_overwritten": make_greedy(overwrite_done=True),
    },
}
