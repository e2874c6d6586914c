"""What every CURP stage reads: the examples (question, answer, history texts) and the embeddings file.

Examples come from AlignX records (``--task alignx``: question = ``prompt``, answer = ``chosen``, history
= the "User-Generated Content" items in CURP_code's text) or from any LaMP/LongLaMP task of the registry
(question = the example's input, answer = its gold, history = its profile items as the task's retrieval
document, ``spec.document``).

The embeddings file (``python -m curp.encode``) is ONE safetensors file: tensor ``embeddings`` [N, D]
(float32, every history item of every example, example by example, in history order), tensor ``offsets``
[R + 1] (example r owns rows offsets[r]:offsets[r+1]) and, in the safetensors metadata under ``curp``,
JSON with the format version, the example ids, the encoder and the data source it was made from, so
the next stages re-read the same examples without being told again.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from data.cli import option
from data.errors import input_error

ALIGNX = "alignx"
FORMAT = "curp-embeddings/1"


@dataclass
class SourceOptions:
    """Where the examples come from."""

    data: str = option(help="LaMP/LongLaMP questions file (or merged/LongLaMP records), or an AlignX "
                            "JSON/JSONL/parquet file with --task alignx")
    task: str = option(help="a LaMP/LongLaMP task name or alias, or 'alignx'")
    outputs: str | None = option(None, "gold outputs {task, golds} when the questions file has none")
    limit: int | None = option(None, "use only the first N examples (smoke runs)", minimum=1)
    max_items: int | None = option(None, "keep only each example's first N history items (default: all; "
                                         "the projector uses the first his_len)", minimum=1)

    def resolved(self) -> "SourceOptions":
        """Absolute paths and the canonical task name, as stored in the embeddings file."""
        from data.tasks import get_task

        task = ALIGNX if self.task.lower() == ALIGNX else get_task(self.task).name
        return SourceOptions(data=str(Path(self.data).resolve()), task=task, limit=self.limit, max_items=self.max_items,
                             outputs=str(Path(self.outputs).resolve()) if self.outputs else None)


@dataclass
class CurpExample:
    id: str
    question: str
    answer: str | None
    history: list[str]


def load_source(source: SourceOptions) -> list[CurpExample]:
    """The examples of ``source`` (see the module docstring for the fields each format gives)."""
    if source.task == ALIGNX:
        from data.alignx import history_texts, iter_alignx

        return [CurpExample(str(index), record.prompt, record.chosen, history_texts(record, source.max_items))
                for index, record in enumerate(iter_alignx(source.data, source.limit))]
    from data.loaders import load_examples
    from data.tasks import get_task

    spec = get_task(source.task)
    examples = load_examples(source.data, source.outputs, task=spec.name, limit=source.limit)
    return [CurpExample(example.id, example.input, example.target,
                        [spec.document(item) for item in example.profile[:source.max_items]])
            for example in examples]


@dataclass
class Embeddings:
    vectors: torch.Tensor          # [N, D]
    offsets: torch.Tensor          # [R + 1]
    ids: list[str]
    encoder: str
    source: SourceOptions

    @property
    def dim(self) -> int:
        return self.vectors.shape[1]

    def history(self, row: int) -> torch.Tensor:
        """[n_r, D] history embeddings of example ``row``."""
        return self.vectors[self.offsets[row]:self.offsets[row + 1]]

    def save(self, path: str | Path) -> Path:
        from safetensors.torch import save

        from data.io import atomic_open

        meta = {"format": FORMAT, "ids": self.ids, "encoder": self.encoder, "source": asdict(self.source)}
        blob = save({"embeddings": self.vectors.contiguous(), "offsets": self.offsets.contiguous()},
                    metadata={"curp": json.dumps(meta)})
        with atomic_open(path, "wb") as handle:
            handle.write(blob)
        return Path(path)


def load_embeddings(path: str | Path) -> Embeddings:
    """Read and check an embeddings file; anything else is a one-line InputError naming the file."""
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    if not path.is_file():
        raise input_error(path, "embeddings file not found (make it with python -m curp.encode)")
    try:
        with safe_open(str(path), framework="pt") as handle:
            meta = json.loads((handle.metadata() or {}).get("curp", "null"))
            tensors = {name: handle.get_tensor(name) for name in handle.keys()}
    except (SafetensorError, OSError, ValueError) as error:
        raise input_error(path, f"not a safetensors file: {error}") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise input_error(path, f"not a CURP embeddings file (expected metadata format {FORMAT!r})")
    vectors, offsets = tensors.get("embeddings"), tensors.get("offsets")
    if vectors is None or vectors.ndim != 2 or offsets is None or offsets.ndim != 1:
        raise input_error(path, "needs tensors 'embeddings' [N, D] and 'offsets' [R + 1]")
    ids = meta.get("ids")
    if not isinstance(ids, list) or len(ids) + 1 != len(offsets) or int(offsets[-1]) != len(vectors):
        raise input_error(path, "ids, offsets and embeddings disagree in length")
    return Embeddings(vectors.float(), offsets.long(), ids, meta.get("encoder", ""), SourceOptions(**meta["source"]))


def matched_examples(embeddings: Embeddings, path: str | Path) -> list[CurpExample]:
    """The examples the embeddings were made from, checked to be the same ones in the same order."""
    examples = load_source(embeddings.source)
    if [example.id for example in examples] != embeddings.ids:
        raise input_error(path, f"the examples of {embeddings.source.data} changed since it was encoded "
                                "(ids differ); run python -m curp.encode again")
    return examples
