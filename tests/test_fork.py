"""Adding a language by following docs/add_a_language.md: the guide's French block gives correct French, and a
fork of the mini recipe speaking English + French runs stages 1-6 (espeak data, features, tiny training,
decoding, scoring) and gets French rows in RESULTS.md; its French references, scored as hypotheses, are
recognised as French (no task confusion, unanswerable accuracy 1)."""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
SETUP = REPO / "egs2/TEMPLATE/s2t1/setup.sh"
GUIDE = REPO / "docs/add_a_language.md"
GRAMMAR = REPO / "egs2/mini_espeak/s2t1/conf/grammar.yaml"
sys.path.insert(0, str(REPO / "egs2" / "mini_espeak" / "s2t1" / "local"))  # the demo recipe's grammar

from mini_grammar import NP, Grammar, Sentence  # noqa: E402


def guide_blocks(lang: str) -> list[str]:
    """The fenced code blocks of the guide whose language tag is `lang`."""
    return re.findall(rf"```{lang}\n(.*?)```", GUIDE.read_text(encoding="utf-8"), flags=re.S)


def french_block() -> dict:
    """The guide's `fr:` block (the one to paste under `languages:` of conf/grammar.yaml)."""
    blocks = [b for b in guide_blocks("yaml") if b.lstrip().startswith("fr:")]
    assert len(blocks) == 1, "docs/add_a_language.md must hold exactly one ```yaml block starting with `fr:`"
    return yaml.safe_load(blocks[0])["fr"]


def guide_data_args() -> str:
    """The options for local/data.sh of the guide's data check (step 4)."""
    commands = [line for b in guide_blocks("sh") for line in b.splitlines() if "--stop_stage 2" in line]
    assert len(commands) == 1, commands
    return re.search(r'--(?:local_data_opts|data_args) "([^"]+)"', commands[0]).group(1)


def guide_edits() -> list[str]:
    """The guide's `sed -i` commands (step 3), run in the recipe dir."""
    return [line for b in guide_blocks("sh") for line in b.splitlines() if line.startswith("sed -i ")]


def fork_grammar(spec: dict, keep=("en",)) -> dict:
    """What the guide's steps 2-3 do to conf/grammar.yaml: add the French block, keep only `keep` + French."""
    spec = dict(spec)
    spec["languages"] = {lang: spec["languages"][lang] for lang in keep}
    spec["languages"]["fr"] = french_block()
    return spec


def test_guide_french_is_correct_french():
    default = yaml.safe_load(GRAMMAR.read_text(encoding="utf-8"))
    g = Grammar(fork_grammar(default, keep=("en", "de", "it", "zh")))  # French beside all built-in languages
    assert g.languages == ("en", "de", "it", "zh", "fr") and g.unanswerable("fr") == "Pas de réponse possible."
    said = {
        Sentence(NP("cat", adj="red"), "see", NP("apple", 2, "green"), ("near", "garden"), "today"):
            "le chat rouge voit deux pommes vertes près du jardin aujourd'hui",
        Sentence(NP("donkey", adj="old"), "eat", NP("carrot", 3, "small"), ("on", "farm"), "every_day"):
            "le vieil âne mange trois petites carottes à la ferme tous les jours",
        Sentence(NP("hedgehog", adj="big"), "sleep", place=("under", "tree")):
            "le grand hérisson dort sous l'arbre",
        Sentence(NP("elephant", 2, "thin"), "hide", place=("next_to", "school"), time="at_night"):
            "deux éléphants maigres se cachent à côté de l'école la nuit",
        Sentence(NP("owl", adj="white"), "watch", NP("goose")):
            "le hibou blanc regarde l'oie",
    }
    for sentence, french in said.items():
        assert g.realise(sentence, "fr") == french
    assert g.question_text("count", NP("bird", 2), "fr") == "Combien d'oiseaux y a-t-il ?"
    assert g.question_text("count", NP("hedgehog", 2), "fr") == "Combien de hérissons y a-t-il ?"  # aspirated h
    assert g.question_text("colour", NP("mouse"), "fr") == "De quelle couleur est la souris ?"
    assert g.question_text("where", NP("elephant"), "fr") == "Où est l'éléphant ?"
    s = Sentence(NP("mouse", adj="grey"), "run", place=("in", "forest"))
    assert g.answer_text("colour", s.subj, s, "fr") == "grise" and g.answer_text("where", s.subj, s, "fr") == \
        "dans la forêt"
    # the block's lexicon must name real entries, and every entry needs a French form
    broken = fork_grammar(default)
    broken["languages"]["fr"]["lexicon"]["animals"]["dgo"] = ["chien", "chiens", "m"]
    with pytest.raises(ValueError, match=r"languages.fr.lexicon.animals.dgo is not an entry of `animals`"):
        Grammar(broken)
    broken = fork_grammar(default)
    del broken["languages"]["fr"]["lexicon"]["animals"]["dog"]
    with pytest.raises(ValueError, match="animals.dog has no 'fr' form"):
        Grammar(broken)


