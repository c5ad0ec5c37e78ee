"""Ratio benchmarks of issue #8 (P1-P4, P6 and peak RSS), one run, written to bench/results.json and bench/README.md.

    OMP_NUM_THREADS=1 .venv/bin/python bench/run.py            # what `make bench` runs
    .venv/bin/python bench/run.py --only P1 P4 --repeats 5     # a subset; results of other ids are kept
    .venv/bin/python bench/run.py --only RSS --with_0p5b       # + peak RSS of one 0.5B-architecture step (CPU, slow)
    .venv/bin/python bench/run.py --only P7                    # w2v-BERT attention at real size (~30 min, <= 20 GB)

P5 (`make demo` wall time) has its own script, bench/p5_demo.sh, which writes its entry into the same results.json.
Every figure is a ratio or a quantity measured in this run; timings are the minimum over ``--repeats`` runs
(interleaved, so load from other processes hits both sides alike). Nothing here asserts on time.
"""

import argparse
import contextlib
import datetime
import json
import math
import os
import platform
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "bench"
torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))

TARGETS = {"P1": "report: minutes per 1,000 h on one core (vs HF's extractor)",
           "P2": "<= 5 %", "P3": "<= 1.10x", "P4": ">= 5x, identical", "P5": "<= 15 min",
           "P6": "tokens/s, MFU, peak memory (CUDA)",
           "P7": "layer 30 s fwd+bwd: >= 3x less memory, not slower; 90 s: the same, or only ours fits",
           "P8": ">= 1.5x HF generate, identical"}


def best_of(fn, repeats):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


# ----------------------------------------------------------------------------------------------------- P1 features
def speech_audio(seconds, seed):
    """espeak-ng speech (en/de/it/zh voices, random sentences of the mini grammar's words) of about ``seconds``."""
    from espnet_speechlm_plugin.synth.espeak import Voice, synthesize

    words = ("the red cat sees two dogs in the garden a small green bird sleeps on the old bridge and "
             "die rote Katze sieht zwei Hunde il gatto rosso vede due cani").split()
    voices = [Voice("en-us"), Voice("de"), Voice("it"), Voice("en-us", "f2")]
    rng = random.Random(seed)
    pieces, total = [], 0
    while total < seconds * 16000:
        text = " ".join(rng.choice(words) for _ in range(rng.randint(4, 14)))
        wav = synthesize(text, voices[len(pieces) % len(voices)])
        pieces.append(wav)
        total += len(wav)
    return np.concatenate(pieces)[: int(seconds * 16000)].astype(np.float32)


def bench_p1(repeats):
    from transformers import SeamlessM4TFeatureExtractor

    from espnet_speechlm_plugin.features.fbank import compute_fbank, compute_fbank_batch

    hf = SeamlessM4TFeatureExtractor()

    def hf_features(waveforms):
        out = hf(waveforms, sampling_rate=16000, return_tensors="np", padding=True)
        return [f[m == 1] for f, m in zip(out["input_features"], out["attention_mask"])]

    long = speech_audio(60, seed=0)
    rng = np.random.default_rng(1)
    source = speech_audio(32 * 20, seed=1)
    lengths = (rng.uniform(4, 20, 32) * 16000).astype(int)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    batch = [source[s: s + n] for s, n in zip(starts, lengths)]
    result = {}
    for name, inputs, ours_fn in [("60s", [long], lambda: compute_fbank(long)),
                                  ("batch32x4-20s", batch, lambda: compute_fbank_batch(batch))]:
        hf_times, our_times = [], []
        for _ in range(repeats):  # interleaved
            hf_times.append(best_of(lambda: hf_features(inputs), 1))
            our_times.append(best_of(ours_fn, 3))
        ours = compute_fbank_batch(inputs)
        diff = max(float(np.abs(o.numpy() - h).max()) for o, h in zip(ours, hf_features(inputs)))
        audio_s = sum(len(w) for w in inputs) / 16000
        result[name] = {"hf_s": min(hf_times), "ours_s": min(our_times), "ratio": min(hf_times) / min(our_times),
                        "max_abs_diff": diff, "audio_s": audio_s,
                        # real-time factor on one core, and what it means for a corpus: 1,000 h = 60,000 min
                        "rtf_per_core": min(our_times) / audio_s, "hf_rtf_per_core": min(hf_times) / audio_s,
                        "minutes_per_1000h": 60000 * min(our_times) / audio_s,
                        "hf_minutes_per_1000h": 60000 * min(hf_times) / audio_s}
    worst = max(result.values(), key=lambda r: r["rtf_per_core"])
    return {"rtf_per_core": worst["rtf_per_core"], "minutes_per_1000h": worst["minutes_per_1000h"],
            "ratio": min(r["ratio"] for r in result.values()),
            "max_abs_diff": max(r["max_abs_diff"] for r in result.values()), "cases": result}


# ----------------------------------------------------------------------------------------------------- P2 padding
def padding_fraction(batches, lengths):
    real = sum(lengths[u] for b in batches for u in b)
    padded = sum(len(b) * max(lengths[u] for u in b) for b in batches)
    return 1.0 - real / padded


def espnet_batches(kind, lengths, batch_size, batch_bins, tmp):
    """Batches of ESPnet's own sampler, shuffled per epoch as the iterator factory does (shuffle is batch-level)."""
    from espnet2.samplers.build_batch_sampler import build_batch_sampler

    shape = Path(tmp) / "speech_shape"
    shape.write_text("".join(f"{u} {n},160\n" for u, n in lengths.items()))
    sampler = build_batch_sampler(kind, batch_size=batch_size, batch_bins=batch_bins, shape_files=[str(shape)],
                                  fold_lengths=[800] if kind == "folded" else (), padding=True)
    return [list(b) for b in sampler]


def random_batches(lengths, batch_size, seed):
    keys = list(lengths)
    random.Random(seed).shuffle(keys)
    return [keys[i: i + batch_size] for i in range(0, len(keys), batch_size)]


def demo_recipe_module(name):
    """A module of the demo recipe's ``local/`` (its grammar, its corpus maker), loaded from its file and registered
    under its own name, which is how the corpus maker's ``import mini_grammar`` finds the grammar beside it."""
    import importlib.util

    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, REPO / "egs2/mini_espeak/s2t1/local" / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


