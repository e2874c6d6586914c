"""LaMP tasks (Salemi et al. 2023). Facts: ../shared/spec/lamp.md sections 2-4 and 7.

Templates marked "official" reproduce the reference strings exactly, trailing spaces included; the
``study_*`` templates are the user-profile role study's (spec profile_study A6).
"""
from data.tasks import ItemShape, ProfileTemplate, TaskSpec, register

MOVIE_TAGS = ("sci-fi", "based on a book", "comedy", "action", "twist ending", "dystopia", "dark comedy",
              "classic", "psychology", "fantasy", "romance", "thought-provoking", "social commentary",
              "violence", "true story")
# The LaMP_2 label set before 2024-03-20, in the official scorer's index order.
NEWS_CATEGORIES = ("food & drink", "sports", "education", "parents", "religion", "travel", "business",
                   "crime", "science & technology", "culture & arts", "entertainment", "politics", "women",
                   "style & beauty", "healthy living")
# The order the categories are listed in the question text (differs from the index order above).
NEWS_PROMPT_ORDER = ("women, religion, politics, style & beauty, entertainment, culture & arts, sports, "
                     "science & technology, travel, business, crime, education, healthy living, parents, "
                     "food & drink")

MOVIE_INPUT = ("Which tag does this movie relate to among the following tags? Just answer with the tag name "
               "without further explanation. tags: [" + ", ".join(MOVIE_TAGS) + "] description: {description}")
NEWS_INPUT = ("Which category does this article relate to among the following categories? Just answer with "
              "the category name without further explanation. categories: [" + NEWS_PROMPT_ORDER
              + "] article: {text}")
RATING_INPUT = ("What is the score of the following review on a scale of 1 to 5? just answer with 1, 2, 3, 4, "
                "or 5 without further explanation. review: {text}")
HEADLINE_INPUT = "Generate a headline for the following article: {text}"
SCHOLARLY_INPUT = "Generate a title for the following abstract of a paper: {abstract}"
SUBJECT_INPUT = "Generate a subject for the following email: {text}"
TWEET_INPUT = "Paraphrase the following tweet without any explanation before or after it: {text}"
# OPPU's per-user training prompt for LaMP_1 (its items pair a paper title with a cited title).
OPPU_CITATION_INPUT = "paper title: {title} reference:"
CITATION_INPUT = ('For an author who has written the paper with the title "{title}", which reference is '
                  'related? Just answer with [1] or [2] without explanation. [1]: "{ref1}" [2]: "{ref2}"')

CLASSIFICATION_METRICS = dict(metrics=("accuracy", "f1"), best_metric="accuracy", greater_is_better=True)
SHORT_GENERATION_METRICS = dict(metrics=("rouge-1", "rouge-L"), best_metric="rouge-1", greater_is_better=True)

register(TaskSpec(
    name="LaMP_1", study_pseudo_profile_size=91, aliases=("citation", "citation_identification"), benchmark="LaMP",
    kind="classification", description="Personalized citation identification",
    input_template=CITATION_INPUT, labels=("[1]", "[2]"), query_from_quotes=True,
    item_fields=("title", "abstract"), document_fields=("title", "abstract"),
    # PEFT's per-user training pair for LaMP-1 (the item has no label of the task's form).
    item_prompt_template="Write an abstract for this title: {title}",
    item_input_field="title", item_output_field="abstract",
    max_new_tokens=4, **CLASSIFICATION_METRICS,
    templates={"official": ProfileTemplate(item='"{title}"', field="title",
                                           insert_after_title=True),
               # The study puts the titles after the paper's quoted title: title "X" "t1", and "t2", ...
               "study_both": ProfileTemplate(item='"{title}"', field="title", budget="per_item",
                                             insert_after=r'title "[^"]*"')},
    text_templates={"oppu_input": OPPU_CITATION_INPUT},
    # OPPU's release: the user's paper title and the title of a paper it cites (spec curp_cope_oppu 4.3).
    item_variants=(ItemShape(fields=("title", "citation"), input_field="title", output_field="citation",
                             document_fields=("title", "citation"), prompt_template=OPPU_CITATION_INPUT,
                             source="OPPU"),),
    example_item={"id": "p1", "title": "Attention is all you need", "abstract": "We propose ...",
                  "date": "2017-06-12"},
    example_input_fields={"title": "A paper", "ref1": "First reference", "ref2": "Second reference"},
))

