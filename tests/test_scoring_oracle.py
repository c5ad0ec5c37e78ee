"""Our MCIF scoring against the official evaluation's own code (mcif-bench 1.0 from PyPI, with its pins jiwer 3.0.5
and whisper-normalizer 0.0.10), run in a separate process by tests/mcif_oracle.py.

Skipped unless MCIF_ORACLE_DIR names a folder made with (PyPI needed once; CI runs this through `make test-official`):

    pip install --no-deps --target DIR mcif-bench==1.0 jiwer==3.0.5 whisper-normalizer==0.0.10 mweralign==1.4.1
    MCIF_ORACLE_DIR=DIR pytest tests/test_scoring_oracle.py

The official segmenter runs the mwerSegmenter binary, which cannot be downloaded here; these tests give it an
executable of that name built on mweralign (Matt Post's C++ port of the same RWTH code). COMET and BERTScore models
are not run: the tests compare what the official code passes to them (triples, sentence lists, options).
`python tests/test_scoring_oracle.py --write-cases` regenerates tests/data/mwer_segmenter_cases.json (the cases CI
checks without the oracle) from the oracle.
"""
from __future__ import annotations

import json
import os
import random
import stat
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
import mcif_fixtures as fx  # noqa: E402

ORACLE_DIR = os.path.abspath(os.environ["MCIF_ORACLE_DIR"]) if os.environ.get("MCIF_ORACLE_DIR") else ""
CASES = Path(__file__).parent / "data" / "mwer_segmenter_cases.json"
_NEEDED = ("mcif/evaluation.py", "jiwer", "whisper_normalizer", "mweralign")
pytestmark = pytest.mark.skipif(
    not ORACLE_DIR or not all((Path(ORACLE_DIR) / p).exists() for p in _NEEDED),
    reason="official MCIF code not installed: set MCIF_ORACLE_DIR to a `pip install --no-deps --target DIR "
           "mcif-bench==1.0 jiwer==3.0.5 whisper-normalizer==0.0.10 mweralign==1.4.1` folder (needs network)",
)

FAKE_BINARY = """#!{python}
# mwerSegmenter's command line (-mref REF -hypfile HYP -usecase 1; writes ./__segments) on mweralign's C++ port.
import os, sys
sys.path.insert(0, {oracle!r})
import mweralign
args = sys.argv[1:]
ref = open(args[args.index("-mref") + 1], encoding="utf-8").read()
hyp = open(args[args.index("-hypfile") + 1], encoding="utf-8").read()
n = len(ref.split("\\n")) - 1
saved = os.dup(2)
os.dup2(os.open(os.devnull, os.O_WRONLY), 2)  # mweralign logs every call on stderr
out = mweralign.align_texts(ref, hyp)
os.dup2(saved, 2)
with open("__segments", "w", encoding="utf-8") as f:
    f.writelines(line + "\\n" for line in out.split("\\n")[:n])
"""


def run_oracle(request: dict, tmp: Path) -> dict:
    """Send `request` to tests/mcif_oracle.py with the official code; return its answer."""
    from espnet_speechlm_plugin.scoring.normalizer import official_normalizer

    bin_dir = tmp / "bin"
    bin_dir.mkdir(exist_ok=True)
    binary = bin_dir / "mwerSegmenter"
    binary.write_text(FAKE_BINARY.format(python=sys.executable, oracle=ORACLE_DIR), encoding="utf-8")
    binary.chmod(binary.stat().st_mode | stat.S_IXUSR)
    # OpenAI's english.json (what 0.0.10 downloads): the shipped copy with the correction we apply.
    table = tmp / "english.json"
    table.write_text(json.dumps(official_normalizer("en").standardize_spellings.mapping), encoding="utf-8")
    proc = subprocess.run([sys.executable, str(Path(__file__).parent / "mcif_oracle.py"), ORACLE_DIR, str(table),
                           str(bin_dir)], input=json.dumps(request), capture_output=True, text=True, timeout=900,
                          env=dict(os.environ, PYTHONPATH=""))
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout)


def tie_cases() -> list[tuple[str, list[str], bool]]:
    """Hand-written cases where several cuts cost the same, plus the official special cases."""
    return [
        ("a X d", ["a b", "c d"], False), ("a b X c d", ["a b", "c d"], False), ("X", ["a", "b"], False),
        ("", ["a", "b"], False), ("   ", ["a b", "c", "d"], False), ("c", ["a", "c"], False),
        ("x c", ["a", "c"], False), ("A b", ["a b", "c"], False), ("a a a", ["a", "a"], False),
        ("a b a b", ["a b", "a b", "a b"], False), ("b a", ["a", "b"], False), ("x y", ["a", "b", "c"], False),
        ("THE cat The dog", ["the cat", "the dog"], False), ("a\u00a0b c", ["a b", "c"], False),
        ("one two\nthree four", ["one two three", "four"], False), ("c d e", ["a b", "c d", "e"], False),
        ("他说你好我们走吧", ["他说你好。", "我们走吧。"], True), ("红猫跑", ["红色", "猫跑"], True),
        ("大家好！我喜\n欢考古学。", ["大家好！", "我喜欢考古学。"], True), ("", ["你好", "再见"], True),
        ("好 好", ["好", "好"], True), ("abc", ["ab", "c"], True), ("Hello 世界", ["hello", "世界"], True),
    ]


