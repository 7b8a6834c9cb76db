"""Checks for notebook 03_training: teacher forcing, the assembled model, the loss, greedy decoding,
and the trained model of the finale (SYLLABUS T09, T10, T11)."""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

import llmcore
from llmcore import TransformerConfig, and_masks, causal_mask, dense_mask, padding_mask
from llmcore.data import ToySeq2SeqTask, sequence_accuracy
from llmcore.decoding import greedy_decode as reference_greedy_decode

from ..framework import Case, CheckFailure, Mistake, check_function, load_reference_weights

__all__ = [
    "check_teacher_forcing_batch",
    "check_seq2seq_transformer",
    "check_label_smoothed_cross_entropy",
    "check_greedy_decode",
    "check_trained_model",
]

PAD, BOS, EOS = ToySeq2SeqTask.PAD, ToySeq2SeqTask.BOS, ToySeq2SeqTask.EOS


def _is_pair_of_tensors(output: object) -> bool:
    return isinstance(output, (tuple, list)) and len(output) == 2 and all(isinstance(item, Tensor) for item in output)


# --------------------------------------------------------------------------------------------------
# Teacher forcing (T09)
# --------------------------------------------------------------------------------------------------


def _teacher_forcing_reference(tgt: Tensor) -> tuple[Tensor, Tensor]:
    return tgt[:, :-1], tgt[:, 1:]


def _labels_equal_input(got: object, expected: object) -> bool:
    if not _is_pair_of_tensors(got):
        return False
    decoder_input, labels = got
    return decoder_input.shape == labels.shape and bool(torch.equal(decoder_input, labels))


def _start_token_missing(got: object, expected: object) -> bool:
    if not _is_pair_of_tensors(got) or not _is_pair_of_tensors(expected):
        return False
    decoder_input, labels = got
    expected_input, expected_labels = expected
    return (
        labels.shape == expected_labels.shape
        and bool(torch.equal(labels, expected_labels))
        and decoder_input.shape == expected_input.shape
        and bool((decoder_input[:, 0] != expected_input[:, 0]).any())
    )


def _lengths_differ(got: object, expected: object) -> bool:
    return _is_pair_of_tensors(got) and got[0].shape != got[1].shape


TEACHER_FORCING_MISTAKES = [
    Mistake(
        "the shift goes the wrong way: the decoder reads the labels and predicts the start of the target",
        "the decoder input starts with <s> (it is tgt without its last column); the labels are one step "
        "ahead (tgt without its first column).",
        output=lambda tgt: (tgt[:, 1:], tgt[:, :-1]),
    ),
    Mistake(
        "nothing is shifted: the labels equal the decoder input",
        "position t must predict the token *after* the one it reads, or the model just learns to copy its "
        "input: decoder_input = tgt[:, :-1], labels = tgt[:, 1:].",
        detect=_labels_equal_input,
    ),
    Mistake(
        "the start token <s> was dropped from the decoder input",
        "tgt already begins with <s>: keep it as the first decoder input. Do not shift the letters again "
        "or fill the first column with <pad>; decoder_input is simply tgt[:, :-1].",
        detect=_start_token_missing,
    ),
    Mistake(
        "the decoder input and the labels have different lengths",
        "drop one column from each end: the decoder input loses the last column, the labels the first, so "
        "both are [B, T-1] and position t of one lines up with position t of the other.",
        detect=_lengths_differ,
    ),
]


def _toy_targets(task: ToySeq2SeqTask, batch: int, seed: int) -> Tensor:
    return task.sample(batch, torch.Generator().manual_seed(seed))[1]


def _teacher_forcing_cases(seed: int, hidden: bool) -> list[Case]:
    same_length = ToySeq2SeqTask(min_length=4, max_length=4)
    cases = [
        Case(
            "the batch <s> c b a </s> / <s> e d </s> <pad>, i.e. tgt = [[1, 5, 4, 3, 2], [1, 7, 6, 2, 0]]",
            (torch.tensor([[BOS, 5, 4, 3, EOS], [BOS, 7, 6, EOS, PAD]]),),
        ),
        Case("4 reversed strings of length 4 (no padding), [B=4, T=6]", (_toy_targets(same_length, 4, seed),)),
        Case("16 reversed strings of lengths 3 to 10, right-padded", (_toy_targets(ToySeq2SeqTask(), 16, seed),)),
        Case("one empty string: tgt = [[<s>, </s>]], [B=1, T=2]", (torch.tensor([[BOS, EOS]]),)),
    ]
    if hidden:
        long_task = ToySeq2SeqTask(n_symbols=26, min_length=1, max_length=30)
        cases += [
            Case("64 strings of 1 to 30 letters from a 26-letter alphabet", (_toy_targets(long_task, 64, seed + 7),)),
            Case("an int32 batch of 3 strings", (_toy_targets(ToySeq2SeqTask(), 3, seed + 11).int(),)),
        ]
    return cases