def test_setup_refuses_existing_target(tmp_path):
    (tmp_path / "taken").mkdir()
    out = subprocess.run([str(SETUP), str(tmp_path / "taken")], capture_output=True, text=True)
    assert out.returncode != 0 and "already exists" in out.stderr and not any((tmp_path / "taken").iterdir())
    out = subprocess.run([str(SETUP), str(tmp_path / "x"), "--from", str(tmp_path)], capture_output=True, text=True)
    assert out.returncode != 0 and "not a recipe dir" in out.stderr and not (tmp_path / "x").exists()


# The tiny model of the fork: the sizes of tests/test_mini_recipe.py, with the least pretraining of the initial
# models (one encoder step makes the compressor checkpoint stage 3 starts from); the test checks that French is
# scored, not how well.
TINY = [
    "--init_args", "--vocab_size 300 --encoder_hidden 32 --decoder_hidden 32 --heads 2",
    "--init_lm_steps", "0", "--init_encoder_steps", "1",
    "--stage1_args", "--max_epoch 1 --batch_size 8",
    "--stage2_args", "--max_epoch 1 --batch_size 8",
    "--decode_args", "--batch_size 8 --max_new_tokens 8",
    "--score_args", "--comet_model none --bertscore_model none",
    "--nj", "1",
]


