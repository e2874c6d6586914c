"""Stage 2: train the MLP projector with the LLM and the codebook frozen (spec curp_cope_oppu.md 2.3).

Each example: its first his_len history embeddings, quantized by the stage-1 codebook and projected, fill
the his_len `<USR_EMB>` placeholders of the prompt; causal-LM loss on the answer only. Only the projector
has gradients. projector.pt keeps the projector, its dimensions, his_len and the prompt settings that
inference must reuse; checkpoint.pt (optimizer, step, RNG) lets a stopped run resume.
"""
from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from curp.optim import OptimizerOptions, epoch_order, load_result
from curp.projector import (MLPProjector, PromptSettings, add_curp_tokens, insert_user_embeddings, training_ids,
                            user_vectors)
from data.cli import option
from data.fingerprint import fingerprint
from runtime.distributed import load_state, save_state

log = logging.getLogger("lampkit.curp")

CHECKPOINT_FILE = "checkpoint.pt"
PROJECTOR_FILE = "projector.pt"


@dataclass
class ProjectorOptions:
    """The projector and its data (defaults: CURP_code's step2.sh); AdamW and length: curp.optim.OptimizerOptions."""

    his_len: int = option(8, "history items per user = `<USR_EMB>` soft tokens in the prompt", minimum=1)
    hidden_dim: int | None = option(None, "projector hidden width (default: the LLM's hidden size, as CURP_code)",
                                    minimum=1)
    max_question_tokens: int = option(256, "cut each question to this many tokens (the placeholders come first)",
                                      minimum=1)
    max_answer_tokens: int = option(128, "cut each training answer to this many tokens", minimum=1)
    batch_size: int = option(4, "examples per optimizer step (over all processes)", minimum=1)


# CURP_code's step2.sh where it differs from step 1's AdamW settings.
OPTIMIZER_DEFAULTS = {"learning_rate": 1e-4, "num_epochs": 1, "save_steps": 50}


@dataclass
class Batch:
    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    labels: torch.Tensor
    users: torch.Tensor          # [B, his_len, D] quantized history vectors


def make_batch(rows: list[tuple[list[int], list[int]]], users: torch.Tensor, pad_id: int) -> Batch:
    from lm.batching import pad_batch

    input_ids, mask = pad_batch([ids for ids, _ in rows], pad_id, "right")
    labels, _ = pad_batch([labels for _, labels in rows], -100, "right")
    return Batch(input_ids, mask, labels, users)


def projected_embeddings(model, projector, batch_ids: torch.Tensor, users: torch.Tensor, user_id: int):
    """The LLM's input embeddings of ``batch_ids`` with the projected user vectors at the placeholders."""
    embeddings = model.get_input_embeddings()(batch_ids)
    return insert_user_embeddings(embeddings, batch_ids, user_id, projector(users.to(embeddings.device)))


def train_projector(handle, quantizer, embeddings, examples, options: ProjectorOptions, optim: OptimizerOptions,
                    output_dir: Path, accelerator, chat: bool, extra: dict) -> MLPProjector:
    """Train (or resume) the projector; writes projector.pt and checkpoint.pt into ``output_dir``."""
    model, tokenizer = handle.model, handle.tokenizer
    pad_id, user_id = add_curp_tokens(model, tokenizer)
    model.requires_grad_(False).eval()
    settings = PromptSettings(options.his_len, options.max_question_tokens, chat)
    rows = [training_ids(tokenizer, example.question, example.answer, settings, options.max_answer_tokens)
            for example in examples]
    users = torch.stack([user_vectors(quantizer, embeddings.history(r), options.his_len) for r in range(len(examples))])

    hidden = model.get_input_embeddings().embedding_dim
    torch.manual_seed(optim.seed)
    projector = MLPProjector(embeddings.dim, options.hidden_dim or hidden, hidden)
    optimizer = optim.adamw(projector.parameters())
    key = fingerprint({"options": asdict(options), "optim": optim.settings(), "model": handle.weights_id,
                       "chat": chat, "users": fingerprint(users.numpy().tobytes()), "rows": rows})
    checkpoint_path = output_dir / CHECKPOINT_FILE
    step = 0
    state = load_state(checkpoint_path, key)
    if state is not None:
        projector.load_state_dict(state["projector"])
        optimizer.load_state_dict(state["optimizer"])
        step = state["step"]
        torch.set_rng_state(state["rng"])
    # The prepared (DDP-wrapped when distributed) projector is the one called, so gradients sync.
    wrapped, optimizer = accelerator.prepare(projector, optimizer)
    model.to(accelerator.device)
    steps_per_epoch = math.ceil(len(examples) / options.batch_size)
    total_steps = steps_per_epoch * optim.num_epochs

    def checkpoint() -> None:
        if accelerator.is_main_process:
            save_state(checkpoint_path, {"key": key, "projector": projector.state_dict(), "step": step,
                                         "optimizer": optimizer.state_dict(), "rng": torch.get_rng_state()})

    with tqdm(total=total_steps, initial=step, desc="stage 2", unit="step",
              disable=not accelerator.is_main_process) as bar:
        while step < total_steps:
            epoch, position = divmod(step, steps_per_epoch)
            order = epoch_order(len(examples), optim.seed, epoch)
            chosen = order[position * options.batch_size:(position + 1) * options.batch_size]
            # Each process takes its share; one left without any repeats an example, since every DDP rank must step.
            share = chosen[accelerator.process_index::accelerator.num_processes].tolist() or chosen[:1].tolist()
            batch = make_batch([rows[i] for i in share], users[share], pad_id)
            device = accelerator.device
            inputs = projected_embeddings(model, wrapped, batch.input_ids.to(device), batch.users, user_id)
            loss = model(inputs_embeds=inputs, attention_mask=batch.attention_mask.to(device),
                         labels=batch.labels.to(device)).loss
            optim.step(accelerator, optimizer, loss, projector.parameters())
            step += 1
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.4f}")
            if step % optim.save_steps == 0 or step == total_steps:
                checkpoint()
            if step % steps_per_epoch == 0:
                log.info("epoch %d: last loss %.4f", step // steps_per_epoch, loss.item())
    if accelerator.is_main_process:
        save_state(output_dir / PROJECTOR_FILE, {"projector": projector.state_dict(), **projector.dims(),
                                                  **asdict(settings), "steps": step, "key": key, **extra})
    return projector


def load_projector(path: Path) -> tuple[MLPProjector, PromptSettings, dict]:
    """(projector, prompt settings incl. his_len, the whole checkpoint) of a stage-2 folder or projector.pt."""
    state = load_result(path, PROJECTOR_FILE, "curp.train_projector")
    projector = MLPProjector(state["input_dim"], state["hidden_dim"], state["output_dim"])
    projector.load_state_dict(state["projector"])
    settings = PromptSettings(state["his_len"], state["max_question_tokens"], state["chat"])
    return projector.requires_grad_(False).eval(), settings, state