def check_teacher_forcing_batch(fn: Callable, *, hidden: bool = False) -> None:
    """Check ``fn(tgt [B, T]) -> (decoder_input [B, T-1], labels [B, T-1])`` (SYLLABUS T09).

    ``tgt`` rows are ``<s> y1 … yn </s> <pad> …``; the decoder reads ``tgt[:, :-1]`` and is trained to
    predict ``tgt[:, 1:]`` (padding stays in the labels; the loss ignores it).
    """
    return check_function(
        "teacher_forcing_batch",
        fn,
        _teacher_forcing_reference,
        _teacher_forcing_cases(seed=1 if hidden else 0, hidden=hidden),
        mistakes=TEACHER_FORCING_MISTAKES,
        output_names=("decoder_input", "labels"),
        fallback_hint="decoder_input = tgt without its last column, labels = tgt without its first column.",
    )


# --------------------------------------------------------------------------------------------------
# The assembled encoder–decoder (T09)
# --------------------------------------------------------------------------------------------------


class _TransformerVariant(llmcore.Transformer):
    """llmcore.Transformer with one knob turned: each knob is one known assembly mistake.

    With every knob at its default it computes exactly what llmcore.Transformer computes in eval mode.
    """

    def __init__(
        self,
        config: TransformerConfig,
        *,
        encoder_padding: bool = True,
        decoder_causal: bool = True,
        cross_padding: bool = True,
        encoder_positions: bool = True,
        decoder_positions: bool = True,
        scale_embeddings: bool = True,
    ) -> None:
        super().__init__(config)
        self.encoder_padding = encoder_padding
        self.decoder_causal = decoder_causal
        self.cross_padding = cross_padding
        self.encoder_positions = encoder_positions
        self.decoder_positions = decoder_positions
        if not scale_embeddings:
            self.src_embed.scale = self.tgt_embed.scale = 1.0

    def encode(self, src_ids: Tensor) -> Tensor:
        batch, src_len = src_ids.shape
        mask = None
        if self.encoder_padding:
            mask = dense_mask(padding_mask(src_ids != self.config.pad_id), batch, 1, src_len, src_len)
        x = self.src_embed(src_ids)
        x = self.positions(x) if self.encoder_positions else x
        for layer in self.encoder_layers:
            x = layer(x, mask)
        return self.encoder_norm(x)

    def decode(self, tgt_ids: Tensor, memory: Tensor, src_ids: Tensor) -> Tensor:
        batch, tgt_len = tgt_ids.shape
        pad = self.config.pad_id
        tgt_padding = padding_mask(tgt_ids != pad)
        self_rule = and_masks(causal_mask, tgt_padding) if self.decoder_causal else tgt_padding
        self_mask = dense_mask(self_rule, batch, 1, tgt_len, tgt_len)
        cross_mask = None
        if self.cross_padding:
            cross_mask = dense_mask(padding_mask(src_ids != pad), batch, 1, tgt_len, src_ids.shape[1])
        x = self.tgt_embed(tgt_ids)
        x = self.positions(x) if self.decoder_positions else x
        for layer in self.decoder_layers:
            x = layer(x, memory, self_mask, cross_mask)
        return self.lm_head(self.decoder_norm(x))


def _assembled_outputs(
    build: Callable[[TransformerConfig], nn.Module],
    config: TransformerConfig,
    src_ids: Tensor,
    tgt_ids: Tensor,
    dtype: torch.dtype,
    seed: int,
) -> tuple[Tensor, Tensor, Tensor]:
    """Build a model, give it llmcore's weights for ``seed``, and run it three ways.

    Returns the memory at real source tokens, the logits at real target positions, and the logits of
    ``forward`` after the target embedding has been moved: tied and shared matrices must move with it.
    Padded positions are zeroed: what a model computes there never reaches the loss.
    """
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        reference = llmcore.Transformer(config)
        shift = 0.5 * torch.randn(config.tgt_vocab_size, config.d_model)
    model = build(config)
    load_reference_weights("Seq2SeqTransformer", model, reference)
    model.to(dtype).eval()
    real_src = (src_ids != config.pad_id).unsqueeze(-1)
    real_tgt = (tgt_ids != config.pad_id).unsqueeze(-1)
    with torch.no_grad():
        memory = model.encode(src_ids)
        logits = model.decode(tgt_ids, memory, src_ids)
        model.get_parameter("tgt_embed.weight").add_(shift.to(dtype))
        moved = model(src_ids, tgt_ids)
    return memory.masked_fill(~real_src, 0.0), logits.masked_fill(~real_tgt, 0.0), moved.masked_fill(~real_tgt, 0.0)


def _variant(**knobs: bool) -> Callable[..., tuple[Tensor, Tensor, Tensor]]:
    return lambda config, *rest: _assembled_outputs(lambda c: _TransformerVariant(c, **knobs), config, *rest)


def _config_variant(**fields: bool) -> Callable[..., tuple[Tensor, Tensor, Tensor]]:
    """What a model that ignores a config field computes: llmcore built with that field changed."""
    return lambda config, *rest: _assembled_outputs(lambda c: llmcore.Transformer(replace(c, **fields)), config, *rest)


def _blocks_without_norm_first(config: TransformerConfig) -> nn.Module:
    """A pre-norm model (final norms present) whose blocks were built post-norm."""
    model = llmcore.Transformer(config)
    for layer in [*model.encoder_layers, *model.decoder_layers]:
        layer.norm_first = False
    return model


