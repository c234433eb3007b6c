"""The ``phyvae-dash`` console script.

``phyvae-dash serve [FILE] [--scheduler tcp://host:8786]``
    Open the dashboard in a browser (on the built-in demo when no file is given). All
    sessions' fits run on one pool: a local cluster sized to the machine, or the
    cluster of ``--scheduler``.
``phyvae-dash fit FILE [--out result.nc]``
    Train on a file from the command line, with a progress bar; writes the result
    (NetCDF) and the model weights beside it (safetensors). Settings not given are
    chosen from the image (``choose_settings``) and printed with their reasons.
``phyvae-dash encode FILES... --model result.nc --scheduler tcp://host:8786 --out DIR``
    Encode many files with one model on a dask cluster (or this machine), one Zarr
    store per file; without ``--model`` it first fits on the first file.

Heavy imports (torch, Panel) happen inside the subcommands so that ``--help`` is fast.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import __version__


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="phyvae-dash",
        description="Phases, ferroic domains and domain walls in microscopy images with a "
                    "physics-regularised VAE.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="open the interactive dashboard in a browser",
                                description="Serve the dashboard; each browser tab gets its own session.")
    serve.add_argument("file", nargs="?", help="microscopy file to open (default: the built-in demo)")
    serve.add_argument("--channel", help="channel of a multi-channel file (name or position)")
    serve.add_argument("--port", type=int, default=5006, help="port to listen on (0: any free port; default 5006)")
    serve.add_argument("--address", default=None, help="address to listen on (default: all interfaces)")
    serve.add_argument("--no-show", action="store_true", help="do not open a browser tab")
    serve.add_argument("--allow-websocket-origin", action="append", default=None, metavar="HOST[:PORT]",
                       help="host allowed to connect, e.g. when serving on a remote machine (repeatable)")
    serve.add_argument("--scheduler", default=None, metavar="tcp://HOST:PORT",
                       help="dask scheduler whose workers run all sessions' fits "
                            "(default: a local pool of one process per two cores)")

    fit = commands.add_parser("fit", help="train on a file and write the result",
                              description="Train a phyVAE on FILE and write the result (NetCDF) and the "
                                          "model weights (safetensors, same name).")
    fit.add_argument("file", help="microscopy file (.npy, .tif, .h5, .dm3, ...)")
    fit.add_argument("--patch-size", type=_int_or_auto, default="auto",
                     help="patch side in pixels (default auto: chosen from the image)")
    fit.add_argument("--stride", type=_int_or_auto, default="auto",
                     help="step between patches in pixels (default auto: a quarter of the patch)")
    fit.add_argument("--latent-dim", type=int, default=None,
                     help="number of latent variables (default: chosen, 2)")
    fit.add_argument("--boundary-weight", type=float, default=None,
                     help="weight of the boundary (wall length) loss; 0 turns it off "
                          "(default: chosen from the image's noise)")
    fit.add_argument("--epochs", type=int, default=None, help="training epochs (default: chosen from the data size)")
    fit.add_argument("--model", default="vae", help="model variant: vae, shift or rotation (default vae)")
    fit.add_argument("--transform", default="auto", help="input transform (default auto)")
    fit.add_argument("--channel", default=None, help="channel of a multi-channel file (name or position)")
    fit.add_argument("--lazy", action="store_true",
                     help="read the file chunk by chunk (for files larger than memory)")
    fit.add_argument("--device", default="auto", help="cpu, cuda or auto (default)")
    fit.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    fit.add_argument("--n-domains", type=_int_or_auto, default=None,
                     help="also segment into this many domains ('auto': counted) and print "
                          "the boundary length")
    fit.add_argument("--out", default="result.nc", help="output NetCDF path (default result.nc)")
    fit.add_argument("--quiet", action="store_true", help="no progress bar")

    encode = commands.add_parser(
        "encode", help="encode many files with one model, on a dask cluster",
        description="Encode FILES with a saved model (or fit one on the first file) and "
                    "write DIR/<name>.zarr for each, block by block on a dask scheduler.")
    encode.add_argument("files", nargs="+", help="microscopy files")
    encode.add_argument("--model", default=None,
                        help="a saved fit result (.nc with its .safetensors); default: fit on the first file")
    encode.add_argument("--scheduler", default=None,
                        help="dask scheduler: tcp://host:8786, threads or processes (default: threads)")
    encode.add_argument("--out", default="encoded", help="output folder (default ./encoded)")
    encode.add_argument("--channel", default=None, help="channel of multi-channel files (name or position)")
    encode.add_argument("--patch-size", type=int, default=16, help="patch side when fitting (default 16)")
    encode.add_argument("--stride", type=int, default=4, help="patch step when fitting (default 4)")
    encode.add_argument("--device", default="auto", help="where the model runs: auto (GPU if any), cpu, cuda")
    encode.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def _int_or_auto(value: str):
    """``"auto"`` or a positive integer (argparse type)."""
    if value == "auto":
        return value
    try:
        return int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer or 'auto', got {value!r}") from None


def _channel(value):
    """A channel given on the command line: a position when it is a number, else a name."""
    if value is None:
        return None
    return int(value) if value.lstrip("-").isdigit() else value


def _fit(args) -> int:
    from tqdm.auto import tqdm

    import phyvae_dash as pvd
    from phyvae_dash.models import persist

    image = pvd.load(args.file, channel=_channel(args.channel), lazy=args.lazy)
    bar = None

    def progress(p):
        nonlocal bar
        if args.quiet:
            return
        if bar is None:
            bar = tqdm(total=p.epochs, unit="epoch", desc="training", dynamic_ncols=True)
        bar.update(p.epoch - bar.n)
        bar.set_postfix({name.removeprefix("loss_"): f"{value:.3g}" for name, value in p.losses.items()})

    settings = dict(patch_size=args.patch_size, stride=args.stride, latent_dim=args.latent_dim,
                    model=args.model, transform=args.transform, epochs=args.epochs,
                    device=args.device, seed=args.seed)
    if args.boundary_weight is not None:
        settings["boundary_weight"] = args.boundary_weight
    try:
        # The progress bar needs no latent maps: only the last epoch computes them.
        result = pvd.fit(image, callback=progress, map_every=10**9, **settings)
    finally:
        if bar is not None:
            bar.close()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    written = persist.save(result, out)
    weights = Path(written).with_suffix(".safetensors")
    print(f"result: {written}")
    if weights.exists():
        print(f"weights: {weights}")
    print(f"device: {result.attrs.get('device', '?')}, {result.attrs.get('elapsed_s', float('nan')):.1f} s, "
          f"input: {result.attrs.get('transform', '?')}")
    for reason in result.attrs.get("auto_reasons", []):
        print(f"  {reason}")
    if args.n_domains is not None:
        count = None if args.n_domains == "auto" else args.n_domains
        labels = pvd.segment(result, n_domains=count)
        length = pvd.boundary_length(labels)
        print(f"{int(labels.max()) + 1} domains, total boundary length "
              f"{float(length):.4g} {getattr(length, 'units', '')}")
    return 0


def _encode(args) -> int:
    import phyvae_dash as pvd
    from phyvae_dash.models import persist
    from phyvae_dash.models.batch import encode_many

    out = Path(args.out)
    if args.model is None:
        image = pvd.load(args.files[0], channel=_channel(args.channel), lazy=True)
        result = pvd.fit(image, patch_size=args.patch_size, stride=args.stride,
                         device=args.device, scheduler=args.scheduler)
        model = persist.save(result, out / "model.nc")
        print(f"model fitted on {args.files[0]}: {model}")
    else:
        model = Path(args.model)
    written = encode_many(args.files, model, out, scheduler=args.scheduler,
                          channel=_channel(args.channel), device=args.device,
                          progress=not args.quiet)
    print(f"{len(written)} files encoded into {out}")
    return 0


def _serve(args) -> int:
    from phyvae_dash.app.app import serve

    where = f"http://{args.address or 'localhost'}:{args.port}/"
    print(f"phyvae-dash dashboard at {where} (Ctrl+C stops it)")
    serve(args.file, port=args.port, address=args.address, show=not args.no_show,
          allow_websocket_origin=args.allow_websocket_origin, channel=_channel(args.channel),
          scheduler=args.scheduler)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script; returns the exit status.

    Errors the user can cause (a bad file, a setting out of range) are printed as one
    line, without a traceback, and give exit status 2.
    """
    from .errors import PhyvaeDashError

    args = _parser().parse_args(argv)
    try:
        return {"fit": _fit, "serve": _serve, "encode": _encode}[args.command](args)
    except PhyvaeDashError as error:
        print(f"phyvae-dash {args.command}: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
