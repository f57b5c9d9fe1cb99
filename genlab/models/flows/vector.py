"""Normalizing flows on vectors and tables: `maf` (masked autoregressive flow, Papamakarios et al. 2017), `nsf`
(neural spline flow: monotonic rational-quadratic splines, Durkan et al. 2019) and `realnvp` on vector data
(affine couplings with alternating masks, Dinh et al. 2017), built on zuko's transforms
(maintained, MIT) and wrapped in genlab's model contract: the Trainer, save/load, `genlab eval`, class
conditioning.

A flow is an invertible map f from data x to a standard normal z, so the density is exact (change of variables):
    log p(x) = log N(f(x); 0, I) + log |det df/dx|.
Training maximises it directly. `encode` is f, `decode` is f^-1, `sample` decodes z ~ N(0, T^2 I) (temperature
T; T < 1 trades diversity for typicality). MAF evaluates log p in one pass and samples in D sequential passes;
NSF (autoregressive splines here too) likewise; RealNVP's couplings do both in one pass per transform.

Densities are in model space, i.e. of the standardised data (vectors and tables are standardised per column by
the train split's mean and std); the density of the data in its own units is log p(x) - sum_j log std_j
(`log_prob_original`). Precision: the flow runs in float32 in every precision (its log-determinants are the
likelihood, and these MLPs gain little from bf16). Tables must be all-numeric: a one-hot categorical column has
no density.
"""

from __future__ import annotations

from abc import abstractmethod
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ...config import check
from ...errors import GenlabError
from ...precision import autocast_off, exact
from .base import Flow


def _zuko():
    try:
        import zuko
    except ImportError:
        raise GenlabError("flows on vectors need zuko: pip install 'genlab[flows]' (or pip install zuko)") from None
    return zuko


@dataclass
class MAFConfig:
    transforms: int = 5  # autoregressive transforms, each followed by a reversal of the dimension order
    hidden: tuple[int, ...] = (128, 128)  # widths of each transform's masked MLP (MADE)
    conditional: bool = False  # condition every transform on the class label (one-hot context)

    def __post_init__(self):
        check(self.transforms >= 1, f"transforms must be >= 1, got {self.transforms}")
        check(len(self.hidden) >= 1 and all(h >= 1 for h in self.hidden), "hidden must be positive widths")


@dataclass
class NSFConfig(MAFConfig):
    bins: int = 8  # rational-quadratic spline bins per dimension (on [-5, 5]; identity outside)

    def __post_init__(self):
        super().__post_init__()
        check(self.bins >= 2, f"bins must be >= 2, got {self.bins}")


class VectorFlow(Flow):
    """A zuko flow over spec.dims features. x: (B, D) in model space; z: (B, D)."""

    def __init__(self, spec, config):
        super().__init__(spec, config)
        if spec.is_image:
            raise GenlabError(f"{self.kind} models vectors and tables; {spec.name} is images (use vae or ddpm)")
        cats = [c.name for c in spec.columns or [] if c.type == "categorical"]
        if cats:
            raise GenlabError(f"{self.kind} needs numeric columns; {spec.name} has categorical ones "
                              f"({', '.join(cats[:3])}): a one-hot column has no density (use vae)")
        self.n_classes = self._classes()
        self.flow = self._build(_zuko().flows, spec.dims, self.n_classes)

    @abstractmethod
    def _build(self, flows, features: int, context: int):
        """The zuko flow (a LazyDistribution) over `features` with a `context`-wide condition (0: none)."""

    def train_defaults(self):
        return {"lr": 1e-3}

    # ---- the map and the density
    def _dist(self, y: torch.Tensor | None, n: int):
        """zuko's NormalizingFlow distribution, conditioned on one-hot labels when the model is conditional."""
        if not self.n_classes:
            return self.flow()
        if y is None:
            raise GenlabError(f"this {self.kind} is conditional: give the labels")
        return self.flow(F.one_hot(self.check_conditioning(n, y, None), self.n_classes).float())

    def _log_prob(self, x: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        return self._dist(y, len(x)).log_prob(x.float())

    def forward(self, x, y, phase="model", step=0):
        with autocast_off(x.device):
            logp = self._log_prob(x, y if self.n_classes else None)
        nll = -logp.mean()
        return nll / self.spec.dims, {"loss": (nll / self.spec.dims).detach(), "nll": nll.detach()}

    @torch.no_grad()
    @exact
    def log_prob(self, x, y=None, **opts) -> torch.Tensor:
        """Exact log density of each row of x (model space, nats): (B, D) -> (B,)."""
        return self._log_prob(x.to(self.device), y)

    def log_prob_original(self, x, y=None) -> torch.Tensor:
        """Exact log density of each row in the data's own units (x already in model space): (B, D) -> (B,)."""
        std = torch.as_tensor(self.spec.std or [1.0] * self.spec.dims, dtype=torch.float64)
        return self.log_prob(x, y) - float(torch.log(std).sum())

    @torch.no_grad()
    @exact
    def encode(self, x, y=None) -> torch.Tensor:
        """z = f(x): (B, D) -> (B, D), standard normal under the model."""
        x = x.to(self.device).float()
        return self._dist(y, len(x)).transform(x)

    @torch.no_grad()
    @exact
    def decode(self, z, y=None) -> torch.Tensor:
        """x = f^-1(z): (B, D) -> (B, D)."""
        z = z.to(self.device).float()
        return self._dist(y, len(z)).transform.inv(z)

    def sampling_nfe(self) -> float:
        """The inverse of each autoregressive transform runs its network once per dimension."""
        return float(self.config.transforms * self.spec.dims)


class MAF(VectorFlow):
    kind = "maf"
    Config = MAFConfig

    @classmethod
    def bench_samplers(cls, spec):
        return () if spec.is_image else ({},)  # images: realnvp (inverting a MAF costs one pass per pixel)

    def _build(self, flows, features, context):
        c = self.config
        return flows.MAF(features, context, transforms=c.transforms, hidden_features=tuple(c.hidden))


class NSF(VectorFlow):
    kind = "nsf"
    Config = NSFConfig

    def _build(self, flows, features, context):
        c = self.config
        return flows.NSF(features, context, bins=c.bins, transforms=c.transforms, hidden_features=tuple(c.hidden))


@dataclass
class VectorRealNVPConfig(MAFConfig):
    transforms: int = 8  # affine couplings, alternating which half of the features is transformed
    hidden: tuple[int, ...] = (128, 128)  # widths of each coupling's MLP


class VectorRealNVP(VectorFlow):
    """`realnvp` on vectors and tables (genlab.models.flows.image.RealNVP is the image form of the kind)."""

    kind = "realnvp"
    Config = VectorRealNVPConfig

    def _build(self, flows, features, context):
        c = self.config
        return flows.RealNVP(features, context, transforms=c.transforms, hidden_features=tuple(c.hidden))

    def sampling_nfe(self) -> float:
        return float(self.config.transforms)  # a coupling inverts in one pass
