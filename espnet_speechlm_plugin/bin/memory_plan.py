"""GPU memory plan of a training config: weights, gradients, optimizer states and activations, and whether it fits.

    python -m espnet_speechlm_plugin.bin.memory_plan conf/stage2_qwen2.5-0.5b.yaml [...] [--gpu_gb 80] [--out plan.json]
    python -m espnet_speechlm_plugin.bin.memory_plan --recipe_dir egs2/iwslt25_if/s2t1 --out plan.json
        (no config given: every conf/stage*_*.yaml of the repository and of the recipe)

Where it sits: beside training, like ``bin/model_size``; the rehearsal of the IWSLT recipe writes its table into
``exp/rehearsal/report.md``. How each figure is obtained:

- **weights, gradients, optimizer states** — counted, not estimated: the config's model is built on torch's meta
  device from the bundled architectures (``arch/``, as ``model_size`` does), ``freeze_param`` and LoRA applied as
  training applies them, and every parameter counted by dtype and trainability. Plain PyTorch (ESPnet's trainer,
  DDP): weights in their dtype (float32: ``use_amp`` autocasts compute only), float32 gradients and two float32
  AdamW moments per trainable parameter, plus one temporary copy of the largest parameter group while torch's
  foreach AdamW steps (``shard_optimizer``: the moments divided over the GPUs, ZeRO-1). DeepSpeed
  (``use_deepspeed``, its JSON's ``bf16``/``zero_optimization.stage``): bf16 weights and gradients, float32 master
  weights and moments, the ZeRO stage's parts divided by the GPUs.
- **activations** — measured, at real width: the same model with 1 or 2 encoder and decoder layers is built on CPU
  and one training forward runs under bf16 autocast (as ``use_amp`` on a GPU) with a saved-tensors hook that adds
  up the distinct storages autograd keeps for backward (parameters excluded; autocast's bf16 weight copies and
  the fp32 logits included). From batches of 1 and 2 equal-length utterances at 3 lengths, the bytes per layer,
  per utterance and per batch are separated (each is exactly linear in layers and batch size, and at most
  quadratic in length), then scaled to the full depth and to the config's batch: ``batch_bins`` filled with
  utterances of the mix's ``max_duration`` (the worst case: the padded size is what ``batch_bins`` caps, and
  attention grows with length). Text per utterance: a 3-token prompt and ``--text_tokens_per_second`` target
  tokens per second of audio (4: English speech is ~2.5 words/s, ~1.3 Qwen tokens per word). Gradient
  checkpointing is measured as it acts (HF checkpoints only modules in training mode: a frozen LM runs in eval
  mode, so stage 1 keeps every layer's activations); its recomputation adds one layer's full activations.
- **peak** = weights + gradients + optimizer + max(activations, optimizer-step temporary). It **fits** if the peak
  plus 10 % allocator reserve plus 1 GB of CUDA context is within the GPU. Otherwise the plan says what would fit:
  the largest ``batch_bins`` (raise ``accum_grad`` to keep the update), LoRA, or sharding over N GPUs
  (``--shard_optimizer true``: ZeRO-1; DeepSpeed ZeRO-2/3).

GPUs per config: the ``--ngpu N`` of the command in its header comment (1 if none); ``batch_bins`` is the batch of
all GPUs together, as ESPnet splits it.
"""
from __future__ import annotations

import argparse
import copy
import gc
import glob
import json
import logging
import math
import re
import shutil
import tempfile
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import torch

from espnet_speechlm_plugin.bin.model_size import _build_on_meta, _frozen, arch_path, meta_args, parse_config

GB = 1e9
REPO = Path(__file__).resolve().parents[2]
FBANK_DIM, FRAME_RATE = 160, 50  # numel bins per frame, frames per second of the 160-dim fbank
PROMPT_TOKENS = 3  # <|lang|><|task|> and a length hint or a short question
CUDA_CONTEXT_GB, RESERVE = 1.0, 0.10
# longer encoder inputs are measured shorter and extrapolated (exactly quadratic); 600 frames (12 s at 50 Hz)
# gave per-utterance activations within 2 % of 1,200 frames for Qwen2.5-0.5B stage 2, in half the time
MAX_MEASURED_ENCODER_FRAMES = 600


