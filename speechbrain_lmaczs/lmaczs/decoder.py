"""The text-conditioned mask decoder M(t, h) of LMAC-ZS.

The decoder reads the audio encoder's hidden maps h (deepest first, each (batch, channels, time, freq)) and a text
embedding t, and outputs a mask in [0, 1] on the grid of the masked representation. It is a U-Net-like upsampling
path: transposed convolutions double the grid, each encoder map joins through a 1x1 lateral convolution, and
cross-attention blocks in the style of Stable Diffusion condition every level on the text (decoder features are the
queries; keys and values are ``n_text_tokens`` tokens projected from the joint-space text embedding).

Choices the paper leaves open, exposed as arguments: attention after every encoder level (``attention_levels``);
keys/values from the projected joint-space embedding (one interface for every backend: BERT token states are not
exposed by all of them); widths; an optional *input skip* (``input_skip``): the masked representation itself, in
dB and standardised per clip, joins the last full-resolution layer. Without it the finest information the decoder
has is the shallowest encoder map (CNN14's block 3: 1/8 of the input grid, eight mel bands per cell), so a mask can
only place an event to within such a cell; with it the mask can follow the event's own bins. The default widths
keep the decoder far lighter than the encoder (SpeechBrain's L-MAC decoder costs ~10x a CNN14 forward; see the
README's measured ratio).
"""

import torch
from torch import nn
from torch.nn import functional as F


