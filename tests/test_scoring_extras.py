"""Stage-6 additions without models: the repetition check, the MCIF XML export/import (and scoring from XML), long-form
sentence files, and the diagnostic's planning/labelling/report (the decoding part is in test_scoring_diagnose.py;
re-segmentation and the official MCIF evaluation are in test_scoring_official.py)."""
import json

import jiwer
import pytest
from test_scoring import REFS, SOURCE, make_fake_dirs

from espnet_speechlm_plugin.scoring import diagnostic, mcif, metrics, report
from espnet_speechlm_plugin.scoring.diagnostic import Utterance
from espnet_speechlm_plugin.scoring.repetition import find_loop, repetition_metric
from espnet_speechlm_plugin.scoring.report import ScoringError, ScoringOptions, run_scoring

NO_MODELS = dict(comet=None, bertscore=None)


# -------------------------------------------------------------------------------------------------- repetition
@pytest.mark.parametrize("text, loop", [
    ("the cat the cat the cat", ("the cat", 3)),
    ("very very very very", ("very", 4)),
    ("very very very", None),  # 3 words: could be emphasis
    ("the red cat runs in the park", None),
    ("红色的猫红色的猫红色的猫", ("红色的猫", 3)),
    ("哈哈哈", None),
    ("die Katze die Katze", None),
])
def test_find_loop(text, loop):
    assert find_loop(text) == loop


def test_repetition_metric():
    group = metrics.Group("t", "translate", "de", list("abcd"), ["x"] * 4,
                          ["", "die Katze", "rot rot rot rot rot", "die Katze die Katze die Katze"])
    (r,) = repetition_metric(group)
    assert (r.metric, r.value, r.n) == ("repetition", 0.75, 4)
    assert r.info.startswith("1 empty, 2 looping")


# ------------------------------------------------------------------------------------------------------ MCIF XML
def test_export_then_score_from_xml_gives_same_results(tmp_path):
    ref_dir, decode_dir = make_fake_dirs(tmp_path)
    (ref_dir / "test" / "mcif_id").write_text("".join(f"{u} {100 + i}\n" for i, u in enumerate(REFS)))
    out = tmp_path / "exp"
    md = run_scoring(decode_dir, ref_dir, ["test"], out, date="D", options=ScoringOptions(**NO_MODELS))
    files = sorted((out / "mcif").iterdir())
    assert [p.name for p in files] == ["test.xml"]
    assert mcif.tasks_in(files[0]) == [("short", lang) for lang in ("de", "en", "it", "zh")]
    assert mcif.read_hypothesis(files[0], "short", "de") == {"101": SOURCE, "105": ""}

    out2 = tmp_path / "from_xml"
    md2 = run_scoring(tmp_path / "nowhere", ref_dir, ["test"], out2, date="D",
                      options=ScoringOptions(**NO_MODELS, hyp_xml=files))
    rows = json.loads((out / "results.json").read_text())
    assert json.loads((out2 / "results.json").read_text()) == rows
    assert f"- hypotheses: {', '.join(map(str, files))}" in md2
    # Same tables and notes; the export wrote the missing hypothesis as an empty sample, so it is no longer missing.
    assert md2.split("## test")[1] == md.split("## test")[1].replace(
        " 1 hypothesis missing (scored as empty output): u6.", "")
    assert not (out2 / "mcif").exists()  # scoring XML does not write XML again

    xml = out / "mcif" / "test.xml"
    xml.write_text(xml.read_text().replace('text_lang="de"', 'text_lang="it"'))  # German outputs filed as Italian
    with pytest.raises(ScoringError, match=r"test.xml: sample '101' of task \(short, it\) is no utterance of .* "
                                           r"with output language it \(ids from mcif_id\)"):
        run_scoring(decode_dir, ref_dir, ["test"], tmp_path / "o3", options=ScoringOptions(**NO_MODELS,
                                                                                            hyp_xml=[xml]))


# ------------------------------------------------------------------------------------------- long-form sentences
def test_sentence_files_reach_the_groups(tmp_path):
    ref_dir, decode_dir = make_fake_dirs(tmp_path)
    (ref_dir / "test" / "text.sentences").write_text("u3 il gatto rosso ||| corre nel parco\n")
    (ref_dir / "test" / "transcript.sentences").write_text("u3 the red cat ||| runs in the park\n")
    groups, _, _ = report.load_groups(decode_dir, ref_dir, "test")
    it = next(g for g in groups if (g.task, g.lang) == ("translate", "it"))
    assert it.ref_sentences == [["il gatto rosso", "corre nel parco"]]
    assert it.src_sentences == [["the red cat", "runs in the park"]]
    (ref_dir / "test" / "text.sentences").write_text("u3 a ||| b\nu42 c\n")
    with pytest.raises(ScoringError, match=r"text.sentences line 2: utterance 'u42' is not in the test set"):
        report.load_groups(decode_dir, ref_dir, "test")


# -------------------------------------------------------------------------------------------------- diagnostic
def _utts():
    return [
        Utterance("a1", "en", SOURCE, "en transcribe"),
        Utterance("a2", "en", SOURCE, "de answer Welche Farbe hat die Katze?"),
        Utterance("z1", "zh", "红色的猫", "zh transcribe"),
    ]


