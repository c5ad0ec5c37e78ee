"""MCIF / IWSLT 2025 instruction-following XML: reference files, system output files, and our data dirs' link to them.

Where it sits: stage 6 (`scoring.report`) exports the hypotheses of a test set as one output file and, when the test
set came from MCIF references, scores that file with `scoring.official`; `bin/score.py --ref_xml ... --hyp_xml ...`
scores any output file against reference files. The formats are those the official code writes and reads
(hlt-mt/mcif: `dataset_build/testset_generator.py` writes references, `mcif.io.write_output` writes outputs,
`mcif.evaluation.read_reference`/`read_hypo` read them).

A reference file (one per track and language, `MCIF<version>.IF.<track>.<lang>.ref.xml`):

    <testset name="MCIF1.2">
      <task track="short" text_lang="de">
        <sample id="0,1,2" iid="TRANS_7" task="TRANS">     one talk: the ids of its audio segments
          <audio_path>a.wav,b.wav,c.wav</audio_path>
          <reference>Satz eins.\nSatz zwei.</reference>     one sentence per line
          <metadata><transcript>Sentence one.\nSentence two.</transcript></metadata>
        </sample>
        <sample id="3" iid="QA_7_1" task="QA" qa_type="A" qa_origin="Abstract"> ... </sample>

Tasks are ASR (en), TRANS (de/it/zh), QA and, in the long track, SUM; the IWSLT 2025 release named three of them SQA,
ST and SSUM (read here as QA, TRANS and SUM). Sample ids are reused across languages: segment 5 is id 5 in the en
file (transcription) and in the de file (translation).

An output file holds any number of tasks; a reader takes the first task with the track and language it wants:

    <?xml version='1.0' encoding='utf-8'?>
    <testset name="NAME" type="output">
      <task track="short" text_lang="de">
        <sample id="0">hypothesis text</sample>

Our data dirs: utterance ids map to sample ids through `mcif_id` (`utt sample_id`; without it the sample id is the
utterance id) and the output language of the utterance's prompt; (language, sample id) must be unique. `mcif_ref`
lists the reference files the test set came from, one path per line (relative paths are relative to the recipe
directory, as wav.scp's); stage 6 scores such a test set with the official evaluation too.
"""
from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from espnet_speechlm_plugin.data.kaldi import read_kaldi_text, write_atomic

TRACKS = ("short", "long")
MCIF_TASKS = ("ASR", "TRANS", "QA", "SUM")
TASK_ALIASES = {"SQA": "QA", "ST": "TRANS", "SSUM": "SUM"}  # the IWSLT 2025 release's names
# Characters XML 1.0 cannot hold: a hypothesis containing one would make the whole file unreadable.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


class McifError(ValueError):
    """A malformed or non-matching MCIF file, or a test set that does not fit it; the message says what to do."""


@dataclass
class ReferenceSample:
    """One reference sample: `sample_ids` are the output samples it covers (a talk's segments in the short track)."""

    iid: str
    task: str
    sample_ids: list[str]
    reference: Optional[str]
    metadata: dict[str, Optional[str]] = field(default_factory=dict)


def _root(path: Path) -> ET.Element:
    try:
        return ET.parse(path).getroot()
    except ET.ParseError as e:
        line, col = e.position
        raise McifError(f"{path} line {line}, column {col}: not well-formed XML ({e})") from None
    except OSError as e:
        raise McifError(f"{path}: cannot read ({e.strerror})") from None


def _task_key(task: ET.Element, path: Path) -> tuple[str, str]:
    try:
        return task.attrib["track"], task.attrib["text_lang"]
    except KeyError as e:
        raise McifError(f"{path}: a <task> without the {e.args[0]} attribute") from None


def tasks_in(path: Path) -> list[tuple[str, str]]:
    """The (track, language) of every <task> of a reference or output file, in file order."""
    return [_task_key(t, path) for t in _root(Path(path)).iter("task")]


def _find_task(root: ET.Element, path: Path, track: str, lang: str) -> ET.Element:
    found = []
    for task in root.iter("task"):
        key = _task_key(task, path)
        if key == (track, lang):
            return task  # the first one, as the official readers take
        found.append(key)
    raise McifError(f"{path}: no <task track=\"{track}\" text_lang=\"{lang}\">; the file has {found}")


