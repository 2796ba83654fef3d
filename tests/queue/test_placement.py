"""Placement decisions from GPU facts given as data: GPUs of different sizes, one busy."""

from __future__ import annotations

from lorakit.run.placement import Decision, GpuFacts, JobRequest, RunningJob, place

# a small studio box: one 24 GB card, one 48 GB card, one 80 GB card that ComfyUI is using
RTX4090 = GpuFacts(0, 24.0, 23.2, 0, "RTX 4090")
A6000 = GpuFacts(1, 48.0, 47.1, 0, "RTX A6000")
H100_BUSY = GpuFacts(2, 80.0, 30.0, 1, "H100")  # 50 GiB held by another program
BOX = [RTX4090, A6000, H100_BUSY]


def actions(ds: list[Decision]) -> list[tuple[str, str, tuple[int, ...]]]:
    return [(d.job_id, d.action, d.gpus) for d in ds]


def test_best_fit_keeps_big_gpus_for_big_jobs() -> None:
    jobs = [JobRequest("a", 17.0), JobRequest("b", 40.0), JobRequest("c", 18.0)]
    ds = place(jobs, BOX)
    # a takes the smallest GPU that fits; b the 48 GB card; c fits the busy H100's 30 GiB free
    assert actions(ds) == [("a", "start", (0,)), ("b", "start", (1,)), ("c", "start", (2,))]
    assert "GPU 0 (RTX 4090, 23.2 GiB free)" in ds[0].reason


def test_busy_gpu_counts_only_through_its_free_memory() -> None:
    ds = place([JobRequest("big", 42.0)], [H100_BUSY])
    assert ds[0].action == "wait"
    assert "GPU 2 has 30.0 GiB usable" in ds[0].reason
    ds = place([JobRequest("big", 42.0)], [GpuFacts(2, 80.0, 79.0, 1, "H100")])
    assert actions(ds) == [("big", "start", (2,))]


def test_never_fits() -> None:
    ds = place([JobRequest("huge", 90.0), JobRequest("x", 23.8)], [RTX4090, A6000])
    assert ds[0].action == "never"
    assert "the largest GPU this queue run may use has 48.0 GiB" in ds[0].reason
    # 23.8 + 0.5 margin does not fit a 24 GB card, but fits the A6000
    assert actions(ds)[1] == ("x", "start", (1,))
    ds = place([JobRequest("x", 23.8)], [RTX4090])
    assert ds[0].action == "never"
    ds = place([JobRequest("x", 23.8)], [RTX4090], margin_gib=0.0)
    assert ds[0].action == "wait"  # fits the total, not the 23.2 free now


def test_no_two_jobs_on_one_gpu_without_share() -> None:
    running = [RunningJob("r", (1,), 10.0)]
    facts = [GpuFacts(1, 48.0, 36.0, 1, "RTX A6000")]
    ds = place([JobRequest("n", 10.0)], facts, running=running)
    assert ds[0].action == "wait"
    assert "GPU 1 runs job r" in ds[0].reason
    ds = place([JobRequest("n", 10.0)], facts, running=running, share=True)
    assert actions(ds) == [("n", "start", (1,))]


def test_share_still_requires_both_to_fit() -> None:
    # the running job just started: NVML still shows 47 GiB free, but its 30 GiB estimate is reserved
    running = [RunningJob("r", (1,), 30.0)]
    ds = place([JobRequest("n", 20.0)], [A6000], running=running, share=True)
    assert ds[0].action == "wait"
    assert "GPU 1 has 18.0 GiB usable" in ds[0].reason
    ds = place([JobRequest("n", 17.0)], [A6000], running=running, share=True)
    assert ds[0].action == "start"


def test_jobs_started_in_one_round_reserve_their_memory() -> None:
    ds = place([JobRequest("a", 20.0), JobRequest("b", 20.0)], [A6000], share=True)
    assert actions(ds) == [("a", "start", (1,)), ("b", "start", (1,))]
    ds = place([JobRequest("a", 30.0), JobRequest("b", 20.0)], [A6000], share=True)
    assert [d.action for d in ds] == ["start", "wait"]


def test_a_gpu_locked_by_another_lorakit_run_is_busy() -> None:
    ds = place([JobRequest("a", 10.0)], [RTX4090, A6000], locked={0})
    assert actions(ds) == [("a", "start", (1,))]
    ds = place([JobRequest("a", 10.0)], [RTX4090], locked={0})
    assert ds[0].action == "wait" and "another lorakit run (lock held)" in ds[0].reason


def test_pinned_jobs_and_allowed_gpus() -> None:
    ds = place([JobRequest("p", 10.0, (1,))], BOX)
    assert actions(ds) == [("p", "start", (1,))]
    ds = place([JobRequest("p", 10.0, (2,))], BOX, allowed={0, 1})
    assert ds[0].action == "never" and "not among the GPUs this queue run may use (0, 1)" in ds[0].reason
    ds = place([JobRequest("p", 10.0, (7,))], BOX)
    assert ds[0].action == "never" and "GPU 7 does not exist" in ds[0].reason
    ds = place([JobRequest("p", 30.0, (0,))], BOX)
    assert ds[0].action == "never" and "GPU 0 has 24.0 GiB in all" in ds[0].reason
    # unpinned jobs stay inside the allowed set
    ds = place([JobRequest("u", 10.0)], BOX, allowed={2})
    assert actions(ds) == [("u", "start", (2,))]


def test_multi_gpu_job_needs_all_its_gpus_at_once() -> None:
    two = [GpuFacts(0, 80.0, 79.0), GpuFacts(1, 80.0, 79.0)]
    ds = place([JobRequest("dp", 30.0, (0, 1))], two)
    assert actions(ds) == [("dp", "start", (0, 1))]
    ds = place([JobRequest("dp", 30.0, (0, 1))], two, running=[RunningJob("r", (1,), 20.0)])
    assert ds[0].action == "wait" and "GPU 1 runs job r" in ds[0].reason
    ds = place([JobRequest("any2", 30.0, None, count=2)], [*two, GpuFacts(2, 24.0, 23.0)])
    assert actions(ds) == [("any2", "start", (0, 1))]
    ds = place([JobRequest("any3", 30.0, None, count=3)], [*two, GpuFacts(2, 24.0, 23.0)])
    assert ds[0].action == "never"


def test_waiting_job_is_not_starved_by_later_small_jobs() -> None:
    # "big" waits for the busy H100; "small" may use the free 4090 (backfill) but not the H100
    facts = [GpuFacts(0, 24.0, 23.0, 0), GpuFacts(2, 80.0, 30.0, 1)]
    jobs = [JobRequest("big", 60.0), JobRequest("small", 10.0), JobRequest("small2", 10.0)]
    ds = place(jobs, facts)
    assert actions(ds) == [("big", "wait", ()), ("small", "start", (0,)), ("small2", "wait", ())]
    assert "GPU 2 is kept for earlier job big" in ds[2].reason
    assert "GPU 0 runs job small" in ds[2].reason


def test_decisions_follow_queue_order_and_are_deterministic() -> None:
    same = [GpuFacts(0, 48.0, 47.0), GpuFacts(1, 48.0, 47.0)]
    ds = place([JobRequest("1", 10.0), JobRequest("2", 10.0), JobRequest("3", 10.0)], same)
    assert actions(ds) == [("1", "start", (0,)), ("2", "start", (1,)), ("3", "wait", ())]
    assert place([JobRequest("1", 10.0)], []) == [
        Decision("1", "never", (), "asks for 1 GPUs; this queue run may use 0")
    ]
