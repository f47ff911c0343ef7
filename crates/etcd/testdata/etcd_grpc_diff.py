"""Differential scenarios at the gRPC level, run by tests/etcd_grpc_diff.rs
against a real etcd (the oracle) and against Janus.

Usage: python etcd_grpc_diff.py STUBS_DIR HOST:PORT

Every scenario works under its own key prefix and records what it observes,
normalized so that two servers with the same semantics print the same:
revisions as deltas from the scenario's first revision ("r+N"), server-chosen
ids (lease, member, cluster) as placeholders numbered by first appearance
(also inside keys, where v3lock/v3election put a lease id in hex), gRPC
errors as code + message, raft terms, versions, sizes, hashes and raft
indexes dropped. Each scenario prints one JSON line {"name", "obs"}.
Scenarios run one after another: revisions stay deterministic.
"""

import hashlib
import json
import queue
import sys
import threading
import time
import traceback

sys.path.insert(0, sys.argv[1])
import grpc  # noqa: E402
from etcdserverpb import rpc_pb2 as pb, rpc_pb2_grpc as rpc  # noqa: E402
from mvccpb import kv_pb2  # noqa: E402
from v3lockpb import v3lock_pb2 as lockpb, v3lock_pb2_grpc as lockrpc  # noqa: E402
from v3electionpb import v3election_pb2 as elpb, v3election_pb2_grpc as elrpc  # noqa: E402

ENDPOINT = sys.argv[2]
# Both servers are started with these limits (see the Rust side).
MAX_REQUEST_BYTES = 256 * 1024
MAX_TXN_OPS = 128

CH = grpc.insecure_channel(
    ENDPOINT,
    options=[
        ("grpc.max_send_message_length", 8 * 1024 * 1024),
        ("grpc.max_receive_message_length", 8 * 1024 * 1024),
    ],
)
grpc.channel_ready_future(CH).result(timeout=20)
KV = rpc.KVStub(CH)
WATCH = rpc.WatchStub(CH)
LEASE = rpc.LeaseStub(CH)
CLUSTER = rpc.ClusterStub(CH)
MAINT = rpc.MaintenanceStub(CH)
LOCK = lockrpc.LockStub(CH)
ELECTION = elrpc.ElectionStub(CH)

SORT_ORDERS = ["NONE", "ASCEND", "DESCEND"]
SORT_TARGETS = ["KEY", "VERSION", "CREATE", "MOD", "VALUE"]

# Fields that legitimately differ between two servers (or two runs).
DROPPED = {
    "raft_term", "version", "dbSize", "dbSizeInUse", "raftIndex", "raftTerm",
    "raftAppliedIndex", "hash",
    # etcd 3.5 additions that 3.4 does not send; Janus answers as 3.5.
    "storageVersion", "dbSizeQuota", "downgradeInfo", "hash_revision",
}
REVISIONS = {"revision", "create_revision", "mod_revision", "compact_revision", "rev"}
IDS = {"cluster_id", "member_id", "ID", "lease", "leader"}


class Ctx:
    def __init__(self, name):
        self.name = name
        self.p = name.encode() + b"/"
        self.obs = []
        self.ids = {}
        self.base = KV.Range(pb.RangeRequest(key=self.p), timeout=10).header.revision
        self.watches = []

    def k(self, s=""):
        return self.p + (s.encode() if isinstance(s, str) else s)

    def end(self):
        """The prefix's range_end."""
        return self.p[:-1] + bytes([self.p[-1] + 1])

    # -- normalization -------------------------------------------------
    def rev(self, r):
        return 0 if r == 0 else "r%+d" % (r - self.base)

    def id(self, raw):
        if raw == 0:
            return 0
        if raw not in self.ids:
            self.ids[raw] = "<id%d>" % len(self.ids)
        return self.ids[raw]

    def b(self, v):
        s = v.decode("utf-8", "backslashreplace")
        for raw, ph in self.ids.items():
            s = s.replace("%x" % raw, ph)
        if len(s) > 64:
            s = "%s...(%d bytes, sha256 %s)" % (
                s[:16], len(v), hashlib.sha256(v).hexdigest()[:12])
        return s

    def norm(self, msg):
        out = {}
        for fd, val in msg.ListFields():
            name = fd.name
            if name in DROPPED:
                continue
            out[name] = self.field(msg, fd, val)
        return out

    def field(self, msg, fd, val):
        if fd.is_repeated:
            out = [self.scalar(msg, fd, v) for v in val]
            if fd.name == "keys" and msg.DESCRIPTOR.name == "LeaseTimeToLiveResponse":
                # etcd lists a lease's keys from a Go map: in no order.
                out.sort()
            return out
        return self.scalar(msg, fd, val)

    def scalar(self, msg, fd, v):
        name = fd.name
        if fd.type == fd.TYPE_MESSAGE:
            return self.norm(v)
        if fd.type == fd.TYPE_ENUM:
            return fd.enum_type.values_by_number[v].name
        if fd.type == fd.TYPE_BYTES:
            return self.b(v)
        if fd.type == fd.TYPE_STRING:
            return mask_ports(v)
        if name in REVISIONS:
            return self.rev(v)
        if name in IDS:
            return self.id(v)
        if name == "TTL" and msg.DESCRIPTOR.name == "LeaseTimeToLiveResponse" and v > 0:
            # The remaining TTL drifts with time.
            return "ttl>0"
        return v

    # -- recording -----------------------------------------------------
    def rec(self, label, value):
        self.obs.append([label, value])

    def call(self, label, method, req, timeout=10, record=True):
        try:
            resp = method(req, timeout=timeout)
        except grpc.RpcError as e:
            self.rec(label, err(e))
            return None
        if record:
            self.rec(label, self.norm(resp))
        return resp

    def put(self, k, v=b"", record=True, **kw):
        return self.call("put " + k, KV.Put,
                         pb.PutRequest(key=self.k(k), value=v, **kw), record=record)

    def get(self, k, label=None, **kw):
        return self.call(label or ("range " + k), KV.Range, pb.RangeRequest(key=self.k(k), **kw))

    def kvs(self, label, resp):
        """Just the keys/values/revisions of a range."""
        if resp is None:
            return
        self.rec(label, [self.norm(x) for x in resp.kvs])

    def grant(self, ttl=60, id=0, record=True):
        r = self.call("grant", LEASE.LeaseGrant, pb.LeaseGrantRequest(TTL=ttl, ID=id), record=record)
        return r.ID if r is not None else 0

    def watch(self, **create):
        w = Watcher(self)
        w.create(**create)
        return w

    def close(self):
        for w in self.watches:
            w.close()


def err(e):
    return {"code": e.code().name, "details": e.details()}


def mask_ports(s):
    out, rest = [], s
    while "127.0.0.1:" in rest:
        i = rest.index("127.0.0.1:") + 10
        out.append(rest[:i] + "PORT")
        rest = rest[i:]
        while rest and rest[0].isdigit():
            rest = rest[1:]
    return "".join(out) + rest


