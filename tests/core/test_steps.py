"""One steps formula (dataset.plan.StepsMath): prepare's Schedule and the fit use it."""

from __future__ import annotations

import itertools

from lorakit.dataset.balance import Schedule
from lorakit.dataset.plan import StepsMath
from lorakit.gpu.fit import RunFacts, _steps


def test_schedule_is_the_steps_math_on_one_gpu() -> None:
    for ixr, batch, epochs in itertools.product((0, 1, 7, 67, 120, 1001), (1, 2, 3, 8), (1, 3, 10)):
        sched = Schedule(images=(ixr,), repeats=(1,), epochs=epochs, batch_size=batch, how="")
        math_ = StepsMath.compute(ixr, batch, epochs, None)
        assert (sched.steps_per_epoch, sched.total_steps) == (math_.steps_per_epoch, math_.total_steps)
        assert sched.formula() == math_.formula()


def test_fit_steps_count_the_gpus() -> None:
    one = RunFacts(epochs=10, visits_per_epoch=360)
    two = RunFacts(epochs=10, visits_per_epoch=360, n_gpus=2)
    assert _steps(one, 4, 4) == (900, 3600)
    assert _steps(two, 4, 4) == (450, 3600)  # each GPU takes a batch per step: half the steps
    assert _steps(two, 4, 4)[0] == StepsMath.compute(360, 4, 10, None, 2).total_steps
    # max_steps keeps the image visits when the batch changes, on any number of GPUs
    assert _steps(RunFacts(max_steps=1000), 2, 8) == (4000, 8000)
    assert _steps(RunFacts(max_steps=1000, n_gpus=2), 2, 8) == (4000, 16000)
