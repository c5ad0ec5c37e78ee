"""The demo's variants: run.sh --seed / --compressor_layers / --adapter_layers / --adapter_stride get their own
experiment dirs with the asked model, and local/results_table.py turns several runs into one comparison table."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

RECIPE = Path(__file__).resolve().parents[1] / "egs2" / "mini_espeak" / "s2t1"


def _results(d: Path, wer: float, bleu: float, em: dict):
    d.mkdir(parents=True)
    rows = [{"test_set": "test", "task": "transcribe", "lang": "en", "metric": "wer", "value": wer, "n": 4}]
    rows += [{"test_set": "test", "task": "translate", "lang": lang, "metric": "bleu", "value": bleu, "n": 2}
             for lang in ("de", "it", "zh")]
    rows += [{"test_set": "test", "task": "answer", "lang": lang, "metric": "exact_match", "value": v, "n": n}
             for lang, (v, n) in em.items()]
    rows.append({"test_set": "dev", "task": "transcribe", "lang": "en", "metric": "wer", "value": 0.9, "n": 1})
    (d / "results.json").write_text(json.dumps(rows), encoding="utf-8")


def test_results_table_rows_mean_and_range(tmp_path):
    _results(tmp_path / "a", 0.10, 40.0, {"en": (0.5, 10), "de": (1.0, 10), "it": (0.0, 10), "zh": (0.5, 30)})
    _results(tmp_path / "b", 0.20, 30.0, {"en": (0.7, 10), "de": (1.0, 10), "it": (0.2, 10), "zh": (0.5, 30)})
    out = subprocess.run([sys.executable, str(RECIPE / "local" / "results_table.py"), str(tmp_path / "a"),
                          str(tmp_path / "b"), "--label", "seed 0", "seed 1", "--spread"],
                         capture_output=True, text=True, check=True).stdout.splitlines()
    assert out[0].startswith("| run | WER en | BLEU de | BLEU it | BLEU zh | EM en |") and out[0].endswith("EM all |")
    # EM all is over questions: (5 + 10 + 0 + 15) / 60
    assert out[2] == "| seed 0 | 0.100 | 40.0 | 40.0 | 40.0 | 0.50 | 1.00 | 0.00 | 0.50 | 0.50 |"
    assert out[4] == "| mean | 0.150 | 35.0 | 35.0 | 35.0 | 0.60 | 1.00 | 0.10 | 0.50 | 0.53 |"
    assert out[5] == "| range (max − min) | 0.100 | 10.0 | 10.0 | 10.0 | 0.20 | 0.00 | 0.20 | 0.00 | 0.07 |"


@pytest.mark.slow
def test_a_variant_is_one_command_with_its_own_dirs(tmp_path):
    """run.sh --compressor_layers 0 --adapter_layers 2 --seed 1 on a handful of utterances, stages 1-6."""
    d = tmp_path / "s2t1"
    d.mkdir()
    for name in ("run.sh", "conf", "local", "speechlm.sh", "path.sh", "cmd.sh", "utils"):
        (d / name).symlink_to(os.path.realpath(RECIPE / name))
    proc = subprocess.run(
        ["./run.sh", "--data_args", "--n_train 40 --n_dev 8 --n_test 16 --nj 1",
         "--init_args", "--vocab_size 300 --encoder_hidden 32 --decoder_hidden 32 --heads 2",
         "--init_lm_steps", "10", "--init_encoder_steps", "10", "--stage1_args", "--max_epoch 1 --batch_size 8",
         "--stage2_args", "--max_epoch 1 --batch_size 8", "--decode_args", "--batch_size 8 --max_new_tokens 8",
         "--nj", "1", "--stop_stage", "6", "--compressor_layers", "0", "--adapter_layers", "2", "--seed", "1"],
        cwd=d, env=dict(os.environ, OMP_NUM_THREADS="1"), capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    init = d / "exp" / "init_conv0_seed1" / "encoder"
    assert (init / "pretrained_encoder.json").exists() and not (init / "compressor.pth").exists()
    exp2 = d / "exp" / "tiny_conv0_adapter2x2_seed1_stage2"
    config = yaml.safe_load((exp2 / "config.yaml").read_text(encoding="utf-8"))
    assert config["compressor"] is None and config["seed"] == 1
    assert (config["length_adapter_conf"]["num_layers"], config["length_adapter_conf"]["stride"]) == (2, 2)
    assert config["encoder_conf"]["name_or_path"] == "exp/init_conv0_seed1/encoder"
    assert (exp2 / "RESULTS.md").exists() and not (d / "exp" / "tiny_stage2").exists()
