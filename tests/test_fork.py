"""Forking a recipe with egs2/TEMPLATE/s2t1/setup.sh, and adding a language to the mini recipe by config only:
a fork speaking French (not in the defaults) runs stages 1-2 (espeak data + features) on a few utterances."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
SETUP = REPO / "egs2/TEMPLATE/s2t1/setup.sh"
sys.path.insert(0, str(REPO / "egs2" / "mini_espeak" / "s2t1" / "local"))  # the demo recipe's grammar

from mini_grammar import Grammar  # noqa: E402

# A French block for conf/grammar.yaml (the README's "Add a language" example) ...
FRENCH = {
    "name": "French",
    "espeak": {"voice": "fr", "variants": ["m1", "f1"], "rate": [140, 180], "pitch": [35, 65]},
    "unanswerable": "Pas de réponse possible.",
    "sentence": "{subj} {verb} {obj} {place} {time}",
    "np": "{det} {noun} {adj}",
    "count_det": "{num}",
    "article": {"m.sg": [["^[aeiouhé]", "l'"], ["", "le"]], "f.sg": [["^[aeiouhé]", "l'"], ["", "la"]], "pl": "les"},
    "contractions": {"de le": "du", "de les": "des", "à le": "au", "à les": "aux"},
    "noun_fields": ["sg", "pl", "g"],
    "verb_fields": ["sg", "pl"],
    "adj_fields": ["m.sg", "f.sg", "m.pl", "f.pl"],
    "numbers": [{"m": "un", "f": "une"}, "deux", "trois", "quatre", "cinq", "six", "sept", "huit", "neuf", "dix"],
    "questions": {"colour": {"sg": "De quelle couleur est {np} ?", "pl": "De quelle couleur sont {np} ?"},
                  "count": "Combien de {noun_pl} y a-t-il ?",
                  "where": {"sg": "Où est {np} ?", "pl": "Où sont {np} ?"},
                  "action": {"sg": "Que fait {np} ?", "pl": "Que font {np} ?"}},
}
# ... and the French forms of a small lexicon (a fork may keep only the entries it translates)
FRENCH_LEXICON = {
    "animals": {"cat": ["chat", "chats", "m"], "dog": ["chien", "chiens", "m"], "bird": ["oiseau", "oiseaux", "m"],
                "mouse": ["souris", "souris", "f"]},
    "things": {"apple": ["pomme", "pommes", "f"], "ball": ["balle", "balles", "f"], "book": ["livre", "livres", "m"]},
    "colours": {"red": ["rouge", "rouge", "rouges", "rouges"], "blue": ["bleu", "bleue", "bleus", "bleues"],
                "green": ["vert", "verte", "verts", "vertes"]},
    "sizes": {"big": ["grand", "grande", "grands", "grandes"], "small": ["petit", "petite", "petits", "petites"]},
    "intransitive_verbs": {"sleep": ["dort", "dorment"], "run": ["court", "courent"], "sing": ["chante", "chantent"]},
    "transitive_verbs": {"see": ["voit", "voient"], "eat": ["mange", "mangent"], "chase": ["chasse", "chassent"]},
    "prepositions": {"in": "dans {np}", "near": "près de {np}", "under": "sous {np}"},
    "places": {"garden": ["jardin", "jardins", "m"], "park": ["parc", "parcs", "m"], "table": ["table", "tables", "f"]},
    "times": {"today": "aujourd'hui", "now": "maintenant"},
}


def french_grammar(default: dict) -> dict:
    """The default grammar with English + French only, restricted to FRENCH_LEXICON's entries."""
    spec = dict(default)
    spec["languages"] = {"en": default["languages"]["en"], "fr": FRENCH}
    for section, entries in FRENCH_LEXICON.items():
        spec[section] = {key: {**default[section][key], "fr": form} for key, form in entries.items()}
    for place, entry in spec["places"].items():  # only the prepositions this small lexicon has
        entry["preps"] = [p for p in entry["preps"] if p in FRENCH_LEXICON["prepositions"]]
    return spec


def test_french_is_config_only():
    default = yaml.safe_load((REPO / "egs2/mini_espeak/s2t1/conf/grammar.yaml").read_text(encoding="utf-8"))
    g = Grammar(french_grammar(default))
    assert g.languages == ("en", "fr") and g.unanswerable("fr") == "Pas de réponse possible."
    from mini_grammar import NP, Sentence

    s = Sentence(NP("cat", adj="red"), "see", NP("apple", 2, "green"), ("near", "garden"), "today")
    assert g.realise(s, "en") == "the red cat sees two green apples near the garden today"
    assert g.realise(s, "fr") == "le chat rouge voit deux pommes vertes près du jardin aujourd'hui"
    assert g.question_text("colour", NP("mouse"), "fr") == "De quelle couleur est la souris ?"
    broken = french_grammar(default)
    del broken["animals"]["dog"]["fr"]
    with pytest.raises(ValueError, match="animals.dog has no 'fr' form"):
        Grammar(broken)


