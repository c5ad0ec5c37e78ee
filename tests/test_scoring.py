"""Tests of stage 6 scoring: metrics against hand-computed values and sacreBLEU itself, the task-confusion
classifier on crafted outputs, results.json/RESULTS.md from a small fake decode dir, and the CLI end to end."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import sacrebleu

from espnet_speechlm_plugin.scoring import confusion, metrics, report
from espnet_speechlm_plugin.scoring.confusion import classify_output, identify_language, is_confusion
from espnet_speechlm_plugin.scoring.report import ScoringError, run_scoring
from espnet_speechlm_plugin.vocab import UNANSWERABLE

REPO = Path(__file__).resolve().parents[1]
SOURCE = "the red cat runs in the park"


# ------------------------------------------------------------------------------------------------------ metrics
def test_wer_hand_computed():
    refs = ["the cat sat on the mat", "a big dog barks"]
    hyps = ["the cat sit on mat", "a big dog barks loudly"]
    # 1 substitution + 1 deletion + 1 insertion over 10 reference words.
    assert metrics.word_error_rate(refs, hyps, "en") == pytest.approx(3 / 10)


def test_wer_uses_whisper_normalisers():
    # English normaliser: case, punctuation, British spelling and "Mr." are all normalised away.
    assert metrics.word_error_rate(["Mr. Smith's cat is grey."], ["mister smith's cat is gray"], "en") == 0.0
    # Basic normaliser for other languages: case and punctuation only.
    assert metrics.word_error_rate(["Die Katze, rot!"], ["die katze rot"], "de") == 0.0
    assert metrics.word_error_rate(["Die Katze ist rot"], ["die Katze"], "de") == pytest.approx(2 / 4)
    assert "EnglishTextNormalizer" in metrics.normalizer_name("en")
    assert "BasicTextNormalizer" in metrics.normalizer_name("it")
    assert metrics.word_error_rate([""], ["something"], "en") is None  # no reference word: undefined, not 0


def test_cer_zh_ignores_whitespace_and_punctuation():
    # "红色 猫。" -> 红色猫 vs 红色的猫: one deletion over 4 characters.
    assert metrics.char_error_rate(["红色的猫"], ["红色 猫。"]) == pytest.approx(1 / 4)
    group = metrics.Group("t", "transcribe", "zh", ["u"], ["红色的猫"], ["红色的猫"], ["红色的猫"], [""])
    (result,) = metrics.compute_metrics(group)
    assert (result.metric, result.value, result.n) == ("cer", 0.0, 1)


def test_bleu_chrf_equal_sacrebleu():
    refs = ["die rote Katze läuft im Park", "ein kleiner Hund schläft", "drei grüne Vögel singen laut"]
    hyps = ["die rote Katze läuft in den Park", "ein Hund schläft", "drei grüne Vögel singen laut"]
    bleu, sig = metrics.corpus_bleu(refs, hyps, "de")
    assert bleu == pytest.approx(sacrebleu.corpus_bleu(hyps, [refs], tokenize="13a").score)
    assert 0 < bleu < 100 and "tok:13a" in sig
    chrf, chrf_sig = metrics.corpus_chrf(refs, hyps)
    assert chrf == pytest.approx(sacrebleu.corpus_chrf(hyps, [refs]).score)
    assert "nc:6" in chrf_sig


def test_bleu_zh_tokenizer():
    refs = ["红色的猫在公园里跑", "三只绿色的鸟唱歌"]
    hyps = ["红色的猫在公园跑", "三只绿色的鸟唱歌"]
    bleu, sig = metrics.corpus_bleu(refs, hyps, "zh")
    assert metrics.bleu_tokenizer("zh") == "zh" and "tok:zh" in sig
    assert bleu == pytest.approx(sacrebleu.corpus_bleu(hyps, [refs], tokenize="zh").score)
    # Without character segmentation a Chinese sentence is one token, so a near-miss scores far lower.
    assert bleu > sacrebleu.corpus_bleu(hyps, [refs], tokenize="13a").score + 20


def test_exact_match_and_unanswerable():
    assert metrics.normalize_answer("  Red. ") == "red"
    assert metrics.normalize_answer("ＲＥＤ！") == "red"  # full-width forms
    assert metrics.normalize_answer("“无法回答。”") == "无法回答"
    assert metrics.normalize_answer("Non è  possibile rispondere.") == "non è possibile rispondere"
    assert all(metrics.is_unanswerable(s) for s in UNANSWERABLE.values())
    assert metrics.is_unanswerable("nicht zu beantworten") and not metrics.is_unanswerable("rot")
    refs = [UNANSWERABLE["en"], "red", UNANSWERABLE["zh"], "Three dogs."]
    hyps = ["not answerable", "blue", "红色", "three dogs"]
    assert metrics.exact_match(refs, hyps) == pytest.approx(2 / 4)
    assert metrics.unanswerable_accuracy(refs, hyps) == (pytest.approx(1 / 2), 2)
    assert metrics.unanswerable_accuracy(["red"], ["red"]) == (None, 0)


# ---------------------------------------------------------------------------------------------- task confusion
@pytest.mark.parametrize(
    "text, lang",
    [
        ("the red cat runs in the park", "en"),
        ("die rote Katze läuft im Park", "de"),
        ("il gatto rosso corre nel parco", "it"),
        ("红色的猫在公园里跑", "zh"),
        ("Welche Farbe hat die Katze?", "de"),
        ("tre grandi cani corrono veloci", "it"),
        ("three big dogs run fast", "en"),
        ("rot", None),  # one word without cues: unidentified rather than guessed
        ("", None),
    ],
)
def test_identify_language(text, lang):
    assert identify_language(text) == lang


def test_translate_output_that_is_the_transcript_is_confusion():
    performed = classify_output("The red cat runs in the park.", transcript=SOURCE)
    assert performed == "transcribed"
    assert is_confusion("translate", "de", performed)
    # An errorful English output (not similar enough to the transcript) is still recognised by its language.
    performed = classify_output("the red cat is running to a park", transcript=SOURCE, transcript_lang="en")
    assert performed == "transcribed" and is_confusion("translate", "de", performed)


def test_correct_translation_is_not_confusion():
    performed = classify_output("die rote Katze läuft im Park", transcript=SOURCE)
    assert performed == "translated:de"
    assert not is_confusion("translate", "de", performed)
    assert classify_output("红色的猫在公园里跑", transcript=SOURCE) == "translated:zh"
    # ... but translating into the wrong language is.
    performed = classify_output("il gatto rosso corre nel parco", transcript=SOURCE)
    assert performed == "translated:it" and is_confusion("translate", "de", performed)


def test_answer_confusions():
    question = "Welche Farbe hat die Katze?"
    kw = dict(transcript=SOURCE, question=question, question_lang="de")
    assert classify_output("rot", **kw) == "answered"
    assert classify_output("Die Katze ist rot.", **kw) == "answered"
    assert classify_output(UNANSWERABLE["de"], **kw) == "answered"
    assert classify_output("Welche Farbe hat die Katze", **kw) == "echoed_question"
    assert classify_output(SOURCE, **kw) == "transcribed"
    assert is_confusion("answer", "de", "echoed_question") and is_confusion("answer", "de", "transcribed")
    assert not is_confusion("answer", "de", "answered")


def test_transcribe_confusions_and_other():
    kw = dict(transcript=SOURCE, transcript_lang="en")
    assert classify_output("the red cat runs in a park", **kw) == "transcribed"
    assert classify_output("die rote Katze läuft im Park", **kw) == "translated:de"
    assert is_confusion("transcribe", "en", "translated:de")
    # Without a question there is nothing to answer, except by emitting the unanswerable string.
    assert classify_output(UNANSWERABLE["en"], **kw) == "answered"
    assert classify_output("", **kw) == "other" and classify_output(" . ", **kw) == "other"
    assert not is_confusion("transcribe", "en", "other")
    assert confusion.task_confusion_rate("transcribe", "en", ["transcribed", "translated:de", "other", "other"]) == 0.25


def test_confusion_matrix_orders_columns():
    pairs = [("translate:de", "other"), ("translate:de", "translated:de"), ("answer:en", "answered"),
             ("translate:de", "transcribed"), ("answer:en", "echoed_question"), ("translate:de", "translated:de")]
    rows, cols, counts = confusion.confusion_matrix(pairs)
    assert rows == ["translate:de", "answer:en"]
    assert cols == ["transcribed", "translated:de", "answered", "echoed_question", "other"]
    assert counts["translate:de"]["translated:de"] == 2 and counts["answer:en"]["transcribed"] == 0


# ------------------------------------------------------------------------------------------- report and CLI
REFS = {
    "u1": ("en transcribe", "the red cat runs in the park", "the red cat run in park"),
    "u2": ("de translate", "die rote Katze läuft im Park", SOURCE),  # transcribed instead of translated
    "u3": ("it translate", "il gatto rosso corre nel parco", "il gatto rosso corre nel parco"),
    "u4": ("zh translate", "红色的猫在公园里跑", "红色的猫在公园跑"),
    "u5": ("en answer What colour is the cat?", "red", "Red."),
    "u6": ("de answer Welche Farbe hat der Hund?", UNANSWERABLE["de"], None),  # hypothesis missing
    "u7": ("zh answer 狗是什么颜色？", UNANSWERABLE["zh"], "无法回答"),
}


def _write(path: Path, lines: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")


def make_fake_dirs(root: Path, test_sets=("test",)) -> tuple[Path, Path]:
    ref_dir, decode_dir = root / "dump", root / "exp" / "x" / "decode_test"
    for ts in test_sets:
        _write(ref_dir / ts / "text", [f"{u} {ref}" for u, (_, ref, _) in REFS.items()])
        _write(ref_dir / ts / "prompt", [f"{u} {p}" for u, (p, _, _) in REFS.items()])
        _write(ref_dir / ts / "transcript", [f"{u} {SOURCE}" for u in REFS])
        _write(decode_dir / ts / "text", [f"{u} {hyp}" for u, (_, _, hyp) in REFS.items() if hyp is not None])
    (ref_dir / "corpus_stats.json").write_text(json.dumps({"train_utts": 2000, "en_vocab": 231}))
    return ref_dir, decode_dir


def test_results_json_and_md(tmp_path):
    ref_dir, decode_dir = make_fake_dirs(tmp_path)
    out = tmp_path / "exp" / "x"
    md = run_scoring(decode_dir, ref_dir, ["test"], out, model_tag="tiny", config="conf/x.yaml", date="DATE")
    assert (out / "RESULTS.md").read_text(encoding="utf-8") == md
    rows = json.loads((out / "results.json").read_text(encoding="utf-8"))
    # A "note" only on rows without a value (COMET/BERTScore: no model available offline here).
    assert all(set(r) - {"note"} == {"test_set", "task", "lang", "metric", "value", "n"} for r in rows)
    assert all(("note" in r) == (r["value"] is None) for r in rows)
    assert {r["metric"] for r in rows if r["value"] is None} == {"comet", "bertscore_f1"}
    got = {(r["task"], r["lang"], r["metric"]): (r["value"], r["n"]) for r in rows}
    assert got[("transcribe", "en", "wer")] == (pytest.approx(2 / 7), 1)  # "runs"->"run", "the" deleted
    assert got[("translate", "it", "bleu")] == (pytest.approx(100.0), 1)
    assert got[("translate", "de", "task_confusion")] == (1.0, 1)
    assert got[("translate", "it", "task_confusion")] == (0.0, 1)
    assert got[("answer", "en", "exact_match")] == (1.0, 1)
    assert got[("answer", "de", "exact_match")] == (0.0, 1)  # missing hypothesis = empty output
    assert got[("answer", "zh", "unanswerable_acc")] == (1.0, 1)
    assert ("answer", "en", "unanswerable_acc") not in got  # no unanswerable reference there
    zh_bleu = sacrebleu.corpus_bleu(["红色的猫在公园跑"], [["红色的猫在公园里跑"]], tokenize="zh").score
    assert got[("translate", "zh", "bleu")][0] == pytest.approx(zh_bleu)
    assert got[("answer", "de", "repetition")] == (1.0, 1)  # the missing hypothesis is an empty output
    assert got[("translate", "it", "repetition")] == (0.0, 1)
    # 3 transcribe + 3x5 translate + (4+5+5) answer rows, incl. comet/bertscore_f1, repetition and task_confusion
    assert len(rows) == len(got) == 32

    for text in ["# RESULTS: tiny", "- config: conf/x.yaml", "- date: DATE", "## test",
                 "1 hypothesis missing (scored as empty output): u6",
                 "| task | lang | n | wer | bleu | chrf | comet | exact_match | unanswerable_acc | bertscore_f1 | "
                 "repetition | task_confusion |",
                 "| transcribe | en | 1 | 0.286 |", "| translate:de | 1 | 0 | 0 | 0 | 0 |",
                 "comet (de, it, zh): not computed: COMET model 'Unbabel/wmt22-comet-da' is neither",
                 "bertscore_f1 (en): not computed: BERTScore model 'roberta-large' (lang=en)",
                 "whisper_normalizer EnglishTextNormalizer", "tok:zh", "tok:13a", "| train_utts | 2000 |"]:
        assert text in md, text


def test_not_computed_metric_plugs_in(tmp_path, monkeypatch):
    def fake_comet(group):
        return [metrics.MetricResult("comet", None, group.n, note="not computed: no model at /nowhere")]

    monkeypatch.setitem(metrics.TASK_METRICS, "translate", metrics.TASK_METRICS["translate"] + [fake_comet])
    ref_dir, decode_dir = make_fake_dirs(tmp_path)
    options = report.ScoringOptions(comet=None, bertscore=None, repetition=False)  # only the fake COMET
    md = run_scoring(decode_dir, ref_dir, ["test"], tmp_path / "out", date="DATE", options=options)
    rows = json.loads((tmp_path / "out" / "results.json").read_text(encoding="utf-8"))
    comet = [r for r in rows if r["metric"] == "comet"]
    assert len(comet) == 3 and all(r["value"] is None and "not computed" in r["note"] for r in comet)
    assert "| bleu | chrf | comet |" in md and "comet (de, it, zh): not computed: no model at /nowhere" in md


def test_input_errors_name_file_and_line(tmp_path):
    ref_dir, decode_dir = make_fake_dirs(tmp_path)
    hyp = decode_dir / "test" / "text"
    hyp.write_text(hyp.read_text(encoding="utf-8") + "u99 stray output\n", encoding="utf-8")
    with pytest.raises(ScoringError, match=r"text line 7: hypothesis for utterance 'u99'"):
        report.score_test_set(decode_dir, ref_dir, "test")

    ref_dir, decode_dir = make_fake_dirs(tmp_path / "b")
    prompt = ref_dir / "test" / "prompt"
    lines = prompt.read_text(encoding="utf-8").splitlines()
    prompt.write_text("\n".join(lines[:2] + ["u3 French translate"] + lines[3:]) + "\n", encoding="utf-8")
    with pytest.raises(ScoringError, match=r"prompt line 3: utterance 'u3': 'French' is not a language code"):
        report.score_test_set(decode_dir, ref_dir, "test")
    prompt.write_text("\n".join(lines[:1] + ["u2 de summarise"] + lines[2:]) + "\n", encoding="utf-8")
    with pytest.raises(ScoringError, match=r"prompt line 2: utterance 'u2': unknown task 'summarise'"):
        report.score_test_set(decode_dir, ref_dir, "test")
    (decode_dir / "test" / "text").unlink()
    with pytest.raises(ScoringError, match=r"decode_test/test/text: hypotheses .* run stage 5"):
        report.score_test_set(decode_dir, ref_dir, "test")


def test_cli_end_to_end(tmp_path):
    ref_dir, decode_dir = make_fake_dirs(tmp_path, test_sets=("test", "dev"))
    out = tmp_path / "exp" / "x"
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    cmd = [sys.executable, "-m", "espnet_speechlm_plugin.bin.score", "--decode_dir", str(decode_dir),
           "--ref_dir", str(ref_dir), "--test_sets", "test dev", "--out_dir", str(out), "--model_tag", "tiny"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("# RESULTS: tiny") and "## test" in proc.stdout and "## dev" in proc.stdout
    assert proc.stdout.strip() == (out / "RESULTS.md").read_text(encoding="utf-8").strip()
    rows = json.loads((out / "results.json").read_text(encoding="utf-8"))
    assert {r["test_set"] for r in rows} == {"test", "dev"}
    assert sorted(p.name for p in out.iterdir()) == ["RESULTS.md", "decode_test", "mcif", "results.json"]  # no temp
    assert sorted(p.name for p in (out / "mcif").iterdir()) == ["dev.xml", "test.xml"]  # one output file per set

    proc = subprocess.run(cmd[:-4] + ["--test_sets", "nope", "--out_dir", str(tmp_path / "y")],
                          capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 1 and "score: error:" in proc.stderr and "nope" in proc.stderr
    assert not (tmp_path / "y" / "results.json").exists()


def test_a_language_added_by_config_is_scored_after_the_defaults(tmp_path):
    ref_dir, decode_dir = make_fake_dirs(tmp_path)
    for name, line in (("prompt", "u9 fr translate"), ("text", "u9 le chat rouge court"),
                       ("transcript", f"u9 {SOURCE}")):
        with open(ref_dir / "test" / name, "a", encoding="utf-8") as f:
            f.write(line + "\n")
    with open(decode_dir / "test" / "text", "a", encoding="utf-8") as f:
        f.write("u9 le chat rouge court\n")
    out = tmp_path / "exp" / "x"
    run_scoring(decode_dir, ref_dir, ["test"], out, model_tag="tiny", config="conf/x.yaml", date="DATE")
    rows = json.loads((out / "results.json").read_text(encoding="utf-8"))
    translate = [(r["lang"], r["metric"]) for r in rows if r["task"] == "translate" and r["metric"] == "bleu"]
    assert translate[-1] == ("fr", "bleu") and [lang for lang, _ in translate[:-1]] == ["de", "it", "zh"]
    assert next(r["value"] for r in rows if (r["lang"], r["metric"]) == ("fr", "bleu")) == pytest.approx(100.0)
