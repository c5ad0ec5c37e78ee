"""The model zoo: pack → unpack → from_pretrained decodes exactly like the experiment dir (bin/decode.py), loads
without unpickling, the hub repo folder of a dry run (model card, metrics, espnet_model_zoo layout), offline errors."""

import io
import shutil
import zipfile
from pathlib import Path

import pytest
import torch
import yaml
from conftest import UTTS

from espnet_speechlm_plugin.data.kaldi import read_kaldi_text


@pytest.fixture(scope="module")
def packed(tiny_exp, tmp_path_factory):
    """A copy of the tiny stage-2 experiment with stage 5/6 outputs (real decoding and scoring), packed with a
    dry-run hub folder: (exp copy, decoded hyps, zip, hub folder)."""
    from espnet_speechlm_plugin.bin import decode, pack, score

    root, dump, _, exp2 = tiny_exp
    tmp = tmp_path_factory.mktemp("zoo")
    exp = tmp / "exp"
    shutil.copytree(exp2, exp, symlinks=True)
    decode.main(["--config", str(exp / "config.yaml"), "--model_file", str(exp / "valid.acc.best.pth"),
                 "--data_dir", str(dump), "--out_dir", str(tmp / "decode" / dump.name)])
    score.main(["--decode_dir", str(tmp / "decode"), "--ref_dir", str(dump.parent), "--test_sets", dump.name,
                "--out_dir", str(exp)])
    zip_path = exp / "packed" / "model.zip"
    pack.main(["--exp_dir", str(exp), "--out", str(zip_path), "--hf_repo", "someone/tiny-speechlm",
               "--dry_run", "true", "--license", "apache-2.0"])
    hyps = read_kaldi_text(tmp / "decode" / dump.name / "text")
    return exp, hyps, zip_path, exp / "packed" / "hf_repo"


def _decode_all(m, root):
    out = {}
    for utt, _, prompt, _ in UTTS:
        lang, task, *question = prompt.split(maxsplit=2)
        out[utt] = m(root / f"{utt}.wav", task=task, lang=lang, question=question[0] if question else None).text
    return out


