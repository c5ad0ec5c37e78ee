"""Corpus readers of egs2/iwslt25_if/s2t1 (espnet_speechlm_plugin/corpora/) on fixture corpora in every real
layout: valid data dirs (ids, prompts, durations that match the audio), the right content per corpus, reruns that
skip, option changes that rebuild, dropped items that are counted, and errors that name the db.sh variable."""
import json
import os
import shutil
import subprocess
import sys
import tarfile
from collections import Counter
from pathlib import Path

import pytest
import soundfile as sf

from espnet_speechlm_plugin.bin.make_fixture_corpora import PARALLEL, make_fixture_corpora
from espnet_speechlm_plugin.corpora import common, mls
from espnet_speechlm_plugin.features.audio import load_audio, read_wav_scp
from espnet_speechlm_plugin.vocab import UNANSWERABLE, parse_prompt

REPO = Path(__file__).resolve().parents[1]
DATA_SH = REPO / "egs2" / "iwslt25_if" / "s2t1" / "local" / "data.sh"

LANGS = ("en", "de", "it", "zh")
SPLITS3 = ("train", "dev", "test")
EXPECTED_DIRS = sorted(
    [f"librispeech_en_{s}" for s in ("train", "dev", "test-clean", "test-other")]
    + [f"mls_{lang}_{s}" for lang in ("de", "it") for s in SPLITS3]
    + [f"cv_{lang}_{s}" for lang in LANGS for s in SPLITS3]
    + [f"covost2_en_{t}_{s}" for t in ("de", "zh") for s in SPLITS3]
    + [f"fleurs_{lang}_{s}" for lang in LANGS for s in SPLITS3]
    + [f"fleurs_en_{t}_{s}" for t in ("de", "it", "zh") for s in SPLITS3]
    + [f"spokensquad_en_{s}" for s in SPLITS3] + ["acl6060_en_dev", "acl6060_en_de_dev", "acl6060_en_zh_dev"]
)
FILES = ("wav.scp", "text", "utt2spk", "prompt", "utt2dur", "transcript")


def run_data_sh(cwd: Path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items()
             if k not in ("LIBRISPEECH", "MLS_DE", "MLS_IT", "COMMONVOICE", "COVOST2", "COVOST2_CV_EN", "FLEURS",
                          "SPOKEN_SQUAD", "ACL6060")}
    clean["OMP_NUM_THREADS"] = "1"
    return subprocess.run(["bash", str(DATA_SH), *args], cwd=cwd, env={**clean, **(env or {})},
                          capture_output=True, text=True)


def table(path: Path) -> dict[str, str]:
    out = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        key, _, value = line.partition(" ")
        out[key] = value
    return out


def ids(path: Path) -> list[str]:
    return [line.split(" ", 1)[0] for line in path.read_text(encoding="utf-8").splitlines()]


@pytest.fixture(scope="session")
def fixture_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("corpora")
    make_fixture_corpora(root)
    return root


@pytest.fixture(scope="session")
def recipe(fixture_root, tmp_path_factory) -> Path:
    """A working directory where local/data.sh ran once on every fixture corpus."""
    cwd = tmp_path_factory.mktemp("recipe")
    result = run_data_sh(cwd, "--corpora_root", str(fixture_root), "--nj", "1")
    assert result.returncode == 0, result.stderr
    return cwd


