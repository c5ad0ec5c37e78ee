"""Pack a trained experiment as an ESPnet model-zoo archive (recipe stage 7) that rebuilds offline, without pickle.

Where it sits: ``bin/pack.py`` (stage 7) calls :func:`pack_experiment`; ``zoo/hub.py`` (stage 8) turns the zip
into a Hugging Face repo folder; ``zoo/inference.py`` (``SpeechLMInference.from_pretrained``) loads it back.

The zip is ESPnet's ``pack`` format (``meta.yaml`` naming the files; ``espnet_model_zoo`` unpacks it) holding:

    meta.yaml              files: {model_file: model.safetensors}, yaml_files: {train_config: config.yaml}
    config.yaml            the experiment's config, pretrained parts pointed at hf/ (random_init: the weights are
                           all in model.safetensors), init_param cleared, inference_conf added (how to cut long
                           inputs: max_seconds 1.5 x the longest training utterance, min_seconds its 5th percentile)
    model.safetensors      every weight of the SpeechLM (safetensors: loading runs no code, unlike a .pth pickle)
    hf/encoder/config.json the speech encoder's architecture (HF config, as built: overrides applied)
    hf/decoder/config.json the LM's architecture (vocabulary size as grown for the special tokens)
    hf/tokenizer/          the LM tokenizer with the <|lang|>/<|task|> tokens already added
    RESULTS.md, results.json   stage 6's scores, when present

The HF weights of the pretrained parts are NOT copied (they are in model.safetensors, trained), so the archive is
about the size of the model once. Paths inside are relative; ``from_pretrained`` resolves them against the folder
the archive was unpacked to.
"""

import contextlib
import io
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import yaml

PACKED_CONFIG = "config.yaml"
PACKED_WEIGHTS = "model.safetensors"
HF_SLOTS = ("encoder", "decoder")  # ClassChoices slots whose *_conf.name_or_path is an HF model
TOKENIZER_DIR = "hf/tokenizer"
EXTRA_FILES = ("RESULTS.md", "results.json")
FRAME_RATE = 50.0  # feature frames per second (fbank, 2 stacked 10 ms frames)
MAX_MARGIN = 1.5  # segment cap = this x the longest training utterance: a little longer than seen works


def _hf_model(module):
    """The HF ``PreTrainedModel`` inside one of our slot modules (W2VBertEncoder.model, HFCausalLM.lm, ...)."""
    from transformers import PreTrainedModel

    found = next((m for m in module.modules() if isinstance(m, PreTrainedModel)), None)
    if found is None:
        raise ValueError(f"{type(module).__name__} holds no Hugging Face model: cannot save its config for packing")
    return found


def packed_config(config: dict, inference_conf: Optional[Dict[str, float]] = None) -> dict:
    """The experiment config as stored in the archive: HF parts read from ``hf/<slot>``, built from their config
    (``random_init``) because every weight comes from the model file; no ``init_param`` to look for;
    ``inference_conf``: how inference segments long audio (:func:`segment_defaults`)."""
    out = dict(config)
    if inference_conf:
        out["inference_conf"] = dict(inference_conf)
    for slot in HF_SLOTS:
        conf = dict(out.get(f"{slot}_conf") or {})
        conf.update(name_or_path=f"hf/{slot}", random_init=True)
        out[f"{slot}_conf"] = conf
    out["tokenizer"] = TOKENIZER_DIR
    out["init_param"] = []
    return out


