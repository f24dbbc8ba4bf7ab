"""The leaderboard website (``python -m i2m2bench site``): built from the committed result records,
every page's links resolve inside the site, nothing is fetched from the network, tables have
captions and header cells, the numbers on a board page are the records' numbers, and a unit
card's history becomes the unit page's curve. The real-browser checks are in
tests/test_site_browser.py."""
import html
import json
import statistics
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from i2m2bench.cli import main
from i2m2bench.harness.publish import read_board_rows
from i2m2bench.harness.site import build_site, card_path, line_chart
from i2m2bench.reporting.rows import latest_units

ROOT = Path(__file__).resolve().parents[1]
LB = ROOT / "leaderboards"


class _Page(HTMLParser):
    def __init__(self):
        super().__init__()
        self.refs, self.tables, self.captions, self.th, self.ids = [], 0, 0, 0, set()
        self.stack = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        for k in ("href", "src"):
            if a.get(k):
                self.refs.append(a[k])
        if "id" in a:
            self.ids.add(a["id"])
        self.tables += tag == "table"
        self.captions += tag == "caption"
        self.th += tag == "th"


def parse(path: Path) -> _Page:
    p = _Page()
    p.feed(path.read_text())
    return p


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    out = tmp_path_factory.mktemp("site")
    build_site(LB, out)
    return out


def test_every_link_resolves_and_nothing_comes_from_the_network(site):
    pages = sorted(site.rglob("*.html"))
    assert len(pages) > 100
    for page in pages:
        parsed = parse(page)
        for ref in parsed.refs:
            parts = urlsplit(ref)
            if ref == "data:,":  # the empty favicon: no request at all
                continue
            assert not parts.scheme and not parts.netloc, f"{page}: {ref} leaves the site"
            target = (page.parent / parts.path).resolve() if parts.path else page
            assert target.is_file(), f"{page.relative_to(site)}: broken link {ref}"
            if parts.fragment:
                assert parts.fragment in parse(target).ids, f"{page}: no anchor {ref}"


def test_every_table_has_a_caption_and_header_cells(site):
    for page in site.rglob("*.html"):
        parsed = parse(page)
        assert parsed.captions == parsed.tables, page
        assert parsed.th >= parsed.tables, page


def test_the_index_lists_every_board_with_its_source(site):
    index = (site / "index.html").read_text()
    for results in (LB / "results").glob("*.jsonl"):
        assert f'href="boards/{results.stem}.html"' in index
    assert index.count('<span class="badge">EMBEDDED</span>') == len(
        [r for r in (LB / "results").glob("*.jsonl") if "embedded" in r.stem])


def test_a_board_page_shows_the_records_means_and_marks(site):
    board = "avmnist-embedded-avdigits"
    rows = read_board_rows(LB / "results" / f"{board}.jsonl")
    page = (site / "boards" / f"{board}.html").read_text()
    latest = latest_units(rows)  # the file keeps earlier configurations' rows too
    for method in ("i2m2_lf", "late_fusion", "image_only"):
        vals = [r["value"] for r in latest[method] if r["protocol"] == "test"]
        mean = 100 * statistics.fmean(vals)
        assert f'data-sort="{mean!r}"' in page, method  # the sort key is the records' mean
        assert f"{mean:.2f} ± " in page  # and the cell shows it, as the Markdown board does
    md = (LB / f"{board}.md").read_text()
    tables = md.split("## Across machines")[0]  # (that section marks the replicas' columns too)
    cells = [c.strip() for line in tables.splitlines() if line.startswith("| ")
             for c in line.split("|")]
    assert sum(c.startswith("**") for c in cells) == page.count('class="best"')  # the same marks
    assert sum(c.startswith("*≈ ") for c in cells) == page.count('class="tied"') > 0
    areas = md.split("### Robustness curves: areas")[1].split("####")[0]
    area_cells = [c.strip() for line in areas.splitlines() if line.startswith("| `")
                  for c in line.split("|")[2:-1]]
    assert len(area_cells) > 20 and all(f">{c}<" in page for c in area_cells)  # RR, ER as on the .md
    settings = md.split("## Settings and provenance")[1].split("\n## ")[0]
    schedules = {line.split("|")[3].strip() for line in settings.splitlines() if line.startswith("| `")}
    assert schedules and all(f">{html.escape(x)}<" in page for x in schedules)
    assert page.count("<svg") == 2  # the two robustness curves of this board, as SVG
    assert "Across machines" in page  # replicas in leaderboards/machines/