def random_cases(n: int, seed: int) -> list[tuple[str, list[str], bool]]:
    rng = random.Random(seed)
    cases = []
    for _ in range(n):
        char = rng.random() < 0.3
        vocab = "红色的猫狗跑。" if char else "abcAB"
        sep = "" if char else " "
        refs = [sep.join(rng.choice(vocab) for _ in range(rng.randint(1, 5))) for _ in range(rng.randint(1, 4))]
        hyp = sep.join(rng.choice(vocab + ("鸟" if char else "xy")) for _ in range(rng.randint(0, 9)))
        if rng.random() < 0.2:
            hyp += "\n" + sep.join(rng.choice(vocab) for _ in range(rng.randint(0, 3)))
        cases.append((hyp, refs, char))
    return cases


def test_resegmentation_equals_the_official_segmenter(tmp_path):
    from espnet_speechlm_plugin.scoring.resegment import resegment

    cases = tie_cases() + random_cases(300, seed=1)
    answer = run_oracle({"segment": cases}, tmp_path)
    differ = [(c, ours, theirs) for c, theirs in zip(cases, answer["segment"])
              if (ours := resegment(c[0], c[1], character_level=c[2])) != theirs]
    assert not differ, differ[:5]
    vendored = json.loads(CASES.read_text(encoding="utf-8"))["cases"]
    answer = run_oracle({"segment": [(c["prediction"], c["references"], c["character_level"]) for c in vendored]},
                        tmp_path)
    assert [c["pieces"] for c in vendored] == answer["segment"]  # the vendored expectations are the oracle's


def test_normaliser_equals_0_0_10(tmp_path):
    from espnet_speechlm_plugin.scoring.normalizer import normalize

    texts = [(t, "en") for t in list(fx.ASR_REFS.values()) + [o for o in fx.OUTPUTS["en"].values()] + [
        "Kinda, sorta, dunno, 'cause: I'm gonna say it's $20 million.", "The archaeology of colour centres",
        "Mr. Smith won't pay 1,000 dollars (maybe) [laughs] uh hmm", "Cause and effect", "two thousand and five"]]
    texts += [("Die Katze, läuft (schnell) im Park!", "de"), ("大家好！我喜欢考古学。", "zh")]
    answer = run_oracle({"normalize": texts}, tmp_path)
    assert [normalize(t, lang) for t, lang in texts] == answer["normalize"]


def test_official_scores_equal_on_the_fixture_test_set(tmp_path):
    from espnet_speechlm_plugin.scoring import mcif, official

    refs = {lang: fx.write_reference(tmp_path / f"ref.{lang}.xml", lang) for lang in ("en", "de", "zh")}
    out = fx.write_output(tmp_path / "out.xml")
    request = {"evaluate": [[str(out), str(refs[lang]), "short", lang] for lang in refs],
               "read_hypo": [[str(out), "short", lang] for lang in refs]}
    answer = run_oracle(request, tmp_path)
    for lang, theirs, hypo in zip(refs, answer["evaluate"], answer["read_hypo"]):
        hyps, ref = mcif.read_hypothesis(out, "short", lang), mcif.read_reference(refs[lang], "short", lang)
        assert hyps == hypo
        if lang == "en":
            assert official.asr_wer(hyps, ref, lang) == theirs["scores"]["ASR-WER"]
        else:
            assert official.translation_triples(hyps, ref, lang) == theirs["comet"]
        qa = ref["QA"]
        ((b_hyps, b_refs, kwargs),) = theirs["bertscore"]
        assert b_hyps == [hyps[s.sample_ids[0]] for s in qa.values()] and b_refs == [s.reference for s in qa.values()]
        assert kwargs == {"lang": lang, "rescale_with_baseline": True}
        assert theirs["scores"]["QA-A-BERTScore"] == 0.0 and theirs["scores"]["QA-NA-BERTScore"] == 1.0


