"""What the go-livepeer stand-ins (gateway.py, transcoder.py) share of Livepeer's wire: capability
bit strings as go-livepeer's core/capabilities.go builds and compares them, and gRPC's message
framing."""
import struct


def bitstring(caps):
    """Capability c is bit c % 64 of word c // 64."""
    words = []
    for c in caps:
        while len(words) <= c // 64:
            words.append(0)
        words[c // 64] |= 1 << (c % 64)
    return words


def compatible(needed, have):
    """go-livepeer's CapabilityString.CompatibleWith: a longer `needed` fails."""
    return len(needed) <= len(have) and all(n & h == n for n, h in zip(needed, have))


def grpc_frame(message):
    """One protobuf message as gRPC frames it: uncompressed flag, 4-byte length, bytes."""
    body = message.SerializeToString()
    return struct.pack(">BI", 0, len(body)) + body
