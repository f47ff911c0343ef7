"""Janus's secure port with tls_client_auth = need (tests/zk_security.rs):
a TLS client without a certificate is refused, one with a certificate is
served, and `cons` on each port lists that port's connections.

usage: zk_tls_need.py PLAIN_ADDR SECURE_ADDR CERT_DIR
"""

import json
import logging
import socket
import ssl
import sys

from kazoo.client import KazooClient

logging.basicConfig(level=logging.CRITICAL)
PLAIN, SECURE, CERTS = sys.argv[1:4]
out = {}


def four_letter(addr, cmd, tls=False):
    host, port = addr.rsplit(":", 1)
    s = socket.create_connection((host, int(port)), timeout=5)
    if tls:
        ctx = ssl.create_default_context(cafile=CERTS + "/ca.pem")
        ctx.check_hostname = False
        ctx.load_cert_chain(CERTS + "/client.pem", CERTS + "/client.key")
        s = ctx.wrap_socket(s)
    s.sendall(cmd.encode())
    data = b""
    while True:
        try:
            chunk = s.recv(4096)
        except (ssl.SSLError, OSError):
            break
        if not chunk:
            break
        data += chunk
    s.close()
    return data.decode()


def tls(cert=None, **kw):
    args = dict(hosts=SECURE, use_ssl=True, ca=CERTS + "/ca.pem", verify_certs=True)
    if cert:
        args["certfile"] = "%s/%s.pem" % (CERTS, cert)
        args["keyfile"] = "%s/%s.key" % (CERTS, cert)
    args.update(kw)
    return KazooClient(**args)


zk = tls(connection_retry={"max_tries": 2, "delay": 0.2})
try:
    zk.start(timeout=3)
    out["no_cert"] = "connected"
except Exception as e:  # noqa: BLE001 -- the error class is the result
    out["no_cert"] = type(e).__name__
try:
    zk.stop()
    zk.close()
except Exception:  # noqa: BLE001
    pass

secure = tls("client")
secure.start(timeout=10)
out["with_cert"] = "ok" if secure.exists("/") else "missing"
plain = KazooClient(hosts=PLAIN)
plain.start(timeout=10)
out["cons_secure"] = four_letter(SECURE, "cons", tls=True)
out["cons_plain"] = four_letter(PLAIN, "cons")
secure.stop()
secure.close()
plain.stop()
plain.close()
print(json.dumps(out))