def mini_corpus_lengths(num, seed):
    """Frames (50 Hz) of ``num`` train utterances of the mini_espeak corpus as run.sh plans it, synthesised here."""
    from espnet_speechlm_plugin.features.fbank import num_output_frames
    from espnet_speechlm_plugin.synth.espeak import synthesize

    mini_grammar = demo_recipe_module("mini_grammar")  # first: the corpus maker imports it
    make_mini_corpus = demo_recipe_module("make_mini_corpus")
    grammar = mini_grammar.load_grammar(REPO / "egs2/mini_espeak/s2t1/conf/grammar.yaml")
    mix = {"transcribe": 0.2, "translate": 0.3, "answer": 0.4, "transcribe_other": 0.1}  # run.sh's --frac_*
    with tempfile.TemporaryDirectory() as tmp:
        plan = make_mini_corpus.plan_corpus(grammar, {"train": 8000, "dev": 100, "test": 800}, mix, 0.25, 1, tmp)
    utts = random.Random(seed).sample(plan["train"], num)
    seconds = {}
    for u in utts:
        if u.rec.wav not in seconds:
            seconds[u.rec.wav] = num_output_frames(len(synthesize(u.rec.text, u.rec.voice)))
    return {u.utt_id: seconds[u.rec.wav] for u in utts}


def bench_p2(mini_utts):
    rng = np.random.default_rng(0)
    # LibriSpeech-like: log-normal durations clipped to 1-35 s (median ~12 s), 50 Hz frames
    libri = np.clip(rng.lognormal(math.log(12.0), 0.55, 20000), 1.0, 35.0)
    distributions = {"librispeech_like_lognormal_1-35s": {f"u{i:05d}": int(s * 50) for i, s in enumerate(libri)},
                     f"mini_espeak_train_sample{mini_utts}": mini_corpus_lengths(mini_utts, seed=0)}
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for dist, lengths in distributions.items():
            mean_frames = float(np.mean(list(lengths.values())))
            bs = 16
            bins = int(bs * mean_frames * 160)  # numel/length bins for ~16 utterances a batch
            rows = {
                "random (unsorted, batch_size 16)": random_batches(lengths, bs, 0),
                "espnet sorted, batch_size 16 (tests/conf/*tiny*.yaml)":
                    espnet_batches("sorted", lengths, bs, 0, tmp),
                "espnet folded, batch_size 16, fold 800": espnet_batches("folded", lengths, bs, 0, tmp),
                f"espnet numel, batch_bins {bins} (~16 utts)": espnet_batches("numel", lengths, bs, bins, tmp),
                f"espnet length, batch_bins {bins // 160}": espnet_batches("length", lengths, bs, bins // 160, tmp),
            }
            with contextlib.suppress(ImportError):
                from espnet_speechlm_plugin.data.mix import bucket_batches

                rows[f"data.mix.bucket_batches, batch_bins {bins // 160}"] = bucket_batches(
                    lengths, bins // 160, seed=0, epoch=0)
            out[dist] = {name: {"padding_fraction": padding_fraction(b, lengths), "batches": len(b)}
                         for name, b in rows.items()}
    # "with length bucketing" = the best of ESPnet's sorted/folded/numel/length samplers (and bucket_batches)
    bucketed = {d: min(r["padding_fraction"] for n, r in rows.items() if not n.startswith("random"))
                for d, rows in out.items()}
    return {"padding_fraction": max(bucketed.values()), "bucketed_per_distribution": bucketed,
            "random_per_distribution": {d: rows["random (unsorted, batch_size 16)"]["padding_fraction"]
                                        for d, rows in out.items()}, "distributions": out}


# ----------------------------------------------------------------------------------------------------- shared tiny
def tiny_init_dir(root, hidden=64):
    from espnet_speechlm_plugin.bin.make_tiny_init import make_tiny_init

    texts = ["the red cat sees two dogs in the garden", "a small green bird sleeps on the old bridge",
             "die rote Katze sieht zwei Hunde im Garten", "il gatto rosso vede due cani nel giardino",
             "红色的猫在花园里看见两只狗", "what colour is the cat", "Not answerable."] * 4
    out = Path(root) / "init"
    make_tiny_init(texts, str(out), vocab_size=400, encoder_hidden=hidden, decoder_hidden=hidden, heads=4, seed=0)
    return out


def tiny_dump(root, num, seed, seconds=(1.0, 4.0)):
    """A dump dir of ``num`` utterances with random 160-dim features (the model does not care what they say)."""
    import kaldiio

    rng = np.random.default_rng(seed)
    dump = Path(root) / "dump"
    dump.mkdir(parents=True, exist_ok=True)
    prompts = ["en transcribe", "de translate", "it translate", "en answer what colour is the cat"]
    texts = ["the red cat sees two dogs", "die rote Katze", "il gatto rosso", "red"]
    with kaldiio.WriteHelper(f"ark,scp:{dump}/feats.ark,{dump}/feats.scp") as writer:
        lines = {"prompt": [], "text": [], "speech_shape": []}
        for i in range(num):
            utt = f"utt{i:04d}"
            frames = int(rng.uniform(*seconds) * 50)
            writer(utt, rng.standard_normal((frames, 160)).astype(np.float32))
            lines["prompt"].append(f"{utt} {prompts[i % 4]}")
            lines["text"].append(f"{utt} {texts[i % 4]}")
            lines["speech_shape"].append(f"{utt} {frames},160")
    for name, rows in lines.items():
        (dump / name).write_text("\n".join(rows) + "\n", encoding="utf-8")
    return dump


def tiny_args(init, *extra):
    from espnet_speechlm_plugin.tasks.speechlm import SpeechLMTask

    return SpeechLMTask.get_parser().parse_args([
        "--output_dir", "unused", "--encoder_conf", f"name_or_path={init}/encoder",
        "--decoder_conf", f"name_or_path={init}/decoder", "--length_adapter_conf", "num_heads=4",
        "--length_adapter_conf", "ffn_dim=128", *extra])


# ----------------------------------------------------------------------------------------------------- P3 trainer
def bench_p3(repeats):
    from espnet2.train.trainer import Trainer

    from espnet_speechlm_plugin.bin import speechlm_train
    from espnet_speechlm_plugin.tasks.speechlm import SpeechLMTask

    timings = {"espnet_with_loader": [], "espnet_preloaded": [], "bare_preloaded": []}
    steps = {}

    class TimingTrainer(Trainer):
        """Epoch 1: ESPnet as is. Then alternately ESPnet and a bare loop over the same preloaded batches."""

        epoch = 0

        @classmethod
        def train_one_epoch(cls, model, iterator, optimizers, schedulers, scaler, reporter, summary_writer,
                            options, distributed_option):
            cls.epoch += 1
            call = dict(model=model, optimizers=optimizers, schedulers=schedulers, scaler=scaler,
                        reporter=reporter, summary_writer=summary_writer, options=options,
                        distributed_option=distributed_option)
            if cls.epoch == 1:
                start = time.perf_counter()
                batches = list(iterator)  # loading alone, to separate it from the trainer's own time
                load = time.perf_counter() - start
                start = time.perf_counter()
                result = Trainer.train_one_epoch(iterator=batches, **call)
                timings["espnet_with_loader"].append(time.perf_counter() - start + load)
                cls.batches = batches
                steps["per_epoch"] = len(batches)
                return result
            if cls.epoch % 2 == 0:
                start = time.perf_counter()
                result = Trainer.train_one_epoch(iterator=cls.batches, **call)
                timings["espnet_preloaded"].append(time.perf_counter() - start)
                return result
            model.train()
            start = time.perf_counter()
            for _, batch in cls.batches:  # what a hand-written loop does: forward, backward, clip, step
                loss = model(**batch)[0]
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), options.grad_clip)
                for opt in optimizers:
                    opt.step()
                    opt.zero_grad()
            timings["bare_preloaded"].append(time.perf_counter() - start)
            return False

    with tempfile.TemporaryDirectory() as tmp:
        init = tiny_init_dir(tmp)
        dump = tiny_dump(tmp, 48, seed=0)
        data = []
        for split in ("train", "valid"):
            data += [f"--{split}_data_path_and_name_and_type", f"{dump}/feats.scp,speech,kaldi_ark",
                     f"--{split}_data_path_and_name_and_type", f"{dump}/prompt,prompt,text",
                     f"--{split}_data_path_and_name_and_type", f"{dump}/text,text,text",
                     f"--{split}_shape_file", f"{dump}/speech_shape"]
        old_trainer = SpeechLMTask.trainer
        SpeechLMTask.trainer = TimingTrainer
        try:
            speechlm_train.main([
                "--config", str(REPO / "tests/conf/stage2_tiny.yaml"), "--output_dir", f"{tmp}/exp",
                "--encoder_conf", f"name_or_path={init}/encoder", "--decoder_conf", f"name_or_path={init}/decoder",
                "--length_adapter_conf", "num_heads=4", "--length_adapter_conf", "ffn_dim=128",
                "--batch_type", "sorted", "--batch_size", "8", "--max_epoch", str(1 + 2 * repeats),
                "--num_att_plot", "0", "--use_matplotlib", "false", "--use_tensorboard", "false",
                "--keep_nbest_models", "1", *data])
        finally:
            SpeechLMTask.trainer = old_trainer
    n = steps["per_epoch"]
    per_step = {k: min(v) / n for k, v in timings.items()}
    return {"ratio": per_step["espnet_preloaded"] / per_step["bare_preloaded"],
            "ratio_with_data_loading": per_step["espnet_with_loader"] / per_step["bare_preloaded"],
            "step_ms": {k: 1e3 * v for k, v in per_step.items()}, "steps_per_epoch": n,
            "model": "tiny (w2v-BERT hidden 64 + Qwen2 hidden 64), tests/conf/stage2_tiny.yaml, batch_size 8, 1-4 s"}


