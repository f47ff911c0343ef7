"""Differential scenarios for Janus's ZooKeeper personality.

Runs every scenario through kazoo against one server and prints, as JSON,
each scenario's normalized record: results and error types of every step,
Stat fields (versions, counts, ephemeral owner kind) with zxids replaced by
their rank within the scenario (so only their relative order counts), and
the watch events seen. tests/zk_diff.rs runs it against real ZooKeeper and
against Janus and compares the two outputs.

usage: zk_diff.py HOST:PORT [SCENARIO...]
"""

import json
import sys
import threading
import time
import traceback
from collections import namedtuple

from kazoo.client import KazooClient
from kazoo.exceptions import KazooException
from kazoo.protocol.serialization import (Create2, CheckVersion, MultiHeader, int_struct, long_struct, read_buffer,
                                          read_string, stat_struct, write_string)
from kazoo.protocol.states import ZnodeStat
from kazoo.security import ACL, Id, OPEN_ACL_UNSAFE, make_digest_acl, make_acl, READ_ACL_UNSAFE, CREATOR_ALL_ACL

HOSTS = sys.argv[1]

# Error codes kazoo has no exception for: without these its reader thread
# raises, drops the connection and the request times out.
from kazoo.exceptions import EXCEPTIONS
for _code, _name in [(-121, "NoWatcherError"), (-122, "RequestTimeoutError"),
                     (-123, "ReconfigDisabledError"), (-124, "SessionClosedRequireSaslError"),
                     (-125, "QuotaExceededError"), (-127, "ThrottledOpError")]:
    if _code not in EXCEPTIONS:
        EXCEPTIONS[_code] = type(_name, (KazooException,), {})


class CreateContainer(namedtuple("CreateContainer", "path data acl flags")):
    type = 19
    serialize = Create2.serialize
    deserialize = Create2.deserialize


class CreateTTL(namedtuple("CreateTTL", "path data acl flags ttl")):
    type = 21

    def serialize(self):
        b = Create2.serialize(self)
        b.extend(long_struct.pack(self.ttl))
        return b

    deserialize = Create2.deserialize


class GetAllChildrenNumber(namedtuple("GetAllChildrenNumber", "path")):
    type = 104

    def serialize(self):
        return bytearray(write_string(self.path))

    @classmethod
    def deserialize(cls, b, offset):
        return int_struct.unpack_from(b, offset)[0]


class GetEphemerals(namedtuple("GetEphemerals", "path")):
    type = 103

    def serialize(self):
        return bytearray(write_string(self.path))

    @classmethod
    def deserialize(cls, b, offset):
        n = int_struct.unpack_from(b, offset)[0]
        offset += 4
        out = []
        for _ in range(max(n, 0)):
            s, offset = read_string(b, offset)
            out.append(s)
        return sorted(out)



def _empty(cls):
    cls.deserialize = classmethod(lambda c, b, offset: "ok")
    return cls


@_empty
class AddWatch(namedtuple("AddWatch", "path mode")):
    type = 106

    def serialize(self):
        return bytearray(write_string(self.path) + int_struct.pack(self.mode))


@_empty
class CheckWatches(namedtuple("CheckWatches", "path wtype")):
    type = 17

    def serialize(self):
        return bytearray(write_string(self.path) + int_struct.pack(self.wtype))


@_empty
class RemoveWatches(namedtuple("RemoveWatches", "path wtype")):
    type = 18

    def serialize(self):
        return bytearray(write_string(self.path) + int_struct.pack(self.wtype))


def _strings(items):
    b = bytearray(int_struct.pack(len(items)))
    for x in items:
        b.extend(write_string(x))
    return b


@_empty
class SetWatches(namedtuple("SetWatches", "zxid data exist child")):
    type = 101

    def serialize(self):
        return bytearray(long_struct.pack(self.zxid)) + _strings(self.data) + _strings(self.exist) + _strings(self.child)


@_empty
class SetWatches2(namedtuple("SetWatches2", "zxid data exist child persistent recursive")):
    type = 105

    def serialize(self):
        b = bytearray(long_struct.pack(self.zxid))
        for v in (self.data, self.exist, self.child, self.persistent, self.recursive):
            b.extend(_strings(v))
        return b


class WhoAmI(namedtuple("WhoAmI", "")):
    type = 107

    # kazoo only completes a request that is truthy; an empty tuple is not.
    def __bool__(self):
        return True

    def serialize(self):
        return bytearray()

    @classmethod
    def deserialize(cls, b, offset):
        n = int_struct.unpack_from(b, offset)[0]
        offset += 4
        out = []
        for _ in range(max(n, 0)):
            scheme, offset = read_string(b, offset)
            user, offset = read_string(b, offset)
            out.append([scheme, user])
        return sorted(out)


class MultiRead(namedtuple("MultiRead", "ops")):
    """ops: [("get", path) | ("children", path)]"""
    type = 22

    def serialize(self):
        b = bytearray()
        for kind, path in self.ops:
            t = 4 if kind == "get" else 8
            b.extend(MultiHeader(t, False, -1).serialize())
            b.extend(write_string(path))
            b.extend(b"\0")  # no watch
        return b + MultiHeader(-1, True, -1).serialize()

    @classmethod
    def deserialize(cls, b, offset):
        out = []
        while True:
            h, offset = MultiHeader.deserialize(b, offset)
            if h.done:
                return out
            if h.type == 4:
                data, offset = read_buffer(b, offset)
                st = ZnodeStat._make(stat_struct.unpack_from(b, offset))
                offset += stat_struct.size
                out.append(["data", data, st])
            elif h.type == 8:
                n = int_struct.unpack_from(b, offset)[0]
                offset += 4
                kids = []
                for _ in range(max(n, 0)):
                    k, offset = read_string(b, offset)
                    kids.append(k)
                out.append(["children", sorted(kids)])
            else:
                err = int_struct.unpack_from(b, offset)[0]
                offset += 4
                out.append(["error", h.type, err])


def NOOP(_event):
    pass


def call(zk, req):
    a = zk.handler.async_result()
    zk._call(req, a)
    return a.get(timeout=10)


