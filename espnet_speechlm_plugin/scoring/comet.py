"""COMET of speech translation in our per-utterance scoring (stage 6), called as the official MCIF evaluation calls it.

Where it sits: `scoring.report` adds `make_comet_metric(options)` to the `translate` task's metrics; it returns the
`comet` row of every (test set, target language). `scoring.official` uses `comet_system_score` for the official
TRANS-COMET.

The official evaluation loads `Unbabel/wmt22-comet-da` with `comet.load_from_checkpoint` and reports
`model.predict(triples, batch_size=8, gpus=1).system_score`, the mean of the sentence scores. Ours makes the same
call with:
- `--comet_model`: a hub name (looked up in the local Hugging Face cache only; nothing is downloaded), a model
  folder holding `checkpoints/model.ckpt`, or the `.ckpt` file itself; `none` turns COMET off;
- `gpus`: 1 when CUDA is available, else 0 (CPU), unless `--comet_gpus` says otherwise. The batch size does not
  change the scores beyond float rounding.
Per-utterance triples: each utterance is one {"src": its `transcript`, "mt": its hypothesis, "ref": its reference}
(without a transcript COMET is "not computed"); an utterance whose reference is given as several sentences
(`text.sentences` / `transcript.sentences`, Kaldi lines `utt sentence ||| sentence ...`) is first cut into one piece
per sentence with `scoring.resegment` (what mwerSegmenter returns). This is NOT the official short track, which
joins the outputs of a talk's audio segments and re-segments them against the talk's reference sentences: for that,
score the MCIF XML files with `scoring.official`.
"""
from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from espnet_speechlm_plugin.scoring.metrics import Group, MetricFn, MetricResult
from espnet_speechlm_plugin.scoring.resegment import CHARACTER_LEVEL_LANGS, resegment

DEFAULT_MODEL = "Unbabel/wmt22-comet-da"


class NotAvailable(Exception):
    """COMET cannot be computed here; the message says why and how to fix it."""


@dataclass
class CometOptions:
    model: str = DEFAULT_MODEL  # hub name, model folder or checkpoint file
    batch_size: int = 8  # as the official evaluation
    gpus: Optional[int] = None  # None: 1 if CUDA is available, else 0
    progress: bool = True  # COMET's own progress bar while predicting


def checkpoint_path(model: str) -> Path:
    """The `.ckpt` file of a hub name (local HF cache only), a model folder or a checkpoint file."""
    path = Path(model)
    if path.is_file():
        return path
    if path.is_dir():
        ckpt = path / "checkpoints" / "model.ckpt"
        if not ckpt.is_file():
            raise NotAvailable(f"COMET model folder '{model}' has no checkpoints/model.ckpt; pass the folder that "
                               f"COMET's download_model made (it holds checkpoints/ and hparams.yaml)")
        return ckpt
    from huggingface_hub import snapshot_download

    try:
        folder = snapshot_download(repo_id=model, local_files_only=True)
    except Exception:  # not cached (or not a repo id): not available offline either way
        raise NotAvailable(
            f"COMET model '{model}' is neither a file/folder nor in the local Hugging Face cache, and nothing is "
            f"downloaded here; fix: where there is network run `python -c \"from comet import download_model; "
            f"print(download_model('{model}'))\"` (the encoder it names, e.g. xlm-roberta-large, is fetched on "
            f"first load) and pass --comet_model <the printed checkpoints/model.ckpt>"
        ) from None
    ckpt = Path(folder) / "checkpoints" / "model.ckpt"
    if not ckpt.is_file():
        raise NotAvailable(f"COMET model '{model}' in the HF cache ({folder}) has no checkpoints/model.ckpt")
    return ckpt


@functools.lru_cache(maxsize=2)
def load_model(ckpt: str):
    """Load a COMET checkpoint once per process (stage 6 scores several target languages with one model)."""
    from comet import load_from_checkpoint

    # Lightning and COMET log at INFO on every load/predict; a score run shows its own progress.
    for name in ("lightning", "pytorch_lightning", "lightning.pytorch", "comet"):
        logging.getLogger(name).setLevel(logging.WARNING)
    try:
        model = load_from_checkpoint(ckpt, local_files_only=True)
    except Exception as e:
        raise NotAvailable(
            f"loading COMET checkpoint {ckpt} failed ({type(e).__name__}: {e}); the encoder named by "
            f"`pretrained_model` in its hparams.yaml must also be available offline (HF cache or a local path)"
        ) from None
    model.eval()
    return model


def comet_triples(group: Group) -> tuple[list[dict], int]:
    """The {"src", "mt", "ref"} sentences of a group (re-segmenting long-form utterances) and how many utterances
    were re-segmented."""
    missing = [u for u, t in zip(group.utts, group.transcripts) if t is None]
    if missing:
        raise NotAvailable(
            f"{len(missing)} of {group.n} utterances (e.g. '{missing[0]}') have no source transcript, which COMET "
            f"scores with; add a `transcript` file (utt + source-language transcript) to the test set's data dir"
        )
    ref_sents = group.ref_sentences or [None] * group.n
    src_sents = group.src_sentences or [None] * group.n
    triples, n_reseg = [], 0
    for utt, hyp, ref, src, refs, srcs in zip(group.utts, group.hyps, group.refs, group.transcripts, ref_sents,
                                              src_sents):
        if refs is None:
            triples.append({"src": src.strip(), "mt": hyp.strip(), "ref": ref.strip()})
            continue
        if srcs is None or len(srcs) != len(refs):
            raise NotAvailable(
                f"utterance '{utt}': text.sentences has {len(refs)} sentences but transcript.sentences has "
                f"{'none' if srcs is None else len(srcs)}; COMET needs one source sentence per reference sentence"
            )
        pieces = resegment(hyp, refs, character_level=group.lang in CHARACTER_LEVEL_LANGS)
        n_reseg += 1
        triples += [{"src": s.strip(), "mt": p.strip(), "ref": r.strip()} for s, p, r in zip(srcs, pieces, refs)]
    return triples, n_reseg


def default_gpus() -> int:
    import torch

    return 1 if torch.cuda.is_available() else 0


def comet_system_score(triples: list[dict], options: CometOptions) -> float:
    """`model.predict(...).system_score` of the configured COMET model, as the official evaluation calls it."""
    model = load_model(str(checkpoint_path(options.model)))
    gpus = default_gpus() if options.gpus is None else options.gpus
    # num_workers=0 on CPU: forking loader workers costs more than it saves for scoring-size inputs.
    out = model.predict(triples, batch_size=options.batch_size, gpus=gpus, num_workers=None if gpus else 0,
                        progress_bar=options.progress)
    return float(out.system_score)


def make_comet_metric(options: CometOptions) -> MetricFn:
    """The `comet` metric function of the translate task, bound to `options`."""

    def comet_metric(group: Group) -> list[MetricResult]:
        if not group.n:
            return []
        try:
            triples, n_reseg = comet_triples(group)
            value = comet_system_score(triples, options)
        except NotAvailable as e:
            return [MetricResult("comet", None, group.n, note=f"not computed: {e}")]
        info = f"model {options.model}, system score (mean of {len(triples)} sentence scores)"
        if n_reseg:
            char = ", character level" if group.lang in CHARACTER_LEVEL_LANGS else ""
            info += f"; {n_reseg} long-form utterances re-segmented to reference sentences (Matusov et al. 2005{char})"
        return [MetricResult("comet", value, group.n, info)]

    return comet_metric
