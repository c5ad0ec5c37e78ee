"""The official MCIF / IWSLT 2025 evaluation reproduced offline (`scoring.official`, `scoring.mcif`,
`scoring.resegment`, `scoring.normalizer`), on reference/output files written for these tests (tests/mcif_fixtures.py)
and numbers worked out by hand from the official code's rules. tests/test_scoring_oracle.py checks the same against
the official code itself when it is installed."""
from __future__ import annotations

import itertools
import json
import random
import xml.etree.ElementTree as ET
from pathlib import Path

import jiwer
import mcif_fixtures as fx
import pytest

from espnet_speechlm_plugin.bin import score
from espnet_speechlm_plugin.scoring import mcif, official
from espnet_speechlm_plugin.scoring.normalizer import normalize
from espnet_speechlm_plugin.scoring.report import ScoringError, ScoringOptions, run_scoring
from espnet_speechlm_plugin.scoring.resegment import resegment, summed_edit_distance

NO_MODELS = dict(comet=None, bertscore=None)
CASES = Path(__file__).parent / "data" / "mwer_segmenter_cases.json"


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("mcif")
    refs = {lang: fx.write_reference(root / f"MCIF.IF.short.{lang}.ref.xml", lang) for lang in ("en", "de", "zh")}
    return refs, fx.write_output(root / "output.xml")


# --------------------------------------------------------------------------------------------------- normaliser
def test_normaliser_behaves_as_0_0_10():
    # 0.0.10 has no kinda/sorta/dunno/cause replacements; OpenAI's spelling table maps archaeology to archeology.
    assert normalize(fx.ASR_REFS["1"], "en") == "hello everyone i kinda like archeology it is 20% fun"
    assert normalize(fx.ASR_REFS["2"], "en") == "cause we dunno what sorta thing it is"
    assert normalize("kinda sorta dunno cause", "en") == "kinda sorta dunno cause"
    # The rest of the English normaliser is unchanged: contractions, titles, numbers, British spellings, fillers.
    assert normalize("Mr. Smith won't pay $20 million, uh, for the colour", "en") == \
        "mister smith will not pay $20000000 for the color"
    assert normalize("Die Katze, läuft (schnell) im Park!", "de") == "die katze läuft im park "
    from whisper_normalizer.english import EnglishTextNormalizer

    assert EnglishTextNormalizer()("kinda archaeology") == "kind of archeology</span>"  # what 0.1.15 itself gives


def test_a_whisper_normalizer_that_differs_is_refused(monkeypatch):
    from whisper_normalizer import english

    from espnet_speechlm_plugin.scoring import normalizer

    original = english.EnglishTextNormalizer.__init__

    def with_one_more(self):
        original(self)
        self.replacers[r"\bgimme\b"] = "give me"

    monkeypatch.setattr(english.EnglishTextNormalizer, "__init__", with_one_more)
    with pytest.raises(normalizer.NormalizerVersionError, match=r"replacements differ from version 0.0.10's"):
        normalizer._english()


def test_official_wer_hand_computed(files):
    refs, out = files
    result = official.evaluate(out, refs["en"], "short", "en", **NO_MODELS)
    wer = {s.name: s for s in result.scores}["ASR-WER"]
    # Talk 1 (segments 0-2): ref "hello everyone i kinda like archeology it is 20% fun" (10 words); the joined
    # outputs say "kind of": 1 substitution + 1 insertion. Talk 2: ref "cause we dunno what sorta thing it is" (8);
    # output "because we do not know what sort of thing it is": 3 substitutions + 3 insertions. (2 + 6) / 18.
    assert wer.value == pytest.approx(8 / 18, abs=1e-12) and wer.n == 2
    # whisper-normalizer 0.1.15 as installed would give (1 + 0) / 22: that is the difference the official pin makes.
    from whisper_normalizer.english import EnglishTextNormalizer

    std = EnglishTextNormalizer()
    talk = [" ".join(std(fx.OUTPUTS["en"][i]) for i in ids) for ids in fx.TALKS.values()]
    assert jiwer.wer([std(r) for r in fx.ASR_REFS.values()], talk) == pytest.approx(1 / 22)


