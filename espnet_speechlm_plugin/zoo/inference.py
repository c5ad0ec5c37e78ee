"""``SpeechLMInference``: a trained SpeechLM behind one call — audio in (any file, rate, channels, length), text out.

    from espnet_speechlm_plugin import SpeechLMInference
    m = SpeechLMInference.from_pretrained("exp/tiny_stage2/packed/model.zip")   # or a dir, an exp dir, a hub repo
    m("talk.wav", task="translate", lang="de").text
    m(wav, sample_rate=44100, task="answer", question="What colour is the cat?", lang="en").text
    SpeechLMInference.from_pretrained(path, generate=GenerateConfig(beam_size=4))   # beam search

Where it sits: after training and packing (recipe stages 4 and 7); the CLI ``bin/speechlm_inference.py`` wraps it.
The flow per input: read it (soundfile) → downmix to mono, resample to 16 kHz with soxr (logged) → if longer
than ``max_seconds``, cut in pauses (``features/segment.py``) → fbank per piece (``features/fbank.py``) → the
inference core of stage 5 (``decoding.py``: prompt ids and padding of training, batched greedy or beam decoding
as ``generate`` says) → transcriptions and translations: one text per piece, stitched back in order with start/end
times; answers: the question is asked once of all the pieces' audio joined.

Loading never unpickles code: ``.safetensors`` (packed models) or ``torch.load(weights_only=True)`` (an exp dir's
``.pth``); HF parts are built with ``trust_remote_code=False``.
"""

from __future__ import annotations

import argparse
import logging
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional, Sequence, Tuple, Union

import numpy as np
import yaml

from espnet_speechlm_plugin.features.segment import SegmentConfig, plan_segments, stitch
from espnet_speechlm_plugin.model.generate import GenerateConfig

log = logging.getLogger(__name__)
SAMPLE_RATE = 16000
# model files tried, in order, when from_pretrained is given an experiment dir without model_file
EXP_MODEL_FILES = ("valid.acc.best.pth", "valid.loss.best.pth", "valid.acc.ave.pth", "latest.pth")
ARCHIVE_SUFFIXES = (".zip", ".tar", ".tgz", ".tar.gz")

AudioInput = Union[str, os.PathLike, np.ndarray, "torch.Tensor"]  # noqa: F821


class ModelNotFound(OSError):
    """``from_pretrained`` could not find or fetch the model; the message says what was tried and what to do."""


@dataclass(frozen=True)
class TimedText:
    start: float  # seconds from the start of the input
    end: float
    text: str
    decoded: bool = True  # False: no speech in this piece, so it was not given to the model


@dataclass
class SpeechLMOutput:
    """The hypothesis for one input; ``str(out)`` is the text."""

    text: str
    segments: List[TimedText] = field(default_factory=list)
    duration: float = 0.0  # seconds
    source_sample_rate: int = SAMPLE_RATE
    source_channels: int = 1
    name: str = ""

    def __str__(self) -> str:
        return self.text


