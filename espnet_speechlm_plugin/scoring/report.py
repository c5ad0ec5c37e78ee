"""Stage 6 of every recipe: read hypotheses and references, score them, write RESULTS.md and results.json.

Where it sits: stage 5 writes `<decode_dir>/<test_set>/text` (`utt hypothesis`); the test set's data dir
`<ref_dir>/<test_set>/` holds `text` (references), `prompt` (`utt lang task [question...]`) and optionally
`transcript` (`utt` + source-language transcript of the audio), `text.sentences`/`transcript.sentences`
(long-form references split into sentences, for COMET's re-segmentation), `mcif_id` (MCIF sample ids) and
`mcif_ref` (the MCIF reference files the test set came from); `<ref_dir>/corpus_stats.json` is optional. When
stage 5 ran the task-confusion diagnostic, its `<decode_dir>/<test_set>/diagnose/task_confusion.json` is read too
(`scoring.diagnostic`).
`score_test_set` groups utterances by (task, output language), runs the metrics of `build_registry(options)`
(`metrics.TASK_METRICS` + COMET + BERTScore + repetition) and the task-confusion labels of
`confusion.classify_output`; `run_scoring` writes the hypotheses as an MCIF output file (`scoring.mcif`), scores
a test set with `mcif_ref` also with the official MCIF evaluation (`scoring.official`), and writes RESULTS.md and
results.json atomically. `bin/score.py` is the command-line entry point.

Two evaluations, never mixed in one number: our per-utterance scoring (every utterance against its own reference;
the tables of RESULTS.md and the rows of results.json without an "evaluation" key) and, for MCIF test sets, the
official one (talk-level joining and re-segmentation; its own section, rows with "evaluation": "mcif").

results.json is a list of rows {"test_set", "task", "lang", "metric", "value", "n"} (n = utterances scored;
a row of a metric that could not be computed has value null and a "note"); the diagnostic's rows have the test
set `<test_set>:diagnose`, metric `task_confusion` and the asked task/language. Rows of the official MCIF
evaluation add "evaluation": "mcif" and "track"; their task is the MCIF task and their metric the official name.
"""
from __future__ import annotations

import dataclasses
import datetime
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from espnet_speechlm_plugin.data.kaldi import read_kaldi_lines, read_kaldi_text, write_atomic
from espnet_speechlm_plugin.scoring import confusion, diagnostic, mcif, official
from espnet_speechlm_plugin.scoring.bertscore import BertScoreOptions, make_bertscore_metric
from espnet_speechlm_plugin.scoring.comet import CometOptions, make_comet_metric
from espnet_speechlm_plugin.scoring.metrics import (
    TASK_METRICS, Group, MetricFn, MetricResult, compute_metrics, unanswerable_strings,
)
from espnet_speechlm_plugin.scoring.repetition import repetition_metric
from espnet_speechlm_plugin.vocab import DEFAULT_LANGUAGES, TASKS, Prompt, PromptError, parse_prompt
from espnet_speechlm_plugin.vocab import config_languages as vocab_config_languages

# Column order of the RESULTS.md tables; metrics added later without a place here go to the end.
METRIC_ORDER = (
    "wer", "cer", "bleu", "chrf", "comet", "exact_match", "unanswerable_acc", "bertscore_f1", "repetition",
    "task_confusion",
)
SENTENCE_SEPARATOR = " ||| "  # between the sentences of a line of text.sentences / transcript.sentences
_SCALE_100 = {"bleu", "chrf"}  # sacreBLEU's 0-100 scale; everything else is a fraction


class ScoringError(ValueError):
    """An input problem a person must fix; the message names the file, line and what to do."""


# -------------------------------------------------------------------------------------------------- options
@dataclass
class ScoringOptions:
    """What stage 6 computes beyond the option-free metrics of `metrics.TASK_METRICS`.

    comet/bertscore: None turns the metric off (no row at all); otherwise a model that is not available gives a
    "not computed" row. mcif_track: None writes no MCIF XML (and runs no official evaluation); a test set with
    `mcif_ref` takes the track of its references. hyp_xml: score these MCIF XML files instead of the decode dir's
    `text` (one test set only); hyp_track: read only their tasks of this track (None: any).
    """

    comet: Optional[CometOptions] = field(default_factory=CometOptions)
    bertscore: Optional[BertScoreOptions] = field(default_factory=BertScoreOptions)
    repetition: bool = True
    mcif_track: Optional[str] = "short"
    hyp_xml: list[Path] = field(default_factory=list)
    hyp_track: Optional[str] = None
    # Candidates of language identification besides each test set's prompt languages: the training config's
    # `languages:` (`run_scoring` reads them from its `config`).
    languages: list[str] = field(default_factory=list)


