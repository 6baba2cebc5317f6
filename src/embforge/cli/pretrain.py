"""`embforge pretrain ...`: the pretraining tools around `embforge train configs/retromae.yaml`.

* ``tokenizer``: train a unigram tokenizer (XLM-R layout) on raw text of new languages.
* ``build``: a randomly initialised XLM-R-style masked-LM of a named size for a tokenizer.
* ``extend-positions``: grow a pretrained encoder's position table (e.g. 514 -> 8194).

Training itself runs through ``embforge train CONFIG`` (recipes ``retromae``, ``mlm``,
``contrastive``).

Each command imports what it runs inside its function: torch, transformers and the
pretraining modules are heavy, and `embforge --help` must not load them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from embforge.cli._common import model_option, output_option
from embforge.cli._outputs import claim

pretrain_app = typer.Typer(
    help="Pretraining tools: train a tokenizer, build a model from scratch, extend positions. "
    "Train with `embforge train configs/retromae.yaml` / `configs/mlm.yaml`.",
    no_args_is_help=True,
    rich_markup_mode=None,
)


@pretrain_app.command("tokenizer")
def tokenizer_cmd(
    inputs: list[Path] = typer.Argument(
        ..., help="Raw text: .txt (a text a line), .jsonl ('text' field), SQuAD .json, KLUE .tsv, or folders."
    ),
    output: Path = output_option("Directory to write the tokenizer to."),
    vocab_size: int = typer.Option(8000, help="Vocabulary size including <s> <pad> </s> <unk> <mask>."),
    max_texts: Optional[int] = typer.Option(None, help="Use at most this many texts."),
    max_length: int = typer.Option(512, help="The tokenizer's default truncation length."),
) -> None:
    """Train a sentencepiece-style unigram tokenizer, saved as an XLM-R tokenizer."""
    claim(output, directory=True, inputs=inputs)
    from embforge.pretrain.corpus import read_texts
    from embforge.pretrain.tokenizer import train_tokenizer

    texts = read_texts(*inputs, limit=max_texts)
    tok = train_tokenizer(texts, vocab_size=vocab_size, model_max_length=max_length, output_dir=output)
    n = sum(len(x) for x in tok(texts[:1000])["input_ids"])
    typer.echo(
        f"trained on {len(texts)} texts: {len(tok)} tokens -> {output} ({n / min(len(texts), 1000):.1f} tokens/text)"
    )


@pretrain_app.command("build")
def build_cmd(
    tokenizer: Path = typer.Argument(
        ..., help="Tokenizer directory (e.g. from `embforge pretrain tokenizer`)."
    ),
    output: Path = output_option("Directory for the new masked-LM."),
    size: str = typer.Option(
        "xlmr-small", help="Named size: xlmr-tiny, -mini, -small, -medium, -base, -large."
    ),
    max_length: int = typer.Option(512, help="Longest input in tokens (position rows = this + 2)."),
    seed: int = typer.Option(0, help="Initialisation seed."),
) -> None:
    """Build a randomly initialised XLM-R-style masked-LM for a tokenizer (then pretrain it)."""
    claim(output, directory=True, inputs=[tokenizer])
    from transformers import AutoTokenizer

    from embforge.model.builders import build_masked_lm

    tok = AutoTokenizer.from_pretrained(str(tokenizer))
    lm = build_masked_lm(size, tok, max_length=max_length, seed=seed)
    tok.model_max_length = max_length
    lm.save_pretrained(str(output))
    tok.save_pretrained(str(output))
    n = sum(p.numel() for p in lm.parameters())
    typer.echo(f"{size}: {n / 1e6:.1f}M parameters, vocab {len(tok)}, {max_length} tokens -> {output}")


@pretrain_app.command("extend-positions")
def extend_cmd(
    model: str = model_option(
        "Transformers model directory or hub id (with or without MLM head).", required=True
    ),
    output: Path = output_option("Directory for the extended model."),
    max_positions: int = typer.Option(8194, help="New number of position rows (8194 = 8192 XLM-R tokens)."),
    init: str = typer.Option("copy", help="New rows: copy (tile the learned rows) or random."),
) -> None:
    """Extend the absolute position embeddings of an encoder; short inputs keep their outputs.

    Other files of a local model directory (sparse_linear.pt, colbert_linear.pt, ...) are copied along.
    """
    import shutil

    claim(output, directory=True)
    from transformers import AutoConfig, AutoModel, AutoModelForMaskedLM, AutoTokenizer

    from embforge.errors import CheckpointError
    from embforge.pretrain.positions import extend_positions

    try:
        cfg = AutoConfig.from_pretrained(model)
        has_head = any("MaskedLM" in a for a in (cfg.architectures or []))
        lm = (AutoModelForMaskedLM if has_head else AutoModel).from_pretrained(model)
        tok = AutoTokenizer.from_pretrained(model)
    except (OSError, ValueError) as e:
        raise CheckpointError(
            f"cannot load {model!r} with transformers ({str(e).splitlines()[0][:200]}); "
            "give a transformers/BGE-M3 model directory or hub id (embforge-layout dirs: save as bge-m3 first)"
        ) from None
    old = lm.config.max_position_embeddings
    extend_positions(lm, max_positions, init=init, tokenizer=tok)
    output.mkdir(parents=True, exist_ok=True)
    src = Path(model)
    if src.is_dir():
        for f in src.iterdir():
            if f.is_file() and f.suffix in {".pt", ".json"} and not (output / f.name).exists():
                if f.name not in {
                    "config.json",
                    "tokenizer.json",
                    "tokenizer_config.json",
                    "special_tokens_map.json",
                }:
                    shutil.copy2(f, output / f.name)
    lm.save_pretrained(str(output))
    tok.save_pretrained(str(output))
    typer.echo(f"positions {old} -> {max_positions} ({init}); max tokens {tok.model_max_length} -> {output}")


def register(app: typer.Typer) -> None:
    app.add_typer(pretrain_app, name="pretrain")
