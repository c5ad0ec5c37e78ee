"""The task-confusion diagnostic: the same audio decoded with every task/language prompt, and what each output did.

Where it sits: `bin/diagnose.py` (recipe stage 5, `--diagnose_n N`) picks N utterances of a test set with
`pick_subset`, plans the prompts with `plan_runs`, decodes all runs in one pass of the inference core
(`decoding.BatchDecoder`, with stage 5's decoding options), labels every output with `label_outputs`
(`confusion.classify_output`) and writes `<decode_dir>/<test_set>/diagnose/task_confusion.json`
(`write_diagnostic`). Stage 6 (`scoring.report`) reads it back (`read_diagnostic`) and puts the
asked x performed matrix and the confusion rate per asked prompt into RESULTS.md (rows `<test_set>:diagnose` of
results.json).

Prompts asked of each utterance, whose source language S is its transcription prompt's language, else the
language `confusion.identify_language` finds in its `transcript`, else `--source_lang`:
- `S transcribe`;
- `T translate` for every model language T != S;
- its own `L answer <question>` when its prompt is a question (a question cannot be made up for the others).
The stage-6 matrix shows, per asked prompt, how many outputs transcribed, translated into which language,
answered, echoed the question or did something else; "confusion" is `confusion.is_confusion` (doing another task
or using another output language than asked; empty/unidentifiable outputs are not counted as confusion).
"""
from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from espnet_speechlm_plugin.data.kaldi import write_atomic
from espnet_speechlm_plugin.scoring import confusion
from espnet_speechlm_plugin.vocab import format_prompt, parse_prompt

DIAGNOSE_SUBDIR = "diagnose"
DIAGNOSTIC_FILE = "task_confusion.json"


class DiagnosticError(ValueError):
    """A problem with the diagnostic's inputs; the message names the file/utterance and what to do."""


def pick_subset(utts: list[str], n: int, seed: int = 0) -> list[str]:
    """`n` utterances drawn at random (seeded) from `utts`, returned in sorted order; all of them if n >= len."""
    if n >= len(utts):
        return sorted(utts)
    return sorted(random.Random(seed).sample(sorted(utts), n))


@dataclass
class Utterance:
    utt: str
    source_lang: str
    transcript: Optional[str]
    prompt: str  # the test set's own prompt "lang task [question]"


def source_language(utt: str, prompt: str, transcript: Optional[str], fallback: Optional[str],
                    languages: Optional[list[str]] = None) -> str:
    """S of the module docstring (identified among `languages`, default the built-in ones), or `DiagnosticError`
    naming the utterance."""
    asked = parse_prompt(prompt, None, f"utterance '{utt}'")
    if asked.task == "transcribe":
        return asked.lang
    if transcript:
        found = confusion.identify_language(transcript, languages)
        if found:
            return found
    if fallback:
        return fallback
    raise DiagnosticError(
        f"utterance '{utt}': cannot tell the language of its audio (prompt '{prompt}', "
        f"{'transcript language not identified' if transcript else 'no transcript'}); pass --source_lang"
    )


@dataclass
class Run:
    """One decoding pass: `prompts` maps utt -> prompt; `override` is that prompt when it is the same for all."""

    prompts: dict[str, str]
    override: Optional[str]


def plan_runs(utts: list[Utterance], languages: list[str]) -> list[Run]:
    """The decoding passes that ask every prompt of the module docstring of every utterance."""
    runs: list[Run] = []
    by_source: dict[str, list[Utterance]] = {}
    for u in utts:
        by_source.setdefault(u.source_lang, []).append(u)
    for src, group in sorted(by_source.items()):
        prompts = [format_prompt(src, "transcribe")] + [format_prompt(t, "translate") for t in languages if t != src]
        for prompt in prompts:
            runs.append(Run({u.utt: prompt for u in group}, prompt))
    answers = {u.utt: u.prompt for u in utts if asked_of(u.prompt)[0] == "answer"}
    if answers:
        runs.append(Run(answers, None))
    return runs


def asked_of(prompt: str) -> tuple[str, str, str]:
    """(task, lang, question) of a prompt string."""
    asked = parse_prompt(prompt)
    return asked.task, asked.lang, asked.question


def label_output(u: Utterance, prompt: str, output: str, languages: Optional[list[str]] = None,
                 unanswerable: Optional[list[str]] = None) -> str:
    """What one diagnostic output performed (`confusion.classify_output` among the model's `languages`, with the
    test set's `unanswerable` strings)."""
    task, lang, question = asked_of(prompt)
    return confusion.classify_output(
        output,
        transcript=u.transcript,
        transcript_lang=u.source_lang,
        question=question if task == "answer" and question else None,
        question_lang=lang if task == "answer" else None,
        languages=languages,
        unanswerable=unanswerable,
    )


def label_outputs(utts: list[Utterance], runs: list[Run], outputs: list[dict[str, str]],
                  languages: Optional[list[str]] = None, unanswerable: Optional[list[str]] = None) -> list[dict]:
    """One record per (utterance, prompt): utt, prompt, asked (task:lang), performed, output."""
    by_utt = {u.utt: u for u in utts}
    records = []
    for run, hyps in zip(runs, outputs):
        for utt, prompt in run.prompts.items():
            task, lang, _ = asked_of(prompt)
            output = hyps.get(utt, "")
            records.append({"utt": utt, "prompt": prompt, "asked": confusion.asked_label(task, lang),
                            "performed": label_output(by_utt[utt], prompt, output, languages, unanswerable),
                            "output": output})
    return records


def write_diagnostic(path: Path, records: list[dict], *, n_utts: int, model: str, data_dir: str) -> None:
    """Write the diagnostic's JSON atomically (one record per line, so it diffs and greps well)."""
    head = {"n_utts": n_utts, "model": model, "data_dir": data_dir}
    body = ",\n".join(json.dumps(r, ensure_ascii=False) for r in records)
    text = json.dumps(head, ensure_ascii=False)[:-1] + ', "records": [\n' + body + "\n]}\n"
    write_atomic(Path(path), text)


def read_diagnostic(path: Path) -> dict:
    """The diagnostic JSON, checked: {"n_utts", "model", "data_dir", "records": [...]}."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise DiagnosticError(f"{path} line {e.lineno}: not valid JSON ({e.msg}); rerun bin/diagnose") from None
    for i, r in enumerate(data.get("records", [])):
        missing = {"utt", "prompt", "asked", "performed", "output"} - set(r)
        if missing:
            raise DiagnosticError(f"{path}: record {i + 1} lacks {sorted(missing)}; rerun bin/diagnose")
    return data


def confusion_rates(records: list[dict]) -> dict[str, tuple[Optional[float], int]]:
    """asked label -> (confusion rate, number of outputs), in the order the labels first occur."""
    performed: dict[str, list[str]] = {}
    for r in records:
        performed.setdefault(r["asked"], []).append(r["performed"])
    out = {}
    for asked, labels in performed.items():
        task, lang = asked.split(":")
        out[asked] = (confusion.task_confusion_rate(task, lang, labels), len(labels))
    return out
