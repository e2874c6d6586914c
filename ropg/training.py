"""Fine-tune a mean-pooled dense retriever from LLM feedback (ROPG-KD or ROPG-RL, spec lamp.md 8.2-8.6).

Shared by ``python -m ropg.train_kd`` and ``python -m ropg.train_rl``; runs single-process or under
``torchrun --nproc_per_node N`` (DDP through torch.distributed: gloo on CPU, nccl on GPU; each rank draws
its own questions through a DistributedSampler, only rank 0 logs and writes). Checkpoints are HF encoder
folders ``<checkpoint_dir>/<name>/checkpoint/step-N`` with a ``latest`` link, loadable by
``python -m lamp_rag.rank_profiles --ranker contriever --contriever_checkpoint DIR``; a rerun resumes from
``latest`` (weights, optimizer, scheduler and step).
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping, Sequence

from data.cli import add_task_argument, writable_dir
from data.errors import InputError, input_error
from data.records import Example
from data.tasks import TaskSpec
from lm.encoder import mean_pool, resolve_encoder

log = logging.getLogger("lampkit.ropg")

CONTRIEVER = "facebook/contriever"
STATE_FILE = "optimizer.pth.tar"


def make_parser(prog: str, description: str, with_temperature: bool) -> argparse.ArgumentParser:
    """The reference's flags and defaults (spec 8.6); --temperature only where the objective uses it (KD)."""
    parser = argparse.ArgumentParser(prog=prog, description=description,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train_data", required=True, type=Path,
                        help="questions file (LaMP questions, merge_with_rank output or LongLaMP records)")
    parser.add_argument("--train_outputs", type=Path, default=None,
                        help="gold outputs {task, golds} when the questions file has none")
    parser.add_argument("--do_train", action="store_true", help="train (required: there is no other mode)")
    parser.add_argument("--scores_path", required=True, type=Path,
                        help="merged feedback file of ropg.profile_item_utilization_scorer / ropg.merge_scores")
    parser.add_argument("--name", required=True, help="run name: checkpoints go to <checkpoint_dir>/<name>")
    parser.add_argument("--checkpoint_dir", type=writable_dir, default=Path("runs/ropg/checkpoints"),
                        help="(default: %(default)s)")
    add_task_argument(parser)
    parser.add_argument("--ctx_size", type=int, default=20, help="candidate items per question (default: 20)")
    if with_temperature:
        parser.add_argument("--temperature", type=float, default=1.0, help="KD softmax temperature (default: 1.0)")
    parser.add_argument("--model_path", default="auto",
                        help=f"encoder to fine-tune: 'auto' ({CONTRIEVER} when in the local HF cache, else the "
                             "packaged all-MiniLM-L6-v2), 'default' (packaged MiniLM), an HF folder or cached hub id")
    parser.add_argument("--no_date", action="store_true",
                        help="documents without ' date: <date>' (the reference always appends it)")
    parser.add_argument("--per_gpu_batch_size", type=int, default=1, help="questions per step and process")
    parser.add_argument("--lr", type=float, default=1e-5)
    parser.add_argument("--optim", choices=("adam", "adamw"), default="adam")
    parser.add_argument("--weight_decay", type=float, default=0.0, help="adamw only")
    parser.add_argument("--scheduler", choices=("fixed", "linear"), default="fixed",
                        help="fixed: constant lr; linear: warmup then linear decay to 0")
    parser.add_argument("--warmup_steps", type=int, default=1000)
    parser.add_argument("--scheduler_steps", type=int, default=None, help="linear decay length (default: total_steps)")
    parser.add_argument("--total_steps", type=int, default=1000)
    parser.add_argument("--accumulation_steps", type=int, default=1)
    parser.add_argument("--clip", type=float, default=1.0, help="gradient norm clipping")
    parser.add_argument("--save_freq", type=int, default=5000, help="checkpoint every N steps (and at the end)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max_query_length", type=int, default=512)
    parser.add_argument("--max_doc_length", type=int, default=512)
    parser.add_argument("--device", default=None, help="cpu, cuda (default: cuda when present)")
    return parser