register(TaskSpec(
    name="LaMP_2", study_pseudo_profile_size=159, study_best_metric="f1", aliases=("LaMP_2M", "movie_tagging"), benchmark="LaMP", kind="classification",
    description="Personalized movie tagging (current label set)",
    input_template=MOVIE_INPUT, labels=MOVIE_TAGS, query_marker="description:",
    item_fields=("description", "tag"), document_fields=("description",),
    item_prompt_template=MOVIE_INPUT, item_input_field="description", item_output_field="tag",
    max_new_tokens=8, **CLASSIFICATION_METRICS,
    templates={
        "official": ProfileTemplate(item='the tag for the movie: "{description}" is "{tag}" ',
                                    field="description"),
        "study_both": ProfileTemplate(item='the tag for the movie:"{description}" is "{tag}"', field="description",
                                      budget="per_item"),
        "study_only_output": ProfileTemplate(item='"{tag}"', join="", budget="block",
                                             wrap="the tag for the previous movies are{profile}. {input}"),
        "study_only_input": ProfileTemplate(item='"{description}"', field="description", join="",
                                            budget="per_item", wrap="The previous movies are {profile}. {input}"),
    },
    text_templates={"oppu_input": MOVIE_INPUT + " tag:"},
    example_item={"id": "m1", "description": "A robot falls in love.", "tag": "sci-fi", "date": "2001-01-01"},
    example_input_fields={"description": "Two friends travel to Mars."},
))

register(TaskSpec(
    name="LaMP_2N", aliases=("LaMP_2_old", "LaMP-2-old", "news_categorize", "news_categorization"),
    benchmark="LaMP", kind="classification",
    description="Personalized news categorization (the LaMP_2 label set before 2024-03-20)",
    input_template=NEWS_INPUT, labels=NEWS_CATEGORIES, query_marker="article:",
    item_fields=("title", "text", "category"), document_fields=("title", "text"),
    item_prompt_template=NEWS_INPUT, item_input_field="text", item_output_field="category",
    max_new_tokens=8, **CLASSIFICATION_METRICS,
    templates={"official": ProfileTemplate(item='the category for the article: "{text}" is "{category}" ',
                                           field="text"),
               "study_both": ProfileTemplate(item='the category for the article:"{text}" is "{category}"',
                                             field="text", budget="per_item")},
    text_templates={"oppu_input": NEWS_INPUT + " category:"},
    # Files from before the relabelling say "LaMP_2"; their news categories tell them apart.
    legacy_names=("LaMP_2",),
    # OPPU's release drops the title (spec curp_cope_oppu 4.3).
    item_variants=(ItemShape(fields=("text", "category"), input_field="text", output_field="category",
                             document_fields=("text",), prompt_template=NEWS_INPUT, source="OPPU"),),
    example_item={"id": "n1", "title": "Vote", "text": "The senate voted.", "category": "politics",
                  "date": "2016-01-01"},
    example_input_fields={"text": "The team won the final."},
))

register(TaskSpec(
    name="LaMP_3", study_pseudo_profile_size=188, aliases=("product_rating",), benchmark="LaMP", kind="regression",
    description="Personalized product rating", input_template=RATING_INPUT,
    labels=("1", "2", "3", "4", "5"), query_marker="review:",
    item_fields=("text", "score"), document_fields=("text",),
    item_prompt_template=RATING_INPUT, item_input_field="text", item_output_field="score",
    metrics=("MAE", "RMSE"), best_metric="MAE", greater_is_better=False, max_new_tokens=4,
    templates={
        "official": ProfileTemplate(item='{score} is the score for "{text}" ', field="text"),
        # The study's LaMP_3 items share what a long review leaves of the window.
        "study_both": ProfileTemplate(item='{score} is the score for"{text}"', field="text", budget="per_item",
                                      budget_shrinks_with_input=True),
        "study_only_output": ProfileTemplate(item="{score}", join=", ", budget="block",
                                             wrap="{profile} is the score for the previous review. {input}"),
        "study_only_input": ProfileTemplate(item='"{text}"', field="text", join="", budget="per_item",
                                            wrap="The previous reviews are {profile}. {input}"),
    },
    text_templates={"oppu_input": RATING_INPUT + "\n score:"},
    example_item={"id": "r1", "text": "Great blender, works well.", "score": "5", "date": "2015-01-01"},
    example_input_fields={"text": "Broke after a week."},
))

register(TaskSpec(
    name="LaMP_4", study_pseudo_profile_size=287, aliases=("news_headline", "headline_generation"), benchmark="LaMP", kind="generation",
    description="Personalized news headline generation", input_template=HEADLINE_INPUT,
    query_marker="article:", item_fields=("title", "text"), document_fields=("title", "text"),
    item_prompt_template=HEADLINE_INPUT, item_input_field="text", item_output_field="title",
    max_new_tokens=32, **SHORT_GENERATION_METRICS,
    templates={
        "official": ProfileTemplate(item='"{title}" is the title for "{text}" ', field="text"),
        "study_both": ProfileTemplate(item='"{title}" is the title for"{text}"', field="text", budget="per_item",
                                      reserve_tokens=5),
        "study_only_output": ProfileTemplate(item='"{title}"', join="", budget="block",
                                             wrap="{profile} is the title for previous articles. {input}"),
        "study_only_input": ProfileTemplate(item='"{text}"', field="text", join="", budget="per_item",
                                            wrap="The previous articles are {profile}. {input}"),
    },
    text_templates={"oppu_input": "Generate a headline for the following article.\n article: {text} headline:",
                    "system": "You are a news headline generator."},
    example_item={"id": "h1", "title": "Markets rally", "text": "Stocks rose sharply on Monday.",
                  "date": "2019-03-04"},
    example_input_fields={"text": "The council approved the new budget."},
))

