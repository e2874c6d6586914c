"""CURP stage 0: every history item of every example -> one embedding (masked mean pooling, no normalization).

    python -m curp.encode --task LaMP_4 --data data/sample/LaMP_4/train_questions.json \\
        --outputs data/sample/LaMP_4/train_outputs.json --output runs/curp/embeddings/train.safetensors
    python -m curp.encode --task alignx --data alignx_train.jsonl --encoder facebook/contriever \\
        --output runs/curp/embeddings/alignx_train.safetensors

--encoder: 'default' (the packaged all-MiniLM-L6-v2, 384-d, offline), a local encoder folder, or a hub id
already in the local HF cache such as facebook/contriever (768-d, CURP_code's encoder). The output is the
one embeddings file every later stage reads (curp/records.py); it records the data source, so the next
stages only need this file. A rerun with the same settings reuses the finished file.
"""
from __future__ import annotations

import argparse
import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

from data.cli import (ModelOptions, add_dataclass_arguments, config_path, from_args, option, parse_args, run,
                      setup_logging, writable_file, write_config)
from data.errors import input_error

log = logging.getLogger("lampkit.curp")


@dataclass
class EncoderOptions:
    encoder: str = option("default", "'default' (packaged MiniLM), an encoder folder or a cached hub id "
                                     "(facebook/contriever)")
    batch_size: int = option(64, "texts per encoder batch", minimum=1)


def make_parser() -> argparse.ArgumentParser:
    from curp.records import SourceOptions

    parser = argparse.ArgumentParser(prog="python -m curp.encode", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_dataclass_arguments(parser, SourceOptions, "data")
    parser.add_argument("--output", required=True, type=writable_file, help="the embeddings file (.safetensors)")
    add_dataclass_arguments(parser, EncoderOptions, "encoder")
    add_dataclass_arguments(parser, ModelOptions, "device", exclude=("model_name", "dtype", "backend"))
    return parser


def encode_examples(examples, encoder, batch_size: int = 64):
    """(vectors [N, D], offsets [R + 1]) of the examples' history items, example by example."""
    import torch

    texts = [text for example in examples for text in example.history]
    lengths = torch.tensor([0] + [len(example.history) for example in examples])
    vectors = encoder.encode(texts, batch_size=batch_size, progress=True) if texts else torch.empty(0, encoder.dim)
    return vectors, lengths.cumsum(0)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(make_parser(), argv)
    from curp.records import Embeddings, SourceOptions, load_embeddings, load_source

    source = from_args(SourceOptions, args).resolved()
    examples = load_source(source)
    if not examples:
        raise input_error(source.data, "no examples")
    if not any(example.history for example in examples):
        raise input_error(source.data, "no example has history items")
    output = Path(args.output)
    if output.is_file():
        done = load_embeddings(output)
        if done.encoder == args.encoder and done.source == source and done.ids == [e.id for e in examples]:
            print(f"embeddings: {output} (already made with these settings; reused)")
            return 0
    setup_logging()
    model = from_args(ModelOptions, args, model_name=args.encoder)
    encoder = model.load_encoder(args.encoder)
    vectors, offsets = encode_examples(examples, encoder, args.batch_size)
    Embeddings(vectors, offsets, [example.id for example in examples], args.encoder, source).save(output)
    write_config(output.parent, args, filename=config_path(output).name, source=asdict(source),
                 num_examples=len(examples), num_items=len(vectors), dim=encoder.dim)
    log.info("%d examples, %d history items, %d-d", len(examples), len(vectors), encoder.dim)
    print(f"embeddings: {output}")
    print(json.dumps({"examples": len(examples), "items": len(vectors), "dim": encoder.dim}))
    return 0


if __name__ == "__main__":
    raise SystemExit(run(main))
