#!/usr/bin/env python3
"""Writes the fuzz targets' seed corpora, seeds/<target>/, from the test
vectors in docs/vectors/ and a few inputs made here (CSRs with the openssl
command line, policies, multipart uploads). Run it again after the vectors
change; the files are committed so that every run starts from the same seeds.
"""
import base64
import hashlib
import os
import pathlib
import re
import shutil
import struct
import subprocess
import tempfile

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parent.parent
VECTORS = ROOT / "docs" / "vectors"
SEEDS = HERE / "seeds"


def write(target, name, data):
    folder = SEEDS / target
    folder.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    (folder / name).write_bytes(data)


def field(b):
    return struct.pack(">I", len(b)) + b


def frame(code, corr, *fields):
    payload = struct.pack(">I", corr) + b"".join(fields)
    return bytes([code]) + struct.pack(">I", len(payload)) + payload


def openssl(*args, input=None):
    return subprocess.run(["openssl", *args], input=input, check=True, capture_output=True).stdout


def csrs(tmp):
    """DER CSRs: P-256 (what the SDK sends), P-384 and RSA (refused), and a
    P-256 one whose signature is broken (no proof of possession)."""
    out = {}
    for name, genkey in [
        ("p256", ["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"]),
        ("p384", ["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-384"]),
        ("rsa1024", ["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:1024"]),
    ]:
        key = tmp / f"{name}.key"
        key.write_bytes(openssl(*genkey))
        out[name] = openssl("req", "-new", "-key", str(key), "-subj", "/CN=program", "-outform", "DER")
    broken = bytearray(out["p256"])
    broken[-3] ^= 0x01
    out["p256-bad-signature"] = bytes(broken)
    return out


def pem_blocks(text):
    return re.findall(r"-----BEGIN CERTIFICATE-----\n.*?-----END CERTIFICATE-----\n", text, re.S)


def pem_to_der(block):
    body = "".join(l for l in block.splitlines() if not l.startswith("-----"))
    return base64.b64decode(body)


def main():
    if SEEDS.exists():
        shutil.rmtree(SEEDS)
    chain_pem = (VECTORS / "run-chain-golden.pem").read_text()
    certs = pem_blocks(chain_pem)
    evidence = (VECTORS / "evidence-golden.json").read_bytes()
    bounds = b'[{"name":"pcc","base":"0x120000","length":"0x4000","perms":"0x6817d","tag":true}]'

    with tempfile.TemporaryDirectory() as tmp:
        requests = csrs(pathlib.Path(tmp))

    # channel_frame: byte 0 picks the limit (0: the 16 MiB default), then frames.
    for line in (VECTORS / "channel-frames.txt").read_text().splitlines():
        if not line or line.startswith("#"):
            continue
        name, _verdict, frame_hex = line.split()[:3]
        write("channel_frame", f"vector-{name}", b"\x00" + bytes.fromhex(frame_hex))
    hello = frame(0x01, 1, field(requests["p256"]), field(b"1.0.0"), field(bounds))
    read = frame(0x02, 2, field(b"store"), field(b"sales"), field(b"\x30\x03\x02\x01\x00"))
    log = frame(0x05, 0, b"\x02", field("reading the last sale ✓".encode()))
    write("channel_frame", "session-hello-read-log", b"\x00" + hello + read + log)
    write("channel_frame", "small-limit-hello", b"\x02" + hello)

    for name, der in requests.items():
        write("csr", name, der)

    write("evidence", "golden", evidence)

    for i, block in enumerate(certs):
        write("run_certificate", f"golden-{['run', 'intermediate', 'root'][i]}.der", pem_to_der(block))
    write("run_certificate", "golden-chain.pem", chain_pem)

    root = certs[-1]
    exe = hashlib.sha256(b"program").hexdigest()
    write("policy", "empty", "")
    write(
        "policy",
        "full",
        f'''allowed_backends = ["linux-sandbox", "cheri-c18n"]
required_layers = []
allow_degraded = ["landlock"]
allow_insecure = false
max_certificate_age_s = 3600
timestamp_skew_s = 60

[[trusted_root]]
name = "dev launcher"
pem = """{root}"""

[[trusted_root]]
name = "lab board"
file = "roots/morello.pem"

[[allow]]
name = "case study"
executable_sha256 = "{exe}"
resources = ["sales/last", "replies/*"]
ops = ["read"]

[[allow]]
source_sha256 = "{exe}"
toolchain_profile = "host"
services_anchor_sha256 = "{exe}"
resources = ["*"]
ops = ["read", "write"]
''',
    )
    write(
        "policy",
        "test-service",
        f'allowed_backends = ["linux-sandbox"]\n[[trusted_root]]\nname = "test launcher"\n'
        f'pem = """\n{root}"""\n[[allow]]\nname = "test program"\nexecutable_sha256 = "{exe}"\n'
        f'resources = ["*"]\nops = ["read", "write"]\n',
    )

    # upload: mode | chunk | ... (see fuzz_targets/upload.rs).
    hello_c = (ROOT / "tests" / "programs" / "hello.c").read_bytes()
    for chunk in (0, 6, 63):
        name = b"hello.c"
        write("upload", f"structured-hello-chunk{chunk + 1}", bytes([1, chunk, len(name)]) + name + hello_c[:400])
    for name, contents in [
        (b"../x.c", b"int main(void) { return 0; }\n"),
        (b"-o.c", b"int x;\n"),
        (b"x.txt", b"int x;\n"),
        (b"nul.c", b"int x;\0\n"),
        (b"bad.c", b"caf\xc3\n"),
        (b"empty.c", b""),
        (b"utf8.c", "/* héllo → ✓ */\n".encode()),
    ]:
        write("upload", f"structured-{name.decode().replace('/', '_')}", bytes([1, 2, len(name)]) + name + contents)
    body = (
        b"--fuzz-boundary-7c1f\r\n"
        b'Content-Disposition: form-data; name="note"\r\n\r\nignored\r\n'
        b"--fuzz-boundary-7c1f\r\n"
        b'Content-Disposition: form-data; name="file"; filename="hello.c"\r\n'
        b"Content-Type: text/x-c\r\n\r\n" + hello_c[:300] + b"\r\n--fuzz-boundary-7c1f--\r\n"
    )
    write("upload", "raw-two-fields", bytes([0, 17]) + body)
    write("upload", "raw-two-files", bytes([0, 63]) + body.replace(b'name="note"', b'name="file"; filename="a.c"'))

    for target in sorted(p.name for p in SEEDS.iterdir()):
        print(f"{target}: {len(list((SEEDS / target).iterdir()))} seeds")


if __name__ == "__main__":
    main()
