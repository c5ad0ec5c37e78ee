"""The prompt vocabulary (espnet_speechlm_plugin/vocab.py): the one parser of a prompt line, and every place that
reads prompt lines (training's preprocessing, data validation, the corpus readers, scoring, the task-confusion
diagnostic, the shell recipes' language list) agreeing with it."""
import subprocess
import sys
from pathlib import Path

import pytest
import soundfile as sf

from espnet_speechlm_plugin import vocab
from espnet_speechlm_plugin.vocab import Prompt, PromptError, format_prompt, parse_prompt, prompt_problems

REPO = Path(__file__).resolve().parents[1]
LANGS = ("en", "de", "it", "zh")


def test_parse_and_format_round_trip():
    assert parse_prompt("en transcribe", LANGS) == Prompt("en", "transcribe", "")
    p = parse_prompt("  de answer   Welche Farbe hat  die Katze? ", LANGS)
    assert p == Prompt("de", "answer", "Welche Farbe hat  die Katze?")
    assert str(p) == format_prompt("de", "answer", "Welche Farbe hat die Katze?") == \
        "de answer Welche Farbe hat die Katze?"
    assert parse_prompt("fr translate") == Prompt("fr", "translate")  # no list: any language code
    assert parse_prompt("zh-CN transcribe").lang == "zh-CN"


@pytest.mark.parametrize("value, languages, kind, message", [
    ("en", LANGS, "short", "prompt line 1: the prompt must be 'lang task [question…]'"),
    ("en summarise", LANGS, "task", "prompt line 1: unknown task 'summarise' (tasks: transcribe, translate, answer)"),
    ("fr translate", LANGS, "language", "prompt line 1: unknown language 'fr' (languages: en, de, it, zh)"),
    ("French translate", None, "language", "prompt line 1: 'French' is not a language code"),
    ("en answer", LANGS, "question", "prompt line 1: task 'answer' needs a question after it"),
])
def test_errors_name_the_place_and_the_problem(value, languages, kind, message):
    with pytest.raises(PromptError) as err:
        parse_prompt(value, languages, "prompt line 1")
    assert err.value.kind == kind and str(err.value).startswith(message)


def test_problems_lists_everything_wrong():
    prompt, problems = prompt_problems("fr answer", LANGS)
    assert prompt == Prompt("fr", "answer") and [k for k, _ in problems] == ["language", "question"]
    assert prompt_problems("en transcribe", LANGS) == (Prompt("en", "transcribe"), [])


def test_unanswerable_strings_are_extended_not_overwritten():
    added = "xx" not in vocab.UNANSWERABLE
    try:
        vocab.add_unanswerable("xx", "  No  answer. ")
        assert vocab.unanswerable("xx") == "No answer."
        vocab.add_unanswerable("xx", "No answer.")  # the same again: fine
        with pytest.raises(ValueError, match="'xx'.*differs from the one already used, 'No answer.'"):
            vocab.add_unanswerable("xx", "Keine.")
        from espnet_speechlm_plugin.scoring.metrics import is_unanswerable

        assert is_unanswerable("no answer") and is_unanswerable("Not answerable.")  # scoring sees the new one
    finally:
        if added:
            vocab.UNANSWERABLE.pop("xx", None)
    with pytest.raises(KeyError, match="no unanswerable answer for language 'xx'.*add_unanswerable"):
        vocab.unanswerable("xx")
    with pytest.raises(ValueError, match="not a language code"):
        vocab.add_unanswerable("French", "Pas de réponse.")


def test_special_tokens_follow_the_vocabulary():
    assert vocab.special_tokens(["en", "fr"]) == ["<|en|>", "<|fr|>", "<|transcribe|>", "<|translate|>", "<|answer|>"]


def test_every_reader_of_prompt_lines_gives_the_parsers_message(tmp_path):
    """The same bad line, read by data validation, training's check, the scoring reader and the corpus readers'
    writer, is reported with the parser's words."""
    from espnet_speechlm_plugin.corpora.common import CorpusError, Utt, write_data_dir
    from espnet_speechlm_plugin.data.validate import Line, Report, check_prompt
    from espnet_speechlm_plugin.scoring.report import ScoringError, read_prompts

    expected = "unknown task 'summarise' (tasks: transcribe, translate, answer)"
    (tmp_path / "prompt").write_text("u1 en summarise\n", encoding="utf-8")
    report = Report("data")
    check_prompt("prompt", {"u1": Line(1, "u1", "en summarise")}, LANGS, report)
    assert len(report.errors) == 1 and expected in report.errors[0]
    with pytest.raises(PromptError, match=expected.replace("(", r"\(").replace(")", r"\)")):
        vocab.validate_prompt_file(str(tmp_path / "prompt"), LANGS)
    with pytest.raises(ScoringError) as err:
        read_prompts(tmp_path / "prompt")
    assert expected in str(err.value)
    wav = tmp_path / "a.wav"
    sf.write(wav, [0.0] * 1600, 16000)
    with pytest.raises(CorpusError) as err:
        write_data_dir(tmp_path / "data", [Utt("spk-1", "spk", str(wav), "x", "en", "summarise")], {"v": 1})
    assert expected in str(err.value)


def test_diagnostic_reads_prompts_with_the_parser():
    from espnet_speechlm_plugin.scoring import diagnostic

    assert diagnostic.asked_of("de answer Welche Farbe?") == ("answer", "de", "Welche Farbe?")
    with pytest.raises(PromptError, match="unknown task 'summarise'"):
        diagnostic.asked_of("de summarise")


def test_recipes_get_a_configs_languages_from_python(tmp_path):
    config = tmp_path / "stage2.yaml"
    config.write_text("languages: [en, fr]\nbatch_size: 2\n", encoding="utf-8")
    (tmp_path / "plain.yaml").write_text("batch_size: 2\n", encoding="utf-8")
    run = [sys.executable, "-m", "espnet_speechlm_plugin.vocab"]
    assert subprocess.run([*run, "languages", str(config)], capture_output=True, text=True).stdout == "en fr\n"
    out = subprocess.run([*run, "languages", str(tmp_path / "plain.yaml")], capture_output=True, text=True).stdout
    assert out.split() == list(vocab.DEFAULT_LANGUAGES)
    speechlm_sh = (REPO / "egs2/TEMPLATE/s2t1/speechlm.sh").read_text(encoding="utf-8")
    assert "-m espnet_speechlm_plugin.vocab languages" in speechlm_sh and "en de it zh" not in speechlm_sh
