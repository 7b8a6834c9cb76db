"""Training utilities: the cosine schedule, AdamW parameter groups, the Trainer (accumulation,
clipping, history, resume, determinism) and a tiny CausalLM learning the shipped English corpus.

Oracles are written here: the schedule's closed form by hand, gradients from a plain
``F.cross_entropy(...).backward()``, and AdamW's decoupled decay ``p ← p − lr·λ·p`` on zero gradients.
"""

from __future__ import annotations

import math
import random
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from llmcore import CausalLM, ModelConfig
from llmcore.data.corpus import byte_tokens, load_corpus, sample_windows
from llmcore.schedules import cosine_lr, cosine_lr_scheduler
from llmcore.training import Trainer, TrainingHistory, language_model_loss, parameter_groups, plot_losses, set_seed
from llmcore.training.clipping import clip_grad_norm


@pytest.fixture(autouse=True)
def one_thread():
    """Every tensor here is tiny: a second thread adds only synchronisation, and on a shared machine
    each op then waits for a busy core (10x slower measured). Restored afterwards for other files."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# ----------------------------------------------------------------------------------------------
# cosine_lr
# ----------------------------------------------------------------------------------------------

PEAK, WARMUP, TOTAL = 1e-3, 10, 110  # floor = 1e-4; the cosine runs over the 100 steps 10 … 110


@pytest.mark.parametrize(
    "step, expected",
    [
        (0, 0.0),                                   # warm-up starts from zero
        (5, 5e-4),                                  # half-way up the linear ramp
        (10, 1e-3),                                 # end of warm-up: the peak
        (35, 1e-4 + 4.5e-4 * (1 + math.sqrt(0.5))),  # a quarter into the cosine: cos(π/4) = √½
        (60, 5.5e-4),                               # the middle: half-way between peak and floor
        (85, 1e-4 + 4.5e-4 * (1 - math.sqrt(0.5))),  # three quarters: cos(3π/4) = −√½
        (110, 1e-4),                                # the end: the floor, 10 % of the peak
        (111, 1e-4),                                # after the end: stays at the floor
        (10_000, 1e-4),
    ],
)
def test_cosine_lr_key_steps(step, expected):
    assert cosine_lr(step, peak_lr=PEAK, warmup_steps=WARMUP, total_steps=TOTAL) == pytest.approx(expected, rel=1e-12, abs=1e-18)


def test_cosine_lr_without_warm_up_or_floor():
    assert cosine_lr(0, peak_lr=2.0, warmup_steps=0, total_steps=4) == 2.0
    assert cosine_lr(2, peak_lr=2.0, warmup_steps=0, total_steps=4, min_lr_ratio=0.0) == pytest.approx(1.0, rel=1e-12)
    assert cosine_lr(4, peak_lr=2.0, warmup_steps=0, total_steps=4, min_lr_ratio=0.0) == 0.0


def test_cosine_lr_rises_then_never_rises_again():
    rates = [cosine_lr(s, peak_lr=PEAK, warmup_steps=WARMUP, total_steps=TOTAL) for s in range(130)]
    assert all(a < b for a, b in zip(rates[:WARMUP], rates[1 : WARMUP + 1]))
    assert all(a >= b for a, b in zip(rates[WARMUP:], rates[WARMUP + 1 :]))
    assert max(rates) == PEAK


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(step=-1), "step=-1"),
        (dict(peak_lr=0.0), "peak_lr"),
        (dict(warmup_steps=110), "warmup_steps=110"),
        (dict(warmup_steps=-1), "warmup_steps=-1"),
        (dict(min_lr_ratio=1.5), "min_lr_ratio"),
    ],
)
def test_cosine_lr_rejects_bad_settings(kwargs, message):
    settings = dict(step=0, peak_lr=PEAK, warmup_steps=WARMUP, total_steps=TOTAL) | kwargs
    step = settings.pop("step")
    with pytest.raises(ValueError, match=message):
        cosine_lr(step, **settings)


def test_cosine_scheduler_scales_every_group_by_the_schedule():
    weights = [nn.Parameter(torch.zeros(1)), nn.Parameter(torch.zeros(1))]
    optimizer = torch.optim.SGD([{"params": [weights[0]], "lr": 1e-3}, {"params": [weights[1]], "lr": 4e-3}])
    scheduler = cosine_lr_scheduler(optimizer, warmup_steps=WARMUP, total_steps=TOTAL)
    seen = []
    for _ in range(TOTAL + 3):
        seen.append([group["lr"] for group in optimizer.param_groups])
        optimizer.step()
        scheduler.step()
    assert seen[0] == [0.0, 0.0]
    assert seen[10] == pytest.approx([1e-3, 4e-3], rel=1e-12)
    assert seen[60] == pytest.approx([5.5e-4, 2.2e-3], rel=1e-12)
    assert seen[112] == pytest.approx([1e-4, 4e-4], rel=1e-12)
    with pytest.raises(ValueError, match="warmup_steps"):
        cosine_lr_scheduler(optimizer, warmup_steps=5, total_steps=5)


# ----------------------------------------------------------------------------------------------
# parameter_groups
# ----------------------------------------------------------------------------------------------


def gpt_like(**overrides) -> CausalLM:
    """LayerNorm, learned positions, biases everywhere, head tied to the token embedding."""
    fields = dict(
        vocab_size=16, hidden_size=8, n_layers=1, n_heads=2, intermediate_size=16, max_positions=8,
        position="learned", norm="layernorm", ffn="mlp", activation="gelu", qkv_bias=True, o_bias=True,
        mlp_bias=True, tie_word_embeddings=True,
    )
    torch.manual_seed(0)
    return CausalLM(ModelConfig(**(fields | overrides)))


def group_names(model: nn.Module, groups: list[dict]) -> list[set[str]]:
    name_of = {id(p): name for name, p in model.named_parameters()}
    return [{name_of[id(p)] for p in group["params"]} for group in groups]


LINEAR_WEIGHTS = {
    f"layers.0.{name}.weight"
    for name in ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj", "ffn.up_proj", "ffn.down_proj")
}
BIASES = {name.replace(".weight", ".bias") for name in LINEAR_WEIGHTS}
NORMS = {f"{norm}.{part}" for norm in ("layers.0.self_attn_norm", "layers.0.ffn_norm", "norm") for part in ("weight", "bias")}
EMBEDDINGS = {"embeddings.embed_tokens.weight", "embeddings.embed_positions.weight"}


def test_norms_biases_and_embeddings_are_not_decayed():
    model = gpt_like()
    groups = parameter_groups(model, 0.1)
    assert [g["weight_decay"] for g in groups] == [0.1, 0.0]
    decayed, undecayed = group_names(model, groups)
    assert decayed == LINEAR_WEIGHTS
    assert undecayed == BIASES | NORMS | EMBEDDINGS


def test_decay_embeddings_moves_the_tables_and_the_tied_head():
    model = gpt_like()
    decayed, undecayed = group_names(model, parameter_groups(model, 0.1, decay_embeddings=True))
    assert decayed == LINEAR_WEIGHTS | EMBEDDINGS
    assert undecayed == BIASES | NORMS


def test_every_trainable_parameter_lands_in_exactly_one_group():
    for model in (gpt_like(), gpt_like(tie_word_embeddings=False, lm_head_bias=True), gpt_like(norm="rmsnorm")):
        groups = parameter_groups(model, 0.1)
        ids = [id(p) for group in groups for p in group["params"]]
        assert len(ids) == len(set(ids))
        assert set(ids) == {id(p) for p in model.parameters()}


def test_untied_head_is_decayed_and_its_bias_is_not():
    model = gpt_like(tie_word_embeddings=False, lm_head_bias=True)
    decayed, undecayed = group_names(model, parameter_groups(model, 0.1))
    assert "lm_head.weight" in decayed
    assert "lm_head.bias" in undecayed


def test_rmsnorm_is_recognised_by_type_whatever_its_name():
    model = nn.Sequential(nn.Linear(4, 4, bias=False))
    model.add_module("anything", CausalLM(ModelConfig(vocab_size=8, hidden_size=4, n_layers=1, n_heads=1, intermediate_size=8)).norm)
    decayed, undecayed = group_names(model, parameter_groups(model, 0.1))
    assert decayed == {"0.weight"} and undecayed == {"anything.weight"}


def test_frozen_parameters_are_left_out_and_empty_groups_dropped():
    model = nn.Sequential(nn.Linear(3, 3), nn.LayerNorm(3))
    model[1].requires_grad_(False)
    model[0].bias.requires_grad_(False)
    groups = parameter_groups(model, 0.1)
    assert len(groups) == 1 and group_names(model, groups) == [{"0.weight"}]
    with pytest.raises(ValueError, match="-0.5"):
        parameter_groups(model, -0.5)


def test_adamw_with_the_groups_decays_only_the_decayed_group():
    # With zero gradients AdamW's update is pure decoupled decay: p ← p − lr·λ·p = 0.95·p here.
    model = gpt_like()
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    optimizer = torch.optim.AdamW(parameter_groups(model, 0.5), lr=0.1)
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    optimizer.step()
    for name, p in model.named_parameters():
        expected = before[name] * 0.95 if name in LINEAR_WEIGHTS else before[name]
        torch.testing.assert_close(p.detach(), expected, rtol=1e-6, atol=0)


# ----------------------------------------------------------------------------------------------
# Trainer
# ----------------------------------------------------------------------------------------------

VOCAB, CONTEXT = 32, 12


def tiny_lm(seed: int = 0, **overrides) -> CausalLM:
    torch.manual_seed(seed)
    fields = dict(vocab_size=VOCAB, hidden_size=16, n_layers=1, n_heads=2, intermediate_size=32, max_positions=CONTEXT)
    return CausalLM(ModelConfig(**(fields | overrides)))


def fixed_batch(rows: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    tokens = torch.randint(0, VOCAB, (rows, CONTEXT + 1), generator=torch.Generator().manual_seed(7))
    return tokens[:, :-1], tokens[:, 1:]


def micro_batches(x: torch.Tensor, y: torch.Tensor, size: int):
    """``next_batch`` that hands out consecutive slices of one batch, round and round."""
    slices = [(x[i : i + size], y[i : i + size]) for i in range(0, len(x), size)]
    calls = iter(range(10**9))
    return lambda generator: slices[next(calls) % len(slices)]


def reference_gradients(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
    model.zero_grad()
    logits = model(x)
    F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1)).backward()
    gradients = {name: p.grad.clone() for name, p in model.named_parameters()}
    model.zero_grad()
    return gradients


@pytest.mark.parametrize("micro_size", [8, 4, 2, 1])
def test_accumulated_gradients_equal_one_big_batch(micro_size):
    x, y = fixed_batch(8)
    model = tiny_lm()
    expected = reference_gradients(model, x, y)
    with torch.no_grad():
        logits = model(x)
        expected_loss = F.cross_entropy(logits.reshape(-1, VOCAB), y.reshape(-1)).item()
    trainer = Trainer(model, torch.optim.SGD(model.parameters(), lr=0.0), micro_batches(x, y, micro_size),
                      accumulation_steps=8 // micro_size)
    loss = trainer.accumulate_gradients()
    assert loss == pytest.approx(expected_loss, rel=1e-6)
    for name, p in model.named_parameters():
        torch.testing.assert_close(p.grad, expected[name], rtol=1e-5, atol=1e-8, msg=name)


@pytest.mark.parametrize("shrink", [None, 0.25, 4.0])
def test_clipping_rescales_to_the_limit_and_records_the_norm_before(shrink):
    x, y = fixed_batch(4)
    model = tiny_lm()
    gradients = reference_gradients(model, x, y)
    norm = math.sqrt(sum(float(g.double().pow(2).sum()) for g in gradients.values()))
    clip_norm = None if shrink is None else shrink * norm
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    trainer = Trainer(model, torch.optim.SGD(model.parameters(), lr=1.0), lambda g: (x, y), clip_norm=clip_norm)
    trainer.train_step()
    scale = 1.0 if shrink is None or shrink >= 1 else shrink  # SGD, lr 1: p ← p − scale·g
    assert trainer.history.grad_norms == [pytest.approx(norm, rel=1e-5)]
    for name, p in model.named_parameters():
        torch.testing.assert_close(p.detach(), before[name] - scale * gradients[name], rtol=1e-5, atol=1e-7, msg=name)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("max_norm", [0.3, 1.0, 50.0, math.inf])
def test_clip_grad_norm_matches_pytorch(dtype, max_norm):
    """Oracle: torch.nn.utils.clip_grad_norm_ on a copy of the same gradients (one parameter has none)."""
    generator = torch.Generator().manual_seed(7)
    shapes = [(3, 5), (7,), (2, 4, 6), (1,)]
    ours = [nn.Parameter(torch.zeros(shape, dtype=dtype)) for shape in shapes]
    theirs = [nn.Parameter(torch.zeros(shape, dtype=dtype)) for shape in shapes]
    for mine, other in zip(ours[:-1], theirs[:-1]):
        mine.grad = torch.randn(mine.shape, generator=generator, dtype=dtype)
        other.grad = mine.grad.clone()
    total = clip_grad_norm(ours, max_norm)
    expected = torch.nn.utils.clip_grad_norm_(theirs, max_norm)
    torch.testing.assert_close(total, expected)
    for mine, other in zip(ours, theirs):
        if other.grad is None:
            assert mine.grad is None
        else:
            torch.testing.assert_close(mine.grad, other.grad)


def test_clip_grad_norm_keeps_the_direction_and_reaches_the_limit():
    first, second = nn.Parameter(torch.zeros(2)), nn.Parameter(torch.zeros(1))
    first.grad, second.grad = torch.tensor([3.0, 0.0]), torch.tensor([4.0])   # global norm 5
    assert float(clip_grad_norm([first, second], 1.0)) == pytest.approx(5.0)
    torch.testing.assert_close(first.grad, torch.tensor([0.6, 0.0]), atol=1e-6, rtol=0)
    torch.testing.assert_close(second.grad, torch.tensor([0.8]), atol=1e-6, rtol=0)
    with pytest.raises(ValueError, match="max_norm"):
        clip_grad_norm([first], 0.0)
    assert float(clip_grad_norm([nn.Parameter(torch.zeros(3))], 1.0)) == 0.0


def corpus_trainer(seed: int = 0, *, dropout: float = 0.0, steps: int = 8, model_seed: int = 0) -> Trainer:
    model = tiny_lm(model_seed, vocab_size=256, dropout=dropout)
    optimizer = torch.optim.AdamW(parameter_groups(model, 0.1), lr=1e-2, betas=(0.9, 0.95))
    scheduler = cosine_lr_scheduler(optimizer, warmup_steps=2, total_steps=steps)
    tokens = byte_tokens(load_corpus("english", max_bytes=20_000))
    return Trainer(model, optimizer, lambda g: sample_windows(tokens, 4, CONTEXT, generator=g),
                   scheduler=scheduler, accumulation_steps=2, clip_norm=1.0, seed=seed)


def test_history_records_each_step_and_the_scheduled_learning_rate():
    trainer = corpus_trainer(steps=8)
    history = trainer.fit(8, progress=False)
    assert trainer.step == 8 and len(history) == 8
    assert history.steps == list(range(8))
    expected = [cosine_lr(s, peak_lr=1e-2, warmup_steps=2, total_steps=8) for s in range(8)]
    assert history.learning_rates == pytest.approx(expected, rel=1e-12, abs=1e-18)
    assert all(math.isfinite(v) and v > 0 for v in history.losses + history.grad_norms)


def test_same_seed_same_run_other_seed_other_batches():
    first = corpus_trainer(seed=1, dropout=0.1).fit(6, progress=False).losses
    torch.manual_seed(1234)
    second = corpus_trainer(seed=1, dropout=0.1).fit(6, progress=False).losses
    other = corpus_trainer(seed=2, dropout=0.1).fit(6, progress=False).losses
    assert first == second
    assert first != other


def test_resume_reproduces_an_uninterrupted_run_bitwise(tmp_path):
    total, split = 8, 3
    straight = corpus_trainer(dropout=0.1, steps=total)
    torch.manual_seed(5)  # dropout draws from the global generator: both runs start from the same state
    straight.fit(total, progress=False)

    first_leg = corpus_trainer(dropout=0.1, steps=total)
    torch.manual_seed(5)
    first_leg.fit(split, progress=False)
    first_leg.save(tmp_path / "checkpoint.pt")

    torch.manual_seed(999)  # disturb the global generator; the checkpoint must put it back
    resumed = corpus_trainer(dropout=0.1, steps=total, model_seed=42)
    resumed.load(tmp_path / "checkpoint.pt")
    assert resumed.step == split and resumed.history.losses == first_leg.history.losses
    resumed.fit(total - split, progress=False)

    assert resumed.history.losses == straight.history.losses
    assert resumed.history.grad_norms == straight.history.grad_norms
    for (name, a), b in zip(straight.model.named_parameters(), resumed.model.parameters()):
        assert torch.equal(a, b), name


def test_a_checkpoint_without_a_scheduler_is_refused_by_a_trainer_with_one():
    model = tiny_lm()
    plain = Trainer(model, torch.optim.SGD(model.parameters(), lr=0.1), lambda g: None)
    with pytest.raises(ValueError, match="scheduler"):
        corpus_trainer().load_state_dict(plain.state_dict())


def test_set_seed_repeats_torch_and_python_draws():
    set_seed(3)
    first = (torch.rand(3), random.random())
    set_seed(3)
    assert torch.equal(torch.rand(3), first[0]) and random.random() == first[1]
    with pytest.raises(TypeError, match="float"):
        set_seed(1.5)


def test_fit_shows_a_progress_bar(capsys):
    corpus_trainer().fit(2)
    assert "training" in capsys.readouterr().err


def test_trainer_rejects_bad_settings():
    model = tiny_lm()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(ValueError, match="accumulation_steps"):
        Trainer(model, optimizer, lambda g: None, accumulation_steps=0)
    with pytest.raises(ValueError, match="clip_norm"):
        Trainer(model, optimizer, lambda g: None, clip_norm=0.0)
    with pytest.raises(ValueError, match="steps"):
        Trainer(model, optimizer, lambda g: None).fit(-1)


def test_loss_names_a_model_that_does_not_return_logits():
    x, y = fixed_batch(2)
    with pytest.raises(ValueError, match=r"logits \[B, L, V\]"):
        language_model_loss(nn.Embedding(VOCAB, 4), (x[:, 0], y[:, 0]))


def test_plot_losses_draws_the_history():
    pytest.importorskip("matplotlib", reason="plot_losses needs matplotlib (the course extra)")
    history = TrainingHistory(steps=[0, 1, 2], losses=[3.0, 2.0, 1.5], grad_norms=[1.0] * 3, learning_rates=[0.1] * 3)
    figure = plot_losses(history, label="run")
    (line,) = figure.axes[0].get_lines()
    assert list(line.get_xdata()) == [0, 1, 2] and list(line.get_ydata()) == [3.0, 2.0, 1.5]
    assert plot_losses(history, log_scale=True).axes[0].get_yscale() == "log"
    with pytest.raises(ValueError, match="empty"):
        plot_losses(TrainingHistory())


def test_llmcore_training_imports_without_matplotlib():
    code = "import sys, llmcore.training; assert 'matplotlib' not in sys.modules, 'matplotlib imported eagerly'"
    subprocess.run([sys.executable, "-c", code], check=True)


# ----------------------------------------------------------------------------------------------
# A tiny model learns the shipped English corpus
# ----------------------------------------------------------------------------------------------


def entropies_in_nats(tokens: torch.Tensor) -> tuple[float, float]:
    """The corpus' unigram byte entropy H(X) and bigram conditional entropy H(X_t | X_{t−1})."""
    counts = torch.bincount(tokens, minlength=256).double()
    p = counts[counts > 0] / counts.sum()
    unigram = float(-(p * p.log()).sum())
    pairs = torch.zeros(256 * 256, dtype=torch.float64).index_add_(
        0, tokens[:-1] * 256 + tokens[1:], torch.ones(len(tokens) - 1, dtype=torch.float64)
    ).view(256, 256)
    joint = pairs / pairs.sum()
    conditional = joint / joint.sum(dim=1, keepdim=True).clamp(min=1e-300)
    seen = joint > 0
    return unigram, float(-(joint[seen] * conditional[seen].log()).sum())


