"""The mini_espeak grammar: translations are right on known cases and consistent everywhere,
answers follow from the sentence, the split is held out, and the corpus stays as hard as the issue asks."""
import copy
import random
import sys
from collections import defaultdict
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "egs2" / "mini_espeak" / "s2t1" / "local"))  # the demo recipe's grammar

from mini_grammar import NP, DEFAULT_GRAMMAR, Grammar, Sentence, load_grammar, sample_disjoint  # noqa: E402

UNANSWERABLE = {"en": "Not answerable.", "de": "Nicht zu beantworten.", "it": "Non è possibile rispondere.",
                "zh": "无法回答。"}


@pytest.fixture(scope="module")
def grammar():
    return load_grammar()


@pytest.fixture(scope="module")
def sample(grammar):
    rng = random.Random(7)
    return [grammar.sample_sentence(rng) for _ in range(1500)]


GOLDEN = [
    (Sentence(NP("cat", adj="red"), "sleep", place=("in", "garden")),
     {"en": "the red cat sleeps in the garden", "de": "die rote Katze schläft im Garten",
      "it": "il gatto rosso dorme nel giardino", "zh": "红色的猫在花园里睡觉"}),
    # German weak noun in the accusative, strong plural ending after a number; Italian elision + contraction
    (Sentence(NP("dog", 3, "big"), "chase", obj=NP("lion"), place=("next_to", "tree"), time="every_morning"),
     {"en": "three big dogs chase the lion next to the tree every morning",
      "de": "drei große Hunde jagen jeden Morgen den Löwen neben dem Baum",
      "it": "tre cani grandi inseguono il leone accanto all'albero ogni mattina",
      "zh": "三只大狗每天早上在树旁边追狮子"}),
    # invariable colours, feminine dative, Chinese measure word
    (Sentence(NP("elephant", adj="white"), "eat", obj=NP("apple", 4, "pink"), place=("on", "island"), time="at_night"),
     {"en": "the white elephant eats four pink apples on the island at night",
      "de": "der weiße Elefant frisst nachts vier rosa Äpfel auf der Insel",
      "it": "l'elefante bianco mangia quattro mele rosa sull'isola di notte",
      "zh": "白色的大象夜里在岛上吃四个粉色的苹果"}),
    # masculine accusative with an adjective; Italian "lo"
    (Sentence(NP("squirrel"), "want", obj=NP("ball", adj="black")),
     {"en": "the squirrel wants the black ball", "de": "das Eichhörnchen will den schwarzen Ball",
      "it": "lo scoiattolo vuole la palla nera", "zh": "松鼠想要黑色的球"}),
]


@pytest.mark.parametrize("sentence,expected", GOLDEN)
def test_known_translations(grammar, sentence, expected):
    assert {lang: grammar.realise(sentence, lang) for lang in grammar.languages} == expected


def test_known_questions_and_answers(grammar):
    s = Sentence(NP("cat", 2, "red"), "sleep", place=("in", "garden"))
    cases = {
        ("colour", "en"): ("What colour are the cats?", "red"),
        ("colour", "de"): ("Welche Farbe haben die Katzen?", "rot"),
        ("colour", "it"): ("Di che colore sono i gatti?", "rossi"),
        ("colour", "zh"): ("猫是什么颜色的？", "红色"),
        ("count", "it"): ("Quanti gatti ci sono?", "due"),
        ("count", "zh"): ("有几只猫？", "两"),
        ("where", "de"): ("Wo sind die Katzen?", "im Garten"),
        ("action", "en"): ("What do the cats do?", "sleep"),
    }
    for (qtype, lang), expected in cases.items():
        got = (grammar.question_text(qtype, NP("cat", 2), lang), grammar.answer_text(qtype, s.subj, s, lang))
        assert got == expected, (qtype, lang)
    assert grammar.question_text("colour", NP("cat"), "en") == "What colour is the cat?"
    assert grammar.question_text("colour", NP("cat"), "de") == "Welche Farbe hat die Katze?"
    assert grammar.question_text("where", NP("elephant"), "it") == "Dov'è l'elefante?"
    assert grammar.question_text("count", NP("cow"), "it") == "Quante mucche ci sono?"
    assert {lang: grammar.unanswerable(lang) for lang in grammar.languages} == UNANSWERABLE


