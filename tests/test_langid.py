"""Language identification (espnet_speechlm_plugin.langid, Lingua) and what uses it: scoring's task-confusion labels
and unanswerable strings for a language outside the built-in en/de/it/zh, and pseudo-labelling's English check.
Every sentence here was written for this test."""

import logging

import pytest

from espnet_speechlm_plugin import langid, vocab
from espnet_speechlm_plugin.data.kaldi import KaldiFileError
from espnet_speechlm_plugin.pseudolabel.source import check_source
from espnet_speechlm_plugin.scoring import metrics
from espnet_speechlm_plugin.scoring.confusion import classify_output, identify_language, is_confusion

FRENCH = [
    "le petit chien noir dort sous la table de la cuisine",
    "trois oiseaux chantent dans le jardin ce matin",
    "Où est la souris grise ?",
    "la vieille chèvre mange une pomme près de la rivière",
    "Pas de réponse possible.",
]
OTHERS = {
    "en": "the little black dog sleeps under the kitchen table",
    "de": "der kleine schwarze Hund schläft unter dem Küchentisch",
    "it": "il piccolo cane nero dorme sotto il tavolo della cucina",
    "zh": "小黑狗在厨房的桌子下面睡觉",
}
ALL = ["en", "de", "it", "zh", "fr"]


@pytest.mark.parametrize("text", FRENCH)
def test_french_is_french(text):
    assert langid.identify_language(text, ALL) == "fr"
    assert langid.identify_language(text, ["en", "fr"]) == "fr"


@pytest.mark.parametrize("lang", OTHERS)
def test_builtin_languages_beside_french(lang):
    assert langid.identify_language(OTHERS[lang], ALL) == lang


def test_candidates_restrict_the_answer():
    spanish = "el perro negro duerme debajo de la mesa de la cocina"
    assert langid.identify_language(spanish, ["en", "es", "fr"]) == "es"
    assert langid.identify_language(spanish, ["en", "fr"]) != "es"
    values = langid.language_confidences(FRENCH[0], ["en", "fr", "de"])
    assert set(values) == {"en", "fr", "de"} and sum(values.values()) == pytest.approx(1)
    assert values == langid.language_confidences(FRENCH[0], ["de", "fr", "en"])  # order-free, deterministic


def test_too_little_evidence_is_unidentified():
    for text in ["rot", "sept", "", "42 ..."]:
        assert langid.identify_language(text, ["en", "de", "it", "fr"]) is None, text
    assert identify_language("rot") is None  # scoring's default candidates: the built-in languages


def test_language_codes(caplog):
    assert langid.lingua_language("pt-BR") == langid.lingua_language("pt") is not None
    assert langid.lingua_language("zho") == langid.lingua_language("zh") is not None  # ISO 639-3
    assert not langid.is_supported("xx") and langid.is_supported("fr")
    with caplog.at_level(logging.WARNING):
        assert langid.identify_language("the dog sleeps under the table", ["xx"]) is None
        assert langid.identify_language("the dog sleeps under the table", ["en", "xx"]) == "en"
    assert "Lingua has no model for xx" in caplog.text
    with pytest.raises(ValueError, match="at least one candidate"):
        langid.identify_language("the dog", [])


def test_french_outputs_are_labelled_french():
    source = "the little black dog sleeps under the kitchen table"
    languages = ["en", "fr"]
    performed = classify_output(FRENCH[0], transcript=source, languages=languages)
    assert performed == "translated:fr" and not is_confusion("translate", "fr", performed)
    # the French transcript of French audio, with errors, is a transcription
    performed = classify_output("le petit chien noir dort sur la table", transcript=FRENCH[0], transcript_lang="fr",
                                languages=languages)
    assert performed == "transcribed" and not is_confusion("transcribe", "fr", performed)
    # the English transcript where French was asked is confusion
    performed = classify_output("the black dog is sleeping under a table", transcript=source, transcript_lang="en",
                                languages=languages)
    assert performed == "transcribed" and is_confusion("translate", "fr", performed)
    # one-word French answers ("grise", "sept") are answers, though Lingua cannot tell their language
    for answer in ("grise", "sept", "sous la table", "Pas de réponse possible."):
        assert classify_output(answer, transcript=source, question="De quelle couleur est la souris ?",
                               question_lang="fr", languages=languages) == "answered", answer
    # an English sentence answering a French question about English audio is not an answer but a transcription
    performed = classify_output("the little dog sleeps in the kitchen now", transcript=source,
                                question="Où dort le chien ?", question_lang="fr", languages=languages)
    assert performed == "transcribed" and is_confusion("answer", "fr", performed)
    # ... and a German one is a translation into German
    assert classify_output("der kleine Hund schläft jetzt in der Küche", transcript=source,
                           question="Où dort le chien ?", question_lang="fr", languages=ALL) == "translated:de"


def test_unanswerable_strings_from_the_data_dir(tmp_path):
    assert metrics.unanswerable_strings(tmp_path) == vocab.UNANSWERABLE  # no file: the built-in table
    (tmp_path / "unanswerable").write_text("en Not answerable.\nfr Pas de réponse possible.\n", encoding="utf-8")
    strings = metrics.unanswerable_strings(tmp_path)
    assert strings["fr"] == "Pas de réponse possible." and strings["de"] == vocab.UNANSWERABLE["de"]
    refs = ["Pas de réponse possible.", "rouge", "Pas de réponse possible."]
    hyps = ["pas de réponse possible", "rouge", "bleu"]
    assert metrics.unanswerable_accuracy(refs, hyps) == (None, 0)  # French is not built in
    assert metrics.unanswerable_accuracy(refs, hyps, strings.values()) == (pytest.approx(0.5), 2)
    group = metrics.Group("test", "answer", "fr", ["a", "b", "c"], refs, hyps, unanswerable=list(strings.values()))
    rows = {r.metric: r for r in metrics.sqa_metrics(group)}
    assert rows["unanswerable_acc"].value == pytest.approx(0.5) and rows["unanswerable_acc"].n == 2
    (tmp_path / "unanswerable").write_text("en Not answerable.\nfr\n", encoding="utf-8")
    with pytest.raises(KaldiFileError, match=r"unanswerable line 2: language 'fr' has no unanswerable string"):
        metrics.unanswerable_strings(tmp_path)


def test_pseudolabel_english_check():
    for text in [FRENCH[0], "el perro negro duerme debajo de la mesa", "de zwarte hond slaapt onder de tafel",
                 "o cão preto dorme debaixo da mesa da cozinha", OTHERS["de"], OTHERS["it"], OTHERS["zh"]]:
        assert check_source(text, 200) == "not_english", text
    for text in [OTHERS["en"], "Tom bought apples yesterday", "He ordered a latte at the café in Berlin",
                 "Die Hard is a film about a building", "Come in and sit down please"]:
        assert check_source(text, 200) is None, text