SEQ2SEQ_MISTAKES = [
    Mistake(
        "the encoder has no padding mask: real source tokens attend to <pad>",
        "build the encoder's self-attention mask from src_ids != config.pad_id, e.g. "
        "dense_mask(padding_mask(src_ids != pad), B, 1, S, S), and pass it to every EncoderBlock.",
        output=_variant(encoder_padding=False),
    ),
    Mistake(
        "the decoder's self-attention is not causal: each position sees the tokens it must predict",
        "combine the look-ahead rule with the padding rule: and_masks(causal_mask, padding_mask(tgt_ids != pad)).",
        output=_variant(decoder_causal=False),
    ),
    Mistake(
        "the cross-attention mask does not hide the source padding",
        "the decoder's queries attend to the encoder's memory: pass cross_mask = "
        "dense_mask(padding_mask(src_ids != pad), B, 1, T, S) to every DecoderBlock.",
        output=_variant(cross_padding=False),
    ),
    Mistake(
        "no positions are added: the model cannot tell 'abc' from 'cba'",
        "add the sinusoid after the token embedding, in the encoder and in the decoder: "
        "x = self.positions(self.src_embed(src_ids)).",
        output=_variant(encoder_positions=False, decoder_positions=False),
    ),
    Mistake(
        "the encoder does not add positions",
        "x = self.positions(self.src_embed(src_ids)) in encode.",
        output=_variant(encoder_positions=False),
    ),
    Mistake(
        "the decoder does not add positions",
        "x = self.positions(self.tgt_embed(tgt_ids)) in decode.",
        output=_variant(decoder_positions=False),
    ),
    Mistake(
        "the embeddings are not multiplied by √d_model",
        "use llmcore's TokenEmbedding (it scales by √d_model) rather than nn.Embedding.",
        output=_variant(scale_embeddings=False),
    ),
    Mistake(
        "the output projection is not tied to the target embedding although config.tie_output is True",
        "after creating lm_head, share the matrix: self.lm_head.weight = self.tgt_embed.weight.",
        output=_config_variant(tie_output=False),
    ),
    Mistake(
        "the output projection is tied although config.tie_output is False",
        "tie lm_head.weight to tgt_embed.weight only when config.tie_output is True.",
        output=_config_variant(tie_output=True),
    ),
    Mistake(
        "the source and target embeddings are separate although config.share_embeddings is True",
        "when config.share_embeddings is True use one module for both: self.tgt_embed = self.src_embed.",
        output=_config_variant(share_embeddings=False),
    ),
    Mistake(
        "the source and target embeddings are shared although config.share_embeddings is False",
        "create a second TokenEmbedding for the target unless config.share_embeddings is True.",
        output=_config_variant(share_embeddings=True),
    ),
    Mistake(
        "the blocks ignore config.norm_first",
        "pass norm_first=config.norm_first (and dropout, norm_eps) to every EncoderBlock and DecoderBlock.",
        output=lambda config, *rest: _assembled_outputs(_blocks_without_norm_first, config, *rest),
    ),
]


def _padded_ids(
    lengths: list[int], vocab: int, generator: torch.Generator, *, start: int | None = None, pad: int = PAD
) -> Tensor:
    """Rows of random ids above every special id, of the given lengths, right-padded with ``pad``;
    ``start`` opens each row."""
    lowest = max(EOS, pad) + 1
    width = max(lengths) + (start is not None)
    ids = torch.full((len(lengths), width), pad, dtype=torch.long)
    for row, length in enumerate(lengths):
        tokens = torch.randint(lowest, vocab, (length,), generator=generator)
        if start is not None:
            tokens = torch.cat([torch.tensor([start]), tokens])
        ids[row, : len(tokens)] = tokens
    return ids


