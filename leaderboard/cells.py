"""The list of method commands of the leaderboard: every method of lampkit on the same dev users of one task.

Each :class:`leaderboard.cell.Cell` is the exact command lines a user would type (the entry points of the
methods, with their own flags); nothing here re-implements a method. A stage several methods need (the TAM
under every OPPU variant, ROPG's feedback under KD and RL, RSPG's arms under Pre and Post) has the same argv
in each cell, so the runner runs it once.

Which methods apply to a task comes from registry facts (:func:`skipped_methods` says why one does not), and
the sizes from ``quick`` (:class:`Sizes`). Budget (issue 15): on the embedded sample (24 dev users) with the
packaged SmolLM2-135M on 2 CPU cores, every cell of :data:`DEFAULT_TASKS` within an hour, the ``in_quick`` ones
within 15 minutes. Measured on LaMP_4 at quick sizes with the machine shared (load average 5-7 on the 2 cores):
every method 53.5 min of step wall time, 32 of them CoPe's five rows (pseudo-negatives, their scoring and
per-user DPO for 24 users); the ``in_quick`` cells 13.6 min.

Every run folder is under ``out_dir/<method slug>/`` (``out_dir`` is the task's folder, e.g.
``runs/leaderboard/LaMP_4``); the dev files of ``TaskData`` already hold exactly the users to score, so no
command cuts them again, and every predictions file covers the same ids.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from data.tasks import TaskSpec, get_task
from leaderboard.cell import Cell, TaskData

# The tasks `python -m leaderboard` runs without --task: the one whose sample run fits the hour with every method.
DEFAULT_TASKS = ("LaMP_4",)

NUM_RETRIEVED = 3          # profile items in every RAG prompt (and the study's k)
LOGIT_ADJUST_BETA = "0.1"  # bias strength of the logit-adjustment row (beta 0 is the no-profile row's analogue)
CONTRASTIVE_ALPHA = "0.1"  # CoPe's contrastive decoding weight (the paper's default)
RSPG_ARMS = ("no_profile", "bm25_1", "recency_1")   # retrievers the RSPG selector picks among


@dataclass(frozen=True)
class Sizes:
    """What `quick` shrinks: training data, steps and epochs (the scored dev users never change)."""
    train_users: int | None      # first N train questions with LLM feedback (ROPG, RSPG) / TAM users (None: all)
    ropg_steps: int
    rspg_steps: int
    cope_history: int            # each target user's last N history items for OPPU, negatives and DPO
    cope_words: int              # history fields and query inputs cut to N words
    cope_negatives: int          # pseudo-negatives per history item
    curp_epochs: int             # stage-1 codebook epochs
    curp_codebook: int           # code words per sub-space (needs at least that many training items)
    curp_train_items: int        # history items embedded per training user


# CoPe's per-user stages cost the most (sample, 24 dev users, load average ~6: pseudo-negatives 471 s, their
# scoring 256 s at 4 items x 2 samples), so the full run keeps the quick history and samples to stay in the hour.
FULL = Sizes(train_users=None, ropg_steps=40, rspg_steps=40, cope_history=4, cope_words=128, cope_negatives=2,
             curp_epochs=10, curp_codebook=64, curp_train_items=16)
QUICK = Sizes(train_users=8, ropg_steps=10, rspg_steps=10, cope_history=4, cope_words=64, cope_negatives=2,
              curp_epochs=3, curp_codebook=32, curp_train_items=8)


# ----------------------------------------------------------------------------- applicability (registry facts)

def _needs_generation(spec: TaskSpec) -> str | None:
    # logit_adjust steers free text token by token; it refuses label tasks itself (logit_adjust.experiment)
    return None if spec.kind == "generation" else f"logit adjustment needs free text; {spec.name} is {spec.kind}"


def _needs_cope_prompt(spec: TaskSpec) -> str | None:
    return None if "system" in spec.text_templates else f"CoPe has no system prompt for {spec.name}"


def _needs_study_prompts(spec: TaskSpec) -> str | None:
    from lamp_rag.study import ABLATION_TEMPLATES

    missing = [name for name in (ABLATION_TEMPLATES["both"], ABLATION_TEMPLATES["only_output"])
               if name not in spec.templates]
    return None if not missing else f"the profile study has no prompts for {spec.name}"


def _needs_dates(spec: TaskSpec) -> str | None:
    return None if spec.date_field else f"{spec.name} profile items carry no date: recency has nothing to order by"


APPLIES: dict[str, Callable[[TaskSpec], str | None]] = {
    "RAG recency": _needs_dates,
    "Profile study: outputs only": _needs_study_prompts,
    "Profile study: other users' items": _needs_study_prompts,
    "TAM": _needs_cope_prompt, "OPPU": _needs_cope_prompt, "OPPU+CD": _needs_cope_prompt,
    "OPPU+DPO": _needs_cope_prompt, "OPPU+DPO+CD": _needs_cope_prompt,
    "logit adjust": _needs_generation,
}


def skipped_methods(task: str) -> list[tuple[str, str]]:
    """(method, reason) of every method that does not apply to ``task``: the rows the leaderboard leaves out."""
    spec = get_task(task)
    return [(method, reason) for method, check in APPLIES.items() if (reason := check(spec))]


# ----------------------------------------------------------------------------- the cells

def method_cells(data: TaskData, model: str, out_dir: Path, quick: bool) -> list[Cell]:
    """Every applicable method on ``data``'s dev users, as commands writing under ``out_dir``."""
    spec = get_task(data.task)
    sizes = QUICK if quick else FULL
    out_dir = Path(out_dir)
    builders = (_rag_cells, _study_cells, _ropg_cells, _rspg_cells, _cope_cells, _curp_cells, _logit_adjust_cells)
    cells = [cell for build in builders for cell in build(spec, data, model, out_dir, sizes)]
    skipped = {method for method, _ in skipped_methods(spec.name)}
    return [cell for cell in cells if cell.method not in skipped]


