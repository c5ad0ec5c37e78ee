"""Recipe stage 2: turn a Kaldi data dir into fbank features ESPnet can read.

    python -m espnet_speechlm_plugin.bin.featurize --data_dir data/train --out_dir dump/train [--nj 4] [--overwrite]

Reads ``<data_dir>/wav.scp`` (stage 1's output) and writes to ``<out_dir>``:
  feats.ark (``feats.<k>.ark`` per worker with --nj > 1)  kaldiio float32 matrices (T, 160), 50 Hz
  feats.scp                                                ``utt <out_dir>/feats.ark:<offset>``, sorted by utt
  utt2num_frames, speech_shape                             ``utt T`` and ``utt T,160`` (ESPnet shape file)
  text, utt2spk, prompt, transcript                        copied from data_dir when present
Utterances whose wav.scp value is identical (one recording used for several tasks) share one stored matrix:
their feats.scp lines point at the same offset. The ark paths in feats.scp are ``<out_dir>/...`` as given, so
a relative --out_dir gives paths relative to the recipe directory, as in Kaldi.

Everything is written to a hidden temp dir next to out_dir and renamed at the end: an out_dir that exists is
complete. A complete out_dir (feats.scp and utt2num_frames listing exactly wav.scp's utterances) is kept unless
--overwrite. Features are ``features.fbank.compute_fbank`` of ``features.audio.load_audio``.
"""
from __future__ import annotations

import argparse
import io
import multiprocessing
import os
import shutil
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from queue import Empty
from typing import Callable

import kaldiio
import torch
from tqdm import tqdm

from espnet_speechlm_plugin.features.audio import AudioError, WavScpEntry, load_audio, read_wav_scp
from espnet_speechlm_plugin.features.fbank import FEAT_DIM, MIN_NUM_SAMPLES, SAMPLE_RATE, compute_fbank_batch

COPIED_FILES = ("text", "utt2spk", "prompt", "transcript")
# Utterances per compute_fbank_batch call; bounded by samples too so long recordings do not pile up in memory.
BATCH_UTTERANCES = 16
BATCH_SAMPLES = 16000 * 300


class FeaturizeError(Exception):
    """A data problem that stops featurization; the message names the file, line and utterance."""


@dataclass
class ShardResult:
    """What one worker wrote: per unique audio (keyed by its first utterance) the ark offset and frame count."""

    ark_name: str
    offsets: dict[str, int] = field(default_factory=dict)
    num_frames: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    resampled: int = 0
    downmixed: int = 0


def group_by_audio(entries: list[WavScpEntry]) -> list[list[WavScpEntry]]:
    """Utterances grouped by identical wav.scp value, in order of first appearance; group[0] is the ark key."""
    groups: dict[str, list[WavScpEntry]] = {}
    for entry in entries:
        groups.setdefault(entry.value, []).append(entry)
    return list(groups.values())


def featurize_shard(groups: list[list[WavScpEntry]], ark_path: str, progress: Callable[[int], None]) -> ShardResult:
    """Compute and write features of ``groups`` to ``ark_path``; calls ``progress(n)`` after n unique audios."""
    result = ShardResult(ark_name=os.path.basename(ark_path))
    with open(ark_path, "wb") as ark:
        batch: list[tuple[str, object]] = []  # (ark key, waveform)
        for group in groups:
            entry = group[0]
            audio = load_audio(entry)
            if len(audio.waveform) < MIN_NUM_SAMPLES:
                sharing = f" (and {len(group) - 1} more utterance(s) with the same audio)" if len(group) > 1 else ""
                raise AudioError(
                    f"{entry.where}{sharing}: audio is {audio.duration * 1000:.1f} ms long, shorter than the "
                    f"{MIN_NUM_SAMPLES / SAMPLE_RATE * 1000:.0f} ms one feature frame needs; drop it in data prep"
                )
            result.seconds += audio.duration
            result.resampled += audio.resampled
            result.downmixed += audio.downmixed
            batch.append((entry.utt_id, audio.waveform))
            if len(batch) >= BATCH_UTTERANCES or sum(len(w) for _, w in batch) >= BATCH_SAMPLES:
                _write_batch(batch, ark, result)
                progress(len(batch))
                batch = []
        if batch:
            _write_batch(batch, ark, result)
            progress(len(batch))
    return result


