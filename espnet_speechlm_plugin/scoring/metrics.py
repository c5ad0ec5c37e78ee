"""Per-task metrics of stage 6 (scoring): WER/CER, sacreBLEU BLEU/chrF, exact match and unanswerable accuracy.

Where it sits: `scoring.report` reads a decode dir and a data dir, groups utterances by (test set, task, output
language) into a `Group`, and calls `compute_metrics(group)`; every function registered in `TASK_METRICS` for the
group's task returns `MetricResult`s, which become rows of `results.json` and cells of `RESULTS.md`.

Adding a metric is one function `(Group) -> list[MetricResult]` appended to `TASK_METRICS[task]`; metrics that
need options (COMET and BERTScore: which model) are made by `comet.make_comet_metric(options)` and
`bertscore.make_bertscore_metric(options)` and added by `report.build_registry`, as is `repetition`.
A metric that cannot be computed (e.g. its model is not available offline) returns
`MetricResult(metric, None, n, note="not computed: <why, how to fix>")`, never a 0.

Value ranges: wer, cer, exact_match, unanswerable_acc in [0, 1] (wer/cer can exceed 1 with many insertions);
bleu and chrf on sacreBLEU's 0-100 scale; comet (wmt22-comet-da: about 0-1), bertscore_f1 (rescaled: about 0-1,
can be negative) and repetition are fractions too.
"""
from __future__ import annotations

import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Optional

import jiwer
from sacrebleu.metrics import BLEU, CHRF

from espnet_speechlm_plugin.data.kaldi import KaldiFileError, read_kaldi_lines
from espnet_speechlm_plugin.scoring import normalizer
from espnet_speechlm_plugin.vocab import UNANSWERABLE


@dataclass
class Group:
    """The utterances of one (test set, task, output language), aligned lists in utterance order.

    `hyps` holds "" for a missing hypothesis; `transcripts` holds None where the data dir has no transcript.
    """

    test_set: str
    task: str
    lang: str
    utts: list[str]
    refs: list[str]
    hyps: list[str]
    transcripts: list[Optional[str]] = field(default_factory=list)
    questions: list[str] = field(default_factory=list)
    # Long-form utterances only: the reference and source split into aligned sentences (`text.sentences`,
    # `transcript.sentences` of the data dir); COMET re-segments such a hypothesis to these sentences.
    ref_sentences: list[Optional[list[str]]] = field(default_factory=list)
    src_sentences: list[Optional[list[str]]] = field(default_factory=list)
    # The unanswerable strings of the test set (`unanswerable_strings`); a reference equal to one of them is
    # scored by unanswerable_acc.
    unanswerable: list[str] = field(default_factory=lambda: list(UNANSWERABLE.values()))

    @property
    def n(self) -> int:
        return len(self.utts)


@dataclass
class MetricResult:
    """One metric value of a group. `info` says how it was computed (normaliser, signature); `note` is set
    instead of a value when the metric could not be computed."""

    metric: str
    value: Optional[float]
    n: int
    info: str = ""
    note: str = ""


# ----------------------------------------------------------------------------------------------------- WER / CER
def normalizer_name(lang: str) -> str:
    """The text normaliser applied before WER/CER, as the IWSLT 2025 / MCIF evaluation does."""
    return normalizer.normalizer_name(lang)


def normalize_for_wer(text: str, lang: str) -> str:
    """The official normaliser (`scoring.normalizer`: Whisper's English one for en, its basic one otherwise);
    whitespace collapsed."""
    return " ".join(normalizer.normalize(text, lang).split())


def _chars(text: str) -> str:
    # CER counts characters without whitespace: Chinese is written without spaces, so spaces are noise.
    return " ".join("".join(text.split()))


def _error_rate(refs: list[str], hyps: list[str]) -> Optional[float]:
    """Corpus-level (S + D + I) / reference words over space-separated tokens; None if no reference word."""
    n_ref = sum(len(r.split()) for r in refs)
    if n_ref == 0:
        return None
    out = jiwer.process_words(refs, hyps)
    return (out.substitutions + out.deletions + out.insertions) / n_ref


def word_error_rate(refs: list[str], hyps: list[str], lang: str) -> Optional[float]:
    """Corpus WER after `normalize_for_wer`; None when the references hold no word."""
    return _error_rate([normalize_for_wer(t, lang) for t in refs], [normalize_for_wer(t, lang) for t in hyps])


def char_error_rate(refs: list[str], hyps: list[str], lang: str = "zh") -> Optional[float]:
    """Corpus CER after `normalize_for_wer` (punctuation removed), whitespace ignored."""
    return _error_rate(
        [_chars(normalize_for_wer(t, lang)) for t in refs], [_chars(normalize_for_wer(t, lang)) for t in hyps]
    )


# ---------------------------------------------------------------------------------------------------- BLEU / chrF
def bleu_tokenizer(lang: str) -> str:
    """sacreBLEU's tokenizer for a target language: "zh" segments Chinese characters, "13a" for the rest."""
    return "zh" if lang == "zh" else "13a"


def corpus_bleu(refs: list[str], hyps: list[str], lang: str) -> tuple[float, str]:
    """sacreBLEU corpus BLEU (0-100) and its signature."""
    metric = BLEU(tokenize=bleu_tokenizer(lang))
    score = metric.corpus_score(hyps, [refs]).score
    return score, str(metric.get_signature())


