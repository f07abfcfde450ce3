"""Make the tiny model the real-engine continuation check runs on (no model hub needed).

A byte-level BPE tokenizer (GPT-2's scheme: the same pre-tokenizer regex llama.cpp applies for
``tokenizer.ggml.pre = "gpt-2"``) is trained on the repository's docs plus a few lines of
non-ASCII text, so that multi-byte characters and tokens holding several of them exist. The
weights are random from a fixed seed: the check is about how the engine tokenizes and decodes,
not about what the model says, and greedy decoding of random weights is as deterministic as of
trained ones. ``--kind bigram`` shapes the embeddings and output rows by the corpus' token
pairs instead (random layers on top): like a trained model, it writes the tokenizer's own tokens.

Two tokens are never generated, so that every answer runs to ``max_tokens`` and is valid text:
the output rows of special tokens (EOS included) and of tokens whose bytes are not complete
UTF-8 on their own are zero, while every other row is scaled so that the best of them is always
well above zero. (llama.cpp holds back an incomplete UTF-8 sequence until it completes; a model
that emitted a lone continuation byte would make the server send a replacement character.)

Runs in the bench venv (``bench/requirements-real-engine.txt``), not the project's::

    ~/.cache/litellm-failover/llama-venv/bin/python bench/real_engine/make_model.py --out model.gguf
"""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path

import numpy as np
from gguf import GGUFWriter, TokenType
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

REPO = Path(__file__).resolve().parents[2]

SPECIALS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")

# ChatML: the assistant's turn opens with "<|im_start|>assistant\n", so a continued final
# message is that header plus the partial text, with nothing after it.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

# Non-ASCII lines, so the vocabulary holds multi-byte characters alone, merged with each other
# and merged with ASCII: cuts between them are one of the check's classes.
EXTRA_TEXT = """
Grüße aus Köln: die Größe der Straße ändert sich nicht, schön.
Ça coûte très cher à Noël, déjà réglé, naïve façade.
日本語のテキストを分割します。東京と大阪と京都。
Привет, мир! Это проверка продолжения потока.
Emoji too: 🙂 🚀 ✅ and math ∑ ≤ ∞ → ok.
Ελληνικά: καλημέρα κόσμε. 中文：你好，世界。
"""  # noqa: RUF001 - the full-width punctuation is the point

# Shape: small enough that a CPU build answers in milliseconds.
DIM, LAYERS, HEADS, FF, CTX = 64, 2, 4, 128, 1024


def corpus() -> list[str]:
    """The training text: the repository's docs (fixed order) and the non-ASCII lines."""
    texts = [p.read_text(encoding="utf-8") for p in sorted((REPO / "docs").rglob("*.md"))]
    texts.append(REPO.joinpath("README.md").read_text(encoding="utf-8"))
    texts.extend([EXTRA_TEXT] * 20)
    return texts


def train_tokenizer(vocab_size: int) -> Tokenizer:
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIALS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(corpus(), trainer=trainer)
    return tok


def vocab_lists(tok: Tokenizer) -> tuple[list[str], list[int], list[str]]:
    """Tokens by id, their GGUF types, and the merges, as llama.cpp's gpt2 vocab reads them."""
    vocab = tok.get_vocab()
    tokens = [""] * len(vocab)
    for text, idx in vocab.items():
        tokens[idx] = text
    types = [int(TokenType.CONTROL if t in SPECIALS else TokenType.NORMAL) for t in tokens]
    state = json.loads(tok.to_str())
    merges = [m if isinstance(m, str) else " ".join(m) for m in state["model"]["merges"]]
    return tokens, types, merges


def generable(tok: Tokenizer, tokens: list[str]) -> np.ndarray:
    """Which ids the model may emit: not special, and complete UTF-8 on their own."""
    byte_decoder = {ch: b for b, ch in _bytes_to_unicode().items()}
    ok = np.zeros(len(tokens), dtype=bool)
    for idx, text in enumerate(tokens):
        if text in SPECIALS:
            continue
        raw = bytes(byte_decoder[ch] for ch in text)
        try:
            decoded = raw.decode("utf-8")
        except UnicodeDecodeError:
            continue
        # Control characters other than newline make unreadable figures; leave them out too.
        ok[idx] = all(ch == "\n" or ch.isprintable() for ch in decoded)
    return ok


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's byte -> printable character map (what byte-level BPE tokens are spelled in)."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    chars = keep[:]
    extra = 0
    for b in range(256):
        if b not in keep:
            keep.append(b)
            chars.append(256 + extra)
            extra += 1
    return {b: chr(c) for b, c in zip(keep, chars, strict=True)}


