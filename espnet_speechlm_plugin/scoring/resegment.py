"""Re-segment a hypothesis to reference sentences exactly as the official evaluation's mwerSegmenter does.

Where it sits: before COMET, a hypothesis that covers several reference sentences (a talk: the joined outputs of its
audio segments, or one long-form output) is cut into one piece per reference sentence. The official MCIF / IWSLT
2025 evaluation does this with RWTH's `mwerSegmenter` binary (Matusov, Leusch, Bender and Ney, "Evaluating Machine
Translation Output with Automatic Sentence Segmentation", IWSLT 2005), which we cannot ship; `resegment` returns
what the official `MwerSegmenter(character_level)(prediction, reference_sentences)` returns.

How the official call works (read from mcif's `evaluation.py` and the binary's source, `Evaluator_unsegmentedWER.cc`
of the RWTH MWERalign package):
- zh is segmented by characters: the prediction and each reference get a space between every two characters, and
  the spaces are removed again from the output lines (`re.sub(r"(.)\\s", r"\\1", line)`);
- a prediction that is empty after `str.strip()` becomes "." (the binary crashes on an empty hypothesis);
- the binary splits text into tokens at ASCII whitespace; a token "#" in a reference line separates alternative
  references of that line;
- tokens are compared after lower-casing ASCII letters (its vocabulary lower-cases every word, whatever `-usecase`
  says; the option only keeps the output's case);
- it runs one Levenshtein table over the hypothesis (columns j) against the concatenated references with one extra
  row after each sentence (rows i). A sentence-end row copies the row above at no cost, which cuts the hypothesis
  after word j; substitutions, insertions and deletions cost 1. Among equal costs it keeps a deletion (a reference
  word left out), then an insertion (a hypothesis word left over), then the diagonal. Its first column counts every
  row, sentence ends included, as a deleted word, so a path cannot leave the first sentence without a hypothesis
  word at no extra cost: the first hypothesis word always lands in the first piece;
- each output line is the words of one piece, each followed by a space; the caller strips the line.
So a hypothesis word inserted at a sentence boundary goes with the earlier sentence, and the pieces have the least
summed edit distance among the cuts that give the first sentence at least one word.

Where the binary's behaviour is undefined (it reads past its tables), we choose: an empty reference sentence (or one
holding only "#") gets its own sentence end and an empty piece; a "#" between two words of a reference sentence
(alternative references, which MCIF references never hold) is dropped like a leading or trailing one.
"""
from __future__ import annotations

import re
import string

import numpy as np

_ASCII_SPACE = re.compile(r"[ \t\n\v\f\r]+")  # what C++'s `istream >> std::string` splits at
_ASCII_LOWER = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)
_JOINED_CHARACTER = re.compile(r"(.)\s")  # the official post-processing of a character-level output line
ALTERNATIVE_SEPARATOR = "#"
CHARACTER_LEVEL_LANGS = {"zh"}  # languages the official evaluation re-segments by characters

# What the backtrace follows out of a cell.
_DELETION, _INSERTION, _DIAGONAL, _SENTENCE_END = 0, 1, 2, 3


def _tokens(text: str) -> list[str]:
    return [t for t in _ASCII_SPACE.split(text) if t]


def hypothesis_tokens(prediction: str, *, character_level: bool = False) -> list[str]:
    """The tokens the binary reads from the official hypothesis file ("." for an empty prediction)."""
    if character_level:
        prediction = " ".join(prediction)
    if prediction.strip() == "":
        prediction = "."
    return _tokens(prediction)


def reference_tokens(reference: str, *, character_level: bool = False) -> list[str]:
    """The tokens of one reference line, without the alternative-reference separators."""
    if character_level:
        reference = " ".join(reference)
    return [t for t in _tokens(reference) if t != ALTERNATIVE_SEPARATOR]


