"""Prompts shared by training and evaluation: one chat-template path for both.

An item is described to the model by :func:`item_text` (embedding, item tasks) and referred to by its semantic
ID string (``"<a_12><b_7><c_200><d_31>"``). Every task renders its messages through the processor's chat
template with :func:`render`, at training and at test time alike.
"""

from __future__ import annotations

ENRICHED_FIELDS = ("enhanced_title", "tags", "highlights", "characteristics")

SEQREC_TEMPLATES = (
    "Here are the items a user interacted with, oldest first: {history}. Which item will the user interact with next?",
    "A shopper's purchase history in order: {history}. Predict the next item they will buy.",
    "Given the interaction sequence {history}, recommend the next item.",
)


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
    full = prompt + answer + "<|im_end|>" if answer is not None else prompt
    return prompt, full
