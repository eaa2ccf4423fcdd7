"""Text-only causal LMs (a LLaMA / Qwen2-family folder) behind the same interface as Qwen2.5-VL + its processor.

The finetune and evaluate stages call a *processor*: ``processor(text=..., images=..., padding=...)``,
``processor.apply_chat_template(messages, ...)``, ``processor.tokenizer``, ``processor.save_pretrained``.
:class:`TextProcessor` gives a tokenizer that interface, so a text LM takes the same code path:

* prompts are rendered with the tokenizer's chat template (message contents flattened to their text), or, for a
  tokenizer without one (a base LLaMA), with LC-Rec's plain instruction template :data:`PLAIN_TEMPLATE`;
* ``answer_end`` is the text that closes every answer at training time and ends decoding: ``<|im_end|>`` when a
  chat template uses it, else the tokenizer's EOS token;
* images are refused (a text-only model).
"""

from __future__ import annotations

import json
from pathlib import Path

# LC-Rec's prompt (its ``sft_prompt``, Alpaca style): the answer follows "### Response:" directly.
PLAIN_TEMPLATE = ("Below is an instruction that describes a task. Write a response that appropriately completes the "
                  "request.\n\n### Instruction:\n{instruction}\n\n### Response:")


def is_text_lm(path: str | Path) -> bool:
    """A local HF folder holds a text-only LM (no ``vision_config`` in its config.json)."""
    config = Path(path) / "config.json"
    if not config.is_file():
        raise FileNotFoundError(f"{path}: no config.json; expected a local Hugging Face model directory")
    return "vision_config" not in json.loads(config.read_text())


def _text(content) -> str:
    if isinstance(content, str):
        return content
    if any(c.get("type") == "image" for c in content):
        raise ValueError("a text-only model was given an image in its prompt")
    return "\n".join(c["text"] for c in content if "text" in c)


class TextProcessor:
    """A tokenizer with the processor interface the finetune / evaluate stages use (see the module docstring)."""

    def __init__(self, tokenizer):
        if tokenizer.pad_token is None:  # LLaMA ships none; LC-Rec pads with id 0 (<unk>); the mask hides it
            tokenizer.pad_token = tokenizer.unk_token or tokenizer.eos_token
        self.tokenizer = tokenizer

    @property
    def answer_end(self) -> str:
        vocab = self.tokenizer.get_vocab()
        if self.tokenizer.chat_template and "<|im_end|>" in vocab:
            return "<|im_end|>"
        return self.tokenizer.eos_token

    def apply_chat_template(self, messages: list[dict], tokenize: bool = False, add_generation_prompt: bool = True,
                            **kwargs) -> str:
        flat = [{"role": m["role"], "content": _text(m["content"])} for m in messages]
        if self.tokenizer.chat_template:
            return self.tokenizer.apply_chat_template(flat, tokenize=False, add_generation_prompt=add_generation_prompt)
        instruction = "\n\n".join(m["content"] for m in flat if m["role"] != "assistant")
        return PLAIN_TEMPLATE.format(instruction=instruction)

    def __call__(self, text=None, images=None, **kwargs):
        if images:
            raise ValueError("a text-only model was given images")
        return self.tokenizer(text, **kwargs)

    def save_pretrained(self, out_dir) -> None:
        self.tokenizer.save_pretrained(out_dir)

    @classmethod
    def from_pretrained(cls, path) -> TextProcessor:
        from transformers import AutoTokenizer

        return cls(AutoTokenizer.from_pretrained(str(path)))
