"""Pack a trained experiment in ESPnet's model-zoo format (stage 7) and optionally publish it (stage 8).

    python -m espnet_speechlm_plugin.bin.pack --exp_dir exp/speechlm_stage2 --model_file valid.acc.best.pth \
        --out exp/speechlm_stage2/packed/model.zip [--hf_repo user/name --dry_run true]

The zip (ESPnet ``pack``: ``meta.yaml`` + files, unpacked by ``espnet_model_zoo``) holds ``config.yaml``, the
model weights, RESULTS.md/results.json when present, and every local HF folder the config loads from
(``encoder_conf.name_or_path``, ``decoder_conf.name_or_path``, ``tokenizer``), so the model rebuilds offline.
Run it from the recipe directory: ESPnet stores paths relative to the working directory.
With ``--hf_repo``, the zip and a model card go to ``<out dir>/hf_repo/``; unless ``--dry_run true`` that folder
is then uploaded with ``huggingface_hub`` (needs ``huggingface-cli login``).
"""

import argparse
import os
from pathlib import Path
from typing import List, Optional

import yaml


def local_model_dirs(config: dict) -> List[str]:
    """Folders the config loads pretrained parts from that exist locally (hub names are left to the hub)."""
    candidates = [
        (config.get("encoder_conf") or {}).get("name_or_path"),
        (config.get("decoder_conf") or {}).get("name_or_path"),
        config.get("tokenizer"),
    ]
    return sorted({c for c in candidates if c and os.path.isdir(c)})


def pack_experiment(exp_dir: Path, model_file: str, out: Path) -> Path:
    from espnet2.main_funcs.pack_funcs import pack

    config_path = exp_dir / "config.yaml"
    model_path = exp_dir / model_file
    for p in (config_path, model_path):
        if not p.exists():
            raise FileNotFoundError(f"{p} does not exist: run the training stages first")
    config = yaml.safe_load(config_path.read_text(encoding="utf-8"))
    options = [str(exp_dir / f) for f in ("RESULTS.md", "results.json") if (exp_dir / f).exists()]
    options += local_model_dirs(config)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp.zip")
    pack(files={"model_file": str(model_path)}, yaml_files={"train_config": str(config_path)}, option=options,
         outpath=str(tmp))
    os.replace(tmp, out)
    return out


def model_card(exp_dir: Path, repo: str) -> str:
    results = (exp_dir / "RESULTS.md").read_text(encoding="utf-8") if (exp_dir / "RESULTS.md").exists() else ""
    return (
        "---\nlibrary_name: espnet\ntags:\n- espnet\n- speech-llm\n- automatic-speech-recognition\n"
        "- speech-translation\n- spoken-question-answering\nlicense: cc-by-4.0\n---\n\n"
        f"# {repo}\n\nA speech-LLM (w2v-BERT encoder → adapter → causal LM) trained with "
        "espnet_speechlm_plugin (an ESPnet recipe plugin).\n\n"
        "## Use\n\n```bash\nunzip model.zip  # ESPnet model-zoo layout: meta.yaml, config.yaml, weights\n"
        "python -m espnet_speechlm_plugin.bin.decode --config <exp>/config.yaml --model_file <exp>/<model>.pth "
        "--data_dir dump/test --out_dir decode/test\n```\n\n"
        f"## Results\n\n{results}\n"
    )


def publish(exp_dir: Path, zip_path: Path, repo: str, dry_run: bool) -> Path:
    folder = zip_path.parent / "hf_repo"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model.zip").write_bytes(zip_path.read_bytes())
    (folder / "README.md").write_text(model_card(exp_dir, repo), encoding="utf-8")
    if not dry_run:
        from huggingface_hub import HfApi

        api = HfApi()
        api.create_repo(repo, exist_ok=True)
        api.upload_folder(repo_id=repo, folder_path=str(folder))
    return folder


def main(argv: Optional[List[str]] = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--exp_dir", required=True, type=Path)
    p.add_argument("--model_file", default="valid.acc.best.pth")
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--hf_repo", default=None, help="user/name on the HF hub (stage 8)")
    p.add_argument("--dry_run", default="false", choices=["true", "false"])
    a = p.parse_args(argv)
    out = pack_experiment(a.exp_dir, a.model_file, a.out)
    print(f"packed {out} ({out.stat().st_size / 2**20:.1f} MiB)")
    if a.hf_repo:
        folder = publish(a.exp_dir, out, a.hf_repo, a.dry_run == "true")
        print(f"{'wrote' if a.dry_run == 'true' else 'uploaded'} the hub repo folder {folder}")


if __name__ == "__main__":
    main()
