"""Small stand-ins for the hub models the recipe uses besides the speech LLM, built offline: COMET
(wmt22-comet-da style) and a BERT for BERTScore (stage 6), COMETKiwi (QE) and an M2M100 MT model (pseudo-labelling,
stage 1), each saved in the on-disk layout its library loads, so the real loading and scoring code runs.

Where it sits: the rehearsal of the IWSLT recipe (``egs2/iwslt25_if/s2t1/run.sh --rehearsal true``) uses these so
that pseudo-labelling runs and every metric row of RESULTS.md is computed without the hub; the tests build the same
models. Their outputs mean nothing (random weights); what is proved is the path: COMET's
``load_from_checkpoint``/``predict``, bert_score's ``score`` with a local folder, a layer and a rescale baseline,
transformers' ``generate`` of a seq2seq MT model chosen by the MT-ensemble YAML.

    python -m espnet_speechlm_plugin.bin.make_standins --out_dir exp/standins --what mt cometkiwi
    python -m espnet_speechlm_plugin.bin.make_standins --out_dir exp/standins --what comet bert --text dump/*/text

Layout written (COMET's ``download_model`` layout; model folders as ``save_pretrained`` leaves them):

    <out_dir>/comet/checkpoints/model.ckpt  + hparams.yaml + xlmr/   reference-based RegressionMetric
    <out_dir>/cometkiwi/checkpoints/model.ckpt + …                    reference-free UnifiedMetric (sigmoid head)
    <out_dir>/bert/                          a random BERT with a word-level vocabulary of the texts
    <out_dir>/bert/baseline.tsv              its rescale baseline (LAYER,P,R,F), computed like bert_score's:
                                             mean scores of unrelated sentence pairs of the texts, per layer
    <out_dir>/score_args.txt                 the options of bin/score that use COMET and the BERT
    <out_dir>/m2m100/                        a tiny M2M100 with its tokenizer (language tokens __de__ …)
    <out_dir>/mt_models.yaml                 an MT-ensemble YAML (conf/pseudolabel/mt_models.yaml's format) naming it

Builds are seeded: the same texts give the same files and scores.
"""
from __future__ import annotations

import argparse
import io
import json
import random
import re
import unicodedata
from pathlib import Path
from typing import Iterable, Optional, Sequence

import torch
import yaml

from espnet_speechlm_plugin.data.kaldi import read_kaldi_values

# Enough text in en/de/it/zh for a sentencepiece model whose pieces cover typical test sentences' characters.
SP_TEXT = [
    "the red cat sees two dogs in the garden", "a small green bird sleeps on the old bridge",
    "what colour is the cat", "the weather is nice today and we walk to the park",
    "die rote Katze sieht zwei Hunde im Garten", "ein kleiner grüner Vogel schläft auf der alten Brücke",
    "das Wetter ist heute schön und wir gehen in den Park", "welche Farbe hat der Vogel",
    "il gatto rosso vede due cani nel giardino", "un piccolo uccello verde dorme sul vecchio ponte",
    "oggi il tempo è bello e andiamo al parco", "di che colore è il gatto",
    "红色的猫在花园里看见两只狗", "一只绿色的小鸟在旧桥上睡觉", "今天天气很好，我们去公园散步", "猫是什么颜色",
    "Nicht zu beantworten. Non è possibile rispondere. 无法回答。 Not answerable.",
]
BERT_LAYERS = 2


def train_sentencepiece(vocab_size: int = 300, texts: Optional[Sequence[str]] = None) -> bytes:
    """A serialized unigram sentencepiece model trained on ``texts`` (default: the en/de/it/zh ``SP_TEXT``)."""
    import sentencepiece as spm

    model = io.BytesIO()
    # unigram like XLM-R's; one thread and a fixed input order keep the model identical from run to run
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(list(texts or SP_TEXT) * 4), model_writer=model, vocab_size=vocab_size,
        model_type="unigram", character_coverage=1.0, num_threads=1, hard_vocab_limit=False, minloglevel=2,
        # XLM-R's special tokens live outside the spm vocabulary (fairseq offset); keep spm's own ids 0..2
        unk_id=0, bos_id=1, eos_id=2, pad_id=-1,
    )
    return model.getvalue()


