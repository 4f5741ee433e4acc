"""Text generation with any Hugging Face causal LM from a local folder (served as ``planner``).

Why a hand-written greedy loop instead of ``model.generate``: the JSON constraint must look at
candidate tokens one by one in score order and take the first that keeps the answer a valid
JSON prefix (``avalign.describe.json_prefix``). Masking the whole vocabulary with a logits
processor would test every token at every step (150k for current instruct models); walking the
ranking stops after a handful. Decoding stops when the top-level list closes, at end of
sequence, or after ``max_new_tokens``.

Nothing here reaches a hub: the model and tokenizer load with ``local_files_only=True``.
"""

from __future__ import annotations

import inspect
import os
import time
from dataclasses import dataclass
from pathlib import Path

from avalign.describe.json_prefix import JsonPrefix

SYSTEM_PROMPT = ("You plan audio edits for an audio-visual alignment pipeline. Answer with one JSON "
                 "list of edit steps and nothing else.")


@dataclass(frozen=True)
class Generation:
    text: str
    new_tokens: int
    stop: str  # closed | eos | max_new_tokens | no_valid_token
    prompt_tokens: int
    seconds: float


class CausalLMGenerator:
    """Greedy generation from a local causal LM, optionally held to a JSON list.

    ``chat_template``: ``"auto"`` wraps the prompt as a user turn when the tokenizer has a chat
    template (instruct models), ``"none"`` sends it as plain text. ``max_candidates`` bounds how
    far down the ranking the JSON constraint looks for an acceptable token per step.
    """

    def __init__(self, model_path: str | Path, *, max_new_tokens: int = 256, constrain_json: bool = True,
                 chat_template: str = "auto", max_candidates: int = 512, num_threads: int = 1) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        path = Path(model_path)
        if not (path / "config.json").is_file():
            raise FileNotFoundError(f"{path}: not a Hugging Face model folder (no config.json)")
        if chat_template not in {"auto", "none"}:
            raise ValueError(f"chat_template must be 'auto' or 'none', got {chat_template!r}")
        t0 = time.perf_counter()
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        torch.set_num_threads(num_threads)
        self._torch = torch
        self.tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
        self.model = AutoModelForCausalLM.from_pretrained(str(path), local_files_only=True,
                                                          dtype=torch.float32).eval()
        self.model_path = path
        self.max_new_tokens = int(max_new_tokens)
        self.constrain_json = bool(constrain_json)
        self.chat_template = chat_template
        self.max_candidates = int(max_candidates)
        cfg = self.model.config
        self.context_tokens = int(getattr(cfg, "max_position_embeddings", None) or getattr(cfg, "n_positions", 0)
                                  or 2048)
        self.eos_ids = _eos_ids(self.tokenizer, cfg)
        # Argument names moved between transformers versions (past_key_values → cache).
        params = inspect.signature(self.model.forward).parameters
        self._cache_arg = "cache" if "cache" in params else "past_key_values"
        self._keep_arg = next((k for k in ("logits_to_keep", "num_logits_to_keep") if k in params), None)
        self.load_time_s = time.perf_counter() - t0

    @property
    def model_version(self) -> str:
        cfg = self.model.config
        return f"{self.model_path.name} ({cfg.model_type}, {sum(p.numel() for p in self.model.parameters())} params)"

    def prompt_ids(self, prompt: str) -> list[int]:
        tok = self.tokenizer
        if self.chat_template == "auto" and getattr(tok, "chat_template", None):
            messages = [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": prompt}]
            ids = tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
            if hasattr(ids, "keys"):  # some versions return a BatchEncoding
                ids = ids["input_ids"]
            return [int(i) for i in ids]
        return [int(i) for i in tok(prompt, add_special_tokens=True)["input_ids"]]

    def generate(self, prompt: str, *, max_new_tokens: int | None = None) -> Generation:
        torch = self._torch
        t0 = time.perf_counter()
        budget = max(1, min(int(max_new_tokens or self.max_new_tokens), self.max_new_tokens * 4))
        ids = self.prompt_ids(prompt)
        if not ids:  # an empty prompt: start from the begin (or end) of sequence token
            start = self.tokenizer.bos_token_id if self.tokenizer.bos_token_id is not None else min(self.eos_ids, default=None)
            if start is None:
                raise ValueError("empty prompt and the tokenizer has no begin/end of sequence token")
            ids = [int(start)]
        room = self.context_tokens - budget
        if room <= 0:
            raise ValueError(f"max_new_tokens {budget} leaves no room in a {self.context_tokens}-token context")
        if len(ids) > room:  # keep the end: the instructions on the answer's form come last
            ids = ids[-room:]
        checker: JsonPrefix | None = JsonPrefix(top="[") if self.constrain_json else None
        out: list[int] = []
        stop = "max_new_tokens"
        past = None
        step_input = torch.tensor([ids], dtype=torch.long)
        with torch.inference_mode():
            for _ in range(budget):
                kwargs = {self._cache_arg: past} if past is not None else {}
                if self._keep_arg:  # only the last position's logits (a long prompt x a big vocabulary)
                    kwargs[self._keep_arg] = 1
                result = self.model(input_ids=step_input, use_cache=True, **kwargs)
                past = result.get(self._cache_arg)
                logits = result.logits[0, -1]
                token, piece = self._choose(logits, out, checker)
                if token is None:
                    stop = "no_valid_token" if self.constrain_json else "eos"
                    break
                out.append(token)
                checker = self._track(checker, piece)
                if checker is not None and checker.done:
                    stop = "closed"
                    break
                step_input = torch.tensor([[token]], dtype=torch.long)
        text = self.tokenizer.decode(out, skip_special_tokens=True)
        return Generation(text=text, new_tokens=len(out), stop=stop, prompt_tokens=len(ids),
                          seconds=time.perf_counter() - t0)

    # -- helpers -----------------------------------------------------------------------------
    def _piece(self, out: list[int], token: int) -> str:
        """The text ``token`` adds after ``out`` (decoding a short window keeps word-initial
        spaces of sentencepiece tokenizers and merged bytes right)."""
        window = out[-4:]
        before = self.tokenizer.decode(window, skip_special_tokens=True) if window else ""
        after = self.tokenizer.decode(window + [token], skip_special_tokens=True)
        return after[len(before):] if after.startswith(before) else after

    def _track(self, checker: JsonPrefix | None, piece: str) -> JsonPrefix | None:
        """Follow the answer's first JSON list, to stop when it closes. Constrained decoding
        feeds every piece (they are all valid); free decoding starts a checker at a ``[`` and
        drops it when the text stops being JSON, to look for the next ``[``."""
        if self.constrain_json:
            checker.feed(piece)
            return checker
        while piece:
            if checker is None:
                start = piece.find("[")
                if start < 0:
                    return None
                checker, piece = JsonPrefix(top="[", objects_in_top=False), piece[start:]
            rest = ""
            for i, ch in enumerate(piece):
                if not checker.feed(ch):
                    checker, rest = None, piece[i:]
                    break
                if checker.done:
                    return checker
            piece = rest
        return checker

    def _choose(self, logits, out: list[int], checker: JsonPrefix | None) -> tuple[int | None, str]:
        if not self.constrain_json:
            token = int(logits.argmax())
            if token in self.eos_ids:
                return None, ""
            return token, self._piece(out, token)
        k = min(self.max_candidates, int(logits.shape[-1]))
        for token in self._torch.topk(logits, k).indices.tolist():
            if token in self.eos_ids:
                continue  # the list is not closed yet
            piece = self._piece(out, token)
            if piece and checker.accepts(piece):
                return int(token), piece
        return None, ""


def _eos_ids(tokenizer, config) -> set[int]:
    ids: set[int] = set()
    for value in (getattr(tokenizer, "eos_token_id", None), getattr(config, "eos_token_id", None)):
        if isinstance(value, int):
            ids.add(value)
        elif isinstance(value, (list, tuple)):
            ids.update(int(v) for v in value)
    return ids
