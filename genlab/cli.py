"""The `genlab` command: a thin layer over the Python API. User mistakes print one line and exit 2."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import typer

from .errors import GenlabError, Interrupted

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  rich_markup_mode=None, help="Train, sample, evaluate and compare generative models.")


def _console():
    from rich.console import Console

    c = Console()
    return c if c.is_terminal else Console(width=160)  # pipes and CI logs: wide enough for the tables


@app.command()
def datasets() -> None:
    """List datasets: name, kind, shape, classes, size, source, and whether each is available here."""
    from rich.table import Table

    from .data import SOURCES, availability

    t = Table(title="genlab datasets (train / test sizes)")
    for col in ("name", "kind", "shape", "classes", "size", "source", "here?"):
        t.add_column(col, no_wrap=col == "name")
    missing = []
    for name, s in SOURCES.items():
        how = availability(name)
        t.add_row(name, s.kind, s.shape, s.classes, s.size, s.origin, "yes" if how is None else "no")
        if how:
            missing.append(how)
    t.add_row("folder:PATH", "image", "any", "sub-folders", "-", "your images", "-")
    t.add_row("npz:PATH", "image/vector", "any", "y array", "-", "your arrays", "-")
    t.add_row("csv:PATH[:target=COL]", "table", "any", "target col", "-", "your table", "-")
    c = _console()
    c.print(t)
    for how in missing:
        c.print(f"- {how}", soft_wrap=True)


@app.command()
def models(kind: str | None = typer.Argument(None, help="a kind: list its options with what each does")) -> None:
    """List model kinds (family, task, capabilities, options, sampling options); with KIND, every option of that
    kind, its sampling options and the training options, each with its default and what it does."""
    from rich.table import Table

    from .models import available, model_class

    c = _console()
    if kind is None:
        t = Table(title="genlab models (genlab models KIND explains each option)")
        for col in ("kind", "family", "task", "capabilities", "log_prob", "options (defaults)", "sampling options"):
            t.add_column(col)
        for m in available():
            opts = ", ".join(f"{k}={v}" for k, v in m["options"].items())
            sampling = ", ".join(f"{k}={v}" for k, v in m["sample_options"].items()) or "-"
            t.add_row(m["kind"], m["family"], m["task"], ", ".join(m["capabilities"]), m["log_prob"] or "-", opts,
                      sampling)
        c.print(t)
        return
    from .config import field_help
    from .data.spec import DataSpec
    from .training.trainer import TrainConfig

    cls = model_class(kind)
    m = next(m for m in available() if m["kind"] == kind)
    forms = {"images": cls.for_data(DataSpec("x", "image", (1, 8, 8))),
             "vectors": cls.for_data(DataSpec("x", "vector", (2,)))}
    others = [(f"{kind} options on {data} (--set key=value)", form.option_defaults(), form.option_help(), "")
              for data, form in forms.items() if form is not cls]  # a kind with a form per kind of data
    sections = ((f"{kind} options{' on images' if others else ''} (--set key=value)", m["options"],
                 cls.option_help(), ""), *others,
                (f"{kind} sampling options (--opt key=value on sample and eval)", m["sample_options"],
                 field_help(cls.SampleOptions), ""),
                ("training options (--set train.key=value; the kind may prefer other defaults)",
                 {f: getattr(TrainConfig, f, None) for f in TrainConfig.__dataclass_fields__}, field_help(TrainConfig),
                 "train."))
    for title, defaults, helps, prefix in sections:
        if not defaults:
            continue
        t = Table(title=title, title_justify="left")
        for col in ("option", "default", "what it does"):
            t.add_column(col, no_wrap=col == "option")
        for name, default in defaults.items():
            t.add_row(prefix + name, str(default), helps.get(name, ""))
        c.print(t)


@app.command()
def download(name: str = typer.Argument(..., help="mnist or fashion-mnist")) -> None:
    """Download a dataset's files (checksummed, written atomically) into $GENLAB_DATA. Needs network."""
    from .data.builtin import DOWNLOADS, download_idx

    if name not in DOWNLOADS:
        raise GenlabError(f"nothing to download for '{name}': downloadable: {', '.join(DOWNLOADS)}")
    print(f"downloaded {name} to {download_idx(name)}")


def _train_sections(config: Path | None, sets: list[str]) -> dict:
    from .config import load_yaml, parse_overrides, split_sections

    flat = load_yaml(config) if config else {}
    return split_sections({**flat, **parse_overrides(sets)})