def weights(
    n_vocab: int, allowed: np.ndarray, seed: int, bigram: np.ndarray | None = None
) -> dict[str, np.ndarray]:
    """Random weights; with ``bigram`` (a token -> next token log-probability table) the
    embeddings and output rows are its rank-``DIM`` factors instead, and the layers add small
    random context on top: greedy decoding then follows the corpus' own token pairs."""
    rng = np.random.default_rng(seed)

    def rand(*shape: int, scale: float) -> np.ndarray:
        return (rng.standard_normal(shape) * scale).astype(np.float32)

    if bigram is None:
        embd, output, layer_scale = rand(n_vocab, DIM, scale=1.0), rand(n_vocab, DIM, scale=0.5), 1.0
    else:
        u, sv, vt = np.linalg.svd(bigram, full_matrices=False)
        root = np.sqrt(sv[:DIM])
        embd = (u[:, :DIM] * root).astype(np.float32)
        embd /= np.sqrt((embd**2).mean(axis=1, keepdims=True)) + 1e-6  # unit RMS rows
        output = (vt[:DIM].T * root).astype(np.float32)
        layer_scale = 0.35
    # Rows scaled so the best allowed logit is far above the zero rows of disallowed ids.
    output[~allowed] = 0.0
    out: dict[str, np.ndarray] = {
        "token_embd.weight": embd,
        "output_norm.weight": np.ones(DIM, dtype=np.float32),
        "output.weight": output,
    }
    for i in range(LAYERS):
        # Attention sharp enough that the answer depends on the whole context, not only on the
        # last token: the continuation must rebuild that context to come out the same.
        for name in ("attn_q", "attn_k"):
            out[f"blk.{i}.{name}.weight"] = rand(DIM, DIM, scale=3.0 / np.sqrt(DIM))
        small = layer_scale / np.sqrt(DIM)
        out[f"blk.{i}.attn_v.weight"] = rand(DIM, DIM, scale=small)
        out[f"blk.{i}.attn_output.weight"] = rand(DIM, DIM, scale=small)
        out[f"blk.{i}.attn_norm.weight"] = np.ones(DIM, dtype=np.float32)
        out[f"blk.{i}.ffn_norm.weight"] = np.ones(DIM, dtype=np.float32)
        out[f"blk.{i}.ffn_gate.weight"] = rand(FF, DIM, scale=1.0 / np.sqrt(DIM))
        out[f"blk.{i}.ffn_up.weight"] = rand(FF, DIM, scale=small)
        out[f"blk.{i}.ffn_down.weight"] = rand(DIM, FF, scale=layer_scale / np.sqrt(FF))
    return out


def bigram_table(tok: Tokenizer, allowed: np.ndarray) -> np.ndarray:
    """Centred log-probabilities of each token following each other in the corpus, tokenized
    canonically: the pairs a model trained on it would write (add-one smoothing)."""
    n = tok.get_vocab_size()
    counts = np.ones((n, n), dtype=np.float64)
    for text in corpus():
        ids = tok.encode(text).ids
        np.add.at(counts, (ids[:-1], ids[1:]), 8.0)
    counts[:, ~allowed] = 0.0
    logp = np.log(np.maximum(counts, 1e-12) / counts.sum(axis=1, keepdims=True))
    logp[:, ~allowed] = np.nan
    logp -= np.nanmean(logp, axis=1, keepdims=True)
    # No token follows itself (greedy decoding of pairs alone would repeat one newline forever).
    np.fill_diagonal(logp, np.nan)
    return np.nan_to_num(logp, nan=0.0)


def write_gguf(path: Path, tok: Tokenizer, seed: int, kind: str) -> dict[str, object]:
    tokens, types, merges = vocab_lists(tok)
    allowed = generable(tok, tokens)
    bigram = bigram_table(tok, allowed) if kind == "bigram" else None
    writer = GGUFWriter(str(path), "llama")
    writer.add_name("litellm-failover tiny random llama")
    writer.add_context_length(CTX)
    writer.add_embedding_length(DIM)
    writer.add_block_count(LAYERS)
    writer.add_feed_forward_length(FF)
    writer.add_head_count(HEADS)
    writer.add_head_count_kv(HEADS)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_rope_dimension_count(DIM // HEADS)
    writer.add_vocab_size(len(tokens))
    writer.add_file_type(0)  # all F32
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("gpt-2")
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_merges(merges)
    writer.add_bos_token_id(tokens.index("<|endoftext|>"))
    writer.add_eos_token_id(tokens.index("<|im_end|>"))
    writer.add_add_bos_token(False)
    writer.add_chat_template(CHAT_TEMPLATE)
    for name, array in weights(len(tokens), allowed, seed, bigram).items():
        writer.add_tensor(name, array)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    return {
        "path": str(path),
        "kind": kind,
        "vocab": len(tokens),
        "generable": int(allowed.sum()),
        "sha256_16": digest,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="the GGUF file to write")
    parser.add_argument("--vocab-size", type=int, default=1200)
    parser.add_argument("--seed", type=int, default=12)
    parser.add_argument(
        "--kind",
        choices=("random", "bigram"),
        default="random",
        help="random: every weight random (its tokens are rarely the tokenizer's own); bigram: "
        "shaped by the corpus' token pairs, so it writes canonical tokens as a trained model does",
    )
    parser.add_argument("--tokenizer-json", type=Path, help="also save the HF tokenizer here")
    args = parser.parse_args()
    tok = train_tokenizer(args.vocab_size)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    if args.tokenizer_json:
        tok.save(str(args.tokenizer_json))
    print(json.dumps(write_gguf(args.out, tok, args.seed, args.kind)))


if __name__ == "__main__":
    main()
