"""The two towers of Microsoft CLAP 2022, named as in the released checkpoint: CNN14 (PANNs) for audio, BERT for
text, each followed by MS-CLAP's projection head. :class:`~speechbrain_lmaczs.clap.msclap.MSCLAP2022` joins them.
"""

import torch
import torch.nn.functional as F
from torch import nn

from speechbrain_lmaczs.clap.base import cumulative_batch_norm_statistics

class Projection(nn.Module):
    """MS-CLAP's projection head: ``LN(l1(x) + dropout(l2(gelu(l1(x)))))``, both linear maps without bias.

    Parameters
    ----------
    d_in, d_out : int
        Input and output sizes.
    dropout : float
        Dropout on the residual branch (inactive in eval mode).

    Example
    -------
    >>> Projection(8, 4)(torch.randn(3, 8)).shape
    torch.Size([3, 4])
    """

    def __init__(self, d_in, d_out, dropout=0.5):
        super().__init__()
        self.linear1 = nn.Linear(d_in, d_out, bias=False)
        self.linear2 = nn.Linear(d_out, d_out, bias=False)
        self.layer_norm = nn.LayerNorm(d_out)
        self.drop = nn.Dropout(dropout)

    def forward(self, x):
        """(..., d_in) -> (..., d_out)."""
        x = self.linear1(x)
        return self.layer_norm(x + self.drop(self.linear2(F.gelu(x))))


class ConvBlock(nn.Module):
    """Two 3x3 conv + BatchNorm + ReLU layers followed by average pooling (one CNN14 stage)."""

    def __init__(self, in_channels, out_channels):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, bias=False)
        self.conv2 = nn.Conv2d(out_channels, out_channels, kernel_size=3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.bn2 = nn.BatchNorm2d(out_channels)

    def forward(self, x, pool_size):
        """(batch, in, time, freq) -> (batch, out, time // pool, freq // pool)."""
        # Out-of-place ReLU: hooks and autograd on the block outputs must see unmodified tensors.
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.relu(self.bn2(self.conv2(x)))
        return F.avg_pool2d(x, kernel_size=pool_size)


class Cnn14(nn.Module):
    """CNN14 of PANNs as used by MS-CLAP, from log-mel input (the front-end lives in :class:`LogMelFrontend`).

    Parameters
    ----------
    n_mels : int
        Mel bands of the input (``bn0`` normalises each band).
    conv_channels : sequence of 6 int
        Output channels of ``conv_block1..6`` (64 ... 2048 in the released model).
    embedding_dim : int
        Output size of ``fc1``.
    classes_num : int
        Output size of ``fc_audioset`` (kept so the checkpoint loads strictly; not used for embeddings).

    Example
    -------
    >>> cnn = Cnn14(64, (2, 2, 4, 4, 8, 8), 16, 3).eval()
    >>> maps = cnn.conv_maps(torch.randn(1, 1, 690, 64))
    >>> [tuple(m.shape[1:]) for m in maps[2:]]
    [(4, 86, 8), (4, 43, 4), (8, 21, 2), (8, 21, 2)]
    >>> cnn.embed(maps[-1]).shape
    torch.Size([1, 16])
    """

    def __init__(self, n_mels, conv_channels, embedding_dim, classes_num):
        super().__init__()
        if len(conv_channels) != 6:
            raise ValueError(f"CNN14 has 6 conv blocks: conv_channels needs 6 widths, got {list(conv_channels)}.")
        self.bn0 = nn.BatchNorm2d(n_mels)
        widths = [1] + [int(c) for c in conv_channels]
        for i in range(6):
            self.add_module(f"conv_block{i + 1}", ConvBlock(widths[i], widths[i + 1]))
        self.fc1 = nn.Linear(widths[-1], embedding_dim)
        self.fc_audioset = nn.Linear(embedding_dim, classes_num)

    def conv_maps(self, x):
        """Outputs of the 6 conv blocks, (batch, channels, time, freq) each; ``x`` is (batch, 1, time, mel)."""
        # bn0 normalises each mel band: BatchNorm2d over the channel axis, so mel goes there for a moment.
        x = self.bn0(x.transpose(1, 3)).transpose(1, 3)
        maps = []
        for i in range(1, 7):
            x = getattr(self, f"conv_block{i}")(x, pool_size=(2, 2) if i < 6 else (1, 1))
            x = F.dropout(x, p=0.2, training=self.training)
            maps.append(x)
        return maps

    @torch.no_grad()
    def calibrate_batch_norms(self, logmels):
        """Set ``bn0`` to -40 dB mean and 10 dB deviation and measure the conv blocks' statistics on ``logmels``
        (batch, time, mel); leaves the network in eval mode.

        Random conv weights shrink the activations block after block; without matching running statistics the
        embedding of a random network would hardly depend on the input.
        """
        self.bn0.running_mean.fill_(-40.0)
        self.bn0.running_var.fill_(100.0)
        self.eval()
        block_norms = [m for name, m in self.named_modules() if name.startswith("conv_block") and "bn" in name]
        with cumulative_batch_norm_statistics(block_norms):
            self.conv_maps(logmels.unsqueeze(1))

    def embed(self, last_map):
        """Deepest map (batch, channels, time, freq) -> clip embedding (batch, embedding_dim)."""
        x = last_map.mean(dim=3)
        x = x.amax(dim=2) + x.mean(dim=2)
        x = F.dropout(x, p=0.5, training=self.training)
        x = F.relu(self.fc1(x))
        return F.dropout(x, p=0.5, training=self.training)


class AudioTower(nn.Module):
    """``base`` (:class:`Cnn14`) and ``projection`` (:class:`Projection`), named as in the checkpoint."""

    def __init__(self, n_mels, conv_channels, embedding_dim, classes_num, proj_dim):
        super().__init__()
        self.base = Cnn14(n_mels, conv_channels, embedding_dim, classes_num)
        self.projection = Projection(embedding_dim, proj_dim)


class TextTower(nn.Module):
    """``base`` (``transformers.BertModel``) and ``projection`` (:class:`Projection`) of the CLS token."""

    def __init__(self, bert_config, proj_dim):
        super().__init__()
        from transformers import BertModel

        self.base = BertModel(bert_config, add_pooling_layer=True)
        self.projection = Projection(bert_config.hidden_size, proj_dim)

    def forward(self, input_ids, attention_mask, token_type_ids):
        """Token ids (batch, length) -> projected, un-normalised CLS embedding (batch, proj_dim)."""
        hidden = self.base(
            input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
        ).last_hidden_state
        return self.projection(hidden[:, 0])


def calibration_clips(sample_rate, n_samples):
    """Noise at two levels, two tones, a chirp and near-silence: a spread of what the encoder will meet."""
    t = torch.arange(n_samples) / sample_rate
    noise = torch.randn(2, n_samples)
    chirp_phase = 2 * torch.pi * (200 * t + 1500 * t**2)
    return torch.stack(
        [
            0.3 * noise[0],
            0.01 * noise[1],
            0.5 * torch.sin(2 * torch.pi * 440 * t),
            0.2 * torch.sin(2 * torch.pi * 3000 * t),
            0.3 * torch.sin(chirp_phase),
            1e-4 * noise[0],
        ]
    )
