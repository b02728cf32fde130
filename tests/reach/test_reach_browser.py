"""The ``reach --html`` page in a real browser (Debian's headless Chromium,
driven by selenium through chromedriver): what it draws is what ``-o json``
says, for the seed and for Istio's bookinfo with the policies of istio.io's
HTTP authorization task, and a click shows the conditions.

Without Chromium the tests skip, except in CI (``CI`` set) or with
``MESHAUTHZ_REQUIRE_BROWSER=1``, where they fail: CI never passes by skipping.
``MESHAUTHZ_UPDATE_SCREENSHOT=1`` also writes the README's picture,
docs/reach.png (otherwise the screenshot goes under the test's tmp_path)."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from meshauthz.cli.main import main
from tests.conftest import CONFORMANCE, EXAMPLES, REPO

BOOKINFO = [
    str(CONFORMANCE / "samples" / "bookinfo" / "bookinfo.yaml"),
    str(Path(__file__).parent / "bookinfo" / "authz-http.yaml"),
]
SCREENSHOT = REPO / "docs" / "reach.png"


def _required() -> bool:
    return bool(os.environ.get("CI")) or os.environ.get("MESHAUTHZ_REQUIRE_BROWSER", "") not in (
        "",
        "0",
    )


def _unusable(reason: str) -> None:
    if _required():
        pytest.fail(f"a real browser is required here (CI or MESHAUTHZ_REQUIRE_BROWSER): {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver_bin = shutil.which("chromedriver")
    if chromium is None or driver_bin is None:
        _unusable("Debian's chromium and chromium-driver are not installed")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        _unusable("selenium is not installed (pip install -e '.[test]')")
    options = webdriver.ChromeOptions()
    options.binary_location = str(chromium)
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1400,900"):
        options.add_argument(arg)
    try:
        driver = webdriver.Chrome(service=Service(str(driver_bin)), options=options)
    except Exception as e:  # the browser would not start: say why
        _unusable(f"chromium did not start: {e}")
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


def _reach(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, paths: list[str]
) -> tuple[Path, list[dict[str, Any]]]:
    page = tmp_path / "reach.html"
    args = ["reach", "--html", str(page), "-o", "json"]
    for p in paths:
        args += ["-f", p]
    with pytest.raises(SystemExit) as exc:
        main(args)
    assert exc.value.code == 0
    rows: list[dict[str, Any]] = json.loads(capsys.readouterr().out)["rows"]
    return page, rows


def _combined(verdicts: list[str]) -> str:
    """An edge's colour: its rows' verdict when they agree, else some (unknown wins)."""
    if len(set(verdicts)) == 1:
        return verdicts[0]
    return "unknown" if "unknown" in verdicts else "some"


def _drawn(driver: Any) -> tuple[set[tuple[str, str, int, str, str]], dict[tuple[str, str], str]]:
    from selenium.webdriver.common.by import By

    cells = {
        (
            td.get_attribute("data-from"),
            td.get_attribute("data-to"),
            int(td.get_attribute("data-port")),
            td.get_attribute("data-protocol"),
            td.get_attribute("data-verdict"),
        )
        for td in driver.find_elements(By.CSS_SELECTOR, "#matrix td.cell")
    }
    edges = {
        (e.get_attribute("data-from"), e.get_attribute("data-to")): e.get_attribute("data-verdict")
        for e in driver.find_elements(By.CSS_SELECTOR, "#graph path.edge")
    }
    return cells, edges


def _expected(
    rows: list[dict[str, Any]],
) -> tuple[set[tuple[str, str, int, str, str]], dict[tuple[str, str], str]]:
    cells = {(r["from"], r["to"], r["port"], r["protocol"], r["verdict"]) for r in rows}
    by_pair: dict[tuple[str, str], list[str]] = {}
    for r in rows:
        by_pair.setdefault((r["from"], r["to"]), []).append(r["verdict"])
    return cells, {k: _combined(v) for k, v in by_pair.items()}


def _edge(driver: Any, src: str, dst: str) -> Any:
    from selenium.webdriver.common.by import By

    return driver.find_element(
        By.CSS_SELECTOR, f'#graph path.edge[data-from="{src}"][data-to="{dst}"]'
    )


_MIDPOINT = """
const e = arguments[0];
const p = e.getPointAtLength(e.getTotalLength() / 2), m = e.getScreenCTM();
const x = p.x * m.a + p.y * m.c + m.e, y = p.x * m.b + p.y * m.d + m.f;
const r = document.body.getBoundingClientRect();
return [x - (r.left + r.width / 2), y - (r.top + r.height / 2), document.elementFromPoint(x, y) === e];
"""


def _click_edge(driver: Any, src: str, dst: str) -> None:
    """A mouse click on the middle of the drawn edge, as a reader clicks it."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    edge = _edge(driver, src, dst)
    dx, dy, on_top = driver.execute_script(_MIDPOINT, edge)
    assert on_top, f"the edge {src} -> {dst} is hidden under another element at its middle"
    body = driver.find_element(By.TAG_NAME, "body")
    ActionChains(driver).move_to_element_with_offset(body, int(dx), int(dy)).click().perform()


