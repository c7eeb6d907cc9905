"""RunOptions: how a training run checkpoints and runs, as the command line sets it.

`model_main_tf2.run` builds one from its flags and passes it to `trainer.train`;
a caller in Python builds one or passes its fields to `train` as keywords. The
model, the data and the schedule are the config's (`PipelineConfig`), not these.
"""

from __future__ import annotations

import dataclasses

from train_lib.checkpointing.policy import CheckpointPolicy


@dataclasses.dataclass(frozen=True)
class RunOptions:
    """The checkpoint and run flags of one training run.

    num_train_steps: overrides train_config.num_steps when set (not 0 or None).
    checkpoint_every_n, max_to_keep, keep_checkpoint_every_n_hours: the checkpoint
      policy (checkpointing/policy.py), which checks them.
    record_summaries: TensorBoard summaries under <model_dir>/train.
    async_checkpoint: saves written on a thread (single-worker jobs only).
    deterministic: TensorFlow's op determinism (same seed, same losses, slower).
    """

    num_train_steps: int | None = None
    checkpoint_every_n: int = 1000
    max_to_keep: int = 7
    keep_checkpoint_every_n_hours: float | None = None
    record_summaries: bool = True
    async_checkpoint: bool = False
    deterministic: bool = False

    def checkpoint_policy(self) -> CheckpointPolicy:
        """The checkpoint policy these options describe (ValueError if one is invalid)."""
        return CheckpointPolicy(self.checkpoint_every_n, self.max_to_keep,
                                self.keep_checkpoint_every_n_hours)
