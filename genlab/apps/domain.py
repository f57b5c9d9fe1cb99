"""Domain-adversarial adaptation (Ganin et al. 2016, "DANN"): a classifier trained on labelled source data that
should also work on a shifted, unlabelled target domain.

    clf = DomainAdversarialClassifier(steps=3000).fit(X_source, y_source, X_target=X_target_unlabelled)
    clf.score(X_target_test, y_target_test)      # accuracy on the target domain
    DomainAdversarialClassifier(adapt=0).fit(X_source, y_source)   # the same network, source only: the baseline

Three networks train together: a feature extractor F, a label classifier C on F's features (source rows only) and a
domain classifier D that tells source features from target ones. D sits behind the gradient-reversal layer
(genlab.nn.blocks.grad_reverse): D learns to separate the domains while F receives -lambda x D's gradient, so it
learns features D cannot separate, on which C, trained on the source, carries over. lambda rises from 0 to `adapt`
as 2 / (1 + exp(-10 p)) - 1, p = step / ramp (Ganin et al. 2016, §5.2.2), so D's noisy early signal does not
swamp F. Networks: for images the paper's MNIST ones (two 5x5 conv + max-pool stages of 32 and 48 channels; C:
100-100-classes; D: 100-1); for vectors an MLP. One genlab Trainer run; the target rows are drawn with the
training RNG, so a fit is seeded.

A scikit-learn classifier (get_params / set_params, `clone`, fit returns self, `classes_`, predict /
predict_proba / score). X: (N, D) numeric rows (standardised with the source's mean and std) or (N, H, W[, C])
uint8 images, as `genlab.data.from_arrays` takes them; X_target in the same form and shape.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.validation import check_is_fitted
from torch import nn

from ..config import check
from ..errors import GenlabError
from ..models.base import GenerativeModel
from ..nn.blocks import grad_reverse
from .anomaly import budget_of, seed_of


def lambda_at(step: int, ramp: int, top: float) -> float:
    """The adaptation weight after `step` steps: top * (2 / (1 + exp(-10 p)) - 1), p = min(step / ramp, 1)."""
    p = min(step / ramp, 1.0) if ramp > 0 else 1.0
    return top * (2 / (1 + math.exp(-10 * p)) - 1)


@dataclass
class DANNConfig:
    adapt: float = 1.0  # the top of lambda, the reversed gradient's weight; 0 = train on the source only
    ramp: int = 1000  # steps over which lambda rises to `adapt`
    hidden: int = 100  # width of the classifiers (and of the features, for vectors)

    def __post_init__(self):
        check(math.isfinite(self.adapt) and self.adapt >= 0, f"adapt must be >= 0, got {self.adapt}")
        check(self.ramp >= 0, f"ramp must be >= 0 steps, got {self.ramp}")
        check(self.hidden >= 1, f"hidden must be >= 1, got {self.hidden}")


class DANN(GenerativeModel):
    """F, C and D of a domain-adversarial classifier, trained by genlab's Trainer on the source rows (x, y);
    `target` (model space, (M, *shape)) holds the unlabelled target rows. Not a generative model: it draws no
    samples, and is built by DomainAdversarialClassifier rather than `genlab.create`."""

    kind = "dann"
    family = "adaptation"
    task = "classify"
    Config = DANNConfig

    def __init__(self, spec, config: DANNConfig, target: torch.Tensor | None = None):
        super().__init__(spec, config)
        h, k = config.hidden, spec.num_classes
        if spec.is_image:
            c, pad = spec.shape[0], 0 if min(spec.shape[1:]) >= 16 else 2  # unpadded as the paper's, 28 -> 4 x 4
            self.features = nn.Sequential(nn.Conv2d(c, 32, 5, padding=pad), nn.ReLU(), nn.MaxPool2d(2),
                                          nn.Conv2d(32, 48, 5, padding=pad), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten())
            with torch.no_grad():
                d = self.features(torch.zeros(1, *spec.shape)).shape[1]
        else:
            d = h
            self.features = nn.Sequential(nn.Linear(spec.dims, h), nn.ReLU(), nn.Linear(h, h), nn.ReLU())
        self.classifier = nn.Sequential(nn.Linear(d, h), nn.ReLU(), nn.Linear(h, h), nn.ReLU(), nn.Linear(h, k))
        self.domain = nn.Sequential(nn.Linear(d, h), nn.ReLU(), nn.Linear(h, 1))
        self.target = target

    def train_defaults(self) -> dict[str, Any]:
        return {"lr": 1e-3, "grad_clip": 0.0, "warmup_steps": 0, "batch_size": 128}

    def forward(self, x: torch.Tensor, y: torch.Tensor, phase: str = "model", step: int = 0):
        """Source batch (B, *shape) with labels (B,): label loss, plus the domain loss on the source batch and an
        equal target batch through the reversed gradient."""
        f_src = self.features(x)
        label = F.cross_entropy(self.classifier(f_src), y)
        logs = {"label_loss": label.detach()}
        lam = lambda_at(step, self.config.ramp, self.config.adapt)
        if self.target is None or self.config.adapt == 0:
            return label, {"loss": label.detach(), **logs}
        idx = torch.randint(0, len(self.target), (x.shape[0],))
        f_tgt = self.features(self.target[idx].to(x.device))
        logits = self.domain(grad_reverse(torch.cat([f_src, f_tgt]), lam)).squeeze(1)
        is_target = torch.cat([torch.zeros(len(f_src)), torch.ones(len(f_tgt))]).to(logits)
        dom = F.binary_cross_entropy_with_logits(logits, is_target)
        loss = label + dom  # F's gradient from dom arrives reversed and scaled by lam
        acc = ((logits > 0).float() == is_target).float().mean()
        return loss, {"loss": loss.detach(), **logs, "domain_loss": dom.detach(), "domain_acc": acc, "lambda":
                      torch.tensor(lam)}

    @torch.no_grad()
    def logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))

    def _sample(self, n, *, seed, labels, options, progress):
        raise GenlabError("a domain-adversarial classifier draws no samples; use its predict / predict_proba")


class DomainAdversarialClassifier(ClassifierMixin, BaseEstimator):
    """adapt: the top of the reversed gradient's weight lambda (0 = source only, the baseline); ramp: steps over
    which lambda rises; steps / minutes: the training budget (minutes, when given, replaces steps);
    random_state seeds training; None draws a seed (kept as seed_)."""

    def __init__(self, adapt: float = 1.0, ramp: int = 1000, hidden: int = 100, steps: int = 3000,
                 minutes: float | None = None, batch_size: int = 128, lr: float = 1e-3, random_state: int = 0,
                 device: str = "auto", verbose: bool = False):
        self.adapt = adapt
        self.ramp = ramp
        self.hidden = hidden
        self.steps = steps
        self.minutes = minutes
        self.batch_size = batch_size
        self.lr = lr
        self.random_state = random_state
        self.device = device
        self.verbose = verbose

    def fit(self, X, y, X_target=None) -> DomainAdversarialClassifier:
        """Train on the labelled source rows (X, y) and, unless adapt = 0, the unlabelled target rows X_target."""
        import genlab
        from genlab.data import from_arrays

        if y is None:
            raise GenlabError("a classifier needs labels y for the source rows")
        y = np.asarray(y)
        if y.ndim != 1 or len(y) != len(X):
            raise GenlabError(f"y must hold one label per row of X: got shape {y.shape} for {len(X)} rows")
        self.classes_, codes = np.unique(y, return_inverse=True)
        if len(self.classes_) < 2:
            raise GenlabError(f"y holds a single class ({self.classes_[0]!r}); a classifier needs two or more")
        self.seed_ = seed_of(self.random_state)
        data, _ = from_arrays(X, codes, test_fraction=0, name="source")
        target = None
        if X_target is not None and self.adapt != 0:
            target = self._to_model(data.spec, X_target, "X_target")
        torch.manual_seed(self.seed_)
        config = DANNConfig(adapt=float(self.adapt), ramp=int(self.ramp), hidden=int(self.hidden))
        model = DANN(data.spec, config, target)
        run = genlab.train(model, data, **budget_of(self), batch_size=min(self.batch_size, len(data)), lr=self.lr,
                           seed=self.seed_, device=self.device, progress=self.verbose)
        self.model_ = model.eval()
        self.history_ = run.history  # per logged step: loss, label_loss, domain_loss, domain_acc, lambda
        self.n_features_in_ = int(np.prod(data.x.shape[1:]))
        return self

    @staticmethod
    def _to_model(spec, X, name: str) -> torch.Tensor:
        try:
            x = spec.to_model(X)
        except GenlabError as e:
            raise GenlabError(f"{name} does not fit the source's rows ({str(e).removeprefix('x: ')}); give both "
                              "domains in the same form") from None
        if tuple(x.shape[1:]) != tuple(spec.shape):
            raise GenlabError(f"{name} has rows of shape {tuple(x.shape[1:])}, the source {tuple(spec.shape)}; "
                              "give both domains in the same shape (resize the images)")
        if not torch.isfinite(x).all():
            raise GenlabError(f"{name} holds NaN or inf values")
        return x

    @torch.no_grad()
    def predict_proba(self, X) -> np.ndarray:
        check_is_fitted(self, "model_")
        x = self._to_model(self.model_.spec, X, "X")
        out = [torch.softmax(self.model_.logits(x[i:i + 1000].to(self.model_.device)), 1).cpu()
               for i in range(0, len(x), 1000)]
        return torch.cat(out).double().numpy()

    def predict(self, X) -> np.ndarray:
        return self.classes_[self.predict_proba(X).argmax(1)]



def images_as(x: torch.Tensor, spec) -> torch.Tensor:
    """Model-space images (N, C, H, W) resized (bilinear) to `spec`'s height and width."""
    c, h, w = spec.shape
    if x.shape[1] != c:
        raise GenlabError(f"the target has {x.shape[1]}-channel images, the source {c}-channel ones")
    return x if tuple(x.shape[2:]) == (h, w) else F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False)


