"""Scoring (recipe stage 6): per-task metrics, the task-confusion diagnostic, RESULTS.md and results.json, and the
official MCIF / IWSLT 2025 evaluation reproduced offline.

- `metrics`: WER/CER, sacreBLEU BLEU/chrF, exact match, unanswerable accuracy, and the `TASK_METRICS` registry where
  further metrics (COMET, BERTScore) plug in; `normalizer`: the text normalisers as the official evaluation's;
- `confusion`: `classify_output` labels what task one output performed; `confusion_matrix`, `is_confusion`;
- `report`: reads decode/data dirs, scores every test set per utterance, writes the outputs (`run_scoring`);
- `mcif`: MCIF reference and output XML files; `official`: the official scores of such files; `resegment`: what the
  official mwerSegmenter makes of a talk's output;
- entry point: `python -m espnet_speechlm_plugin.bin.score` (docs/scoring.md).
The tasks, languages and unanswerable strings it scores by are those of `espnet_speechlm_plugin.vocab`.
"""
from espnet_speechlm_plugin.scoring.confusion import classify_output, identify_language
from espnet_speechlm_plugin.scoring.metrics import is_unanswerable
from espnet_speechlm_plugin.scoring.report import ScoringError, run_scoring

__all__ = [
    "ScoringError",
    "classify_output",
    "identify_language",
    "is_unanswerable",
    "run_scoring",
]
