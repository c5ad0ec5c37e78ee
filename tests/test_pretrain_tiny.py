"""bin/pretrain_tiny: a finished pretraining is recognised by its marker, and a kill between the two renames of
the model-dir swap leaves a model that the rerun recovers instead of crashing or training twice."""

import json
import os
import shutil

from espnet_speechlm_plugin.bin import pretrain_tiny


def test_lm_pretraining_installs_model_with_marker_and_recovers_an_interrupted_swap(tiny_init, tiny_exp, tmp_path):
    dump = tiny_exp[1]
    model_dir = tmp_path / "decoder"
    shutil.copytree(f"{tiny_init}/decoder", model_dir)
    args = ["--what", "lm", "--data_dir", str(dump), "--model_dir", str(model_dir), "--steps", "3",
            "--batch_size", "4"]
    pretrain_tiny.main(args)
    stats = json.loads((model_dir / "pretrained_lm.json").read_text())
    assert stats["steps"] == 3 and stats["first_loss"] > 0
    assert not model_dir.with_name("decoder.tmp").exists() and not model_dir.with_name(".decoder.old").exists()
    before = (model_dir / "model.safetensors").read_bytes()

    # a kill after "model_dir -> .decoder.old" but before ".tmp -> model_dir" leaves only the old dir
    os.replace(model_dir, model_dir.with_name(".decoder.old"))
    pretrain_tiny.main(args)  # recovers the dir, sees the marker and does not train again
    assert (model_dir / "model.safetensors").read_bytes() == before
    assert not model_dir.with_name(".decoder.old").exists()


def _pretrain_encoder(tiny_init, dump, model_dir, seed):
    shutil.copytree(f"{tiny_init}/encoder", model_dir)
    pretrain_tiny.main(["--what", "encoder", "--data_dir", str(dump), "--model_dir", str(model_dir),
                        "--tokenizer", f"{tiny_init}/tokenizer", "--compressor_layers", "1", "--steps", "3",
                        "--batch_size", "4", "--seed", str(seed)])
    return (model_dir / "model.safetensors").read_bytes(), (model_dir / "compressor.pth").read_bytes()


def test_encoder_pretraining_is_a_function_of_its_inputs_and_seed(tiny_init, tiny_exp, tmp_path):
    """SpecAugment draws its masks from numpy's global RNG: two runs with one seed must still give the same bytes."""
    dump = tiny_exp[1]
    first = _pretrain_encoder(tiny_init, dump, tmp_path / "a" / "encoder", seed=0)
    again = _pretrain_encoder(tiny_init, dump, tmp_path / "b" / "encoder", seed=0)
    other = _pretrain_encoder(tiny_init, dump, tmp_path / "c" / "encoder", seed=1)
    assert first == again
    assert first[0] != other[0]