class CrossAttention(nn.Module):
    """Residual cross-attention (positions attend to text tokens), then a text FiLM (per-channel scale/shift).

    The FiLM term lets a prompt switch whole feature channels on or off, which the additive attention output alone
    does poorly when there are few text tokens.
    """

    def __init__(self, channels, text_dim, n_heads):
        super().__init__()
        heads = max(1, min(n_heads, channels // 8))
        while channels % heads:
            heads -= 1
        self.norm = nn.GroupNorm(1, channels)
        self.attn = nn.MultiheadAttention(channels, heads, kdim=text_dim, vdim=text_dim, batch_first=True)
        self.film = nn.Linear(text_dim, 2 * channels)
        # Start as the identity on the FiLM path so training begins from the attention-only decoder.
        nn.init.zeros_(self.film.weight)
        nn.init.zeros_(self.film.bias)

    def forward(self, x, tokens):
        b, c, h, w = x.shape
        q = self.norm(x).flatten(2).transpose(1, 2)  # (b, h*w, c)
        out, _ = self.attn(q, tokens, tokens, need_weights=False)
        x = x + out.transpose(1, 2).reshape(b, c, h, w)
        scale, shift = self.film(tokens.mean(dim=1)).chunk(2, dim=-1)
        return x * (1 + scale[:, :, None, None]) + shift[:, :, None, None]


class ConvBlock(nn.Sequential):
    """3x3 conv, GroupNorm, GELU."""

    def __init__(self, in_ch, out_ch):
        super().__init__(
            nn.Conv2d(in_ch, out_ch, 3, padding=1),
            nn.GroupNorm(min(8, out_ch), out_ch),
            nn.GELU(),
        )


def _resize(x, size):
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False)


class MaskDecoder(nn.Module):
    """Text-conditioned mask decoder.

    Parameters
    ----------
    hidden_channels : list of int
        Channels of the encoder's hidden maps, deepest first (``CLAPBackend.hidden_channels``).
    text_dim : int
        Size of the joint-space text embedding.
    width : int
        Channels of the deepest decoder level; each following level halves it (not below ``min_width``).
    min_width : int
        Smallest number of channels.
    n_text_tokens : int
        Key/value tokens projected from the text embedding.
    n_heads : int
        Attention heads (fewer on narrow levels).
    n_final_upsamplings : int
        Transposed-convolution steps after the shallowest encoder map (3 takes CNN14's block-3 grid, 1/8 of the
        input, back to full resolution); the result is then resized to the exact output grid.
    attention_levels : int
        How many levels, from the deepest, get a cross-attention block (-1: all encoder levels).
    input_skip : int
        Channels of the input skip (0: none). With it, :meth:`forward` needs ``skip``, the representation in dB.

    Example
    -------
    >>> dec = MaskDecoder([64, 32, 16, 8], text_dim=12)
    >>> hidden = [torch.randn(2, 64, 21, 2), torch.randn(2, 32, 21, 2), torch.randn(2, 16, 43, 4),
    ...           torch.randn(2, 8, 86, 8)]
    >>> dec(hidden, torch.randn(2, 12), (690, 64)).shape
    torch.Size([2, 690, 64])
    """

    def __init__(
        self,
        hidden_channels,
        text_dim,
        width=128,
        min_width=16,
        n_text_tokens=4,
        n_heads=4,
        n_final_upsamplings=3,
        attention_levels=-1,
        input_skip=0,
    ):
        super().__init__()
        hidden_channels = list(hidden_channels)
        if not hidden_channels:
            raise ValueError("MaskDecoder needs at least one hidden map.")
        n_levels = len(hidden_channels)
        widths = [max(min_width, width // (2**i)) for i in range(n_levels)]
        token_dim = widths[0]
        self.n_text_tokens = int(n_text_tokens)
        self.text_proj = nn.Sequential(nn.Linear(text_dim, token_dim * self.n_text_tokens), nn.GELU())
        self.text_norm = nn.LayerNorm(token_dim)
        self.laterals = nn.ModuleList(nn.Conv2d(c, w, 1) for c, w in zip(hidden_channels, widths))
        self.ups = nn.ModuleList(
            nn.ConvTranspose2d(widths[i - 1], widths[i], kernel_size=2, stride=2) for i in range(1, n_levels)
        )
        self.blocks = nn.ModuleList(ConvBlock(w, w) for w in widths)
        n_att = n_levels if attention_levels < 0 else min(attention_levels, n_levels)
        self.attentions = nn.ModuleList(
            CrossAttention(w, token_dim, n_heads) if i < n_att else nn.Identity() for i, w in enumerate(widths)
        )
        head = []
        ch = widths[-1]
        for _ in range(n_final_upsamplings):
            nxt = max(min_width // 2, ch // 2)
            head += [nn.ConvTranspose2d(ch, nxt, kernel_size=2, stride=2), nn.GroupNorm(1, nxt), nn.GELU()]
            ch = nxt
        self.head = nn.Sequential(*head)
        self.input_skip = int(input_skip)
        if self.input_skip < 0:
            raise ValueError(f"input_skip={input_skip} must be >= 0.")
        if self.input_skip:
            self.skip_in = ConvBlock(1, self.input_skip)
            self.fuse = ConvBlock(ch + self.input_skip, ch)
        self.out = nn.Conv2d(ch, 1, 3, padding=1)

    def text_tokens(self, text):
        """(batch, text_dim) -> (batch, n_text_tokens, token_dim)."""
        tokens = self.text_proj(text).reshape(text.shape[0], self.n_text_tokens, -1)
        return self.text_norm(tokens)

    def decode_features(self, hidden, tokens):
        """Upsampling path over the encoder maps, conditioned on the text tokens."""
        x = None
        for i, h in enumerate(hidden):
            lateral = self.laterals[i](h)
            x = lateral if x is None else _resize(self.ups[i - 1](x), h.shape[-2:]) + lateral
            x = self.blocks[i](x)
            x = x if isinstance(self.attentions[i], nn.Identity) else self.attentions[i](x, tokens)
        return x

    def for_representation(self, hidden, text, x, domain):
        """Masks on the grid of the representation ``x`` of ``domain`` (what the Brain and the interpreter call):
        :meth:`forward` with ``out_size`` from ``x`` and, with an input skip, ``skip = domain.to_db(x)``."""
        return masks_on_grid(self, hidden, text, x, domain)

    def forward(self, hidden, text, out_size, skip=None, logits=False):
        """Mask (batch, time, freq) in [0, 1] for hidden maps and text embeddings of the same batch size.

        Parameters
        ----------
        hidden : list of torch.Tensor
            Encoder maps, deepest first, (batch, channels, time, freq).
        text : torch.Tensor
            (batch, text_dim) text embeddings, one per item.
        out_size : tuple of int
            (time, freq) of the representation the mask multiplies.
        skip : torch.Tensor, optional
            (batch, time, freq) the representation in dB (``domain.to_db(x)``); required with ``input_skip``,
            ignored without. Standardised per clip here, so its level does not matter.
        logits : bool
            Return the mask's logits (before the sigmoid) instead: what a cross-entropy on the mask needs, as the
            sigmoid of a saturated bin is exactly 0 or 1 in float32 and passes no gradient.
        """
        if len(hidden) != len(self.laterals):
            raise ValueError(f"MaskDecoder was built for {len(self.laterals)} hidden maps, got {len(hidden)}.")
        if text.shape[0] != hidden[0].shape[0]:
            raise ValueError("hidden maps and text embeddings must have the same batch size.")
        x = self.decode_features(hidden, self.text_tokens(text))
        x = _resize(self.head(x), out_size)
        if self.input_skip:
            if skip is None or skip.shape[0] != x.shape[0] or skip.dim() != 3:
                raise ValueError(
                    "This decoder was built with input_skip: pass skip, the (batch, time, freq) representation in dB."
                )
            flat = skip.flatten(1)
            mean, std = flat.mean(-1)[:, None, None], flat.std(-1)[:, None, None]
            s = _resize(((skip - mean) / (std + 1e-5))[:, None], out_size)
            x = self.fuse(torch.cat([x, self.skip_in(s)], dim=1))
        out = self.out(x)[:, 0]
        return out if logits else torch.sigmoid(out)


def masks_on_grid(decoder, hidden, text, x, domain, logits=False):
    """:meth:`MaskDecoder.for_representation` through ``decoder``, a :class:`MaskDecoder` or a wrapper of one
    (``DistributedDataParallel``, whose forward must be the one called for the gradients to be synchronized);
    ``logits``: the mask's logits instead (see :meth:`MaskDecoder.forward`)."""
    inner = getattr(decoder, "module", decoder)
    return decoder(hidden, text, x.shape[1:], skip=domain.to_db(x) if inner.input_skip else None, logits=logits)

