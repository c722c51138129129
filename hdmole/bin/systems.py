"""The comparison systems a recipe knows, in table order (for the recipes' shell).

    python -m hdmole.bin.systems --recipe-conf conf all            # every system, table order
    python -m hdmole.bin.systems --recipe-conf conf lora hdmole    # these, checked
    python -m hdmole.bin.systems --recipe-conf conf --accents data/accents.txt all   # and their sizes

Prints the names on one line, separated by spaces. A name with no definition (top-level
conf/systems/<name>.yaml, or <recipe-conf>/systems/<name>.yaml) is an error listing the known systems,
exit status 1. See hdmole.train.systems and docs/configs.md.

With ``--accents``, each system is also composed with ``<recipe-conf>/adapt.yaml`` as stage 5 composes it,
for the domains of that accents.txt, and printed one per line with its size (experts E, rank, alpha, the
source domain); a config that does not fit the accents (e.g. a single LoRA whose rank is not E x r: the
parity rule) is its error, exit status 1. A check for a new corpus before any training (docs/adding_a_corpus.md).
"""

from __future__ import annotations

import argparse
import sys

from hdmole.train.systems import UnknownSystemError, known_systems, system_files


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hdmole.bin.systems", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipe-conf", default="conf", help="the recipe's conf dir (default: conf)")
    parser.add_argument("--accents", help="accents.txt: print each system's size for these domains (checked)")
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
    if args.accents is None:
        print(" ".join(names))
        return 0
    return print_sizes(names, args.recipe_conf, args.accents)


def print_sizes(names: list[str], recipe_conf: str, accents: str) -> int:
    """One line per system: its adapter as stage 5 would train it for ``accents`` (or the error)."""
    from pathlib import Path

    from hdmole.data import AccentList, DataError
    from hdmole.train.config import ConfigError, adapter_config_for, load_train_config

    try:
        domains = AccentList.load(accents)
    except DataError as error:
        print(f"hdmole.bin.systems: {error}", file=sys.stderr)
        return 1
    adapt = Path(recipe_conf) / "adapt.yaml"
    for name in names:
        try:
            config, _ = load_train_config(adapt, [f"system={name}", "data.train=-", f"data.accents={accents}"])
            adapter = adapter_config_for(config, len(domains))
        except (ConfigError, OSError) as error:
            print(f"hdmole.bin.systems: {name}: {error}", file=sys.stderr)
            return 1
        if adapter is None:
            print(f"{name}: {config.adapter.system}, trains {' '.join(config.trainable)}")
            continue
        source = adapter.source_domain
        kept = f", source domain {source} ({domains.names[source]}) keeps the base model" if source is not None else ""
        print(f"{name}: {config.adapter.system}, E = {adapter.num_experts} expert(s) of rank {adapter.rank}, "
              f"alpha {adapter.alpha:g}, routing {adapter.routing}, gating {adapter.gating}{kept}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