def read_hypothesis(path: Path, track: str, lang: str) -> dict[str, str]:
    """Sample id -> text (stripped; "" for an empty sample) of the first output task with this track and language."""
    path = Path(path)
    task = _find_task(_root(path), path, track, lang)
    out = {}
    for sample in task.iter("sample"):
        if "id" not in sample.attrib:
            raise McifError(f"{path}: a <sample> without an id in task ({track}, {lang})")
        out[sample.attrib["id"]] = (sample.text or "").strip()
    return out


def read_reference(path: Path, track: str, lang: str, modality: Optional[str] = None
                   ) -> dict[str, dict[str, ReferenceSample]]:
    """MCIF task -> {iid: sample} of the first reference task with this track and language, in file order.

    With `modality` ("audio", "video", "text"), only samples that have a `<modality>_path` element (the official
    `--filter-modality`). Sample ids are the `id` attribute split at commas; metadata holds the texts of `<metadata>`
    and its children plus the qa_type/qa_origin attributes."""
    path = Path(path)
    task = _find_task(_root(path), path, track, lang)
    by_task: dict[str, dict[str, ReferenceSample]] = {}
    for sample in task.iter("sample"):
        if modality is not None and next(sample.iter(modality + "_path"), None) is None:
            continue
        missing = [a for a in ("id", "iid", "task") if a not in sample.attrib]
        if missing:
            raise McifError(f"{path}: a <sample> of task ({track}, {lang}) lacks the attribute(s) {missing} "
                            f"(attributes: {sample.attrib})")
        iid = sample.attrib["iid"]
        reference = next(sample.iter("reference"), None)
        if reference is None:
            raise McifError(f"{path}: sample iid={iid} has no <reference>")
        metadata: dict[str, Optional[str]] = {}
        for block in sample.iter("metadata"):
            for element in block.iter():
                metadata[element.tag] = element.text
        for name in ("qa_type", "qa_origin"):
            if name in sample.attrib:
                metadata[name] = sample.attrib[name]
        name = TASK_ALIASES.get(sample.attrib["task"], sample.attrib["task"])
        by_task.setdefault(name, {})[iid] = ReferenceSample(
            iid, name, sample.attrib["id"].split(","), reference.text, metadata)
    return by_task


# ------------------------------------------------------------------------------------------------- writing
def clean_text(text: str) -> str:
    """A hypothesis as an output file can hold it and the official reader returns it: characters XML cannot hold
    removed, leading/trailing whitespace stripped."""
    return _NOT_XML.sub("", text).strip()


def to_xml(tasks: list[tuple[str, str, list[tuple[str, str]]]], *, name: str = "output") -> str:
    """The XML text of an output file: `tasks` are (track, language, [(sample id, hypothesis), ...])."""
    root = ET.Element("testset", attrib={"name": name, "type": "output"})
    for track, lang, samples in tasks:
        if track not in TRACKS:
            raise McifError(f"unknown MCIF track '{track}' (expected one of {TRACKS})")
        task = ET.SubElement(root, "task", attrib={"track": track, "text_lang": lang})
        for sample_id, text in samples:
            ET.SubElement(task, "sample", attrib={"id": str(sample_id)}).text = clean_text(text)
    ET.indent(root)
    return "<?xml version='1.0' encoding='utf-8'?>\n" + ET.tostring(root, encoding="unicode") + "\n"


def write_xml(path: Path, tasks: list[tuple[str, str, list[tuple[str, str]]]], *, name: str = "output") -> None:
    """Write an output file atomically (see `to_xml`)."""
    write_atomic(Path(path), to_xml(tasks, name=name))


# -------------------------------------------------------------------------------------- our data dirs
def sample_ids(data_dir: Path, langs: dict[str, str]) -> dict[str, str]:
    """utt -> MCIF sample id for the utterances of `langs` (utt -> output language): from `data_dir/mcif_id` when
    present (every utterance must be in it), else the utterance id; (language, id) must be unique."""
    path = Path(data_dir) / "mcif_id"
    if path.is_file():
        ids = read_kaldi_text(path)
        missing = [u for u in langs if u not in ids]
        if missing:
            raise McifError(f"{path}: no MCIF sample id for {len(missing)} utterances, e.g. '{missing[0]}'")
        ids = {u: ids[u] for u in langs}
    else:
        ids = {u: u for u in langs}
    seen: dict[tuple[str, str], str] = {}
    for utt, sid in ids.items():
        key = (langs[utt], sid)
        if key in seen:
            raise McifError(f"{path}: utterances '{seen[key]}' and '{utt}' both have sample id '{sid}' with output "
                            f"language {langs[utt]}; a (language, sample id) pair names one output")
        seen[key] = utt
    return ids