class Ctx:
    def __init__(self, base):
        self.base = base
        self.out = []
        self.events = []
        self.lock = threading.Lock()
        self.sessions = {}
        self.clients = []
        self.zk = self.client("main")

    def client(self, name, auth=None):
        # A loaded CI machine can keep a JVM from answering its first
        # connects in time: retry before calling the scenario crashed.
        for attempt in range(3):
            zk = KazooClient(hosts=HOSTS, timeout=10, connection_retry={"max_tries": 3, "delay": 0.1})
            try:
                zk.start(timeout=30)
                break
            except KazooException:
                zk.stop()
                zk.close()
                if attempt == 2:
                    raise
        if auth:
            zk.add_auth("digest", auth)
        self.sessions[zk.client_id[0]] = name
        self.clients.append(zk)
        return zk

    def raw_events(self, zk, tag):
        """Record every notification this client's connection reads, as
        (type, state, path) in arrival order, whether or not kazoo has a
        watcher for it (persistent watches, watch-removed events)."""
        conn = zk._connection
        orig = conn._read_watch_event

        def rec(buffer, offset):
            from kazoo.protocol.serialization import Watch
            w, _ = Watch.deserialize(buffer, offset)
            with self.lock:
                self.events.append([tag, "raw", w.type, w.state, strip(self.base, w.path)])
            return orig(buffer, offset)

        conn._read_watch_event = rec

    def p(self, *parts):
        return "/".join([self.base] + [str(x) for x in parts])

    def watcher(self, tag):
        def w(ev):
            with self.lock:
                self.events.append([tag, ev.type, strip(self.base, ev.path)])
        return w

    def step(self, name, fn):
        try:
            r = fn()
            self.out.append([name, "ok", self.norm(r)])
        except KazooException as e:
            self.out.append([name, "err", type(e).__name__])

    def stat(self, st):
        if st is None:
            return None
        owner = st.ephemeralOwner
        u = owner & (2**64 - 1)
        if owner == 0:
            kind = "persistent"
        elif owner == -(2**63):
            kind = "container"
        elif u & 0xFF00000000000000 == 0xFF00000000000000:
            kind = "ttl:%d" % (u & 0x00FFFFFFFFFFFFFF)
        else:
            kind = "session:" + self.sessions.get(owner, "unknown")
        return {
            "czxid": ["Z", st.czxid],
            "mzxid": ["Z", st.mzxid],
            "pzxid": ["Z", st.pzxid],
            "version": st.version,
            "cversion": st.cversion,
            "aversion": st.aversion,
            "dataLength": st.dataLength,
            "numChildren": st.numChildren,
            "owner": kind,
        }

    def norm(self, r):
        if isinstance(r, ZnodeStat):
            return self.stat(r)
        if isinstance(r, Exception):
            return ["exc", type(r).__name__]
        if isinstance(r, ACL):
            return [r.perms, r.id.scheme, r.id.id]
        if isinstance(r, (list, tuple)):
            return [self.norm(x) for x in r]
        if isinstance(r, bytes):
            return r.decode("latin-1")
        if isinstance(r, str):
            return strip(self.base, r)
        return r

    def settle(self):
        # Events are written before the reply of any later request; the
        # callbacks run on kazoo's thread, so give them a moment.
        self.zk.sync("/")
        time.sleep(0.3)

    def finish(self):
        self.settle()
        # Take the events before closing: kazoo tells every watcher still
        # set a NONE event on close, on its callback thread, racing us.
        with self.lock:
            taken, self.events = self.events, []
        for zk in self.clients:
            try:
                zk.stop()
                zk.close()
            except Exception:
                pass
        with self.lock:
            self.events = taken
            # One notification can run several kazoo callbacks on the same
            # path (kept in a set, so in no fixed order): sort those.
            events, i = [], 0
            while i < len(self.events):
                j = i
                while j < len(self.events) and self.events[j][1:] == self.events[i][1:]:
                    j += 1
                events.extend(sorted(self.events[i:j]))
                i = j
            rec = {"steps": self.out, "events": events}
        return rank_zxids(rec)


def strip(base, path):
    if isinstance(path, str) and path.startswith(base):
        return "~" + path[len(base):]
    return path


def rank_zxids(rec):
    found = set()

    def walk(x):
        if isinstance(x, list):
            if len(x) == 2 and x[0] == "Z" and isinstance(x[1], int):
                found.add(x[1])
            else:
                for y in x:
                    walk(y)
        elif isinstance(x, dict):
            for y in x.values():
                walk(y)

    walk(rec)
    rank = {z: i for i, z in enumerate(sorted(found))}

    def sub(x):
        if isinstance(x, list):
            if len(x) == 2 and x[0] == "Z" and isinstance(x[1], int):
                return "z%d" % rank[x[1]]
            return [sub(y) for y in x]
        if isinstance(x, dict):
            return {k: sub(v) for k, v in x.items()}
        return x

    return sub(rec)


SCENARIOS = []


def scenario(fn):
    SCENARIOS.append(fn)
    return fn


# ---- create modes, Stat rules, errors ----

@scenario
def create_persistent_and_stat(c):
    zk = c.zk
    c.step("create", lambda: zk.create(c.p(), b"hello"))
    c.step("get", lambda: zk.get(c.p()))
    c.step("exists", lambda: zk.exists(c.p()))
    c.step("create2", lambda: zk.create(c.p("a"), b"x", include_data=True))
    c.step("parent", lambda: zk.exists(c.p()))


@scenario
def create_errors(c):
    zk = c.zk
    c.step("create", lambda: zk.create(c.p()))
    c.step("exists_again", lambda: zk.create(c.p()))
    c.step("no_parent", lambda: zk.create(c.p("x", "y")))
    c.step("bad_path", lambda: call(zk, Create2(c.p() + "//x", b"", OPEN_ACL_UNSAFE, 0)))
    c.step("dot_path", lambda: call(zk, Create2(c.p("."), b"", OPEN_ACL_UNSAFE, 0)))
    c.step("trailing_slash", lambda: call(zk, Create2(c.p() + "/", b"", OPEN_ACL_UNSAFE, 0)))
    c.step("bad_flags", lambda: call(zk, Create2(c.p("f"), b"", OPEN_ACL_UNSAFE, 42)))
    c.step("empty_acl", lambda: call(zk, Create2(c.p("e"), b"", [], 0)))
    c.step("bad_world_id", lambda: zk.create(c.p("w"), acl=[make_acl("world", "nobody", all=True)]))
    c.step("auth_without_auth", lambda: zk.create(c.p("u"), acl=CREATOR_ALL_ACL))
    c.step("root", lambda: call(zk, Create2("/", b"", OPEN_ACL_UNSAFE, 0)))


@scenario
def sequential_names(c):
    zk = c.zk
    c.step("parent", lambda: zk.create(c.p()))
    for i in range(3):
        c.step("seq%d" % i, lambda: zk.create(c.p("n-"), b"", sequence=True))
    c.step("plain", lambda: zk.create(c.p("plain")))
    c.step("delete", lambda: zk.delete(c.p("n-0000000001")))
    c.step("seq_after_delete", lambda: zk.create(c.p("n-"), b"", sequence=True))
    c.step("seq_trailing_slash", lambda: zk.create(c.p() + "/", b"", sequence=True))
    c.step("children", lambda: sorted(zk.get_children(c.p())))
    c.step("stat", lambda: zk.exists(c.p()))


@scenario
def ephemerals(c):
    zk = c.zk
    c.step("parent", lambda: zk.create(c.p()))
    c.step("eph", lambda: zk.create(c.p("e"), b"v", ephemeral=True))
    c.step("eph_stat", lambda: zk.exists(c.p("e")))
    c.step("child_of_eph", lambda: zk.create(c.p("e", "c")))
    c.step("seq_child_of_eph", lambda: zk.create(c.p("e", "c"), sequence=True))
    c.step("eph_seq", lambda: zk.create(c.p("es-"), ephemeral=True, sequence=True))
    c.step("eph_seq_stat", lambda: zk.exists(c.p("es-0000000001")))


