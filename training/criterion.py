"""Set criterion of video-level training (the released `VideoSetCriterion`).

For every decoder layer (the final prediction plus each `aux_outputs` entry, matched
separately), after Hungarian matching:

* ``loss_object_ce``: 2-way cross-entropy [object, no-object] on every query, the
  no-object class weighted ``no_object_weight`` (released: 0.4, weighted mean).
* ``loss_ce``: federated sigmoid BCE on the class logits of *matched* queries only, over a
  sampled subset of categories (all present ones + negatives drawn with probability
  proportional to ``freq ** fed_power``), summed, divided by B*Q and scaled by 1.7.
* ``loss_mask`` / ``loss_dice``: point BCE and dice of each matched (query, frame) mask on
  ``num_points`` uncertainty-sampled points, summed and divided by the number of target
  instances (averaged over data-parallel ranks).

`forward` returns the unweighted terms (layer i of `aux_outputs` gets the suffix ``_i``);
`weighted` multiplies them by the loss weights.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from training.matcher import Prediction, VideoHungarianMatcher
from training.points import point_sample, uncertain_point_coords

#: released scaling of the federated classification loss
FED_LOSS_SCALE = 1.7


def federated_categories(target_classes: torch.Tensor, num_sample: int, num_classes: int,
                         weight: torch.Tensor | None) -> torch.Tensor:
    """Categories the classification loss looks at (released `get_fed_loss_inds`).

    Args:
        target_classes: (B, Q) int64, the matched class per query, ``num_classes`` if unmatched.
        num_sample: total size of the set (released: 50). As released, the "no object" index
            counts towards it when some query is unmatched.
        num_classes: K.
        weight: (K,) sampling weights of negatives (``freq ** 0.5``), or None for uniform.

    Returns:
        (S,) int64 indices in [0, K]: the present ones first (sorted), then the sampled
        negatives. Index K ("no object") may appear and is ignored by the caller.
    """
    appeared = torch.unique(target_classes)
    if len(appeared) >= num_sample:
        return appeared
    prob = torch.ones(num_classes + 1, device=target_classes.device)
    if weight is not None:
        prob[:num_classes] = weight.float().to(prob.device)
    prob[-1] = 0
    prob[appeared] = 0
    # fewer candidates than requested (small vocabularies): take all of them
    n = min(num_sample - len(appeared), int((prob > 0).sum()))
    if n == 0:
        return appeared
    return torch.cat([appeared, torch.multinomial(prob, n, replacement=False)])


def dice_loss(inputs: torch.Tensor, targets: torch.Tensor, num_masks: float) -> torch.Tensor:
    """Sum over rows of ``1 - (2|p.t| + 1) / (|p| + |t| + 1)``, divided by ``num_masks``.
    inputs (R, P) logits, targets (R, P) in {0, 1}."""
    p = inputs.sigmoid()
    loss = 1 - (2 * (p * targets).sum(-1) + 1) / (p.sum(-1) + targets.sum(-1) + 1)
    return loss.sum() / num_masks


def sigmoid_ce_loss(inputs: torch.Tensor, targets: torch.Tensor, num_masks: float) -> torch.Tensor:
    """Per-row mean BCE, summed over rows and divided by ``num_masks``. Shapes (R, P)."""
    return F.binary_cross_entropy_with_logits(inputs, targets, reduction="none").mean(1).sum() / num_masks


def check_target_grid(pred_masks: torch.Tensor, targets: list[dict[str, torch.Tensor]]) -> None:
    """Raise unless the target masks cover the predicted grid at one integer scale.

    Masks are compared at normalised coordinates over each tensor's extent, so a target of
    another aspect than the (B, Q, T, h, w) predictions (e.g. not padded to the model's
    size_divisibility, see `training.data.collate_clips`) would be silently stretched.
    """
    h, w = pred_masks.shape[-2:]
    for t in targets:
        ht, wt = t["masks"].shape[-2:]
        if ht % h or wt % w or ht // h != wt // w:
            raise ValueError(f"target masks are {ht}x{wt} but the predicted masks {h}x{w}: targets must "
                             "be padded to the model's input grid (training.data.collate_clips)")


class VideoSetCriterion(torch.nn.Module):
    """Losses of one training clip batch.

    Args:
        num_classes: K, the training vocabulary size.
        matcher: the Hungarian matcher.
        class_freq: (K,) category frequencies (videos per category) of the training data.
        weights: loss weights by term name (released: object 2, ce 2, mask 5, dice 5).
        no_object_weight: weight of the no-object class in the objectness CE (released 0.4).
        num_points, oversample_ratio, importance_sample_ratio: point sampling of mask losses.
        fed_num_classes: size of the federated category set (released 50).
        fed_power: exponent on frequencies for the negative sampling (released 0.5).
        deep_supervision: also supervise every `aux_outputs` layer.
        fixed_points: (P, 2) points in [0, 1] used for every mask instead of the
            uncertainty-sampled ones (tests, debugging).
    """

    def __init__(self, num_classes: int, matcher: VideoHungarianMatcher, class_freq: torch.Tensor,
                 weights: dict[str, float] | None = None, no_object_weight: float = 0.4,
                 num_points: int = 12544, oversample_ratio: float = 3.0,
                 importance_sample_ratio: float = 0.75, fed_num_classes: int = 50,
                 fed_power: float = 0.5, deep_supervision: bool = True,
                 fixed_points: torch.Tensor | None = None) -> None:
        super().__init__()
        if class_freq.shape != (num_classes,):
            raise ValueError(f"class_freq has shape {tuple(class_freq.shape)}, expected ({num_classes},)")
        self.num_classes = num_classes
        self.matcher = matcher
        self.weights = dict(weights or {"loss_object_ce": 2.0, "loss_ce": 2.0, "loss_mask": 5.0, "loss_dice": 5.0})
        self.register_buffer("object_class_weight", torch.tensor([1.0, no_object_weight]))
        self.register_buffer("fed_weight", class_freq.float() ** fed_power)
        self.num_points, self.oversample_ratio = num_points, oversample_ratio
        self.importance_sample_ratio = importance_sample_ratio
        self.fed_num_classes = fed_num_classes
        self.deep_supervision = deep_supervision
        self.fixed_points = fixed_points

    def loss_labels(self, out: Prediction, targets: list[dict], indices: list) -> dict[str, torch.Tensor]:
        """``loss_ce`` (federated sigmoid BCE) and ``loss_object_ce`` of one layer."""
        logits = out.pred_logits.float()  # (B, Q, K+1)
        b, q = logits.shape[:2]
        k = self.num_classes
        target_classes = torch.full((b, q), k, dtype=torch.int64, device=logits.device)
        for i, (src, tgt) in enumerate(indices):
            target_classes[i, src.to(logits.device)] = targets[i]["labels"].to(logits.device)[tgt]
        no_object = (target_classes == k).long()  # objectness target: 1 = no object
        onehot = F.one_hot(target_classes, k + 1)[:, :, :k].float()
        chosen = federated_categories(target_classes, self.fed_num_classes, k, self.fed_weight)
        fed_mask = torch.zeros(k + 1, device=logits.device)
        fed_mask[chosen] = 1
        bce = F.binary_cross_entropy_with_logits(logits[:, :, :k], onehot, reduction="none")
        loss_ce = FED_LOSS_SCALE * (bce * fed_mask[:k] * (1 - no_object)[:, :, None]).sum() / (b * q)
        loss_obj = F.cross_entropy(out.pred_object_logits.float().transpose(1, 2), no_object,
                                   self.object_class_weight)
        return {"loss_ce": loss_ce, "loss_object_ce": loss_obj}

    def loss_masks(self, out: Prediction, targets: list[dict], indices: list,
                   num_masks: float) -> dict[str, torch.Tensor]:
        """``loss_mask`` (point BCE) and ``loss_dice`` of one layer's matched masks."""
        src = torch.cat([out.pred_masks[i][s] for i, (s, _) in enumerate(indices)])  # (M, T, h, w)
        dev = src.device
        tgt = torch.cat([t["masks"].to(dev)[j] for t, (_, j) in zip(targets, indices)])  # (M, T, H, W)
        # every frame of every matched instance is its own mask with its own points
        src = src.float().flatten(0, 1)[:, None]
        tgt = tgt.float().flatten(0, 1)[:, None]
        if src.shape[0] == 0:
            zero = out.pred_masks.sum() * 0.0  # keeps the graph connected for DDP
            return {"loss_mask": zero, "loss_dice": zero}
        with torch.no_grad():
            if self.fixed_points is not None:
                coords = self.fixed_points.to(dev)[None].expand(src.shape[0], -1, -1)
            else:
                coords = uncertain_point_coords(src, self.num_points, self.oversample_ratio,
                                                self.importance_sample_ratio)
            labels = point_sample(tgt, coords).squeeze(1)
        logits = point_sample(src, coords).squeeze(1)
        return {"loss_mask": sigmoid_ce_loss(logits, labels, num_masks),
                "loss_dice": dice_loss(logits, labels, num_masks)}

    def forward(self, outputs: Prediction | Any, targets: list[dict[str, torch.Tensor]]
                ) -> dict[str, torch.Tensor]:
        """Unweighted loss terms of all supervised layers.

        Args:
            outputs: the model's `ClipOutput` (fields of `Prediction`, plus `aux_outputs`).
            targets: B dicts: "labels" (N_b,) int64, "masks" (N_b, T, Hp, Wp) float in {0,1}
                on the padded input grid (Hp, Wp = 4x the predicted mask size).

        Returns:
            {"loss_ce", "loss_object_ce", "loss_mask", "loss_dice"} for the last layer and
            the same with suffix ``_i`` for aux layer i.
        """
        check_target_grid(outputs.pred_masks, targets)
        num = torch.tensor([float(sum(len(t["labels"]) for t in targets))], device=outputs.pred_logits.device)
        world = 1
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.all_reduce(num)
            world = torch.distributed.get_world_size()
        num_masks = max(num.item() / world, 1.0)

        layers = [("", outputs)]
        if self.deep_supervision:
            layers += [(f"_{i}", aux) for i, aux in enumerate(getattr(outputs, "aux_outputs", None) or [])]
        losses: dict[str, torch.Tensor] = {}
        for suffix, layer in layers:
            indices = self.matcher(layer, targets)
            terms = {**self.loss_labels(layer, targets, indices),
                     **self.loss_masks(layer, targets, indices, num_masks)}
            losses.update({name + suffix: v for name, v in terms.items()})
        return losses

    def weighted(self, losses: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Multiply each term by its weight (the ``_i`` suffix is ignored for the lookup)."""
        out = {}
        for name, v in losses.items():
            base = name.rsplit("_", 1)[0] if name.rsplit("_", 1)[-1].isdigit() else name
            out[name] = v * self.weights[base]
        return out
