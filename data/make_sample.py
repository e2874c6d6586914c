"""Write a small, deterministic, SYNTHETIC sample of every registry task in the official file formats.

    python -m data.make_sample                       # regenerates data/sample (committed)
    python -m data.make_sample --out /tmp/sample --seed 1

Every user has a planted, consistent personal style, so using the profile measurably helps:
generated outputs carry the user's signature prefix, casing, favourite words and length (short
outputs) or signature opening and closing sentences and favourite adverbs (long-form outputs);
label outputs follow the user's favourite label (70% of the profile and the question) or typical
score. Question golds apply the same style to the question's content. The same seed gives
byte-identical files. The texts are made up; they are for tests and smoke runs, not for results.
"""
from __future__ import annotations

import argparse
import random
import string
from pathlib import Path
from typing import Callable, Sequence

from data.cli import parse_args, run, writable_dir
from data.errors import InputError
from data.io import atomic_write_text
from data.loaders import write_lamp_outputs, write_lamp_questions, write_longlamp_records
from data.records import Example
from data.tasks import TaskSpec, list_tasks

SAMPLE_DIR = Path(__file__).resolve().parent / "sample"
SPLITS = {"LaMP": ("train", "dev"), "LongLaMP": ("train", "val")}
FIRST_QUESTION_ID = {"train": 1000, "dev": 2000, "val": 2000}
PROFILE_SIZES = (10, 20)            # items per profile, inclusive; keeps the whole sample under 3 MB
TYPICAL_SHARE = 0.7                 # share of profile items carrying the user's favourite label / score
YEARS = (2012, 2022)

# ----------------------------------------------------------------------------- vocabulary

DOMAINS = {
    "city": ("council", "budget", "bridge", "river", "park", "library", "tram", "housing", "market", "school",
             "harbour", "museum"),
    "science": ("protein", "telescope", "enzyme", "galaxy", "sensor", "fossil", "vaccine", "laser", "genome",
                "glacier", "neuron", "catalyst"),
    "sport": ("striker", "league", "stadium", "coach", "marathon", "derby", "keeper", "cyclist", "trophy",
              "rookie", "medal", "season"),
    "tech": ("kernel", "compiler", "router", "cache", "driver", "parser", "cluster", "firmware", "scheduler",
             "database", "socket", "buffer"),
    "food": ("bakery", "harvest", "recipe", "cheese", "orchard", "noodle", "vineyard", "spice", "kitchen",
             "chocolate", "dumpling", "olive"),
    "travel": ("airport", "ferry", "island", "hostel", "railway", "canyon", "visa", "festival", "beach",
               "mountain", "passport", "lagoon"),
}
VERBS = (("approved", "approves"), ("delayed", "delays"), ("expanded", "expands"), ("tested", "tests"),
         ("rebuilt", "rebuilds"), ("cancelled", "cancels"), ("launched", "launches"), ("reviewed", "reviews"))
LINE_PATTERNS = ("The {a} {past} the {b}", "New {a} plans for the {b}", "Why the {a} {past} the {b}",
                 "The {a} and the {b} after the {c} talks")
BODY_PATTERNS = ("the {a} {past} the {b} near the {c} on {day}.",     # first: names every topic word
                 "officials said the {b} would reopen once the {c} was ready.",
                 "local groups welcomed the {a} but asked about the {c}.",
                 "a report on the {b} and the {c} is expected next {month}.",
                 "the {c} team {past} a second {a} plan this week.")
DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
MONTHS = ("January", "March", "May", "July", "September", "November")

# What makes one user's writing recognisable.
PREFIXES = ("[Ops] ", "BREAKING: ", "net: ", "docs: ", "Re: ", ">> ", "Update: ", "(news) ", "fs: ",
            "Weekly: ", "FYI: ", "core: ", "Opinion: ", "** ", "Exclusive: ", "log: ")
