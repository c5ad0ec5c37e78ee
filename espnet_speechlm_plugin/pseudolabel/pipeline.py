"""Pseudo-labelling end to end: English transcripts → MT ensemble → COMETKiwi → best per segment → new data dir.

Where it sits: ``bin/pseudolabel.py`` parses the command line and calls :func:`run`; the paper's recipe
(egs2/iwslt25_if) runs it in stage 1 to turn ASR data (Common Voice English) into speech-translation data.

    plan    read the data dir; skip empty / over-long / non-English transcripts (source.py), with reasons
    jobs    for each shard of the remaining segments (``--nj``): every MT model translates (mt.py), then
            COMETKiwi scores every non-empty hypothesis (qe.py); each batch is cached as soon as it is done
    merge   per segment and language, the best-scoring hypothesis ≥ threshold (select.py); write the new data
            dir atomically with report.md / report.json / scores.png (report.py)

Batches are fixed by the shard (segments sorted by source length, then id, cut every ``batch_size``); a batch
already in the cache is skipped, a partly cached one is redone whole. A resumed run therefore computes the very
batches an uninterrupted run does, and gives identical files (same ``--nj``, ``--batch_size``, ``--qe_batch_size``).
"""
from __future__ import annotations

import logging
import multiprocessing
import os
import shutil
import tempfile
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Optional

from tqdm import tqdm

from espnet_speechlm_plugin.data.kaldi import KaldiFileError, read_kaldi_text, write_kaldi_text
from espnet_speechlm_plugin.pseudolabel import report as report_mod
from espnet_speechlm_plugin.pseudolabel.cache import JsonlCache, fingerprint, text_key
from espnet_speechlm_plugin.pseudolabel.mt import MTConfigError, Route, Translator, load_mt_config
from espnet_speechlm_plugin.pseudolabel.qe import QEScorer, resolve_checkpoint
from espnet_speechlm_plugin.pseudolabel.select import Candidate, LanguageStats
from espnet_speechlm_plugin.pseudolabel.source import NO_AUDIO, check_source
from espnet_speechlm_plugin.vocab import format_prompt

log = logging.getLogger(__name__)
QE_CHUNK_BATCHES = 16  # QE batches per predict call (and per cache append)
COPIED = ("utt2spk", "utt2dur")  # per-utterance files carried over to the new ids when the input has them


@dataclass
class Options:
    data: str
    tgt_langs: list
    mt_models: str
    out: str
    qe_model: str = "Unbabel/wmt22-cometkiwi-da"
    threshold: float = 0.85
    work_dir: Optional[str] = None  # default: <out>.work
    nj: int = 1
    job: Optional[int] = None  # run only this shard (0-based; the CLI's --job is 1-based) of nj, then stop
    batch_size: int = 16
    qe_batch_size: int = 16
    max_src_chars: int = 500
    seed: int = 0
    device: str = "auto"
    progress: bool = True

    @property
    def cache_dir(self) -> Path:
        return Path(self.work_dir or f"{self.out.rstrip('/')}.work") / "cache"


@dataclass
class Plan:
    utts: list  # every utterance of the data dir, sorted
    sources: dict  # utt -> English transcript (kept segments only)
    skipped: dict  # utt -> reason
    routes: dict  # lang -> [Route] in YAML order
    data: dict  # file name -> {utt: value} of the input data dir


class PseudolabelError(RuntimeError):
    pass


def read_plan(opts: Options) -> Plan:
    data_dir = Path(opts.data)
    for name in ("text", "wav.scp"):
        if not (data_dir / name).is_file():
            raise PseudolabelError(f"{data_dir}: no `{name}` file; --data must be a Kaldi data dir with wav.scp and "
                                   f"text (English transcripts)")
    if (data_dir / "segments").exists():
        raise PseudolabelError(f"{data_dir}: `segments` is not supported (wav.scp must hold one audio per utterance)")
    if Path(opts.out).resolve() == data_dir.resolve():
        raise PseudolabelError(f"--out {opts.out} is the input data dir; write the pseudo-labelled copy elsewhere")
    data = {name: read_kaldi_text(data_dir / name) for name in ("text", "wav.scp") + COPIED
            if (data_dir / name).is_file()}
    routes = load_mt_config(opts.mt_models, list(opts.tgt_langs))
    sources, skipped = {}, {}
    for utt, src in data["text"].items():
        reason = NO_AUDIO if utt not in data["wav.scp"] else check_source(src, opts.max_src_chars)
        if reason:
            skipped[utt] = reason
        else:
            sources[utt] = src.strip()
    return Plan(sorted(data["text"]), sources, skipped, routes, data)