def test_fixture_corpora_use_the_real_formats(fixture_root):
    expect = {
        "LibriSpeech/train-clean-100/103/1240/103-1240-0000.flac": ("FLAC", 16000),
        "LibriSpeech/test-other/1688/142285/1688-142285-0000.flac": ("FLAC", 16000),
        "mls_german_opus/train/audio/1844/931/1844_931_000000.opus": ("OGG", 16000),
        "mls_italian/train/audio/1844/931/1844_931_000000.flac": ("FLAC", 16000),
        "cv-corpus-17.0-2024-03-15/zh-CN/clips/common_voice_zh-CN_201.mp3": ("MP3", 48000),
        "Spoken-SQuAD/Spoken-SQuAD_audio/train_wav/0_0_1.wav": ("WAV", 24000),
        "2/acl_6060/dev/segmented_wavs/gold/sent_1.wav": ("WAV", 16000),
        "2/acl_6060/dev/full_wavs/2022.acl-long.110.wav": ("WAV", 16000),
    }
    for rel, (fmt, rate) in expect.items():
        info = sf.info(fixture_root / rel)
        assert (info.format, info.samplerate, info.channels) == (fmt, rate, 1), rel
    with tarfile.open(fixture_root / "fleurs/data/cmn_hans_cn/audio/dev.tar.gz") as tar:
        names = tar.getnames()
    assert names and all(n.startswith("dev/") and n.endswith(".wav") for n in names)
    first = (fixture_root / "LibriSpeech/train-clean-100/103/1240/103-1240.trans.txt").read_text().splitlines()[0]
    assert first == "103-1240-0000 THE CAT SLEEPS ON THE WARM FLOOR"
    validated = fixture_root / "cv-corpus-17.0-2024-03-15/en/validated.tsv"
    assert validated.read_text().split("\n")[0].startswith("client_id\tpath\t")
    # the folders are named as the releases unpack (what --corpora_root looks for)
    assert sorted(os.listdir(fixture_root)) == ["2", "LibriSpeech", "Spoken-SQuAD", "covost2",
                                                "cv-corpus-17.0-2024-03-15", "fleurs", "mls_german_opus", "mls_italian"]


def test_data_sh_writes_every_data_dir(recipe):
    assert sorted(os.listdir(recipe / "data")) == EXPECTED_DIRS  # nothing else, no temp dirs left


@pytest.mark.parametrize("name", EXPECTED_DIRS)
def test_data_dir_is_valid(recipe, name):
    d = recipe / "data" / name
    utts = ids(d / "wav.scp")
    assert utts == sorted(utts) and len(set(utts)) == len(utts) and utts
    for f in FILES:
        assert ids(d / f) == utts, f"{name}/{f}"
    utt2spk = table(d / "utt2spk")
    for utt, spk in utt2spk.items():
        assert utt.startswith(spk + "-")
    spk2utt = {line.split()[0]: line.split()[1:] for line in (d / "spk2utt").read_text().splitlines()}
    assert list(spk2utt) == sorted(spk2utt)
    assert {u: s for s, us in spk2utt.items() for u in us} == utt2spk

    corpus, *middle, split = name.split("_")
    task = "answer" if corpus == "spokensquad" else "translate" if len(middle) == 2 else "transcribe"
    lang = middle[-1]
    for lineno, (utt, value) in enumerate(table(d / "prompt").items(), 1):
        got_lang, got_task, question = parse_prompt(value, LANGS, f"{name}/prompt line {lineno}")
        assert (got_lang, got_task) == (lang, task)
        assert bool(question) == (task == "answer")

    # utt2dur matches the audio as stage 2 reads it (16 kHz after resampling, decoded mp3 included)
    durations = {u: float(v) for u, v in table(d / "utt2dur").items()}
    for entry in read_wav_scp(str(d / "wav.scp")):
        audio = load_audio(entry)
        assert abs(audio.duration - durations[entry.utt_id]) < 0.002, entry.where
    info = json.loads((d / "prep_info.json").read_text())
    assert info["utterances"] == len(utts) and info["task"] == task and info["lang"] == lang


