"""Profile rankers and top-k item selection, shared by lamp_rag, ROPG, RSPG and CoPe.

    from lamp_rag.retrieval import rank_examples, select_items
    rankings = rank_examples(spec, examples, "bm25")         # per example: every profile item id, best first
    items = select_items(spec, examples, 3, "recency")       # per example: the top-3 profile items (dicts)

Every example is ranked over its own profile. The query is ``spec.query(example.input)`` and an item's
document ``spec.document(item, use_date)`` (spec lamp.md 3.2). Rankers (spec lamp.md 3.3):

* ``bm25``: rank_bm25 0.2.2 ``BM25Okapi`` exactly: whitespace tokens (``str.split()``), k1 1.5, b 0.75,
  a negative idf replaced by 0.25 x the mean idf of the profile's vocabulary, repeated query tokens counted
  again, ties in reversed-argsort order. Scores are bit-identical to rank_bm25's, several times faster
  (see :func:`map_term_statistics` and :func:`okapi_scores`).
* ``contriever``: dot product of UNnormalized mean-pooled embeddings (Contriever's scoring) from any
  ``lm.load_encoder`` encoder; ``facebook/contriever`` is the reference model, the packaged
  all-MiniLM-L6-v2 only an offline CPU stand-in (trained for cosine, so it is used unnormalized here too,
  to keep one scoring rule). Every distinct text of a run is encoded once. Ties keep profile order.
  Searched in a faiss ``IndexFlatIP`` per distinct profile (``dense_index="faiss"``, the default; on the GPU
  with faiss-gpu) or in torch one question at a time (``"torch"``); both give the same rankings.
* ``recency``: newest first by the item's date tuple (``"YYYY-MM-DD"`` or a bare year, parsed as
  ``tuple(int(x) for x in str(date).split("-"))``). Items without a date count as older than dated ones
  and keep list order among themselves, so a task without dates (LongLaMP_3/4) treats the LAST profile
  item as the newest. Equal dates: the later item first (reversed stable sort, as the reference).
* ``random``: a permutation seeded by (seed, example id), so top-k samples WITHOUT replacement and every
  example's draw is reproducible on its own (the reference used unseeded ``random.choices``, i.e. with
  replacement).

Prompt-time selection (:func:`select_items`) adds the reference's ``recency_contriever``: the first
floor(k/2) items of the dense ranking (or of the already ranked profile with ``is_ranked``) followed by the
floor(k/2) most recent items, as in the reference's prompts.py, so an odd k gives k - 1 items and an item
both relevant and recent appears twice (spec lamp.md 3.3).
"""
from __future__ import annotations

import math
import random
from dataclasses import dataclass
from functools import lru_cache, partial
from itertools import chain
from typing import Callable, Iterator, Mapping, Sequence

import numpy as np
from tqdm.auto import tqdm

from data.cli import option
from data.errors import InputError, input_error
from data.parallel import default_workers, forks_workers, ordered_map
from data.records import Example
from data.tasks import TaskSpec

RANKERS = ("bm25", "contriever", "recency", "random")
# What a prompt's items can come from: a ranker, or the reference's mix of dense ranking and recency.
RETRIEVERS = (*RANKERS, "recency_contriever")
# How dense scores are searched: a faiss flat inner-product index, or torch one question at a time.
DENSE_INDEXES = ("faiss", "torch")
DEFAULT_DENSE_INDEX = "faiss"
BM25_K1, BM25_B, BM25_EPSILON = 1.5, 0.75, 0.25
PARALLEL_MIN_CHUNKS = 32   # below this many chunks, worker processes cost more than they save
CHUNK_CORPORA = 8           # corpora per Arrow call: small buffers are reused warm (64 was 1.5x slower)
# Separator tokens between documents: the first character that occurs in none of a chunk's texts.
_SEPARATOR_CANDIDATES = "\x00\x01\x02\x03" + "".join(map(chr, range(0xE000, 0xE100)))


# ----------------------------------------------------------------------------- term statistics

