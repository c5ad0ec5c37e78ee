"""Prompts for the model: the tokenizer with our special tokens, and data-dir lines turned into id sequences.

A training example is ``[audio] <|lang|><|task|> [question] target <eos>``; ``lang`` is the language of the output.
The data dir's ``prompt`` file holds ``utt lang task [question…]`` per line; ESPnet's ``text`` reader hands us the
value after the id (``"en answer what colour is the cat"``), which ``vocab.parse_prompt`` reads. This module builds
the prompt ids and the target ids; speechlm.py puts audio in front and masks the labels. The words themselves
(tasks, languages, special tokens) live in ``espnet_speechlm_plugin.vocab``.
"""

import random
import zlib
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np

from espnet_speechlm_plugin.vocab import (
    DEFAULT_LANGUAGES, TASKS, lang_token, parse_prompt, special_tokens, task_token,
)

EOS_FALLBACK = "<|endoftext|>"


def load_tokenizer(name_or_path: str, languages: Sequence[str] = DEFAULT_LANGUAGES, tasks: Sequence[str] = TASKS):
    """The decoder's HF tokenizer with our language/task tokens added (same ids every time: order is fixed)."""
    from transformers import AutoTokenizer

    from espnet_speechlm_plugin.model.hf import from_pretrained

    tok = from_pretrained(AutoTokenizer, name_or_path, "tokenizer")
    extra = [t for t in special_tokens(languages, tasks) if t not in tok.get_vocab()]
    if tok.eos_token is None:
        tok.add_special_tokens({"eos_token": EOS_FALLBACK})
    if extra:
        tok.add_special_tokens({"additional_special_tokens": extra}, replace_additional_special_tokens=False)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token  # only ever read at padded positions, which carry no loss
    return tok


class SpeechLMPreprocessor:
    """ESPnet preprocess function: ``(uid, {"speech", "prompt", "text"}) → numpy arrays``.

    ``prompt`` → ``[<|lang|>, <|task|>, (length hint), question ids]``; ``text`` → ``target ids + [eos]``.
    ``length_hint_prob`` (training only): with that probability put the target's character count as digits after
    the task token, as the authors' stage 1 does; the draw is seeded by (seed, utterance id), so
    it is the same in every epoch and with any number of data-loader workers.
    """

    def __init__(self, tokenizer, languages: Sequence[str] = DEFAULT_LANGUAGES, train: bool = True,
                 length_hint_prob: float = 0.0, seed: int = 0):
        self.tok = tokenizer
        self.languages = tuple(languages)
        self.train = train
        self.length_hint_prob = length_hint_prob
        self.seed = seed
        self.eos_id = tokenizer.eos_token_id
        self.special_ids: Dict[str, int] = {
            t: tokenizer.convert_tokens_to_ids(t) for t in special_tokens(self.languages)
        }

    def encode(self, text: str) -> List[int]:
        return self.tok(text, add_special_tokens=False)["input_ids"] if text else []

    def prompt_ids(self, lang: str, task: str, question: str = "", length_hint: Optional[int] = None) -> List[int]:
        ids = [self.special_ids[lang_token(lang)], self.special_ids[task_token(task)]]
        if length_hint is not None:
            ids += self.encode(str(length_hint))
        return ids + self.encode(question)

    def __call__(self, uid: str, data: Dict) -> Dict[str, np.ndarray]:
        out = dict(data)
        lang, task, question = parse_prompt(data["prompt"], self.languages, f"utterance '{uid}'")
        hint = None
        target = data.get("text")
        if self.train and target is not None and self.length_hint_prob > 0 and task != "answer":
            rng = random.Random(zlib.crc32(uid.encode()) ^ self.seed)
            if rng.random() < self.length_hint_prob:
                hint = len(target)
        out["prompt"] = np.asarray(self.prompt_ids(lang, task, question, hint), dtype=np.int64)
        if target is not None:
            out["text"] = np.asarray(self.encode(target) + [self.eos_id], dtype=np.int64)
        if "speech" in out:
            out["speech"] = np.asarray(out["speech"], dtype=np.float32)
        return out


class Collate:
    """ESPnet collate function: pads ``speech`` with 0 and id sequences with ``pad_id``, adds ``<name>_lengths``.

    (ESPnet's CommonCollateFn lives in a module whose imports reach for the network; see ESPNET_NOTES.md.)
    """

    def __init__(self, pad_id: int):
        self.pad_id = pad_id

    def __call__(self, batch: Iterable[Tuple[str, Dict[str, np.ndarray]]]):
        import torch

        uids = [u for u, _ in batch]
        items = [d for _, d in batch]
        out = {}
        for key in items[0]:
            arrays = [torch.from_numpy(np.array(d[key])) for d in items]  # a copy: kaldiio arrays are read-only
            pad = 0.0 if arrays[0].is_floating_point() else self.pad_id
            out[key] = torch.nn.utils.rnn.pad_sequence(arrays, batch_first=True, padding_value=pad)
            out[key + "_lengths"] = torch.tensor([len(a) for a in arrays], dtype=torch.long)
        return uids, out
