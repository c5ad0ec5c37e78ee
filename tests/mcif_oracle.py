"""Runs the official MCIF evaluation's own code on requests from tests/test_scoring_oracle.py (a separate process,
because it needs the official pins jiwer 3.0.5 and whisper-normalizer 0.0.10 in place of ours).

    python tests/mcif_oracle.py ORACLE_DIR ENGLISH_JSON BIN_DIR < request.json > answer.json

ORACLE_DIR: `pip install --no-deps --target ORACLE_DIR mcif-bench==1.0 jiwer==3.0.5 whisper-normalizer==0.0.10
mweralign==1.4.1` (put first on sys.path). ENGLISH_JSON: OpenAI's spelling table, which whisper-normalizer 0.0.10
downloads when its English normaliser is built; it is served from this file instead. BIN_DIR: holds the
`mwerSegmenter` executable the official MwerSegmenter runs (tests write one on mweralign, a C++ port of RWTH's
code, as no binary can be downloaded here).

Request: {"normalize": [[text, lang], ...], "segment": [[prediction, [reference, ...], character_level], ...],
"evaluate": [[hyp_xml, ref_xml, track, lang], ...], "read_hypo": [[hyp_xml, track, lang], ...]}. Answer: the
official outputs of each: normalised strings, MwerSegmenter pieces, read_hypo's dicts, and for evaluate the scores
of `mcif.evaluation.main` (breakdown on) with what it passed to COMET (the triples) and to bert_score (hypotheses,
references, keyword arguments) instead of running those models.
"""
import io
import json
import os
import sys
import tempfile


def main() -> None:
    oracle_dir, english_json, bin_dir = sys.argv[1:4]
    sys.path.insert(0, oracle_dir)
    os.environ["PATH"] = bin_dir + os.pathsep + os.environ.get("PATH", "")
    import urllib.request

    with open(english_json, "rb") as f:
        table = f.read()
    urllib.request.urlopen = lambda url, *a, **k: io.BytesIO(table)  # noqa: E731  (0.0.10 fetches english.json)

    import importlib.metadata

    import jiwer
    import torch
    import whisper_normalizer
    from mcif import evaluation as official

    for module, name, version in ((jiwer, "jiwer", "3.0.5"), (whisper_normalizer, "whisper-normalizer", "0.0.10")):
        assert module.__file__.startswith(oracle_dir) and importlib.metadata.version(name) == version, module
    request = json.load(sys.stdin)
    answer = {"normalize": [], "segment": [], "evaluate": []}
    english, basic = official.english.EnglishTextNormalizer(), official.basic.BasicTextNormalizer()
    for text, lang in request.get("normalize", []):
        answer["normalize"].append((english if lang == "en" else basic)(text))

    os.chdir(tempfile.mkdtemp())  # the official segmenter writes ./__segments
    for prediction, references, character_level in request.get("segment", []):
        answer["segment"].append(official.MwerSegmenter(character_level=character_level)(prediction, references))
    answer["read_hypo"] = [official.read_hypo(p, track, lang) for p, track, lang in request.get("read_hypo", [])]

    calls = {}

    def fake_comet(data):
        calls["comet"] = data
        return 0.0

    def fake_bert_score(hypos, refs, **kwargs):
        calls.setdefault("bertscore", []).append([list(hypos), list(refs), kwargs])
        zeros = torch.arange(len(hypos), dtype=torch.float32)  # distinct values: checks the breakdown's indices
        return zeros, zeros, zeros

    official.comet_score = fake_comet
    official.bert_score.score = fake_bert_score
    for hyp, ref, track, lang in request.get("evaluate", []):
        calls.clear()
        try:
            scores = official.main(hyp, ref, track, lang, None, True)
            answer["evaluate"].append({"scores": scores, "comet": calls.get("comet"),
                                       "bertscore": calls.get("bertscore")})
        except Exception as e:  # noqa: BLE001  (the official CLI reports any exception as state ERROR)
            answer["evaluate"].append({"error": f"{type(e).__name__}: {e}"})
    json.dump(answer, sys.stdout, ensure_ascii=False)


if __name__ == "__main__":
    main()
