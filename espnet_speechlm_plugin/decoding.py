"""The inference core: requests (features + a prompt line) in, hypotheses out — the one decoding loop of the package.

Where it sits: above the model and the task (``model/generate.py`` does the batched KV-cache search,
``SpeechLMTask`` gives the tokenizer, preprocess and collate of training), below every decoding entry point:
recipe stage 5 (``bin/decode.py``), the task-confusion diagnostic (``bin/diagnose.py``), the Python API
(``SpeechLMInference`` in ``zoo/inference.py``, its CLI ``bin/speechlm_inference.py``) and the decoding benchmarks
(``bench/run.py``). They all take the same decoding options (:func:`add_decode_arguments`).

A :class:`Request` is one prompt asked of one recording. The recording is usually one array of fbank features;
a long recording may come as several pieces (cut in pauses by ``features/segment.py``): each piece goes through
the audio encoder on its own, and their audio embeddings are joined in time order into one prefix, so the prompt
(e.g. a question) is asked once of the whole recording. Requests are decoded longest first in batches of
``batch_size`` (similar lengths together: little padding); an item decodes the same alone or in any batch.
"""

from __future__ import annotations

import argparse
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Union

import numpy as np
import torch

from espnet_speechlm_plugin.data.shards import DEFAULT_BATCH_SIZE, decode_batches, read_lengths
from espnet_speechlm_plugin.model.generate import GenerateConfig, encode_audio, generate, generate_from_audio, \
    length_budget
from espnet_speechlm_plugin.tasks.speechlm import SpeechLMTask

Features = Union[np.ndarray, Callable[[], np.ndarray]]  # (T, 160) fbank, or a zero-argument loader of it


@dataclass
class Request:
    """One prompt ``"lang task [question]"`` asked of one recording given as ``pieces`` of fbank features in time
    order (usually one). ``frames``: the total number of feature frames, to sort by length without loading lazy
    pieces (default: counted from the arrays; lazy pieces without it count 0 and keep their order)."""

    key: str
    prompt: str
    pieces: Sequence[Features]
    frames: Optional[int] = None

    def length(self) -> int:
        if self.frames is not None:
            return self.frames
        return sum(len(p) for p in self.pieces if not callable(p))

    def load(self) -> List[np.ndarray]:
        return [p() if callable(p) else p for p in self.pieces]


# ---- the decoding options every entry point takes ---------------------------------------------------------------
def add_decode_arguments(parser: argparse.ArgumentParser,
                         batch_size: int = DEFAULT_BATCH_SIZE) -> argparse.ArgumentParser:
    """The decoding options shared by ``bin/decode``, ``bin/diagnose`` and ``bin/speechlm_inference``."""
    d = GenerateConfig
    group = parser.add_argument_group("decoding (defaults in brackets)")

    def add(name, help, **kwargs):
        group.add_argument(name, help=help + " [%(default)s]", **kwargs)

    add("--batch_size", type=int, default=batch_size, help="utterances (requests) decoded together")
    add("--beam_size", type=int, default=d.beam_size,
        help="1 = greedy; K > 1 = beam search with K beams per utterance (~K times the compute)")
    add("--length_penalty", type=float, default=d.length_penalty,
        help="beam search ranks finished hypotheses by sum(log p) / length ** this (0 = raw sum)")
    add("--max_new_tokens", type=int, default=d.max_new_tokens, help="length budget cap per utterance")
    add("--min_new_tokens", type=int, default=d.min_new_tokens,
        help="length budget = min(max_new_tokens, min_new_tokens + tokens_per_second x audio seconds)")
    add("--tokens_per_second", type=float, default=d.tokens_per_second, help="see --min_new_tokens")
    add("--repeat_ngram", type=int, default=d.repeat_ngram,
        help="repetition guard: stop an output whose last n-gram (n <= this) repeats --repeat_times times")
    add("--repeat_times", type=int, default=d.repeat_times, help="see --repeat_ngram")
    add("--encoder_batch_size", type=int, default=d.encoder_batch_size,
        help="audio items encoded per call (CPU: small chunks stay in cache; 0 = the whole batch, for GPUs)")
    add("--device", default="cpu", help="cpu, cuda or cuda:N")
    add("--nthreads", type=int, default=1, help="torch CPU threads (1 is robust on shared machines)")
    return parser


def generate_config(args: argparse.Namespace) -> GenerateConfig:
    """The :class:`GenerateConfig` of parsed :func:`add_decode_arguments` options (checked: one sentence on error)."""
    for name in ("batch_size", "beam_size", "max_new_tokens"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name} must be >= 1, got {getattr(args, name)}")
    return GenerateConfig(max_new_tokens=args.max_new_tokens, min_new_tokens=args.min_new_tokens,
                          tokens_per_second=args.tokens_per_second, repeat_ngram=args.repeat_ngram,
                          repeat_times=args.repeat_times, beam_size=args.beam_size,
                          length_penalty=args.length_penalty, encoder_batch_size=args.encoder_batch_size)


