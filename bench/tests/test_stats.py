"""The pure statistics the pages' figures come from."""

import unittest

from bench.harness import stats


class Alternate(unittest.TestCase):
    def test_runs_every_configuration_once_per_round_in_order(self):
        order = []
        results = stats.alternate(3, ["a", "b"], lambda c: order.append(c) or len(order))
        self.assertEqual(order, ["a", "b", "a", "b", "a", "b"])
        self.assertEqual(results, {"a": [1, 3, 5], "b": [2, 4, 6]})

    def test_zero_rounds_leave_every_configuration_empty(self):
        self.assertEqual(stats.alternate(0, ["a"], lambda c: 1), {"a": []})


class Medians(unittest.TestCase):
    def test_median_of_alternated_runs_per_key(self):
        runs = [{"rate": 89.3, "p99": 0.8}, {"rate": 99.0, "p99": 0.7}, {"rate": 87.1, "p99": 0.9}]
        self.assertEqual(stats.medians(runs, ("rate", "p99")), {"rate": 89.3, "p99": 0.8})

    def test_even_count_takes_the_mean_of_the_middle_two(self):
        self.assertEqual(stats.median([41, 42, 43, 45]), 42.5)


class Ratios(unittest.TestCase):
    def test_ratio_and_change(self):
        self.assertAlmostEqual(stats.ratio(75.4, 89.3), 0.8443, places=4)
        self.assertAlmostEqual(stats.change(31.2, 33.8), 0.0833, places=4)

    def test_cpu_per_request_in_microseconds(self):
        self.assertAlmostEqual(stats.per_request_us(1.1, 100_000), 11.0)

    def test_bytes_per_task(self):
        self.assertAlmostEqual(stats.bytes_per_task_kib(14_848, 1_986_150, 38_807), 50.8, places=1)
        self.assertEqual(stats.bytes_per_task_kib(100, 200, 0), 0.0)

    def test_verdict(self):
        self.assertEqual(stats.verdict(True), "met")
        self.assertEqual(stats.verdict(False), "**not met**")


class Memory(unittest.TestCase):
    SAMPLES = [(0, 10), (30, 20), (60, 30), (90, 31), (120, 32), (150, 40)]

    def test_mean_between_excludes_the_start(self):
        self.assertEqual(stats.mean_between(self.SAMPLES, 60, 120), 31.5)
        self.assertIsNone(stats.mean_between(self.SAMPLES, 200, 260))

    def test_settled_and_flat(self):
        at, low, high = stats.settled(self.SAMPLES, 60)
        self.assertEqual((at, low, high), (30, 30, 40))
        self.assertFalse(stats.flat(at, low, high, 5))
        self.assertTrue(stats.flat(at, low, high, 10))
        self.assertEqual(stats.settled(self.SAMPLES, 300), (None, None, None))
        self.assertIsNone(stats.flat(None, None, None, 1))


class OpenLoop(unittest.TestCase):
    def test_a_rate_is_held_within_two_percent_and_under_one_percent_late(self):
        self.assertTrue(stats.held(25000, 24998, 0.0052))
        self.assertFalse(stats.held(25000, 25000, 0.0104))
        self.assertFalse(stats.held(10000, 9700, 0.0))


if __name__ == "__main__":
    unittest.main()
