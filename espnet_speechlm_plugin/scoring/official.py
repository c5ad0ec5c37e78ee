"""The official MCIF / IWSLT 2025 instruction-following evaluation, computed offline from its XML files.

Where it sits: `bin/score.py --ref_xml REF.xml --hyp_xml OUT.xml` calls `evaluate` for each (track, language) of the
references; stage 6 (`scoring.report`) does the same for a test set whose data dir names its MCIF reference files
(`mcif_ref`), after exporting the decoded outputs as an output file (`scoring.mcif`).

What the official code (hlt-mt/mcif `src/mcif/evaluation.py`, `mcif_eval`; PyPI mcif-bench 1.0) computes, and what
we do:
- QA-BERTScore (every track and language) and SUM-BERTScore (long track): mean rescaled F1 of
  `bert_score.score(hyps, refs, lang=lang, rescale_with_baseline=True)` over the samples; each QA/SUM sample covers
  one output sample. With `breakdown_qa_types`, also the mean per qa_type and per qa_origin (QA-<type>-BERTScore).
  Ours: the same call (`scoring.bertscore`: bert_score's model and baseline for the language, from local files).
- ASR-WER (en): per talk, the outputs of the talk's samples are each normalised (`scoring.normalizer`: whisper
  normaliser as in version 0.0.10) and joined with a space; the talk's reference is normalised;
  `jiwer.wer(references, hypotheses)` over all talks. Ours: the same strings and the same jiwer call (jiwer 4.0.0
  gives jiwer 3.0.5's number whenever every normalised reference has a word; 3.0.5 stops otherwise, and so do we).
- TRANS-COMET (de/it/zh): per talk, the outputs are joined with newlines and cut into one piece per reference
  sentence (reference lines) by mwerSegmenter, by characters for zh (`scoring.resegment`, the binary's exact
  result); each piece is a triple {src: transcript line, mt: piece, ref: reference line};
  `load_from_checkpoint(download_model("Unbabel/wmt22-comet-da")).predict(triples, batch_size=8, gpus=1)
  .system_score`. Ours: the same triples and predict call (`scoring.comet`), gpus=1 only where CUDA is available.
- The official checks: QA must be present; the short track holds exactly two tasks (ASR for en, TRANS otherwise);
  the long track needs SUM and, outside en, TRANS. A failed check, a hypothesis sample missing for a reference id, or
  an empty normalised ASR reference stops the evaluation with an error, as it stops the official one.
A metric whose model is not available here is "not computed" with the reason; the others are still computed.
"""
from __future__ import annotations

import importlib.metadata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import jiwer

from espnet_speechlm_plugin.scoring.bertscore import BertScoreOptions, bertscore_f1_items
from espnet_speechlm_plugin.scoring.bertscore import NotAvailable as BertScoreNotAvailable
from espnet_speechlm_plugin.scoring.comet import CometOptions, comet_system_score
from espnet_speechlm_plugin.scoring.comet import NotAvailable as CometNotAvailable
from espnet_speechlm_plugin.scoring.mcif import McifError, ReferenceSample, read_hypothesis, read_reference, tasks_in
from espnet_speechlm_plugin.scoring.normalizer import normalize
from espnet_speechlm_plugin.scoring.resegment import CHARACTER_LEVEL_LANGS, resegment

OFFICIAL_CODE = "hlt-mt/mcif src/mcif/evaluation.py (mcif_eval, PyPI mcif-bench 1.0)"
# The official pins (mcif-bench's requirements) and the PyPI name of each package.
OFFICIAL_PINS = {"jiwer": "3.0.5", "whisper-normalizer": "0.0.10", "unbabel-comet": "2.2.4", "bert-score": "0.3.13"}

References = dict[str, dict[str, ReferenceSample]]