class Watcher:
    """One Watch stream, read by a thread into a queue."""

    def __init__(self, ctx):
        self.ctx = ctx
        self.q = queue.Queue()
        self.reqs = queue.Queue()
        self.call = WATCH.Watch(iter(self.reqs.get, None), timeout=60)
        threading.Thread(target=self.run, daemon=True).start()
        ctx.watches.append(self)

    def run(self):
        try:
            for r in self.call:
                self.q.put(r)
        except grpc.RpcError as e:
            self.q.put(e)

    def create(self, key=None, **kw):
        if key is None:
            key = self.ctx.p
            kw.setdefault("range_end", self.ctx.end())
        elif isinstance(key, str):
            key = self.ctx.k(key)
        self.reqs.put(pb.WatchRequest(create_request=pb.WatchCreateRequest(key=key, **kw)))

    def cancel(self, wid):
        self.reqs.put(pb.WatchRequest(cancel_request=pb.WatchCancelRequest(watch_id=wid)))

    def progress(self):
        self.reqs.put(pb.WatchRequest(progress_request=pb.WatchProgressRequest()))

    def next(self, label, timeout=10):
        """Record the next response (or that none came in `timeout`)."""
        try:
            r = self.q.get(timeout=timeout)
        except queue.Empty:
            self.ctx.rec(label, "no response")
            return None
        if isinstance(r, grpc.RpcError):
            self.ctx.rec(label, err(r))
            return None
        self.ctx.rec(label, self.ctx.norm(r))
        return r

    def events(self, label, n, timeout=10):
        """Record the next `n` events, however the server batches them."""
        got = []
        deadline = time.time() + timeout
        while len(got) < n:
            try:
                r = self.q.get(timeout=max(0.01, deadline - time.time()))
            except queue.Empty:
                break
            if isinstance(r, grpc.RpcError):
                got.append(err(r))
                break
            got += [self.ctx.norm(e) for e in r.events]
        self.ctx.rec(label, got)

    def quiet(self, label, timeout=0.5):
        """Record that nothing more arrives."""
        try:
            r = self.q.get(timeout=timeout)
            self.ctx.rec(label, ["unexpected", self.ctx.norm(r) if not isinstance(r, Exception) else str(r)])
        except queue.Empty:
            self.ctx.rec(label, "quiet")

    def close(self):
        self.reqs.put(None)
        self.call.cancel()


SCENARIOS = []


def sc(f):
    SCENARIOS.append(f)
    return f


def fill(c, keys=("a", "b", "c")):
    for i, k in enumerate(keys):
        c.put(k, ("v%d" % i).encode(), record=False)


# ---------------------------------------------------------------- Range

@sc
def range_single_and_missing(c):
    c.put("a", b"1")
    c.get("a")
    c.get("missing")
    c.get("a", label="a..b", range_end=c.k("b"))


@sc
def range_prefix(c):
    fill(c, ["a", "ab", "abc", "b", "a\xff"])
    c.get("a", range_end=c.k("b"))
    c.call("prefix all", KV.Range, pb.RangeRequest(key=c.p, range_end=c.end()))


@sc
def range_from_key(c):
    fill(c, ["x", "y", "z"])
    r = c.call("from y", KV.Range, pb.RangeRequest(key=c.k("y"), range_end=b"\0", keys_only=True),
               record=False)
    # Other scenarios' keys follow; only ours count.
    c.rec("ours", [x.key.decode() for x in r.kvs if x.key.startswith(c.p)])


@sc
def range_all_keys_count(c):
    fill(c)
    a = KV.Range(pb.RangeRequest(key=b"\0", range_end=b"\0", count_only=True), timeout=10)
    c.put("d", b"x")
    b = KV.Range(pb.RangeRequest(key=b"\0", range_end=b"\0", count_only=True), timeout=10)
    c.rec("count grows by one", b.count - a.count)
    c.rec("more/kvs", [b.more, len(b.kvs)])


@sc
def range_limit_more_count(c):
    fill(c, ["a", "b", "c", "d", "e"])
    for lim in (0, 1, 3, 5, 6):
        c.get("", label="limit %d" % lim, range_end=c.end(), limit=lim)


@sc
def range_negative_limit(c):
    fill(c)
    c.get("", label="limit -1", range_end=c.end(), limit=-1)


@sc
def range_keys_only_count_only(c):
    fill(c)
    c.get("", label="keys_only", range_end=c.end(), keys_only=True)
    c.get("", label="count_only", range_end=c.end(), count_only=True)
    c.get("", label="both", range_end=c.end(), count_only=True, keys_only=True)
    c.get("", label="count_only limit", range_end=c.end(), count_only=True, limit=1)


@sc
def range_serializable(c):
    fill(c)
    c.get("a", serializable=True)
    c.get("", label="serializable prefix", range_end=c.end(), serializable=True, limit=2)


@sc
def range_empty_key(c):
    c.call("empty key", KV.Range, pb.RangeRequest(key=b""))
    c.call("empty key with end", KV.Range, pb.RangeRequest(key=b"", range_end=c.k("a")))


@sc
def range_end_before_key(c):
    fill(c)
    c.get("c", label="c..a", range_end=c.k("a"))
    c.get("a", label="a..a", range_end=c.k("a"))


def sort_scenario(order):
    def f(c):
        # Ties in VERSION and VALUE; create and mod orders differ from key order.
        c.put("c", b"2", record=False)
        c.put("a", b"1", record=False)
        c.put("b", b"2", record=False)
        c.put("d", b"0", record=False)
        c.put("a", b"3", record=False)
        c.put("c", b"1", record=False)
        for target in SORT_TARGETS:
            r = KV.Range(pb.RangeRequest(key=c.p, range_end=c.end(), sort_order=order,
                                         sort_target=target), timeout=10)
            c.rec(target, [(x.key.decode(), x.value.decode()) for x in r.kvs])
            r = KV.Range(pb.RangeRequest(key=c.p, range_end=c.end(), sort_order=order,
                                         sort_target=target, limit=2), timeout=10)
            c.rec(target + " limit 2", [[(x.key.decode(), x.value.decode()) for x in r.kvs],
                                        r.more, r.count])
    f.__name__ = "range_sort_" + order.lower()
    return f


for _o in SORT_ORDERS:
    sc(sort_scenario(_o))


@sc
def range_revision_reads(c):
    r1 = c.put("a", b"1").header.revision
    c.put("b", b"1")
    r3 = c.put("a", b"2").header.revision
    c.call("del a", KV.DeleteRange, pb.DeleteRangeRequest(key=c.k("a")))
    for r in (r1, r1 + 1, r3, r3 + 1):
        c.get("", label="prefix at %s" % c.rev(r), range_end=c.end(), revision=r)
    c.get("a", label="a at r1 count_only", revision=r1, count_only=True)
    c.get("", label="negative revision", range_end=c.end(), revision=-1)


@sc
def range_future_revision(c):
    r = c.put("a", b"1").header.revision
    c.get("a", label="next", revision=r + 1)
    c.get("a", label="far", revision=r + 1000)
    c.get("a", label="serializable far", revision=r + 1000, serializable=True)


@sc
def range_compacted_revision(c):
    r1 = c.put("a", b"1").header.revision
    r2 = c.put("a", b"2").header.revision
    c.put("a", b"3")
    c.call("compact r2", KV.Compact, pb.CompactionRequest(revision=r2))
    c.get("a", label="at r1", revision=r1)
    c.get("a", label="at r2", revision=r2)
    c.get("a", label="latest")


@sc
def range_mod_revision_filters(c):
    revs = [c.put(k, b"x").header.revision for k in ("a", "b", "c", "d")]
    c.get("", label="min mod", range_end=c.end(), min_mod_revision=revs[1])
    c.get("", label="max mod", range_end=c.end(), max_mod_revision=revs[2])
    c.get("", label="min+max mod", range_end=c.end(), min_mod_revision=revs[1],
          max_mod_revision=revs[2])
    c.get("", label="min mod limit 1", range_end=c.end(), min_mod_revision=revs[1], limit=1)


@sc
def range_create_revision_filters(c):
    revs = [c.put(k, b"x").header.revision for k in ("a", "b", "c")]
    c.put("a", b"y")
    c.get("", label="min create", range_end=c.end(), min_create_revision=revs[1])
    c.get("", label="max create", range_end=c.end(), max_create_revision=revs[1])
    c.get("", label="max create count_only", range_end=c.end(), max_create_revision=revs[0],
          count_only=True)


