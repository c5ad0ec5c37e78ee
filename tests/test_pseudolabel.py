"""Pseudo-labelling end to end on tiny models built here: a Marian (Opus-MT style, en-de only), an M2M100
(forced BOS language token), a Qwen2 causal LM (prompted) and a CometKiwi-style QE model on a tiny XLM-R.

Checked: the CLI's data dir equals what the cache and a direct COMET call say it should; selection and threshold
on known scores (ties, all below threshold, ensemble vs each model alone); an interrupted run resumes to identical
outputs without recomputing cached batches; bad inputs are skipped and counted; unresolvable models fail clearly.
"""
import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from conftest import TINY_TEXTS
from tiny_comet import build_tiny_comet, train_sentencepiece

from espnet_speechlm_plugin.bin import pseudolabel as cli
from espnet_speechlm_plugin.bin.make_standins import build_tiny_m2m100
from espnet_speechlm_plugin.data.validate import validate_data_dir
from espnet_speechlm_plugin.pseudolabel import mt as mt_mod
from espnet_speechlm_plugin.pseudolabel import qe as qe_mod
from espnet_speechlm_plugin.pseudolabel.cache import JsonlCache
from espnet_speechlm_plugin.pseudolabel.mt import MTConfigError, Route, load_mt_config
from espnet_speechlm_plugin.pseudolabel.select import Candidate, LanguageStats, select_best
from espnet_speechlm_plugin.pseudolabel.source import check_source

GOOD = [  # English segments that are translated
    ("spk1-a", "the red cat sees two dogs in the garden"),
    ("spk1-b", "a small green bird sleeps on the old bridge"),
    ("spk1-c", "what colour is the cat"),
    ("spk2-d", "Tom bought apples yesterday"),
    ("spk3-a", "we walk to the park"),
    ("spk3-b", "is the bird green or red"),
    ("spk3-d", "the weather is nice today"),
]
BAD = {  # utt: (transcript, expected reason); spk3-c is missing from wav.scp
    "spk1-d": ("  ", "empty"),
    "spk2-a": ("die rote Katze sieht zwei Hunde im Garten", "not_english"),
    "spk2-b": ("红色的猫在花园里看见两只狗", "not_english"),
    "spk2-c": ("the weather is nice today and we walk to the park " * 3, "too_long"),
    "spk3-c": ("the old bridge is in the garden", "no_audio"),
}
LANGS = ["de", "zh"]
BATCH, QE_BATCH = 2, 1


# ---------------------------------------------------------------- tiny models and data


def _spm_vocab(out: Path, name: str, specials: list[str]) -> dict:
    import sentencepiece as spm

    proto = train_sentencepiece(200)
    (out / name).write_bytes(proto)
    proc = spm.SentencePieceProcessor(model_proto=proto)
    vocab = {t: i for i, t in enumerate(specials)}
    for i in range(proc.get_piece_size()):
        vocab.setdefault(proc.id_to_piece(i), len(vocab))
    return vocab


def build_marian(out: Path, seed: int) -> Path:
    """A tiny MarianMTModel + MarianTokenizer (source.spm, target.spm, vocab.json: the Opus-MT layout)."""
    from transformers import MarianConfig, MarianMTModel, MarianTokenizer

    out.mkdir(parents=True)
    vocab = _spm_vocab(out, "source.spm", ["</s>", "<unk>"])
    vocab["<pad>"] = len(vocab)
    shutil.copy(out / "source.spm", out / "target.spm")
    (out / "vocab.json").write_text(json.dumps(vocab))
    tok = MarianTokenizer(str(out / "source.spm"), str(out / "target.spm"), str(out / "vocab.json"))
    tok.save_pretrained(out)
    torch.manual_seed(seed)
    config = MarianConfig(vocab_size=len(vocab), d_model=32, encoder_layers=1, decoder_layers=1,
                          encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=64, decoder_ffn_dim=64,
                          max_position_embeddings=128, pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id,
                          decoder_start_token_id=tok.pad_token_id, forced_eos_token_id=tok.eos_token_id)
    MarianMTModel(config).save_pretrained(out)
    return out


def build_causal(out: Path, seed: int) -> Path:
    """A tiny Qwen2 causal LM with a byte-level BPE tokenizer (the project's own tiny-model builders)."""
    from espnet_speechlm_plugin.bin.make_tiny_init import make_decoder, train_tokenizer

    tok = train_tokenizer(TINY_TEXTS * 4, str(out), 400)
    make_decoder(str(out), len(tok), hidden=32, layers=1, heads=2, kv_heads=1, seed=seed)
    return out


