"""Data that ships with llmcore or is generated in code: nothing is ever downloaded."""

from .dedup import exact_dedup, lsh_candidate_pairs, minhash_signature, near_duplicate_pairs, normalize_text
from .glm_infilling import BlankInfillingExample, blank_infilling
from .toy import ToySeq2SeqTask, sequence_accuracy

__all__ = ["ToySeq2SeqTask", "sequence_accuracy", "BlankInfillingExample", "blank_infilling",
           "normalize_text", "exact_dedup", "minhash_signature", "lsh_candidate_pairs", "near_duplicate_pairs"]