def build_registry(options: ScoringOptions) -> dict[str, list[MetricFn]]:
    """task -> metric functions: `metrics.TASK_METRICS` plus COMET, BERTScore and the repetition check."""
    registry = {task: list(fns) for task, fns in TASK_METRICS.items()}
    if options.comet is not None:
        registry["translate"].append(make_comet_metric(options.comet))
    if options.bertscore is not None:
        registry["answer"].append(make_bertscore_metric(options.bertscore))
    if options.repetition:
        for fns in registry.values():
            fns.append(repetition_metric)
    return registry


# -------------------------------------------------------------------------------------------------- reading
def read_prompts(path: Path) -> dict[str, Prompt]:
    """Parse a `prompt` file (`utt lang task [question...]`) with `vocab.parse_prompt`: any language code (a recipe
    may add languages by config; the default ones only sort first), a known task, a question for `answer`."""
    prompts: dict[str, Prompt] = {}
    for lineno, utt, value in read_kaldi_lines(path):
        try:
            prompt = parse_prompt(value, None, f"{path} line {lineno}: utterance '{utt}'")
        except PromptError as err:
            raise ScoringError(str(err)) from None
        if utt in prompts:
            raise ScoringError(f"{path} line {lineno}: utterance '{utt}' has a second prompt")
        prompts[utt] = prompt
    return prompts


def read_hypotheses(path: Path, known: dict[str, str]) -> dict[str, str]:
    """Hypotheses of a decode dir; an utterance that is not in the references is an error."""
    hyps = read_kaldi_text(path)
    unknown = set(hyps) - set(known)
    if unknown:
        for lineno, utt, _ in read_kaldi_lines(path):
            if utt in unknown:
                raise ScoringError(
                    f"{path} line {lineno}: hypothesis for utterance '{utt}', which is not in the references "
                    f"({len(unknown)} such); was this decode dir made from another test set?"
                )
    return hyps


# -------------------------------------------------------------------------------------------------- scoring
def read_sentences(path: Path, known: dict[str, str]) -> dict[str, list[str]]:
    """`text.sentences` / `transcript.sentences`: `utt sentence ||| sentence ...` for long-form utterances."""
    if not path.is_file():
        return {}
    out = {}
    for lineno, utt, value in read_kaldi_lines(path):
        if utt not in known:
            raise ScoringError(f"{path} line {lineno}: utterance '{utt}' is not in the test set's text")
        out[utt] = [s.strip() for s in value.split(SENTENCE_SEPARATOR.strip())]
    return out


@dataclass
class TestSetScore:
    """Everything RESULTS.md and results.json say about one test set."""

    name: str
    n_utts: int
    results: list[tuple[str, str, MetricResult]] = field(default_factory=list)  # (task, lang, result)
    missing: list[str] = field(default_factory=list)  # utterances without a hypothesis (scored as "")
    has_transcript: bool = False
    confusion_pairs: list[tuple[str, str]] = field(default_factory=list)  # (asked, performed) per utterance
    diagnostic: Optional[dict] = None  # bin/diagnose's task_confusion.json, when stage 5 made one
    diagnostic_path: Optional[Path] = None
    hyp_source: str = ""  # where the hypotheses came from
    hyps: dict[str, str] = field(default_factory=dict)
    langs: dict[str, str] = field(default_factory=dict)  # utt -> output language (for the MCIF export)
    official_results: list[official.OfficialResult] = field(default_factory=list)  # test sets with mcif_ref
    official_notes: list[str] = field(default_factory=list)


