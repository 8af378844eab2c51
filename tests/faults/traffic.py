"""Clinicians' uploads through the API, and the ledger the fault suite checks them by.

A journey opens a patient and a case, uploads real smear photographs one request each,
and submits. What the web accepted (201/200) must end analysed, once, by the case's
version; what it refused (503 during an outage) must have left nothing behind.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from tests.faults.stack import Response, Stack, wait_until
from tests.helpers import smear_paths

# A file on the media disk that fills it up; not an upload, so not an orphan either.
FILLER = "filler.bin"


@dataclass
class Journey:
    case_id: int | None = None
    images: list[int] = field(default_factory=list)
    submitted: bool = False
    refusals: list[Response] = field(default_factory=list)


class Traffic:
    def __init__(self, stack: Stack, team_id: int) -> None:
        self.stack = stack
        self.client = stack.client()
        self.team_id = team_id
        self.smears = [path.read_bytes() for path in smear_paths(40)]
        self.journeys: list[Journey] = []
        self._lock = threading.Lock()

    def journey(self, images: int = 2) -> Journey:
        journey = Journey()
        with self._lock:
            self.journeys.append(journey)
        new_patient = {"team": self.team_id, "identifier": uuid.uuid4().hex}
        patient = self._call(journey, "POST", "/api/patients/", new_patient)
        if patient is None:
            return journey
        case = self._call(journey, "POST", "/api/cases/", {"patient": patient["id"]})
        if case is None:
            return journey
        journey.case_id = case["id"]
        start = len(self.journeys) % len(self.smears)
        for i in range(images):
            data = self.smears[(start + i) % len(self.smears)]
            image = self._call(journey, "POST", f"/api/cases/{case['id']}/images/", file=data)
            if image is not None:
                journey.images.append(image["id"])
        self.submit(journey)
        return journey

    def submit(self, journey: Journey) -> None:
        if journey.images and not journey.submitted:
            done = self._call(journey, "POST", f"/api/cases/{journey.case_id}/submit/")
            journey.submitted = done is not None

    def resubmit(self, *, timeout: float = 60) -> None:
        """What a client told "try again" does once the outage is over."""
        deadline = time.monotonic() + timeout
        for journey in self.journeys:
            while journey.images and not journey.submitted and time.monotonic() < deadline:
                self.submit(journey)
                if not journey.submitted:
                    time.sleep(0.5)

    def _call(self, journey: Journey, method: str, path: str, data=None, file=None) -> dict | None:
        response = self.client.call(method, path, data, file=file)
        if response.status in (200, 201):
            return response.body
        journey.refusals.append(response)
        return None

    @contextmanager
    def stream(self, *, every: float = 0.5, images: int = 2) -> Iterator[None]:
        """Journeys one after another, in the background, until the block ends."""
        stop = threading.Event()

        def run() -> None:
            while not stop.is_set():
                self.journey(images)
                stop.wait(every)

        thread = threading.Thread(target=run, name="uploads", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join(timeout=60)

    # --- the ledger ----------------------------------------------------------------

    def accepted(self) -> set[int]:
        return {pk for j in self.journeys if j.submitted for pk in j.images}

    def refusals(self) -> list[Response]:
        return [r for j in self.journeys for r in j.refusals]

    def unfinished(self) -> set[int]:
        """Accepted images not yet analysed by their case's version, or whose heatmap is
        not made yet (when the stack makes heatmaps)."""
        accepted = sorted(self.accepted())
        if not accepted:
            return set()
        rows = self.stack.sql(
            "SELECT i.id FROM cases_smearimage i WHERE i.id = ANY(%s) AND i.status = 'done' "
            "AND EXISTS (SELECT 1 FROM inference_prediction p WHERE p.image_id = i.id) "
            "AND (NOT %s OR NOT EXISTS (SELECT 1 FROM inference_prediction p "
            "WHERE p.image_id = i.id AND p.heatmap_state <> 'made'))",
            accepted,
            self.stack.heatmaps,
        )
        return set(accepted) - {row[0] for row in rows}

    def wait_analysed(self, *, since: float, limit: float = 60) -> float:
        """Seconds from ``since`` (a time.monotonic()) until every accepted image is
        analysed; fails past ``limit`` seconds, with the processes' logs."""
        try:
            wait_until(
                lambda: not self._unfinished_or_none(),
                timeout=max(1.0, limit - (time.monotonic() - since)),
                what="every accepted upload to be analysed",
                every=0.5,
            )
        except AssertionError as exc:
            left = sorted(self._unfinished_or_none() or [])
            raise AssertionError(
                f"{exc}: {len(left)} left {left[:20]}\n{self.stack.logs_tail()}"
            ) from None
        return time.monotonic() - since

    def _unfinished_or_none(self) -> set[int] | None:
        try:
            return self.unfinished()
        except Exception:  # the database may still be coming back
            return {-1}

    def check(self) -> dict[str, int]:
        """0 lost, 0 duplicated, every heatmap made, nothing saved that the web refused, no
        orphan file."""
        stack = self.stack
        known_cases = {j.case_id for j in self.journeys if j.case_id is not None}
        every_image = {pk for j in self.journeys for pk in j.images}
        cases = {row[0] for row in stack.sql("SELECT id FROM cases_case")}
        images = {row[0] for row in stack.sql("SELECT id FROM cases_smearimage")}
        assert cases == known_cases, f"cases the web refused were saved: {cases - known_cases}"
        assert images == every_image, f"the web refused but saved {images - every_image}"
        rows = stack.sql(
            "SELECT i.id, i.status, "
            "  coalesce(array_agg(p.model_version_id) FILTER (WHERE p.id IS NOT NULL), '{}'), "
            "  (SELECT a.model_version_id FROM inference_caseanalysis a "
            "   WHERE a.case_id = i.case_id ORDER BY a.created DESC, a.id DESC LIMIT 1) "
            "FROM cases_smearimage i LEFT JOIN inference_prediction p ON p.image_id = i.id "
            "WHERE i.id = ANY(%s) GROUP BY i.id",
            sorted(self.accepted()),
        )
        lost = [pk for pk, status, versions, _ in rows if status != "done" or not versions]
        duplicated = [
            pk for pk, _, versions, pinned in rows if len(versions) > 1 or set(versions) - {pinned}
        ]
        assert not lost, f"lost: {lost}"
        if stack.heatmaps:
            without = stack.sql(
                "SELECT image_id, heatmap_state, heatmap_reason FROM inference_prediction "
                "WHERE image_id = ANY(%s) AND (heatmap_state <> 'made' OR heatmap = '')",
                sorted(self.accepted()),
            )
            assert not without, f"heatmaps not made: {without[:20]}"
        assert not duplicated, f"predicted twice, or by another version: {duplicated}"
        unreferenced, missing = self.orphans()
        assert not unreferenced, f"files without a row: {sorted(unreferenced)[:20]}"
        assert not missing, f"rows without a file: {sorted(missing)[:20]}"
        return {"accepted": len(rows), "refused": len(self.refusals())}

    def orphans(self) -> tuple[set[str], set[str]]:
        media = self.stack.media
        on_disk = {
            p.relative_to(media).as_posix()
            for p in Path(media).rglob("*")
            if p.is_file() and p.name != FILLER
        }
        referenced = {
            name
            for row in self.stack.sql(
                "SELECT file, thumbnail FROM cases_smearimage "
                "UNION ALL SELECT heatmap, '' FROM inference_prediction"
            )
            for name in row
            if name
        }
        return on_disk - referenced, referenced - on_disk
