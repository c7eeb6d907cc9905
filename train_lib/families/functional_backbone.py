"""A backbone built as a Keras functional model, with Model Garden's backbone
interface: called on images it returns a dict of levels ("2".."5"), `output_specs`
gives their shapes, and `get_config` / `from_config` rebuild it from its arguments.
Our own backbones (keras_resnet.KerasResNetV1, efficientnet_endpoints'
OdapiEndpointsEfficientNet) derive from it and only build their graph; so does our
own FPN (odapi_fpn.OdapiFpn), whose input is the backbone's dict of levels, Model
Garden's decoder interface."""

from __future__ import annotations

import tensorflow as tf
import tf_keras


class FunctionalBackbone(tf_keras.Model):
    """Subclasses build `inputs` and a dict `levels` of output tensors from their
    arguments, then call `super().__init__(config, inputs, levels, **kwargs)` with
    `config` those arguments (what `from_config` passes back to their constructor)."""

    def __init__(self, config: dict, inputs, levels: dict[str, tf.Tensor], **kwargs):
        self._config = config
        self._output_specs = {level: value.get_shape() for level, value in levels.items()}
        super().__init__(inputs=inputs, outputs=levels, **kwargs)

    @property
    def output_specs(self) -> dict[str, tf.TensorShape]:
        return self._output_specs

    def get_config(self) -> dict:
        return dict(self._config)

    @classmethod
    def from_config(cls, config, custom_objects=None):
        return cls(**config)