def load_groups(
    decode_dir: Path, ref_dir: Path, test_set: str, hyp_xml: Optional[list[Path]] = None,
    hyp_track: Optional[str] = None,
) -> tuple[list[Group], list[str], bool]:
    """Read one test set into (task, lang) groups; returns (groups, utterances missing a hypothesis,
    whether a transcript file was found). Hypotheses come from `<decode_dir>/<test_set>/text`, or from MCIF XML
    files when `hyp_xml` is given."""
    data = Path(ref_dir) / test_set
    hyp_path = Path(decode_dir) / test_set / "text"
    for path, what in ((data / "text", "references"), (data / "prompt", "prompts")):
        if not path.is_file():
            raise ScoringError(f"{path}: {what} of test set '{test_set}' not found (made by stage 1/2 data prep)")
    if not hyp_xml and not hyp_path.is_file():
        raise ScoringError(
            f"{hyp_path}: hypotheses of test set '{test_set}' not found; run stage 5 (decoding) first"
        )
    refs = read_kaldi_text(data / "text")
    prompts = read_prompts(data / "prompt")
    for utt in refs:
        if utt not in prompts:
            raise ScoringError(f"{data / 'prompt'}: no prompt for utterance '{utt}' of {data / 'text'}")
    for utt in prompts:
        if utt not in refs:
            raise ScoringError(f"{data / 'text'}: no reference for utterance '{utt}' of {data / 'prompt'}")
    transcript_path = data / "transcript"
    transcripts = read_kaldi_text(transcript_path) if transcript_path.is_file() else {}
    if hyp_xml:
        try:
            hyps = mcif.import_hypotheses(hyp_xml, data, {u: p.lang for u, p in prompts.items()}, track=hyp_track)
        except mcif.McifError as e:
            raise ScoringError(str(e)) from None
    else:
        hyps = read_hypotheses(hyp_path, refs)
    missing = [utt for utt in refs if utt not in hyps]
    ref_sentences = read_sentences(data / "text.sentences", refs)
    src_sentences = read_sentences(data / "transcript.sentences", refs)
    unanswerable = list(unanswerable_strings(data).values())

    groups: dict[tuple[str, str], Group] = {}
    for utt, ref in refs.items():
        p = prompts[utt]
        g = groups.setdefault((p.task, p.lang), Group(test_set, p.task, p.lang, [], [], [], unanswerable=unanswerable))
        g.utts.append(utt)
        g.refs.append(ref)
        g.hyps.append(hyps.get(utt, ""))
        # A transcription's reference is the transcript itself.
        g.transcripts.append(transcripts.get(utt, ref if p.task == "transcribe" else None))
        g.questions.append(p.question)
        g.ref_sentences.append(ref_sentences.get(utt))
        g.src_sentences.append(src_sentences.get(utt))
    def order(g: Group):  # tasks in TASKS order; the default languages first, then the others alphabetically
        langs = DEFAULT_LANGUAGES
        return TASKS.index(g.task), langs.index(g.lang) if g.lang in langs else len(langs), g.lang

    return sorted(groups.values(), key=order), missing, bool(transcripts)


def classify_group(group: Group, languages: Optional[list[str]] = None) -> list[str]:
    """The performed-task label of every output of a group (see `confusion.classify_output`); `languages`: the
    languages in play (default: the built-in ones and the group's)."""
    labels = []
    for hyp, transcript, question in zip(group.hyps, group.transcripts, group.questions):
        labels.append(
            confusion.classify_output(
                hyp,
                transcript=transcript,
                transcript_lang=group.lang if group.task == "transcribe" else None,
                question=question if group.task == "answer" and question else None,
                question_lang=group.lang if group.task == "answer" else None,
                languages=languages,
                unanswerable=group.unanswerable,
            )
        )
    return labels


def score_test_set(
    decode_dir: Path, ref_dir: Path, test_set: str, options: Optional[ScoringOptions] = None
) -> TestSetScore:
    options = ScoringOptions() if options is None else options
    registry = build_registry(options)
    groups, missing, has_transcript = load_groups(decode_dir, ref_dir, test_set, options.hyp_xml, options.hyp_track)
    score = TestSetScore(test_set, sum(g.n for g in groups), missing=missing, has_transcript=has_transcript)
    score.hyp_source = (", ".join(str(p) for p in options.hyp_xml) if options.hyp_xml
                        else str(Path(decode_dir) / test_set / "text"))
    languages = sorted({g.lang for g in groups} | set(options.languages))  # language identification's candidates
    for g in groups:
        score.hyps.update(zip(g.utts, g.hyps))
        score.langs.update((u, g.lang) for u in g.utts)
        for r in compute_metrics(g, registry):
            score.results.append((g.task, g.lang, r))
        labels = classify_group(g, languages)
        rate = confusion.task_confusion_rate(g.task, g.lang, labels)
        score.results.append((g.task, g.lang, MetricResult("task_confusion", rate, g.n, "classify_output")))
        score.confusion_pairs.extend((confusion.asked_label(g.task, g.lang), lab) for lab in labels)
    diag_path = Path(decode_dir) / test_set / diagnostic.DIAGNOSE_SUBDIR / diagnostic.DIAGNOSTIC_FILE
    if diag_path.is_file():
        try:
            score.diagnostic = diagnostic.read_diagnostic(diag_path)
        except diagnostic.DiagnosticError as e:
            raise ScoringError(str(e)) from None
        score.diagnostic_path = diag_path
    return score