# ----------------------------------------------------------------------------------------------------- P4 decoding
def decoding_setup(tmp, num=48):
    """The decoding benchmarks' model and requests: a random tiny SpeechLM of the demo's width (w2v-BERT + Qwen2,
    hidden 128), ``num`` inputs of 2-8 s of random features with the four kinds of prompt."""
    from espnet_speechlm_plugin.decoding import Request
    from espnet_speechlm_plugin.tasks.speechlm import SpeechLMTask

    init = tiny_init_dir(tmp, hidden=128)  # the demo's decoder width
    args = tiny_args(init)
    torch.manual_seed(0)
    model = SpeechLMTask.build_model(args).eval()
    rng = np.random.default_rng(0)
    prompts = ["en transcribe", "de translate", "it translate", "en answer what colour is the cat"]
    requests = [Request(f"u{i:03d}", prompts[i % 4],
                        [rng.standard_normal((int(rng.uniform(2, 8) * 50), 160)).astype(np.float32)])
                for i in range(num)]
    return model, args, requests


def bench_p4(repeats, num=48):
    """Batched decoding (16 at a time) against one utterance at a time, both through the inference core."""
    from espnet_speechlm_plugin.decoding import BatchDecoder
    from espnet_speechlm_plugin.model.generate import GenerateConfig, encode_audio

    with tempfile.TemporaryDirectory() as tmp:
        model, args, requests = decoding_setup(tmp, num)
        # An untrained model rarely says <eos>: every utterance runs to the recipe's length budget (16 + 15 tokens
        # per second of audio); the repetition guard is off so that both sides do the same number of steps.
        # Both sides run the same code with the same (default) config, warm, on the same requests.
        cfg = GenerateConfig(repeat_times=10**6)
        decoders = {bs: BatchDecoder(model, args, cfg, bs) for bs in (1, 16)}
        order = sorted(requests, key=lambda r: -r.length())

        def encode_only(batch_size):  # the audio encoder as the core runs it (in chunks of cfg.encoder_batch_size)
            collate = decoders[1].collate
            for s in range(0, num, batch_size):
                _, batch = collate([(r.key, {"speech": r.pieces[0]}) for r in order[s: s + batch_size]])
                with torch.no_grad():
                    encode_audio(model, batch["speech"], batch["speech_lengths"], cfg.encoder_batch_size)

        one, sixteen = decoders[1].decode_ids(requests), decoders[16].decode_ids(requests)
        times = {}
        for _ in range(repeats):  # interleaved
            for key, fn in [("batch1", lambda: decoders[1].decode_ids(requests)),
                            ("batch16", lambda: decoders[16].decode_ids(requests)),
                            ("encode1", lambda: encode_only(1)), ("encode16", lambda: encode_only(16))]:
                times[key] = min(times.get(key, float("inf")), best_of(fn, 1))
    return {"ratio": times["batch1"] / times["batch16"], "identical": one == sixteen, "utts": num,
            "utt_per_s": {"batch1": num / times["batch1"], "batch16": num / times["batch16"]},
            # the audio encoder does the same work batched or not on one CPU thread (Amdahl's share)
            "decoder_only_ratio": (times["batch1"] - times["encode1"]) / (times["batch16"] - times["encode16"]),
            "encoder_share_batch16": times["encode16"] / times["batch16"],
            "tokens_generated": sum(len(h) for h in sixteen.values()), "encoder_batch_size": cfg.encoder_batch_size,
            "model": "random tiny (w2v-BERT + Qwen2 hidden 128, the demo's width), 2-8 s inputs, recipe budget"}