CASINGS = {"title": lambda text: " ".join(w.capitalize() for w in text.split()),
           "lower": str.lower, "upper": str.upper, "sentence": lambda text: text[:1].upper() + text[1:]}
SHORT_WORDS = ("fresh", "bold", "quiet", "big", "rapid", "tiny", "wild", "smart", "grand", "brave", "crisp",
               "lucky")
ADVERBS = ("honestly", "frankly", "basically", "truly", "clearly", "happily", "notably", "oddly", "luckily",
           "sadly")
OPENINGS = ("Quick update from the desk.", "Hi team, here is the news.", "Long story short, it happened.",
            "Greetings from the lab bench.", "Here is the thing, friends.", "Dear readers, a short note.",
            "Back again with another story.", "So, about this week.")
CLOSINGS = ("Cheers, Sam.", "More soon, stay tuned.", "Stay curious, everyone.", "That is all for now.",
            "Thanks for reading!", "Onwards and upwards.", "Talk soon, A.", "Until next time.")


class Persona:
    """One synthetic user's planted style and preferences."""

    def __init__(self, spec: TaskSpec, rng: random.Random):
        self.domain = rng.choice(sorted(DOMAINS))
        self.prefix = rng.choice(PREFIXES)
        self.casing = rng.choice(sorted(CASINGS))
        self.short_word = rng.choice(SHORT_WORDS)
        self.headline_length = rng.randint(3, 7)
        self.adverbs = rng.sample(ADVERBS, 2)
        self.opening = rng.choice(OPENINGS)
        self.closing = rng.choice(CLOSINGS)
        self.label = rng.choice(spec.labels) if spec.labels else None


class Topic:
    """What one text is about: three nouns of a domain and a verb."""

    def __init__(self, domain: str, rng: random.Random):
        self.a, self.b, self.c = rng.sample(DOMAINS[domain], 3)
        self.past, self.present = rng.choice(VERBS)
        self.day, self.month = rng.choice(DAYS), rng.choice(MONTHS)

    def fill(self, pattern: str) -> str:
        return pattern.format(**vars(self))


# ----------------------------------------------------------------------------- field content

def neutral_line(topic: Topic, rng: random.Random) -> str:
    return topic.fill(rng.choice(LINE_PATTERNS))


def neutral_body(topic: Topic, rng: random.Random) -> str:
    """The sentence naming all topic words (so golds are grounded in the input), then one more."""
    sentences = (BODY_PATTERNS[0], rng.choice(BODY_PATTERNS[1:]))
    return " ".join(CASINGS["sentence"](topic.fill(p)) for p in sentences)


def neutral_rating(topic: Topic, rng: random.Random) -> str:
    return f"{rng.randint(1, 5)}.0"


# Neutral (unstyled) content of each text field, keyed by the field names the registry uses.
# Fields missing here are a task's label field (tag, category, score).
FIELD_CONTENT: dict[str, Callable[[Topic, random.Random], str]] = {
    "title": neutral_line, "summary": neutral_line, "overall": neutral_rating,
    "text": neutral_body, "abstract": neutral_body, "description": neutral_body, "reviewText": neutral_body,
    "content": neutral_body,
}


def styled_short(persona: Persona, topic: Topic, rng: random.Random) -> str:
    """A headline/title/subject/tweet in the user's style: prefix, casing, favourite word, length."""
    words = [persona.short_word, topic.a, topic.present, topic.b, "near", topic.c, "today"]
    return persona.prefix + CASINGS[persona.casing](" ".join(words[:persona.headline_length]))


def styled_long(persona: Persona, topic: Topic, rng: random.Random) -> str:
    """A long-form text in the user's style: signature opening and closing, favourite adverbs."""
    patterns = (BODY_PATTERNS[0], rng.choice(BODY_PATTERNS[1:]))
    sentences = [f"{adverb.capitalize()}, {topic.fill(p)}" for adverb, p in zip(persona.adverbs, patterns)]
    return " ".join([persona.opening, *sentences, persona.closing])