@sc
def range_version_and_lease_fields(c):
    lid = c.grant(60)
    c.put("a", b"1", lease=lid)
    c.put("a", b"2", lease=lid)
    c.put("a", b"3")
    c.get("a")
    c.call("revoke", LEASE.LeaseRevoke, pb.LeaseRevokeRequest(ID=lid))


@sc
def range_binary_keys(c):
    c.put("\x00\x01", b"\xff\xfe")
    c.put("\xff", b"")
    c.get("", range_end=c.end())


# ---------------------------------------------------------------- Put

@sc
def put_prev_kv(c):
    c.put("a", b"1", prev_kv=True)
    c.put("a", b"2", prev_kv=True)
    c.put("a", b"3")


@sc
def put_empty_key(c):
    c.call("empty", KV.Put, pb.PutRequest(key=b"", value=b"v"))


@sc
def put_ignore_value(c):
    c.put("a", b"1")
    c.put("a", ignore_value=True, prev_kv=True)
    c.get("a")
    c.put("a", b"x", ignore_value=True)
    c.put("missing", ignore_value=True)


@sc
def put_lease_and_ignore_lease(c):
    lid = c.grant(60)
    c.put("a", b"1", lease=lid)
    c.put("a", b"2", ignore_lease=True)
    c.get("a")
    c.put("a", b"3", ignore_lease=True, lease=lid)
    c.put("missing", b"3", ignore_lease=True)
    c.put("a", b"4")
    c.get("a", label="lease detached")
    c.call("ttl", LEASE.LeaseTimeToLive, pb.LeaseTimeToLiveRequest(ID=lid, keys=True))
    c.call("revoke", LEASE.LeaseRevoke, pb.LeaseRevokeRequest(ID=lid))


@sc
def put_unknown_lease(c):
    c.put("a", b"1", lease=0x7abc1234)
    c.get("a")


@sc
def put_empty_value_and_versions(c):
    c.put("a", b"")
    c.put("a", b"")
    c.get("a")


# ---------------------------------------------------------------- DeleteRange

@sc
def delete_single_prev_kv(c):
    fill(c)
    c.call("del a prev", KV.DeleteRange, pb.DeleteRangeRequest(key=c.k("a"), prev_kv=True))
    c.call("del a again", KV.DeleteRange, pb.DeleteRangeRequest(key=c.k("a"), prev_kv=True))
    c.get("", range_end=c.end())


@sc
def delete_range_and_prefix(c):
    fill(c, ["a", "b", "c", "d"])
    c.call("del b..d", KV.DeleteRange,
           pb.DeleteRangeRequest(key=c.k("b"), range_end=c.k("d"), prev_kv=True))
    c.call("del prefix", KV.DeleteRange, pb.DeleteRangeRequest(key=c.p, range_end=c.end()))
    c.get("", range_end=c.end())


@sc
def delete_from_key(c):
    fill(c, ["a", "b"])
    # "\0" as range_end: every key from key on; keep it inside our prefix's
    # last scenario position by deleting only from our "b" using a range.
    c.call("del b..", KV.DeleteRange, pb.DeleteRangeRequest(key=c.k("b"), range_end=c.end()))
    c.call("del empty key", KV.DeleteRange, pb.DeleteRangeRequest(key=b""))
    c.get("", range_end=c.end())


@sc
def delete_recreate_versions(c):
    c.put("a", b"1")
    c.put("a", b"2")
    c.call("del", KV.DeleteRange, pb.DeleteRangeRequest(key=c.k("a")))
    c.put("a", b"3")
    c.get("a")


# ---------------------------------------------------------------- Txn

def cmp(c, key, target, result, **kw):
    return pb.Compare(key=c.k(key), target=target, result=result, **kw)


def op_put(c, k, v=b"x", **kw):
    return pb.RequestOp(request_put=pb.PutRequest(key=c.k(k), value=v, **kw))


def op_get(c, k, **kw):
    return pb.RequestOp(request_range=pb.RangeRequest(key=c.k(k), **kw))


def op_del(c, k, **kw):
    return pb.RequestOp(request_delete_range=pb.DeleteRangeRequest(key=c.k(k), **kw))


def txn(c, label, compare=(), success=(), failure=()):
    return c.call(label, KV.Txn, pb.TxnRequest(compare=list(compare), success=list(success),
                                              failure=list(failure)))


def compare_scenario(target):
    def f(c):
        lid = c.grant(60, record=False)
        r1 = c.put("k", b"m", lease=lid, record=False).header.revision
        c.put("k", b"m", lease=lid, record=False)
        vals = {
            "VALUE": [("value", b"a"), ("value", b"m"), ("value", b"z")],
            "VERSION": [("version", 1), ("version", 2), ("version", 3)],
            "CREATE": [("create_revision", r1 - 1), ("create_revision", r1),
                       ("create_revision", r1 + 1)],
            "MOD": [("mod_revision", r1), ("mod_revision", r1 + 1), ("mod_revision", r1 + 2)],
            "LEASE": [("lease", lid - 1), ("lease", lid), ("lease", lid + 1)],
        }[target]
        out = []
        for result in ("EQUAL", "GREATER", "LESS", "NOT_EQUAL"):
            row = []
            for field, v in vals:
                for key in ("k", "missing"):
                    r = KV.Txn(pb.TxnRequest(compare=[cmp(c, key, target, result, **{field: v})]),
                               timeout=10)
                    row.append(r.succeeded)
            out.append([result, row])
        c.rec(target, out)
        LEASE.LeaseRevoke(pb.LeaseRevokeRequest(ID=lid), timeout=10)
    f.__name__ = "txn_compare_" + target.lower()
    return f


for _t in ("VALUE", "VERSION", "CREATE", "MOD", "LEASE"):
    sc(compare_scenario(_t))


@sc
def txn_success_and_failure_branches(c):
    c.put("a", b"1")
    txn(c, "true", [cmp(c, "a", "VALUE", "EQUAL", value=b"1")],
        [op_put(c, "a", b"2", prev_kv=True), op_get(c, "a"), op_del(c, "b")],
        [op_put(c, "never")])
    txn(c, "false", [cmp(c, "a", "VALUE", "EQUAL", value=b"1")],
        [op_put(c, "never")],
        [op_get(c, "", range_end=c.end()), op_del(c, "a", prev_kv=True)])
    txn(c, "empty", [], [], [])
    c.get("", range_end=c.end())


@sc
def txn_compare_range_end(c):
    fill(c, ["a", "b", "c"])
    c.put("b", b"y")
    for result, version in (("EQUAL", 1), ("GREATER", 0), ("LESS", 2), ("NOT_EQUAL", 1)):
        txn(c, "%s version %d over a..d" % (result, version),
            [pb.Compare(key=c.k("a"), range_end=c.k("d"), target="VERSION", result=result,
                        version=version)])
    txn(c, "value over prefix",
        [pb.Compare(key=c.p, range_end=c.end(), target="VALUE", result="GREATER", value=b"a")])


@sc
def txn_multiple_compares(c):
    c.put("a", b"1")
    c.put("b", b"2")
    txn(c, "both true", [cmp(c, "a", "VALUE", "EQUAL", value=b"1"),
                         cmp(c, "b", "VERSION", "EQUAL", version=1)], [op_get(c, "a")])
    txn(c, "one false", [cmp(c, "a", "VALUE", "EQUAL", value=b"1"),
                         cmp(c, "b", "VERSION", "GREATER", version=1)], [], [op_get(c, "b")])


