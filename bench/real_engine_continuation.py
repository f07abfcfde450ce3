"""Mid-stream continuation against a real engine: llama.cpp's server, a real BPE tokenizer.

The fake vLLM continues a partial answer by construction; this checks the claim where it can
fail. For a few prompts the uninterrupted greedy answer A is taken from the server's chat API;
then for every character position k of A (or an even sample, ``--max-cuts``) the stream is
"cut" after A[:k] and continued three ways, and the stitched answer is compared with A:

- ``text``: A[:k] as it is, as the final assistant message with ``continue_final_message``
  (``providers.continuation.ContinueFinalMessage``: what ``vllm`` and ``sglang`` deployments got
  before they took the stable cut).
- ``stable_cut``: the rule of the ``vllm``, ``sglang`` and ``llamacpp`` kinds
  (``providers.retokenize``): the text is cut back to the end of the last word followed by
  whitespace, continued from there, and the regenerated tail the client already has is dropped
  (``skip_prefix``), built by the plugin's own code.
- ``stable_cut_limit``: the same, with the client's ``max_tokens`` kept by the plugin's own
  accounting (``streams.tokens``): the broken part is tallied as an engine with a running count
  streams it (one chunk per token; a cut inside a token is a last chunk with that token partly
  out), the cut keeps to a point whose count is known, and the continuation gets the limit less
  the kept tokens. Exact means the stitched answer is A itself, no longer and no shorter (A was
  generated with that same ``max_tokens``).
- ``token_ids``: the engine's ``/completion`` with the prompt and the model's own token ids up to
  the last whole token before the cut (what an engine that takes ids allows; the stream through
  LiteLLM carries text, so the plugin cannot do this).

Cuts are classed by what is on either side (inside a word, at whitespace, after punctuation,
before punctuation, next to a multi-byte character) and by whether the cut falls between two of
the model's tokens or inside one. ``canonical`` says whether the model's tokens up to the kept
text are what the tokenizer makes of that text: a trained model almost always writes canonical
tokens, a random one often does not, and no text-based continuation can be exact where they
are not.

Needs the cached engine (``bench/real_engine/build.sh``); it stops with that hint otherwise.
"""

from __future__ import annotations

import asyncio
import time
import unicodedata
from collections import Counter, defaultdict
from typing import Any

try:
    from bench import _common as common
    from bench.real_engine import server
except ImportError:  # python bench/real_engine_continuation.py: bench/ itself is on sys.path
    import _common as common  # type: ignore[no-redef]
    from real_engine import server  # type: ignore[no-redef]

PROMPTS = (
    "Explain how a stream continues on another deployment after a failure.",
    "Write a short note about GPU memory, queues and health probes.",
    "Résumé: décris la reprise d'un flux coupé, s'il te plaît. 日本語でも。",
    "List three reasons a proxy retries a request, with examples.",
)

STRATEGIES = ("text", "stable_cut", "stable_cut_limit", "token_ids")


def cut_class(answer: str, k: int) -> str:
    before, after = answer[k - 1], answer[k]
    if ord(before) > 127 or ord(after) > 127:
        both = ord(before) > 127 and ord(after) > 127
        return "between multi-byte" if both else "multi-byte neighbour"
    if before.isspace() or after.isspace():
        return "at whitespace"
    if unicodedata.category(before).startswith("P") or not before.isalnum():
        return "after punctuation"
    if before.isalnum() and after.isalnum():
        return "inside a word"
    return "before punctuation"


def stitch(answer: str, k: int, continuation: str, skip: str) -> tuple[str, bool]:
    """The client's text: A[:k], then the continuation less the part of ``skip`` it starts with
    (the plugin's ``chunks.strip_prefix``, applied to the whole continuation at once)."""
    matched = 0
    while matched < min(len(skip), len(continuation)) and continuation[matched] == skip[matched]:
        matched += 1
    stitched = answer[:k] + continuation[matched:]
    return stitched, stitched[: len(answer)] == answer