def test_zip_contents_and_safe_weights(packed):
    exp, _, zip_path, _ = packed
    with zipfile.ZipFile(zip_path) as z:
        names = set(z.namelist())
        meta = yaml.safe_load(z.read("meta.yaml"))
        config = yaml.safe_load(z.read("config.yaml"))
    assert {"meta.yaml", "config.yaml", "model.safetensors", "RESULTS.md", "results.json", "hf/encoder/config.json",
            "hf/decoder/config.json", "hf/tokenizer/tokenizer.json"} <= names
    assert not [n for n in names if n.endswith((".pth", ".pt", ".pkl", ".bin"))]  # nothing that needs unpickling
    assert meta["files"] == {"model_file": "model.safetensors"}
    assert meta["yaml_files"] == {"train_config": "config.yaml"}
    assert config["decoder_conf"]["name_or_path"] == "hf/decoder" and config["decoder_conf"]["random_init"] is True
    assert config["encoder_conf"]["name_or_path"] == "hf/encoder" and config["tokenizer"] == "hf/tokenizer"
    assert config["init_param"] == []
    # inputs longer than 1.5 x the longest training utterance get segmented, at pauses after the 5th percentile
    frames = sorted(int(v.split(",")[0]) for v in read_kaldi_text(Path(config["train_shape_file"][0])).values())
    assert config["inference_conf"] == {"max_seconds": round(1.5 * frames[-1] / 50, 2),
                                        "min_seconds": round(frames[len(frames) // 20] / 50, 2)}
    # only the architectures are packed: HF weights would double the size
    assert not [n for n in names if n.startswith("hf/") and n.endswith(".safetensors")]


def test_from_pretrained_zip_dir_and_exp_decode_like_bin_decode(packed, tiny_exp, tmp_path, monkeypatch):
    from espnet_speechlm_plugin import SpeechLMInference

    exp, ref, zip_path, folder = packed
    root = tiny_exp[0]
    real_load = torch.load

    def no_pickle(*args, **kwargs):  # a packed model must load without torch.load (pickle) at all
        raise AssertionError("torch.load called while loading a packed model")

    monkeypatch.setattr(torch, "load", no_pickle)
    from_zip = SpeechLMInference.from_pretrained(zip_path, cachedir=tmp_path / "cache")
    from_dir = SpeechLMInference.from_pretrained(folder)
    monkeypatch.setattr(torch, "load", real_load)
    from_exp = SpeechLMInference.from_pretrained(exp)

    packed = yaml.safe_load(zipfile.ZipFile(zip_path).read("config.yaml"))["inference_conf"]
    for m in (from_zip, from_dir, from_exp):
        assert (m.segment.max_seconds, m.segment.min_seconds) == (packed["max_seconds"], packed["min_seconds"])
    trained = real_load(exp / "valid.acc.best.pth", weights_only=True)
    for m in (from_zip, from_dir, from_exp):
        state = m.model.state_dict()
        assert set(state) == set(trained) and all(torch.equal(state[k], trained[k]) for k in trained)
    assert set(ref) == {u for u, *_ in UTTS}
    assert _decode_all(from_zip, root) == ref
    assert _decode_all(from_dir, root) == ref
    assert _decode_all(from_exp, root) == ref


def test_dry_run_hub_folder_and_model_card(packed):
    exp, _, zip_path, folder = packed
    files = {str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()}
    with zipfile.ZipFile(zip_path) as z:
        assert files == set(z.namelist()) | {"README.md"}  # the unpacked zip + the card, as espnet_model_zoo wants
    card = (folder / "README.md").read_text(encoding="utf-8")
    front = yaml.safe_load(card.split("---\n")[1])
    config = yaml.safe_load((exp / "config.yaml").read_text(encoding="utf-8"))
    assert front["language"] == config["languages"] and front["license"] == "apache-2.0"
    # the hub shows ESPnet's Speech2Text snippet for library_name espnet + an ASR tag, and it cannot load this
    # model: the card names this package (no hub snippet) and the audio+text -> text pipeline, and has our own
    assert front["library_name"] == "espnet_speechlm_plugin" and front["pipeline_tag"] == "audio-text-to-text"
    assert "espnet" not in front["tags"] and "Speech2Text.from_pretrained" not in card
    assert {"speech-llm", "automatic-speech-recognition", "speech-translation",
            "spoken-question-answering"} <= set(front["tags"])
    import json

    rows = [r for r in json.loads((exp / "results.json").read_text()) if r["value"] is not None]
    got = {(r["dataset"]["name"], r["task"]["name"], m["type"]): m["value"]
           for r in front["model-index"][0]["results"] for m in r["metrics"]}
    assert len(got) == len(rows) > 0
    for row in rows:
        assert any(k[0] == row["test_set"] and k[2] == row["metric"] and f"({row['lang']})" in k[1]
                   and v == row["value"] for k, v in got.items()), row
    assert front["model-index"][0]["name"] == "someone/tiny-speechlm"
    assert 'SpeechLMInference.from_pretrained("someone/tiny-speechlm")' in card
    assert "python -m espnet_speechlm_plugin.bin.speechlm_inference --model someone/tiny-speechlm" in card
    assert (exp / "RESULTS.md").read_text(encoding="utf-8").strip() in card


def test_hub_folder_is_what_espnet_model_zoo_unpacks(packed, tmp_path):
    """A hub snapshot of the folder goes through ModelDownloader's own hub-unpacking step (no network needed)."""
    from espnet_model_zoo.downloader import ModelDownloader

    from espnet_speechlm_plugin import SpeechLMInference

    snapshot = tmp_path / "snapshot"
    shutil.copytree(packed[3], snapshot)
    info = ModelDownloader._unpack_cache_dir_for_huggingfase(str(snapshot))
    assert Path(info["model_file"]) == snapshot / "model.safetensors"
    assert Path(info["train_config"]) == snapshot / "config.yaml"
    m = SpeechLMInference.from_pretrained(snapshot)
    assert m.languages == tuple(yaml.safe_load((packed[0] / "config.yaml").read_text())["languages"])


def test_hub_name_offline_and_missing_paths_fail_clearly(tmp_path, monkeypatch):
    from espnet_speechlm_plugin.zoo.inference import ModelNotFound, SpeechLMInference

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelNotFound, match=r"someone/no-such-model.*huggingface-cli download someone/no-such-model"):
        SpeechLMInference.from_pretrained("someone/no-such-model", cachedir=tmp_path / "cache")
    with pytest.raises(ModelNotFound, match="no such file or folder"):
        SpeechLMInference.from_pretrained(tmp_path / "missing" / "model.zip")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelNotFound, match="neither a packed model"):
        SpeechLMInference.from_pretrained(tmp_path / "empty")


def test_repack_is_skipped_when_up_to_date_and_bad_weights_refused(packed, tmp_path):
    from espnet_speechlm_plugin.zoo.pack import pack_experiment

    exp, _, zip_path, _ = packed
    before = zip_path.stat().st_mtime_ns
    assert pack_experiment(exp, out=zip_path) == zip_path and zip_path.stat().st_mtime_ns == before
    # weights of another architecture: refused before anything is written
    state = torch.load(exp / "valid.acc.best.pth", weights_only=True)
    state["projector.weight"] = state["projector.weight"][:, :-1]
    buf = io.BytesIO()
    torch.save(state, buf)
    (exp / "broken.pth").write_bytes(buf.getvalue())
    with pytest.raises(ValueError, match="does not fit"):
        pack_experiment(exp, "broken.pth", tmp_path / "broken.zip")
    assert not (tmp_path / "broken.zip").exists()