def test_tiny_causal_lm_learns_the_english_corpus():
    """~27K parameters, 250 steps of 16 × 32 bytes: a few seconds on two cores.

    Bounds: a model that learned nothing pays ln 256 ≈ 5.55 nats per byte; one that learned byte
    frequencies only, the unigram entropy (≈ 3.0 for this corpus); one that learned which byte follows
    which, the bigram conditional entropy (≈ 2.2). The held-out loss must beat all three, so the
    model uses more than the previous byte.
    """
    tokens = byte_tokens(load_corpus("english"))
    unigram, bigram = entropies_in_nats(tokens)
    assert bigram < unigram < math.log(256)
    set_seed(0)
    model = CausalLM(ModelConfig(vocab_size=256, hidden_size=32, n_layers=1, n_heads=4, intermediate_size=64, max_positions=32))
    steps = 250
    optimizer = torch.optim.AdamW(parameter_groups(model, 0.1), lr=1e-2, betas=(0.9, 0.95))
    trainer = Trainer(model, optimizer, lambda g: sample_windows(tokens, 16, 32, generator=g),
                      scheduler=cosine_lr_scheduler(optimizer, warmup_steps=25, total_steps=steps), clip_norm=1.0)
    trainer.fit(steps, progress=False)

    x, y = sample_windows(tokens, 64, 32, generator=torch.Generator().manual_seed(12345))
    model.eval()
    with torch.no_grad():
        held_out = language_model_loss(model, (x, y)).item()
    assert trainer.history.losses[0] == pytest.approx(math.log(256), abs=0.1)
    assert held_out < bigram, f"held-out loss {held_out:.3f} nats/byte is not below the bigram entropy {bigram:.3f}"
