"""The README stays short and true: ≤ 250 lines, its two commands are Makefile targets, its demo table holds the
numbers of the committed RESULTS.md, and every relative link of the README, docs/ and the recipe READMEs points at
a file that exists. Each recipe has a README.md and a committed RESULTS.md."""

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
PAGES = [README, *sorted((REPO / "docs").glob("*.md")), *sorted((REPO / "egs2").glob("*/s2t1/README.md")),
         *sorted((REPO / "egs2").glob("*/s2t1/RESULTS.md"))]


def test_readme_is_short_and_its_commands_are_make_targets():
    text = README.read_text(encoding="utf-8")
    assert len(text.splitlines()) <= 250
    makefile = (REPO / "Makefile").read_text(encoding="utf-8")
    for target in ("demo", "test"):
        assert f"make {target}    #" in text, target
        assert re.search(rf"^{target}:", makefile, re.M), target
    # no development jargon in the README
    for word in ("the seed", "issue #", " P1", " P5"):
        assert word not in text, word


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_relative_links_resolve(page):
    text = page.read_text(encoding="utf-8")
    text = re.sub(r"```.*?```", "", text, flags=re.S)  # links inside code blocks are not links
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+://", target) or target.startswith("#"):
            continue
        path = (page.parent / target.split("#")[0]).resolve()
        assert path.exists(), f"{page.relative_to(REPO)}: link to {target} ({path} does not exist)"


def _results_rows(path: Path) -> dict:
    """{(task, lang): {metric: value text}} from the first table of a RESULTS.md."""
    lines = path.read_text(encoding="utf-8").splitlines()
    head = next(i for i, line in enumerate(lines) if line.startswith("| task | lang | n |"))
    names = [c.strip() for c in lines[head].strip("|").split("|")]
    rows = {}
    for line in lines[head + 2:]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip("|").split("|")]
        rows[(cells[0], cells[1])] = dict(zip(names, cells))
    return rows


def test_readme_demo_table_is_the_committed_results():
    rows = _results_rows(REPO / "egs2" / "mini_espeak" / "s2t1" / "RESULTS.md")
    text = README.read_text(encoding="utf-8")
    table = {line.split("|")[1].strip(): line for line in text.splitlines() if line.startswith("| ")}

    def row(prefix):
        return next(v for k, v in table.items() if k.startswith(prefix))

    assert rows[("transcribe", "en")]["wer"] in row("transcribe (English audio)")
    translate = row("translate English audio")
    assert " / ".join(rows[("translate", lg)]["bleu"] for lg in ("de", "it", "zh")) in translate
    assert " / ".join(rows[("translate", lg)]["chrf"] for lg in ("de", "it", "zh")) in translate
    langs = ("en", "de", "it", "zh")
    assert " / ".join(rows[("answer", lg)]["exact_match"] for lg in langs) in row("answer a question")
    unanswerable = [rows[("answer", lg)]["unanswerable_acc"] for lg in langs]  # "0.407 (n=27)"
    assert " / ".join(u.split()[0] for u in unanswerable) in row("— of which unanswerable")
    assert " / ".join(u.split("n=")[1].rstrip(")") for u in unanswerable) in row("— of which unanswerable")
    other = row("transcribe German")
    assert " / ".join([rows[("transcribe", "de")]["wer"], rows[("transcribe", "it")]["wer"],
                       rows[("transcribe", "zh")]["cer"]]) in other


def test_every_recipe_has_readme_and_results():
    for recipe in sorted((REPO / "egs2").glob("*/s2t1/run.sh")):
        d = recipe.parent
        if d.parent.name == "TEMPLATE":
            continue
        assert (d / "README.md").exists() and (d / "RESULTS.md").exists(), d