# ----------------------------------------------------------------------------- data

@dataclass(frozen=True)
class Question:
    query: str
    documents: tuple[str, ...]      # its candidates, first = the ranker's top-1 (the RL baseline)
    gold: tuple[float, ...]          # feedback value per candidate, higher is better


def training_questions(spec: TaskSpec, examples: Sequence[Example], scores: Mapping[str, Mapping], ctx_size: int,
                       use_date: bool, scores_path=None) -> list[Question]:
    """Per scored question, its first ``ctx_size`` candidates and their feedback values.

    Candidates are the items scored for the question, in the scorer's ``rank`` order (the file's profile
    order for reference files without ranks). Questions without any scored item are left out (the scorer may
    have seen a part of the file); a question with fewer than min(ctx_size, profile size) is an error, as in
    the reference (profile_size must be at least ctx_size).
    """
    from ropg.feedback import pair_key
    from ropg.losses import feedback_values

    questions = []
    for example in examples:
        scored = [(scores[key], item) for item in example.profile
                  if (key := pair_key(example.id, item["id"])) in scores]
        if not scored:
            continue
        if example.target is None:
            raise input_error(None, "no gold output", record=example.id, field="output")
        if all("rank" in value for value, _ in scored):
            scored.sort(key=lambda pair: pair[0]["rank"])
        needed = min(ctx_size, len(example.profile))
        if len(scored) < needed:
            raise input_error(scores_path, f"only {len(scored)} of the question's first {needed} candidates are "
                                           f"scored; score with --profile_size >= --ctx_size", record=example.id)
        scored = scored[:ctx_size]
        questions.append(Question(spec.query(example.input), tuple(spec.document(item, use_date) for _, item in scored),
                                  tuple(feedback_values(spec, [value for value, _ in scored], example.target,
                                                        scores_path, example.id))))
    return questions


def collate(questions: Sequence[Question], tokenizer, max_query_length: int, max_doc_length: int):
    """One padded batch of the queries followed by every real document, plus [B, C] gold and mask tensors."""
    import torch

    from lm.batching import pad_batch
    from lm.prompting import tokenize

    queries = tokenize(tokenizer, [q.query for q in questions], truncation=True, max_length=max_query_length)
    documents = tokenize(tokenizer, [d for q in questions for d in q.documents], truncation=True,
                         max_length=max_doc_length)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    input_ids, attention_mask = pad_batch(queries + documents, pad_id, "right")
    width = max(len(q.documents) for q in questions)
    gold = torch.zeros(len(questions), width)
    mask = torch.zeros(len(questions), width, dtype=torch.bool)
    for row, question in enumerate(questions):
        gold[row, :len(question.gold)] = torch.tensor(question.gold)
        mask[row, :len(question.documents)] = True
    return input_ids, attention_mask, gold, mask


def batch_scores(model, input_ids, attention_mask, mask):
    """[B, C] dot products of each query with its documents (unnormalised), -inf-free: padded slots are 0.

    Queries and documents go through ONE forward call, so DDP sees one forward per backward.
    """
    import torch

    embeddings = mean_pool(model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state,
                           attention_mask)
    batch = mask.shape[0]
    queries, documents = embeddings[:batch], embeddings[batch:]
    slots = torch.zeros(*mask.shape, embeddings.shape[-1], dtype=embeddings.dtype, device=embeddings.device)
    slots[mask] = documents
    return torch.einsum("bcd,bd->bc", slots, queries)


# ----------------------------------------------------------------------------- model and checkpoints