# ---- audio ------------------------------------------------------------------------------------------------------
def load_input_audio(audio: AudioInput, sample_rate: Optional[int] = None,
                     name: str = "") -> Tuple[np.ndarray, int, int]:
    """``(16 kHz mono float32 waveform, source rate, source channels)`` from a file path or an array.

    Arrays: ``(N,)`` mono or 2-D with channels on the shorter axis (``(N, C)`` as soundfile gives, or ``(C, N)``
    as torchaudio gives); float in [-1, 1) or int16 PCM; ``sample_rate`` is required for them.
    """
    import soxr

    if isinstance(audio, (str, os.PathLike)):
        import soundfile

        path = str(audio)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"audio file not found: {path}")
        try:
            samples, rate = soundfile.read(path, dtype="float32", always_2d=True)  # (N, C)
        except (soundfile.LibsndfileError, RuntimeError) as e:
            raise ValueError(f"cannot read audio from {path}: {e} (any format libsndfile reads works: wav, flac, "
                             "ogg, mp3)") from e
        if sample_rate is not None and sample_rate != rate:
            raise ValueError(f"{path} is {rate} Hz but sample_rate={sample_rate} was given; leave it out for files")
        name = name or path
    else:
        if sample_rate is None:
            raise ValueError("an audio array needs its sample rate: pass sample_rate=... (e.g. 16000)")
        if hasattr(audio, "detach"):  # a torch tensor
            audio = audio.detach().cpu().numpy()
        samples, rate = np.asarray(audio), int(sample_rate)
        if samples.dtype == np.int16:
            samples = samples.astype(np.float32) / 32768.0
        elif not np.issubdtype(samples.dtype, np.floating):
            raise ValueError(f"audio array must be float or int16, got {samples.dtype}")
        if samples.ndim == 1:
            samples = samples[:, None]
        elif samples.ndim == 2:
            samples = samples if samples.shape[0] >= samples.shape[1] else samples.T  # channels: the shorter axis
        else:
            raise ValueError(f"audio array must be (samples,) or (samples, channels), got shape {samples.shape}")
        name = name or "<array>"
    if samples.shape[0] == 0:
        raise ValueError(f"{name}: audio is empty (0 samples)")
    channels = samples.shape[1]
    mono = samples.mean(axis=1, dtype=np.float32) if channels > 1 else samples[:, 0].astype(np.float32)
    if rate != SAMPLE_RATE:
        mono = soxr.resample(mono, rate, SAMPLE_RATE)
    if channels > 1 or rate != SAMPLE_RATE:
        log.info(f"{name}: {rate} Hz, {channels} channel(s) → {SAMPLE_RATE} Hz mono"
                 + (" (downmixed: channel mean)" if channels > 1 else "") + (" (resampled with soxr)"
                                                                            if rate != SAMPLE_RATE else ""))
    return np.ascontiguousarray(mono, dtype=np.float32), rate, channels


# ---- finding and loading a model ---------------------------------------------------------------------------------
def _is_archive(path: Path) -> bool:
    return path.is_file() and any(path.name.endswith(s) for s in ARCHIVE_SUFFIXES)


def _default_cachedir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(os.environ.get("ESPNET_SPEECHLM_CACHE") or os.path.join(base, "espnet_speechlm_plugin"))


def resolve_model(name_or_path: Union[str, os.PathLike], model_file: Optional[str] = None,
                  cachedir: Optional[Union[str, os.PathLike]] = None) -> Tuple[Path, Path, List[Path]]:
    """``(config.yaml, weights, folders to resolve the config's relative paths against)`` for any accepted source:

    - a packed archive (``.zip`` from stage 7): unpacked once into ``cachedir`` by espnet_model_zoo;
    - an unpacked archive or hub snapshot (a folder with ``meta.yaml``);
    - an experiment dir (``config.yaml`` + ``*.pth``; ``model_file`` or the first of ``EXP_MODEL_FILES``);
    - a hub repo name (``user/name``), downloaded through espnet_model_zoo's ``ModelDownloader``.
    """
    from espnet_speechlm_plugin.zoo.pack import read_meta

    path = Path(name_or_path)
    cachedir = Path(cachedir) if cachedir else _default_cachedir()
    if _is_archive(path):
        from espnet_model_zoo.downloader import ModelDownloader

        with warnings.catch_warnings():  # its "Expanding a local model to the cachedir" is what we asked for
            warnings.simplefilter("ignore", UserWarning)
            info = ModelDownloader(cachedir=cachedir).unpack_local_file(str(path))
        config = Path(info["train_config"])
        return config, Path(model_file) if model_file else Path(info["model_file"]), [config.parent]
    if path.is_dir() and (path / "meta.yaml").exists():
        meta = read_meta(path)
        return meta["train_config"], (path / model_file) if model_file else meta["model_file"], [path]
    if path.is_dir() and (path / "config.yaml").exists():
        candidates = [model_file] if model_file else list(EXP_MODEL_FILES)
        found = next((path / f for f in candidates if (path / f).exists()), None)
        if found is None:
            raise ModelNotFound(f"{path} is an experiment dir but has none of {candidates}: train it first, or "
                                "pass model_file=")
        # the config's paths (exp/init/decoder) are relative to the recipe dir: the cwd, or two levels up
        return path / "config.yaml", found, [Path.cwd(), path.resolve().parent.parent]
    if path.exists():
        raise ModelNotFound(f"{path} is neither a packed model (.zip, or a folder with meta.yaml) nor an experiment "
                            "dir (a folder with config.yaml)")
    if str(name_or_path).count("/") != 1 or str(name_or_path).startswith((".", "/")):
        raise ModelNotFound(f"{name_or_path}: no such file or folder, and not a hub repo name ('user/name')")
    return _download(str(name_or_path), cachedir, model_file)


