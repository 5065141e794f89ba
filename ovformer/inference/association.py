"""Clip-to-clip association: Hungarian matching on cosine similarity of query embeddings."""
from __future__ import annotations

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment


def associate(prev_embds: torch.Tensor, cur_embds: torch.Tensor) -> torch.Tensor:
    """Permutation that aligns the current clip's queries to the previous (aligned) clip's.

    Args:
        prev_embds: (Q, C) query embeddings of the already aligned previous clip.
        cur_embds: (Q, C) query embeddings of the current clip.
    Returns:
        (Q,) long tensor ``perm`` such that ``cur[perm][i]`` continues ``prev[i]``.
    """
    prev = torch.nn.functional.normalize(prev_embds.float(), dim=-1)
    cur = torch.nn.functional.normalize(cur_embds.float(), dim=-1)
    cost = (1.0 - prev @ cur.t()).cpu().numpy()  # rows: previous, columns: current
    rows, cols = linear_sum_assignment(cost)
    perm = np.empty(len(rows), dtype=np.int64)
    perm[rows] = cols
    return torch.from_numpy(perm)