# ---------------------------------------------------------------------------------------------- re-segmentation
def test_resegmentation_tie_order_and_special_cases():
    # An equal-cost choice keeps deletions last in the table: X substitutes "b", "c" is deleted ("a", "X d" ties).
    assert resegment("a X d", ["a b", "c d"]) == ["a X", "d"]
    assert resegment("a b X c d", ["a b", "c d"]) == ["a b X", "c d"]  # an inserted word joins the earlier piece
    assert resegment("", ["a b", "c"]) == [".", ""]  # the official "." for an empty output
    assert resegment("c", ["a", "c"]) == ["c", ""]  # the first word always lands in the first piece
    assert resegment("A b", ["a b", "c"]) == ["A b", ""]  # ASCII letters compared without case, output keeps it
    assert resegment("a\u00a0b c", ["a b", "c"]) == ["a\u00a0b", "c"]  # only ASCII whitespace separates tokens
    assert resegment("one two\nthree four", ["one two three", "four"]) == ["one two three", "four"]
    # Chinese by characters: a word cut between two audio segments is joined again; no spaces in the pieces.
    assert resegment("大家好！我喜\n欢考古学。", ["大家好！", "我喜欢考古学。"], character_level=True) == [
        "大家好！", "我喜欢考古学。"]
    assert resegment("", ["你好", "再见"], character_level=True) == [".", ""]
    # Where the binary is undefined: an empty reference sentence gets an empty piece, "#" tokens are dropped.
    assert resegment("a b", ["a", "", "b"]) == ["a", "", "b"]
    assert resegment("a # b", ["a # b", "c"]) == ["a # b", ""]


def test_resegmentation_equals_the_official_segmenters_output():
    cases = json.loads(CASES.read_text(encoding="utf-8"))["cases"]
    assert len(cases) >= 80
    for c in cases:
        assert resegment(c["prediction"], c["references"], character_level=c["character_level"]) == c["pieces"], c


def test_resegmentation_is_optimal_when_the_first_piece_has_a_word():
    # The official pieces minimise the summed edit distance over all cuts that give the first sentence at least
    # one word (the binary's first column charges every sentence end as a deleted word).
    rng = random.Random(0)
    for _ in range(150):
        refs = [" ".join(rng.choice("abcd") for _ in range(rng.randint(1, 4))) for _ in range(rng.randint(1, 4))]
        hyp = " ".join(rng.choice("abcde") for _ in range(rng.randint(1, 7)))
        pieces = resegment(hyp, refs)
        toks = hyp.split()
        assert len(pieces) == len(refs) and " ".join(p for p in pieces if p) == hyp and pieces[0]
        best = min(
            summed_edit_distance([" ".join(toks[a:b]) for a, b in zip((0,) + cut, cut + (len(toks),))], refs)
            for cut in itertools.combinations_with_replacement(range(1, len(toks) + 1), len(refs) - 1)
        )
        assert summed_edit_distance(pieces, refs) == best


# ----------------------------------------------------------------------------------------------------- XML files
def test_reference_reader(files):
    refs, _ = files
    de = mcif.read_reference(refs["de"], "short", "de")
    assert list(de) == ["TRANS", "QA"] and list(de["TRANS"]) == ["TRANS_1", "TRANS_2"]
    talk = de["TRANS"]["TRANS_1"]
    assert talk.sample_ids == ["0", "1", "2"] and talk.reference.split("\n") == fx.TRANS_REFS["de"]["1"]
    assert talk.metadata["transcript"].split("\n") == fx.SOURCE_LINES["1"]
    assert de["QA"]["QA_2_6"].metadata == {"qa_type": "NA", "qa_origin": "General"}
    assert mcif.read_reference(refs["de"], "short", "de", modality="video") == {}
    assert mcif.tasks_in(refs["zh"]) == [("short", "zh")]
    with pytest.raises(mcif.McifError, match=r"no <task track=\"long\" text_lang=\"de\">; the file has "
                                             r"\[\('short', 'de'\)\]"):
        mcif.read_reference(refs["de"], "long", "de")
    # The IWSLT 2025 release's task names are read as MCIF's.
    old = refs["de"].parent / "iwslt25.de.xml"
    old.write_text(refs["de"].read_text(encoding="utf-8").replace('task="TRANS"', 'task="ST"')
                   .replace('task="QA"', 'task="SQA"'), encoding="utf-8")
    assert list(mcif.read_reference(old, "short", "de")) == ["TRANS", "QA"]


