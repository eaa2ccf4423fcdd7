"""A simulated preemption for the resume tests: the training process dies right after checkpoint ``step``."""

from transformers import TrainerCallback


class KillAt(TrainerCallback):
    """Simulates a preemption: the process dies right after checkpoint ``step`` is written."""

    def __init__(self, step):
        self.step = step

    def on_save(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            raise KeyboardInterrupt(f"killed after step {self.step}")
