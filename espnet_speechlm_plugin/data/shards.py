"""Sharded decoding: the batches decoding makes of a test set, split into key files by whole batches, and the merge
of the jobs' outputs.

Where it sits: recipe stage 5 with ``--inference_nj N`` runs ``bin/decode_shards split`` (→ ``keys.{1..N}.scp``),
N ``bin/decode --key_file keys.JOB.scp`` jobs through cmd.sh (ESPnet's key_file and JOB conventions), then
``bin/decode_shards merge``. ``bin/decode`` itself batches with :func:`decode_batches`.

The split hands out whole batches of the one-job batching (round robin, so every job gets long and short ones).
A job sorts its utterances the same way and cuts them at the same places, so each utterance is decoded in the same
batch, with the same padding, as by one job: the merged output is byte-identical to one job's. Light on purpose
(no torch): the split and merge steps start in a blink.
"""

from pathlib import Path
from typing import Dict, List

from espnet_speechlm_plugin.data.kaldi import KaldiFileError, read_kaldi_text, write_atomic, write_kaldi_text


DEFAULT_BATCH_SIZE = 16  # bin/decode's --batch_size


class ShardError(ValueError):
    """A shard that is missing, incomplete or holds another shard's utterances; the message names the file."""


def read_lengths(data_dir: Path) -> Dict[str, int]:
    """Frames per utterance from ``speech_shape`` (empty when the dir has none)."""
    shape = Path(data_dir) / "speech_shape"
    if not shape.exists():
        return {}
    return {u: int(v.split(",")[0]) for u, v in read_kaldi_text(shape).items()}


def decode_batches(utts: List[str], lengths: Dict[str, int], batch_size: int) -> List[List[str]]:
    """The batches decoding cuts ``utts`` into: longest first (ties in the given order; similar lengths together,
    little padding), ``batch_size`` each."""
    order = sorted(utts, key=lambda u: -lengths.get(u, 0))
    return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]


def read_key_file(path: Path) -> List[str]:
    """Utterance ids of an ESPnet key file (first column of each non-blank line)."""
    return [line.split()[0] for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]


def split_keys(data_dir: Path, nj: int, out_dir: Path, batch_size: int) -> List[List[str]]:
    """Write ``out_dir/keys.{1..nj}.scp`` (ids in the prompt file's order); returns the key lists."""
    utts = list(read_kaldi_text(Path(data_dir) / "prompt"))
    batches = decode_batches(utts, read_lengths(data_dir), batch_size)
    shards = [[u for b in batches[j::nj] for u in b] for j in range(nj)]
    position = {u: i for i, u in enumerate(utts)}
    out_dir = Path(out_dir)
    for j, keys in enumerate(shards, 1):
        write_atomic(out_dir / f"keys.{j}.scp", "".join(f"{u}\n" for u in sorted(keys, key=position.get)))
    for stale in out_dir.glob("keys.*.scp"):  # key files of an earlier split into more jobs
        number = stale.name[len("keys."):-len(".scp")]
        if not number.isdigit() or not 1 <= int(number) <= nj:
            stale.unlink()
    return shards


def merge_outputs(logdir: Path, nj: int, out_dir: Path) -> List[str]:
    """Merge ``logdir/output.{1..nj}/<file>`` into ``out_dir/<file>`` for every file the jobs wrote; returns the
    merged names. Every job must have written the same files, each holding exactly the utterances of its keys."""
    logdir, out_dir = Path(logdir), Path(out_dir)
    keys = [read_key_file(logdir / f"keys.{j}.scp") for j in range(1, nj + 1)]
    outputs = [logdir / f"output.{j}" for j in range(1, nj + 1)]
    names = [sorted(p.name for p in out.iterdir() if p.is_file() and not p.name.startswith("."))
             if out.is_dir() else [] for out in outputs]
    for j, (out, found) in enumerate(zip(outputs, names), 1):
        if not found:
            raise ShardError(f"{out} has no output: decoding job {j} did not finish (see {logdir}/decode.{j}.log)")
        if found != names[0]:
            raise ShardError(f"{out} holds {found} but {outputs[0]} holds {names[0]}: outputs of different runs?")
    for name in names[0]:
        merged: Dict[str, str] = {}
        for j, (out, job_keys) in enumerate(zip(outputs, keys), 1):
            try:
                values = read_kaldi_text(out / name)
            except (KaldiFileError, UnicodeDecodeError) as e:
                raise ShardError(f"{out / name} is not an 'utt value' file, so it cannot be merged: {e}") from None
            if set(values) != set(job_keys):
                extra, lost = sorted(set(values) - set(job_keys)), sorted(set(job_keys) - set(values))
                raise ShardError(f"{out / name} does not hold exactly the utterances of keys.{j}.scp: "
                                 f"{len(lost)} missing (e.g. {lost[:2]}), {len(extra)} not its own "
                                 f"(e.g. {extra[:2]}); rerun decoding job {j}")
            merged.update(values)
        write_kaldi_text(out_dir / name, merged)
    return names[0]
