#!/usr/bin/env python3
"""Checks each workspace crate's declared `rust-version` against its
dependency tree: it must be at least the highest `rust-version` that any
crate it builds with (normal and build dependencies, for this platform)
declares. Our own code's use of the standard library is checked against
the declared value by clippy's `incompatible_msrv` lint.

What this does not check: that the code really builds with that toolchain
(only one toolchain is installed here), nor crates that declare no
`rust-version` at all.

Usage: tools/check_msrv.py  (from anywhere in the workspace)
"""
import json
import subprocess
import sys


def version(text):
    parts = [int(p) for p in text.split(".")]
    return tuple(parts + [0] * (3 - len(parts)))


def main():
    host = subprocess.run(["rustc", "-vV"], capture_output=True, text=True, check=True).stdout
    triple = next(line.split(": ")[1] for line in host.splitlines() if line.startswith("host: "))
    meta = json.loads(
        subprocess.run(
            ["cargo", "metadata", "--format-version", "1", "--filter-platform", triple],
            capture_output=True, text=True, check=True,
        ).stdout
    )
    packages = {p["id"]: p for p in meta["packages"]}
    nodes = {n["id"]: n for n in meta["resolve"]["nodes"]}
    failed = False
    for member in meta["workspace_members"]:
        declared = packages[member].get("rust_version")
        seen, stack, highest = set(), [member], ((0, 0, 0), "nothing")
        while stack:
            current = stack.pop()
            for dep in nodes[current]["deps"]:
                kinds = {k["kind"] for k in dep["dep_kinds"]}
                if not kinds & {None, "build"} or dep["pkg"] in seen:
                    continue
                seen.add(dep["pkg"])
                stack.append(dep["pkg"])
                needs = packages[dep["pkg"]].get("rust_version")
                if needs and version(needs) > highest[0]:
                    highest = (version(needs), f'{packages[dep["pkg"]]["name"]} {packages[dep["pkg"]]["version"]}')
        name = packages[member]["name"]
        need = ".".join(map(str, highest[0]))
        if declared is None or version(declared) < highest[0]:
            print(f"{name}: rust-version {declared} is below {need}, which {highest[1]} needs")
            failed = True
        else:
            print(f"{name}: rust-version {declared} (its dependencies need {need}: {highest[1]})")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
