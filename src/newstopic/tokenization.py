"""Tokenizers: from the hub / a local HF directory, from a local WordPiece vocab.txt, or a
WordPiece trained on the task's own titles. All end up as a PreTrainedTokenizerFast saved
with save_pretrained, so later rules load them the same way."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path

from tokenizers import Tokenizer, decoders, normalizers, pre_tokenizers, processors, trainers
from tokenizers.models import WordPiece
from transformers import AutoTokenizer, PreTrainedTokenizerBase, PreTrainedTokenizerFast

from newstopic.atomic import atomic_path
from newstopic.encoder import from_hub
from newstopic.errors import ConfigError

SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def _bert_pipeline(model: WordPiece) -> Tokenizer:
    tok = Tokenizer(model)
    # No lowercasing and no accent stripping: NFD accent stripping would decompose Hangul
    # syllables into jamo.
    tok.normalizer = normalizers.BertNormalizer(
        clean_text=True, handle_chinese_chars=True, strip_accents=False, lowercase=False
    )
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece(prefix="##")
    return tok


def _finish(tok: Tokenizer, max_length: int) -> PreTrainedTokenizerFast:
    cls_id, sep_id = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)],
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        model_max_length=max_length,
    )


def train_wordpiece(
    texts: Iterable[str], vocab_size: int, min_frequency: int, max_length: int
) -> PreTrainedTokenizerFast:
    """Train a cased WordPiece tokenizer on `texts`."""
    tok = _bert_pipeline(WordPiece(unk_token="[UNK]", max_input_chars_per_word=100))
    trainer = trainers.WordPieceTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=SPECIAL_TOKENS,
        continuing_subword_prefix="##",
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    # The trainer numbers its initial alphabet in hash-map order, which changes from process
    # to process; renumber (special tokens first, then by string) so that the same vocabulary
    # always gets the same ids. WordPiece matches on the strings only. The learned set itself
    # can still differ in a few rare tokens between processes (~30 of 12,000 on the real
    # titles): the trainer breaks ties between equally frequent merges by those ids.
    learned = [t for t in tok.get_vocab() if t not in SPECIAL_TOKENS]
    vocab = {t: i for i, t in enumerate(SPECIAL_TOKENS + sorted(learned))}
    tok = _bert_pipeline(WordPiece(vocab, unk_token="[UNK]", max_input_chars_per_word=100))
    return _finish(tok, max_length)


def wordpiece_from_vocab(vocab_file: str | Path, max_length: int) -> PreTrainedTokenizerFast:
    """A BERT-style WordPiece tokenizer from a local vocab.txt."""
    path = Path(vocab_file)
    if not path.is_file():
        raise ConfigError(f"tokenizer.vocab_file: {path}: file not found")
    vocab: dict[str, int] = {}
    for i, line in enumerate(path.read_text(encoding="utf-8").splitlines()):
        token = line.rstrip("\r\n")
        if token and token not in vocab:
            vocab[token] = i
    missing = [t for t in SPECIAL_TOKENS if t not in vocab]
    if missing:
        raise ConfigError(f"tokenizer.vocab_file: {path}: special token {missing[0]} not in the vocab")
    tok = _bert_pipeline(WordPiece(vocab, unk_token="[UNK]", max_input_chars_per_word=100))
    return _finish(tok, max_length)


def pretrained_tokenizer(
    name_or_path: str, max_length: int, trust_remote_code: bool = False
) -> PreTrainedTokenizerBase:
    """The tokenizer of a hub model or a local HF directory."""
    tok = from_hub(AutoTokenizer, name_or_path, "a tokenizer from ", trust_remote_code=trust_remote_code)
    tok.model_max_length = max_length
    return tok


def build_tokenizer(tok_cfg: dict, model_cfg: dict, texts: Iterable[str]) -> PreTrainedTokenizerBase:
    """The tokenizer the config asks for (see tokenizer.source in the schema)."""
    source = tok_cfg["source"]
    if source == "pretrained":
        return pretrained_tokenizer(
            model_cfg["name_or_path"], tok_cfg["max_length"], model_cfg["trust_remote_code"]
        )
    if source == "vocab":
        return wordpiece_from_vocab(tok_cfg["vocab_file"], tok_cfg["max_length"])
    return train_wordpiece(texts, tok_cfg["vocab_size"], tok_cfg["min_frequency"], tok_cfg["max_length"])


def save_tokenizer(tokenizer: PreTrainedTokenizerBase, out_dir: str | Path) -> None:
    with atomic_path(out_dir) as tmp:
        tokenizer.save_pretrained(tmp)


def load_tokenizer(path: str | Path) -> PreTrainedTokenizerBase:
    path = Path(path)
    if not path.is_dir():
        raise ConfigError(f"{path}: tokenizer directory not found")
    return AutoTokenizer.from_pretrained(path)


def build_and_save_tokenizer(
    text_files: list[str], out_dir: str | Path, tok_cfg: dict, model_cfg: dict
) -> int:
    """The build_tokenizer stage: build the configured tokenizer (training it on the titles
    of `text_files` when source is 'train') and save it; returns its vocabulary size."""
    from newstopic.formats import read_titles

    tokenizer = build_tokenizer(tok_cfg, model_cfg, read_titles(text_files))
    save_tokenizer(tokenizer, out_dir)
    logging.getLogger("newstopic").info("tokenizer with %d tokens written to %s", len(tokenizer), out_dir)
    return len(tokenizer)
