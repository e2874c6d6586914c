"""Tiny random models built on the fly for fast CPU tests (no network, no downloads).

One byte-level BPE tokenizer is trained on a few hundred built-in English sentences; the models are
random transformers config-sized like transformers' own model testers (hidden 32, 2 layers).
``save_causal_lm``/``save_seq2seq_lm``/``save_encoder`` write ``from_pretrained``-loadable folders.
"""
from __future__ import annotations

import itertools
from pathlib import Path

# ChatML-like template: enough to exercise the chat path (system/user/assistant turns, generation prompt).
CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
SPECIAL_TOKENS = ["<pad>", "<s>", "</s>", "<unk>", "<|im_start|>", "<|im_end|>"]

_SUBJECTS = ["the reporter", "a student", "my neighbour", "the city council", "our team", "the old farmer",
             "a young scientist", "the committee"]
_VERBS = ["wrote about", "announced", "criticised", "celebrated", "studied", "reviewed"]
_OBJECTS = ["the new bridge", "a surprising result", "the football match", "local elections",
            "the weather forecast", "a famous novel", "rising food prices", "the museum opening"]
_EXTRA = [
    "Generate a headline for the following article.",
    "Write a short title for this paper abstract.",
    "Which category does this product review belong to?",
    "Rate the review from one to five stars.",
    "Paraphrase the tweet in the style of the user.",
    "The quick brown fox jumps over the lazy dog.",
    "Scientists discovered water on a distant planet yesterday.",
    "Markets fell sharply after the announcement on Monday.",
    "She said the movie was a true story about friendship and loss.",
    "Answer with only the number: 1, 2, 3, 4 or 5.",
]


def english_sentences() -> list[str]:
    """A few hundred deterministic English sentences (8 x 6 x 8 combinations plus fixed prompts)."""
    combos = [f"{s.capitalize()} {v} {o}." for s, v, o in itertools.product(_SUBJECTS, _VERBS, _OBJECTS)]
    return combos + _EXTRA


def build_tokenizer(kind: str = "causal", vocab_size: int = 400):
    """Train a byte-level BPE tokenizer; 'causal' prepends <s> and has a chat template, 'seq2seq' appends </s>."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.BPE(unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    backend.train_from_iterator(english_sentences(), trainer=trainer)
    special_ids = {token: backend.token_to_id(token) for token in SPECIAL_TOKENS}
    if kind == "causal":
        post = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", special_ids["<s>"])])
    elif kind == "seq2seq":
        post = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", special_ids["</s>"])])
    else:
        raise ValueError(f"unknown tokenizer kind {kind!r}")
    backend.post_processor = post
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, bos_token="<s>", eos_token="</s>",
                                        pad_token="<pad>", unk_token="<unk>")
    if kind == "causal":
        tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def save_causal_lm(folder: Path, tokenizer) -> Path:
    """A random LlamaForCausalLM (hidden 32, 2 layers, 4 heads) saved with its tokenizer."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    # A large init (0.2) makes next-token distributions peaked, so greedy decoding has no near-ties that
    # float round-off between padded and unpadded batches could flip.
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id, initializer_range=0.2, tie_word_embeddings=False)
    torch.manual_seed(0)
    return _save(LlamaForCausalLM(config), tokenizer, folder)


def save_seq2seq_lm(folder: Path, tokenizer) -> Path:
    """A random T5ForConditionalGeneration (d_model 32, 2 layers) saved with its tokenizer."""
    import torch
    from transformers import T5Config, T5ForConditionalGeneration

    config = T5Config(vocab_size=len(tokenizer), d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=4,
                      pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
                      decoder_start_token_id=tokenizer.pad_token_id, initializer_factor=4.0)
    torch.manual_seed(0)
    return _save(T5ForConditionalGeneration(config), tokenizer, folder)


def save_encoder(folder: Path, tokenizer) -> Path:
    """A random BertModel (hidden 32, 2 layers) for dense-retrieval tests."""
    import torch
    from transformers import BertConfig, BertModel

    config = BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=37, max_position_embeddings=128, pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(0)
    return _save(BertModel(config), tokenizer, folder)


def _save(model, tokenizer, folder: Path) -> Path:
    model.eval()
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