def test_transcription_and_translation_content(recipe):
    data = recipe / "data"
    assert table(data / "librispeech_en_train/text")["librispeech_en-103-1240-0000"] == \
        "THE CAT SLEEPS ON THE WARM FLOOR"
    assert table(data / "mls_it_dev/text") == {"mls_it-3037-2614_000000": "mio fratello legge un libro lungo"}
    # Common Voice train = validated minus dev/test: clip 106 (validated only) in, dev/test clips (108, 109) out;
    # CoVoST 2's dev and test clips 104, 105 are Common Voice training clips (stage 2 removes them from training)
    train = " ".join(table(data / "cv_en_train/wav.scp").values())
    assert all(f"common_voice_en_{n}.mp3" in train for n in (101, 104, 105, 106, 107))
    assert "_108.mp3" not in train and "_109.mp3" not in train
    # CoVoST en-de from the raw tsv: backslash-escaped quotes read back; a clip absent from validated.tsv counted
    dev = data / "covost2_en_de_dev"
    assert list(table(dev / "text").values()) == ['Mein Bruder liest ein langes Buch, „Ulysses".']
    assert list(table(dev / "transcript").values()) == ['My brother reads a long book, "Ulysses".']
    info = json.loads((data / "covost2_en_de_train/prep_info.json").read_text())
    assert info["dropped"] == {"clip not in Common Voice validated.tsv": 1} and info["utterances"] == 4
    # CoVoST en-zh from the split tsvs: the same Common Voice clips as cv_en, Chinese targets
    zh = table(data / "covost2_en_zh_train/text")
    assert set(zh.values()) == {PARALLEL[r][3] for r in (0, 1, 2, 5)}
    assert set(table(data / "covost2_en_zh_train/wav.scp").values()) < set(table(data / "cv_en_train/wav.scp")
                                                                         .values())
    # LibriSpeech: both test sets the paper's ASR figures use
    assert list(table(data / "librispeech_en_test-other/text").values()) == [
        "WE THANK THE REVIEWERS FOR THEIR COMMENTS"]
    assert list(table(data / "librispeech_en_test-clean/wav.scp").values())[0].endswith(
        "LibriSpeech/test-clean/1089/134686/1089-134686-0000.flac")
    # FLEURS: translation = the target language's sentence with the same id over the English audio
    for utt, text in table(data / "fleurs_en_de_train/text").items():
        sid = int(utt.rsplit("-", 1)[1])
        assert text == PARALLEL[sid][1]
        assert table(data / "fleurs_en_de_train/transcript")[utt] == PARALLEL[sid][0]
    assert json.loads((data / "fleurs_en_zh_train/prep_info.json").read_text())["dropped"] == {
        "sentence id missing in cmn_hans_cn": 2}
    # ACL 60/60: one speaker per talk, sentences numbered as sent_N.wav
    spk = table(data / "acl6060_en_zh_dev/utt2spk")
    assert Counter(spk.values()) == {"acl6060_en_zh-2022.acl-long.110": 2, "acl6060_en_zh-2022.acl-long.117": 2}
    wav = table(data / "acl6060_en_dev/wav.scp")
    assert wav["acl6060_en-2022.acl-long.117-sent_0003"].endswith("segmented_wavs/gold/sent_3.wav")
    assert table(data / "acl6060_en_zh_dev/text")["acl6060_en_zh-2022.acl-long.117-sent_0003"] == PARALLEL[2][3]


def test_spoken_squad_answers_and_unanswerable(recipe, fixture_root):
    d = recipe / "data" / "spokensquad_en_train"
    text, prompt, wav = table(d / "text"), table(d / "prompt"), table(d / "wav.scp")
    transcript = table(d / "transcript")
    unanswerable = [u for u in text if "-na-" in u]
    answerable = [u for u in text if "-na-" not in u]
    assert len(answerable) == 4 and len(unanswerable) == round(0.25 * 4)
    for u in answerable:
        assert text[u] in transcript[u]  # an extractive answer from the passage
    for u in unanswerable:
        assert text[u] == "Not answerable."
        qid = u.rsplit("-", 1)[1]
        (own,) = [a for a in answerable if a.endswith(qid)]
        assert prompt[u] == prompt[own]  # the same question ...
        topic = lambda utt: utt.split("-")[1].split("_")[0]  # noqa: E731
        assert topic(u) != topic(own) and wav[u] != wav[own]  # ... over a passage of another article
    # a two-sentence passage is one file holding both sentence wavs, at their rate
    (passage,) = {wav[u] for u in answerable if u.startswith("spokensquad_en-0_0-")}
    sentences = [sf.info(fixture_root / f"Spoken-SQuAD/Spoken-SQuAD_audio/train_wav/0_0_{s}.wav") for s in (0, 1)]
    info = sf.info(passage)
    assert (info.format, info.samplerate) == ("FLAC", 24000) and info.frames == sum(s.frames for s in sentences)


