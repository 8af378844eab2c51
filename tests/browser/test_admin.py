"""An administrator's journey through the registry and the audit log, in Chromium: import
with the upload script, confirmed changes, and a local evaluation that appears unasked."""

from __future__ import annotations

import re
import zipfile
from pathlib import Path

from tests.browser.test_journeys import _keep
from tests.helpers import package

TALEQANI = ["Benign", "Early", "Pre", "Pro"]
VERSION_PAGE = re.compile(r".*/registry/\d+/$")


def _zipped(folder: Path) -> Path:
    """The artifact folder as an admin would upload it: one zip holding the folder."""
    archive = folder.with_suffix(".zip")
    with zipfile.ZipFile(archive, "w") as bundle:
        for path in folder.iterdir():
            bundle.write(path, f"{folder.name}/{path.name}")
    return archive


def _import(page, archive: Path, label: str) -> None:
    page.goto("/registry/")
    page.click("text=Import a model")
    page.wait_for_url("**/registry/import/")
    page.set_input_files("input[type=file]", str(archive))
    page.click("button:has-text('Import')")
    page.wait_for_url(VERSION_PAGE, timeout=60_000)
    assert label in page.inner_text("h1")


def _confirm(page, reason: str) -> None:
    page.fill("#id_reason", reason)
    page.click("button:has-text('Confirm')")


def _open_version(page, label: str) -> None:
    page.goto("/registry/")
    page.locator("table").first.locator("tr", has_text=label).locator("a").first.click()
    page.wait_for_url(VERSION_PAGE)


def _status_of(page, label: str) -> str:
    page.goto("/registry/")
    return page.locator("table").first.locator("tr", has_text=label).inner_text()


def test_an_admin_imports_deploys_shadows_rolls_back_and_reads_the_audit_log(login, tmp_path):
    new_classes = _zipped(
        package(tmp_path / "a", version="2", seed=5, name="browser-tiny", classes=TALEQANI)
    )
    same_classes = _zipped(
        package(tmp_path / "b", version="3", seed=6, name="browser-tiny", classes=TALEQANI)
    )
    page = login("admin")

    # A refusal shows on the import page itself, the file input still there.
    page.goto("/registry/import/")
    page.set_input_files(
        "input[type=file]",
        {"name": "broken.zip", "mimeType": "application/zip", "buffer": b"not a zip"},
    )
    page.click("button:has-text('Import')")
    page.wait_for_selector("[data-errors] li:has-text('this is not a zip file')")
    assert page.url.endswith("/registry/import/")
    assert page.locator("button:has-text('Import')").is_enabled()

    _import(page, new_classes, "browser-tiny 2")
    assert "Imported browser-tiny 2" in page.inner_text("main")
    assert "Registered" in _status_of(page, "browser-tiny 2")

    # Deploying a model with other classes needs the box ticked.
    _open_version(page, "browser-tiny 2")
    page.click(".actions a:has-text('Deploy')")
    page.wait_for_url("**/deploy/")
    assert "The classes change." in page.inner_text("[data-class-change]")
    _confirm(page, "the new lab's classes")
    # Refused (by the browser's own check of the required box; the server checks again).
    assert page.eval_on_selector("#id_accept_new_classes", "box => box.validity.valueMissing")
    assert page.url.endswith("/deploy/") and "The classes change." in page.inner_text("main")
    page.check("#id_accept_new_classes")
    _confirm(page, "the new lab's classes")
    page.wait_for_url("**/registry/")
    assert "Deploy browser-tiny 2: done." in page.inner_text("main")
    assert "Deployed" in _status_of(page, "browser-tiny 2")

    # Another version with the deployed one's classes shadows it: no box to tick.
    _import(page, same_classes, "browser-tiny 3")
    page.click(".actions a:has-text('Set as shadow')")
    page.wait_for_url("**/shadow/")
    assert page.locator("[data-class-change]").count() == 0
    _confirm(page, "watch it beside the new one")
    page.wait_for_url("**/registry/")
    assert "Shadow" in _status_of(page, "browser-tiny 3")

    # Rolling back to browser-tiny 1 changes the classes back, so it asks again.
    page.click("a:has-text('Roll back to browser-tiny 1')")
    page.wait_for_url("**/registry/rollback/")
    page.check("#id_accept_new_classes")
    _confirm(page, "back to the old lab")
    page.wait_for_url("**/registry/")
    assert "Deployed" in _status_of(page, "browser-tiny 1")

    # Retire the shadow so that the other journeys see only browser-tiny 1 serving.
    _open_version(page, "browser-tiny 3")
    page.click(".actions a:has-text('Retire')")
    page.wait_for_url("**/retire/")
    _confirm(page, "seen enough")
    page.wait_for_url("**/registry/")

    page.goto("/admin/audit/auditevent/")
    names = page.locator("#result_list td.field-event").all_inner_texts()
    for name in ("Deploy", "Set as shadow", "Roll back", "Retire"):
        assert name in names, names
    assert "Deployed" not in names
    page.fill("#searchbar", "rollback")
    page.press("#searchbar", "Enter")
    page.wait_for_url(re.compile(r".*\?q=rollback"))
    assert page.locator("#result_list td.field-event").all_inner_texts() == ["Roll back"]
    _keep(page, "admin-audit-rollback")


def test_a_local_evaluation_appears_on_the_version_page_without_a_reload(login):
    page = login("admin")
    _open_version(page, "browser-tiny 1")
    page.select_option("select[name=dataset]", "site")
    page.fill("input[name=note]", "browser set")
    page.click("button:has-text('Evaluate browser-tiny 1')")
    page.wait_for_url(re.compile(r".*/registry/\d+/#local-evaluations$"))
    page.wait_for_selector("[data-evaluation-pending]")
    # A reload would drop this mark: the result must arrive in the same document.
    page.evaluate("window.noReload = true")
    page.wait_for_selector("[data-evaluations] [data-accuracy]", timeout=90_000)
    assert page.evaluate("window.noReload") is True
    row = page.locator("[data-evaluations] tbody tr", has_text="browser set").first
    assert "done" in row.inner_text() and "%" in row.inner_text()
    assert page.locator("text=Confusion matrix of the latest (12 images)").count() == 1
    # Nothing on the page is wider than the 1280 px window.
    assert page.evaluate("document.documentElement.scrollWidth") <= 1280
    _keep(page, "admin-local-evaluation")


def test_an_admin_compares_the_variants_and_chooses_int8_audited(login, tmp_path, int8_artifact):
    import shutil

    folder = tmp_path / "browser-int8-1"
    shutil.copytree(int8_artifact, folder)
    page = login("admin")
    _import(page, _zipped(folder), "tiny int8")
    variants = page.locator("[data-variants]")
    assert "verified equal to the Keras model" in variants.inner_text()
    assert "accepted: within the accuracy limits" in variants.inner_text()
    assert "serving" in page.locator("[data-variant=fp32]").inner_text()
    page.select_option("[data-variant-form] select[name=variant]", "int8")
    page.fill("[data-variant-form] input[name=reason]", "2.5x the throughput, same labels")
    page.click("[data-variant-form] button")
    page.wait_for_url(re.compile(r".*/registry/\d+/#runtime$"))
    assert "now serves its int8 variant" in page.inner_text("main")
    assert "serving" in page.locator("[data-variant=int8]").inner_text()
    _keep(page, "admin-variant-int8")

    page.goto("/admin/audit/auditevent/")
    assert "Choose variant" in page.locator("#result_list td.field-event").all_inner_texts()
