"""Seed a ZooKeeper tree, or dump one, with kazoo. tests/backup.rs seeds a
server, backs it up, restores the backup elsewhere and compares the dumps.

usage: zk_tree.py HOST:PORT seed
       zk_tree.py HOST:PORT dump   (prints JSON: path -> data, stat, ACL)
"""

import json
import sys

from kazoo.client import KazooClient
from kazoo.security import make_acl, make_digest_acl

HOSTS, MODE = sys.argv[1], sys.argv[2]

zk = KazooClient(hosts=HOSTS, timeout=10)
zk.start(timeout=15)
# Both modes as the owner of /app/owned, whose ACL lets no one else read.
zk.add_auth("digest", "admin:secret")

if MODE == "seed":
    zk.create("/app", b"root of the app")
    zk.create("/app/cfg", b'{"replicas": 3}')
    zk.set("/app/cfg", b'{"replicas": 5}')
    zk.create("/app/readonly", b"r", acl=[make_acl("world", "anyone", read=True)])
    zk.create("/app/owned", b"o", acl=[make_digest_acl("admin", "secret", all=True)])
    for _ in range(3):
        zk.create("/app/job-", b"j", sequence=True)
    zk.create("/app/deep/er/still", b"d", makepath=True)
    zk.create("/load", b"")
elif MODE == "dump":
    out = {}
    todo = ["/"]
    while todo:
        path = todo.pop()
        data, st = zk.get(path)
        acls, _ = zk.get_acls(path)
        out[path] = {
            "data": data.hex() if data is not None else None,
            "stat": [st.czxid, st.mzxid, st.ctime, st.mtime, st.version,
                     st.cversion, st.aversion, st.ephemeralOwner,
                     st.dataLength, st.numChildren, st.pzxid],
            "acl": sorted("%s:%s:%d" % (a.id.scheme, a.id.id, a.perms) for a in acls),
        }
        for c in zk.get_children(path):
            todo.append(path.rstrip("/") + "/" + c)
    print(json.dumps(out, sort_keys=True))
zk.stop()