def write_yaml(path: Path, models: dict) -> Path:
    path.write_text(f"""# tiny test ensemble
models:
  - tag: opus
    target: none
    generate: {{max_new_tokens: 8}}
    langs:
      de: {{name_or_path: {models['marian']}}}
  - tag: m2m
    name_or_path: {models['m2m']}
    src_lang: en
    generate: {{max_new_tokens: 8, num_beams: 2}}
    langs: {{de: de, zh: zh}}
  - tag: qwen
    type: causal
    name_or_path: {models['qwen']}
    generate: {{max_new_tokens: 8}}
    langs: {{de: de, zh: zh}}
""")
    return path


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    root = tmp_path_factory.mktemp("pl")
    models = {"marian": build_marian(root / "opus-de", 1), "m2m": build_tiny_m2m100(root / "m2m", seed=2),
              "qwen": build_causal(root / "qwen", 3)}
    data = root / "data"
    data.mkdir()
    rows = sorted(GOOD + [(u, t) for u, (t, _) in BAD.items()])
    (data / "text").write_text("".join(f"{u} {t}\n" for u, t in rows), encoding="utf-8")
    (data / "wav.scp").write_text("".join(f"{u} /corpus/{u}.wav\n" for u, _ in rows if u != "spk3-c"))
    (data / "utt2spk").write_text("".join(f"{u} {u.split('-')[0]}\n" for u, _ in rows))
    (data / "utt2dur").write_text("".join(f"{u} {1 + i / 10:.2f}\n" for i, (u, _) in enumerate(rows)))
    return SimpleNamespace(root=root, data=data, models=models, yaml=write_yaml(root / "mt.yaml", models),
                           qe=build_tiny_comet(root / "kiwi", "qe"))


def run_cli(env, out, work, threshold, *extra):
    return cli.main(["--data", str(env.data), "--tgt_langs", ",".join(LANGS), "--mt_models", str(env.yaml),
                     "--qe_model", str(env.qe), "--threshold", str(threshold), "--out", str(out),
                     "--work_dir", str(work), "--batch_size", str(BATCH), "--qe_batch_size", str(QE_BATCH),
                     "--max_src_chars", "120", "--no_progress", *extra])


def read_kaldi(path: Path) -> dict:
    return dict(line.split(" ", 1) for line in path.read_text(encoding="utf-8").splitlines())


@pytest.fixture(scope="module")
def clean(env):
    """An uninterrupted run: first with threshold 0 (keeps everything translated), then, from the same cache, with
    a threshold half-way between two middle best scores so that some segments are kept and some are not."""
    work = env.root / "work_clean"
    assert run_cli(env, env.root / "out_all", work, 0.0) == 0
    best = sorted({float(v.split()[1]) for v in read_kaldi(env.root / "out_all" / "utt2mt").values()})
    mid = len(best) // 2
    threshold = round((best[mid - 1] + best[mid]) / 2, 6)
    assert best[mid - 1] < threshold < best[mid]
    out = env.root / "out_clean"
    assert run_cli(env, out, work, threshold) == 0
    return SimpleNamespace(out=out, work=work, threshold=threshold, all=env.root / "out_all")


def output_files(out: Path) -> dict:
    """Every output file's content; the report's own out path is blanked so that two runs can be compared."""
    files = {p.name: p.read_bytes() for p in sorted(out.iterdir())}
    for name in ("report.md", "report.json"):
        files[name] = files[name].replace(str(out).encode(), b"OUT")
    return files


# ---------------------------------------------------------------- end to end


