"""BERTScore F1 of spoken question answering (stage 6), computed as the IWSLT 2025 / MCIF evaluation does.

Where it sits: `scoring.report` adds `make_bertscore_metric(options)` to the `answer` task's metrics; it returns the
`bertscore_f1` row of every (test set, answer language).

The official call is `bert_score.score(hyps, refs, lang=lang, rescale_with_baseline=True)` and the score is the
mean F1. With `lang=` and no model, bert_score picks its default model for the language (en: roberta-large, layer
17; zh: bert-base-chinese, layer 8; others incl. de/it: bert-base-multilingual-cased, layer 9) and rescales with the
baseline file it ships: `bert_score/rescale_baseline/<lang>/<model name>.tsv` (columns LAYER,P,R,F; the row of the
layer used). Ours makes the same call, with these differences, none of which changes the number:
- the model may be a local folder (`--bertscore_model /models/roberta-large` or per language
  `--bertscore_model en=/models/roberta-large zh=/models/bert-base-chinese`). bert_score looks its baseline up under
  the string it is given, so for a folder it finds none and, with only a warning, does NOT rescale. We look the
  baseline up under the folder's name instead (a folder named after the hub model, e.g. `.../roberta-large`,
  finds the shipped file and its layer), or take `--bertscore_baseline FILE` and `--bertscore_num_layers N`;
  with neither, the metric is "not computed" (never an unrescaled number under the same name);
- a hub name is resolved to its folder in the local Hugging Face cache first (nothing is downloaded; a model that
  is not cached is "not computed: ... how to fix").
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from espnet_speechlm_plugin.scoring.metrics import Group, MetricFn, MetricResult


class NotAvailable(Exception):
    """The metric cannot be computed here; the message says why and how to fix it."""


_LANG_SPEC = re.compile(r"^([a-z]{2,3}(?:-[a-z]+)?)=(.+)$")


def per_language(values: Optional[list[str]], option: str) -> dict[str, str]:
    """Parse `VALUE` (all languages) and `LANG=VALUE` items into {lang or "*": value}."""
    out: dict[str, str] = {}
    for value in values or []:
        m = _LANG_SPEC.match(value)
        lang, v = (m.group(1), m.group(2)) if m else ("*", value)
        if lang in out:
            raise ValueError(f"{option}: two values for {'every language' if lang == '*' else lang}: "
                             f"'{out[lang]}' and '{v}'")
        out[lang] = v
    return out


@dataclass
class BertScoreOptions:
    """Where BERTScore's model and baseline come from; every dict maps a language (or "*" for all) to a value."""

    models: dict[str, str] = field(default_factory=dict)  # hub name or local folder; default: bert_score's choice
    num_layers: dict[str, str] = field(default_factory=dict)  # layer to use; default: bert_score's table
    baselines: dict[str, str] = field(default_factory=dict)  # rescale baseline TSV; default: the shipped file
    batch_size: int = 64
    device: Optional[str] = None  # default: cuda if available, else cpu (as bert_score)

    def get(self, table: dict[str, str], lang: str) -> Optional[str]:
        return table.get(lang, table.get("*"))


@dataclass
class Resolved:
    model_path: str  # what bert_score loads (a local folder, or a hub name already in the cache)
    name: str  # the model's name, for the layer table, the baseline file and the signature
    num_layers: int
    baseline: str
    custom_baseline: bool


def _local_snapshot(name: str) -> Optional[str]:
    """The folder of a hub model in the local Hugging Face cache, or None (nothing is downloaded)."""
    from huggingface_hub import snapshot_download

    try:
        return snapshot_download(repo_id=name, local_files_only=True)
    except Exception:  # not cached, or not a valid repo id: either way not available offline
        return None


# bert_score's `lang2model` for the languages it names (a test keeps this equal to bert_score's table). Kept here so
# that a model missing offline is reported without importing bert_score (which imports matplotlib and pandas).
DEFAULT_MODELS = {"en": "roberta-large", "zh": "bert-base-chinese", "tr": "dbmdz/bert-base-turkish-cased",
                  "en-sci": "allenai/scibert_scivocab_uncased"}
DEFAULT_MULTILINGUAL = "bert-base-multilingual-cased"