class Check:
    """One prompt's answer and its cuts, on a running engine."""

    def __init__(self, engine: server.Engine, prompt: str, max_tokens: int) -> None:
        self.engine = engine
        self.messages = [{"role": "user", "content": prompt}]
        self.max_tokens = max_tokens
        greedy = {"temperature": 0, "seed": 12, "cache_prompt": False}
        self.greedy = greedy
        self.answer = engine.stream_chat({"messages": self.messages, "max_tokens": max_tokens, **greedy})
        rendered = engine.post("/apply-template", {"messages": self.messages})["prompt"]
        tokenized = {"content": rendered, "add_special": True, "parse_special": True}
        self.prompt_ids = engine.post("/tokenize", tokenized)["tokens"]
        body = {"prompt": self.prompt_ids, "n_predict": max_tokens, "return_tokens": True, **greedy}
        done = engine.post("/completion", body)
        self.ids: list[int] = list(done["tokens"])
        if done["content"] != self.answer:
            raise RuntimeError(
                "sanity: /completion from the rendered prompt differs from the chat answer: "
                f"{done['content']!r} vs {self.answer!r}"
            )
        # Character offset after each of the model's tokens (every token is whole characters).
        self.ends: list[int] = []
        for i in range(1, len(self.ids) + 1):
            self.ends.append(len(engine.detokenize(self.ids[:i])))
        if self.ends[-1] != len(self.answer):
            raise RuntimeError("sanity: the token ids do not detokenize to the answer")
        self.canonical_answer = engine.tokenize(self.answer) == self.ids

    def whole_tokens_before(self, k: int) -> int:
        return sum(1 for end in self.ends if end <= k)

    def canonical_prefix(self, chars: int) -> bool:
        """The model's tokens for A[:chars] are the tokenizer's own (chars on a token end)."""
        j = self.whole_tokens_before(chars)
        if j == 0:
            return chars == 0
        return self.ends[j - 1] == chars and self.engine.tokenize(self.answer[:chars]) == self.ids[:j]

    def budget(self, from_char: int) -> int:
        return len(self.ids) - self.whole_tokens_before(from_char) + 3

    def run(self, k: int, strategy: str) -> tuple[bool, dict[str, Any]]:
        from litellm_failover.providers import get_adapter
        from litellm_failover.providers.continuation import CONTINUE_FINAL_MESSAGE

        partial = self.answer[:k]
        if strategy == "token_ids":
            j = self.whole_tokens_before(k)
            kept = self.ends[j - 1] if j else 0
            out = self.engine.post(
                "/completion",
                {"prompt": self.prompt_ids + self.ids[:j], "n_predict": len(self.ids) - j + 3, **self.greedy},
            )
            _, exact = stitch(self.answer, k, out["content"], self.answer[kept:k])
            return exact, {"kept": kept}
        if strategy == "stable_cut_limit":
            return self.run_limited(k)
        if strategy == "text":
            built = CONTINUE_FINAL_MESSAGE.build(self.messages, partial, {})
        else:  # the adapter's own continuation, as the plugin asks it
            built = get_adapter("llamacpp").continuation(self.messages, partial, {})
        kept = k - len(built.skip_prefix)
        body = {
            "messages": built.messages,
            "max_tokens": self.budget(kept),
            **built.extra_body,
            **self.greedy,
        }
        _, exact = stitch(self.answer, k, self.engine.stream_chat(body), built.skip_prefix)
        return exact, {"kept": kept}

    def run_limited(self, k: int) -> tuple[bool, dict[str, Any]]:
        """The stable cut under the client's ``max_tokens`` (the answer's own), counted by the
        plugin's ``TokenCounter`` from a tally of the broken part as a counting engine sends it."""
        from litellm.types.utils import Usage

        from litellm_failover.providers import get_adapter
        from litellm_failover.streams.resume import Part
        from litellm_failover.streams.tokens import TokenCounter, counted_points

        part = Part("engine", (), self.messages)
        done = 0
        for count, end in enumerate(self.ends, start=1):
            end = min(end, k)  # a cut inside a token: its first characters were the last chunk
            if end > done:
                running = Usage(prompt_tokens=0, completion_tokens=count, total_tokens=count)
                part.tally.chunk(end - done, running)
                part.texts.append(self.answer[done:end])
                done = end
        built = get_adapter("vllm").continuation(self.messages, self.answer[:k], {}, counted_points([part]))
        kept = k - len(built.skip_prefix)
        base = asyncio.run(TokenCounter({}).tokens_at([part], kept)) if kept else 0
        limit = self.max_tokens - base  # the client's, less what the kept text took
        body = {"messages": built.messages, "max_tokens": limit, **built.extra_body, **self.greedy}
        stitched, _ = stitch(self.answer, k, self.engine.stream_chat(body), built.skip_prefix)
        return stitched == self.answer, {"kept": kept}


def cut_points(length: int, max_cuts: int | None) -> list[int]:
    every = list(range(1, length))
    if max_cuts is None or len(every) <= max_cuts:
        return every
    step = len(every) / max_cuts
    return sorted({every[int(i * step)] for i in range(max_cuts)})


