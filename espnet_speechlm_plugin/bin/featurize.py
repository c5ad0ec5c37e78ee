"""Recipe stage 2: turn a Kaldi data dir into fbank features ESPnet can read.

    python -m espnet_speechlm_plugin.bin.featurize --data_dir data/train --out_dir dump/train [--nj 4] [--overwrite] \
        [--min_dur 0.5 --max_dur 30] [--silence drop|error|keep] [--ignore_disk_space]
    python -m espnet_speechlm_plugin.bin.featurize --data_dir data/dev data/test --out_dir dump/dev dump/test

Several --data_dir/--out_dir pairs are featurized one after the other in one process (a recipe's valid and test
sets: one start-up instead of one per set).

Reads ``<data_dir>/wav.scp`` (stage 1's output) and writes to ``<out_dir>``:
  feats.ark (``feats.<k>.ark`` per worker with --nj > 1)  kaldiio float32 matrices (T, 160), 50 Hz
  feats.scp                                                ``utt <out_dir>/feats.ark:<offset>``, sorted by utt
  utt2num_frames, speech_shape                             ``utt T`` and ``utt T,160`` (ESPnet shape file)
  text, utt2spk, prompt, transcript, text.sentences,       copied from data_dir when present (without dropped utts)
  transcript.sentences, mcif_id, mcif_ref, unanswerable    (what stage 6 scores with)
  dropped                                                  ``utt reason`` of utterances left out (often empty)
  featurize.json                                           the filter options, so a rerun knows what "complete" is
What is fixed and what is dropped, each counted in the summary line:
  - audio at another sample rate is resampled to 16 kHz, multi-channel audio is averaged to mono (fixed);
  - audio longer than --max_dur or shorter than --min_dur seconds is dropped (both off by default; recipes pass
    them for training sets), and silence-only audio (peak below -60 dBFS) is dropped with --silence drop
    (the default; ``error`` stops instead, ``keep`` featurizes it).
Everything else is an error naming wav.scp's line and utterance: a missing, unreadable, truncated or empty file,
a failing pipe command, audio too short for one feature frame (35 ms).
Utterances whose wav.scp value is identical (one recording used for several tasks) share one stored matrix:
their feats.scp lines point at the same offset. The ark paths in feats.scp are ``<out_dir>/...`` as given, so
a relative --out_dir gives paths relative to the recipe directory, as in Kaldi.

Everything is written to a hidden temp dir next to out_dir and renamed at the end: an out_dir that exists is
complete. A complete out_dir (feats.scp/utt2num_frames plus ``dropped`` listing exactly wav.scp's utterances,
the same filter options, every ark as long as feats.scp says) is kept unless --overwrite.
Before computing anything the size of the features is estimated from the audio headers (32 kB per second of
audio, the size of 16-bit 16 kHz audio); featurize stops if that would not fit on out_dir's disk and warns when it
takes more than half the free space. A disk that fills anyway stops it cleanly, removing the temp dir.
Features are ``features.fbank.compute_fbank`` of ``features.audio.load_audio``.
"""
from __future__ import annotations

import argparse
import errno
import io
import json
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

from espnet_speechlm_plugin.data.kaldi import replace_dir
from espnet_speechlm_plugin.features.audio import (
    SILENCE_PEAK_DBFS,
    AudioError,
    WavScpEntry,
    load_audio,
    peak_dbfs,
    probe_audio,
    read_wav_scp,
)
from espnet_speechlm_plugin.features.fbank import (
    FEAT_DIM,
    MIN_NUM_SAMPLES,
    SAMPLE_RATE,
    compute_fbank_batch,
    num_output_frames,
)

COPIED_FILES = ("text", "utt2spk", "prompt", "transcript", "text.sentences", "transcript.sentences", "mcif_id",
                "mcif_ref", "unanswerable")
# Utterances per compute_fbank_batch call; bounded by samples too so long recordings do not pile up in memory.
BATCH_UTTERANCES = 16
BATCH_SAMPLES = 16000 * 300
SILENCE_CHOICES = ("drop", "error", "keep")
# Disk guard: stop when the estimate exceeds this share of the free space, warn above WARN_SHARE.
STOP_SHARE, WARN_SHARE = 0.95, 0.5