@sc
def txn_nested(c):
    c.put("a", b"1")
    inner = pb.TxnRequest(compare=[cmp(c, "a", "VERSION", "EQUAL", version=1)],
                          success=[op_put(c, "b", b"in"), op_get(c, "a")],
                          failure=[op_get(c, "b")])
    txn(c, "outer", [cmp(c, "a", "VALUE", "EQUAL", value=b"1")],
        [pb.RequestOp(request_txn=inner), op_put(c, "c", b"out")])
    txn(c, "outer again", [cmp(c, "a", "VALUE", "EQUAL", value=b"1")],
        [pb.RequestOp(request_txn=inner)])
    c.get("", range_end=c.end())


@sc
def txn_duplicate_keys(c):
    c.put("a", b"1")
    txn(c, "put put", [], [op_put(c, "a"), op_put(c, "a")])
    txn(c, "put del", [], [op_put(c, "a"), op_del(c, "a")])
    txn(c, "del range covers put", [], [op_del(c, "", range_end=c.end()), op_put(c, "b")])
    txn(c, "del del", [], [op_del(c, "a"), op_del(c, "a")])
    txn(c, "put get", [], [op_put(c, "a"), op_get(c, "a")])
    txn(c, "success vs failure", [], [op_put(c, "a")], [op_put(c, "a")])
    nested = pb.TxnRequest(success=[op_put(c, "a")])
    txn(c, "nested dup", [], [op_put(c, "a"), pb.RequestOp(request_txn=nested)])
    nested_other = pb.TxnRequest(success=[op_put(c, "a")], failure=[op_put(c, "a")])
    txn(c, "nested own branches", [], [pb.RequestOp(request_txn=nested_other)])
    c.get("a")


@sc
def txn_too_many_ops(c):
    txn(c, "max", [], [op_put(c, "k%03d" % i) for i in range(MAX_TXN_OPS)])
    txn(c, "max+1", [], [op_put(c, "x%03d" % i) for i in range(MAX_TXN_OPS + 1)])
    txn(c, "max+1 compares", [cmp(c, "k%03d" % i, "VERSION", "GREATER", version=0)
                              for i in range(MAX_TXN_OPS + 1)])
    txn(c, "max+1 failure", [], [], [op_get(c, "a") for _ in range(MAX_TXN_OPS + 1)])
    c.get("", label="count", range_end=c.end(), count_only=True)


@sc
def txn_errors_inside(c):
    txn(c, "empty key put", [], [pb.RequestOp(request_put=pb.PutRequest(key=b"", value=b"v"))])
    txn(c, "unknown lease", [], [op_put(c, "a", lease=0x7abc1235)])
    txn(c, "ignore_value missing", [], [op_put(c, "a", b"", ignore_value=True)])
    txn(c, "future rev", [], [op_get(c, "a", revision=c.base + 1000)])
    txn(c, "empty key compare", [pb.Compare(key=b"", target="VERSION", result="EQUAL")])
    c.get("", range_end=c.end(), count_only=True)


@sc
def txn_op_revisions(c):
    # Each op reports the store's revision at its turn: the one before the
    # txn until the txn's first change, the txn's own after.
    c.put("a", b"1")
    txn(c, "get, del nothing, put, get, del", [],
        [op_get(c, "a"), op_del(c, "missing"), op_put(c, "b", b"2"), op_get(c, "b"),
         op_del(c, "a")])
    txn(c, "get, del a, get", [], [op_get(c, "b"), op_del(c, "b"), op_get(c, "b")])
    txn(c, "read only", [], [op_get(c, "b"), op_del(c, "missing")])
    inner = pb.TxnRequest(success=[op_get(c, "x"), op_put(c, "x", b"1")])
    txn(c, "nested after get", [], [op_get(c, "x"), pb.RequestOp(request_txn=inner), op_get(c, "x")])


@sc
def txn_put_then_read_same_revision(c):
    txn(c, "puts", [], [op_put(c, "a", b"1"), op_put(c, "b", b"2"), op_get(c, "", range_end=c.end()),
                        op_del(c, "c", prev_kv=True)])
    c.get("", range_end=c.end())


# ---------------------------------------------------------------- Compact

@sc
def compact_physical_and_errors(c):
    r1 = c.put("a", b"1").header.revision
    r2 = c.put("a", b"2").header.revision
    c.call("compact r2 physical", KV.Compact, pb.CompactionRequest(revision=r2, physical=True))
    c.call("compact r1 again", KV.Compact, pb.CompactionRequest(revision=r1))
    c.call("compact r2 again", KV.Compact, pb.CompactionRequest(revision=r2))
    c.call("compact future", KV.Compact, pb.CompactionRequest(revision=r2 + 1000))
    c.call("compact current+1", KV.Compact, pb.CompactionRequest(revision=r2 + 1))
    c.call("compact 0", KV.Compact, pb.CompactionRequest(revision=0))
    c.get("a", label="a at r2", revision=r2)
    c.get("a", label="a at r1", revision=r1)


@sc
def compact_to_current(c):
    r = c.put("a", b"1").header.revision
    c.call("compact current", KV.Compact, pb.CompactionRequest(revision=r))
    c.put("a", b"2")
    c.get("a", label="at current", revision=r)
    c.call("hashkv", MAINT.HashKV, pb.HashKVRequest(revision=0))


# ---------------------------------------------------------------- Watch

@sc
def watch_key_events(c):
    w = c.watch(key="a")
    w.next("created")
    c.put("a", b"1")
    w.next("put")
    c.put("b", b"other")
    c.put("a", b"2")
    w.next("put 2")
    c.call("del", KV.DeleteRange, pb.DeleteRangeRequest(key=c.k("a")))
    w.next("delete")
    w.quiet("nothing else")


@sc
def watch_prefix_and_txn_events(c):
    w = c.watch()
    w.next("created")
    txn(c, "txn", [], [op_put(c, "a", b"1"), op_put(c, "b", b"2"), op_del(c, "zz")])
    w.next("one response for the txn")
    txn(c, "txn del", [], [op_del(c, "", range_end=c.end())])
    w.next("deletes")


@sc
def watch_start_revision_replay(c):
    r1 = c.put("a", b"1").header.revision
    c.put("b", b"1")
    c.put("a", b"2")
    c.call("del b", KV.DeleteRange, pb.DeleteRangeRequest(key=c.k("b")))
    w = c.watch(start_revision=r1 + 1, prev_kv=True)
    w.next("created")
    w.events("replayed", 3)
    c.put("c", b"live")
    w.events("live", 1)


@sc
def watch_prev_kv(c):
    c.put("a", b"old")
    w = c.watch(key="a", prev_kv=True)
    w.next("created")
    c.put("a", b"new")
    w.next("put")
    c.call("del", KV.DeleteRange, pb.DeleteRangeRequest(key=c.k("a")))
    w.next("delete")
    c.put("a", b"again")
    w.next("recreate")


@sc
def watch_filters(c):
    w = c.watch(filters=["NOPUT"])
    w.next("created noput")
    w2 = c.watch(filters=["NODELETE"])
    w2.next("created nodelete")
    c.put("a", b"1")
    c.call("del", KV.DeleteRange, pb.DeleteRangeRequest(key=c.k("a")))
    w.next("noput sees delete")
    w2.next("nodelete sees put")
    w.quiet("noput quiet")
    w2.quiet("nodelete quiet")


@sc
def watch_both_filters(c):
    w = c.watch(filters=["NOPUT", "NODELETE"])
    w.next("created")
    c.put("a", b"1")
    c.call("del", KV.DeleteRange, pb.DeleteRangeRequest(key=c.k("a")))
    w.quiet("nothing")


