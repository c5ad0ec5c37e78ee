#!/usr/bin/env python3
"""Build the synthesised multilingual corpus of egs2/mini_espeak/s2t1 (its stage 1).

    python local/make_mini_corpus.py --out data --wav_dir downloads/wav \\
        --n_train 2400 --n_dev 100 --n_test 200 --seed 1 --nj 2

Sentences come from ``local/mini_grammar.py`` next to this file (lexicon in the recipe's ``conf/grammar.yaml``),
audio from ``espnet_speechlm_plugin.synth.espeak``. Writes Kaldi data dirs ``<out>/{train,dev,test}/`` with

    wav.scp     utt  /absolute/path.wav   (several utterances share one recording's wav)
    text        utt  target text
    utt2spk     utt  speaker               (speaker = language_variant; every utt id starts with "speaker-")
    spk2utt     speaker  utt ...
    prompt      utt  lang task [question]  (lang = language of the OUTPUT; task transcribe|translate|answer)
    transcript  utt  what the audio says   (for scoring's task-confusion check)
    unanswerable  lang  the answer to an unanswerable question, per language of the grammar (for scoring's
                unanswerable accuracy: a language added to the grammar is scored like the built-in ones)

and ``<out>/corpus_stats.json`` (vocabulary, sentence lengths, voices, utterances per split/task/lang, hours)
for RESULTS.md. ``--n_*`` count utterances (data-dir lines), split over tasks by the ``--frac_*`` flags:

    transcribe        English audio -> English text; one per English recording
    translate         English audio -> each target language (split evenly over the targets)
    answer            English audio + question in any language -> answer in that language
    transcribe_other  target-language audio of a translation -> its text (alignment data)

An English recording serves every task drawn for it under its own utterance id, so the number of English
recordings is the largest of the per-task counts. Sentences never repeat within or across splits
(test and dev are drawn first). The same arguments give byte-identical outputs; a complete corpus with
the same plan is left alone; outputs appear only when complete (temporary dirs, then renames).
"""
from __future__ import annotations

import argparse
import contextlib
import functools
import hashlib
import json
import multiprocessing
import os
import random
import shutil
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

import soundfile as sf
from tqdm import tqdm

# the recipe's grammar, a sibling module: `python local/make_mini_corpus.py` puts this file's folder first on
# sys.path (Python's rule for a script), so a forked recipe's copy of the grammar is the one used
import mini_grammar
from espnet_speechlm_plugin.synth import espeak as espeak_synth

# no tqdm monitor thread: espeak_synth forks per utterance, and forking a threaded process is unsafe
tqdm.monitor_interval = 0

SPLITS = ("test", "dev", "train")  # sentence draw order: held-out sets first
TASK_KINDS = ("transcribe", "translate", "answer", "transcribe_other")
# Translation weighs most: three target lexicons to learn (BLEU target on each), while every English-audio
# task also exercises recognition; transcribe_other gives the decoder target-language text from speech.
DEFAULT_MIX = {"transcribe": 0.25, "translate": 0.4, "answer": 0.25, "transcribe_other": 0.1}
DATA_FILES = ("wav.scp", "text", "utt2spk", "spk2utt", "prompt", "transcript")
UNANSWERABLE_FILE = "unanswerable"  # read by espnet_speechlm_plugin.scoring.metrics.unanswerable_strings
WAV_MANIFEST = ".mini_corpus.json"
PLAN_VERSION = 1  # bump when the plan or the synthesis changes meaning, to invalidate old corpora


@dataclass(frozen=True)
class Recording:
    rec_id: str
    lang: str
    speaker: str
    voice: espeak_synth.Voice
    text: str  # what the audio says
    wav: str  # absolute path


@dataclass(frozen=True)
class Utterance:
    utt_id: str
    rec: Recording
    task: str  # transcribe | translate | answer
    lang: str  # language of the output
    text: str  # target
    question: str = ""
    answerable: bool = True


def allocate(n: int, weights: dict[str, float]) -> dict[str, int]:
    """Split n into integer parts proportional to weights (largest remainder; ties go to the earlier key)."""
    total = sum(weights.values())
    if n < 0 or total <= 0 or any(w < 0 for w in weights.values()):
        raise ValueError(f"cannot split {n} by weights {weights}: "
                         "need n >= 0 and non-negative weights with a positive sum")
    exact = {k: n * w / total for k, w in weights.items()}
    out = {k: int(v) for k, v in exact.items()}
    order = sorted(weights, key=lambda k: (-(exact[k] - out[k]), list(weights).index(k)))
    for k in order[: n - sum(out.values())]:
        out[k] += 1
    return out