# ----------------------------------------------------------------------------------------------------- P8 vs HF
def hf_generate_decode(model, args, requests, config, batch_size, num_beams):
    """What a user of HF would write: the same batches (longest first), prompts and audio encoder, then
    ``generate(inputs_embeds=…)`` of the LM on the left-padded prefixes (HF's convention for batched decoder-only
    generation; its positions are counted from each row's first real column, as ours are). {key: token ids}."""
    from espnet_speechlm_plugin.model.generate import encode_audio, length_budget
    from espnet_speechlm_plugin.tasks.speechlm import SpeechLMTask

    pre = SpeechLMTask.build_preprocess_fn(args, train=False)
    collate = SpeechLMTask.build_collate_fn(args, train=False)
    order = sorted(requests, key=lambda r: -r.length())
    lm, out = model.decoder.lm, {}
    for s in range(0, len(order), batch_size):
        batch = order[s: s + batch_size]
        _, p = collate([(r.key, pre(r.key, {"prompt": r.prompt})) for r in batch])
        _, sp = collate([(r.key, {"speech": r.pieces[0]}) for r in batch])
        with torch.no_grad():
            audio, audio_lengths = encode_audio(model, sp["speech"], sp["speech_lengths"], config.encoder_batch_size)
            embeds, _, _, _, m = model.assemble(audio, audio_lengths, p["prompt"], p["prompt_lengths"])
            width = embeds.size(1)
            src = torch.arange(width)[None, :] - (width - m)[:, None]  # (B, M) column of the right-padded row
            mask = src >= 0
            left = embeds.gather(1, src.clamp(min=0)[..., None].expand_as(embeds)) * mask[..., None]
            budget = int(length_budget(config, sp["speech_lengths"]).max())
            ids = lm.generate(inputs_embeds=left, attention_mask=mask.long(), max_new_tokens=budget, do_sample=False,
                              num_beams=num_beams, length_penalty=config.length_penalty, use_cache=True,
                              eos_token_id=model.eos_id, pad_token_id=model.pad_id)
        for r, row in zip(batch, ids.tolist()):
            out[r.key] = row[: row.index(model.eos_id)] if model.eos_id in row else row
    return out


def bench_p8(repeats, num=48, budget=64, beam=4):
    """The inference core against HF ``generate(inputs_embeds=…)`` on the same model, batches, prompts and audio
    encoder: greedy throughput and identical outputs, then beam search timing."""
    from espnet_speechlm_plugin.decoding import BatchDecoder
    from espnet_speechlm_plugin.model.generate import GenerateConfig, encode_audio

    with tempfile.TemporaryDirectory() as tmp:
        model, args, requests = decoding_setup(tmp, num)
        # A fixed budget (HF's max_new_tokens is one number per batch) and no repetition guard (HF has none): both
        # sides produce the same number of tokens unless the model says <eos>, which both obey.
        cfg = GenerateConfig(max_new_tokens=budget, min_new_tokens=budget, tokens_per_second=0.0,
                             repeat_times=10**6)
        beam_cfg = GenerateConfig(max_new_tokens=budget, min_new_tokens=budget, tokens_per_second=0.0,
                                  repeat_times=10**6, beam_size=beam, length_penalty=1.0)
        ours, ours_beam = BatchDecoder(model, args, cfg, 16), BatchDecoder(model, args, beam_cfg, 16)
        order = sorted(requests, key=lambda r: -r.length())

        def encode_only():  # the audio encoder's part, the same on both sides
            for s in range(0, num, 16):
                _, batch = ours.collate([(r.key, {"speech": r.pieces[0]}) for r in order[s: s + 16]])
                with torch.no_grad():
                    encode_audio(model, batch["speech"], batch["speech_lengths"], cfg.encoder_batch_size)

        runs = {"ours": lambda: ours.decode_ids(requests), "encode": encode_only,
                "hf": lambda: hf_generate_decode(model, args, requests, cfg, 16, 1),
                "ours_beam": lambda: ours_beam.decode_ids(requests),
                "hf_beam": lambda: hf_generate_decode(model, args, requests, beam_cfg, 16, beam)}
        outputs = {k: fn() for k, fn in runs.items()}  # also the warm-up
        times = {}
        for i in range(repeats):  # interleaved; beam search (4 rows per utterance) only every other round
            for key, fn in runs.items():
                if "beam" not in key or i % 2 == 0:
                    times[key] = min(times.get(key, float("inf")), best_of(fn, 1))
    same = [k for k in outputs["ours"] if outputs["ours"][k] == outputs["hf"][k]]
    same_beam = [k for k in outputs["ours_beam"] if outputs["ours_beam"][k] == outputs["hf_beam"][k]]
    return {"ratio_vs_hf_generate": times["hf"] / times["ours"], "identical": len(same) == num,
            "identical_utts": len(same), "utts": num,
            "decoder_only_ratio": (times["hf"] - times["encode"]) / (times["ours"] - times["encode"]),
            "encoder_share": times["encode"] / times["ours"],
            "utt_per_s": {k: num / v for k, v in times.items() if k != "encode"},
            "tokens_generated": sum(len(h) for h in outputs["ours"].values()),
            "beam": {"beam_size": beam, "ratio_vs_hf_generate": times["hf_beam"] / times["ours_beam"],
                     "identical_utts": len(same_beam), "seconds": {"ours": times["ours_beam"],
                                                                   "hf": times["hf_beam"]},
                     "ours_vs_own_greedy": times["ours_beam"] / times["ours"]},
            "seconds": {"ours": times["ours"], "hf": times["hf"]}, "batch_size": 16,
            "budget_tokens": budget, "encoder_batch_size": cfg.encoder_batch_size,
            "model": "random tiny (w2v-BERT + Qwen2 hidden 128, the demo's width), 2-8 s inputs, encoder included"}