@sc
def watch_cancel(c):
    w = c.watch(key="a")
    r = w.next("created")
    w.cancel(r.watch_id)
    w.next("canceled")
    c.put("a", b"1")
    w.quiet("after cancel")


@sc
def watch_cancel_unknown(c):
    w = c.watch(key="a")
    w.next("created")
    w.cancel(12345)
    w.quiet("no answer to an unknown id")
    c.put("a", b"1")
    w.next("still watching")


@sc
def watch_multiple_on_one_stream(c):
    w = c.watch(key="a")
    w.next("created a")
    w.create(key="b")
    w.next("created b")
    w.create(key=None)
    w.next("created prefix")
    c.put("a", b"1")
    got = []
    for _ in range(2):
        r = w.q.get(timeout=10)
        got.append(c.norm(r))
    c.rec("two responses for a", sorted(got, key=lambda x: x.get("watch_id", 0)))
    c.put("b", b"1")
    got = [c.norm(w.q.get(timeout=10)) for _ in range(2)]
    c.rec("two responses for b", sorted(got, key=lambda x: x.get("watch_id", 0)))
    w.quiet("no more")


@sc
def watch_client_chosen_ids(c):
    w = c.watch(key="a", watch_id=7)
    w.next("created 7")
    w.create(key="b", watch_id=7)
    w.next("duplicate 7")
    w.create(key="b")
    w.next("server picks")
    w.create(key="b", watch_id=3)
    w.next("created 3")
    c.put("b", b"1")
    got = sorted([c.norm(w.q.get(timeout=10)) for _ in range(2)],
                 key=lambda x: x.get("watch_id", 0))
    c.rec("events b", got)


@sc
def watch_compacted_start(c):
    r1 = c.put("a", b"1").header.revision
    c.put("a", b"2")
    r3 = c.put("a", b"3").header.revision
    c.call("compact", KV.Compact, pb.CompactionRequest(revision=r3))
    w = c.watch(key="a", start_revision=r1)
    w.next("created")
    w.next("compacted")
    w2 = c.watch(key="a", start_revision=r3)
    w2.next("created at compact rev")
    w2.events("events from compact rev", 1)


@sc
def watch_future_start_revision(c):
    r = c.put("a", b"0").header.revision
    w = c.watch(key="a", start_revision=r + 2)
    w.next("created")
    c.put("a", b"1")
    w.quiet("not yet")
    c.put("a", b"2")
    w.next("at start revision")


@sc
def watch_progress_request(c):
    c.put("a", b"1")
    w = c.watch(key="a")
    w.next("created")
    c.put("b", b"elsewhere")
    w.progress()
    w.next("progress")
    w2 = Watcher(c)
    w2.progress()
    w2.next("progress before any watch")


