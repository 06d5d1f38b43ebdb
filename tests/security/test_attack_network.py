"""Network: the sandbox has no interface but lo; nothing leaves it.

Each attack is a cell a model could write. IP traffic dies in the empty network namespace
(runc: ENETUNREACH; gVisor's netstack: EHOSTUNREACH); socket families a Python kernel never
needs are refused by our seccomp profile (EPERM; runsc applies it too, with --oci-seccomp);
what needs a capability is refused for want of it.
"""

from __future__ import annotations

import pytest
from harness import record, run_attack  # noqa: F401 - record is a fixture

pytestmark = pytest.mark.docker
CATEGORY = "network"
POLICIES = pytest.mark.parametrize("policy", ["standard", "strict"], ids=["runc", "runsc"])
UNREACHABLE = {"runc": "ENETUNREACH", "runsc": "EHOSTUNREACH"}

# Cell helpers the attacks below share (the prelude gives `attempt` and `verdict`).
TCP = '''
def tcp(host, port, family=socket.AF_INET):
    s = socket.socket(family, socket.SOCK_STREAM)
    s.settimeout(3)
    try:
        return attempt(s.connect, (host, port))
    finally:
        s.close()
'''
UDP = '''
def udp(host, port):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        return attempt(s.sendto, b"x" * 32, (host, port))
    finally:
        s.close()
'''
OPEN = '''
def open_socket(*args):
    def make():
        socket.socket(*args).close()
    return attempt(make)
'''


@POLICIES
def test_tcp_to_public_address(policy: str, tmp_path, record) -> None:
    """TCP connect to a public address (1.1.1.1:443)"""
    out = run_attack(policy, "s = socket.socket()\ns.settimeout(3)\n"
                             "verdict(tcp=attempt(s.connect, ('1.1.1.1', 443)))", tmp_path)
    assert out.found["tcp"] in {"ENETUNREACH", "EHOSTUNREACH"}, out.step.output
    record(out, f"refused: {out.found['tcp']}")


@POLICIES
def test_tcp_to_public_ipv6_address(policy: str, tmp_path, record) -> None:
    """TCP connect to a public IPv6 address ([2606:4700:4700::1111]:443)"""
    out = run_attack(policy, TCP + "verdict(tcp=tcp('2606:4700:4700::1111', 443, socket.AF_INET6))", tmp_path)
    assert out.found["tcp"] in {"ENETUNREACH", "EHOSTUNREACH", "EADDRNOTAVAIL"}, out.step.output
    record(out, f"refused: {out.found['tcp']}")


@POLICIES
def test_tcp_to_private_addresses(policy: str, tmp_path, record) -> None:
    """TCP connect to private addresses (10.0.0.1:80, 192.168.1.1:80, 172.16.0.1:443)"""
    out = run_attack(policy, TCP + "verdict(**{h: tcp(h, p) for h, p in "
                                   "[('10.0.0.1', 80), ('192.168.1.1', 80), ('172.16.0.1', 443)]})", tmp_path)
    expected = UNREACHABLE[out.runtime]
    assert out.found == dict.fromkeys(["10.0.0.1", "192.168.1.1", "172.16.0.1"], expected), out.step.output
    record(out, f"refused: {expected} (all three)")


@POLICIES
def test_tcp_to_docker_bridge_gateway(policy: str, tmp_path, record) -> None:
    """TCP connect to the Docker bridge gateway 172.17.0.1 (the engine's API port 2375, ssh 22)"""
    out = run_attack(policy, TCP + "verdict(api=tcp('172.17.0.1', 2375), ssh=tcp('172.17.0.1', 22))", tmp_path)
    expected = UNREACHABLE[out.runtime]
    assert out.found == {"api": expected, "ssh": expected}, out.step.output
    record(out, f"refused: {expected}")


@POLICIES
def test_udp_to_public_address(policy: str, tmp_path, record) -> None:
    """UDP sendto a public resolver (8.8.8.8:53)"""
    out = run_attack(policy, UDP + "verdict(udp=udp('8.8.8.8', 53))", tmp_path)
    assert out.found["udp"] == UNREACHABLE[out.runtime], out.step.output
    record(out, f"refused: {out.found['udp']}")


