"""A real browser: JupyterLab in Debian's headless Chromium, driven by Playwright.

It runs the quickstart as a user would (Run ▸ Run All Cells) and checks what is
on screen: the tail widget's rows, then an edit saved through the KV editor, then
the live views' columns (tail view, stream browser, KV watch): a header click
sorts, a row click shows the row's JSON, hostile payloads stay text, in the
light and the dark theme.
Screenshots land in ``artifacts/browser/`` (gitignored; CI keeps them).
Chromium is ``/usr/bin/chromium`` (``apt-get install chromium``); no browser
is ever downloaded.
"""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

import nbnats

from browser_helpers import (Lab, copy_notebooks, launch_chromium, require_chromium, run_all_and_wait,
                             saved_cells, wait_kernel_idle)

pytestmark = [pytest.mark.browser, pytest.mark.timeout(180)]

ARTIFACTS = Path(__file__).resolve().parent.parent / "artifacts" / "browser"
QUICKSTART_SUBJECTS = ["orders.created", "orders.shipped", "orders.note"]


@pytest.fixture(scope="module")
def browser_lab(tmp_path_factory):
    """JupyterLab on a temp copy of the quickstart, and a headless Chromium."""
    require_chromium()
    from playwright.sync_api import sync_playwright

    tmp = tmp_path_factory.mktemp("browser")
    root = tmp / "notebooks"
    copy_notebooks(["01-quickstart.ipynb"], root)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with Lab(root, tmp / "home") as lab, sync_playwright() as p:
        browser = launch_chromium(p, tmp / "chromium")
        try:
            yield lab, browser
        finally:
            browser.close()


def _shot(page, name: str) -> None:
    try:
        page.screenshot(path=str(ARTIFACTS / f"{name}.png"))
    except Exception:
        pass   # a screenshot must never hide the real failure


def _new_page(browser):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.set_default_timeout(30_000)
    return page


def _open_and_run(lab, page, notebook: str, name: str) -> None:
    # A workspace of its own: JupyterLab restores no other tab (or kernel) into this page.
    page.goto(lab.url(f"lab/workspaces/{name}/tree/{notebook}"))
    wait_kernel_idle(page, timeout=60)
    _shot(page, f"{name}-opened")
    run_all_and_wait(page, lab, timeout=90)
    cells = saved_cells(page, lab, notebook)
    failed = [f"{c['source']!r}: {c['errors']}" for c in cells if c["errors"]]
    assert not failed, f"cells of {notebook} failed in the browser: {failed}"
    missing = [c["source"] for c in cells if c["execution_count"] is None]
    assert not missing, f"cells of {notebook} did not run: {missing}"


def test_quickstart_runs_and_the_tail_widget_shows_the_rows(browser_lab):
    lab, browser = browser_lab
    page = _new_page(browser)
    try:
        _open_and_run(lab, page, "01-quickstart.ipynb", "quickstart")
        widget = page.locator(".jp-OutputArea .widget-html-content", has_text="orders.created").first
        widget.wait_for(timeout=15_000)
        text = widget.inner_text()
        for subject in QUICKSTART_SUBJECTS:
            assert subject in text, f"the tail widget does not show {subject}: {text[:500]}"
        assert widget.locator("tbody tr").count() >= 4, f"the tail widget shows too few rows: {text[:500]}"
        header = page.locator(".jp-OutputArea .widget-html-content", has_text="orders.>").first.inner_text()
        assert "received" in header and "0 dropped" in header, header

        assert page.locator(".jp-OutputArea table.dataframe").count() >= 1   # t.df rendered as a table
        widget.scroll_into_view_if_needed()
        _shot(page, "quickstart-tail-widget")
    finally:
        _shot(page, "quickstart")


def _kv_editor_missing() -> str | None:
    if not callable(getattr(nbnats, "kv", None)):
        return "nbnats.kv(bucket) is not exported from nbnats/__init__.py yet"
    try:
        from nbnats.widgets.kv_editor import KVEditor  # noqa: F401
    except ImportError as exc:
        return f"the KV editor (nbnats/widgets/kv_editor.py) is not there yet ({exc})"
    return None