class FeaturizeError(Exception):
    """A data problem that stops featurization; the message names the file, line and utterance."""


@dataclass(frozen=True)
class Filters:
    """Which audio is dropped instead of featurized (0 = no bound); see the module docstring."""

    min_dur: float = 0.0
    max_dur: float = 0.0
    silence: str = "drop"

    def reason_to_drop(self, duration: float, peak: float) -> str | None:
        if self.max_dur and duration > self.max_dur:
            return f"longer than --max_dur {self.max_dur:g} s ({duration:.2f} s)"
        if self.min_dur and duration < self.min_dur:
            return f"shorter than --min_dur {self.min_dur:g} s ({duration:.3f} s)"
        if self.silence == "drop" and peak < SILENCE_PEAK_DBFS:
            return f"silence only (peak {peak:.0f} dBFS)"
        return None


@dataclass
class ShardResult:
    """What one worker wrote: per unique audio (keyed by its first utterance) the ark offset and frame count."""

    ark_name: str
    offsets: dict[str, int] = field(default_factory=dict)
    num_frames: dict[str, int] = field(default_factory=dict)
    dropped: dict[str, str] = field(default_factory=dict)  # ark key -> reason
    seconds: float = 0.0
    resampled: int = 0
    downmixed: int = 0


def group_by_audio(entries: list[WavScpEntry]) -> list[list[WavScpEntry]]:
    """Utterances grouped by identical wav.scp value, in order of first appearance; group[0] is the ark key."""
    groups: dict[str, list[WavScpEntry]] = {}
    for entry in entries:
        groups.setdefault(entry.value, []).append(entry)
    return list(groups.values())


