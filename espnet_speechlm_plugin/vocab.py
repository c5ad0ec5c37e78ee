"""The prompt vocabulary: tasks, languages, unanswerable answers, special tokens, and the one parser of a prompt line.

Every example asks the model for one task in one output language: a data dir's ``prompt`` file holds
``utt lang task [question…]`` per line (``lang`` = the language of the output; the question only for ``answer``),
and the model sees it as ``<|lang|><|task|> [question]``. This module is the single home of those words:

- ``TASKS`` and ``DEFAULT_LANGUAGES`` (a training config may name other languages with ``languages:``);
- ``UNANSWERABLE``: the exact reference answer to an unanswerable question, per language (``add_unanswerable``
  registers one for a language a recipe adds);
- ``lang_token``/``task_token``/``special_tokens``: the tokens the tokenizer gets (``model/prompt.py``);
- ``parse_prompt``: the one parser of the prompt line, used by training (``model/prompt.py``), data validation
  (``data/validate.py``, through ``prompt_problems``), the corpus readers, scoring and the task-confusion
  diagnostic; ``format_prompt`` writes the line.

Where it sits: the bottom layer. It imports only the standard library, so every other part of the package
(data/, scoring/, corpora/, model/) can import it without pulling in torch or transformers.
Shell recipes ask it for a config's languages: ``python -m espnet_speechlm_plugin.vocab languages CONFIG``.
"""
from __future__ import annotations

import re
import sys
from typing import NamedTuple, Optional, Sequence

TASKS = ("transcribe", "translate", "answer")
DEFAULT_LANGUAGES = ("en", "de", "it", "zh")
# what a language in a prompt line looks like when no language list is given (ISO 639-1/3, optional region/script)
LANGUAGE_CODE = re.compile(r"^[a-z]{2,3}([-_][A-Za-z0-9]+)?$")

# The exact reference answer of an unanswerable question, per answer language. Data preparation (the demo's
# grammar, the Spoken-SQuAD reader) writes these and scoring counts a hypothesis as "unanswerable" by them, so
# both agree on one spelling.
UNANSWERABLE: dict[str, str] = {
    "en": "Not answerable.",
    "de": "Nicht zu beantworten.",
    "it": "Non è possibile rispondere.",
    "zh": "无法回答。",
}


def add_unanswerable(lang: str, text: str) -> None:
    """Register the unanswerable answer of a language a recipe adds (its grammar or config names the string).

    The same string again is a no-op; a different one for a language already present is an error, because data
    and scoring must agree on one spelling per language.
    """
    text = " ".join(text.split())
    if not LANGUAGE_CODE.match(lang):
        raise ValueError(f"unanswerable answer for {lang!r}: not a language code (e.g. {', '.join(DEFAULT_LANGUAGES)})")
    if not text:
        raise ValueError(f"unanswerable answer for {lang!r}: the string is empty")
    known = UNANSWERABLE.get(lang)
    if known is not None and known != text:
        raise ValueError(f"unanswerable answer for {lang!r}: {text!r} differs from the one already used, {known!r}")
    UNANSWERABLE[lang] = text


def unanswerable(lang: str) -> str:
    """The unanswerable answer of ``lang``; a clear error for a language without one."""
    try:
        return UNANSWERABLE[lang]
    except KeyError:
        raise KeyError(f"no unanswerable answer for language {lang!r} (known: {', '.join(UNANSWERABLE)}); register "
                       "it with espnet_speechlm_plugin.vocab.add_unanswerable") from None


# ---------------------------------------------------------------------------------------------- special tokens
def lang_token(lang: str) -> str:
    return f"<|{lang}|>"


def task_token(task: str) -> str:
    return f"<|{task}|>"


def special_tokens(languages: Sequence[str], tasks: Sequence[str] = TASKS) -> list[str]:
    """The tokens added to the decoder's tokenizer, in a fixed order (so they get the same ids every time)."""
    return [lang_token(lang) for lang in languages] + [task_token(t) for t in tasks]


# ---------------------------------------------------------------------------------------------- the prompt line
class Prompt(NamedTuple):
    lang: str
    task: str
    question: str = ""

    def __str__(self) -> str:
        return format_prompt(self.lang, self.task, self.question)


