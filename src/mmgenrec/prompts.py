"""Prompts shared by training and evaluation: one chat-template path for both.

An item is described to the model by :func:`item_text` (embedding, item tasks) and referred to by its semantic
ID string (``"<a_12><b_7><c_200><d_31>"``). Every task renders its messages through the processor's chat
template with :func:`render`, at training and at test time alike.

Tasks (:data:`TASKS`), each with several templates in our own wording (:data:`TEMPLATES`):

* ``seqrec``: the history's item IDs -> the next item's ID;
* ``mmitem2index``: an item's image + text -> its ID;
* ``mmindex2item``: an item's ID -> its title (and description, depending on the template);
* ``mmitemenrich``: an item's image + text -> the four enriched fields (:func:`enrich_answer`, parsed back by
  :func:`parse_enrich_answer`).

:func:`task_messages` builds ``(messages, answer)`` for any task; evaluation calls the same function without
using the answer.
"""

from __future__ import annotations

ENRICHED_FIELDS = ("enhanced_title", "tags", "highlights", "characteristics")

SEQREC_TEMPLATES = (
    "Here are the items a user interacted with, oldest first: {history}. Which item will the user interact with next?",
    "A shopper's purchase history in order: {history}. Predict the next item they will buy.",
    "Given the interaction sequence {history}, recommend the next item.",
    "Items bought so far, from earliest to latest: {history}. Name the item most likely to come next.",
)

# image + text -> ID: the item is shown first (image placeholder, then its text), then one of these instructions
ITEM2INDEX_TEMPLATES = (
    "Which item ID in the catalogue refers to the product shown above?",
    "Give the identifier of this product.",
    "Map the product described above to its item code.",
)

# ID -> text: (instruction, fields of the item that form the answer)
INDEX2ITEM_TEMPLATES = (
    ("What is the title of item {sid}?", ("title",)),
    ("Describe the product with the ID {sid}: give its title and a description.", ("title", "description")),
    ("Item {sid} is in the catalogue. Write its name and what it is.", ("title", "description")),
)

# image + text -> the four enriched fields, answered in the :func:`enrich_answer` format
ENRICH_TEMPLATES = (
    "From the picture and text above, write an enhanced title, tags, highlights and characteristics of the product.",
    "Look at this product and list: an improved title, descriptive tags, key highlights, its characteristics.",
    "Enrich the product listing above with a better title, tags, highlights and characteristics.",
)

TASKS = ("seqrec", "mmitem2index", "mmindex2item", "mmitemenrich")
TEMPLATES = {"seqrec": SEQREC_TEMPLATES, "mmitem2index": ITEM2INDEX_TEMPLATES,
             "mmindex2item": INDEX2ITEM_TEMPLATES, "mmitemenrich": ENRICH_TEMPLATES}
IMAGE_TASKS = ("mmitem2index", "mmitemenrich")  # tasks whose prompt shows the item's image when it has one
ENRICH_LABELS = {"enhanced_title": "Enhanced title", "tags": "Tags", "highlights": "Highlights",
                 "characteristics": "Characteristics"}


def _as_text(value) -> str:
    if value is None:
        return ""
    if isinstance(value, (list, tuple)):
        return ", ".join(_as_text(v) for v in value if _as_text(v))
    if isinstance(value, dict):
        return "; ".join(f"{k}: {_as_text(v)}" for k, v in value.items() if _as_text(v))
    return str(value).strip()


def item_text(item: dict, enriched: dict | None = None, max_chars: int = 2000) -> str:
    """The item's text: title, brand, categories, description, then the enriched fields when given."""
    parts = []
    for label, key in (("Title", "title"), ("Brand", "brand"), ("Categories", "categories"), ("Description", "description")):
        text = _as_text(item.get(key))
        if text:
            parts.append(f"{label}: {text}")
    for key in ENRICHED_FIELDS if enriched else ():
        text = _as_text(enriched.get(key))
        if text:
            parts.append(f"{key.replace('_', ' ').capitalize()}: {text}")
    return "\n".join(parts)[:max_chars]


def sid_string(tokens: list[str]) -> str:
    return "".join(tokens)


