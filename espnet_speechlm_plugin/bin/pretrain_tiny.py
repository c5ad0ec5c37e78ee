"""Quick "pretraining" of the tiny models where no pretrained checkpoint can be downloaded (the CPU demo).

The paper aligns a *pretrained* speech encoder with a *pretrained* instruction-following LM. A random tiny LM
cannot follow instructions and a random encoder does not know speech, so the demo makes small stand-ins first:

- ``--what lm``: the decoder LM learns the tasks from TEXT: ``[transcript] <|lang|><|task|> [question] target <eos>``
  — the transcript's token embeddings stand where the audio embeddings will be, so the LM learns to transcribe
  (copy), translate and answer from a prefix, as a real LLM can from text.
- ``--what encoder``: the w2v-BERT encoder learns speech with a CTC loss over the transcript's characters.

Both write the model back into its folder (``save_pretrained``), so stages 3–4 load it like a hub checkpoint.
A run is a function of its inputs and ``--seed``: python's, numpy's (HF's SpecAugment draws its masks there) and
torch's generators are all seeded, and batches come from a seeded ``random.Random``.

    python -m espnet_speechlm_plugin.bin.pretrain_tiny --what lm --data_dir dump/train --model_dir exp/init/decoder
    python -m espnet_speechlm_plugin.bin.pretrain_tiny --what encoder --data_dir dump/train --model_dir exp/init/encoder
"""

import argparse
import json
import logging
import math
import random
import shutil
import time
from pathlib import Path
from typing import Callable, List, Optional, Tuple

import torch
from espnet2.torch_utils.set_all_random_seed import set_all_random_seed
from torch import nn
from tqdm import tqdm

from espnet_speechlm_plugin.data.kaldi import read_kaldi_text, recover_dir, replace_dir
from espnet_speechlm_plugin.model.prompt import SpeechLMPreprocessor, load_tokenizer
from espnet_speechlm_plugin.vocab import DEFAULT_LANGUAGES


def _schedule(opt, step: int, total: int, lr: float, warmup: int) -> None:
    scale = min(1.0, (step + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(1.0, step / total)))
    for g in opt.param_groups:
        g["lr"] = lr * max(scale, 0.05)


