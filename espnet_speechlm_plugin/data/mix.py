"""Task mixing: a training set that is a weighted mix of data dirs, drawn anew each epoch, batched by length.

Where it sits in the flow:
  conf/train_mix_stage*.yaml  ──bin/make_mix.py (recipe stage 2)──▶  data/<train_set>/ (one combined data dir,
      utterance ids prefixed by source) + <mix>.json (sources, weights) + <mix>.utt2group (utterance → source)
  training (``--train_mix data/<train_set>/<mix>.json``): ``SpeechLMTask`` builds a ``MixIterFactory`` instead of
      ESPnet's sequence iterator for the train set; each epoch it draws the mix and buckets it into batches.

A mix YAML::

    max_duration: 45.0          # seconds; longer utterances are dropped (and counted) by make_mix
    min_duration: 0.5
    epoch_size: null            # utterances per epoch; null: all utterances of the mix after the caps
    train:
      - {dir: data/librispeech_en_train, task: transcribe, weight: 0.4}
      - {dir: data/covost2_en_de_train, task: translate, weight: 0.3}
    valid:                      # optional: dev dirs combined into the valid set (caps apply, no weights)
      - {dir: data/librispeech_en_dev, task: transcribe}

Weights are shares of an epoch: with ``epoch_size`` N, source s contributes ``round(N * w_s / sum(w))``
utterances to every epoch (largest-remainder rounding, so the counts add up to N). A source with fewer utterances
than its share is repeated (each pass a new permutation), a larger one is subsampled (a new subset each epoch).
Everything is a function of (seed, epoch): a resumed run, every DDP rank and every data-loader worker see the
same batches, and adding a source does not change what the others draw (each is seeded by its own name). A
subsampled source shows all its utterances, over successive epochs, before it repeats one.
"""

from __future__ import annotations

import json
import logging
import math
import zlib
from collections import Counter
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence

import numpy as np
import yaml
from espnet2.iterators.abs_iter_factory import AbsIterFactory

from espnet_speechlm_plugin.data.filter import DurationCaps

ENTRY_KEYS = {"dir", "task", "weight", "name"}
CONFIG_KEYS = {"max_duration", "min_duration", "epoch_size", "train", "valid"}
# bucket_batches sorts by length quantised to this relative width, ties in random order: batches vary from epoch
# to epoch while the lengths in one batch stay within ~1% of each other (little padding)
BUCKET_WIDTH = 0.01
_SALT_DRAW, _SALT_BUCKET = 0x6D6978, 0x627563  # keep the two random streams apart


class MixError(ValueError):
    """A bad mix config or mix file; the message names the file and the entry."""


@dataclass
class MixEntry:
    name: str  # the source's name: utterance-id prefix and group name (default: the dir's basename)
    dir: str
    task: str
    weight: float = 1.0


@dataclass
class MixConfig:
    path: str
    caps: DurationCaps
    train: List[MixEntry]
    valid: List[MixEntry] = field(default_factory=list)
    epoch_size: Optional[int] = None

    @property
    def name(self) -> str:
        return Path(self.path).stem


