import java.io.IOException;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.Semaphore;
import java.util.concurrent.TimeUnit;
import java.util.function.Consumer;

import org.apache.zookeeper.AsyncCallback;
import org.apache.zookeeper.CreateMode;
import org.apache.zookeeper.KeeperException.Code;
import org.apache.zookeeper.Op;
import org.apache.zookeeper.OpResult;
import org.apache.zookeeper.WatchedEvent;
import org.apache.zookeeper.Watcher;
import org.apache.zookeeper.ZooDefs;
import org.apache.zookeeper.ZooKeeper;
import org.apache.zookeeper.data.Stat;

/** The session of a broker has expired: the broker must make a new one. */
final class Expired extends RuntimeException {
    Expired(String m) {
        super(m);
    }
}

/** Kafka's ControllerMovedException: a fenced write found a newer controller epoch. */
final class ControllerMoved extends RuntimeException {
    ControllerMoved(String m) {
        super(m);
    }
}

/**
 * The client's handle, opened up for one number: the zxid of the last reply
 * header (ClientCnxn.getLastZxid), which the client also sends when it
 * reconnects so that no server behind it takes the session.
 */
final class ZkHandle extends ZooKeeper {
    ZkHandle(String connect, int timeout, Watcher w) throws IOException {
        super(connect, timeout, w);
    }

    long lastZxid() {
        return cnxn.getLastZxid();
    }
}

/** One request, as Kafka's ZooKeeperClient models them (AsyncRequest). */
final class Req {
    enum Kind { GET_DATA, EXISTS, GET_CHILDREN, CREATE, SET_DATA, DELETE, MULTI, SYNC }

    final Kind kind;
    final String path;
    final byte[] data;
    final int version;
    final CreateMode mode;
    final boolean watch;
    final List<Op> ops;

    private Req(Kind kind, String path, byte[] data, int version, CreateMode mode, boolean watch, List<Op> ops) {
        this.kind = kind;
        this.path = path;
        this.data = data;
        this.version = version;
        this.mode = mode;
        this.watch = watch;
        this.ops = ops;
    }

    static Req getData(String p, boolean watch) {
        return new Req(Kind.GET_DATA, p, null, -1, null, watch, null);
    }

    static Req exists(String p, boolean watch) {
        return new Req(Kind.EXISTS, p, null, -1, null, watch, null);
    }

    static Req children(String p, boolean watch) {
        return new Req(Kind.GET_CHILDREN, p, null, -1, null, watch, null);
    }

    static Req create(String p, byte[] data, CreateMode mode) {
        return new Req(Kind.CREATE, p, data, -1, mode, false, null);
    }

    static Req setData(String p, byte[] data, int version) {
        return new Req(Kind.SET_DATA, p, data, version, null, false, null);
    }

    static Req delete(String p, int version) {
        return new Req(Kind.DELETE, p, null, version, null, false, null);
    }

    static Req sync(String p) {
        return new Req(Kind.SYNC, p, null, -1, null, false, null);
    }

    static Req multi(List<Op> ops) {
        return new Req(Kind.MULTI, null, null, -1, null, false, ops);
    }

    /** The same write as an op inside a multi (Kafka's wrapRequestWithControllerEpochCheck). */
    Op asOp() {
        return switch (kind) {
            case CREATE -> Op.create(path, data, ZooDefs.Ids.OPEN_ACL_UNSAFE, mode);
            case SET_DATA -> Op.setData(path, data, version);
            case DELETE -> Op.delete(path, version);
            default -> throw new IllegalArgumentException(kind + " cannot be fenced");
        };
    }

    @Override
    public String toString() {
        return kind + (path != null ? " " + path : " " + ops.size() + " ops");
    }
}

/** One response; `retried` says an earlier attempt was lost with the connection and may have been applied. */
final class Resp {
    Code code;
    byte[] data;
    Stat stat;
    List<String> children;
    String name;
    List<OpResult> results;
    boolean retried;

