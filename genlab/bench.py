"""`genlab bench trilemma`: the generative learning trilemma (Xiao et al. 2022) measured on one dataset.

One representative of every family (the first kind of each family that declares `bench_samplers` for the data)
is trained at the same wall-clock budget and seed, evaluated with the protocol once per declared sampler, and
compared (genlab.report.compare). The benchmark directory holds one run per kind, bench.json (the plan and the
stages done) and the comparison; a killed benchmark resumes where it stopped: a training run from its newest
checkpoint, an evaluation from the start.

    OUT/bench.json      data, minutes, seed, n, metrics, extractor; the kinds and their samplers; the stages
                        done, and those that failed this time (with their errors; a resume tries them again)
    OUT/KIND/           a genlab run per kind
    OUT/compare.html    the comparison (and compare.md, compare.csv, compare-*.png)
"""

from __future__ import annotations

import contextlib
import math
import shutil
from pathlib import Path
from typing import Any

from .errors import GenlabError, Interrupted
from .io import atomic_write_json, read_json

PLAN_KEYS = ("data", "minutes", "seed", "n", "metrics", "extractor")


def representatives(spec: Any) -> list[tuple[str, tuple[dict[str, Any], ...]]]:
    """(kind, sampling options to evaluate) for the first kind of each family that declares some for `spec`."""
    from .models import REGISTRY

    out, families = [], set()
    for kind, cls in REGISTRY.items():
        samplers = cls.for_data(spec).bench_samplers(spec)
        if samplers and cls.family not in families:
            families.add(cls.family)
            out.append((kind, samplers))
    return out


def _stage(kind: str, opts: dict[str, Any]) -> str:
    return "eval " + kind + "".join(f" {k}={v}" for k, v in opts.items())


def _check_evaluation(dataset, plan, n: int | None, metrics: list[str] | None, extractor: str | None) -> None:
    """Every evaluation option checked before any training: a bad one would otherwise stop the benchmark after
    minutes of it, and be locked into bench.json."""
    from .metrics.features import extractor_for
    from .metrics.protocol import applicable, check_names
    from .models import create

    if n is not None and n < 2:
        raise GenlabError(f"--n must be >= 2 samples, got {n}")
    if metrics is not None:
        check_names(metrics)
    for kind, _ in plan:
        fits = applicable(dataset.spec, create(kind, dataset.spec))
        missing = [m for m in metrics or [] if m not in fits]
        if missing:
            raise GenlabError(f"{', '.join(missing)} does not apply to {kind} on {dataset.spec.name}; "
                              f"it has {', '.join(fits)}")
    if dataset.spec.is_image and set(metrics or ["fid"]) - {"modes", "nll", "sharpness"}:
        extractor_for(dataset.spec.name, extractor)  # a one-line error when no extractor ships for the data


def trilemma(data: str, minutes: float, out: str | Path, seed: int = 0, n: int | None = None,
             metrics: list[str] | None = None, device: str = "auto", progress: bool = False,
             kinds: list[str] | None = None, extractor: str | None = None) -> Any:
    """Train, evaluate and compare every family on `data`; returns the Comparison. Running it again on the same
    `out` resumes (the data, budget, seed, n, metrics and extractor must be the same); kinds: a subset of the
    representatives (default all); extractor: the features of the image metrics (default: the one genlab ships
    for the data)."""
    from .data import load_dataset
    from .report.compare import compare_runs, write_comparison

    if not isinstance(minutes, (int, float)) or not math.isfinite(minutes) or minutes <= 0:
        raise GenlabError(f"--minutes must be a positive number of minutes per family, got {minutes}")
    dataset = load_dataset(data)
    plan = representatives(dataset.spec)
    if kinds:
        unknown = sorted(set(kinds) - {k for k, _ in plan})
        if unknown:
            raise GenlabError(f"{', '.join(unknown)} is not a representative here; choose from "
                              f"{', '.join(k for k, _ in plan)}")
        plan = [(k, s) for k, s in plan if k in kinds]
    _check_evaluation(dataset, plan, n, metrics, extractor)
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise GenlabError(f"--out {out} is a file; give a directory for the benchmark")
    state_path = out / "bench.json"
    options = {"data": data, "minutes": minutes, "seed": seed, "n": n, "metrics": metrics, "extractor": extractor}
    state = {**options, "kinds": {k: list(s) for k, s in plan}, "done": []}
    if state_path.is_file():
        old = read_json(state_path)
        changed = [k for k in PLAN_KEYS if old.get(k) != options[k]]
        if changed:
            k = changed[0]
            raise GenlabError(f"{out} holds a trilemma benchmark with {k}={old.get(k)!r}, not {options[k]!r}; "
                              "resume it with the same options or choose another --out")
        state["done"] = old.get("done", [])
    elif out.exists() and any(out.iterdir()):
        raise GenlabError(f"{out} is not empty and holds no trilemma benchmark; choose another --out")
    atomic_write_json(state_path, state)
    stages = [(kind, None) for kind, _ in plan] + [(kind, s) for kind, samplers in plan for s in samplers]
    stages = sorted(stages, key=lambda st: [k for k, _ in plan].index(st[0]))  # a kind trained, then evaluated

    def done(name: str) -> None:
        state["done"].append(name)
        atomic_write_json(state_path, state)

    state["failed"] = {}  # stage -> error, this time (a resume tries them again)
    with _overall(progress, len(stages)) as bar:
        for kind, opts in stages:
            name = f"train {kind}" if opts is None else _stage(kind, opts)
            bar.describe(name)
            if f"train {kind}" in state["failed"]:
                state["failed"][name] = "its training failed"
            elif name not in state["done"]:
                try:
                    _run_stage(out / kind, kind, opts, dataset, data, minutes, seed, n, metrics, extractor, device,
                               progress)
                except Interrupted as e:
                    resume = _resume_command(options, kinds, device, out)
                    raise Interrupted(f"{str(e).split(':')[0]}: continue the benchmark with trilemma(...) on the "
                                      f"same out", e.exit_code - 128, cli=f"{str(e).split(':')[0]}: continue the "
                                      f"benchmark with {resume}") from None
                except GenlabError as e:  # a family that fails (diverges, ...) does not stop the others
                    state["failed"][name] = str(e)
                    atomic_write_json(state_path, state)
                else:
                    done(name)
            bar.advance()
    ok = [kind for kind, _ in plan if any(st == f"eval {kind}" or st.startswith(f"eval {kind} ")
                                          for st in state["done"])]
    if not ok:
        raise GenlabError(f"every family failed: {'; '.join(f'{k}: {v}' for k, v in state['failed'].items())}")
    c = compare_runs([out / kind for kind in ok])
    c.notes += [f"{k} failed: {v}" for k, v in state["failed"].items()]
    write_comparison(c, out)
    return c