def _opt(flag: str, value) -> tuple[str, ...]:
    return () if value is None else (flag, str(value))


def _dev_data(data: TaskData, questions_flag: str, outputs_flag: str) -> tuple[str, ...]:
    return (questions_flag, str(data.dev_questions), *_opt(outputs_flag, data.dev_outputs))


def _train_data(data: TaskData, questions_flag: str, outputs_flag: str) -> tuple[str, ...]:
    return (questions_flag, str(data.train_questions), *_opt(outputs_flag, data.train_outputs))


def _date_flag(spec: TaskSpec) -> tuple[str, ...]:
    # ROPG's encoder learns documents with their date (the reference's); the same documents at ranking time
    return ("--use_date",) if spec.date_field else ()


def _rag_cells(spec, data, model, out, sizes):
    def evaluate(slug: str, *retrieval: str) -> tuple[str, ...]:
        return ("python", "-m", "lamp_rag.evaluate_llm", "--task", spec.name, "--model_addr", model,
                *_dev_data(data, "--validation_data", "--validation_outputs"),
                "--output_dir", str(out / slug), *retrieval)

    def profile(retriever: str) -> tuple[str, ...]:
        return ("--use_profile", "--retriever", retriever, "--num_retrieved", str(NUM_RETRIEVED))

    rows = [("no profile", "no_profile", (), True),
            ("RAG BM25", "rag_bm25", profile("bm25"), False),
            # the packaged MiniLM (lamp_rag's default dense encoder; facebook/contriever when asked for by path)
            ("RAG dense", "rag_dense", profile("contriever"), False),
            ("RAG recency", "rag_recency", profile("recency"), False)]
    return [Cell(method, spec.name, (evaluate(slug, *flags),), out / slug / "predictions.json",
                 (out / slug,), baseline=baseline) for method, slug, flags, baseline in rows]


def _study_cells(spec, data, model, out, sizes):
    """The two settings behind the study's findings (spec profile_study A1): the user's own outputs carry the
    personalization (only_output), and other users' items (Full_Random) show what is personal at all."""
    from lamp_rag.study import StudySettings, result_dir

    if data.dev_questions.name != "dev_questions.json":     # the study reads <folder>/dev_{questions,outputs}.json
        return []
    rows = [("Profile study: outputs only", "study_outputs_only",
             StudySettings(retrieval_id="BM25", k=NUM_RETRIEVED, ablation="only_output"), True),
            ("Profile study: other users' items", "study_other_users",
             StudySettings(retrieval_id="Full_Random", k=NUM_RETRIEVED, ablation="both"), False)]
    cells = []
    for method, slug, settings, quick in rows:
        root = out / slug
        argv = ("python", "-m", "lamp_rag.profile_study", "--task_name", spec.name,
                "--raw_data_folder_path", str(data.dev_questions.parent), "--result_dir", str(root),
                "--model_id", model, "--no_do_train", "--do_eval",
                "--retrieval_id", settings.retrieval_id, "--retrieval_num", str(NUM_RETRIEVED),
                "--retrieval_ablation", settings.ablation,
                # greedy decoding of the registry length, as every other row (the study: 4 beams, 512 tokens)
                "--generation_num_beams", "1", "--output_max_length", str(spec.max_new_tokens), "--batch_size", "16")
        run = result_dir(root, model, settings, "user-based", spec.name)
        cells.append(Cell(method, spec.name, (argv,), run / "predictions.json", (root,), in_quick=quick))
    return cells