@app.command()
def train(
    kind: str | None = typer.Argument(None, help="model kind (see `genlab models`); omit with --resume"),
    data: str | None = typer.Option(None, "--data", help="dataset name or folder:/npz:/csv:PATH"),
    steps: int | None = typer.Option(None, help="budget in iterations"),
    epochs: float | None = typer.Option(None, help="budget in passes over the train split"),
    minutes: float | None = typer.Option(None, help="budget in wall-clock minutes"),
    batch_size: int | None = typer.Option(None, "--batch-size"),
    lr: float | None = typer.Option(None),
    sets: list[str] = typer.Option([], "--set", help="key=value (model option, train.X or data.X); repeatable"),
    config: Path | None = typer.Option(None, "--config", help="YAML file of options"),
    out: Path | None = typer.Option(None, "--out", help="run directory (default runs/KIND-DATA-STAMP)"),
    resume: bool = typer.Option(False, "--resume", help="continue the run in --out from its last checkpoint "
                                "(a new budget, --lr and logging options may be given; the model and data stay)"),
    overwrite: bool = typer.Option(False, "--overwrite", help="replace the run in --out with a new one"),
    seed: int | None = typer.Option(None),
    device: str | None = typer.Option(None, help="auto | cpu | cuda | mps"),
    precision: str | None = typer.Option(None, help="auto (bf16 where the CPU or GPU computes it natively, else "
                                         "fp32) | fp32 | bf16 | fp16 (CUDA); same as --set train.precision=..."),
    progress: bool = typer.Option(True, "--progress/--no-progress"),
) -> None:
    """Train a model; writes a run directory (config, weights, checkpoints, metrics.jsonl, samples)."""
    import torch

    from .data import load_dataset, parse_name
    from .models import create
    from .runs import RunDir
    from .training.trainer import train as run_training

    sec = _train_sections(config, sets)
    cli_train = {k: v for k, v in (("batch_size", batch_size), ("lr", lr), ("seed", seed), ("device", device),
                                   ("precision", precision)) if v is not None}
    budget = {k: v for k, v in (("steps", steps), ("epochs", epochs), ("minutes", minutes)) if v is not None}
    if resume:
        if out is None:
            raise GenlabError("--resume needs --out RUN_DIR, the run to continue")
        rd = RunDir(out)
        if not rd.is_run:
            raise GenlabError(f"{out} is not a genlab run, nothing to resume; "
                              f"start one with genlab train KIND --out {out}")
        if kind is not None and kind != rd.kind:
            raise GenlabError(f"{out} is a {rd.kind} run, not {kind}")
        kind, data_info = rd.kind, rd.data
        if data is not None or sec["data"]:  # a change of data is refused by the trainer, naming it
            name, opts = parse_name(data) if data is not None else (data_info["name"], data_info["opts"])
            data_info = {"name": name, "opts": {**opts, **sec["data"]}}
        model_cfg = {**rd.model_config, **sec["model"]}
        train_cfg = {"progress": progress, **sec["train"], **cli_train}  # the run's own options fill the rest
    else:
        if kind is None or data is None:
            raise GenlabError("give a model kind and --data, e.g. genlab train vae --data mnist5k --steps 1000")
        name, opts = parse_name(data)
        data_info = {"name": name, "opts": {**opts, **sec["data"]}}
        model_cfg, train_cfg = sec["model"], {"progress": progress, **sec["train"], **cli_train}
    dataset = load_dataset(data_info["name"], "train", **data_info.get("opts", {}))
    torch.manual_seed(int(train_cfg.get("seed", 0)))  # the initial weights follow the seed
    model = create(kind, dataset.spec, **model_cfg)
    if out is None:  # the API trains in memory without --out; the command always writes a run
        out = Path("runs") / f"{model.kind}-{dataset.spec.name.split(':')[0]}-{time.strftime('%Y%m%d-%H%M%S')}"
    run = run_training(model, dataset, out=out, resume=resume, overwrite=overwrite, data=data_info, **budget,
                       **train_cfg)
    last = run.history[-1] if run.history else {}
    if int(os.environ.get("RANK", "0")) == 0:  # under torchrun, one summary line
        loss = f"loss {last['loss']:.4g}, " if "loss" in last else ""
        print(f"trained {kind} for {run.step} steps in {run.precision} ({loss}{run.seconds:.0f} s); run directory: "
              f"{run.path}")


