"""Faults of real processes against the production layout (make test-faults), heatmaps on:
an analysis worker killed as a whole mid-task, the heatmap worker killed mid-overlay, a
broker restarted without its data, a database outage during the analyses and one during
the overlays, a full and a read-only media disk, a model swap and rollback under a stream
of uploads, a SIGTERM restart of every worker mid-task, and a full restart. After each:
nothing accepted is lost or analysed twice, every heatmap is made, nothing refused was
kept, no file lacks its row nor a row its file, and everything accepted is analysed, its
heatmaps made, within 60 s of the fault ending.

The scenarios share one stack and run in order; each leaves it healthy for the next.
"""

import signal
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.faults.stack import WORKERS, wait_until
from tests.faults.traffic import FILLER
from tests.helpers import compose_grace_s

pytestmark = pytest.mark.faults

RECOVERY_LIMIT = 60


def codes(responses) -> set[tuple[int, str]]:
    return {(r.status, r.body.get("error", {}).get("code", "")) for r in responses}


def test_a_worker_killed_as_a_whole_mid_task_is_recovered_by_the_other(stack, traffic, measured):
    journey = traffic.journey(images=30)
    assert journey.submitted, journey.refusals

    def holder() -> str:
        rows = stack.sql(
            "SELECT claimed_by FROM cases_smearimage WHERE case_id = %s AND status = 'analysing'",
            journey.case_id,
        )
        return next((row[0] for row in rows if row[0]), "")

    worker = wait_until(holder, timeout=60, what="a worker to claim the case", every=0.02)
    name = worker.split("@")[0]
    stack.apps[name].kill()
    killed = time.monotonic()
    assert traffic.unfinished(), "the case was finished before the kill"

    wait_until(
        lambda: f"{name}@faults" not in stack.healthz()["checks"]["worker"]["detail"],
        timeout=20,
        what="/healthz to notice the dead worker",
    )
    noticed = time.monotonic() - killed
    assert noticed <= 16, noticed
    stack.start(name)  # the orchestrator restarts it; the other worker serves meanwhile
    recovered = traffic.wait_analysed(since=killed, limit=RECOVERY_LIMIT)
    stack.wait_ready(name)
    result = traffic.check()
    measured.append(
        f"worker SIGKILL mid-task: /healthz saw it gone after {noticed:.1f} s; "
        f"recovered {recovered:.1f} s after the kill ({result['accepted']} images)"
    )


def overlaying(stack, *journeys) -> bool:
    """Whether the heatmap worker holds a claim on overlays of these journeys' cases."""
    rows = stack.sql(
        "SELECT 1 FROM inference_prediction p JOIN cases_smearimage i ON i.id = p.image_id "
        "WHERE i.case_id = ANY(%s) AND p.heatmap_claimed_by <> ''",
        [j.case_id for j in journeys],
    )
    return bool(rows)


def heatmaps_pending(stack, journey) -> int:
    return stack.sql(
        "SELECT count(*) FROM inference_prediction p JOIN cases_smearimage i "
        "ON i.id = p.image_id WHERE i.case_id = %s AND p.heatmap_state = 'pending'",
        journey.case_id,
    )[0][0]


def test_the_heatmap_worker_killed_mid_overlay_loses_no_heatmap_and_leaves_no_file(
    stack, traffic, measured
):
    journey = traffic.journey(images=12)
    assert journey.submitted, journey.refusals
    wait_until(
        lambda: overlaying(stack, journey), timeout=90, what="the overlays to start", every=0.02
    )
    stack.apps["hm"].kill()
    killed = time.monotonic()
    assert heatmaps_pending(stack, journey), "the overlays were all made before the kill"
    stack.start("hm")
    recovered = traffic.wait_analysed(since=killed, limit=RECOVERY_LIMIT)
    stack.wait_ready("hm")
    result = traffic.check()
    measured.append(
        f"heatmap worker SIGKILL mid-overlay: every heatmap made {recovered:.1f} s after the "
        f"kill, no file left behind ({result['accepted']} images)"
    )


def test_a_broker_restarted_without_its_data_loses_no_upload(stack, traffic, measured):
    workers = [stack.apps["w1"], stack.apps["w2"]]
    for worker in workers:
        worker.signal(signal.SIGSTOP)  # a backlog: Redis holds the messages
    queued = [traffic.journey() for _ in range(3)]
    stack.redis.kill()  # every message in Redis is gone with it
    outage = [traffic.journey() for _ in range(2)]
    assert all(j.submitted for j in queued + outage), codes(traffic.refusals())
    assert not stack.healthz()["checks"]["broker"]["ok"]
    time.sleep(5)
    stack.redis.start()
    restarted = time.monotonic()
    for worker in workers:
        worker.signal(signal.SIGCONT)
    recovered = traffic.wait_analysed(since=restarted, limit=RECOVERY_LIMIT)
    traffic.check()
    measured.append(
        f"broker restart without persistence: recovered {recovered:.1f} s after Redis was "
        f"back ({len(queued) * 2} images lost in Redis, {len(outage) * 2} queued while down)"
    )


