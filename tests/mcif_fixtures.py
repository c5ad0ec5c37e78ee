"""A small MCIF-format test set written for the scoring tests: short-track reference files for en, de and zh and one
system output file holding every task, laid out as the official code writes them (hlt-mt/mcif
`dataset_build/testset_generator.py` for references, `mcif.io.write_output` for outputs).

Two talks: talk 1 is audio segments 0, 1, 2 and talk 2 is segments 3, 4; questions 5 (about talk 1) and 6 (talk 2,
not answerable). The same sample ids appear in every language: segment 0 is "transcribe" in the en file and
"translate" in the de and zh files. The English reference holds the four words whisper-normalizer 0.1.15 expands and
0.0.10 does not (kinda, sorta, dunno, cause), and "archaeology", whose spelling 0.1.15 maps wrongly.
"""
from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

TALKS = {"1": ["0", "1", "2"], "2": ["3", "4"]}
QUESTIONS = {"5": ("1", "A", "Abstract"), "6": ("2", "NA", "General")}

ASR_REFS = {"1": "Hello, everyone! I kinda like archaeology. It's 20 percent fun.",
            "2": "'Cause we dunno what sorta thing it is."}
SOURCE_LINES = {"1": ["Hello, everyone!", "I kinda like archaeology.", "It's 20 percent fun."],
                "2": ["'Cause we dunno", "what sorta thing it is."]}
TRANS_REFS = {
    "de": {"1": ["Hallo zusammen!", "Ich mag Archäologie.", "Es macht 20 Prozent Spaß."],
           "2": ["Weil wir es nicht wissen,", "was für ein Ding das ist."]},
    "zh": {"1": ["大家好！", "我喜欢考古学。", "这有百分之二十的乐趣。"],
           "2": ["因为我们不知道", "这是什么东西。"]},
}
QA_REFS = {
    "en": {"5": ("What does the speaker like?", "Archaeology."), "6": ("Who is the speaker?", "Not answerable.")},
    "de": {"5": ("Was mag der Sprecher?", "Archäologie."), "6": ("Wer spricht?", "Nicht zu beantworten.")},
    "zh": {"5": ("讲者喜欢什么？", "考古学。"), "6": ("讲者是谁？", "无法回答。")},
}

# The system's outputs per language and sample id.
OUTPUTS = {
    "en": {"0": "Hello everyone.", "1": "I kind of like archeology", "2": "it is 20% fun",
           "3": "because we do not know", "4": "what sort of thing it is", "5": "archaeology",
           "6": "Not answerable."},
    # talk 1's sentence 2 starts in segment 0; talk 2 produced nothing (empty outputs)
    "de": {"0": "Hallo zusammen! Ich", "1": "mag Archäologie.", "2": "Es macht Spaß.", "3": "", "4": "",
           "5": "Archäologie", "6": "Nicht zu beantworten."},
    # a Chinese word (喜欢) is cut between segments 0 and 1
    "zh": {"0": "大家好！我喜", "1": "欢考古学。", "2": "这有百分之二十的乐趣。", "3": "因为我们不知道",
           "4": "这是什么东西", "5": "考古学", "6": "无法回答"},
}


def _sample(task_el: ET.Element, ids: list[str], iid: str, task: str, reference: str,
            transcript: str | None = None, qa: tuple[str, str] | None = None) -> None:
    attrib = {"id": ",".join(ids), "iid": iid, "task": task}
    if qa:
        attrib.update(qa_type=qa[0], qa_origin=qa[1])
    sample = ET.SubElement(task_el, "sample", attrib=attrib)
    ET.SubElement(sample, "audio_path").text = ",".join(f"seg{i}.wav" for i in ids)
    ET.SubElement(sample, "reference").text = reference
    if transcript is not None:
        ET.SubElement(ET.SubElement(sample, "metadata"), "transcript").text = transcript


