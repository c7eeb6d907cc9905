"""The pipeline config schema: one dataclass per section, each checking its own values.

Sections: `model` (model_schema.py: the keys shared by the detector families
and each family's own), `train_config`, `train_input_reader`, `eval_config`,
`eval_input_reader`, and the optional `shapes_dataset` (how to generate the
built-in synthetic dataset when its files are absent). A field's default is
the value used when the YAML omits the key.

Every section has `problems(prefix)`: its invalid values, each as one
"dotted.key is value; what to do" line (problems.py). `PipelineConfig.problems()`
collects all of them, and `validate` raises them together in one ConfigError.

Class ids follow the OD API: `model.num_classes` counts the object classes,
whose ids in the label map are 1..num_classes; id 0 is the background.
"""

from __future__ import annotations

import dataclasses
import itertools
from dataclasses import dataclass, field

from train_lib.config.coercion import PATHS, STRING_OR_SWITCH, Source, merge_into
from train_lib.config.model_schema import (  # noqa: F401  (the schema's model section)
    ACTIVATIONS,
    ARCHITECTURE_KEYS,
    ARCHITECTURES,
    BACKBONE_MODEL_IDS,
    MAX_LEVEL,
    MIN_LEVEL,
    AnchorConfig,
    BackboneConfig,
    DetectionHeadConfig,
    FpnConfig,
    HeadConfig,
    LossConfig,
    ModelConfig,
    NormConfig,
    PostProcessingConfig,
    ProposalsConfig,
    RoiAlignerConfig,
    RoiSamplerConfig,
    RpnConfig,
    RpnHeadConfig,
    architecture_key_problems,
    belongs_to,
)
from train_lib.config.problems import Checks, raise_problems

OPTIMIZERS = ("sgd", "adam")
# mixed_bfloat16_on_tpu: mixed_bfloat16 on a TPU, float32 elsewhere (the OD API's
# use_bfloat16; training/precision.py).
PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16", "mixed_bfloat16_on_tpu")
# train_config.graph_optimization (YAML's on/off, true/false read as enabled/disabled).
GRAPH_OPTIMIZATIONS = ("auto", "enabled", "disabled")
LR_SCHEDULES = ("constant", "cosine", "step")
FINE_TUNE_CHECKPOINT_TYPES = ("backbone", "detection", "full")
BAD_EXAMPLE_POLICIES = ("error", "skip")
COCO_METRICS = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100")


# ---------------------------------------------------------------- training


@dataclass
class OptimizerConfig:
    type: str = "sgd"  # sgd | adam
    momentum: float = 0.9  # sgd only
    beta_1: float = 0.9  # adam only
    beta_2: float = 0.999  # adam only
    epsilon: float = 1e-7  # adam only
    gradient_clip_norm: float = 0.0  # 0 disables clipping

    def problems(self, prefix: str = "train_config.optimizer") -> list[str]:
        c = Checks(prefix)
        c.choice("type", self.type, OPTIMIZERS)
        for name in ("momentum", "beta_1", "beta_2"):
            value = getattr(self, name)
            c.need(0 <= value < 1, name, value, "must be in [0, 1)")
        c.need(self.epsilon > 0, "epsilon", self.epsilon, "must be > 0")
        c.need(self.gradient_clip_norm >= 0, "gradient_clip_norm", self.gradient_clip_norm,
               "must be >= 0 (0 disables clipping)")
        return c.problems


@dataclass
class LearningRateConfig:
    schedule: str = "cosine"  # constant | cosine | step
    base: float = 0.01
    warmup_steps: int = 0
    warmup_start: float = 0.0  # learning rate at step 0 of the linear warmup
    cosine_alpha: float = 0.0  # cosine: final rate as a fraction of `base`
    boundaries: list[int] = field(default_factory=list)  # step: steps where the rate drops
    decay_factor: float = 0.1  # step: multiplier applied at each boundary

    def problems(self, prefix: str = "train_config.learning_rate", *,
                 num_steps: int = 1000) -> list[str]:
        """`num_steps` (train_config.num_steps) only shapes the suggested boundaries."""
        c = Checks(prefix)
        c.choice("schedule", self.schedule, LR_SCHEDULES)
        c.need(self.base > 0, "base", self.base, "must be > 0")
        # A warmup or boundary at or past num_steps is allowed: a short run (e.g.
        # --num_train_steps=200 on a config with 500 warmup steps) simply stops first.
        c.need(self.warmup_steps >= 0, "warmup_steps", self.warmup_steps, "must be >= 0")
        c.need(self.warmup_start >= 0, "warmup_start", self.warmup_start, "must be >= 0")
        c.need(0 <= self.cosine_alpha <= 1, "cosine_alpha", self.cosine_alpha,
               "must be in [0, 1]")
        if self.schedule == "step":
            b = self.boundaries
            c.need(len(b) > 0, "boundaries", b,
                   "the step schedule needs at least one boundary step, e.g. "
                   f"[{num_steps * 2 // 3}, {num_steps * 8 // 9}]")
            c.need(all(x > 0 for x in b) and all(x < y for x, y in itertools.pairwise(b)),
                   "boundaries", b, "must be strictly increasing positive steps")
            c.need(0 < self.decay_factor <= 1, "decay_factor", self.decay_factor,
                   "must be in (0, 1]")
        return c.problems