@POLICIES
def test_udp_to_private_addresses(policy: str, tmp_path, record) -> None:
    """UDP sendto private addresses (10.0.0.1:53, 172.17.0.1:53, 192.168.1.1:514)"""
    out = run_attack(policy, UDP + "verdict(**{h: udp(h, p) for h, p in "
                                   "[('10.0.0.1', 53), ('172.17.0.1', 53), ('192.168.1.1', 514)]})", tmp_path)
    expected = UNREACHABLE[out.runtime]
    assert out.found == dict.fromkeys(["10.0.0.1", "172.17.0.1", "192.168.1.1"], expected), out.step.output
    record(out, f"refused: {expected} (all three)")


@POLICIES
def test_dns_lookup(policy: str, tmp_path, record) -> None:
    """DNS lookup of a public name (pypi.org)"""
    code = ("try:\n    socket.getaddrinfo('pypi.org', 443)\n    found = 'resolved'\n"
            "except socket.gaierror as exc:\n    found = exc.strerror\n"
            "verdict(dns=found, interfaces=[name for _, name in socket.if_nameindex()])")
    out = run_attack(policy, code, tmp_path)
    assert out.found["interfaces"] == ["lo"], out.step.output
    assert out.found["dns"] != "resolved" and "resolution" in out.found["dns"].lower(), out.step.output
    record(out, f"fails: {out.found['dns']}")


@POLICIES
def test_raw_ip_socket(policy: str, tmp_path, record) -> None:
    """Open a raw IP socket (AF_INET, SOCK_RAW, ICMP) to forge packets"""
    out = run_attack(policy, OPEN + "verdict(raw=open_socket(socket.AF_INET, socket.SOCK_RAW, "
                                    "socket.IPPROTO_ICMP))", tmp_path)
    assert out.found["raw"] == "EPERM", out.step.output
    record(out, "refused: EPERM (no CAP_NET_RAW)")


@POLICIES
def test_packet_socket(policy: str, tmp_path, record) -> None:
    """Open a packet socket (AF_PACKET) to sniff or inject frames"""
    out = run_attack(policy, OPEN + "verdict(packet=open_socket(socket.AF_PACKET, socket.SOCK_RAW, 0x0300))",
                     tmp_path)
    assert out.found["packet"] == "EPERM", out.step.output
    record(out, "refused: EPERM")


@POLICIES
def test_vsock_socket(policy: str, tmp_path, record) -> None:
    """Open an AF_VSOCK socket (a path to the hypervisor; a kernel LPE surface)"""
    out = run_attack(policy, OPEN + "verdict(vsock=open_socket(40, socket.SOCK_STREAM, 0))", tmp_path)
    assert out.found["vsock"] == "EPERM", out.step.output
    record(out, "refused by seccomp: EPERM")


@POLICIES
def test_alg_socket(policy: str, tmp_path, record) -> None:
    """Open an AF_ALG socket (the kernel crypto API, a kernel LPE surface)"""
    out = run_attack(policy, OPEN + "verdict(alg=open_socket(38, socket.SOCK_SEQPACKET, 0))", tmp_path)
    assert out.found["alg"] == "EPERM", out.step.output
    record(out, "refused by seccomp: EPERM")


NEWLINK = r'''
import struct
def rtattr(kind, payload):
    size = 4 + len(payload)
    return struct.pack("HH", size, kind) + payload + b"\0" * (-size % 4)
def newlink(name, kind):
    """RTM_NEWLINK with NLM_F_REQUEST|ACK|CREATE|EXCL: add an interface; return the ack's errno name."""
    body = struct.pack("BxHiII", 0, 0, 0, 0, 0)
    body += rtattr(3, name + b"\0") + rtattr(18, rtattr(1, kind))
    msg = struct.pack("IHHII", 16 + len(body), 16, 0x1 | 0x4 | 0x400 | 0x200, 1, 0) + body
    s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0)
    s.sendto(msg, (0, 0))
    reply = s.recv(4096)
    s.close()
    err = -struct.unpack("i", reply[16:20])[0]
    return "ok" if err == 0 else errno.errorcode.get(err, str(err))
verdict(dummy=newlink(b"evil0", b"dummy"),
        veth=newlink(b"evil1", b"veth"),
        interfaces=[name for _, name in socket.if_nameindex()])
'''