def build_tiny_xlmr(out_dir: Path, hidden: int = 32, layers: int = 2, seed: int = 0,
                    texts: Optional[Sequence[str]] = None) -> Path:
    """A random XLM-RoBERTa (``XLMRobertaModel`` + tokenizer) saved to ``out_dir``; returns ``out_dir``.

    The sentencepiece model is saved as ``sentencepiece.bpe.model`` (the name XLM-R's tokenizers look for) and the
    fast tokenizer's ``tokenizer.json`` next to it, so COMET's ``XLMRobertaTokenizerFast.from_pretrained`` loads
    it without converting."""
    from transformers import XLMRobertaConfig, XLMRobertaModel, XLMRobertaTokenizer, XLMRobertaTokenizerFast

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    sp_file = out_dir / "sentencepiece.bpe.model"
    sp_file.write_bytes(train_sentencepiece(texts=texts))
    max_len = 130  # COMET truncates each segment to max_position_embeddings - 4 tokens
    slow = XLMRobertaTokenizer(vocab_file=str(sp_file), model_max_length=max_len - 2)
    fast = XLMRobertaTokenizerFast(vocab_file=str(sp_file), from_slow=True, model_max_length=max_len - 2)
    assert len(fast) == len(slow)
    fast.save_pretrained(out_dir)
    torch.manual_seed(seed)
    config = XLMRobertaConfig(
        vocab_size=len(slow), hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=2,
        intermediate_size=2 * hidden, max_position_embeddings=max_len, pad_token_id=slow.pad_token_id,
        bos_token_id=slow.bos_token_id, eos_token_id=slow.eos_token_id, type_vocab_size=1,
        # HF's 0.02 leaves a random encoder's <s> vector almost input-independent (QE scores would differ in the
        # 4th decimal); wide weights make the tiny model's scores spread over ~0.75..0.98 like CometKiwi's
        initializer_range=0.5,
    )
    XLMRobertaModel(config, add_pooling_layer=False).save_pretrained(out_dir)
    return out_dir


def build_tiny_comet(out_dir: Path, kind: str, seed: int = 0, texts: Optional[Sequence[str]] = None) -> Path:
    """A tiny COMET model in COMET's download layout under ``out_dir``; returns ``<out_dir>/checkpoints/model.ckpt``.

    kind "qe": reference-free ``UnifiedMetric`` shaped like Unbabel/wmt22-cometkiwi-da (input_segments [mt, src],
    layer mix, avg pool, no layer norm); its sigmoid head keeps scores in (0, 1) as CometKiwi's are.
    kind "ref": reference-based ``RegressionMetric`` shaped like Unbabel/wmt22-comet-da (src, mt, ref).
    The heads are initialised with a wide spread so that different inputs get visibly different scores."""
    from comet.models import RegressionMetric, UnifiedMetric

    out_dir = Path(out_dir)
    xlmr = build_tiny_xlmr(out_dir / "xlmr", seed=seed, texts=texts)
    common = dict(encoder_model="XLM-RoBERTa", pretrained_model=str(xlmr), layer_transformation="sparsemax",
                  hidden_sizes=[16], activations="Tanh", dropout=0.1, load_pretrained_weights=True,
                  local_files_only=True)
    torch.manual_seed(seed)
    if kind == "qe":
        identifier = "unified_metric"
        model = UnifiedMetric(**common, input_segments=["mt", "src"], sent_layer="mix", layer_norm=False,
                              word_layer=2, word_level_training=False, final_activation="Sigmoid")
    elif kind == "ref":
        identifier = "regression_metric"
        model = RegressionMetric(**common, layer="mix", pool="avg")
    else:
        raise ValueError(f"kind must be 'qe' or 'ref', got {kind!r}")
    for p in model.estimator.parameters():  # a random head gives nearly one score for everything: spread it
        torch.nn.init.normal_(p, std=0.5)
    ckpt = out_dir / "checkpoints" / "model.ckpt"
    ckpt.parent.mkdir(parents=True, exist_ok=True)
    # Saved as a released checkpoint is: the encoder's weights are in the state dict, not fetched again.
    saved = dict(model.hparams) | {"load_pretrained_weights": False}
    torch.save({"state_dict": model.state_dict(), "hyper_parameters": saved, "pytorch-lightning_version": "2.0.0"},
               ckpt)
    (out_dir / "hparams.yaml").write_text(yaml.safe_dump(saved | {"class_identifier": identifier}))
    return ckpt