def _write_notebook(path: Path, cells: list) -> None:
    nb = new_notebook(cells=cells, metadata={"kernelspec": {"display_name": "Python 3 (ipykernel)",
                                                            "language": "python", "name": "python3"}})
    nbformat.write(nb, path)


def _kv_notebook(path: Path, url: str, bucket: str) -> None:
    # The kernel talks to the test's own server, so the test can read what the editor saved.
    cells = [
        new_code_cell(f"%load_ext nbnats\nimport nbnats\nnbnats.connect({url!r})"),
        new_code_cell(f"kv = nbnats.kv({bucket!r}, create=True)\n"
                      "kv.put('greeting', {'text': 'hello'})\n"
                      "kv.editor()"),
    ]
    _write_notebook(path, cells)


def test_kv_editor_saves_an_edit(browser_lab, connected, uid):
    missing = _kv_editor_missing()
    if missing:
        pytest.skip(missing)
    lab, browser = browser_lab
    page = _new_page(browser)
    bucket = f"browser_{uid}"
    _kv_notebook(lab.root / "kv-editor.ipynb", nbnats.server_url(secret=True), bucket)
    edited = {"text": "edited in the browser"}
    try:
        _open_and_run(lab, page, "kv-editor.ipynb", "kv-editor")
        editor = page.locator(".jp-OutputArea .widget-vbox", has=page.locator(".widget-select select")).first
        keys = editor.locator(".widget-select select")
        keys.locator("option", has_text="greeting").wait_for(state="attached", timeout=15_000)
        keys.select_option(index=0)                        # click the key: it loads into the edit pane
        value = editor.locator(".widget-textarea textarea").first
        page.wait_for_function("el => el.value.includes('hello')", arg=value.element_handle(), timeout=15_000)
        value.fill(json.dumps(edited))
        editor.get_by_role("button", name="Save").click()
        editor.locator(".widget-html-content", has_text="saved as revision").wait_for(timeout=15_000)
        _shot(page, "kv-editor-saved")
        entry = nbnats.kv(bucket).get("greeting")
        assert entry.value == edited and entry.revision == 2
    finally:
        _shot(page, "kv-editor")


HOSTILE = "<img src=x onerror=alert(1)>"


def _views_notebook(path: Path, url: str, uid: str) -> None:
    cells = [
        new_code_cell(f"%load_ext nbnats\nimport nbnats\nnbnats.connect({url!r})"),   # the test's own server
        new_code_cell(f"t = nbnats.tail('{uid}.>')\n"
                      "for i in range(5):\n"
                      f"    nbnats.publish(f'{uid}.orders.{{i % 2}}', {{'id': i, 'customer': {{'name': f'c{{i}}'}}, "
                      f"'total': 10.5 - i, 'note': {HOSTILE!r}}}, headers={{'Trace-Id': f't{{i}}'}})\n"
                      "t.wait(5, timeout=10)\nt.widget"),
        new_code_cell(f"nbnats.add_stream('S{uid}', ['{uid}s.>'])\n"
                      "for i in range(5):\n"
                      f"    nbnats.publish(f'{uid}s.{{i}}', {{'n': i, 'amount': 5 - i}}, js=True)\n"
                      f"nbnats.view('S{uid}')"),
        new_code_cell(f"kv = nbnats.kv('b{uid}', create=True)\n"
                      "kv.put('user.1', {'name': 'ada', 'age': 36})\nkv.put('user.2', {'name': 'bob', 'age': 7})\n"
                      "w = kv.watch()\nw.wait(2, timeout=10)\nw.widget"),
    ]
    _write_notebook(path, cells)


