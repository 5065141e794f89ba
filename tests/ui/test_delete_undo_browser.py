"""Undo delete in a real browser: the button appears after a delete, names it and restores it;
closing the page makes a pending delete permanent (``demo.unload``)."""
from __future__ import annotations

import time
from pathlib import Path

import pytest

from apptest import open_local_page
from test_app_browser import ARGS, CHROMIUM

pytestmark = [pytest.mark.browser,
              pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian chromium is not installed (make browser)")]


def test_undo_delete_button(app_server):
    from playwright.sync_api import expect, sync_playwright

    from app.annotate.session import Session

    url, studio, _home = app_server
    pid = studio.annotate.create_project(Session(), "undo-me", "cat").session.project  # the page opens it
    with sync_playwright() as p:
        browser, page, external = open_local_page(p, CHROMIUM, ARGS)
        status, undo = page.locator("#status"), page.locator("#undo_delete_btn")
        page.goto(url)
        expect(status).to_contain_text("undo-me", timeout=30_000)
        page.get_by_text("7 · Delete").click()
        expect(undo).to_be_hidden()
        page.locator("#confirm_cb input").check()
        page.locator("#delete_project_btn").click()
        expect(status).to_contain_text("project undo-me deleted", timeout=20_000)
        expect(undo).to_be_visible()
        expect(undo).to_have_text("↶ Undo delete: project undo-me")
        assert not studio.store.owns_project("", pid)
        undo.click()
        expect(status).to_contain_text("project undo-me restored", timeout=20_000)
        expect(undo).to_be_hidden()
        assert studio.store.owns_project("", pid)
        page.locator("#delete_project_btn").click()  # the box is still ticked
        expect(undo).to_be_visible(timeout=20_000)
        page.close()  # leaving the page: the delete becomes permanent
        deadline = time.time() + 30
        while studio.store.q("SELECT COUNT(*) FROM projects WHERE id=?", (pid,))[0][0] and time.time() < deadline:
            time.sleep(0.2)
        assert studio.store.q("SELECT COUNT(*) FROM projects WHERE id=?", (pid,))[0][0] == 0
        assert not studio.store.q("SELECT * FROM trash")
        browser.close()
    assert not external, external
