"""SpeechLMTask: how ESPnet builds, feeds and optimises a SpeechLM (the model itself is in model/speechlm.py).

Data (one triple each): ``feats.scp,speech,kaldi_ark`` · ``prompt,prompt,text`` · ``text,text,text``.
Pluggable parts are ClassChoices slots: ``--encoder``, ``--compressor``, ``--length_adapter`` (not ``adapter``:
AbsTask owns ``--adapter`` for LoRA), ``--decoder``. Freezing is ESPnet's ``--freeze_param``; per-module learning
rates are ``optim_conf.param_groups: {module: lr}``; ``--shard_optimizer true`` splits the optimizer state over the
DDP ranks (ZeRO stage 1; docs/multi_gpu.md). ``--train_mix <data>/<mix>.json`` (from ``bin/make_mix.py``)
replaces ESPnet's train iterator by a weighted task mix drawn per epoch (``data/mix.py``).
Entry point: ``python -m espnet_speechlm_plugin.bin.speechlm_train``.
"""

import argparse
import logging
from typing import Callable, Dict, List, Optional, Tuple

import torch
import transformers
from espnet2.tasks.abs_task import AbsTask, optim_classes
from espnet2.train.class_choices import ClassChoices
from espnet2.train.trainer import Trainer
from espnet2.utils.nested_dict_action import NestedDictAction
from espnet2.utils.types import float_or_none, str2bool, str_or_none
from torch import nn

from espnet_speechlm_plugin.data.mix import MixIterFactory, MixSpec, read_lengths
from espnet_speechlm_plugin.model.adapters import ConformerAdapter, ConvCompressor, LinearAdapter, W2VBertAdapter
from espnet_speechlm_plugin.model.hf import HFAutoEncoder, HFCausalLM, W2VBertEncoder
from espnet_speechlm_plugin.model.prompt import Collate, SpeechLMPreprocessor, load_tokenizer
from espnet_speechlm_plugin.model.speechlm import SpeechLM
from espnet_speechlm_plugin.tasks.resumable_trainer import ResumableTrainer
from espnet_speechlm_plugin.vocab import DEFAULT_LANGUAGES, validate_prompt_file

encoder_choices = ClassChoices(
    "encoder", classes=dict(w2v_bert=W2VBertEncoder, hf_auto=HFAutoEncoder), type_check=nn.Module, default="w2v_bert"
)
compressor_choices = ClassChoices(
    "compressor", classes=dict(conv1d=ConvCompressor), type_check=nn.Module, default=None, optional=True
)
length_adapter_choices = ClassChoices(
    "length_adapter",
    classes=dict(conformer=ConformerAdapter, w2v_bert_adapter=W2VBertAdapter, linear=LinearAdapter),
    type_check=nn.Module,
    default="conformer",
)
decoder_choices = ClassChoices("decoder", classes=dict(hf_causal_lm=HFCausalLM), type_check=nn.Module,
                               default="hf_causal_lm")


def _build(choices: ClassChoices, args: argparse.Namespace, **extra):
    """Build one slot; a bad ``<slot>_conf`` key becomes one sentence naming the slot and the key."""
    name = getattr(args, choices.name)
    cls = choices.get_class(name)
    if cls is None:
        return None
    conf = dict(getattr(args, f"{choices.name}_conf") or {})
    try:
        return cls(**extra, **conf)
    except TypeError as e:
        if "unexpected keyword argument" in str(e):
            raise TypeError(f"--{choices.name}_conf for '{name}': {e}".replace(cls.__init__.__qualname__ + "() ", ""))
        raise