def _segment_ends(hyp: list[int], ref_rows: np.ndarray, is_end: np.ndarray) -> list[int]:
    """The hypothesis position (0..len(hyp)) at which each sentence ends, following the binary's table and ties.

    `ref_rows[i - 1]` is the vocabulary id of row i (-1 on sentence-end rows, where `is_end[i - 1]`).
    """
    n_rows, n_cols = len(ref_rows), len(hyp)
    # Within a column, a word row takes min(row above + 1, its best move from the previous column) and a sentence-end
    # row copies the row above: C[i] = P[i] + min over k <= i of (X[k] - P[k]) with P the running count of word rows
    # and X[k] the best move into row k from the previous column (infinite on sentence-end rows).
    steps = np.concatenate([[0], np.cumsum(~is_end)]).astype(np.int64)
    big = np.int64(1) << 40
    prev = np.arange(n_rows + 1, dtype=np.int64)  # column 0: the binary's initial column counts every row
    moves = np.empty((n_cols + 1, n_rows + 1), dtype=np.uint8)
    # Column 0 is left upwards; a sentence end there (only after an empty first sentence) ends its piece at 0.
    moves[0, 0] = _DELETION
    moves[0, 1:] = np.where(is_end, _SENTENCE_END, _DELETION)
    for j in range(1, n_cols + 1):
        mismatch = ref_rows != hyp[j - 1]
        insertion = prev[1:] + 1
        diagonal = prev[:-1] + mismatch
        best_in = np.where(is_end, big, np.minimum(insertion, diagonal))
        entry = np.concatenate([[j], best_in])
        cost = np.minimum.accumulate(entry - steps) + steps
        deletion = cost[:-1] + 1
        move = np.where(deletion == cost[1:], _DELETION, np.where(insertion == cost[1:], _INSERTION, _DIAGONAL))
        moves[j, 1:] = np.where(is_end, _SENTENCE_END, move)
        moves[j, 0] = _INSERTION
        prev = cost
    ends: list[int] = []
    i, j = n_rows, n_cols
    while i > 0:
        move = moves[j, i]
        if move == _SENTENCE_END:
            ends.append(j)
            i -= 1
        elif move == _DELETION or j == 0:
            i -= 1
        elif move == _INSERTION:
            j -= 1
        else:
            i, j = i - 1, j - 1
    return ends[::-1]


def segment_tokens(hyp_tokens: list[str], ref_sentences: list[list[str]]) -> list[list[str]]:
    """Cut `hyp_tokens` into len(ref_sentences) pieces as the binary does (see the module docstring)."""
    if not ref_sentences:
        raise ValueError("re-segmentation needs at least one reference sentence")
    vocab: dict[str, int] = {}
    hyp = [vocab.setdefault(t.translate(_ASCII_LOWER), len(vocab)) for t in hyp_tokens]
    rows: list[int] = []
    for sentence in ref_sentences:
        rows += [vocab.setdefault(t.translate(_ASCII_LOWER), len(vocab)) for t in sentence] + [-1]
    ref_rows = np.asarray(rows, dtype=np.int64)
    ends = _segment_ends(hyp, ref_rows, ref_rows < 0)
    starts = [0] + ends[:-1]
    return [hyp_tokens[a:b] for a, b in zip(starts, ends)]


def _output_line(tokens: list[str], character_level: bool) -> str:
    # The binary writes each token followed by a space, then a newline; the official code reads the line back.
    line = "".join(t + " " for t in tokens) + "\n"
    if character_level:
        line = _JOINED_CHARACTER.sub(r"\1", line)
    return line.strip()


def resegment(hypothesis: str, references: list[str], *, character_level: bool = False) -> list[str]:
    """Cut `hypothesis` into len(references) pieces: what the official `MwerSegmenter` returns for them.

    `character_level=True` is the official setting for zh (the pieces are joined without spaces).
    """
    pieces = segment_tokens(hypothesis_tokens(hypothesis, character_level=character_level),
                            [reference_tokens(r, character_level=character_level) for r in references])
    return [_output_line(p, character_level) for p in pieces]


def summed_edit_distance(pieces: list[str], references: list[str], *, character_level: bool = False) -> int:
    """Sum over pieces of the token edit distance to their reference, compared as the binary compares tokens."""
    total = 0
    for piece, ref in zip(pieces, references):
        vocab: dict[str, int] = {}
        split = (lambda s: [c for c in s if not c.isspace()]) if character_level else _tokens
        p = [vocab.setdefault(t.translate(_ASCII_LOWER), len(vocab)) for t in split(piece)]
        r = [vocab.setdefault(t.translate(_ASCII_LOWER), len(vocab)) for t in reference_tokens(
            ref, character_level=character_level)]
        row = np.arange(len(r) + 1)
        for k, tok in enumerate(p, 1):
            new = np.empty_like(row)
            new[0] = k
            for m in range(1, len(r) + 1):
                new[m] = min(row[m] + 1, new[m - 1] + 1, row[m - 1] + (r[m - 1] != tok))
            row = new
        total += int(row[-1])
    return total
