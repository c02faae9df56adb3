"""EMRRG processor: X-ray image processor + the LLM's tokenizer + the paper's prompt.

The prompt (EMRRG §3.3) is ``"Human: <Img><ImageHere></Img> Generate a comprehensive and detailed diagnosis report
for this chest xray image. \\nAssistant:"``. ``<ImageHere>`` is written ``{image}`` in ``prompt_template`` and becomes
one ``<image>`` placeholder per visual token (tokens per view x views), which the model overwrites with the
projected X-ray Mamba tokens. The same tokens are what the hybrid layers cross-attend to.

With ``use_chat_template=True`` the instruction (``<Img>{image}</Img> Generate ...``) is instead rendered as one
user turn through the tokenizer's (or the processor's) chat template, for chat-tuned LLMs.

LLaVA-style ``messages`` (``content`` a list of ``{"type": "image", "image": ...}`` / ``{"type": "text", "text": ...}``
items) go through ``processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=True,
return_dict=True)`` and the ``image-text-to-text`` pipeline. Unless the processor has a chat template of its own,
:meth:`EMRRGProcessor.messages_chat_template` renders them with the LLM tokenizer's chat template (Llama-2-chat,
ChatML, ...), an image item written as in ``instruction`` (``<Img><image></Img>``), or with the paper's
``Human: ... \\nAssistant:`` format when the tokenizer has no template either.

Training batches (``reports=`` given) are ``prompt + report + eos``, right-padded, with ``labels`` = ``-100`` on
the prompt and the padding. Generation batches (no reports) are left-padded prompts.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import torch
from transformers import BatchFeature, ProcessorMixin

from .._compat import subprocessors_by_auto_class
from ..saving import RemoteCodeProcessorMixin

DEFAULT_INSTRUCTION = (
    "<Img>{image}</Img> Generate a comprehensive and detailed diagnosis report for this chest xray image."
)
DEFAULT_PROMPT_TEMPLATE = f"Human: {DEFAULT_INSTRUCTION} \nAssistant:"
IGNORE_INDEX = -100

#: Jinja lines put before an LLM's chat template: LLaVA-style messages (``content`` a list of image / text items)
#: become plain-text messages, the first image item of the conversation written as ``__IMAGE__`` (later image items
#: are further views of the same study, which the image placeholders already stand for), items joined by spaces.
MESSAGES_PRELUDE = """\
{%- set _flat = namespace(messages=[], image_seen=false) -%}
{%- for message in messages -%}
    {%- if message['content'] is string -%}
        {%- set _flat.messages = _flat.messages + [message] -%}
    {%- else -%}
        {%- set _parts = namespace(texts=[]) -%}
        {%- for item in message['content'] -%}
            {%- if item['type'] == 'image' and not _flat.image_seen -%}
                {%- set _parts.texts = _parts.texts + [__IMAGE__] -%}
                {%- set _flat.image_seen = true -%}
            {%- elif item['type'] == 'text' -%}
                {%- set _parts.texts = _parts.texts + [item['text']] -%}
            {%- endif -%}
        {%- endfor -%}
        {%- set _flat.messages = _flat.messages + [dict(message, content=_parts.texts | join(' '))] -%}
    {%- endif -%}
{%- endfor -%}
{%- set messages = _flat.messages -%}
"""
#: The paper's prompt format as a chat template (``Human: <content> \nAssistant:``), for an LLM tokenizer without
#: a chat template of its own: one user turn with the image and the paper's instruction gives the default prompt.
PAPER_CHAT_TEMPLATE = """\
{%- for message in messages -%}
    {%- if message['role'] == 'user' -%}
        {{ 'Human: ' + message['content'] + ' \\n' }}
    {%- elif message['role'] == 'assistant' -%}
        {{ 'Assistant: ' + message['content'] + eos_token + '\\n' }}
    {%- else -%}
        {{ message['content'] + '\\n' }}
    {%- endif -%}
{%- endfor -%}
{%- if add_generation_prompt -%}{{ 'Assistant:' }}{%- endif -%}
"""


def _check_strings(name: str, items: Sequence[Any]) -> None:
    """Every item of the ``name`` list is a string (the error names the first that is not)."""
    for index, item in enumerate(items):
        if not isinstance(item, str):
            raise ValueError(f"{name}[{index}]: expected a string, got {type(item).__name__}")


@subprocessors_by_auto_class
class EMRRGProcessor(RemoteCodeProcessorMixin, ProcessorMixin):
    r"""Builds EMRRG inputs from X-ray images, optional prompts and optional target reports.

    Args:
        image_processor (`XrayImageProcessor`): resizing / augmentation / normalisation of the films.
        tokenizer: the LLM's tokenizer. ``image_token`` is added to it as a special token if missing.
        image_seq_length (`int`, defaults to 197): visual tokens per view (``(crop_size / patch_size)^2 + 1``).
        image_token (`str`, defaults to ``"<image>"``): the placeholder token.
        prompt_template (`str`): the default prompt, with ``{image}`` where the image goes.
        instruction (`str`): the user turn of the default prompt when ``use_chat_template`` is set.
        use_chat_template (`bool`, defaults to `False`): render the default prompt with the chat template.
        multi_view_fusion (`str`, defaults to `"mean"`): as the model's ``config.multi_view_fusion``: `"mean"` gives a
            study of any number of views ``image_seq_length`` placeholders, `"concat"` that many per view.
        chat_template (`str`, *optional*): a Jinja chat template of the processor, which must then handle LLaVA-style
            content lists itself (if unset, :meth:`messages_chat_template` builds one on the tokenizer's).
    """

    attributes = ["image_processor", "tokenizer"]
    valid_kwargs = [
        "image_seq_length",
        "image_token",
        "prompt_template",
        "instruction",
        "use_chat_template",
        "chat_template",
        "multi_view_fusion",
    ]

    def __init__(
        self,
        image_processor=None,
        tokenizer=None,
        image_seq_length: int = 197,
        image_token: str = "<image>",
        prompt_template: str = DEFAULT_PROMPT_TEMPLATE,
        instruction: str = DEFAULT_INSTRUCTION,
        use_chat_template: bool = False,
        chat_template: str | None = None,
        multi_view_fusion: str = "mean",
        **kwargs: Any,
    ) -> None:
        if multi_view_fusion not in ("mean", "concat"):
            raise ValueError(f"multi_view_fusion: expected 'mean' or 'concat', got {multi_view_fusion!r}")
        self.multi_view_fusion = multi_view_fusion
        for name, template in (("prompt_template", prompt_template), ("instruction", instruction)):
            if "{image}" not in template:
                raise ValueError(f"{name}: needs an '{{image}}' field where the image placeholders go")
        if tokenizer is not None and image_token not in tokenizer.get_vocab():
            tokenizer.add_special_tokens({"additional_special_tokens": [image_token]})
        self.image_seq_length = image_seq_length
        self.image_token = image_token
        self.prompt_template = prompt_template
        self.instruction = instruction
        self.use_chat_template = use_chat_template
        super().__init__(image_processor, tokenizer, chat_template=chat_template, **kwargs)

    @property
    def image_token_id(self) -> int:
        return self.tokenizer.convert_tokens_to_ids(self.image_token)

    def default_prompt(self) -> str:
        """The paper's prompt (or the chat-rendered instruction), with one ``image_token`` where the image goes."""
        if not self.use_chat_template:
            return self.prompt_template.format(image=self.image_token)
        template = self.chat_template or self.tokenizer.chat_template
        if template is None:
            raise ValueError("use_chat_template: neither the processor nor the tokenizer has a chat_template")
        turn = [{"role": "user", "content": self.instruction.format(image=self.image_token)}]
        return self.tokenizer.apply_chat_template(
            turn, chat_template=template, tokenize=False, add_generation_prompt=True
        )

    def image_markup(self) -> str:
        """How an image item of a chat message is written: the word of ``instruction`` that holds ``{image}``
        (``<Img>{image}</Img>`` by default), with one ``image_token``."""
        word = next(word for word in self.instruction.split() if "{image}" in word)
        return word.format(image=self.image_token)

    def messages_chat_template(self) -> str:
        """The chat template :meth:`apply_chat_template` renders with when the processor has none of its own.

        :data:`MESSAGES_PRELUDE` (content lists to text, the image as :meth:`image_markup`) followed by the LLM
        tokenizer's chat template, or :data:`PAPER_CHAT_TEMPLATE` when the tokenizer has none.
        """
        template = getattr(self.tokenizer, "chat_template", None)
        if isinstance(template, dict):  # named templates: the default one
            template = template.get("default")
        prelude = MESSAGES_PRELUDE.replace("__IMAGE__", json.dumps(self.image_markup()))
        return prelude + (template or PAPER_CHAT_TEMPLATE)

    def apply_chat_template(self, conversation: Any, chat_template: str | None = None, **kwargs: Any) -> Any:
        """transformers' ``apply_chat_template`` with :meth:`messages_chat_template` as the default template.

        The processor's own ``chat_template`` is used when it has one other than the tokenizer's (transformers 5
        reloads a tokenizer's template, saved as ``chat_template.jinja``, as the processor's too). Every image of a
        conversation is a view of its one study; the prompt gets the study's ``image_token`` placeholders where the
        first image item is.
        """
        if chat_template is None and self.chat_template in (None, getattr(self.tokenizer, "chat_template", None)):
            chat_template = self.messages_chat_template()
        return super().apply_chat_template(conversation, chat_template=chat_template, **kwargs)

    def _expand_image_token(self, prompt: str, views: int) -> str:
        count = prompt.count(self.image_token)
        if count != 1:
            raise ValueError(
                f"text: each prompt needs exactly one {self.image_token!r} (where the image goes), found {count} in "
                f"{prompt!r}"
            )
        per_study = self.image_seq_length * (views if self.multi_view_fusion == "concat" else 1)
        return prompt.replace(self.image_token, self.image_token * per_study)

    @property
    def pad_token_id(self) -> int:
        """The id batches are padded with: the tokenizer's pad token, or its eos token for an LLM without one
        (GPT-2, Llama-2); a special token either way, so padding decodes to nothing. The Trainer pads generated ids
        with it too."""
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.tokenizer.eos_token_id
        if pad is None:
            raise ValueError("tokenizer: needs a pad_token or an eos_token to pad batches")
        return pad

    def __call__(
        self,
        images: Any = None,
        text: str | Sequence[str] | None = None,
        reports: str | Sequence[str] | None = None,
        do_train_augmentation: bool | None = None,
        max_report_tokens: int | None = None,
        add_special_tokens: bool | None = None,
        **kwargs: Any,
    ) -> BatchFeature:
        """``images``: one study per sample (an image, or a list of views). ``text``: prompts (the default prompt
        for every sample if unset). ``reports``: targets for training (adds ``labels``). ``add_special_tokens``:
        whether the tokenizer adds its special tokens (e.g. BOS) to the prompts; by default it does unless
        ``use_chat_template`` is set (``apply_chat_template`` passes ``False`` for a template that writes BOS)."""
        if images is None:
            raise ValueError("images: EMRRG needs the X-ray image(s) of every sample")
        if max_report_tokens is not None and (not isinstance(max_report_tokens, int) or max_report_tokens < 1):
            raise ValueError(f"max_report_tokens: expected a positive integer or None, got {max_report_tokens!r}")
        pixel_values = self.image_processor(images, do_train_augmentation=do_train_augmentation)["pixel_values"]
        batch = pixel_values.shape[0]
        views = pixel_values.shape[1] if pixel_values.ndim == 5 else 1
        prompts = (
            [self.default_prompt()] * batch if text is None else ([text] if isinstance(text, str) else list(text))
        )
        if len(prompts) != batch:
            raise ValueError(f"text: {len(prompts)} prompts for {batch} image sets; give one prompt per sample")
        _check_strings("text", prompts)
        # A chat-rendered prompt already holds the template's special tokens (e.g. BOS).
        add_special = not self.use_chat_template if add_special_tokens is None else add_special_tokens
        prompt_ids = [
            self.tokenizer(self._expand_image_token(p, views), add_special_tokens=add_special)["input_ids"]
            for p in prompts
        ]
        if reports is None:
            input_ids, labels, side = prompt_ids, None, "left"
        else:
            reports = [reports] if isinstance(reports, str) else list(reports)
            if len(reports) != batch:
                raise ValueError(f"reports: {len(reports)} reports for {batch} image sets; give one report per sample")
            _check_strings("reports", reports)
            eos = self.tokenizer.eos_token_id
            if eos is None:
                raise ValueError("tokenizer: needs an eos_token to end the reports")
            report_ids = [
                self.tokenizer(r, add_special_tokens=False)["input_ids"][:max_report_tokens] + [eos] for r in reports
            ]
            input_ids = [p + r for p, r in zip(prompt_ids, report_ids)]
            labels = [[IGNORE_INDEX] * len(p) + r for p, r in zip(prompt_ids, report_ids)]
            side = "right"
        data = self._pad(input_ids, labels, side)
        data["pixel_values"] = pixel_values
        return BatchFeature(data)

    def _pad(self, input_ids: list[list[int]], labels: list[list[int]] | None, side: str) -> dict[str, torch.Tensor]:
        length = max(len(ids) for ids in input_ids)
        pad = self.pad_token_id

        def padded(row: list[int], value: int) -> list[int]:
            filler = [value] * (length - len(row))
            return filler + row if side == "left" else row + filler

        data = {
            "input_ids": torch.tensor([padded(ids, pad) for ids in input_ids]),
            "attention_mask": torch.tensor([padded([1] * len(ids), 0) for ids in input_ids]),
        }
        if labels is not None:
            data["labels"] = torch.tensor([padded(row, IGNORE_INDEX) for row in labels])
        return data

    @property
    def model_input_names(self) -> list[str]:
        return ["input_ids", "attention_mask", "pixel_values"]
