"""The worked example of docs/AUTHORING.md runs as written: a newcomer who copies it gets a working exercise."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from torch import nn

from grader.checks import spec
from grader.checks.framework import CheckFailure

AUTHORING = Path(__file__).resolve().parents[1] / "docs" / "AUTHORING.md"


class LearnerRMSNorm(nn.Module):
    def __init__(self, d_model, eps=1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(d_model))
        self.eps = eps

    def forward(self, x):
        h = x.float() if x.dtype in (torch.float16, torch.bfloat16) else x
        return (self.weight * (h / h.pow(2).mean(-1, keepdim=True).add(self.eps).sqrt())).to(x.dtype)


class CentredRMSNorm(LearnerRMSNorm):
    def forward(self, x):
        return super().forward(x - x.mean(-1, keepdim=True))


def test_the_worked_example_declares_a_working_exercise(monkeypatch: pytest.MonkeyPatch) -> None:
    # The example registers "rms_norm", the id chapter 5's real exercise already holds: run it on a copy without it.
    registry = {exercise_id: exercise for exercise_id, exercise in spec.REGISTRY.items() if exercise_id != "rms_norm"}
    monkeypatch.setattr(spec, "REGISTRY", registry)
    code = re.search(r"```python\n(.*?)```", AUTHORING.read_text(encoding="utf-8"), re.S).group(1)
    for module in ("cases", "framework", "spec"):
        code = code.replace(f"from ..{module} import", f"from grader.checks.{module} import")
    namespace: dict = {}
    exec(compile(code, str(AUTHORING), "exec"), namespace)
    assert "rms_norm" in spec.REGISTRY
    namespace["check_rms_norm"](LearnerRMSNorm)
    namespace["check_rms_norm"](LearnerRMSNorm, hidden=True)
    namespace["RMS_NORM"].self_test()
    with pytest.raises(CheckFailure) as info:
        namespace["check_rms_norm"](CentredRMSNorm)
    assert info.value.mistake_id == "mean_subtracted"
    with pytest.raises(CheckFailure) as info:
        namespace["check_rms_norm"](namespace["RMS_NORM"].delegation)
    assert info.value.mistake_id == "delegation"
