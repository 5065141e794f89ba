"""Swin Transformer backbone, numerically and key-for-key Mask2Former's ``D2SwinTransformer``.

Plain PyTorch (no detectron2, no timm). The released OVFormer Swin-B checkpoints store this
module under ``backbone.``: ``patch_embed.{proj,norm}``, ``layers.{i}.blocks.{j}.*``,
``layers.{i}.downsample.*`` (PatchMerging at the END of stage i < 3, as in the original Swin)
and ``norm{i}`` (one LayerNorm per returned feature map).

Conventions kept from D2Swin on purpose (they change the numbers):
- the image is zero-padded bottom/right to a multiple of the patch size;
- inside each block, the tokens are zero-padded to a multiple of the window AFTER ``norm1``
  and the padding is NOT masked in regular windows (padded tokens act as keys);
- a feature map smaller than the window is padded, never shrinks the window, and odd blocks
  always shift by ``window_size // 2`` (the classification Swin would clamp and not shift);
- the shifted-window mask uses -100 (not -inf) between regions.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["SwinBackbone", "D2SwinTransformer", "window_partition", "window_reverse", "shifted_window_mask"]


def window_partition(x: Tensor, window_size: int) -> Tensor:
    """(B, H, W, C) with H, W multiples of ``window_size`` -> (B*nW, ws, ws, C), row-major windows."""
    B, H, W, C = x.shape
    x = x.view(B, H // window_size, window_size, W // window_size, window_size, C)
    return x.permute(0, 1, 3, 2, 4, 5).contiguous().view(-1, window_size, window_size, C)


def window_reverse(windows: Tensor, window_size: int, H: int, W: int) -> Tensor:
    """Inverse of :func:`window_partition`: (B*nW, ws, ws, C) -> (B, H, W, C)."""
    C = windows.shape[-1]
    x = windows.view(-1, H // window_size, W // window_size, window_size, window_size, C)
    return x.permute(0, 1, 3, 2, 4, 5).contiguous().view(-1, H, W, C)


def shifted_window_mask(
    Hp: int, Wp: int, window_size: int, shift_size: int, *, device: torch.device | None = None,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """Additive mask (nW, ws*ws, ws*ws) for shifted windows on a padded (Hp, Wp) grid.

    After the cyclic roll, the last window row/column holds tokens from up to three bands that
    were not neighbours in the image; tokens may only attend within their own band pair
    (0 where the region ids match, -100 elsewhere, exactly as the original code).
    """
    img_mask = torch.zeros((1, Hp, Wp, 1), device=device, dtype=dtype)
    bands = (slice(0, -window_size), slice(-window_size, -shift_size), slice(-shift_size, None))
    cnt = 0
    for h in bands:
        for w in bands:
            img_mask[:, h, w, :] = cnt
            cnt += 1
    win = window_partition(img_mask, window_size).view(-1, window_size * window_size)
    diff = win.unsqueeze(1) - win.unsqueeze(2)
    return diff.masked_fill(diff != 0, -100.0).masked_fill(diff == 0, 0.0)


class DropPath(nn.Module):
    """Per-sample stochastic depth (as timm's ``DropPath``): identity at eval or when p == 0."""

    def __init__(self, p: float = 0.0) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: Tensor) -> Tensor:
        if self.p == 0.0 or not self.training:
            return x
        keep = 1.0 - self.p
        mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
        return x * mask.div_(keep)

    def extra_repr(self) -> str:
        return f"p={self.p}"