def _device(opts: Options, job: int) -> str:
    import torch

    if opts.device != "auto":
        return opts.device
    if torch.cuda.is_available():
        return f"cuda:{job % torch.cuda.device_count()}"  # --nj jobs spread over the visible GPUs
    return "cpu"


def _shard(plan: Plan, job: int, nj: int) -> list[str]:
    """This job's segments in batch order: by source length, then id (fixed, so batches are reproducible)."""
    mine = sorted(plan.sources)[job::nj]
    return sorted(mine, key=lambda u: (len(plan.sources[u]), u))


def _batches(items: list, size: int) -> list[list]:
    return [items[i:i + size] for i in range(0, len(items), size)]


def route_dir(opts: Options, route: Route) -> Path:
    return opts.cache_dir / route.lang / f"{route.tag}-{route.fingerprint()}"


def qe_kind(opts: Options) -> str:
    return f"qe-{fingerprint(str(resolve_checkpoint(opts.qe_model).resolve()))}"


def _fresh(record: Optional[dict], key: str) -> bool:
    return record is not None and record.get("key") == key


def check_models_resolvable(routes: list[Route], mt_yaml: str) -> None:
    """Fail before any work when a model name or path cannot be loaded (reads only config.json)."""
    from transformers import AutoConfig

    from espnet_speechlm_plugin.model.hf import PretrainedNotFound, from_pretrained

    for route in {r.name_or_path: r for r in routes}.values():
        if os.path.isdir(route.name_or_path):
            # checked by hand: AutoConfig guesses a model type from the path's name when config.json is missing
            if not os.path.isfile(os.path.join(route.name_or_path, "config.json")):
                raise MTConfigError(f"{mt_yaml}, model '{route.tag}': {route.name_or_path} is a directory but not "
                                    f"a saved HF model (no config.json); it needs the config.json, weights and "
                                    f"tokenizer files that save_pretrained or `huggingface-cli download` write")
            continue
        try:
            from_pretrained(AutoConfig, route.name_or_path, f"MT model '{route.tag}'")
        except PretrainedNotFound as e:
            raise MTConfigError(f"{mt_yaml}, model '{route.tag}': {e}".replace(
                "set name_or_path to DIR in the config", f"set name_or_path to DIR in {mt_yaml}")) from None


def mt_work(opts: Options, plan: Plan, job: int, nj: int) -> list:
    """(route, cache, cached records, batches to run) of this job's routes that have uncached batches."""
    shard = _shard(plan, job, nj)
    work = []
    for lang in opts.tgt_langs:
        for route in plan.routes[lang]:
            cache = JsonlCache(route_dir(opts, route), "hyp")
            cached = cache.load()
            todo = [b for b in _batches(shard, opts.batch_size)
                    if not all(_fresh(cached.get(u), text_key(plan.sources[u])) for u in b)]
            if todo:
                work.append((route, cache, cached, todo))
    return work


def translate_job(opts: Options, plan: Plan, job: int, nj: int, device: str) -> int:
    """Translate this job's shard with every route that still has uncached batches; returns segments translated."""
    work = mt_work(opts, plan, job, nj)
    check_models_resolvable([w[0] for w in work], opts.mt_models)
    done = 0
    by_model: dict[tuple, list] = defaultdict(list)
    for w in work:
        by_model[w[0].loader_key()].append(w)
    for group in by_model.values():
        translator = Translator(group[0][0], device)
        try:
            for route, cache, cached, todo in group:
                bar = tqdm(todo, desc=f"MT {route.tag} en→{route.lang}", unit="batch", disable=not opts.progress,
                           position=job if nj > 1 else None, leave=nj == 1)
                for batch in bar:
                    hyps = translator.translate([plan.sources[u] for u in batch], route, opts.seed)
                    keys = [text_key(plan.sources[u]) for u in batch]
                    new = [{"utt": u, "key": k, "hyp": h} for u, k, h in zip(batch, keys, hyps)
                           if not _fresh(cached.get(u), k)]
                    cache.append(f"j{job}-{nj}", new)
                    done += len(batch)
        finally:
            translator.close()
    return done


