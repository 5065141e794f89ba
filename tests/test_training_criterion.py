"""Loss terms of one training step against values computed by hand on a tiny example."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch

from training.criterion import VideoSetCriterion, federated_categories
from training.matcher import VideoHungarianMatcher


def sp(x: float) -> float:
    """softplus: BCE of logit -x against target 1 (= of logit x against target 0)."""
    return math.log1p(math.exp(x))


def sig(x: float) -> float:
    return 1 / (1 + math.exp(-x))


# The 4 points are the centres of the 2x2 predicted-mask cells, in row-major cell order, so
# bilinear sampling is exact: the 8x8 targets are constant on the 4x4 block under each cell.
POINTS = torch.tensor([[0.25, 0.25], [0.75, 0.25], [0.25, 0.75], [0.75, 0.75]])


def _up(cells: list[list[int]]) -> torch.Tensor:
    """2x2 cell values -> 8x8 target mask."""
    return torch.tensor(cells, dtype=torch.float32).repeat_interleave(4, 0).repeat_interleave(4, 1)


def tiny_example() -> tuple[SimpleNamespace, list[dict]]:
    """B=1, Q=3 queries, K=3 classes, T=2 frames, masks 2x2 (targets 8x8).

    Instance A (class 0): frame 0 left column, frame 1 top-left cell.
    Instance B (class 2): absent in frame 0, right column in frame 1.
    Query 1 looks like A (margin 2), query 0 like B (frame 0 at -1), query 2 is undecided.
    """
    masks = torch.tensor([
        [[[-1.0, -1.0], [-1.0, -1.0]], [[-2.0, 2.0], [-2.0, 2.0]]],   # q0 ~ B
        [[[2.0, -2.0], [2.0, -2.0]], [[2.0, -2.0], [-2.0, -2.0]]],     # q1 ~ A
        [[[0.0, 0.0], [0.0, 0.0]], [[0.0, 0.0], [0.0, 0.0]]],         # q2
    ])[None]  # (1, 3, 2, 2, 2)
    logits = torch.tensor([[-1.0, -1.0, 1.0, 0.0], [2.0, -1.0, -1.0, 0.0], [0.0, 0.0, 0.0, 0.0]])[None]
    obj = torch.tensor([[1.0, 0.0], [2.0, 0.0], [0.0, 1.0]])[None]
    tmasks = torch.stack([
        torch.stack([_up([[1, 0], [1, 0]]), _up([[1, 0], [0, 0]])]),   # A
        torch.stack([_up([[0, 0], [0, 0]]), _up([[0, 1], [0, 1]])]),   # B
    ])  # (2, 2, 8, 8)
    layer = SimpleNamespace(pred_logits=logits, pred_object_logits=obj, pred_masks=masks)
    out = SimpleNamespace(pred_logits=logits, pred_object_logits=obj, pred_masks=masks,
                          aux_outputs=[SimpleNamespace(**vars(layer))])
    return out, [{"labels": torch.tensor([0, 2]), "masks": tmasks}]


def make_criterion(freq: list[float]) -> VideoSetCriterion:
    matcher = VideoHungarianMatcher(cost_class=2.0, cost_mask=5.0, cost_dice=5.0, fixed_points=POINTS)
    return VideoSetCriterion(3, matcher, torch.tensor(freq), no_object_weight=0.4, fixed_points=POINTS)


def test_matcher_assignment_and_cost_by_hand():
    out, targets = tiny_example()
    crit = make_criterion([3.0, 0.0, 1.0])
    q, n = crit.matcher(out, targets)[0]
    assert q.tolist() == [0, 1] and n.tolist() == [1, 0]  # q0 <-> B, q1 <-> A; q2 unmatched
    cost = crit.matcher.cost_matrix(out.pred_logits[0], out.pred_object_logits[0], out.pred_masks[0],
                                    targets[0]["labels"], targets[0]["masks"], POINTS[None])
    # (q1, A): class -2*sqrt(sigmoid(2) * softmax([2, 0])[0]) = -2*sigmoid(2); every one of the
    # 8 points (2 frames x 4) has BCE softplus(-2); dice over the 8 points concatenated.
    s2, sm2 = sig(2), sig(-2)
    dice = 1 - (2 * 3 * s2 + 1) / (3 * s2 + 5 * sm2 + 3 + 1)
    expected = -2 * s2 + 5 * sp(-2) + 5 * dice
    assert cost[1, 0].item() == pytest.approx(expected, rel=1e-5)


def test_loss_terms_by_hand():
    out, targets = tiny_example()
    crit = make_criterion([3.0, 0.0, 1.0])  # class 1 never appears in training: weight 0
    losses = crit(out, targets)
    s2, sm2, sm1 = sig(2), sig(-2), sig(-1)
    # objectness: q0 [1,0] -> object, q1 [2,0] -> object, q2 [0,1] -> no object (weight 0.4);
    # weighted mean of the cross-entropies
    obj = (sp(-1) + sp(-2) + 0.4 * sp(-1)) / 2.4
    # federated set: present {0, 2} (+ "no object"); class 1 has frequency 0 so is never
    # drawn. Matched q0 (target 2): logits -1 on class 0, +1 on class 2; q1 (target 0): +2, -1.
    ce = 1.7 * (sp(-1) + sp(-1) + sp(-2) + sp(-1)) / 3  # / (B*Q)
    # masks: rows (instance, frame); q1/A both frames margin 2; q0/B frame 0 all -1 vs empty,
    # frame 1 margin 2. Divided by the 2 target instances.
    mask = (sp(-2) + sp(-2) + sp(-1) + sp(-2)) / 2
    dice = ((1 - (4 * s2 + 1) / 5) + (1 - (2 * s2 + 1) / (s2 + 3 * sm2 + 1 + 1))
            + (1 - 1 / (4 * sm1 + 1)) + (1 - (4 * s2 + 1) / 5)) / 2
    for suffix in ("", "_0"):  # deep supervision: the aux layer is matched and scored alike
        assert losses["loss_object_ce" + suffix].item() == pytest.approx(obj, rel=1e-5)
        assert losses["loss_ce" + suffix].item() == pytest.approx(ce, rel=1e-5)
        assert losses["loss_mask" + suffix].item() == pytest.approx(mask, rel=1e-5)
        assert losses["loss_dice" + suffix].item() == pytest.approx(dice, rel=1e-5)
    weighted = crit.weighted(losses)
    total = sum(weighted.values()).item()
    assert total == pytest.approx(2 * (2 * obj + 2 * ce + 5 * mask + 5 * dice), rel=1e-5)


def test_federated_sampling_fixed_seed():
    k = 100
    freq = torch.arange(k, dtype=torch.float32)  # class 0 has frequency 0
    target = torch.tensor([[5, 7, k, k]])
    torch.manual_seed(0)
    chosen = federated_categories(target, 50, k, freq ** 0.5)
    # by hand: present {5, 7, no-object} first, then 47 drawn without replacement with
    # probability proportional to sqrt(freq), present ones and "no object" excluded
    prob = torch.cat([freq ** 0.5, torch.zeros(1)])
    prob[[5, 7, k]] = 0
    torch.manual_seed(0)
    expected = torch.cat([torch.tensor([5, 7, k]), torch.multinomial(prob, 47, replacement=False)])
    assert chosen.tolist() == expected.tolist()
    assert len(set(chosen.tolist())) == 50 and 0 not in chosen.tolist()


def test_federated_small_vocabulary_takes_every_candidate():
    chosen = federated_categories(torch.tensor([[1, 3]]), 50, 3, torch.tensor([1.0, 2.0, 0.0]))
    assert sorted(chosen.tolist()) == [0, 1, 3]  # class 2 has weight 0; 3 = "no object"


def test_no_targets_gives_finite_losses_and_gradients():
    out, _ = tiny_example()
    masks = out.pred_masks.clone().requires_grad_(True)
    out.pred_masks = masks
    out.aux_outputs = []
    crit = make_criterion([1.0, 1.0, 1.0])
    losses = crit(out, [{"labels": torch.zeros(0, dtype=torch.int64), "masks": torch.zeros(0, 2, 8, 8)}])
    assert all(torch.isfinite(v) for v in losses.values())
    assert losses["loss_ce"].item() == 0 and losses["loss_mask"].item() == 0
    sum(losses.values()).backward()
    assert masks.grad is not None


def test_uncertainty_sampled_points_train_masks():
    """With the released random point sampling, a gradient step lowers the mask loss."""
    torch.manual_seed(0)
    out, targets = tiny_example()
    masks = torch.zeros_like(out.pred_masks, requires_grad=True)
    crit = VideoSetCriterion(3, VideoHungarianMatcher(num_points=64), torch.ones(3), num_points=64)
    opt = torch.optim.SGD([masks], lr=20.0)
    first = None
    for _ in range(30):
        out.pred_masks, out.aux_outputs = masks, []
        losses = crit(out, targets)
        loss = losses["loss_mask"] + losses["loss_dice"]
        first = loss.item() if first is None else first
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.7 * first


def test_targets_on_the_models_padded_grid():
    """A 100x150 clip: the model pads it to 128x160 and predicts 32x40 masks. A prediction
    equal to the padded target (+-20 logits on the 4x4 cells) must cost ~0 and be matched;
    a target stretched over the padding (only padded to the batch maximum, 100x150, as
    before) instead matches the decoy query drawn from the stretched mask, and the mask and
    dice losses are 2.4 and 0.7."""
    from ovformer.factory import create_model
    from training.data import TrainClip, collate_clips

    h, w, t = 100, 150, 2
    masks = torch.zeros(2, t, h, w, dtype=torch.bool)  # edges on multiples of 4: exact cells
    masks[0, 0, 8:60, 12:100] = True
    masks[0, 1, 20:72, 40:128] = True
    masks[1, :, 64:96, 100:148] = True
    torch.manual_seed(0)
    clip = TrainClip(torch.rand(t, 3, h, w) * 255, torch.tensor([0, 1]), masks, ["a", "b"])
    batch = collate_clips([clip])
    target = batch.targets[0]["masks"]  # (2, T, Hp, Wp)

    # the prediction grid, from the model itself
    model = create_model("tiny").eval()
    with torch.no_grad():
        out = model(batch.frames, torch.randn(1, t, 512), torch.randn(3, 512))
    grid = out.pred_masks.shape[-2:]
    assert tuple(grid) == (32, 40) and tuple(target.shape[-2:]) == (4 * grid[0], 4 * grid[1])

    def logits(m: torch.Tensor) -> torch.Tensor:  # (N, T, 4h, 4w) {0,1} -> (N, T, h, w) +-20
        return m.float()[..., 2::4, 2::4] * 40 - 20

    stretched = torch.nn.functional.interpolate(masks[:1].float(), size=tuple(target.shape[-2:]), mode="nearest")
    pred = torch.stack([logits(stretched)[0], logits(target)[1], logits(target)[0],
                        torch.full((t, *grid), -20.0)])[None]  # q0 decoy(A), q1 = B, q2 = A, q3 empty
    layer = SimpleNamespace(pred_logits=torch.zeros(1, 4, 4), pred_object_logits=torch.zeros(1, 4, 2),
                            pred_masks=pred)
    # points at the centres of a 64x80 grid: each lies inside one 2x2 block of target pixels
    ys, xs = torch.meshgrid((torch.arange(64) + 0.5) / 64, (torch.arange(80) + 0.5) / 80, indexing="ij")
    points = torch.stack([xs.flatten(), ys.flatten()], 1)
    matcher = VideoHungarianMatcher(fixed_points=points)
    crit = VideoSetCriterion(3, matcher, torch.ones(3), deep_supervision=False, fixed_points=points)
    q, n = matcher(layer, batch.targets)[0]
    assert dict(zip(n.tolist(), q.tolist())) == {0: 2, 1: 1}
    losses = crit(layer, batch.targets)
    # every point is >= 2 px from an edge on the mask grid: |logit| >= 10 on the right side
    assert losses["loss_mask"].item() < 1e-3 and losses["loss_dice"].item() < 1e-3