def _seq2seq_cases(seed: int, hidden: bool) -> list[Case]:
    generator = torch.Generator().manual_seed(seed)

    def config(**fields) -> TransformerConfig:
        base = dict(src_vocab_size=11, tgt_vocab_size=11, d_model=16, n_heads=2, n_encoder_layers=1,
                    n_decoder_layers=1, d_ff=32, dropout=0.0, max_positions=64)
        return TransformerConfig(**{**base, **fields})

    def case(description: str, cfg: TransformerConfig, src_lengths: list[int], tgt_lengths: list[int],
             dtype: torch.dtype, weights_seed: int) -> Case:
        src = _padded_ids(src_lengths, cfg.src_vocab_size, generator, pad=cfg.pad_id)
        tgt = _padded_ids(tgt_lengths, cfg.tgt_vocab_size, generator, start=BOS, pad=cfg.pad_id)
        return Case(description, (cfg, src, tgt, dtype, weights_seed + seed * 100))

    cases = [
        case("d_model=16, 2 heads, 1+1 layers, float64, no padding (B=2, S=5, T=4)",
             config(), [5, 5], [3, 3], torch.float64, 0),
        case("d_model=32, 4 heads, 2+2 layers, float32, padded batch: source lengths 7, 4, 2, target lengths 5, 2, 6",
             config(d_model=32, n_heads=4, n_encoder_layers=2, n_decoder_layers=2, d_ff=64), [7, 4, 2], [5, 2, 6],
             torch.float32, 1),
        case("share_embeddings=True (one 13-token vocabulary), dropout=0.1 (in eval mode), float64, padded",
             config(src_vocab_size=13, tgt_vocab_size=13, share_embeddings=True, dropout=0.1), [6, 3], [4, 7],
             torch.float64, 2),
        case("tie_output=False, source vocabulary 13, target vocabulary 9, float32, padded",
             config(src_vocab_size=13, tgt_vocab_size=9, tie_output=False, n_decoder_layers=2), [3, 8], [5, 1],
             torch.float32, 3),
        case("norm_first=True (pre-norm blocks, so encoder_norm and decoder_norm are LayerNorms), float64, padded",
             config(norm_first=True, n_encoder_layers=2), [4, 6], [6, 3], torch.float64, 4),
    ]
    if hidden:
        cases += [
            case("d_model=24, 3 heads, 3 encoder layers and 1 decoder layer, float64, B=4 padded",
                 config(d_model=24, n_heads=3, n_encoder_layers=3, d_ff=48, src_vocab_size=17), [9, 1, 5, 3],
                 [2, 8, 4, 4], torch.float64, 5),
            case("a source row that is all padding, float32", config(n_encoder_layers=2), [5, 0], [3, 4],
                 torch.float32, 6),
            case("pad_id=4 instead of 0, norm_first=True, share_embeddings=True, float64",
                 config(pad_id=4, norm_first=True, share_embeddings=True), [5, 2], [2, 5], torch.float64, 7),
        ]
    return cases


def check_seq2seq_transformer(cls: type, *, hidden: bool = False) -> None:
    """Check a class ``cls(config)`` with ``encode``, ``decode`` and ``forward`` against llmcore.Transformer
    (SYLLABUS T09).

    The learner's module gets llmcore.Transformer's weights (same parameter names), then the check
    compares the encoder memory at real source tokens and the logits at real target positions, and
    once more after changing the target embedding, which reveals untied or unshared matrices.
    """
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        raise CheckFailure(
            f"✘ Seq2SeqTransformer: expected an nn.Module subclass (the class itself, not an instance), got {cls!r}"
        )
    return check_function(
        "Seq2SeqTransformer",
        lambda config, *rest: _assembled_outputs(cls, config, *rest),
        lambda config, *rest: _assembled_outputs(llmcore.Transformer, config, *rest),
        _seq2seq_cases(seed=1 if hidden else 0, hidden=hidden),
        mistakes=SEQ2SEQ_MISTAKES,
        forbidden={
            llmcore.Transformer.encode: "llmcore.Transformer.encode",
            llmcore.Transformer.decode: "llmcore.Transformer.decode",
            llmcore.Transformer.forward: "llmcore.Transformer.forward",
            nn.Transformer: "torch.nn.Transformer",
            nn.TransformerEncoder: "torch.nn.TransformerEncoder",
            nn.TransformerDecoder: "torch.nn.TransformerDecoder",
        },
        output_names=(
            "memory = encode(src_ids) at real source tokens",
            "logits = decode(tgt_ids, memory, src_ids) at real target positions",
            "logits of forward(src_ids, tgt_ids) after the check changed tgt_embed.weight",
        ),
        fallback_hint="encode: embed, add positions, run the encoder blocks with a padding mask. decode: embed, add "
        "positions, run the decoder blocks with a causal+padding self mask and a source-padding cross mask, then lm_head.",
    )


# --------------------------------------------------------------------------------------------------
# Label-smoothed cross-entropy (T10)
# --------------------------------------------------------------------------------------------------


def _loss_reference(logits: Tensor, targets: Tensor, smoothing: float, ignore_index: int) -> Tensor:
    return llmcore.cross_entropy(logits, targets, label_smoothing=smoothing, ignore_index=ignore_index)


def _loss_variant(
    logits: Tensor,
    targets: Tensor,
    smoothing: float,
    ignore_index: int,
    *,
    ignore_padding: bool = True,
    denominator: str = "real",
    smoothing_over: str = "all",
    target_weight: str = "1-eps",
    reduction: str = "mean",
    class_dim: int = -1,
) -> Tensor:
    """The reference with one knob turned: each known mistake is one setting of these arguments.

    ``smoothing_over`` says which classes share ε: ``"all"`` V classes (torch, this course), ``"others"``
    the V−1 wrong ones, ``"non_pad_others"`` the V−2 that are neither right nor padding (the Annotated
    Transformer), ``"non_pad"`` the V−1 that are not padding.
    """
    n_classes = logits.shape[-1]
    pad_is_a_class = 0 <= ignore_index < n_classes
    ignored = targets == ignore_index
    if ignore_padding:
        keep = ~ignored
    elif pad_is_a_class:
        keep = torch.ones_like(ignored)
    else:
        raise ValueError("ignore_index is not a class: the targets cannot be scored without ignoring it")
    one_hot = F.one_hot(targets.masked_fill(~keep, 0), n_classes).to(logits.dtype)
    log_probs = torch.log_softmax(logits, dim=class_dim)
    nll = -(log_probs * one_hot).sum(-1)
    if smoothing_over == "all":
        share = torch.full_like(one_hot, 1.0 / n_classes)
    elif smoothing_over == "others":
        share = (1.0 - one_hot) / (n_classes - 1)
    elif not pad_is_a_class:
        raise ValueError("ignore_index is not a class: there is no padding class to leave out")
    else:
        not_pad = torch.ones(n_classes, dtype=logits.dtype)
        not_pad[ignore_index] = 0.0
        if smoothing_over == "non_pad_others":
            share = not_pad * (1.0 - one_hot) / (n_classes - 2)
        else:
            share = not_pad.expand_as(one_hot) / (n_classes - 1)
    smooth = -(log_probs * share).sum(-1)
    target_coefficient = 1.0 - smoothing if target_weight == "1-eps" else 1.0
    per_token = (target_coefficient * nll + smoothing * smooth) * keep
    if reduction == "sum":
        return per_token.sum()
    count = keep.sum() if denominator == "real" else torch.tensor(targets.numel())
    return per_token.sum() / count.clamp(min=1)


