"""One logit-adjustment experiment: the baseline and each beta on the SAME users and seeds, scored with
eval/, personalized - baseline compared by a paired bootstrap over users.

``run_experiment(args)`` is what ``python -m logit_adjust.main`` runs; the pieces (data, steering share,
summaries, table, plot) are separate functions so tests and notebooks can use them. Generation, its resume
and the run folders are runtime's (``runtime.generation``, ``runtime.run_folder``). Output folder::

    config.json  run.log  golds.json
    {baseline,beta_<b>}_seed_<s>/     one run folder per setting: config.json run.log prompts.jsonl
                                      generations.jsonl predictions.json scores.json (+ profile_word_share)
    results.json  results.md  metric_vs_beta.png (several --beta values)  samples.txt (--save_samples)
"""
from __future__ import annotations

import logging
import re
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Mapping, Sequence

import numpy as np
from tqdm.auto import tqdm

import data
from data.errors import InputError, input_error
from data.io import atomic_write_json, atomic_write_text, check_writable
from data.records import Example
from data.tasks import TaskSpec, list_tasks
from eval.metrics import METRICS, aggregate, register_metric
from logit_adjust.user_vectors import UserProfile, user_id_of, user_profile

log = logging.getLogger("lampkit.logit_adjust")

SAMPLE_DIR = Path(data.__file__).resolve().parent / "sample"
PROFILE_SHARE = "profile_word_share"
RESULTS_FILE, TABLE_FILE, PLOT_FILE, GOLDS_FILE = "results.json", "results.md", "metric_vs_beta.png", "golds.json"
SAMPLES_FILE = "samples.txt"
METHOD = "logit_adjust"
DEFAULT_RUNS_DIR = Path("runs") / "logit_adjust"
_WORD = re.compile(r"[^\W\d_]+")     # a run of letters


# ----------------------------------------------------------------------------- data

def generation_tasks() -> list[str]:
    return [spec.name for spec in list_tasks() if spec.kind == "generation"]


def require_generation_task(spec: TaskSpec) -> None:
    if spec.kind != "generation":
        raise InputError(f"{spec.name} is a {spec.kind} task; logit adjustment needs a generation task "
                         f"({', '.join(generation_tasks())})")


def sample_paths(spec: TaskSpec) -> tuple[Path, Path | None]:
    """The embedded synthetic sample of a task: LongLaMP val.json, LaMP dev questions + outputs."""
    folder = SAMPLE_DIR / spec.name
    if spec.benchmark == "LongLaMP":
        return folder / "val.json", None
    return folder / "dev_questions.json", folder / "dev_outputs.json"


def select_users(examples: Sequence[Example], num_users: int) -> list[Example]:
    """Every example of the first ``num_users`` distinct users in file order (-1: all users)."""
    users = list(dict.fromkeys(user_id_of(example) for example in examples))
    keep = set(users if num_users < 0 else users[:num_users])
    if len(users) < num_users:
        log.warning("asked for %d users, the file has %d: using all", num_users, len(users))
    return [example for example in examples if user_id_of(example) in keep]


def require_golds(path: Path, examples: Sequence[Example]) -> list[str]:
    missing = [example.id for example in examples if not (example.target or "").strip()]
    if missing:
        raise input_error(path, f"{len(missing)} question(s) have no gold output to score against, e.g. "
                                f"{missing[0]!r}; pass --outputs_path for LaMP question files",
                          record=missing[0], field="output")
    return [example.target for example in examples]


# ----------------------------------------------------------------------------- output folders

def experiment_name(args) -> str:
    """--experiment_name, else ``<task>_<model>`` (a model path contributes its folder or file name)."""
    if args.experiment_name:
        return args.experiment_name
    model = Path(str(args.model_name))
    model_part = model.stem if model.exists() else str(args.model_name)
    return f"{args.task}_{re.sub(r'[^A-Za-z0-9_.-]', '_', model_part)}"


def output_folder(args) -> Path:
    return Path(args.output_dir) if args.output_dir else DEFAULT_RUNS_DIR / experiment_name(args)


# ----------------------------------------------------------------------------- steering measure