class PromptError(ValueError):
    """A prompt line that is not ``lang task [question…]`` with a known task and language; the message names where.

    ``kind`` says what is wrong: ``short`` (fewer than two fields), ``task``, ``language`` or ``question``
    (``answer`` without one)."""

    def __init__(self, message: str, kind: str):
        super().__init__(message)
        self.kind = kind


def format_prompt(lang: str, task: str, question: str = "") -> str:
    """The prompt line's value (what follows the utterance id): ``lang task [question]``."""
    return " ".join(filter(None, (lang, task, " ".join(question.split()))))


def prompt_problems(value: str,
                    languages: Optional[Sequence[str]] = None) -> tuple[Optional[Prompt], list[tuple[str, str]]]:
    """Parse ``value`` (``"lang task [question…]"``) and list everything wrong with it as (kind, message).

    ``languages``: the languages allowed (a model's); None allows any language code. Returns the prompt (None when
    there are fewer than two fields) and the problems (none: the line is valid).
    """
    parts = value.strip().split(maxsplit=2)
    if len(parts) < 2:
        return None, [("short", f"the prompt must be 'lang task [question…]' after the utterance id, got {value!r}")]
    prompt = Prompt(parts[0], parts[1], parts[2] if len(parts) == 3 else "")
    problems = []
    if prompt.task not in TASKS:
        problems.append(("task", f"unknown task {prompt.task!r} (tasks: {', '.join(TASKS)})"))
    if languages is None:
        if not LANGUAGE_CODE.match(prompt.lang):
            example = ", ".join(DEFAULT_LANGUAGES)
            problems.append(("language", f"{prompt.lang!r} is not a language code (e.g. {example}); the line must "
                                         "read 'utt lang task [question]'"))
    elif prompt.lang not in languages:
        problems.append(("language", f"unknown language {prompt.lang!r} (languages: {', '.join(languages)})"))
    if prompt.task == "answer" and not prompt.question:
        problems.append(("question", f"task 'answer' needs a question after it ('{prompt.lang} answer <question>')"))
    return prompt, problems


def parse_prompt(value: str, languages: Optional[Sequence[str]] = None, where: str = "prompt") -> Prompt:
    """``"lang task [question…]"`` → ``Prompt(lang, task, question)``, or ``PromptError`` ("<where>: <problem>").

    ``languages``: the languages allowed (a model's); None allows any language code. ``where`` names the
    file and line or the utterance.
    """
    prompt, problems = prompt_problems(value, languages)
    if problems:
        kind, message = problems[0]
        if kind == "language" and languages is not None:
            message += "; a model learns the languages in `languages:` of its training config"
        raise PromptError(f"{where}: {message}", kind)
    return prompt


def validate_prompt_file(path: str, languages: Sequence[str]) -> int:
    """Check every line of a ``prompt`` file up front (so a typo stops training before it starts); the line count."""
    n = 0
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            uid, _, value = line.rstrip("\n").partition(" ")
            parse_prompt(value, languages, f"{path} line {lineno} (utterance '{uid}')")
            n += 1
    return n


# ---------------------------------------------------------------------------------------------- for shell recipes
def config_languages(config: Optional[str]) -> tuple[str, ...]:
    """The output languages a training config names (``languages:``), else ``DEFAULT_LANGUAGES``."""
    if not config:
        return DEFAULT_LANGUAGES
    import yaml

    with open(config, encoding="utf-8") as f:
        return tuple((yaml.safe_load(f) or {}).get("languages") or DEFAULT_LANGUAGES)


def main(argv: Optional[Sequence[str]] = None) -> int:
    import argparse

    p = argparse.ArgumentParser(prog="python -m espnet_speechlm_plugin.vocab",
                                description="Print the prompt vocabulary, one line, space-separated.")
    sub = p.add_subparsers(dest="what", required=True)
    langs = sub.add_parser("languages", help="a training config's output languages (default: the default ones)")
    langs.add_argument("config", nargs="?", help="training config YAML (its `languages:`)")
    sub.add_parser("tasks", help="the tasks")
    args = p.parse_args(argv)
    print(*(config_languages(args.config) if args.what == "languages" else TASKS))
    return 0


if __name__ == "__main__":
    sys.exit(main())