def _not_finite_where_expected_is(got: object, expected: object) -> bool:
    return (
        isinstance(got, Tensor) and isinstance(expected, Tensor) and got.is_floating_point()
        and not bool(torch.isfinite(got).all()) and bool(torch.isfinite(expected).all())
    )


def _loss_mistake(**knobs) -> Callable[..., Tensor]:
    return lambda logits, targets, smoothing, ignore_index: _loss_variant(logits, targets, smoothing, ignore_index, **knobs)


LOSS_MISTAKES = [
    Mistake(
        "log(softmax(…)) underflows: a probability rounds to 0 and its log is −∞ (then NaN or inf)",
        "take torch.log_softmax(logits, dim=-1) (or logits − logsumexp): it never forms the tiny probability.",
        detect=_not_finite_where_expected_is,
    ),
    Mistake(
        "padding is not ignored: <pad> targets are averaged into the loss",
        "keep = targets != ignore_index; multiply the per-token loss by keep and divide by keep.sum().",
        output=_loss_mistake(ignore_padding=False),
    ),
    Mistake(
        "the padded tokens are zeroed but the mean still divides by every position",
        "divide by the number of real tokens, keep.sum(), not by targets.numel(): otherwise batches with more "
        "padding get a smaller loss.",
        output=_loss_mistake(denominator="all"),
    ),
    Mistake(
        "label smoothing is ignored",
        "mix the two terms: (1 − ε)·(−log p[target]) + ε·mean over the V classes of (−log p).",
        output=lambda logits, targets, smoothing, ignore_index: _loss_variant(logits, targets, 0.0, ignore_index),
    ),
    Mistake(
        "the smoothing mass ε is spread over the V−1 wrong classes only",
        "this course follows PyTorch: ε/V goes to every class, the right one included, so the smoothing term is "
        "ε·(−log p).mean(dim=-1).",
        output=_loss_mistake(smoothing_over="others"),
    ),
    Mistake(
        "the smoothing mass skips the padding class (the Annotated Transformer's convention)",
        "this course follows torch.nn.functional.cross_entropy: ε/V on every one of the V classes, <pad> "
        "included, so the loss needs no knowledge of which class is padding.",
        output=_loss_mistake(smoothing_over="non_pad_others"),
    ),
    Mistake(
        "the smoothing mass skips the padding class (ε spread over the V−1 other classes)",
        "this course follows torch.nn.functional.cross_entropy: ε/V on every one of the V classes, <pad> included.",
        output=_loss_mistake(smoothing_over="non_pad"),
    ),
    Mistake(
        "the right class keeps weight 1 instead of 1 − ε",
        "the smoothed target puts 1 − ε + ε/V on the right class: per token, (1 − ε)·nll + ε·smooth.",
        output=_loss_mistake(target_weight="1"),
    ),
    Mistake(
        "the loss is summed instead of averaged over the real tokens",
        "divide the sum by the number of non-ignored targets.",
        output=_loss_mistake(reduction="sum"),
    ),
    Mistake(
        "the softmax runs over the wrong dimension",
        "the classes are the last dimension: torch.log_softmax(logits, dim=-1).",
        output=_loss_mistake(class_dim=-2),
    ),
]


