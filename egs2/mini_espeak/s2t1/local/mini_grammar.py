"""A small deterministic grammar: English sentences, their translations, and questions about them.

Where it sits: stage 1 of egs2/mini_espeak/s2t1. ``local/make_mini_corpus.py`` draws sentences here,
realises them in every language of the grammar file (the recipe's ``conf/grammar.yaml``), asks questions about
them, and synthesises the audio with ``espnet_speechlm_plugin.synth.espeak``.

A sentence is abstract (which animal, how many, which colour, verb, place, time); each language
realises it with the same rules, so the translation of a phrase depends only on the phrase and its
role (subject, object, place) -- never on chance or on the rest of the sentence. A tiny model can
therefore learn translation as a function. All language-specific knowledge (word order, articles,
agreement endings, contractions, question templates, espeak voices) lives in the YAML file; see its
header for the feature-map notation that ``pick`` implements.

    >>> g = load_grammar()
    >>> s = Sentence(NP("cat", adj="red"), "sleep", place=("in", "garden"))
    >>> g.realise(s, "de")
    'die rote Katze schläft im Garten'
"""
from __future__ import annotations

import random
import re
from dataclasses import dataclass
from pathlib import Path

import yaml

DEFAULT_GRAMMAR = Path(__file__).resolve().parents[1] / "conf" / "grammar.yaml"  # this recipe's (or a fork's)

_ART = "\x00"  # marks an article that depends on the word after it
_NOUN_CLASSES = ("animals", "things", "places")
_ADJ_CLASSES = ("colours", "sizes")
_PROPERTIES = ("g", "cl")  # noun fields that are not word forms


@dataclass(frozen=True)
class NP:
    """A noun phrase: ``count`` 1 is the singular with the definite article, >1 that many (plural)."""

    noun: str
    count: int = 1
    adj: str | None = None


@dataclass(frozen=True)
class Sentence:
    subj: NP
    verb: str
    obj: NP | None = None
    place: tuple[str, str] | None = None  # (preposition key, place key)
    time: str | None = None


@dataclass(frozen=True)
class QA:
    qtype: str  # colour | count | where | action
    target: NP  # what the question asks about
    lang: str
    question: str
    answer: str
    answerable: bool


def pick(spec, feats, what="form"):
    """The value of a feature map for a feature set: the most specific key whose parts are all in feats.

    A non-dict ``spec`` is returned as is. Two equally specific matches are a grammar-file error.
    """
    if not isinstance(spec, dict):
        return spec
    best, best_n, tied = None, -1, False
    for key, value in spec.items():
        parts = [] if key == "*" else key.split(".")
        if all(p in feats for p in parts):
            if len(parts) > best_n:
                best, best_n, tied = value, len(parts), False
            elif len(parts) == best_n:
                tied = True
    if best_n < 0:
        raise KeyError(f"{what}: no form for features {sorted(feats)} among {list(spec)}; add one to the grammar file")
    if tied:
        raise ValueError(f"{what}: two forms match features {sorted(feats)} equally in {list(spec)}; "
                         "make one more specific")
    return best


def _squash(text):
    return re.sub(r"\s+", " ", text).strip()


def _finish(text):
    # elided articles ("l' albero") attach to the next word
    return re.sub(r"(?<=\w')\s+", "", _squash(text))


