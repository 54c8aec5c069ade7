"""``loss-client``: list the catalog, or evaluate a loss on .npy files (value as JSON on stdout,
gradients to .npy files). Exit status 0, 1 for an error answer or a network failure (message on
stderr), 2 for a usage error."""

from __future__ import annotations

import argparse
import io
import json
import math
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from loss_client.client import API_KEY_ENV, DEFAULT_TIMEOUT_S, DEFAULT_URL, URL_ENV, Client, Result
from loss_client.errors import LossServiceError

PROG = "loss-client"


EPILOG = """examples:
  loss-client losses
  loss-client evaluate cross_entropy input=logits.npy target=labels.npy --param label_smoothing=0.1
  loss-client evaluate focal input=x.npy target=y.npy --params-json '{"gamma": 2}' --grad input --grad-dir out

exit status: 0 done, 1 an error answer (its detail on stderr) or a network failure, 2 a usage error"""


class Failure(Exception):
    """A failure reported on stderr as one message, with exit status 1."""


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parse(parser, sys.argv[1:] if argv is None else argv)
    client = Client(
        getattr(args, "url", None), getattr(args, "api_key", None), getattr(args, "timeout", DEFAULT_TIMEOUT_S)
    )
    try:
        with client:
            if args.command == "losses":
                list_losses(client, args.json)
            else:
                evaluate(client, args)
    except LossServiceError as exc:
        print(exc, file=sys.stderr)
        return 1
    except (httpx.HTTPError, httpx.InvalidURL) as exc:
        print(f"{PROG}: {network_failure(exc, client.url)}", file=sys.stderr)
        return 1
    except Failure as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # `loss-client losses | head`: the reader left; say nothing more
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    return 0


