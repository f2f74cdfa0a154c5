"""The ``bci-dream`` command: builds the parser from the command modules and maps errors to exit statuses.

Errors the user can fix (a missing file, an unknown device, a port that does not exist, ...) are
printed as one line on stderr and end the command with exit status 1; a stream that ran to its end
but carried NaN/inf values or timestamps that jumped or ran backwards ends with exit status 3 (all
samples kept); a path the system refuses (permissions, a file where a folder must be) is one line and exit
status 1 too. Ctrl-C or SIGTERM ends a command that runs until stopped (``stream``, ``record``, ``run``, ``replay``)
the normal way, its data kept, and any other with 130; ``-v`` shows more logging. Nothing imports this module:
the commands live in :mod:`bci_dream.commands`.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import signal
import sys
import threading
import warnings
from collections.abc import Sequence

from bci_dream import __version__
from bci_dream.acquisition.lsl_config import quiet_liblsl
from bci_dream.commands import COMMAND_MODULES
from bci_dream.commands.common import EXIT_ERROR, EXIT_INTERRUPTED, Terminate
from bci_dream.core.errors import BciDreamError

log = logging.getLogger("bci_dream")


def _on_sigterm(signum, frame):  # pragma: no cover - exercised through subprocess tests
    raise Terminate()


def os_error_line(e: OSError) -> str:
    """What the system refused, in one line with what to do."""
    if e.filename is None:
        return f"{e.strerror or type(e).__name__}: {e}"
    target = f"{e.filename}" + (f" → {e.filename2}" if e.filename2 else "")
    return f"{e.strerror or type(e).__name__}: {target}; choose another path, or check its folder and permissions"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bci-dream", description="Live EEG to images.")
    parser.add_argument("--version", action="version", version=f"bci-dream {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-vv for debug)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module_name in COMMAND_MODULES:
        importlib.import_module(module_name).register(sub)
    return parser


def _setup_logging(verbosity: int) -> None:
    level = logging.WARNING if verbosity == 0 else logging.INFO if verbosity == 1 else logging.DEBUG
    logging.basicConfig(level=level, format="bci-dream: %(levelname)s: %(message)s" if verbosity else
                        "bci-dream: %(message)s", stream=sys.stderr)
    if verbosity == 0:
        logging.getLogger("pyxdf").setLevel(logging.ERROR)  # its notes on clock segments are not for users
        # transformers notes that torchvision is missing each time diffusers imports an image processor class
        # (generation never uses one); brainflow imports pkg_resources, which warns of its own removal.
        logging.getLogger("transformers.utils.import_utils").setLevel(logging.ERROR)
        # torchao (the int8 / fp8 back ends), which diffusers imports when it is installed, lists the optional kernels
        # this machine cannot load, and torch warns of a registration it makes
        logging.getLogger("torchao").setLevel(logging.ERROR)
        logging.getLogger("torch.utils._pytree").setLevel(logging.ERROR)
        logging.getLogger("diffusers.quantizers.torchao.torchao_quantizer").setLevel(logging.ERROR)
        warnings.filterwarnings("ignore", "pkg_resources is deprecated", UserWarning)
        quiet_liblsl()


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _setup_logging(args.verbose)
    if args.command is None:  # the main job: the desktop app on the synthetic board with the default model
        args = parser.parse_args(["app"])
    if hasattr(args, "speed") and args.speed < 0:
        parser.error("--speed must be 0 or positive")
    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _on_sigterm) if in_main_thread else None
    try:
        return args.func(args)
    except BciDreamError as e:
        print(f"bci-dream: error: {e}", file=sys.stderr, flush=True)
        return EXIT_ERROR
    except (KeyboardInterrupt, Terminate):
        return EXIT_INTERRUPTED
    except OSError as e:  # a path the system refuses (permissions, a file where a folder must be, a full disk, ...)
        log.debug("system error", exc_info=True)
        print(f"bci-dream: error: {os_error_line(e)}", file=sys.stderr, flush=True)
        return EXIT_ERROR
    except Exception as e:  # a bug: one line for the user, the traceback with -v
        log.debug("unexpected error", exc_info=True)
        print(f"bci-dream: internal error: {type(e).__name__}: {e} (please report it; -vv shows the traceback)",
              file=sys.stderr, flush=True)
        return EXIT_ERROR
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