# ----------------------------------------------------------------------------------------------------- P6 real size
def bench_p6():
    if not torch.cuda.is_available():
        line = "P6 skipped: no CUDA device (real-size step needs a GPU; CPU-only torch or no GPU visible)"
        print(line)
        return {"skipped": line}
    from espnet_speechlm_plugin.bin.model_size import meta_args, parse_config
    from espnet_speechlm_plugin.tasks.speechlm import SpeechLMTask

    args = meta_args(parse_config(str(REPO / "conf/stage2_qwen2.5-1.5b.yaml")))
    dev = torch.device("cuda")
    model = SpeechLMTask.build_model(args).to(dev, torch.bfloat16).train()
    params = sum(p.numel() for p in model.parameters())
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5)
    b, frames, text = 8, 30 * 50, 128  # 8 × 30 s of audio, 128 target tokens each
    vocab = model.decoder.head.out_features if hasattr(model.decoder.head, "out_features") else 1000
    batch = {"speech": torch.randn(b, frames, 160, device=dev, dtype=torch.bfloat16),
             "speech_lengths": torch.full((b,), frames, device=dev),
             "prompt": torch.randint(0, min(vocab, 1000), (b, 8), device=dev),
             "prompt_lengths": torch.full((b,), 8, device=dev),
             "text": torch.randint(0, min(vocab, 1000), (b, text), device=dev),
             "text_lengths": torch.full((b,), text, device=dev)}
    with torch.no_grad():
        _, audio_lengths = model.encode_speech(batch["speech"], batch["speech_lengths"])
    tokens = int((audio_lengths + 8 + text).sum())

    def step():
        loss = model(**batch)[0]
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    step()
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(5):
        start = time.perf_counter()
        step()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    seconds = min(times)
    name = torch.cuda.get_device_name()
    peak = {"H100": 989e12, "H200": 989e12, "A100": 312e12}  # dense bf16 tensor-core peak, vendor figures
    peak_flops = next((v for k, v in peak.items() if k in name), None)
    achieved = 6 * params * tokens / seconds  # forward + backward ≈ 6 N flops per token (attention ignored)
    out = {"device": name, "params": params, "tokens_per_step": tokens, "tokens_per_s": tokens / seconds,
           "step_s": seconds, "peak_memory_gib": torch.cuda.max_memory_allocated() / 2**30,
           "mfu": achieved / peak_flops if peak_flops else None}
    print(f"P6 {name}: {out['tokens_per_s']:.0f} tokens/s, MFU {out['mfu']}, peak {out['peak_memory_gib']:.1f} GiB")
    return out


# ----------------------------------------------------------------------------------------------------- P7 attention
W2V_BERT_ARCH = REPO / "espnet_speechlm_plugin/arch/w2v-bert-2.0"  # w2v-BERT 2.0's config: 1024 wide, 16 heads
# glibc keeps freed blocks below its (adaptive, up to 32 MiB) mmap threshold in the heap, so RSS would remember
# old tensors; a fixed 1 MiB threshold returns every freed tensor at once and RSS follows the live tensors
P7_CHILD_ENV = {"MALLOC_MMAP_THRESHOLD_": str(2**20)}


def _rss_kib():
    with open("/proc/self/status") as f:
        fields = dict(line.split(":", 1) for line in f)
    return int(fields["VmRSS"].split()[0]), int(fields["VmSize"].split()[0])


def p7_child(spec):
    """One configuration of the w2v-BERT attention benchmark, alone in this process (its peak RSS is its own)."""
    import resource

    from transformers import Wav2Vec2BertConfig, Wav2Vec2BertModel
    from transformers.models.wav2vec2_bert.modeling_wav2vec2_bert import Wav2Vec2BertEncoderLayer

    from espnet_speechlm_plugin.model.w2v_bert_attention import use_efficient_attention

    frames, train = spec["seconds"] * 50, spec["mode"] == "fwd+bwd"
    # dropout, layerdrop and SpecAugment off: both sides compute the same deterministic function in train mode
    config = Wav2Vec2BertConfig.from_pretrained(W2V_BERT_ARCH, layerdrop=0.0, mask_time_prob=0.0,
                                                conformer_conv_dropout=0.0)
    torch.manual_seed(0)
    valid = torch.ones(1, frames, dtype=torch.long)  # one utterance, no padding, mask given as our encoder does
    if spec["scope"] == "layer":
        model = Wav2Vec2BertEncoderLayer(config)
        x = torch.randn(1, frames, config.hidden_size)
        # the additive (B, 1, T, T) mask as Wav2Vec2BertEncoder hands it to every layer (an expanded view)
        additive = ((1.0 - valid[:, None, None, :].float()) * torch.finfo(torch.float32).min).expand(
            1, 1, frames, frames)

        def run(inp):
            return model(inp, attention_mask=additive, conv_attention_mask=valid)[0]
    else:
        model = Wav2Vec2BertModel(config)
        x = torch.randn(1, frames, config.feature_projection_input_dim)

        def run(inp):
            return model(input_features=inp, attention_mask=valid).last_hidden_state
    if spec["impl"] == "ours":
        use_efficient_attention(model, config)
    model.train(train)
    weights = torch.randn(1, frames, config.hidden_size)
    base_rss, vm_size = _rss_kib()
    # cap this process: its virtual size now + what it may still add (large tensors are fresh mappings)
    limit = int(vm_size * 1024 + max(spec["cap_gib"] * 2**30 - base_rss * 1024, 0))
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    times, after_forward = [], 0
    try:
        for i in range(spec["warmup"] + spec["repeats"]):
            model.zero_grad(set_to_none=True)
            inp = x.clone().requires_grad_(train)
            start = time.perf_counter()
            if train:
                y = run(inp)
                after_forward = max(after_forward, _rss_kib()[0] - base_rss)  # what the backward pass will read
                (y * weights).sum().backward()
            else:
                with torch.no_grad():
                    y = run(inp)
            if i >= spec["warmup"]:
                times.append(time.perf_counter() - start)
    except (RuntimeError, MemoryError) as e:
        if not isinstance(e, MemoryError) and "alloc" not in str(e):
            raise
        print("P7CHILD " + json.dumps({"did_not_fit_gib": spec["cap_gib"], "error": str(e).splitlines()[0][:200]}))
        return
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    torch.save({"output": y.detach(), "input_grad": inp.grad if train else None}, spec["tensors"])
    out = {"seconds_per_step": min(times), "step_peak_gib": (peak - base_rss) / 2**20,
           "peak_rss_gib": peak / 2**20, "base_rss_gib": base_rss / 2**20, "runs": len(times),
           "params": sum(p.numel() for p in model.parameters())}
    if train:
        out["after_forward_gib"] = after_forward / 2**20
    print("P7CHILD " + json.dumps(out), flush=True)


def _p7_run(spec):
    env = dict(os.environ, **P7_CHILD_ENV)
    res = subprocess.run([sys.executable, str(BENCH / "run.py"), "--p7_child", json.dumps(spec)],
                         capture_output=True, text=True, cwd=REPO, env=env)
    line = [x for x in res.stdout.splitlines() if x.startswith("P7CHILD ")]
    if res.returncode != 0 or not line:
        return {"error": (res.stderr or res.stdout)[-1500:], "returncode": res.returncode}
    return json.loads(line[-1][len("P7CHILD "):])


