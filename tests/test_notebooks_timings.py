"""Where run_all.sh's expected time comes from."""

from kalavai_utils import notebooks


def test_a_first_run_expects_the_reference_runs_times_and_a_later_run_its_own(tmp_path):
    ref = tmp_path / "results"
    notebooks.record_timing(ref / "tiny", "tiny", "00_data", 30.0)
    run = tmp_path / "runs" / "tiny"
    assert notebooks.expected_seconds(notebooks.previous_timings(run, "tiny", ref), ["00_data"]) == (30.0, [])
    notebooks.record_timing(run, "tiny", "00_data", 12.0)
    assert notebooks.expected_seconds(notebooks.previous_timings(run, "tiny", ref), ["00_data", "01_base"]) == (
        12.0,
        ["01_base"],
    )
    # a partial run (--only): the notebooks it has not timed yet expect the reference run's time
    notebooks.record_timing(ref / "tiny", "tiny", "01_base", 100.0)
    assert notebooks.expected_seconds(notebooks.previous_timings(run, "tiny", ref), ["00_data", "01_base"]) == (
        112.0,
        [],
    )


def test_the_expected_time_names_one_untimed_notebook_and_counts_the_rest():
    assert (
        notebooks._expectation(0, ["01_base", "02_specialists", "03_fusion"])
        == "unknown (no earlier time for 01_base and 2 more)"
    )
    assert notebooks._expectation(0, ["07_inference"]) == "unknown (no earlier time for 07_inference)"
    assert notebooks._expectation(90, []) == f"about {notebooks.fmt_seconds(90)}"
    assert notebooks._expectation(90, ["07_inference"]).startswith(f"at least {notebooks.fmt_seconds(90)} (")