def analysing(stack, journey) -> bool:
    rows = stack.sql(
        "SELECT 1 FROM cases_smearimage WHERE case_id = %s AND status = 'analysing'",
        journey.case_id,
    )
    return bool(rows)


def test_a_database_outage_answers_503_keeps_nothing_half_and_recovers(stack, traffic, measured):
    before = len(traffic.refusals())
    busy = traffic.journey(images=30)
    wait_until(lambda: analysing(stack, busy), timeout=60, what="a worker to start", every=0.02)
    with traffic.stream(every=0.3):
        stack.postgres.stop()  # mid-task: the worker's writes and claim renewals fail
        time.sleep(10)
        stack.postgres.start()
        back = time.monotonic()
        time.sleep(2)
    refused = traffic.refusals()[before:]
    assert refused and codes(refused) <= {(503, "database_unavailable")}, codes(refused)
    traffic.resubmit()
    recovered = traffic.wait_analysed(since=back, limit=RECOVERY_LIMIT)
    result = traffic.check()
    measured.append(
        f"database outage (10 s): {len(refused)} requests answered 503 database_unavailable; "
        f"recovered {recovered:.1f} s after it was back ({result['accepted']} images in all)"
    )


def test_a_database_outage_during_the_overlays_loses_no_heatmap(stack, traffic, measured):
    journey = traffic.journey(images=12)
    assert journey.submitted, journey.refusals
    wait_until(
        lambda: overlaying(stack, journey), timeout=90, what="the overlays to start", every=0.02
    )
    stack.postgres.stop()  # the heatmap worker's claims, drafts and attaches fail
    time.sleep(10)
    stack.postgres.start()
    back = time.monotonic()
    recovered = traffic.wait_analysed(since=back, limit=RECOVERY_LIMIT)
    result = traffic.check()
    measured.append(
        f"database outage (10 s) during the overlays: every heatmap made {recovered:.1f} s "
        f"after it was back, no file left behind ({result['accepted']} images)"
    )


def _fill(media) -> None:
    with (media / FILLER).open("wb") as filler:
        try:
            while True:
                filler.write(b"\0" * 2**20)
                filler.flush()
        except OSError:
            pass


def test_a_full_then_read_only_media_disk_keeps_no_file_and_recovers(stack, traffic, measured):
    before = len(traffic.refusals())
    _fill(stack.media)
    full = [traffic.journey() for _ in range(3)]
    storage = stack.healthz()["checks"]["storage"]
    assert not storage["ok"], storage
    (stack.media / FILLER).unlink()
    freed = time.monotonic()
    after_full = [traffic.journey() for _ in range(2)]
    subprocess.run(["mount", "-o", "remount,ro", str(stack.media)], check=True)
    read_only = [traffic.journey() for _ in range(2)]
    assert not stack.healthz()["checks"]["storage"]["writable"]
    subprocess.run(["mount", "-o", "remount,rw", str(stack.media)], check=True)
    refused = traffic.refusals()[before:]
    assert codes(refused) == {(503, "storage_full"), (503, "storage_read_only")}, codes(refused)
    assert not any(j.images for j in full + read_only)
    assert all(j.submitted for j in after_full)
    recovered = traffic.wait_analysed(since=freed, limit=RECOVERY_LIMIT)
    result = traffic.check()
    measured.append(
        f"media full, then read-only: {len(refused)} uploads answered 503, no file left; "
        f"recovered {recovered:.1f} s after space was freed ({result['accepted']} images)"
    )


