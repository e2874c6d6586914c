"""The task registry: aliases, query extraction, documents, templates, CLI."""
import subprocess
import sys

import pytest

from data.errors import InputError
from data.tasks import get_task, list_tasks

ALIASES = {
    "LaMP_4": ["LaMP_4", "LaMP-4", "lamp4", "news_headline"],
    "LaMP_5": ["scholarly_title", "LaMP-5"],
    "LaMP_7": ["tweet_paraphrase"],
    "LaMP_2": ["movie_tagging", "LaMP-2"],
    "LaMP_2N": ["news_categorize", "LaMP-2-old"],
    "LaMP_1": ["citation"],
    "LaMP_3": ["product_rating"],
    "LongLaMP_2": ["abstract_generation", "LongLaMP-2"],
    "LongLaMP_3": ["review_writing", "product_review"],
    "LongLaMP_4": ["topic_writing"],
}


@pytest.mark.parametrize("canonical,aliases", ALIASES.items())
def test_every_alias_resolves(canonical, aliases):
    assert {get_task(a).name for a in aliases} == {canonical}


def test_official_longlamp_numbering():
    assert get_task("LongLaMP_3").item_output_field == "reviewText"
    assert get_task("LongLaMP_4").item_output_field == "content"


def test_unknown_task_suggests_close_names():
    with pytest.raises(InputError, match="did you mean LaMP_4"):
        get_task("lamp_44")


def test_label_sets_and_metrics():
    assert len(get_task("LaMP_2").labels) == 15 and "true story" in get_task("LaMP_2").labels
    assert get_task("LaMP_2N").labels[0] == "food & drink"
    assert get_task("LaMP_3").greater_is_better is False
    assert get_task("LongLaMP_2").metrics == ("rouge-1", "rouge-L", "meteor")


def test_query_extraction_follows_the_official_markers():
    headline = get_task("LaMP_4")
    assert headline.query("Generate a headline for the following article: Stocks rose.") == "Stocks rose."
    citation = get_task("LaMP_1")
    question = citation.input_template.format(title="Mine", ref1="Ref one", ref2="Ref two")
    assert citation.query(question) == "Ref one Ref two"
    abstract = get_task("LongLaMP_2")
    assert abstract.query('Generate an abstract for the title "T" using the following items: a.c, b.h') == "a.c, b.h"
    # A missing marker falls back to the whole input instead of crashing.
    assert abstract.query("no marker here") == "no marker here"


def test_documents_with_and_without_date():
    spec = get_task("LaMP_4")
    item = {"id": "1", "title": "T", "text": "body", "date": "2020-01-02"}
    assert spec.document(item) == "T body"
    assert spec.document(item, use_date=True) == "T body date: 2020-01-02"


def test_official_need_strings():
    item = {"title": "X", "abstract": "long", "text": "t", "tag": "comedy", "description": "d"}
    assert get_task("LaMP_5").template().need_string(item) == '"X" is a title " " '
    assert get_task("LaMP_2").template().need_string(item) == 'the tag for the movie: " " is "comedy" '
    assert get_task("LaMP_7").template().need_string(item) == '"" '


@pytest.mark.parametrize("command", ["ls", "validate"])
def test_cli(command):
    out = subprocess.run([sys.executable, "-m", "data.tasks", command], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert all(spec.name in out.stdout for spec in list_tasks())
