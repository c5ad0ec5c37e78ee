"""Text to 16 kHz speech with espeak-ng, through the library shipped in the ``espeakng-loader`` wheel.

Where it sits: stage 1 of the synthesised recipes: egs2/mini_espeak/s2t1's ``local/make_mini_corpus.py`` calls
``synthesize_to_file`` from worker processes; ``bin/make_fixture_corpora`` (the IWSLT readers' test corpora), the
tests and the benchmarks call ``synthesize``.

espeak-ng is driven with ctypes (no system package needed): synchronous output into a callback,
a voice per call (``en-us+m3`` = language voice + variant from ``espeak-ng-data/voices/!v``),
speaking rate in words per minute and base pitch 0..100. The library keeps global state, so each
process initialises its own engine on first use (again after a fork) and calls are serialised.

Determinism: espeak-ng seeds its noise generator (breathy variants such as f3, f5) per process,
and carries hidden state from one utterance to the next (pitch flutter phase, ...) that
``espeak_Terminate``/``espeak_Initialize`` do not reset, so the same text would give slightly different
samples depending on the process and on what was said before. The engine is therefore seeded once
after initialisation and every call synthesises in a forked child of that initialised-but-unused
engine (about 5 ms extra): a wav depends on its text and voice only -- not on call order, worker
count, or an interrupted run.
Output: float32 mono at 16 kHz (resampled from espeak's 22.05 kHz with soxr); wavs are 16-bit PCM.
"""
from __future__ import annotations

import ctypes
import functools
import os
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

SAMPLE_RATE = 16000

# espeak-ng's speak_lib.h constants
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_CHARS_UTF8 = 1
_POS_CHARACTER = 1
_ESPEAK_RATE = 1
_ESPEAK_PITCH = 3
_RAND_SEED = 1
_RATE_RANGE = (80, 450)
_PITCH_RANGE = (0, 100)


@dataclass(frozen=True)
class Voice:
    """One speaking voice: espeak language voice + optional variant, rate (words/min) and pitch (0..100)."""

    language: str  # "en-us", "de", "it", "cmn", ...
    variant: str = ""  # "m3", "f2", ...: a file in espeak-ng-data/voices/!v; "" = the language default
    rate: int = 175
    pitch: int = 50

    @property
    def name(self) -> str:
        return f"{self.language}+{self.variant}" if self.variant else self.language


_SynthCallback = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)


class _Engine:
    """One initialised espeak-ng instance; create through ``_engine()``, never directly."""

    def __init__(self):
        import espeakng_loader  # imported here so that importing this module stays cheap

        self.data_path = espeakng_loader.get_data_path()
        lib = ctypes.CDLL(espeakng_loader.get_library_path())
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_Initialize.restype = ctypes.c_int
        lib.espeak_SetSynthCallback.argtypes = [_SynthCallback]
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetVoiceByName.restype = ctypes.c_int
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_SetParameter.restype = ctypes.c_int
        lib.espeak_Synth.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int, ctypes.c_uint,
                                     ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p]
        lib.espeak_Synth.restype = ctypes.c_int
        lib.espeak_Info.argtypes = [ctypes.c_void_p]
        lib.espeak_Info.restype = ctypes.c_char_p
        lib.espeak_ng_SetRandSeed.argtypes = [ctypes.c_long]
        self.lib = lib
        self.native_rate = lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, self.data_path.encode(), 0)
        if self.native_rate <= 0:
            raise RuntimeError(f"espeak-ng failed to initialise with data at {self.data_path}; "
                               "reinstall the espeakng-loader wheel")
        self.version = lib.espeak_Info(None).decode()
        lib.espeak_ng_SetRandSeed(_RAND_SEED)
        self._chunks: list[bytes] = []
        # keep a reference: ctypes frees the C trampoline with the Python object
        self._callback = _SynthCallback(self._collect)
        lib.espeak_SetSynthCallback(self._callback)
        self.pid = os.getpid()

    def _collect(self, wav, n, _events):
        if wav and n > 0:
            self._chunks.append(ctypes.string_at(wav, n * 2))
        return 0  # 0 = continue

    def synth(self, text: str, voice: Voice) -> np.ndarray:
        """int16 samples at ``native_rate``."""
        if self.lib.espeak_SetVoiceByName(voice.name.encode()) != 0:
            raise ValueError(f"espeak-ng has no voice {voice.language!r}; see {self.data_path}/lang for the names")
        self.lib.espeak_SetParameter(_ESPEAK_RATE, voice.rate, 0)
        self.lib.espeak_SetParameter(_ESPEAK_PITCH, voice.pitch, 0)
        self._chunks = []
        data = text.encode("utf-8")
        err = self.lib.espeak_Synth(data, len(data) + 1, 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None)
        if err != 0:
            raise RuntimeError(f"espeak_Synth failed with error {err} for voice {voice.name!r}, text {text!r}")
        return np.frombuffer(b"".join(self._chunks), dtype=np.int16)


