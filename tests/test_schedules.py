"""llmcore's Transformer learning-rate schedule (transformer_lr and transformer_lr_scheduler) against the paper's
closed form d_model^-½ · min(step^-½, step · warmup^-1.5): key values, shape (linear warm-up then 1/√step decay),
errors, and the scheduler's offset by one step; cosine_lr against transformers' cosine schedules.
"""
import pytest
import torch
from torch import nn

from llmcore import transformer_lr, transformer_lr_scheduler
from llmcore.schedules import cosine_lr


def closed_form_lr(step, d_model, warmup):
    return d_model**-0.5 * min(step**-0.5, step * warmup**-1.5)


def test_transformer_lr_key_values():
    d_model, warmup = 512, 4000
    assert transformer_lr(warmup, d_model, warmup) == pytest.approx((d_model * warmup) ** -0.5, rel=1e-12)
    assert transformer_lr(warmup, d_model, warmup) == pytest.approx(6.9877e-4, rel=1e-4)
    assert transformer_lr(1, d_model, warmup) == pytest.approx(512**-0.5 * 4000**-1.5, rel=1e-12)
    peak = transformer_lr(warmup, d_model, warmup)
    assert transformer_lr(warmup // 2, d_model, warmup) == pytest.approx(peak / 2, rel=1e-12)  # linear warm-up
    assert transformer_lr(4 * warmup, d_model, warmup) == pytest.approx(peak / 2, rel=1e-12)   # 1/√step decay
    assert transformer_lr(100, 64, 10, factor=2.0) == pytest.approx(2 * 64**-0.5 * 100**-0.5, rel=1e-12)


@pytest.mark.parametrize("step", [1, 7, 199, 200, 201, 1000, 123456])
def test_transformer_lr_matches_closed_form(step):
    assert transformer_lr(step, 64, 200) == pytest.approx(closed_form_lr(step, 64, 200), rel=1e-12)


def test_transformer_lr_rises_then_decays():
    values = [transformer_lr(s, 128, 50) for s in range(1, 300)]
    peak_index = values.index(max(values))
    assert peak_index + 1 == 50
    assert all(a < b for a, b in zip(values[:peak_index], values[1 : peak_index + 1]))
    assert all(a > b for a, b in zip(values[peak_index:], values[peak_index + 1 :]))


@pytest.mark.parametrize("kwargs, message", [
    (dict(step=0), "step"), (dict(step=-3), "step"), (dict(step=1, warmup_steps=0), "warmup_steps"),
])
def test_transformer_lr_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        transformer_lr(d_model=64, **kwargs)


def test_scheduler_is_offset_by_one():
    param = nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([param], lr=1.0)
    scheduler = transformer_lr_scheduler(optimizer, d_model=16, warmup_steps=4, factor=3.0)
    seen = []
    for _ in range(8):
        seen.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert seen == pytest.approx([3.0 * closed_form_lr(s, 16, 4) for s in range(1, 9)], rel=1e-12)


# ----------------------------------------------------------------------------------------------
# cosine_lr against Hugging Face's schedules
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("warmup,total", [(2000, 10000), (7, 28), (0, 5), (1, 2)])
def test_cosine_lr_matches_transformers_min_lr_schedule(warmup, total):
    """Oracle: transformers' get_cosine_with_min_lr_schedule_with_warmup(min_lr_rate=0.1), LLaMA's 10 % floor.
    It agrees up to total_steps; after that its cosine turns back up, while cosine_lr stays at the floor."""
    transformers = pytest.importorskip("transformers")
    peak = 3e-4
    optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=peak)
    scheduler = transformers.get_cosine_with_min_lr_schedule_with_warmup(
        optimizer, num_warmup_steps=warmup, num_training_steps=total, min_lr_rate=0.1)
    for step in range(total + 1):
        expected = scheduler.get_last_lr()[0]
        ours = cosine_lr(step, peak_lr=peak, warmup_steps=warmup, total_steps=total)
        assert ours == pytest.approx(expected, rel=1e-12, abs=1e-18)
        optimizer.step()
        scheduler.step()
    after_the_end = cosine_lr(total + total // 2, peak_lr=peak, warmup_steps=warmup, total_steps=total)
    assert after_the_end == pytest.approx(0.1 * peak)


def test_cosine_lr_differs_from_transformers_default_which_decays_to_zero():
    transformers = pytest.importorskip("transformers")
    optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0)
    scheduler = transformers.get_cosine_schedule_with_warmup(optimizer, num_warmup_steps=10, num_training_steps=100)
    for _ in range(100):
        optimizer.step()
        scheduler.step()
    assert scheduler.get_last_lr()[0] == pytest.approx(0.0, abs=1e-12)
    assert cosine_lr(100, peak_lr=1.0, warmup_steps=10, total_steps=100) == pytest.approx(0.1)