def profile_words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def profile_word_share(predictions: Sequence[str], profiles: Sequence[str], spec: TaskSpec | None = None):
    """Per prediction: the share of its words (lowercased letter runs) that occur anywhere in the user's
    profile text (given in place of the reference); 0 for a prediction without words. ``spec`` is unused:
    it completes the metric registry's signature.

    The direct measure of steering: it rises when generations reuse the user's own vocabulary.
    """
    shares = []
    for prediction, profile in zip(predictions, profiles):
        words, vocabulary = profile_words(prediction), set(profile_words(profile))
        shares.append(sum(word in vocabulary for word in words) / len(words) if words else 0.0)
    return np.array(shares, dtype=np.float64)


if PROFILE_SHARE not in METRICS:   # registered so eval's paired bootstrap can aggregate it like any metric
    register_metric(PROFILE_SHARE, higher_is_better=True, task_kinds=("generation",))(profile_word_share)


# ----------------------------------------------------------------------------- run folders

def beta_label(beta: float) -> str:
    return format(beta, "g")


def run_name(beta: float, seed: int) -> str:
    """The run folder of one setting; beta 0 is the baseline."""
    return f"{'baseline' if beta == 0 else f'beta_{beta_label(beta)}'}_seed_{seed}"


@contextmanager
def run_log(folder: Path) -> Iterator[None]:
    """While a setting runs, its messages also go to <run folder>/run.log (the experiment's run.log has all)."""
    from runtime.run_folder import LOG_FILE

    folder.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(folder / LOG_FILE, encoding="utf-8")
    root = logging.getLogger()
    handler.setFormatter(root.handlers[0].formatter if root.handlers else None)
    handler.setLevel(root.level)
    root.addHandler(handler)
    try:
        yield
    finally:
        root.removeHandler(handler)
        handler.close()


# ----------------------------------------------------------------------------- scoring and summaries

def score_run(spec: TaskSpec, golds: Mapping[str, str], predictions: Mapping[str, str],
              profiles: Sequence[UserProfile]) -> tuple[dict, dict[str, np.ndarray]]:
    """The eval report and the per-example statistics of the task's metrics plus the profile-word share, from
    one scoring pass (``predictions`` and ``profiles`` in the order of ``golds``)."""
    from eval.scoring import match_outputs, score_matched

    report, stats = score_matched(match_outputs(spec.name, golds, predictions))
    stats[PROFILE_SHARE] = profile_word_share(list(predictions.values()), [" ".join(p.texts) for p in profiles])
    return report, stats


def system_summary(task: str, stats_by_seed: Mapping[int, Mapping[str, np.ndarray]]) -> dict:
    """Each metric averaged over seeds, plus the per-seed values."""
    per_seed = {str(seed): aggregate(task, dict(stats)) for seed, stats in stats_by_seed.items()}
    names = next(iter(per_seed.values()))
    summary = {name: float(np.mean([values[name] for values in per_seed.values()])) for name in names}
    return {**summary, "per_seed": per_seed}


def user_rows(stats_by_seed: Mapping[int, Mapping[str, np.ndarray]], users: Sequence[str]) -> dict[str, np.ndarray]:
    """Bootstrap units: one row per user, the mean of the user's per-example scores over examples and seeds."""
    order = list(dict.fromkeys(users))
    index = np.array([order.index(user) for user in users])
    counts = np.bincount(index, minlength=len(order))
    rows = {}
    for name in next(iter(stats_by_seed.values())):
        per_example = np.mean([np.asarray(stats[name], dtype=np.float64) for stats in stats_by_seed.values()], axis=0)
        rows[name] = np.bincount(index, weights=per_example, minlength=len(order)) / counts
    return rows


def paired_differences(task: str, baseline_rows: Mapping[str, np.ndarray], candidate_rows: Mapping[str, np.ndarray],
                       samples: int, confidence: float = 0.95) -> dict[str, dict]:
    from eval.bootstrap import paired_bootstrap

    return {name: paired_bootstrap(task, name, baseline_rows[name], candidate_rows[name], samples=samples,
                                   confidence=confidence).to_dict()
            for name in baseline_rows}


# ----------------------------------------------------------------------------- table and plot

def metric_columns(results: Mapping) -> list[str]:
    return [name for name in results["baseline"] if name != "per_seed"]


def _heading(name: str) -> str:
    return "profile-word share" if name == PROFILE_SHARE else name