@POLICIES
def test_netlink_add_interface(policy: str, tmp_path, record) -> None:
    """Netlink RTM_NEWLINK: add a dummy and a veth interface"""
    out = run_attack(policy, NEWLINK, tmp_path)
    assert out.found["interfaces"] == ["lo"], out.step.output
    expected = {"runc": "EPERM", "runsc": "EACCES"}[out.runtime]
    assert out.found["dummy"] == out.found["veth"] == expected, out.step.output
    record(out, f"refused: {expected} (no CAP_NET_ADMIN); only lo")


@POLICIES
def test_host_service_on_loopback(policy: str, tmp_path, record) -> None:
    """Reach a host service on 127.0.0.1 (the LM server's port) over TCP and HTTP"""
    def code(port: int) -> str:
        return (TCP + "import urllib.request\n"
                f"verdict(tcp=tcp('127.0.0.1', {port}), tcp6=tcp('::1', {port}, socket.AF_INET6),\n"
                f"        http=attempt(urllib.request.urlopen, 'http://localhost:{port}/v1/models', timeout=3))")
    out = run_attack(policy, code, tmp_path)
    # runc's namespace has IPv6 off (no ::1 to connect from); gVisor's lo has it, with nothing listening
    tcp6 = {"runc": "EADDRNOTAVAIL", "runsc": "ECONNREFUSED"}[out.runtime]
    assert out.found == {"tcp": "ECONNREFUSED", "tcp6": tcp6, "http": "URLError"}, out.step.output
    record(out, f"refused: ECONNREFUSED (the container's lo is its own); ::1 {tcp6}")


INT80 = r'''
import mmap, struct
libc.mmap.restype = ctypes.c_void_p
libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
def int80(nr, a=0, b=0, c=0):
    """A 32-bit syscall (int 0x80) in a forked child: its raw result, or the signal that killed it."""
    code = (b"\x53\xb8" + struct.pack("<I", nr) + b"\xbb" + struct.pack("<I", a) + b"\xb9" + struct.pack("<I", b)
            + b"\xba" + struct.pack("<I", c) + b"\xcd\x80\x5b\xc3")  # push rbx; mov eax/ebx/ecx/edx; int 0x80; pop rbx
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        page = mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
        page.write(code)
        run = ctypes.CFUNCTYPE(ctypes.c_int)(ctypes.addressof(ctypes.c_char.from_buffer(page)))
        os.write(w, str(run()).encode())
        os._exit(0)
    os.close(w)
    status = os.waitpid(pid, 0)[1]
    out = os.read(r, 64).decode()
    os.close(r)
    return f"signal {os.WTERMSIG(status)}" if os.WIFSIGNALED(status) else int(out)
args = libc.mmap(None, 4096, 3, 0x22 | 0x40, -1, 0)  # MAP_32BIT: socketcall's argument block
ctypes.memmove(args, struct.pack("<3I", 40, 1, 0), 12)  # AF_VSOCK, SOCK_STREAM, 0
verdict(socket=int80(359, 40, 1, 0), socketcall=int80(102, 1, args), getpid=int80(20))
'''


@POLICIES
def test_vsock_through_32bit_abi(policy: str, tmp_path, record) -> None:
    """Open an AF_VSOCK socket through the 32-bit ABI (int 0x80: socket, socketcall), past the family filter"""
    out = run_attack(policy, INT80, tmp_path)
    if out.runtime == "runc":
        # our profile allows native ABIs only: any 32-bit syscall is killed by seccomp (SIGSYS)
        assert out.found == dict.fromkeys(["socket", "socketcall", "getpid"], "signal 31"), out.step.output
        record(out, "killed: SIGSYS (seccomp allows no 32-bit ABI)")
    else:
        # gVisor has no 32-bit ABI: int 0x80 runs the 64-bit syscall of that number (102: getuid, 20: writev)
        assert out.found == {"socket": -1, "socketcall": 1000, "getpid": -9}, out.step.output
        record(out, "no 32-bit ABI: int 0x80 runs 64-bit syscalls (socketcall = getuid); no socket")