def test_method_pages_cover_every_board_of_the_method(site):
    page = (site / "methods" / "late_fusion.html").read_text()
    boards = {r.stem for r in (LB / "results").glob("*.jsonl") if r.stem != "dependency_spectrum"
              and any(x["method"] == "late_fusion" for x in read_board_rows(r))}
    assert len(boards) >= 4
    for b in boards:
        assert f"../boards/{b}.html" in page, b


def test_a_unit_card_becomes_the_history_curve_and_config(tmp_path):
    lb = tmp_path / "lb"
    (lb / "results").mkdir(parents=True)
    src = LB / "results" / "nlvr2-embedded-nlvr2.jsonl"
    (lb / "results" / src.name).write_bytes(src.read_bytes())
    rows = read_board_rows(lb / "results" / src.name)
    r = rows[0]
    key = (r.get("setting"), r["method"], r["unit_hash"], r["seed"])
    card = card_path(lb, "nlvr2-embedded-nlvr2", key)
    card.parent.mkdir(parents=True)
    card.write_text(json.dumps({"operative_config": "train.lr = 0.5\n",
                                "history": [{"epoch": 0, "train_loss": 2.0, "val": 0.25},
                                            {"epoch": 1, "train_loss": 1.0, "val": 0.75}]}))
    build_site(lb, tmp_path / "site")
    unit = next((tmp_path / "site" / "units").rglob(f"{r['method']}-{r['unit_hash']}-seed{r['seed']}.html"))
    text = unit.read_text()
    assert "train.lr = 0.5" in text
    assert 'data-label="validation at 1: 0.75"' in text and 'data-label="training loss at 0: 2"' in text


def test_line_chart_labels_every_line_and_point():
    svg = line_chart("t", "x", "y", {"a": [(0, 1.0), (1, 2.0)], "b": [(0, 3.0), (1, float("nan"))]})
    assert svg.count("<circle") == 3  # nan is left out
    assert ">a</text>" in svg and ">b</text>" in svg  # lines are named, not only coloured
    assert 'data-label="b at 0: 3.00"' in svg


def test_the_cli_builds_and_names_a_missing_folder(tmp_path, capsys):
    assert main(["site", "--out", str(tmp_path / "s"), "--leaderboard-dir", str(tmp_path)]) == 2
    assert "no results/ folder here" in capsys.readouterr().err


def test_a_run_publishes_unit_cards_that_the_site_shows(tmp_path):
    code = main(["run", "--gin", str(ROOT / "gin" / "toy_smoke.gin"), "--methods", "a_only",
                 "--seeds", "0", "--out", str(tmp_path / "runs"), "--leaderboard-dir",
                 str(tmp_path / "lb"), "--no-progress", "--allow-dirty"])
    assert code == 0
    card, = (tmp_path / "lb" / "units").rglob("a_only-*-seed0.json")
    data = json.loads(card.read_text())
    folder, = (tmp_path / "runs").rglob("a_only/*/seed0")
    assert data["operative_config"] == (folder / "operative_config.gin").read_text()
    assert data["history"] == json.loads((folder / "unit.json").read_text())["history"] != []
    build_site(tmp_path / "lb", tmp_path / "site")
    page, = (tmp_path / "site" / "units").rglob("a_only-*-seed0.html")
    text = page.read_text()
    assert "Operative gin config" in text and "Training history: validation per epoch" in text