def _ropg_cells(spec, data, model, out, sizes):
    root = out / "ropg"
    feedback = root / "feedback"
    score = ("python", "-m", "ropg.profile_item_utilization_scorer", "--task", spec.name, "--model_name", model,
             *_train_data(data, "--train_data", "--train_outputs"), "--profile_size", str(NUM_RETRIEVED),
             "--output_dir", str(feedback), *_opt("--limit", sizes.train_users))
    merge = ("python", "-m", "ropg.merge_scores", "--output_dir", str(feedback),
             "--output", str(feedback / "merged.json"))
    cells = []
    for method, name in (("ROPG-KD", "kd"), ("ROPG-RL", "rl")):
        train = ("python", "-m", f"ropg.train_{name}", "--do_train", "--task", spec.name,
                 *_train_data(data, "--train_data", "--train_outputs"), "--scores_path", str(feedback / "merged.json"),
                 "--name", name, "--checkpoint_dir", str(root / "checkpoints"), "--ctx_size", str(NUM_RETRIEVED),
                 "--total_steps", str(sizes.ropg_steps), "--lr", "5e-5", "--max_query_length", "128",
                 "--max_doc_length", "128", *(() if spec.date_field else ("--no_date",)))
        # the trained encoder ranks each dev user's whole profile, its top items go into the prompt
        generate = ("python", "-m", "lamp_rag.evaluate_llm", "--task", spec.name, "--model_addr", model,
                    *_dev_data(data, "--validation_data", "--validation_outputs"),
                    "--output_dir", str(root / f"rag_{name}"), "--use_profile", "--retriever", "contriever",
                    "--retriever_model", str(root / "checkpoints" / name / "checkpoint" / "latest"),
                    "--num_retrieved", str(NUM_RETRIEVED), *_date_flag(spec))
        cells.append(Cell(method, spec.name, (score, merge, train, generate), root / f"rag_{name}" / "predictions.json",
                          (root / "checkpoints" / name, root / f"rag_{name}")))
    return cells


def _rspg_cells(spec, data, model, out, sizes):
    root = out / "rspg"
    metric = spec.metrics[0]
    steps = []
    for split in ("train", "dev"):
        limit = _opt("--limit", sizes.train_users) if split == "train" else ()
        files = (_train_data(data, "--data_addr", "--data_outputs") if split == "train"
                 else _dev_data(data, "--data_addr", "--data_outputs"))
        for arm in RSPG_ARMS:
            retriever, _, k = arm.rpartition("_")
            profile = () if arm == "no_profile" else ("--use_profile", "--retriever", retriever, "--num_retrieved", k)
            steps.append(("python", "-m", "rspg.retriever_utilization_scorer", "--task", spec.name,
                          "--model_name", model, *files, "--output_dir", str(root / split / arm), *profile, *limit))
        questions, outputs = ((data.train_questions, data.train_outputs) if split == "train"
                              else (data.dev_questions, data.dev_outputs))
        steps.append(("python", "-m", "rspg.create_data", "--retrivers_data_addr",
                      *(str(root / split / arm) for arm in RSPG_ARMS), "--metric", metric,
                      "--task_inputs_addr", str(questions),
                      # LongLaMP rows hold their golds: the questions file is its own outputs file
                      "--task_outputs_addr", str(outputs or questions),
                      "--output_dataset_addr", str(root / split / "selection.json"), *limit))
    cells = []
    for kind in ("Pre", "Post"):
        golds = data.dev_outputs or data.dev_questions
        train = ("python", "-m", "rspg.rspg", "--do_train", "--rspg_type", kind, "--task", spec.name, "--name", kind,
                 "--checkpoint_dir", str(root / "selector"), "--train_data", str(root / "train" / "selection.json"),
                 "--val_data", str(root / "dev" / "selection.json"), "--val_lamp_golds", str(golds),
                 "--encoder", "auto", "--total_steps", str(sizes.rspg_steps), "--learning_rate", "5e-5")
        run = root / "selector" / kind
        cells.append(Cell(f"RSPG-{kind}", spec.name, (*steps, train), run / "final_preds.json", (run,),
                          in_quick=False))
    return cells


