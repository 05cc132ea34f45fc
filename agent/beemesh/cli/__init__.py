"""`beemesh <command>`: the one entry point (also `python -m beemesh` and the .pyz).

Heavy imports (libp2p, trio) happen only in the commands that need them, so `beemesh nodes`
and `beemesh --version` answer quickly even on a Raspberry Pi. Exit codes: 0 done, 1 the
thing waited for did not happen (`apply --wait`, `drain --wait`, a refused bundle, a logs
error), 2 a usage or input error (one line naming the problem and the fix), 130 interrupted.
"""

from __future__ import annotations

import os
import sys

from beemesh.cli.parser import build_parser
from beemesh.errors import UserError


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except UserError as e:
        print(f"beemesh: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `beemesh nodes | head`: the reader left, nothing to report
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
