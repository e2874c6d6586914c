"""Logit-adjustment personalization: add beta * bias(token, user) to every next-token logit.

    python -m logit_adjust.main --task LongLaMP-2 --model_name default --num_users 10
        # -> runs/logit_adjust/LongLaMP_2_default
    python -m logit_adjust.main --task LongLaMP_2 --data_path ../shared/data/gitlamp_long/val.json \\
        --num_users 32 --beta 0 0.5 1 --max_new_tokens 128 --output_dir runs/logit_adjust/gitlamp_long
    python -m logit_adjust.main --task LaMP_4 --data_path dev_questions.json --outputs_path dev_outputs.json \\
        --token_map unigram --do_sample --temperature 0.7 --top_p 0.9 --num_seeds 3 --beta 0 0.5 ...

The bias of a user is z-scored over word-like vocabulary tokens and 0 elsewhere (special tokens always
0): --token_map sbert_vocab (default) scores each token string, embedded once with the sentence encoder,
by cosine with the user vector (normalized mean embedding of the profile documents); --token_map unigram
scores each token id by the user's smoothed unigram log-ratio against all profiles of the data file.
The prompt is the question's input alone; the profile reaches the model only through the bias.

Baseline (beta 0, no processor) and every beta run on the SAME users with the same seeds; beta 0 is
computed once and shared. --output_dir (default runs/logit_adjust/<experiment_name>) receives config.json,
run.log, golds.json, one run folder per setting, baseline_seed_<s>/ and beta_<b>_seed_<s>/ (config.json,
run.log, prompts.jsonl, generations.jsonl: reused when the same command runs again, predictions.json,
scores.json; `python -m eval.report OUTPUT_DIR` tabulates them), results.json (baseline, personalized and
difference sections; difference = personalized - baseline with a paired bootstrap interval over users and
seeds), results.md, with several --beta values metric_vs_beta.png, and with --save_samples samples.txt. The
profile-word share (share of generated words that occur in the user's profile) measures the steering.
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Sequence

from data.cli import add_generation_arguments, add_model_arguments, add_task_argument, parse_args, run, writable_dir

TOKEN_MAP_CHOICES = ("sbert_vocab", "unigram")     # logit_adjust.token_maps.TOKEN_MAPS, without importing torch
SAMPLE_COUNT = 5                                    # questions in samples.txt, as in the seed prototype


def add_user_bias_arguments(parser: argparse.ArgumentParser) -> None:
    """--token_map, --encoder and --cache_dir, shared by main, demo and bench/bench_logit_adjust.py."""
    parser.add_argument("--token_map", default="sbert_vocab", choices=TOKEN_MAP_CHOICES,
                        help="how vocabulary tokens are scored for a user (default: %(default)s)")
    parser.add_argument("--encoder", default="default",
                        help="sentence encoder for user vectors and token embeddings: 'default' (packaged "
                             "all-MiniLM-L6-v2) or an encoder folder (default: %(default)s)")
    parser.add_argument("--cache_dir", type=writable_dir, default=None,
                        help="token embeddings and user vectors (default: $LAMPKIT_CACHE/logit_adjust)")


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m logit_adjust.main", description=__doc__.split("\n\n")[0],
                                     epilog=__doc__.split("\n\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_task_argument(parser)
    parser.add_argument("--data_path", type=Path, default=None,
                        help="any LaMP or LongLaMP file of the task (default: the embedded sample, "
                             "data/sample/<task>/)")
    parser.add_argument("--outputs_path", type=Path, default=None,
                        help="gold outputs {task, golds} for a LaMP questions file")
    parser.add_argument("--num_users", type=int, default=10,
                        help="first N users of the file, all their questions (-1: all; default: %(default)s)")
    parser.add_argument("--beta", type=float, nargs="+", default=[0.1],
                        help="bias strength(s) in logits per standard deviation; several values share one "
                             "baseline and add a plot (default: %(default)s)")
    add_user_bias_arguments(parser)
    parser.add_argument("--prompt_style", default="auto", choices=("auto", "raw", "chat"),
                        help="raw: the input string; chat: the input as one user turn of the chat template; "
                             "auto: follow --chat (default: %(default)s)")
    parser.add_argument("--num_seeds", type=int, default=1,
                        help="seeds --seed, --seed+1, ... for sampling; greedy/beam use one (default: %(default)s)")
    parser.add_argument("--bootstrap_samples", type=int, default=1000, help="paired bootstrap resamples")
    parser.add_argument("--output_dir", type=writable_dir, default=None,
                        help="folder for every output (default: runs/logit_adjust/<experiment_name>)")
    parser.add_argument("--experiment_name", default=None,
                        help="names the experiment in results.md, results.json and the default --output_dir "
                             "(default: <task>_<model>; no time stamp, so the same command resumes)")
    parser.add_argument("--save_samples", action="store_true",
                        help=f"also write samples.txt: the first {SAMPLE_COUNT} questions with the gold and "
                             "the output of every beta")
    parser.add_argument("--log_level", default="INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR"),
                        help="least severe message shown and written to run.log (default: %(default)s)")
    add_model_arguments(parser)
    add_generation_arguments(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(make_parser(), argv)
    from logit_adjust.experiment import run_experiment

    run_experiment(args)
    return 0


if __name__ == "__main__":
    raise SystemExit(run(main))
