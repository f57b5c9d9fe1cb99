"""Kind `gpt`: a character-level transformer language model on text (Radford et al. 2018/2019, as nanoGPT writes
it), from genlab's transformer blocks (genlab.nn.transformer), and the same blocks trained the other way round.

- objective=causal (decoder-only): p(x) = prod_t p(x_t | x_<t), trained by next-character cross-entropy; an exact
  log-likelihood (`log_prob`, nats per window; the protocol's nll gives bits per character), and sampling left to
  right with a temperature and top-k, continuing a prompt (`genlab sample RUN --prompt "..."`), with a key/value
  cache while the text fits in the block (then the window slides and is re-run per character). Under
  `precision=auto` sampling stays in float32: the cached sampler runs one position per call, and at 16 and 100
  sequences per call it ran 0.81x and 0.91x as fast in bf16 on a Zen 5 CPU (docs/BENCHMARKS.md §18); training
  gains 1.6-1.8x and uses bf16. (Text longer than the block slides its window uncached, where bf16 measured
  1.6x faster; `--precision bf16` asks for it.)
- objective=masked (encoder-only, BERT's masked-token prediction, Devlin et al. 2019): `mask_rate` of the
  characters are replaced by a [MASK] token (id = vocab) and predicted from both sides. It fills in; it has no
  left-to-right likelihood and does not sample.

`fill_in_accuracy` measures both on the same task, the notes' decoder-only / encoder-only contrast: hide a share
of a text's characters and guess each one, the causal model from the characters before it only (its argmax
p(x_t | x_<t), the true prefix given), the masked model from both sides.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..config import check
from ..errors import GenlabError
from ..nn.transformer import CausalTransformer
from ..precision import exact
from .base import GenerativeModel, evaluating, generator, progress_bar

OBJECTIVES = ("causal", "masked")


@dataclass
class GPTConfig:
    dim: int = 128  # width of the transformer
    layers: int = 4  # transformer blocks
    heads: int = 4  # attention heads
    dropout: float = 0.1  # dropout in the blocks
    objective: str = "causal"  # causal (next character, decoder-only) | masked (fill in, encoder-only)
    mask_rate: float = 0.15  # masked: the share of characters hidden per window (BERT's 15%)

    def __post_init__(self):
        check(self.dim >= 1 and self.layers >= 1 and self.heads >= 1, "dim, layers and heads must be >= 1")
        check(self.dim % self.heads == 0, f"dim {self.dim} must be divisible by heads {self.heads}")
        check(0 <= self.dropout < 1, f"dropout must be in [0, 1), got {self.dropout}")
        check(self.objective in OBJECTIVES, f"objective must be causal or masked, got '{self.objective}'")
        check(0 < self.mask_rate < 1, f"mask_rate must be in (0, 1), got {self.mask_rate}")


@dataclass
class GPTSampleOptions:
    prompt: str | None = None  # text to continue (its characters must be in the training alphabet)
    temperature: float = 1.0  # each character's distribution raised to 1/T and renormalised (< 1 sharper)
    top_k: int = 0  # draw from the k most likely characters only (0: all)
    length: int | None = None  # characters to write after the prompt (default: the block length)
    cached: bool = True  # key/value cache while the text fits in the block; false re-runs the window per character

    def __post_init__(self):
        check(self.temperature > 0, f"temperature must be > 0, got {self.temperature}")
        check(self.top_k >= 0, f"top_k must be >= 0, got {self.top_k}")
        check(self.length is None or self.length >= 1, f"length must be >= 1, got {self.length}")


class GPT(GenerativeModel):
    kind = "gpt"
    family = "autoregressive"
    Config = GPTConfig
    SampleOptions = GPTSampleOptions
    log_prob_type = "exact"
    samples_faster_in_low_precision = False  # see the module docstring
    data_kinds = ("text",)

    def __init__(self, spec, config: GPTConfig):
        super().__init__(spec, config)
        if spec.kind != "text":
            raise GenlabError(f"gpt models text (python-docs, text:PATH); {spec.name} is {spec.kind} data")
        self.vocab, self.block = spec.levels, spec.shape[0]
        masked = config.objective == "masked"
        self.net = CausalTransformer(self.vocab + masked, self.block, config.dim, config.layers, config.heads,
                                     config.dropout, causal=not masked)

    @property
    def capabilities(self) -> list[str]:
        caps = self.capability_names()
        return [c for c in caps if c != "log_prob"] if self.config.objective == "masked" else caps

    def train_defaults(self):
        return {"lr": 1e-3, "batch_size": 64, "warmup_steps": 100, "grad_clip": 1.0, "weight_decay": 0.1}

    def check_conditioning(self, n: int, labels, prompt: str | None):
        if labels is not None:
            raise GenlabError("gpt is not class-conditional; give a --prompt to continue instead of a label")
        return None

    def _mask(self, x: torch.Tensor, g: torch.Generator | None = None) -> torch.Tensor:
        """(B, T) True where a character is hidden: mask_rate of each window, at least one."""
        u = torch.rand(x.shape, generator=g).to(x.device)
        hide = u < self.config.mask_rate
        hide[torch.arange(len(x)), u.argmin(1)] = True
        return hide

    def forward(self, x, y, phase="model", step=0):
        if self.config.objective == "causal":
            logits = self.net(x)
            loss = F.cross_entropy(logits.float().flatten(0, 1), x.flatten())
        else:
            hide = self._mask(x)
            logits = self.net(torch.where(hide, self.vocab, x))
            loss = F.cross_entropy(logits.float()[hide], x[hide])
        return loss, {"loss": loss, "bits_per_char": loss.detach() / torch.log(torch.tensor(2.0))}

    # ---- likelihood and the fill-in task
    def _ids(self, x) -> torch.Tensor:
        x = torch.as_tensor(x)
        if x.dim() == 1:
            x = x[None]
        if x.dim() != 2 or x.shape[1] > self.block or x.dtype.is_floating_point and not (x == x.round()).all():
            raise GenlabError(f"give token ids (N, L <= {self.block}) of this model's alphabet")
        x = x.long()
        if (x < 0).any() or (x >= self.vocab).any():
            raise GenlabError(f"token ids must be in 0..{self.vocab - 1}")
        return x.to(self.device)

    @evaluating
    @exact
    def log_prob(self, x, y=None, k: int = 1, chunk: int = 256) -> torch.Tensor:
        """log p(x) in nats of each window (N,): the sum of log p(x_t | x_<t), causal models only (k: unused, the
        likelihood is exact)."""
        if self.config.objective != "causal":
            raise GenlabError("a masked-token model has no left-to-right likelihood; train objective=causal")
        x = self._ids(x)
        out = []
        with torch.no_grad():
            for i in range(0, len(x), chunk):
                xb = x[i:i + chunk]
                lp = F.log_softmax(self.net(xb).float(), -1).gather(-1, xb[..., None])[..., 0]
                out.append(lp.sum(1))
        return torch.cat(out)

    @evaluating
    @torch.no_grad()
    def fill_in_accuracy(self, x, rate: float | None = None, seed: int = 0) -> float:
        """Hide `rate` (default mask_rate) of each window's characters and guess them: the share right. The causal
        model guesses each from the true characters before it, the masked model from both sides."""
        x = self._ids(x)
        g = torch.Generator().manual_seed(seed)
        old = self.config.mask_rate
        self.config.mask_rate = rate if rate is not None else old
        try:
            hide = self._mask(x, g)
        finally:
            self.config.mask_rate = old
        inp = x if self.config.objective == "causal" else torch.where(hide, self.vocab, x)
        guess = self.net(inp)[..., :self.vocab].argmax(-1)  # never the [MASK] token itself
        return float((guess[hide] == x[hide]).float().mean())

    # ---- sampling
    @evaluating
    @torch.no_grad()
    def _sample(self, n, *, seed, labels, options: GPTSampleOptions, progress):
        if self.config.objective != "causal":
            raise GenlabError("a masked-token model fills in, it does not write left to right; train "
                              "objective=causal to sample")
        prefix = self.spec.to_model(options.prompt)[0] if options.prompt else torch.zeros(0, dtype=torch.long)
        length = options.length or self.block
        g = generator(seed)
        seq = prefix.to(self.device)[None].expand(n, -1).clone()
        cache = [{} for _ in self.net.blocks] if options.cached else None  # keys and values of positions < t
        t = 0
        with progress_bar(progress, length, "writing") as tick:
            for _ in range(length):
                if cache is not None and seq.shape[1] < self.block:  # the text so far fits: run the new positions
                    while t <= seq.shape[1]:  # (the prompt's, on the first character)
                        logits = self.net.next_logits(seq, t, None, cache)
                        t += 1
                else:  # the window slides (or no cache): re-run its last block - 1 characters
                    ctx = seq[:, -(self.block - 1):]  # the next character's logits sit at position len(ctx)
                    logits = self.net(torch.cat([ctx, ctx.new_zeros(n, 1)], 1))[:, ctx.shape[1]]
                logits = logits.float() / options.temperature
                if options.top_k:
                    kth = logits.topk(min(options.top_k, self.vocab), -1).values[:, -1:]
                    logits = logits.masked_fill(logits < kth, float("-inf"))
                probs = torch.softmax(logits, -1)
                nxt = torch.multinomial(probs.cpu(), 1, generator=g).to(self.device)
                seq = torch.cat([seq, nxt], 1)
                if tick:
                    tick()
        return seq[:, len(prefix):], {"nfe": float(length)}

    def in_range(self, x: torch.Tensor) -> torch.Tensor:
        return x