    boolean ok() {
        return code == Code.OK;
    }
}

/**
 * One ZooKeeper session (one handle) of a simulated broker, with the parts of
 * Kafka's ZooKeeperClient and KafkaZkClient the simulation uses. Every request
 * goes through the asynchronous API, pipelined up to Kafka's default
 * zookeeper.max.in.flight.requests (10), and is retried after a connection
 * loss once connected again (retryRequestsUntilConnected).
 *
 * The client delivers watch events and async callbacks on one thread in the
 * order the server sent them, so the callbacks can check ZooKeeper's
 * guarantees as they come: per-path zxids never go back within a session, and
 * a read never shows a change to a watched node before its notification.
 */
final class Conn implements Watcher {
    static final int SESSION_TIMEOUT_MS = 18000; // Kafka's zookeeper.session.timeout.ms default
    static final int MAX_IN_FLIGHT = 10; // zookeeper.max.in.flight.requests default
    static final long CONNECT_WAIT_MS = 120_000;

    final Broker owner; // null for the helper sessions
    final String name;
    volatile ZkHandle zk;
    volatile boolean expired;
    private final Semaphore inFlight = new Semaphore(MAX_IN_FLIGHT);

    // Touched on the client's event thread (watcher and callbacks), guarded by `this`.
    private final Map<String, long[]> seen = new HashMap<>(); // path -> {czxid, mzxid, pzxid}
    private final Map<String, Long> childArm = new HashMap<>(); // armed child watch -> pzxid read
    private final Map<String, List<Long>> dataArm = new HashMap<>(); // armed data watch -> {exists, czxid, mzxid}
    private long lastZxidSeen; // the session's reply-header zxid, sampled in answer order

    private Conn(Broker owner, String name) {
        this.owner = owner;
        this.name = name;
    }

    /** A new session, connected (Kafka retries creating the handle until it works). */
    static Conn open(Broker owner, String name) {
        return open(owner, name, Sim.connect);
    }

    static Conn open(Broker owner, String name, String connect) {
        while (true) {
            Conn c = new Conn(owner, name);
            try {
                c.zk = new ZkHandle(connect, SESSION_TIMEOUT_MS, c);
            } catch (IOException e) {
                Sim.log(name + ": cannot create a ZooKeeper handle: " + e);
                Sim.sleep(500);
                continue;
            }
            try {
                c.awaitConnected();
            } catch (Expired e) {
                continue;
            }
            Sim.log(name + ": session 0x" + Long.toHexString(c.zk.getSessionId()) + " (timeout "
                    + c.zk.getSessionTimeout() + " ms)");
            return c;
        }
    }

    long sessionId() {
        return zk.getSessionId();
    }

