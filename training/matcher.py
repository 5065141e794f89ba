"""Hungarian matching of a clip's queries to its ground-truth instances.

Same costs as the released `VideoHungarianMatcher`:
    C = w_class * -sqrt(sigmoid(cls_logit[target]) * softmax(obj)[object])
      + w_mask  * point BCE + w_dice * point dice,
with the mask terms computed over all frames of the clip on ``num_points`` uniformly
random points shared by every (query, target) pair. (The released code's `cost_object`
argument is stored but never used; the class term is weighted by the class weight.)
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

from training.points import point_sample


class Prediction(Protocol):
    """What the criterion reads from a model output or one of its `aux_outputs`."""

    pred_logits: torch.Tensor  # (B, Q, K+1) class logits, last column = no object
    pred_object_logits: torch.Tensor  # (B, Q, 2) [object, no-object]
    pred_masks: torch.Tensor  # (B, Q, T, Hp/4, Wp/4) mask logits


def pair_sigmoid_ce(inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean BCE of every prediction row against every target row.

    Args:
        inputs: (N, P) logits.  targets: (M, P) in {0, 1}.

    Returns:
        (N, M) mean over the P points.
    """
    pos = torch.nn.functional.softplus(-inputs)  # BCE with target 1
    neg = torch.nn.functional.softplus(inputs)  # BCE with target 0
    return (pos @ targets.T + neg @ (1 - targets).T) / inputs.shape[1]


def pair_dice(inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """(N, M) dice loss ``1 - (2|p.t| + 1) / (|p| + |t| + 1)`` with p = sigmoid(inputs)."""
    p = inputs.sigmoid()
    num = 2 * p @ targets.T
    den = p.sum(-1)[:, None] + targets.sum(-1)[None, :]
    return 1 - (num + 1) / (den + 1)


def _assign(cost: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    # non-finite costs (from fp overflow) would make scipy refuse the matrix
    if not np.isfinite(cost).all():
        finite = cost[np.isfinite(cost)]
        big = (np.abs(finite).max() + 1.0) * max(cost.shape) * 10 if finite.size else 1.0
        cost = np.nan_to_num(cost, nan=big, posinf=big, neginf=-big)
    return linear_sum_assignment(cost)


class VideoHungarianMatcher(torch.nn.Module):
    """One-to-one assignment of queries to target instances, per clip.

    Args:
        cost_class: weight of the class/objectness term (released: 2).
        cost_mask: weight of the point BCE (released: 5).
        cost_dice: weight of the point dice (released: 5).
        num_points: shared random points per clip frame (released: 12544).
        fixed_points: (P, 2) points in [0, 1] used instead of random ones (tests, debugging).
    """

    def __init__(self, cost_class: float = 2.0, cost_mask: float = 5.0, cost_dice: float = 5.0,
                 num_points: int = 12544, fixed_points: torch.Tensor | None = None) -> None:
        super().__init__()
        if cost_class == 0 and cost_mask == 0 and cost_dice == 0:
            raise ValueError("all matching costs are 0")
        self.cost_class, self.cost_mask, self.cost_dice = cost_class, cost_mask, cost_dice
        self.num_points = num_points
        self.fixed_points = fixed_points

    def cost_matrix(self, logits: torch.Tensor, object_logits: torch.Tensor, masks: torch.Tensor,
                    labels: torch.Tensor, target_masks: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
        """Cost of one clip.

        Args:
            logits: (Q, K+1); object_logits: (Q, 2); masks: (Q, T, h, w) logits;
            labels: (N,) vocabulary indices; target_masks: (N, T, H, W) in {0, 1};
            coords: (1, P, 2) shared points in [0, 1].

        Returns:
            (Q, N) float32 cost.
        """
        prob = (logits[:, :-1].float().sigmoid() * object_logits.float().softmax(-1)[:, :1]).sqrt()
        cost_class = -prob[:, labels]
        out = point_sample(masks.float(), coords.expand(masks.shape[0], -1, -1)).flatten(1)
        tgt = point_sample(target_masks.float(), coords.expand(target_masks.shape[0], -1, -1)).flatten(1)
        return (self.cost_class * cost_class + self.cost_mask * pair_sigmoid_ce(out, tgt)
                + self.cost_dice * pair_dice(out, tgt))

    @torch.no_grad()
    def forward(self, outputs: Prediction | Any, targets: list[dict[str, torch.Tensor]]
                ) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Match every clip of the batch.

        Args:
            outputs: predictions with (B, ...) fields, see `Prediction`.
            targets: B dicts with "labels" (N_b,) and "masks" (N_b, T, Hp, Wp).

        Returns:
            B pairs (query indices, target indices), int64, each of length min(Q, N_b),
            sorted by query index.
        """
        result = []
        for b, tgt in enumerate(targets):
            masks = outputs.pred_masks[b]
            if len(tgt["labels"]) == 0:
                empty = torch.zeros(0, dtype=torch.int64)
                result.append((empty, empty.clone()))
                continue
            if self.fixed_points is not None:
                coords = self.fixed_points.to(masks.device)[None]
            else:
                coords = torch.rand(1, self.num_points, 2, device=masks.device)
            cost = self.cost_matrix(outputs.pred_logits[b], outputs.pred_object_logits[b], masks,
                                    tgt["labels"], tgt["masks"].to(masks.device), coords)
            q, n = _assign(cost.cpu().numpy())
            result.append((torch.as_tensor(q, dtype=torch.int64), torch.as_tensor(n, dtype=torch.int64)))
        return result