def featurize_shard(groups: list[list[WavScpEntry]], ark_path: str, progress: Callable[[int], None],
                    filters: Filters = Filters()) -> ShardResult:
    """Compute and write features of ``groups`` to ``ark_path``; calls ``progress(n)`` after n unique audios."""
    result = ShardResult(ark_name=os.path.basename(ark_path))
    with open(ark_path, "wb") as ark:
        batch: list[tuple[str, object]] = []  # (ark key, waveform)
        for group in groups:
            entry = group[0]
            audio = load_audio(entry)
            sharing = f" (and {len(group) - 1} more utterance(s) with the same audio)" if len(group) > 1 else ""
            peak = peak_dbfs(audio.waveform)
            reason = filters.reason_to_drop(audio.duration, peak)
            if reason is not None:
                result.dropped[entry.utt_id] = reason
                progress(1)
                continue
            if len(audio.waveform) < MIN_NUM_SAMPLES:
                raise AudioError(
                    f"{entry.where}{sharing}: audio is {audio.duration * 1000:.1f} ms long, shorter than the "
                    f"{MIN_NUM_SAMPLES / SAMPLE_RATE * 1000:.0f} ms one feature frame needs (it would have 0 "
                    "frames); drop it in data prep or pass --min_dur"
                )
            if filters.silence == "error" and peak < SILENCE_PEAK_DBFS:
                raise AudioError(
                    f"{entry.where}{sharing}: audio is silence only (peak {peak:.0f} dBFS); check the recording "
                    "or drop it in data prep (--silence drop drops such audio)"
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


def _disk_full_message(path: str) -> str:
    return (f"the disk filled up while writing {path}; the partial output is removed: free space or point "
            "--out_dir at a bigger disk, then rerun")


def _worker(shard: int, groups, ark_path: str, queue, filters: Filters) -> None:
    """Process entry point for --nj > 1: reports ("progress", n), then ("done" | "error", shard, payload)."""
    torch.set_num_threads(1)
    try:
        result = featurize_shard(groups, ark_path, lambda n: queue.put(("progress", shard, n)), filters)
        queue.put(("done", shard, result))
    except AudioError as err:
        queue.put(("error", shard, str(err)))
    except OSError as err:
        queue.put(("error", shard, _disk_full_message(ark_path) if err.errno == errno.ENOSPC else repr(err)))
    except BaseException:  # an unexpected failure: hand the traceback to the parent, which prints it
        queue.put(("error", shard, traceback.format_exc()))


def _run_shards(shards: list[list[list[WavScpEntry]]], ark_paths: list[str], bar: tqdm,
                filters: Filters = Filters()) -> list[ShardResult]:
    if len(shards) == 1:
        try:
            return [featurize_shard(shards[0], ark_paths[0], bar.update, filters)]
        except AudioError as err:
            raise FeaturizeError(str(err)) from err
    # spawn, not fork: the parent has torch loaded, and forking a process with a live OpenMP pool can hang.
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    workers = [
        context.Process(target=_worker, args=(k, shard, path, queue, filters), daemon=True)
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


def _read_ids_and_values(path: str) -> dict[str, str]:
    with open(path, encoding="utf-8") as f:
        return {parts[0]: parts[1].strip() if len(parts) > 1 else ""
                for parts in (line.split(maxsplit=1) for line in f) if parts}


def is_complete(out_dir: str, utt_ids: set[str], filters: Filters = Filters()) -> bool:
    """True when out_dir was made from ``utt_ids`` with ``filters`` and nothing in it is cut short: feats.scp and
    utt2num_frames list the utterances that were not dropped, and every ark is as long as feats.scp says."""
    options_path = os.path.join(out_dir, "featurize.json")
    if os.path.isfile(options_path):
        with open(options_path, encoding="utf-8") as f:
            if json.load(f) != filters.__dict__:
                return False
    elif filters != Filters(min_dur=0.0, max_dur=0.0, silence=filters.silence):
        return False  # an output from before filters existed, now asked for with duration bounds
    dropped_path = os.path.join(out_dir, "dropped")
    dropped = set(_read_ids_and_values(dropped_path)) if os.path.isfile(dropped_path) else set()
    for name in ("feats.scp", "utt2num_frames"):
        path = os.path.join(out_dir, name)
        if not os.path.isfile(path):
            return False
        values = _read_ids_and_values(path)
        if set(values) | dropped != utt_ids or set(values) & dropped:
            return False
        if name == "feats.scp":
            ends: dict[str, int] = {}  # ark path -> largest offset
            for value in values.values():
                ark, _, offset = value.rpartition(":")
                ends[ark] = max(ends.get(ark, 0), int(offset) if offset.isdigit() else 0)
            if any(not os.path.isfile(ark) or os.path.getsize(ark) <= end for ark, end in ends.items()):
                return False
    return True


def estimate_feature_bytes(groups: list[list[WavScpEntry]]) -> tuple[int, float]:
    """(bytes of features, seconds of audio) expected for ``groups``, from the headers of the audio files.

    Pipes and ark entries have no header: they count as the average file, or, when there are no files, as the
    average of the first few decoded. Raises AudioError for a file that is missing or unreadable.
    """
    def matrix_bytes(key: str, seconds: float) -> int:
        return num_output_frames(round(seconds * SAMPLE_RATE)) * FEAT_DIM * 4 + len(key) + 32

    known: list[tuple[int, float]] = []
    unknown: list[list[WavScpEntry]] = []
    for group in groups:
        entry = group[0]
        if entry.value.endswith("|") or not os.path.isfile(entry.value):
            unknown.append(group)
            continue
        info = probe_audio(entry)
        known.append((matrix_bytes(entry.utt_id, info.duration), info.duration))
    if unknown and not known:
        for group in unknown[:5]:
            info = probe_audio(group[0])
            known.append((matrix_bytes(group[0].utt_id, info.duration), info.duration))
        unknown = unknown[5:]
    total_bytes = sum(b for b, _ in known)
    total_seconds = sum(s for _, s in known)
    if unknown and known:
        total_bytes += round(total_bytes / len(known) * len(unknown))
        total_seconds += total_seconds / len(known) * len(unknown)
    text_bytes = 512 * sum(len(group) for group in groups)  # scp, shape and copied text lines
    return total_bytes + text_bytes, total_seconds


def _human(num_bytes: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if num_bytes < 1000:
            return f"{num_bytes:.1f} {unit}"
        num_bytes /= 1000
    return f"{num_bytes:.1f} TB"


def check_disk_space(groups: list[list[WavScpEntry]], out_dir: str, parent: str) -> str | None:
    """Stop (FeaturizeError) when the features would not fit on out_dir's disk; the warning to print, if any."""
    need, seconds = estimate_feature_bytes(groups)
    free = shutil.disk_usage(parent).free
    what = (f"{out_dir} needs about {_human(need)} for the features of {seconds / 3600:.2f} h of audio, and "
            f"{_human(free)} is free on its disk")
    if need > STOP_SHARE * free:
        raise FeaturizeError(
            f"{what}: that would fill the disk; free space or point --out_dir at a bigger disk "
            "(--ignore_disk_space goes on anyway, if the estimate is wrong)"
        )
    if need > WARN_SHARE * free:
        return f"featurize: warning: {what}: more than half of it will be used"
    return None


def _copy_without(src: str, dst: str, dropped: set[str]) -> None:
    """Copy a data-dir file, leaving out the lines of dropped utterances (a byte copy when nothing is dropped)."""
    if not dropped:
        shutil.copyfile(src, dst)
        return
    with open(src, encoding="utf-8") as fin, open(dst, "w", encoding="utf-8") as fout:
        fout.writelines(line for line in fin if not line.split(maxsplit=1) or line.split(maxsplit=1)[0] not in dropped)


def _write_lines(path: str, lines: list[str]) -> None:
    with open(path, "w", encoding="utf-8") as f:
        f.writelines(line + "\n" for line in lines)


def _remove_leftovers(parent: str, name: str) -> None:
    """Delete temp dirs a killed run of this out_dir left behind (a run for one out_dir at a time is assumed)."""
    for entry in sorted(os.listdir(parent)):
        if entry.startswith((f".{name}.tmp-", f".{name}.old")):
            print(f"featurize: removing {os.path.join(parent, entry)} left by an interrupted run", file=sys.stderr)
            shutil.rmtree(os.path.join(parent, entry))


def featurize(data_dir: str, out_dir: str, nj: int = 1, overwrite: bool = False, progress: bool = True,
              filters: Filters = Filters(), check_disk: bool = True) -> str:
    """Featurize data_dir into out_dir (see the module docstring); returns the one-line summary."""
    data_dir, out_dir = os.path.normpath(data_dir), os.path.normpath(out_dir)
    if filters.silence not in SILENCE_CHOICES:
        raise FeaturizeError(f"--silence must be one of {', '.join(SILENCE_CHOICES)}, not {filters.silence!r}")
    if filters.max_dur and filters.min_dur > filters.max_dur:
        raise FeaturizeError(f"--min_dur {filters.min_dur} is larger than --max_dur {filters.max_dur}")
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
    if os.path.exists(out_dir) and not overwrite and is_complete(out_dir, utt_ids, filters):
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
    if check_disk:
        try:
            warning = check_disk_space(groups, out_dir, parent)
        except AudioError as err:
            raise FeaturizeError(str(err)) from err
        if warning:
            print(warning, file=sys.stderr)
    tmp_dir = tempfile.mkdtemp(prefix=f".{os.path.basename(out_dir)}.tmp-", dir=parent)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp_dir, 0o777 & ~umask)  # mkdtemp's 0700 would make the final out_dir private
    start = time.time()
    try:
        with tqdm(total=len(groups), desc=f"featurize {data_dir}", unit="audio", disable=not progress) as bar:
            results = _run_shards(shards, [os.path.join(tmp_dir, name) for name in ark_names], bar, filters)

        location: dict[str, tuple[str, int, int]] = {}  # ark key -> (ark name, offset, frames)
        drop_reason: dict[str, str] = {}  # ark key -> why its audio was dropped
        for result in results:
            for key, offset in result.offsets.items():
                location[key] = (result.ark_name, offset, result.num_frames[key])
            drop_reason.update(result.dropped)
        feats, frames, shapes, dropped = [], [], [], []
        for group in groups:
            key = group[0].utt_id
            for entry in group:
                if key in drop_reason:
                    dropped.append(f"{entry.utt_id} {drop_reason[key]}")
                    continue
                ark_name, offset, num_frames = location[key]
                feats.append(f"{entry.utt_id} {os.path.join(out_dir, ark_name)}:{offset}")
                frames.append(f"{entry.utt_id} {num_frames}")
                shapes.append(f"{entry.utt_id} {num_frames},{FEAT_DIM}")
        if not feats:
            raise FeaturizeError(f"every utterance of {data_dir} was dropped ({dropped[0]} …); check --min_dur, "
                                 "--max_dur and the audio")
        for name, lines in (("feats.scp", feats), ("utt2num_frames", frames), ("speech_shape", shapes),
                            ("dropped", dropped)):
            _write_lines(os.path.join(tmp_dir, name), sorted(lines))
        dropped_ids = {line.split(maxsplit=1)[0] for line in dropped}
        for name in COPIED_FILES:
            if os.path.isfile(os.path.join(data_dir, name)):
                _copy_without(os.path.join(data_dir, name), os.path.join(tmp_dir, name), dropped_ids)
        with open(os.path.join(tmp_dir, "featurize.json"), "w", encoding="utf-8") as f:
            json.dump(filters.__dict__, f)
        replace_dir(tmp_dir, out_dir)
    except OSError as err:
        if err.errno == errno.ENOSPC:
            raise FeaturizeError(_disk_full_message(out_dir)) from err
        raise
    finally:
        if os.path.exists(tmp_dir):
            shutil.rmtree(tmp_dir)

    seconds = sum(r.seconds for r in results)
    duration = f"{seconds / 3600:.2f} h" if seconds >= 3600 else f"{seconds / 60:.1f} min"
    summary = (
        f"featurize: {out_dir}: {len(entries)} utterances, {len(groups)} unique audio ({duration}), "
        f"{sum(r.resampled for r in results)} resampled to 16 kHz, {sum(r.downmixed for r in results)} downmixed "
        f"to mono, {nj} job(s), {time.time() - start:.1f} s"
    )
    if dropped:
        kinds: dict[str, int] = {}
        for line in dropped:
            kind = line.split(maxsplit=1)[1].split(" (")[0]
            kinds[kind] = kinds.get(kind, 0) + 1
        summary += (f"; dropped {len(dropped)} utterance(s): "
                    + ", ".join(f"{n} {kind}" for kind, n in sorted(kinds.items()))
                    + f" (listed in {os.path.join(out_dir, 'dropped')})")
    return summary


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data_dir", required=True, nargs="+",
                        help="Kaldi data dir(s) with wav.scp (+ text, utt2spk, prompt)")
    parser.add_argument("--out_dir", required=True, nargs="+",
                        help="where feats.scp/ark, utt2num_frames, speech_shape go (one per --data_dir)")
    parser.add_argument("--nj", type=int, default=1, help="worker processes, each writing its own ark (default 1)")
    parser.add_argument("--overwrite", action="store_true", help="recompute even if out_dir is complete")
    parser.add_argument("--min_dur", type=float, default=0.0,
                        help="drop utterances shorter than this many seconds (default 0: keep all)")
    parser.add_argument("--max_dur", type=float, default=0.0,
                        help="drop utterances longer than this many seconds (default 0: keep all)")
    parser.add_argument("--silence", choices=SILENCE_CHOICES, default="drop",
                        help=f"silence-only audio (peak below {SILENCE_PEAK_DBFS:g} dBFS): drop it (default), stop "
                        "with an error, or keep it")
    parser.add_argument("--ignore_disk_space", action="store_true",
                        help="go on even when the estimated feature size does not fit on out_dir's disk")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = get_parser()
    args = parser.parse_args(argv)
    if len(args.data_dir) != len(args.out_dir):
        parser.error(f"{len(args.data_dir)} --data_dir but {len(args.out_dir)} --out_dir: give one out_dir per data dir")
    torch.set_num_threads(1)  # one thread per process; --nj is the way to use more cores
    for data_dir, out_dir in zip(args.data_dir, args.out_dir):
        try:
            summary = featurize(data_dir, out_dir, nj=args.nj, overwrite=args.overwrite,
                                filters=Filters(args.min_dur, args.max_dur, args.silence),
                                check_disk=not args.ignore_disk_space)
        except FeaturizeError as err:
            print(f"featurize: error: {err}", file=sys.stderr)
            return 1
        print(summary, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
