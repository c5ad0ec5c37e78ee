"""Train a SpeechLM through ESPnet's AbsTask.main() and Trainer (stage 3 and stage 4 of the recipes).

    python -m espnet_speechlm_plugin.bin.speechlm_train --config tests/conf/stage1_tiny.yaml \
        --train_data_path_and_name_and_type dump/train/feats.scp,speech,kaldi_ark \
        --train_data_path_and_name_and_type dump/train/prompt,prompt,text \
        --train_data_path_and_name_and_type dump/train/text,text,text \
        --train_shape_file dump/train/speech_shape  (same three + shape for valid_) --output_dir exp/stage1

Every ESPnet training option works (``--help`` lists them); see docs/recipes.md ("The steps by hand").
"""

import warnings

import espnet2.tasks.abs_task as abs_task

from espnet_speechlm_plugin.tasks.resumable_trainer import safe_load_pretrained_model
from espnet_speechlm_plugin.tasks.speechlm import SpeechLMTask


def main(cmd=None):
    warnings.filterwarnings("ignore", message=".*torch.cuda.amp.*is deprecated.*", category=FutureWarning)
    # --init_param: ESPnet unpickles the file (weights_only=False); load tensors only, or refuse with the file name
    abs_task.load_pretrained_model = safe_load_pretrained_model
    SpeechLMTask.main(cmd=cmd)


if __name__ == "__main__":
    main()
