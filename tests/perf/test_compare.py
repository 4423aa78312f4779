"""The compare run's verdicts (perf/compare.py) from made-up reports."""
import importlib.util
import json
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location("compare", ROOT / "perf" / "compare.py")
compare = importlib.util.module_from_spec(spec)
spec.loader.exec_module(compare)

TTFT = "added TTFT p99 ≤ 0.5 ms at half saturation"


def report(ttft_us, lag_us, rps=1000.0):
    return {
        "rps": rps,
        "errors": {},
        "latency": {"p50_us": 100, "p99_us": 200},
        "ttft": {"p99_us": ttft_us},
        "send_lag": {"p99_us": lag_us},
    }


def run(tmp_path, capsys, half):
    """half: repetition -> (direct, sluice) reports; the verdict line."""
    for i, (direct, sluice) in half.items():
        for name, r in (("direct", direct), ("sluice", sluice)):
            (tmp_path / f"half-{name}-{i}.json").write_text(json.dumps(r))
    compare.main([str(tmp_path), "3", "1000"])
    lines = [l for l in capsys.readouterr().out.splitlines() if l.startswith(f"| {TTFT}")]
    assert len(lines) == 1
    return [c.strip() for c in lines[0].strip("|").split("|")]


def test_added_ttft_is_the_difference_of_the_rows_medians(tmp_path, capsys):
    _, measured, met = run(tmp_path, capsys, {
        1: (report(300, 200), report(700, 200)),
        2: (report(400, 200), report(1_000, 200)),
        3: (report(350, 200), report(750, 250)),
    })
    assert (measured, met) == ("0.40 ms", "yes")


def test_a_repetition_whose_generator_fell_behind_is_left_out(tmp_path, capsys):
    # Repetition 2's direct run stalled: its TTFT would make the added
    # figure negative, as a stall once did.
    _, measured, met = run(tmp_path, capsys, {
        1: (report(300, 200), report(1_100, 200)),
        2: (report(5_400, 3_300), report(1_000, 200)),
        3: (report(350, 200), report(1_050, 250)),
    })
    assert measured == "0.75 ms, 2 of 3 repetitions (in the others the generator fell behind)"
    assert met == "no"


def test_no_verdict_when_the_generator_never_kept_its_schedule(tmp_path, capsys):
    _, measured, met = run(tmp_path, capsys, {
        1: (report(5_000, 2_500), report(700, 200)),
        2: (report(300, 200), report(9_000, 4_000)),
        3: (report(300, float("nan")), report(700, 200)),
    })
    assert measured.startswith("no verdict")
    assert met == "no verdict"


def test_the_medians_differ_not_the_differences_median(tmp_path, capsys):
    # As the table's rows: Sluice's median TTFT less direct's (1,066 - 252),
    # not the median of each repetition's difference (330).
    _, measured, _ = run(tmp_path, capsys, {
        1: (report(252, 200), report(1_066, 200)),
        2: (report(900, 200), report(1_200, 200)),
        3: (report(200, 200), report(530, 200)),
    })
    assert measured == "0.81 ms"