PRECISION_HELP = ("auto (bf16 where the CPU or GPU computes it natively, else fp32; a kind whose sampler is no "
                  "faster in bf16 samples in fp32) | fp32 | bf16 | fp16 (CUDA); what the networks run in")
SAMPLE_OPTS_HELP = ("a sampling option of the model's kind, key=value; repeatable. Each also has a flag of its "
                    "own: --KEY VALUE (e.g. --steps 20). `genlab models KIND` lists them")
OPEN_OPTIONS = {"allow_extra_args": True, "ignore_unknown_options": True}  # --KEY VALUE for sampling options


def _sample_options(model, opts: list[str], extra: list[str]) -> dict:
    """--opt key=value items and --KEY VALUE flags (any sampling option of any kind, e.g. --steps 20) -> the
    model's sampling options, validated (one line for an option its kind lacks, naming the kinds that have it)."""
    from .config import parse_overrides
    from .models import REGISTRY

    out = parse_overrides(opts, flag="--opt")
    flags, rest = {}, list(extra)
    while rest:
        item = rest.pop(0)
        if not item.startswith("--") or len(item) < 3:
            raise GenlabError(f"unexpected argument '{item}'; see --help")
        key, eq, value = item[2:].partition("=")
        if not eq:
            if not rest or rest[0].startswith("--"):
                raise GenlabError(f"option --{key} needs a value")
            value = rest.pop(0)
        flags[key.replace("-", "_")] = value
    have = model.sample_option_defaults()
    for key in flags:
        if key not in have:
            kinds = [k for k, c in REGISTRY.items() if key in c.sample_option_defaults()]
            if not kinds:
                raise GenlabError(f"no such option: --{key} (see --help, and `genlab models` for sampling options)")
            raise GenlabError(f"{model.kind} takes no --{key}; --{key} is for "
                              f"{', '.join(k.upper() + 's' for k in kinds)}")
    out.update(parse_overrides([f"{k}={v}" for k, v in flags.items()]))
    model.sample_options(**out)  # unknown names and bad values: one line
    return out


def _progress() -> bool:
    return sys.stderr.isatty()


def _inpaint(model, run: Path, source: str, mask_name: str, n: int, seed: int, label, resample: int, opts: dict):
    """Inpainted images, shown under the masked inputs (the hole in grey) when written as a picture."""
    import torch

    from .apps.inpaint import load_inputs, make_mask
    from .runs import RunDir

    if "inpaint" not in model.capabilities:
        model.inpaint(None, None)  # the capability error, naming the kinds that have it
    rd = RunDir(run)
    x = load_inputs(source, model.spec, n, rd.meta.get("data") if (run / "config.json").is_file() else None)
    m = make_mask(mask_name, model.spec, seed)
    out = model.inpaint(x, m, seed=seed, labels=label, resample=resample, progress=_progress(), **opts)
    if model.spec.is_image:
        hole = torch.broadcast_to(m, x.shape) > 0.5
        return torch.cat([torch.where(hole, torch.zeros_like(x), x), out])
    return out


def _edit(model, run: Path, source: str, strength: float, n: int, seed: int, label, opts: dict):
    """SDEdits, shown under their inputs when written as a picture."""
    import torch

    from .apps.inpaint import load_inputs
    from .runs import RunDir

    if "edit" not in model.capabilities:
        model.edit(None)  # the capability error, naming the kinds that have it
    x = load_inputs(source, model.spec, n, RunDir(run).meta.get("data") if (run / "config.json").is_file() else None)
    out = model.edit(x, strength, seed=seed, labels=label, progress=_progress(), **opts)
    return torch.cat([x.to(out.device), out])


