"""The batch HTML report: reading results, escaping, and the page itself in a real headless Chromium."""

from __future__ import annotations

import json
import re
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from vtag.errors import VtagError
from vtag.tasks.report import read_results, render_report, write_report

sys.path.insert(0, str(Path(__file__).parent.parent))  # media_factory

NASTY = 'a </script><script>window.pwned=1</script> & "q" \'s <!-- \x01\x1f \u2028 .mp4'
TAGS = ["Game", "Cartoon", "Concert", "Animal", "Car", "Food", "Dance", "Guitar"]


def tiny_jpeg_uri(seed: int) -> str:
    from vtag.features.thumbnails import data_uri, jpeg_bytes

    rgb = np.random.default_rng(seed).integers(0, 256, (18, 32, 3), dtype=np.uint8)
    return data_uri(jpeg_bytes(rgb))


def write_results(path: Path, count: int = 200, failures_every: int = 9) -> list[dict]:
    """A results file as `vtag batch` writes one (lines generated here, not by a batch run)."""
    lines = []
    for i in range(count):
        name = f"/videos/clip_{i:03d}.mp4" if i != 7 else f"/videos/{NASTY}"
        if i % failures_every == 0:
            lines.append({"path": name, "error": f"{name}: cannot read as media <b>broken</b>"})
            continue
        labels = [{"id": TAGS.index(t), "name": t, "score": round(0.9 - 0.1 * k - i / 1000, 4), "vertical": "V & <x>"}
                  for k, t in enumerate([TAGS[i % 8], TAGS[(i * 3 + 1) % 8], TAGS[(i * 5 + 2) % 8]])]
        line = {"path": name, "model": "m", "labels": labels, "missing": []}
        if i % 2:
            line["thumbnail"] = tiny_jpeg_uri(i)
        lines.append(line)
    path.write_text("".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines), encoding="utf-8")
    return lines


def test_page_escapes_everything(tmp_path):
    lines = write_results(tmp_path / "r.jsonl", 20)
    page = render_report(*read_results(tmp_path / "r.jsonl"), title='t </title><b>"x"')
    assert page.count("</script") == 2  # the data block's and the code's own closing tags only
    assert "<!--" not in page and "window.pwned" not in page.split('id="vtag-data">')[0]
    assert "<title>t &lt;/title&gt;&lt;b&gt;&quot;x&quot;</title>" in page
    block = re.search(r'<script type="application/json" id="vtag-data">(.*?)</script>', page, re.S).group(1)
    data = json.loads(block)
    assert [r["path"] for r in data["results"]] == [line["path"] for line in lines]
    assert NASTY.split("/")[-1] == data["results"][7]["name"]
    assert not re.search(r"(https?:|//)[\w.-]+\.\w", page.replace("//www.w3.org", ""))  # nothing to fetch
    assert "default-src 'none'" in page  # and the page may not fetch anything anyway


def test_only_inline_jpegs_are_kept(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_text(json.dumps({"path": "a.mp4", "labels": [], "thumbnail": "https://example.com/x.jpg"}) + "\n"
                    + json.dumps({"path": "b.mp4", "labels": [], "thumbnail": tiny_jpeg_uri(1)}) + "\n"
                    + '{"path": "torn')
    entries, _ = read_results(path)
    assert [e["thumbnail"] is not None for e in entries] == [False, True]  # and the torn line is skipped


def test_csv_results_with_verticals(tmp_path):
    path = tmp_path / "r.csv"
    path.write_text('path,labels,error\na.mp4,Game (0)=0.9000; Cartoon (5)=0.1000,\n"b, c.mp4",,b: broken\n')
    entries, _ = read_results(path)
    assert entries[0]["labels"][0] == {"id": 0, "name": "Game", "score": 0.9, "vertical": "Games"}
    assert entries[1]["error"] == "b: broken" and entries[1]["path"] == "b, c.mp4"


def test_bad_inputs_are_one_line_errors(tmp_path):
    (tmp_path / "x.jsonl").write_text("not json\n")
    with pytest.raises(VtagError, match="line 1"):
        read_results(tmp_path / "x.jsonl")
    with pytest.raises(VtagError, match="no such"):
        read_results(tmp_path / "missing.jsonl")
    write_results(tmp_path / "r.jsonl", 3)
    with pytest.raises(VtagError, match=".html"):
        write_report(tmp_path / "r.jsonl", tmp_path / "r.txt")


# ---- in a real browser -----------------------------------------------------------------------------

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    if CHROMIUM is None or CHROMEDRIVER is None:
        pytest.skip("chromium and chromium-driver are not installed (apt-get install chromium chromium-driver)")
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install selenium)")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--window-size=1280,900", f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def open_page(driver, page: Path) -> None:
    driver.get(page.resolve().as_uri())
    driver.get_log("browser")  # the log is per page load; start from this one


def console_errors(driver) -> list:
    return [e for e in driver.get_log("browser") if e["level"] in ("SEVERE", "ERROR")]


def scroll_all(driver, expected: int) -> int:
    shown = int(driver.find_element("id", "cards").get_attribute("data-shown"))
    for _ in range(100):
        if shown >= expected:
            break
        driver.execute_script("window.scrollTo(0, document.body.scrollHeight)")
        driver.implicitly_wait(0)
        import time

        time.sleep(0.05)
        shown = int(driver.find_element("id", "cards").get_attribute("data-shown"))
    return shown


