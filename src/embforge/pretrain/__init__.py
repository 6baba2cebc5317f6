"""Pretraining before embedding fine-tuning: RetroMAE (Xiao et al. 2022) and MLM (Devlin et al. 2019).

Modules (import what you need; nothing heavy is imported here):

* ``tokenizer`` - train a unigram tokenizer for new languages (XLM-R layout).
* ``corpus`` - raw-text readers (txt, JSONL, SQuAD/XQuAD contexts, KLUE sentences).
* ``masking`` - BERT-style MLM masking and RetroMAE's position-specific decoding mask.
* ``decoder`` - RetroMAE's one-layer two-stream (enhanced) decoder.
* ``retromae`` - the RetroMAE model (encoder MLM + decoder reconstruction).
* ``mlm`` - masked-LM pretraining wrapper.
* ``collate`` / ``batches`` - texts -> masked batches; a resumable batch source.
* ``positions`` - extend absolute position embeddings (e.g. 514 -> 8194).
* ``export`` - save the pretrained backbone alone as an embforge ``Encoder``.

Named model sizes for models from scratch live in ``embforge.model.builders``; the recipes
that train these models are ``embforge.train.recipes.retromae`` and ``.mlm``.
"""

__all__: list[str] = []
