"""Command line: ``python -m triage run ...`` (also installed as ``triage``).

Reason to change: a command, its arguments or its help (the handlers live with what they run).
"""
from __future__ import annotations

import argparse
import sys

from ._cli import guarded
from .data import DATASETS
from .experiments import PROFILES, RunStore, make_config, run


class _Parser(argparse.ArgumentParser):
    """argparse that reports a bad command line in one line (exit 2)."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message}\n")


def _positive_int(text):
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None


def _add_run_args(p):
    p.add_argument("--dataset", required=True, help=f"one of {', '.join(DATASETS)}")
    p.add_argument("--block", type=_positive_int, default=0,
                   help="block to compress, 1..5 (0: the uncompressed base; default)")
    p.add_argument("--init", default=None, help="random (RW) | mean (MW) | stn (STN); default random")
    p.add_argument("--regime", default=None, help="frozen (FM) | thawed (TM); default thawed")
    p.add_argument("--profile", default="smoke", help=f"one of {', '.join(PROFILES)} (default smoke)")
    p.add_argument("--seed", type=_positive_int, default=0)
    p.add_argument("--epochs", type=_positive_int, default=None, help="override the profile's epochs")
    p.add_argument("--stn-epochs", type=_positive_int, default=None)
    p.add_argument("--width", type=float, default=None, help="override the channel multiplier")
    p.add_argument("--resolution", type=_positive_int, default=None,
                   help="input side in px; 224 upsamples per batch as the paper did")
    p.add_argument("--batch-size", type=_positive_int, default=None)
    p.add_argument("--lr", type=float, default=None)
    p.add_argument("--precision", default=None, help="auto (default) | bf16 | fp32")
    p.add_argument("--data-root", default=None, help="data folder (default: $TRIAGE_DATA, ./data, ../shared/data)")
    p.add_argument("--out", default=None, help="runs folder (default: $TRIAGE_RUNS or ./runs)")
    p.add_argument("--run-dir", default=None, help="write this run to exactly this folder")
    p.add_argument("--results", default=None,
                   help="export the finished run here (default: results/triage for the checkout's own runs/)")
    p.add_argument("--val-fraction", type=float, default=None,
                   help="share of the training images held out for validation, in (0, 0.5]")
    p.add_argument("--stopping", default=None, help="fixed | plateau (stop at the lr floor once "
                   "validation accuracy stops improving; --epochs is then the cap)")
    p.add_argument("--child-lr", default=None, help="initial (a fresh SGD at --lr) | continue (the base's final lr)")
    p.add_argument("--model", default=None, help="vgg16_bn (default, the paper's) | resnet8 | resnet20 | resnet18")
    p.add_argument("--control", action="store_true",
                   help="the continued base: the trained base trained again with the children's schedule")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def main(argv=None) -> int:
    parser = _Parser(prog="triage", description="Deep Net Triage experiments")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    p_run = sub.add_parser("run", help="train one network (base or compressed child)")
    _add_run_args(p_run)
    p_dl = sub.add_parser("download", help="fetch a public data set with torchvision (needs internet)")
    p_dl.add_argument("dataset")
    p_dl.add_argument("--data-root", default="data")
    from . import grid  # `grid` and `status` (papermill, dask) live in triage/grid.py
    grid_commands = grid.add_commands(sub)
    from . import report  # `export` of stored runs for the book
    report_commands = report.add_commands(sub)
    from . import explorer  # `explore`: the widget explorer served by Voilà
    explore_commands = explorer.add_commands(sub)
    from . import failure  # `failure`: compress to failure (beyond the paper)
    failure_commands = failure.add_commands(sub)
    args = parser.parse_args(argv)
    if args.command in grid_commands:
        return grid.main(args)
    if args.command in report_commands:
        return report.main(args)
    if args.command in explore_commands:
        return explorer.main(args)
    if args.command in failure_commands:
        return failure.main(args)

    def body():
        if args.command == "run":
            cfg = make_config(args.dataset, args.block, args.init, args.regime, args.profile, args.seed,
                              epochs=args.epochs, stn_epochs=args.stn_epochs, width=args.width,
                              resolution=args.resolution, batch_size=args.batch_size, lr=args.lr,
                              precision=args.precision, control=args.control,
                              val_fraction=args.val_fraction, stopping=args.stopping, child_lr=args.child_lr,
                              model=args.model)
            store = RunStore(args.out, **({"results": args.results} if args.results else {}))
            run(cfg, store, data_root=args.data_root, device=args.device,
                progress=not args.no_progress, run_dir=args.run_dir,
                log=lambda m: print(m, file=sys.stderr))
        elif args.command == "download":
            from .data import download
            path = download(args.dataset, args.data_root)
            print(f"{args.dataset} is in {path}")

    return guarded(body, "rerun the same command to resume from the last finished epoch")


if __name__ == "__main__":
    sys.exit(main())