def _loss_cases(seed: int, hidden: bool) -> list[Case]:
    generator = torch.Generator().manual_seed(seed)

    def logits(shape: tuple, dtype: torch.dtype, scale: float = 2.0) -> Tensor:
        return scale * torch.randn(shape, generator=generator, dtype=dtype)

    def targets(shape: tuple, vocab: int, lengths: list[int] | None = None, pad: int = 0) -> Tensor:
        ids = torch.randint(1, vocab, shape, generator=generator)
        if lengths is not None:
            ids = ids.masked_fill(torch.arange(shape[-1]) >= torch.tensor(lengths).unsqueeze(-1), pad)
        return ids

    cases = [
        Case("N=5 tokens, V=3, float64, no smoothing (plain cross-entropy), ignore_index=-100 (nothing ignored)",
             (logits((5, 3), torch.float64), targets((5,), 3), 0.0, -100), check_gradients=True),
        Case("B=2, T=6, V=7, float32, smoothing 0.1, ignore_index=0 with padding (lengths 6 and 3)",
             (logits((2, 6, 7), torch.float32), targets((2, 6), 7, [6, 3]), 0.1, 0), check_gradients=True),
        Case("B=3, T=5, V=11, float64, smoothing 0.2, ignore_index=0, the last row is all padding",
             (logits((3, 5, 11), torch.float64), targets((3, 5), 11, [5, 2, 0]), 0.2, 0), check_gradients=True),
        Case("B=2, T=4, V=5, float32, smoothing 0.1, confident logits (scores up to ±300, as a trained model gives)",
             (logits((2, 4, 5), torch.float32, scale=100.0), targets((2, 4), 5, [4, 2]), 0.1, 0), check_gradients=True),
    ]
    if hidden:
        cases += [
            Case("B=4, T=9, V=50, float64, smoothing 0.1, ignore_index=0, lengths 9, 1, 5, 7",
                 (logits((4, 9, 50), torch.float64), targets((4, 9), 50, [9, 1, 5, 7]), 0.1, 0), check_gradients=True),
            Case("N=7, V=4, float32, smoothing 0.3, ignore_index=3 (padding is the last class)",
                 (logits((7, 4), torch.float32), targets((1, 7), 3, [4], pad=3).squeeze(0), 0.3, 3),
                 check_gradients=True),
            Case("B=2, T=3, V=6, float64, smoothing 1.0 (all mass spread), ignore_index=0, lengths 3 and 1",
                 (logits((2, 3, 6), torch.float64), targets((2, 3), 6, [3, 1]), 1.0, 0), check_gradients=True),
        ]
    return cases


def check_label_smoothed_cross_entropy(fn: Callable, *, hidden: bool = False) -> None:
    """Check ``fn(logits [..., V], targets [...], smoothing, ignore_index) -> scalar`` against
    llmcore.cross_entropy (SYLLABUS T10), gradients included."""
    return check_function(
        "label_smoothed_cross_entropy",
        fn,
        _loss_reference,
        _loss_cases(seed=1 if hidden else 0, hidden=hidden),
        mistakes=LOSS_MISTAKES,
        forbidden={
            llmcore.cross_entropy: "llmcore.cross_entropy",
            F.cross_entropy: "torch.nn.functional.cross_entropy",
            F.nll_loss: "torch.nn.functional.nll_loss",
            nn.CrossEntropyLoss: "torch.nn.CrossEntropyLoss",
            nn.NLLLoss: "torch.nn.NLLLoss",
        },
        output_names=("loss",),
        fallback_hint="log_probs = log_softmax(logits, -1); per token (1 − ε)·(−log_probs[target]) + "
        "ε·(−log_probs).mean(-1); average over the positions whose target is not ignore_index.",
    )


# --------------------------------------------------------------------------------------------------
# Greedy decoding (T11)
# --------------------------------------------------------------------------------------------------


class _ScriptedModel:
    """An encoder–decoder whose next token is written in a script, so the end of each row is known.

    ``decode`` returns logits ``[B, T, V]`` whose position ``t`` of row ``b`` prefers ``script[b, t]``,
    as a causal model's position ``t`` predicts token ``t + 1``.
    """

    def __init__(self, script: list[list[int]], vocab_size: int) -> None:
        self.script = torch.tensor(script)
        self.vocab_size = vocab_size

    def encode(self, src_ids: Tensor) -> Tensor:
        return torch.zeros(*src_ids.shape, 4)

    def decode(self, tgt_ids: Tensor, memory: Tensor, src_ids: Tensor) -> Tensor:
        length = tgt_ids.shape[1]
        if length > self.script.shape[1]:
            raise ValueError(f"the decoder input is {length} tokens long; max_new_tokens allows at most {self.script.shape[1]}")
        return 5.0 * F.one_hot(self.script[:, :length], self.vocab_size).double()

    def __repr__(self) -> str:
        return "scripted model"


def _greedy_reference(model, src_ids: Tensor, **kwargs) -> Tensor:
    return reference_greedy_decode(model, src_ids, **kwargs)


@torch.no_grad()
def _greedy_variant(
    model,
    src_ids: Tensor,
    bos_id: int,
    eos_id: int,
    pad_id: int,
    max_new_tokens: int,
    *,
    keep_start: bool = False,
    pad_after_end: bool = True,
    stop: str = "all",
    position: int = -1,
    pad_the_end_token: bool = False,
) -> Tensor:
    """The reference with one knob turned. ``stop``: "all" rows finished, "any" row finished, "never"."""
    memory = model.encode(src_ids)
    tokens = torch.full((src_ids.shape[0], 1), bos_id, dtype=torch.long)
    finished = torch.zeros(src_ids.shape[0], dtype=torch.bool)
    for _ in range(max_new_tokens):
        next_token = model.decode(tokens, memory, src_ids)[:, position].argmax(dim=-1)
        ends = next_token == eos_id
        if pad_after_end:
            next_token = next_token.masked_fill(finished | ends if pad_the_end_token else finished, pad_id)
        tokens = torch.cat([tokens, next_token.unsqueeze(1)], dim=1)
        finished |= ends
        if (stop == "all" and bool(finished.all())) or (stop == "any" and bool(finished.any())):
            break
    return tokens if keep_start else tokens[:, 1:]