def _download(repo: str, cachedir: Path, model_file: Optional[str]) -> Tuple[Path, Path, List[Path]]:
    from espnet_model_zoo.downloader import ModelDownloader

    try:
        info = ModelDownloader(cachedir=cachedir).download_and_unpack(repo)
    except Exception as e:  # hub errors come as OSError, ValueError, requests or huggingface_hub exceptions
        offline = ("offline: HF_HUB_OFFLINE=1" if os.environ.get("HF_HUB_OFFLINE") == "1"
                   else "the hub could not be reached or has no such repo")
        raise ModelNotFound(
            f"cannot load the model '{repo}': it is not a local file or folder, and espnet_model_zoo could not "
            f"download it from the Hugging Face hub ({offline}; {type(e).__name__}: {str(e).splitlines()[0][:200]}). "
            f"Where you have network, run `huggingface-cli download {repo} --local-dir DIR` and pass DIR "
            "(or copy the packed model.zip and pass its path)."
        ) from e
    config = Path(info["train_config"])
    root = config.parent
    return config, (root / model_file) if model_file else Path(info["model_file"]), [root]


def _resolve_paths(config: dict, roots: Sequence[Path]) -> dict:
    """Point the config's local model folders (``*_conf.name_or_path``, ``tokenizer``) at folders that exist."""
    def fix(value):
        if not value or os.path.isabs(value):
            return value
        for root in roots:
            if (Path(root) / value).exists():
                return str(Path(root) / value)
        return value  # a hub name: from_pretrained fails with its own clear message if it cannot get it

    out = dict(config)
    for key, conf in config.items():
        if key.endswith("_conf") and isinstance(conf, dict) and "name_or_path" in conf:
            out[key] = {**conf, "name_or_path": fix(conf["name_or_path"])}
    if out.get("tokenizer"):
        out["tokenizer"] = fix(out["tokenizer"])
    return out


def segment_config(max_seconds: float, min_seconds: Optional[float] = None,
                   pad: float = SegmentConfig.pad) -> SegmentConfig:
    """Segmenting options for a cap; ``min_seconds`` below it (default max / 6), the hard-cut overlap below that."""
    min_seconds = min(min_seconds or max_seconds / 6, max_seconds / 2)
    return SegmentConfig(max_seconds=max_seconds, min_seconds=min_seconds,
                         overlap=min(SegmentConfig.overlap, min_seconds / 2), pad=pad)


