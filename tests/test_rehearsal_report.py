"""bin/rehearsal_report: report.json keys and report.md tables from the rehearsal's recorded steps and memory plan,
failed steps shown with their log, big files listed with sizes and deleted only with cleanup."""
import json

from espnet_speechlm_plugin.bin.rehearsal_report import write_report


def _steps():
    return [
        dict(name="stage 1: data prep", status="ok", wall_s=20.5, peak_rss_gb=0.7, lock_wait_s=3.0),
        dict(name="qwen2.5-0.5b: stage 4 (stage-2 SFT)", model="qwen2.5-0.5b", stage=4, status="ok", wall_s=300.0,
             peak_rss_gb=19.5, train_time_s=45.2, checkpoint_bytes={"1epoch.pth": 4_520_000_000}),
        dict(name="qwen2.5-0.5b: stage 5 (decode)", model="qwen2.5-0.5b", stage=5, status="failed", wall_s=12.0,
             peak_rss_gb=5.0, log_tail=["ValueError: mask_length has to be smaller than sequence_length"]),
        dict(name="qwen2.5-0.5b: stage 6 (score)", status="skipped", reason="needs qwen2.5-0.5b: stage 5 (decode)"),
    ]


def test_report_json_and_markdown(tmp_path):
    plan = [dict(config="conf/stage2_x.yaml", path="conf/stage2_x.yaml", gpu_gb=80.0, trainable_params=1_130_000_000,
                 frozen_params=0, gb=dict(weights=4.5, gradients=4.5, optimizer=9.0, activations=30.1, peak=48.1),
                 activations={}, fits=True, advice=""),
            dict(config="conf/stage1_tiny.yaml", path="conf/stage1_tiny.yaml", gpu_gb=80.0, error="no plan: tiny")]
    (tmp_path / "memory_plan.json").write_text(json.dumps(plan))
    big = tmp_path / "recipe" / "exp" / "m" / "1epoch.pth"
    big.parent.mkdir(parents=True)
    big.write_bytes(b"\0" * (101 * 2**20))
    md = write_report(tmp_path, _steps(), dict(size="real", models=["qwen2.5-0.5b"], wall_s=600.0,
                                               train_args="--encoder_conf x=1"))
    report = json.loads((tmp_path / "report.json").read_text())
    assert {"stages", "memory_plan"} <= set(report) and len(report["stages"]) == 4 and len(report["memory_plan"]) == 2
    assert report["ok"] is False and report["work_s"] == 332.5 and report["lock_wait_s"] == 3.0
    assert report["big_files"] == {"recipe/exp/m/1epoch.pth": 101 * 2**20} and big.exists()
    text = md.read_text()
    assert "Result: **FAILED**" in text and "| qwen2.5-0.5b: stage 4 (stage-2 SFT) | ok | 300.0 | 19.5 | 45.2 |" in text
    assert "1epoch.pth 4.52" in text and "mask_length has to be smaller" in text and "--encoder_conf x=1" in text
    assert "| conf/stage2_x.yaml | 1,130.0 | 0.0 | 4.5 | 4.5 | 9.0 | 30.1 | 48.1 | yes |" in text
    assert "no plan: tiny" in text and "use_amp" in text
    write_report(tmp_path, cleanup=True)  # rewritten from the previous report, then the big files deleted
    again = json.loads((tmp_path / "report.json").read_text())
    assert not big.exists() and again["cleaned_up"] and again["big_files"] == report["big_files"]
    assert again["stages"] == report["stages"] and again["run"] == report["run"]
