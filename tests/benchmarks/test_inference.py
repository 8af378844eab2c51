"""The inference benchmark's arithmetic on given figures (its measurements are benchmarks,
not tests)."""

from benchmarks.inference import cost_lines


def test_the_cost_table_bounds_the_worker_by_what_an_image_costs_on_each_core(monkeypatch):
    monkeypatch.setattr("os.cpu_count", lambda: 2)
    smears: dict[str, dict] = {
        "mobilenet": {
            "tf_compiled": 100.0,
            "tf_compiled_guard": 80.0,
            "worker_ort_fp32": 200.0,
            "worker_fp32": 150.0,
            "one_thread_ms": {"graph": 8.0, "guard": 1.0, "decode": 1.0, "int8": 4.0},
        },
        "resnet50": {"tf_compiled": 30.0, "worker_fp32": 35.0},  # costs not measured
    }
    rows = [line for line in cost_lines(smears) if line.startswith("| mobilenet")]
    # 2 cores x 1000 ms / 8 ms = 250 images/s alone, / 10 ms = 200 with guard and decode;
    # int8: 9 ms / 4 ms for the graphs, 10 ms / 5 ms with decoding
    assert rows == [
        "| mobilenet | 8.00 | 1.00 | 1.00 | 2.50x | 2.00x | 1.50x | 80.0 | 2.50x "
        "| 4.00 | 2.25x | 2.00x |"
    ]
    assert not any(line.startswith("| resnet50") for line in cost_lines(smears))