@dataclass
class OfficialScore:
    """One score of the official evaluation, named as it names them (ASR-WER, TRANS-COMET, QA-BERTScore, ...)."""

    name: str
    value: Optional[float]
    n: int  # reference samples scored (talks for ASR/TRANS, questions for QA, talks for SUM)
    info: str = ""
    note: str = ""  # set instead of a value when it could not be computed here


@dataclass
class OfficialResult:
    track: str
    lang: str
    reference: Path
    hypothesis: Path
    scores: list[OfficialScore] = field(default_factory=list)


def versions() -> str:
    """The installed scoring packages, each with the version the official evaluation pins."""
    parts = []
    for name in ("jiwer", "whisper-normalizer", "unbabel-comet", "bert-score", "sacrebleu"):
        try:
            version = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            version = "not installed"
        pin = OFFICIAL_PINS.get(name)
        parts.append(f"{name} {version}" + (f" (official: {pin})" if pin and pin != version else ""))
    return ", ".join(parts)


def _hypotheses_of(hyps: dict[str, str], sample: ReferenceSample, hyp_path: Path) -> list[str]:
    missing = [sid for sid in sample.sample_ids if sid not in hyps]
    if missing:
        raise McifError(f"{hyp_path}: no sample for id(s) {missing[:5]}{' ...' if len(missing) > 5 else ''} of "
                        f"{sample.task} reference {sample.iid}; the official evaluation needs every id")
    return [hyps[sid] for sid in sample.sample_ids]


def asr_wer(hyps: dict[str, str], refs: References, lang: str, hyp_path: Path = Path("?")) -> float:
    """The official ASR-WER: talk-joined normalised outputs against normalised talk references, corpus WER."""
    references, hypotheses = [], []
    for iid, sample in refs["ASR"].items():
        ref = normalize(sample.reference or "", lang)
        if not ref.split():
            raise McifError(f"ASR reference {iid} has no word after normalisation; the official evaluation (jiwer "
                            f"3.0.5) stops with 'one or more references are empty strings'")
        references.append(ref)
        hypotheses.append(" ".join(normalize(h, lang) for h in _hypotheses_of(hyps, sample, hyp_path)))
    if not references:
        raise McifError("no ASR reference sample; the official evaluation (jiwer 3.0.5) stops on an empty corpus")
    return jiwer.wer(references, hypotheses)


def translation_triples(hyps: dict[str, str], refs: References, lang: str, hyp_path: Path = Path("?")
                        ) -> list[dict[str, str]]:
    """The official COMET input: per talk, the joined outputs re-segmented to the reference lines."""
    triples = []
    for iid, sample in refs["TRANS"].items():
        ref_lines = (sample.reference or "").split("\n")
        transcript = sample.metadata.get("transcript")
        if transcript is None:
            raise McifError(f"TRANS reference {iid} has no <metadata><transcript>, COMET's source")
        src_lines = transcript.split("\n")
        if len(ref_lines) != len(src_lines):
            raise McifError(f"TRANS reference {iid} has {len(ref_lines)} reference lines but {len(src_lines)} "
                            f"transcript lines; the official evaluation needs one source line per reference line")
        pieces = resegment("\n".join(_hypotheses_of(hyps, sample, hyp_path)), ref_lines,
                           character_level=lang in CHARACTER_LEVEL_LANGS)
        triples += [{"src": s.strip(), "mt": p.strip(), "ref": r.strip()}
                    for p, r, s in zip(pieces, ref_lines, src_lines)]
    return triples