def run_recipe(recipe: Path, *args: str) -> str:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("VIRTUAL_ENV", None)
    out = subprocess.run(["./run.sh", *args], cwd=recipe, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    return out.stdout


@pytest.fixture(scope="module")
def french_fork(tmp_path_factory):
    """The guide's steps 1-4 on a fresh fork (the data of its data check), then stages 2-6 with the tiny model,
    in one run of the recipe."""
    recipe = tmp_path_factory.mktemp("fork") / "egs2" / "mini_fr" / "s2t1"
    subprocess.run([str(SETUP), str(recipe)], check=True, capture_output=True)
    grammar = recipe / "conf" / "grammar.yaml"
    spec = fork_grammar(yaml.safe_load(grammar.read_text(encoding="utf-8")))
    grammar.write_text(yaml.safe_dump(spec, allow_unicode=True, sort_keys=False), encoding="utf-8")
    assert len(guide_edits()) == 2
    for command in guide_edits():
        subprocess.run(command, shell=True, cwd=recipe, check=True)
    data_args = guide_data_args()
    log = run_recipe(recipe, "--stage", "1", "--stop_stage", "6", "--local_data_opts", data_args, *TINY)
    return recipe, spec, log


def test_setup_links_the_template_and_copies_the_recipe(french_fork):
    recipe, _, log = french_fork
    for name in ("speechlm.sh", "path.sh", "cmd.sh", "utils"):
        assert (recipe / name).is_symlink() and (recipe / name).resolve() == (REPO / "egs2/TEMPLATE/s2t1" / name)
    for name in ("run.sh", "conf/grammar.yaml", "conf/stage1_tiny.yaml", "local/data.sh"):
        assert (recipe / name).is_file() and not (recipe / name).is_symlink()
    assert os.access(recipe / "run.sh", os.X_OK) and os.access(recipe / "local/data.sh", os.X_OK)
    for n in range(1, 7):
        assert f"Stage {n}: " in log
    # the guide's edits leave no trace of the demo's languages in what the fork owns
    for path in [recipe / "run.sh", recipe / "local/data.sh", *sorted((recipe / "conf").glob("*.yaml"))]:
        assert "en/de/it/zh" not in path.read_text(encoding="utf-8") and "de, it, zh" not in \
            path.read_text(encoding="utf-8"), path
    for stage in ("stage1_tiny.yaml", "stage2_tiny.yaml"):
        assert yaml.safe_load((recipe / "conf" / stage).read_text(encoding="utf-8"))["languages"] == ["en", "fr"]


def test_french_data_and_features(french_fork):
    recipe, spec, _ = french_fork
    from espnet_speechlm_plugin.data.kaldi import read_kaldi_text
    from espnet_speechlm_plugin.vocab import validate_prompt_file

    sizes = dict(re.findall(r"--n_(train|dev|test) (\d+)", guide_data_args()))
    languages = yaml.safe_load((recipe / "conf/stage2_tiny.yaml").read_text(encoding="utf-8"))["languages"]
    prompts = {}
    for split in ("train", "dev", "test"):
        dump = recipe / "dump" / split
        split_prompts = read_kaldi_text(dump / "prompt")
        assert len(split_prompts) == int(sizes[split]) == validate_prompt_file(str(dump / "prompt"), languages)
        assert set(read_kaldi_text(dump / "feats.scp")) == set(split_prompts)
        assert read_kaldi_text(dump / "unanswerable") == {"en": "Not answerable.", "fr": "Pas de réponse possible."}
        prompts.update(split_prompts)
    assert {p.split()[0] for p in prompts.values()} == {"en", "fr"}
    assert {" ".join(p.split()[:2]) for p in prompts.values()} >= {"fr translate", "fr transcribe", "fr answer"}
    text = {u: t for s in ("train", "dev", "test") for u, t in read_kaldi_text(recipe / "data" / s / "text").items()}
    utt2spk = {u: spk for s in ("train", "dev", "test")
               for u, spk in read_kaldi_text(recipe / "data" / s / "utt2spk").items()}
    # French targets are French sentences of the grammar; speakers are en_* or fr_* voices
    g = Grammar(spec)
    french = [t for u, t in text.items() if prompts[u] in ("fr translate", "fr transcribe")]
    assert french and all(set(g.tokens(t, "fr")) <= g.vocabulary("fr") for t in french)
    assert {spk.split("_")[0] for spk in utt2spk.values()} <= {"en", "fr"}
    # the example lines the guide shows for this command are in the data
    examples = re.findall(r"^\s*(\S+-\S+) (\w\w \w+[^\n]*?) +→ +(.+)$", GUIDE.read_text(encoding="utf-8"), flags=re.M)
    assert len(examples) >= 2
    for utt, prompt, target in examples:
        assert prompts.get(utt) == prompt and text.get(utt) == target, (utt, prompts.get(utt), text.get(utt))


def test_french_rows_in_results(french_fork):
    recipe, _, _ = french_fork
    exp = recipe / "exp" / "tiny_stage2"
    rows = json.loads((exp / "results.json").read_text(encoding="utf-8"))
    got = {(r["task"], r["lang"], r["metric"]) for r in rows if r["test_set"] == "test"}
    for needed in [("transcribe", "fr", "wer"), ("translate", "fr", "bleu"), ("translate", "fr", "chrf"),
                   ("answer", "fr", "exact_match"), ("answer", "fr", "unanswerable_acc"),
                   ("translate", "fr", "task_confusion")]:
        assert needed in got, needed
    md = (exp / "RESULTS.md").read_text(encoding="utf-8")
    assert re.search(r"^\| translate:fr +\|", md, flags=re.M) and "translated:it" not in md


def test_french_references_are_not_confusion(french_fork, tmp_path):
    """The references as hypotheses: every metric perfect and every output labelled as the task asked."""
    recipe, _, _ = french_fork
    decode = tmp_path / "decode" / "test"
    decode.mkdir(parents=True)
    shutil.copy(recipe / "dump/test/text", decode / "text")
    from espnet_speechlm_plugin.bin import score

    assert score.main(["--decode_dir", str(tmp_path / "decode"), "--ref_dir", str(recipe / "dump"),
                       "--test_sets", "test", "--out_dir", str(tmp_path / "out"), "--config",
                       str(recipe / "exp/tiny_stage2/config.yaml"), "--comet_model", "none",
                       "--bertscore_model", "none", "--mcif_track", "none"]) == 0
    rows = json.loads((tmp_path / "out/results.json").read_text(encoding="utf-8"))
    values = {(r["task"], r["lang"], r["metric"]): r["value"] for r in rows}
    assert values[("transcribe", "fr", "wer")] == 0 and values[("translate", "fr", "bleu")] == pytest.approx(100)
    assert values[("answer", "fr", "exact_match")] == 1 and values[("answer", "fr", "unanswerable_acc")] == 1
    confusion = {k: v for k, v in values.items() if k[2] == "task_confusion"}
    assert confusion and set(confusion.values()) == {0}
    md = (tmp_path / "out/RESULTS.md").read_text(encoding="utf-8")
    header = next(line for line in md.splitlines() if line.startswith("| asked \\ performed"))
    assert "translated:fr" in header and "translated:it" not in header and "other" not in header