_ENGINE: _Engine | None = None
_LOCK = threading.Lock()


def _engine() -> _Engine:
    global _ENGINE
    if _ENGINE is None or _ENGINE.pid != os.getpid():
        if _ENGINE is not None:  # a forked child: start clean rather than share the parent's state
            _ENGINE.lib.espeak_Terminate()
        _ENGINE = _Engine()
    return _ENGINE


def _synth_in_child(engine: _Engine, text: str, voice: Voice) -> np.ndarray:
    """``engine.synth`` in a forked child, so this process's engine never leaves its initial state."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: synthesise, send, leave without running any Python cleanup
        try:
            os.close(read_fd)
            try:
                payload = b"P" + engine.synth(text, voice).tobytes()
            except ValueError as e:
                payload = b"V" + str(e).encode()
            except BaseException as e:  # noqa: BLE001 - everything must reach the parent
                payload = b"E" + repr(e).encode()
            with os.fdopen(write_fd, "wb") as f:
                f.write(payload)
        finally:
            os._exit(0)
    os.close(write_fd)
    with os.fdopen(read_fd, "rb") as f:
        payload = f.read()
    _, status = os.waitpid(pid, 0)
    kind, body = payload[:1], payload[1:]
    if kind == b"V":
        raise ValueError(body.decode())
    if kind != b"P":
        detail = body.decode() if kind == b"E" else f"child exited with wait status {status}"
        raise RuntimeError(f"espeak-ng failed for voice {voice.name!r}, text {text!r}: {detail}")
    return np.frombuffer(body, dtype=np.int16)


@functools.lru_cache(maxsize=None)
def available_variants() -> tuple[str, ...]:
    import espeakng_loader

    return tuple(sorted(p.name for p in (Path(espeakng_loader.get_data_path()) / "voices" / "!v").iterdir()))


def espeak_version() -> str:
    with _LOCK:
        return _engine().version


def _check(text: str, voice: Voice):
    if not text.strip():
        raise ValueError(f"nothing to say: empty text for voice {voice.name!r}")
    if not _RATE_RANGE[0] <= voice.rate <= _RATE_RANGE[1]:
        raise ValueError(f"voice {voice.name!r}: rate {voice.rate} words/min is outside espeak's {_RATE_RANGE}")
    if not _PITCH_RANGE[0] <= voice.pitch <= _PITCH_RANGE[1]:
        raise ValueError(f"voice {voice.name!r}: pitch {voice.pitch} is outside {_PITCH_RANGE}")
    if voice.variant and voice.variant not in available_variants():
        # espeak-ng silently ignores unknown variants, which would make two "voices" identical
        raise ValueError(f"espeak-ng has no voice variant {voice.variant!r}; choose one of "
                         f"{', '.join(v for v in available_variants() if len(v) <= 3)}, ...")


def synthesize(text: str, voice: Voice) -> np.ndarray:
    """``text`` spoken by ``voice``: float32 mono in [-1, 1) at 16 kHz."""
    _check(text, voice)
    with _LOCK:
        engine = _engine()
        pcm = _synth_in_child(engine, text, voice) if hasattr(os, "fork") else engine.synth(text, voice)
    if pcm.size == 0:
        raise RuntimeError(f"espeak-ng produced no audio for voice {voice.name!r}, text {text!r}")
    audio = soxr.resample(pcm.astype(np.float32) / 32768.0, engine.native_rate, SAMPLE_RATE)
    # resampling can overshoot full scale; int16 conversion must not wrap around
    return np.clip(audio, -1.0, 32767 / 32768).astype(np.float32)


def write_wav(path: str | Path, audio: np.ndarray, sample_rate: int = SAMPLE_RATE) -> None:
    """16-bit PCM mono wav, written to a temporary name and renamed, so a wav that exists is complete."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    sf.write(tmp, audio, sample_rate, subtype="PCM_16", format="WAV")
    os.replace(tmp, path)


def synthesize_to_file(text: str, voice: Voice, path: str | Path) -> int:
    """Synthesise and write one wav; returns its number of samples. Safe to call from worker processes."""
    audio = synthesize(text, voice)
    write_wav(path, audio)
    return int(audio.shape[0])
