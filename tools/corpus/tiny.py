"""The tiny DPO setup every real run in this repository is made with: a word-level tokenizer, a random 2-layer,
64-wide Llama and the "what is three plus four ?" preference pairs.

Why one module: the fixtures (tests/fixtures/trl), the integration test (tests/test_integration_transformers.py) and
the corpus generator must train the same model on the same task, or the corpus calibrates the rules on something the
tests never see. Everything is built in memory: no hub download, so it runs offline on a CPU in seconds.
"""

from __future__ import annotations

import random
from typing import Any

# Number words 0-18: every sum of two digits has its word.
NUMBERS = [
    *("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"),
    *("ten", "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen"),
]
# Words of the long common tail that both answers share in the "template" variant (chosen and rejected then differ in
# one token out of many, which is what makes both rewards rise together under an SFT term).
TAIL = (
    *("that", "is", "the", "answer", "to", "the", "question", "so"),
    *("the", "answer", "is", "final", "and", "that", "is", "all"),
)


def build_tokenizer(extra_words: tuple[str, ...] = ()) -> Any:
    """A word-level fast tokenizer over the task's words (plus ``extra_words``), with pad/unk/bos/eos."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = ["<pad>", "<unk>", "<bos>", "<eos>", "what", "is", "plus", "?", *NUMBERS]
    words += [w for w in dict.fromkeys(extra_words) if w not in words]
    tokenizer = Tokenizer(models.WordLevel(vocab={w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, pad_token="<pad>", eos_token="<eos>", unk_token="<unk>", bos_token="<bos>"
    )


# The extra words one side gets in the "longer" variant: 6 words, so with the end-of-sequence token that side's answer
# is 8 tokens against 2, and its summed log-probability starts ~4x the other's (the length cue of issue 13's class 2).
LENGTH_TAIL = TAIL[:6]


def preference_rows(
    n: int, seed: int = 0, noise: float = 0.0, template: bool = False, longer: str = ""
) -> dict[str, list[str]]:
    """``n`` pairs 'what is three plus four ?' → chosen ' seven', rejected a wrong sum.

    ``noise``: the share of pairs whose chosen and rejected are swapped (exactly ``round(noise * n)`` pairs, picked
    at random), i.e. label noise: 0.5 leaves no preference in the data, 1.0 inverts it. ``template``: both answers
    end with the same long tail (:data:`TAIL`). ``longer``: ``"rejected"`` or ``"chosen"``: that side (after the
    flips) ends with :data:`LENGTH_TAIL`, so length alone tells the two apart, whatever the label noise.
    """
    rng = random.Random(seed)
    rows: dict[str, list[str]] = {"prompt": [], "chosen": [], "rejected": []}
    for _ in range(n):
        a, b = rng.randint(0, 9), rng.randint(0, 9)
        wrong = rng.choice([x for x in range(len(NUMBERS)) if x != a + b])
        tail = " " + " ".join(TAIL) if template else ""
        rows["prompt"].append(f"what is {NUMBERS[a]} plus {NUMBERS[b]} ?")
        rows["chosen"].append(f" {NUMBERS[a + b]}{tail}")
        rows["rejected"].append(f" {NUMBERS[wrong]}{tail}")
    flipped = rng.sample(range(n), round(noise * n)) if noise > 0 else []
    for i in flipped:
        rows["chosen"][i], rows["rejected"][i] = rows["rejected"][i], rows["chosen"][i]
    if longer:
        rows[longer] = [f"{answer} {' '.join(LENGTH_TAIL)}" for answer in rows[longer]]
    return rows


def preference_pairs(n: int, seed: int = 0, noise: float = 0.0, template: bool = False, longer: str = "") -> Any:
    """:func:`preference_rows` as a ``datasets.Dataset`` (the form TRL's trainers take)."""
    from datasets import Dataset

    return Dataset.from_dict(preference_rows(n, seed=seed, noise=noise, template=template, longer=longer))


def tiny_llama(tokenizer: Any, seed: int = 0) -> Any:
    """A randomly initialised Llama: 2 layers, hidden size 64, 4 heads (~80k parameters), seeded."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=64,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    return LlamaForCausalLM(config)
