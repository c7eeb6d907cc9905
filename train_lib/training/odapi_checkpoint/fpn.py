"""The OD API's Keras FPN into our `model.fpn.type: odapi` (families/odapi_fpn.py,
OdapiFpn), which computes its function: 2 variables per lateral, 5 per 3x3 convolution
and batch norm (26 at SSD's levels 3..7, 28 at Faster R-CNN's 2..6). `map_fpn`
pairs each of ours with the checkpoint's and checks its shape.

Where the OD API keeps it: under its feature extractor (an SSD's
`model/_feature_extractor/`, a Faster R-CNN's
`model/_feature_extractor_for_proposal_features/`), its top-down pyramid
(`fpn_features_generator`, a KerasFpnTopDownFeatureMaps) and the levels above the
backbone's (`coarse_feature_layers`); the SSD extractors keep both as private
attributes, so their names there start with `_`. Its layers are Python lists, so
the checkpoint numbers them by position. With `top` the backbone's last level read:

- `fpn_features_generator/top_layers/0`: the 1x1 lateral of level `top` (ours
  `lateral_<top>`);
- `fpn_features_generator/residual_blocks/<i>/0`: the 1x1 lateral of level
  `top - 1 - i` (ours `lateral_<level>`);
- `fpn_features_generator/conv_layers/<i>/0` and `/1`: that level's 3x3 convolution
  and its batch norm (ours `smooth_<level>`, `smooth_<level>_norm`);
- `coarse_feature_layers/<j>/0` and `/1`: level `top + 1 + j`'s stride-2 3x3
  convolution and its batch norm (ours `coarse_<level>`, `coarse_<level>_norm`).

(The OD API's `use_explicit_padding` puts a padding layer first in those lists: our
mapper refuses it, and such a checkpoint does not fit: the first variable missing is
named. Its `use_depthwise` makes the 3x3 convolutions separable, as ours with
model.fpn.use_separable_conv: their depthwise and pointwise kernels load by name.)
"""

from __future__ import annotations

import re

from train_lib.training.odapi_checkpoint.mapped import (
    Mapped,
    check_fits,
    checkpoint_key,
    does_not_fit,
)

_GENERATOR = re.compile(r"^(model/.+?/)(_?)fpn_features_generator/")


def checkpoint_paths(shapes) -> tuple[str, str] | None:
    """Where the checkpoint (its keys `shapes`) keeps the OD API's FPN: the prefixes of
    its top-down pyramid and of its coarse levels, or None if it has no FPN."""
    for key in sorted(shapes):
        found = _GENERATOR.match(key)
        if found:
            extractor, private = found.groups()
            return (f"{extractor}{private}fpn_features_generator/",
                    f"{extractor}{private}coarse_feature_layers/")
    return None


def layers(decoder, generator: str, coarse: str) -> list[tuple[str, str, object]]:
    """Our OdapiFpn's layers with weights, each as (the checkpoint path of the OD API's
    layer it stands for, ending in '/'; that layer's name in the OD API's feature
    extractor, e.g. `fpn_features_generator/top_layers/0`; our layer), in the OD API's
    order. `generator` and `coarse` are checkpoint_paths'."""
    ours = {layer.name: layer for layer in decoder.layers if layer.weights}
    laterals = sorted((int(name.split("_")[1]) for name in ours if name.startswith("lateral_")),
                      reverse=True)
    top, below = laterals[0], laterals[1:]
    above = sorted(int(name.split("_")[1]) for name in ours
                   if name.startswith("coarse_") and not name.endswith("_norm"))
    places = [(generator, "top_layers/0", f"lateral_{top}")]
    places += [(generator, f"residual_blocks/{i}/0", f"lateral_{level}")
               for i, level in enumerate(below)]
    for i, level in enumerate(below):
        places += [(generator, f"conv_layers/{i}/0", f"smooth_{level}"),
                   (generator, f"conv_layers/{i}/1", f"smooth_{level}_norm")]
    for level in above:
        j = level - top - 1
        places += [(coarse, f"{j}/0", f"coarse_{level}"),
                   (coarse, f"{j}/1", f"coarse_{level}_norm")]
    result = [(f"{base}{path}/", f"{base.rstrip('/').rsplit('/', 1)[-1]}/{path}", ours.pop(name))
              for base, path, name in places]
    if ours:
        raise ValueError(f"OdapiFpn layers without an OD API place: {sorted(ours)}")
    return result


def map_fpn(shapes: dict, prefix: str, decoder) -> list[Mapped]:
    """Each variable of our OdapiFpn (`decoder`) paired with the OD API FPN's in the
    checkpoint `prefix` (its keys and shapes `shapes`), checked by name and shape; none
    if the checkpoint has no FPN. TrainError naming the first variable that does not
    fit."""
    paths = checkpoint_paths(shapes)
    if paths is None:
        return []
    mapped = []
    for path, odapi_name, layer in layers(decoder, *paths):
        for variable in layer.variables:
            attribute, key = checkpoint_key(path, variable)
            where = f"{odapi_name}/{attribute}"
            check_fits(shapes, key, variable,
                       does_not_fit(prefix, "this model's FPN (model.fpn.type: odapi)"),
                       f"the OD API's FPN layer {where}; our {layer.name}/{attribute}",
                       "it must come from an OD API FPN with the same levels (model."
                       "min_level, max_level) and use_depthwise (ours model.fpn."
                       "use_separable_conv), without use_explicit_padding",
                       "The checkpoint's FPN has another depth (model.fpn.num_filters) or "
                       "reads another backbone")
            mapped.append(Mapped(variable, key, where, part="fpn"))
    return mapped