@scenario
def ephemerals_go_with_session(c):
    zk = c.zk
    other = c.client("other")
    c.step("parent", lambda: zk.create(c.p()))
    c.step("child_watch", lambda: zk.get_children(c.p(), watch=c.watcher("main-child")))
    c.step("eph", lambda: other.create(c.p("e"), ephemeral=True))
    c.step("owner", lambda: zk.exists(c.p("e"), watch=c.watcher("main-exists")))
    c.step("child_watch2", lambda: zk.get_children(c.p(), watch=c.watcher("main-child2")))
    other.stop()
    other.close()
    # kazoo's stop() sends closeSession without waiting for its reply:
    # wait (bounded) for the close to be applied.
    deadline = time.time() + 10
    while zk.exists(c.p("e")) is not None and time.time() < deadline:
        time.sleep(0.05)
    c.step("gone", lambda: zk.exists(c.p("e")))
    c.step("children", lambda: zk.get_children(c.p()))
    c.step("parent_stat", lambda: zk.exists(c.p()))


@scenario
def delete_rules(c):
    zk = c.zk
    c.step("create", lambda: zk.create(c.p(), b"1"))
    c.step("child", lambda: zk.create(c.p("c")))
    c.step("not_empty", lambda: zk.delete(c.p()))
    c.step("bad_version", lambda: zk.delete(c.p("c"), version=3))
    c.step("ok_version", lambda: zk.delete(c.p("c"), version=0))
    c.step("missing", lambda: zk.delete(c.p("c")))
    c.step("parent_after", lambda: zk.exists(c.p()))
    c.step("delete_root", lambda: zk.delete("/"))
    c.step("delete_parent", lambda: zk.delete(c.p(), version=-1))


@scenario
def set_data_versions(c):
    zk = c.zk
    c.step("create", lambda: zk.create(c.p(), b"1"))
    c.step("set", lambda: zk.set(c.p(), b"22"))
    c.step("set_v1", lambda: zk.set(c.p(), b"333", version=1))
    c.step("set_bad", lambda: zk.set(c.p(), b"4", version=1))
    c.step("set_any", lambda: zk.set(c.p(), b"", version=-1))
    c.step("get", lambda: zk.get(c.p()))
    c.step("set_missing", lambda: zk.set(c.p("nope"), b"x"))
    c.step("get_missing", lambda: zk.get(c.p("nope")))
    c.step("big", lambda: zk.set(c.p(), b"x" * 100000))
    c.step("get_big_len", lambda: len(zk.get(c.p())[0]))


@scenario
def children_and_stats(c):
    zk = c.zk
    c.step("create", lambda: zk.create(c.p()))
    for n in ["b", "a", "c"]:
        c.step("child_" + n, lambda n=n: zk.create(c.p(n), n.encode()))
    c.step("children", lambda: sorted(zk.get_children(c.p())))
    c.step("children2", lambda: (sorted(zk.get_children(c.p(), include_data=True)[0]), zk.get_children(c.p(), include_data=True)[1]))
    c.step("missing", lambda: zk.get_children(c.p("zz")))
    c.step("leaf", lambda: zk.get_children(c.p("a")))
    c.step("del_b", lambda: zk.delete(c.p("b")))
    c.step("stat_after_delete", lambda: zk.exists(c.p()))
    c.step("all_children", lambda: call(zk, GetAllChildrenNumber(c.p())))
    c.step("all_children_missing", lambda: call(zk, GetAllChildrenNumber(c.p("q"))))


@scenario
def nested_paths(c):
    zk = c.zk
    c.step("makepath", lambda: zk.create(c.p("a", "b", "c"), b"deep", makepath=True))
    c.step("ensure", lambda: zk.ensure_path(c.p("a", "b", "d")))
    c.step("stat_a", lambda: zk.exists(c.p("a")))
    c.step("stat_b", lambda: zk.exists(c.p("a", "b")))
    c.step("get_c", lambda: zk.get(c.p("a", "b", "c")))


# ---- multi ----

@scenario
def multi_success(c):
    zk = c.zk
    c.step("create", lambda: zk.create(c.p(), b"0"))
    def tx():
        t = zk.transaction()
        t.create(c.p("a"), b"a")
        t.create(c.p("s-"), b"", sequence=True)
        t.set_data(c.p(), b"1", version=0)
        t.check(c.p(), 1)
        t.delete(c.p("a"))
        return t.commit()
    c.step("multi", tx)
    c.step("after", lambda: zk.exists(c.p()))
    c.step("children", lambda: sorted(zk.get_children(c.p())))


@scenario
def multi_failure_bad_version(c):
    zk = c.zk
    c.step("create", lambda: zk.create(c.p(), b"0"))
    def tx():
        t = zk.transaction()
        t.create(c.p("a"))
        t.check(c.p(), 7)
        t.create(c.p("b"))
        return t.commit()
    c.step("multi", tx)
    c.step("a_absent", lambda: zk.exists(c.p("a")))
    c.step("stat", lambda: zk.exists(c.p()))


@scenario
def multi_failure_exists(c):
    zk = c.zk
    c.step("create", lambda: zk.create(c.p()))
    c.step("x", lambda: zk.create(c.p("x")))
    def tx():
        t = zk.transaction()
        t.set_data(c.p(), b"new")
        t.create(c.p("x"))
        t.delete(c.p("x"))
        return t.commit()
    c.step("multi", tx)
    c.step("data_unchanged", lambda: zk.get(c.p()))


@scenario
def multi_failure_no_node_and_not_empty(c):
    zk = c.zk
    c.step("create", lambda: zk.create(c.p()))
    c.step("child", lambda: zk.create(c.p("c")))
    def tx1():
        t = zk.transaction()
        t.delete(c.p())
        return t.commit()
    c.step("multi_not_empty", tx1)
    def tx2():
        t = zk.transaction()
        t.create(c.p("d"))
        t.delete(c.p("nope"))
        return t.commit()
    c.step("multi_no_node", tx2)
    def tx3():
        t = zk.transaction()
        t.create(c.p("e"), ephemeral=True)
        t.create(c.p("e", "f"))
        return t.commit()
    c.step("multi_eph_child", tx3)
    c.step("children", lambda: sorted(zk.get_children(c.p())))


@scenario
def multi_create_then_child(c):
    zk = c.zk
    def tx():
        t = zk.transaction()
        t.create(c.p())
        t.create(c.p("a"))
        t.create(c.p("a", "b"), b"x")
        t.set_data(c.p("a"), b"y")
        return t.commit()
    c.step("multi", tx)
    c.step("a", lambda: zk.get(c.p("a")))
    c.step("b", lambda: zk.exists(c.p("a", "b")))