    void close() {
        try {
            zk.close();
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
    }

    @Override
    public void process(WatchedEvent e) {
        if (e.getType() == Event.EventType.None) {
            switch (e.getState()) {
                case SyncConnected -> Sim.count("sync_connected");
                case Disconnected -> {
                    Sim.count("disconnects");
                    Sim.log(name + ": disconnected");
                }
                case Expired -> {
                    expired = true;
                    Sim.count("expired_events");
                    Sim.log(name + ": session expired");
                    if (owner != null) {
                        owner.enqueue(Broker.Ev.expire(this));
                    }
                }
                default -> {}
            }
            synchronized (this) {
                notifyAll();
            }
            return;
        }
        Sim.count("watch_events");
        String p = e.getPath();
        synchronized (this) {
            switch (e.getType()) {
                case NodeChildrenChanged -> childArm.remove(p);
                case NodeDataChanged, NodeCreated -> dataArm.remove(p);
                case NodeDeleted -> {
                    childArm.remove(p);
                    dataArm.remove(p);
                }
                default -> {}
            }
        }
        if (owner != null) {
            owner.enqueue(Broker.Ev.watch(this, e.getType(), p));
        }
    }

    /** Kafka's waitUntilConnected: block while disconnected; an expired session ends the wait. */
    void awaitConnected() {
        long deadline = System.currentTimeMillis() + CONNECT_WAIT_MS;
        synchronized (this) {
            while (true) {
                ZooKeeper z = zk;
                ZooKeeper.States s = z.getState();
                if (expired || !s.isAlive()) {
                    throw new Expired(name + ": session expired");
                }
                if (s.isConnected()) {
                    return;
                }
                long left = deadline - System.currentTimeMillis();
                if (left <= 0) {
                    throw new IllegalStateException(name + ": not connected within " + CONNECT_WAIT_MS + " ms");
                }
                try {
                    wait(Math.min(left, 200));
                } catch (InterruptedException ie) {
                    Thread.currentThread().interrupt();
                    throw new IllegalStateException("interrupted");
                }
            }
        }
    }

    Resp send(Req r) {
        return sendAll(List.of(r)).get(0);
    }

    /**
     * ZooKeeper's sync: reads of this session after it see every write
     * committed before it, whichever session made it (without it a
     * follower may still be behind another session's write).
     */
    void sync() {
        Resp r = send(Req.sync("/"));
        if (!r.ok()) {
            throw new IllegalStateException(name + ": sync: " + r.code);
        }
    }

    /**
     * One attempt: a request lost with the connection comes back as
     * CONNECTIONLOSS (once connected again) for the caller to find out
     * whether it was applied before sending it again.
     */
    Resp sendOnce(Req r) {
        if (expired) {
            throw new Expired(name + ": session expired");
        }
        Resp[] got = new Resp[1];
        CountDownLatch latch = new CountDownLatch(1);
        try {
            inFlight.acquire();
            Sim.count("ops");
            submit(r, x -> {
                got[0] = x;
                inFlight.release();
                latch.countDown();
            });
            if (!latch.await(CONNECT_WAIT_MS + SESSION_TIMEOUT_MS, TimeUnit.MILLISECONDS)) {
                throw new IllegalStateException(name + ": no answer to " + r);
            }
        } catch (InterruptedException ie) {
            Thread.currentThread().interrupt();
            throw new IllegalStateException("interrupted");
        }
        Code c = got[0].code;
        if (c == Code.SESSIONEXPIRED) {
            expired = true;
            throw new Expired(name + ": session expired during " + r);
        }
        if (c == Code.CONNECTIONLOSS || c == Code.SESSIONMOVED) {
            Sim.count(c == Code.CONNECTIONLOSS ? "connection_loss_retries" : "session_moved_retries");
            Sim.count("retries");
            Sim.sleep(50);
            awaitConnected();
            got[0].code = Code.CONNECTIONLOSS;
        }
        return got[0];
    }

    /** Pipelined requests; those lost with the connection are sent again once connected. */
    List<Resp> sendAll(List<Req> reqs) {
        int n = reqs.size();
        Resp[] out = new Resp[n];
        boolean[] retried = new boolean[n];
        List<Integer> pending = new ArrayList<>();
        for (int i = 0; i < n; i++) {
            pending.add(i);
        }
        while (!pending.isEmpty()) {
            if (expired) {
                throw new Expired(name + ": session expired");
            }
            Resp[] got = new Resp[n];
            CountDownLatch latch = new CountDownLatch(pending.size());
            for (int i : pending) {
                try {
                    inFlight.acquire();
                } catch (InterruptedException ie) {
                    Thread.currentThread().interrupt();
                    throw new IllegalStateException("interrupted");
                }
                final int idx = i;
                Sim.count("ops");
                submit(reqs.get(i), r -> {
                    got[idx] = r;
                    inFlight.release();
                    latch.countDown();
                });
            }
            try {
                // The client answers every request (with CONNECTIONLOSS at worst);
                // the bound only turns a hang into an error.
                if (!latch.await(CONNECT_WAIT_MS + SESSION_TIMEOUT_MS, TimeUnit.MILLISECONDS)) {
                    throw new IllegalStateException(name + ": no answer to " + reqs);
                }
            } catch (InterruptedException ie) {
                Thread.currentThread().interrupt();
                throw new IllegalStateException("interrupted");
            }
            List<Integer> again = new ArrayList<>();
            for (int i : pending) {
                Code c = got[i].code;
                if (c == Code.CONNECTIONLOSS || c == Code.SESSIONMOVED) {
                    Sim.count(c == Code.CONNECTIONLOSS ? "connection_loss_retries" : "session_moved_retries");
                    Sim.count("retries");
                    again.add(i);
                    retried[i] = true;
                } else if (c == Code.SESSIONEXPIRED) {
                    expired = true;
                    throw new Expired(name + ": session expired during " + reqs.get(i));
                } else {
                    got[i].retried = retried[i];
                    out[i] = got[i];
                }
            }
            if (!again.isEmpty()) {
                Sim.log(name + ": " + again.size() + " request(s) lost with the connection, retrying");
                Sim.sleep(50);
                awaitConnected();
            }
            pending = again;
        }
        return Arrays.asList(out);
    }

    private void submit(Req r, Consumer<Resp> done) {
        ZooKeeper z = zk;
        switch (r.kind) {
            case GET_DATA -> z.getData(r.path, r.watch,
                    (AsyncCallback.DataCallback) (rc, p, ctx, data, stat) -> done.accept(finish(r, rc, data, stat, null, null, null)), null);
            case EXISTS -> z.exists(r.path, r.watch,
                    (AsyncCallback.StatCallback) (rc, p, ctx, stat) -> done.accept(finish(r, rc, null, stat, null, null, null)), null);
            case GET_CHILDREN -> z.getChildren(r.path, r.watch,
                    (AsyncCallback.Children2Callback) (rc, p, ctx, kids, stat) -> done.accept(finish(r, rc, null, stat, kids, null, null)), null);
            case CREATE -> z.create(r.path, r.data, ZooDefs.Ids.OPEN_ACL_UNSAFE, r.mode,
                    (AsyncCallback.StringCallback) (rc, p, ctx, nm) -> done.accept(finish(r, rc, null, null, null, nm, null)), null);
            case SET_DATA -> z.setData(r.path, r.data, r.version,
                    (AsyncCallback.StatCallback) (rc, p, ctx, stat) -> done.accept(finish(r, rc, null, stat, null, null, null)), null);
            case DELETE -> z.delete(r.path, r.version,
                    (AsyncCallback.VoidCallback) (rc, p, ctx) -> done.accept(finish(r, rc, null, null, null, null, null)), null);
            case SYNC -> z.sync(r.path,
                    (AsyncCallback.VoidCallback) (rc, p, ctx) -> done.accept(finish(r, rc, null, null, null, null, null)), null);
            case MULTI -> z.multi(r.ops,
                    (AsyncCallback.MultiCallback) (rc, p, ctx, res) -> done.accept(finish(r, rc, null, null, null, null, res)), null);
        }
    }

    /** Runs on the client's event thread, in the order the server answered. */
    private synchronized Resp finish(Req r, int rc, byte[] data, Stat stat, List<String> kids, String nm,
            List<OpResult> results) {
        Resp out = new Resp();
        out.code = Code.get(rc);
        out.data = data;
        out.stat = out.ok() ? stat : null;
        out.children = kids;
        out.name = nm;
        out.results = results;
        if (out.code == Code.CONNECTIONLOSS || out.code == Code.SESSIONMOVED || out.code == Code.SESSIONEXPIRED) {
            return out;
        }
        checkSessionZxid(r, out);
        if (out.stat != null) {
            checkZxids(r.path, out.stat);
        }
        if (r.kind == Req.Kind.MULTI) {
            checkMulti(r, out);
        }
        checkWatchOrder(r, out);
        return out;
    }

    /**
     * The session's zxid (of the last reply header, taken as each answer is
     * delivered) never goes back, over reconnections to other servers too,
     * and covers the zxid of each of its own writes.
     */
    private void checkSessionZxid(Req r, Resp out) {
        long z = zk.lastZxid();
        if (z < lastZxidSeen) {
            Sim.violation(name + ": the session's zxid went back from " + lastZxidSeen + " to " + z + " (" + r + ")");
        }
        lastZxidSeen = Math.max(lastZxidSeen, z);
        if (r.kind == Req.Kind.SET_DATA && out.ok() && z < out.stat.getMzxid()) {
            Sim.violation(name + ": " + r + " wrote at zxid " + out.stat.getMzxid() + " but the reply's zxid is " + z);
        }
    }

    /** A session never sees a node's czxid, mzxid or pzxid go back. */
    private void checkZxids(String path, Stat st) {
        long[] now = {st.getCzxid(), st.getMzxid(), st.getPzxid()};
        long[] was = seen.get(path);
        if (was != null && (now[0] < was[0] || now[1] < was[1] || now[2] < was[2])) {
            Sim.violation(name + ": zxids of " + path + " went back: czxid/mzxid/pzxid " + Arrays.toString(was)
                    + " then " + Arrays.toString(now));
        }
        if (was == null) {
            seen.put(path, now);
        } else {
            seen.put(path, new long[] {Math.max(now[0], was[0]), Math.max(now[1], was[1]), Math.max(now[2], was[2])});
        }
    }

    /**
     * A multi's results: on success one result per op (SetData with its stat,
     * all ops one transaction so one zxid); on failure ZooKeeper's layout:
     * ops before the failed one OK (0), the failed one its error (the
     * request's code), the ones after RUNTIMEINCONSISTENCY.
     */
    private void checkMulti(Req r, Resp out) {
        List<OpResult> res = out.results;
        if (res == null) {
            Sim.violation(name + ": multi answered " + out.code + " without results");
            return;
        }
        if (res.size() != r.ops.size()) {
            Sim.violation(name + ": multi of " + r.ops.size() + " ops answered " + res.size() + " results");
            return;
        }
        if (out.ok()) {
            long zxid = -1;
            for (int i = 0; i < res.size(); i++) {
                OpResult o = res.get(i);
                if (o instanceof OpResult.ErrorResult) {
                    Sim.violation(name + ": successful multi has an error result at " + i);
                }
                if (o instanceof OpResult.SetDataResult s) {
                    checkZxids(r.ops.get(i).getPath(), s.getStat());
                    if (zxid >= 0 && s.getStat().getMzxid() != zxid) {
                        Sim.violation(name + ": one multi wrote two zxids");
                    }
                    zxid = s.getStat().getMzxid();
                }
            }
            return;
        }
        int failed = -1;
        for (int i = 0; i < res.size(); i++) {
            if (!(res.get(i) instanceof OpResult.ErrorResult e)) {
                Sim.violation(name + ": failed multi (" + out.code + ") has a non-error result at " + i);
                return;
            }
            int err = e.getErr();
            if (failed < 0) {
                if (err == 0) {
                    continue;
                }
                failed = i;
                if (err != out.code.intValue()) {
                    Sim.violation(name + ": failed multi: first error " + err + " but the request failed with " + out.code);
                }
            } else if (err != Code.RUNTIMEINCONSISTENCY.intValue()) {
                Sim.violation(name + ": failed multi: result " + i + " after the failed op is " + err
                        + ", not RUNTIMEINCONSISTENCY");
            }
        }
        if (failed < 0) {
            Sim.violation(name + ": failed multi (" + out.code + ") has no error result");
        }
    }

    /**
     * ZooKeeper sends a watch's notification before any answer that shows the
     * change, so while a watch is armed (not yet fired) every read of that
     * node must show what the arming read showed.
     */
    private void checkWatchOrder(Req r, Resp out) {
        List<Long> dataNow = null;
        if (r.kind == Req.Kind.GET_DATA || r.kind == Req.Kind.EXISTS) {
            dataNow = out.ok() ? List.of(1L, out.stat.getCzxid(), out.stat.getMzxid()) : List.of(0L, 0L, 0L);
            List<Long> armed = dataArm.get(r.path);
            if (armed != null && (out.ok() || out.code == Code.NONODE)) {
                Sim.count("watch_checks");
                if (!armed.equals(dataNow)) {
                    Sim.violation(name + ": " + r + " showed a change (" + armed + " -> " + dataNow
                            + ") before the data watch's notification");
                }
            }
        }
        if (r.kind == Req.Kind.GET_CHILDREN && (out.ok() || out.code == Code.NONODE)) {
            Long armed = childArm.get(r.path);
            long now = out.ok() ? out.stat.getPzxid() : -1;
            if (armed != null) {
                Sim.count("watch_checks");
                if (armed != now) {
                    Sim.violation(name + ": " + r + " showed a change (pzxid " + armed + " -> " + now
                            + ") before the child watch's notification");
                }
            }
        }
        if (!r.watch) {
            return;
        }
        // What the server leaves armed: exists always; getData and getChildren only on an existing node.
        if (r.kind == Req.Kind.EXISTS && (out.ok() || out.code == Code.NONODE)) {
            dataArm.put(r.path, dataNow);
        } else if (r.kind == Req.Kind.GET_DATA && out.ok()) {
            dataArm.put(r.path, dataNow);
        } else if (r.kind == Req.Kind.GET_CHILDREN && out.ok()) {
            childArm.put(r.path, out.stat.getPzxid());
        }
    }

    // ---- KafkaZkClient -------------------------------------------------

    static final Map<String, Object> NO_CONFIG = Map.of();

    /** Kafka's createRecursive; NodeExists with our own data counts as success (a retried create). */
    Code createRecursive(String path, byte[] data, boolean throwIfPathExists) {
        Resp r = send(Req.create(path, data, CreateMode.PERSISTENT));
        if (r.code == Code.NONODE) {
            createParents(parent(path));
            r = send(Req.create(path, data, CreateMode.PERSISTENT));
        }
        if (r.code == Code.NODEEXISTS) {
            if (!throwIfPathExists) {
                return Code.OK;
            }
            Resp g = send(Req.getData(path, false));
            if (g.ok() && Arrays.equals(nullToEmpty(g.data), nullToEmpty(data))) {
                if (r.retried) {
                    Sim.count("uncertain_creates_resolved");
                }
                return Code.OK;
            }
            return Code.NODEEXISTS;
        }
        if (!r.ok()) {
            throw new IllegalStateException(name + ": create " + path + ": " + r.code);
        }
        return Code.OK;
    }

    private void createParents(String path) {
        if (path.isEmpty()) {
            return;
        }
        Resp r = send(Req.create(path, null, CreateMode.PERSISTENT));
        if (r.code == Code.NONODE) {
            createParents(parent(path));
            r = send(Req.create(path, null, CreateMode.PERSISTENT));
        }
        if (!r.ok() && r.code != Code.NODEEXISTS) {
            throw new IllegalStateException(name + ": create " + path + ": " + r.code);
        }
    }

    static String parent(String path) {
        int i = path.lastIndexOf('/');
        return path.substring(0, i);
    }

    static byte[] nullToEmpty(byte[] b) {
        return b == null ? new byte[0] : b;
    }

    void makeSurePersistentPathExists(String path) {
        createRecursive(path, null, false);
    }

    /** Kafka's PersistentZkPaths (ZkData) plus /config/<type> for every ConfigType. */
    static final List<String> PERSISTENT_PATHS = List.of("/consumers", "/brokers/ids", "/brokers/topics",
            "/config/changes", "/admin/delete_topics", "/brokers/seqid", "/isr_change_notification",
            "/latest_producer_id_block", "/log_dir_event_notification", "/config/topics", "/config/clients",
            "/config/users", "/config/brokers", "/config/ips");

    void createTopLevelPaths() {
        for (String p : PERSISTENT_PATHS) {
            makeSurePersistentPathExists(p);
        }
    }

    /** Kafka's createOrGetClusterId. */
    String createOrGetClusterId(String proposed) {
        byte[] data = Json.bytes(Json.obj("version", "1", "id", proposed));
        if (createRecursive("/cluster/id", data, true) == Code.OK) {
            return proposed;
        }
        Resp g = send(Req.getData("/cluster/id", false));
        if (!g.ok()) {
            throw new IllegalStateException("/cluster/id: " + g.code);
        }
        return (String) Json.asObj(Json.parse(g.data)).get("id");
    }

    /** Kafka's CheckedEphemeral.create: multi [create EPHEMERAL null, setData(data, 0)]. */
    Stat checkedEphemeralCreate(String path, byte[] data, long previousSessionId) {
        while (true) {
            Resp m = send(Req.multi(List.of(Op.create(path, null, ZooDefs.Ids.OPEN_ACL_UNSAFE, CreateMode.EPHEMERAL),
                    Op.setData(path, data, 0))));
            if (m.ok()) {
                return ((OpResult.SetDataResult) m.results.get(1)).getStat();
            }
            if (m.code != Code.NODEEXISTS) {
                throw new IllegalStateException(name + ": registering " + path + ": " + m.code);
            }
            // getAfterNodeExists
            Resp g = send(Req.getData(path, false));
            if (g.code == Code.NONODE) {
                continue;
            }
            if (!g.ok()) {
                throw new IllegalStateException(name + ": reading " + path + ": " + g.code);
            }
            long owner = g.stat.getEphemeralOwner();
            if (owner == sessionId()) {
                if (m.retried) {
                    Sim.count("uncertain_creates_resolved");
                }
                return g.stat;
            }
            if (owner == previousSessionId) {
                // KAFKA-7165: the ephemeral of our expired session is still there: delete and create again.
                Sim.log(name + ": " + path + " still owned by the previous session, re-creating");
                Resp d = send(Req.delete(path, -1));
                if (!d.ok() && d.code != Code.NONODE) {
                    throw new IllegalStateException(name + ": deleting " + path + ": " + d.code);
                }
                continue;
            }
            throw new IllegalStateException(name + ": " + path + " exists, owned by session 0x"
                    + Long.toHexString(owner) + ", not ours 0x" + Long.toHexString(sessionId()));
        }
    }

    /**
     * Controller writes wrapped as multi [check(/controller_epoch, version), op]
     * (Kafka's retryRequestsUntilConnected with expectedControllerZkVersion);
     * returns each op's own outcome, or throws ControllerMoved.
     */
    List<Resp> fenced(List<Req> reqs, int epochZkVersion) {
        List<Req> multis = new ArrayList<>();
        for (Req r : reqs) {
            multis.add(Req.multi(List.of(Op.check("/controller_epoch", epochZkVersion), r.asOp())));
        }
        List<Resp> got = sendAll(multis);
        List<Resp> out = new ArrayList<>();
        for (int i = 0; i < reqs.size(); i++) {
            Resp m = got.get(i);
            if (m.results == null || m.results.size() != 2) {
                throw new IllegalStateException(name + ": fenced " + reqs.get(i) + ": " + m.code);
            }
            OpResult check = m.results.get(0);
            if (check instanceof OpResult.ErrorResult e && e.getErr() == Code.BADVERSION.intValue()) {
                throw new ControllerMoved("controller epoch zkVersion check failed, expected " + epochZkVersion);
            }
            Resp r = new Resp();
            r.code = m.code;
            r.retried = m.retried;
            if (m.results.get(1) instanceof OpResult.SetDataResult s) {
                r.stat = s.getStat();
            }
            if (m.results.get(1) instanceof OpResult.CreateResult c) {
                r.name = c.getPath();
            }
            out.add(r);
        }
        return out;
    }

    /** A fenced setData whose first attempt may have been applied: our data at version+1 is success. */
    Resp resolveSetData(Resp r, String path, byte[] data, int version) {
        if (r.code != Code.BADVERSION || !r.retried) {
            return r;
        }
        Resp g = send(Req.getData(path, false));
        if (g.ok() && g.stat.getVersion() == version + 1 && Arrays.equals(g.data, data)) {
            Sim.count("uncertain_writes_resolved");
            Resp ok = new Resp();
            ok.code = Code.OK;
            ok.stat = g.stat;
            return ok;
        }
        return r;
    }

    /** Kafka's deleteRecursive, each delete fenced. */
    void deleteRecursive(String path, int epochZkVersion) {
        Resp k = send(Req.children(path, false));
        if (k.code == Code.NONODE) {
            return;
        }
        if (!k.ok()) {
            throw new IllegalStateException(name + ": children of " + path + ": " + k.code);
        }
        for (String c : k.children) {
            deleteRecursive(path + "/" + c, epochZkVersion);
        }
        Resp d = fenced(List.of(Req.delete(path, -1)), epochZkVersion).get(0);
        if (!d.ok() && d.code != Code.NONODE) {
            throw new IllegalStateException(name + ": delete " + path + ": " + d.code);
        }
    }

    /** Kafka's createSequentialPersistentPath: a retry after a lost connection may leave an extra node. */
    String createSequential(String prefix, byte[] data) {
        Resp r = send(Req.create(prefix, data, CreateMode.PERSISTENT_SEQUENTIAL));
        if (!r.ok()) {
            throw new IllegalStateException(name + ": create " + prefix + ": " + r.code);
        }
        if (r.retried) {
            Sim.count("sequential_creates_retried");
        }
        return r.name;
    }

    /**
     * Kafka's setOrCreateEntityConfigs with the controller check: multi
     * [check(/controller, its version), setData(config, -1)], creating the
     * node when it is missing.
     */
    void setOrCreateEntityConfigs(String type, String entity, byte[] data) {
        Resp c = send(Req.getData("/controller", false));
        if (c.code == Code.NONODE) {
            throw new ControllerMoved("no controller while setting configs of " + type + "/" + entity);
        }
        if (!c.ok()) {
            throw new IllegalStateException("/controller: " + c.code);
        }
        String path = "/config/" + type + "/" + entity;
        Op check = Op.check("/controller", c.stat.getVersion());
        while (true) {
            // setData(-1) is not idempotent (each one bumps the version):
            // after a lost attempt, look before sending it again.
            Resp m = sendOnce(Req.multi(List.of(check, Op.setData(path, data, -1))));
            if (m.code == Code.CONNECTIONLOSS) {
                Resp g = send(Req.getData(path, false));
                if (g.ok() && Arrays.equals(g.data, data)) {
                    Sim.count("uncertain_writes_resolved");
                    return;
                }
                continue;
            }
            if (m.results != null && m.results.get(0) instanceof OpResult.ErrorResult e && e.getErr() != 0) {
                throw new ControllerMoved("/controller changed while setting configs: " + Code.get(e.getErr()));
            }
            if (m.ok()) {
                return;
            }
            if (m.code != Code.NONODE) {
                throw new IllegalStateException(name + ": set " + path + ": " + m.code);
            }
            if (createRecursive(path, data, true) == Code.OK) {
                return;
            }
            // Created meanwhile by someone else: set it (next turn).
        }
    }

    /** Kafka's createConfigChangeNotification. */
    String createConfigChangeNotification(String entityPath) {
        makeSurePersistentPathExists("/config/changes");
        return createSequential("/config/changes/config_change_",
                Json.bytes(Json.obj("version", 2, "entity_path", entityPath)));
    }
}