def _write_batch(batch: list[tuple[str, object]], ark, result: ShardResult) -> None:
    feats = compute_fbank_batch([waveform for _, waveform in batch])
    for (key, _), mat in zip(batch, feats):
        scp_line = io.StringIO()  # kaldiio reports the offset it wrote at as an scp line "key name:offset"
        kaldiio.save_ark(ark, {key: mat.numpy()}, scp=scp_line)
        result.offsets[key] = int(scp_line.getvalue().strip().rsplit(":", 1)[1])
        result.num_frames[key] = mat.shape[0]


def _worker(shard: int, groups, ark_path: str, queue) -> None:
    """Process entry point for --nj > 1: reports ("progress", n), then ("done" | "error", shard, payload)."""
    torch.set_num_threads(1)
    try:
        result = featurize_shard(groups, ark_path, lambda n: queue.put(("progress", shard, n)))
        queue.put(("done", shard, result))
    except AudioError as err:
        queue.put(("error", shard, str(err)))
    except BaseException:  # an unexpected failure: hand the traceback to the parent, which prints it
        queue.put(("error", shard, traceback.format_exc()))


def _run_shards(shards: list[list[list[WavScpEntry]]], ark_paths: list[str], bar: tqdm) -> list[ShardResult]:
    if len(shards) == 1:
        try:
            return [featurize_shard(shards[0], ark_paths[0], bar.update)]
        except AudioError as err:
            raise FeaturizeError(str(err)) from err
    # spawn, not fork: the parent has torch loaded, and forking a process with a live OpenMP pool can hang.
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    workers = [
        context.Process(target=_worker, args=(k, shard, path, queue), daemon=True)
        for k, (shard, path) in enumerate(zip(shards, ark_paths))
    ]
    for worker in workers:
        worker.start()
    results: dict[int, ShardResult] = {}
    try:
        while len(results) < len(workers):
            try:
                kind, shard, payload = queue.get(timeout=5)
            except Empty:  # nothing for 5 s: make sure no worker died without reporting (killed, out of memory)
                dead = [k for k, w in enumerate(workers) if k not in results and not w.is_alive()]
                if dead and queue.empty():
                    raise FeaturizeError(
                        f"worker {dead[0] + 1} of {len(workers)} exited with code {workers[dead[0]].exitcode} "
                        "without reporting (killed or out of memory?)"
                    )
                continue
            if kind == "progress":
                bar.update(payload)
            elif kind == "done":
                results[shard] = payload
            else:
                raise FeaturizeError(payload)
    finally:
        for worker in workers:
            if worker.is_alive():
                worker.terminate()
            worker.join()
    return [results[k] for k in range(len(workers))]


def is_complete(out_dir: str, utt_ids: set[str]) -> bool:
    """True when out_dir's feats.scp and utt2num_frames list exactly ``utt_ids``."""
    for name in ("feats.scp", "utt2num_frames"):
        path = os.path.join(out_dir, name)
        if not os.path.isfile(path):
            return False
        with open(path, encoding="utf-8") as f:
            if {line.split(maxsplit=1)[0] for line in f if line.strip()} != utt_ids:
                return False
    return True


def _write_lines(path: str, lines: list[str]) -> None:
    with open(path, "w", encoding="utf-8") as f:
        f.writelines(line + "\n" for line in lines)


def _replace_dir(tmp_dir: str, out_dir: str) -> None:
    """Move tmp_dir to out_dir, replacing a previous output (two renames: directories cannot be os.replace'd)."""
    if not os.path.exists(out_dir):
        os.rename(tmp_dir, out_dir)
        return
    old = tempfile.mkdtemp(prefix=f".{os.path.basename(out_dir)}.old-", dir=os.path.dirname(out_dir))
    os.rmdir(old)
    os.rename(out_dir, old)
    os.rename(tmp_dir, out_dir)
    shutil.rmtree(old)


def _remove_leftovers(parent: str, name: str) -> None:
    """Delete temp dirs a killed run of this out_dir left behind (a run for one out_dir at a time is assumed)."""
    for entry in sorted(os.listdir(parent)):
        if entry.startswith((f".{name}.tmp-", f".{name}.old-")):
            print(f"featurize: removing {os.path.join(parent, entry)} left by an interrupted run", file=sys.stderr)
            shutil.rmtree(os.path.join(parent, entry))


