"""Publish a packed model on the Hugging Face hub (recipe stage 8): repo folder, model card, upload.

Where it sits: ``bin/pack.py --hf_repo user/name`` calls :func:`write_repo_folder` on the zip of
``zoo/pack.py`` and, unless ``--dry_run true``, :func:`upload_folder`. The folder is the archive UNPACKED
(``meta.yaml`` at the top), which is the layout ``espnet_model_zoo``'s ``ModelDownloader`` expects of a hub repo,
plus ``README.md``, the model card: YAML metadata (library, pipeline tag, languages, tags, license,
``model-index`` with the scores of ``results.json``) and a body saying what the model is, how to use it and its
RESULTS.md.

The metadata keeps the hub from offering a loading snippet that cannot load this model: with
``library_name: espnet`` and an ``automatic-speech-recognition`` tag the hub shows ESPnet's
``Speech2Text.from_pretrained`` snippet (huggingface.js ``model-libraries-snippets``), which cannot build a
speech-LLM. So the card names this package as the library (the hub knows no snippet for it, so it shows none) and
``audio-text-to-text`` (audio and a text prompt in, text out) as the pipeline tag, and its body gives our own
snippet, ``SpeechLMInference.from_pretrained``.
"""

import json
import os
import shutil
import tempfile
import zipfile
from pathlib import Path
from typing import Dict, List, Optional

import yaml

from espnet_speechlm_plugin.data.kaldi import replace_dir

PAPER = "https://arxiv.org/abs/2506.17019"
LIBRARY_NAME = "espnet_speechlm_plugin"  # not "espnet": see the module docstring
PIPELINE_TAG = "audio-text-to-text"
# our task names -> the task ids of the hub's model-index
HUB_TASKS = {
    "transcribe": ("automatic-speech-recognition", "Speech recognition"),
    "translate": ("speech-translation", "Speech translation"),
    "answer": ("spoken-question-answering", "Spoken question answering"),
}
METRIC_NAMES = {"wer": "WER", "cer": "CER", "bleu": "BLEU", "chrf": "chrF", "exact_match": "Exact match",
                "unanswerable_acc": "Unanswerable accuracy", "task_confusion": "Task confusion"}


def read_results(folder: Path) -> List[dict]:
    """The rows of ``results.json`` (``{test_set, task, lang, metric, value, n}``), [] when there is none."""
    path = Path(folder) / "results.json"
    if not path.exists():
        return []
    rows = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(rows, list):
        raise ValueError(f"{path}: expected a list of result rows, got {type(rows).__name__}")
    return rows


def model_index(repo: str, rows: List[dict]) -> List[dict]:
    """The hub's ``model-index``: one result per (test set, task, language) with its computed metrics."""
    results: Dict[tuple, dict] = {}
    for row in rows:
        if row.get("value") is None or row.get("task") not in HUB_TASKS:
            continue  # a metric that was not computed (the row says why) is not a score
        key = (row["test_set"], row["task"], row["lang"])
        if key not in results:
            task_id, task_name = HUB_TASKS[row["task"]]
            results[key] = {
                "task": {"type": task_id, "name": f"{task_name} ({row['lang']})"},
                "dataset": {"name": row["test_set"], "type": row["test_set"], "args": {"language": row["lang"]}},
                "metrics": [],
            }
        results[key]["metrics"].append({"type": row["metric"], "name": METRIC_NAMES.get(row["metric"], row["metric"]),
                                        "value": row["value"]})
    return [{"name": repo, "results": list(results.values())}] if results else []


def _architecture(config: dict) -> str:
    enc = (config.get("encoder_conf") or {}).get("name_or_path", "?")
    dec = (config.get("decoder_conf") or {}).get("name_or_path", "?")
    comp = config.get("compressor") or "none"
    return (f"speech encoder `{config.get('encoder', '?')}` (`{enc}`) → compressor `{comp}` → length adapter "
            f"`{config.get('length_adapter', '?')}` → linear projector → causal LM `{dec}`")