def _balanced(rng, counts: dict):
    """A shuffled list holding each key counts[key] times."""
    items = [k for k, c in counts.items() for _ in range(c)]
    rng.shuffle(items)
    return items


@functools.lru_cache(maxsize=None)
def espeak_voices() -> frozenset:
    """Lower-case names of espeak-ng's language voices (``en-us``, ``de``, ``fr``, ``cmn``, ...)."""
    import espeakng_loader

    return frozenset(p.name.lower() for p in (Path(espeakng_loader.get_data_path()) / "lang").rglob("*") if p.is_file())


def plan_corpus(grammar, sizes: dict[str, int], mix: dict[str, float], unanswerable: float, seed: int,
                wav_dir: str | Path) -> dict[str, list[Utterance]]:
    """Every utterance of every split (sorted by id), without synthesising anything."""
    if not 0 <= unanswerable <= 1:
        raise ValueError(f"--unanswerable must be a share in [0, 1], got {unanswerable}")
    wav_dir = Path(wav_dir).resolve()
    src, targets = grammar.source, grammar.targets
    for lang in grammar.languages:  # fail before synthesising, not in a worker
        voice = grammar.espeak(lang)["voice"]
        if voice.lower() not in espeak_voices():
            raise ValueError(f"{grammar.path}: languages.{lang}.espeak.voice is {voice!r}, which espeak-ng does not "
                             "have; the voices are the file names under espeak-ng-data/lang/ in the espeakng-loader "
                             "wheel (e.g. fr, es, pt, nl, ru, ja, cmn)")
        unknown = [v for v in grammar.espeak(lang)["variants"] if v not in espeak_synth.available_variants()]
        if unknown:
            raise ValueError(f"{grammar.path}: languages.{lang}.espeak.variants names {unknown}, which espeak-ng "
                             "does not have; see espeak-ng-data/voices/!v in the espeakng-loader wheel")
    counts = {}
    for split in SPLITS:
        c = allocate(sizes[split], mix)
        translate = allocate(c["translate"], {lang: 1 for lang in targets})
        other = allocate(c["transcribe_other"], {lang: 1 for lang in targets})
        qlangs = allocate(c["answer"], {lang: 1 for lang in grammar.languages})
        n_src = max(c["transcribe"], c["answer"], *translate.values())
        counts[split] = dict(c=c, translate=translate, other=other, qlangs=qlangs, n_src=n_src)
    sentences = mini_grammar.sample_disjoint(
        grammar, {s: counts[s]["n_src"] + sum(counts[s]["other"].values()) for s in SPLITS}, seed)

    plan = {}
    for split in SPLITS:
        rng = random.Random(f"mini-corpus-{seed}-{split}")
        k, pool = counts[split], iter(sentences[split])
        recs = []  # (Recording, Sentence)
        langs = [src] * k["n_src"] + [lang for lang in targets for _ in range(k["other"][lang])]
        for i, lang in enumerate(langs):
            spec = grammar.espeak(lang)
            variant = rng.choice(spec["variants"])
            voice = espeak_synth.Voice(spec["voice"], variant, rng.randint(*spec["rate"]), rng.randint(*spec["pitch"]))
            speaker = f"{lang}_{variant}"
            rec_id = f"{speaker}-{split}-{i:05d}"
            s = next(pool)
            recs.append((Recording(rec_id, lang, speaker, voice, grammar.realise(s, lang),
                                   str(wav_dir / split / f"{rec_id}.wav")), s))
        src_recs, utts = recs[: k["n_src"]], []

        def utt(rec, task, lang, text, **kw):
            utts.append(Utterance(f"{rec.rec_id}-{task}-{lang}", rec, task, lang, text, **kw))

        for rec, _ in rng.sample(src_recs, k["c"]["transcribe"]):
            utt(rec, "transcribe", src, rec.text)
        for lang in targets:
            for rec, s in rng.sample(src_recs, k["translate"][lang]):
                utt(rec, "translate", lang, grammar.realise(s, lang))
        chosen = rng.sample(src_recs, k["c"]["answer"])
        qlangs = _balanced(rng, k["qlangs"])
        n_unans = round(unanswerable * len(chosen))
        answerable = _balanced(rng, {False: n_unans, True: len(chosen) - n_unans})
        for (rec, s), lang, ok in zip(chosen, qlangs, answerable):
            qa = grammar.ask(s, lang, rng, answerable=ok)
            utt(rec, "answer", lang, qa.answer, question=qa.question, answerable=ok)
        for rec, _ in recs[k["n_src"]:]:
            utt(rec, "transcribe", rec.lang, rec.text)
        plan[split] = sorted(utts, key=lambda u: u.utt_id)
    return plan