def results_table(results: Mapping) -> str:
    """Markdown: the scores per beta, then personalized - baseline with its paired bootstrap interval."""
    names = metric_columns(results)
    header = "| beta | " + " | ".join(_heading(n) for n in names) + " |\n|---|" + "---|" * len(names) + "\n"
    scores = ["| 0 (baseline) | " + " | ".join(f"{results['baseline'][n]:.4f}" for n in names) + " |"]
    differences = []
    for beta, section in results["personalized"].items():
        scores.append(f"| {beta} | " + " | ".join(f"{section[n]:.4f}" for n in names) + " |")
        cells = [results["difference"][beta][n] for n in names]
        differences.append(f"| {beta} | " + " | ".join(
            f"{c['difference']:+.4f} [{c['low']:+.4f}, {c['high']:+.4f}]" for c in cells) + " |")
    setup = results["setup"]
    title = (f"## logit_adjust {setup['experiment']}: {setup['task']}, model {setup['model']}, "
             f"token map {setup['token_map']}, "
             f"{setup['num_users']} users, {setup['num_examples']} questions, seeds {setup['seeds']}\n\n"
             f"Data: `{setup['data_path']}`. Decoding: {setup['decoding']}.\n\n")
    text = title + header + "\n".join(scores) + "\n"
    if differences:
        boot = results["bootstrap"]
        text += (f"\nPersonalized - baseline, {boot['confidence']:.0%} paired bootstrap interval over users "
                 f"({boot['samples']} resamples; a user's score is the mean over their questions and seeds):"
                 f"\n\n" + header + "\n".join(differences) + "\n")
    return text