def seqrec_messages(history: list[str], template_id: int = 0) -> list[dict]:
    """User turn asking for the next item given the history's semantic-ID strings (oldest first)."""
    text = SEQREC_TEMPLATES[template_id].format(history=", ".join(history))
    return [{"role": "user", "content": [{"type": "text", "text": text}]}]


def item_messages(text: str, with_image: bool, instruction: str) -> list[dict]:
    """User turn showing an item (image placeholder when it has one, then its text) with an instruction."""
    content = [{"type": "image"}] if with_image else []
    content.append({"type": "text", "text": f"{text}\n{instruction}" if instruction else text})
    return [{"role": "user", "content": content}]


def render(processor, messages: list[dict], answer: str | None = None) -> tuple[str, str]:
    """Return ``(prompt, full)``: the prompt ending in the assistant header, and prompt + answer + end-of-turn.

    ``full`` is ``None``-free only when ``answer`` is given; evaluation uses ``prompt``, training uses both so
    that the loss covers exactly the answer and its end-of-turn token.
    """
    prompt = processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    end = getattr(processor, "answer_end", "<|im_end|>")  # a text LM's TextProcessor names its own
    full = prompt + answer + end if answer is not None else prompt
    return prompt, full


def enrich_answer(enriched: dict) -> str:
    """The four enriched fields as the ``mmitemenrich`` answer: one ``Label: value`` line per field, lists joined
    with ``" | "``, characteristics as ``key: value`` pairs joined with ``" | "`` (dicts) or plain items (lists)."""
    lines = []
    for key in ENRICHED_FIELDS:
        value = enriched.get(key)
        if isinstance(value, dict):
            text = " | ".join(f"{k}: {_as_text(v)}" for k, v in value.items() if _as_text(v))
        elif isinstance(value, (list, tuple)):
            text = " | ".join(_as_text(v) for v in value if _as_text(v))
        else:
            text = _as_text(value)
        lines.append(f"{ENRICH_LABELS[key]}: {text}")
    return "\n".join(lines)


def parse_enrich_answer(text: str) -> dict[str, str | list[str]]:
    """Inverse of :func:`enrich_answer` for generated text: ``enhanced_title`` as a string, the other fields as
    lists of strings (missing fields are empty)."""
    by_label = {label.lower(): key for key, label in ENRICH_LABELS.items()}
    out: dict[str, str | list[str]] = {k: ([] if k != "enhanced_title" else "") for k in ENRICHED_FIELDS}
    for line in text.splitlines():
        label, sep, value = line.partition(":")
        key = by_label.get(label.strip().lower())
        if not sep or key is None:
            continue
        value = value.strip()
        out[key] = value if key == "enhanced_title" else [v.strip() for v in value.split(" | ") if v.strip()]
    return out


def task_messages(task: str, template_id: int, *, history: list[str] | None = None, sid: str | None = None,
                  item: dict | None = None, enriched: dict | None = None, with_image: bool = False,
                  max_chars: int = 2000) -> tuple[list[dict], str | None]:
    """``(messages, answer)`` for one example of ``task`` (see :data:`TASKS`); ``answer`` is the text the model
    must produce (``None`` where the inputs needed for it are not given, e.g. at evaluation time)."""
    if task == "seqrec":
        return seqrec_messages(history, template_id), sid
    if task == "mmitem2index":
        return item_messages(item_text(item, max_chars=max_chars), with_image, ITEM2INDEX_TEMPLATES[template_id]), sid
    if task == "mmindex2item":
        instruction, fields = INDEX2ITEM_TEMPLATES[template_id]
        msgs = [{"role": "user", "content": [{"type": "text", "text": instruction.format(sid=sid)}]}]
        if item is None:
            return msgs, None
        labels = {"title": "Title", "description": "Description"}
        parts = [(f, _as_text(item.get(f))) for f in fields]
        answer = parts[0][1] if len(fields) == 1 else "\n".join(f"{labels[f]}: {t}" for f, t in parts if t)
        return msgs, answer[:max_chars]
    if task == "mmitemenrich":
        msgs = item_messages(item_text(item, max_chars=max_chars), with_image, ENRICH_TEMPLATES[template_id])
        return msgs, enrich_answer(enriched) if enriched is not None else None
    raise ValueError(f"unknown task {task!r}; expected one of {TASKS}")