class SpeechLMTask(AbsTask):
    num_optimizers: int = 1
    class_choices_list = [encoder_choices, compressor_choices, length_adapter_choices, decoder_choices]
    trainer = ResumableTrainer  # ESPnet's Trainer with atomic checkpoints and a repairing resume

    @classmethod
    def add_task_arguments(cls, parser: argparse.ArgumentParser):
        group = parser.add_argument_group(description="Task related")
        group.add_argument("--tokenizer", type=str_or_none, default=None,
                           help="HF tokenizer name or path (default: decoder_conf.name_or_path)")
        group.add_argument("--languages", type=str, nargs="+", default=list(DEFAULT_LANGUAGES),
                           help="Output languages; each gets a <|lang|> token")
        group.add_argument("--model_conf", action=NestedDictAction, default=dict(audio_attention="causal"),
                           help="SpeechLM options: audio_attention causal|bidirectional")
        group.add_argument("--train_mix", type=str_or_none, default=None,
                           help="<mix>.json from bin/make_mix.py: draw the train set as this weighted mix of sources, "
                           "anew each epoch (deterministic in seed and epoch), in length-bucketed batches of "
                           "--batch_bins (numel/length) or --batch_size (other batch types)")
        group.add_argument("--shard_optimizer", type=str2bool, default=False,
                           help="With DDP: each rank keeps the optimizer state (AdamW moments) of 1/N of the "
                           "parameters and broadcasts its updated share after each step (ZeRO stage 1, torch's "
                           "ZeroRedundancyOptimizer); per-module learning rates, checkpoints and resume are as "
                           "without it. Ignored in a single process")
        group = parser.add_argument_group(description="Preprocess related")
        group.add_argument("--length_hint_prob", type=float_or_none, default=0.0,
                           help="Probability of putting the target's character count after the task token (training)")
        for class_choices in cls.class_choices_list:
            class_choices.add_arguments(group)

    @classmethod
    def build_iter_factory(cls, args: argparse.Namespace, distributed_option, mode: str, kwargs: Optional[dict] = None):
        """ESPnet's iterators, except the train set of a ``--train_mix`` run: a ``MixIterFactory``."""
        if mode != "train" or not getattr(args, "train_mix", None):
            return super().build_iter_factory(args, distributed_option, mode, kwargs)
        opts = cls.build_iter_options(args, distributed_option, mode)
        for k, v in (kwargs or {}).items():
            setattr(opts, k, v)
        lengths = read_lengths(opts.shape_files, opts.batch_type)
        spec = MixSpec.load(args.train_mix).restrict(lengths)
        if opts.batch_type in ("numel", "length"):
            batch_bins, max_batch_size = opts.batch_bins, None
        else:  # sorted/folded/unsorted: a fixed number of utterances per batch
            batch_bins, max_batch_size = float("inf"), opts.batch_size
        world_size, rank = 1, 0
        if opts.distributed:
            world_size, rank = torch.distributed.get_world_size(), torch.distributed.get_rank()
        keys = {u for utts in spec.groups.values() for u in utts}
        dataset = cls.build_dataset(args, opts, keys)
        logging.info(f"[train] mix {args.train_mix}: " + ", ".join(
            f"{k} {len(v)} utts weight {spec.weights[k]:g}" for k, v in spec.groups.items())
            + f"; {spec.epoch_size} utterances per draw")
        return MixIterFactory(dataset, spec, lengths, batch_bins, seed=args.seed, max_batch_size=max_batch_size,
                              num_iters_per_epoch=opts.num_iters_per_epoch, num_workers=args.num_workers,
                              collate_fn=opts.collate_fn, pin_memory=args.ngpu > 0, world_size=world_size,
                              rank=rank)

    @classmethod
    def build_collate_fn(cls, args: argparse.Namespace, train: bool) -> Callable:
        return Collate(cls.tokenizer(args).pad_token_id)

    @classmethod
    def build_preprocess_fn(cls, args: argparse.Namespace, train: bool) -> Optional[Callable]:
        if train:  # check every prompt line before the first step, naming file and line on error
            for triples in (args.train_data_path_and_name_and_type, args.valid_data_path_and_name_and_type):
                for path, name, _ in triples or []:
                    if name == "prompt":
                        validate_prompt_file(path, args.languages)
        return SpeechLMPreprocessor(cls.tokenizer(args), args.languages, train=train,
                                    length_hint_prob=args.length_hint_prob or 0.0, seed=args.seed)

    @classmethod
    def required_data_names(cls, train: bool = True, inference: bool = False) -> Tuple[str, ...]:
        return ("speech", "prompt") if inference else ("speech", "prompt", "text")

    @classmethod
    def optional_data_names(cls, train: bool = True, inference: bool = False) -> Tuple[str, ...]:
        return ("text",) if inference else ()

    _tokenizers: Dict[Tuple, object] = {}

    @classmethod
    def tokenizer(cls, args: argparse.Namespace):
        """The decoder's tokenizer with this config's language/task tokens (``--tokenizer``, else the decoder's own);
        loaded once per (name, languages) and shared by preprocess, collate, the model and decoding."""
        name = args.tokenizer or (args.decoder_conf or {}).get("name_or_path")
        if name is None:
            raise ValueError("set --tokenizer or decoder_conf.name_or_path: the tokenizer comes from the decoder LM")
        key = (name, tuple(args.languages))
        if key not in cls._tokenizers:
            cls._tokenizers[key] = load_tokenizer(name, args.languages)
        return cls._tokenizers[key]

    @classmethod
    def build_model(cls, args: argparse.Namespace) -> SpeechLM:
        # transformers logs through its own logger: hold it to ESPnet's level (ERROR on DDP ranks other than 0)
        quiet = logging.getLogger().getEffectiveLevel()
        if quiet > transformers.logging.get_verbosity():
            transformers.logging.set_verbosity(quiet)
        tokenizer = cls.tokenizer(args)
        encoder = _build(encoder_choices, args)
        compressor = _build(compressor_choices, args, input_size=encoder.input_size())
        length_adapter = _build(length_adapter_choices, args, input_size=encoder.output_size())
        decoder = _build(decoder_choices, args, vocab_size=len(tokenizer))
        model = SpeechLM(encoder=encoder, decoder=decoder, length_adapter=length_adapter, compressor=compressor,
                         pad_id=tokenizer.pad_token_id, eos_id=tokenizer.eos_token_id, **(args.model_conf or {}))
        return model

    @classmethod
    def main_worker(cls, args: argparse.Namespace):
        # ESPnet switches to its DeepSpeedTrainer only when the task's trainer is exactly its plain Trainer
        if getattr(args, "use_deepspeed", False):
            cls.trainer = Trainer
        try:
            super().main_worker(args)
        finally:
            cls.trainer = ResumableTrainer

    @classmethod
    def build_optimizers(cls, args: argparse.Namespace, model: torch.nn.Module) -> List[torch.optim.Optimizer]:
        """One parameter group per module named in ``optim_conf.param_groups`` (its LR), plus one for the trainable
        rest at ``optim_conf.lr``; frozen parameters are left out, empty groups skipped. Keys are parameter-name
        prefixes (``decoder``, ``decoder.lm.model.embed_tokens``); a parameter goes to its longest matching key."""
        optim_class = optim_classes.get(args.optim)
        if optim_class is None:
            raise ValueError(f"--optim must be one of {list(optim_classes)}: {args.optim}")
        conf = dict(args.optim_conf)
        lrs: Dict[str, float] = {k: float(v) for k, v in (conf.pop("param_groups", None) or {}).items()}
        use_deepspeed = getattr(args, "use_deepspeed", False) and getattr(args, "distributed", False)
        if use_deepspeed:
            # ESPnet's DeepSpeedTrainer hands deepspeed.initialize model.parameters() and builds the optimizer and
            # scheduler from --deepspeed_config: one LR for everything, whatever we return here
            trainable = {k for k in lrs if any(p.requires_grad for n, p in model.named_parameters()
                                               if n == k or n.startswith(k + "."))}
            if len({lrs[k] for k in trainable} | {conf.get("lr")}) > 1:
                raise ValueError(
                    f"--use_deepspeed: ESPnet's DeepSpeed trainer takes the optimizer from {args.deepspeed_config} "
                    f"with one learning rate for all parameters, but optim_conf.param_groups asks for several "
                    f"({ {k: lrs[k] for k in sorted(trainable)} }, lr {conf.get('lr')}). Train with DDP instead "
                    "(--use_deepspeed false: per-module learning rates work; add --shard_optimizer true to split "
                    "the optimizer state over the GPUs), or use one LR (stage 1, LoRA)."
                )
        unknown = [k for k in lrs if not any(n == k or n.startswith(k + ".") for n, _ in model.named_parameters())]
        if unknown:
            modules = sorted({n.split(".")[0] for n, _ in model.named_parameters()})
            raise ValueError(f"optim_conf.param_groups names no module: {unknown}; modules are {modules}")
        groups: Dict[str, List[nn.Parameter]] = {k: [] for k in list(lrs) + ["rest"]}
        for name, param in model.named_parameters():
            if param.requires_grad:
                # the longest matching prefix wins: {decoder: …, decoder.lm.model.embed_tokens: …} works in any order
                key = max((k for k in lrs if name == k or name.startswith(k + ".")), key=len, default="rest")
                groups[key].append(param)
        param_groups = [
            dict(params=ps, lr=lrs.get(k, conf.get("lr")), name=k) for k, ps in groups.items() if ps
        ]
        for g in param_groups:
            if g["lr"] is None:
                del g["lr"]
            logging.info(f"param group {g['name']}: {sum(p.numel() for p in g['params'])} params, lr {g.get('lr')}")
        for k, v in conf.items():  # YAML 1.1 reads 1e-3 as a string; torch would fail with "'<=' not supported"
            if isinstance(v, str):
                try:
                    num = float(v)
                except ValueError:
                    continue
                raise ValueError(f"optim_conf.{k} is the string {v!r}: ESPnet reads YAML 1.1, where {v} is text; "
                                 f"write it with a dot, e.g. {num:.1e}")
        shard = getattr(args, "shard_optimizer", False)
        if shard and (use_deepspeed or not getattr(args, "distributed", False)):
            logging.info("--shard_optimizer is ignored: " + ("DeepSpeed shards as its config says" if use_deepspeed
                                                              else "one process, nothing to shard"))
            shard = False
        try:
            if shard:
                from torch.distributed.optim import ZeroRedundancyOptimizer

                # the groups (and their LRs) stay whole; each rank builds the optimizer for its share of every
                # group. Its consolidated state_dict() has the plain optimizer's layout (ResumableTrainer gathers
                # it on rank 0 before a checkpoint), so checkpoints move between sharded and unsharded runs.
                optimizer = ZeroRedundancyOptimizer(param_groups, optimizer_class=optim_class, **conf)
                mine = sum(p.numel() for g in optimizer.optim.param_groups for p in g["params"])
                logging.info(f"--shard_optimizer: this rank keeps the optimizer state of {mine} of "
                             f"{sum(p.numel() for g in param_groups for p in g['params'])} parameters")
                return [optimizer]
            return [optim_class(param_groups, **conf)]
        except TypeError as e:
            raise TypeError(f"--optim_conf for '{args.optim}': {e}") from e

    @classmethod
    def load_model(cls, config_file, model_file, device: str = "cpu") -> Tuple[SpeechLM, argparse.Namespace]:
        """Rebuild the model from ``config.yaml`` and load weights safely (``weights_only``, strict keys).

        Unlike ``build_model_from_file`` (``strict=False``), a checkpoint of another architecture is an error
        that names what does not fit.
        """
        import yaml

        with open(config_file, encoding="utf-8") as f:
            args = argparse.Namespace(**yaml.safe_load(f))
        model = cls.build_model(args)
        load_weights(model, model_file, device, described_as=str(config_file))
        return model.to(device).eval(), args


