#!/usr/bin/env python3
"""Cross-implementation vectors for the magic-wormhole flavour's
cryptography, computed with magic-wormhole's own Python code (its `_key`
module, python-spake2 and PyNaCl).

The Rust side's PAKE message (from a fixed seed) is recorded in the file;
the Python side's comes from fixed entropy. Python finishes SPAKE2 with the
Rust message, Rust (core/tests/magic_wormhole_crypto.rs) finishes it with
the Python message, and both must reach the recorded key; the verifier, a
phase key and a sealed message follow from that key.

    /tmp/mw/bin/python tools/magic_wormhole_vectors.py core/tests/data/magic-wormhole-vectors.json          # check
    /tmp/mw/bin/python tools/magic_wormhole_vectors.py --write core/tests/data/magic-wormhole-vectors.json  # rewrite

Needs a virtualenv with magic-wormhole (which brings spake2 and PyNaCl).
"""

import argparse
import json
import sys

from nacl.secret import SecretBox
from spake2 import SPAKE2_Symmetric
from wormhole._key import derive_key, derive_phase_key

PYTHON_ENTROPY = 9  # every entropy byte of the Python side's SPAKE2


def compute(vectors):
    """The Python side's values, from the file's inputs."""
    appid, code = vectors["appid"].encode(), vectors["code"].encode()
    ours = SPAKE2_Symmetric(code, idSymmetric=appid, entropy_f=lambda n: bytes([PYTHON_ENTROPY]) * n)
    python_body = json.dumps({"pake_v1": ours.start().hex()})
    rust_message = bytes.fromhex(json.loads(vectors["rust_pake_body"])["pake_v1"])
    key = ours.finish(rust_message)
    phase_key = derive_phase_key(key, vectors["side"], vectors["phase"])
    sealed = SecretBox(phase_key).encrypt(vectors["plaintext"].encode(), bytes.fromhex(vectors["nonce"]))
    return {
        "python_pake_body": python_body,
        "key": key.hex(),
        "verifier": derive_key(key, b"wormhole:verifier").hex(),
        "phase_key": phase_key.hex(),
        "sealed": bytes(sealed).hex(),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("vectors")
    parser.add_argument("--write", action="store_true", help="write the Python side's values into the file")
    args = parser.parse_args()
    with open(args.vectors) as f:
        vectors = json.load(f)
    computed = compute(vectors)
    if args.write:
        vectors.update(computed)
        with open(args.vectors, "w") as f:
            json.dump(vectors, f, indent=2, sort_keys=True)
            f.write("\n")
        print(f"wrote {args.vectors}")
        return
    wrong = [name for name, value in computed.items() if vectors.get(name) != value]
    for name in wrong:
        print(f"{name}: the file says {vectors.get(name)!r}, magic-wormhole computes {computed[name]!r}")
    if wrong:
        sys.exit(1)
    print(f"{args.vectors}: {len(computed)} values agree with magic-wormhole's Python code")


if __name__ == "__main__":
    main()