def test_same_english_phrase_same_translation(grammar, sample):
    """Every subject, object and place phrase translates the same way in every sentence it occurs in."""
    seen = defaultdict(set)
    for s in sample:
        for lang in grammar.targets:
            out = grammar.realise(s, lang)
            subj = grammar.np_text(s.subj, lang, "subj")
            assert out.startswith(subj), (out, subj)  # every language puts the subject first
            seen["subj", lang, grammar.np_text(s.subj, "en")].add(subj)
            if s.obj:
                obj = grammar.np_text(s.obj, lang, "obj")
                assert obj in out, (out, obj)
                seen["obj", lang, grammar.np_text(s.obj, "en", "obj")].add(obj)
            if s.place:
                pp = grammar.pp_text(s.place, lang)
                assert pp in out, (out, pp)
                seen["place", lang, grammar.pp_text(s.place, "en")].add(pp)
    assert len(seen) > 500
    assert all(len(v) == 1 for v in seen.values()), {k: v for k, v in seen.items() if len(v) > 1}
    # and whole sentences: one translation per English sentence
    by_en = defaultdict(set)
    for s in sample:
        by_en[grammar.realise(s, "en")].add(tuple(grammar.realise(s, lang) for lang in grammar.targets))
    assert all(len(v) == 1 for v in by_en.values())


def test_answers_follow_from_the_sentence(grammar, sample):
    rng = random.Random(3)
    n_checked = 0
    for s in sample[:600]:
        for lang in grammar.languages:
            qa = grammar.ask(s, lang, rng, answerable=True)
            text = grammar.realise(s, lang)
            nps = [s.subj] + ([s.obj] if s.obj else [])
            assert qa.target.noun in {np.noun for np in nps}
            assert qa.answer != UNANSWERABLE[lang] and 0 < len(qa.answer.split()) <= 4
            if qa.qtype == "count":
                assert qa.target.count == next(np.count for np in nps if np.noun == qa.target.noun)
                if qa.target.count == 1:
                    continue  # "one" is not written: the article says it
            if qa.qtype == "action":
                assert qa.target == s.subj
            # the answer is spelled in the sentence itself (German predicative colours are the stem)
            assert qa.answer in text, (text, qa.question, qa.answer)
            n_checked += 1
    assert n_checked > 1500


def test_unanswerable_questions_ask_what_is_not_said(grammar, sample):
    rng = random.Random(4)
    for s in sample[:600]:
        lang = rng.choice(grammar.languages)
        qa = grammar.ask(s, lang, rng, answerable=False)
        assert qa.answer == UNANSWERABLE[lang]
        present = {np.noun: np for np in [s.subj] + ([s.obj] if s.obj else [])}
        if qa.target.noun in present:
            np = present[qa.target.noun]
            assert (qa.qtype == "colour" and np.adj not in grammar.colours) or (qa.qtype == "where" and not s.place)


def test_split_is_held_out(grammar):
    splits = sample_disjoint(grammar, {"test": 200, "dev": 100, "train": 2000}, seed=1)
    texts = {k: [grammar.realise(s, "en") for s in v] for k, v in splits.items()}
    assert {k: len(set(v)) for k, v in texts.items()} == {"test": 200, "dev": 100, "train": 2000}
    assert not set(texts["test"]) & set(texts["train"])
    assert not set(texts["dev"]) & set(texts["train"])
    assert not set(texts["dev"]) & set(texts["test"])
    # held-out sets do not move when only the training size changes, and the draw is seeded
    again = sample_disjoint(grammar, {"test": 200, "dev": 100, "train": 50}, seed=1)
    assert again["test"] == splits["test"] and again["dev"] == splits["dev"]
    assert sample_disjoint(grammar, {"test": 200}, seed=2)["test"] != splits["test"]


def test_corpus_is_as_hard_as_the_issue_asks(grammar, sample):
    assert len(grammar.vocabulary("en")) >= 200
    lengths = [len(grammar.realise(s, "en").split()) for s in sample]
    assert min(lengths) == 3 and max(lengths) == 10
    used = {w for s in sample for w in grammar.realise(s, "en").split()}
    assert used <= grammar.vocabulary("en")
    assert len(used) >= 0.9 * len(grammar.vocabulary("en"))


def test_a_language_is_added_by_data_alone():
    """A new `languages` block plus one form per entry is enough (here: English again, as 'xx')."""
    spec = yaml.safe_load(DEFAULT_GRAMMAR.read_text(encoding="utf-8"))
    spec["languages"]["xx"] = copy.deepcopy(spec["languages"]["en"])
    spec["languages"]["xx"]["unanswerable"] = "No."
    for section, entries in spec.items():
        if isinstance(entries, dict) and section not in ("languages", "generator"):
            for entry in entries.values():
                entry["xx"] = copy.deepcopy(entry["en"])
    g = Grammar(spec)
    assert g.targets == ("de", "it", "zh", "xx")
    s = GOLDEN[1][0]
    assert g.realise(s, "xx") == g.realise(s, "en")
    assert g.ask(s, "xx", random.Random(0), answerable=False).answer == "No."


def test_missing_form_is_reported_by_name():
    spec = yaml.safe_load(DEFAULT_GRAMMAR.read_text(encoding="utf-8"))
    del spec["animals"]["owl"]["it"]
    with pytest.raises(ValueError, match=r"animals\.owl has no 'it' form"):
        Grammar(spec, "grammar.yaml")
