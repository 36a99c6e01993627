"""A small word-level tokenizer built offline on given texts (for the ``tiny`` random model in tests
and demos: no Hub download). BERT conventions: lowercase, ``[CLS] a [SEP] b [SEP]``, token_type_ids."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
from transformers import PreTrainedTokenizerFast

SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def build_offline_tokenizer(
    texts: Iterable[str], vocab_size: int = 1000, model_max_length: int = 512
) -> PreTrainedTokenizerFast:
    """A BERT-style word-level tokenizer over the most frequent words of ``texts``.

    Deterministic: the vocabulary is counted in Python and sorted by (-count, word). (The Rust
    WordPiece trainer breaks frequency ties in hash order, so two builds from the same texts could
    differ, and with them the model's embedding size: fatal for resume and equality tests.)
    ``[PAD]`` has id 0; unknown words map to ``[UNK]``. Returns a ``PreTrainedTokenizerFast``.
    """
    normalizer = normalizers.BertNormalizer(lowercase=True)
    pre = pre_tokenizers.BertPreTokenizer()
    counts: Counter[str] = Counter()
    for text in texts:
        counts.update(w for w, _ in pre.pre_tokenize_str(normalizer.normalize_str(text)))
    words = [w for w, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))]
    vocab = {t: i for i, t in enumerate(SPECIAL_TOKENS + words[: max(0, vocab_size - len(SPECIAL_TOKENS))])}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    tok.normalizer = normalizer
    tok.pre_tokenizer = pre
    cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls), ("[SEP]", sep)],
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        model_max_length=model_max_length,
        model_input_names=["input_ids", "token_type_ids", "attention_mask"],
    )