def _cope_cells(spec, data, model, out, sizes):
    root = out / "cope"
    oppu = root / "data"
    # target users: every dev user of TaskData (first in file order); non-target users: the train split
    convert = ("python", "-m", "data.convert", "to-oppu", "--task", spec.name,
               *_dev_data(data, "--questions", "--outputs"), "--output_dir", str(oppu),
               "--num_users", "all", "--select", "first",
               "--others", str(data.train_questions), *_opt("--others_outputs", data.train_outputs))
    common = ("--task_name", spec.name, "--data_path", str(oppu), "--output_dir", str(root), "--model_name", model,
              "--max_history", str(sizes.cope_history), "--max_words", str(sizes.cope_words))

    def cope(module: str, *flags: str) -> tuple[str, ...]:
        return ("python", "-m", f"cope.{module}", *common, *flags)

    tam = cope("tam", *_opt("--num_others", sizes.train_users), "--batch_size", "8", "--max_epoch", "1",
               "--is_train", "--is_test")
    # a few history items need a larger step than the reference's 1e-4 for the adapter to change any output
    # (cope/README.md: at 1e-4, or 5e-4 for one step, OPPU's outputs equalled the TAM's)
    sft = cope("oppu_sft", "--batch_size", "2", "--max_epoch", "2", "--learning_rate", "2e-3", "--is_train")
    negatives = (cope("generate_pseudo_negatives", "--response_num", str(sizes.cope_negatives), "--temperature", "1.0"),
                 cope("compute_scores", "--std", "max"))
    # batch 8 over 4 history items was ONE optimizer step, which warmup runs at learning rate 0 (lm.train warns):
    # DPO left every adapter bit-identical to its SFT start; it takes SFT's batches, epochs and step size
    dpo = cope("oppu_sft_dpo", "--batch_size", "2", "--max_epoch", "2", "--learning_rate", "2e-3",
               "--dpo_beta", "0.01", "--negative_sampling_method", "pseudo", "--mode", "max", "--is_train")
    contrast = ("--is_cd", "--contrastive_alpha", CONTRASTIVE_ALPHA, "--repetition_penalty", "1.0")
    tam_dirs = (root / "TAM",)
    sft_dirs = (*tam_dirs, root / "adapters" / "OPPU_SFT")
    dpo_dirs = (*tam_dirs, root / "adapters" / "OPPU_SFT+DPO")    # DPO goes on training the user's SFT adapter
    rows = [("TAM", (convert, tam), tam_dirs),
            ("OPPU", (convert, tam, sft, cope("oppu_sft")), sft_dirs),
            ("OPPU+CD", (convert, tam, sft, cope("oppu_sft", *contrast)), sft_dirs),
            ("OPPU+DPO", (convert, tam, sft, *negatives, dpo, cope("oppu_sft_dpo")), dpo_dirs),
            ("OPPU+DPO+CD", (convert, tam, sft, *negatives, dpo, cope("oppu_sft_dpo", *contrast)), dpo_dirs)]
    # dict.fromkeys: the TAM's run folder is also its training folder, and counted once
    return [Cell(method, spec.name, steps, root / method / "predictions.json",
                 tuple(dict.fromkeys((*dirs, root / method))), in_quick=False) for method, steps, dirs in rows]


def _curp_cells(spec, data, model, out, sizes):
    root = out / "curp"
    encode = [("python", "-m", "curp.encode", "--task", spec.name, *_train_data(data, "--data", "--outputs"),
               "--max_items", str(sizes.curp_train_items), "--output", str(root / "embeddings" / "train.safetensors"),
               *_opt("--limit", sizes.train_users)),
              # the projector reads the first his_len items of each dev user
              ("python", "-m", "curp.encode", "--task", spec.name, *_dev_data(data, "--data", "--outputs"),
               "--max_items", "8", "--output", str(root / "embeddings" / "eval.safetensors"))]
    codebook = ("python", "-m", "curp.train_codebook", "--embeddings", str(root / "embeddings" / "train.safetensors"),
                "--output_dir", str(root / "stage1"), "--num_subspaces", "2",
                "--codebook_size", str(sizes.curp_codebook), "--num_epochs", str(sizes.curp_epochs))
    projector = ("python", "-m", "curp.train_projector", "--embeddings", str(root / "embeddings" / "train.safetensors"),
                 "--codebook", str(root / "stage1"), "--output_dir", str(root / "stage2"), "--model_name", model,
                 "--his_len", "8", "--max_question_tokens", "128", "--learning_rate", "1e-3", "--num_epochs", "1")
    inference = ("python", "-m", "curp.inference", "--embeddings", str(root / "embeddings" / "eval.safetensors"),
                 "--codebook", str(root / "stage1"), "--projector", str(root / "stage2"),
                 "--output_dir", str(root / "inference"), "--model_name", model)
    return [Cell("CURP", spec.name, (*encode, codebook, projector, inference), root / "inference" / "predictions.json",
                 (root / "stage1", root / "stage2", root / "inference"))]


def _logit_adjust_cells(spec, data, model, out, sizes):
    root = out / "logit_adjust"
    argv = ("python", "-m", "logit_adjust.main", "--task", spec.name, "--model_name", model,
            *_dev_data(data, "--data_path", "--outputs_path"), "--num_users", "-1", "--beta", LOGIT_ADJUST_BETA,
            "--output_dir", str(root))
    return [Cell("logit adjust", spec.name, (argv,), root / f"beta_{LOGIT_ADJUST_BETA}_seed_0" / "predictions.json",
                 (root,))]