@scenario
def multi_watch_events(c):
    zk = c.zk
    c.step("create", lambda: zk.create(c.p()))
    c.step("child_watch", lambda: zk.get_children(c.p(), watch=c.watcher("child")))
    c.step("exists_watch", lambda: zk.exists(c.p("n"), watch=c.watcher("exists")))
    c.step("data_watch", lambda: zk.get(c.p(), watch=c.watcher("data")))
    def tx():
        t = zk.transaction()
        t.create(c.p("n"))
        t.set_data(c.p(), b"z")
        return t.commit()
    c.step("multi", tx)


# ---- watches ----

@scenario
def exists_watch_fires_on_create(c):
    zk = c.zk
    c.step("exists_missing", lambda: zk.exists(c.p(), watch=c.watcher("w")))
    c.step("create", lambda: zk.create(c.p()))
    c.step("set_no_watch_left", lambda: zk.set(c.p(), b"1"))


@scenario
def data_watch_changed_then_deleted(c):
    zk = c.zk
    c.step("create", lambda: zk.create(c.p(), b"1"))
    c.step("get_watch", lambda: zk.get(c.p(), watch=c.watcher("g1")))
    c.step("set", lambda: zk.set(c.p(), b"2"))
    c.step("get_watch2", lambda: zk.get(c.p(), watch=c.watcher("g2")))
    c.step("exists_watch", lambda: zk.exists(c.p(), watch=c.watcher("e")))
    c.step("delete", lambda: zk.delete(c.p()))


@scenario
def child_watches(c):
    zk = c.zk
    c.step("create", lambda: zk.create(c.p()))
    c.step("watch1", lambda: zk.get_children(c.p(), watch=c.watcher("c1")))
    c.step("add", lambda: zk.create(c.p("x")))
    c.step("set_child_no_event", lambda: zk.set(c.p("x"), b"d"))
    c.step("watch2", lambda: zk.get_children(c.p(), watch=c.watcher("c2")))
    c.step("remove", lambda: zk.delete(c.p("x")))
    c.step("watch3", lambda: zk.get_children(c.p(), watch=c.watcher("c3")))
    c.step("delete_parent", lambda: zk.delete(c.p()))


@scenario
def watches_from_other_client(c):
    zk = c.zk
    other = c.client("other")
    c.step("create", lambda: zk.create(c.p(), b"a"))
    c.step("watch", lambda: zk.get(c.p(), watch=c.watcher("data")))
    c.step("cwatch", lambda: zk.get_children(c.p(), watch=c.watcher("child")))
    c.step("other_set", lambda: other.set(c.p(), b"b"))
    c.step("other_child", lambda: other.create(c.p("k"), ephemeral=True))
    c.step("seen", lambda: zk.get(c.p()))


@scenario
def watch_then_read_sees_event_first(c):
    # The watch event must precede the reply reflecting the change. kazoo
    # runs watch callbacks on another thread, so look at what the reader
    # thread had received (raw events) when the reply came back.
    zk = c.zk
    other = c.client("other")
    c.raw_events(zk, "w")
    c.step("create", lambda: zk.create(c.p(), b"a"))
    c.step("watch", lambda: zk.get(c.p(), watch=NOOP))
    c.step("other_set", lambda: other.set(c.p(), b"b"))

    def read():
        data, _ = zk.get(c.p())
        with c.lock:
            seen = [e[2:] for e in c.events if e[0] == "w"]
        return [seen, "read:" + data.decode()]
    c.step("read", read)


# ---- ACLs and auth ----

@scenario
def acl_get_set(c):
    zk = c.zk
    c.step("create", lambda: zk.create(c.p()))
    c.step("get_acl", lambda: zk.get_acls(c.p()))
    c.step("set_acl", lambda: zk.set_acls(c.p(), READ_ACL_UNSAFE + [make_acl("world", "anyone", admin=True)]))
    c.step("set_acl_bad_version", lambda: zk.set_acls(c.p(), OPEN_ACL_UNSAFE, version=0))
    c.step("get_acl2", lambda: zk.get_acls(c.p()))
    c.step("write_denied", lambda: zk.set(c.p(), b"x"))
    c.step("create_child_denied", lambda: zk.create(c.p("c")))
    c.step("read_ok", lambda: zk.get(c.p()))
    c.step("set_acl_back", lambda: zk.set_acls(c.p(), OPEN_ACL_UNSAFE, version=1))
    c.step("write_ok", lambda: zk.set(c.p(), b"x"))
    c.step("set_acl_missing", lambda: zk.set_acls(c.p("nope"), OPEN_ACL_UNSAFE))
    c.step("set_acl_empty", lambda: call(zk, __import__("kazoo.protocol.serialization", fromlist=["SetACL"]).SetACL(c.p(), [], -1)))


@scenario
def digest_auth(c):
    alice = c.client("alice", auth="alice:secret")
    bob = c.client("bob", auth="bob:other")
    c.step("create_creator_all", lambda: alice.create(c.p(), b"private", acl=CREATOR_ALL_ACL))
    c.step("acl", lambda: alice.get_acls(c.p()))
    c.step("alice_read", lambda: alice.get(c.p()))
    c.step("bob_read", lambda: bob.get(c.p()))
    c.step("anon_read", lambda: c.zk.get(c.p()))
    c.step("anon_children", lambda: c.zk.get_children(c.p()))
    c.step("anon_set", lambda: c.zk.set(c.p(), b"x"))
    c.step("anon_create_child", lambda: c.zk.create(c.p("c")))
    c.step("alice_create_child", lambda: alice.create(c.p("c"), acl=[make_digest_acl("bob", "other", read=True)]))
    c.step("bob_read_child", lambda: bob.get(c.p("c")))
    c.step("bob_delete_child", lambda: bob.delete(c.p("c")))
    c.step("alice_delete_child", lambda: alice.delete(c.p("c")))


@scenario
def digest_acl_explicit(c):
    zk = c.zk
    acl = make_digest_acl("carol", "pw", all=True)
    c.step("create", lambda: zk.create(c.p(), b"d", acl=[acl]))
    c.step("anon_get", lambda: zk.get(c.p()))
    carol = c.client("carol", auth="carol:pw")
    c.step("carol_get", lambda: carol.get(c.p()))
    c.step("carol_set", lambda: carol.set(c.p(), b"e"))
    c.step("wrong_pw", lambda: c.client("mallory", auth="carol:wrong").get(c.p()))


@scenario
def multi_acl_denied(c):
    zk = c.zk
    c.step("create", lambda: zk.create(c.p(), acl=READ_ACL_UNSAFE))
    def tx():
        t = zk.transaction()
        t.check(c.p(), 0)
        t.create(c.p("x"))
        return t.commit()
    c.step("multi", tx)


# ---- containers and TTL ----