def adapt_datasets(source: str, target: str, *, adapt: float = 1.0, ramp: int = 1000, steps: int = 3000,
                   minutes: float | None = None, random_state: int = 0, device: str = "auto",
                   verbose: bool = False) -> dict[str, Any]:
    """Source-only training beside DANN on two genlab datasets with the same classes: the source's train split
    labelled, the target's train split unlabelled (its images resized to the source's), accuracy on both test
    splits. Returns {"source-only": {...}, "dann": {...}} with source_acc and target_acc, and the setup."""
    from ..data import load_dataset

    src, src_test = load_dataset(source), load_dataset(source, "test")
    tgt, tgt_test = load_dataset(target), load_dataset(target, "test")
    for name, d in ((source, src), (target, tgt)):
        if not hasattr(d, "x"):
            raise GenlabError(f"{name} streams from disk; adaptation takes data that fits in memory")
    if (src.y < 0).any() or (tgt_test.y < 0).any():
        raise GenlabError("adaptation needs labelled source data and a labelled target test split to measure; "
                          f"{source if (src.y < 0).any() else target} has unlabelled rows")
    if src.spec.num_classes != tgt.spec.num_classes:
        raise GenlabError(f"{source} has {src.spec.num_classes} classes, {target} {tgt.spec.num_classes}; "
                          "adapt between datasets of the same classes")
    if src.spec.kind != tgt.spec.kind or (not src.spec.is_image and src.spec.shape != tgt.spec.shape):
        raise GenlabError(f"{source} ({src.spec.kind}, {src.spec.shape}) and {target} ({tgt.spec.kind}, "
                          f"{tgt.spec.shape}) do not fit one network; give two image datasets or two of the same "
                          "columns")

    def original(x):  # the estimator takes original units, as a user would
        return src.spec.to_original(images_as(x, src.spec) if src.spec.is_image else x)

    Xs, Xt = original(src.x), original(tgt.x)
    tests = {"source_acc": (original(src_test.x), src_test.y.numpy()),
             "target_acc": (original(tgt_test.x), tgt_test.y.numpy())}
    out: dict[str, Any] = {"source": source, "target": target, "budget": {"minutes": minutes} if minutes else
                           {"steps": steps}, "seed": random_state, "rows": {"source": len(Xs), "target": len(Xt)}}
    for name, top in (("source-only", 0.0), ("dann", adapt)):
        clf = DomainAdversarialClassifier(adapt=top, ramp=ramp, steps=steps, minutes=minutes,
                                          random_state=random_state, device=device, verbose=verbose)
        clf.fit(Xs, src.y.numpy(), X_target=Xt)
        out[name] = {k: float(clf.score(X, y)) for k, (X, y) in tests.items()}
        last = [r for r in clf.history_ if "domain_acc" in r]
        if last:
            out[name]["final_domain_acc"] = float(last[-1]["domain_acc"])
    return out
