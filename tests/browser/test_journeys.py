"""Each role's journey through the real pages and their JavaScript, in Chromium."""

from __future__ import annotations

import base64
import os
import re
import signal
import time

from tests.helpers import REPO_ROOT, smear_paths

# Each journey leaves a screenshot of the page it ends on here, to look at.
SCREENS = REPO_ROOT / "var" / "browser-screens"


def _keep(page, name: str) -> None:
    SCREENS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENS / f"{name}.png"), full_page=True)


def _open_case(page, identifier: str, images: int = 2) -> int:
    """As a clinician: a new patient's case with real smears, submitted; its id."""
    page.goto("/cases/new/")
    page.fill("#id_identifier", identifier)
    page.set_input_files("input[type=file]", [str(p) for p in smear_paths(images)])
    page.click("button:has-text('Open case')")
    page.wait_for_url(re.compile(r".*/cases/\d+/$"))
    opened = re.search(r"/cases/(\d+)/", page.url)
    assert opened is not None
    return int(opened.group(1))


def _wait_until_analysed(page) -> None:
    page.wait_for_selector("[data-status]:has-text('Analysed')", timeout=60_000)


def test_a_clinician_opens_a_case_and_watches_it_being_analysed(login):
    page = login("alice")
    case_id = _open_case(page, "BR-CLIN-1")
    # The page polls: no reload between the upload and the answer.
    _wait_until_analysed(page)
    assert page.locator(".result h3").inner_text().startswith("Case prediction")
    assert page.locator("figure.smear").count() == 2
    _keep(page, "clinician-case")
    page.goto(f"/reviews/cases/{case_id}/report/")
    assert "Case report" in page.inner_text("h1")
    page.click("text=Log out")
    page.wait_for_url("**/login/")


def test_a_reviewer_agrees_with_the_model_and_signs_the_case_off(login):
    clinician = login("alice")
    case_id = _open_case(clinician, "BR-REV-1", images=1)
    _wait_until_analysed(clinician)
    page = login("bob")
    page.goto("/reviews/")
    page.click(f"a[href='/reviews/cases/{case_id}/']")
    # An override needs a reason; the page says so and keeps what was chosen.
    page.select_option("#id_diagnosis", "CLL")
    page.click("button:has-text('Record override')")
    page.wait_for_selector("text=Say why you override the model's answer.")
    page.fill("#id_comment", "Mature lymphocytes, smudge cells.")
    page.click("button:has-text('Record override')")
    page.wait_for_selector("text=Verdict recorded.")
    page.click("button:has-text('Agree')")
    page.wait_for_selector("text=Verdict recorded.")
    # Signing off is irreversible: the browser asks first; dismissed, nothing happens.
    questions: list[str] = []

    def dismiss(dialog) -> None:
        questions.append(dialog.message)
        dialog.dismiss()

    page.once("dialog", dismiss)
    page.click("button:has-text('Sign off and lock')")
    page.wait_for_timeout(300)
    assert questions and "locked for good" in questions[0]
    assert page.locator(".signed").count() == 0
    page.once("dialog", lambda dialog: dialog.accept())
    page.click("button:has-text('Sign off and lock')")
    page.wait_for_selector("text=Case signed off. It is now locked.")
    assert page.locator(".signed").count() == 1
    _keep(page, "reviewer-signed-off")
    clinician.goto("/cases/")
    assert "signed off" in clinician.locator("tr", has_text="BR-REV-1").inner_text()
    # The clinician's case is locked now: its edit page says so in the site's own layout.
    response = clinician.goto(f"/cases/{case_id}/edit/")
    assert response.status == 403
    assert "A reviewed case can no longer be changed" in clinician.inner_text("main")
    assert clinician.locator("header.topbar").count() == 1


def test_an_admin_finds_the_deployed_model_and_its_report(login):
    page = login("admin")
    page.click("nav >> text=Models")
    row = page.locator("table").first.locator("tr", has_text="browser-tiny 1")
    assert "Deployed" in row.inner_text()
    row.locator("a").first.click()
    page.wait_for_url(re.compile(r".*/registry/\d+/$"))
    assert "browser-tiny 1" in page.inner_text("h1")
    _keep(page, "admin-registry-report")


def test_an_outsider_from_another_team_gets_404_for_every_case_url(login):
    clinician = login("alice")
    case_id = _open_case(clinician, "BR-OUT-1", images=1)
    _wait_until_analysed(clinician)
    link = clinician.locator("figure.smear a").first.get_attribute("href") or ""
    found = re.search(r"/images/(\d+)/", link)
    assert found is not None
    image_id = int(found.group(1))
    predictions = clinician.request.get(f"/api/predictions/?case={case_id}").json()["results"]
    outsider = login("charlie")
    response = outsider.goto("/no-such-page/")
    assert response.status == 404 and "Not found" in outsider.inner_text("h1")
    for path in (
        f"/cases/{case_id}/",
        f"/cases/{case_id}/edit/",
        f"/cases/{case_id}/status/",
        f"/images/{image_id}/",
        f"/images/{image_id}/thumbnail/",
        f"/reviews/cases/{case_id}/report/",
        *(f"/reviews/predictions/{p['id']}/heatmap.png" for p in predictions),
    ):
        response = outsider.goto(path)
        assert response.status == 404, path
        assert "Not found" in outsider.inner_text("h1"), path