@scenario
def container_and_ttl_nodes(c):
    zk = c.zk
    c.step("parent", lambda: zk.create(c.p()))
    c.step("container", lambda: call(zk, CreateContainer(c.p("cont"), b"", OPEN_ACL_UNSAFE, 4)))
    c.step("container_stat", lambda: zk.exists(c.p("cont")))
    c.step("ttl", lambda: call(zk, CreateTTL(c.p("ttl"), b"", OPEN_ACL_UNSAFE, 5, 60000)))
    c.step("ttl_stat", lambda: zk.exists(c.p("ttl")))
    c.step("ttl_seq", lambda: call(zk, CreateTTL(c.p("ts-"), b"", OPEN_ACL_UNSAFE, 6, 5000)))
    c.step("ttl_zero", lambda: call(zk, CreateTTL(c.p("t0"), b"", OPEN_ACL_UNSAFE, 5, 0)))
    c.step("ttl_on_persistent", lambda: call(zk, CreateTTL(c.p("tp"), b"", OPEN_ACL_UNSAFE, 0, 100)))
    c.step("ttl_mode_via_create2", lambda: call(zk, Create2(c.p("t2"), b"", OPEN_ACL_UNSAFE, 5)))


# ---- misc ----

@scenario
def ephemerals_list_and_sync(c):
    zk = c.zk
    c.step("parent", lambda: zk.create(c.p()))
    c.step("e1", lambda: zk.create(c.p("e1"), ephemeral=True))
    c.step("e2", lambda: zk.create(c.p("e2"), ephemeral=True))
    c.step("list", lambda: call(zk, GetEphemerals(c.p())))
    c.step("list_prefix", lambda: call(zk, GetEphemerals(c.p("e1"))))
    c.step("sync", lambda: zk.sync(c.p()))


@scenario
def builtin_nodes(c):
    zk = c.zk
    c.step("zookeeper", lambda: sorted(zk.get_children("/zookeeper")))
    c.step("quota_exists", lambda: zk.exists("/zookeeper/quota") is not None)
    c.step("zookeeper_stat", lambda: [zk.exists("/zookeeper").numChildren, zk.exists("/zookeeper").cversion])


# ---- more scenarios ----

@scenario
def set_acl_fires_no_watch(c):
    zk = c.zk
    c.step("create", lambda: zk.create(c.p(), b"a"))
    c.step("watch", lambda: zk.get(c.p(), watch=c.watcher("data")))
    c.step("set_acl", lambda: zk.set_acls(c.p(), OPEN_ACL_UNSAFE))
    c.step("set", lambda: zk.set(c.p(), b"b"))


@scenario
def delete_child_fires_parent_and_child(c):
    zk = c.zk
    c.step("create", lambda: zk.create(c.p()))
    c.step("child", lambda: zk.create(c.p("k"), b"v"))
    c.step("pwatch", lambda: zk.get_children(c.p(), watch=c.watcher("parent-child")))
    c.step("dwatch", lambda: zk.get(c.p("k"), watch=c.watcher("child-data")))
    c.step("pdata", lambda: zk.get(c.p(), watch=c.watcher("parent-data")))
    c.step("delete", lambda: zk.delete(c.p("k")))


@scenario
def same_watcher_twice_fires_once(c):
    zk = c.zk
    w = c.watcher("w")
    c.step("create", lambda: zk.create(c.p()))
    c.step("get1", lambda: zk.get(c.p(), watch=w))
    c.step("get2", lambda: zk.get(c.p(), watch=w))
    c.step("exists", lambda: zk.exists(c.p(), watch=w))
    c.step("set", lambda: zk.set(c.p(), b"1"))
    c.step("set2", lambda: zk.set(c.p(), b"2"))


@scenario
def child_watch_ignores_child_data(c):
    zk = c.zk
    c.step("create", lambda: zk.create(c.p()))
    c.step("child", lambda: zk.create(c.p("a")))
    c.step("cwatch", lambda: zk.get_children(c.p(), watch=c.watcher("c")))
    c.step("set_child", lambda: zk.set(c.p("a"), b"x"))
    c.step("set_parent", lambda: zk.set(c.p(), b"x"))
    c.step("grandchild", lambda: zk.create(c.p("a", "b")))
    c.step("child2", lambda: zk.create(c.p("b")))


@scenario
def exists_watch_on_existing_then_delete(c):
    zk = c.zk
    c.step("create", lambda: zk.create(c.p()))
    c.step("exists", lambda: zk.exists(c.p(), watch=c.watcher("e")))
    c.step("delete", lambda: zk.delete(c.p()))
    c.step("exists_again", lambda: zk.exists(c.p(), watch=c.watcher("e2")))
    c.step("recreate", lambda: zk.create(c.p(), b"again"))


@scenario
def multi_check_only(c):
    zk = c.zk
    c.step("create", lambda: zk.create(c.p()))
    def ok():
        t = zk.transaction()
        t.check(c.p(), 0)
        return t.commit()
    def bad():
        t = zk.transaction()
        t.check(c.p(), 1)
        return t.commit()
    def missing():
        t = zk.transaction()
        t.check(c.p("nope"), -1)
        return t.commit()
    c.step("ok", ok)
    c.step("bad", bad)
    c.step("missing", missing)
    c.step("stat", lambda: zk.exists(c.p()))


@scenario
def multi_delete_and_recreate(c):
    zk = c.zk
    c.step("create", lambda: zk.create(c.p()))
    c.step("child", lambda: zk.create(c.p("x"), b"old"))
    c.step("watch", lambda: zk.get(c.p("x"), watch=c.watcher("x")))
    def tx():
        t = zk.transaction()
        t.delete(c.p("x"))
        t.create(c.p("x"), b"new")
        t.set_data(c.p("x"), b"newer")
        return t.commit()
    c.step("multi", tx)
    c.step("get", lambda: zk.get(c.p("x")))
    c.step("parent", lambda: zk.exists(c.p()))


@scenario
def multi_sequentials(c):
    zk = c.zk
    c.step("create", lambda: zk.create(c.p()))
    def tx():
        t = zk.transaction()
        t.create(c.p("q-"), b"1", sequence=True)
        t.create(c.p("q-"), b"2", sequence=True)
        t.create(c.p("e-"), b"3", sequence=True, ephemeral=True)
        return t.commit()
    c.step("multi", tx)
    c.step("children", lambda: sorted(zk.get_children(c.p())))
    c.step("eph", lambda: zk.exists(c.p("e-0000000002")))


@scenario
def multi_version_chain(c):
    zk = c.zk
    c.step("create", lambda: zk.create(c.p(), b"0"))
    def tx():
        t = zk.transaction()
        t.set_data(c.p(), b"1", version=0)
        t.set_data(c.p(), b"2", version=1)
        t.check(c.p(), 2)
        return t.commit()
    c.step("multi", tx)
    def tx_bad():
        t = zk.transaction()
        t.set_data(c.p(), b"3", version=2)
        t.set_data(c.p(), b"4", version=2)
        return t.commit()
    c.step("multi_bad", tx_bad)
    c.step("get", lambda: zk.get(c.p()))


