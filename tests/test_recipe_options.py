"""Recipe options: `--help` of speechlm.sh and of each recipe's run.sh lists every option of the script's option
block with its default and a description; ESPnet's names (--local_data_opts, --skip_upload_hf) and the old ones
(--data_args, --skip_upload) give the same run; stage 8 passes the hub options it documents to bin/pack.

The option blocks are read here with a regular expression of their own, not with utils/options.sh, so a line the
help generator skipped or misread shows up as a missing option."""

import contextlib
import io
import os
import re
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TEMPLATE = REPO / "egs2" / "TEMPLATE" / "s2t1"
RECIPES = {"mini_espeak": REPO / "egs2" / "mini_espeak" / "s2t1", "iwslt25_if": REPO / "egs2" / "iwslt25_if" / "s2t1"}


def block(path: Path) -> dict:
    """{name: default} of the script's option block (defaults unquoted; `${x:-d}` gives d)."""
    text = path.read_text(encoding="utf-8")
    body = text.split("\n# ---- options", 1)[1].split("\n# ---- end of options", 1)[0]
    out = {}
    for m in re.finditer(r'^([A-Za-z_]\w*)=("[^"]*"|\$\{\w+:-"?[^}"]*"?\}|\S*)', body, re.M):
        value = m.group(2)
        default = re.fullmatch(r'\$\{\w+:-"?([^}"]*)"?\}', value)
        out[m.group(1)] = default.group(1) if default else value.strip('"')
    return out


def shown(value: str) -> str:
    return f'"{value}"' if value == "" or " " in value else value


