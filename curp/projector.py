"""CURP stage 2 pieces: the `<USR_EMB>` prompt, the MLP projector and the soft-token insertion (spec 2.3, 2.4).

A user is the sequence of their first ``his_len`` history embeddings (zero vectors of the encoder's width
when fewer), each quantized by the frozen codebook and projected to the LLM's hidden size; vector j
replaces the input embedding at the j-th `<USR_EMB>` placeholder of the prompt (the sequence length does
not change). Training and inference build the prompt and the user vectors with the same functions, and
inference reads ``his_len`` from the projector checkpoint, so the two cannot disagree.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from curp.codebook import ProductQuantizer

PAD_TOKEN, USER_TOKEN = "<PAD>", "<USR_EMB>"

PROMPT = ("you are a helpful assistant good at writing response based on a question and user prototype.\n"
          "The user prototype are {placeholders}.\nThe question is {question}\nDirectly output your answer.")


class MLPProjector(nn.Module):
    """Linear(encoder width -> hidden) -> ReLU -> Linear(hidden -> LLM hidden size), per history vector."""

    def __init__(self, input_dim: int, hidden_dim: int, output_dim: int):
        super().__init__()
        self.input_dim, self.hidden_dim, self.output_dim = input_dim, hidden_dim, output_dim
        self.layers = nn.Sequential(nn.Linear(input_dim, hidden_dim), nn.ReLU(), nn.Linear(hidden_dim, output_dim))

    def forward(self, vectors: torch.Tensor) -> torch.Tensor:
        return self.layers(vectors)

    def dims(self) -> dict:
        return {"input_dim": self.input_dim, "hidden_dim": self.hidden_dim, "output_dim": self.output_dim}


def add_curp_tokens(model, tokenizer) -> tuple[int, int]:
    """Add `<PAD>` and `<USR_EMB>` (embeddings resized by lm.add_special_tokens) and give their new rows the
    mean of the old rows: deterministic, so inference rebuilds exactly the model the projector was trained on."""
    from lm import add_special_tokens

    before = model.get_input_embeddings().num_embeddings
    pad_id, user_id = add_special_tokens(model, tokenizer, [PAD_TOKEN, USER_TOKEN])
    with torch.no_grad():
        for matrix in {id(m): m for m in (model.get_input_embeddings(), model.get_output_embeddings())
                       if m is not None}.values():
            new = [i for i in (pad_id, user_id) if i >= before]
            if new:
                matrix.weight[new] = matrix.weight[:before].mean(0)
    return pad_id, user_id


def prompt_text(question: str, his_len: int) -> str:
    return PROMPT.format(placeholders=" ".join([USER_TOKEN] * his_len), question=question)


@dataclass
class PromptSettings:
    his_len: int
    max_question_tokens: int
    chat: bool


def prompt_ids(tokenizer, question: str, settings: PromptSettings) -> list[int]:
    """Token ids of the prompt as the model reads it; the question is cut to max_question_tokens first, so
    the placeholders before it always survive."""
    from lm.prompting import render

    cut = tokenizer(question, add_special_tokens=False)["input_ids"][:settings.max_question_tokens]
    text = render(tokenizer, prompt_text(tokenizer.decode(cut), settings.his_len), settings.chat)
    # A rendered chat template already holds every special token the model expects.
    return tokenizer(text, add_special_tokens=not settings.chat)["input_ids"]


def training_ids(tokenizer, question: str, answer: str, settings: PromptSettings,
                 max_answer_tokens: int) -> tuple[list[int], list[int]]:
    """(input ids, labels): the prompt is -100 (no loss), the answer and the end-of-sequence token are learned."""
    prompt = prompt_ids(tokenizer, question, settings)
    answer_ids = tokenizer(answer, add_special_tokens=False)["input_ids"][:max_answer_tokens]
    answer_ids = answer_ids + [tokenizer.eos_token_id]
    return prompt + answer_ids, [-100] * len(prompt) + answer_ids


def user_vectors(quantizer: ProductQuantizer, history: torch.Tensor, his_len: int) -> torch.Tensor:
    """[his_len, D] quantized vectors of the first his_len history embeddings (zero rows of width D pad)."""
    rows = torch.zeros(his_len, quantizer.embedding_dim)
    taken = history[:his_len]
    rows[:len(taken)] = taken
    with torch.no_grad():
        return quantizer(rows)[0]


def insert_user_embeddings(embeddings: torch.Tensor, input_ids: torch.Tensor, user_id: int,
                           projected: torch.Tensor) -> torch.Tensor:
    """``embeddings`` [B, T, H] with the j-th `<USR_EMB>` of row b replaced by ``projected[b, j]`` [B, L, H]."""
    placeholders = input_ids == user_id
    counts = placeholders.sum(1)
    if not bool((counts == projected.shape[1]).all()):
        raise ValueError(f"every prompt needs exactly {projected.shape[1]} {USER_TOKEN} tokens, got {counts.tolist()}")
    # masked_scatter fills the masked positions in row-major order: row b's j-th placeholder gets projected[b, j].
    return embeddings.masked_scatter(placeholders.unsqueeze(-1), projected.to(embeddings.dtype))