@scenario
def sequential_shared_counter(c):
    zk = c.zk
    c.step("create", lambda: zk.create(c.p()))
    c.step("a", lambda: zk.create(c.p("a-"), sequence=True))
    c.step("b", lambda: zk.create(c.p("b-"), sequence=True))
    c.step("e", lambda: zk.create(c.p("a-"), sequence=True, ephemeral=True))
    c.step("plain_like_seq", lambda: zk.create(c.p("a-0000000005")))
    c.step("collide", lambda: zk.create(c.p("a-"), sequence=True))
    c.step("after_collide", lambda: zk.create(c.p("a-"), sequence=True))


@scenario
def ephemeral_other_owner_and_delete(c):
    zk = c.zk
    other = c.client("other")
    c.step("create", lambda: zk.create(c.p()))
    c.step("eph", lambda: other.create(c.p("e"), b"x", ephemeral=True))
    c.step("stat", lambda: zk.exists(c.p("e")))
    c.step("watch", lambda: other.get(c.p("e"), watch=c.watcher("other-data")))
    c.step("delete_by_main", lambda: zk.delete(c.p("e")))
    c.step("list", lambda: call(other, GetEphemerals(c.p())))


@scenario
def data_shapes(c):
    zk = c.zk
    c.step("create", lambda: zk.create(c.p()))
    c.step("binary", lambda: zk.create(c.p("bin"), bytes(range(256))))
    c.step("get_bin", lambda: zk.get(c.p("bin")))
    c.step("unicode", lambda: zk.create(c.p("ünï-cødé ✓"), "✓".encode()))
    c.step("children", lambda: sorted(zk.get_children(c.p())))
    c.step("get_uni", lambda: zk.get(c.p("ünï-cødé ✓")))
    c.step("dots_ok", lambda: zk.create(c.p("...")))
    c.step("ctrl_char", lambda: call(zk, Create2(c.p("a\u0001b"), b"", OPEN_ACL_UNSAFE, 0)))


@scenario
def all_children_number_nested(c):
    zk = c.zk
    c.step("tree", lambda: [zk.create(c.p(*x), makepath=True) for x in [("a",), ("a", "b"), ("a", "b", "c"), ("d",)]])
    c.step("count_root", lambda: call(zk, GetAllChildrenNumber(c.p())))
    c.step("count_a", lambda: call(zk, GetAllChildrenNumber(c.p("a"))))
    c.step("count_leaf", lambda: call(zk, GetAllChildrenNumber(c.p("d"))))


@scenario
def ip_acls(c):
    zk = c.zk
    c.step("local", lambda: zk.create(c.p(), b"x", acl=[make_acl("ip", "127.0.0.1", all=True)]))
    c.step("read_local", lambda: zk.get(c.p()))
    c.step("cidr", lambda: zk.create(c.p("n"), b"x", acl=[make_acl("ip", "127.0.0.0/8", read=True)]))
    c.step("read_cidr", lambda: zk.get(c.p("n")))
    c.step("write_cidr", lambda: zk.set(c.p("n"), b"y"))
    c.step("remote", lambda: zk.create(c.p("r"), b"x", acl=[make_acl("ip", "10.1.2.3", all=True)]))
    c.step("read_remote", lambda: zk.get(c.p("r")))
    c.step("bad_ip", lambda: zk.create(c.p("b"), b"x", acl=[make_acl("ip", "not-an-ip", all=True)]))
    c.step("bad_digest", lambda: zk.create(c.p("d"), b"x", acl=[make_acl("digest", "nocolon", all=True)]))
    c.step("unknown_scheme", lambda: zk.create(c.p("u"), b"x", acl=[make_acl("kerberos", "x", all=True)]))


@scenario
def delete_needs_parent_delete_perm(c):
    zk = c.zk
    c.step("create", lambda: zk.create(c.p()))
    c.step("child", lambda: zk.create(c.p("c")))
    c.step("restrict_parent", lambda: zk.set_acls(c.p(), [make_acl("world", "anyone", read=True, create=True, admin=True)]))
    c.step("delete_denied", lambda: zk.delete(c.p("c")))
    c.step("create_ok", lambda: zk.create(c.p("d")))
    c.step("get_acl", lambda: zk.get_acls(c.p()))
    c.step("open_again", lambda: zk.set_acls(c.p(), OPEN_ACL_UNSAFE))
    c.step("delete_ok", lambda: zk.delete(c.p("c")))


@scenario
def auth_scheme_acl(c):
    alice = c.client("alice", auth="alice:pw")
    c.step("create", lambda: alice.create(c.p(), acl=[make_acl("auth", "", read=True, write=True, admin=True)]))
    c.step("acl", lambda: alice.get_acls(c.p()))
    c.step("setacl_auth", lambda: alice.set_acls(c.p(), [make_acl("auth", "", all=True), make_acl("world", "anyone", read=True)]))
    c.step("acl2", lambda: alice.get_acls(c.p()))
    c.step("anon_read", lambda: c.zk.get(c.p()))
    c.step("anon_write", lambda: c.zk.set(c.p(), b"x"))
    c.step("anon_setacl", lambda: c.zk.set_acls(c.p(), OPEN_ACL_UNSAFE))


@scenario
def super_like_second_auth(c):
    # Two digest identities on one connection: either grants access.
    zk = c.zk
    both = c.client("both", auth="u1:p1")
    both.add_auth("digest", "u2:p2")
    c.step("create", lambda: zk.create(c.p(), acl=[make_digest_acl("u2", "p2", all=True)]))
    c.step("both_read", lambda: both.get(c.p()))
    c.step("anon_read", lambda: zk.get(c.p()))


@scenario
def reconnect_keeps_watches(c):
    from kazoo.protocol.connection import _CONNECTION_DROP
    zk = c.zk
    other = c.client("other")
    c.step("create", lambda: zk.create(c.p(), b"a"))
    c.step("watch", lambda: zk.get(c.p(), watch=c.watcher("data")))
    c.step("cwatch", lambda: zk.get_children(c.p(), watch=c.watcher("child")))
    c.step("ewatch", lambda: zk.exists(c.p("later"), watch=c.watcher("exists")))
    zk._queue.append((_CONNECTION_DROP, None))
    zk._connection._write_sock.send(b"\0")
    time.sleep(0.5)
    deadline = time.time() + 10
    while not zk.connected and time.time() < deadline:
        time.sleep(0.05)
    c.step("same_session", lambda: c.sessions.get(zk.client_id[0]))
    c.step("other_set", lambda: other.set(c.p(), b"b"))
    c.step("other_create", lambda: other.create(c.p("later")))


@scenario
def sync_and_reads(c):
    zk = c.zk
    other = c.client("other")
    c.step("create", lambda: other.create(c.p(), b"x"))
    c.step("sync", lambda: zk.sync(c.p()))
    c.step("read", lambda: zk.get(c.p()))
    c.step("sync_missing", lambda: zk.sync(c.p("none")))


@scenario
def version_after_many_sets(c):
    zk = c.zk
    c.step("create", lambda: zk.create(c.p()))
    for i in range(5):
        c.step("set%d" % i, lambda i=i: zk.set(c.p(), str(i).encode(), version=i))
    c.step("stale", lambda: zk.set(c.p(), b"x", version=3))
    c.step("delete_stale", lambda: zk.delete(c.p(), version=4))
    c.step("delete", lambda: zk.delete(c.p(), version=5))