def _p7_predict_encoder(cases, impl, sec, layers):
    """A whole-encoder forward+backward from one layer's at the same length: when the backward pass starts, every
    layer holds what one layer holds after its forward, and one layer's backward adds its transient; the time is
    ``layers`` times one layer's. Both are scaled by measured / predicted at the longest shorter length where the
    encoder itself ran (the layer's process also holds its hidden-state input and output, the encoder's does not)."""
    def from_layer(s):
        layer = cases.get(f"layer_{s}s_fwd+bwd", {}).get(impl, {})
        if "after_forward_gib" not in layer:
            return None
        return (layers * layer["after_forward_gib"] + layer["step_peak_gib"] - layer["after_forward_gib"],
                layers * layer["seconds_per_step"])

    guess = from_layer(sec)
    if guess is None:
        return None
    memory, seconds = guess
    ran = sorted(int(name.split("_")[1][:-1]) for name, row in cases.items()
                 if name.startswith("encoder_") and name.endswith("_fwd+bwd") and "after_forward_gib" in row[impl])
    for s in reversed([s for s in ran if s < sec and from_layer(s)]):
        measured, (mem_s, sec_s) = cases[f"encoder_{s}s_fwd+bwd"][impl], from_layer(s)
        return {"predicted": True, "calibrated_on_s": s, "step_peak_gib": memory * measured["step_peak_gib"] / mem_s,
                "seconds_per_step": seconds * measured["seconds_per_step"] / sec_s}
    return {"predicted": True, "step_peak_gib": memory, "seconds_per_step": seconds}


def _p7_extrapolate(cases, scope, mode, impl, sec):
    """Peak memory at ``sec`` from the two longest shorter runs of the same kind: a T + b T² through the origin
    (activations grow with T, the attention's score-sized tensors with T²)."""
    runs = sorted((int(name.split("_")[1][:-1]), row[impl]["step_peak_gib"]) for name, row in cases.items()
                  if name.startswith(f"{scope}_") and name.endswith(f"_{mode}") and "step_peak_gib" in row[impl]
                  and not row[impl].get("predicted") and int(name.split("_")[1][:-1]) < sec)
    if len(runs) < 2:
        return None
    (t1, m1), (t2, m2) = [(s * 50, m) for s, m in runs[-2:]]
    b = (m2 / t2 - m1 / t1) / (t2 - t1)
    a = m1 / t1 - b * t1
    t = sec * 50
    return a * t + b * t * t


def bench_p7(seconds=(10, 30, 90), encoder_seconds=(10, 30, 90), encoder_train_seconds=(10, 30)):
    """w2v-BERT self-attention: ours (model/w2v_bert_attention.py) vs HF's, one real-size layer and the whole
    24-layer encoder, forward (eval, no grad) and forward+backward (train), time and peak memory.

    Every configuration runs in a fresh process capped at the memory then available (less 1.5 GiB, at most
    20 GiB); one that does not fit reports so. Memory is the peak RSS of that process (``ru_maxrss``) minus its RSS
    once the weights and inputs exist: what the step itself needs. A whole-encoder forward+backward that the
    layer's numbers put above 3/4 of the cap, or whose length is not in ``encoder_train_seconds`` (90 s takes
    tens of minutes on one core), is predicted from the layer's numbers instead (``_p7_predict_encoder``), and
    marked so.
    """
    from transformers import Wav2Vec2BertConfig

    with open("/proc/meminfo") as f:
        available = int(next(line for line in f if line.startswith("MemAvailable")).split()[1]) / 2**20
    cap = round(min(20.0, available - 1.5), 1)
    config = Wav2Vec2BertConfig.from_pretrained(W2V_BERT_ARCH)
    layers = config.num_hidden_layers
    plan = [("layer", mode, s) for mode in ("fwd", "fwd+bwd") for s in seconds]
    plan += [("encoder", "fwd", s) for s in encoder_seconds]
    plan += [("encoder", "fwd+bwd", s) for s in encoder_seconds]
    cases = {}
    with tempfile.TemporaryDirectory() as tmp:
        for scope, mode, sec in plan:
            name, row = f"{scope}_{sec}s_{mode}", {}
            for impl in ("hf", "ours"):
                predicted = None
                if scope == "encoder" and mode == "fwd+bwd":
                    predicted = _p7_predict_encoder(cases, impl, sec, layers)
                # not started: lengths left out, and runs the layer's numbers put near the cap (a shared machine)
                if predicted and (sec not in encoder_train_seconds or predicted["step_peak_gib"] > 0.75 * cap):
                    row[impl] = predicted
                else:
                    short = sec <= 30 and scope == "layer"  # repeat the quick ones, run the long ones once
                    row[impl] = _p7_run({"scope": scope, "impl": impl, "seconds": sec, "mode": mode, "cap_gib": cap,
                                         "repeats": 3 if short else 1, "warmup": 1 if short else 0,
                                         "tensors": f"{tmp}/{impl}.pt"})
                    if predicted:  # run anyway: the prediction next to the measurement
                        row[impl]["predicted_step_peak_gib"] = predicted["step_peak_gib"]
                    if "did_not_fit_gib" in row[impl]:
                        row[impl]["predicted_step_peak_gib"] = _p7_extrapolate(cases, scope, mode, impl, sec)
                print(f"P7 {name} {impl}: {json.dumps(row[impl])[:300]}", flush=True)
            hf, ours = row["hf"], row["ours"]
            if "seconds_per_step" in hf and "seconds_per_step" in ours:
                if not hf.get("predicted") and not ours.get("predicted"):
                    a, b = torch.load(f"{tmp}/hf.pt"), torch.load(f"{tmp}/ours.pt")
                    row["max_abs_diff"] = float((a["output"] - b["output"]).abs().max())
                    if a["input_grad"] is not None:
                        row["max_abs_diff_input_grad"] = float((a["input_grad"] - b["input_grad"]).abs().max())
                        row["input_grad_max_abs"] = float(a["input_grad"].abs().max())
                row["speed_ratio"] = hf["seconds_per_step"] / ours["seconds_per_step"]
                row["memory_ratio"] = hf["step_peak_gib"] / ours["step_peak_gib"]
            cases[name] = row
    key = cases.get("layer_30s_fwd+bwd", {})
    return {"speed_ratio": key.get("speed_ratio"), "memory_ratio": key.get("memory_ratio"),
            "max_abs_diff": key.get("max_abs_diff"), "max_abs_diff_input_grad": key.get("max_abs_diff_input_grad"),
            "memory_cap_gib": cap, "cases": cases,
            "memory_measure": "peak RSS (ru_maxrss) of a fresh process per configuration minus its RSS once weights "
                              "and inputs exist (glibc mmap threshold fixed at 1 MiB so RSS follows live tensors); "
                              "batch 1, 50 Hz frames (T = 50 x seconds), fp32, one thread",
            "model": "w2v-BERT 2.0 architecture (arch/w2v-bert-2.0/config.json), random weights; dropout, "
                     "layerdrop and SpecAugment off"}