def test_setup_refuses_existing_target(tmp_path):
    (tmp_path / "taken").mkdir()
    out = subprocess.run([str(SETUP), str(tmp_path / "taken")], capture_output=True, text=True)
    assert out.returncode != 0 and "already exists" in out.stderr and not any((tmp_path / "taken").iterdir())
    out = subprocess.run([str(SETUP), str(tmp_path / "x"), "--from", str(tmp_path)], capture_output=True, text=True)
    assert out.returncode != 0 and "not a recipe dir" in out.stderr and not (tmp_path / "x").exists()


def test_forked_french_recipe_runs_data_and_feature_stages(tmp_path):
    recipe = tmp_path / "egs2" / "mini_fr" / "s2t1"
    subprocess.run([str(SETUP), str(recipe)], check=True, capture_output=True)
    for name in ("speechlm.sh", "path.sh", "cmd.sh", "utils"):
        assert (recipe / name).is_symlink() and (recipe / name).resolve() == (REPO / "egs2/TEMPLATE/s2t1" / name)
    for name in ("run.sh", "conf/grammar.yaml", "conf/stage1_tiny.yaml", "local/data.sh"):
        assert (recipe / name).is_file() and not (recipe / name).is_symlink()
    assert os.access(recipe / "run.sh", os.X_OK) and os.access(recipe / "local/data.sh", os.X_OK)

    # add French: the grammar block and lexicon forms, and the prompt token in the training configs
    grammar = recipe / "conf" / "grammar.yaml"
    spec = french_grammar(yaml.safe_load(grammar.read_text(encoding="utf-8")))
    grammar.write_text(yaml.safe_dump(spec, allow_unicode=True, sort_keys=False), encoding="utf-8")
    for stage in ("stage1_tiny.yaml", "stage2_tiny.yaml"):
        conf = recipe / "conf" / stage
        conf.write_text(conf.read_text(encoding="utf-8").replace("languages: [en, de, it, zh]", "languages: [en, fr]"),
                        encoding="utf-8")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("VIRTUAL_ENV", None)
    out = subprocess.run(["./run.sh", "--stage", "1", "--stop_stage", "2", "--make_init", "false", "--nj", "1",
                          "--data_args", "--n_train 6 --n_dev 2 --n_test 4 --nj 1 --seed 2"],
                         cwd=recipe, env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    assert "Stage 1: data preparation" in out.stdout and "Stage 2: features" in out.stdout

    from espnet_speechlm_plugin.data.kaldi import read_kaldi_text
    from espnet_speechlm_plugin.vocab import validate_prompt_file

    languages = yaml.safe_load((recipe / "conf/stage2_tiny.yaml").read_text(encoding="utf-8"))["languages"]
    langs, tasks = set(), set()
    for split, n in (("train", 6), ("dev", 2), ("test", 4)):
        dump = recipe / "dump" / split
        prompts = read_kaldi_text(dump / "prompt")
        assert len(prompts) == n == validate_prompt_file(str(dump / "prompt"), languages)
        assert set(read_kaldi_text(dump / "feats.scp")) == set(prompts)
        assert all(int(v.split(",")[0]) > 0 for v in read_kaldi_text(dump / "speech_shape").values())
        langs |= {p.split()[0] for p in prompts.values()}
        tasks |= {p.split()[1] for p in prompts.values()}
    assert "fr" in langs and {"translate", "transcribe"} <= tasks
    data = {name: {u: v for s in ("train", "dev", "test")
                   for u, v in read_kaldi_text(recipe / "data" / s / name).items()}
            for name in ("text", "prompt", "utt2spk")}
    # French targets are sentences of the French lexicon; speakers are en_* or fr_* voices
    g = Grammar(spec)
    french = [t for u, t in data["text"].items() if data["prompt"][u] == "fr translate"]
    assert french and all(set(g.tokens(t, "fr")) <= g.vocabulary("fr") for t in french)
    assert not any(set(g.tokens(t, "fr")) <= g.vocabulary("en") for t in french)
    assert {spk.split("_")[0] for spk in data["utt2spk"].values()} <= {"en", "fr"}