def _words(texts: Iterable[str]) -> list[str]:
    """Lower-cased words and CJK characters of ``texts``, in order of first appearance, split as BERT's basic
    tokenizer does (punctuation and every CJK character on its own)."""
    seen = {}
    for text in texts:
        text = unicodedata.normalize("NFC", text.lower())
        for token in re.findall(r"[\u3400-\u9fff\uf900-\ufaff]|\w+|[^\w\s]", text):
            seen.setdefault(token, None)
    return list(seen)


def build_tiny_bert(out_dir: Path, texts: Sequence[str], layers: int = BERT_LAYERS, seed: int = 0) -> Path:
    """A random BERT (hidden 32) whose word-level vocabulary holds every word of ``texts``, saved like a hub
    checkpoint (config, weights, vocab.txt, tokenizer files)."""
    from transformers import BertConfig, BertModel, BertTokenizer

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + _words(texts)
    (out_dir / "vocab.txt").write_text("\n".join(dict.fromkeys(vocab)) + "\n", encoding="utf-8")
    tok = BertTokenizer(str(out_dir / "vocab.txt"), do_lower_case=True, model_max_length=128)
    tok.save_pretrained(out_dir)
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=layers, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=128)
    BertModel(config).eval().save_pretrained(out_dir)
    return out_dir


def write_bert_baseline(model_dir: Path, texts: Sequence[str], out: Path, layers: int = BERT_LAYERS,
                        pairs: int = 200, seed: int = 0) -> Path:
    """bert_score's rescale baseline for ``model_dir``: per layer 0..``layers``, the mean P, R, F of BERTScore over
    ``pairs`` pairs of unrelated sentences of ``texts`` (how bert_score made its shipped baselines)."""
    import bert_score

    texts = sorted({t.strip() for t in texts if t.strip()})
    if len(texts) < 2:
        raise ValueError("the BERTScore baseline needs at least two different sentences")
    rng = random.Random(seed)
    cands, refs = [], []
    while len(cands) < pairs:
        a, b = rng.sample(texts, 2)
        cands.append(a)
        refs.append(b)
    rows = ["LAYER,P,R,F"]
    for layer in range(layers + 1):
        p, r, f = bert_score.score(cands, refs, model_type=str(model_dir), num_layers=layer, device="cpu")
        rows.append(f"{layer},{p.mean().item():.6f},{r.mean().item():.6f},{f.mean().item():.6f}")
    out.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return out


