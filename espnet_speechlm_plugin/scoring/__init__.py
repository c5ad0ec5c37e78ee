"""Scoring (recipe stage 6): per-task metrics, the task-confusion diagnostic, RESULTS.md and results.json.

- `metrics`: WER/CER (Whisper normalisers), sacreBLEU BLEU/chrF, exact match, unanswerable accuracy, and the
  `TASK_METRICS` registry where further metrics (COMET, BERTScore) plug in;
- `confusion`: `classify_output` labels what task one output performed; `confusion_matrix`, `is_confusion`;
- `report`: reads decode/data dirs, scores every test set, writes the outputs (`run_scoring`);
- entry point: `python -m espnet_speechlm_plugin.bin.score`.
"""
from espnet_speechlm_plugin.scoring.confusion import classify_output, identify_language
from espnet_speechlm_plugin.scoring.metrics import LANGS, TASKS, UNANSWERABLE, is_unanswerable
from espnet_speechlm_plugin.scoring.report import ScoringError, run_scoring

__all__ = [
    "LANGS",
    "TASKS",
    "UNANSWERABLE",
    "ScoringError",
    "classify_output",
    "identify_language",
    "is_unanswerable",
    "run_scoring",
]
