"""Parameter counts of a config's model, per module and per stage, and its audio frame rates (total temporal
compression, audio embeddings per second), without downloading anything.

A tool beside the training flow (also used by the configs test and the benchmarks): real configs name hub models
(``facebook/w2v-bert-2.0``, ``Qwen/Qwen2.5-0.5B``, …); here those names are pointed at the architecture
hyper-parameters bundled in ``espnet_speechlm_plugin/arch/`` (their published ``config.json``) with
``random_init: true``, and the model is built on torch's meta device: shapes only, no weights, no memory.
The tokenizer only decides whether the LM's embeddings must grow; a small BPE trained on the fly stands in for the
LM's own, and since embeddings are only ever grown the decoder keeps its published vocabulary size.

    python -m espnet_speechlm_plugin.bin.model_size conf/stage1_qwen2.5-0.5b.yaml [conf/stage2_phi-4-mini.yaml …]
"""

import argparse
import atexit
import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Dict, Optional, Sequence

import torch

if TYPE_CHECKING:
    from espnet_speechlm_plugin.model.speechlm import SpeechLM

ARCH_DIR = Path(__file__).resolve().parents[1] / "arch"
MODULES = ("compressor", "encoder", "length_adapter", "projector", "decoder")

# any text will do: the stand-in tokenizer only has to be smaller than the LM's own vocabulary
_TOKENIZER_TEXTS = ["the cat sees two dogs", "die Katze sieht zwei Hunde", "il gatto vede due cani", "猫看见两只狗"]
_tokenizer_dir: Optional[str] = None


def load_index() -> Dict[str, dict]:
    """Hub name → {dir, published_params, published_as, source[, exact_params]} (``arch/index.json``)."""
    with open(ARCH_DIR / "index.json", encoding="utf-8") as f:
        return json.load(f)


def arch_path(name_or_path: str) -> str:
    """The bundled architecture folder for a known hub name, or ``name_or_path`` itself if it is a local folder."""
    index = load_index()
    if name_or_path in index:
        return str(ARCH_DIR / index[name_or_path]["dir"])
    if os.path.isfile(os.path.join(name_or_path, "config.json")):
        return name_or_path
    raise ValueError(
        f"name_or_path '{name_or_path}' is neither a bundled architecture ({', '.join(sorted(index))}) nor a local "
        f"folder with a config.json; add its published config.json under {ARCH_DIR}/<name>/ and a line to index.json"
    )


def _tokenizer() -> str:
    """A small tokenizer, trained once per process in a temporary folder."""
    global _tokenizer_dir
    if _tokenizer_dir is None:
        from espnet_speechlm_plugin.bin.make_tiny_init import train_tokenizer

        _tokenizer_dir = tempfile.mkdtemp(prefix="model_size_tok.")
        atexit.register(shutil.rmtree, _tokenizer_dir, True)
        train_tokenizer(_TOKENIZER_TEXTS, _tokenizer_dir, vocab_size=300)
    return _tokenizer_dir


def parse_config(config_path: str, *overrides: str) -> argparse.Namespace:
    """The config parsed exactly as training would (unknown keys and bad values fail here)."""
    from espnet_speechlm_plugin.tasks.speechlm import SpeechLMTask

    return SpeechLMTask.get_parser().parse_args(["--config", str(config_path), *overrides])


def meta_args(args: argparse.Namespace) -> argparse.Namespace:
    """A copy of ``args`` whose encoder/decoder come from bundled architectures, randomly initialised."""
    args = argparse.Namespace(**vars(args))
    for slot in ("encoder_conf", "decoder_conf"):
        conf = dict(getattr(args, slot) or {})
        if "name_or_path" not in conf:
            raise ValueError(f"{slot}.name_or_path is not set: the meta build needs to know which architecture")
        conf.update(name_or_path=arch_path(conf["name_or_path"]), random_init=True)
        setattr(args, slot, conf)
    args.tokenizer = _tokenizer()
    return args