def plot_betas(results: Mapping, path: Path) -> Path:
    """One panel per metric: the value at each beta (beta 0 = baseline), with the baseline plus the paired
    bootstrap interval of the difference as error bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = metric_columns(results)
    betas = [0.0] + [float(b) for b in results["personalized"]]
    order = np.argsort(betas)
    figure, axes = plt.subplots(1, len(names), figsize=(3.6 * len(names), 3.2), squeeze=False)
    for axis, name in zip(axes[0], names):
        values = [results["baseline"][name]] + [s[name] for s in results["personalized"].values()]
        base = results["baseline"][name]
        low = [0.0] + [v - (base + d[name]["low"]) for v, d in zip(values[1:], results["difference"].values())]
        high = [0.0] + [(base + d[name]["high"]) - v for v, d in zip(values[1:], results["difference"].values())]
        axis.errorbar(np.array(betas)[order], np.array(values)[order],
                      yerr=[np.array(low)[order], np.array(high)[order]], marker="o", capsize=3)
        axis.axhline(base, color="grey", linestyle=":", linewidth=1)
        axis.set_xlabel("beta")
        axis.set_title(_heading(name))
    setup = results["setup"]
    figure.suptitle(f"{setup['task']} ({setup['token_map']}, {setup['num_users']} users); bars: baseline + "
                    f"{results['bootstrap']['confidence']:.0%} paired bootstrap interval of the difference")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path


def samples_text(examples: Sequence[Example], outputs: Mapping[float, Sequence[str]]) -> str:
    """The first questions with their gold and each beta's output (first seed), like the seed's samples file."""
    from logit_adjust.main import SAMPLE_COUNT

    blocks = []
    for index, example in enumerate(examples[:SAMPLE_COUNT]):
        lines = [f"== {index + 1}. question {example.id} (user {user_id_of(example)})",
                 f"input: {example.input}", f"gold: {example.target}"]
        lines += [f"{'baseline' if beta == 0 else f'beta {beta_label(beta)}'}: {texts[index]}"
                  for beta, texts in sorted(outputs.items())]
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks) + "\n"


def write_report(results: Mapping, output_dir: Path, plot: bool) -> list[Path]:
    written = [atomic_write_json(output_dir / RESULTS_FILE, results),
               atomic_write_text(output_dir / TABLE_FILE, results_table(results))]
    if plot:
        written.append(plot_betas(results, output_dir / PLOT_FILE))
    return written


# ----------------------------------------------------------------------------- the experiment

def run_experiment(args) -> dict:
    """Everything ``python -m logit_adjust.main`` does after parsing (see its --help)."""
    from data.cli import generation_options, setup_logging, write_config
    from data.fingerprint import fingerprint
    from data.loaders import write_lamp_outputs, write_predictions
    from data.tasks import get_task
    from lm import load_model
    from runtime.generation import generate_outputs, postprocess
    from runtime.run_folder import PREDICTIONS_FILE, write_run_config, write_scores_report
    from logit_adjust.cache import default_cache_root
    from logit_adjust.processor import UserBiasFactory
    from logit_adjust.token_maps import special_token_ids

    spec = get_task(args.task)
    require_generation_task(spec)
    data_path, examples, selected = load_run_data(args, spec)
    references = require_golds(data_path, selected)
    betas = sorted({float(beta) for beta in args.beta} - {0.0})
    seeds = run_seeds(args)

    output_dir = output_folder(args)
    # Before any model is loaded or anything embedded.
    check_writable(output_dir, "folder")
    if betas and args.token_map == "sbert_vocab":     # token embeddings and user vectors are cached there
        check_writable(args.cache_dir or default_cache_root(), "folder")
    setup_logging(output_dir, level=getattr(logging, args.log_level))
    write_config(output_dir, args, method=METHOD, data_path=str(data_path), experiment_name=experiment_name(args))
    # Personalized runs need HF's logits processors; the baseline must come from the same engine.
    handle = load_model(args.model_name, device=args.device, dtype=args.dtype, backend=args.backend,
                        needs_hf=bool(betas), allow_download=args.allow_download)
    options = generation_options(args, spec.max_new_tokens, spec=spec, tokenizer=handle.tokenizer)
    options["chat"] = prompt_chat(args.prompt_style, args.chat, handle)
    profiles = [user_profile(spec, example) for example in selected]
    users = [profile.user_id for profile in profiles]
    log.info("%s: %d users, %d questions, betas %s, seeds %s, token map %s", spec.name, len(set(users)),
             len(selected), [0.0, *betas], seeds, args.token_map)
    if betas:
        biases, rows = user_bias_table(args, handle, spec, examples, profiles)
        bias_key = {"token_map": args.token_map, "biases": fingerprint(biases.contiguous().numpy().tobytes()),
                    "rows": rows}
        biases = biases.to(handle.device)
        zero_ids = special_token_ids(handle.tokenizer, handle.model)
    write_lamp_outputs(output_dir / GOLDS_FILE, spec.name, selected)

    ids = [example.id for example in selected]
    prompts = [example.input for example in selected]
    golds = dict(zip(ids, references))
    stats: dict[float, dict[int, dict[str, np.ndarray]]] = {}
    outputs: dict[float, list[str]] = {}
    for beta, seed in tqdm([(b, s) for b in [0.0, *betas] for s in seeds], desc="runs (beta, seed)", unit="run"):
        run_dir = output_dir / run_name(beta, seed)
        with run_log(run_dir):
            write_run_config(run_dir, args, METHOD, beta=beta, seed=seed, data_path=str(data_path),
                             experiment_name=experiment_name(args))
            # beta 0 runs without any processor: it IS the baseline, shared by every beta.
            factory = UserBiasFactory(biases, rows, beta, zero_ids) if beta else None
            decoding = {**options, "seed": seed, "logits_processor": factory}
            raw = generate_outputs(handle, ids, prompts, run_dir, decoding, desc=f"generate {run_name(beta, seed)}",
                                   extra_key={"beta": beta, **bias_key} if beta else None)
            predictions = [postprocess(spec, text) for text in raw]
            write_predictions(run_dir / PREDICTIONS_FILE, spec.name, dict(zip(ids, predictions)))
            report, stats.setdefault(beta, {})[seed] = score_run(spec, golds, dict(zip(ids, predictions)), profiles)
            write_scores_report(run_dir, report,
                         extra_metrics={PROFILE_SHARE: float(np.mean(stats[beta][seed][PROFILE_SHARE]))})
        outputs.setdefault(beta, predictions)

    results = summarize(spec, args, handle.name, shown_path(data_path), stats, users, options)
    written = write_report(results, output_dir, plot=len(args.beta) > 1)
    if args.save_samples:
        written.append(atomic_write_text(output_dir / SAMPLES_FILE, samples_text(selected, outputs)))
    print(results_table(results))
    print("outputs:")
    for path in [output_dir / "config.json", output_dir / GOLDS_FILE,
                 *(output_dir / run_name(beta, seed) for beta in [0.0, *betas] for seed in seeds), *written]:
        print(f"  {path}")
    return results


def load_run_data(args, spec: TaskSpec) -> tuple[Path, list[Example], list[Example]]:
    """(questions path, all its examples, the examples of the selected users)."""
    from data.loaders import load_examples

    if args.num_users == 0 or args.num_users < -1:
        raise InputError(f"--num_users must be positive or -1 (all), got {args.num_users}")
    data_path, outputs_path = (args.data_path, args.outputs_path) if args.data_path else sample_paths(spec)
    examples = load_examples(data_path, outputs_path, task=spec.name)
    if not examples:
        raise input_error(data_path, "no questions")
    return Path(data_path), examples, select_users(examples, args.num_users)


def shown_path(path: Path) -> str:
    """The path relative to the working folder when it lies inside it (the sample's path is absolute)."""
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def run_seeds(args) -> list[int]:
    if args.num_seeds < 1:
        raise InputError(f"--num_seeds must be at least 1, got {args.num_seeds}")
    if not args.do_sample and args.num_seeds > 1:
        log.warning("greedy/beam decoding is deterministic: %d seeds would repeat one output; using seed %d",
                    args.num_seeds, args.seed)
        return [args.seed]
    return list(range(args.seed, args.seed + args.num_seeds))


def prompt_chat(prompt_style: str, chat_flag: str, handle) -> bool:
    """raw: the input string as is; chat: the input as one user turn of the chat template; auto: --chat."""
    if prompt_style == "auto":
        return {"on": True, "off": False}.get(chat_flag, handle.has_chat_template)
    wanted = prompt_style == "chat"
    if chat_flag != "auto" and (chat_flag == "on") != wanted:
        raise InputError(f"--prompt_style {prompt_style} contradicts --chat {chat_flag}")
    if wanted and not handle.has_chat_template:
        raise InputError(f"{handle.name} has no chat template: use --prompt_style raw")
    return wanted


def user_bias_table(args, handle, spec: TaskSpec, examples: Sequence[Example],
                    profiles: Sequence[UserProfile]):
    """(bias table [distinct profiles, len(tokenizer)], table row of each question), computed once per
    user and shared by every beta and seed. The unigram background is every profile of the data file."""
    from logit_adjust.token_maps import user_biases

    unique = list({profile.key: profile for profile in profiles}.values())
    row_of = {profile.key: row for row, profile in enumerate(unique)}
    encoder = None
    if args.token_map == "sbert_vocab":
        from lm import load_encoder

        encoder = load_encoder(args.encoder, device=args.device, allow_download=args.allow_download)
    background = [user_profile(spec, example) for example in examples]
    biases = user_biases(args.token_map, handle.tokenizer, unique, encoder=encoder, background=background,
                         cache_root=args.cache_dir)
    return biases, [row_of[profile.key] for profile in profiles]


def summarize(spec: TaskSpec, args, model_location: str, data_path: str,
              stats: Mapping[float, Mapping[int, Mapping]], users: Sequence[str], options: Mapping) -> dict:
    """The results.json content: setup, baseline, personalized and difference sections (keyed by beta)."""
    baseline = stats[0.0]
    baseline_rows = user_rows(baseline, users)
    personalized, difference = {}, {}
    for beta in sorted(b for b in stats if b != 0):
        personalized[beta_label(beta)] = system_summary(spec.name, stats[beta])
        difference[beta_label(beta)] = paired_differences(spec.name, baseline_rows, user_rows(stats[beta], users),
                                                          args.bootstrap_samples)
    decoding = ("sampling" if options["do_sample"] else "beam" if options["num_beams"] > 1 else "greedy") + \
        f", max_new_tokens {options['max_new_tokens']}, chat template {'on' if options['chat'] else 'off'}"
    return {
        "setup": {"experiment": experiment_name(args), "task": spec.name, "model": args.model_name,
                  "model_location": model_location,
                  "data_path": data_path, "token_map": args.token_map,
                  "num_users": len(set(users)), "num_examples": len(users), "seeds": sorted(baseline),
                  "decoding": decoding, "metrics": [*spec.metrics, PROFILE_SHARE]},
        "baseline": system_summary(spec.name, baseline),
        "personalized": personalized,
        "difference": difference,
        "bootstrap": {"unit": "user", "samples": args.bootstrap_samples, "confidence": 0.95},
    }
