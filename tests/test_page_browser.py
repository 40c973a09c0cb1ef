"""The leaderboard page in headless Chromium: no console errors, every image loads, columns sort,
filters hide the rows they should, an entry's detail opens, and the main views fit 1280 px.

Marked ``browser``; skipped only when no Chromium (with its driver) is found. CI installs
Debian's ``chromium`` and ``chromium-driver`` (``.ci/run``), so these run there."""

from __future__ import annotations

import pytest

from tests._browser import WIDTH, chromium, console_errors
from tests._pages import write_board

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def browser():
    driver = chromium()
    if driver is None:
        pytest.skip("no Chromium with chromedriver found (Debian: apt-get install chromium chromium-driver)")
    yield driver
    driver.quit()


@pytest.fixture
def page(browser, tmp_path):
    browser.get(write_board(tmp_path).as_uri())
    console_errors(browser)  # start each test with an empty log
    return browser


def _column(driver, section: str, column: str) -> list[str]:
    """The visible text of ``column`` in every shown row of the first table of ``section``."""
    return driver.execute_script(
        """
        const table = document.querySelector(`#${arguments[0]} table.board`);
        const col = Array.from(table.tHead.rows[0].cells).findIndex(th => th.textContent === arguments[1]);
        return Array.from(table.tBodies).filter(b => !b.hidden).map(b => b.rows[0].cells[col].textContent);
        """,
        section,
        column,
    )


def _click_header(driver, section: str, column: str) -> None:
    for th in driver.find_elements("css selector", f"#{section} table.board thead th"):
        if th.text.strip().rstrip("▲▼ ").strip() == column:
            th.click()
            return
    raise AssertionError(f"no column {column!r} in #{section}")


def _fits(driver) -> bool:
    return driver.execute_script("return document.documentElement.scrollWidth <= window.innerWidth")


def test_the_page_loads_without_console_errors_and_every_image_loads(browser, tmp_path):
    browser.get(write_board(tmp_path).as_uri())
    assert console_errors(browser) == []
    images = browser.execute_script(
        "return Array.from(document.images).map(i => [i.complete, i.naturalWidth, i.getAttribute('title')])"
    )
    assert len(images) == len(list(tmp_path.glob("*.png"))) >= 4
    assert all(complete and width > 0 for complete, width, _ in images), images
    assert browser.execute_script("return window.innerWidth") == WIDTH and _fits(browser)


def test_clicking_a_header_sorts_the_rows_both_ways(page):
    before = _column(page, "entries", "craft s")
    _click_header(page, "entries", "craft s")
    up = [float(v) for v in _column(page, "entries", "craft s")]
    assert up == sorted(up) and up != [float(v) for v in before]
    _click_header(page, "entries", "craft s")
    down = [float(v) for v in _column(page, "entries", "craft s")]
    assert down == sorted(up, reverse=True)
    _click_header(page, "entries", "attack")  # text columns sort as text
    attacks = _column(page, "entries", "attack")
    assert attacks == sorted(attacks)
    assert console_errors(page) == []


def test_a_filter_hides_exactly_the_rows_it_should(page):
    from selenium.webdriver.support.ui import Select

    Select(page.find_element("css selector", 'select[data-filter="recipe"]')).select_by_value("adam")
    settings = _column(page, "entries", "setting")
    assert len(settings) == 2 and all(" · adam · " in s for s in settings)
    assert page.find_element("id", "shown").text == "2 of 10 entries shown"
    # every view obeys it: the Table-4 view keeps only adam rows, plots of other settings hide
    assert [s.split(" · ") for s in _column(page, "pairs", "setting")] == [["digits", "adam"]]
    hidden = page.execute_script(
        "return Array.from(document.querySelectorAll('figure')).filter(f => f.hidden).map(f => f.dataset.fDataset)"
    )
    assert hidden == []  # no plot is per recipe here; dataset plots stay
    Select(page.find_element("css selector", 'select[data-filter="dataset"]')).select_by_value("cifar10")
    assert _column(page, "entries", "setting") == []  # no adam entry on cifar10
    assert page.find_element("css selector", "#entries p.empty").is_displayed()
    shown_figs = page.execute_script(
        "return Array.from(document.querySelectorAll('figure')).filter(f => !f.hidden).map(f => f.dataset.fDataset || '')"
    )
    assert "digits" not in shown_figs and "cifar10" in shown_figs
    Select(page.find_element("css selector", 'select[data-filter="recipe"]')).select_by_value("")
    Select(page.find_element("css selector", 'select[data-filter="dataset"]')).select_by_value("")
    assert page.find_element("id", "shown").text == "10 of 10 entries shown"
    assert console_errors(page) == []