def _greedy_mistake(**knobs) -> Callable[..., Tensor]:
    return lambda model, src_ids, **kwargs: _greedy_variant(model, src_ids, **kwargs, **knobs)


GREEDY_MISTAKES = [
    Mistake(
        "the start token <s> is included in the output",
        "the output holds only generated tokens: return tokens[:, 1:].",
        output=_greedy_mistake(keep_start=True),
    ),
    Mistake(
        "every step decodes from the first position (logits[:, 0]) instead of the last",
        "the prediction for the next token sits at the last position of the decoder input: logits[:, -1].",
        output=_greedy_mistake(position=0),
    ),
    Mistake(
        "generation does not stop at </s>: rows keep producing tokens after their end",
        "keep a boolean `finished` per row; after </s>, write pad_id in that row, and stop once every row is finished.",
        output=_greedy_mistake(pad_after_end=False, stop="never"),
    ),
    Mistake(
        "tokens after </s> are not replaced by <pad>",
        "once a row has produced eos_id, overwrite its next tokens with pad_id: "
        "next_token = next_token.masked_fill(finished, pad_id), with `finished` updated *after* the overwrite.",
        output=_greedy_mistake(pad_after_end=False),
    ),
    Mistake(
        "the </s> token itself is replaced by <pad>",
        "update `finished` after writing the token, so that the row keeps its </s> and only later tokens become pad.",
        output=_greedy_mistake(pad_the_end_token=True),
    ),
    Mistake(
        "decoding stops as soon as one row finishes",
        "stop only when *every* row is finished: finished.all(), not finished.any().",
        output=_greedy_mistake(stop="any"),
    ),
    Mistake(
        "decoding goes on to max_new_tokens after every row has finished",
        "break out of the loop once finished.all(): the output may be shorter than max_new_tokens.",
        output=_greedy_mistake(stop="never"),
    ),
]


def _random_model(seed: int, dtype: torch.dtype, **fields) -> llmcore.Transformer:
    base = dict(src_vocab_size=11, tgt_vocab_size=11, d_model=16, n_heads=2, n_encoder_layers=1, n_decoder_layers=1,
                d_ff=32, dropout=0.0, max_positions=64)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = llmcore.Transformer(TransformerConfig(**{**base, **fields}))
    return model.to(dtype).eval()


class _EndsAfterSourceLength:
    """A random llmcore.Transformer whose </s> loses until a row has produced as many tokens as its source
    has (non-padding) tokens and wins from then on, so that the rows of a batch end at different, known steps."""

    def __init__(self, model: llmcore.Transformer) -> None:
        self.model = model

    def encode(self, src_ids: Tensor) -> Tensor:
        return self.model.encode(src_ids)

    def decode(self, tgt_ids: Tensor, memory: Tensor, src_ids: Tensor) -> Tensor:
        logits = self.model.decode(tgt_ids, memory, src_ids)
        source_length = (src_ids != PAD).sum(dim=1, keepdim=True)
        produced = torch.arange(tgt_ids.shape[1])  # decoder position t has produced t tokens so far
        end_bonus = torch.zeros_like(logits)
        end_bonus[..., EOS] = torch.where(produced >= source_length, 1e3, -1e3).to(logits.dtype)
        return logits + end_bonus


def _greedy_cases(seed: int, hidden: bool) -> list[Case]:
    generator = torch.Generator().manual_seed(seed)
    ids = lambda lengths, vocab=11: _padded_ids(lengths, vocab, generator)  # noqa: E731
    tokens = dict(bos_id=BOS, eos_id=EOS, pad_id=PAD)
    a, b, c, d = 3, 4, 5, 6
    # Rows end after 2, 4 and 5 tokens and would go on with letters if they were not padded.
    staggered = _ScriptedModel([[a, EOS, c, d, a, b, c, d], [b, c, d, EOS, a, b, c, d], [c, d, a, b, EOS, c, d, a]], 8)
    never_ends = _ScriptedModel([[a, b, c, d, a, b], [EOS, a, b, c, d, a]], 8)
    cases = [
        Case("scripted model: 3 rows ending after 2, 4 and 5 tokens, max_new_tokens=8 (decoding stops after 5)",
             (staggered, ids([3, 4, 2])), dict(tokens, max_new_tokens=8)),
        Case("scripted model: row 0 never produces </s>, row 1 at once; max_new_tokens=6",
             (never_ends, ids([2, 5])), dict(tokens, max_new_tokens=6)),
        Case("random llmcore.Transformer (d_model=16, untied output), float32, 4 padded sources, max_new_tokens=7",
             (_random_model(seed, torch.float32, tie_output=False), ids([5, 2, 3, 7])), dict(tokens, max_new_tokens=7)),
        Case("random llmcore.Transformer (d_model=32, 2+2 layers), float64, whose rows end after as many tokens as "
             "their source has: 5 sources of lengths 6, 1, 4, 3, 2 (plus </s>), max_new_tokens=10",
             (_EndsAfterSourceLength(_random_model(seed + 1, torch.float64, d_model=32, n_heads=4, n_encoder_layers=2,
                                                   n_decoder_layers=2, tie_output=False)),
              ids([6, 1, 4, 3, 2])),
             dict(tokens, max_new_tokens=10)),
    ]
    if hidden:
        cases += [
            Case("random llmcore.Transformer (tied output), float32, rows ending after their source length, "
                 "8 sources of lengths 1 to 8, max_new_tokens=12",
                 (_EndsAfterSourceLength(_random_model(seed + 2, torch.float32, n_decoder_layers=2)),
                  ids([1, 2, 3, 4, 5, 6, 7, 8])),
                 dict(tokens, max_new_tokens=12)),
            Case("random llmcore.Transformer (d_model=24, 3 heads), float64, max_new_tokens=0 (empty output)",
                 (_random_model(seed + 3, torch.float64, d_model=24, n_heads=3), ids([4, 2])),
                 dict(tokens, max_new_tokens=0)),
            Case("rows ending after their source length, but max_new_tokens=3 cuts the longer rows short",
                 (_EndsAfterSourceLength(_random_model(seed + 4, torch.float64, tie_output=False)), ids([1, 5, 2])),
                 dict(tokens, max_new_tokens=3)),
            Case("scripted model, a single row ending at the last allowed step, max_new_tokens=4",
                 (_ScriptedModel([[a, b, c, EOS, a]], 8), ids([3])), dict(tokens, max_new_tokens=4)),
        ]
    return cases


