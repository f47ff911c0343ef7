"""kazoo's recipes against one server; prints a JSON record of what each
recipe did. tests/zk_diff.rs compares the record from real ZooKeeper with
the one from Janus.

usage: zk_recipes.py HOST:PORT
"""

import json
import sys
import threading
import time
import traceback

from kazoo.client import KazooClient
from kazoo.exceptions import LockTimeout
from kazoo.recipe.barrier import Barrier, DoubleBarrier
from kazoo.recipe.cache import TreeCache, TreeEvent
from kazoo.recipe.counter import Counter
from kazoo.recipe.election import Election
from kazoo.recipe.lock import Lock, Semaphore, ReadLock, WriteLock
from kazoo.recipe.party import Party, ShallowParty
from kazoo.recipe.queue import Queue, LockingQueue
from kazoo.recipe.watchers import ChildrenWatch, DataWatch

HOSTS = sys.argv[1]


def client():
    zk = KazooClient(hosts=HOSTS, timeout=10)
    zk.start(timeout=15)
    return zk


def try_acquire(l, timeout):
    try:
        return l.acquire(timeout=timeout)
    except LockTimeout:
        return False


def lock(a, b):
    order = []
    la, lb = Lock(a, "/r/lock", "a"), Lock(b, "/r/lock", "b")
    la.acquire(timeout=5)
    order.append("a")
    got = threading.Event()

    def take_b():
        lb.acquire(timeout=10)
        order.append("b")
        got.set()

    t = threading.Thread(target=take_b)
    t.start()
    time.sleep(0.3)
    contenders = la.contenders()
    blocked = not got.is_set()
    la.release()
    got.wait(10)
    lb.release()
    t.join(10)
    return {"order": order, "contenders": contenders, "b_waited": blocked, "left": sorted(a.get_children("/r/lock"))}


def rwlock(a, b):
    r1, r2 = ReadLock(a, "/r/rw", "r1"), ReadLock(b, "/r/rw", "r2")
    ok1 = r1.acquire(timeout=5)
    ok2 = r2.acquire(timeout=5)
    w = WriteLock(a, "/r/rw", "w")
    blocked = not try_acquire(w, 0.5)
    r1.release()
    r2.release()
    ok_w = w.acquire(timeout=5)
    w.release()
    return [ok1, ok2, blocked, ok_w]


def election(a, b):
    winners = []
    done = threading.Event()
    ea, eb = Election(a, "/r/election", "a"), Election(b, "/r/election", "b")

    def lead_a():
        winners.append("a")
        time.sleep(0.3)

    def lead_b():
        winners.append("b")
        done.set()

    ta = threading.Thread(target=ea.run, args=(lead_a,))
    ta.start()
    time.sleep(0.1)
    tb = threading.Thread(target=eb.run, args=(lead_b,))
    tb.start()
    done.wait(10)
    ta.join(10)
    tb.join(10)
    return winners


def counter(a, b):
    ca, cb = Counter(a, "/r/counter"), Counter(b, "/r/counter", default=0)
    ca += 5
    cb -= 2
    ca += 10
    f = Counter(a, "/r/fcounter", default=1.5)
    f += 2.25
    return [ca.value, cb.value, f.value]


def barrier(a, b):
    bar = Barrier(a, "/r/barrier")
    bar.create()
    passed = []

    def wait_b():
        passed.append(Barrier(b, "/r/barrier").wait(timeout=10))

    t = threading.Thread(target=wait_b)
    t.start()
    time.sleep(0.3)
    before = list(passed)
    bar.remove()
    t.join(10)
    return {"before": before, "after": passed}


def double_barrier(a, b):
    out = []
    da, db = DoubleBarrier(a, "/r/dbar", 2), DoubleBarrier(b, "/r/dbar", 2)

    def run(d, name):
        d.enter()
        out.append("in-" + name)
        d.leave()
        out.append("out-" + name)

    ts = [threading.Thread(target=run, args=(d, n)) for d, n in [(da, "a"), (db, "b")]]
    for t in ts:
        t.start()
    for t in ts:
        t.join(15)
    return sorted(out)