@dataclass
class QueryTerms:
    """Whitespace-token statistics of one question over its own profile (the corpus).

    Profile terms are numbered 0..V-1 in order of first occurrence in the profile (rank_bm25's order).
    """

    doc_len: np.ndarray      # [n] tokens per document
    df: np.ndarray           # [V] documents containing each profile term
    terms: np.ndarray        # [U] distinct query terms that occur in the profile (term numbers, sorted)
    query_terms: np.ndarray  # the query's in-profile tokens in query order, repeats kept, as indices into terms
    tf: np.ndarray           # [n, U] occurrences of terms[u] in document d


def map_term_statistics(queries: Sequence[str], corpora: Sequence[Sequence[str]],
                        score: Callable[[QueryTerms], np.ndarray], workers: int | None = None,
                        progress: bool = False, desc: str = "bm25") -> list[np.ndarray]:
    """``[score(QueryTerms of question i)]`` for every question, tokenized with ``str.split()`` semantics.

    Why not rank_bm25 itself: it builds Python dicts per document for every question and loops over the
    query tokens in Python (about 600 ns per profile token). Here Arrow's C++ kernels split and hash the
    tokens (``utf8_split_whitespace`` splits on exactly the characters ``str.isspace()`` accepts, checked
    over every code point; pure-ASCII chunks take the ASCII kernel) and numpy counts, with no Python
    loop over tokens. Questions asking the same corpus (time-based LaMP splits, OPPU/CoPe users) share
    one tokenization of it. Chunks of corpora are spread over ``workers`` processes (default: every core)
    when there are enough of them and processes can be forked (Linux); processes, not threads, because
    Arrow's hashing kernels hold the GIL.
    """
    results = [np.zeros(0)] * len(queries)
    empty, chunks = _corpus_chunks(queries, corpora)
    for index in empty:
        results[index] = score(_NO_TERMS)
    processes = default_workers(workers) if len(chunks) >= PARALLEL_MIN_CHUNKS and forks_workers() else 1
    global _WORK
    # Forked workers inherit the texts through this global; a job is only a chunk number (pickling the
    # texts to the workers cost a third of the work).
    _WORK = (queries, chunks, score)
    try:
        with tqdm(total=len(queries), initial=len(empty), desc=desc, unit="q", disable=not progress) as bar:
            for done in ordered_map(_score_chunk, range(len(chunks)), processes):
                for index, result in done:
                    results[index] = result
                bar.update(len(done))
    finally:
        _WORK = None
    return results


_WORK = None   # (queries, chunks, score) of the running map_term_statistics call


def _score_chunk(chunk_number: int) -> list[tuple[int, np.ndarray]]:
    queries, chunks, score = _WORK
    return [(index, score(stats)) for index, stats in _chunk_statistics(queries, chunks[chunk_number], _SCRATCH)]


_EMPTY = np.zeros(0, np.int64)
_NO_TERMS = QueryTerms(_EMPTY, _EMPTY, _EMPTY, _EMPTY, np.zeros((0, 0), np.int64))


def _corpus_chunks(queries: Sequence[str], corpora: Sequence[Sequence[str]]):
    """Indices of questions with an empty corpus, and chunks of ``(corpus, [indices of its questions])``."""
    if len(queries) != len(corpora):
        raise ValueError(f"{len(queries)} queries for {len(corpora)} corpora")
    askers: dict[tuple[str, ...], list[int]] = {}
    empty = []
    for index, corpus in enumerate(corpora):
        if corpus:
            askers.setdefault(tuple(corpus), []).append(index)
        else:
            empty.append(index)
    groups = list(askers.items())
    return empty, [groups[start:start + CHUNK_CORPORA] for start in range(0, len(groups), CHUNK_CORPORA)]