def test_output_reader_picks_track_and_language(files):
    _, out = files
    assert mcif.tasks_in(out) == [("long", "en"), ("short", "en"), ("short", "de"), ("short", "zh"), ("short", "en")]
    assert mcif.read_hypothesis(out, "short", "en") == fx.OUTPUTS["en"]  # the first short/en task, not the later
    assert mcif.read_hypothesis(out, "long", "en") == {"0": "long-track output"}
    assert mcif.read_hypothesis(out, "short", "de")["3"] == ""
    bad = out.parent / "bad.xml"
    bad.write_text("<testset><task track='short' text_lang='de'><sample id='1'>x</task>", encoding="utf-8")
    with pytest.raises(mcif.McifError, match=r"bad.xml line 1, column \d+: not well-formed"):
        mcif.read_hypothesis(bad, "short", "de")


def test_export_reads_back_unchanged(tmp_path):
    texts = {"0": "a & b < c > d \"quoted\"", "1": "  padded  ", "2": "", "3": "红色的猫 ünïcödé",
             "4": "<sample id='9'>not markup</sample>", "5": "form\x0cfeed"}
    path = tmp_path / "x.xml"
    mcif.write_xml(path, [("short", "en", list(texts.items())), ("long", "de", [("0", "Satz")])], name="test")
    root = ET.parse(path).getroot()
    assert (root.tag, root.attrib) == ("testset", {"name": "test", "type": "output"})
    # What the official read_hypo does: first task of the track/language, sample id -> stripped text or "".
    task = next(t for t in root.iter("task") if t.attrib == {"track": "short", "text_lang": "en"})
    official_read = {s.attrib["id"]: (s.text or "").strip() for s in task.iter("sample")}
    expected = {k: v.strip() for k, v in texts.items()} | {"5": "formfeed"}  # XML cannot hold a form feed
    assert official_read == expected == mcif.read_hypothesis(path, "short", "en")
    assert mcif.read_hypothesis(path, "long", "de") == {"0": "Satz"}


# -------------------------------------------------------------------------------------------- official scores
def test_official_translation_triples(files):
    refs, out = files
    de = official.translation_triples(mcif.read_hypothesis(out, "short", "de"),
                                      mcif.read_reference(refs["de"], "short", "de"), "de")
    src = fx.SOURCE_LINES["1"] + fx.SOURCE_LINES["2"]
    ref = fx.TRANS_REFS["de"]["1"] + fx.TRANS_REFS["de"]["2"]
    # Talk 1's segments joined and cut to its three sentences ("Ich" moves to the second); talk 2 output nothing:
    # "." for the empty output goes to its first sentence.
    mt = ["Hallo zusammen!", "Ich mag Archäologie.", "Es macht Spaß.", ".", ""]
    assert de == [{"src": s, "mt": m, "ref": r} for s, m, r in zip(src, mt, ref)]
    zh = official.translation_triples(mcif.read_hypothesis(out, "short", "zh"),
                                      mcif.read_reference(refs["zh"], "short", "zh"), "zh")
    assert [t["mt"] for t in zh] == ["大家好！", "我喜欢考古学。", "这有百分之二十的乐趣。", "因为我们不知道",
                                     "这是什么东西"]


def test_official_checks_stop_the_evaluation(files, tmp_path):
    refs, out = files
    partial = tmp_path / "partial.xml"
    outputs = {lang: dict(o) for lang, o in fx.OUTPUTS.items()}
    del outputs["de"]["4"]
    fx.write_output(partial, outputs)
    with pytest.raises(mcif.McifError, match=r"no sample for id\(s\) \['4'\] of TRANS reference TRANS_2"):
        official.evaluate(partial, refs["de"], "short", "de", **NO_MODELS)
    no_qa = tmp_path / "no_qa.xml"
    root = ET.parse(refs["en"]).getroot()
    task = root.find("task")
    for sample in [s for s in task if s.attrib["task"] == "QA"]:
        task.remove(sample)
    ET.ElementTree(root).write(no_qa, encoding="utf-8", xml_declaration=True)
    with pytest.raises(mcif.McifError, match=r"no QA samples, which the official evaluation requires"):
        official.evaluate(out, no_qa, "short", "en", **NO_MODELS)