def test_plan_runs_and_source_language():
    runs = diagnostic.plan_runs(_utts(), ["en", "de", "it", "zh"])
    assert [(r.override, sorted(r.prompts)) for r in runs] == [
        ("en transcribe", ["a1", "a2"]), ("de translate", ["a1", "a2"]), ("it translate", ["a1", "a2"]),
        ("zh translate", ["a1", "a2"]), ("zh transcribe", ["z1"]), ("en translate", ["z1"]),
        ("de translate", ["z1"]), ("it translate", ["z1"]), (None, ["a2"])]
    assert runs[-1].prompts == {"a2": "de answer Welche Farbe hat die Katze?"}
    assert diagnostic.source_language("u", "de translate", "the red cat runs", None) == "en"
    assert diagnostic.source_language("u", "it transcribe", None, None) == "it"
    assert diagnostic.source_language("u", "de translate", None, "en") == "en"
    with pytest.raises(diagnostic.DiagnosticError, match=r"utterance 'u'.*no transcript.*--source_lang"):
        diagnostic.source_language("u", "de translate", None, None)
    assert diagnostic.pick_subset(list("edcba"), 9) == list("abcde")
    sub = diagnostic.pick_subset([f"u{i}" for i in range(50)], 5, seed=3)
    assert sub == sorted(sub) and len(set(sub)) == 5 and sub == diagnostic.pick_subset(
        [f"u{i}" for i in range(50)][::-1], 5, seed=3)


def test_diagnostic_labels_and_results(tmp_path):
    utts = _utts()
    runs = diagnostic.plan_runs(utts, ["en", "de", "zh"])
    # What a confused model might say for each run (crafted outputs in en/de/it/zh).
    outputs = [
        {"a1": "the red cat runs in the park", "a2": "the red cat runs in a park"},  # en transcribe: right
        {"a1": "die rote Katze läuft im Park", "a2": "the red cat runs in the park"},  # de translate: a2 copies
        {"a1": "红色的猫在公园里跑", "a2": "il gatto rosso corre nel parco"},  # zh translate: a2 in Italian
        {"z1": "红色的猫"},  # zh transcribe
        {"z1": "the red cat"},  # en translate
        {"z1": "die rote Katze"},  # de translate
        {"a2": "Welche Farbe hat die Katze"},  # answer: echoes the question
    ]
    records = diagnostic.label_outputs(utts, runs, outputs)
    got = {(r["utt"], r["asked"]): r["performed"] for r in records}
    assert got[("a1", "translate:de")] == "translated:de" and got[("a2", "translate:de")] == "transcribed"
    assert got[("a2", "translate:zh")] == "translated:it" and got[("z1", "translate:en")] == "translated:en"
    assert got[("a2", "answer:de")] == "echoed_question" and got[("z1", "transcribe:zh")] == "transcribed"

    # Written where stage 6 looks, it shows up in RESULTS.md and results.json.
    ref_dir, decode_dir = make_fake_dirs(tmp_path)
    path = decode_dir / "test" / "diagnose" / "task_confusion.json"
    diagnostic.write_diagnostic(path, records, n_utts=3, model="m.pth", data_dir="dump/test")
    md = run_scoring(decode_dir, ref_dir, ["test"], tmp_path / "exp", options=ScoringOptions(**NO_MODELS))
    assert "Task-confusion diagnostic: the same 3 utterances decoded with every task/language prompt" in md
    assert ("| asked \\ performed | n | task_confusion | transcribed | translated:de | translated:en | "
            "translated:it | translated:zh | echoed_question |") in md
    assert "| translate:de | 3 | 0.333 | 1 | 2 | 0 | 0 | 0 | 0 |" in md
    assert "| answer:de | 1 | 1.000 | 0 | 0 | 0 | 0 | 0 | 1 |" in md
    rows = [r for r in json.loads((tmp_path / "exp" / "results.json").read_text()) if r["test_set"] == "test:diagnose"]
    assert {(r["task"], r["lang"]): (r["value"], r["n"]) for r in rows} == {
        ("transcribe", "en"): (0.0, 2), ("translate", "de"): (pytest.approx(1 / 3), 3),
        ("translate", "zh"): (0.5, 2), ("transcribe", "zh"): (0.0, 1), ("translate", "en"): (0.0, 1),
        ("answer", "de"): (1.0, 1)}
    path.write_text('{"n_utts": 1, "records": [{"utt": "a1"}]}')
    with pytest.raises(ScoringError, match=r"task_confusion.json: record 1 lacks \['asked', 'output'"):
        run_scoring(decode_dir, ref_dir, ["test"], tmp_path / "exp2", options=ScoringOptions(**NO_MODELS))


# ------------------------------------------------------------------------------------ parity with the official WER
@pytest.mark.parametrize("lang, refs, hyps", [
    ("en", ["Mr. Smith's two cats are grey!", "The colour of the bird? It's red."],
     ["mister smiths 2 cats are gray", "the color of a bird its red red"]),
    ("de", ["Die rote Katze läuft, im Park.", "Zwei Hunde schlafen."], ["die rote katze lauft im park", "zwei hunde"]),
    ("it", ["Il gatto rosso corre nel parco."], ["il gatto rosso corre nel parco e"]),
])
def test_wer_equals_official_jiwer_call(lang, refs, hyps):
    # The MCIF scorer's formula: jiwer.wer over strings normalised as it normalises them (scoring.normalizer; its
    # equality with whisper-normalizer 0.0.10 is checked in test_scoring_official/test_scoring_oracle).
    from espnet_speechlm_plugin.scoring.normalizer import normalize

    expected = jiwer.wer([normalize(r, lang) for r in refs], [normalize(h, lang) for h in hyps])
    assert metrics.word_error_rate(refs, hyps, lang) == pytest.approx(expected)
    assert 0 < expected < 1
