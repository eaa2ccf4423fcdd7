"""LC-Rec's task family and a few of its prompt templates (RUCAIBox/LC-Rec ``prompt.py``; its template number in
brackets), for the ``lm_genrec`` method kind.

* ``seqrec``: the history's item IDs -> the next item's ID;
* ``item2index``: an item's title and/or description -> its ID;
* ``index2item``: an item's ID -> its title and/or description;
* ``fusionseqrec``: the history's IDs -> the next item's title or description, or the history's *titles* -> the
  next item's ID.

Items in a history are joined with ", " (LC-Rec's ``his_sep``, no numbering prefix); titles in a history are
quoted; a title as an answer is stripped of trailing punctuation (as LC-Rec's data.py does). Prompts are rendered
by the processor (a text LM without a chat template uses LC-Rec's instruction prompt,
:data:`mmgenrec.models.text_lm.PLAIN_TEMPLATE`).
"""

from __future__ import annotations

from mmgenrec.prompts import _as_text

HIS_SEP = ", "

# (instruction, answer) format strings; fields: inters, inter_titles, item (the ID string), title, description
LCREC_TEMPLATES = {
    "seqrec": (
        ("The user has interacted with items {inters} in chronological order. Can you predict the next possible "
         "item that the user may expect?", "{item}"),  # [0]
        ("I find the user's historical interactive items: {inters}, and I want to know what next item the user "
         "needs. Can you help me decide?", "{item}"),  # [1]
        ("Here are the user's historical interactions: {inters}, try to recommend another item to the user. Note "
         "that the historical interactions are arranged in chronological order.", "{item}"),  # [2]
    ),
    "item2index": (
        ("Which item has the title: \"{title}\"?", "{item}"),  # [0]
        ("An item can be described as follows: \"{description}\". Which item is it describing?", "{item}"),  # [6]
        ("An item is called \"{title}\" and described as \"{description}\", can you tell me which item it is?",
         "{item}"),  # [12]
    ),
    "index2item": (
        ("What is the title of item {item}?", "{title}"),  # [0]
        ("Please provide a description of item {item}.", "{description}"),  # [6]
        ("What is the title and description of item {item}?", "{title}\n\n{description}"),  # [12]
    ),
    "fusionseqrec": (
        ("The user has sequentially interacted with items {inters}. Can you recommend the next item for him? Tell "
         "me the title of the item?", "{title}"),  # [0]
        ("Please review the user's historical interactions: {inters}, and describe what kind of item he still "
         "needs.", "{description}"),  # [4]
        ("Given the title sequence of user historical interactive items: {inter_titles}, can you recommend a "
         "suitable next item for the user?", "{item}"),  # [8]
    ),
}
LCREC_TASKS = tuple(LCREC_TEMPLATES)
ITEM_FIELDS = ("title", "description")


def clean_title(item: dict) -> str:
    return _as_text(item.get("title")).strip().strip(".!?,;:`")


def needed_fields(task: str, template_id: int) -> set[str]:
    """The item fields a template uses (the target's for item tasks and fusion answers; ``inter_titles``: the
    history's titles)."""
    instruction, answer = LCREC_TEMPLATES[task][template_id]
    return {f for f in (*ITEM_FIELDS, "inter_titles") if "{" + f + "}" in instruction + answer}


def _fields_of(fmt: str) -> list[str]:
    return [f for f in ("inters", "inter_titles", "item", "title", "description") if "{" + f + "}" in fmt]


def lcrec_messages(task: str, template_id: int, **fields) -> tuple[list[dict], str | None]:
    """``(messages, answer)`` of one example; ``answer`` is None when a field it needs is not given (evaluation)."""
    instruction, answer = LCREC_TEMPLATES[task][template_id]
    missing = [f for f in _fields_of(instruction) if fields.get(f) is None]
    if missing:
        raise ValueError(f"{task} template {template_id} needs {missing}")
    text = instruction.format(**{f: fields[f] for f in _fields_of(instruction)})
    given = all(fields.get(f) is not None for f in _fields_of(answer))
    out = answer.format(**{f: fields[f] for f in _fields_of(answer)}) if given else None
    return [{"role": "user", "content": [{"type": "text", "text": text}]}], out


def seqrec_prompt(history: list[str], template_id: int) -> list[dict]:
    """The ``seqrec`` prompt at evaluation time: history ID strings, oldest first."""
    return lcrec_messages("seqrec", template_id, inters=HIS_SEP.join(history))[0]


def prompt_corpus() -> list[str]:
    """The templates' words and the plain instruction prompt (for a locally trained tiny tokenizer)."""
    from mmgenrec.models.text_lm import PLAIN_TEMPLATE

    lines = [PLAIN_TEMPLATE.format(instruction="")]
    for templates in LCREC_TEMPLATES.values():
        for instruction, _ in templates:
            lines.append(instruction)
    return lines * 3