def test_an_entry_detail_opens_and_closes(page):
    body = page.find_element("css selector", "#threat-targeted tbody.row")
    detail = body.find_element("css selector", "tr.detail")
    assert not detail.is_displayed()
    body.find_element("css selector", "button.toggle").click()
    assert detail.is_displayed()
    text = detail.text
    assert "craft seed" in text and "victim seed" in text and "adv. margin" in text  # trials with their seeds
    assert "0" * 64 in text and "timings per phase" in text.lower() and "content sha256" in text
    assert _fits(page)  # an open detail wraps within the window
    body.find_element("css selector", "button.toggle").click()
    assert not detail.is_displayed()
    assert console_errors(page) == []


_OVERLAPS = """
const body = arguments[0];
const boxes = Array.from(body.querySelectorAll(".dgrid > div"));
const r = el => el.getBoundingClientRect();
const out = [];
// every table, figure and pre stays inside its own box of the grid ...
for (const box of boxes) {
  const b = r(box);
  for (const el of box.querySelectorAll("table, pre")) {
    const e = r(el);
    if (e.right > b.right + 0.5 || e.left < b.left - 0.5) out.push(`${box.querySelector("h4").textContent}: ${el.tagName} ${e.left}-${e.right} outside ${b.left}-${b.right}`);
  }
}
// ... and no two boxes share any area
for (let i = 0; i < boxes.length; i++) for (let j = i + 1; j < boxes.length; j++) {
  const a = r(boxes[i]), c = r(boxes[j]);
  const w = Math.min(a.right, c.right) - Math.max(a.left, c.left), h = Math.min(a.bottom, c.bottom) - Math.max(a.top, c.top);
  if (w > 0.5 && h > 0.5) out.push(`${boxes[i].querySelector("h4").textContent} overlaps ${boxes[j].querySelector("h4").textContent}`);
}
return out;
"""


@pytest.mark.parametrize("width", [WIDTH, 1600, 900])
def test_an_open_entry_detail_has_no_overlapping_parts(browser, tmp_path, width):
    """At 1280 px (and wider and narrower): the trials, "Timings per phase", the per-device
    table, the poisons, setting, provenance and configuration of an open detail each stay in
    their own box; nothing spills over a neighbour."""
    browser.set_window_size(width, 900)
    browser.get(write_board(tmp_path).as_uri())
    for section in ("threat-targeted", "threat-untargeted"):
        body = browser.find_element("css selector", f"#{section} tbody.row")
        body.find_element("css selector", "button.toggle").click()
        detail = body.find_element("css selector", "tr.detail")
        assert detail.is_displayed()
        assert browser.execute_script(_OVERLAPS, detail) == []
    if width >= WIDTH:  # the page is laid out for 1280 px and up (at 900 its main tables scroll)
        assert _fits(browser)
    browser.set_window_size(WIDTH, 900)


def test_the_smoke_page_renders_cleanly(browser, smoke_cli):
    out = smoke_cli[0]
    browser.get((out / "leaderboard" / "leaderboard.html").as_uri())
    assert console_errors(browser) == []
    assert browser.execute_script("return Array.from(document.images).every(i => i.complete && i.naturalWidth > 0)")
    assert browser.find_element("id", "claims").is_displayed() and _fits(browser)