def results_rows(scores: list[TestSetScore]) -> list[dict]:
    """The rows of results.json."""
    rows = []
    for s in scores:
        for task, lang, r in s.results:
            row = {"test_set": s.name, "task": task, "lang": lang, "metric": r.metric, "value": r.value, "n": r.n}
            if r.note:
                row["note"] = r.note
            rows.append(row)
        if s.diagnostic is not None:
            for asked, (rate, n) in diagnostic.confusion_rates(s.diagnostic["records"]).items():
                task, lang = asked.split(":")
                rows.append({"test_set": f"{s.name}:diagnose", "task": task, "lang": lang,
                             "metric": "task_confusion", "value": rate, "n": n})
        rows += official.rows(s.official_results, s.name)
    return rows


# ------------------------------------------------------------------------------------------------ rendering
def _fmt(metric: str, value: Optional[float]) -> str:
    if value is None:
        return "n/c"
    return f"{value:.1f}" if metric in _SCALE_100 else f"{value:.3f}"


def _metric_key(metric: str) -> tuple:
    return (METRIC_ORDER.index(metric) if metric in METRIC_ORDER else len(METRIC_ORDER), metric)


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return lines + ["| " + " | ".join(r) + " |" for r in rows]


def render_test_set(s: TestSetScore) -> list[str]:
    lines = [f"## {s.name}", "", f"{s.n_utts} utterances."]
    if s.missing:
        shown = ", ".join(s.missing[:5]) + (", ..." if len(s.missing) > 5 else "")
        noun = "hypothesis" if len(s.missing) == 1 else "hypotheses"
        lines[-1] += f" {len(s.missing)} {noun} missing (scored as empty output): {shown}."
    lines.append("")

    metrics = sorted({r.metric for _, _, r in s.results}, key=_metric_key)
    by_group: dict[tuple[str, str], dict[str, MetricResult]] = {}
    group_n: dict[tuple[str, str], int] = Counter()
    for task, lang, r in s.results:
        by_group.setdefault((task, lang), {})[r.metric] = r
        group_n[(task, lang)] = max(group_n[(task, lang)], r.n)
    rows = []
    for (task, lang), cells in by_group.items():
        row = [task, lang, str(group_n[(task, lang)])]
        for m in metrics:
            r = cells.get(m)
            if r is None:
                row.append("")
            elif r.n != group_n[(task, lang)]:
                row.append(f"{_fmt(m, r.value)} (n={r.n})")  # scored on a subset, e.g. unanswerable refs
            else:
                row.append(_fmt(m, r.value))
        rows.append(row)
    lines += _table(["task", "lang", "n"] + metrics, rows)

    lines += ["", "Task confusion (rows: task asked, columns: task the output performed):", ""]
    asked, performed, counts = confusion.confusion_matrix(s.confusion_pairs)
    lines += _table(["asked \\ performed"] + performed, [[a] + [str(counts[a][p]) for p in performed] for a in asked])

    # One note per (metric, text), naming the languages it applies to.
    note_langs: dict[tuple[str, str], list[str]] = {}
    for _, lang, r in s.results:
        text = r.note or r.info
        if r.metric != "task_confusion" and text:
            langs = note_langs.setdefault((r.metric, text), [])
            if lang not in langs:
                langs.append(lang)
    notes = [f"- {metric} ({', '.join(langs)}): {text}" for (metric, text), langs in note_langs.items()]
    notes.append(
        "- task_confusion: fraction of outputs that performed another task (or output language) than asked, "
        "labelled by espnet_speechlm_plugin.scoring.confusion.classify_output (similarity >= "
        f"{confusion.SIMILARITY_THRESHOLD} to transcript/question, language identified by Lingua); "
        "empty or unidentifiable outputs ('other') are not counted"
    )
    if not s.has_transcript:
        notes.append(
            "- no `transcript` file: translate/answer outputs are compared with the output language only "
            "(an output copying the source transcript is recognised by its language)"
        )
    lines += ["", "Notes:", ""] + notes + [""]
    if s.diagnostic is not None:
        lines += render_diagnostic(s.diagnostic, s.diagnostic_path)
    if s.official_results or s.official_notes:
        lines += official.render(s.official_results, f"{s.name}: official MCIF evaluation",
                                 notes=s.official_notes)
    return lines


