"""LongLaMP tasks (Kumar et al. 2024), official numbering: 1 email, 2 abstract, 3 review, 4 topic.

Facts: ../shared/spec/profile_study_baseline_longlamp.md section C. Profile items carry no per-item
date except the abstract task's ``year``, so recency there means the year (elsewhere, list order).
"""
from data.tasks import ProfileTemplate, TaskSpec, register

LONG_METRICS = dict(metrics=("rouge-1", "rouge-L", "meteor"), best_metric="rouge-1", greater_is_better=True)
REVIEW_INPUT = ('Generate the review text written by a reviewer who has a given an overall rating of '
                '"{overall}" for a product with description "{description}". The summary of the review '
                'text is "{summary}".')
ABSTRACT_INPUT = 'Generate an abstract for the title "{title}"'
TOPIC_INPUT = "Generate the content for a reddit post {summary}"
# Not on the HF hub (Avocado, licensed); the wording of the input is lampkit's own.
EMAIL_INPUT = 'Generate the body of an email with the subject: {title}'

register(TaskSpec(
    name="LongLaMP_1", aliases=("email_completion", "email_generation"), benchmark="LongLaMP",
    kind="generation", description="Personalized email completion (Avocado, licensed)",
    input_template=EMAIL_INPUT, query_marker=":", item_fields=("title", "text"), document_fields=("text",),
    item_prompt_template=EMAIL_INPUT, item_input_field="title", item_output_field="text",
    date_field="date", max_new_tokens=256, **LONG_METRICS, user_id_required=True,
    templates={"official": ProfileTemplate(item='"{title}" is the title for "{text}" ', field="text")},
    example_item={"id": "e1", "title": "Lunch", "text": "Shall we meet at noon? Best, A."},
    example_input_fields={"title": "Quarterly report"},
))

register(TaskSpec(
    name="LongLaMP_2", aliases=("abstract_generation", "generation_abstract"), benchmark="LongLaMP",
    kind="generation", description="Personalized abstract generation",
    input_template=ABSTRACT_INPUT + " using the following items: {items}", query_marker="items:",
    item_fields=("title", "abstract"), document_fields=("title", "abstract"),
    item_prompt_template=ABSTRACT_INPUT, item_input_field="title", item_output_field="abstract",
    user_id_field="name", date_field="year", max_new_tokens=256, hf_config="abstract_generation_user",
    **LONG_METRICS, user_id_required=True,
    templates={"official": ProfileTemplate(
        item='"{abstract}" is the abstract for the title "{title}"', field="abstract",
        wrap="{profile}. Use the above abstracts as context to understand the style and language of the "
             "user and, {input}")},
    text_templates={"oppu_input": "Generate an abstract for the title '{title}'.\nAbstract:",
                    "system": "You are an abstract writer."},
    example_item={"id": "a1", "title": "Deep nets", "abstract": "We study deep networks at scale.",
                  "year": "2020"},
    example_input_fields={"title": "Sparse attention", "items": "attention, sparsity"},
))

register(TaskSpec(
    name="LongLaMP_3", aliases=("review_writing", "product_review", "product_review_writing"),
    benchmark="LongLaMP", kind="generation", description="Personalized product review writing",
    input_template=REVIEW_INPUT, item_fields=("overall", "summary", "description", "reviewText"),
    document_fields=("overall", "summary", "description", "reviewText"), item_prompt_template=REVIEW_INPUT,
    item_input_field="description", item_output_field="reviewText", user_id_field="reviewerId",
    date_field=None, max_new_tokens=256, hf_config="product_review_user", **LONG_METRICS,
    user_id_required=True, items_have_ids=False,   # the HF rows' profile items carry no "id"
    templates={"official": ProfileTemplate(
        item='"{overall}" is a rating for the product with description "{description}". "{summary}" is '
             'summary for "{reviewText}" ', field="reviewText",
        wrap="{profile}. Following the given patterns {input}")},
    text_templates={"oppu_input": "Generate a detailed review for a product with the following description: "
                                  "'{description}'. The review has an overall rating of '{overall}'. The "
                                  "review summary is: '{summary}'.\nReview:",
                    "system": "You are a review writer."},
    example_item={"id": "v1", "overall": "5.0", "summary": "Love it", "description": "A kettle.",
                  "reviewText": "Boils fast and looks great."},
    example_input_fields={"overall": "4.0", "description": "A toaster.", "summary": "Pretty good"},
))

register(TaskSpec(
    name="LongLaMP_4", aliases=("topic_writing",), benchmark="LongLaMP", kind="generation",
    description="Personalized topic writing (Reddit posts)", input_template=TOPIC_INPUT,
    item_fields=("summary", "content"), document_fields=("summary", "content"),
    item_prompt_template=TOPIC_INPUT, item_input_field="summary", item_output_field="content",
    user_id_field="author", date_field=None, max_new_tokens=256, hf_config="topic_writing_user",
    **LONG_METRICS, user_id_required=True,
    items_have_ids=False,                          # the HF rows' profile items carry no "id"
    templates={"official": ProfileTemplate(item='"{summary}" is a summary for "{content}" ', field="content",
                                           wrap="{profile}. Following the given patterns, {input}")},
    text_templates={"oppu_input": "Generate the content for a reddit post {summary}.\ncontent: ",
                    "system": "You are a creative content generator for Reddit posts."},
    example_item={"id": "p1", "summary": "My first marathon", "content": "I finally ran 42 km today..."},
    example_input_fields={"summary": "Learning to bake bread"},
))
