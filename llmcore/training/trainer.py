"""A small training loop: gradient accumulation, clipping, a schedule, progress, history and resume.

One optimizer step (一次参数更新) of :class:`Trainer`::

    zero the gradients
    for each of k micro-batches:  (loss(model, batch) / k).backward()      # 梯度累积
    g = global L2 norm of all gradients; if g > clip_norm: scale them by clip_norm / g   # 梯度裁剪
    optimizer.step(); scheduler.step()

Dividing each micro-batch loss by ``k`` makes the accumulated gradient the gradient of the *mean*
of the micro-batch losses, which equals the gradient of one batch ``k`` times larger whenever the
loss is a per-token mean and every micro-batch holds the same number of counted tokens. Clipping by
the global norm follows Pascanu et al. (2013); GPT-3 and LLaMA clip at 1.0.

Everything random the loop touches - the batches (drawn from the trainer's own ``torch.Generator``)
and dropout (PyTorch's global generator) - is saved by :meth:`Trainer.save`, so training N steps in
one go and training k steps, saving, loading into a fresh model and optimizer and training N − k
more give bitwise the same losses on the same machine.
"""

from __future__ import annotations

import math
import os
from typing import Any, Callable

import torch
from torch import Tensor, nn
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler

from ..losses import cross_entropy
from .clipping import clip_grad_norm
from .history import TrainingHistory
from .seeding import restore_rng_states, rng_states

__all__ = ["Trainer", "language_model_loss"]

NextBatch = Callable[[torch.Generator], Any]
LossFunction = Callable[[nn.Module, Any], Tensor]


def language_model_loss(model: nn.Module, batch: tuple[Tensor, Tensor]) -> Tensor:
    """Mean next-token cross-entropy (交叉熵) for a batch ``(x [B, L], y [B, L])``.

    ``model(x)`` must return logits ``[B, L, V]``; ``y`` holds the next token of every position
    (as :func:`llmcore.data.corpus.sample_windows` draws them), ``-100`` where nothing is predicted.
    """
    inputs, targets = batch
    logits = model(inputs)
    if not isinstance(logits, Tensor) or logits.dim() != 3 or logits.shape[:2] != targets.shape:
        shape = tuple(logits.shape) if isinstance(logits, Tensor) else type(logits).__name__
        raise ValueError(f"expected the model to return logits [B, L, V] for targets {tuple(targets.shape)}, got {shape}")
    return cross_entropy(logits, targets)


class Trainer:
    """Trains ``model`` with ``optimizer``, drawing batches with ``next_batch(generator)``.

    Args:
        model: any ``nn.Module`` the ``loss_fn`` understands (by default one returning logits
            ``[B, L, V]``, such as :class:`llmcore.models.CausalLM`).
        optimizer: built over the model's parameters (e.g. ``AdamW(parameter_groups(model, 0.1))``).
        next_batch: called once per micro-batch with the trainer's generator; must draw all its
            randomness from it (and put the batch on the model's device).
        scheduler: stepped once per optimizer step (e.g. :func:`llmcore.schedules.cosine_lr_scheduler`).
        accumulation_steps: micro-batches per optimizer step.
        clip_norm: clip the global gradient norm to this value; ``None`` only measures it.
        loss_fn: ``loss_fn(model, batch) -> scalar``; default :func:`language_model_loss`.
        seed: seeds the generator handed to ``next_batch``.

    Attributes:
        step: optimizer steps taken so far.
        history: a :class:`TrainingHistory`, one entry per step.
    """

    def __init__(
        self,
        model: nn.Module,
        optimizer: Optimizer,
        next_batch: NextBatch,
        *,
        scheduler: LRScheduler | None = None,
        accumulation_steps: int = 1,
        clip_norm: float | None = None,
        loss_fn: LossFunction = language_model_loss,
        seed: int = 0,
    ) -> None:
        if isinstance(accumulation_steps, bool) or not isinstance(accumulation_steps, int) or accumulation_steps < 1:
            raise ValueError(f"accumulation_steps must be a positive int, got {accumulation_steps!r}")
        if clip_norm is not None and not clip_norm > 0:
            raise ValueError(f"clip_norm must be positive or None, got {clip_norm}")
        self.model = model
        self.optimizer = optimizer
        self.next_batch = next_batch
        self.scheduler = scheduler
        self.accumulation_steps = accumulation_steps
        self.clip_norm = clip_norm
        self.loss_fn = loss_fn
        self.generator = torch.Generator().manual_seed(seed)
        self.step = 0
        self.history = TrainingHistory()

    def accumulate_gradients(self) -> float:
        """Add the gradient of the mean loss over ``accumulation_steps`` micro-batches; return that mean."""
        self.model.train()
        total = 0.0
        for _ in range(self.accumulation_steps):
            loss = self.loss_fn(self.model, self.next_batch(self.generator)) / self.accumulation_steps
            loss.backward()
            total += loss.item()
        return total

    def clip_gradients(self) -> float:
        """Clip the global L2 norm of the optimizer's gradients to ``clip_norm`` (when set); return it before clipping."""
        parameters = [p for group in self.optimizer.param_groups for p in group["params"]]
        limit = math.inf if self.clip_norm is None else self.clip_norm
        return float(clip_grad_norm(parameters, limit))

    def train_step(self) -> float:
        """One optimizer step (accumulate, clip, update, advance the schedule); returns its loss."""
        self.optimizer.zero_grad(set_to_none=True)
        loss = self.accumulate_gradients()
        grad_norm = self.clip_gradients()
        learning_rate = self.optimizer.param_groups[0]["lr"]
        self.optimizer.step()
        if self.scheduler is not None:
            self.scheduler.step()
        self.history.record(self.step, loss, grad_norm, learning_rate)
        self.step += 1
        return loss

    def fit(self, steps: int, *, progress: bool = True) -> TrainingHistory:
        """Take ``steps`` more optimizer steps, with a tqdm progress bar showing the loss."""
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
            raise ValueError(f"steps must be a non-negative int, got {steps!r}")
        bar = None
        if progress:
            from tqdm.auto import tqdm  # imported here so that llmcore imports with torch alone

            bar = tqdm(total=steps, desc="training", unit="step")
        for _ in range(steps):
            loss = self.train_step()
            if bar is not None:
                bar.set_postfix(loss=f"{loss:.4f}", refresh=False)
                bar.update(1)
        if bar is not None:
            bar.close()
        return self.history

    def state_dict(self) -> dict[str, Any]:
        """Model, optimizer, scheduler, step, history and every random-number-generator state."""
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": None if self.scheduler is None else self.scheduler.state_dict(),
            "step": self.step,
            "history": self.history.state_dict(),
            "rng": {"batches": self.generator.get_state(), **rng_states()},
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned, global generators included."""
        if (state["scheduler"] is None) != (self.scheduler is None):
            raise ValueError("the checkpoint and this trainer disagree on whether there is a scheduler")
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scheduler is not None:
            self.scheduler.load_state_dict(state["scheduler"])
        self.step = state["step"]
        self.history = TrainingHistory.from_state_dict(state["history"])
        self.generator.set_state(state["rng"]["batches"])
        restore_rng_states(state["rng"])

    def save(self, path: str | os.PathLike) -> None:
        """Write :meth:`state_dict` to ``path`` with ``torch.save``."""
        torch.save(self.state_dict(), path)

    def load(self, path: str | os.PathLike) -> None:
        """Resume from a file :meth:`save` wrote (read with ``weights_only=True``: no code runs)."""
        self.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
