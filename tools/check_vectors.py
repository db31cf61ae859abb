#!/usr/bin/env python3
"""Recomputes PROTOCOL.md's test vectors from the text of the specification
alone, with independent implementations: python-spake2 (the SPAKE2 that
magic-wormhole uses) and the `cryptography` package (HKDF, ChaCha20,
ChaCha20-Poly1305). Exits non-zero, naming the field, on any difference.

    python3 -m venv venv && venv/bin/pip install spake2 cryptography
    venv/bin/python tools/check_vectors.py PROTOCOL.md
"""

import json
import struct
import sys

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from spake2 import SPAKE2_A, SPAKE2_B

L = 2**252 + 27742317777372353535851937790883648493


def hkdf(ikm, salt, info, length):
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=salt, info=info).derive(ikm)


def seed_expand(seed, info, length):  # 4.1
    return hkdf(seed, b"wormhole-sync/v1 seed", info, length)


def pake_key(seed, appid, code):  # 4.1, the `pake` row
    info = b"pake"
    for field in (appid.encode(), code.encode()):
        info += struct.pack(">I", len(field)) + field
    return seed_expand(seed, info, 32)


def keystream64(key):
    # RFC 8439 ChaCha20, 12-byte all-zero nonce, block counter 0. The library
    # takes a 16-byte nonce: the 32-bit counter (little-endian) then the nonce.
    encryptor = Cipher(algorithms.ChaCha20(key, bytes(16)), mode=None).encryptor()
    return encryptor.update(bytes(64))


def scalar(key):  # 4.1: little-endian, reduced modulo the group order
    return int.from_bytes(keystream64(key), "little") % L


def spake2_start(cls, key, appid, code):
    # python-spake2 reads its 64 random bytes big-endian: hand it the keystream reversed.
    stream = keystream64(key)[::-1]
    entropy = lambda n: stream[:n]
    id_a = b"wormhole-sync/v1/initiator:" + appid.encode()
    id_b = b"wormhole-sync/v1/receiver:" + appid.encode()
    state = cls(code.encode(), idA=id_a, idB=id_b, entropy_f=entropy)
    return state, state.start()


def aad(appid, channel, direction):  # 4.4
    a = appid.encode()
    return b"wormhole-sync/v1 data" + struct.pack(">I", len(a)) + a + struct.pack(">I", channel) + bytes([direction])


def recompute(v):
    appid, code, channel = v["appid"], v["code"], v["channel"]
    iseed, rseed = bytes.fromhex(v["initiator_seed"]), bytes.fromhex(v["receiver_seed"])
    out = {}
    out["initiator_side"] = seed_expand(iseed, b"side", 8).hex()
    out["receiver_side"] = seed_expand(rseed, b"side", 8).hex()
    ikey, rkey = pake_key(iseed, appid, code), pake_key(rseed, appid, code)
    out["initiator_pake_key"], out["receiver_pake_key"] = ikey.hex(), rkey.hex()
    out["initiator_scalar"] = scalar(ikey).to_bytes(32, "little").hex()
    out["receiver_scalar"] = scalar(rkey).to_bytes(32, "little").hex()
    a, amsg = spake2_start(SPAKE2_A, ikey, appid, code)
    b, bmsg = spake2_start(SPAKE2_B, rkey, appid, code)
    out["initiator_pake"], out["receiver_pake"] = amsg.hex(), bmsg.hex()
    shared = a.finish(bmsg)
    assert shared == b.finish(amsg), "SPAKE2 keys differ between the sides"
    out["spake2_key"] = shared.hex()
    k = lambda info: hkdf(shared, b"wormhole-sync/v1", info, 32)  # 4.3
    to_receiver = k(b"wormhole-sync/v1 key initiator-to-receiver")
    to_initiator = k(b"wormhole-sync/v1 key receiver-to-initiator")
    out["key_initiator_to_receiver"], out["key_receiver_to_initiator"] = to_receiver.hex(), to_initiator.hex()
    out["verifier"] = k(b"wormhole-sync/v1 verifier").hex()
    out["aad_initiator_to_receiver"] = aad(appid, channel, 1).hex()
    nonce = bytes(12)
    idata, rdata = bytes.fromhex(v["initiator_data"]), bytes.fromhex(v["receiver_data"])
    out["initiator_sealed"] = ChaCha20Poly1305(to_receiver).encrypt(nonce, idata, aad(appid, channel, 1)).hex()
    out["receiver_sealed"] = ChaCha20Poly1305(to_initiator).encrypt(nonce, rdata, aad(appid, channel, 2)).hex()
    # 4.2: a curve point outside the prime-order subgroup is refused.
    refused = bytes([0x42]) + bytes([0x01] * 32)
    a, _ = spake2_start(SPAKE2_A, ikey, appid, code)
    try:
        a.finish(refused)
    except ValueError:
        out["refused_receiver_pake"] = refused.hex()
    else:
        out["refused_receiver_pake"] = "accepted by python-spake2"
    return out


def published(path):
    text = open(path, encoding="utf-8").read()
    start = text.index("```json test-vectors")
    body = text[text.index("\n", start) + 1 :]
    return json.loads(body[: body.index("```")])


def main():
    vectors = published(sys.argv[1] if len(sys.argv) > 1 else "PROTOCOL.md")
    computed = recompute(vectors)
    wrong = [name for name, value in computed.items() if vectors.get(name) != value]
    for name in wrong:
        print(f"{name}: published {vectors.get(name)}, recomputed {computed[name]}")
    if not wrong:
        print(f"all {len(computed)} recomputed vector fields match PROTOCOL.md")
    return 1 if wrong else 0


if __name__ == "__main__":
    sys.exit(main())
