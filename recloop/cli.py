"""The ``recloop`` command line: a thin layer over :mod:`recloop.experiment`.

Configs name experiments; flags override their fields: ``--set model.l2=300`` or the
shorthand ``--model.l2=300``. The environment is read here and only here:
``RECLOOP_DATA_DIR`` (where datasets are looked for), ``RECLOOP_CACHE_DIR`` (where
downloads go), ``RECLOOP_OFFLINE=1`` (never download), and under ``torchrun`` its
``WORLD_SIZE``/``RANK``/``LOCAL_RANK`` (data-parallel training; only rank 0 prints and
writes files). ``main()`` first sets ``OMP_WAIT_POLICY=PASSIVE`` unless it is already set
(:func:`recloop.utils.configure_threads`), before anything imports torch: this module
must not import torch at its top.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from recloop.errors import RecloopError
from recloop.progress import show_progress
from recloop.utils import configure_threads

COMMANDS: dict[str, callable] = {}


def command(name: str):
    def register(function):
        COMMANDS[name] = function
        return function
    return register


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="recloop", description="Recommender loop: data, models, evaluation, serving.")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    parser.add_argument("--version", action=_VersionAction,
                        help="print recloop's version (and git commit, in a checkout) and exit")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def data_options(p):
        p.add_argument("--data-dir", default=os.environ.get("RECLOOP_DATA_DIR"),
                       help="folder holding datasets by name (default: $RECLOOP_DATA_DIR)")
        p.add_argument("--cache-dir", default=os.environ.get("RECLOOP_CACHE_DIR"),
                       help="download cache (default: $RECLOOP_CACHE_DIR or ~/.cache/recloop/datasets)")
        p.add_argument("--offline", action="store_true", default=os.environ.get("RECLOOP_OFFLINE") == "1",
                       help="never download (default: $RECLOOP_OFFLINE=1)")

    def experiment_options(p):
        p.add_argument("config", help="experiment TOML file (see configs/)")
        p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                       help="override a config field, e.g. --set model.l2=300 (repeatable)")
        p.add_argument("--quiet", action="store_true", help="no progress output")
        data_options(p)

    p = sub.add_parser("data", help="describe a dataset: counts, sparsity, popularity curve")
    p.add_argument("dataset", help="known name (ml-100k, amazon-beauty, ...) or a path")
    p.add_argument("--format", default=None)
    p.add_argument("--json", dest="json_path", default=None, help="also write the description as JSON")
    data_options(p)

    # `recloop data expand ...`: main() turns the two words into this parser's name.
    p = sub.add_parser("data expand", help="fractal expansion of a real log into a large, realistic one: Parquet "
                                           "shards + manifest.json (recloop data expand SOURCE --interactions N "
                                           "--output DIR)")
    p.add_argument("source", help="the dataset to expand: known name (ml-100k, ...) or a path")
    p.add_argument("--interactions", type=float, required=True, help="target number of interactions, e.g. 1e7")
    p.add_argument("--output", "-o", required=True, help="new folder for the Parquet shards and manifest.json")
    p.add_argument("--seed", type=int, default=0, help="random seed (same seed, same shards)")
    p.add_argument("--block-density", type=float, default=None,
                   help="mean keep probability of the expansion pattern (default 0.1; docs/scale.md)")
    p.add_argument("--format", default=None)
    data_options(p)

    # `recloop data check ...`: main() turns the two words into this parser's name.
    p = sub.add_parser("data check", help="data quality: duplicates, conflicting ratings, timestamp anomalies, "
                                          "bot-like users, items without features, cold share, sparsity "
                                          "(recloop data check DATASET_OR_CONFIG)")
    p.add_argument("source", help="known name (ml-100k, ...), a path, or an experiment TOML (its [data]; the "
                                  "report then also says what its [data.filters] would drop)")
    p.add_argument("--format", default=None)
    p.add_argument("--json", dest="json_path", default=None, help="also write the findings as JSON")
    p.add_argument("--now", type=int, default=None, help="unix time after which a timestamp is in the future "
                                                         "(default: now)")
    p.add_argument("--strict", action="store_true", help="exit with status 1 when any check flags something")
    data_options(p)

    def refit_option(p):
        p.add_argument("--no-refit-all", dest="refit_all", action="store_false",
                       help="save the evaluated model itself (fitted on the training split) instead of the "
                            "served model refitted on every interaction")

    served = ("The saved artifact is the served model: after the evaluation, a fresh model with the chosen "
              "hyperparameters (and early-stopping epoch count) refitted on every interaction of the "
              "preprocessed dataset (train + valid + test), so it knows each user's whole history. Its "
              "metrics.json holds the evaluated model's metrics (fitted on the training split, tested on "
              "the test split).")
    p = sub.add_parser("train", help="evaluate the config's model, then save the served artifact (refitted on "
                                     "all interactions)", description=served)
    experiment_options(p)
    p.add_argument("--output", "-o", required=True, help="artifact directory to write (the served model)")
    p.add_argument("--model", default=None, help="pick one model of a multi-model config by name or label")
    refit_option(p)

    p = sub.add_parser("evaluate", help="fit and evaluate the config's model; print and save metrics (no artifact)")
    experiment_options(p)
    p.add_argument("--json", dest="json_path", default=None, help="write metrics JSON here")
    p.add_argument("--model", default=None, help="pick one model of a multi-model config by name or label")

    p = sub.add_parser("compare", help="several models on one split: table, HTML report, served artifacts",
                       description="Evaluates every model of the config on one split. " + served)
    experiment_options(p)
    p.add_argument("--output", "-o", default=None,
                   help="folder for results.json and report.html (the evaluated models' metrics) and "
                        "models/LABEL (the served artifacts, refitted on all interactions)")
    refit_option(p)
    p.add_argument("--json", dest="json_path", default=None, help="write all metrics as JSON here")

    p = sub.add_parser("tune", help="search the config's [model.search] space with Optuna on validation, write "
                                    "the best config as TOML, then test it once",
                       description="Runs (or resumes) an Optuna study: seeded TPE sampling, pruning on the "
                                   "validation curve, the study stored in SQLite (re-running adds trials). Writes "
                                   "OUTPUT/best.toml (runnable by `recloop train`/`evaluate`) and OUTPUT/tune.json; "
                                   "the test split is used once, for the best config, at the end.")
    experiment_options(p)
    p.add_argument("--trials", type=_non_negative_int, default=20,
                   help="trials to add to the study in this run (default 20; 0: only test the stored best)")
    p.add_argument("--timeout", default=None, metavar="DURATION",
                   help="start no new trial after this long: 90s, 30m, 1.5h (default: no limit)")
    p.add_argument("--storage", default=None,
                   help="Optuna storage URL, e.g. sqlite:///tune.db (default: sqlite:///OUTPUT/study.db)")
    p.add_argument("--study-name", default=None, help="study to create or resume (default: the config's name)")
    p.add_argument("--pruner", default="median", choices=["median", "hyperband", "none"],
                   help="how trials are stopped on their validation curve (default median)")
    p.add_argument("--startup-trials", type=_non_negative_int, default=5,
                   help="random trials before TPE, and completed trials before the median pruner acts (default 5)")
    p.add_argument("--warmup-epochs", type=_non_negative_int, default=2,
                   help="epochs a trial runs before it may be pruned (default 2)")
    p.add_argument("--no-config-trial", dest="start_from_config", action="store_false",
                   help="do not make the config's own values the first trial of a new study")
    p.add_argument("--output", "-o", default=None,
                   help="folder for best.toml, tune.json and the default study.db (default runs/tune/STUDY)")
    p.add_argument("--model", default=None, help="pick one model of a multi-model config by name or label")

    p = sub.add_parser("recommend", help="top-k items for a user (or a list of recent items) from an artifact")
    p.add_argument("artifact")
    who = p.add_mutually_exclusive_group(required=True)
    who.add_argument("--user", help="external user id")
    who.add_argument("--items", help="comma-separated external item ids of an anonymous user, oldest first")
    p.add_argument("-k", type=_positive_int, default=10, help="items to recommend (default 10)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")

    p = sub.add_parser("serve", help="serve an artifact over HTTP: recommendations, events, new items, a web page",
                       description="Serve an artifact. Every setting below can come from a TOML file (--config, "
                                   "see configs/serve.toml) and from --set KEY=VALUE overrides; the few flags here "
                                   "override both files and defaults.",
                       epilog=_serve_settings_help(), formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("artifact", nargs="?", default=None,
                   help="artifact directory to serve (from train, compare --output or retrain); "
                        "default: the config's artifact")
    p.add_argument("--config", default=None, metavar="TOML", help="serve settings file (e.g. configs/serve.toml)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a setting, e.g. --set retrieval.index=hnsw --set limits.max_k=50 (repeatable)")
    p.add_argument("--host", default=None, help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=None, help="port (default 8000)")
    p.add_argument("--workers", type=int, default=None, help="worker processes, each loads the model (default 1)")
    p.add_argument("--db", default=None,
                   help="event store: a SQLite file or postgresql://USER@HOST:PORT/DB (default: one SQLite file per "
                        "artifact folder under $RECLOOP_HOME/events/, else ~/.local/share/recloop/events/)")
    p.add_argument("--api-key", default=os.environ.get("RECLOOP_API_KEY"),
                   help="require this key (X-API-Key header) on write and admin endpoints "
                        "(default: $RECLOOP_API_KEY, which keeps it out of the process list; none: open)")
    p.add_argument("--log-level", default="info")
    p.add_argument("--access-log", action="store_true", help="log every request (costs throughput)")

    p = sub.add_parser("retrain", help="fold the event log into an artifact's training data and refit it")
    p.add_argument("artifact", help="the artifact the service runs")
    p.add_argument("--db", default=None, help="the service's event store (file path or postgresql:// URL; "
                                              "default: the store `recloop serve ARTIFACT` uses by default)")
    p.add_argument("--output", "-o", required=True, help="new artifact directory (may be ARTIFACT itself)")
    p.add_argument("--reload", metavar="URL", default=None,
                   help="then ask the running service at URL (http://host:port) to load the new artifact")
    p.add_argument("--api-key", default=os.environ.get("RECLOOP_API_KEY"),
                   help="API key for --reload (default: $RECLOOP_API_KEY)")
    policy_options(p)

    p = sub.add_parser("online-report", help="per experiment arm: users, impressions, CTR with intervals, clicks "
                                             "per position, and the A/B or interleaving significance test")
    p.add_argument("--db", required=True, help="the service's event store (file path, sqlite:/// or postgresql:// URL)")
    p.add_argument("--types", default="click,purchase", help="event types that count as clicks (default click,purchase)")
    p.add_argument("--control", default=None, help="the control arm's name (default: the first by name)")
    p.add_argument("--level", type=float, default=0.95, help="confidence level of intervals (default 0.95)")
    p.add_argument("--json", dest="json_path", default=None, help="also write the report as JSON here ('-': stdout only)")
    p = sub.add_parser("forget", help="erase a user from the event store and artifacts, verify no trace is left, "
                                      "or delete expired events (docs/privacy.md)")
    p.add_argument("user", nargs="?", help="the user id to erase (or verify), as the service receives it")
    p.add_argument("--db", default=None, help="the event store (file path or postgresql:// URL; default: the "
                                              "store `recloop serve ARTIFACT` uses for the first --artifact)")
    p.add_argument("--artifact", action="append", default=[], metavar="DIR",
                   help="an artifact to refit without the user (and users erased since it was written); repeatable")
    p.add_argument("--verify", action="store_true",
                   help="erase nothing: scan the store and the artifacts for any trace of USER (exit 1 if found)")
    p.add_argument("--expired", action="store_true", help="delete the events older than --retention-days")
    p.add_argument("--retention-days", type=float, default=0.0, help="with --expired: the retention period")
    p.add_argument("--pseudonym-key-env", default="", metavar="VAR",
                   help="the environment variable holding the service's pseudonym key (privacy.pseudonym_key_env)")
    return parser


class _VersionAction(argparse.Action):
    """``--version``: like argparse's own, but asks git for the commit only when used."""

    def __init__(self, option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS, help=None):
        super().__init__(option_strings, dest=dest, default=default, nargs=0, help=help)

    def __call__(self, parser, namespace, values, option_string=None):
        from recloop import __version__
        from recloop.utils import git_commit

        commit = git_commit()
        print(f"recloop {__version__}" + (f" (commit {commit})" if commit else ""))
        parser.exit()