def render_diagnostic(diag: dict, path: Optional[Path]) -> list[str]:
    """The stage-5 diagnostic: the same utterances decoded with every prompt, asked x performed."""
    records = diag["records"]
    lines = [
        f"Task-confusion diagnostic: the same {diag.get('n_utts', '?')} utterances decoded with every task/language "
        f"prompt (`{path}`; rows: prompt asked, columns: what the output did):",
        "",
    ]
    asked, performed, counts = confusion.confusion_matrix((r["asked"], r["performed"]) for r in records)
    rates = diagnostic.confusion_rates(records)
    rows = []
    for a in asked:
        rate, n = rates[a]
        rows.append([a, str(n), _fmt("task_confusion", rate)] + [str(counts[a][p]) for p in performed])
    lines += _table(["asked \\ performed", "n", "task_confusion"] + performed, rows)
    return lines + [""]


def render_corpus_stats(stats: dict) -> list[str]:
    lines = ["## Corpus", ""]
    if all(not isinstance(v, (dict, list)) for v in stats.values()):
        return lines + _table(["statistic", "value"], [[str(k), str(v)] for k, v in stats.items()]) + [""]
    return lines + ["```json", json.dumps(stats, indent=2, ensure_ascii=False), "```", ""]


def render_results_md(
    scores: list[TestSetScore],
    *,
    model_tag: str,
    config: Optional[str],
    decode_dir: str,
    ref_dir: str,
    date: str,
    corpus_stats: Optional[dict] = None,
) -> str:
    lines = [
        f"# RESULTS: {model_tag}",
        "",
        f"- model: {model_tag}",
        f"- config: {config or '(not given)'}",
        f"- date: {date}",
        f"- hypotheses: {decode_dir}",
        f"- references: {ref_dir}",
        "- evaluation: per-utterance scoring of this project (each utterance against its own reference; not the "
        "official MCIF evaluation, whose short track joins the outputs of a talk); a test set that came from MCIF "
        "references also has a section \"official MCIF evaluation\" (see docs/scoring.md)",
        f"- versions: {official.versions()}",
        "- metrics: wer/cer/exact_match/unanswerable_acc/comet/bertscore_f1/repetition/task_confusion are fractions "
        "(lower wer/cer/repetition/task_confusion is better); bleu/chrf are sacreBLEU's 0-100; "
        "n/c = not computed (see notes)",
        "",
    ]
    for s in scores:
        lines += render_test_set(s)
    if corpus_stats is not None:
        lines += render_corpus_stats(corpus_stats)
    return "\n".join(lines)