def _draw(model, run: Path, n: int, seed: int, label, prompt, opts: dict, inpaint, mask: str, resample: int,
          translate, direction: str, edit, strength: float, precision: str):
    """What `genlab sample` writes: samples, inpaintings, edits or translations (float32, on the CPU)."""
    import torch

    given = [f"--{k}" for k, v in (("inpaint", inpaint), ("translate", translate), ("edit", edit)) if v is not None]
    if len(given) > 1:
        raise GenlabError(f"{' and '.join(given)} are separate tasks; give one of them")
    if (prompt is not None or "prompt" in opts) and given:
        raise GenlabError("--prompt is for drawing new samples; --inpaint, --edit and --translate take no prompt")
    if edit is not None:
        return _edit(model, run, edit, strength, n, seed, label, opts).cpu().float()
    if inpaint is not None:
        return _inpaint(model, run, inpaint, mask, n, seed, label, resample, opts).cpu().float()
    if translate is not None:
        if model.task != "translate":
            from .models import REGISTRY

            kinds = ", ".join(k for k, c in REGISTRY.items() if c.task == "translate")
            raise GenlabError(f"{model.kind} does not translate images; --translate is for runs of {kinds}")
        from .apps.inpaint import load_inputs

        if direction == "ba" and translate == "test":
            from .data import load_dataset

            target = model.output_data({})
            test = load_dataset(target["name"], "test", **target.get("opts", {}))
            x_in = test.take(torch.arange(min(n, len(test))))[0]
        else:
            x_in = load_inputs(translate, model.spec, n)
        return torch.cat([x_in, model.translate(x_in, direction).cpu().float()])
    return model.sample(n, seed=seed, labels=label, prompt=prompt, progress=_progress(), precision=precision,
                        **opts).cpu()