def read_reference_list(data_dir: Path) -> list[Path]:
    """The reference files named by `data_dir/mcif_ref` ([] without that file)."""
    path = Path(data_dir) / "mcif_ref"
    if not path.is_file():
        return []
    refs = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            ref = Path(line.strip())
            if not ref.is_file():
                raise McifError(f"{path} line {lineno}: reference file '{ref}' not found (relative paths are "
                                f"relative to the directory the recipe runs in, {Path.cwd()})")
            refs.append(ref)
    if not refs:
        raise McifError(f"{path}: names no reference file")
    return refs


def export(hyps: dict[str, str], langs: dict[str, str], data_dir: Path, path: Path, *, track: str = "short",
           name: str = "output", required: Optional[dict[str, list[str]]] = None) -> int:
    """Write the hypotheses of a test set as one output file with a task per output language.

    `langs` maps every utterance to its output language; an utterance without a hypothesis is written as an empty
    sample. `required` (language -> sample ids, e.g. those a reference file needs) adds empty samples for ids no
    utterance has. Returns how many samples were written empty for want of a hypothesis or an utterance."""
    ids = sample_ids(data_dir, langs)
    by_lang: dict[str, list[tuple[str, str]]] = {}
    n_empty = 0
    for utt, lang in langs.items():
        if utt not in hyps:
            n_empty += 1
        by_lang.setdefault(lang, []).append((ids[utt], hyps.get(utt, "")))
    for lang, needed in (required or {}).items():
        have = {sid for sid, _ in by_lang.get(lang, [])}
        extra = [(sid, "") for sid in dict.fromkeys(needed) if sid not in have]
        if extra:
            by_lang.setdefault(lang, []).extend(extra)
            n_empty += len(extra)
    write_xml(path, [(track, lang, samples) for lang, samples in sorted(by_lang.items())], name=name)
    return n_empty


def import_hypotheses(paths: list[Path], data_dir: Path, langs: dict[str, str], *,
                      track: Optional[str] = None) -> dict[str, str]:
    """Hypotheses per utterance from output files: every task (of `track`, if given) whose language some utterance
    has is read (the first task per track and language of a file, as the official reader does) and its samples are
    mapped to utterances by (language, sample id)."""
    ids = sample_ids(data_dir, langs)
    to_utt = {(langs[u], sid): u for u, sid in ids.items()}
    how = "mcif_id" if (Path(data_dir) / "mcif_id").is_file() else "utterance ids (no mcif_id file)"
    hyps: dict[str, str] = {}
    origin: dict[str, Path] = {}
    for path in paths:
        path = Path(path)
        read = set()
        for t_track, t_lang in tasks_in(path):
            if (track is not None and t_track != track) or t_lang not in set(langs.values()) \
                    or (t_track, t_lang) in read:
                continue
            read.add((t_track, t_lang))
            for sid, text in read_hypothesis(path, t_track, t_lang).items():
                utt = to_utt.get((t_lang, sid))
                if utt is None:
                    raise McifError(f"{path}: sample '{sid}' of task ({t_track}, {t_lang}) is no utterance of "
                                    f"{data_dir} with output language {t_lang} (ids from {how})")
                if utt in hyps:
                    raise McifError(f"{path}: sample '{sid}' ({t_lang}, utterance '{utt}') was already read from "
                                    f"{origin[utt]}")
                hyps[utt], origin[utt] = text, path
    if not hyps:
        raise McifError(f"{', '.join(map(str, paths))}: no task of track {track or 'any'} in a language of "
                        f"{data_dir} ({sorted(set(langs.values()))})")
    return hyps


def reference_ids(refs: dict[str, dict[str, ReferenceSample]]) -> list[str]:
    """Every output sample id a reference task needs, in file order."""
    return list(dict.fromkeys(sid for samples in refs.values() for s in samples.values() for sid in s.sample_ids))