def save_checkpoint(folder: Path, encoder, max_length: int, state: dict) -> Path:
    """An HF encoder folder (weights, tokenizer, max_seq_length for lm.load_encoder) plus the training state,
    written beside and renamed into place, then pointed to by ``latest``."""
    import torch

    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(staging, ignore_errors=True)
    encoder.model.save_pretrained(staging)
    encoder.tokenizer.save_pretrained(staging)
    (staging / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": max_length}))
    torch.save(state, staging / STATE_FILE)
    shutil.rmtree(folder, ignore_errors=True)
    os.replace(staging, folder)
    latest = folder.parent / "latest"
    link = folder.parent / "latest.tmp"
    if link.is_symlink() or link.exists():
        link.unlink()
    link.symlink_to(folder.name)
    os.replace(link, latest)
    return folder


# ----------------------------------------------------------------------------- the loop

def train(args, objective: Callable, objective_name: str) -> Path | None:
    """Train until --total_steps; returns the last checkpoint folder (on rank 0, None elsewhere).

    ``objective(scores, gold, mask, generator) -> loss`` (ropg.losses).
    """
    import torch
    from torch.utils.data import DataLoader, DistributedSampler, RandomSampler
    from tqdm.auto import tqdm

    from data.io import read_json
    from data.loaders import load_examples
    from data.tasks import get_task
    from lm import load_encoder
    from runtime.distributed import processes
    from runtime.run_folder import trainable_parameters, write_training_info

    spec = get_task(args.task)
    examples = load_examples(args.train_data, args.train_outputs, task=spec.name)
    scores = read_json(args.scores_path)
    if not isinstance(scores, dict):
        raise input_error(args.scores_path, 'expected {"<question_id>-<item_id>": {<metric>: value, ...}}')
    questions = training_questions(spec, examples, scores, args.ctx_size, not args.no_date, args.scores_path)
    if not questions:
        raise input_error(args.scores_path, f"no question of {args.train_data} has a scored item")

    dist = processes(args.device)
    checkpoints = args.checkpoint_dir / args.name / "checkpoint"
    latest = checkpoints / "latest"
    resume = latest.is_dir() and (latest / STATE_FILE).is_file()
    source = str(latest.resolve()) if resume else resolve_encoder(args.model_path, CONTRIEVER)
    encoder = load_encoder(source, device=dist.device)
    max_length = min(filter(None, (args.max_doc_length, encoder.max_length)))
    model = encoder.model.train()
    if dist.is_main_process:
        log.info("%s: %d questions with feedback, ctx_size %d, encoder %s%s, %d process(es)", objective_name,
                 len(questions), args.ctx_size, source, " (resumed)" if resume else "", dist.world_size)

    optimizer_class = torch.optim.AdamW if args.optim == "adamw" else torch.optim.Adam
    optimizer = optimizer_class(model.parameters(), lr=args.lr,
                                **({"weight_decay": args.weight_decay} if args.optim == "adamw" else {}))
    from transformers import get_constant_schedule, get_linear_schedule_with_warmup

    scheduler = (get_linear_schedule_with_warmup(optimizer, args.warmup_steps, args.scheduler_steps or args.total_steps)
                 if args.scheduler == "linear" else get_constant_schedule(optimizer))
    step = 0
    if resume:
        state = torch.load(latest / STATE_FILE, map_location="cpu", weights_only=False)
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        step = state["step"]
    # find_unused_parameters: a checkpoint's pooler layer (BertModel's) is loaded but mean pooling skips it.
    model = dist.wrap(model, find_unused_parameters=True)

    torch.manual_seed(args.seed)
    # Sampling in RL differs per rank (and per resumed step) so processes do not draw the same items.
    sampling = torch.Generator().manual_seed(args.seed * 1000 + dist.rank + step * 7919)
    if dist.world_size > 1:
        sampler = DistributedSampler(questions, num_replicas=dist.world_size, rank=dist.rank, shuffle=True,
                                     seed=args.seed)
    else:
        sampler = RandomSampler(questions, generator=torch.Generator().manual_seed(args.seed))
    loader = DataLoader(questions, batch_size=args.per_gpu_batch_size, sampler=sampler,
                        collate_fn=lambda batch: collate(batch, encoder.tokenizer, args.max_query_length, max_length))

    last = latest.resolve() if resume else None
    epoch, micro_steps, running = 0, 0, []
    with tqdm(total=args.total_steps, initial=step, desc=objective_name, unit="step",
              disable=not dist.is_main_process) as bar:
        while step < args.total_steps:
            if isinstance(sampler, DistributedSampler):
                sampler.set_epoch(epoch)
            for input_ids, attention_mask, gold, mask in loader:
                item_scores = batch_scores(model, input_ids.to(dist.device), attention_mask.to(dist.device),
                                       mask.to(dist.device))
                loss = objective(item_scores, gold.to(dist.device), mask.to(dist.device), sampling)
                (loss / args.accumulation_steps).backward()
                running.append(loss.item())
                micro_steps += 1
                if micro_steps % args.accumulation_steps:
                    continue
                torch.nn.utils.clip_grad_norm_(model.parameters(), args.clip)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad()
                step += 1
                bar.update(1)
                bar.set_postfix(loss=f"{sum(running[-50:]) / len(running[-50:]):.4f}")
                if step % 50 == 0 and dist.is_main_process:
                    log.info("step %d: mean loss of the last 50 batches %.4f", step, sum(running[-50:]) / 50)
                if step % args.save_freq == 0 or step >= args.total_steps:
                    if dist.is_main_process:
                        last = save_checkpoint(checkpoints / f"step-{step}", encoder, max_length,
                                               {"step": step, "optimizer": optimizer.state_dict(),
                                                "scheduler": scheduler.state_dict()})
                        log.info("checkpoint: %s", last)
                    dist.barrier()
                if step >= args.total_steps:
                    break
            epoch += 1
    if dist.is_main_process:
        write_training_info(args.checkpoint_dir / args.name, trainable_parameters(encoder.model))
    return last if dist.is_main_process else None


def main(argv: Sequence[str] | None, objective_name: str, description: str) -> int:
    """Entry point of train_kd / train_rl."""
    from functools import partial

    from data.cli import parse_args
    from runtime.distributed import is_main_process, setup_logging

    is_kd = objective_name == "kd"
    args = parse_args(make_parser(f"python -m ropg.train_{objective_name}", description, with_temperature=is_kd),
                      argv)
    if not args.do_train:
        raise InputError("nothing to do: give --do_train (train_kd/train_rl only train; rank with "
                         "lamp_rag.rank_profiles --contriever_checkpoint)")
    for flag in ("ctx_size", "per_gpu_batch_size", "total_steps", "accumulation_steps", "save_freq"):
        if getattr(args, flag) < 1:
            raise InputError(f"--{flag} must be at least 1, got {getattr(args, flag)}")
    if is_kd and args.temperature <= 0:
        raise InputError(f"--temperature must be positive, got {args.temperature}")
    writer = is_main_process()
    run_dir = args.checkpoint_dir / args.name
    setup_logging(run_dir)
    from runtime.run_folder import write_run_config

    objective = (partial(_kd_objective, temperature=args.temperature) if is_kd else _rl_objective)
    last = train(args, objective, f"ropg-{objective_name}")
    if writer:
        write_run_config(run_dir, args, f"ropg.train_{objective_name}", checkpoint=str(last))
        print(f"checkpoint: {last}")
        print(f"rank with: python -m lamp_rag.rank_profiles --ranker contriever --contriever_checkpoint {last}")
    return 0


def _kd_objective(scores, gold, mask, generator, temperature):
    from ropg.losses import kd_loss

    return kd_loss(scores, gold, mask, temperature)


def _rl_objective(scores, gold, mask, generator):
    from ropg.losses import rl_loss

    return rl_loss(scores, gold, mask, generator)
