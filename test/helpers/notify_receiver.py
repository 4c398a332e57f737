#!/usr/bin/env python3
"""A stand-in for systemd's notify socket: binds a datagram socket with SO_PASSCRED and
prints one JSON line per datagram with the sender's kernel-verified pid, uid and gid
(SCM_CREDENTIALS), which is what systemd uses to attribute a notification to a unit."""
import json
import socket
import struct
import sys

path = sys.argv[1]
sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
sock.bind(path)
print(json.dumps({"listening": path}), flush=True)
while True:
    data, ancdata, _flags, _addr = sock.recvmsg(4096, socket.CMSG_SPACE(struct.calcsize("3i")))
    pid = uid = gid = None
    for level, kind, payload in ancdata:
        if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
            pid, uid, gid = struct.unpack("3i", payload[: struct.calcsize("3i")])
    print(json.dumps({"pid": pid, "uid": uid, "gid": gid, "message": data.decode("utf-8", "replace")}), flush=True)