@scenario
def children_of_ephemeral_and_missing(c):
    zk = c.zk
    c.step("eph", lambda: zk.create(c.p(), ephemeral=True))
    c.step("children", lambda: zk.get_children(c.p()))
    c.step("children2", lambda: zk.get_children(c.p(), include_data=True))
    c.step("child_watch_missing", lambda: zk.get_children(c.p("nope"), watch=c.watcher("never")))
    c.step("get_watch_missing", lambda: zk.get(c.p("nope"), watch=c.watcher("never2")))
    c.step("create_missing", lambda: zk.create(c.p("zz")))


@scenario
def ephemeral_sequential_many(c):
    zk = c.zk
    c.step("create", lambda: zk.create(c.p()))
    for i in range(4):
        c.step("e%d" % i, lambda: zk.create(c.p("lock-"), ephemeral=True, sequence=True))
    c.step("del_first", lambda: zk.delete(c.p("lock-0000000000")))
    c.step("e_next", lambda: zk.create(c.p("lock-"), ephemeral=True, sequence=True))
    c.step("children", lambda: sorted(zk.get_children(c.p())))
    c.step("ephemerals", lambda: call(zk, GetEphemerals(c.p())))

@scenario
def multi_core_error_before_acl_error(c):
    zk = c.zk
    c.step("create", lambda: zk.create(c.p()))
    c.step("ro", lambda: zk.create(c.p("ro"), acl=READ_ACL_UNSAFE))
    def tx():
        t = zk.transaction()
        t.create(c.p("new"))
        t.create(c.p())
        t.create(c.p("ro", "x"))
        t.create(c.p("other"))
        return t.commit()
    c.step("multi", tx)
    def tx2():
        t = zk.transaction()
        t.create(c.p("new"))
        t.create(c.p("ro", "x"))
        t.create(c.p())
        return t.commit()
    c.step("multi2", tx2)
    c.step("children", lambda: sorted(zk.get_children(c.p())))
    c.step("stat", lambda: zk.exists(c.p()))

# ---- persistent watches, watch management, multiRead, whoAmI, setWatches ----
# These record raw notifications (Ctx.raw_events) on the reader thread; kazoo
# callbacks run on another thread, so their watches get NOOP callbacks.


@scenario
def persistent_watch_fires_repeatedly(c):
    zk = c.zk
    w = c.client("watcher")
    c.raw_events(w, "w")
    c.step("create", lambda: zk.create(c.p(), b"a"))
    c.step("add", lambda: call(w, AddWatch(c.p(), 0)))
    c.step("set1", lambda: zk.set(c.p(), b"b"))
    c.step("set2", lambda: zk.set(c.p(), b"c"))
    c.step("child", lambda: zk.create(c.p("x")))
    c.step("grandchild", lambda: zk.create(c.p("x", "y")))
    c.step("del_grandchild", lambda: zk.delete(c.p("x", "y")))
    c.step("del_child", lambda: zk.delete(c.p("x")))
    c.step("delete", lambda: zk.delete(c.p()))
    c.step("recreate", lambda: zk.create(c.p()))
    c.step("sync", lambda: w.sync(c.p()))


@scenario
def persistent_recursive_watch(c):
    zk = c.zk
    w = c.client("watcher")
    c.raw_events(w, "w")
    c.step("create", lambda: zk.create(c.p()))
    c.step("add", lambda: call(w, AddWatch(c.p(), 1)))
    c.step("a", lambda: zk.create(c.p("a"), b"1"))
    c.step("ab", lambda: zk.create(c.p("a", "b")))
    c.step("set_ab", lambda: zk.set(c.p("a", "b"), b"2"))
    c.step("acl_ab", lambda: zk.set_acls(c.p("a", "b"), READ_ACL_UNSAFE))
    c.step("del_ab", lambda: zk.delete(c.p("a", "b")))
    c.step("set_root", lambda: zk.set(c.p(), b"r"))
    c.step("sibling", lambda: zk.create(c.p() + "-sibling"))
    c.step("sync", lambda: w.sync(c.p()))


@scenario
def persistent_watch_on_missing_node(c):
    zk = c.zk
    w = c.client("watcher")
    c.raw_events(w, "w")
    c.step("add", lambda: call(w, AddWatch(c.p(), 0)))
    c.step("add_rec", lambda: call(w, AddWatch(c.p("deep"), 1)))
    c.step("create", lambda: zk.create(c.p()))
    c.step("deep", lambda: zk.create(c.p("deep", "er"), makepath=True))
    c.step("check_data", lambda: call(w, CheckWatches(c.p(), 2)))
    c.step("check_child", lambda: call(w, CheckWatches(c.p(), 1)))
    c.step("check_any", lambda: call(w, CheckWatches(c.p("deep"), 3)))
    c.step("sync", lambda: w.sync(c.p()))


@scenario
def persistent_and_oneshot_on_one_path(c):
    zk = c.zk
    w = c.client("watcher")
    c.raw_events(w, "w")
    c.step("create", lambda: zk.create(c.p()))
    c.step("add", lambda: call(w, AddWatch(c.p(), 0)))
    c.step("get_watch", lambda: w.get(c.p(), watch=NOOP))
    c.step("child_watch", lambda: w.get_children(c.p(), watch=NOOP))
    c.step("set", lambda: zk.set(c.p(), b"x"))
    c.step("child", lambda: zk.create(c.p("k")))
    c.step("set_again", lambda: zk.set(c.p(), b"y"))
    c.step("sync", lambda: w.sync(c.p()))


@scenario
def recursive_watch_with_child_watch(c):
    zk = c.zk
    w = c.client("watcher")
    c.raw_events(w, "w")
    c.step("create", lambda: zk.create(c.p()))
    c.step("add_rec", lambda: call(w, AddWatch(c.p(), 1)))
    c.step("child_watch", lambda: w.get_children(c.p(), watch=NOOP))
    c.step("exists_watch", lambda: w.exists(c.p("n"), watch=NOOP))
    c.step("create_n", lambda: zk.create(c.p("n")))
    c.step("delete_n", lambda: zk.delete(c.p("n")))
    c.step("sync", lambda: w.sync(c.p()))


@scenario
def remove_watches_by_type(c):
    zk = c.zk
    w = c.client("watcher")
    c.raw_events(w, "w")
    c.step("create", lambda: zk.create(c.p()))
    c.step("get_watch", lambda: w.get(c.p(), watch=NOOP))
    c.step("child_watch", lambda: w.get_children(c.p(), watch=NOOP))
    c.step("check_data", lambda: call(w, CheckWatches(c.p(), 2)))
    c.step("remove_data", lambda: call(w, RemoveWatches(c.p(), 2)))
    c.step("remove_data_again", lambda: call(w, RemoveWatches(c.p(), 2)))
    c.step("check_data_gone", lambda: call(w, CheckWatches(c.p(), 2)))
    c.step("check_child", lambda: call(w, CheckWatches(c.p(), 1)))
    c.step("set", lambda: zk.set(c.p(), b"x"))
    c.step("remove_any", lambda: call(w, RemoveWatches(c.p(), 3)))
    c.step("child", lambda: zk.create(c.p("c")))
    c.step("remove_missing", lambda: call(w, RemoveWatches(c.p("nope"), 3)))
    c.step("sync", lambda: w.sync(c.p()))