def _drop_files(page, selector: str, paths) -> None:
    """Drop files onto an element as a user dragging them from the desktop would."""
    files = [{"name": p.name, "data": base64.b64encode(p.read_bytes()).decode()} for p in paths]
    transfer = page.evaluate_handle(
        """(files) => {
            const dt = new DataTransfer();
            for (const f of files) {
                const bytes = Uint8Array.from(atob(f.data), (c) => c.charCodeAt(0));
                dt.items.add(new File([bytes], f.name, {type: "image/jpeg"}));
            }
            return dt;
        }""",
        files,
    )
    page.dispatch_event(selector, "drop", {"dataTransfer": transfer})


def test_a_clinician_drops_images_on_a_new_draft_then_adds_more_from_the_case_page(login):
    page = login("alice")
    page.goto("/cases/new/")
    page.fill("#id_identifier", "BR-DROP-1")
    page.uncheck("#id_submit")
    _drop_files(page, "[data-dropzone]", smear_paths(1))
    assert "BloodImage_00000.jpg" in page.inner_text("[data-file-list]")
    page.click("button:has-text('Open case')")
    page.wait_for_url(re.compile(r".*/cases/\d+/$"))
    assert page.locator("figure.smear").count() == 1
    # The case page's own uploader: choose a file, upload, see it listed.
    page.set_input_files("input[type=file]", [str(smear_paths(2)[1])])
    page.click("button:has-text('Upload')")
    page.wait_for_selector("text=1 image(s) added.")
    assert page.locator("figure.smear").count() == 2


def test_uploading_nothing_from_the_case_page_says_what_to_do(login):
    page = login("alice")
    page.goto("/cases/new/")
    page.fill("#id_identifier", "BR-NONE-1")
    page.uncheck("#id_submit")
    page.click("button:has-text('Open case')")
    page.wait_for_url(re.compile(r".*/cases/\d+/$"))
    page.click("button:has-text('Upload')")
    page.wait_for_selector("text=Choose at least one image.")


def test_a_blinded_reviewer_sees_the_answer_only_after_recording_a_diagnosis(login):
    clinician = login("alice")
    case_id = _open_case(clinician, "BR-BLIND-1", images=1)
    _wait_until_analysed(clinician)
    page = login("bob")
    page.goto("/reviews/")
    page.check("input[name=blinded]")  # saves the choice at once
    page.wait_for_selector("text=Blinded review on.")
    page.click(f"a[href='/reviews/cases/{case_id}/']")
    assert page.locator("text=Model answer").count() == 0
    assert page.locator(".blinded-note").count() == 1
    page.select_option("#id_diagnosis", "CLL")
    page.click("button:has-text('Record diagnosis')")
    page.wait_for_selector("text=Verdict recorded.")
    assert page.locator("h2", has_text="Model answer").count() == 1
    page.goto("/reviews/")
    page.uncheck("input[name=blinded]")
    page.wait_for_selector("text=Blinded review off.")


def test_a_clinician_withdraws_an_image_uploaded_by_mistake_from_a_draft(login):
    page = login("alice")
    page.goto("/cases/new/")
    page.fill("#id_identifier", "BR-WITHDRAW-1")
    page.uncheck("#id_submit")
    page.set_input_files("input[type=file]", [str(p) for p in smear_paths(2)])
    page.click("button:has-text('Open case')")
    page.wait_for_url(re.compile(r".*/cases/\d+/$"))
    assert page.locator("figure.smear").count() == 2
    first_name = page.locator("figure.smear strong").first.inner_text()
    # The confirmation comes from static/js/confirm.js: dismissed, nothing happens.
    page.once("dialog", lambda dialog: dialog.dismiss())
    page.locator("figure.smear").first.locator("button:has-text('Withdraw this image')").click()
    assert page.locator("figure.smear").count() == 2
    page.once("dialog", lambda dialog: dialog.accept())
    page.locator("figure.smear").first.locator("button:has-text('Withdraw this image')").click()
    page.wait_for_selector(f"text={first_name} withdrawn from the case.")
    assert page.locator("figure.smear").count() == 1
    assert first_name not in page.inner_text(".images")
    history = page.inner_text("table.history")
    assert re.search(rf"Withdrawn\s+{re.escape(first_name)}", history)
    _keep(page, "clinician-withdrawn-image")


def test_the_pages_stay_up_when_the_worker_dies_and_a_new_worker_takes_the_next_case(
    login, live_app
):
    page = login("alice")
    started = re.findall(r"worker started \(pid (\d+)\)", live_app.log.read_text())
    assert started, "serve logged no worker"
    os.kill(int(started[-1]), signal.SIGKILL)
    deadline = time.monotonic() + 20
    while "worker exited with status" not in live_app.log.read_text():
        assert time.monotonic() < deadline, "serve did not notice the worker's death"
        time.sleep(0.2)
    response = page.goto("/cases/")
    assert response is not None and response.status == 200  # the web did not go down with it
    _open_case(page, "BR-RESTART-1", images=1)
    _wait_until_analysed(page)  # by the worker serve started again
    assert len(re.findall(r"worker started", live_app.log.read_text())) == len(started) + 1


def test_on_a_phone_the_case_list_keeps_its_answer_column(login):
    page = login("alice", width=390, height=844)
    assert page.locator("th", has_text="Diagnosis or prediction").is_visible()
    assert not page.locator("th", has_text="Opened").is_visible()