def test_end_to_end_matches_cache_and_direct_comet(env, clean):
    from comet import load_from_checkpoint

    out = clean.out
    names = {p.name for p in out.iterdir()}
    assert names == {"wav.scp", "utt2spk", "spk2utt", "utt2dur", "text", "prompt", "transcript", "utt2mt",
                     "report.md", "report.json", "scores.png"}
    assert not list(out.parent.glob(".out_clean*"))  # no temporary dir left behind
    text, prompt, wav, utt2mt = (read_kaldi(out / n) for n in ("text", "prompt", "wav.scp", "utt2mt"))
    ids = [line.split(" ", 1)[0] for line in (out / "text").read_text().splitlines()]
    assert ids == sorted(ids) and set(ids) == set(prompt) == set(wav) == set(utt2mt)
    # the project's own data-dir check passes (audio not probed: the test's wav.scp points nowhere)
    check = validate_data_dir(str(out), train=True, languages=LANGS, audio=False)
    assert check.ok, check.errors
    src_dur = read_kaldi(env.data / "utt2dur")
    assert read_kaldi(out / "utt2dur") == {u: src_dur[u.rsplit("-", 1)[0]] for u in ids}
    spk2utt = read_kaldi(out / "spk2utt")
    assert sorted(x for v in spk2utt.values() for x in v.split()) == ids
    assert all(u.startswith(spk + "-") for spk, v in spk2utt.items() for u in v.split())
    report = json.loads((out / "report.json").read_text())
    src = dict(GOOD)

    # Recompute the selection from the cached hypotheses and a direct COMET call on every (source, hypothesis).
    routes = load_mt_config(str(env.yaml), LANGS)
    pairs, where = [], []
    hyps = {}
    for lang in LANGS:
        for r in routes[lang]:
            d = next((clean.work / "cache" / lang).glob(f"{r.tag}-*"))
            hyps[lang, r.tag] = {u: rec["hyp"] for u, rec in JsonlCache(d, "hyp").load().items()}
            assert set(hyps[lang, r.tag]) == set(src)  # every good segment translated, no bad one
            for u in sorted(src):
                if hyps[lang, r.tag][u].strip():
                    pairs.append({"src": src[u], "mt": hyps[lang, r.tag][u]})
                    where.append((lang, r.tag, u))
    model = load_from_checkpoint(str(env.qe))
    direct = model.predict(pairs, batch_size=8, gpus=0, progress_bar=False).scores
    score = {w: s for w, s in zip(where, direct)}
    n_kept = 0
    for lang, lang_report in zip(LANGS, report["languages"]):
        tags = [r.tag for r in routes[lang]]
        assert lang_report["models"] == tags
        kept_alone = {t: 0 for t in tags}
        for u in sorted(src):
            cands = [(score.get((lang, t, u)), -i, t) for i, t in enumerate(tags) if (lang, t, u) in score]
            best_score, _, best_tag = max(cands)
            for s, _, t in cands:
                kept_alone[t] += s >= clean.threshold
            new = f"{u}-{lang}"
            if best_score >= clean.threshold:
                n_kept += 1
                assert text[new] == " ".join(hyps[lang, best_tag][u].split())
                assert prompt[new] == f"{lang} translate" and wav[new] == f"/corpus/{u}.wav"
                model_tag, s = utt2mt[new].split()
                assert model_tag == best_tag and float(s) == pytest.approx(best_score, abs=1e-4)
            else:
                assert new not in text
        assert lang_report["kept_alone"] == kept_alone
        # counts add up exactly
        assert lang_report["segments_in"] == len(GOOD) + len(BAD)
        assert lang_report["segments_in"] == sum(lang_report["skipped"].values()) + lang_report["kept"] + \
            lang_report["not_kept"]
        assert sum(lang_report["wins"].values()) == lang_report["kept"]
        assert lang_report["kept"] >= max(kept_alone.values())
    assert n_kept == len(text) == report["kept_total"] and 0 < n_kept < 2 * len(GOOD)
    # the per-language ensembles: Opus-MT only translates into German
    assert report["languages"][0]["models"] == ["opus", "m2m", "qwen"]
    assert report["languages"][1]["models"] == ["m2m", "qwen"]
    md = (out / "report.md").read_text()
    assert "## Kept if each model were used alone" in md and "![COMETKiwi score histogram](scores.png)" in md
    assert (out / "scores.png").read_bytes()[:4] == b"\x89PNG"
    # M2M100's forced language token is a special token: never part of the text
    assert not any("__zh__" in h or "__de__" in h for (lang, t), hs in hyps.items() for h in hs.values())


def test_bad_inputs_skipped_and_counted(env, clean):
    report = json.loads((clean.out / "report.json").read_text())
    expected = {}
    for _, reason in BAD.values():
        expected[reason] = expected.get(reason, 0) + 1
    assert report["skipped"] == expected
    for lang_report in report["languages"]:
        assert lang_report["skipped"] == expected
    kept_utts = {u.rsplit("-", 1)[0] for u in read_kaldi(clean.all / "text")}
    assert kept_utts == {u for u, _ in GOOD}  # threshold 0: every good segment, no bad one
    md = (clean.out / "report.md").read_text()
    assert "| not English (script check / language identification) | 2 | `spk2-a`, `spk2-b` |" in md