def measure(args: Any, model: str) -> dict[str, Any]:
    tally: dict[str, Counter[str]] = {s: Counter() for s in STRATEGIES}
    by_class: dict[tuple[str, str], Counter[str]] = defaultdict(Counter)
    by_position: dict[tuple[str, str], Counter[str]] = defaultdict(Counter)
    by_canonical: dict[tuple[str, str], Counter[str]] = defaultdict(Counter)
    answers = []
    started = time.monotonic()
    with server.running_engine(model) as engine:
        for prompt in PROMPTS[: args.prompts]:
            check = Check(engine, prompt, args.max_tokens)
            boundaries = set(check.ends)
            canonical_cache: dict[int, bool] = {}
            cuts = cut_points(len(check.answer), args.max_cuts)
            answers.append(
                {
                    "prompt": prompt,
                    "answer": check.answer,
                    "tokens": len(check.ids),
                    "canonical": check.canonical_answer,
                    "cuts": len(cuts),
                }
            )
            for k in cuts:
                klass = cut_class(check.answer, k)
                position = "between tokens" if k in boundaries else "inside a token"
                for strategy in STRATEGIES:
                    if time.monotonic() - started > args.time_limit_s:
                        raise RuntimeError(f"time limit {args.time_limit_s:g}s reached")
                    exact, info = check.run(k, strategy)
                    kept = info["kept"]
                    if kept not in canonical_cache:
                        canonical_cache[kept] = check.canonical_prefix(kept)
                    canonical = "canonical" if canonical_cache[kept] else "not canonical"
                    outcome = "exact" if exact else "inexact"
                    for counter in (
                        tally[strategy],
                        by_class[(strategy, klass)],
                        by_position[(strategy, position)],
                        by_canonical[(strategy, canonical)],
                    ):
                        counter[outcome] += 1
    return {
        "answers": answers,
        "tally": {s: dict(c) for s, c in tally.items()},
        "by_class": {f"{s} | {k}": dict(c) for (s, k), c in sorted(by_class.items())},
        "by_position": {f"{s} | {k}": dict(c) for (s, k), c in sorted(by_position.items())},
        "by_canonical": {f"{s} | {k}": dict(c) for (s, k), c in sorted(by_canonical.items())},
        "seconds": round(time.monotonic() - started, 1),
    }


def table(title: str, rows: dict[str, dict[str, int]], column: str | None = None) -> None:
    """Markdown rows; keys are ``strategy`` or ``strategy | class`` (``column`` names the class)."""
    print(f"\n{title}")
    print(
        f"| strategy | {column} | cuts | exact | inexact | exact % |"
        if column
        else "| strategy | cuts | exact | inexact | exact % |"
    )
    print("|---|---|---:|---:|---:|---:|" if column else "|---|---:|---:|---:|---:|")
    for name, counts in rows.items():
        total = counts.get("exact", 0) + counts.get("inexact", 0)
        share = 100.0 * counts.get("exact", 0) / total if total else float("nan")
        print(f"| {name} | {total} | {counts.get('exact', 0)} | {counts.get('inexact', 0)} | {share:.1f} |")


def main() -> int:
    p = common.parser(__doc__.splitlines()[0])
    p.add_argument("--prompts", type=int, default=len(PROMPTS), help="how many of the prompts")
    p.add_argument("--max-tokens", type=int, default=40, help="length of each uninterrupted answer")
    p.add_argument("--max-cuts", type=int, default=None, help="sample this many cut points per answer")
    p.add_argument("--time-limit-s", type=float, default=1800.0, help="per model")
    p.add_argument("--models", default=",".join(server.MODELS), help="comma-separated: random, bigram")
    args = p.parse_args()
    if args.quick:
        args.prompts, args.max_cuts = min(args.prompts, 2), args.max_cuts or 40
    reason = server.missing()
    if reason:
        print(f"real_engine_continuation: not run: {reason}")
        return 2
    metrics: dict[str, float] = {}
    goals = []
    details = {}
    for model in args.models.split(","):
        data = details[model] = measure(args, model)
        print(f"\n## model: {model} ({data['seconds']} s)")
        for answer in data["answers"]:
            head = f"{answer['tokens']} tokens, canonical={answer['canonical']}, {answer['cuts']} cuts"
            print(f"{head}: {answer['answer']!r}")
        table("all cuts", dict(data["tally"]))
        table("by what the cut falls between", data["by_class"], "cut")
        table("by token position", data["by_position"], "cut")
        table("by whether the kept text's tokens are the model's own", data["by_canonical"], "kept tokens")
        for strategy in STRATEGIES:
            metrics[f"{model}_{strategy}_exact_share"] = _share(data["tally"][strategy])
        for strategy in ("stable_cut", "stable_cut_limit"):
            canonical = _share(data["by_canonical"].get(f"{strategy} | canonical", {}))
            what = f"{model}: {strategy} exact where the kept tokens are canonical"
            goals.append(common.Goal(what, canonical, ">=", 1.0))
        goals.append(
            common.Goal(f"{model}: token_ids exact", metrics[f"{model}_token_ids_exact_share"], ">=", 1.0)
        )
    return common.finish(args, common.result("real_engine_continuation", metrics, goals, details))


def _share(counts: dict[str, int]) -> float:
    total = counts.get("exact", 0) + counts.get("inexact", 0)
    return counts.get("exact", 0) / total if total else float("nan")


if __name__ == "__main__":
    raise SystemExit(main())