@app.command(context_settings=OPEN_OPTIONS)
def sample(
    ctx: typer.Context,
    run: Path = typer.Argument(..., help="run directory or saved model"),
    n: int = typer.Option(64, "--n", help="number of samples"),
    out: Path | None = typer.Option(None, "--out", help="FILE.png (grid), FILE.npz (arrays) or FILE.csv (tables)"),
    seed: int = typer.Option(0),
    label: int | None = typer.Option(None, help="class label for conditional models"),
    prompt: str | None = typer.Option(None, help="text-conditioned models: what to draw; gpt: the text to continue"),
    opt: list[str] = typer.Option([], "--opt", help=SAMPLE_OPTS_HELP),
    inpaint: str | None = typer.Option(None, help="fill the --mask region of IMAGE.png, FILE.npz or 'test' "
                                       "(the first --n test images)"),
    mask: str = typer.Option("center", help="with --inpaint: center|left|right|top|bottom|noise or a "
                             "PNG/NPY/NPZ file, nonzero = fill"),
    resample: int = typer.Option(5, help="with --inpaint: RePaint resampling per step"),
    translate: str | None = typer.Option(None, help="translation models: translate IMAGE.png, FILE.npz or 'test' (the "
                                         "first --n test images of the source domain)"),
    edit: str | None = typer.Option(None, help="diffusion: SDEdit IMAGE.png, FILE.npz or 'test' (the first --n "
                                    "test images): noise them to --strength and denoise"),
    strength: float = typer.Option(0.5, help="with --edit: the fraction of the noise schedule added, in (0, 1]; "
                                   "low keeps the input, high follows the model"),
    direction: str = typer.Option("ab", help="with --translate: ab (training data -> target) or ba"),
    device: str = typer.Option("auto"),
    precision: str = typer.Option("auto", help=PRECISION_HELP),
) -> None:
    """Draw samples from a trained model and write them as a picture or arrays, in original units.
    With --inpaint, fill the masked part of given images instead (rows: input with the hole, result); with
    --edit (diffusion), re-imagine given images with SDEdit (rows: input, edit); with --translate (translation
    models), translate given images (rows: input, translation)."""
    import torch

    from .io import write_csv, write_npz
    from .models import load_model
    from .precision import autocast
    from .report.images import save_samples
    from .training.trainer import resolve_device

    if n < 1:
        raise GenlabError(f"--n must be >= 1, got {n}")
    model = load_model(run, device=str(resolve_device(device)))
    opts = _sample_options(model, opt, ctx.args)
    precision = model.sampling_precision(precision)
    if model.channels_last(precision):  # the faster layout for this model in this precision
        model.to(memory_format=torch.channels_last)
    with autocast(precision, model.device):
        x = _draw(model, run, n, seed, label, prompt, opts, inpaint, mask, resample, translate, direction, edit,
                  strength, precision)
    ext = "txt" if model.spec.kind == "text" else "png" if model.spec.is_image or model.spec.dims == 2 else "npz"
    what = "inpaint" if inpaint else "translate" if translate else "edit" if edit else "sample"
    out = out or run / "samples" / f"{what}_seed{seed}.{ext}"
    suffix = out.suffix.lower()
    if model.spec.kind == "text":
        if suffix != ".txt":
            raise GenlabError(f"a text model writes text: use --out FILE.txt, not {out.suffix or out.name}")
        from .io import atomic_write_bytes

        texts = [(prompt or "") + t for t in model.spec.to_original(x)]
        atomic_write_bytes(out, "\n\n----\n\n".join(texts).encode())
        for t in texts:
            print(t + "\n----")
    elif suffix == ".png":
        two_rows = inpaint is not None or translate is not None or edit is not None
        if save_samples(x.cpu(), model.spec, out, nrow=len(x) // 2 if two_rows else None) is None:
            raise GenlabError(f"{model.spec.kind} data of {model.spec.dims} dims has no picture; "
                              "use --out FILE.npz or FILE.csv")
    elif suffix == ".npz":
        orig = model.spec.to_original(x)
        write_npz(out, orig if isinstance(orig, dict) else {"x": orig})
    elif suffix == ".csv":
        orig = model.spec.to_original(x)
        if not isinstance(orig, dict) and orig.ndim != 2:
            raise GenlabError("images cannot be written as CSV; use --out FILE.png or FILE.npz")
        write_csv(out, orig if isinstance(orig, dict) else {f"x{i}": orig[:, i] for i in range(orig.shape[1])})
    else:
        raise GenlabError(f"unknown output type '{out.suffix}': use .png, .npz or .csv")
    print(f"wrote {n} samples to {out}")


@app.command("eval", context_settings=OPEN_OPTIONS)
def eval_cmd(
    ctx: typer.Context,
    run: Path = typer.Argument(..., help="run directory"),
    n: int | None = typer.Option(None, "--n", help="samples to generate and test examples to score for nll "
                                 "(default: 10,000 or the test split's size, and all test examples)"),
    metrics: str | None = typer.Option(None, help="comma-separated, e.g. fid,kid,pr,dc,is,cls_acc,modes,nll"),
    k: int = typer.Option(100, "--k", help="importance samples for the IWAE bound"),
    extractor: str | None = typer.Option(None, help="extractor weights FILE, or inception:FILE"),
    json_out: Path | None = typer.Option(None, "--json", help="also write the results here"),
    seed: int = typer.Option(0),
    opt: list[str] = typer.Option([], "--opt", help=SAMPLE_OPTS_HELP),
    device: str = typer.Option("auto"),
    precision: str = typer.Option("auto", help=PRECISION_HELP + " while drawing the samples (likelihoods and "
                                  "features are always float32)"),
) -> None:
    """Evaluate a run on its test split with the protocol's metrics; writes RUN/eval.json and prints a table."""
    from rich.table import Table

    from .io import atomic_write_json
    from .metrics.protocol import evaluate, summary_rows
    from .runs import RunDir

    names = [m.strip() for m in metrics.split(",") if m.strip()] if metrics else None
    opts = _sample_options(RunDir.open(run).model(), opt, ctx.args)
    result = evaluate(run, metrics=names, n=n, k=k, device=device, extractor=extractor, seed=seed,
                      sample_opts=opts, precision=precision)
    if json_out:
        atomic_write_json(json_out, result)
    t = Table(title=f"eval of {run}: protocol v{result['protocol']}, {result['seconds']} s")
    t.add_column("metric")
    t.add_column("value")
    for name, v in summary_rows(result):
        t.add_row(name, v)
    _console().print(t)
    if "extractor" in result:
        print(f"features: {result['extractor']['name']} (sha256 {result['extractor']['sha256'][:16]}...)")
    if "sampling" in result:
        s = result["sampling"]
        cost = f"{s['nfe_per_sample']} network evaluation(s) per sample"
        if s["candidates_per_sample"] != 1:
            cost += f", {s['candidates_per_sample']} candidates drawn per kept sample"
        print(f"sampling: {s['n']} samples in {s['precision']} at {s['samples_per_s']} samples/s, {cost}")
    if result["dataset"] != result["trained_on"]:
        print(f"reference: {result['dataset']} test split (the {result['task']} target; trained on "
              f"{result['trained_on']})")


@app.command()
def report(run: Path = typer.Argument(..., help="run directory"),
           out: Path | None = typer.Option(None, "--out", help="HTML file (default RUN/report.html)"),
           figures: bool = typer.Option(True, "--figures/--no-figures", help="draw reconstructions etc.")) -> None:
    """Write a self-contained HTML report of a run: config, curves, samples over training, figures, metrics."""
    from .report.figures import model_figures
    from .report.html import write_report
    from .runs import RunDir

    if not RunDir(run).is_run:
        raise GenlabError(f"{run} is not a genlab run (no config.json and metrics.jsonl)")
    if figures:
        model_figures(run)
    print(f"wrote {write_report(run, out)}")


@app.command()
def compare(runs: list[Path] = typer.Argument(..., help="run directories, each evaluated (`genlab eval`)"),
            out: Path = typer.Option(Path("compare"), "--out", help="directory for compare.html, .md, .csv and "
                                     "the plots as PNG")
            ) -> None:
    """One table across evaluated runs (FID, KID, precision/recall, density/coverage, NLL, samples/s, network
    evaluations, parameters, training time), with quality-vs-speed, precision-recall and trilemma plots and a
    mosaic of samples. Rows evaluated under different protocols get different letters and a note."""
    from .report.compare import compare_runs, to_markdown, write_comparison

    c = compare_runs(runs)
    paths = write_comparison(c, out)
    print(to_markdown(c), end="")
    print(f"wrote {paths['html']}, {paths['md'].name}, {paths['csv'].name}"
          + "".join(f", {p.name}" for k, p in paths.items() if k not in ("html", "md", "csv")))


bench_app = typer.Typer(no_args_is_help=True, help="Benchmarks across families.")
app.add_typer(bench_app, name="bench")


@bench_app.command("trilemma")
def bench_trilemma(
    data: str = typer.Option(..., "--data", help="dataset name (`genlab datasets`)"),
    minutes: float = typer.Option(..., "--minutes", help="training budget of each family, wall-clock minutes"),
    out: Path | None = typer.Option(None, "--out", help="benchmark directory (default runs/trilemma-DATA); "
                                    "run the same command again to resume it"),
    seed: int = typer.Option(0),
    n: int | None = typer.Option(None, "--n", help="samples per evaluation (default: the protocol's)"),
    metrics: str | None = typer.Option(None, help="comma-separated (default: every metric that applies)"),
    kinds: str | None = typer.Option(None, help="comma-separated subset of the representatives"),
    extractor: str | None = typer.Option(None, help="feature extractor FILE for image metrics (default: shipped)"),
    device: str = typer.Option("auto"),
) -> None:
    """Train one representative of every family at the same wall-clock budget and seed, evaluate each with the
    protocol (once per sampler its family declares), and write the comparison (compare.html, .md, .csv and
    the plots as PNG). Run the same command again to resume it."""
    from .bench import trilemma
    from .report.compare import to_markdown

    def split(s: str | None, what: str) -> list[str] | None:
        items = [x.strip() for x in s.split(",") if x.strip()] if s is not None else None
        if items == []:
            raise GenlabError(f"--{what} is empty; name at least one, or leave the option out for all")
        return items

    import re

    out = out or Path("runs") / re.sub(r"[^A-Za-z0-9_.=-]+", "_", f"trilemma-{data}")
    c = trilemma(data, minutes, out, seed=seed, n=n, metrics=split(metrics, "metrics"), device=device,
                 progress=_progress(), kinds=split(kinds, "kinds"), extractor=extractor)
    print(to_markdown(c), end="")
    print(f"wrote {out / 'compare.html'}, compare.md, compare.csv and the plots as compare-*.png")


@app.command()
def extractor(data: str = typer.Option(..., "--data", help="labelled image dataset"),
              out: Path = typer.Option(..., "--out", help="FILE.safetensors"),
              epochs: int = typer.Option(12), seed: int = typer.Option(0)) -> None:
    """Train the evaluation protocol's feature extractor (a small classifier) on a dataset's train split."""
    from .metrics.train_extractor import train_extractor

    meta = train_extractor(data, out, epochs=epochs, seed=seed)
    print(f"wrote {out}: test accuracy {meta['test_accuracy']:.4f}, sha256 {meta['sha256']}")


def fresh_dir(parent: Path, name: str) -> Path:
    """parent/name, or parent/name-2, -3, ...: the first that does not exist (never over an earlier run)."""
    i = 1
    while (parent / (name if i == 1 else f"{name}-{i}")).exists():
        i += 1
    return parent / (name if i == 1 else f"{name}-{i}")


@app.command()
def demo(out: Path | None = typer.Option(None, "--out", help="a new directory (default: runs/demo, or "
                                          "runs/demo-2, -3, ... when that exists)"),
         steps: int = typer.Option(800, help="training iterations"),
         device: str = typer.Option("auto")) -> None:
    """Train a small convolutional VAE on mnist5k (Bernoulli decoder, binarised digits), evaluate its test
    likelihood bounds, write samples, figures and an HTML report. Writes only to a new directory."""
    import torch

    from .data import load_dataset
    from .metrics.protocol import evaluate
    from .models import create
    from .report.figures import model_figures
    from .report.html import write_report
    from .runs import RunDir
    from .training.trainer import train as run_training

    if out is None:
        out = fresh_dir(Path("runs"), "demo")
    elif out.exists() and (not out.is_dir() or any(out.iterdir())):
        what = "holds a genlab run" if RunDir(out).is_run else "is not empty"
        raise GenlabError(f"{out} {what}; the demo writes only to a new directory: choose another --out")
    data = load_dataset("mnist5k")
    torch.manual_seed(0)
    model = create("vae", data.spec, latent_dim=16, channels=(32, 64), likelihood="bernoulli")
    print(f"demo: training a conv VAE ({sum(p.numel() for p in model.parameters()):,} parameters) on mnist5k "
          f"({len(data)} train images) for {steps} steps")
    run_training(model, data, steps=steps, out=out, batch_size=128, lr=2e-3, device=device,
                 data={"name": "mnist5k", "opts": {}})
    print("demo: evaluating on the test split (FID, KID, precision/recall, density/coverage, IS, likelihood) ...")
    ev = evaluate(out, k=100, device=device)
    res = ev["metrics"]["nll"]
    model_figures(out)
    page = write_report(out)
    m = ev["metrics"]
    if "fid" in m:
        print(f"demo: {ev['n_samples']} samples vs {ev['n_reference']} test digits: FID {m['fid']:.2f}, "
              f"KID {m['kid']:.4f}, precision {m['precision']:.3f}, recall {m['recall']:.3f}, IS {m['is']:.2f}")
    print(f"demo: on {res['n']} binarised test digits: negative ELBO {res['elbo_nats']:.1f} nats "
          f"({res['elbo_bpd']:.4f} bits/dim), IWAE bound (k=100) {res['iwae_k100_nats']:.1f} nats "
          f"({res['iwae_k100_bpd']:.4f} bits/dim)")
    print(f"demo: samples   {out / 'samples'}\ndemo: figures   {out / 'figures'}\n"
          f"demo: metrics   {out / 'metrics.jsonl'}, {out / 'eval.json'}\ndemo: report    {page}")


from . import cli_apps  # noqa: E402,F401  (registers synth, anomaly, augment)


def main(argv: list[str] | None = None) -> None:
    # typer's command-line errors (click's, vendored by recent typer): found by name, for either layout
    usage_error = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "UsageError")
    try:
        code = app(args=argv, prog_name="genlab", standalone_mode=False)
        if isinstance(code, int) and code:  # --help and friends end through click's Exit
            sys.exit(code)
    except usage_error as e:  # a value that does not parse, a missing argument, an unknown command: one line too
        if type(e).__name__ == "NoArgsIsHelpError":  # `genlab` alone: the help
            print(e.format_message())
            sys.exit(0)
        name = getattr(getattr(e, "ctx", None), "command_path", "genlab")
        print(f"genlab: error: {e.format_message()} (see {name} --help)", file=sys.stderr)
        sys.exit(2)
    except Interrupted as e:
        print(f"genlab: {e.cli or e}", file=sys.stderr)
        sys.exit(e.exit_code)
    except GenlabError as e:
        print(f"genlab: error: {e.cli or e}", file=sys.stderr)
        sys.exit(e.exit_code)
    except KeyboardInterrupt:  # a second Ctrl-C while the first one's checkpoint is written, or outside training
        _stopped_at_once()
    except Exception as e:
        if type(e).__name__ != "Abort":  # click's word for a KeyboardInterrupt outside standalone mode
            raise
        _stopped_at_once()


def _stopped_at_once() -> None:
    print("genlab: interrupted at once; a run keeps its last complete checkpoint", file=sys.stderr)
    sys.exit(130)


if __name__ == "__main__":
    main()