def test_filters_live_in_the_url_and_an_entry_has_a_permalink(browser, tmp_path):
    path = write_board(tmp_path)
    browser.get(path.as_uri() + "?recipe=sgd")
    assert browser.execute_script('return document.querySelector("select[data-filter=recipe]").value') == "sgd"
    recipes = browser.execute_script(
        'return Array.from(document.querySelectorAll("#entries tbody.row")).filter(b => !b.hidden)'
        '.map(b => b.getAttribute("data-f-recipe"))'
    )
    assert recipes and set(recipes) == {"sgd"}
    # changing a filter writes it into the address
    browser.execute_script(
        'const s = document.querySelector("select[data-filter=recipe]"); s.value = "";'
        's.dispatchEvent(new Event("change"));'
    )
    assert "recipe=" not in browser.current_url
    # #entry-ID opens that entry's detail
    entry_id = browser.execute_script('return document.querySelector("#entries tbody.row").id')
    assert entry_id.startswith("entry-")
    browser.get(path.as_uri() + "#" + entry_id)
    opened = browser.execute_script(
        "return !document.getElementById(arguments[0]).querySelector('tr.detail').hidden", entry_id
    )
    assert opened and console_errors(browser) == []


def test_the_grid_shades_attacks_and_colours_sapa_minus_base(page):
    grid = page.execute_script(
        'return Array.from(document.querySelectorAll("section[id^=grid-] tbody.gaprow td"))'
        ".map(td => [td.textContent, td.className])"
    )
    assert grid and all(("up" in c) == t.startswith("+") for t, c in grid if t not in ("-",) and " - base" not in t)


def test_the_first_screen_answers_and_every_view_is_there(browser, tmp_path):
    """At 1280 x 900: the answer line of each threat model, the pre-registered claim's verdict and
    the badged verdicts on the first screen, the run's metadata folded; below, the grids (recipes and defenses) with SAPA - base
    coloured by sign, and the forest plot beside the pairs."""
    browser.set_window_size(WIDTH, 900)
    browser.get(write_board(tmp_path).as_uri())
    height = browser.execute_script("return window.innerHeight")
    answers = browser.execute_script(
        'return Array.from(document.querySelectorAll("#answer li")).map(li => [li.textContent, li.getBoundingClientRect().bottom])'
    )
    assert [a.split(":")[0] for a, _ in answers] == ["targeted", "untargeted", "claim T4-sgd-error-min"]
    assert all(bottom < height for _, bottom in answers)  # no scrolling to read the answer
    assert browser.execute_script('return document.getElementById("run").open') is False
    badge = browser.find_element("css selector", "#claims .badge.twin")
    assert badge.is_displayed() and badge.text == "digits, not cifar10"
    gaps = browser.execute_script(
        'return Array.from(document.querySelectorAll("#grid-untargeted-defenses tbody.gaprow td"))'
        ".slice(1).map(td => [td.textContent, td.className])"
    )
    # none: SAPA 20 points stronger (up); spectral-signatures: 4 points weaker (down)
    assert [(t, "up" in c, "down" in c) for t, c in gaps] == [("+20.0°", True, False), ("-4.0°", False, True)]
    forest = browser.execute_script(
        'return Array.from(document.querySelectorAll("#pairs img")).filter(i => i.title.startsWith("forest--"))'
        ".map(i => i.naturalWidth)"
    )
    assert forest and all(width > 0 for width in forest)
    assert console_errors(browser) == []


def test_a_grid_of_every_defense_fits_the_page(browser, tmp_path):
    """An attack x defense grid of twenty defenses (the defenses suite's): its headers wrap and
    its box scrolls sideways; the page itself never does at 1280 px."""
    import json

    from sapabench.defenses import DEFENSES
    from sapabench.leaderboard.render import render
    from sapabench.leaderboard.schema import seal
    from tests._entries import make_entry

    folder = tmp_path / "entries"
    folder.mkdir()
    defenses = ["none", *[d for d in DEFENSES.list() if d != "grayscale"]][:21]
    for defense in defenses:
        for attack in ("error-min", "sapa-error-min"):
            e = make_entry(attack, (0.60, 0.62, 0.64), craft_s=20.0)
            e["defense"], e["entry_id"] = defense, f"{e['entry_id']}-{defense}"
            (folder / f"{e['entry_id']}.json").write_text(json.dumps(seal(e)))
    render(folder, tmp_path / "board")
    browser.set_window_size(WIDTH, 900)
    browser.get((tmp_path / "board" / "leaderboard.html").as_uri())
    assert console_errors(browser) == []
    assert _fits(browser)
    boxes = browser.execute_script(
        "return Array.from(document.querySelectorAll('.tablebox.many')).map(b => [b.scrollWidth, b.clientWidth])"
    )
    assert boxes, "no grid of many columns rendered"