def test_spoken_squad_dev_split_is_held_out_by_article(recipe, fixture_root):
    """The dev split is carved from spoken_train by article (the same on every run): no article, passage or audio
    file is in both; its unanswerable pairs use its own passages; spoken_test stays the test set."""
    data = recipe / "data"
    topic = lambda utt: utt.split("-")[1].split("_")[0]  # noqa: E731  (speaker = the passage <topic>_<paragraph>)
    split = {name: table(data / f"spokensquad_en_{name}/wav.scp") for name in ("train", "dev", "test")}
    train_topics, dev_topics = {topic(u) for u in split["train"]}, {topic(u) for u in split["dev"]}
    assert train_topics == {"0", "2"} and dev_topics == {"1", "3"}  # the two lowest SHA-256 titles of four
    assert not set(split["train"].values()) & set(split["dev"].values())
    questions = json.loads((fixture_root / "Spoken-SQuAD/spoken_train-v1.1.json").read_text())["data"]
    qids = {int(t): {qa["id"] for para in questions[int(t)]["paragraphs"] for qa in para["qas"]} for t in "0123"}
    dev_text = table(data / "spokensquad_en_dev/text")
    assert {u.rsplit("-", 1)[1] for u in dev_text} == qids[1] | qids[3]  # every dev question, answerable or not
    assert [v for u, v in dev_text.items() if "-na-" in u] == ["Not answerable."] * round(0.25 * 3)
    test_text = table(data / "spokensquad_en_test/text")
    assert sum(v == "Not answerable." for v in test_text.values()) == 1 and len(test_text) == 4
    info = json.loads((data / "spokensquad_en_dev/prep_info.json").read_text())
    assert info["fingerprint"]["dev_fraction"] == 0.02


def test_rerun_skips_and_changed_options_rebuild(recipe, fixture_root, tmp_path):
    stamps = {p: p.stat().st_mtime_ns for p in (recipe / "data").glob("*/text")}
    result = run_data_sh(recipe, "--corpora_root", str(fixture_root), "--nj", "1")
    assert result.returncode == 0, result.stderr
    assert result.stderr.count("complete, skipping") == len(EXPECTED_DIRS)
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps

    # German questions and answers (as the pseudo-labelling stage would give them) and another unanswerable ratio
    questions = json.loads((fixture_root / "Spoken-SQuAD/spoken_train-v1.1.json").read_text())
    qas = [qa for art in questions["data"] for para in art["paragraphs"] for qa in para["qas"]]
    trans = tmp_path / "sqa_translations"
    trans.mkdir()
    rows = [f"{qa['id']}\tFrage {k}?\tAntwort {k}\n" for k, qa in enumerate(qas[:3])]  # the 4th has none
    (trans / "de.tsv").write_text("id\tquestion\tanswer\n" + "".join(rows), encoding="utf-8")
    result = run_data_sh(recipe, "--corpora_root", str(fixture_root), "--nj", "1", "--corpora", "spokensquad",
                         "--sqa_unanswerable_ratio", "0.5", "--sqa_translations", str(trans))
    assert result.returncode == 0, result.stderr
    assert "spokensquad_en_train: 6 utterances" in result.stderr  # 4 answerable + 2 unanswerable
    de = recipe / "data" / "spokensquad_de_train"
    text, prompt = table(de / "text"), table(de / "prompt")
    assert sorted(v for u, v in text.items() if "-na-" not in u) == ["Antwort 0", "Antwort 1", "Antwort 2"]
    assert [v for u, v in text.items() if "-na-" in u] == ["Nicht zu beantworten."] * round(0.5 * 3)
    assert all(v.startswith("de answer Frage ") for v in prompt.values())
    assert json.loads((de / "prep_info.json").read_text())["dropped"] == {"no de translation of the question": 1}
    assert "spokensquad_de_test: not written, no utterances" in result.stderr  # no test question was translated
    shutil.rmtree(de)  # leave the session's recipe dir as the other tests expect it
    result = run_data_sh(recipe, "--corpora_root", str(fixture_root), "--nj", "1", "--corpora", "spokensquad")
    assert "spokensquad_en_train: 5 utterances" in result.stderr


def test_unanswerable_strings_are_exact():
    assert UNANSWERABLE == {"en": "Not answerable.", "de": "Nicht zu beantworten.",
                            "it": "Non è possibile rispondere.", "zh": "无法回答。"}