def recordings(plan) -> dict[str, Recording]:
    """The distinct recordings the plan uses, by wav path (sorted)."""
    recs = {u.rec.wav: u.rec for utts in plan.values() for u in utts}
    return dict(sorted(recs.items()))


def _digest(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, ensure_ascii=False, default=str).encode()).hexdigest()[:16]


def wav_fingerprint(plan) -> str:
    recs = [[r.wav, asdict(r.voice), r.text] for r in recordings(plan).values()]
    return _digest([PLAN_VERSION, espeak_synth.espeak_version(), espeak_synth.SAMPLE_RATE, recs])


def data_lines(utts: list[Utterance]) -> dict[str, list[str]]:
    """The data-dir files of one split as lines (no newlines), sorted by utterance id (C locale)."""
    lines = {
        "wav.scp": [f"{u.utt_id} {u.rec.wav}" for u in utts],
        "text": [f"{u.utt_id} {u.text}" for u in utts],
        "utt2spk": [f"{u.utt_id} {u.rec.speaker}" for u in utts],
        "prompt": [" ".join(filter(None, (u.utt_id, u.lang, u.task, u.question))) for u in utts],
        "transcript": [f"{u.utt_id} {u.rec.text}" for u in utts],
    }
    spk2utt = {}
    for u in utts:
        spk2utt.setdefault(u.rec.speaker, []).append(u.utt_id)
    lines["spk2utt"] = [" ".join([spk, *ids]) for spk, ids in sorted(spk2utt.items())]
    return lines


def _synth_job(job):
    wav, voice, text = job
    return wav, espeak_synth.synthesize_to_file(text, voice, wav)


def _wavs_ready(plan, wav_dir: Path) -> dict[str, int] | None:
    """Samples per wav if wav_dir holds exactly this plan's wavs, else None."""
    manifest = wav_dir / WAV_MANIFEST
    if not manifest.exists():
        return None
    done = json.loads(manifest.read_text())
    if done.get("fingerprint") != wav_fingerprint(plan) or not all(Path(w).exists() for w in recordings(plan)):
        return None
    return done["samples"]