def featurize(data_dir: str, out_dir: str, nj: int = 1, overwrite: bool = False, progress: bool = True) -> str:
    """Featurize data_dir into out_dir (see the module docstring); returns the one-line summary."""
    data_dir, out_dir = os.path.normpath(data_dir), os.path.normpath(out_dir)
    if os.path.realpath(data_dir) == os.path.realpath(out_dir):
        raise FeaturizeError(f"--out_dir {out_dir} is the data dir itself; write features elsewhere (e.g. dump/...)")
    if os.path.isfile(os.path.join(data_dir, "segments")):
        raise FeaturizeError(
            f"{data_dir}/segments exists, but featurize reads one wav.scp entry per utterance; cut the segments in "
            "data prep (e.g. a wav.scp pipe `sox rec.wav -t wav - trim START =END |`)"
        )
    try:
        entries = read_wav_scp(os.path.join(data_dir, "wav.scp"))
    except AudioError as err:
        raise FeaturizeError(str(err)) from err
    utt_ids = {entry.utt_id for entry in entries}
    if os.path.exists(out_dir) and not overwrite and is_complete(out_dir, utt_ids):
        return f"featurize: {out_dir} is complete ({len(entries)} utterances); skipping (--overwrite to redo)"
    if os.path.exists(out_dir) and os.listdir(out_dir) and not os.path.isfile(os.path.join(out_dir, "feats.scp")):
        raise FeaturizeError(
            f"{out_dir} exists and is not a featurize output (no feats.scp); remove it or choose another --out_dir"
        )

    groups = group_by_audio(entries)
    nj = max(1, min(nj, len(groups)))
    shards = [groups[k::nj] for k in range(nj)]  # round-robin: neighbouring (similar) recordings spread out
    ark_names = ["feats.ark"] if nj == 1 else [f"feats.{k + 1}.ark" for k in range(nj)]

    parent = os.path.dirname(os.path.abspath(out_dir))
    os.makedirs(parent, exist_ok=True)
    _remove_leftovers(parent, os.path.basename(out_dir))
    tmp_dir = tempfile.mkdtemp(prefix=f".{os.path.basename(out_dir)}.tmp-", dir=parent)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp_dir, 0o777 & ~umask)  # mkdtemp's 0700 would make the final out_dir private
    start = time.time()
    try:
        with tqdm(total=len(groups), desc=f"featurize {data_dir}", unit="audio", disable=not progress) as bar:
            results = _run_shards(shards, [os.path.join(tmp_dir, name) for name in ark_names], bar)

        location: dict[str, tuple[str, int, int]] = {}  # ark key -> (ark name, offset, frames)
        for result in results:
            for key, offset in result.offsets.items():
                location[key] = (result.ark_name, offset, result.num_frames[key])
        feats, frames, shapes = [], [], []
        for group in groups:
            ark_name, offset, num_frames = location[group[0].utt_id]
            for entry in group:
                feats.append(f"{entry.utt_id} {os.path.join(out_dir, ark_name)}:{offset}")
                frames.append(f"{entry.utt_id} {num_frames}")
                shapes.append(f"{entry.utt_id} {num_frames},{FEAT_DIM}")
        for name, lines in (("feats.scp", feats), ("utt2num_frames", frames), ("speech_shape", shapes)):
            _write_lines(os.path.join(tmp_dir, name), sorted(lines))
        for name in COPIED_FILES:
            if os.path.isfile(os.path.join(data_dir, name)):
                shutil.copyfile(os.path.join(data_dir, name), os.path.join(tmp_dir, name))
        _replace_dir(tmp_dir, out_dir)
    finally:
        if os.path.exists(tmp_dir):
            shutil.rmtree(tmp_dir)

    seconds = sum(r.seconds for r in results)
    duration = f"{seconds / 3600:.2f} h" if seconds >= 3600 else f"{seconds / 60:.1f} min"
    return (
        f"featurize: {out_dir}: {len(entries)} utterances, {len(groups)} unique audio ({duration}), "
        f"{sum(r.resampled for r in results)} resampled to 16 kHz, {sum(r.downmixed for r in results)} downmixed "
        f"to mono, {nj} job(s), {time.time() - start:.1f} s"
    )


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data_dir", required=True, help="Kaldi data dir with wav.scp (+ text, utt2spk, prompt)")
    parser.add_argument("--out_dir", required=True, help="where feats.scp/ark, utt2num_frames, speech_shape go")
    parser.add_argument("--nj", type=int, default=1, help="worker processes, each writing its own ark (default 1)")
    parser.add_argument("--overwrite", action="store_true", help="recompute even if out_dir is complete")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    torch.set_num_threads(1)  # one thread per process; --nj is the way to use more cores
    try:
        summary = featurize(args.data_dir, args.out_dir, nj=args.nj, overwrite=args.overwrite)
    except FeaturizeError as err:
        print(f"featurize: error: {err}", file=sys.stderr)
        return 1
    print(summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
