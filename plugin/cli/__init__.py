"""``litellm-failover``: one console script, one module per subcommand.

Each module in this package exposes ``register(subparsers)``, which adds its parser and sets
``handler`` to a callable taking the parsed args and returning an exit code (a coroutine
function is run with ``asyncio.run``). Discovery keeps this file from growing with every command.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import importlib.metadata
import inspect
import os
import pkgutil
import sys

from litellm_failover.settings import FailoverConfigError


def version_text() -> str:
    """``litellm-failover X (LiteLLM Y)``, from the installed distributions' metadata: importing
    LiteLLM to ask it would cost seconds, and a light command must not pay that."""

    def installed(name: str) -> str | None:
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            return None

    litellm = installed("litellm")
    return f"litellm-failover {installed('litellm-failover') or 'unknown'} " + (
        f"(LiteLLM {litellm})" if litellm else "(LiteLLM not installed)"
    )


class _VersionAction(argparse.Action):
    """``--version``, its text looked up only when asked for (every other command skips the
    metadata scan), printed on stdout, exit 0."""

    def __init__(self, option_strings: list[str], dest: str, **kwargs: object) -> None:
        super().__init__(
            option_strings, dest, nargs=0, default=argparse.SUPPRESS, help="show the versions and exit"
        )

    def __call__(self, parser: argparse.ArgumentParser, *args: object) -> None:
        print(version_text())
        parser.exit()


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The ``litellm-failover`` parser. ``command``: the command typed; where a module of this
    package is named after it (``fake-vllm`` is ``fake_vllm``), only that module is imported.
    A light command then does not pay for every other command's imports (SQLAlchemy, Alembic,
    the control plane: about a second of CPU), which matters where several start at once on a
    loaded host (a drill starts its fake nodes in parallel, each bound to serve within its start
    timeout). Any other ``command`` (None, an option, one that ``operate`` registers) builds the
    whole parser."""
    names = sorted(info.name for info in pkgutil.iter_modules(__path__) if not info.name.startswith("_"))
    wanted = (command or "").replace("-", "_")
    if wanted in names:
        parser = _parser([wanted])
        if command in _commands(parser):
            return parser
    return _parser(names)


def _parser(modules: list[str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="litellm-failover",
        description="GPU-aware failover for LiteLLM: demo, servers, store and status.",
    )
    parser.add_argument("--version", action=_VersionAction)
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in modules:
        try:
            module = importlib.import_module(f"{__name__}.{name}")
        except ImportError as exc:
            # A partial install (the GPU agent's host has no LiteLLM, no rich): the commands whose
            # packages are there still work; this one says what to install.
            _register_unavailable(subparsers, name.replace("_", "-"), exc)
            continue
        module.register(subparsers)
    return parser


def _commands(parser: argparse.ArgumentParser) -> set[str]:
    return {
        name
        for action in parser._actions
        if isinstance(action, argparse._SubParsersAction)
        for name in action.choices
    }


def _needs(command: str, missing: str) -> str:
    return (
        f"litellm-failover {command}: needs the Python package {missing!r}, which is not installed "
        f"(README, Install: the extras and what each adds)"
    )


def _register_unavailable(subparsers: argparse._SubParsersAction, command: str, error: ImportError) -> None:
    missing = (error.name or str(error)).split(".")[0]
    parser = subparsers.add_parser(command, help=f"(unavailable: needs {missing})", add_help=False)
    parser.add_argument("rest", nargs=argparse.REMAINDER)

    def unavailable(_: argparse.Namespace) -> int:
        print(_needs(command, missing), file=sys.stderr)
        return 2

    parser.set_defaults(handler=unavailable)


def main(argv: list[str] | None = None) -> int:
    typed = sys.argv[1:] if argv is None else argv
    args = build_parser(typed[0] if typed else None).parse_args(typed)
    try:
        result = args.handler(args)
        if inspect.iscoroutine(result):
            result = asyncio.run(result)
    except FailoverConfigError as exc:
        print(f"litellm-failover: {exc}", file=sys.stderr)
        return 2
    except ModuleNotFoundError as exc:  # a command whose packages a partial install lacks
        print(_needs(args.command, str(exc.name)), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (`events --json | head`): not an error. Point stdout at devnull so
        # the interpreter's own flush at exit does not raise the same error again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