def _chunk_statistics(queries: Sequence[str], chunk, distinct: _DistinctPairs) -> Iterator[tuple[int, QueryTerms]]:
    """Tokenize one chunk of corpora and their questions in a few Arrow calls."""
    import pyarrow.compute as pc

    everything = "".join(chain(*(corpus for corpus, _ in chunk),
                               (queries[index] for _, indices in chunk for index in indices)))
    separator = _separator(everything)
    texts = []
    for corpus, indices in chunk:
        # "SEP d0 SEP d1 ... SEP dn-1": the separator is the first token (id 0) and opens each document.
        texts.append(f"{separator} {f' {separator} '.join(corpus)}".rstrip())
        # An empty query becomes one "" token, which is never a profile term.
        texts.extend(queries[index].strip() for index in indices)
    # Python's whitespace \x1c-\x1f is not whitespace to Arrow's ASCII kernel (twice as fast as UTF-8's).
    ascii_kernel = (everything.isascii() and separator.isascii()
                    and not any(c in everything for c in "\x1c\x1d\x1e\x1f"))
    tokens = _split_whitespace(texts, ascii_kernel)
    offsets = tokens.offsets.to_numpy()
    first_text = 0
    for corpus, indices in chunk:
        bounds = offsets[first_text:first_text + len(indices) + 2] - offsets[first_text]
        # The corpus first: its terms get ids 1..V in order of first occurrence (rank_bm25's order);
        # tokens seen only in a query get ids above V.
        ids = pc.dictionary_encode(tokens.values.slice(offsets[first_text], bounds[-1])).indices.to_numpy()
        profile = _Profile(ids[:bounds[1]], len(corpus), distinct)
        for k, index in enumerate(indices):
            yield index, profile.query_terms(ids[bounds[k + 1]:bounds[k + 2]])
        first_text += len(indices) + 1


class _Profile:
    """Token statistics of one corpus, from its token ids (separators are id 0)."""

    def __init__(self, ids: np.ndarray, n: int, distinct: _DistinctPairs):
        is_separator = ids == 0
        self.ids = ids
        self.doc = np.cumsum(is_separator, dtype=np.int64) - 1
        self.doc_len = np.diff(np.flatnonzero(is_separator), append=len(ids)) - 1
        self.vocab = vocab = int(ids.max())             # profile terms are ids 1..vocab
        first = distinct.first(self.doc * (vocab + 1) + ids, n * (vocab + 1))
        self.df = np.bincount(ids[first], minlength=vocab + 1)[1:]

    def query_terms(self, query_ids: np.ndarray) -> QueryTerms:
        n = len(self.doc_len)
        terms, query_terms = np.unique(query_ids[(query_ids >= 1) & (query_ids <= self.vocab)],
                                       return_inverse=True)
        column = np.full(self.vocab + 1, -1, np.int32)
        column[terms] = np.arange(len(terms))
        token_column = column[self.ids]
        hit = np.flatnonzero(token_column >= 0)
        tf = np.bincount(self.doc[hit] * len(terms) + token_column[hit], minlength=n * len(terms))
        return QueryTerms(doc_len=self.doc_len, df=self.df, terms=terms - 1, query_terms=query_terms,
                          tf=tf.reshape(n, len(terms)))


class _DistinctPairs:
    """Marks one occurrence of every distinct key in O(len) time, without sorting.

    Each key's slot in a reused scratch array receives the position of one of its occurrences; reading
    the slots back, exactly one position per key finds itself there (whichever write won). Key spaces
    too large for the scratch array fall back to sorting.
    """

    MAX_SLOTS = 1 << 25

    def __init__(self):
        self.slots = np.empty(0, np.int64)
        self.positions = np.arange(0)

    def first(self, keys: np.ndarray, key_space: int) -> np.ndarray:
        if key_space > self.MAX_SLOTS:
            mask = np.zeros(len(keys), bool)
            mask[np.unique(keys, return_index=True)[1]] = True
            return mask
        if len(self.slots) < key_space:
            self.slots = np.empty(max(key_space, 2 * len(self.slots)), np.int64)
        if len(self.positions) < len(keys):
            self.positions = np.arange(max(len(keys), 2 * len(self.positions)))
        positions = self.positions[:len(keys)]
        self.slots[keys] = positions
        return self.slots[keys] == positions