# ------------------------------------------------------------------------------------------------- static counts
def _header_ngpu(config_path: str) -> int:
    with open(config_path, encoding="utf-8") as f:
        header = "".join(line for line in f if line.startswith("#"))
    found = re.search(r"--ngpu (\d+)", header)
    return int(found.group(1)) if found else 1


def _mix_max_duration(config_path: str, recipe_dir: Optional[Path]) -> float:
    """The training mix's max_duration for this config's stage (stage1_* → train_mix_stage1.yaml …)."""
    import yaml

    stage = re.match(r"stage([12])_", Path(config_path).name)
    candidates = [Path(config_path).parent]
    if recipe_dir:
        candidates.append(Path(recipe_dir) / "conf")
    candidates.append(REPO / "egs2" / "iwslt25_if" / "s2t1" / "conf")
    for folder in candidates:
        mix = folder / f"train_mix_stage{stage.group(1) if stage else 2}.yaml"
        if mix.exists():
            return float(yaml.safe_load(mix.read_text(encoding="utf-8")).get("max_duration") or 30.0)
    return 30.0


def _deepspeed(args, config_path: str) -> Optional[dict]:
    if not getattr(args, "use_deepspeed", False):
        return None
    path = Path(args.deepspeed_config)
    for base in (Path.cwd(), Path(config_path).parent.parent, Path(config_path).parent):
        if (base / path).exists():
            return json.loads((base / path).read_text(encoding="utf-8"))
    raise FileNotFoundError(f"{config_path}: deepspeed_config {args.deepspeed_config} not found")


def count(model: torch.nn.Module, freeze_param: Sequence[str]) -> Dict[str, Dict[str, int]]:
    """{dtype: {"trainable": n, "frozen": m}} over distinct parameters, with ``freeze_param`` applied."""
    out: Dict[str, Dict[str, int]] = {}
    for name, p in model.named_parameters():
        train = p.requires_grad and not _frozen(name, freeze_param)
        d = out.setdefault(str(p.dtype).replace("torch.", ""), {"trainable": 0, "frozen": 0})
        d["trainable" if train else "frozen"] += p.numel()
    return out


def _largest_group(args, model, freeze_param) -> int:
    """Parameters of the largest optimizer group (``build_optimizers``' grouping)."""
    from espnet_speechlm_plugin.tasks.speechlm import SpeechLMTask

    for name, p in model.named_parameters():
        if _frozen(name, freeze_param):
            p.requires_grad_(False)
    groups = SpeechLMTask.build_optimizers(args, model)[0].param_groups
    return max((sum(p.numel() for p in g["params"]) for g in groups), default=0)


# ------------------------------------------------------------------------------------------------- activations
class _SavedBytes:
    """Distinct storages autograd saves for backward during a forward, excluding ``exclude`` (parameters)."""

    def __init__(self, exclude: set):
        self.exclude, self.storages = exclude, {}

    def pack(self, t):
        if isinstance(t, torch.Tensor) and t.device.type != "meta":
            s = t.untyped_storage()
            if s.data_ptr() not in self.exclude:
                self.storages[s.data_ptr()] = s.nbytes()
        # a detached alias: handing autograd back the saved tensor itself (an output that refers to its own
        # grad_fn) makes a reference cycle in C++ that outlives the graph, one leaked activation set per forward
        return t.detach() if isinstance(t, torch.Tensor) else t

    @staticmethod
    def unpack(t):
        return t

    @property
    def total(self) -> int:
        return sum(self.storages.values())