def build_parser() -> argparse.ArgumentParser:
    # The connection options are accepted before and after the command; SUPPRESS keeps a value
    # given before it from being reset by the command's own parser.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--url", default=argparse.SUPPRESS, help=f"service URL (default: ${URL_ENV}, else {DEFAULT_URL})"
    )
    common.add_argument("--api-key", default=argparse.SUPPRESS, help=f"API key (default: ${API_KEY_ENV})")
    common.add_argument(
        "--timeout", type=float, default=argparse.SUPPRESS, help=f"seconds to wait (default: {DEFAULT_TIMEOUT_S:g})"
    )
    parser = argparse.ArgumentParser(
        prog=PROG,
        parents=[common],
        description="List the catalog of a loss-service, or evaluate a loss on .npy files.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    losses = commands.add_parser("losses", parents=[common], help="list the loss catalog")
    losses.add_argument("--json", action="store_true", help="print the catalog as the service gives it")

    ev = commands.add_parser(
        "evaluate",
        parents=[common],
        help="evaluate a loss on .npy files",
        description="Evaluate LOSS on .npy files; prints the value and meta as JSON, writes gradients "
        "as DIR/grad_<role>.npy. FILE may be - for stdin.",
    )
    ev.add_argument("loss", metavar="LOSS", help="loss name or alias (see: loss-client losses)")
    ev.add_argument("inputs", nargs="*", metavar="ROLE=FILE.npy", help="one tensor per role")
    ev.add_argument("--param", action="append", default=[], metavar="K=V", help="a param; V is JSON if it parses")
    ev.add_argument("--params-json", metavar="JSON", help="params as a JSON object (--param wins)")
    ev.add_argument("--reduction", default="mean", help="mean (default), sum, none, batchmean")
    ev.add_argument(
        "--grad", nargs="*", metavar="ROLE", help="return gradients: of ROLEs, or of every differentiable role"
    )
    ev.add_argument("--grad-dir", default=".", metavar="DIR", help="where grad_<role>.npy files go (default: .)")
    ev.add_argument("--elementwise", metavar="FILE.npy", help="write the per-element values to FILE.npy")
    ev.set_defaults(command_parser=ev)  # usage errors found after parsing name the command's usage
    ev.add_argument("--per-sample", metavar="FILE.npy", help="write the per-sample values to FILE.npy (v1.1 servers)")
    return parser


def parse(parser: argparse.ArgumentParser, argv: Sequence[str]) -> argparse.Namespace:
    """Arguments, with ROLE=FILE pairs accepted anywhere after the loss (also right after --grad)."""
    args, extras = parser.parse_known_args(argv)
    if args.command != "evaluate":
        if extras:
            parser.error(f"unrecognized arguments: {' '.join(extras)}")
        return args
    command = args.command_parser
    pairs = [*args.inputs, *(g for g in args.grad or () if "=" in g), *(e for e in extras if is_pair(e))]
    if rest := [e for e in extras if not is_pair(e)]:
        command.error(f"unrecognized arguments: {' '.join(rest)}")
    if args.grad is not None:
        args.grad = [g for g in args.grad if "=" not in g]
    args.inputs = [split_pair(command, pair, "ROLE=FILE.npy") for pair in pairs]
    if not args.inputs:
        command.error("at least one ROLE=FILE.npy is required")
    args.params = parse_params(command, args.params_json, args.param)
    return args


def is_pair(arg: str) -> bool:
    return "=" in arg and not arg.startswith("-")


def split_pair(parser: argparse.ArgumentParser, pair: str, form: str) -> tuple[str, str]:
    key, sep, value = pair.partition("=")
    if not sep or not key:
        parser.error(f"expected {form}, got {pair!r}")
    return key, value


def parse_params(parser: argparse.ArgumentParser, params_json: str | None, pairs: list[str]) -> dict[str, Any]:
    params: dict[str, Any] = {}
    if params_json is not None:
        try:
            params = json.loads(params_json)
        except ValueError as exc:
            parser.error(f"--params-json is not valid JSON: {exc}")
        if not isinstance(params, dict):
            parser.error("--params-json must be a JSON object")
    for pair in pairs:
        key, text = split_pair(parser, pair, "--param K=V")
        params[key] = json_or_text(text)
    return params


def json_or_text(text: str) -> Any:
    """``2`` -> 2, ``[1,2]`` -> [1, 2], ``true`` -> True; anything that is not JSON stays a string."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def list_losses(client: Client, as_json: bool) -> None:
    losses = client.losses()
    if as_json:
        print(json.dumps({"losses": losses}, indent=2))
        return
    rows = [("NAME", "CATEGORY", "SUMMARY")] + [
        (e["name"], e.get("category", ""), e.get("summary", "")) for e in losses
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(2)]
    for name, category, summary in rows:
        print(f"{name:<{widths[0]}}  {category:<{widths[1]}}  {summary}".rstrip())


def evaluate(client: Client, args: argparse.Namespace) -> None:
    inputs = {role: read_npy(path) for role, path in args.inputs}
    result = client.evaluate(
        args.loss,
        inputs,
        params=args.params,
        reduction=args.reduction,
        return_grad=False if args.grad is None else (args.grad or True),
        return_elementwise=args.elementwise is not None,
        return_per_sample=args.per_sample is not None,
    )
    print(json.dumps(summary(result, args), allow_nan=False))


def read_npy(path: str) -> np.ndarray:
    try:
        source: Any = io.BytesIO(sys.stdin.buffer.read()) if path == "-" else path
        array = np.load(source, allow_pickle=False)
    except OSError as exc:
        raise Failure(f"cannot read {path}: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise Failure(f"cannot read {path}: {exc}") from None
    if not isinstance(array, np.ndarray):
        raise Failure(f"cannot read {path}: not a .npy file")
    return array


def summary(result: Result, args: argparse.Namespace) -> dict[str, Any]:
    """What stdout gets: the value and meta, and where each tensor was written."""
    out: dict[str, Any] = {"loss": result.loss, "reduction": result.reduction, "value": finite_or_text(result.value)}
    if args.elementwise is not None and result.elementwise is not None:
        out["elementwise"] = write_npy(Path(args.elementwise), result.elementwise)
    else:  # reduction "none" without a file: the answer is the elementwise values, so print them
        out["elementwise"] = None if result.elementwise is None else jsonable(result.elementwise.tolist())
    out["grad"] = {role: write_npy(Path(args.grad_dir) / f"grad_{role}.npy", g) for role, g in result.grad.items()}
    if args.per_sample is not None and result.per_sample is not None:
        out["per_sample"] = write_npy(Path(args.per_sample), result.per_sample)
    if "aggregate" in result.raw:
        out["aggregate"] = jsonable(result.aggregate)
    out["meta"] = jsonable(result.meta)
    return out


def write_npy(path: Path, array: np.ndarray) -> str:
    """``array`` written to exactly ``path`` (np.save on a name would add a .npy suffix)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "wb") as f:
            np.save(f, array, allow_pickle=False)
    except OSError as exc:
        raise Failure(f"cannot write {path}: {exc.strerror or exc}") from None
    return str(path)


def finite_or_text(value: float | None) -> float | str | None:
    """As the service writes JSON: non-finite values as "NaN", "Infinity", "-Infinity"."""
    if value is None or math.isfinite(value):
        return value
    return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")


def jsonable(data: Any) -> Any:
    if isinstance(data, float):
        return finite_or_text(data)
    if isinstance(data, list):
        return [jsonable(item) for item in data]
    if isinstance(data, dict):
        return {key: jsonable(item) for key, item in data.items()}
    return data


def network_failure(exc: Exception, where: str) -> str:
    if isinstance(exc, httpx.TimeoutException):
        return f"no answer from {where} in time ({type(exc).__name__})"
    if isinstance(exc, httpx.ConnectError):
        return f"cannot connect to {where}: {exc}"
    return f"request to {where} failed: {exc or type(exc).__name__}"