class Mlp(nn.Module):
    """fc1 -> GELU -> fc2 (dropout rate is 0 in every released config, so no dropout modules)."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.act(self.fc1(x)))


class WindowAttention(nn.Module):
    """Multi-head self-attention inside a window, with a learned relative position bias.

    ``relative_position_index`` (ws*ws, ws*ws) int64 is a persistent buffer because the
    released checkpoints contain it.
    """

    def __init__(self, dim: int, window_size: int, num_heads: int, qkv_bias: bool = True) -> None:
        super().__init__()
        self.window_size = window_size
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * window_size - 1) ** 2, num_heads))
        coords = torch.stack(torch.meshgrid(torch.arange(window_size), torch.arange(window_size), indexing="ij"))
        coords = coords.flatten(1)  # 2, ws*ws
        rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0) + (window_size - 1)  # N, N, 2 in [0, 2ws-2]
        self.register_buffer("relative_position_index", rel[..., 0] * (2 * window_size - 1) + rel[..., 1])
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        """x: (B*nW, N=ws*ws, C); mask: (nW, N, N) additive or None -> (B*nW, N, C)."""
        B_, N, C = x.shape
        qkv = self.qkv(x).reshape(B_, N, 3, self.num_heads, C // self.num_heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]  # each (B*nW, nH, N, hd)
        attn = (q * self.scale) @ k.transpose(-2, -1)
        bias = self.relative_position_bias_table[self.relative_position_index.view(-1)].view(N, N, -1)
        attn = attn + bias.permute(2, 0, 1).unsqueeze(0)
        if mask is not None:
            nW = mask.shape[0]  # windows are batch-major: index b*nW + w
            attn = (attn.view(B_ // nW, nW, self.num_heads, N, N) + mask[None, :, None]).view(B_, self.num_heads, N, N)
        # explicit softmax rather than SDPA: bit-for-bit the official formulation
        x = (attn.softmax(dim=-1) @ v).transpose(1, 2).reshape(B_, N, C)
        return self.proj(x)


class SwinBlock(nn.Module):
    """(Shifted-)window attention + MLP, both pre-norm with residuals and stochastic depth."""

    def __init__(self, dim: int, num_heads: int, window_size: int, shift_size: int, mlp_ratio: float,
                 qkv_bias: bool, drop_path: float) -> None:
        super().__init__()
        self.window_size, self.shift_size = window_size, shift_size
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention(dim, window_size, num_heads, qkv_bias)
        self.drop_path = DropPath(drop_path)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: Tensor, H: int, W: int, mask: Tensor | None) -> Tensor:
        """x: (B, H*W, C); mask: shifted-window mask of the padded grid -> (B, H*W, C)."""
        B, L, C = x.shape
        ws, shift = self.window_size, self.shift_size
        y = self.norm1(x).view(B, H, W, C)
        # pad after norm1 (padding stays zero, as in D2Swin), then roll the padded grid
        pad_b, pad_r = (ws - H % ws) % ws, (ws - W % ws) % ws
        y = F.pad(y, (0, 0, 0, pad_r, 0, pad_b))
        Hp, Wp = H + pad_b, W + pad_r
        if shift > 0:
            y = torch.roll(y, shifts=(-shift, -shift), dims=(1, 2))
        y = self.attn(window_partition(y, ws).view(-1, ws * ws, C), mask if shift > 0 else None)
        y = window_reverse(y.view(-1, ws, ws, C), ws, Hp, Wp)
        if shift > 0:
            y = torch.roll(y, shifts=(shift, shift), dims=(1, 2))
        y = y[:, :H, :W, :].reshape(B, H * W, C)
        x = x + self.drop_path(y)
        return x + self.drop_path(self.mlp(self.norm2(x)))


class PatchMerging(nn.Module):
    """2x2 neighbourhood concat -> LayerNorm(4C) -> Linear(4C, 2C, bias=False); odd sizes zero-padded."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)
        self.norm = nn.LayerNorm(4 * dim)

    def forward(self, x: Tensor, H: int, W: int) -> Tensor:
        """(B, H*W, C) -> (B, ceil(H/2)*ceil(W/2), 2C)."""
        B, L, C = x.shape
        x = F.pad(x.view(B, H, W, C), (0, 0, 0, W % 2, 0, H % 2))
        # order matters for checkpoint compatibility: (0,0), (1,0), (0,1), (1,1) as (row, col)
        x = torch.cat([x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]], -1)
        return self.reduction(self.norm(x.view(B, -1, 4 * C)))