# ---- the inference object ----------------------------------------------------------------------------------------
class SpeechLMInference:
    """A loaded SpeechLM with its tokenizer, prompt builder and decoding options; call it on audio."""

    def __init__(self, model, args: argparse.Namespace, device: str = "cpu",
                 generate: GenerateConfig = GenerateConfig(), segment: SegmentConfig = SegmentConfig(),
                 batch_size: int = 8):
        from espnet_speechlm_plugin.decoding import BatchDecoder

        self.decoder = BatchDecoder(model, args, generate, batch_size, device)  # stage 5's decoding core
        self.model, self.args, self.device, self.segment = self.decoder.model, args, device, segment
        self.tokenizer = self.decoder.tokenizer
        self.languages = tuple(args.languages)

    @property
    def generate(self) -> GenerateConfig:
        """Decoding options (``beam_size``, ``length_penalty``, ``max_new_tokens``, …); may be replaced."""
        return self.decoder.config

    @generate.setter
    def generate(self, config: GenerateConfig) -> None:
        if config.beam_size < 1:
            raise ValueError(f"beam_size must be >= 1, got {config.beam_size}")
        self.decoder.config = config

    @property
    def batch_size(self) -> int:
        """Pieces (requests) decoded together."""
        return self.decoder.batch_size

    @batch_size.setter
    def batch_size(self, value: int) -> None:
        self.decoder.batch_size = value

    @classmethod
    def from_pretrained(cls, name_or_path: Union[str, os.PathLike], model_file: Optional[str] = None,
                        device: str = "cpu", cachedir: Optional[Union[str, os.PathLike]] = None,
                        max_seconds: Optional[float] = None, batch_size: int = 8,
                        min_seconds: Optional[float] = None, generate: Optional[GenerateConfig] = None,
                        pad: float = SegmentConfig.pad) -> "SpeechLMInference":
        """Load a packed zip, an unpacked folder, an experiment dir or a hub repo (see :func:`resolve_model`).

        ``max_seconds``: longer audio is segmented (default: 1.5 x the longest training utterance, stored by packing
        or read from an exp dir's shape files; else 30 s); pieces are cut at the first clear pause after
        ``min_seconds`` (default: the 5th percentile of the training utterances, else max_seconds / 6) and trimmed
        to their speech plus ``pad`` seconds. ``cachedir``: where archives are
        unpacked and hub repos downloaded (default ``$ESPNET_SPEECHLM_CACHE`` or ``~/.cache/espnet_speechlm_plugin``).
        """
        from espnet_speechlm_plugin.tasks.speechlm import SpeechLMTask, load_weights

        config_path, weights, roots = resolve_model(name_or_path, model_file, cachedir)
        if not weights.exists():
            raise ModelNotFound(f"{weights} does not exist (model of {name_or_path})")
        from espnet_speechlm_plugin.zoo.pack import segment_defaults

        config = yaml.safe_load(Path(config_path).read_text(encoding="utf-8"))
        defaults = config.get("inference_conf") or segment_defaults(config, roots) or {}
        segment = segment_config(max_seconds or defaults.get("max_seconds") or SegmentConfig.max_seconds,
                                 min_seconds or defaults.get("min_seconds"), pad)
        log.info(f"audio longer than {segment.max_seconds:g} s is cut at pauses after {segment.min_seconds:g} s "
                 f"({'from the training utterances' if defaults else 'defaults'}; max_seconds=/min_seconds= change it)")
        args = argparse.Namespace(**_resolve_paths(config, roots))
        model = SpeechLMTask.build_model(args)
        load_weights(model, weights, device)
        log.info(f"loaded {weights} ({sum(p.numel() for p in model.parameters()) / 1e6:.1f} M parameters)")
        return cls(model, args, device, generate or GenerateConfig(), segment, batch_size)

    def prompt(self, task: str, lang: str, question: Optional[str] = None) -> str:
        """The ``prompt`` value (``lang task [question]``), checked like a data dir's prompt line."""
        from espnet_speechlm_plugin.vocab import format_prompt, parse_prompt

        question = " ".join((question or "").split())  # one line, as in a data dir
        if question and task != "answer":
            raise ValueError(f"a question is only used with task='answer' (got task={task!r})")
        value = format_prompt(lang, task, question)
        parse_prompt(value, self.languages, f"task={task!r}, lang={lang!r}")
        return value

    def __call__(self, audio: AudioInput, task: str = "transcribe", lang: str = "en", question: Optional[str] = None,
                 sample_rate: Optional[int] = None) -> SpeechLMOutput:
        """Decode one input (a path, or an array with ``sample_rate``); see :meth:`decode` for several."""
        return self.decode([audio], task, lang, question, sample_rate)[0]

    def decode(self, audios: Sequence[AudioInput], task: str = "transcribe", lang: str = "en",
               question: Optional[str] = None, sample_rate: Optional[int] = None,
               progress: bool = False) -> List[SpeechLMOutput]:
        """Decode several inputs with one prompt; the pieces of all of them share batches.

        Long inputs (over ``segment.max_seconds``) are cut in pauses. ``transcribe``/``translate``: every piece with
        speech is decoded on its own and the texts are stitched in order (``segments`` holds each piece's text).
        ``answer``: the question is asked once of the whole input — its speech pieces go through the audio encoder
        one by one and their embeddings are joined, in order, into one prompt; ``segments`` is then one entry
        spanning the input, holding the answer.
        """
        from espnet_speechlm_plugin.decoding import Request
        from espnet_speechlm_plugin.features.fbank import MIN_NUM_SAMPLES, compute_fbank_batch

        prompt = self.prompt(task, lang, question)
        outputs, groups = [], []  # groups: (output index, segment index or None for the whole input, waveforms)
        for i, audio in enumerate(audios):
            wave, rate, channels = load_input_audio(audio, sample_rate)
            where = str(audio) if isinstance(audio, (str, os.PathLike)) else f"input {i}"
            if len(wave) < MIN_NUM_SAMPLES:
                raise ValueError(f"{audio if isinstance(audio, (str, os.PathLike)) else '<array>'}: audio is shorter "
                                 f"than {MIN_NUM_SAMPLES / SAMPLE_RATE * 1000:.0f} ms, too short to decode")
            segs = plan_segments(wave, SAMPLE_RATE, self.segment)
            if len(segs) > 1:
                log.info(f"{where}: {len(wave) / SAMPLE_RATE:.1f} s > max_seconds={self.segment.max_seconds:g}: "
                         f"{len(segs)} pieces ({sum(s.has_speech for s in segs)} with speech)"
                         + (", one question asked of all of them" if task == "answer" else ""))
            outputs.append(SpeechLMOutput("", [TimedText(s.start_s, s.end_s, "", False) for s in segs],
                                          len(wave) / SAMPLE_RATE, rate, channels,
                                          str(audio) if isinstance(audio, (str, os.PathLike)) else ""))
            usable = [j for j, s in enumerate(segs)
                      if (s.has_speech or len(segs) == 1) and s.end - s.start >= MIN_NUM_SAMPLES]
            if task == "answer":  # one request per input, all its speech (a recording without any: all of it)
                groups.append((i, None, [wave[segs[j].start: segs[j].end] for j in usable] or [wave]))
            else:
                groups.extend((i, j, [wave[segs[j].start: segs[j].end]]) for j in usable)
        waves = [w for *_, ws in groups for w in ws]
        feats = iter([f.numpy() for f in compute_fbank_batch(waves)] if waves else [])
        requests = [Request(f"piece{k}", prompt, [next(feats) for _ in ws]) for k, (*_, ws) in enumerate(groups)]
        texts = self.decoder.decode(requests, progress=progress)
        for k, (i, j, _) in enumerate(groups):
            out, text = outputs[i], texts[f"piece{k}"]
            if j is None:  # the answer about the whole input
                out.segments, out.text = [TimedText(0.0, out.duration, text, True)], text
            else:
                out.segments[j] = TimedText(out.segments[j].start, out.segments[j].end, text, True)
        if task != "answer":
            for out in outputs:
                hard = [False] + [a.end > b.start for a, b in zip(out.segments, out.segments[1:])]  # overlaps
                out.text = stitch([s.text for s in out.segments], hard)
        return outputs