def qe_work(opts: Options, plan: Plan, job: int, nj: int):
    """This job's QE chunks that have uncached scores, with the caches to write them to."""
    kind = qe_kind(opts)
    items, caches, cached = [], {}, {}  # items: (route, utt, src, hyp, key)
    for lang in opts.tgt_langs:
        for route in plan.routes[lang]:
            rdir = route_dir(opts, route)
            hyps = JsonlCache(rdir, "hyp").load()
            caches[route.lang, route.tag] = JsonlCache(rdir, kind)
            cached[route.lang, route.tag] = caches[route.lang, route.tag].load()
            for utt in sorted(plan.sources)[job::nj]:
                rec = hyps.get(utt)
                if not _fresh(rec, text_key(plan.sources[utt])):
                    raise PseudolabelError(f"no cached hypothesis of '{route.tag}' for utterance '{utt}' ({lang}); "
                                           f"the MT step of this job did not finish: run the same command again")
                if rec["hyp"].strip():  # an empty hypothesis is never kept: no need to score it
                    items.append((route, utt, plan.sources[utt], rec["hyp"], text_key(plan.sources[utt], rec["hyp"])))
    todo = [c for c in _batches(items, opts.qe_batch_size * QE_CHUNK_BATCHES)
            if not all(_fresh(cached[r.lang, r.tag].get(u), k) for r, u, _, _, k in c)]
    return todo, caches, cached


def score_job(opts: Options, plan: Plan, job: int, nj: int, device: str) -> int:
    """COMETKiwi-score this job's non-empty hypotheses that have no cached score; returns pairs scored."""
    todo, caches, cached = qe_work(opts, plan, job, nj)
    if not todo:
        return 0
    scorer = QEScorer(opts.qe_model, opts.qe_batch_size, device)
    done = 0
    for chunk in tqdm(todo, desc="QE COMETKiwi", unit="chunk", disable=not opts.progress,
                      position=job if nj > 1 else None, leave=nj == 1):
        scores = scorer.score([(src, hyp) for _, _, src, hyp, _ in chunk])
        per_route = defaultdict(list)
        for (route, utt, _, _, key), score in zip(chunk, scores):
            if not _fresh(cached[route.lang, route.tag].get(utt), key):
                per_route[route.lang, route.tag].append({"utt": utt, "key": key, "score": score})
        for rkey, records in per_route.items():
            caches[rkey].append(f"j{job}-{nj}", records)
        done += len(chunk)
    return done


def job_pending(opts: Options, plan: Plan, job: int, nj: int) -> bool:
    """Whether a job has anything left to compute (a finished run's rerun starts no worker and loads no model)."""
    return bool(mt_work(opts, plan, job, nj)) or bool(qe_work(opts, plan, job, nj)[0])


def run_job(opts: Options, job: int, nj: int, plan: Optional[Plan] = None) -> None:
    plan = plan or read_plan(opts)
    device = _device(opts, job)
    n_mt = translate_job(opts, plan, job, nj, device)
    n_qe = score_job(opts, plan, job, nj, device)
    log.info("job %d of %d: %d segment translations and %d QE scores computed (the rest was cached)",
             job + 1, nj, n_mt, n_qe)


def _job_entry(opts_dict: dict, job: int, nj: int) -> None:
    """A ``--nj`` worker process (spawned: CUDA and forked processes do not mix)."""
    import torch

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // nj))
    run_job(Options(**opts_dict), job, nj)


