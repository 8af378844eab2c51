"""The load benchmark's own arithmetic: percentiles, a worker's memory with its pool, and
the targets it reports as met or missed."""

import os
import signal
import subprocess
import sys

from benchmarks.load import group_rss_mb, render
from benchmarks.report import percentile


def test_percentiles_pick_from_the_measured_values():
    values = [float(v) for v in range(1, 101)]
    assert (percentile(values, 50), percentile(values, 95)) == (51.0, 95.0)
    assert percentile([3.0], 95) == 3.0


def test_a_workers_memory_counts_its_pool_children_and_nothing_else():
    """A Celery worker is a parent and its pool: the benchmark sums its process group."""
    code = (
        "import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', "
        + repr("import time; x = bytearray(60 * 2**20); time.sleep(300)")
        + "]); time.sleep(300)"
    )
    parent = subprocess.Popen([sys.executable, "-c", code], start_new_session=True)
    try:
        deadline = 50
        while group_rss_mb(parent.pid) < 60 and deadline:
            subprocess.run(["sleep", "0.2"], check=True)
            deadline -= 1
        assert group_rss_mb(parent.pid) >= 60  # the child's 60 MiB, and the parent's own
    finally:
        os.killpg(parent.pid, signal.SIGKILL)
        parent.wait()
    gone = 50
    while group_rss_mb(parent.pid) and gone:  # the orphaned child is reaped a moment later
        subprocess.run(["sleep", "0.2"], check=True)
        gone -= 1
    assert group_rss_mb(parent.pid) == 0


def result(**changes) -> dict:
    figures = {
        "uploads": 1000, "cases": 100, "images_per_case": 10, "client_threads": 4,
        "failures": [], "upload_s": 80.0, "upload_per_s": 12.5,
        "upload_ms": {"p50": 250, "p95": 400}, "to_prediction_s": {"p50": 1.0, "p95": 2.0},
        "to_heatmap_s": {"p50": 5.0, "p95": 9.0}, "first_upload_to_last_prediction_s": 90.0,
        "first_upload_to_last_heatmap_s": 120.0, "end_to_end_images_per_s": 11.1,
        "end_to_end_heatmaps_per_s": 8.3, "last_prediction_over_upload_phase": 1.1,
        "queue_peak": {"analysis": 3, "heatmaps": 40}, "lost": 0, "duplicated": 0,
        "heatmaps_made": 1000, "heatmaps_impossible": 0,
        "worker_rss_mb": {"w1": {"start": 250, "end": 260}},
        "load_average": {"start": 0.5, "end": 1.0}, "measured": "2026-12-05 12:00 UTC",
    }  # fmt: skip
    return {**figures, **changes}


def test_the_section_says_which_targets_were_met():
    text = render(result(), seconds=200)
    assert "**11.1 images/s**" in text
    assert "**missed**" not in text


def test_the_section_says_which_targets_were_missed():
    slow = render(
        result(
            end_to_end_images_per_s=5.4,
            last_prediction_over_upload_phase=2.5,
            worker_rss_mb={"hm": {"start": 300, "end": 900}},
        ),
        seconds=200,
    )
    assert slow.count("**missed**") == 3