def test_official_comet_and_bertscore_calls(files, tmp_path):
    """With tiny local models: TRANS-COMET is predict(triples, batch_size=8).system_score of the re-segmented
    triples; QA-BERTScore (and its breakdown by qa_type/qa_origin) is the mean rescaled F1 of bert_score.score."""
    import bert_score
    from comet import load_from_checkpoint
    from test_scoring_bertscore import build_tiny_bert, write_baseline
    from tiny_comet import build_tiny_comet

    from espnet_speechlm_plugin.scoring.bertscore import BertScoreOptions
    from espnet_speechlm_plugin.scoring.comet import CometOptions

    refs, out = files
    ckpt = build_tiny_comet(tmp_path / "comet", "ref")
    bert = build_tiny_bert(tmp_path / "tiny-bert", layers=2)
    baseline = write_baseline(tmp_path / "tiny-bert.tsv", layers=2)
    opts = BertScoreOptions(models={"*": str(bert)}, num_layers={"*": "2"}, baselines={"*": str(baseline)},
                            device="cpu")
    result = official.evaluate(out, refs["de"], "short", "de", comet=CometOptions(str(ckpt), progress=False),
                               bertscore=opts, breakdown_qa_types=True)
    got = {s.name: s.value for s in result.scores}
    assert list(got) == ["QA-BERTScore", "QA-A-BERTScore", "QA-Abstract-BERTScore", "QA-NA-BERTScore",
                         "QA-General-BERTScore", "TRANS-COMET"]
    triples = official.translation_triples(mcif.read_hypothesis(out, "short", "de"),
                                           mcif.read_reference(refs["de"], "short", "de"), "de")
    model = load_from_checkpoint(str(ckpt))
    assert got["TRANS-COMET"] == pytest.approx(model.predict(triples, batch_size=8, gpus=0,
                                                             progress_bar=False).system_score, abs=1e-6)
    hyps = [fx.OUTPUTS["de"]["5"], fx.OUTPUTS["de"]["6"]]
    answers = [fx.QA_REFS["de"]["5"][1], fx.QA_REFS["de"]["6"][1]]
    _, _, f1 = bert_score.score(hyps, answers, model_type=str(bert), num_layers=2, lang="de",
                                rescale_with_baseline=True, baseline_path=str(baseline), device="cpu")
    assert got["QA-BERTScore"] == pytest.approx(f1.mean().item(), abs=1e-6)
    assert got["QA-A-BERTScore"] == got["QA-Abstract-BERTScore"] == pytest.approx(f1[0].item(), abs=1e-6)
    assert got["QA-NA-BERTScore"] == pytest.approx(f1[1].item(), abs=1e-6)


# ------------------------------------------------------------------------------------------------------- stage 6
def _test_set(tmp_path, files):
    refs, _ = files
    ref_dir, decode_dir = tmp_path / "dump", tmp_path / "exp" / "x" / "decode"
    fx.write_data_dir(ref_dir / "mcif_test", list(refs.values()))
    (decode_dir / "mcif_test").mkdir(parents=True)
    (decode_dir / "mcif_test" / "text").write_text("\n".join(fx.decode_outputs()) + "\n", encoding="utf-8")
    return ref_dir, decode_dir


def test_stage6_writes_the_output_file_and_scores_it_officially(tmp_path, files):
    ref_dir, decode_dir = _test_set(tmp_path, files)
    out = tmp_path / "exp" / "x"
    md = run_scoring(decode_dir, ref_dir, ["mcif_test"], out, date="D", options=ScoringOptions(**NO_MODELS))
    export = out / "mcif" / "mcif_test.xml"
    # One file, one task per language, the same ids in every language: the official reader gets every output back.
    assert mcif.tasks_in(export) == [("short", "de"), ("short", "en"), ("short", "zh")]
    for lang in ("en", "de", "zh"):
        assert mcif.read_hypothesis(export, "short", lang) == fx.OUTPUTS[lang]
    rows = json.loads((out / "results.json").read_text(encoding="utf-8"))
    mcif_rows = {(r["lang"], r["metric"]): r for r in rows if r.get("evaluation") == "mcif"}
    wer, comet = mcif_rows[("en", "ASR-WER")], mcif_rows[("de", "TRANS-COMET")]
    assert wer["value"] == pytest.approx(8 / 18) and wer["n"] == 2 and wer["task"] == "ASR"
    assert comet["value"] is None and "turned off" in comet["note"]
    assert all(r["track"] == "short" for r in mcif_rows.values())
    per_utterance = [r for r in rows if "evaluation" not in r]
    assert {(r["task"], r["lang"]) for r in per_utterance if r["metric"] == "wer"} == {("transcribe", "en")}
    for text in ["- evaluation: per-utterance scoring of this project", "- versions: jiwer ",
                 "(official: 3.0.5)", "## mcif_test: official MCIF evaluation", "| short | en | ASR-WER | 0.4444 | 2 |",
                 f"references `{files[0]['en']}`, hypotheses `{export}`"]:
        assert text in md, text

    # The same output file scored through the command line's official form gives the same numbers.
    assert score.main(["--ref_xml", *map(str, files[0].values()), "--hyp_xml", str(export), "--out_dir",
                       str(tmp_path / "cli"), "--comet_model", "none", "--bertscore_model", "none"]) == 0
    cli_rows = json.loads((tmp_path / "cli" / "results.json").read_text(encoding="utf-8"))
    assert {(r["lang"], r["metric"]): r["value"] for r in cli_rows} == {
        k: r["value"] for k, r in mcif_rows.items()}
    assert "# RESULTS: official MCIF evaluation" in (tmp_path / "cli" / "RESULTS.md").read_text(encoding="utf-8")