def build_on_meta(config_path: str) -> "SpeechLM":
    """The config's SpeechLM with every parameter on the meta device (published architectures, no weights)."""
    return _build_on_meta(parse_config(config_path))


def _build_on_meta(args: argparse.Namespace) -> "SpeechLM":
    from espnet_speechlm_plugin.tasks.speechlm import SpeechLMTask

    with torch.device("meta"):
        model = SpeechLMTask.build_model(meta_args(args))
    # a few tensors escape the device context (HF makes w2v-BERT's masked_spec_embed with the legacy
    # torch.Tensor(n) constructor, which ignores it); move them too, so nothing real is allocated
    return model.to("meta")


def _frozen(name: str, freeze_param: Sequence[str]) -> bool:
    # the same prefix rule as ESPnet's --freeze_param
    return any(name == t or name.startswith(t + ".") for t in freeze_param)


def count_params(model: torch.nn.Module, freeze_param: Sequence[str] = ()) -> Dict[str, int]:
    """Parameters per top-level module (tied weights once), leaving out those ``freeze_param`` would freeze."""
    counts = {m: 0 for m in MODULES}
    for name, p in model.named_parameters():
        if p.requires_grad and not _frozen(name, freeze_param):
            module = name.split(".")[0]
            counts[module] = counts.get(module, 0) + p.numel()
    return counts


def stage_configs(config_path: str) -> Dict[str, str]:
    """``{"stage1": path, "stage2": path}`` for the config and its other-stage sibling, where they exist."""
    path = Path(config_path)
    match = re.match(r"stage([12])_(.+)$", path.name)
    if not match:
        return {"this config": str(path)}
    out = {}
    for stage in ("1", "2"):
        sibling = path.with_name(f"stage{stage}_{match.group(2)}")
        if sibling.exists():
            out[f"stage{stage}"] = str(sibling)
    return out


def rates_line(model: "SpeechLM") -> str:
    """The audio path's frame rates in one line, e.g. ``… → 12.5 audio embeddings/s (4× total compression)``."""
    r = model.frame_rates()
    return (f"audio: {r['features']:g} Hz fbank → {r['encoder_input']:g} Hz into the encoder → "
            f"{r['audio_embeddings']:g} audio embeddings/s ({model.compression()}× total compression)")


def report(config_path: str) -> str:
    """A table of parameters per module (total, and trainable in each stage config of the same model) and the
    audio frame rates."""
    args = parse_config(config_path)
    model = _build_on_meta(args)
    total = count_params(model)
    trainable = {stage: count_params(model, parse_config(path).freeze_param or [])
                 for stage, path in stage_configs(config_path).items()}
    cols = ["params"] + [f"{s} trainable" for s in trainable]
    lines = [f"{config_path}  (meta build: architectures from {ARCH_DIR}, no weights)",
             f"{'module':<16}" + "".join(f"{c:>20}" for c in cols)]
    for m in list(total):
        row = [total[m]] + [t[m] for t in trainable.values()]
        lines.append(f"{m:<16}" + "".join(f"{v:>20,}" for v in row))
    sums = [sum(total.values())] + [sum(t.values()) for t in trainable.values()]
    lines.append(f"{'total':<16}" + "".join(f"{v:>20,}" for v in sums))
    index = load_index()
    for slot, module in (("encoder_conf", "encoder"), ("decoder_conf", "decoder")):
        name = (getattr(args, slot) or {}).get("name_or_path")
        if name in index:
            lines.append(f"{module} {name}: {total[module]:,} parameters; published {index[name]['published_as']}")
    lines.append(rates_line(model))
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("configs", nargs="+", help="SpeechLMTask YAML configs (e.g. conf/stage1_qwen2.5-0.5b.yaml)")
    a = p.parse_args(argv)
    for i, config in enumerate(a.configs):
        try:
            print(("\n" if i else "") + report(config))
        except ValueError as e:  # an unknown architecture or a bad config value: say which config, no traceback
            p.error(f"{config}: {e}")


if __name__ == "__main__":
    main()
