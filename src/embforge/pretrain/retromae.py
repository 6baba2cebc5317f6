"""RetroMAE pretraining model: MLM encoder + one-layer enhanced decoder.

Xiao et al. 2022, "RetroMAE: Pre-Training Retrieval-oriented Language Models Via
Masked Auto-Encoder". The encoder is any transformers
masked-LM; its first-token hidden state is the sentence embedding ``h``. The
decoder rebuilds every token from ``h`` and a position-specific random sample
of the (unmasked) context, so the sentence content has to pass through ``h``.
After pretraining only the encoder is kept (:meth:`RetroMAE.save_encoder`).

Shape letters: B batch, T tokens, H hidden, V vocab.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from transformers import PreTrainedModel

from embforge.errors import ConfigError
from embforge.losses.retromae import retromae_loss
from embforge.pretrain.decoder import DecoderConfig, EnhancedDecoderLayer
from embforge.pretrain.export import save_pretrained_encoder
from embforge.pretrain.mlm_parts import (
    backbone_of,
    embeddings_accept_position_ids,
    mlm_head_of,
    position_ids_for,
)
from embforge.types import LossOutput

__all__ = ["RetroMAEBatch", "RetroMAE"]


@dataclass(frozen=True)
class RetroMAEBatch:
    """One RetroMAE training batch (built by :class:`embforge.pretrain.collate.RetroMAECollator`).

    Attributes:
        encoder_input_ids: (B, T) text with 15-30% of its tokens masked.
        attention_mask: (B, T) 1 for real tokens (right padded).
        encoder_labels: (B, T) original ids at the masked positions, -100 elsewhere.
        decoder_input_ids: (B, T) the unmasked text (the content stream's tokens).
        decoder_visible: (B, T, T) bool position-specific attention mask.
        decoder_labels: (B, T) every text token's id, -100 at special/padding positions.
    """

    encoder_input_ids: torch.Tensor
    attention_mask: torch.Tensor
    encoder_labels: torch.Tensor
    decoder_input_ids: torch.Tensor
    decoder_visible: torch.Tensor
    decoder_labels: torch.Tensor

    def to(self, device: torch.device | str) -> RetroMAEBatch:
        return RetroMAEBatch(*(t.to(device) for t in self.__dict__.values()))

    def __len__(self) -> int:
        return int(self.encoder_input_ids.shape[0])


class RetroMAE(nn.Module):
    """Masked auto-encoder for retrieval-oriented pretraining.

    Args:
        lm: a transformers masked-LM (``AutoModelForMaskedLM``); its backbone,
            embeddings and MLM head are shared with the decoder, as in the paper.
        decoder_config: sizes of the decoder layer; default: the encoder's.

    Example:
        >>> from transformers import BertConfig, BertForMaskedLM
        >>> lm = BertForMaskedLM(BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1,
        ...                                 num_attention_heads=2, intermediate_size=32))
        >>> model = RetroMAE(lm)
        >>> sum(p.numel() for p in model.decoder.parameters()) > 0
        True
    """

    def __init__(self, lm: PreTrainedModel, decoder_config: DecoderConfig | None = None) -> None:
        super().__init__()
        self.lm = lm
        backbone_of(lm)  # fail early on a model without a separate backbone
        mlm_head_of(lm)
        self.decoder = EnhancedDecoderLayer(decoder_config or DecoderConfig.from_hf(lm.config))
        emb = getattr(self.backbone, "embeddings", None)
        if isinstance(getattr(emb, "position_embeddings", None), nn.Embedding):
            self.own_positions = None  # share the encoder's absolute positions (BERT, XLM-R)
        else:  # rotary / relative encoders: the decoder learns its own positions
            max_len = int(getattr(lm.config, "max_position_embeddings", 512))
            self.own_positions = nn.Embedding(max_len, lm.config.hidden_size)
            self.own_norm = nn.LayerNorm(lm.config.hidden_size)
            nn.init.normal_(self.own_positions.weight, std=self.decoder.config.initializer_range)

    @property
    def backbone(self) -> PreTrainedModel:
        """The encoder without its MLM head (a submodule of ``self.lm``)."""
        return backbone_of(self.lm)

    def _head(self, hidden: torch.Tensor) -> torch.Tensor:
        """(..., H) -> (..., V) with the encoder's MLM head (shared by the decoder)."""
        return mlm_head_of(self.lm)(hidden)

    def encode(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """(B, T, H) last hidden states of the encoder."""
        return self.backbone(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state

    def _positions(self, T: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """((1, T) position ids, (1, T, H) position embeddings p_i)."""
        if self.own_positions is not None:
            ids = torch.arange(T, device=device)[None]
            return ids, self.own_positions(ids)
        ids = position_ids_for(self.backbone, T, device)
        table = getattr(getattr(self.backbone, "embeddings", None), "position_embeddings", None)
        if not isinstance(table, nn.Embedding):  # __init__ shares positions only when this table exists
            raise ConfigError(f"{type(self.backbone).__name__} lost its embeddings.position_embeddings table")
        return ids, table(ids)

    def _content(self, input_ids: torch.Tensor, position_ids: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
        """(B, T, H) e_i + p_i of the decoder input (through the encoder's embedding block when it has one)."""
        emb = getattr(self.backbone, "embeddings", None)
        if self.own_positions is None and emb is not None and embeddings_accept_position_ids(emb):
            return emb(input_ids=input_ids, position_ids=position_ids.expand_as(input_ids))
        return self.own_norm(self.lm.get_input_embeddings()(input_ids) + p)

    def decode(self, h: torch.Tensor, decoder_input_ids: torch.Tensor, visible: torch.Tensor) -> torch.Tensor:
        """Enhanced decoding: (B, H) sentence embeddings -> (B, T, H) decoder states.

        Query stream ``h + p_i``; content stream ``[h, e_1+p_1, ..., e_N+p_N]``.
        """
        T = decoder_input_ids.shape[1]
        position_ids, p = self._positions(T, decoder_input_ids.device)
        query = h[:, None, :] + p  # (B, T, H)
        content = self._content(decoder_input_ids, position_ids, p)
        content = torch.cat([h[:, None, :], content[:, 1:]], dim=1)  # (B, T, H)
        return self.decoder(query, content, visible)

    def forward(self, batch: RetroMAEBatch) -> LossOutput:
        """Total loss = encoder MLM loss + decoder reconstruction loss (parts logged separately)."""
        hidden = self.encode(batch.encoder_input_ids, batch.attention_mask)  # (B, T, H)
        enc_sel = batch.encoder_labels != -100
        enc_logits = self._head(hidden[enc_sel])  # (N, V): only the masked positions
        h = hidden[:, 0]  # (B, H) sentence embedding (first token)
        dec_hidden = self.decode(h, batch.decoder_input_ids, batch.decoder_visible)
        dec_sel = batch.decoder_labels != -100
        dec_logits = self._head(dec_hidden[dec_sel])  # (N', V)
        return retromae_loss(
            enc_logits, batch.encoder_labels[enc_sel], dec_logits, batch.decoder_labels[dec_sel]
        )

    @torch.no_grad()
    def reconstruct(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """(B, T) the decoder's argmax tokens when every position sees only ``h`` (a strict test of ``h``)."""
        h = self.encode(input_ids, attention_mask)[:, 0]
        B, T = input_ids.shape
        visible = torch.zeros(B, T, T, dtype=torch.bool, device=input_ids.device)
        visible[:, :, 0] = True
        return self._head(self.decode(h, input_ids, visible)).argmax(-1)

    def save_encoder(self, path: str | Path, tokenizer, format: str = "embforge") -> Path:
        """Save the encoder alone (no MLM head, no decoder) as an embforge encoder ([CLS] dense head)."""
        return save_pretrained_encoder(self.backbone, tokenizer, path, format=format)
