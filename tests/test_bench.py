"""The benchmark's own arithmetic: the memory slope, the machine share and each goal's verdict."""
from bench import scale
from bench.__main__ import lines


def test_marginal_cost_is_the_difference_between_two_grid_sizes():
    small = {"combinations": 2000, "main_cpu_seconds": 1.0, "main_peak_mib": 200.0, "sweep_seconds": 5.0}
    big = {"combinations": 20000, "main_cpu_seconds": 10.0, "main_peak_mib": 236.0, "sweep_seconds": 40.0}
    row = scale.marginal(small, big)
    assert row["marginal_main_cpu_ms_per_combination"] == 0.5
    assert row["peak_mib_per_1000_combinations"] == 2.0
    assert row["marginal_share_at_largest"] == 0.25  # 0.5 ms x 20,000 over 40 s


def test_each_goal_is_met_only_on_its_side_of_the_bound():
    result = {"steady_speedup": 50.0, "bound_share": 0.49, "lstm_speedup": 12.0,
              "orchestration_machine_share": 0.05, "peak_mib_per_1000_combinations": 2.5,
              "details": {"scale": [{}, {"combinations": 20000}]}}
    verdicts = [line.rsplit(": ", 1)[1] for line in lines(result)]
    assert verdicts == ["met)", "not met)", "met)", "met)", "not met)"]
    assert "20,000 combinations" in lines(result)[3]