def test_a_model_swap_and_rollback_under_uploads_keeps_each_case_on_its_version(
    stack, traffic, measured
):
    deploy = (
        "from inference.models import ModelVersion\n"
        "from inference.services.registry import model_version_deploy, model_version_rollback\n"
    )
    with traffic.stream(every=0.2, images=1):
        time.sleep(3)
        stack.manage(
            deploy + "model_version_deploy(model_version=ModelVersion.objects.get("
            "version='v2'), actor=None, reason='swap under load')"
        )
        time.sleep(3)
        stack.manage(deploy + "model_version_rollback(actor=None, reason='roll back under load')")
        time.sleep(2)
    ended = time.monotonic()
    traffic.resubmit()
    recovered = traffic.wait_analysed(since=ended, limit=RECOVERY_LIMIT)
    # Each case is analysed by the version deployed when it was submitted.
    mismatched = stack.sql(
        "SELECT a.case_id FROM inference_caseanalysis a WHERE a.requested_by_id IS NULL AND "
        "a.model_version_id <> (SELECT e.model_version_id FROM inference_deploymentevent e "
        "WHERE e.action IN ('deploy', 'rollback') AND e.created <= a.created "
        "ORDER BY e.created DESC, e.id DESC LIMIT 1)"
    )
    assert not mismatched, mismatched
    versions = stack.sql("SELECT DISTINCT model_version_id FROM inference_caseanalysis")
    assert len(versions) == 2, "the stream did not span the swap"
    # Stray messages for every case, after the rollback: nothing is analysed again.
    predictions = stack.sql("SELECT count(*) FROM inference_prediction")[0][0]
    stack.manage(
        "from celery import current_app\nfrom cases.models import Case\n"
        "for pk in Case.objects.values_list('pk', flat=True):\n"
        "    current_app.send_task('inference.analyse_case', args=[pk], ignore_result=True)\n"
    )
    wait_until(
        lambda: stack.healthz()["checks"]["queue"]["broker_messages"] == 0,
        timeout=60,
        what="the stray messages to be consumed",
    )
    time.sleep(2)  # the last one taken may still run
    assert stack.sql("SELECT count(*) FROM inference_prediction")[0][0] == predictions
    shown = stack.sql(
        "SELECT r.case_id FROM inference_caseresult r WHERE r.primary AND r.model_version_id <> "
        "(SELECT a.model_version_id FROM inference_caseanalysis a WHERE a.case_id = r.case_id "
        "ORDER BY a.created DESC, a.id DESC LIMIT 1)"
    )
    assert not shown, f"cases showing another version's answer: {shown}"
    result = traffic.check()
    measured.append(
        f"model swap and rollback under uploads: every case on its submission's version; "
        f"the last analysed {recovered:.1f} s after the stream ended ({result['accepted']} images)"
    )


def test_a_sigterm_restart_mid_task_finishes_within_the_grace_and_loses_nothing(
    stack, traffic, measured
):
    """`docker compose restart` of every worker while analyses and overlays run: SIGTERM to
    each main process, a kill only past docker-compose.yml's stop_grace_period."""
    journeys = [traffic.journey(images=12) for _ in range(2)]
    assert all(j.submitted for j in journeys), traffic.refusals()
    wait_until(lambda: overlaying(stack, *journeys), timeout=90, what="the overlays", every=0.02)
    grace = {name: compose_grace_s("heatmaps" if name == "hm" else "worker") for name in WORKERS}
    offsets = {name: stack.apps[name].log_size() for name in WORKERS}
    with ThreadPoolExecutor(len(WORKERS)) as pool:  # docker stops them together
        took = dict(
            zip(WORKERS, pool.map(lambda n: stack.apps[n].stop(grace[n]), WORKERS), strict=True)
        )
    killed = [name for name, seconds in took.items() if seconds is None]
    assert not killed, f"{killed} did not stop within the grace: {stack.logs_tail()}"
    assert all(stack.apps[n].said_since(offsets[n], "Warm shutdown") for n in WORKERS)
    for name in WORKERS:
        stack.start(name)
    restarted = time.monotonic()
    recovered = traffic.wait_analysed(since=restarted, limit=RECOVERY_LIMIT)
    stack.wait_ready(*WORKERS)
    result = traffic.check()
    slowest = max(s for s in took.values() if s is not None)
    measured.append(
        f"SIGTERM restart of every worker mid-task: all stopped within {slowest:.1f} s "
        f"(grace {min(grace.values())} s); recovered {recovered:.1f} s after the restart "
        f"({result['accepted']} images)"
    )


def test_a_full_restart_loses_nothing(stack, traffic, measured):
    for name in WORKERS:
        stack.apps[name].stop(grace=10)
    waiting = [traffic.journey() for _ in range(3)]  # queued in Redis, which keeps nothing
    assert all(j.submitted for j in waiting)
    for process in stack.apps.values():
        process.stop(grace=10)
    stack.redis.kill()
    stack.postgres.stop()
    stack.postgres.start()
    stack.redis.start()
    for name in stack.apps:
        stack.start(name)
    restarted = time.monotonic()
    stack.wait_ready("web")
    traffic.resubmit()
    recovered = traffic.wait_analysed(since=restarted, limit=RECOVERY_LIMIT)
    stack.wait_ready()
    result = traffic.check()
    measured.append(
        f"full restart (web, workers, sweeper, Redis without persistence, PostgreSQL) with "
        f"{len(waiting) * 2} images waiting: recovered {recovered:.1f} s after the restart "
        f"({result['accepted']} images in all)"
    )