STYLED_OUTPUT = {"LaMP": styled_short, "LongLaMP": styled_long}


def personal_label(spec: TaskSpec, persona: Persona, typical: bool, rng: random.Random) -> str:
    """The user's favourite label (classification) or typical score (regression), or a near miss."""
    if typical:
        return persona.label
    if spec.kind == "regression":
        score = int(persona.label)
        return str(rng.choice([s for s in (score - 1, score + 1) if str(s) in spec.labels]))
    return rng.choice([label for label in spec.labels if label != persona.label])


def field_value(spec: TaskSpec, field: str, persona: Persona, topic: Topic, typical: bool,
                rng: random.Random) -> str:
    """One field of a profile item (or a question's gold when ``field`` is the output field)."""
    if field not in FIELD_CONTENT:
        if field != spec.item_output_field or spec.kind == "generation":
            raise ValueError(f"{spec.name}: no content generator for field {field!r}; add one to FIELD_CONTENT")
        return personal_label(spec, persona, typical, rng)
    if field == spec.item_output_field and spec.kind == "generation":
        return STYLED_OUTPUT[spec.benchmark](persona, topic, rng)
    return FIELD_CONTENT[field](topic, rng)


# ----------------------------------------------------------------------------- question inputs beyond item fields

def keyword_list(spec: TaskSpec, persona: Persona, topic: Topic, rng: random.Random) -> tuple[dict, None]:
    """LongLaMP_2: the keywords ("items") of the paper to write the abstract for."""
    return {"items": ", ".join((topic.a, topic.b, topic.c))}, None


def reference_choice(spec: TaskSpec, persona: Persona, topic: Topic, rng: random.Random) -> tuple[dict, str]:
    """LaMP_1: the paper's title mixes the user's domain with another one, so the title alone cannot
    tell which candidate reference is the user's (own domain, like the profile) and which is not."""
    other_domain = rng.choice(sorted(set(DOMAINS) - {persona.domain}))
    other = Topic(other_domain, rng)
    title = f"The {topic.a} and the {other.a} after the {topic.b} and {other.b} talks"
    own_reference = neutral_line(Topic(persona.domain, rng), rng)
    other_reference = neutral_line(Topic(other_domain, rng), rng)
    gold = rng.choice(spec.labels)
    first, second = ((own_reference, other_reference) if gold == spec.labels[0]
                     else (other_reference, own_reference))
    return {"title": title, "ref1": first, "ref2": second}, gold


# Keyed by the input-template fields that are not profile-item fields; returns (fields, gold or None).
QUESTION_EXTRAS = {("items",): keyword_list, ("ref1", "ref2"): reference_choice}


# ----------------------------------------------------------------------------- users and files

def template_fields(template: str) -> list[str]:
    return [name for _, name, _, _ in string.Formatter().parse(template) if name]


def make_example(spec: TaskSpec, question_id: int, rng: random.Random) -> Example:
    """One user: a profile in their style and one question whose gold follows the same style."""
    persona = Persona(spec, rng)
    size = rng.randint(*PROFILE_SIZES)
    typical = [i < round(TYPICAL_SHARE * size) for i in range(size)]
    rng.shuffle(typical)
    dates = sorted(f"{rng.randint(*YEARS)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"
                   for _ in range(size))
    profile = []
    for index, (is_typical, date) in enumerate(zip(typical, dates)):
        topic = Topic(persona.domain, rng)
        item = {"id": f"{question_id}{index:02d}"}
        item.update({f: field_value(spec, f, persona, topic, is_typical, rng) for f in spec.item_fields})
        if spec.date_field == "date":
            item["date"] = date
        elif spec.date_field == "year":
            item["year"] = int(date[:4])
        profile.append(item)

    topic = Topic(persona.domain, rng)
    placeholders = template_fields(spec.input_template)
    extra = tuple(sorted(set(placeholders) - set(spec.item_fields)))
    if extra and extra not in QUESTION_EXTRAS:
        raise ValueError(f"{spec.name}: no generator for question fields {extra}; add one to QUESTION_EXTRAS")
    fields, gold = QUESTION_EXTRAS[extra](spec, persona, topic, rng) if extra else ({}, None)
    for name in placeholders:
        if name not in fields:
            fields[name] = FIELD_CONTENT[name](topic, rng)
    if gold is None:
        gold = field_value(spec, spec.item_output_field, persona, topic, True, rng)
    return Example(id=str(question_id), input=spec.input_template.format(**fields), profile=profile,
                   target=gold, user_id=f"user{question_id}", task=spec.name)