def corpus_chrf(refs: list[str], hyps: list[str]) -> tuple[float, str]:
    """sacreBLEU corpus chrF (0-100, chrF2 defaults) and its signature."""
    metric = CHRF()
    score = metric.corpus_score(hyps, [refs]).score
    return score, str(metric.get_signature())


# ------------------------------------------------------------------------------------------------- exact match
def _is_edge_noise(ch: str) -> bool:
    return ch.isspace() or unicodedata.category(ch)[0] in "PS"


def normalize_answer(text: str) -> str:
    """Light normalisation for exact match: NFKC (full-width forms to ASCII), case-folded, inner whitespace
    collapsed, punctuation/symbols/whitespace stripped at both ends (incl. Chinese '。', '？', '！', '“')."""
    text = " ".join(unicodedata.normalize("NFKC", text).casefold().split())
    start, end = 0, len(text)
    while start < end and _is_edge_noise(text[start]):
        start += 1
    while end > start and _is_edge_noise(text[end - 1]):
        end -= 1
    return text[start:end]


UNANSWERABLE_FILE = "unanswerable"  # in a data dir: `lang string` lines, e.g. `fr Pas de réponse possible.`


def unanswerable_strings(data_dir: Optional[Path] = None) -> dict[str, str]:
    """The unanswerable answer per language: `vocab.UNANSWERABLE`, updated with the data dir's `unanswerable` file
    when it has one. Data preparation writes that file from the recipe's own language definitions (the demo: each
    language's `unanswerable:` in conf/grammar.yaml), so a language a recipe adds is scored like the built-in
    ones."""
    strings = dict(UNANSWERABLE)
    path = Path(data_dir) / UNANSWERABLE_FILE if data_dir is not None else None
    if path is not None and path.is_file():
        for lineno, lang, text in read_kaldi_lines(path):
            if not text.strip():
                raise KaldiFileError(f"{path} line {lineno}: language '{lang}' has no unanswerable string")
            strings[lang] = text
    return strings


def is_unanswerable(text: str, strings: Optional[Iterable[str]] = None) -> bool:
    """True if `text` is one of the unanswerable `strings` (default: `vocab.UNANSWERABLE`, any language, including
    those a recipe added with `vocab.add_unanswerable`), up to `normalize_answer`."""
    strings = UNANSWERABLE.values() if strings is None else strings
    return normalize_answer(text) in {normalize_answer(s) for s in strings}


def exact_match(refs: list[str], hyps: list[str]) -> Optional[float]:
    """Fraction of hypotheses equal to their reference after `normalize_answer`; None for no utterance."""
    if not refs:
        return None
    return sum(normalize_answer(r) == normalize_answer(h) for r, h in zip(refs, hyps)) / len(refs)


def unanswerable_accuracy(
    refs: list[str], hyps: list[str], strings: Optional[Iterable[str]] = None
) -> tuple[Optional[float], int]:
    """Exact match restricted to the references that are unanswerable `strings` (default: the built-in ones);
    (value, how many such refs)."""
    pairs = [(r, h) for r, h in zip(refs, hyps) if is_unanswerable(r, strings)]
    if not pairs:
        return None, 0
    return exact_match([r for r, _ in pairs], [h for _, h in pairs]), len(pairs)


# -------------------------------------------------------------------------------------------- metrics per task
def asr_metrics(group: Group) -> list[MetricResult]:
    """WER for space-delimited languages, CER for zh (a Chinese sentence is one whitespace token)."""
    info = "normaliser: " + normalizer_name(group.lang)
    if group.lang == "zh":
        return [MetricResult("cer", char_error_rate(group.refs, group.hyps, group.lang), group.n, info)]
    return [MetricResult("wer", word_error_rate(group.refs, group.hyps, group.lang), group.n, info)]


def st_metrics(group: Group) -> list[MetricResult]:
    bleu, bleu_sig = corpus_bleu(group.refs, group.hyps, group.lang)
    chrf, chrf_sig = corpus_chrf(group.refs, group.hyps)
    return [
        MetricResult("bleu", bleu, group.n, "sacreBLEU signature: " + bleu_sig),
        MetricResult("chrf", chrf, group.n, "sacreBLEU signature: " + chrf_sig),
    ]


_ANSWER_NORM_INFO = "compared after NFKC, case folding, leading/trailing punctuation and whitespace removed"


def sqa_metrics(group: Group) -> list[MetricResult]:
    results = [MetricResult("exact_match", exact_match(group.refs, group.hyps), group.n, _ANSWER_NORM_INFO)]
    value, n_unans = unanswerable_accuracy(group.refs, group.hyps, group.unanswerable)
    if n_unans:
        info = "on references that are the unanswerable strings; " + _ANSWER_NORM_INFO
        results.append(MetricResult("unanswerable_acc", value, n_unans, info))
    return results


MetricFn = Callable[[Group], list[MetricResult]]

# task -> metric functions, run in order. Append to a list to add a metric to every recipe's stage 6.
TASK_METRICS: dict[str, list[MetricFn]] = {
    "transcribe": [asr_metrics],
    "translate": [st_metrics],
    "answer": [sqa_metrics],
}


def compute_metrics(group: Group, registry: Optional[dict[str, list[MetricFn]]] = None) -> list[MetricResult]:
    """Every metric registered for the group's task (in `registry`, default `TASK_METRICS`), in order."""
    results: list[MetricResult] = []
    for fn in (TASK_METRICS if registry is None else registry)[group.task]:
        results.extend(fn(group))
    return results