def queue(a, b):
    q = Queue(a, "/r/queue")
    for i, p in [(b"low", 200), (b"high", 10), (b"mid", 100), (b"mid2", 100)]:
        q.put(i, priority=p)
    n = len(q)
    got = [Queue(b, "/r/queue").get() for _ in range(4)]
    return {"len": n, "got": [g.decode() for g in got], "empty": Queue(b, "/r/queue").get()}


def locking_queue(a, b):
    q = LockingQueue(a, "/r/lq")
    q.put_all([b"x", b"y"])
    qb = LockingQueue(b, "/r/lq")
    first = qb.get(timeout=5)
    consumed = qb.consume()
    second = qb.get(timeout=5)
    qb.release()
    again = LockingQueue(a, "/r/lq").get(timeout=5)
    return [first.decode(), consumed, second.decode(), again.decode(), len(q)]


def party(a, b):
    pa, pb = Party(a, "/r/party", "a"), Party(b, "/r/party", "b")
    pa.join()
    pb.join()
    members = sorted(pa)
    n = len(pb)
    pa.leave()
    sa = ShallowParty(a, "/r/sparty", "s")
    sa.join()
    return {"members": members, "n": n, "after": sorted(pb), "shallow": sorted(sa)}


def semaphore(a, b):
    s1, s2 = Semaphore(a, "/r/sem", "one", max_leases=1), Semaphore(b, "/r/sem", "two", max_leases=1)
    ok1 = s1.acquire(timeout=5)
    ok2 = try_acquire(s2, 0.5)
    holders = s1.lease_holders()
    s1.release()
    ok3 = s2.acquire(timeout=5)
    s2.release()
    return [ok1, ok2, holders, ok3]


def tree_cache(a, b):
    events = []
    lock = threading.Lock()
    b.ensure_path("/r/tree/x")
    cache = TreeCache(a, "/r/tree")

    def listen(ev):
        with lock:
            if ev.event_data is not None:
                events.append([ev.event_type, ev.event_data.path])
            else:
                events.append([ev.event_type, None])

    cache.listen(listen)
    cache.start()
    time.sleep(0.5)
    # Pause between changes: the cache re-reads after each event, and a
    # change it has not re-read yet can be folded into the next one.
    b.create("/r/tree/x/y", b"1")
    time.sleep(0.4)
    b.set("/r/tree/x", b"2")
    time.sleep(0.4)
    b.delete("/r/tree/x/y")
    time.sleep(0.8)
    children = sorted(cache.get_children("/r/tree") or [])
    data = cache.get_data("/r/tree/x")
    cache.close()
    with lock:
        ev = list(events)
    # INITIALIZED may interleave with the initial NODE_ADDED events.
    initial = sorted(e for e in ev[:3])
    # Later events come from the cache's background reads: their order is
    # the client's, not the server's.
    return {"initial": initial, "later": sorted(ev[3:]), "children": children, "x": data.data.decode() if data else None}


def watchers(a, b):
    seen = []
    b.ensure_path("/r/w")

    @ChildrenWatch(a, "/r/w")
    def kids(children):
        seen.append(["children", sorted(children)])

    @DataWatch(a, "/r/w")
    def data(d, stat):
        seen.append(["data", d.decode() if d is not None else None, stat.version if stat else None])

    time.sleep(0.3)
    b.create("/r/w/k")
    time.sleep(0.3)
    b.set("/r/w", b"v")
    time.sleep(0.5)
    return seen


RECIPES = [lock, rwlock, election, counter, barrier, double_barrier, queue, locking_queue, party, semaphore, tree_cache, watchers]


def main():
    out = {}
    a, b = client(), client()
    a.ensure_path("/r")
    for fn in RECIPES:
        try:
            out[fn.__name__] = fn(a, b)
        except Exception as e:
            out[fn.__name__] = {"crash": "%s: %s" % (type(e).__name__, e), "trace": traceback.format_exc()}
    for zk in (a, b):
        zk.stop()
        zk.close()
    json.dump(out, sys.stdout, indent=1, sort_keys=True, default=str)


if __name__ == "__main__":
    main()