@sc
def watch_fragment(c):
    # etcd fragments responses of at least max_request_bytes + 512 KiB.
    big = b"v" * (MAX_REQUEST_BYTES * 3 // 4)
    r1 = c.put("a", big, record=False).header.revision
    for k in ("b", "c", "d", "e"):
        c.put(k, big, record=False)
    w = c.watch(start_revision=r1, fragment=True)
    w.next("created")
    shapes = []
    n = 0
    while n < 5:
        r = w.q.get(timeout=10)
        n += len(r.events)
        shapes.append({"fragment": r.fragment, "events": len(r.events)})
    c.rec("fragments", shapes)
    w2 = c.watch(start_revision=r1)
    w2.next("created unfragmented")
    r = w2.q.get(timeout=10)
    c.rec("one response", {"fragment": r.fragment, "events": len(r.events)})


@sc
def watch_empty_key_and_all(c):
    w = c.watch(key=b"")
    w.next("empty key")
    w2 = c.watch(key=b"\0", range_end=b"\0")
    w2.next("all keys")
    c.put("a", b"1")
    w2.events("sees ours", 1)


@sc
def watch_range_end(c):
    w = c.watch(key="b", range_end=c.k("d"))
    w.next("created")
    for k in ("a", "b", "c", "d"):
        c.put(k, b"1")
    w.events("b and c", 2)
    w.quiet("no more")


@sc
def watch_from_key(c):
    w = c.watch(key="m", range_end=b"\0")
    w.next("created")
    c.put("a", b"1")
    c.put("z", b"1")
    w.events("z only", 1)


@sc
def watch_stream_half_close(c):
    w = c.watch(key="a")
    w.next("created")
    w.reqs.put(None)  # the client closes its side; the watch stays
    time.sleep(0.2)
    c.put("a", b"1")
    w.next("still delivered")


@sc
def watch_many_revisions_replay(c):
    r1 = c.put("k", b"0", record=False).header.revision
    for i in range(1, 50):
        c.put("k", str(i).encode(), record=False)
    w = c.watch(key="k", start_revision=r1)
    w.next("created")
    w.events("all 50", 50)
    w.quiet("done")


# ---------------------------------------------------------------- Lease

@sc
def lease_grant_and_ids(c):
    a = c.grant(60)
    b = c.grant(60)
    c.rec("distinct", a != b)
    c.call("grant chosen id", LEASE.LeaseGrant, pb.LeaseGrantRequest(TTL=60, ID=4242))
    c.call("grant chosen id again", LEASE.LeaseGrant, pb.LeaseGrantRequest(TTL=60, ID=4242))
    for lid in (a, b, 4242):
        c.call("revoke", LEASE.LeaseRevoke, pb.LeaseRevokeRequest(ID=lid))


@sc
def lease_grant_ttls(c):
    ids = []
    for ttl in (0, 1, 2, 100, -5):
        r = c.call("grant ttl %d" % ttl, LEASE.LeaseGrant, pb.LeaseGrantRequest(TTL=ttl))
        if r is not None:
            ids.append(r.ID)
    c.call("grant too large", LEASE.LeaseGrant, pb.LeaseGrantRequest(TTL=9000000001))
    for lid in ids:
        LEASE.LeaseRevoke(pb.LeaseRevokeRequest(ID=lid), timeout=10)


@sc
def lease_revoke_deletes_keys(c):
    lid = c.grant(60)
    c.put("a", b"1", lease=lid)
    c.put("b", b"1", lease=lid)
    c.put("c", b"1")
    w = c.watch()
    w.next("created")
    c.call("revoke", LEASE.LeaseRevoke, pb.LeaseRevokeRequest(ID=lid))
    w.next("deletes in one revision")
    c.call("revoke again", LEASE.LeaseRevoke, pb.LeaseRevokeRequest(ID=lid))
    c.get("", range_end=c.end())
    c.call("ttl after revoke", LEASE.LeaseTimeToLive, pb.LeaseTimeToLiveRequest(ID=lid))


@sc
def lease_revoke_unknown(c):
    c.call("revoke unknown", LEASE.LeaseRevoke, pb.LeaseRevokeRequest(ID=0x7abc1236))
    c.call("revoke zero", LEASE.LeaseRevoke, pb.LeaseRevokeRequest(ID=0))


@sc
def lease_time_to_live(c):
    lid = c.grant(60)
    c.put("b", b"1", lease=lid)
    c.put("a", b"1", lease=lid)
    c.call("ttl", LEASE.LeaseTimeToLive, pb.LeaseTimeToLiveRequest(ID=lid))
    c.call("ttl keys", LEASE.LeaseTimeToLive, pb.LeaseTimeToLiveRequest(ID=lid, keys=True))
    c.call("ttl unknown", LEASE.LeaseTimeToLive, pb.LeaseTimeToLiveRequest(ID=0x7abc1237, keys=True))
    c.call("revoke", LEASE.LeaseRevoke, pb.LeaseRevokeRequest(ID=lid))


@sc
def lease_leases_list(c):
    ids = [c.grant(60) for _ in range(3)]
    r = LEASE.LeaseLeases(pb.LeaseLeasesRequest(), timeout=10)
    c.rec("ours listed", sorted(c.id(x.ID) for x in r.leases if x.ID in ids))
    c.rec("header", c.norm(r.header))
    LEASE.LeaseRevoke(pb.LeaseRevokeRequest(ID=ids[0]), timeout=10)
    r = LEASE.LeaseLeases(pb.LeaseLeasesRequest(), timeout=10)
    c.rec("after revoke", sorted(c.id(x.ID) for x in r.leases if x.ID in ids))
    for lid in ids[1:]:
        LEASE.LeaseRevoke(pb.LeaseRevokeRequest(ID=lid), timeout=10)


@sc
def lease_keepalive(c):
    lid = c.grant(30)
    reqs = queue.Queue()
    stream = LEASE.LeaseKeepAlive(iter(reqs.get, None), timeout=30)
    reqs.put(pb.LeaseKeepAliveRequest(ID=lid))
    c.rec("keepalive", c.norm(next(stream)))
    reqs.put(pb.LeaseKeepAliveRequest(ID=lid))
    c.rec("keepalive again", c.norm(next(stream)))
    reqs.put(pb.LeaseKeepAliveRequest(ID=0x7abc1238))
    c.rec("keepalive unknown", c.norm(next(stream)))
    reqs.put(None)
    stream.cancel()
    c.call("revoke", LEASE.LeaseRevoke, pb.LeaseRevokeRequest(ID=lid))


@sc
def lease_expiry_deletes_keys(c):
    lid = c.grant(2)
    c.put("a", b"1", lease=lid)
    c.put("b", b"1", lease=lid)
    w = c.watch()
    w.next("created")
    r = w.q.get(timeout=15)
    c.rec("expired in one revision", c.norm(r))
    c.get("", range_end=c.end())
    c.call("ttl after expiry", LEASE.LeaseTimeToLive, pb.LeaseTimeToLiveRequest(ID=lid))
    c.call("revoke after expiry", LEASE.LeaseRevoke, pb.LeaseRevokeRequest(ID=lid))


@sc
def lease_keepalive_extends(c):
    lid = c.grant(2)
    c.put("a", b"1", lease=lid)
    reqs = queue.Queue()
    stream = LEASE.LeaseKeepAlive(iter(reqs.get, None), timeout=30)
    for _ in range(5):
        reqs.put(pb.LeaseKeepAliveRequest(ID=lid))
        next(stream)
        time.sleep(0.7)
    c.get("a", label="alive after 3.5s of keepalives", count_only=True)
    reqs.put(None)
    stream.cancel()
    c.call("revoke", LEASE.LeaseRevoke, pb.LeaseRevokeRequest(ID=lid))


# ---------------------------------------------------------------- Maintenance, Cluster

@sc
def maintenance_status(c):
    r = c.call("status", MAINT.Status, pb.StatusRequest())
    c.rec("leader is this member", r.leader == r.header.member_id)
    c.rec("db size positive", r.dbSize > 0)
    c.rec("raft index positive", r.raftIndex > 0)


@sc
def maintenance_hash_shapes(c):
    c.put("a", b"1")
    h = c.call("hash", MAINT.Hash, pb.HashRequest())
    c.rec("hash nonzero", h.hash != 0)
    c.call("hashkv current", MAINT.HashKV, pb.HashKVRequest(revision=0), record=False)
    hk = MAINT.HashKV(pb.HashKVRequest(revision=0), timeout=10)
    hk2 = MAINT.HashKV(pb.HashKVRequest(revision=0), timeout=10)
    c.rec("hashkv stable", hk.hash == hk2.hash)
    c.rec("hashkv header", c.norm(hk.header))
    c.call("hashkv future", MAINT.HashKV, pb.HashKVRequest(revision=c.base + 1000))


@sc
def maintenance_alarm_list(c):
    r = c.call("alarm get", MAINT.Alarm, pb.AlarmRequest(action="GET"), record=False)
    c.rec("alarms", [c.norm(a) for a in r.alarms])
    r = c.call("alarm deactivate none", MAINT.Alarm,
               pb.AlarmRequest(action="DEACTIVATE", memberID=0, alarm="NONE"), record=False)
    c.rec("deactivate", [c.norm(a) for a in r.alarms] if r else None)


@sc
def maintenance_defragment(c):
    c.put("a", b"1")
    c.call("defragment", MAINT.Defragment, pb.DefragmentRequest())
    c.get("a")


@sc
def maintenance_snapshot_shape(c):
    c.put("a", b"1")
    chunks = list(MAINT.Snapshot(pb.SnapshotRequest(), timeout=30))
    blob = b"".join(x.blob for x in chunks)
    c.rec("chunks", len(chunks) > 0)
    c.rec("last remaining is 0", chunks[-1].remaining_bytes == 0)
    c.rec("remaining decreases", all(a.remaining_bytes > b.remaining_bytes
                                     for a, b in zip(chunks, chunks[1:])))
    c.rec("sha256 trailer", hashlib.sha256(blob[:-32]).digest() == blob[-32:])
    c.rec("first header", c.norm(chunks[0].header))


@sc
def maintenance_move_leader_to_self(c):
    me = MAINT.Status(pb.StatusRequest(), timeout=10).header.member_id
    c.call("move to self", MAINT.MoveLeader, pb.MoveLeaderRequest(targetID=me))
    c.rec("still leader", MAINT.Status(pb.StatusRequest(), timeout=10).leader == me)


@sc
def cluster_member_list(c):
    r = c.call("list", CLUSTER.MemberList, pb.MemberListRequest())
    c.rec("one member is the leader",
          [m.ID == r.header.member_id for m in r.members])


# ---------------------------------------------------------------- Size limits

@sc
def request_too_large(c):
    c.put("ok", b"x" * (MAX_REQUEST_BYTES - 1024))
    c.put("big", b"x" * (MAX_REQUEST_BYTES + 1024))
    c.put("huge", b"x" * (MAX_REQUEST_BYTES + 1024 * 1024))
    txn(c, "big txn", [], [op_put(c, "t%d" % i, b"y" * (MAX_REQUEST_BYTES // 8)) for i in range(10)])
    c.get("", range_end=c.end(), keys_only=True)


@sc
def large_range_response(c):
    # A response may exceed max_request_bytes (only requests are limited).
    for i in range(6):
        c.put("k%d" % i, b"z" * (MAX_REQUEST_BYTES // 3), record=False)
    r = KV.Range(pb.RangeRequest(key=c.p, range_end=c.end()), timeout=10)
    c.rec("count", [r.count, len(r.kvs)])


# ---------------------------------------------------------------- v3lock

@sc
def lock_and_unlock(c):
    lid = c.grant(60)
    r = c.call("lock", LOCK.Lock, lockpb.LockRequest(name=c.k("l"), lease=lid))
    c.get("l/", label="lock key", range_end=c.k("l0"))
    c.call("unlock", LOCK.Unlock, lockpb.UnlockRequest(key=r.key))
    c.get("l/", label="after unlock", range_end=c.k("l0"), count_only=True)
    c.call("unlock again", LOCK.Unlock, lockpb.UnlockRequest(key=r.key))
    c.call("revoke", LEASE.LeaseRevoke, pb.LeaseRevokeRequest(ID=lid))


@sc
def lock_contention(c):
    l1, l2 = c.grant(60), c.grant(60)
    r1 = c.call("lock 1", LOCK.Lock, lockpb.LockRequest(name=c.k("l"), lease=l1))
    f = LOCK.Lock.future(lockpb.LockRequest(name=c.k("l"), lease=l2), timeout=20)
    time.sleep(0.5)
    c.rec("second waits", f.done())
    c.call("unlock 1", LOCK.Unlock, lockpb.UnlockRequest(key=r1.key))
    c.rec("second acquires", c.norm(f.result(timeout=10)))
    for lid in (l1, l2):
        LEASE.LeaseRevoke(pb.LeaseRevokeRequest(ID=lid), timeout=10)


@sc
def lock_released_by_revoke(c):
    l1, l2 = c.grant(60), c.grant(60)
    c.call("lock 1", LOCK.Lock, lockpb.LockRequest(name=c.k("l"), lease=l1))
    f = LOCK.Lock.future(lockpb.LockRequest(name=c.k("l"), lease=l2), timeout=20)
    time.sleep(0.3)
    c.call("revoke 1", LEASE.LeaseRevoke, pb.LeaseRevokeRequest(ID=l1))
    c.rec("second acquires", c.norm(f.result(timeout=10)))
    LEASE.LeaseRevoke(pb.LeaseRevokeRequest(ID=l2), timeout=10)


@sc
def lock_unknown_lease(c):
    c.call("lock", LOCK.Lock, lockpb.LockRequest(name=c.k("l"), lease=0x7abc1239))


# ---------------------------------------------------------------- v3election

@sc
def election_campaign_leader_resign(c):
    lid = c.grant(60)
    r = c.call("campaign", ELECTION.Campaign,
               elpb.CampaignRequest(name=c.k("e"), lease=lid, value=b"v1"))
    c.call("leader", ELECTION.Leader, elpb.LeaderRequest(name=c.k("e")))
    c.call("proclaim", ELECTION.Proclaim,
           elpb.ProclaimRequest(leader=r.leader, value=b"v2"))
    c.call("leader after proclaim", ELECTION.Leader, elpb.LeaderRequest(name=c.k("e")))
    c.call("resign", ELECTION.Resign, elpb.ResignRequest(leader=r.leader))
    c.call("leader after resign", ELECTION.Leader, elpb.LeaderRequest(name=c.k("e")))
    c.call("proclaim after resign", ELECTION.Proclaim,
           elpb.ProclaimRequest(leader=r.leader, value=b"v3"))
    c.call("revoke", LEASE.LeaseRevoke, pb.LeaseRevokeRequest(ID=lid))


@sc
def election_no_leader_and_bad_proclaim(c):
    c.call("leader none", ELECTION.Leader, elpb.LeaderRequest(name=c.k("e")))
    lid = c.grant(60)
    c.call("proclaim bogus", ELECTION.Proclaim,
           elpb.ProclaimRequest(leader=elpb.LeaderKey(name=c.k("e"), key=c.k("e/1"), rev=1,
                                                      lease=lid), value=b"x"))
    c.call("resign bogus", ELECTION.Resign,
           elpb.ResignRequest(leader=elpb.LeaderKey(name=c.k("e"), key=c.k("e/1"), rev=1,
                                                    lease=lid)))
    c.call("revoke", LEASE.LeaseRevoke, pb.LeaseRevokeRequest(ID=lid))


@sc
def election_queue_and_observe(c):
    l1, l2 = c.grant(60), c.grant(60)
    obs = ELECTION.Observe(elpb.LeaderRequest(name=c.k("e")), timeout=30)
    q = queue.Queue()

    def reader():
        try:
            for x in obs:
                q.put(x)
        except grpc.RpcError:
            pass
    threading.Thread(target=reader, daemon=True).start()
    r1 = c.call("campaign 1", ELECTION.Campaign,
                elpb.CampaignRequest(name=c.k("e"), lease=l1, value=b"one"))
    c.rec("observe 1", c.norm(q.get(timeout=10)))
    f = ELECTION.Campaign.future(elpb.CampaignRequest(name=c.k("e"), lease=l2, value=b"two"),
                                 timeout=20)
    time.sleep(0.5)
    c.rec("second waits", f.done())
    c.call("proclaim 1", ELECTION.Proclaim, elpb.ProclaimRequest(leader=r1.leader, value=b"uno"))
    c.rec("observe proclaim", c.norm(q.get(timeout=10)))
    c.call("resign 1", ELECTION.Resign, elpb.ResignRequest(leader=r1.leader))
    c.rec("second elected", c.norm(f.result(timeout=10)))
    c.rec("observe 2", c.norm(q.get(timeout=10)))
    obs.cancel()
    for lid in (l1, l2):
        LEASE.LeaseRevoke(pb.LeaseRevokeRequest(ID=lid), timeout=10)


@sc
def election_campaign_same_lease_twice(c):
    lid = c.grant(60)
    c.call("campaign", ELECTION.Campaign, elpb.CampaignRequest(name=c.k("e"), lease=lid, value=b"a"))
    c.call("campaign again", ELECTION.Campaign,
           elpb.CampaignRequest(name=c.k("e"), lease=lid, value=b"b"))
    c.get("e/", range_end=c.k("e0"))
    c.call("revoke", LEASE.LeaseRevoke, pb.LeaseRevokeRequest(ID=lid))


# ---------------------------------------------------------------- More edges

@sc
def put_same_value_twice(c):
    c.put("a", b"1")
    c.put("a", b"1", prev_kv=True)
    c.get("a")


@sc
def range_sort_with_count_and_keys_only(c):
    fill(c, ["a", "b", "c"])
    c.put("a", b"z")
    c.get("", label="keys_only by value desc", range_end=c.end(), keys_only=True,
          sort_order="DESCEND", sort_target="VALUE")
    c.get("", label="count_only sorted", range_end=c.end(), count_only=True,
          sort_order="DESCEND", sort_target="MOD")
    c.get("", label="limit sorted by mod asc", range_end=c.end(), limit=1,
          sort_order="ASCEND", sort_target="MOD")


@sc
def txn_compare_empty_range(c):
    for target, kw in (("VERSION", {"version": 0}), ("CREATE", {"create_revision": 0}),
                       ("MOD", {"mod_revision": 0}), ("VALUE", {"value": b""}),
                       ("LEASE", {"lease": 0})):
        txn(c, "%s = 0 over nothing" % target,
            [pb.Compare(key=c.k("a"), range_end=c.k("b"), target=target, result="EQUAL", **kw)])


@sc
def txn_prev_kv_and_lease_inside(c):
    lid = c.grant(60)
    c.put("a", b"1")
    txn(c, "put prev_kv with lease", [],
        [op_put(c, "a", b"2", prev_kv=True, lease=lid), op_del(c, "nothing", prev_kv=True)])
    c.call("ttl keys", LEASE.LeaseTimeToLive, pb.LeaseTimeToLiveRequest(ID=lid, keys=True))
    c.call("revoke", LEASE.LeaseRevoke, pb.LeaseRevokeRequest(ID=lid))
    c.get("a")


@sc
def lease_detached_by_put(c):
    lid = c.grant(60)
    c.put("a", b"1", lease=lid)
    c.put("a", b"2")
    c.call("ttl keys", LEASE.LeaseTimeToLive, pb.LeaseTimeToLiveRequest(ID=lid, keys=True))
    c.call("revoke", LEASE.LeaseRevoke, pb.LeaseRevokeRequest(ID=lid))
    c.get("a", label="survives the revoke")


@sc
def lease_moved_between_leases(c):
    l1, l2 = c.grant(60), c.grant(60)
    c.put("a", b"1", lease=l1)
    c.put("a", b"2", lease=l2)
    c.call("revoke 1", LEASE.LeaseRevoke, pb.LeaseRevokeRequest(ID=l1))
    c.get("a", label="still there")
    c.call("revoke 2", LEASE.LeaseRevoke, pb.LeaseRevokeRequest(ID=l2))
    c.get("a", label="gone")


@sc
def lease_keepalive_after_expiry(c):
    lid = c.grant(2)
    time.sleep(3.5)
    reqs = queue.Queue()
    stream = LEASE.LeaseKeepAlive(iter(reqs.get, None), timeout=30)
    reqs.put(pb.LeaseKeepAliveRequest(ID=lid))
    c.rec("keepalive expired", c.norm(next(stream)))
    reqs.put(None)
    stream.cancel()


@sc
def watch_range_end_before_key(c):
    w = c.watch(key="m", range_end=c.k("a"))
    w.next("created")
    c.put("m", b"1")
    c.put("b", b"1")
    w.quiet("nothing matches")


@sc
def watch_delete_recreate_prev_kv_replay(c):
    r1 = c.put("a", b"1").header.revision
    c.call("del", KV.DeleteRange, pb.DeleteRangeRequest(key=c.k("a")))
    c.put("a", b"2")
    w = c.watch(key="a", start_revision=r1, prev_kv=True)
    w.next("created")
    w.events("put, delete, create", 3)


@sc
def watch_next_revision_start(c):
    r = c.put("a", b"0").header.revision
    w = c.watch(key="a", start_revision=r + 1)
    w.next("created")
    c.put("a", b"1")
    w.next("first live event")


@sc
def watch_cancel_then_reuse_id(c):
    w = c.watch(key="a", watch_id=5)
    w.next("created 5")
    w.cancel(5)
    w.next("canceled 5")
    w.create(key="b", watch_id=5)
    w.next("created 5 again")
    c.put("a", b"1")
    c.put("b", b"1")
    w.next("b only")


@sc
def watch_txn_events_filtered_prev_kv(c):
    c.put("a", b"0")
    w = c.watch(prev_kv=True, filters=["NOPUT"])
    w.next("created")
    txn(c, "txn", [], [op_put(c, "a", b"1"), op_put(c, "b", b"1")])
    txn(c, "txn del", [], [op_del(c, "", range_end=c.end(), prev_kv=True)])
    w.next("deletes with prev_kv")


@sc
def lock_same_lease_twice(c):
    lid = c.grant(60)
    c.call("lock", LOCK.Lock, lockpb.LockRequest(name=c.k("l"), lease=lid))
    c.call("lock again", LOCK.Lock, lockpb.LockRequest(name=c.k("l"), lease=lid), timeout=5)
    c.get("l/", label="one key", range_end=c.k("l0"), count_only=True)
    c.call("revoke", LEASE.LeaseRevoke, pb.LeaseRevokeRequest(ID=lid))


@sc
def election_leader_lease_revoked(c):
    l1, l2 = c.grant(60), c.grant(60)
    c.call("campaign 1", ELECTION.Campaign, elpb.CampaignRequest(name=c.k("e"), lease=l1, value=b"1"))
    f = ELECTION.Campaign.future(elpb.CampaignRequest(name=c.k("e"), lease=l2, value=b"2"),
                                 timeout=20)
    time.sleep(0.3)
    c.call("revoke 1", LEASE.LeaseRevoke, pb.LeaseRevokeRequest(ID=l1))
    c.rec("second elected", c.norm(f.result(timeout=10)))
    c.call("leader", ELECTION.Leader, elpb.LeaderRequest(name=c.k("e")))
    c.call("revoke 2", LEASE.LeaseRevoke, pb.LeaseRevokeRequest(ID=l2))
    c.call("leader none", ELECTION.Leader, elpb.LeaderRequest(name=c.k("e")))


@sc
def election_campaign_unknown_lease(c):
    c.call("campaign", ELECTION.Campaign,
           elpb.CampaignRequest(name=c.k("e"), lease=0x7abc1240, value=b"x"))


@sc
def compact_then_hashkv(c):
    r1 = c.put("a", b"1").header.revision
    r2 = c.put("a", b"2").header.revision
    c.call("compact r2 not physical", KV.Compact, pb.CompactionRequest(revision=r2))
    c.call("hashkv at r1", MAINT.HashKV, pb.HashKVRequest(revision=r1))
    # Not compared: HashKV at exactly the compact revision. etcd 3.4 answers
    # "compacted", 3.5.5+ hashes it (so does Janus, reporting as 3.5).
    c.put("a", b"3")
    c.call("hashkv at r3", MAINT.HashKV, pb.HashKVRequest(revision=r2 + 1))


@sc
def watch_prev_kv_compacted_away(c):
    c.put("a", b"1")
    r2 = c.put("a", b"2").header.revision
    c.put("a", b"3")
    c.call("compact r2", KV.Compact, pb.CompactionRequest(revision=r2))
    w = c.watch(key="a", start_revision=r2, prev_kv=True)
    w.next("created")
    w.events("r2 without prev_kv, r3 with", 2)


@sc
def hashkv_past_revision_header(c):
    r1 = c.put("a", b"1").header.revision
    c.put("a", b"2")
    c.put("b", b"3")
    # The header carries the current revision, not the hashed one.
    c.call("hashkv at r1", MAINT.HashKV, pb.HashKVRequest(revision=r1))
    c.call("hashkv current", MAINT.HashKV, pb.HashKVRequest(revision=0))


@sc
def watch_negative_start_revision(c):
    # Compared with the compacted revision like any start (-1 before the
    # first compaction): canceled below it, a watch from now on at it.
    c.put("a", b"1")
    c.put("a", b"2")
    w = c.watch(key="a", start_revision=-1)
    w.next("created -1")
    w2 = c.watch(key="a", start_revision=-100)
    w2.next("created -100")
    w2.next("then -100")
    w.quiet("nothing more for -1")
    c.put("a", b"3")
    w.events("after a put, -1", 1, timeout=1)
    w2.quiet("after a put, -100")


@sc
def lease_regrant_same_id_and_ttl_without_keys(c):
    c.call("grant 777", LEASE.LeaseGrant, pb.LeaseGrantRequest(TTL=60, ID=777))
    c.put("a", b"1", lease=777)
    c.call("ttl no keys", LEASE.LeaseTimeToLive, pb.LeaseTimeToLiveRequest(ID=777))
    c.call("revoke", LEASE.LeaseRevoke, pb.LeaseRevokeRequest(ID=777))
    c.call("grant 777 again", LEASE.LeaseGrant, pb.LeaseGrantRequest(TTL=60, ID=777))
    c.call("ttl keys", LEASE.LeaseTimeToLive, pb.LeaseTimeToLiveRequest(ID=777, keys=True))
    c.call("revoke again", LEASE.LeaseRevoke, pb.LeaseRevokeRequest(ID=777))


@sc
def put_prev_kv_after_delete(c):
    c.put("a", b"1")
    c.call("del", KV.DeleteRange, pb.DeleteRangeRequest(key=c.k("a")))
    c.put("a", b"2", prev_kv=True)
    c.get("a", label="at the deletion", revision=c.base + 2)


def main():
    only = set(sys.argv[3:])
    for f in SCENARIOS:
        if only and f.__name__ not in only:
            continue
        c = Ctx(f.__name__)
        t0 = time.time()
        try:
            f(c)
        except Exception:
            c.rec("exception", traceback.format_exc().strip().splitlines()[-1])
        finally:
            c.close()
        print("%s %.2fs" % (f.__name__, time.time() - t0), file=sys.stderr)
        print(json.dumps({"name": f.__name__, "obs": c.obs}), flush=True)


main()