def _reduced_args(args, enc_layers: int, dec_layers: int, tmp: Path):
    """``args`` with the encoder and decoder cut to ``enc_layers``/``dec_layers`` layers (widths unchanged)."""
    args = meta_args(args)  # bundled architectures, random_init
    enc = copy.deepcopy(args.encoder_conf)
    enc["config_overrides"] = dict(enc.get("config_overrides") or {}, num_hidden_layers=enc_layers)
    args.encoder_conf = enc
    dec = copy.deepcopy(args.decoder_conf)
    src = Path(arch_path(dec["name_or_path"])) / "config.json"
    config = json.loads(src.read_text(encoding="utf-8"))
    config["num_hidden_layers"] = dec_layers
    config.pop("layer_types", None)  # derived from the depth again (transformers checks that they agree)
    if "max_window_layers" in config:
        config["max_window_layers"] = min(config["max_window_layers"], dec_layers)
    folder = tmp / f"decoder_{dec_layers}"
    folder.mkdir(exist_ok=True)
    (folder / "config.json").write_text(json.dumps(config), encoding="utf-8")
    dec["name_or_path"] = str(folder)
    args.decoder_conf = dec
    return args


def _materialize_tensor_attributes(model: torch.nn.Module) -> None:
    """Tensors that modules keep as plain attributes (neither parameter nor buffer: e.g. the ``original_inv_freq``
    of Phi-3's long-RoPE rotary embedding) stay on the meta device through ``to_empty``; give them zeroed CPU
    storage too."""
    for module in model.modules():
        for name, value in list(vars(module).items()):
            if isinstance(value, torch.Tensor) and value.is_meta:
                setattr(module, name, torch.zeros(value.shape, dtype=value.dtype))


def _forward_bytes(model, vocab: int, batch: int, seconds: float, tokens_per_second: float) -> int:
    frames = int(round(seconds * FRAME_RATE))
    gen = torch.Generator().manual_seed(0)
    speech = torch.randn(batch, frames, FBANK_DIM, generator=gen)
    lengths = torch.full((batch,), frames, dtype=torch.long)
    n_text = max(1, int(round(seconds * tokens_per_second)))
    prompt = torch.randint(0, vocab, (batch, PROMPT_TOKENS), generator=gen)
    text = torch.randint(0, vocab, (batch, n_text), generator=gen)
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    saved = _SavedBytes(params)
    torch.manual_seed(0)
    with torch.autograd.graph.saved_tensors_hooks(saved.pack, saved.unpack), \
            torch.autocast("cpu", dtype=torch.bfloat16):
        loss = model(speech=speech, speech_lengths=lengths, prompt=prompt,
                     prompt_lengths=torch.full((batch,), PROMPT_TOKENS), text=text,
                     text_lengths=torch.full((batch,), n_text))[0]
    del loss
    return saved.total


def _quadratic(xs: Sequence[float], ys: Sequence[float], x: float) -> float:
    """The parabola through three points, at ``x`` (Lagrange form)."""
    total = 0.0
    for i, (xi, yi) in enumerate(zip(xs, ys)):
        term = yi
        for j, xj in enumerate(xs):
            if j != i:
                term *= (x - xj) / (xi - xj)
        total += term
    return total


