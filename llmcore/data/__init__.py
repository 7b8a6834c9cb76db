"""Data that ships with llmcore or is generated in code: nothing is ever downloaded."""

from .glm_infilling import BlankInfillingExample, blank_infilling
from .toy import ToySeq2SeqTask, sequence_accuracy

__all__ = ["ToySeq2SeqTask", "sequence_accuracy", "BlankInfillingExample", "blank_infilling"]
