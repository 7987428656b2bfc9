"""The forensic watermark payload: who got which copy, packed into 52 bits.

Layout (most significant bit first, 52 bits in all)::

    bits  0-15  distributor   16-bit hash of the distributor id (a cross-check)
    bits 16-27  episode       12-bit hash of the episode name
    bits 28-43  serial        16-bit export serial, unique within its episode bucket
    bits 44-51  crc8          CRC-8 (poly 0x07) of bits 0-43

The ledger hands out ``serial`` so that (episode, serial) is unique, which makes the 44
information bits a unique key of an issued export even when two episode names share a
12-bit hash. The CRC turns "the decoder produced some bits" into "these bits are a
payload": it is one of the two tests (with the correlation statistic) a trace must pass.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

DISTRIBUTOR_BITS = 16
EPISODE_BITS = 12
SERIAL_BITS = 16
CRC_BITS = 8
INFO_BITS = DISTRIBUTOR_BITS + EPISODE_BITS + SERIAL_BITS
PAYLOAD_BITS = INFO_BITS + CRC_BITS
CRC_POLY = 0x07


def _hash_bits(text: str, nbits: int) -> int:
    digest = hashlib.sha256(text.encode("utf-8")).digest()
    return int.from_bytes(digest[:4], "big") >> (32 - nbits)


def distributor_code(distributor: str) -> int:
    """16-bit code of a distributor id (a hash: the ledger holds the name)."""
    return _hash_bits(f"distributor:{distributor}", DISTRIBUTOR_BITS)


def episode_code(episode: str) -> int:
    """12-bit code of an episode name."""
    return _hash_bits(f"episode:{episode}", EPISODE_BITS)


def int_to_bits(value: int, nbits: int) -> np.ndarray:
    return np.array([(value >> (nbits - 1 - i)) & 1 for i in range(nbits)], dtype=np.uint8)


def bits_to_int(bits: np.ndarray) -> int:
    value = 0
    for b in bits:
        value = (value << 1) | int(b)
    return value


def crc8(bits: np.ndarray) -> int:
    """Bitwise CRC-8 (poly x^8+x^2+x+1, init 0) of a bit sequence."""
    reg = 0
    for b in bits:
        top = ((reg >> 7) & 1) ^ int(b)
        reg = ((reg << 1) & 0xFF) ^ (CRC_POLY if top else 0)
    return reg


@dataclass(frozen=True)
class Payload:
    """The fields carried by one export's invisible mark (codes, not names)."""

    distributor: int
    episode: int
    serial: int

    def __post_init__(self) -> None:
        for name, nbits in (("distributor", DISTRIBUTOR_BITS), ("episode", EPISODE_BITS), ("serial", SERIAL_BITS)):
            v = getattr(self, name)
            if not 0 <= v < (1 << nbits):
                raise ValueError(f"payload {name}={v} does not fit in {nbits} bits")

    def info_bits(self) -> np.ndarray:
        return np.concatenate([int_to_bits(self.distributor, DISTRIBUTOR_BITS),
                               int_to_bits(self.episode, EPISODE_BITS),
                               int_to_bits(self.serial, SERIAL_BITS)])

    def bits(self) -> np.ndarray:
        """The 52 payload bits: information then CRC-8."""
        info = self.info_bits()
        return np.concatenate([info, int_to_bits(crc8(info), CRC_BITS)])

    @property
    def hex(self) -> str:
        """The 44 information bits as 11 hex digits: the ledger's lookup key."""
        return f"{bits_to_int(self.info_bits()):011x}"

    @classmethod
    def from_bits(cls, bits: np.ndarray) -> Payload | None:
        """The payload in 52 decoded bits, or None when the CRC does not match."""
        bits = np.asarray(bits, dtype=np.uint8)
        if bits.shape != (PAYLOAD_BITS,):
            raise ValueError(f"expected {PAYLOAD_BITS} bits, got {bits.shape}")
        info, crc = bits[:INFO_BITS], bits[INFO_BITS:]
        if crc8(info) != bits_to_int(crc):
            return None
        d = bits_to_int(info[:DISTRIBUTOR_BITS])
        e = bits_to_int(info[DISTRIBUTOR_BITS:DISTRIBUTOR_BITS + EPISODE_BITS])
        s = bits_to_int(info[DISTRIBUTOR_BITS + EPISODE_BITS:])
        return cls(d, e, s)

    @classmethod
    def from_hex(cls, text: str) -> Payload:
        value = int(text, 16)
        return cls(value >> (EPISODE_BITS + SERIAL_BITS), (value >> SERIAL_BITS) & ((1 << EPISODE_BITS) - 1),
                   value & ((1 << SERIAL_BITS) - 1))