def measure_activations(args, max_duration: float, tokens_per_second: float, enc_layers: int,
                        dec_layers: int) -> dict:
    """Activation bytes of one training forward at the full depth: {per_utterance, per_batch} at ``max_duration``
    (see the module docstring), and the recomputation peak of gradient checkpointing."""
    from espnet_speechlm_plugin.tasks.speechlm import SpeechLMTask

    compress = 2 ** int((args.compressor_conf or {}).get("num_layers", 0)) if args.compressor else 1
    longest = min(max_duration, MAX_MEASURED_ENCODER_FRAMES * compress / FRAME_RATE)
    durations = [longest / 4, longest / 2, longest]
    runs: Dict[tuple, Dict[tuple, int]] = {}
    recompute: Dict[tuple, Dict[int, int]] = {}
    tmp = Path(tempfile.mkdtemp(prefix="memory_plan."))
    checkpointed_parts = set()  # "encoder", "decoder": the parts HF checkpoints in this config
    try:
        for le, ld in ((1, 1), (2, 1), (1, 2)):
            # built on meta, then given real (zeroed) storage: sizes do not depend on values, and a random
            # init of a 200k-row embedding would cost more than the measurement
            with torch.device("meta"):
                model = SpeechLMTask.build_model(_reduced_args(args, le, ld, tmp))
            model = model.to_empty(device="cpu")
            with torch.no_grad():
                for t in list(model.parameters()) + list(model.buffers()):
                    t.zero_()
            _materialize_tensor_attributes(model)
            vocab = model.decoder.lm.get_input_embeddings().num_embeddings
            for name, p in model.named_parameters():
                if _frozen(name, args.freeze_param or []):
                    p.requires_grad_(False)
            model.train()
            # HF checkpoints only modules in training mode (a frozen one runs in eval)
            checkpointed = {part: m for part, m in (("encoder", model.encoder.model), ("decoder", model.decoder.lm))
                            if getattr(m, "is_gradient_checkpointing", False) and m.training}
            checkpointed_parts |= set(checkpointed)
            runs[(le, ld)] = {(b, d): _forward_bytes(model, vocab, b, d, tokens_per_second)
                              for b in (1, 2) for d in durations}
            if checkpointed:
                for m in checkpointed.values():
                    m.gradient_checkpointing_disable()
                recompute[(le, ld)] = {b: _forward_bytes(model, vocab, b, longest, tokens_per_second)
                                       for b in (1, 2)}
            del model
            gc.collect()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    def full(b, d):  # linear in each depth
        base = runs[(1, 1)][(b, d)]
        return (base + (enc_layers - 1) * (runs[(2, 1)][(b, d)] - base)
                + (dec_layers - 1) * (runs[(1, 2)][(b, d)] - base))

    per_utt = [full(2, d) - full(1, d) for d in durations]
    per_batch = [full(1, d) - u for d, u in zip(durations, per_utt)]
    out = dict(per_utterance=max(0.0, _quadratic(durations, per_utt, max_duration)),
               per_batch=max(0.0, _quadratic(durations, per_batch, max_duration)),
               measured_seconds=[round(d, 2) for d in durations], gradient_checkpointing=bool(checkpointed_parts),
               recompute_per_utterance=0.0, recompute_per_batch=0.0)
    if recompute:
        # the backward pass recomputes one checkpointed layer at a time: the larger of one checkpointed encoder
        # layer and one checkpointed decoder layer, measured without checkpointing at the longest measured length,
        # scaled to max_duration
        base = recompute[(1, 1)]
        deeper = {"encoder": (2, 1), "decoder": (1, 2)}
        layers = [{b: recompute[deeper[part]][b] - base[b] for b in (1, 2)} for part in sorted(checkpointed_parts)]
        scale = max_duration / longest
        out["recompute_per_utterance"] = max(max(0, layer[2] - layer[1]) for layer in layers) * scale
        out["recompute_per_batch"] = max(max(0, 2 * layer[1] - layer[2]) for layer in layers) * scale
    return out