def merge(opts: Options, plan: Plan) -> dict[str, LanguageStats]:
    """Select per segment and language, write the new data dir and the report; returns the per-language stats."""
    kind = qe_kind(opts)
    stats, out = {}, defaultdict(dict)
    for lang in opts.tgt_langs:
        routes = plan.routes[lang]
        hyps = {r.tag: JsonlCache(route_dir(opts, r), "hyp").load() for r in routes}
        scores = {r.tag: JsonlCache(route_dir(opts, r), kind).load() for r in routes}
        st = stats[lang] = LanguageStats(lang, [r.tag for r in routes])
        for utt in plan.utts:
            if utt in plan.skipped:
                st.add_skipped(plan.skipped[utt])
                continue
            src = plan.sources[utt]
            cands = []
            for r in routes:
                h = hyps[r.tag].get(utt)
                if not _fresh(h, text_key(src)):
                    raise PseudolabelError(f"utterance '{utt}' has no cached {lang} hypothesis of '{r.tag}': a job "
                                           f"has not finished; run the command again (without --job) to complete it")
                if not h["hyp"].strip():
                    cands.append(Candidate(r.tag, h["hyp"], None))
                    continue
                s = scores[r.tag].get(utt)
                if not _fresh(s, text_key(src, h["hyp"])):
                    raise PseudolabelError(f"utterance '{utt}' ({lang}, '{r.tag}') has no cached QE score: a job has "
                                           f"not finished; run the command again (without --job) to complete it")
                cands.append(Candidate(r.tag, h["hyp"], s["score"]))
            choice = st.add(cands, opts.threshold)
            if choice.kept:
                out[lang][utt] = choice.best
        st.check()
    write_data_dir(opts, plan, stats, out)
    return stats


def write_data_dir(opts: Options, plan: Plan, stats: dict, kept: dict) -> None:
    files = defaultdict(dict)
    for lang, chosen in kept.items():
        for utt, cand in chosen.items():
            new = f"{utt}-{lang}"
            files["wav.scp"][new] = plan.data["wav.scp"][utt]
            for name in COPIED:
                if name in plan.data and utt in plan.data[name]:
                    files[name][new] = plan.data[name][utt]
            files["text"][new] = " ".join(cand.hyp.split())  # one line per utterance
            files["prompt"][new] = format_prompt(lang, "translate")
            files["transcript"][new] = plan.sources[utt]
            files["utt2mt"][new] = f"{cand.model} {cand.score:.6f}"
    names = ["wav.scp", "text", "prompt", "transcript", "utt2mt"] + [n for n in COPIED if n in plan.data]
    spk2utt = defaultdict(list)
    for utt, spk in sorted(files["utt2spk"].items()):
        spk2utt[spk].append(utt)

    def build(tmp: Path) -> None:
        for name in names:
            write_kaldi_text(tmp / name, files[name])
        if "utt2spk" in plan.data:
            write_kaldi_text(tmp / "spk2utt", {spk: " ".join(utts) for spk, utts in spk2utt.items()})
        report_mod.write_report(tmp, opts, plan, stats)

    write_dir_atomic(Path(opts.out), build)


def write_dir_atomic(out: Path, build: Callable[[Path], None]) -> None:
    """Build the directory next to ``out`` and rename it into place: readers see the old dir or the new one."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp.", dir=out.parent))
    try:
        build(tmp)
        os.chmod(tmp, 0o755)  # mkdtemp makes it private
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if out.exists():
        old = out.parent / f".{out.name}.old.{os.getpid()}"
        os.rename(out, old)
        os.rename(tmp, out)
        shutil.rmtree(old)
    else:
        os.rename(tmp, out)


def run(opts: Options) -> Optional[dict]:
    """The whole command; returns the per-language stats (None with ``--job``, which only fills the cache)."""
    try:
        plan = read_plan(opts)
    except KaldiFileError as e:
        raise PseudolabelError(str(e)) from None
    resolve_checkpoint(opts.qe_model)  # a wrong --qe_model fails now, not after hours of MT
    log.info("%d segments, %d skipped (%s), target languages %s", len(plan.utts), len(plan.skipped),
             ", ".join(f"{r}: {n}" for r, n in sorted(Counter(plan.skipped.values()).items())) or "none",
             ",".join(opts.tgt_langs))
    if opts.job is not None:
        if not 0 <= opts.job < opts.nj:
            raise PseudolabelError(f"job index {opts.job} must be in 0..{opts.nj - 1} (nj {opts.nj})")
        run_job(opts, opts.job, opts.nj, plan)
        return None
    pending = [j for j in range(opts.nj) if job_pending(opts, plan, j, opts.nj)]
    if opts.nj == 1 and pending:
        run_job(opts, 0, 1, plan)
    elif pending:
        ctx = multiprocessing.get_context("spawn")
        with ctx.Pool(len(pending)) as pool:
            pool.starmap(_job_entry, [(asdict(opts), j, opts.nj) for j in pending])
    return merge(opts, plan)

