#!/usr/bin/env bash
# Prints the SHA-256 of every file server/page/ is built from, one per line
# (sha256sum's format, paths sorted bytewise), for server/page/INPUTS.
# server/tests/page.rs computes the same list.
set -euo pipefail
cd "$(dirname "$0")/.."
{
  find core/src web/src web/js web/page -type f
  printf '%s\n' Cargo.toml core/Cargo.toml web/Cargo.toml web/Cargo.lock tools/build-web.sh tools/build-page.sh
} | LC_ALL=C sort | xargs sha256sum