def test_random_talks_wer_and_triples_equal(tmp_path):
    """Random multi-talk reference files (ids in lists, empty and mixed-case outputs, zh) against the official
    ASR-WER and COMET triples."""
    from espnet_speechlm_plugin.scoring import mcif, official

    rng = random.Random(7)
    words = "the cat kinda sorta dunno cause archaeology it's 20 percent Mr. Smith won't go gonna".split()
    zh = "我们喜欢考古学大家好这是什么东西。"
    request, expected = {"evaluate": []}, []
    for k in range(30):
        lang = ["en", "en", "de", "zh"][k % 4]
        talks, outputs, sid = {}, {}, 0
        for t in range(rng.randint(1, 4)):
            ids = [str(sid + i) for i in range(rng.randint(1, 4))]
            sid += len(ids)
            talks[str(t)] = ids
            for i in ids:
                if lang == "zh":
                    outputs[i] = "".join(rng.choice(zh) for _ in range(rng.randint(0, 8)))
                else:
                    outputs[i] = " ".join(rng.choice(words) for _ in range(rng.randint(0, 6)))
        refs_path, out_path = tmp_path / f"r{k}.xml", tmp_path / f"o{k}.xml"
        _write_random_reference(refs_path, lang, talks, rng, words, zh)
        mcif.write_xml(out_path, [("short", lang, sorted(outputs.items()) + [(str(sid), "answer")])])
        request["evaluate"].append([str(out_path), str(refs_path), "short", lang])
        expected.append((out_path, refs_path, lang))
    answer = run_oracle(request, tmp_path)
    for (out_path, refs_path, lang), theirs in zip(expected, answer["evaluate"]):
        hyps, ref = mcif.read_hypothesis(out_path, "short", lang), mcif.read_reference(refs_path, "short", lang)
        if lang == "en":
            assert abs(official.asr_wer(hyps, ref, lang) - theirs["scores"]["ASR-WER"]) <= 1e-9
        else:
            assert official.translation_triples(hyps, ref, lang) == theirs["comet"]


def _write_random_reference(path, lang, talks, rng, words, zh):
    import xml.etree.ElementTree as ET

    root = ET.Element("testset", attrib={"name": "random"})
    task = ET.SubElement(root, "task", attrib={"track": "short", "text_lang": lang})
    n_ids = sum(len(ids) for ids in talks.values())
    for talk, ids in talks.items():
        lines = rng.randint(1, 4)
        if lang == "zh":
            ref = ["".join(rng.choice(zh) for _ in range(rng.randint(1, 6))) for _ in range(lines)]
        else:
            ref = [" ".join(rng.choice(words) for _ in range(rng.randint(1, 5))) for _ in range(lines)]
        kind = "ASR" if lang == "en" else "TRANS"
        sample = ET.SubElement(task, "sample", attrib={"id": ",".join(ids), "iid": f"{kind}_{talk}", "task": kind})
        ET.SubElement(sample, "reference").text = " ".join(ref) if kind == "ASR" else "\n".join(ref)
        if kind == "TRANS":
            ET.SubElement(ET.SubElement(sample, "metadata"), "transcript").text = "\n".join(
                f"source {i}" for i in range(lines))
    qa = ET.SubElement(task, "sample", attrib={"id": str(n_ids), "iid": "QA_1", "task": "QA", "qa_type": "A",
                                               "qa_origin": "Transcript"})
    ET.SubElement(qa, "reference").text = "answer"
    ET.ElementTree(root).write(path, encoding="utf-8", xml_declaration=True)


def test_our_export_reads_unchanged_in_the_official_reader(tmp_path):
    from espnet_speechlm_plugin.scoring import mcif

    texts = {"0": "a & b < c > d \"quoted\" 'single'", "1": "  padded  ", "2": "", "3": "红色的猫 ünïcödé",
             "4": "tab\there", "5": "<sample id='9'>not markup</sample>"}
    path = tmp_path / "export.xml"
    mcif.write_xml(path, [("short", "en", list(texts.items())), ("long", "de", [("0", "Satz")])])
    answer = run_oracle({"read_hypo": [[str(path), "short", "en"], [str(path), "long", "de"]]}, tmp_path)
    assert answer["read_hypo"] == [{k: v.strip() for k, v in texts.items()}, {"0": "Satz"}]


def write_cases() -> None:
    """Regenerate tests/data/mwer_segmenter_cases.json from the oracle (tie cases + seeded random cases)."""
    import tempfile

    cases = tie_cases() + random_cases(60, seed=3)
    answer = run_oracle({"segment": cases}, Path(tempfile.mkdtemp()))
    CASES.parent.mkdir(exist_ok=True)
    doc = {"about": "mwerSegmenter's output through the official MCIF MwerSegmenter wrapper (mcif-bench 1.0), the "
                    "binary played by mweralign 1.4.1; written by `python tests/test_scoring_oracle.py "
                    "--write-cases`",
           "cases": [{"prediction": p, "references": r, "character_level": c, "pieces": pieces}
                     for (p, r, c), pieces in zip(cases, answer["segment"])]}
    cases = ",\n".join("  " + json.dumps(c, ensure_ascii=False) for c in doc["cases"])  # one case per line
    CASES.write_text(f'{{"about": {json.dumps(doc["about"])},\n "cases": [\n{cases}\n ]}}\n', encoding="utf-8")


if __name__ == "__main__":
    if sys.argv[1:] == ["--write-cases"]:
        write_cases()