def test_report_in_chromium_200_files(browser, tmp_path):
    lines = write_results(tmp_path / "results.jsonl", 200)
    page, cards = write_report(tmp_path / "results.jsonl", tmp_path / "report.html")
    assert cards == 200
    open_page(browser, page)
    cards_box = browser.find_element("id", "cards")
    assert cards_box.get_attribute("data-matching") == "200"
    first = int(cards_box.get_attribute("data-shown"))
    assert 0 < first < 200  # lazy: not every card is built up front
    assert scroll_all(browser, 200) == 200
    paths = browser.execute_script("return Array.from(document.querySelectorAll('.card')).map(c => c.dataset.path)")
    assert sorted(paths) == sorted(line["path"] for line in lines)
    failed = [line for line in lines if "error" in line]
    assert len(browser.find_elements("css selector", ".card.failed")) == len(failed)
    assert browser.execute_script("return window.pwned") is None
    names = browser.execute_script("return Array.from(document.querySelectorAll('.card .name')).map(n => n.textContent)")
    assert NASTY.split("/")[-1] in names  # shown as text, not markup
    errors = browser.execute_script("return Array.from(document.querySelectorAll('.card .error')).map(n => n.textContent)")
    assert any("<b>broken</b>" in e for e in errors)
    images = browser.execute_script("return Array.from(document.querySelectorAll('img.thumb')).map(i => i.src.slice(0, 23))")
    assert images and set(images) == {"data:image/jpeg;base64,"}

    # the tag filter narrows the cards to those tagged so
    box = browser.find_element("id", "filter")
    box.send_keys("concert")
    expected = [line["path"] for line in lines if any(l["name"] == "Concert" for l in line.get("labels", []))]
    assert 0 < len(expected) < 200
    assert cards_box.get_attribute("data-matching") == str(len(expected))
    scroll_all(browser, len(expected))
    shown = browser.execute_script(
        "return Array.from(document.querySelectorAll('.card')).map(c => [c.dataset.path, c.textContent])")
    assert sorted(p for p, _ in shown) == sorted(expected)
    assert all("Concert" in text for _, text in shown)
    # sorting by top score puts the highest first
    box.clear()
    browser.execute_script("var s = document.getElementById('sort'); s.value = 'score'; s.dispatchEvent(new Event('change'))")
    top = browser.execute_script("return document.querySelector('.card').dataset.path")
    best = max((line for line in lines if "labels" in line), key=lambda line: line["labels"][0]["score"])
    assert top == best["path"]
    assert console_errors(browser) == []


def test_batch_report_end_to_end_in_chromium(browser, tmp_path):
    """A real `vtag batch --random-weights --report` run: two clips and one broken file."""
    from typer.testing import CliRunner

    from media_factory import make_broken, make_media
    from vtag.cli import app

    folder = tmp_path / "videos"
    folder.mkdir()
    make_media(folder / "tone & <one>.mp4", duration_s=3, size=(96, 64))
    make_media(folder / "two.mkv", duration_s=6, size=(64, 48), audio=False)
    make_broken(folder / "broken.mp4", "text")
    results, report = tmp_path / "results.jsonl", tmp_path / "report.html"
    run = CliRunner().invoke(app, ["batch", str(folder), "-o", str(results), "--report", str(report), "--workers", "0",
                                   "--random-weights", "--device", "cpu", "--segments", "5"])
    assert run.exit_code == 1, run.output  # one file failed
    lines = [json.loads(line) for line in results.read_text().splitlines()]
    assert len(lines) == 3 and sum("error" in line for line in lines) == 1
    assert all(line["thumbnail"].startswith("data:image/jpeg;base64,") for line in lines if "error" not in line)
    assert [len(line["segments"]) for line in lines if "error" not in line] == [1, 2]
    # rebuilt from the results file alone, the page is the same
    rebuilt, _ = write_report(results, tmp_path / "again.html")
    def results_of(page):
        block = re.search(r'id="vtag-data">(.*?)</script>', page.read_text(), re.S).group(1)
        return json.loads(block)["results"]

    assert results_of(rebuilt) == results_of(report)
    open_page(browser, report)
    assert browser.find_element("id", "cards").get_attribute("data-shown") == "3"
    assert len(browser.find_elements("css selector", ".card.failed")) == 1
    loaded = browser.execute_script(
        "return Array.from(document.querySelectorAll('img.thumb')).map(i => i.complete && i.naturalWidth)")
    assert len(loaded) == 2 and all(width and width > 10 for width in loaded)
    assert "NOT meaningful" in browser.find_element("id", "summary").text
    assert console_errors(browser) == []


def test_report_command(tmp_path):
    from typer.testing import CliRunner

    from vtag.cli import app

    write_results(tmp_path / "r.jsonl", 5)
    run = CliRunner().invoke(app, ["report", str(tmp_path / "r.jsonl"), "-o", str(tmp_path / "p.html")])
    assert run.exit_code == 0, run.output
    assert "5 videos" in run.output and (tmp_path / "p.html").stat().st_size > 1000