def _bertscore(hyps: dict[str, str], refs: References, lang: str, task: str, options: Optional[BertScoreOptions],
               hyp_path: Path, breakdown: bool = False) -> list[OfficialScore]:
    name = f"{task}-BERTScore"
    pairs, groups = [], {}
    for i, (iid, sample) in enumerate(refs[task].items()):
        if len(sample.sample_ids) != 1:
            raise McifError(f"{task} reference {iid} covers several sample ids {sample.sample_ids}; the official "
                            f"evaluation scores one output per {task} sample")
        if sample.reference is None:
            raise McifError(f"{task} reference {iid} has an empty <reference>")
        pairs.append((_hypotheses_of(hyps, sample, hyp_path)[0], sample.reference))
        if breakdown:
            for key in ("qa_type", "qa_origin"):
                if sample.metadata.get(key) is None:
                    raise McifError(f"{task} reference {iid} has no {key} attribute, which the breakdown needs")
                groups.setdefault(sample.metadata[key], []).append(i)
    n = len(pairs)
    if options is None:
        return [OfficialScore(name, None, n, note="not computed: BERTScore turned off (--bertscore_model none)")]
    try:
        f1, sig = bertscore_f1_items([r for _, r in pairs], [h for h, _ in pairs], lang, options)
    except BertScoreNotAvailable as e:
        return [OfficialScore(name, None, n, note=f"not computed: {e}")]
    import torch

    f1 = torch.tensor(f1)
    info = f"bert_score F1, rescaled with baseline, lang={lang}, mean over {n} samples; hash: {sig}"
    scores = [OfficialScore(name, f1.mean().item(), n, info)]
    for group, idx in groups.items():
        scores.append(OfficialScore(f"{task}-{group}-BERTScore", f1[idx].mean().item(), len(idx), info))
    return scores


def _comet(hyps: dict[str, str], refs: References, lang: str, options: Optional[CometOptions], hyp_path: Path
           ) -> OfficialScore:
    triples = translation_triples(hyps, refs, lang, hyp_path)
    n = len(refs["TRANS"])
    if options is None:
        return OfficialScore("TRANS-COMET", None, n, note="not computed: COMET turned off (--comet_model none)")
    try:
        value = comet_system_score(triples, options)
    except CometNotAvailable as e:
        return OfficialScore("TRANS-COMET", None, n, note=f"not computed: {e}")
    char = ", by characters" if lang in CHARACTER_LEVEL_LANGS else ""
    return OfficialScore("TRANS-COMET", value, n, f"model {options.model}, system score of {len(triples)} "
                                                  f"sentences (talk outputs re-segmented by mwerSegmenter{char})")


def evaluate(hyp_path: Path, ref_path: Path, track: str, lang: str, *, comet: Optional[CometOptions] = None,
             bertscore: Optional[BertScoreOptions] = None, modality: Optional[str] = None,
             breakdown_qa_types: bool = False) -> OfficialResult:
    """Every score the official evaluation gives for this track and language, in its order."""
    hyp_path, ref_path = Path(hyp_path), Path(ref_path)
    hyps = read_hypothesis(hyp_path, track, lang)
    refs = read_reference(ref_path, track, lang, modality)
    result = OfficialResult(track, lang, ref_path, hyp_path)

    def check(ok: bool, what: str) -> None:
        if not ok:
            raise McifError(f"{ref_path} ({track}, {lang}): {what}, which the official evaluation requires; the "
                            f"file has tasks {sorted(refs)}")

    check("QA" in refs, "no QA samples")
    result.scores += _bertscore(hyps, refs, lang, "QA", bertscore, hyp_path, breakdown_qa_types)
    if track == "short":
        check(len(refs) == 2, "not exactly two tasks in the short track")
    else:
        check("SUM" in refs, "no SUM samples in the long track")
        (summary,) = _bertscore(hyps, refs, lang, "SUM", bertscore, hyp_path)
        result.scores.append(summary)
    if lang == "en":
        check(track == "long" or "ASR" in refs, "no ASR samples for en in the short track")
        if "ASR" in refs:
            info = (f"jiwer.wer over {len(refs['ASR'])} talks; outputs normalised one by one and joined per talk "
                    f"(whisper normaliser as version 0.0.10)")
            result.scores.append(OfficialScore("ASR-WER", asr_wer(hyps, refs, lang, hyp_path), len(refs["ASR"]),
                                               info))
    else:
        check("TRANS" in refs, f"no TRANS samples for {lang}")
        result.scores.append(_comet(hyps, refs, lang, comet, hyp_path))
    return result