def test_check_source_rules():
    assert check_source("", 100) == check_source(" ... 42 ", 100) == "empty"
    assert check_source("a" * 101, 100) == "too_long"
    for text in ["Il gatto rosso vede due cani nel giardino", "Er ist sehr müde und geht nach Hause",
                 "Le chat est sur la table avec une souris", "Кошка спит на диване", "猫在睡觉"]:
        assert check_source(text, 100) == "not_english", text
    for text in ["Tom bought apples yesterday", "Die Hard is a film about a building",
                 "He ordered a latte at the café in Berlin", "Come in and sit down please"]:
        assert check_source(text, 100) is None, text


# ---------------------------------------------------------------- resume


def test_interrupted_run_resumes_to_identical_outputs(env, clean, monkeypatch):
    work, out = env.root / "work_resume", env.root / "out_resume"
    calls = {"mt": [], "qe": 0, "load": 0}
    translate, score, init = mt_mod.Translator.translate, qe_mod.QEScorer.score, mt_mod.Translator.__init__
    fail = {"mt_after": 3, "qe_after": None}

    def counting_translate(self, srcs, route, seed=0):
        if fail["mt_after"] is not None and len(calls["mt"]) >= fail["mt_after"]:
            raise KeyboardInterrupt("simulated interruption during MT")
        calls["mt"].append((route.lang, route.tag, tuple(srcs)))
        return translate(self, srcs, route, seed)

    def counting_score(self, pairs):
        if fail["qe_after"] is not None and calls["qe"] >= fail["qe_after"]:
            raise KeyboardInterrupt("simulated interruption during QE")
        calls["qe"] += 1
        return score(self, pairs)

    def counting_init(self, *args, **kwargs):
        calls["load"] += 1
        init(self, *args, **kwargs)

    monkeypatch.setattr(mt_mod.Translator, "translate", counting_translate)
    monkeypatch.setattr(qe_mod.QEScorer, "score", counting_score)
    monkeypatch.setattr(mt_mod.Translator, "__init__", counting_init)

    # 1: killed during MT after 3 batches: they are cached, nothing is written to --out
    with pytest.raises(KeyboardInterrupt):
        run_cli(env, out, work, clean.threshold)
    assert not out.exists() and not list(env.root.glob(".out_resume*"))
    cached = sum(len(JsonlCache(d, "hyp").load()) for d in (work / "cache").glob("*/*"))
    assert cached == 3 * BATCH
    first = list(calls["mt"])

    # 2: MT finishes without redoing those batches, then killed during QE after one chunk
    calls["mt"].clear()
    fail.update(mt_after=None, qe_after=1)
    with pytest.raises(KeyboardInterrupt):
        run_cli(env, out, work, clean.threshold)
    n_batches = sum(-(-len(GOOD) // BATCH) for lang in LANGS for _ in load_mt_config(str(env.yaml), [lang])[lang])
    assert len(calls["mt"]) == n_batches - 3 and not set(first) & set(calls["mt"])
    assert not out.exists()

    # 3: QE finishes; outputs identical to the uninterrupted run's
    calls.update(mt=[], qe=0, load=0)
    fail.update(qe_after=None)
    assert run_cli(env, out, work, clean.threshold) == 0
    assert calls["mt"] == [] and calls["load"] == 0 and calls["qe"] >= 1
    assert output_files(out) == output_files(clean.out)

    # 4: a rerun is a no-op: no model loaded, nothing translated or scored, same files
    calls.update(qe=0)
    assert run_cli(env, out, work, clean.threshold) == 0
    assert calls == {"mt": [], "qe": 0, "load": 0}
    assert output_files(out) == output_files(clean.out)


def test_cache_ignores_and_cuts_a_partial_line(tmp_path):
    cache = JsonlCache(tmp_path, "hyp")
    cache.append("j0-1", [{"utt": "a", "key": "k", "hyp": "x"}, {"utt": "b", "key": "k", "hyp": "y"}])
    path = tmp_path / "hyp.j0-1.jsonl"
    with open(path, "a") as f:
        f.write('{"utt": "c", "key": "k", "hy')  # a crash in the middle of a write
    assert set(cache.load()) == {"a", "b"}
    cache.append("j0-1", [{"utt": "c", "key": "k", "hyp": "z"}])
    assert cache.load()["c"]["hyp"] == "z" and path.read_text().count("\n") == 3
    with open(path, "a") as f:
        f.write("garbage\n")
    with pytest.raises(ValueError, match="line 4: not a JSON record"):
        cache.load()


def test_jobs_merge_without_workers(env, clean, monkeypatch):
    """--nj 2 --job J fills the cache shard by shard; the final run only merges (no worker is spawned)."""
    work, out = env.root / "work_jobs", env.root / "out_jobs"
    for job in (1, 2):
        assert run_cli(env, out, work, clean.threshold, "--nj", "2", "--job", str(job)) == 0
        assert not out.exists()
    monkeypatch.setattr("multiprocessing.get_context", lambda *a: pytest.fail("a worker was started"))
    assert run_cli(env, out, work, clean.threshold, "--nj", "2") == 0
    # other shards make other batches; tiny float differences aside the result is the same
    assert read_kaldi(out / "text") == read_kaldi(clean.out / "text")
    for u, v in read_kaldi(out / "utt2mt").items():
        tag, s = read_kaldi(clean.out / "utt2mt")[u].split()
        assert v.split()[0] == tag and float(v.split()[1]) == pytest.approx(float(s), abs=1e-4)


# ---------------------------------------------------------------- selection on known scores


def test_select_best_ties_threshold_and_empty():
    a, b, c = Candidate("a", "x", 0.8), Candidate("b", "y", 0.8), Candidate("c", "", None)
    assert select_best([a, b, c], 0.8).best is a and select_best([a, b, c], 0.8).kept  # tie: first listed; >= kept
    assert select_best([b, a], 0.8).best is b
    assert not select_best([a, b], 0.81).kept and select_best([a, b], 0.81).best is a  # all below threshold
    assert select_best([c], 0.0).best is None and not select_best([c], 0.0).kept  # empty hypotheses never win


def test_ensemble_and_single_model_counts_add_up():
    scores = {  # segment: (model a, model b, model c); threshold 0.5
        "s1": (0.9, 0.2, 0.1),  # only a
        "s2": (0.6, 0.7, 0.1),  # a and b, b wins
        "s3": (0.1, 0.2, 0.3),  # none
        "s4": (0.5, 0.5, 0.5),  # three-way tie at the threshold: a wins, all kept alone
        "s5": (None, 0.4, 0.55),  # a empty, c wins
        "s6": (None, None, None),  # all empty
    }
    st = LanguageStats("de", ["a", "b", "c"])
    st.add_skipped("empty")
    st.add_skipped("too_long")
    for seg in sorted(scores):
        st.add([Candidate(m, "" if s is None else f"{seg}-{m}", s) for m, s in zip("abc", scores[seg])], 0.5)
    st.check()
    j = st.to_json()
    assert (j["segments_in"], j["kept"], j["not_kept"], j["translated"]) == (8, 4, 2, 6)
    assert j["kept_alone"] == {"a": 3, "b": 2, "c": 2}
    assert j["wins"] == {"a": 2, "b": 1, "c": 1}
    assert j["empty_hyps"] == {"a": 2, "b": 1, "c": 1}
    assert j["skipped"] == {"empty": 1, "too_long": 1}
    assert st.kept > max(j["kept_alone"].values())  # the ensemble keeps more than any single model


# ---------------------------------------------------------------- configuration and errors


def test_mt_config_errors_and_routes(tmp_path):
    def conf(text):
        path = tmp_path / "m.yaml"
        path.write_text(text)
        return str(path)

    with pytest.raises(MTConfigError, match=r"no model translates into it"):
        load_mt_config(conf("models:\n  - {tag: a, name_or_path: x, langs: {de: deu_Latn}}\n"), ["de", "it"])
    with pytest.raises(MTConfigError, match=r"model 1 \('a'\): unknown keys \['lang'\]"):
        load_mt_config(conf("models:\n  - {tag: a, name_or_path: x, lang: {de: de}}\n"), ["de"])
    with pytest.raises(MTConfigError, match="does not fit type 'causal'"):
        load_mt_config(conf("models:\n  - {tag: a, name_or_path: x, type: causal, target: forced_bos, "
                            "langs: {de: de}}\n"), ["de"])
    with pytest.raises(MTConfigError, match="tag repeats"):
        load_mt_config(conf("models:\n  - {tag: a, name_or_path: x, langs: {de: de}}\n"
                            "  - {tag: a, name_or_path: y, langs: {de: de}}\n"), ["de"])
    # the shipped ensemble: four models per language, each language's codes as its toolkit wants them
    routes = load_mt_config(str(Path(__file__).parents[1] / "conf/pseudolabel/mt_models.yaml"), ["de", "it", "zh"])
    zh = {r.tag: r for r in routes["zh"]}
    assert [r.tag for r in routes["de"]] == ["nllb-200-1.3b", "m2m100-1.2b", "madlad400-3b", "opus-mt"]
    assert zh["nllb-200-1.3b"].code == "zho_Hans" and zh["m2m100-1.2b"].code == "zh"
    assert zh["madlad400-3b"].source_text("Hi.") == "<2zh> Hi."
    assert zh["opus-mt"].source_text("Hi.") == ">>cmn_Hans<< Hi."
    assert {r.tag: r.name_or_path for r in routes["it"]}["opus-mt"] == "Helsinki-NLP/opus-mt-en-it"
    causal = Route(tag="lm", lang="de", name_or_path="x", type="causal", target="prompt", code="de",
                   prompt="To {lang_name} ({code}): {src}\n")
    assert causal.source_text("a {b} c") == "To German (de): a {b} c\n"


def test_unresolvable_models_say_how_to_use_a_local_copy(env, tmp_path, capsys):
    bad = tmp_path / "mt.yaml"
    bad.write_text("models:\n  - tag: nllb\n    name_or_path: example-org/not-a-cached-model\n"
                   "    src_lang: eng_Latn\n    langs: {de: deu_Latn, zh: zho_Hans}\n")
    def args(mt_models, qe_model):
        return ["--data", str(env.data), "--tgt_langs", "de,zh", "--mt_models", str(mt_models), "--qe_model",
                str(qe_model), "--out", str(tmp_path / "o"), "--work_dir", str(tmp_path / "w"), "--no_progress"]

    assert cli.main(args(bad, env.qe)) == 1
    err = capsys.readouterr().err
    assert f"{bad}, model 'nllb'" in err and "example-org/not-a-cached-model" in err
    assert "huggingface-cli download example-org/not-a-cached-model --local-dir DIR" in err
    assert f"set name_or_path to DIR in {bad}" in err
    assert not (tmp_path / "o").exists()
    # a local directory that holds no saved model
    (tmp_path / "empty").mkdir()
    bad.write_text(f"models:\n  - {{tag: opus, target: none, langs: {{de: {{name_or_path: {tmp_path / 'empty'}}}, "
                   f"zh: {{name_or_path: {tmp_path / 'empty'}}}}}}}\n")
    assert cli.main(args(bad, env.qe)) == 1
    assert "is a directory but not a saved HF model" in capsys.readouterr().err
    # the QE model is checked before any MT work
    assert cli.main(args(env.yaml, "example-org/not-a-kiwi")) == 1
    err = capsys.readouterr().err
    assert "--qe_model example-org/not-a-kiwi" in err and "download_model('example-org/not-a-kiwi')" in err
    # a reference-based COMET model cannot do QE
    with pytest.raises(qe_mod.QEModelError, match="reference-based"):
        qe_mod.QEScorer(str(build_tiny_comet(tmp_path / "ref", "ref")))
    # a language code the tokenizer does not know is named
    route = Route(tag="m2m", lang="de", name_or_path=str(env.models["m2m"]), code="klingon")
    with pytest.raises(MTConfigError, match="language code 'klingon'"):
        mt_mod.Translator(route).translate(["the cat"], route)


def test_paper_recipe_stage1_option_adds_pseudolabelled_translations(env, tmp_path):
    """egs2/iwslt25_if: `local/data.sh --pseudolabel true` translates data/cv_en_train into data/cv_en_train_pl, and
    `run.sh --pseudolabel true` trains stage 2 on a mix that names it."""
    import os
    import subprocess
    import sys

    from espnet_speechlm_plugin.bin import make_fixture_corpora
    from espnet_speechlm_plugin.data.mix import load_mix_config

    repo = Path(__file__).resolve().parents[1]
    recipe = repo / "egs2" / "iwslt25_if" / "s2t1"
    make_fixture_corpora.main([str(tmp_path / "corpora")])
    work = tmp_path / "recipe"
    work.mkdir()
    env_vars = dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    subprocess.run([str(recipe / "local" / "data.sh"), "--corpora", "cv", "--corpora_root", str(tmp_path / "corpora"),
                    "--nj", "1", "--pseudolabel", "true", "--pl_mt_models", str(env.yaml), "--pl_qe_model",
                    str(env.qe), "--pl_tgt_langs", "de,zh", "--pl_threshold", "0.0", "--pl_args", "--no_progress"],
                   cwd=work, env=env_vars, check=True, capture_output=True)
    src = (work / "data" / "cv_en_train" / "text").read_text(encoding="utf-8").splitlines()
    out = work / "data" / "cv_en_train_pl"
    prompts = (out / "prompt").read_text(encoding="utf-8").splitlines()
    assert len(prompts) == 2 * len(src)  # threshold 0: every English segment kept in both languages
    assert {line.split(" ", 1)[1] for line in prompts} == {"de translate", "zh translate"}
    report = validate_data_dir(str(out), train=True)
    assert report.ok, report.errors
    mix = load_mix_config(recipe / "conf" / "train_mix_stage2_pl.yaml")
    assert "data/cv_en_train_pl" in {e.dir for e in mix.train}
    run_sh = (recipe / "run.sh").read_text()
    assert "\npseudolabel=false " in run_sh and "train_mix_stage2_pl.yaml" in run_sh  # an option of run.sh


@pytest.mark.slow
def test_paper_recipe_pseudolabels_in_shards_on_slurm(env, tmp_path):
    """`local/data.sh --pseudolabel true --nj 2 --cmd_backend slurm`: each shard is one srun job (the stand-in srun
    really runs it), then a local run merges; the result is the one of `--nj 2` run in one process."""
    import os
    import subprocess
    import sys

    from espnet_speechlm_plugin.bin import make_fixture_corpora

    repo = Path(__file__).resolve().parents[1]
    recipe = repo / "egs2" / "iwslt25_if" / "s2t1"
    make_fixture_corpora.main([str(tmp_path / "corpora")])
    work = tmp_path / "recipe"
    work.mkdir()
    path = os.pathsep.join([str(Path(__file__).parent / "slurm_standin"), str(Path(sys.executable).parent),
                            os.environ["PATH"]])
    env_vars = dict(os.environ, PATH=path, SRUN_LOG=str(tmp_path / "srun.log"), cmd_backend="slurm",
                    slurm_opts="--partition cpu")
    subprocess.run([str(recipe / "local" / "data.sh"), "--corpora", "cv", "--corpora_root", str(tmp_path / "corpora"),
                    "--nj", "2", "--pseudolabel", "true", "--pl_gpu", "0", "--pl_mt_models", str(env.yaml),
                    "--pl_qe_model", str(env.qe), "--pl_tgt_langs", "de,zh", "--pl_threshold", "0.0",
                    "--pl_args", "--no_progress"], cwd=work, env=env_vars, check=True, capture_output=True)
    calls = (tmp_path / "srun.log").read_text(encoding="utf-8").splitlines()
    assert len(calls) == 2 and all(c.startswith("--partition cpu --ntasks 1 --cpus-per-task 1 ") for c in calls)
    assert sorted(c.split("--job ")[1].split()[0] for c in calls) == ["1", "2"]
    logs = work / "exp" / "pseudolabel" / "cv_en_train" / "log"
    assert all("job" in (logs / f"pseudolabel.{j}.log").read_text() for j in (1, 2))
    # the same shards computed here, one after the other, then merged
    data = work / "data" / "cv_en_train"
    out, cache = tmp_path / "here", tmp_path / "here_work"
    common = ["--data", str(data), "--tgt_langs", "de,zh", "--mt_models", str(env.yaml), "--qe_model", str(env.qe),
              "--threshold", "0.0", "--out", str(out), "--work_dir", str(cache), "--no_progress", "--nj", "2"]
    for job in ("1", "2"):
        assert cli.main(common + ["--job", job]) == 0
    assert cli.main(common) == 0
    recipe_out = work / "data" / "cv_en_train_pl"
    for name in ("text", "prompt", "wav.scp", "utt2mt", "transcript"):
        assert (recipe_out / name).read_bytes() == (out / name).read_bytes(), name
