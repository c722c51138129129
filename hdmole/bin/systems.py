"""The comparison systems a recipe knows, in table order (for the recipes' shell).

    python -m hdmole.bin.systems --recipe-conf conf all            # every system, table order
    python -m hdmole.bin.systems --recipe-conf conf lora hdmole    # these, checked

Prints the names on one line, separated by spaces. A name with no definition (top-level
conf/systems/<name>.yaml, or <recipe-conf>/systems/<name>.yaml) is an error listing the known systems,
exit status 1. See hdmole.train.systems and docs/configs.md.
"""

from __future__ import annotations

import argparse
import sys

from hdmole.train.systems import UnknownSystemError, known_systems, system_files


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hdmole.bin.systems", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipe-conf", default="conf", help="the recipe's conf dir (default: conf)")
    parser.add_argument("systems", nargs="+", help="system names, or 'all'")
    args = parser.parse_args(argv)
    names = " ".join(args.systems).split()  # "lora hdmole" as one argument, as a recipe's --systems gives it
    if names == ["all"]:
        names = known_systems(args.recipe_conf)
    try:
        for name in names:
            system_files(name, args.recipe_conf)
    except UnknownSystemError as error:
        print(f"hdmole.bin.systems: {error}", file=sys.stderr)
        return 1
    print(" ".join(names))
    return 0


if __name__ == "__main__":
    sys.exit(main())