def resolve(lang: str, options: BertScoreOptions) -> Resolved:
    """Model, layer and baseline for one language, or `NotAvailable` saying what is missing and how to fix it."""
    given = options.get(options.models, lang)
    model = given or DEFAULT_MODELS.get(lang.lower(), DEFAULT_MULTILINGUAL)
    if os.path.isdir(model):
        path, name = model, Path(model).resolve().name
    else:
        path, name = _local_snapshot(model), model
        if path is None:
            raise NotAvailable(
                f"BERTScore model '{model}' (lang={lang}) is neither a folder nor in the local Hugging Face cache, "
                f"and nothing is downloaded here; fix: `huggingface-cli download {model}` where there is network "
                f"(or copy the folder here and pass --bertscore_model {lang}=/path/to/{model.split('/')[-1]})"
            )

    import bert_score
    from bert_score.utils import model2layers

    layers = options.get(options.num_layers, lang)
    if layers is None and name not in model2layers:
        raise NotAvailable(
            f"BERTScore: no layer known for model '{name}' (lang={lang}); pass --bertscore_num_layers {lang}=N "
            f"(bert_score's table has e.g. roberta-large 17, bert-base-multilingual-cased 9), or name the model "
            f"folder after the hub model it holds"
        )
    num_layers = int(layers) if layers is not None else model2layers[name]

    baseline = options.get(options.baselines, lang)
    custom = baseline is not None
    if baseline is None:
        baseline = os.path.join(os.path.dirname(bert_score.__file__), "rescale_baseline", lang, f"{name}.tsv")
        if not os.path.isfile(baseline):
            raise NotAvailable(
                f"BERTScore: bert_score ships no rescale baseline for model '{name}' and lang={lang} "
                f"(looked for {baseline}); pass --bertscore_baseline {lang}=FILE (a CSV with a LAYER,P,R,F header "
                f"and one row per layer, made like bert_score's from scores of unrelated sentence pairs), or use "
                f"the model bert_score picks for lang={lang}"
            )
    else:
        _check_baseline(baseline, num_layers)
    return Resolved(path, name, num_layers, baseline, custom)


def _check_baseline(path: str, num_layers: int) -> None:
    if not os.path.isfile(path):
        raise NotAvailable(f"BERTScore baseline file '{path}' does not exist; fix --bertscore_baseline")
    with open(path, encoding="utf-8") as f:
        lines = [line.strip() for line in f if line.strip()]
    if not lines or lines[0].replace(" ", "") != "LAYER,P,R,F":
        raise NotAvailable(f"BERTScore baseline file '{path}' line 1: expected the header 'LAYER,P,R,F'")
    if len(lines) - 1 <= num_layers:
        raise NotAvailable(
            f"BERTScore baseline file '{path}' has rows for layers 0..{len(lines) - 2}, but layer {num_layers} is "
            f"used; give a baseline made for this model (or --bertscore_num_layers)"
        )


def signature(r: Resolved) -> str:
    """bert_score's own hash string of the setting (model, layer, idf, version, rescaling)."""
    from bert_score.utils import get_hash

    return get_hash(r.name, r.num_layers, False, True, use_custom_baseline=r.custom_baseline,
                    use_fast_tokenizer=False)


def bertscore_f1_items(refs: list[str], hyps: list[str], lang: str, options: BertScoreOptions
                       ) -> tuple[list[float], str]:
    """Rescaled BERTScore F1 of every pair, and the signature; `NotAvailable` if it cannot be computed."""
    r = resolve(lang, options)  # before importing bert_score: a missing model is reported without that cost
    import bert_score

    _, _, f1 = bert_score.score(
        hyps, refs, model_type=r.model_path, num_layers=r.num_layers, lang=lang, rescale_with_baseline=True,
        baseline_path=r.baseline, batch_size=options.batch_size, device=options.device,
    )
    return f1.tolist(), signature(r)


def bertscore_f1(refs: list[str], hyps: list[str], lang: str, options: BertScoreOptions) -> tuple[float, str]:
    """Mean rescaled BERTScore F1 over the pairs (the official `F1.mean()`), and the signature."""
    import torch

    f1, sig = bertscore_f1_items(refs, hyps, lang, options)
    return torch.tensor(f1).mean().item(), sig


def make_bertscore_metric(options: BertScoreOptions) -> MetricFn:
    """The `bertscore_f1` metric function of the answer task, bound to `options`."""

    def bertscore_metric(group: Group) -> list[MetricResult]:
        if not group.n:
            return []
        try:
            value, sig = bertscore_f1(group.refs, group.hyps, group.lang, options)
        except NotAvailable as e:
            return [MetricResult("bertscore_f1", None, group.n, note=f"not computed: {e}")]
        except Exception as e:  # a broken model folder must not cost the other metrics of the run
            return [MetricResult("bertscore_f1", None, group.n,
                                 note=f"not computed: {type(e).__name__}: {e} (check --bertscore_model)")]
        return [MetricResult("bertscore_f1", value, group.n,
                             f"bert_score F1, rescaled with baseline, lang={group.lang}; hash: {sig}")]

    return bertscore_metric