def _exact_number(v: float) -> str:
    """A number as the command line must repeat it: the benchmark's options are compared exactly on resume."""
    return str(int(v)) if float(v).is_integer() else repr(float(v))


def _resume_command(options: dict[str, Any], kinds: list[str] | None, device: str, out: Path) -> str:
    """The CLI command that continues this benchmark: every option that was given, as it was given."""
    import shlex

    parts = ["genlab bench trilemma", f"--data {shlex.quote(options['data'])}",
             f"--minutes {_exact_number(options['minutes'])}", f"--out {shlex.quote(str(out))}"]
    if options["seed"]:
        parts.append(f"--seed {options['seed']}")
    for flag, value in (("--n", options["n"]), ("--metrics", options["metrics"]), ("--kinds", kinds),
                        ("--extractor", options["extractor"])):
        if value:
            parts.append(f"{flag} {shlex.quote(','.join(value) if isinstance(value, list) else str(value))}")
    if device != "auto":
        parts.append(f"--device {device}")
    return " ".join(parts)


def _run_stage(run: Path, kind: str, opts: dict[str, Any] | None, dataset, data: str, minutes: float, seed: int,
               n: int | None, metrics: list[str] | None, extractor: str | None, device: str, progress: bool) -> None:
    """Train `kind` into `run` (opts None; resumed from its checkpoint when it has one), or evaluate it with
    the sampling options `opts`."""
    from .metrics.protocol import evaluate
    from .models import create
    from .runs import RunDir
    from .training import train

    if opts is None:
        rd = RunDir(run)
        if not rd.is_run and not rd.is_empty():  # killed before its first checkpoint: start again
            shutil.rmtree(run)
        train(create(kind, dataset.spec), dataset, minutes=minutes, out=run, resume=rd.is_run, seed=seed,
              device=device, progress=progress, data={"name": data, "opts": {}})
    else:
        evaluate(run, metrics=metrics, n=n, seed=seed, device=device, sample_opts=opts, extractor=extractor)


class _Bar:
    """The benchmark's own line in the shared progress view (nothing when progress is off)."""

    def __init__(self, p: Any = None, task: Any = None):
        self.p, self.task = p, task

    def describe(self, name: str) -> None:
        if self.p is not None:
            self.p.update(self.task, description=f"[bold]trilemma[/bold] {name}")

    def advance(self) -> None:
        if self.p is not None:
            self.p.advance(self.task)


@contextlib.contextmanager
def _overall(enabled: bool, total: int):
    """One rich view over the whole benchmark: the stages done, and the current training's own bar under it."""
    if not enabled:
        yield _Bar()
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from .training.trainer import SHARED_PROGRESS

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("{task.fields[extra]}"), TimeElapsedColumn()) as p:
        token = SHARED_PROGRESS.set(p)
        try:
            yield _Bar(p, p.add_task("trilemma", total=total, extra=""))
        finally:
            SHARED_PROGRESS.reset(token)