def test_missing_or_wrong_corpus_path_names_the_variable(fixture_root, tmp_path):
    result = run_data_sh(tmp_path, "--corpora", "librispeech mls")
    assert result.returncode == 2
    for needle in ("LIBRISPEECH=(not set): no path given", "MLS_DE=(not set)", "MLS_IT=(not set)",
                   "<speaker>-<chapter>.trans.txt", "train,dev,test}/transcripts.txt", "Set LIBRISPEECH in db.sh"):
        assert needle in result.stderr
    assert not (tmp_path / "data").exists()  # stopped before writing anything

    # a path one level too high: the message points at the folder inside
    result = run_data_sh(tmp_path, "--corpora", "librispeech", env={"LIBRISPEECH": str(fixture_root)})
    assert result.returncode == 2
    assert f"did you mean LIBRISPEECH={fixture_root / 'LibriSpeech'}?" in result.stderr

    # --corpora_root without the corpus: every other corpus fine (ACL 60/60 unzipped one folder down), the
    # missing ones named with every path looked at
    root = tmp_path / "partial"
    (root / "acl6060").mkdir(parents=True)
    (root / "acl6060" / "2").symlink_to(fixture_root / "2")
    result = run_data_sh(tmp_path, "--corpora_root", str(root), "--corpora", "acl6060 covost2 spokensquad")
    assert result.returncode == 2
    assert f"--corpora_root: ACL6060={root}/acl6060/2/acl_6060" in result.stderr
    assert (f"COVOST2 is not set and --corpora_root {root} holds none of: {root}/covost_v2.en_*.tsv, "
            f"{root}/*/covost_v2.en_*.tsv, {root}/*/*/covost_v2.en_*.tsv") in result.stderr
    assert f"COVOST2_CV_EN is not set and --corpora_root {root} holds none of: {root}/cv-corpus-*/en" in result.stderr
    assert f"SPOKEN_SQUAD is not set and --corpora_root {root} holds none of: {root}/Spoken-SQuAD*" in result.stderr
    assert "Set SPOKEN_SQUAD in db.sh" in result.stderr
    assert not (tmp_path / "data").exists()


def test_mls_opus_release_and_missing_audio_counted(fixture_root, tmp_path):
    """The opus release has .opus files in the same tree; a missing file is dropped and counted, not fatal."""
    src_dir = fixture_root / "mls_italian" / "train"
    opus_root = tmp_path / "mls_italian_opus"
    shutil.copytree(src_dir, opus_root / "train", ignore=shutil.ignore_patterns("*.flac"))
    flacs = sorted(src_dir.glob("audio/*/*/*.flac"))
    for flac in flacs[1:]:  # the first one stays missing
        audio, rate = sf.read(flac)
        target = opus_root / "train" / flac.relative_to(src_dir).with_suffix(".opus")
        sf.write(target, audio, rate, format="OGG", subtype="OPUS")
    (plan,) = [p for p in mls.plans({"it": str(opus_root)}, langs=("it",)) if p.name == "mls_it_train"]
    info = common.prepare_dir(tmp_path / "data", plan)
    assert "2 utterances" in info and "'audio missing or unreadable': 1" in info
    for path in table(tmp_path / "data/mls_it_train/wav.scp").values():
        assert path.endswith(".opus") and sf.info(path).format == "OGG"


def test_write_data_dir_is_atomic_and_checks_ids(tmp_path):
    wav = tmp_path / "a.wav"
    sf.write(wav, [0.0] * 1600, 16000)
    good = common.Utt("spk-1", "spk", str(wav), "hello", "en", "transcribe", transcript="hello")
    bad_cases = [
        [good, common.Utt("spk-1", "spk", str(wav), "again", "en", "transcribe")],  # repeated id
        [common.Utt("other-1", "spk", str(wav), "x", "en", "transcribe")],  # id does not start with speaker
        [common.Utt("spk-2", "spk", str(wav), "x", "fr", "transcribe")],  # unknown language
        [common.Utt("spk-3", "spk", str(wav), "x", "en", "answer")],  # answer without a question
        [common.Utt("spk-4", "spk", str(tmp_path / "missing.wav"), "x", "en", "transcribe")],  # nothing left
    ]
    for utts in bad_cases:
        with pytest.raises(common.CorpusError):
            common.write_data_dir(tmp_path / "data" / "d", utts, {"v": 1})
        assert not (tmp_path / "data" / "d").exists()
        assert [p.name for p in (tmp_path / "data").iterdir()] == [] if (tmp_path / "data").exists() else True
    common.write_data_dir(tmp_path / "data" / "d", [good], {"v": 1})
    assert table(tmp_path / "data/d/utt2dur") == {"spk-1": "0.100"}
    assert common.is_complete(tmp_path / "data" / "d", {"v": 1})
    assert not common.is_complete(tmp_path / "data" / "d", {"v": 2})


