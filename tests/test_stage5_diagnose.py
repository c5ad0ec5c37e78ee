"""Recipe stage 5 with the task-confusion diagnostic on (--diagnose_n > 0), the decoding options the docs
recommend and --ngpu 1 under the slurm backend: the diagnostic gets a GPU and the decoding options of stage 5.

The machine has no GPU and no slurm: a stand-in ``srun`` records what it is asked, then runs the job on the CPU.
"""

import os
import shutil
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TEMPLATE = REPO / "egs2" / "TEMPLATE" / "s2t1"
DECODE_ARGS = "--batch_size 4 --beam_size 2 --length_penalty 1.0 --encoder_batch_size 2 --max_new_tokens 4"

SRUN = """#!/usr/bin/env bash
# stand-in for slurm's srun: record the call, drop srun's own options, run the job on the CPU
echo "srun $*" >> "${SRUN_LOG}"
while [ $# -gt 0 ] && [[ "$1" == --* ]]; do shift 2; done
job=()
for a in "$@"; do [ "$a" = cuda ] && a=cpu; job+=("$a"); done
exec "${job[@]}"
"""


def test_stage5_diagnostic_takes_the_decoding_options_and_the_gpu(tiny_exp, tmp_path):
    _, dump, _, exp2 = tiny_exp
    d = tmp_path / "s2t1"
    d.mkdir()
    for name in ("speechlm.sh", "path.sh", "cmd.sh", "utils"):
        (d / name).symlink_to(TEMPLATE / name)
    (d / "dump").mkdir()
    (d / "dump" / "test").symlink_to(dump)
    shutil.copytree(exp2, d / "exp" / "tiny_stage2", symlinks=True)
    # the test set's decoding is already complete (stage 5 skips it: one process less to start); the diagnostic runs
    out = d / "exp" / "tiny_stage2" / "decode_valid.acc.best" / "test"
    out.mkdir(parents=True)
    utts = [line.split()[0] for line in (dump / "prompt").read_text(encoding="utf-8").splitlines()]
    (out / "text").write_text("".join(f"{u} x\n" for u in utts), encoding="utf-8")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "srun").write_text(SRUN)
    (bin_dir / "srun").chmod(0o755)
    env = dict(os.environ, OMP_NUM_THREADS="1", SRUN_LOG=str(tmp_path / "srun.log"),
               PATH=f"{bin_dir}:{os.environ['PATH']}")
    proc = subprocess.run(["./speechlm.sh", "--stage", "5", "--stop_stage", "5", "--tag", "tiny", "--test_sets", "test",
                           "--ngpu", "1", "--cmd_backend", "slurm", "--decode_args", DECODE_ARGS,
                           "--diagnose_n", "3", "--diagnose_args", "--source_lang en"],
                          cwd=d, env=env, capture_output=True, text=True, timeout=600)
    logs = "".join(p.read_text() for p in out.rglob("*.log"))
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:] + logs[-3000:]
    assert "text is complete: skipping" in proc.stdout
    calls = (tmp_path / "srun.log").read_text().splitlines()
    assert len(calls) == 1 and "bin.diagnose " in calls[0]
    # the job asks slurm for one GPU, runs on it, with the recipe's decoding options (beam search included)
    assert "--gres gpu:1" in calls[0] and "--device cuda" in calls[0] and DECODE_ARGS in calls[0], calls[0]
    assert (out / "diagnose" / "task_confusion.json").is_file()
    assert "Task-confusion diagnostic: the same 3 utterances" in (out / "diagnose" / "task_confusion.md").read_text()