def rows(results: list[OfficialResult], test_set: str) -> list[dict]:
    """results.json rows of official scores: marked "evaluation": "mcif", with the track, the MCIF task (ASR, TRANS,
    QA, SUM) and the official name of the score as metric."""
    out = []
    for r in results:
        for s in r.scores:
            row = {"test_set": test_set, "evaluation": "mcif", "track": r.track, "task": s.name.split("-")[0],
                   "lang": r.lang, "metric": s.name, "value": s.value, "n": s.n}
            if s.note:
                row["note"] = s.note
            out.append(row)
    return out


def render(results: list[OfficialResult], title: str, *, notes: Optional[list[str]] = None) -> list[str]:
    """A RESULTS.md section with the official scores of `results` and `notes` (e.g. tasks that were not scored)."""
    lines = [f"## {title}", "",
             f"The official MCIF / IWSLT 2025 instruction-following evaluation ({OFFICIAL_CODE}), computed by "
             f"`espnet_speechlm_plugin.scoring.official`; docs/scoring.md says what matches it.", ""]
    lines += [f"- {r.track} track, {r.lang}: references `{r.reference}`, hypotheses `{r.hypothesis}`"
              for r in results]
    lines += [f"- {note}" for note in notes or []]
    if results:
        lines += ["", "| track | lang | metric | value | n |", "|---|---|---|---|---|"]
        for r in results:
            for s in r.scores:
                value = "n/c" if s.value is None else f"{s.value:.4f}"
                lines.append(f"| {r.track} | {r.lang} | {s.name} | {value} | {s.n} |")
        how: dict[tuple[str, str], list[str]] = {}
        for r in results:
            for s in r.scores:
                if s.note or s.info:
                    how.setdefault((s.name, s.note or s.info), []).append(r.lang)
        lines += ["", "Notes:", ""]
        lines += [f"- {name} ({', '.join(dict.fromkeys(langs))}): {text}" for (name, text), langs in how.items()]
    return lines + [""]


def run(ref_paths: list[Path], hyp_paths: list[Path], *, tracks: Optional[list[str]] = None,
        langs: Optional[list[str]] = None, comet: Optional[CometOptions] = None,
        bertscore: Optional[BertScoreOptions] = None, modality: Optional[str] = None,
        breakdown_qa_types: bool = False) -> list[OfficialResult]:
    """Evaluate every (track, language) task of the reference files (those of `tracks`/`langs`, when given) with the
    first hypothesis file that has it; a task no hypothesis file has is an error, as it is officially."""
    results = []
    for ref in map(Path, ref_paths):
        for track, lang in tasks_in(ref):
            if (tracks and track not in tracks) or (langs and lang not in langs):
                continue
            hyp = next((Path(h) for h in hyp_paths if (track, lang) in tasks_in(Path(h))), None)
            if hyp is None:
                raise McifError(f"no hypothesis file has a <task track=\"{track}\" text_lang=\"{lang}\"> for "
                                f"{ref} (given: {', '.join(map(str, hyp_paths))})")
            results.append(evaluate(hyp, ref, track, lang, comet=comet, bertscore=bertscore, modality=modality,
                                    breakdown_qa_types=breakdown_qa_types))
    if not results:
        raise McifError(f"no task of track {tracks or 'any'} and language {langs or 'any'} in "
                        f"{', '.join(map(str, ref_paths))}")
    return results


def results_markdown(results: list[OfficialResult], *, date: str) -> str:
    """RESULTS.md of an official evaluation run on its own (`bin/score.py --ref_xml ... --hyp_xml ...`)."""
    lines = ["# RESULTS: official MCIF evaluation", "", f"- date: {date}",
             f"- evaluation: official MCIF / IWSLT 2025 instruction-following evaluation ({OFFICIAL_CODE}), "
             f"reproduced offline (docs/scoring.md)", f"- versions: {versions()}", ""]
    return "\n".join(lines + render(results, "scores"))
