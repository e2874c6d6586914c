"""Each piece of logit adjustment on the embedded sample, in about a minute on CPU.

    python -m logit_adjust.demo                          # LongLaMP_2 sample, sbert_vocab map, beta 1
    python -m logit_adjust.demo --token_map unigram --beta 2 --task LongLaMP_4

Shows: one user's vector (the normalized mean sentence embedding of the profile), the most boosted
tokens of two users, and one question generated without (beta 0) and with the bias, with the share of
generated words that occur in the user's profile. The first run embeds the tokenizer's vocabulary once
(cached under $LAMPKIT_CACHE/logit_adjust).
"""
from __future__ import annotations

import argparse
from typing import Sequence

from data.cli import ModelOptions, add_model_arguments, add_task_argument, from_args, parse_args, run
from logit_adjust.main import add_user_bias_arguments


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m logit_adjust.demo", description=__doc__.split("\n\n")[0],
                                     epilog=__doc__.split("\n\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_task_argument(parser, required=False)
    parser.set_defaults(task="LongLaMP_2")
    add_model_arguments(parser)
    add_user_bias_arguments(parser)
    parser.add_argument("--beta", type=float, default=1.0, help="bias strength (default: %(default)s)")
    parser.add_argument("--max_new_tokens", type=int, default=48, help="(default: %(default)s)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(make_parser(), argv)
    from data.loaders import load_examples
    from data.tasks import get_task
    from logit_adjust.experiment import profile_word_share, require_generation_task, sample_paths
    from logit_adjust.processor import UserBiasFactory
    from logit_adjust.token_maps import special_token_ids, top_tokens, user_biases
    from logit_adjust.user_vectors import UserVectors, user_profile

    spec = get_task(args.task)
    require_generation_task(spec)
    examples = load_examples(*sample_paths(spec), task=spec.name)
    profiles = [user_profile(spec, example) for example in examples]
    model = from_args(ModelOptions, args)
    encoder = model.load_encoder(args.encoder)
    handle = model.load(needs_hf=True)      # the bias is a logits processor, which only HF generation runs

    print(f"== 1. user vector ({spec.name} sample, {len(examples)} users)")
    vectors = UserVectors(encoder, args.cache_dir).vectors(profiles[:2])
    first, second = profiles[0], profiles[1]
    print(f"user {first.user_id}: {len(first.texts)} profile texts -> vector of {vectors.shape[1]} dims, "
          f"norm {vectors[0].norm():.3f}, first values {[round(v, 3) for v in vectors[0][:5].tolist()]}")
    print(f"cosine(user {first.user_id}, user {second.user_id}) = {float(vectors[0] @ vectors[1]):.3f}")

    print(f"\n== 2. most boosted tokens ({args.token_map}, z-scores)")
    biases = user_biases(args.token_map, handle.tokenizer, profiles, encoder=encoder, background=profiles,
                         cache_root=args.cache_dir)
    for row in (0, 1):
        tokens = ", ".join(f"{text!r} {z:+.1f}" for text, z in top_tokens(biases[row], handle.tokenizer))
        print(f"user {profiles[row].user_id}: {tokens}")

    print(f"\n== 3. one question, beta 0 vs beta {args.beta:g}")
    example, profile_text = examples[0], " ".join(first.texts)
    print(f"input: {example.input}\ngold:  {example.target}")
    for beta in (0.0, args.beta):
        factory = UserBiasFactory(biases[:1].to(handle.device), [0], beta,
                                  special_token_ids(handle.tokenizer, handle.model))
        text = handle.generate([example.input], max_new_tokens=args.max_new_tokens, logits_processor=factory,
                               progress=False)[0]
        share = profile_word_share([text], [profile_text])[0]
        print(f"beta {beta:g} (profile-word share {share:.2f}): {text}")
    return 0


if __name__ == "__main__":
    raise SystemExit(run(main))
