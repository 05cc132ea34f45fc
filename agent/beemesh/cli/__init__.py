"""`beemesh <command>`: the one entry point (also `python -m beemesh` and the .pyz).

Heavy imports (libp2p, trio) happen only in the commands that need them, so `beemesh nodes`
and `beemesh --version` answer quickly even on a Raspberry Pi. Exit codes (as `nomad job run`'s):
0 done; 1 an error: a usage or input error (one line naming the problem and the fix), a
refused request or bundle, or a thing waited for that did not happen (`drain --wait`,
`rollout status`); 2 nothing could be placed (`apply --wait` ended with a replica no machine
took); 130 interrupted. `beemesh exec` exits with the command's own exit code.
"""

from __future__ import annotations

import os
import sys

from beemesh.cli.parser import parse
from beemesh.errors import UserError


def main(argv: list[str] | None = None) -> int:
    args = parse(sys.argv[1:] if argv is None else argv)
    try:
        return int(args.func(args))
    except UserError as e:
        print(f"beemesh: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `beemesh nodes | head`: the reader left, nothing to report
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