def write_reference(path: Path, lang: str, track: str = "short") -> Path:
    """The reference file of one language, as MCIF<version>.IF.<track>.<lang>.ref.xml."""
    root = ET.Element("testset", attrib={"name": "MCIF-test"})
    task = ET.SubElement(root, "task", attrib={"track": track, "text_lang": lang})
    for talk, ids in TALKS.items():
        if lang == "en":
            _sample(task, ids, f"ASR_{talk}", "ASR", ASR_REFS[talk])
        else:
            _sample(task, ids, f"TRANS_{talk}", "TRANS", "\n".join(TRANS_REFS[lang][talk]),
                    transcript="\n".join(SOURCE_LINES[talk]))
    for qid, (talk, qa_type, origin) in QUESTIONS.items():
        _sample(task, [qid], f"QA_{talk}_{qid}", "QA", QA_REFS[lang][qid][1], qa=(qa_type, origin))
    tree = ET.ElementTree(root)
    ET.indent(tree)
    path.parent.mkdir(parents=True, exist_ok=True)
    tree.write(path, encoding="utf-8", xml_declaration=True)
    return path


def write_output(path: Path, outputs: dict[str, dict[str, str]] = OUTPUTS) -> Path:
    """One output file with a task per language, a long-track task and a second en task (which readers skip)."""
    root = ET.Element("testset", attrib={"name": "system", "type": "output"})
    tasks = [("long", "en", {"0": "long-track output"})] + [("short", lang, outs) for lang, outs in outputs.items()]
    tasks.append(("short", "en", {sid: "a later duplicate task" for sid in outputs["en"]}))
    for track, lang, outs in tasks:
        task = ET.SubElement(root, "task", attrib={"track": track, "text_lang": lang})
        for sid, text in outs.items():
            ET.SubElement(task, "sample", attrib={"id": sid}).text = text
    tree = ET.ElementTree(root)
    ET.indent(tree)
    path.parent.mkdir(parents=True, exist_ok=True)
    tree.write(path, encoding="utf-8", xml_declaration=True)
    return path


def write_data_dir(data_dir: Path, ref_files: list[Path]) -> Path:
    """Our data dir of the same test set: one utterance per (language, sample id), `mcif_id` reusing the ids across
    languages, `mcif_ref` naming the reference files. Each utterance's own reference (text) is its expected output
    for the segments and the answer for the questions."""
    lines = {name: [] for name in ("text", "prompt", "transcript", "mcif_id", "utt2spk")}
    for lang in ("en", "de", "zh"):
        for talk, ids in TALKS.items():
            for k, sid in enumerate(ids):
                utt = f"{lang}-{sid}"
                task = "transcribe" if lang == "en" else "translate"
                source = SOURCE_LINES[talk][min(k, len(SOURCE_LINES[talk]) - 1)]
                lines["prompt"].append(f"{utt} {lang} {task}")
                lines["text"].append(f"{utt} {source if lang == 'en' else OUTPUTS[lang][sid] or source}")
                lines["transcript"].append(f"{utt} {source}")
                lines["mcif_id"].append(f"{utt} {sid}")
                lines["utt2spk"].append(f"{utt} {utt}")
        for qid in QUESTIONS:
            utt = f"{lang}-{qid}"
            question, answer = QA_REFS[lang][qid]
            lines["prompt"].append(f"{utt} {lang} answer {question}")
            lines["text"].append(f"{utt} {answer}")
            lines["transcript"].append(f"{utt} {ASR_REFS[QUESTIONS[qid][0]]}")
            lines["mcif_id"].append(f"{utt} {qid}")
            lines["utt2spk"].append(f"{utt} {utt}")
    data_dir.mkdir(parents=True, exist_ok=True)
    for name, rows in lines.items():
        (data_dir / name).write_text("".join(r + "\n" for r in sorted(rows)), encoding="utf-8")
    (data_dir / "mcif_ref").write_text("".join(f"{p}\n" for p in ref_files), encoding="utf-8")
    return data_dir


def decode_outputs(outputs: dict[str, dict[str, str]] = OUTPUTS) -> list[str]:
    """Stage 5's `text` lines for the data dir of `write_data_dir`."""
    return sorted(f"{lang}-{sid} {text}".rstrip() for lang, outs in outputs.items() for sid, text in outs.items())
