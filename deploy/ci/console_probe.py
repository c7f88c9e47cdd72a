#!/usr/bin/env python3
"""A real gRPC call to a tokio-console endpoint, with nothing but the standard library.

Opens HTTP/2 (prior knowledge, as gRPC does without TLS), calls
`rs.tokio.console.instrument.Instrument/WatchUpdates` with an empty request, and reads the
stream until the first update mentions a tokio task span (`runtime.spawn`). Such spans exist
only when the service was built with `--cfg tokio_unstable`, so success proves both that the
console answers and that the flag really reached the build.

With `--short-locations`, it also decodes the updates' protobuf far enough to find every task
location (a `….rs` string) and checks that each one inside the cargo registry is one that
tokio-console shortens to `<cargo>/crate-x.y.z/src/…` (as it does for a local build), with
actix-server's tasks among them.

Usage: console_probe.py HOST:PORT [TIMEOUT_S] [--short-locations]. Exit 0 on success, 1 with one
line otherwise. No HPACK decoding is needed: a hyper/h2 server sends `:status 200` as the
static-table byte 0x88, and everything else checked is in DATA frames.
"""
import re
import socket
import struct
import sys
import time

METHOD = b"/rs.tokio.console.instrument.Instrument/WatchUpdates"
MARKER = b"runtime.spawn"
# tokio-console's own rule (tokio-console 0.1.14, src/state/mod.rs, truncate_registry_path).
CARGO = re.compile(r".*/\.cargo(/registry/src/[^/]*/|/git/checkouts/)")


def varint(buf, i):
    value, shift = 0, 0
    while True:
        if i >= len(buf) or shift > 63:
            raise ValueError("truncated varint")
        byte = buf[i]
        value |= (byte & 0x7F) << shift
        i, shift = i + 1, shift + 7
        if not byte & 0x80:
            return value, i


def rs_strings(buf, out, depth=0):
    """Every length-delimited field ending in `.rs`, at any depth: a field that does not parse
    as a message is taken as a string. Raises ValueError if `buf` is not a message."""
    i = 0
    while i < len(buf):
        key, i = varint(buf, i)
        wire = key & 7
        if wire == 0:
            _, i = varint(buf, i)
        elif wire == 1:
            i += 8
        elif wire == 5:
            i += 4
        elif wire == 2:
            length, i = varint(buf, i)
            if i + length > len(buf):
                raise ValueError("truncated field")
            field = buf[i : i + length]
            i += length
            if field.endswith(b".rs"):
                try:
                    out.add(field.decode())
                    continue
                except UnicodeDecodeError:
                    pass
            if depth < 12:
                try:
                    rs_strings(field, out, depth + 1)
                except ValueError:
                    pass
        else:
            raise ValueError(f"wire type {wire}")
        if i > len(buf):
            raise ValueError("truncated field")


def grpc_messages(data):
    """The messages of a gRPC stream (5-byte prefix each); a trailing partial one is left out."""
    i = 0
    while i + 5 <= len(data):
        length = int.from_bytes(data[i + 1 : i + 5], "big")
        if i + 5 + length > len(data):
            return
        yield data[i + 5 : i + 5 + length]
        i += 5 + length


def check_locations(target, data):
    files = set()
    for message in grpc_messages(data):
        try:
            rs_strings(message, files)
        except ValueError:
            pass
    registry = sorted(f for f in files if "/registry/src/" in f or "/git/checkouts/" in f)
    long = [f for f in registry if not CARGO.match(f)]
    if long:
        return fail(f"{target}: {len(long)} task locations tokio-console cannot shorten, e.g. {long[0]}")
    shown = [CARGO.sub("<cargo>/", f) for f in registry]
    actix = sorted((f for f in shown if re.match(r"<cargo>/actix-server-[\d.]+/src/", f)),
                   key=lambda f: not f.endswith("/service.rs"))
    if not actix:
        return fail(f"{target}: no actix-server task among {len(files)} locations: {sorted(files)[:5]}")
    print(f"console at {target}: {len(registry)} registry locations, all shown short by "
          f"tokio-console, e.g. {actix[0]} (longest: {max(shown, key=len)})")
    return 0


def frame(ftype, flags, stream, payload=b""):
    return struct.pack(">I", len(payload))[1:] + bytes([ftype, flags]) + struct.pack(">I", stream) + payload


def literal(name, value):
    # Literal header field without indexing, new name, no Huffman coding.
    return b"\x00" + bytes([len(name)]) + name + bytes([len(value)]) + value


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    short_locations = "--short-locations" in sys.argv
    target = args[0]
    timeout = float(args[1]) if len(args) > 1 else 10.0
    host, port = target.rsplit(":", 1)
    deadline = time.monotonic() + timeout
    try:
        sock = socket.create_connection((host, int(port)), timeout=timeout)
    except OSError as err:
        return fail(f"cannot connect to {target}: {err}")
    big = 2**31 - 1
    headers = (
        b"\x83"  # :method POST
        + b"\x86"  # :scheme http
        + b"\x04" + bytes([len(METHOD)]) + METHOD  # :path, indexed name
        + b"\x01" + bytes([len(target)]) + target.encode()  # :authority, indexed name
        + literal(b"content-type", b"application/grpc")
        + literal(b"te", b"trailers")
    )
    sock.sendall(
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
        + frame(0x4, 0, 0, struct.pack(">HI", 0x4, big))  # SETTINGS_INITIAL_WINDOW_SIZE
        + frame(0x8, 0, 0, struct.pack(">I", big - 65535))  # connection WINDOW_UPDATE
        + frame(0x1, 0x4, 1, headers)  # HEADERS, END_HEADERS
        + frame(0x0, 0x1, 1, b"\x00\x00\x00\x00\x00")  # empty InstrumentRequest, END_STREAM
    )
    buf, data, status_ok = b"", b"", False
    while time.monotonic() < deadline:
        sock.settimeout(max(0.1, deadline - time.monotonic()))
        try:
            chunk = sock.recv(65536)
        except socket.timeout:
            break
        if not chunk:
            break
        buf += chunk
        while len(buf) >= 9:
            length = int.from_bytes(buf[:3], "big")
            if len(buf) < 9 + length:
                break
            ftype, flags = buf[3], buf[4]
            stream = int.from_bytes(buf[5:9], "big") & 0x7FFFFFFF
            payload, buf = buf[9 : 9 + length], buf[9 + length :]
            if ftype == 0x4 and not flags & 0x1:  # peer SETTINGS: acknowledge
                sock.sendall(frame(0x4, 0x1, 0))
            elif ftype == 0x1 and stream == 1 and not status_ok:
                if not payload.startswith(b"\x88"):
                    return fail(f"{target}: response headers are not ':status 200'")
                status_ok = True
            elif ftype == 0x0 and stream == 1:
                data += payload
                complete = not short_locations or next(grpc_messages(data), None) is not None
                if MARKER in data and complete:
                    print(f"console at {target}: gRPC WatchUpdates answered, "
                          f"{len(data)} bytes of updates with tokio task spans")
                    return check_locations(target, data) if short_locations else 0
            elif ftype == 0x3 and stream == 1:
                return fail(f"{target}: stream reset (code {int.from_bytes(payload[:4], 'big')})")
            elif ftype == 0x7:
                return fail(f"{target}: server sent GOAWAY")
    if not status_ok:
        return fail(f"{target}: no gRPC response within {timeout:.0f} s")
    return fail(f"{target}: gRPC answered but no task spans in {len(data)} bytes "
                "(built without --cfg tokio_unstable?)")


def fail(message):
    print(message, file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