# ---- the decoder ------------------------------------------------------------------------------------------------
class BatchDecoder:
    """A SpeechLM with its config's tokenizer, preprocess and collate (those of training) and decoding options."""

    def __init__(self, model, train_args: argparse.Namespace, config: GenerateConfig = GenerateConfig(),
                 batch_size: int = DEFAULT_BATCH_SIZE, device: str = "cpu"):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.model, self.train_args, self.config = model.to(device).eval(), train_args, config
        self.batch_size, self.device = batch_size, device
        self.tokenizer = SpeechLMTask.tokenizer(train_args)
        self.preprocess = SpeechLMTask.build_preprocess_fn(train_args, train=False)
        self.collate = SpeechLMTask.build_collate_fn(train_args, train=False)

    @classmethod
    def from_args(cls, model, train_args: argparse.Namespace, args: argparse.Namespace) -> "BatchDecoder":
        """From parsed :func:`add_decode_arguments` options (also sets torch's CPU threads)."""
        torch.set_num_threads(args.nthreads)
        return cls(model, train_args, generate_config(args), args.batch_size, args.device)

    def text(self, ids: List[int]) -> str:
        """Token ids → one line of text (special tokens dropped, whitespace runs and newlines collapsed)."""
        return " ".join(self.tokenizer.decode(ids, skip_special_tokens=True).split())

    def decode(self, requests: Iterable[Request], progress: bool = False, desc: str = "decoding") -> Dict[str, str]:
        """{request key: hypothesis text}."""
        return {k: self.text(ids) for k, ids in self.decode_ids(requests, progress, desc).items()}

    def decode_ids(self, requests: Iterable[Request], progress: bool = False,
                   desc: str = "decoding") -> Dict[str, List[int]]:
        """{request key: token ids without <eos>}, decoding longest first in batches of ``batch_size`` (the batches
        of ``data.shards.decode_batches``, which sharded decoding splits by)."""
        from tqdm import tqdm

        by_key: Dict[str, Request] = {}
        for r in requests:
            if r.key in by_key:
                raise ValueError(f"request key '{r.key}' is given more than once")
            by_key[r.key] = r
        batches = decode_batches(list(by_key), {k: r.length() for k, r in by_key.items()}, self.batch_size)
        out: Dict[str, List[int]] = {}
        for keys in tqdm(batches, desc=desc, unit="batch", disable=not progress):
            out.update(zip(keys, self._decode_batch([by_key[k] for k in keys])))
        return out

    def _decode_batch(self, batch: List[Request]) -> List[List[int]]:
        pieces = [r.load() for r in batch]
        for r, feats in zip(batch, pieces):
            if not feats:
                raise ValueError(f"request '{r.key}' has no audio")
        prompts = [(r.key, self.preprocess(r.key, {"prompt": r.prompt})) for r in batch]  # checked, as in stage 5
        _, p = self.collate(prompts)
        speech = [(r.key, {"speech": np.asarray(f, dtype=np.float32)}) for r, feats in zip(batch, pieces)
                  for f in feats]
        _, s = self.collate(speech)
        dev = self.device
        prompt, prompt_lengths = p["prompt"].to(dev), p["prompt_lengths"].to(dev)
        speech, speech_lengths = s["speech"].to(dev), s["speech_lengths"].to(dev)
        if all(len(f) == 1 for f in pieces):
            return generate(self.model, speech, speech_lengths, prompt, prompt_lengths, self.config)
        # pieces of one recording: encoded one by one, their audio embeddings joined in time order
        with torch.no_grad():
            audio, audio_lengths = encode_audio(self.model, speech, speech_lengths, self.config.encoder_batch_size)
        joined, frames, row = [], [], 0
        for feats in pieces:
            n = audio_lengths[row: row + len(feats)].tolist()
            joined.append(torch.cat([audio[row + j, : n[j]] for j in range(len(feats))]))  # (sum n, H_lm)
            frames.append(int(speech_lengths[row: row + len(feats)].sum()))
            row += len(feats)
        lengths = torch.tensor([len(x) for x in joined], device=audio.device)
        audio = torch.nn.utils.rnn.pad_sequence(joined, batch_first=True)  # (B, max sum n, H_lm)
        budget = length_budget(self.config, torch.tensor(frames, device=audio.device))
        return generate_from_audio(self.model, audio, lengths, prompt, prompt_lengths, budget, self.config)


# ---- a data dir as requests -------------------------------------------------------------------------------------
def data_dir_requests(data_dir: Union[str, Path], prompt_override: Optional[str] = None,
                      keys: Optional[Sequence[str]] = None) -> List[Request]:
    """One request per line of ``data_dir/prompt`` (``utt lang task [question]``; only the utterances ``keys``
    names, when given), features read lazily from ``feats.scp``, lengths from ``speech_shape`` when there is one;
    ``prompt_override`` replaces every prompt."""
    import kaldiio

    from espnet_speechlm_plugin.data.kaldi import read_kaldi_text

    data_dir = Path(data_dir)
    feats = kaldiio.load_scp(str(data_dir / "feats.scp"))
    prompts = read_kaldi_text(data_dir / "prompt")
    if keys is not None:  # one job of sharded decoding: these utterances, in the prompt file's order
        unknown = sorted(set(keys) - set(prompts))
        if unknown:
            raise ValueError(f"the key file names {len(unknown)} utterances that {data_dir}/prompt does not have, "
                             f"e.g. '{unknown[0]}'")
        wanted = set(keys)
        prompts = {u: p for u, p in prompts.items() if u in wanted}
    missing = sorted(set(prompts) - set(feats.keys()))
    if missing:
        raise ValueError(f"{data_dir}/feats.scp has no features for {len(missing)} utterances of prompt, "
                         f"e.g. '{missing[0]}': rerun the feature stage")
    lengths = read_lengths(data_dir)
    if not lengths:
        logging.info(f"{data_dir}/speech_shape not found: decoding in the order of {data_dir / 'prompt'}")

    def loader(utt: str) -> Callable[[], np.ndarray]:
        return lambda: feats[utt]

    return [Request(u, prompt_override or p, [loader(u)], lengths.get(u, 0)) for u, p in prompts.items()]
