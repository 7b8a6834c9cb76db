"""The record a training run keeps of each optimizer step."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["TrainingHistory"]


@dataclass
class TrainingHistory:
    """One entry per optimizer step, in order.

    ``steps[i]`` is the 0-based index of the update, ``losses[i]`` the mean loss of its micro-batches,
    ``grad_norms[i]`` the global L2 norm of the gradient *before* clipping (梯度裁剪前的范数), and
    ``learning_rates[i]`` the rate of the first parameter group used for that update.
    """

    steps: list[int] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    grad_norms: list[float] = field(default_factory=list)
    learning_rates: list[float] = field(default_factory=list)

    def record(self, step: int, loss: float, grad_norm: float, learning_rate: float) -> None:
        self.steps.append(step)
        self.losses.append(loss)
        self.grad_norms.append(grad_norm)
        self.learning_rates.append(learning_rate)

    def __len__(self) -> int:
        return len(self.steps)

    def state_dict(self) -> dict[str, list]:
        """Plain lists, safe for ``torch.load(weights_only=True)``."""
        return {"steps": list(self.steps), "losses": list(self.losses), "grad_norms": list(self.grad_norms),
                "learning_rates": list(self.learning_rates)}

    @classmethod
    def from_state_dict(cls, state: dict[str, list]) -> TrainingHistory:
        return cls(**{name: list(values) for name, values in state.items()})