# ------------------------------------------------------------------------------------ official MCIF evaluation
def score_officially(s: TestSetScore, data_dir: Path, mcif_dir: Path, options: ScoringOptions) -> None:
    """Export `s`'s hypotheses as `mcif_dir/<test set>.xml` (not when they came from --hyp_xml files) and, when the
    data dir names MCIF reference files (`mcif_ref`), add the official scores of every reference task whose language
    the test set has. A reference task the official evaluation refuses gets a note saying why."""
    refs = mcif.read_reference_list(data_dir)
    if refs and not (data_dir / "mcif_id").is_file():
        raise mcif.McifError(f"{data_dir / 'mcif_ref'} names MCIF references, but there is no {data_dir / 'mcif_id'} "
                             f"mapping the utterances to their sample ids")
    tasks = [(ref, track, lang) for ref in refs for track, lang in mcif.tasks_in(ref)]
    tracks = sorted({track for _, track, _ in tasks})
    if len(tracks) > 1:
        raise mcif.McifError(f"{data_dir / 'mcif_ref'}: the reference files mix the tracks {tracks}; a test set "
                             f"is one track")
    track = tracks[0] if tracks else options.mcif_track
    langs = set(s.langs.values())
    if options.hyp_xml:
        hyp_files = list(options.hyp_xml)
    else:
        required: dict[str, list[str]] = {}
        for ref, t_track, lang in tasks:
            if lang in langs:
                required.setdefault(lang, []).extend(mcif.reference_ids(mcif.read_reference(ref, t_track, lang)))
        path = mcif_dir / f"{s.name}.xml"
        missing = set(s.missing)
        hyps = {u: h for u, h in s.hyps.items() if u not in missing}
        n_empty = mcif.export(hyps, s.langs, data_dir, path, track=track, name=s.name, required=required)
        hyp_files = [path]
        if tasks and n_empty:
            s.official_notes.append(f"{n_empty} samples had no hypothesis (no output, or no utterance for a reference "
                                    f"id) and were written empty into {path}")
    for ref, t_track, lang in tasks:
        if lang not in langs:
            s.official_notes.append(f"{t_track} track, {lang} in {ref}: not scored, the test set has no utterance "
                                    f"with output language {lang}")
            continue
        hyp = next((h for h in hyp_files if (t_track, lang) in mcif.tasks_in(h)), None)
        if hyp is None:
            s.official_notes.append(f"{t_track} track, {lang}: no task ({t_track}, {lang}) in {hyp_files}")
            continue
        try:
            s.official_results.append(official.evaluate(hyp, ref, t_track, lang, comet=options.comet,
                                                        bertscore=options.bertscore))
        except mcif.McifError as e:
            s.official_notes.append(f"{t_track} track, {lang}: the official evaluation stops: {e}")


# -------------------------------------------------------------------------------------------------- writing
def read_corpus_stats(ref_dir: Path) -> Optional[dict]:
    path = Path(ref_dir) / "corpus_stats.json"
    if not path.is_file():
        return None
    try:
        stats = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ScoringError(f"{path} line {e.lineno}: not valid JSON ({e.msg})") from e
    if not isinstance(stats, dict):
        raise ScoringError(f"{path}: expected a JSON object of statistics, got {type(stats).__name__}")
    return stats


def config_languages(config: Path) -> list[str]:
    """The output languages of a training config (`vocab.config_languages`); [] if there is no such file."""
    return [str(lang) for lang in vocab_config_languages(str(config))] if config.is_file() else []


def run_scoring(
    decode_dir: Path,
    ref_dir: Path,
    test_sets: list[str],
    out_dir: Path,
    *,
    model_tag: Optional[str] = None,
    config: Optional[str] = None,
    date: Optional[str] = None,
    options: Optional[ScoringOptions] = None,
) -> str:
    """Score every test set, write `out_dir/RESULTS.md`, `out_dir/results.json` and (unless `options.mcif_track`
    is None) the MCIF output file `out_dir/mcif/<test_set>.xml`, scored officially when the test set has
    `mcif_ref`; return the markdown."""
    options = ScoringOptions() if options is None else options
    if config and not options.languages:
        options = dataclasses.replace(options, languages=config_languages(Path(config)))
    if not test_sets:
        raise ScoringError("no test set given (--test_sets \"test dev\")")
    if options.hyp_xml and len(test_sets) != 1:
        raise ScoringError(f"--hyp_xml scores one test set, but {len(test_sets)} were given: {test_sets}")
    scores = [score_test_set(Path(decode_dir), Path(ref_dir), ts, options) for ts in test_sets]
    if options.mcif_track is not None:
        for s in scores:
            try:
                score_officially(s, Path(ref_dir) / s.name, Path(out_dir) / "mcif", options)
            except mcif.McifError as e:
                raise ScoringError(str(e)) from None
    markdown = render_results_md(
        scores,
        model_tag=model_tag or Path(out_dir).resolve().name,
        config=config,
        decode_dir=", ".join(str(p) for p in options.hyp_xml) if options.hyp_xml else str(decode_dir),
        ref_dir=str(ref_dir),
        date=date or datetime.datetime.now().strftime("%Y-%m-%d %H:%M"),
        corpus_stats=read_corpus_stats(Path(ref_dir)),
    )
    # One row per line: readable, and diffs between runs stay small.
    rows = [json.dumps(row, ensure_ascii=False) for row in results_rows(scores)]
    write_atomic(Path(out_dir) / "results.json", "[\n" + ",\n".join(rows) + "\n]\n")
    write_atomic(Path(out_dir) / "RESULTS.md", markdown)
    return markdown