def help_of(cwd: Path, script: str, *args: str) -> str:
    proc = subprocess.run([f"./{script}", *args, "--help"], cwd=cwd, capture_output=True, text=True, timeout=60,
                          env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def option_lines(text: str) -> dict:
    """{name: (value shown, description)} from a --help text."""
    lines = text.splitlines()
    out = {}
    for i, line in enumerate(lines[:-1]):
        m = re.fullmatch(r"  --(\w+) (.*)", line)
        if m and lines[i + 1].startswith("      ") and lines[i + 1].strip():
            out.setdefault(m.group(1), (m.group(2), lines[i + 1].strip()))
    return out


def test_speechlm_sh_help_lists_every_option_with_default_and_description():
    defaults = block(TEMPLATE / "speechlm.sh")
    assert len(defaults) >= 40 and {"local_data_opts", "skip_upload_hf", "hf_repo", "hf_private"} <= set(defaults)
    text = help_of(TEMPLATE, "speechlm.sh")
    listed = option_lines(text)
    for name, default in defaults.items():
        assert name in listed, name
        assert listed[name][0] == shown(default), (name, listed[name][0], default)
        assert len(listed[name][1]) > 10, name
    assert set(listed) == set(defaults)
    # the old names are listed as what they are
    assert "--data_args (old name of --local_data_opts) accepted until the next release" in text
    assert "--skip_upload (old name of --skip_upload_hf) accepted until the next release" in text
    # glossary: recipe stages vs the paper's training stages
    flat = " ".join(text.split())
    assert 'paper "stage 1" = alignment = recipe stage 3' in flat
    assert 'paper "stage 2" = instruction SFT = recipe stage 4' in flat
    for n in range(1, 9):
        assert re.search(rf"^  {n} ", text, re.M), n


@pytest.mark.parametrize("recipe", sorted(RECIPES))
def test_run_sh_help_lists_its_options_then_speechlm_sh_with_the_recipe_values(recipe):
    d = RECIPES[recipe]
    text = help_of(d, "run.sh")
    own, rest = text.split("---- speechlm.sh, as this script calls it ----")
    own_listed, rest_listed = option_lines(own), option_lines(rest)
    for name, default in block(d / "run.sh").items():
        assert own_listed[name][0] == shown(default), (name, own_listed[name])
    assert set(rest_listed) == set(block(TEMPLATE / "speechlm.sh"))
    # speechlm.sh's entries show what run.sh passes, not speechlm.sh's own defaults
    expected = {"mini_espeak": {"tag": "tiny", "stage1_config": "conf/stage1_tiny.yaml", "make_init": "true",
                                "init_lm_steps": "2000", "decode_args": '"--batch_size 32"'},
                "iwslt25_if": {"tag": "qwen2.5-0.5b", "stage2_config": "conf/stage2_qwen2.5-0.5b.yaml", "ngpu": "1",
                               "train_mix_stage1": "conf/train_mix_stage1.yaml", "nj": "8"}}[recipe]
    for name, value in expected.items():
        assert rest_listed[name][0] == value, (name, rest_listed[name])
    assert rest_listed["local_data_opts"][0].startswith('"--')
    # an option of run.sh given before --help shows up in both lists
    if recipe == "iwslt25_if":
        text = help_of(d, "run.sh", "--model", "qwen2.5-1.5b", "--stage", "3")
        assert "  --model qwen2.5-1.5b\n" in text and "  --stage1_config conf/stage1_qwen2.5-1.5b.yaml\n" in text
        assert "  --stage 3\n" in text


@pytest.fixture()
def stub_recipe(tmp_path):
    """A recipe dir with the real speechlm.sh, path.sh, cmd.sh and utils/, whose local/data.sh and python3 only
    record their arguments: runs stages without any model."""
    d = tmp_path / "s2t1"
    (d / "local").mkdir(parents=True)
    for name in ("speechlm.sh", "path.sh", "cmd.sh", "utils"):
        (d / name).symlink_to(TEMPLATE / name)
    log = tmp_path / "calls.log"
    bindir = tmp_path / "bin"
    bindir.mkdir()
    for script in (d / "local" / "data.sh", bindir / "python3"):
        script.write_text(f'#!/usr/bin/env bash\necho "$(basename "$0") $*" >> {log}\n', encoding="utf-8")
        script.chmod(0o755)
    env = dict(os.environ, PATH=f"{bindir}:{os.environ['PATH']}", VIRTUAL_ENV=str(tmp_path), OMP_NUM_THREADS="1")

    def run(*args):
        log.unlink(missing_ok=True)
        proc = subprocess.run(["./speechlm.sh", *args], cwd=d, env=env, capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        calls = log.read_text(encoding="utf-8").splitlines() if log.exists() else []
        return calls, proc.stdout + proc.stderr

    return run


def test_old_option_names_give_the_same_run_as_espnets(stub_recipe):
    data = ["--stage", "1", "--stop_stage", "1"]
    new, _ = stub_recipe(*data, "--local_data_opts", "--n_train 6 --corpora 'a b'")
    old, log = stub_recipe(*data, "--data_args", "--n_train 6 --corpora 'a b'")
    assert new == old == ["data.sh --n_train 6 --corpora a b"]
    assert "--data_args is the old name of --local_data_opts" in log

    upload = ["--stage", "8", "--stop_stage", "8", "--tag", "x", "--hf_repo", "someone/model", "--dry_run", "true"]
    new, _ = stub_recipe(*upload, "--skip_upload_hf", "false", "--hf_private", "true", "--hf_license", "mit")
    old, log = stub_recipe(*upload, "--skip_upload", "false", "--hf_private", "true", "--hf_license", "mit")
    assert new == old and len(new) == 1
    assert "--skip_upload is the old name of --skip_upload_hf" in log
    call = new[0]
    assert call.startswith("python3 -m espnet_speechlm_plugin.bin.pack --exp_dir exp/x_stage2 ")
    for part in ("--hf_repo someone/model", "--dry_run true", "--private true", "--license mit"):
        assert part in call, part
    skipped, log = stub_recipe(*upload)
    assert skipped == [] and "Stage 8: upload skipped (--skip_upload_hf true)" in log


def test_bin_pack_accepts_every_hub_option_stage_8_passes():
    """The options stage 8 gives bin/pack exist there (the stub above does not check that)."""
    from espnet_speechlm_plugin.bin import pack

    text = (TEMPLATE / "speechlm.sh").read_text(encoding="utf-8")
    stage8 = text[text.index('if [ "${stage}" -le 8 ]'):]
    passed = set(re.findall(r"(--\w+) \"\$\{", stage8))
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf), pytest.raises(SystemExit):
        pack.main(["--help"])
    for opt in passed:
        assert opt in buf.getvalue(), opt
    assert {"--hf_repo", "--dry_run", "--private", "--license"} <= passed