def _sorts_and_shows_json(page, table, column: str, first: str, row: int, json_text: str) -> None:
    """Click ``column``'s header: ▲ and ``first`` in the first row; click row ``row``: its JSON shows."""
    headers = table.locator("thead th").all_inner_texts()
    assert column in headers, f"no column {column!r} in {headers}"
    table.locator("thead th", has_text=column).first.click()
    table.locator("thead th", has_text=f"{column} ▲").wait_for(timeout=15_000)
    index = headers.index(column)
    cell = table.locator("tbody tr").first.locator("td").nth(index)
    page.wait_for_function("([el, want]) => el.textContent === want", arg=[cell.element_handle(), first],
                           timeout=15_000)
    table.locator("tbody tr").nth(row).click()
    table.locator("tbody tr.nbnats-sel").nth(0).wait_for(timeout=15_000)
    table.locator(".nbnats-d pre", has_text=json_text).wait_for(timeout=15_000)


def _colours(table) -> dict:
    return table.locator("table.nbnats-table").evaluate(
        "el => { const s = getComputedStyle(el); return {color: s.color, background: s.backgroundColor}; }")


def _luma(css: str) -> float:
    r, g, b = (float(x) for x in css[css.index("(") + 1:].rstrip(")").split(",")[:3])
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def _theme(page, name: str) -> None:
    page.get_by_role("menuitem", name="Settings", exact=True).click()
    page.locator(".lm-Menu-item", has_text="Theme").first.hover()
    page.locator(".lm-Menu-item", has_text=name).first.click()
    page.wait_for_function("want => document.body.dataset.jpThemeLight === want",
                           arg="true" if "Light" in name else "false", timeout=15_000)


def test_live_views_show_columns_sort_and_row_json(browser_lab, connected, uid):
    lab, browser = browser_lab
    page = _new_page(browser)
    _views_notebook(lab.root / "views.ipynb", nbnats.server_url(secret=True), uid)
    dark = False
    try:
        _open_and_run(lab, page, "views.ipynb", "views")
        views = page.locator(".jp-OutputArea-output .nbnats-table-view")
        views.nth(2).locator("tbody tr").nth(1).wait_for(timeout=15_000)
        tail, stream, kv = views.nth(0), views.nth(1), views.nth(2)

        _sorts_and_shows_json(page, tail, "total", "6.5", 1, '"customer": {')
        assert tail.locator("img").count() == 0 and HOSTILE in tail.inner_text()    # a payload stays text
        assert "Trace-Id" in tail.locator(".nbnats-d").inner_text()
        for name in ("customer.name", "note", "subject", "time"):
            assert name in tail.locator("thead").inner_text()
        _sorts_and_shows_json(page, stream, "amount", "1", 0, '"amount": 1')
        assert "n" in stream.locator("thead th").all_inner_texts()
        _sorts_and_shows_json(page, kv, "age", "7", 1, '"name": "ada"')
        assert {"key", "revision", "operation", "name"} <= set(kv.locator("thead th").all_inner_texts())

        light = _colours(tail)
        assert _luma(light["color"]) < 128 < _luma(light["background"]), light
        for name, view_ in (("tail", tail), ("stream", stream), ("kv-watch", kv)):
            view_.scroll_into_view_if_needed()
            view_.screenshot(path=str(ARTIFACTS / f"views-{name}-light.png"))
        _theme(page, "JupyterLab Dark")
        dark = True
        night = _colours(tail)
        assert _luma(night["color"]) > 128 > _luma(night["background"]), night
        for name, view_ in (("tail", tail), ("stream", stream), ("kv-watch", kv)):
            view_.scroll_into_view_if_needed()
            view_.screenshot(path=str(ARTIFACTS / f"views-{name}-dark.png"))
        _shot(page, "views-dark")
    finally:
        _shot(page, "views")
        if dark:
            _theme(page, "JupyterLab Light")       # the setting is the Lab's: later pages start light
        for drop in (lambda: nbnats.delete_stream(f"S{uid}"), lambda: nbnats.delete_bucket(f"b{uid}")):
            try:
                drop()
            except Exception:
                pass