def load_weights(model: torch.nn.Module, model_file, device: str = "cpu",
                 described_as: str = "its config.yaml") -> None:
    """Load ``model_file`` into ``model`` with strict keys, executing no pickled code: safetensors, or a state dict
    (or an ESPnet ``checkpoint.pth``) read with ``torch.load(weights_only=True)``. A mismatch is one error naming
    what does not fit the model built from ``described_as`` (the config)."""
    if str(model_file).endswith(".safetensors"):
        from safetensors.torch import load_model  # handles the tied tensors save_model stored once

        try:
            load_model(model, str(model_file), strict=True, device=device)
        except RuntimeError as e:
            raise ValueError(f"{model_file} does not fit the model of {described_as}: {str(e)[:500]}") from e
        return
    state = torch.load(model_file, map_location=device, weights_only=True)
    if isinstance(state.get("model"), dict):  # checkpoint.pth holds model + optimizer + scheduler states
        state = state["model"]
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    wrong = [f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}"
             for k in own if k in state and state[k].shape != own[k].shape]
    if missing or unexpected or wrong:
        raise ValueError(
            f"{model_file} does not fit the model of {described_as}: {len(missing)} missing, "
            f"{len(unexpected)} unexpected, {len(wrong)} wrong-shaped tensors "
            f"(e.g. {(missing + unexpected + wrong)[:3]}); was it trained with another config?"
        )
    model.load_state_dict(state)