def check_greedy_decode(fn: Callable, *, hidden: bool = False) -> None:
    """Check ``fn(model, src_ids, bos_id, eos_id, pad_id, max_new_tokens) -> [B, N]`` against
    llmcore.greedy_decode (SYLLABUS T11), on random llmcore Transformers and on scripted models whose
    rows end at known steps."""
    return check_function(
        "greedy_decode",
        fn,
        _greedy_reference,
        _greedy_cases(seed=1 if hidden else 0, hidden=hidden),
        mistakes=GREEDY_MISTAKES,
        forbidden={reference_greedy_decode: "llmcore.greedy_decode"},
        output_names=("generated ids",),
        fallback_hint="encode once; start from a [B, 1] column of bos_id; each step take decode(...)[:, -1].argmax(-1), "
        "write pad_id in finished rows, append, mark rows that produced eos_id, stop when all are finished; return "
        "tokens[:, 1:].",
    )


# --------------------------------------------------------------------------------------------------
# The trained model of the finale (T11)
# --------------------------------------------------------------------------------------------------

REQUIRED_ACCURACY = 0.8


def check_trained_model(model: nn.Module | None, *, hidden: bool = False) -> None:
    """Decode fresh strings of the reverse task with llmcore.greedy_decode and require an exact-match
    accuracy of at least 80 %.

    The check decodes with llmcore's greedy decoding, so that a slip in the learner's greedy_decode
    does not cost this point; the model is the learner's own.
    """
    if model is None:
        raise CheckFailure(
            "✘ the trained model is not implemented yet: `model` is None because Seq2SeqTransformer still raises "
            "NotImplementedError. Make its check pass, then run the training cell."
        )
    if not all(callable(getattr(model, name, None)) for name in ("encode", "decode", "eval")):
        raise CheckFailure(f"✘ expected the trained Seq2SeqTransformer, got {type(model).__name__}")
    task = ToySeq2SeqTask()
    n_examples = 512 if hidden else 256
    src, tgt = task.sample(n_examples, torch.Generator().manual_seed(2018 if hidden else 2017))
    model.eval()
    try:
        predicted = reference_greedy_decode(
            model, src, bos_id=BOS, eos_id=EOS, pad_id=PAD, max_new_tokens=task.max_target_length
        )
    except NotImplementedError:
        raise CheckFailure(
            "✘ the trained model is not implemented yet: Seq2SeqTransformer.encode or decode still raises "
            "NotImplementedError."
        ) from None
    except Exception as error:
        raise CheckFailure(
            f"✘ decoding {n_examples} held-out strings with your model raised {type(error).__name__}: {error}"
        ) from error
    accuracy = sequence_accuracy(predicted, tgt[:, 1:], EOS)
    if accuracy < REQUIRED_ACCURACY:
        wrong = [
            f"    {task.decode(s)} → {task.decode(p) or '(nothing)'}   (expected {task.decode(t)})"
            for s, p, t in zip(src, predicted, tgt[:, 1:])
            if task.decode(p) != task.decode(t)
        ][:3]
        raise CheckFailure(
            "\n".join([
                f"✘ the trained model reverses {accuracy:.1%} of {n_examples} held-out strings exactly; "
                f"it needs at least {REQUIRED_ACCURACY:.0%}. Some of its mistakes:",
                *wrong,
                "Hint: look at the loss curve. If it is flat or rising, check the learning rate (did the scheduler "
                "step after each optimizer step? was the optimizer created with lr=1.0?). If it is still falling "
                "at the end, train longer (more steps). If it stalls near log(V) ≈ "
                f"{math.log(task.vocab_size):.2f}, check train_step: teacher_forcing_batch, the loss's ignore_index "
                "and zero_grad before backward.",
            ])
        )
    print(f"✔ trained model: reverses {accuracy:.1%} of {n_examples} held-out strings exactly "
          f"(needs ≥ {REQUIRED_ACCURACY:.0%}).")