def _install(model_dir: Path, save: Callable[[Path], None], marker: str, stats: dict) -> None:
    """Replace ``model_dir`` by a fully written copy that already holds its "done" marker.

    ``save(tmp)`` writes the model files; the marker goes in before the swap, so a dir with a marker is complete,
    and a kill during the swap leaves the old model to :func:`recover_dir`, never neither.
    """
    tmp = model_dir.with_name(model_dir.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    save(tmp)
    (tmp / marker).write_text(json.dumps(stats, indent=1) + "\n")
    replace_dir(tmp, model_dir)


def lm_examples(data_dir: Path, pre: SpeechLMPreprocessor) -> List[Tuple[List[int], int]]:
    """(ids, number of leading tokens without loss) per utterance: transcript ids, then prompt, then target."""
    texts, prompts = read_kaldi_text(data_dir / "text"), read_kaldi_text(data_dir / "prompt")
    transcripts = read_kaldi_text(data_dir / "transcript") if (data_dir / "transcript").exists() else texts
    out = []
    for uid, value in prompts.items():
        d = pre(uid, {"prompt": value, "text": texts[uid]})
        prefix = pre.encode(transcripts.get(uid, texts[uid]))
        out.append((prefix + d["prompt"].tolist() + d["text"].tolist(), len(prefix) + len(d["prompt"]) - 1))
    return out


def pretrain_lm(data_dir: Path, model_dir: Path, languages, steps: int, batch_size: int, lr: float,
                seed: int) -> Tuple[dict, Callable[[Path], None]]:
    from transformers import AutoModelForCausalLM

    set_all_random_seed(seed)
    tok = load_tokenizer(str(model_dir), languages)
    lm = AutoModelForCausalLM.from_pretrained(model_dir)
    lm.resize_token_embeddings(len(tok))
    # half the examples carry stage 1's length hint, so the frozen LM of stage 1 knows both prompt forms
    examples = lm_examples(data_dir, SpeechLMPreprocessor(tok, languages, train=True, length_hint_prob=0.5))
    rng = random.Random(seed)
    opt = torch.optim.AdamW(lm.parameters(), lr=lr, weight_decay=0.01)
    lm.train()
    losses = []
    for step in tqdm(range(steps), desc="pretrain LM on text", unit="step", mininterval=5):
        batch = rng.sample(examples, min(batch_size, len(examples)))
        n = max(len(ids) for ids, _ in batch)
        ids = torch.full((len(batch), n), tok.pad_token_id)
        labels = torch.full((len(batch), n), -100)
        mask = torch.zeros((len(batch), n), dtype=torch.long)
        for i, (seq, skip) in enumerate(batch):
            ids[i, : len(seq)] = torch.tensor(seq)
            mask[i, : len(seq)] = 1
            labels[i, skip + 1: len(seq)] = torch.tensor(seq[skip + 1:])  # loss on the target and <eos>
        _schedule(opt, step, steps, lr, warmup=min(100, steps // 10 + 1))
        loss = lm(input_ids=ids, attention_mask=mask, labels=labels).loss
        opt.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(lm.parameters(), 1.0)
        opt.step()
        losses.append(loss.item())
    def save(d: Path) -> None:
        lm.save_pretrained(d)
        tok.save_pretrained(d)

    return {"first_loss": losses[0], "last_loss": sum(losses[-20:]) / len(losses[-20:])}, save


def pretrain_encoder(data_dir: Path, model_dir: Path, tokenizer_dir: Path, compressor_layers: int, steps: int,
                     batch_size: int, lr: float, seed: int) -> Tuple[dict, Callable[[Path], None]]:
    """CTC over the LM tokenizer's ids of each transcript, on ``compressor → encoder``. The compressor's weights go
    to ``model_dir/compressor.pth`` so stage 1 can start from them (``--init_param <that>::compressor``)."""
    import kaldiio
    from transformers import AutoTokenizer

    from espnet_speechlm_plugin.features.fbank import FRAME_RATE
    from espnet_speechlm_plugin.model.adapters import ConvCompressor
    from espnet_speechlm_plugin.model.hf import W2VBertEncoder

    set_all_random_seed(seed)
    encoder = W2VBertEncoder(str(model_dir))  # our wrapper: SpecAugment spans at the rate behind the compressor
    compressor = ConvCompressor(encoder.input_size(), compressor_layers) if compressor_layers else None
    encoder.set_input_rate(FRAME_RATE / (compressor.downsampling() if compressor is not None else 1))
    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    feats = kaldiio.load_scp(str(data_dir / "feats.scp"))
    transcripts = read_kaldi_text(data_dir / ("transcript" if (data_dir / "transcript").exists() else "text"))
    # one example per distinct audio (the same recording is used for several tasks)
    by_audio = {}
    for uid, rx in read_kaldi_text(data_dir / "feats.scp").items():
        by_audio.setdefault(rx, uid)
    uids = sorted(by_audio.values())
    labels = {u: torch.tensor(tok(transcripts[u], add_special_tokens=False)["input_ids"]) + 1 for u in uids}
    head = nn.Linear(encoder.output_size(), len(tok) + 1)  # 0 = CTC blank, token id i → i + 1
    modules = nn.ModuleList([encoder, head] + ([compressor] if compressor is not None else []))
    opt = torch.optim.AdamW(modules.parameters(), lr=lr, weight_decay=0.01)
    rng = random.Random(seed)
    cache = {u: torch.from_numpy(feats[u]).float() for u in uids}
    # batches of similar length (little padding), drawn at random each step
    by_length = sorted(uids, key=lambda u: len(cache[u]))
    batches = [by_length[i: i + batch_size] for i in range(0, len(by_length), batch_size)]
    modules.train()
    losses = []
    for step in tqdm(range(steps), desc="pretrain encoder (CTC)", unit="step", mininterval=5):
        batch = rng.choice(batches)
        x = nn.utils.rnn.pad_sequence([cache[u] for u in batch], batch_first=True)  # (B, T, 160)
        lengths = torch.tensor([len(cache[u]) for u in batch])
        if compressor is not None:
            x, lengths = compressor(x, lengths)  # (B, T/2^k, 160)
        hidden, lengths = encoder(x, lengths)  # (B, T', H_enc)
        logp = head(hidden).log_softmax(-1)
        targets = [labels[u] for u in batch]
        _schedule(opt, step, steps, lr, warmup=min(100, steps // 10 + 1))
        loss = nn.functional.ctc_loss(logp.transpose(0, 1), torch.cat(targets), lengths,
                                      torch.tensor([len(t) for t in targets]), zero_infinity=True)
        opt.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(modules.parameters(), 1.0)
        opt.step()
        losses.append(loss.item())
    def save(d: Path) -> None:
        encoder.model.save_pretrained(d)
        if compressor is not None:
            torch.save(compressor.state_dict(), d / "compressor.pth")

    return {"first_loss": losses[0], "last_loss": sum(losses[-20:]) / len(losses[-20:])}, save


def main(argv: Optional[List[str]] = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--what", required=True, choices=["lm", "encoder"])
    p.add_argument("--data_dir", required=True, type=Path, help="a feature dir: feats.scp, text, prompt, transcript")
    p.add_argument("--model_dir", required=True, type=Path, help="HF folder to train in place")
    p.add_argument("--languages", nargs="+", default=list(DEFAULT_LANGUAGES))
    p.add_argument("--tokenizer", type=Path, default=None, help="encoder: the LM's tokenizer folder (CTC units)")
    p.add_argument("--compressor_layers", type=int, default=0, help="encoder: Conv1d layers in front (as in the "
                   "model config); their weights are saved to MODEL_DIR/compressor.pth")
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--batch_size", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--nthreads", type=int, default=1)
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    torch.set_num_threads(a.nthreads)
    recover_dir(a.model_dir)
    done = a.model_dir / f"pretrained_{a.what}.json"
    if done.exists():
        print(f"{done} exists: {a.what} already pretrained, skipping")
        return
    t0 = time.time()
    if a.what == "lm":
        stats, save = pretrain_lm(a.data_dir, a.model_dir, a.languages, a.steps, a.batch_size, a.lr, a.seed)
    else:
        if a.tokenizer is None:
            p.error("--what encoder needs --tokenizer (the LM's tokenizer folder)")
        stats, save = pretrain_encoder(a.data_dir, a.model_dir, a.tokenizer, a.compressor_layers, a.steps, a.batch_size,
                                 a.lr, a.seed)
    stats.update(steps=a.steps, seconds=round(time.time() - t0, 1))
    _install(a.model_dir, save, done.name, stats)
    print(f"pretrained {a.what}: {stats}")


if __name__ == "__main__":
    main()