class Grammar:
    """The grammar file, checked and normalised; realises sentences, questions and answers."""

    def __init__(self, spec: dict, path: str = "<dict>"):
        self.path = str(path)
        self.source = spec["source"]
        self.gen = spec["generator"]
        self._lang = spec["languages"]
        spec = self._merge_lexicons(spec, path)
        if self.source not in self._lang:
            raise ValueError(f"{path}: source language {self.source!r} is not under `languages`")
        # source first, then the others in file order
        self.languages = (self.source,) + tuple(lang for lang in self._lang if lang != self.source)
        self.targets = self.languages[1:]
        for lang, conf in self._lang.items():
            for key in ("espeak", "unanswerable", "sentence", "np", "count_det", "article", "numbers", "questions"):
                if key not in conf:
                    raise ValueError(f"{path}: languages.{lang} has no `{key}`")
            if len(conf["numbers"]) < self.gen["max_count"]:
                raise ValueError(f"{path}: languages.{lang}.numbers needs {self.gen['max_count']} entries "
                                 "(generator.max_count)")
        self.nouns, self.noun_class = {}, {}
        for cls in _NOUN_CLASSES:
            for key, entry in spec[cls].items():
                if key in self.nouns:
                    raise ValueError(f"{path}: noun {key!r} appears twice; keys must be unique across {_NOUN_CLASSES}")
                self.nouns[key] = {lang: self._noun(cls, key, entry, lang) for lang in self.languages}
                self.noun_class[key] = cls
        self.classes = {cls: list(spec[cls]) for cls in _NOUN_CLASSES}
        self.adjs = {}
        self.adj_class = {}
        for cls in _ADJ_CLASSES:
            for key, entry in spec[cls].items():
                self.adjs[key] = {lang: self._fields(f"{cls}.{key}", entry, lang, "adj_fields")
                                  for lang in self.languages}
                self.adj_class[key] = cls
        self.colours, self.sizes = list(spec["colours"]), list(spec["sizes"])
        self.verbs = {}
        for cls in ("intransitive_verbs", "transitive_verbs"):
            for key, entry in spec[cls].items():
                self.verbs[key] = {lang: self._fields(f"{cls}.{key}", entry, lang, "verb_fields")
                                   for lang in self.languages}
        self.intransitive, self.transitive = list(spec["intransitive_verbs"]), list(spec["transitive_verbs"])
        self.verb_objects = {k: v["objects"] for k, v in spec["transitive_verbs"].items()}
        self.preps = {k: {lang: self._entry(f"prepositions.{k}", v, lang) for lang in self.languages}
                      for k, v in spec["prepositions"].items()}
        self.place_preps = {k: v["preps"] for k, v in spec["places"].items()}
        for place, preps in self.place_preps.items():
            unknown = [p for p in preps if p not in self.preps]
            if unknown:
                raise ValueError(f"{path}: places.{place}.preps names unknown prepositions {unknown}")
        self.times = {k: {lang: self._entry(f"times.{k}", v, lang) for lang in self.languages}
                      for k, v in spec["times"].items()}

    # ---- loading helpers -------------------------------------------------------------------
    @staticmethod
    def _merge_lexicons(spec, path):
        """A language block's own `lexicon:` ({section: {entry: form}}) put into the entries, as if each form were
        written in its entry: a language is then one block of the file."""
        spec = dict(spec)
        for lang, conf in spec["languages"].items():
            for section, forms in (conf.get("lexicon") or {}).items():
                if section not in spec or not isinstance(spec[section], dict):
                    raise ValueError(f"{path}: languages.{lang}.lexicon.{section} is not a lexicon section")
                spec[section] = dict(spec[section])
                for key, form in forms.items():
                    if key not in spec[section]:
                        raise ValueError(f"{path}: languages.{lang}.lexicon.{section}.{key} is not an entry of "
                                         f"`{section}`")
                    spec[section][key] = {**spec[section][key], lang: form}
        return spec

    def _entry(self, where, entry, lang):
        if lang not in entry:
            raise ValueError(f"{self.path}: {where} has no {lang!r} form; "
                             "every entry needs one per language in `languages`")
        return entry[lang]

    def _fields(self, where, entry, lang, fields_key):
        """List shorthand -> feature map by the language's field names; strings and dicts stay as they are."""
        value = self._entry(where, entry, lang)
        if isinstance(value, list):
            fields = self._lang[lang].get(fields_key)
            if not fields or len(fields) != len(value):
                raise ValueError(f"{self.path}: {where}.{lang} lists {len(value)} forms but "
                                 f"languages.{lang}.{fields_key} is {fields}; give one form per field")
            return dict(zip(fields, value))
        return value

    def _noun(self, cls, key, entry, lang):
        value = self._fields(f"{cls}.{key}", entry, lang, "noun_fields")
        if isinstance(value, str):
            value = {"sg": value}
        forms = {k: v for k, v in value.items() if k not in _PROPERTIES}
        forms.setdefault("pl", forms["sg"])  # languages without plural nouns (zh)
        return {"forms": forms, "g": value.get("g"), "cl": value.get("cl", "")}

    # ---- realisation -------------------------------------------------------------------------
    def _feats(self, lang, noun, number, role, det, *extra):
        feats = {number, det, *extra}
        gender = self.nouns[noun][lang]["g"]
        if gender:
            feats.add(gender)
        case = self._lang[lang].get("cases", {}).get(role)
        if case:
            feats.add(case)
        return feats

    def number_word(self, lang, count, feats=frozenset()):
        return pick(self._lang[lang]["numbers"][count - 1], feats, f"languages.{lang}.numbers[{count}]")

    def adjective(self, lang, adj, feats):
        entry = self.adjs[adj][lang]
        if isinstance(entry, str):  # a stem: attach the language's agreement ending, if it has them
            suffix = self._lang[lang].get("adj_suffix")
            return entry + (pick(suffix, feats, f"languages.{lang}.adj_suffix") if suffix else "")
        return pick(entry, feats, f"{adj}.{lang}")

    def np_text(self, np: NP, lang: str, role: str = "subj", definite: bool = False) -> str:
        """``np`` in ``lang`` for a role (subj, obj, place, question).

        ``definite`` puts the article on plurals too ("the cats" in questions); sentences count them.
        """
        return self._done(self._np(np, lang, role, definite), lang)

    def _np(self, np, lang, role, definite=False):
        # unfinished: elided articles still stand apart, so contractions can see them
        conf = self._lang[lang]
        noun = self.nouns[np.noun][lang]
        number = "sg" if np.count == 1 else "pl"
        det = "def" if definite or np.count == 1 else "num"
        feats = self._feats(lang, np.noun, number, role, det)
        noun_form = pick(noun["forms"], feats, f"{np.noun}.{lang}")
        adj = self.adjective(lang, np.adj, feats | {"attr"}) if np.adj else ""
        if det == "def":
            det_text = _ART
        else:
            det_text = conf["count_det"].format(num=self.number_word(lang, np.count, feats), cl=noun["cl"])
        # the adjective's key is a feature of the template: adjectives that go before the noun ("le grand chat")
        template = pick(conf["np"], feats | ({np.adj} if np.adj else set()), f"languages.{lang}.np")
        text = template.format(det=det_text, adj=adj, noun=noun_form)
        if _ART in text:
            after = text.split(_ART, 1)[1].split()
            article = pick(conf["article"], feats, f"languages.{lang}.article")
            if isinstance(article, list):  # [[regex on the following word, article], ...]
                following = after[0].lower() if after else ""
                article = next(form for pattern, form in article if re.match(pattern, following))
            text = text.replace(_ART, article + " ")
        return _squash(text)

    def _done(self, text, lang):
        """The finished text: elided articles attached, then the language's `rewrites` ([regex, replacement],
        in order; e.g. French elision "de oiseaux" -> "d'oiseaux")."""
        text = _finish(text)
        for pattern, replacement in self._lang[lang].get("rewrites") or []:
            text = re.sub(pattern, replacement, text)
        return text

    def pp_text(self, place: tuple[str, str], lang: str) -> str:
        """The place phrase, e.g. ("in", "garden") -> "im Garten"."""
        return self._done(self._pp(place, lang), lang)

    def _pp(self, place, lang):
        prep, noun = place
        text = self.preps[prep][lang].format(np=self._np(NP(noun), lang, role="place"))
        for short, merged in self._lang[lang].get("contractions", {}).items():
            text = re.sub(r"(?<!\S)" + re.escape(short) + r"(?!\S)", merged, text)
        return _squash(text)

    def verb_text(self, verb: str, subj: NP, lang: str) -> str:
        return pick(self.verbs[verb][lang], {"sg" if subj.count == 1 else "pl"}, f"{verb}.{lang}")

    def realise(self, s: Sentence, lang: str) -> str:
        """The sentence in ``lang``: lower-case start, no final punctuation (the targets' house style)."""
        parts = dict(
            subj=self._np(s.subj, lang, "subj"),
            verb=self.verb_text(s.verb, s.subj, lang),
            obj=self._np(s.obj, lang, "obj") if s.obj else "",
            place=self._pp(s.place, lang) if s.place else "",
            time=self.times[s.time][lang] if s.time else "",
        )
        return self._done(self._lang[lang]["sentence"].format(**parts), lang)

    def unanswerable(self, lang: str) -> str:
        return self._lang[lang]["unanswerable"]

    def espeak(self, lang: str) -> dict:
        """The language's voice spec: {voice, variants, rate: [lo, hi], pitch: [lo, hi]}."""
        return self._lang[lang]["espeak"]

    def unit(self, lang: str) -> str:
        """"word", or "char" for languages written without spaces."""
        return self._lang[lang].get("unit", "word")

    def tokens(self, text: str, lang: str) -> list[str]:
        """Words, or characters for languages written without spaces (``unit: char``)."""
        if self.unit(lang) == "char":
            return [c for c in text if not c.isspace()]
        return text.split()

    # ---- sampling ------------------------------------------------------------------------------
    def _sample_np(self, rng, cls, exclude=None):
        noun = rng.choice([k for k in self.classes[cls] if k != exclude])
        count = rng.randint(2, self.gen["max_count"]) if rng.random() < self.gen["plural"] else 1
        weights = self.gen["adjective"]
        kind = rng.choices(list(weights), weights=list(weights.values()))[0]
        adj = None if kind == "none" else rng.choice(self.colours if kind == "colour" else self.sizes)
        return NP(noun, count, adj)

    def sample_sentence(self, rng: random.Random) -> Sentence:
        """One sentence whose source realisation has generator.words[0]..[1] words."""
        lo, hi = self.gen["words"]
        while True:
            subj = self._sample_np(rng, "animals")
            obj = None
            if rng.random() < self.gen["transitive"]:
                verb = rng.choice(self.transitive)
                obj = self._sample_np(rng, rng.choice(self.verb_objects[verb]), exclude=subj.noun)
            else:
                verb = rng.choice(self.intransitive)
            place = None
            if rng.random() < self.gen["place"]:
                noun = rng.choice(self.classes["places"])
                place = (rng.choice(self.place_preps[noun]), noun)
            time = rng.choice(list(self.times)) if rng.random() < self.gen["time"] else None
            s = Sentence(subj, verb, obj, place, time)
            if lo <= len(self.realise(s, self.source).split()) <= hi:
                return s

    # ---- questions -----------------------------------------------------------------------------
    def question_text(self, qtype: str, target: NP, lang: str) -> str:
        conf = self._lang[lang]
        noun = self.nouns[target.noun][lang]
        number = "sg" if target.count == 1 else "pl"
        ctx = dict(
            np=self._np(NP(target.noun, target.count), lang, "question", definite=True),
            noun_pl=pick(noun["forms"], self._feats(lang, target.noun, "pl", "question", "def"),
                         f"{target.noun}.{lang}"),
            cl=noun["cl"],
        )
        template = pick(conf["questions"][qtype], self._feats(lang, target.noun, number, "question", "def"),
                        f"languages.{lang}.questions.{qtype}")
        return self._done(template.format(**ctx), lang)

    def answer_text(self, qtype: str, target: NP, s: Sentence, lang: str) -> str:
        number = "sg" if target.count == 1 else "pl"
        feats = self._feats(lang, target.noun, number, "question", "def")
        if qtype == "colour":
            return self.adjective(lang, target.adj, feats | {"pred"})
        if qtype == "count":
            return self.number_word(lang, target.count, feats)
        if qtype == "where":
            return self.pp_text(s.place, lang)
        if qtype == "action":
            return self.verb_text(s.verb, s.subj, lang)
        raise ValueError(f"unknown question type {qtype!r}; known: colour, count, where, action")

    def ask(self, s: Sentence, lang: str, rng: random.Random, answerable: bool = True) -> QA:
        """A question in ``lang`` about ``s``; an unanswerable one asks about what the sentence does not say."""
        nps = [s.subj] + ([s.obj] if s.obj else [])
        qtypes = self.gen["question_types"]
        if answerable:
            options = []
            for qtype in qtypes:
                targets = {"colour": [np for np in nps if np.adj in self.colours],
                           # a counted plural when there is one: "one" should not dominate the answers
                           "count": [np for np in nps if np.count > 1] or nps,
                           "where": nps if s.place else [],
                           "action": [s.subj]}[qtype]
                if targets:
                    options.append((qtype, targets))
            qtype, targets = rng.choice(options)
            target = rng.choice(targets)
            answer = self.answer_text(qtype, target, s, lang)
        else:
            qtype = rng.choice(qtypes)
            lacking = {"colour": [np for np in nps if np.adj not in self.colours],
                       "where": [] if s.place else nps}.get(qtype, [])
            if lacking and rng.random() < 0.5:
                np = rng.choice(lacking)
                target = NP(np.noun, np.count)
            else:  # about an animal or thing the sentence does not mention; only animals act
                cls = "animals" if qtype == "action" else rng.choice(["animals", "things"])
                present = {np.noun for np in nps}
                noun = rng.choice([k for k in self.classes[cls] if k not in present])
                target = NP(noun, 2 if rng.random() < self.gen["plural"] else 1)
            answer = self.unanswerable(lang)
        return QA(qtype, target, lang, self.question_text(qtype, target, lang), answer, answerable)

    # ---- statistics --------------------------------------------------------------------------
    def vocabulary(self, lang: str) -> set[str]:
        """Every word (or character) a sentence in ``lang`` can contain, from the lexicon."""
        texts = []
        adjs = [None] + self.colours + self.sizes
        for cls, roles in (("animals", ("subj", "obj")), ("things", ("obj",))):
            for noun in self.classes[cls]:
                for adj in adjs:
                    for count in (1, 2):
                        texts += [self._np(NP(noun, count, adj), lang, role) for role in roles]
        for count in range(2, self.gen["max_count"] + 1):
            texts += [str(self.number_word(lang, count, {g})) for g in ("m", "f", "n")]
        for verb in self.verbs:
            texts += [self.verb_text(verb, NP("cat", n), lang) for n in (1, 2)]
        texts += [self._pp((p, place), lang) for place, preps in self.place_preps.items() for p in preps]
        texts += [t[lang] for t in self.times.values()]
        return {tok for text in texts for tok in self.tokens(self._done(text, lang), lang)}


def load_grammar(path: str | Path | None = None) -> Grammar:
    path = Path(path or DEFAULT_GRAMMAR)
    with open(path, encoding="utf-8") as f:
        spec = yaml.safe_load(f)
    return Grammar(spec, path)


def sample_disjoint(grammar: Grammar, counts: dict[str, int], seed: int) -> dict[str, list[Sentence]]:
    """Distinct sentences per split, in the order of ``counts``; no source text occurs in two splits.

    Splits are filled in dict order from one seeded stream, so listing the held-out sets first keeps
    them unchanged when only the training size changes.
    """
    rng = random.Random(f"mini-grammar-{seed}")
    seen, out = set(), {}
    for split, n in counts.items():
        sentences, tries = [], 0
        while len(sentences) < n:
            tries += 1
            if tries > 50 * n + 1000:
                raise RuntimeError(f"could only draw {len(sentences)} new distinct sentences for {split!r} "
                                   f"(wanted {n}); the grammar is too small for this corpus size")
            s = grammar.sample_sentence(rng)
            key = grammar.realise(s, grammar.source)
            if key not in seen:
                seen.add(key)
                sentences.append(s)
        out[split] = sentences
    return out