_SCRATCH = _DistinctPairs()   # per process: worker processes get their own copy when forked


def _split_whitespace(texts: list[str], ascii_kernel: bool):
    """Arrow ListArray of the texts' whitespace tokens; lone surrogates go in as ``surrogatepass`` bytes,
    which the UTF-8 kernel keeps inside their tokens."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if ascii_kernel:
        return pc.ascii_split_whitespace(pa.array(texts, pa.string()))
    try:
        strings = pa.array(texts, pa.string())
    except UnicodeEncodeError:
        strings = pa.array([text.encode("utf-8", "surrogatepass") for text in texts], pa.binary()).view(pa.string())
    return pc.utf8_split_whitespace(strings)


def _separator(text: str) -> str:
    for candidate in _SEPARATOR_CANDIDATES:
        if candidate not in text:
            return candidate
    raise ValueError("no separator character is free in these texts")


# ----------------------------------------------------------------------------- BM25

@lru_cache(maxsize=4096)
def _okapi_idf_table(n: int) -> np.ndarray:
    """idf(df) for df = 0..n with math.log, as rank_bm25 computes it (numpy's log may differ in the last bit)."""
    return np.array([math.log(n - df + 0.5) - math.log(df + 0.5) for df in range(n + 1)])


def okapi_scores(stats: QueryTerms, k1: float = BM25_K1, b: float = BM25_B,
                 epsilon: float = BM25_EPSILON) -> np.ndarray:
    """rank_bm25 0.2.2 ``BM25Okapi.get_scores`` from the statistics, bit for bit.

    Same float operations in the same order: idf per profile term with math.log, the mean idf summed
    sequentially in first-occurrence order (cumsum), negative idfs set to epsilon x mean, and per query
    token (repeats included) ``idf * (tf*(k1+1) / (tf + k1*(1-b+b*len/avgdl)))`` added to the running
    score in query order (cumsum over the query axis; tokens outside the profile add exactly 0).
    """
    n = len(stats.doc_len)
    if not len(stats.query_terms):
        return np.zeros(n)
    idf = _okapi_idf_table(n)[stats.df]
    mean_idf = np.cumsum(idf)[-1] / len(idf)
    idf[idf < 0] = epsilon * mean_idf
    avgdl = int(stats.doc_len.sum()) / n
    norm = k1 * (1 - b + b * stats.doc_len / avgdl)
    tf = stats.tf.T                                                 # [distinct query terms, n]
    per_term = idf[stats.terms][:, None] * (tf * (k1 + 1) / (tf + norm))
    return np.cumsum(per_term[stats.query_terms], axis=0)[-1]


def bm25_scores(queries: Sequence[str], corpora: Sequence[Sequence[str]], k1: float = BM25_K1,
                b: float = BM25_B, epsilon: float = BM25_EPSILON, workers: int | None = None,
                progress: bool = False) -> list[np.ndarray]:
    """Per question, the BM25Okapi scores of its own documents, equal to
    ``rank_bm25.BM25Okapi([d.split() for d in corpus], k1=k1, b=b, epsilon=epsilon).get_scores(query.split())``.

    An empty corpus gives an empty array and a corpus without any token zeros (rank_bm25 divides by zero).
    """
    return map_term_statistics(queries, corpora, partial(okapi_scores, k1=k1, b=b, epsilon=epsilon),
                               workers=workers, progress=progress)


def bm25_order(scores: np.ndarray) -> np.ndarray:
    """Indices best first, ties in the reference's order (``np.argsort(scores)[::-1]``, as get_top_n)."""
    return np.argsort(scores)[::-1]


# ----------------------------------------------------------------------------- dense

def dense_vectors(queries: Sequence[str], corpora: Sequence[Sequence[str]], encoder, batch_size: int = 64,
                  progress: bool = False):
    """``({text: row}, vectors [distinct texts, dim])``: every distinct text of the run (queries and documents
    of all questions) encoded once, in length-sorted batches across questions, kept in memory."""
    rows = {text: row for row, text in enumerate(dict.fromkeys(chain(queries, chain.from_iterable(corpora))))}
    return rows, encoder.encode(list(rows), batch_size=batch_size, normalize=False, progress=progress)


def dense_scores(queries: Sequence[str], corpora: Sequence[Sequence[str]], encoder, batch_size: int = 64,
                 progress: bool = False) -> list[np.ndarray]:
    """Per question, the dot products of its documents' embeddings with the query's (unnormalized), one
    question at a time in torch (the ``torch`` dense index)."""
    rows, vectors = dense_vectors(queries, corpora, encoder, batch_size, progress)
    scores = []
    for query, corpus in zip(tqdm(queries, desc="dense scores", unit="q", disable=not progress), corpora):
        documents = vectors[[rows[text] for text in corpus]]
        scores.append((documents @ vectors[rows[query]]).numpy())
    return scores


def dense_order(scores: np.ndarray) -> np.ndarray:
    """Indices best first; equal scores keep profile order (both dense indexes rank through this)."""
    return np.argsort(-scores, kind="stable")


def faiss_dense_orders(queries: Sequence[str], corpora: Sequence[Sequence[str]], encoder, batch_size: int = 64,
                       progress: bool = False) -> list[np.ndarray]:
    """Per question, its profile indices best first, searched in a faiss flat inner-product index.

    One ``IndexFlatIP`` per distinct profile holds its distinct documents, and every question asking that
    profile (time-based LaMP splits, OPPU/CoPe users) is searched in one call (one BLAS product from 20
    queries up). Scores are the same unnormalized dot products as :func:`dense_scores`; the order is then
    taken from them by :func:`dense_order`, so exact ties keep profile order in both paths (faiss's own
    order of equal scores is not specified). Repeated texts share one index row, so they tie exactly. The
    float32 sums of faiss's kernels and torch's may differ in the last bit: two items whose scores differ
    by that much could swap between the paths (none does on the embedded sample, see the tests).
    """
    rows, vectors = dense_vectors(queries, corpora, encoder, batch_size, progress)
    matrix = np.ascontiguousarray(vectors.float().numpy())
    askers: dict[tuple[str, ...], list[int]] = {}
    for index, corpus in enumerate(corpora):
        askers.setdefault(tuple(corpus), []).append(index)
    orders = [np.zeros(0, np.int64)] * len(queries)
    with tqdm(total=len(queries), desc="faiss search", unit="q", disable=not progress) as bar:
        for corpus, indices in askers.items():
            if corpus:
                distinct = {text: position for position, text in enumerate(dict.fromkeys(corpus))}
                index = flat_ip_index(matrix[[rows[text] for text in distinct]])
                found_scores, found_rows = index.search(matrix[[rows[queries[i]] for i in indices]], len(distinct))
                of_item = np.array([distinct[text] for text in corpus])
                for question, row_scores, row_ids in zip(indices, found_scores, found_rows):
                    scores = np.empty(len(distinct), np.float32)
                    scores[row_ids] = row_scores
                    orders[question] = dense_order(scores[of_item])
            bar.update(len(indices))
    return orders


GPU_MAX_K = 2048   # faiss's GPU k-selection limit: larger profiles are searched on the CPU index


def flat_ip_index(documents: np.ndarray):
    """A faiss ``IndexFlatIP`` over ``documents`` [n, dim] float32; on the GPU when faiss-gpu sees one."""
    import faiss

    index = faiss.IndexFlatIP(documents.shape[1])
    gpu = _gpu_resources()
    if gpu is not None and len(documents) <= GPU_MAX_K:
        index = faiss.index_cpu_to_gpu(gpu, 0, index)
    index.add(documents)
    return index


@lru_cache(maxsize=1)
def _gpu_resources():
    """faiss GPU resources (made once: they hold the scratch memory), or None without faiss-gpu and CUDA."""
    import faiss

    if not hasattr(faiss, "StandardGpuResources") or faiss.get_num_gpus() < 1:
        return None
    return faiss.StandardGpuResources()


def dense_orders(queries: Sequence[str], corpora: Sequence[Sequence[str]], encoder, batch_size: int = 64,
                 progress: bool = False, dense_index: str = DEFAULT_DENSE_INDEX) -> list[np.ndarray]:
    """Per question, its profile indices best first, by ``dense_index`` ("faiss" or "torch"): same scores,
    same tie-break (:func:`dense_order`)."""
    if dense_index == "faiss":
        return faiss_dense_orders(queries, corpora, encoder, batch_size, progress)
    if dense_index == "torch":
        return [dense_order(s) for s in dense_scores(queries, corpora, encoder, batch_size, progress)]
    raise ValueError(f"unknown dense index {dense_index!r}; available: {', '.join(DENSE_INDEXES)}")


# ----------------------------------------------------------------------------- recency and random

def date_key(value) -> tuple[int, ...]:
    """``"2019-03-04"`` -> (2019, 3, 4), ``"2020"`` or 2020 -> (2020,) (the reference's parsing)."""
    return tuple(int(part) for part in str(value).split("-"))


def recency_order(spec: TaskSpec, example: Example) -> list[int]:
    """Profile indices newest first (see the module docstring for undated items and ties)."""
    keys = []
    for item in example.profile:
        value = item.get(spec.date_field) if spec.date_field else None
        try:
            keys.append(() if value is None else date_key(value))
        except ValueError:
            raise input_error(None, f"question {example.id!r}: {value!r} is not a date (YYYY-MM-DD or YYYY)",
                              record=item.get("id"), field=spec.date_field) from None
    return sorted(range(len(keys)), key=keys.__getitem__)[::-1]


def random_order(example: Example, seed: int) -> list[int]:
    """A permutation of the profile indices seeded by (seed, example id): sampling without replacement."""
    order = list(range(len(example.profile)))
    random.Random(f"{seed}:{example.id}").shuffle(order)
    return order


# ----------------------------------------------------------------------------- public API

def rank_indices(spec: TaskSpec, examples: Sequence[Example], ranker: str, use_date: bool = False,
                 encoder=None, seed: int = 0, batch_size: int = 64, progress: bool = True,
                 workers: int | None = None, dense_index: str = DEFAULT_DENSE_INDEX) -> list[list[int]]:
    """Per example, the indices of all its profile items, best first (``workers``: bm25 processes;
    ``dense_index``: how contriever scores are searched, see :func:`dense_orders`)."""
    if ranker not in RANKERS:
        raise ValueError(f"unknown ranker {ranker!r}; available: {', '.join(RANKERS)}")
    if ranker == "recency":
        return [recency_order(spec, example) for example in examples]
    if ranker == "random":
        return [random_order(example, seed) for example in examples]
    queries = [spec.query(example.input) for example in examples]
    corpora = [[spec.document(item, use_date) for item in example.profile] for example in examples]
    if ranker == "bm25":
        return [bm25_order(s).tolist() for s in bm25_scores(queries, corpora, workers=workers, progress=progress)]
    if encoder is None:
        from lm import load_encoder

        encoder = load_encoder("default")
    return [order.tolist() for order in dense_orders(queries, corpora, encoder, batch_size, progress, dense_index)]


def rank_examples(spec: TaskSpec, examples: Sequence[Example], ranker: str, use_date: bool = False,
                  encoder=None, seed: int = 0, batch_size: int = 64, progress: bool = True,
                  workers: int | None = None, dense_index: str = DEFAULT_DENSE_INDEX) -> list[list[str]]:
    """Per example, the ids of all its profile items, best first (the rank_profiles output)."""
    orders = rank_indices(spec, examples, ranker, use_date=use_date, encoder=encoder, seed=seed,
                          batch_size=batch_size, progress=progress, workers=workers, dense_index=dense_index)
    return [[str(example.profile[i]["id"]) for i in order] for example, order in zip(examples, orders)]


def select_items(spec: TaskSpec, examples: Sequence[Example], k: int, retriever: str, is_ranked: bool = False,
                 use_date: bool = False, encoder=None, seed: int = 0, batch_size: int = 64,
                 progress: bool = True, dense_index: str = DEFAULT_DENSE_INDEX) -> list[list[Mapping]]:
    """Per example, its top-``k`` profile items (fewer when the profile is shorter), best first.

    ``is_ranked``: the profiles are already ordered (merge_with_rank output), so the first ``k`` are taken
    whatever ``retriever`` says, as the reference does; ``recency_contriever`` then mixes that order with
    recency (module docstring).
    """
    if k < 0:
        raise ValueError(f"k must be >= 0, got {k}")
    if retriever not in RETRIEVERS:
        raise ValueError(f"unknown retriever {retriever!r}; available: {', '.join(RETRIEVERS)}")
    if retriever == "recency_contriever":
        if is_ranked:
            relevant = [list(range(len(example.profile))) for example in examples]
        else:
            relevant = rank_indices(spec, examples, "contriever", use_date=use_date, encoder=encoder,
                                    batch_size=batch_size, progress=progress, dense_index=dense_index)
        recent = rank_indices(spec, examples, "recency")
        orders = [ranked[:k // 2] + newest[:k // 2] for ranked, newest in zip(relevant, recent)]
        return [[example.profile[i] for i in order] for example, order in zip(examples, orders)]
    if is_ranked:
        return [list(example.profile[:k]) for example in examples]
    orders = rank_indices(spec, examples, retriever, use_date=use_date, encoder=encoder, seed=seed,
                          batch_size=batch_size, progress=progress, dense_index=dense_index)
    return [[example.profile[i] for i in order[:k]] for example, order in zip(examples, orders)]


@dataclass
class RetrievalOptions:
    """Which profile items go into a prompt (evaluate_llm, train_llm and the methods built on them)."""

    use_profile: bool = option(False, "put retrieved profile items in the prompt")
    retriever: str = option("bm25", "how profile items are chosen (with --is_ranked: only recency_contriever "
                                    "changes the given order)", choices=RETRIEVERS)
    is_ranked: bool = option(False, "profiles are already ordered (merge_with_rank output): take the first K")
    num_retrieved: int = option(1, "K, profile items in the prompt", minimum=0)
    retriever_model: str = option("default", "dense encoder for contriever / recency_contriever: 'default' "
                                             "(packaged all-MiniLM-L6-v2) or an HF encoder folder or cached hub id "
                                             "such as facebook/contriever", aliases=["--contriever_checkpoint"])
    use_date: bool = option(False, "append ' date: <date>' to retrieval documents")
    dense_index: str = option(DEFAULT_DENSE_INDEX, "how dense (contriever) scores are searched: a faiss flat "
                                                   "inner-product index (GPU with faiss-gpu and CUDA) or torch, "
                                                   "one question at a time; same rankings", choices=DENSE_INDEXES)

    def needs_encoder(self) -> bool:
        return self.use_profile and (self.retriever == "recency_contriever"
                                     or (self.retriever == "contriever" and not self.is_ranked))

    def retrieve(self, spec: TaskSpec, examples: Sequence[Example], seed: int = 0,
                 load_encoder=None) -> list[list[Mapping]] | None:
        """Top-K profile items per example; None without ``use_profile``.

        ``seed``: the random retriever's; ``load_encoder(name)`` loads the dense encoder when one is needed
        (default: ``lm.load_encoder``, offline).
        """
        if not self.use_profile:
            return None
        if self.num_retrieved < 1:
            raise InputError(f"--num_retrieved must be at least 1 with --use_profile, got {self.num_retrieved}")
        encoder = None
        if self.needs_encoder():
            if load_encoder is None:
                from lm import load_encoder
            encoder = load_encoder(self.retriever_model)
        return select_items(spec, examples, self.num_retrieved, self.retriever, is_ranked=self.is_ranked,
                            use_date=self.use_date, encoder=encoder, seed=seed, dense_index=self.dense_index)