def _p7_side(r):
    if "did_not_fit_gib" in r:
        need = r.get("predicted_step_peak_gib")
        return f"did not fit in {r['did_not_fit_gib']:.0f} GiB" + (f" (needs ~{need:.0f} GiB)" if need else "")
    if "error" in r:
        return "error"
    pred = " predicted" if r.get("predicted") else ""
    return f"{r['step_peak_gib']:.2f} GiB{pred}, {r['seconds_per_step']:.1f} s{pred}"


def p7_summary(p7):
    """One README cell: per scope and mode, each length's ratios (or who did not fit)."""
    groups = {}
    for name, row in p7["cases"].items():
        scope, sec, mode = name.split("_")
        if "speed_ratio" in row:
            diff = f", diff {row['max_abs_diff']:.0e}" if "max_abs_diff" in row else ""
            hf, ours = (f"{row[k]['step_peak_gib']:.2f}" + (" predicted" if row[k].get("predicted") else "")
                        for k in ("hf", "ours"))
            text = (f"{sec[:-1]} s: {row['speed_ratio']:.2f}x speed, {row['memory_ratio']:.1f}x less memory "
                    f"(HF {hf}, ours {ours} GiB{diff})")
        else:
            text = f"{sec[:-1]} s: HF {_p7_side(row['hf'])}; ours {_p7_side(row['ours'])}"
        groups.setdefault(f"{scope} {mode}", []).append(text)
    return "<br>".join(f"**{g}**: " + "; ".join(t) for g, t in groups.items())


def p7_met(p7):
    def holds(row):
        return row.get("memory_ratio", 0) >= 3 and row.get("speed_ratio", 0) >= 1

    def only_ours_fits(row):
        hf, ours = row.get("hf", {}), row.get("ours", {})
        hf_out = "did_not_fit_gib" in hf or (hf.get("predicted") and hf["step_peak_gib"] > p7["memory_cap_gib"])
        return hf_out and "seconds_per_step" in ours and not ours.get("predicted")

    at30, at90 = p7["cases"].get("layer_30s_fwd+bwd", {}), p7["cases"].get("layer_90s_fwd+bwd")
    ok = holds(at30) and (at90 is None or holds(at90) or only_ours_fits(at90))
    return "yes" if ok else "no"


# ----------------------------------------------------------------------------------------------------- RSS
_RSS_CHILD = r"""
import importlib.util, resource, sys, time, torch, numpy as np
torch.set_num_threads(1)
spec = importlib.util.spec_from_file_location("bench_run", sys.argv[1])  # this file, for its tiny-model helpers
bench_run = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench_run)
tiny_args, tiny_init_dir = bench_run.tiny_args, bench_run.tiny_init_dir
from espnet_speechlm_plugin.tasks.speechlm import SpeechLMTask
which, tmp = sys.argv[2], sys.argv[3]
if which == "tiny":
    args = tiny_args(tiny_init_dir(tmp))
    b, frames = 8, 200
else:
    from espnet_speechlm_plugin.bin.model_size import meta_args, parse_config
    args = meta_args(parse_config(sys.argv[4]))
    b, frames = 2, 200
torch.manual_seed(0)
model = SpeechLMTask.build_model(args).train()
for name, p in model.named_parameters():  # the config's freezing, as ESPnet applies it
    if any(name == f or name.startswith(f + ".") for f in (args.freeze_param or [])):
        p.requires_grad_(False)
opt = SpeechLMTask.build_optimizers(args, model)
pre = SpeechLMTask.build_preprocess_fn(args, train=True)
collate = SpeechLMTask.build_collate_fn(args, train=True)
rng = np.random.default_rng(0)
items = [(f"u{i}", pre(f"u{i}", {"speech": rng.standard_normal((frames, 160)).astype(np.float32),
                                 "prompt": "en transcribe", "text": "the red cat sees two dogs"})) for i in range(b)]
_, batch = collate(items)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
start = time.perf_counter()
loss = model(**batch)[0]
loss.backward()
for o in opt:
    o.step()
print(before, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, time.perf_counter() - start,
      sum(p.numel() for p in model.parameters()))
"""


def bench_rss(with_0p5b):
    out = {}
    runs = [("tiny", "tests/conf/stage2_tiny.yaml")]
    if with_0p5b:
        runs.append(("qwen2.5-0.5b_stage1", "conf/stage1_qwen2.5-0.5b.yaml"))
    for which, config in runs:
        with tempfile.TemporaryDirectory() as tmp:
            res = subprocess.run([sys.executable, "-c", _RSS_CHILD, str(BENCH / "run.py"), which.split("_")[0], tmp,
                                  str(REPO / config)], capture_output=True, text=True, cwd=BENCH)
        if res.returncode != 0:
            out[which] = {"error": res.stderr[-2000:]}
            continue
        before, after, seconds, params = res.stdout.split()[-4:]
        out[which] = {"config": config, "params": int(params), "peak_rss_mib": int(after) / 1024,
                      "rss_before_step_mib": int(before) / 1024, "step_s": float(seconds)}
    if not with_0p5b:
        out["qwen2.5-0.5b_stage1"] = {"skipped": "pass --with_0p5b (builds a random 1.1B-parameter model, "
                                                 "several GB of RAM, a few minutes on one core)"}
    return out


# ----------------------------------------------------------------------------------------------------- output
def machine():
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {"cpu": cpu, "cores": os.cpu_count(), "omp_num_threads": int(os.environ["OMP_NUM_THREADS"]),
            "torch": torch.__version__, "python": platform.python_version(),
            "load_average_at_start": os.getloadavg()}