# ------------------------------------------------------------------------------------------------- the plan
def plan_config(config_path: str, gpu_gb: float = 80.0, tokens_per_second: float = 4.0,
                recipe_dir: Optional[Path] = None, measure: bool = True, _cache: Optional[dict] = None) -> dict:
    """The memory plan of one config (see the module docstring); ``measure=False`` leaves activations out."""
    args = parse_config(config_path)
    freeze = list(args.freeze_param or [])
    model = _build_on_meta(args)
    counts = count(model, freeze)
    trainable = sum(d["trainable"] for d in counts.values())
    frozen = sum(d["frozen"] for d in counts.values())
    bytes_of = {k: torch.empty(0, dtype=getattr(torch, k)).element_size() for k in counts}
    weights = sum((d["trainable"] + d["frozen"]) * bytes_of[k] for k, d in counts.items())
    largest = _largest_group(meta_args(args), model, freeze)
    ngpu = _header_ngpu(config_path)
    ds = _deepspeed(args, config_path)
    notes = []
    zero = 0
    if ds:
        zero = int((ds.get("zero_optimization") or {}).get("stage", 0))
        bf16 = bool((ds.get("bf16") or {}).get("enabled"))
        wb = 2 if bf16 else 4
        shard = lambda x, stage: x / ngpu if zero >= stage else x  # noqa: E731
        weights = shard((trainable + frozen) * wb, 3)
        grads = shard(trainable * wb, 2)
        optimizer = shard(trainable * ((4 if bf16 else 0) + 8), 1)  # fp32 master weights + two AdamW moments
        step_temp = 0.0
        notes.append(f"DeepSpeed ZeRO-{zero}{' bf16' if bf16 else ''} over {ngpu} GPU(s): its parts are divided by "
                     "the GPUs")
    else:
        grads = sum(d["trainable"] * bytes_of[k] for k, d in counts.items())
        optimizer = 2 * grads
        step_temp = largest * 4
        if getattr(args, "shard_optimizer", False) and ngpu > 1:  # ZeRO-1: each rank keeps 1/N of the moments
            optimizer /= ngpu
            notes.append(f"shard_optimizer (ZeRO-1) over {ngpu} GPUs: optimizer states divided by the GPUs")
    max_dur = _mix_max_duration(config_path, recipe_dir)
    frames = int(round(max_dur * FRAME_RATE))
    per_gpu_bins = args.batch_bins / ngpu if args.batch_type in ("numel", "length") else None
    utts = max(1, int(per_gpu_bins // (frames * FBANK_DIM))) if per_gpu_bins else int(args.batch_size / ngpu)
    entry = dict(config=_short(config_path), path=str(config_path), gpu_gb=gpu_gb, ngpu=ngpu,
                 encoder=args.encoder_conf.get("name_or_path"), decoder=args.decoder_conf.get("name_or_path"),
                 trainable_params=trainable, frozen_params=frozen, params_by_dtype=counts,
                 batch=dict(batch_type=args.batch_type, batch_bins=args.batch_bins, accum_grad=args.accum_grad,
                            max_duration_s=max_dur, utterances_per_batch_per_gpu=utts,
                            text_tokens_per_utterance=PROMPT_TOKENS + int(round(max_dur * tokens_per_second))),
                 largest_param_group=largest, notes=notes)
    acts = 0.0
    if measure:
        key = json.dumps([args.encoder_conf, args.decoder_conf, args.compressor, args.compressor_conf,
                          args.length_adapter, args.length_adapter_conf, args.model_conf, freeze, max_dur,
                          tokens_per_second], sort_keys=True, default=str)
        cache = _cache if _cache is not None else {}
        if key not in cache:
            cfg_enc = json.loads(Path(arch_path(args.encoder_conf["name_or_path"]), "config.json").read_text())
            cfg_dec = json.loads(Path(arch_path(args.decoder_conf["name_or_path"]), "config.json").read_text())
            cache[key] = measure_activations(args, max_dur, tokens_per_second, cfg_enc["num_hidden_layers"],
                                             cfg_dec["num_hidden_layers"])
        m = cache[key]
        acts = m["per_batch"] + utts * m["per_utterance"] + m["recompute_per_batch"] + utts * m[
            "recompute_per_utterance"]
        entry["activations"] = dict(m, method="measured on CPU under bf16 autocast at real width, 1-2 layers, "
                                              "scaled to full depth and batch")
        if getattr(args, "use_amp", False) is False and not ds:
            notes.append("use_amp is off: activations are measured under bf16 autocast all the same")
        dec_gc = bool((args.decoder_conf or {}).get("gradient_checkpointing"))
        if dec_gc and not m["gradient_checkpointing"]:
            notes.append("gradient_checkpointing is set but inactive where the LM is frozen (HF checkpoints only "
                         "modules in training mode; a frozen LM runs in eval mode)")
    peak = weights + grads + optimizer + max(acts, step_temp)
    budget = (gpu_gb - CUDA_CONTEXT_GB) * GB / (1 + RESERVE)
    entry["gb"] = dict(weights=weights / GB, gradients=grads / GB, optimizer=optimizer / GB,
                       optimizer_step_temp=step_temp / GB, activations=acts / GB, peak=peak / GB,
                       budget=budget / GB)
    entry["fits"] = bool(measure) and peak <= budget
    if measure:
        entry["advice"] = _advice(entry, weights, grads, optimizer, step_temp, acts, budget, config_path, utts,
                                  frames, ngpu)
    return entry


def _short(path) -> str:
    p = Path(path).absolute()
    try:
        return str(p.relative_to(REPO))
    except ValueError:
        return str(path)


def _advice(entry, weights, grads, optimizer, step_temp, acts, budget, config_path, utts, frames, ngpu) -> str:
    if entry["fits"]:
        return ""
    per_utt = (acts - entry["activations"]["per_batch"] - entry["activations"]["recompute_per_batch"]) / max(utts, 1)
    options = []
    room = budget - weights - grads - optimizer - max(step_temp, entry["activations"]["per_batch"])
    if per_utt > 0 and room > per_utt:
        n = int(room // per_utt)
        options.append(f"batch_bins ≤ {n * frames * FBANK_DIM * ngpu:,} ({n} utterances of max_duration per GPU) "
                       f"with accum_grad × {math.ceil(utts / n)}")
    lora = Path(config_path).with_name(Path(config_path).stem + "_lora.yaml")
    if lora.exists():
        options.append(f"LoRA ({lora.name})")
    # ZeRO-1 (--shard_optimizer true) divides the optimizer states over N GPUs, DeepSpeed ZeRO-2 the gradients
    # too, ZeRO-3 the weights too
    for stage, sharded, kept in ((1, optimizer, weights + grads), (2, grads + optimizer, weights),
                                 (3, grads + optimizer + weights, 0.0)):
        left = budget - kept - max(acts, step_temp)
        if left > 0 and sharded > 0:
            how = "--shard_optimizer true (ZeRO-1)" if stage == 1 else f"DeepSpeed ZeRO-{stage}"
            options.append(f"{how} over ≥ {max(2, math.ceil(sharded / left))} GPUs")
            break
    return "; or ".join(options) if options else "does not fit even sharded: shorter max_duration or smaller batch"


def default_configs(recipe_dir: Optional[Path]) -> List[str]:
    """Every conf/stage*_*.yaml of the repository and of ``recipe_dir``; a recipe's link to a shared config
    counts once (under the shared name)."""
    found = sorted(glob.glob(str(REPO / "conf" / "stage*_*.yaml")))
    if recipe_dir:
        found += sorted(glob.glob(str(Path(recipe_dir) / "conf" / "stage*_*.yaml")))
    seen, out = set(), []
    for path in found:
        real = Path(path).resolve()
        if real not in seen:
            seen.add(real)
            out.append(path)
    return out


def plan(configs: Sequence[str], gpu_gb: float = 80.0, tokens_per_second: float = 4.0,
         recipe_dir: Optional[Path] = None, measure: bool = True) -> List[dict]:
    cache: dict = {}
    out = []
    for config in configs:
        try:
            entry = plan_config(config, gpu_gb, tokens_per_second, recipe_dir, measure, cache)
        except ValueError as e:  # e.g. a tiny demo config: its architecture is made at run time, not bundled
            found = re.search(r"name_or_path '([^']+)' is neither a bundled architecture", str(e))
            why = (f"no plan: its model ({found.group(1)}) is made at run time, not a bundled architecture"
                   if found else str(e).split(";")[0])
            entry = dict(config=_short(config), path=str(config), gpu_gb=gpu_gb, error=why)
        logging.info(f"{entry['config']}: " + (f"peak {entry['gb']['peak']:.1f} GB, fits {entry['fits']}"
                                               if "gb" in entry else entry["error"]))
        out.append(entry)
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("configs", nargs="*", help="training configs (default: every conf/stage*_*.yaml)")
    p.add_argument("--recipe_dir", type=Path, default=None, help="also plan <recipe_dir>/conf/stage*_*.yaml")
    p.add_argument("--gpu_gb", type=float, default=80.0)
    p.add_argument("--text_tokens_per_second", type=float, default=4.0)
    p.add_argument("--no_activations", action="store_true", help="counts only (fast): no CPU measurement")
    p.add_argument("--out", type=Path, default=None, help="write the plan as JSON here")
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    torch.set_num_threads(1)
    configs = a.configs or default_configs(a.recipe_dir)
    result = plan(configs, a.gpu_gb, a.text_tokens_per_second, a.recipe_dir, not a.no_activations)
    if a.out:
        tmp = a.out.with_name(a.out.name + ".tmp")
        tmp.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
        tmp.replace(a.out)
    from espnet_speechlm_plugin.bin.rehearsal_report import _plan_rows

    print("\n".join(_plan_rows(result)))


if __name__ == "__main__":
    main()
