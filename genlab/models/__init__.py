"""Model registry: `create(kind, spec, **config)`, `available()`, `load(dir)`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..config import from_dict
from ..data.spec import DataSpec
from ..errors import GenlabError
from ..io import read_json
from .autoencoder import Autoencoder, DenoisingAutoencoder
from .base import CAPABILITIES, GenerativeModel
from .cyclegan import CycleGAN
from .diffusion import DDPM, LDM, Consistency, Progressive
from .flows import MAF, NSF, Glow, RealNVP
from .gan import GAN
from .gpt import GPT
from .hvae import HVAE
from .pixelcnn import GatedPixelCNN, PixelCNN
from .stylegan import StyleGAN
from .vae import VAE
from .vaegan import VAEGAN
from .vqar import VQAR
from .vqvae import VQVAE

REGISTRY: dict[str, type[GenerativeModel]] = {c.kind: c for c in (Autoencoder, DenoisingAutoencoder, VAE, VAEGAN, HVAE,
                                                                DDPM, GAN, StyleGAN, CycleGAN, MAF, NSF, RealNVP,
                                                                Glow, PixelCNN, GatedPixelCNN, VQVAE, VQAR, LDM,
                                                                Consistency, Progressive, GPT)}

__all__ = ["REGISTRY", "CAPABILITIES", "GenerativeModel", "create", "available", "load_model", "model_class"]


def model_class(kind: str) -> type[GenerativeModel]:
    if kind not in REGISTRY:
        import difflib

        close = difflib.get_close_matches(kind, list(REGISTRY), n=1)
        hint = f"did you mean '{close[0]}'? " if close else ""
        raise GenlabError(f"unknown model kind '{kind}': {hint}available: {', '.join(REGISTRY)} (see `genlab models`)")
    return REGISTRY[kind]


def create(kind: str, spec: DataSpec, **config: Any) -> GenerativeModel:
    """Build a model of `kind` for data described by `spec` (a DataSpec or a dataset with .spec)."""
    spec = getattr(spec, "spec", spec)
    cls = model_class(kind).for_data(spec)
    if spec.kind not in cls.data_kinds:
        other = [k for k, c in REGISTRY.items() if spec.kind in c.data_kinds]
        raise GenlabError(f"{kind} models {' or '.join(cls.data_kinds)} data; {spec.name} is {spec.kind} data "
                          f"(kinds for it: {', '.join(other) or 'none'})")
    return cls(spec, from_dict(cls.Config, cls.upgrade_options(spec, {**cls.config_defaults(spec), **config}),
                               where=kind))


def available() -> list[dict[str, Any]]:
    """Every kind with its family, task, capabilities, options and sampling options (name -> default)."""
    out = []
    for kind, cls in REGISTRY.items():
        out.append({"kind": kind, "family": cls.family, "task": cls.task, "capabilities": cls.capability_names(),
                    "log_prob": cls.log_prob_type or None, "options": cls.option_defaults(),
                    "sample_options": cls.sample_option_defaults()})
    return out


def load_model(directory: str | Path, weights: str = "auto", device: str = "cpu") -> GenerativeModel:
    """Rebuild a saved model: config.json + model.safetensors (or ema.safetensors)."""
    from ..io import load_tensors

    d = Path(directory)
    if not (d / "config.json").is_file() or not (d / "model.safetensors").is_file():
        raise GenlabError(f"{d} is not a genlab run or saved model (no config.json + model.safetensors)")
    meta = read_json(d / "config.json")
    if weights not in ("auto", "ema", "model"):
        raise GenlabError(f"weights must be auto, ema or model, got '{weights}'")
    ema = d / "ema.safetensors"
    if weights == "ema" and not ema.is_file():
        raise GenlabError(f"{d} has no EMA weights (train with --set train.ema_decay=0.999)")
    use_ema = weights == "ema" or (weights == "auto" and ema.is_file())
    model = create(meta["kind"], DataSpec.from_dict(meta["spec"]), **meta["config"])
    for name, rec in meta.get("components", {}).items():
        now = model.components.get(name, {})
        if now.get("sha256") != rec["sha256"]:
            raise GenlabError(f"component {name} of {d} ({rec['path']}) has changed since this model was built on "
                              f"it (sha256 {rec['sha256'][:12]}... now {now.get('sha256', 'missing')[:12]}...); "
                              "restore that run or train this model again")
    state = load_tensors(ema if use_ema else d / "model.safetensors")
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise GenlabError(f"weights in {d} do not fit a {meta['kind']} with this config "
                          f"(missing {len(missing)}, unexpected {len(unexpected)} tensors)")
    return model.to(device).eval()