def segment_defaults(config: dict, roots: Sequence[Path] = (Path("."),)) -> Optional[Dict[str, float]]:
    """How inference should cut long audio for a model trained on the utterances of ``train_shape_file``
    (``utt T,160`` at 50 Hz): ``max_seconds`` = 1.5 x the longest (the model never saw much longer inputs) and
    ``min_seconds`` = the 5th percentile (a piece is cut at the first clear pause after it, so pieces are about one
    training utterance long, rarely two short ones). None when the files are not found."""
    frames: List[int] = []
    for name in config.get("train_shape_file") or []:
        path = next((Path(r) / name for r in roots if (Path(r) / name).is_file()), None)
        if path is None:
            return None
        with open(path, encoding="utf-8") as f:
            frames += [int(line.split()[1].split(",")[0]) for line in f if line.strip()]
    if not frames:
        return None
    seconds = sorted(n / FRAME_RATE for n in frames)
    return {"max_seconds": round(MAX_MARGIN * seconds[-1], 2), "min_seconds": round(seconds[len(seconds) // 20], 2)}


def is_up_to_date(out: Path, inputs: List[Path]) -> bool:
    return out.exists() and all(out.stat().st_mtime >= p.stat().st_mtime for p in inputs if p.exists())


def pack_experiment(exp_dir: Path, model_file: str = "valid.acc.best.pth", out: Optional[Path] = None,
                    force: bool = False) -> Path:
    """Write ``out`` (default ``<exp_dir>/packed/model.zip``) atomically; returns its path.

    Relative paths in the experiment's config (``exp/init/decoder``) are read from the current directory, as in
    training: run it from the recipe directory. An archive newer than the config, the weights and the results is
    left alone unless ``force``.
    """
    from safetensors.torch import save_model

    from espnet_speechlm_plugin.tasks.speechlm import SpeechLMTask

    exp_dir = Path(exp_dir)
    out = Path(out) if out else exp_dir / "packed" / "model.zip"
    config_path, model_path = exp_dir / "config.yaml", exp_dir / model_file
    for p in (config_path, model_path):
        if not p.exists():
            raise FileNotFoundError(f"{p} does not exist: run the training stages first (or pass --model_file)")
    extras = [exp_dir / f for f in EXTRA_FILES if (exp_dir / f).exists()]
    if not force and is_up_to_date(out, [config_path, model_path.resolve(), *extras]):
        logging.info(f"{out} is newer than {config_path.name}, {model_file} and the results: keeping it")
        return out

    # Building the model checks that the weights fit the config (strict keys and shapes) before anything is written
    model, args = SpeechLMTask.load_model(str(config_path), str(model_path))
    config = yaml.safe_load(config_path.read_text(encoding="utf-8"))
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".pack-", dir=out.parent))
    try:
        for slot in HF_SLOTS:
            _hf_model(getattr(model, slot)).config.save_pretrained(staging / "hf" / slot)
        SpeechLMTask.tokenizer(args).save_pretrained(str(staging / TOKENIZER_DIR))
        # save_model drops the duplicate names of tied tensors (LM head = embeddings); load_model restores them
        save_model(model, str(staging / PACKED_WEIGHTS), metadata={"source": f"{exp_dir.name}/{model_file}"})
        (staging / PACKED_CONFIG).write_text(yaml.safe_dump(packed_config(config, segment_defaults(config)),
                                                            sort_keys=False,
                                                            allow_unicode=True), encoding="utf-8")
        for f in extras:
            shutil.copy(f, staging / f.name)
        options = ["hf"] + [f.name for f in extras]
        tmp_zip = out.with_name(f".{out.name}.tmp.zip")
        _espnet_pack(staging, {"model_file": PACKED_WEIGHTS}, {"train_config": PACKED_CONFIG}, options,
                     tmp_zip.resolve())
        os.replace(tmp_zip, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out


def _espnet_pack(root: Path, files: Dict[str, str], yaml_files: Dict[str, str], options: List[str], outpath: Path):
    """ESPnet's ``pack`` stores paths relative to the working directory: run it inside ``root`` and keep its
    per-file "adding: …" prints out of the user's console (they go to the debug log)."""
    from espnet2.main_funcs.pack_funcs import pack

    cwd, printed = os.getcwd(), io.StringIO()
    try:
        os.chdir(root)
        with contextlib.redirect_stdout(printed):
            pack(files=files, yaml_files=yaml_files, option=options, outpath=str(outpath))
    finally:
        os.chdir(cwd)
    logging.debug(printed.getvalue())


def read_meta(root: Path) -> Dict[str, Path]:
    """``{train_config, model_file}`` of an unpacked archive (the folder holding ``meta.yaml``), as absolute paths."""
    meta_path = Path(root) / "meta.yaml"
    meta = yaml.safe_load(meta_path.read_text(encoding="utf-8")) or {}
    try:
        entries = {**meta["yaml_files"], **meta["files"]}
        return {"train_config": Path(root) / entries["train_config"], "model_file": Path(root) / entries["model_file"]}
    except (KeyError, TypeError) as e:
        raise ValueError(f"{meta_path}: not a SpeechLM archive (needs yaml_files.train_config and files.model_file; "
                         f"missing {e})") from e