register(TaskSpec(
    name="LaMP_5", study_pseudo_profile_size=90, aliases=("scholarly_title", "scholarly_title_generation"), benchmark="LaMP",
    kind="generation", description="Personalized scholarly title generation",
    input_template=SCHOLARLY_INPUT, query_marker="paper:", item_fields=("title", "abstract"),
    document_fields=("title", "abstract"), item_prompt_template=SCHOLARLY_INPUT,
    item_input_field="abstract", item_output_field="title", max_new_tokens=32, **SHORT_GENERATION_METRICS,
    templates={
        # The official budget string lacks "for" (spec lamp.md 4.3); kept so budgets match the reference.
        "official": ProfileTemplate(item='"{title}" is a title for "{abstract}" ', field="abstract",
                                    need='"{title}" is a title " " ', wrap="{profile}. Following the given "
                                    "patterns {input}", budget_suffix="Following the given patterns"),
        "study_both": ProfileTemplate(item='"{title}" is the title for"{abstract}"', field="abstract",
                                      budget="per_item", wrap="{profile}. Following the given patterns {input}"),
        "study_only_output": ProfileTemplate(item='"{title}"', join="", budget="block", wrap="{profile} is the "
                                             "title for the previous papers. Following the given patterns {input}"),
        "study_only_input": ProfileTemplate(item='"{abstract}"', field="abstract", join="", budget="per_item",
                                            wrap="The previous papers are {profile}. Following the given "
                                                 "patterns {input}"),
    },
    text_templates={"oppu_input": "Generate a title for the following abstract of a paper.\n abstract: "
                                  "{abstract} title:",
                    "system": "You are a scholarly title generator."},
    example_item={"id": "s1", "title": "Deep nets", "abstract": "We study deep networks.", "date": "2020"},
    example_input_fields={"abstract": "We propose a new optimizer."},
))

register(TaskSpec(
    name="LaMP_6", study_pseudo_profile_size=81, aliases=("email_subject", "email_subject_generation"), benchmark="LaMP",
    kind="generation", description="Personalized email subject generation (Avocado, licensed)",
    input_template=SUBJECT_INPUT, query_marker=":", item_fields=("title", "text"),
    document_fields=("text",), item_prompt_template=SUBJECT_INPUT, item_input_field="text",
    item_output_field="title", max_new_tokens=32, **SHORT_GENERATION_METRICS,
    templates={"official": ProfileTemplate(item='"{title}" is the title for "{text}" ', field="text"),
               "study_both": ProfileTemplate(item='"{title}" is the title for"{text}"', field="text",
                                             budget="per_item")},
    text_templates={"oppu_input": "Generate a subject for the following email.\n email: {text} subject:"},
    example_item={"id": "e1", "title": "Lunch", "text": "Shall we meet at noon?", "date": "2001-05-01"},
    example_input_fields={"text": "Please find the report attached."},
))

register(TaskSpec(
    name="LaMP_7", study_pseudo_profile_size=18, aliases=("tweet_paraphrase", "tweet_paraphrasing"), benchmark="LaMP", kind="generation",
    description="Personalized tweet paraphrasing", input_template=TWEET_INPUT, query_marker=":",
    item_fields=("text",), document_fields=("text",), item_prompt_template=TWEET_INPUT,
    item_input_field=None, item_output_field="text", max_new_tokens=48, **SHORT_GENERATION_METRICS,
    templates={
        # The official budget counts "are written by user. ..." while the prompt says "by a person".
        "official": ProfileTemplate(item='"{text}" ', field="text", need='"" ',
                                    wrap="{profile} are written by a person. Following the given patterns "
                                         "{input}",
                                    budget_suffix="are written by user. Following the given patterns"),
        "study_both": ProfileTemplate(item='"{text}"', field="text", budget="per_item", reserve_tokens=10,
                                      wrap="{profile} are written by a person. Following the given patterns {input}"),
    },
    text_templates={"oppu_input": "tweet:"},
    example_item={"id": "t1", "text": "loving this sunny day!!", "date": "2012-07-01"},
    example_input_fields={"text": "It is a nice day today."},
))