def write_readme(results):
    def row(key, measured, target_met):
        return f"| {key} | {measured} | {TARGETS.get(key, '')} | {target_met} |"

    lines = ["# Benchmarks (issue #8)", "",
             f"Machine: {results['machine']['cpu']}, {results['machine']['cores']} cores, "
             f"OMP_NUM_THREADS={results['machine']['omp_num_threads']}, torch {results['machine']['torch']}; "
             f"{results['machine'].get('note', '')} Run: `make bench` (bench/run.py) and bench/p5_demo.sh "
             f"(P5). Updated {results['date']}.", "",
             "| id | measured | target | met |", "|---|---|---|---|"]
    p = results
    if "P1" in p:
        c = p["P1"]["cases"]
        lines.append(row("P1", "; ".join(
            f"{k}: real-time factor {v['rtf_per_core']:.1e} per core = {v['minutes_per_1000h']:.0f} min per 1,000 h "
            f"on one core (HF's SeamlessM4T extractor {v['hf_minutes_per_1000h']:.0f} min, {v['ratio']:.1f}x)"
            for k, v in c.items()) + f"; max abs diff {p['P1']['max_abs_diff']:.1e}", ""))
    if "P2" in p:
        parts = []
        for dist, rows in p["P2"]["distributions"].items():
            parts.append(f"**{dist}**: "
                         + ", ".join(f"{n} {100 * r['padding_fraction']:.1f} %" for n, r in rows.items()))
        lines.append(row("P2", "<br>".join(parts), "yes" if p["P2"]["padding_fraction"] <= 0.05 else "no"))
    if "P3" in p:
        lines.append(row("P3", f"{p['P3']['ratio']:.2f}x trainer only, {p['P3']['ratio_with_data_loading']:.2f}x "
                               f"with ESPnet's data loading (bare step {p['P3']['step_ms']['bare_preloaded']:.1f} ms)",
                         "yes" if p["P3"]["ratio"] <= 1.10 else "no"))
    if "P4" in p:
        lines.append(row("P4", f"{p['P4']['ratio']:.1f}x ({p['P4']['utt_per_s']['batch1']:.1f} → "
                               f"{p['P4']['utt_per_s']['batch16']:.1f} utt/s; decoder steps alone "
                               f"{p['P4']['decoder_only_ratio']:.1f}x), identical: {p['P4']['identical']}",
                         "yes" if p["P4"]["ratio"] >= 5 and p["P4"]["identical"] else "no"))
    if "P8" in p:
        q = p["P8"]
        lines.append(row("P8", f"{q['ratio_vs_hf_generate']:.2f}x HF generate(inputs_embeds) greedy "
                               f"({q['utt_per_s']['hf']:.1f} → {q['utt_per_s']['ours']:.1f} utt/s, encoder included; "
                               f"decoding alone {q['decoder_only_ratio']:.1f}x), "
                               f"identical: {q['identical']} ({q['identical_utts']}/{q['utts']}); beam "
                               f"{q['beam']['beam_size']}: {q['beam']['ratio_vs_hf_generate']:.2f}x HF, same output "
                               f"{q['beam']['identical_utts']}/{q['utts']}",
                         "yes" if q["ratio_vs_hf_generate"] >= 1.5 and q["identical"] else "no"))
    if "P5" in p:
        lines.append(row("P5", f"{p['P5'].get('minutes', float('nan')):.1f} min", p["P5"].get("met", "")))
    if "P6" in p:
        lines.append(row("P6", p["P6"].get("skipped") or f"{p['P6']['tokens_per_s']:.0f} tokens/s, MFU "
                         f"{p['P6']['mfu']}, peak {p['P6']['peak_memory_gib']:.1f} GiB", ""))
    if "P7" in p:
        lines.append(row("P7", p7_summary(p["P7"]), p7_met(p["P7"])))
    if "RSS" in p:
        lines.append(row("RSS", "; ".join(f"{k}: " + (f"{v['peak_rss_mib']:.0f} MiB peak RSS" if "peak_rss_mib" in v
                                                       else v.get("skipped", v.get("error", "")[:80]))
                                          for k, v in p["RSS"].items() if isinstance(v, dict)), ""))
    if "P7" in p:
        lines += ["", "P7 (w2v-BERT self-attention, model/w2v_bert_attention.py vs HF's, docs/performance.md): "
                  "speed = HF's time / ours, memory = HF's / ours, each the peak RSS of a fresh process above its "
                  "RSS once weights and inputs exist; batch 1, fp32, one thread; diff = max abs difference of the "
                  "outputs. 'predicted': a 24-layer forward+backward computed from one layer's numbers, not run."]
    lines += ["", "Full numbers: bench/results.json."]
    (BENCH / "README.md").write_text("\n".join(lines) + "\n", encoding="utf-8")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="+", default=["P1", "P2", "P3", "P4", "P6", "P8", "RSS", "P7"],
                        help="benchmarks to run (P1 P2 P3 P4 P6 P8 RSS P7); entries of the others stay in "
                             "results.json")
    parser.add_argument("--repeats", type=int, default=5, help="timings are the minimum over this many runs")
    parser.add_argument("--mini_utts", type=int, default=1500,
                        help="P2: mini_espeak train utterances synthesised for the duration distribution")
    parser.add_argument("--with_0p5b", action="store_true",
                        help="RSS: also one stage-1 step of the 0.5B architecture on CPU (slow, several GB)")
    parser.add_argument("--p7_seconds", type=int, nargs="+", default=[10, 30, 90],
                        help="P7: audio lengths (s, 50 Hz) for one layer; real size: run under flock -x "
                             "/tmp/heavy.lock")
    parser.add_argument("--p7_encoder_seconds", type=int, nargs="*", default=[10, 30, 90],
                        help="P7: lengths for the whole 24-layer encoder (none: layer only)")
    parser.add_argument("--p7_encoder_train_seconds", type=int, nargs="*", default=[10, 30],
                        help="P7: encoder lengths whose forward+backward is run; the others are predicted from "
                             "the layer's numbers (90 s takes tens of minutes on one core)")
    parser.add_argument("--p7_child", help=argparse.SUPPRESS)  # one P7 configuration, in its own process
    parser.add_argument("--out", type=Path, default=BENCH / "results.json")
    a = parser.parse_args(argv)
    if a.p7_child:
        return p7_child(json.loads(a.p7_child))
    results = json.loads(a.out.read_text()) if a.out.exists() else {}
    results["machine"] = machine()
    results["machine"]["note"] = ("Shared machine (other jobs running): ratios come from interleaved runs, "
                                  "minimum over repeats.")
    results["date"] = datetime.datetime.now().isoformat(timespec="seconds")
    runners = {"P1": lambda: bench_p1(a.repeats), "P2": lambda: bench_p2(a.mini_utts),
               "P3": lambda: bench_p3(a.repeats), "P4": lambda: bench_p4(a.repeats), "P6": bench_p6,
               "P8": lambda: bench_p8(a.repeats),
               "RSS": lambda: bench_rss(a.with_0p5b)}
    runners["P7"] = lambda: bench_p7(a.p7_seconds, a.p7_encoder_seconds, a.p7_encoder_train_seconds)
    for key in a.only:
        start = time.perf_counter()
        results[key] = runners[key]()
        results[key]["bench_wall_s"] = time.perf_counter() - start
        summary = {k: v for k, v in results[key].items() if k in (
            "ratio", "max_abs_diff", "identical", "ratio_with_data_loading", "padding_fraction", "decoder_only_ratio",
            "random_per_distribution", "skipped", "speed_ratio", "memory_ratio", "ratio_vs_hf_generate")}
        print(f"{key}: {json.dumps(summary)}", flush=True)
        tmp = a.out.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(results, indent=2, default=str) + "\n")
        os.replace(tmp, a.out)  # atomically, after every benchmark
    write_readme(results)


if __name__ == "__main__":
    main()
