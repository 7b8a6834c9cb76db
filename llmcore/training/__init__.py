"""Training utilities: AdamW parameter groups, global-norm gradient clipping, a training loop with
accumulation, history and exact resume, seeding, and the loss curve. Data parallelism over
several processes (a fork launcher, gloo over the loopback interface ``lo``: Linux) is the submodule
:mod:`llmcore.training.data_parallel`, imported on its own.

::

    import torch
    from llmcore import CausalLM, ModelConfig
    from llmcore.data.corpus import byte_tokens, load_corpus, sample_windows
    from llmcore.schedules import cosine_lr_scheduler
    from llmcore.training import Trainer, parameter_groups, plot_losses, set_seed

    set_seed(0)
    model = CausalLM(ModelConfig(vocab_size=256, hidden_size=64, n_layers=2, n_heads=4, intermediate_size=128))
    optimizer = torch.optim.AdamW(parameter_groups(model, 0.1), lr=3e-3, betas=(0.9, 0.95))
    scheduler = cosine_lr_scheduler(optimizer, warmup_steps=20, total_steps=200)
    tokens = byte_tokens(load_corpus("english"))
    trainer = Trainer(model, optimizer, lambda g: sample_windows(tokens, 16, 64, generator=g),
                      scheduler=scheduler, clip_norm=1.0)
    plot_losses(trainer.fit(200))
"""

from .clipping import clip_grad_norm
from .history import TrainingHistory
from .param_groups import EMBEDDING_TYPES, NORM_TYPES, parameter_groups
from .plotting import plot_losses
from .seeding import restore_rng_states, rng_states, set_seed
from .trainer import Trainer, language_model_loss

__all__ = [
    "clip_grad_norm", "TrainingHistory", "EMBEDDING_TYPES", "NORM_TYPES", "parameter_groups", "plot_losses", "restore_rng_states",
    "rng_states", "set_seed", "Trainer", "language_model_loss",
]