def build_tiny_m2m100(out_dir: Path, seed: int = 0, texts: Optional[Sequence[str]] = None) -> Path:
    """A tiny ``M2M100ForConditionalGeneration`` with its ``M2M100Tokenizer`` (sentencepiece model, vocab.json, the
    ``__xx__`` language tokens as special tokens, as facebook/m2m100_1.2B has them), saved to ``out_dir``."""
    import sentencepiece as spm
    from transformers import M2M100Config, M2M100ForConditionalGeneration, M2M100Tokenizer

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    proto = train_sentencepiece(300, texts)
    (out_dir / "sentencepiece.bpe.model").write_bytes(proto)
    proc = spm.SentencePieceProcessor(model_proto=proto)
    vocab = {t: i for i, t in enumerate(["<s>", "<pad>", "</s>", "<unk>"])}
    for i in range(proc.get_piece_size()):
        vocab.setdefault(proc.id_to_piece(i), len(vocab))
    (out_dir / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    files = str(out_dir / "vocab.json"), str(out_dir / "sentencepiece.bpe.model")
    tok = M2M100Tokenizer(*files)
    tok = M2M100Tokenizer(*files, additional_special_tokens=list(tok.lang_token_to_id))
    tok.save_pretrained(out_dir)
    torch.manual_seed(seed)
    config = M2M100Config(vocab_size=max(tok.lang_token_to_id.values()) + 9, d_model=32, encoder_layers=1,
                          decoder_layers=1, encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=64,
                          decoder_ffn_dim=64, max_position_embeddings=128, pad_token_id=tok.pad_token_id,
                          bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                          decoder_start_token_id=tok.eos_token_id)
    M2M100ForConditionalGeneration(config).save_pretrained(out_dir)
    return out_dir


def write_mt_yaml(path: Path, m2m100: Path, langs: Sequence[str] = ("de", "it", "zh")) -> Path:
    """An MT-ensemble YAML (``conf/pseudolabel/mt_models.yaml``'s format) with the stand-in M2M100 alone."""
    entry = dict(tag="m2m100-standin", name_or_path=str(m2m100), src_lang="en", target="forced_bos",
                 generate=dict(num_beams=2, max_new_tokens=16), langs={lang: lang for lang in langs})
    path.write_text("# stand-in MT ensemble of the rehearsal (bin/make_standins)\n"
                    + yaml.safe_dump(dict(models=[entry]), sort_keys=False), encoding="utf-8")
    return path


WHAT = ("comet", "cometkiwi", "bert", "mt")


def make_standins(out_dir: str, what: Sequence[str] = WHAT, texts: Sequence[str] = (), seed: int = 0) -> dict:
    """Build the stand-ins named in ``what`` under ``out_dir`` (each kept if already there); returns their paths
    (and ``score_args``: the options of ``bin/score`` for COMET and BERTScore when both were asked for)."""
    out = Path(out_dir)
    texts = list(texts)
    paths = {}
    if "comet" in what:
        paths["comet"] = out / "comet" / "checkpoints" / "model.ckpt"
        if not paths["comet"].exists():
            build_tiny_comet(out / "comet", "ref", seed, texts=texts + SP_TEXT)
    if "cometkiwi" in what:
        paths["cometkiwi"] = out / "cometkiwi" / "checkpoints" / "model.ckpt"
        if not paths["cometkiwi"].exists():
            build_tiny_comet(out / "cometkiwi", "qe", seed, texts=texts + SP_TEXT)
    if "bert" in what:
        if len(set(texts)) < 2:
            raise ValueError("the BERTScore stand-in needs texts (--text): its vocabulary and baseline come from them")
        paths["bert"], paths["bert_baseline"] = out / "bert", out / "bert" / "baseline.tsv"
        if not paths["bert_baseline"].exists():
            build_tiny_bert(paths["bert"], texts + SP_TEXT, seed=seed)
            write_bert_baseline(paths["bert"], texts, paths["bert_baseline"], seed=seed)
    if "mt" in what:
        paths["mt"] = out / "m2m100"
        if not (paths["mt"] / "config.json").exists():
            build_tiny_m2m100(paths["mt"], seed, texts + SP_TEXT)
        paths["mt_yaml"] = write_mt_yaml(out / "mt_models.yaml", paths["mt"])
    if "comet" in paths and "bert" in paths:
        args = ["--comet_model", str(paths["comet"]), "--bertscore_model", str(paths["bert"]),
                "--bertscore_num_layers", str(BERT_LAYERS), "--bertscore_baseline", str(paths["bert_baseline"])]
        (out / "score_args.txt").write_text(" ".join(args) + "\n", encoding="utf-8")
        paths["score_args"] = " ".join(args)
    return {k: str(v) for k, v in paths.items()}


def main(argv: Optional[list[str]] = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out_dir", required=True)
    p.add_argument("--what", nargs="+", choices=WHAT, default=list(WHAT))
    p.add_argument("--text", nargs="*", default=[],
                   help="Kaldi text files (utt text): vocabularies and the BERTScore baseline come from them")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    print(json.dumps(make_standins(a.out_dir, a.what, read_kaldi_values(a.text), a.seed), indent=1))


if __name__ == "__main__":
    main()