@dataclass
class AugmentationConfig:
    random_horizontal_flip: bool = True
    scale_min: float = 1.0  # scale jitter range; 1.0 and 1.0 disable it
    scale_max: float = 1.0

    def problems(self, prefix: str = "train_config.augmentation") -> list[str]:
        if 0 < self.scale_min <= self.scale_max:
            return []
        return [f"{prefix}.scale_min is {self.scale_min} and scale_max is "
                f"{self.scale_max}; they must satisfy 0 < scale_min <= scale_max (1.0 and 1.0 "
                "disable scale jitter)"]


@dataclass
class TrainConfig:
    batch_size: int = 8
    num_steps: int = 1000
    seed: int = 42
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    learning_rate: LearningRateConfig = field(default_factory=LearningRateConfig)
    augmentation: AugmentationConfig = field(default_factory=AugmentationConfig)
    steps_per_loop: int = 1  # training steps run inside one tf.function call
    log_every_n: int = 100  # OD API: a log line every 100 steps
    summary_every_n: int = 100
    fine_tune_checkpoint: str = ""
    # backbone | detection (this trainer's checkpoints: all but the class layer; the OD
    # API's: the backbone and FPN) | full (the class layer too, when its shape fits; the
    # OD API's box predictor too); see training/fine_tune.py
    fine_tune_checkpoint_type: str = "backbone"
    # Keras mixed precision: float32 | mixed_float16 (GPUs) | mixed_bfloat16 (TPUs, CPUs)
    # | mixed_bfloat16_on_tpu (mixed_bfloat16 on a TPU, float32 elsewhere).
    mixed_precision: str = "float32"
    jit_compile: bool = False  # compile each replica's step with XLA
    # Grappler: auto (disabled without GPU/TPU: faster start-up) | enabled | disabled.
    graph_optimization: str = field(default="auto", metadata=STRING_OR_SWITCH)

    def problems(self, prefix: str = "train_config") -> list[str]:
        c = Checks(prefix)
        for name in ("batch_size", "num_steps", "steps_per_loop", "log_every_n",
                     "summary_every_n"):
            c.need(getattr(self, name) >= 1, name, getattr(self, name), "must be >= 1")
        # TensorFlow takes a global seed of 0 for "no seed" where it checks its seeds,
        # and its seeded tf.data shuffle (the input order) then fails inside tracing.
        c.need(self.seed != 0, "seed", self.seed,
               "must not be 0 (TensorFlow's input shuffle cannot take a global seed of "
               "0); use any other integer, e.g. 42")
        c.problems += self.optimizer.problems(c.path("optimizer"))
        c.choice("mixed_precision", self.mixed_precision, PRECISIONS)
        c.choice("graph_optimization", self.graph_optimization, GRAPH_OPTIMIZATIONS)
        c.problems += self.learning_rate.problems(c.path("learning_rate"),
                                                  num_steps=self.num_steps)
        c.problems += self.augmentation.problems(c.path("augmentation"))
        c.choice("fine_tune_checkpoint_type", self.fine_tune_checkpoint_type,
                 FINE_TUNE_CHECKPOINT_TYPES)
        return c.problems


# ---------------------------------------------------------------- inputs and eval