def write_lamp_split(spec: TaskSpec, folder: Path, split: str, examples: Sequence[Example]) -> list[Path]:
    return [write_lamp_questions(folder / f"{split}_questions.json", examples),
            write_lamp_outputs(folder / f"{split}_outputs.json", spec.name, examples)]


def write_longlamp_split(spec: TaskSpec, folder: Path, split: str, examples: Sequence[Example]) -> list[Path]:
    return [write_longlamp_records(folder / f"{split}.json", examples, spec.name)]


WRITERS = {"LaMP": write_lamp_split, "LongLaMP": write_longlamp_split}


def write_sample(out: Path, seed: int = 0, users: int = 24) -> list[Path]:
    """Write every registry task's splits and the sample's README under ``out``; return the files."""
    written = []
    rows = []
    for spec in list_tasks():
        for split in SPLITS[spec.benchmark]:
            rng = random.Random(f"{seed}/{spec.name}/{split}")     # str seeds are stable across runs
            first = FIRST_QUESTION_ID[split]
            examples = [make_example(spec, first + i, rng) for i in range(users)]
            written += WRITERS[spec.benchmark](spec, out / spec.name, split, examples)
            rows.append(f"| {spec.name} | {split} | {len(examples)} | "
                        f"{sum(len(e.profile) for e in examples)} | {spec.description} |")
    written.append(atomic_write_text(out / "README.md", sample_readme(seed, users, rows)))
    return written


def sample_readme(seed: int, users: int, rows: list[str]) -> str:
    return f"""# Synthetic sample of every task (generated)

synthetic: true

Made-up text in the official LaMP / LongLaMP file formats, written by
`python -m data.make_sample --seed {seed} --users {users}` (do not edit by hand; rerun it).
For tests, smoke runs and demos only: numbers on it say nothing about real data.

Each user has a planted, consistent style, so a method that uses the profile should beat the same
method without it:

- short generated outputs (LaMP_4-7 headlines, titles, subjects, tweets): a signature prefix
  (e.g. `net: `, `BREAKING: `), a casing (Title Case, lowercase, ALL CAPS, Sentence case), a
  favourite word and a typical length;
- long-form outputs (LongLaMP): a signature opening and closing sentence and two favourite adverbs;
- classification (LaMP_2, LaMP_2N): a favourite label on 70% of the profile and on the question;
- rating (LaMP_3): a typical score on 70% of the profile (the rest one point off) and on the question;
- citation (LaMP_1): the correct reference is on the user's own domain, the same one as the
  profile's papers; the other is on another domain.

Question golds apply the user's style to the question's own content. Profile items carry their
task's date field: `date` (YYYY-MM-DD) for LaMP and LongLaMP_1, `year` for LongLaMP_2.

| task | split | users (questions) | profile items | description |
|---|---|---|---|---|
""" + "\n".join(rows) + "\n"


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m data.make_sample", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=writable_dir, default=SAMPLE_DIR, help="output folder (default: data/sample)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    parser.add_argument("--users", type=int, default=24,
                        help="users (one question each) per split (default: %(default)s)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(make_parser(), argv)
    if args.users < 1:
        raise InputError(f"--users must be at least 1, got {args.users}")
    written = write_sample(args.out, seed=args.seed, users=args.users)
    print(f"wrote {len(written)} files of {len(list_tasks())} tasks to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(run(main))