class SwinStage(nn.Module):
    """One stage (``BasicLayer``): blocks alternating shift 0 / ws//2, then optional PatchMerging."""

    def __init__(self, dim: int, depth: int, num_heads: int, window_size: int, mlp_ratio: float,
                 qkv_bias: bool, drop_path: Sequence[float], downsample: bool) -> None:
        super().__init__()
        self.window_size, self.shift_size = window_size, window_size // 2
        self.blocks = nn.ModuleList(
            SwinBlock(dim, num_heads, window_size, 0 if j % 2 == 0 else window_size // 2, mlp_ratio, qkv_bias,
                      drop_path[j])
            for j in range(depth)
        )
        self.downsample = PatchMerging(dim) if downsample else None

    def forward(self, x: Tensor, H: int, W: int) -> tuple[Tensor, int, int, Tensor, int, int]:
        """x: (B, H*W, C) -> (stage output (B, H*W, C), H, W, next input, next H, next W)."""
        ws = self.window_size
        Hp, Wp = -(-H // ws) * ws, -(-W // ws) * ws
        # computed per call (input sizes vary), shared by the stage's shifted blocks
        mask = shifted_window_mask(Hp, Wp, ws, self.shift_size, device=x.device, dtype=x.dtype) \
            if self.shift_size > 0 and len(self.blocks) > 1 else None
        for blk in self.blocks:
            x = blk(x, H, W, mask)
        if self.downsample is None:
            return x, H, W, x, H, W
        return x, H, W, self.downsample(x, H, W), (H + 1) // 2, (W + 1) // 2


class PatchEmbed(nn.Module):
    """Conv2d(3, C, p, stride p) (+ LayerNorm); input zero-padded bottom/right to a multiple of p."""

    def __init__(self, patch_size: int, embed_dim: int, norm: bool) -> None:
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Conv2d(3, embed_dim, kernel_size=patch_size, stride=patch_size)
        self.norm = nn.LayerNorm(embed_dim) if norm else None

    def forward(self, x: Tensor) -> Tensor:
        """(N, 3, H, W) -> (N, C, ceil(H/p), ceil(W/p))."""
        p = self.patch_size
        x = self.proj(F.pad(x, (0, (-x.shape[-1]) % p, 0, (-x.shape[-2]) % p)))
        if self.norm is not None:
            x = self.norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        return x


class SwinBackbone(nn.Module):
    """Swin Transformer feature extractor with D2SwinTransformer's parameter names and numerics.

    Defaults are OVFormer's released Swin-B (ImageNet-22k 384 pretraining, window 12).
    ``forward((N, 3, H, W))`` accepts any H, W and returns, for each ``i`` in ``out_indices``,
    ``"res{i+2}"``: (N, embed_dim * 2**i, H_i, W_i) with H_0 = ceil(H / patch_size) and
    H_{i+1} = ceil(H_i / 2) (same for W); for H, W multiples of 32 that is exactly H / 4 ... H / 32.
    Stochastic depth increases linearly from 0 to ``drop_path_rate`` over all blocks.
    """

    size_divisibility: int = 32

    def __init__(
        self, *, embed_dim: int = 128, depths: Sequence[int] = (2, 2, 18, 2),
        num_heads: Sequence[int] = (4, 8, 16, 32), window_size: int = 12, mlp_ratio: float = 4.0,
        patch_size: int = 4, qkv_bias: bool = True, drop_path_rate: float = 0.3, ape: bool = False,
        patch_norm: bool = True, pretrain_img_size: int = 384, out_indices: Sequence[int] = (0, 1, 2, 3),
    ) -> None:
        super().__init__()
        if len(depths) != len(num_heads):
            raise ValueError(f"depths {tuple(depths)} and num_heads {tuple(num_heads)} differ in length")
        self.depths, self.num_heads = tuple(depths), tuple(num_heads)
        self.out_indices = tuple(sorted(set(out_indices)))
        if not self.out_indices or not all(0 <= i < len(depths) for i in self.out_indices):
            raise ValueError(f"out_indices {tuple(out_indices)} must be a non-empty subset of 0..{len(depths) - 1}")
        self.num_features = [embed_dim * 2**i for i in range(len(depths))]
        self.patch_embed = PatchEmbed(patch_size, embed_dim, patch_norm)
        self.ape = ape
        if ape:  # (1, C, P, P) at pretraining resolution, resized bicubically to the input in forward
            res = pretrain_img_size // patch_size
            self.absolute_pos_embed = nn.Parameter(torch.zeros(1, embed_dim, res, res))
            nn.init.trunc_normal_(self.absolute_pos_embed, std=0.02)
        dpr = torch.linspace(0, drop_path_rate, sum(depths), device="cpu").tolist()  # cpu: works under a meta device
        self.layers = nn.ModuleList(
            SwinStage(self.num_features[i], d, self.num_heads[i], window_size, mlp_ratio, qkv_bias,
                      dpr[sum(depths[:i]):sum(depths[: i + 1])], downsample=i < len(depths) - 1)
            for i, d in enumerate(depths)
        )
        for i in self.out_indices:
            self.add_module(f"norm{i}", nn.LayerNorm(self.num_features[i]))
        self.out_channels: dict[str, int] = {f"res{i + 2}": self.num_features[i] for i in self.out_indices}
        self.out_strides: dict[str, int] = {f"res{i + 2}": patch_size * 2**i for i in self.out_indices}
        self._init_linear_and_norm()

    def _init_linear_and_norm(self) -> None:
        # The Swin init (trunc-normal 0.02 Linear, zero bias, unit LayerNorm). D2Swin defines it but
        # never applies it; it only matters when training from scratch, checkpoints overwrite it.
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        """x: (N, 3, H, W) normalised image -> {"res2": (N, C, H/4, W/4), ..., "res5": (N, 8C, H/32, W/32)}."""
        if x.dim() != 4:
            raise ValueError(f"SwinBackbone expects (N, C, H, W), got {tuple(x.shape)}")
        x = self.patch_embed(x)
        Wh, Ww = x.shape[-2:]
        if self.ape:
            x = x + F.interpolate(self.absolute_pos_embed, size=(Wh, Ww), mode="bicubic")
        x = x.flatten(2).transpose(1, 2)  # (N, Wh*Ww, C)
        outs: dict[str, Tensor] = {}
        for i, layer in enumerate(self.layers):
            if i > self.out_indices[-1]:
                break  # later stages feed no output
            x_out, H, W, x, Wh, Ww = layer(x, Wh, Ww)
            if i in self.out_indices:
                x_out = getattr(self, f"norm{i}")(x_out)  # LayerNorm on tokens, before going NCHW
                outs[f"res{i + 2}"] = x_out.view(-1, H, W, self.num_features[i]).permute(0, 3, 1, 2).contiguous()
        return outs


# The name used in docs/ARCHITECTURE.md and in the official configs (MODEL.BACKBONE.NAME).
D2SwinTransformer = SwinBackbone