@dataclass
class InputReaderConfig:
    # Files or globs; YAML may give one string.
    input_path: list[str] = field(default_factory=list, metadata=PATHS)
    label_map_path: str = ""
    shuffle_buffer_size: int = 256
    num_parallel_calls: int = -1  # -1: tf.data.AUTOTUNE
    # As the OD API's input reader: boxes of an example beyond this many are dropped
    # (and counted in the log).
    max_number_of_boxes: int = 100
    # A record that breaks the data contract (data/example_checks.py): `error` stops
    # with a message naming the file, the record and the rule; `skip` drops it and
    # counts it by rule.
    bad_example_policy: str = "error"
    # Training decodes and checks its records once, in memory, when they fit in this
    # many MiB (per input pipeline); 0 decodes each image every time it is read.
    # Evaluation reads its files each time.
    decoded_cache_mb: int = 2048
    # Evaluation reads every n-th example of these files (0 and 1: every one), as the
    # OD API's field; --sample_1_of_n_eval_examples overrides it. Training reads every
    # record: train_input_reader's must be 0 or 1.
    sample_1_of_n_examples: int = 1

    @property
    def every_nth(self) -> int:
        """The n of sample_1_of_n_examples (0 read as 1)."""
        return max(1, self.sample_1_of_n_examples)

    def problems(self, prefix: str) -> list[str]:
        """`prefix` is train_input_reader or eval_input_reader."""
        c = Checks(prefix)
        c.need(self.sample_1_of_n_examples >= 0, "sample_1_of_n_examples",
               self.sample_1_of_n_examples, "must be >= 0 (0 and 1: every example)")
        c.need(prefix != "train_input_reader" or self.sample_1_of_n_examples <= 1,
               "sample_1_of_n_examples", self.sample_1_of_n_examples,
               "training reads every record: set 0 or 1, and keep only the records to "
               "train on in its files")
        c.need(self.max_number_of_boxes >= 1, "max_number_of_boxes", self.max_number_of_boxes,
               "must be >= 1")
        c.choice("bad_example_policy", self.bad_example_policy, BAD_EXAMPLE_POLICIES)
        c.need(self.shuffle_buffer_size >= 1, "shuffle_buffer_size", self.shuffle_buffer_size,
               "must be >= 1 (1 disables shuffling)")
        c.need(self.num_parallel_calls == -1 or self.num_parallel_calls >= 1,
               "num_parallel_calls", self.num_parallel_calls, "must be -1 (autotune) or >= 1")
        c.need(self.decoded_cache_mb >= 0, "decoded_cache_mb", self.decoded_cache_mb,
               "must be >= 0 (0: no cache)")
        return c.problems


@dataclass
class EvalConfig:
    batch_size: int = 8
    eval_every_n: int = 0  # in-process evaluation during training; 0 disables
    # Evaluate the final step of a run that reaches num_steps (eval split configured).
    eval_at_end: bool = True
    metric_for_best: str = "AP"
    num_visualizations: int = 4

    def problems(self, prefix: str = "eval_config") -> list[str]:
        c = Checks(prefix)
        c.need(self.batch_size >= 1, "batch_size", self.batch_size, "must be >= 1")
        c.need(self.eval_every_n >= 0, "eval_every_n", self.eval_every_n,
               "must be >= 0 (0 disables evaluation during training)")
        c.choice("metric_for_best", self.metric_for_best, COCO_METRICS)
        c.need(self.num_visualizations >= 0, "num_visualizations", self.num_visualizations,
               "must be >= 0")
        return c.problems


@dataclass
class ShapesDatasetConfig:
    """Where and how to generate the synthetic shapes dataset when it is absent."""

    output_dir: str = ""  # empty: no generation
    num_train: int = 2000
    num_val: int = 200
    image_size: int = 128
    num_shards: int = 4
    seed: int = 0

    def problems(self, prefix: str = "shapes_dataset") -> list[str]:
        """Checked only when `output_dir` is set (otherwise nothing is generated)."""
        c = Checks(prefix)
        if self.output_dir:
            for name in ("num_train", "num_val", "num_shards"):
                c.need(getattr(self, name) >= 1, name, getattr(self, name), "must be >= 1")
            c.need(self.image_size >= 16, "image_size", self.image_size, "must be >= 16")
        return c.problems


@dataclass
class PipelineConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    train_config: TrainConfig = field(default_factory=TrainConfig)
    train_input_reader: InputReaderConfig = field(default_factory=InputReaderConfig)
    eval_config: EvalConfig = field(default_factory=EvalConfig)
    eval_input_reader: InputReaderConfig = field(default_factory=InputReaderConfig)
    shapes_dataset: ShapesDatasetConfig = field(default_factory=ShapesDatasetConfig)

    def problems(self) -> list[str]:
        """Every invalid value of a well-typed config, as 'path is value; what to do' lines."""
        return (self.model.problems("model")
                + self.train_config.problems("train_config")
                + self.train_input_reader.problems("train_input_reader")
                + self.eval_input_reader.problems("eval_input_reader")
                + self.eval_config.problems("eval_config")
                + self.shapes_dataset.problems("shapes_dataset"))


def to_dict(config: PipelineConfig) -> dict:
    """The config as plain YAML-ready data, without the `model` keys of the other
    architectures (ARCHITECTURE_KEYS)."""
    data = dataclasses.asdict(config)
    architecture = config.model.architecture

    def prune(node: dict, prefix: str) -> dict:
        out = {}
        for key, value in node.items():
            path = f"{prefix}.{key}"
            owner = belongs_to(path)
            if owner is not None and owner != architecture:
                continue
            out[key] = prune(value, path) if isinstance(value, dict) else value
        return out

    data["model"] = prune(data["model"], "model")
    return data


def validate(config: PipelineConfig) -> None:
    """Checks a config built in code by the same rules as a loaded one.

    Raises:
        ConfigError: a field of the wrong type (the first one found), else every
            invalid value at once, each with its key path, value and the fix.
    """
    typed = merge_into(PipelineConfig(), to_dict(config), Source("config"))
    raise_problems(typed.problems(), None)