def synthesise(plan, wav_dir: Path, nj: int, reuse: bool = True) -> dict[str, int]:
    """Make every wav of the plan under wav_dir (resuming an interrupted run); returns samples per wav."""
    recs = recordings(plan)
    fingerprint = wav_fingerprint(plan)
    manifest = wav_dir / WAV_MANIFEST
    if manifest.exists():
        ready = _wavs_ready(plan, wav_dir)
        if reuse and ready is not None:
            return ready
    elif wav_dir.exists() and any(wav_dir.iterdir()):
        raise SystemExit(f"{wav_dir} exists but was not written by make_mini_corpus.py (no {WAV_MANIFEST}); "
                         "remove it or pass another --wav_dir")
    # Synthesise into <wav_dir>.tmp/ (same layout), then swap it in; wav.scp names the final paths.
    tmp = wav_dir.with_name(wav_dir.name + ".tmp")
    partial = tmp / WAV_MANIFEST
    if not (partial.exists() and json.loads(partial.read_text()).get("fingerprint") == fingerprint):
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        partial.write_text(json.dumps({"fingerprint": fingerprint, "complete": False}))
    jobs, samples = [], {}
    for wav, rec in recs.items():
        tmp_wav = tmp / Path(wav).relative_to(wav_dir)
        if tmp_wav.exists():  # written atomically by an interrupted run with the same plan
            samples[wav] = sf.info(str(tmp_wav)).frames
        else:
            jobs.append((str(tmp_wav), rec.voice, rec.text))
    start = time.time()
    nj = min(nj, max(1, len(jobs) // 50))  # starting a worker costs about as much as 50 wavs
    # spawn: workers start clean (no inherited threads or library state); each initialises its own espeak-ng.
    # A Pool's context exit terminates the workers, also when a job fails.
    pool = multiprocessing.get_context("spawn").Pool(nj) if nj > 1 else contextlib.nullcontext()
    with pool, tqdm(total=len(recs), initial=len(samples), desc="synthesising", unit="wav", file=sys.stderr) as bar:
        if nj > 1:
            results = pool.imap_unordered(_synth_job, jobs, chunksize=max(1, len(jobs) // (nj * 16)))
        else:
            results = map(_synth_job, jobs)
        for tmp_wav, n in results:
            samples[str(wav_dir / Path(tmp_wav).relative_to(tmp))] = n
            bar.update()
    samples = dict(sorted(samples.items()))
    hours = sum(samples.values()) / espeak_synth.SAMPLE_RATE / 3600
    print(f"synthesised {len(jobs)} wavs ({hours:.2f} h of audio in all) in {time.time() - start:.1f} s "
          f"with {max(nj, 1)} process(es)", file=sys.stderr)
    partial.write_text(json.dumps({"fingerprint": fingerprint, "complete": True, "samples": samples}, indent=1))
    old = wav_dir.with_name(wav_dir.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if wav_dir.exists():
        os.replace(wav_dir, old)
    os.replace(tmp, wav_dir)
    shutil.rmtree(old, ignore_errors=True)
    return samples


def corpus_stats(grammar, plan, samples, args_record) -> dict:
    sr = espeak_synth.SAMPLE_RATE
    src = grammar.source
    stats = {"plan_version": PLAN_VERSION, "espeak_ng": espeak_synth.espeak_version(), "sample_rate": sr,
             "config": args_record}
    stats["vocabulary"] = {lang: {"unit": grammar.unit(lang), "lexicon": len(grammar.vocabulary(lang))}
                           for lang in grammar.languages}
    sentences = {}  # split -> source texts (one per source recording)
    splits = {}
    for split, utts in plan.items():
        recs = {u.rec.wav: u.rec for u in utts}
        sentences[split] = {r.text for r in recs.values() if r.lang == src}
        tasks = Counter((u.task, u.lang) for u in utts)
        answers = [u for u in utts if u.task == "answer"]
        splits[split] = {
            "utterances": len(utts),
            "recordings": len(recs),
            "speakers": len({r.speaker for r in recs.values()}),
            "hours_audio": round(sum(samples[w] for w in recs) / sr / 3600, 4),
            "hours_utterances": round(sum(samples[u.rec.wav] for u in utts) / sr / 3600, 4),
            "tasks": {task: {lang: tasks[task, lang] for lang in grammar.languages if tasks[task, lang]}
                      for task in ("transcribe", "translate", "answer")},
            "unanswerable": sum(not u.answerable for u in answers),
            "unanswerable_share": round(sum(not u.answerable for u in answers) / max(len(answers), 1), 4),
        }
    stats["splits"] = splits
    lengths = [len(t.split()) for texts in sentences.values() for t in texts]
    stats["words_per_sentence"] = {src: {"min": min(lengths, default=0), "max": max(lengths, default=0),
                                         "mean": round(sum(lengths) / max(len(lengths), 1), 2)}}
    train_words = {w for t in sentences["train"] for w in t.split()}
    for lang in grammar.languages:
        seen = {tok for u in plan["train"] if u.lang == lang and u.task != "answer"
                for tok in grammar.tokens(u.text, lang)}
        stats["vocabulary"][lang]["train"] = len(seen)
    stats["held_out"] = {
        "dev_sentences_in_train": len(sentences["dev"] & sentences["train"]),
        "test_sentences_in_train": len(sentences["test"] & sentences["train"]),
        "test_words_unseen_in_train": sorted({w for t in sentences["test"] for w in t.split()} - train_words),
    }
    voices = sorted({(u.rec.lang, u.rec.voice.name) for utts in plan.values() for u in utts})
    stats["voices"] = {lang: [name for vl, name in voices if vl == lang] for lang in grammar.languages}
    stats["voice_variants"] = len(voices)
    stats["rate_wpm"] = {lang: grammar.espeak(lang)["rate"] for lang in grammar.languages}
    stats["pitch"] = {lang: grammar.espeak(lang)["pitch"] for lang in grammar.languages}
    return stats


def _write_split(dirpath: Path, utts, grammar):
    dirpath.mkdir(parents=True)
    for name, lines in data_lines(utts).items():
        with open(dirpath / name, "w", encoding="utf-8") as f:
            f.write("".join(line + "\n" for line in lines))
    with open(dirpath / UNANSWERABLE_FILE, "w", encoding="utf-8") as f:
        f.write("".join(f"{lang} {grammar.unanswerable(lang)}\n" for lang in grammar.languages))


def _complete(out: Path, fingerprint: str, plan, wav_dir: Path) -> bool:
    stats_file = out / "corpus_stats.json"
    if not stats_file.exists() or _wavs_ready(plan, wav_dir) is None:
        return False
    if json.loads(stats_file.read_text(encoding="utf-8")).get("fingerprint") != fingerprint:
        return False
    return all((out / split / name).exists() for split in SPLITS for name in DATA_FILES + (UNANSWERABLE_FILE,))


def build_corpus(out, wav_dir, grammar_path=None, sizes=None, mix=None, unanswerable=0.25, seed=1, nj=1,
                 force=False) -> dict:
    """Synthesise and write the whole corpus (see the module docstring); returns the corpus statistics."""
    out, wav_dir = Path(out).resolve(), Path(wav_dir).resolve()
    grammar = mini_grammar.load_grammar(grammar_path)
    sizes = sizes or {"train": 2400, "dev": 100, "test": 200}
    mix = mix or DEFAULT_MIX
    plan = plan_corpus(grammar, sizes, mix, unanswerable, seed, wav_dir)
    args_record = {"seed": seed, "sizes": sizes, "mix": mix, "unanswerable": unanswerable,
                   "grammar": Path(grammar.path).name}
    fingerprint = _digest([wav_fingerprint(plan), {s: data_lines(u) for s, u in plan.items()}, args_record])
    if not force and _complete(out, fingerprint, plan, wav_dir):
        print(f"{out}: corpus complete (fingerprint {fingerprint}); nothing to do", file=sys.stderr)
        return json.loads((out / "corpus_stats.json").read_text(encoding="utf-8"))
    samples = synthesise(plan, wav_dir, nj, reuse=not force)
    stats = corpus_stats(grammar, plan, samples, args_record)
    stats["fingerprint"] = fingerprint

    out.mkdir(parents=True, exist_ok=True)
    tmp = out / ".mini_corpus.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    for split, utts in plan.items():
        _write_split(tmp / split, utts, grammar)
    (tmp / "corpus_stats.json").write_text(json.dumps(stats, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    for split in SPLITS:  # corpus_stats.json goes last: it marks the corpus complete
        old = out / f".{split}.old"
        shutil.rmtree(old, ignore_errors=True)
        if (out / split).exists():
            os.replace(out / split, old)
        os.replace(tmp / split, out / split)
        shutil.rmtree(old, ignore_errors=True)
    os.replace(tmp / "corpus_stats.json", out / "corpus_stats.json")
    tmp.rmdir()
    summary = ", ".join(f"{s} {stats['splits'][s]['utterances']} utts / {stats['splits'][s]['recordings']} wavs"
                        for s in SPLITS)
    print(f"{out}: wrote {summary}", file=sys.stderr)
    return stats


def get_parser():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--out", default="data", help="where the data dirs and corpus_stats.json go")
    p.add_argument("--wav_dir", default="downloads/wav", help="where the wavs go (owned by this script)")
    p.add_argument("--grammar", default=str(mini_grammar.DEFAULT_GRAMMAR), help="grammar/lexicon YAML")
    p.add_argument("--n_train", type=int, default=2400, help="training utterances (data-dir lines)")
    p.add_argument("--n_dev", type=int, default=100)
    p.add_argument("--n_test", type=int, default=200)
    for kind in TASK_KINDS:
        p.add_argument(f"--frac_{kind}", type=float, default=DEFAULT_MIX[kind],
                       help=f"share of utterances for {kind} (shares are normalised)")
    p.add_argument("--unanswerable", type=float, default=0.25, help="share of answer utterances that are unanswerable")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--nj", type=int, default=2, help="synthesis processes")
    p.add_argument("--force", action="store_true", help="rebuild even if a complete corpus with this plan exists")
    return p


def main(argv=None):
    args = get_parser().parse_args(argv)
    build_corpus(args.out, args.wav_dir, args.grammar,
                 sizes={"train": args.n_train, "dev": args.n_dev, "test": args.n_test},
                 mix={kind: getattr(args, f"frac_{kind}") for kind in TASK_KINDS},
                 unanswerable=args.unanswerable, seed=args.seed, nj=args.nj, force=args.force)


if __name__ == "__main__":
    main()