def test_check_only_lists_the_data_dirs_and_writes_nothing(fixture_root, tmp_path):
    paths = {"--librispeech": "LibriSpeech", "--mls_de": "mls_german_opus", "--mls_it": "mls_italian",
             "--commonvoice": "cv-corpus-17.0-2024-03-15", "--covost2": "covost2",
             "--covost2_cv_en": "cv-corpus-17.0-2024-03-15/en", "--fleurs": "fleurs", "--spoken_squad": "Spoken-SQuAD",
             "--acl6060": "2"}
    args = [x for flag, rel in paths.items() for x in (flag, str(fixture_root / rel))]
    result = subprocess.run([sys.executable, "-m", "espnet_speechlm_plugin.corpora.prepare", "--check_only", *args],
                            cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert sorted(result.stdout.split()) == EXPECTED_DIRS
    assert os.listdir(tmp_path) == []


def _release_tree(root: Path, fixture_root: Path, folders) -> Path:
    """A --corpora_root of symlinks: {folder under root: fixture folder}."""
    for name, target in folders.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).symlink_to(fixture_root / target)
    return root


def test_corpora_root_finds_release_folders_or_lists_the_candidates(fixture_root, tmp_path):
    """--corpora_root finds the folders real releases unpack to (versioned Common Voice, MLS opus, the hub cache's
    FLEURS snapshot, a GitHub zip of Spoken-SQuAD, ACL 60/60 one folder down); two candidates stop with both
    listed; with several Common Voice releases CoVoST 2's English clips come from release 4 (2019-12-10)."""
    from espnet_speechlm_plugin.corpora import locate

    root = _release_tree(tmp_path / "r", fixture_root, {
        "LibriSpeech": "LibriSpeech", "mls_italian_opus": "mls_italian", "mls_german": "mls_german_opus",
        "mls_german_opus": "mls_german_opus", "cv-corpus-17.0-2024-03-15": "cv-corpus-17.0-2024-03-15",
        "cv-corpus-4-2019-12-10/en": "cv-corpus-17.0-2024-03-15/en", "covost/v2": "covost2",
        "datasets--google--fleurs/snapshots/0a1b2c": "fleurs", "Spoken-SQuAD-master": "Spoken-SQuAD",
        "iwslt/2": "2"})
    found = {v: locate.locate(v, root) for v in ("LIBRISPEECH", "MLS_IT", "COVOST2", "COVOST2_CV_EN", "FLEURS",
                                                  "SPOKEN_SQUAD", "ACL6060")}
    assert found == {"LIBRISPEECH": f"{root}/LibriSpeech", "MLS_IT": f"{root}/mls_italian_opus",
                     "COVOST2": f"{root}/covost/v2",
                     "COVOST2_CV_EN": f"{root}/cv-corpus-4-2019-12-10/en",
                     "FLEURS": f"{root}/datasets--google--fleurs/snapshots/0a1b2c",
                     "SPOKEN_SQUAD": f"{root}/Spoken-SQuAD-master", "ACL6060": f"{root}/iwslt/2/acl_6060"}
    for variable, candidates in (("MLS_DE", ("mls_german", "mls_german_opus")),
                                 ("COMMONVOICE", ("cv-corpus-17.0-2024-03-15", "cv-corpus-4-2019-12-10"))):
        with pytest.raises(common.CorpusError) as err:
            locate.locate(variable, root)
        assert f"{variable} is not set and --corpora_root {root} holds 2 candidates:" in str(err.value)
        assert all(f"    {root}/{c}\n" in str(err.value) for c in candidates)
        assert f"Set {variable} in db.sh (or export it) to the one to use." in str(err.value)

    # through local/data.sh: a variable set in db.sh (exported here) wins over the search, which resolves the rest
    result = run_data_sh(tmp_path, "--corpora_root", str(root), "--corpora", "mls cv", "--extra_args",
                         "--check_only", env={"MLS_DE": str(root / "mls_german_opus")})
    assert result.returncode == 2, result.stderr
    assert f"--corpora_root: MLS_IT={root}/mls_italian_opus" in result.stderr and "MLS_DE=" not in result.stderr
    assert "COMMONVOICE is not set and --corpora_root" in result.stderr
    result = run_data_sh(tmp_path, "--corpora_root", str(root), "--corpora", "mls cv", "--extra_args", "--check_only",
                         env={"MLS_DE": str(root / "mls_german_opus"),
                              "COMMONVOICE": str(root / "cv-corpus-17.0-2024-03-15")})
    assert result.returncode == 0, result.stderr
    assert "mls_de_train" in result.stdout and "cv_en_train" in result.stdout