def model_card(repo: str, config: dict, rows: List[dict], results_md: str = "", license: str = "cc-by-4.0",
               base_models: Optional[List[str]] = None) -> str:
    """README.md of the hub repo. ``config`` is the experiment's own config (its original model names)."""
    languages = list(config.get("languages") or [])
    tasks = sorted({r["task"] for r in rows if r.get("task") in HUB_TASKS}, key=list(HUB_TASKS).index) \
        or list(HUB_TASKS)
    meta = {
        "library_name": LIBRARY_NAME,
        "pipeline_tag": PIPELINE_TAG,
        "language": languages,
        "license": license,
        "tags": ["audio", "speech-llm", "espnet_speechlm_plugin"] + [HUB_TASKS[t][0] for t in tasks],
    }
    if base_models:
        meta["base_model"] = base_models
    index = model_index(repo, rows)
    if index:
        meta["model-index"] = index
    front = yaml.safe_dump(meta, sort_keys=False, allow_unicode=True)
    lang, task = (languages or ["en"])[0], tasks[0]
    second = next((lg for lg in languages if lg != lang), lang)
    body = f"""# {repo}

A speech-LLM trained with `espnet_speechlm_plugin` (an ESPnet recipe plugin following
*Instituto de Telecomunicações at IWSLT 2025*, [arXiv 2506.17019]({PAPER})):
{_architecture(config)}.

- Tasks: {", ".join(f"`{t}`" for t in tasks)} (prompt `<|lang|><|task|> [question]`; `lang` is the language of
  the output).
- Output languages: {", ".join(f"`{lg}`" for lg in languages)}.
- Input: any sample rate and channel count (resampled to 16 kHz mono); audio longer than the model's cap is cut
  in pauses, decoded piece by piece and stitched, with timings.

## Use

This model is loaded with `espnet_speechlm_plugin` (an ESPnet plugin; install it from its repository with
`pip install -e .` into an environment that has ESPnet, or `make install`), not with ESPnet's `Speech2Text`:

```bash
python -m espnet_speechlm_plugin.bin.speechlm_inference --model {repo} --task {task} --lang {lang} talk.wav
```

```python
from espnet_speechlm_plugin import SpeechLMInference

m = SpeechLMInference.from_pretrained("{repo}")  # downloads through espnet_model_zoo
print(m("talk.wav", task="transcribe", lang="{lang}").text)
print(m("talk.wav", task="translate", lang="{second}").text)
out = m(wav_array, sample_rate=44100, task="answer", question="What colour is the cat?", lang="{lang}")
for seg in out.segments:
    print(f"{{seg.start:.2f}}-{{seg.end:.2f}} {{seg.text}}")
```

The weights are in `model.safetensors` (loading runs no pickled code); `config.yaml` rebuilds the network from the
architectures in `hf/` (no hub access needed), `hf/tokenizer` holds the tokenizer with the special tokens.

## Results
"""
    body += ("\n" + results_md.strip() + "\n") if results_md.strip() else "\nNo scores were packed with this model.\n"
    return f"---\n{front}---\n\n{body}"


def write_repo_folder(zip_path: Path, repo: str, folder: Optional[Path] = None, license: str = "cc-by-4.0",
                      source_config: Optional[dict] = None) -> Path:
    """Unpack ``zip_path`` into ``folder`` (default ``<zip dir>/hf_repo``) with a model card; atomic: a previous
    folder is replaced only once the new one is complete. ``source_config``: the experiment's config, for the
    card's original model names (default: the packed one)."""
    zip_path = Path(zip_path)
    folder = Path(folder) if folder else zip_path.parent / "hf_repo"
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=folder.parent))
    try:
        with zipfile.ZipFile(zip_path) as z:
            z.extractall(tmp)
        config = source_config or yaml.safe_load((tmp / "config.yaml").read_text(encoding="utf-8"))
        results_md = (tmp / "RESULTS.md").read_text(encoding="utf-8") if (tmp / "RESULTS.md").exists() else ""
        bases = [c.get("name_or_path") for c in (config.get("encoder_conf") or {}, config.get("decoder_conf") or {})]
        bases = [b for b in bases if b and "/" in b and not os.path.exists(b)]  # hub names, not local folders
        card = model_card(repo, config, read_results(tmp), results_md, license, bases or None)
        (tmp / "README.md").write_text(card, encoding="utf-8")
        os.chmod(tmp, 0o755)  # mkdtemp makes it private; the folder is meant to be published
        replace_dir(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return folder


def upload_folder(folder: Path, repo: str, private: bool = False) -> str:
    """Create (if needed) and push the hub repo; needs a token (``huggingface-cli login`` or ``HF_TOKEN``)."""
    from huggingface_hub import HfApi

    api = HfApi()
    api.create_repo(repo, exist_ok=True, private=private)
    info = api.upload_folder(repo_id=repo, folder_path=str(folder),
                             commit_message="Upload espnet_speechlm_plugin model")
    return str(getattr(info, "commit_url", info))