def policy_options(p) -> None:
    p.add_argument("--positive", default="click,purchase", metavar="TYPES",
                   help="event types that count as positive interactions (besides rate >= threshold)")
    p.add_argument("--rating-threshold", type=float, default=4.0, help="a rate event at or above this is positive")


def _policy(args):
    from recloop.serve.events import EventPolicy

    types = tuple(t.strip() for t in args.positive.split(",") if t.strip())
    return EventPolicy(positive_types=types, rating_threshold=args.rating_threshold)


def _int_at_least(minimum: int):
    """An argparse type: a whole number >= ``minimum``, with a one-line error otherwise."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be zero or positive, got {value}" if minimum == 0
                                             else f"must be at least {minimum}, got {value}")
        return value
    return parse


_non_negative_int, _positive_int = _int_at_least(0), _int_at_least(1)


def split_overrides(argv: list[str]) -> tuple[list[str], list[str]]:
    """Turn ``--model.l2=300`` / ``--model.l2 300`` into ``--set model.l2=300``."""
    out, overrides = [], []
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg.startswith("--") and "." in arg.split("=", 1)[0] and not arg.startswith("--set"):
            key = arg[2:]
            if "=" not in key:
                if i + 1 >= len(argv):
                    raise RecloopError(f"override {arg} needs a value")
                key, i = f"{key}={argv[i + 1]}", i + 1
            overrides.append(key)
        else:
            out.append(arg)
        i += 1
    return out, overrides


def main(argv: list[str] | None = None) -> int:
    configure_threads()  # first: OpenMP reads OMP_WAIT_POLICY once, when torch loads (docs/scale.md)
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    try:
        if argv[:2] == ["data", "expand"]:  # a two-word command
            argv = ["data expand", *argv[2:]]
        if argv[:2] == ["data", "check"]:
            argv = ["data check", *argv[2:]]
        argv, overrides = split_overrides(argv)
        args = build_parser().parse_args(argv)
        if hasattr(args, "set"):
            args.set = args.set + overrides
        elif overrides:
            raise RecloopError(f"'{args.command}' takes no config overrides ({overrides[0]})")
        distributed = _start_distributed()
        if distributed is not None and not distributed.is_main and hasattr(args, "quiet"):
            args.quiet = True  # only rank 0 prints
        finished = False
        try:
            with show_progress(not getattr(args, "quiet", False)):  # bars draw only on a terminal
                code = COMMANDS[args.command](args) or 0
            finished = True
            return code
        finally:
            if distributed is not None:
                from recloop.train.distributed import teardown

                teardown(finished)
    except RecloopError as error:
        if debug:
            raise
        print(f"recloop: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("recloop: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader went away (`recloop data ... | head`): not an error of ours
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error when Python flushes
        return 0
    except Exception as error:  # an unexpected failure still gets one readable line
        if debug:
            raise
        print(f"recloop: internal error: {type(error).__name__}: {error} (run with --debug for the traceback)",
              file=sys.stderr)
        return 1


def _start_distributed():
    """Under ``torchrun`` (``WORLD_SIZE`` > 1 in the environment): join the process group,
    so every Trainer of this process trains data-parallel. ``None`` for a plain run."""
    if int(os.environ.get("WORLD_SIZE", "1") or 1) <= 1:
        return None
    from recloop.train import distributed

    return distributed.setup(distributed.context_from_env(os.environ))


def _is_main() -> bool:
    """Whether this process writes outputs (rank 0 of a distributed run, or the only one)."""
    if int(os.environ.get("WORLD_SIZE", "1") or 1) <= 1:
        return True
    from recloop.train.distributed import is_main_process

    return is_main_process()


# --- commands ---------------------------------------------------------------------------------------
def _load(args):
    from recloop.config import load_config

    return load_config(args.config, args.set, select=getattr(args, "model", None))


def _prepare(args, config):
    from recloop.experiment import prepare_data

    data = prepare_data(config, data_dir=args.data_dir, cache_dir=args.cache_dir, download=not args.offline)
    if not args.quiet:
        parts = data.split.describe()
        print(f"{data.dataset.name}: {len(data.dataset.interactions)} interactions, "
              f"{data.dataset.interactions.n_users} users, {data.dataset.interactions.n_items} items; "
              f"split {config.split.method}: train {parts['train']}, valid {parts['valid']}, test {parts['test']} "
              f"({data.seconds:.1f}s){_shard_note()}", file=sys.stderr)
    return data


def _shard_note() -> str:
    from recloop.train.distributed import current

    context = current()
    return f" [rank 0's users of {context.world_size} processes]" if context.shard_data else ""


def _print_run(run):
    from recloop.report import comparison_table

    print(comparison_table({run.label: run.test}, {run.label: run.fit_seconds}))
    errors = run.test.extra.get("rating_errors")
    if errors:
        print(f"rating prediction: RMSE {errors['rmse']:.4f}, MAE {errors['mae']:.4f}")


@command("data expand")
def cmd_data_expand(args) -> int:
    from recloop.data import load_dataset
    from recloop.data.expand import ExpansionConfig, expand

    source = load_dataset(args.source, args.format, data_dir=args.data_dir, cache_dir=args.cache_dir,
                          download=not args.offline)
    config = ExpansionConfig() if args.block_density is None else ExpansionConfig(block_density=args.block_density)
    manifest = expand(source.interactions, int(args.interactions), args.output, args.seed, config=config,
                      source_name=source.name)
    print(f"{args.output}: {manifest['interactions']:,} interactions (target {manifest['target_interactions']:,}, "
          f"{manifest['relative_error']:+.2%}), {manifest['users']:,} users, {manifest['items']:,} items, "
          f"{len(manifest['shards'])} shard(s), {manifest['seconds']:.1f}s; see {Path(args.output) / 'manifest.json'}")
    return 0


@command("data check")
def cmd_data_check(args) -> int:
    from dataclasses import replace

    from recloop.data import load_dataset
    from recloop.data.quality import DataFilters, apply_filters, check_dataset

    filters = DataFilters()
    if args.source.endswith(".toml"):
        from recloop.config import load_config
        from recloop.data.tabular import ColumnMapping

        d = load_config(args.source).data
        dataset = load_dataset(d.dataset, d.format, data_dir=args.data_dir, cache_dir=args.cache_dir,
                               download=not args.offline, columns=ColumnMapping(d.user, d.item, d.rating, d.timestamp),
                               sep=d.sep)
        filters = d.filters
    else:
        dataset = load_dataset(args.source, args.format, data_dir=args.data_dir, cache_dir=args.cache_dir,
                               download=not args.offline)
    thresholds = filters.thresholds if args.now is None else replace(filters.thresholds, now=args.now)
    report = check_dataset(dataset, thresholds)
    print(report.table())
    for name in report.flagged():
        examples = report.findings[name].examples
        if examples:
            print(f"{name}: e.g. {', '.join(map(str, examples))}")
    record = report.to_dict()
    if filters.any:
        _, dropped = apply_filters(dataset, replace(filters, thresholds=thresholds))
        record["filters_drop"] = dropped
        print("[data.filters] drop: " + ", ".join(f"{name} {count:,} rows" for name, count in dropped.items()))
    if args.json_path:
        Path(args.json_path).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json_path).write_text(json.dumps(record, indent=1))
    return 1 if args.strict and report.flagged() else 0


@command("data")
def cmd_data(args) -> int:
    from recloop.data import load_dataset

    dataset = load_dataset(args.dataset, args.format, data_dir=args.data_dir, cache_dir=args.cache_dir,
                           download=not args.offline)
    info = dataset.describe()
    width = max(len(k) for k in info)
    for key, value in info.items():
        print(f"{key.ljust(width)}  {_describe_value(value)}")
    counts = dataset.interactions.item_counts()
    print("popularity curve (share of interactions held by the top x% of items):")
    ordered = sorted(counts, reverse=True)
    total = max(1, sum(ordered))
    for pct in (1, 5, 10, 20, 50):
        top = max(1, len(ordered) * pct // 100)
        share = sum(ordered[:top]) / total
        print(f"  top {pct:>2}%  {share:6.1%}  {'#' * int(share * 50)}")
    if args.json_path:
        Path(args.json_path).write_text(json.dumps(info, indent=1))
    return 0


def _describe_value(value) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, dict):
        return ", ".join(f"{k}={_describe_value(v)}" for k, v in value.items())
    return str(value)


@command("train")
def cmd_train(args) -> int:
    from recloop.experiment import gather_history, run_model

    config = _load(args)
    data = _prepare(args, config)
    run = run_model(config.model, data, config, progress=not args.quiet)
    if _is_main():
        _print_run(run)
    served = _served(run, data, args)  # every rank: under torchrun the refit trains data-parallel too
    gather_history(served)  # data split by user: the served history is every rank's rows
    if not _is_main():
        return 0
    served.model.save(args.output, metrics=served.record(), extra={"experiment": config.to_dict()})
    print(f"artifact written to {args.output} ({_fitted_on(served)})", file=sys.stderr)
    return 0


def _served(run, data, args):
    """The run whose model is saved: refitted on every interaction unless --no-refit-all."""
    from recloop.experiment import refit_all

    if not args.refit_all:
        return run
    if not args.quiet:
        print(f"refitting {run.label} on all {len(data.dataset.interactions)} interactions for serving ...",
              file=sys.stderr)
    return refit_all(run, data)


def _fitted_on(run) -> str:
    if run.fitted_on == "all":
        return f"served model, refitted on all {len(run.model.history_)} interactions"
    return f"evaluated model, fitted on {len(run.model.history_)} training interactions"


@command("evaluate")
def cmd_evaluate(args) -> int:
    from recloop.experiment import run_model

    config = _load(args)
    data = _prepare(args, config)
    run = run_model(config.model, data, config, progress=not args.quiet)
    if not _is_main():
        return 0
    _print_run(run)
    if args.json_path:
        record = {**run.record(), "experiment": config.to_dict(), "split": data.split.describe()}
        Path(args.json_path).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json_path).write_text(json.dumps(record, indent=1))
    return 0


@command("tune")
def cmd_tune(args) -> int:
    from recloop.tune import TuneSettings, parse_duration, tune

    config = _load(args)
    settings = TuneSettings(trials=args.trials, timeout=parse_duration(args.timeout), storage=args.storage,
                            study_name=args.study_name, pruner=args.pruner, startup_trials=args.startup_trials,
                            warmup_epochs=args.warmup_epochs, start_from_config=args.start_from_config)
    output = Path(args.output or Path("runs") / "tune" / (args.study_name or config.name))
    data = _prepare(args, config)
    result = tune(config, data, settings, output, progress=not args.quiet)
    counts = ", ".join(f"{n} {state}" for state, n in result.counts.items())
    print(f"study {result.study_name!r}: {len(result.trials)} trials ({counts}; {result.added_trials} added in "
          f"{result.tune_seconds:.0f}s); best trial {result.best_trial}: valid {result.metric} "
          f"{result.best_value:.4f} with {result.best_params}")
    print(f"test (once, best config{', refitted on train + valid' if result.best_config.refit else ''}):")
    _print_run(result.run)
    print(f"best config: {output / 'best.toml'}; trials and test metrics: {output / 'tune.json'}", file=sys.stderr)
    return 0


@command("compare")
def cmd_compare(args) -> int:
    from recloop.experiment import run_model
    from recloop.report import comparison_table, write_html_report

    config = _load(args)
    if not config.models:
        from recloop.errors import ConfigError

        raise ConfigError(f"{args.config} lists no models; add [[models]] tables")
    data = _prepare(args, config)
    runs = {}
    for spec in config.models:
        start = time.perf_counter()
        if not args.quiet:
            print(f"fitting {spec.display_name} ...", file=sys.stderr)
        run = run_model(spec, data, config, progress=not args.quiet)
        runs[run.label] = run
        if not args.quiet:
            print(f"  {spec.display_name}: ndcg@10 {run.test.summary().get('ndcg@10', float('nan')):.4f} "
                  f"({time.perf_counter() - start:.1f}s)", file=sys.stderr)
    # every rank refits: under torchrun the refit trains data-parallel too
    served = {label: _served(run, data, args) for label, run in runs.items()} if args.output else {}
    if not _is_main():
        return 0
    results = {label: run.test for label, run in runs.items()}
    fit_seconds = {label: run.fit_seconds for label, run in runs.items()}
    print(comparison_table(results, fit_seconds))
    for group, users in data.split.user_groups.items():  # e.g. cold users, reported apart
        print(f"\n{group} users ({len(users)}):")
        print(comparison_table({label: result.restricted_to(users) for label, result in results.items()}))
    from recloop.data.quality import check_dataset
    from recloop.utils import provenance

    origin = provenance()
    # The checks sort the whole log: skipped beyond 20M interactions (`recloop data check` still runs them).
    quality = (check_dataset(data.dataset, config.data.filters.thresholds).to_dict()
               if len(data.dataset.interactions) <= 20_000_000 else None)
    records = {"provenance": origin, "experiment": config.to_dict(), "split": data.split.describe(),
               "models": {label: run.record() for label, run in runs.items()}, "data_quality": quality}
    if args.output:
        output = Path(args.output)
        for label, run in served.items():
            run.model.save(output / "models" / label, metrics=run.record(), extra={"experiment": config.to_dict()})
        (output / "results.json").write_text(json.dumps(records, indent=1))
        report = write_html_report(output / "report.html", f"recloop compare: {config.name}", results, fit_seconds,
                                   data.split.train.item_counts(), data.dataset.describe(),
                                   Path(args.config).read_text(), provenance=origin, data_quality=quality)
        kind = "served models, refitted on all interactions" if args.refit_all else "evaluated models"
        print(f"artifacts in {output / 'models'} ({kind}), report at {report}", file=sys.stderr)
    if args.json_path:
        Path(args.json_path).write_text(json.dumps(records, indent=1))
    return 0


@command("recommend")
def cmd_recommend(args) -> int:
    import numpy as np

    from recloop.artifact import load_artifact
    from recloop.data.interactions import UserHistories
    from recloop.models.base import UNKNOWN_USER

    model = load_artifact(Path(args.artifact)).model
    if args.user is not None:
        user_idx = model.users_.index(args.user)
        items, scores = model.recommend([user_idx], args.k)
    else:
        history_ids = [x.strip() for x in args.items.split(",") if x.strip()]
        if not history_ids:
            raise RecloopError("--items needs at least one item id (comma-separated), e.g. --items 50,181")
        history = UserHistories.from_lists([model.items_.indices(history_ids)], model.n_items)
        items, scores = model.recommend([UNKNOWN_USER], args.k, history=history)
    titles = None
    if model.item_features_ is not None and "title" in model.item_features_.text:
        titles = model.item_features_.text["title"]
    rows = [{"item_id": model.items_.id(i), "score": float(s), **({"title": str(titles[i])} if titles is not None else {})}
            for i, s in zip(items[0], scores[0]) if i >= 0 and np.isfinite(s)]
    if args.json:
        print(json.dumps({"items": rows}, indent=1))
    else:
        for rank, row in enumerate(rows, 1):
            print(f"{rank:>3}. {row['item_id']:<12} {row['score']:10.4f}  {row.get('title', '')}")
    return 0




def _serve_settings_help() -> str:
    """Every serve setting with its default, read from the settings dataclasses (so the
    help cannot drift from the code)."""
    import dataclasses

    from recloop.serve.settings import ServeSettings

    lines = ["settings (TOML keys / --set KEY=VALUE) and their defaults:"]

    def walk(cls, prefix: str) -> None:
        for f in dataclasses.fields(cls):
            default = f.default if f.default is not dataclasses.MISSING else (
                f.default_factory() if f.default_factory is not dataclasses.MISSING else None)
            if dataclasses.is_dataclass(default):
                walk(type(default), f"{prefix}{f.name}.")
            elif f.name == "artifact":
                lines.append("  artifact = (required: the positional argument or the config's)")
            elif f.name != "api_key":  # a secret: flag or $RECLOOP_API_KEY only
                lines.append(f"  {prefix}{f.name} = {json.dumps(default)}")

    walk(ServeSettings, "")
    from recloop.rank.index import RetrievalConfig

    lines.append(f"retrieval.index \"auto\": exact search up to retrieval.exact_max_items "
                 f"({RetrievalConfig().exact_max_items:,}) items, faiss (retrieval.ann) above.")
    return "\n".join(lines)


def _check_port_free(host: str, port: int) -> None:
    """A named error for a port another process holds; uvicorn would say so only after
    the model has loaded, and exit 3. A port freed between this check and uvicorn's bind
    is fine; one taken in between still fails in uvicorn."""
    import socket

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as error:
        raise RecloopError(f"cannot serve on {host}:{port}: {error.strerror}") from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
        try:
            probe.bind(address)
        except OSError as error:
            raise RecloopError(f"cannot serve on {host}:{port}: {error.strerror} "
                               f"(another process listens there; pick another --port)") from None


@command("serve")
def cmd_serve(args) -> int:
    import dataclasses
    import logging
    import tempfile

    from recloop.artifact import load_artifact
    from recloop.serve.settings import ENV_VAR, exposure_warning, load_serve_settings
    from recloop.serve.store import default_db_path

    try:
        import uvicorn
    except ImportError:
        raise RecloopError("serving needs the serve extra: pip install 'recloop[serve]'") from None
    settings = load_serve_settings(args.config, args.set,
                                   artifact=str(Path(args.artifact).resolve()) if args.artifact else None,
                                   host=args.host, port=args.port, workers=args.workers, db=args.db,
                                   api_key=args.api_key or None)
    artifact = Path(settings.artifact).resolve()
    _check_port_free(settings.host, settings.port)  # before the model loads, not after
    load_artifact(artifact)  # fail here, with the artifact's own error, not in every worker
    warning = exposure_warning(settings)
    if warning:
        logging.getLogger("recloop.serve").warning(warning)
        print(f"warning: {warning}", file=sys.stderr)
    if not settings.db:  # resolved once here, so that every worker writes to the same file
        settings = dataclasses.replace(settings, db=str(default_db_path(settings.artifact)))
    os.environ[ENV_VAR] = settings.to_json()  # read by each worker's app factory
    if settings.workers > 1 and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="recloop-metrics-")
    print(f"serving {artifact} on http://{settings.host}:{settings.port} ({settings.workers} worker(s), events in "
          f"{settings.db}{', API key required for writes' if settings.api_key else ''})", file=sys.stderr)
    uvicorn.run("recloop.serve.app:app_from_env", factory=True, host=settings.host, port=settings.port,
                workers=settings.workers, log_level=args.log_level, access_log=args.access_log,
                timeout_graceful_shutdown=10)
    return 0


@command("retrain")
def cmd_retrain(args) -> int:
    from urllib.parse import urlparse

    from recloop.serve.retrain import retrain
    from recloop.serve.store import default_db_path, open_store

    if args.reload and urlparse(args.reload).scheme not in ("http", "https"):
        raise RecloopError(f"--reload takes the service's URL, e.g. http://127.0.0.1:8000, got {args.reload!r}")
    db = args.db or default_db_path(args.artifact)
    if urlparse(str(db)).scheme in ("", "sqlite") and not Path(str(db).removeprefix("sqlite:///")).is_file():
        raise RecloopError(f"no event store at {db}: give the --db that `recloop serve` wrote to "
                           f"(its default for this artifact is {default_db_path(args.artifact)})")
    start = time.perf_counter()
    with open_store(db) as store:
        path, stats = retrain(args.artifact, store, args.output, _policy(args))
    print(f"folded {stats.positives} positive events of {stats.events} ({stats.new_users} new users, "
          f"{stats.new_items} new items, {stats.skipped_unknown_items} skipped: unknown item) "
          f"through event {stats.events_through}; wrote {path} in {time.perf_counter() - start:.1f}s", file=sys.stderr)
    if args.reload:
        _ask_reload(args.reload, path, args.api_key)
    return 0


@command("forget")
def cmd_forget(args) -> int:
    from recloop.serve.privacy import forget_command

    return forget_command(user=args.user, db=args.db, artifacts=args.artifact, verify_only=args.verify,
                          expired=args.expired, retention_days=args.retention_days,
                          pseudonym_key_env=args.pseudonym_key_env)


def _ask_reload(url: str, path: Path, api_key: str | None) -> None:
    import urllib.error
    import urllib.request

    request = urllib.request.Request(url.rstrip("/") + "/admin/reload", method="POST",
                                     data=json.dumps({"artifact": str(Path(path).resolve())}).encode(),
                                     headers={"content-type": "application/json",
                                              **({"X-API-Key": api_key} if api_key else {})})
    try:
        with urllib.request.urlopen(request, timeout=600) as response:
            answer = json.loads(response.read())
    except urllib.error.HTTPError as error:
        raise RecloopError(f"reload at {url} failed: HTTP {error.code}: {error.read().decode()[:300]}") from None
    except urllib.error.URLError as error:
        raise RecloopError(f"reload at {url} failed: {error.reason}") from None
    print(f"{url} now serves {answer['artifact']} (generation {answer['generation']}, "
          f"loaded in {answer['seconds']:.1f}s)", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())


@command("online-report")
def cmd_online_report(args) -> int:
    from urllib.parse import urlparse

    from recloop.serve.impressions import ImpressionLog
    from recloop.serve.online_report import format_report, read_report
    from recloop.serve.store import open_store

    if urlparse(str(args.db)).scheme in ("", "sqlite") and not Path(str(args.db).removeprefix("sqlite:///")).is_file():
        raise RecloopError(f"no event store at {args.db}: give the --db that `recloop serve` wrote to")
    if not 0 < args.level < 1:
        raise RecloopError(f"--level must be between 0 and 1, got {args.level}")
    types = [t.strip() for t in args.types.split(",") if t.strip()]
    with open_store(args.db) as store, ImpressionLog(store) as log:
        report = read_report(log, types, args.control, args.level)
    if args.json_path == "-":
        print(json.dumps(report, indent=2))
        return 0
    print(format_report(report))
    if args.json_path:
        Path(args.json_path).write_text(json.dumps(report, indent=2) + "\n")
    return 0