def test_the_seed_page_draws_what_json_says(
    browser: Any, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By

    page, rows = _reach(capsys, tmp_path, [str(EXAMPLES / "seed")])
    browser.get(page.as_uri())
    assert _drawn(browser) == _expected(rows)
    # the DENY {}: frontend -> backend is none, and the click says which rule, where
    _click_edge(browser, "default/frontend", "default/backend")
    details = browser.find_element(By.ID, "details").text
    assert "default/frontend \u2192 default/backend:80: none" in details
    assert "DENY by default/deny-all-backend rule 0 (DENY) at " in details
    assert "deny-all-backend.yaml:15" in details
    assert '"path": "/"' in details  # the denied witness


def test_the_fixed_seed_edge_shows_its_conditions_and_witnesses(
    browser: Any, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By

    page, rows = _reach(capsys, tmp_path, [str(EXAMPLES / "seed-fixed")])
    browser.get(page.as_uri())
    assert _drawn(browser) == _expected(rows)
    _click_edge(browser, "default/frontend", "default/backend")
    conditions = browser.find_element(By.CSS_SELECTOR, "#details .conditions").text
    assert conditions == (
        "allowed when: methods GET and paths /api/v1/data [default/allow-frontend-get-data rule 0]"
    )
    allowed = json.loads(browser.find_element(By.CSS_SELECTOR, "#details pre.allowedWitness").text)
    denied = json.loads(browser.find_element(By.CSS_SELECTOR, "#details pre.deniedWitness").text)
    (row,) = [r for r in rows if (r["from"], r["to"]) == ("default/frontend", "default/backend")]
    assert (allowed, denied) == (row["allowedWitness"], row["deniedWitness"])
    # a matrix cell shows the same
    browser.find_element(
        By.CSS_SELECTOR, '#matrix td.cell[data-from="plaintext"][data-to="default/backend"]'
    ).click()
    assert (
        "plaintext \u2192 default/backend:80: none" in browser.find_element(By.ID, "details").text
    )


def test_bookinfo_page_matrix_graph_filter_and_screenshot(
    browser: Any, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By

    page, rows = _reach(capsys, tmp_path, BOOKINFO)
    browser.get(page.as_uri())
    assert _drawn(browser) == _expected(rows)
    # the task's end state: the product page's identity may GET details, nobody else
    edge = _edge(browser, "default/productpage-v1", "default/details-v1")
    assert edge.get_attribute("data-verdict") == "some"
    assert (
        _edge(browser, "default/ratings-v1", "default/details-v1").get_attribute("data-verdict")
        == "none"
    )
    _click_edge(browser, "default/productpage-v1", "default/details-v1")
    conditions = browser.find_element(By.CSS_SELECTOR, "#details .conditions").text
    assert conditions == "allowed when: methods GET [default/details-viewer rule 0]"
    shot = SCREENSHOT if os.environ.get("MESHAUTHZ_UPDATE_SCREENSHOT") else tmp_path / "reach.png"
    browser.save_screenshot(str(shot))
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # the filter box narrows the graph and the matrix alike
    box = browser.find_element(By.ID, "filter")
    box.send_keys("ratings")
    cells, edges = _drawn(browser)
    assert cells == {c for c in _expected(rows)[0] if "ratings" in c[0] or "ratings" in c[1]}
    assert cells and all("ratings" in f or "ratings" in t for f, t in edges)


def test_the_readme_shows_the_screenshot() -> None:
    assert SCREENSHOT.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "](docs/reach.png)" in (REPO / "README.md").read_text()


def test_a_200_workload_mesh_opens_grouped_by_namespace(browser: Any, tmp_path: Path) -> None:
    """Readable at 200 workloads: one node per namespace, edges combined."""
    from selenium.webdriver.common.by import By

    from meshauthz.cli.reach_page import GROUP_ABOVE, page
    from meshauthz.symbolic.reach import Caller, Reachability, Row
    from meshauthz.symbolic.witness import Destination

    keys = [f"ns{i % 10}/w{i}" for i in range(200)]
    verdicts = ("all", "none", "some")
    rows = [
        Row(
            Caller(keys[i], "workload", workload=keys[i]),
            Destination(keys[(i * 7 + k) % 200], 8080, "http"),
            verdicts[(i + k) % 3],  # type: ignore[arg-type]
        )
        for i in range(200)
        for k in range(3)
    ]
    target = tmp_path / "big.html"
    target.write_text(page(Reachability(rows), "200 workloads"))
    browser.get(target.as_uri())
    assert len({*keys}) > GROUP_ABOVE
    assert browser.find_element(By.ID, "group").is_selected()
    nodes = {n.get_attribute("data-name") for n in browser.find_elements(By.CSS_SELECTOR, "g.node")}
    assert nodes == {f"ns{i}" for i in range(10)}
    _, edges = _drawn(browser)
    expected: dict[tuple[str, str], list[str]] = {}
    for r in rows:
        pair = (r.caller.label.split("/")[0], r.destination.workload.split("/")[0])
        expected.setdefault(pair, []).append(r.verdict)
    assert edges == {k: _combined(v) for k, v in expected.items()}
    # ungrouped on request: every workload drawn
    browser.find_element(By.ID, "group").click()
    assert len(browser.find_elements(By.CSS_SELECTOR, "g.node")) == 200
