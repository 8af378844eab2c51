"""The inference benchmark's arithmetic on given figures (its measurements are benchmarks,
not tests)."""

from benchmarks.inference import cost_lines, every_core_lines, verdicts


def test_the_cost_table_bounds_the_worker_by_what_an_image_costs_on_each_core(monkeypatch):
    monkeypatch.setattr("os.cpu_count", lambda: 2)
    smears: dict[str, dict] = {
        "mobilenet": {
            "tf_compiled": 100.0,
            "tf_compiled_guard": 80.0,
            "worker_ort_fp32": 200.0,
            "worker_fp32": 150.0,
            "worker_int8": 240.0,
            "one_thread_ms": {
                "graph": 8.0,
                "guard": 1.0,
                "decode": 1.0,
                "int8": 4.0,
                "every_core": {"fp32": 9.5, "int8": 5.0, "decode": 1.0},
            },
        },
        "resnet50": {"tf_compiled": 30.0, "worker_fp32": 35.0},  # costs not measured
    }
    rows = [line for line in cost_lines(smears) if line.startswith("| mobilenet")]
    # 2 cores x 1000 ms / 8 ms = 250 images/s alone, / 10 ms = 200 with guard and decode;
    # int8: 9 ms / 4 ms for the graphs, 10 ms / 5 ms with decoding
    assert rows == [
        "| mobilenet | 8.00 | 1.00 | 1.00 | 2.50x | 2.00x | 1.50x | 80.0 | 2.50x "
        "| 4.00 | 2.25x | 2.00x |",
        # with every core busy: (9.5 + 1) ms / (5 + 1) ms; the worker ran 240 / 150
        "| mobilenet | 9.00 | 9.50 | 4.00 | 5.00 | 1.00 | 1.00 | 1.75x | 1.60x |",
    ]
    assert not any(line.startswith("| resnet50") for line in cost_lines(smears))


def test_the_int8_bound_takes_what_each_part_costs_with_every_core_busy(monkeypatch):
    monkeypatch.setattr("os.cpu_count", lambda: 2)
    mobilenet = {
        "arch": "mobilenet",
        "uploads": "smear JPEGs",
        "tf_compiled": 100.0,
        "bare_ort_fp32": 160.0,
        "bare_ort_fp32_batch16": 150.0,
        "worker_ort_fp32": 170.0,
        "worker_fp32": 150.0,
        "worker_int8": 240.0,
        "decode": 0.1,
        "one_thread_ms": {
            "graph": 8.0,
            "guard": 1.0,
            "decode": 1.0,
            "int8": 4.0,
            "every_core": {"fp32": 9.5, "int8": 5.0, "decode": 1.5},
        },
    }
    # (9.5 + 1.5) ms / (5.0 + 1.5) ms: one thread's costs would have allowed 10 / 5 = 2x
    rows = [line for line in every_core_lines({"mobilenet": mobilenet}) if "| mobilenet" in line]
    assert rows == ["| mobilenet | 9.00 | 9.50 | 4.00 | 5.00 | 1.00 | 1.50 | 1.69x | 1.60x |"]
    assert "with every core busy, decoding included, at most 1.69x" in verdicts(
        [mobilenet], {}, (0.0, 0.0, 0.0)
    )