def test_missing_outputs_are_written_empty_and_noted(tmp_path, files):
    ref_dir, decode_dir = _test_set(tmp_path, files)
    text = decode_dir / "mcif_test" / "text"
    text.write_text("".join(line + "\n" for line in fx.decode_outputs() if not line.startswith(("zh-2", "en-4"))))
    for name in ("text", "prompt", "transcript", "mcif_id", "utt2spk"):  # an utterance the data dir does not have
        path = ref_dir / "mcif_test" / name
        path.write_text("".join(line for line in path.open(encoding="utf-8") if not line.startswith("en-4 ")))
    md = run_scoring(decode_dir, ref_dir, ["mcif_test"], tmp_path / "o", date="D",
                     options=ScoringOptions(**NO_MODELS))
    assert "2 samples had no hypothesis (no output, or no utterance for a reference id) and were written empty" in md
    export = tmp_path / "o" / "mcif" / "mcif_test.xml"
    assert mcif.read_hypothesis(export, "short", "en")["4"] == "" == mcif.read_hypothesis(export, "short", "zh")["2"]


def test_output_file_scored_against_the_data_dir_with_reused_ids(tmp_path, files):
    ref_dir, decode_dir = _test_set(tmp_path, files)
    _, out = files
    direct = run_scoring(decode_dir, ref_dir, ["mcif_test"], tmp_path / "a", date="D",
                         options=ScoringOptions(**NO_MODELS, mcif_track=None))
    # The multi-language output file (with a long-track task and a duplicate task) as the hypotheses instead.
    from_xml = run_scoring(tmp_path / "nowhere", ref_dir, ["mcif_test"], tmp_path / "b", date="D",
                           options=ScoringOptions(**NO_MODELS, mcif_track=None, hyp_xml=[out], hyp_track="short"))
    assert json.loads((tmp_path / "a" / "results.json").read_text()) == \
        json.loads((tmp_path / "b" / "results.json").read_text())
    assert direct.split("## mcif_test")[1] == from_xml.split("## mcif_test")[1]
    with pytest.raises(ScoringError, match=r"sample '0' \(en, utterance 'en-0'\) was already read"):
        run_scoring(tmp_path / "nowhere", ref_dir, ["mcif_test"], tmp_path / "c",
                    options=ScoringOptions(**NO_MODELS, mcif_track=None, hyp_xml=[out]))  # short and long en


def test_cli_official_form_errors(tmp_path, files, capsys):
    refs, out = files
    assert score.main(["--ref_xml", str(refs["en"]), "--hyp_xml", str(refs["de"])]) == 1
    assert "no hypothesis file has a <task track=\"short\" text_lang=\"en\">" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        score.main(["--test_sets", "x"])  # the per-utterance form needs its directories


def test_mcif_references_need_sample_ids(tmp_path, files):
    ref_dir, decode_dir = _test_set(tmp_path, files)
    (ref_dir / "mcif_test" / "mcif_id").unlink()
    with pytest.raises(ScoringError, match=r"mcif_ref names MCIF references, but there is no .*mcif_id"):
        run_scoring(decode_dir, ref_dir, ["mcif_test"], tmp_path / "o", options=ScoringOptions(**NO_MODELS))