@scenario
def remove_persistent_watches(c):
    zk = c.zk
    w = c.client("watcher")
    c.raw_events(w, "w")
    c.step("create", lambda: zk.create(c.p()))
    c.step("add", lambda: call(w, AddWatch(c.p(), 0)))
    c.step("add_rec", lambda: call(w, AddWatch(c.p("r"), 1)))
    c.step("check_data", lambda: call(w, CheckWatches(c.p(), 2)))
    c.step("check_child", lambda: call(w, CheckWatches(c.p(), 1)))
    c.step("remove_any", lambda: call(w, RemoveWatches(c.p(), 3)))
    c.step("set", lambda: zk.set(c.p(), b"x"))
    c.step("remove_rec_data", lambda: call(w, RemoveWatches(c.p("r"), 2)))
    c.step("create_r", lambda: zk.create(c.p("r")))
    c.step("remove_rec_any", lambda: call(w, RemoveWatches(c.p("r"), 3)))
    c.step("set_r", lambda: zk.set(c.p("r"), b"y"))
    c.step("sync", lambda: w.sync(c.p()))


@scenario
def watch_types_unknown(c):
    zk = c.zk
    c.step("create", lambda: zk.create(c.p()))
    c.step("bad_mode", lambda: call(zk, AddWatch(c.p(), 7)))
    c.step("still_works", lambda: zk.exists(c.p()))


@scenario
def multi_read_mixed(c):
    zk = c.zk
    c.step("create", lambda: zk.create(c.p(), b"root"))
    c.step("a", lambda: zk.create(c.p("a"), b"A"))
    c.step("b", lambda: zk.create(c.p("b")))
    c.step("read", lambda: call(zk, MultiRead([("get", c.p()), ("children", c.p()), ("get", c.p("a")),
                                               ("get", c.p("missing")), ("children", c.p("missing")),
                                               ("children", c.p("b"))])))
    c.step("empty", lambda: call(zk, MultiRead([])))


@scenario
def multi_read_acl(c):
    zk = c.zk
    c.step("create", lambda: zk.create(c.p()))
    c.step("secret", lambda: zk.create(c.p("s"), b"x", acl=[make_digest_acl("u", "p", all=True)]))
    c.step("open", lambda: zk.create(c.p("o"), b"y"))
    c.step("read", lambda: call(zk, MultiRead([("get", c.p("o")), ("get", c.p("s")), ("children", c.p("s")),
                                               ("get", c.p("o"))])))
    u = c.client("u", auth="u:p")
    c.step("read_auth", lambda: call(u, MultiRead([("get", c.p("s")), ("children", c.p("s"))])))


@scenario
def who_am_i(c):
    c.step("anon", lambda: call(c.zk, WhoAmI()))
    u = c.client("u", auth="alice:pw")
    c.step("digest", lambda: call(u, WhoAmI()))
    u.add_auth("digest", "bob:pw2")
    c.step("two", lambda: call(u, WhoAmI()))
    u.add_auth("digest", "alice:pw")
    c.step("repeat", lambda: call(u, WhoAmI()))


@scenario
def set_watches_replays_missed_changes(c):
    zk = c.zk
    w = c.client("watcher")
    c.raw_events(w, "w")
    c.step("create", lambda: zk.create(c.p(), b"a"))
    c.step("gone", lambda: zk.create(c.p("gone")))
    c.step("kids", lambda: zk.create(c.p("kids")))
    zxid = zk.exists(c.p("kids")).mzxid
    c.step("set", lambda: zk.set(c.p(), b"b"))
    c.step("del", lambda: zk.delete(c.p("gone")))
    c.step("kid", lambda: zk.create(c.p("kids", "k")))
    c.step("born", lambda: zk.create(c.p("born")))
    c.step("setwatches", lambda: call(w, SetWatches(
        zxid,
        [c.p(), c.p("gone"), c.p("kids")],
        [c.p("born"), c.p("never")],
        [c.p("kids"), c.p("gone"), c.p()])))
    c.step("sync", lambda: w.sync(c.p()))
    c.step("later_set", lambda: zk.set(c.p("kids"), b"z"))
    c.step("later_create", lambda: zk.create(c.p("never")))
    c.step("sync2", lambda: w.sync(c.p()))


@scenario
def set_watches2_persistent(c):
    zk = c.zk
    w = c.client("watcher")
    c.raw_events(w, "w")
    c.step("create", lambda: zk.create(c.p()))
    c.step("r", lambda: zk.create(c.p("r")))
    zxid = zk.exists(c.p("r")).czxid
    c.step("set", lambda: zk.set(c.p(), b"b"))
    c.step("setwatches2", lambda: call(w, SetWatches2(zxid, [], [], [], [c.p()], [c.p("r")])))
    c.step("sync", lambda: w.sync(c.p()))
    c.step("set_again", lambda: zk.set(c.p(), b"c"))
    c.step("child", lambda: zk.create(c.p("r", "x")))
    c.step("set_child", lambda: zk.set(c.p("r", "x"), b"d"))
    c.step("check", lambda: call(w, CheckWatches(c.p("r"), 3)))
    c.step("sync2", lambda: w.sync(c.p()))


@scenario
def zookeeper_system_nodes(c):
    zk = c.zk
    c.step("children", lambda: sorted(zk.get_children("/zookeeper")))
    # The config node's data and stat follow the membership (Janus always
    # has one; a standalone ZooKeeper has none): compare its ACL only.
    c.step("config_acl", lambda: zk.get_acls("/zookeeper/config")[0])
    c.step("quota_acl", lambda: zk.get_acls("/zookeeper/quota"))
    c.step("create_under", lambda: zk.create("/zookeeper/mine"))
    c.step("delete_quota", lambda: zk.delete("/zookeeper/quota"))
    c.step("set_config", lambda: zk.set("/zookeeper/config", b"x"))
    c.step("delete_root", lambda: zk.delete("/"))
    c.step("create_root", lambda: zk.create("/"))
    c.step("cleanup", lambda: zk.delete("/zookeeper/mine"))


def main():
    wanted = set(sys.argv[2:])
    results = {}
    for i, fn in enumerate(SCENARIOS):
        if wanted and fn.__name__ not in wanted:
            continue
        base = "/diff-%s" % fn.__name__
        try:
            c = Ctx(base)
            fn(c)
            results[fn.__name__] = c.finish()
        except Exception as e:
            results[fn.__name__] = {"crash": "%s: %s" % (type(e).__name__, e), "trace": traceback.format_exc()}
    json.dump(results, sys.stdout, indent=1, sort_keys=True)


if __name__ == "__main__":
    main()