def _number(value, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        hint = " (YAML 1.1 reads 2e-4 as a string: write 2.0e-4)" if isinstance(value, str) else ""
        raise MixError(f"{where} must be a number, not {value!r}{hint}")
    return float(value)


def _entries(raw, path: str, part: str, weighted: bool) -> List[MixEntry]:
    from espnet_speechlm_plugin.vocab import TASKS

    if not isinstance(raw, list) or (part == "train" and not raw):
        raise MixError(f"{path}: '{part}' must be a list of {{dir, task{', weight' if weighted else ''}}} entries")
    out, names = [], {}
    for i, item in enumerate(raw, 1):
        where = f"{path}: {part} entry {i}"
        if not isinstance(item, dict):
            raise MixError(f"{where}: expected a mapping like {{dir: data/x, task: transcribe, weight: 1.0}}")
        unknown = set(item) - ENTRY_KEYS
        missing = {"dir", "task"} - set(item)
        if unknown or missing:
            raise MixError(f"{where}: " + "; ".join(
                ([f"unknown key(s) {sorted(unknown)}"] if unknown else [])
                + ([f"missing key(s) {sorted(missing)}"] if missing else [])) + f" (keys: {sorted(ENTRY_KEYS)})")
        if item["task"] not in TASKS:
            raise MixError(f"{where}: task '{item['task']}' is not one of {', '.join(TASKS)}")
        weight = _number(item.get("weight", 1.0), f"{where}: weight")
        if weighted and not (weight > 0 and math.isfinite(weight)):
            raise MixError(f"{where}: weight must be > 0, not {weight}")
        name = str(item.get("name") or Path(str(item["dir"]).rstrip("/")).name)
        if name in names:
            raise MixError(f"{where}: source name '{name}' repeats entry {names[name]} (give one a 'name:')")
        names[name] = i
        out.append(MixEntry(name=name, dir=str(item["dir"]), task=item["task"], weight=weight))
    return out


def load_mix_config(path) -> MixConfig:
    """Read and check a ``train_mix*.yaml`` (see the module docstring)."""
    path = str(path)
    with open(path, encoding="utf-8") as f:
        raw = yaml.safe_load(f)
    if not isinstance(raw, dict):
        raise MixError(f"{path}: expected a mapping with a 'train' list")
    unknown = set(raw) - CONFIG_KEYS
    if unknown:
        raise MixError(f"{path}: unknown key(s) {sorted(unknown)}; known: {sorted(CONFIG_KEYS)}")
    caps = {}
    for key in ("max_duration", "min_duration"):
        if raw.get(key) is not None:
            caps[key] = _number(raw[key], f"{path}: {key}")
    try:
        caps = DurationCaps(**caps)
    except ValueError as e:
        raise MixError(f"{path}: {e}") from None
    epoch_size = raw.get("epoch_size")
    if epoch_size is not None and (isinstance(epoch_size, bool) or not isinstance(epoch_size, int) or epoch_size < 1):
        raise MixError(f"{path}: epoch_size must be a positive number of utterances or null, not {epoch_size!r}")
    return MixConfig(path=path, caps=caps, train=_entries(raw.get("train"), path, "train", True),
                     valid=_entries(raw.get("valid") or [], path, "valid", False), epoch_size=epoch_size)


def _rng(*key: int) -> np.random.Generator:
    return np.random.default_rng([int(k) & 0xFFFFFFFF for k in key])


def quotas(weights: Mapping[str, float], size: int) -> Dict[str, int]:
    """Utterances per source in an epoch of ``size``: proportional to the weights, largest remainder first."""
    total = sum(weights.values())
    exact = {k: size * w / total for k, w in weights.items()}
    out = {k: int(math.floor(v)) for k, v in exact.items()}
    for k in sorted(exact, key=lambda k: (out[k] - exact[k], k))[: size - sum(out.values())]:
        out[k] += 1
    return out


def draw_mix(groups: Mapping[str, Sequence[str]], weights: Mapping[str, float], size: int, seed: int,
             epoch: int) -> List[str]:
    """The utterance ids of one epoch's mix (an id appears more than once when its source is repeated).

    Each source is read as an endless stream of permutations of its utterances (pass k is seeded by (seed, source
    name, k)) and epoch e (1-based) takes the e-th slice of its quota: a subsampled source shows every utterance
    before it repeats one, and any epoch can be computed on its own.
    """
    drawn: List[str] = []
    for name, count in quotas(weights, size).items():
        utts, n = groups[name], len(groups[name])
        key = zlib.crc32(name.encode("utf-8"))
        pos, end = (epoch - 1) * count, epoch * count
        while pos < end:
            k, offset = divmod(pos, n)
            take = min(end - pos, n - offset)
            perm = _rng(_SALT_DRAW, seed, key, k).permutation(n)
            drawn.extend(utts[i] for i in perm[offset:offset + take])
            pos += take
    return drawn


def _bucket(ids: Sequence[str], lengths: Sequence[int], batch_bins: float, rng: np.random.Generator,
            max_batch_size: Optional[int] = None, min_batch_size: int = 1) -> List[List[str]]:
    """Batches whose padded size (items x longest item) stays within ``batch_bins``, in random order."""
    if not ids:
        return []
    lengths = np.asarray(lengths, dtype=np.float64)
    if (lengths <= 0).any():
        bad = int(np.argmax(lengths <= 0))
        raise ValueError(f"utterance '{ids[bad]}' has length {lengths[bad]:g}: lengths must be > 0")
    bucket = np.floor(np.log(lengths) / math.log1p(BUCKET_WIDTH))
    # the k-th copy of a repeated utterance sorts after every first copy of its bucket, so copies spread out
    seen: Counter = Counter()
    copy = np.array([seen.update((u,)) or seen[u] for u in ids])
    order = np.lexsort((rng.random(len(ids)), copy, bucket))  # by bucket, then copy, ties in random order
    batches: List[List[int]] = []
    current: List[int] = []
    longest = 0.0
    for i in order:
        new_longest = max(longest, lengths[i])
        full = max_batch_size is not None and len(current) >= max_batch_size
        if current and (full or (len(current) + 1) * new_longest > batch_bins):
            batches.append(current)
            current, new_longest = [], lengths[i]
        current.append(int(i))
        longest = new_longest
    batches.append(current)
    # DDP shards each batch over the ranks: a batch smaller than the world size joins its (longer) neighbour
    k = 0
    while len(batches) > 1 and k < len(batches):
        if len(batches[k]) < min_batch_size:
            other = k - 1 if k > 0 else k + 1
            batches[min(k, other)] = batches[min(k, other)] + batches[max(k, other)]
            del batches[max(k, other)]
            k = max(0, k - 1)
        else:
            k += 1
    rng.shuffle(batches)
    return [[ids[i] for i in b] for b in batches]


def bucket_batches(lengths: Mapping[str, int], batch_bins: int, seed: int, epoch: int,
                   max_batch_size: Optional[int] = None) -> List[List[str]]:
    """Length-bucketed batches of the utterances in ``lengths``, deterministic in (seed, epoch).

    Utterances are sorted by length quantised to 1 % steps (ties shuffled, so batches differ between epochs) and
    cut into batches of at most ``batch_bins`` padded units (batch size x longest length in the batch; use
    frames x feature dim for ESPnet's ``numel`` meaning) and ``max_batch_size`` items; an utterance longer than
    ``batch_bins`` gets a batch of its own. The batch order is shuffled.
    """
    ids = list(lengths)
    return _bucket(ids, [lengths[u] for u in ids], batch_bins, _rng(_SALT_BUCKET, seed, epoch), max_batch_size)


@dataclass
class MixSpec:
    """A mix as training reads it: utterances per source and the weights (``<mix>.json`` from make_mix)."""

    name: str
    groups: Dict[str, List[str]]
    weights: Dict[str, float]
    epoch_size: int

    @classmethod
    def load(cls, path) -> "MixSpec":
        path = Path(path)
        try:
            with open(path, encoding="utf-8") as f:
                meta = json.load(f)
            utt2group_path = path.parent / meta["utt2group"]
            weights = {s["name"]: float(s["weight"]) for s in meta["sources"]}
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise MixError(f"{path}: not a mix file written by bin/make_mix.py ({type(e).__name__}: {e})") from None
        groups: Dict[str, List[str]] = {name: [] for name in weights}
        with open(utt2group_path, encoding="utf-8") as f:
            for lineno, line in enumerate(f, 1):
                parts = line.split()
                if not parts:
                    continue
                if len(parts) != 2 or parts[1] not in groups:
                    raise MixError(f"{utt2group_path} line {lineno}: expected 'utt source' with a source of "
                                   f"{path.name} ({', '.join(groups)}), got {line.strip()!r}")
                groups[parts[1]].append(parts[0])
        return cls(name=meta.get("name", path.stem), groups=groups, weights=weights,
                   epoch_size=int(meta.get("epoch_size") or sum(len(v) for v in groups.values())))

    def restrict(self, available) -> "MixSpec":
        """Only utterances in ``available`` (e.g. those featurize kept); says how many went missing."""
        groups = {k: [u for u in v if u in available] for k, v in self.groups.items()}
        missing = {k: len(self.groups[k]) - len(v) for k, v in groups.items() if len(v) < len(self.groups[k])}
        if missing:
            logging.warning(f"mix {self.name}: utterances without features (dropped by featurize?) are left out: "
                            + ", ".join(f"{k} {n}" for k, n in missing.items()))
        empty = [k for k, v in groups.items() if not v]
        if empty:
            raise MixError(f"mix {self.name}: no utterance of source(s) {empty} is in the training data "
                           "(shape file); was the mix built for another data dir?")
        return MixSpec(self.name, groups, self.weights, self.epoch_size)


class MixIterFactory(AbsIterFactory):
    """ESPnet iterator factory for a mixed train set: ``build_iter(epoch)`` gives the epoch's batches of the mix.

    A "mix epoch" m is one draw of ``epoch_size`` utterances (``draw_mix``), bucketed into batches seeded by
    (seed, m). Without ``num_iters_per_epoch`` training epoch e is mix epoch e. With it, training epochs are
    consecutive slices of ``num_iters_per_epoch`` batches of the mix epochs laid end to end (as ESPnet does for
    its own iterators), so nothing drawn is skipped. ``lengths`` are the batching lengths (numel: frames x dims).
    With DDP every rank computes the same batches and takes its share of each.
    """

    def __init__(self, dataset, spec: MixSpec, lengths: Mapping[str, int], batch_bins: float, seed: int = 0,
                 max_batch_size: Optional[int] = None, num_iters_per_epoch: Optional[int] = None,
                 num_workers: int = 0, collate_fn=None, pin_memory: bool = False, world_size: int = 1,
                 rank: int = 0):
        self.dataset, self.spec, self.lengths = dataset, spec, lengths
        self.batch_bins, self.max_batch_size, self.seed = batch_bins, max_batch_size, seed
        self.num_iters_per_epoch = num_iters_per_epoch
        self.num_workers, self.collate_fn, self.pin_memory = num_workers, collate_fn, pin_memory
        self.world_size, self.rank = world_size, rank
        self.utt2group = {u: name for name, utts in spec.groups.items() for u in utts}
        self._mix_epochs: Dict[int, List[List[str]]] = {}

    def mix_epoch(self, m: int) -> List[List[str]]:
        """The batches of mix epoch ``m`` (1-based)."""
        if m not in self._mix_epochs:
            ids = draw_mix(self.spec.groups, self.spec.weights, self.spec.epoch_size, self.seed, m)
            self._mix_epochs[m] = _bucket(ids, [self.lengths[u] for u in ids], self.batch_bins,
                                          _rng(_SALT_BUCKET, self.seed, m), self.max_batch_size, self.world_size)
            if not self._mix_epochs[m]:
                raise MixError(f"mix {self.spec.name}: epoch_size {self.spec.epoch_size} gives no batch")
        return self._mix_epochs[m]

    def batches(self, epoch: int) -> List[List[str]]:
        """Every rank's batches of training epoch ``epoch`` (1-based), before splitting over ranks."""
        if not self.num_iters_per_epoch:
            out = self.mix_epoch(epoch)
        else:
            start, stop = (epoch - 1) * self.num_iters_per_epoch, epoch * self.num_iters_per_epoch
            out, first, m = [], 0, 1  # first: index of mix epoch m's first batch in the whole stream
            while first < stop:
                batches = self.mix_epoch(m)
                out += batches[max(0, start - first): max(0, stop - first)]
                first += len(batches)
                m += 1
            for old in [k for k in self._mix_epochs if k < m - 1]:  # earlier mix epochs are not needed again
                del self._mix_epochs[old]
        short = [b for b in out if len(b) < self.world_size]
        if short:
            raise MixError(f"mix {self.spec.name}: a batch of {len(short[0])} utterance(s) cannot be split over "
                           f"{self.world_size} ranks; raise batch_bins or epoch_size")
        return list(out)

    def build_iter(self, epoch: int, shuffle: Optional[bool] = None):
        from espnet2.iterators.sequence_iter_factory import worker_init_fn
        from torch.utils.data import DataLoader

        batches = self.batches(epoch)
        counts = Counter(self.utt2group[u] for b in batches for u in b)
        total = sum(counts.values())
        logging.info(f"mix {self.spec.name} epoch {epoch}: {len(batches)} batches, {total} utterances: "
                     + ", ".join(f"{k} {100 * n / total:.1f}%" for k, n in sorted(counts.items())))
        if self.world_size > 1:
            batches = [b[self.rank::self.world_size] for b in batches]
        return DataLoader(dataset=self.dataset, batch_sampler=batches, num_workers=self.num_workers,
                          pin_memory=self.pin_memory, collate_fn=self.collate_fn,
                          worker_init_fn=partial(worker_init_fn, base_seed=epoch + self.seed))


def read_lengths(shape_files: Sequence[str], batch_type: str) -> Dict[str, int]:
    """Batching length per utterance from ESPnet shape files (``utt T,D``): numel T*D summed over files,
    else T of the first file."""
    lengths: Dict[str, int] = {}
    for k, path in enumerate(shape_files):
        with open(path, encoding="utf-8") as f:
            for lineno, line in enumerate(f, 1):
                parts = line.split()
                if not parts:
                    continue
                try:
                    dims = [int(x) for x in parts[1].split(",")]
                except (IndexError, ValueError):
                    raise MixError(f"{path} line {lineno}: expected 'utt T[,D]', got {line.strip()!r}") from None
                if batch_type == "numel":
                    lengths[parts[0]] = lengths.get(parts[0], 0) + int(np.prod(dims))
                elif k == 0:
                    lengths[parts[0]] = dims[0]
    return lengths
