import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeMap;
import java.util.TreeSet;
import java.util.concurrent.Callable;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.function.BiFunction;

import org.apache.zookeeper.CreateMode;
import org.apache.zookeeper.KeeperException.Code;
import org.apache.zookeeper.Op;
import org.apache.zookeeper.OpResult;
import org.apache.zookeeper.Watcher.Event.EventType;
import org.apache.zookeeper.ZooDefs;
import org.apache.zookeeper.data.Stat;

/** A partition's state znode (TopicPartitionStateZNode) with its zkVersion (the partition epoch). */
final class PState {
    final int leader;
    final int leaderEpoch;
    final int controllerEpoch;
    final List<Integer> isr;
    final int zkVersion;

    PState(int leader, int leaderEpoch, int controllerEpoch, List<Integer> isr, int zkVersion) {
        this.leader = leader;
        this.leaderEpoch = leaderEpoch;
        this.controllerEpoch = controllerEpoch;
        this.isr = List.copyOf(isr);
        this.zkVersion = zkVersion;
    }

    byte[] encode() {
        return Json.bytes(Json.obj("controller_epoch", controllerEpoch, "leader", leader, "version", 1,
                "leader_epoch", leaderEpoch, "isr", isr));
    }

    static PState decode(byte[] data, Stat stat) {
        Map<String, Object> m = Json.asObj(Json.parse(data));
        return new PState(Json.asInt(m.get("leader")), Json.asInt(m.get("leader_epoch")),
                Json.asInt(m.get("controller_epoch")), Json.asIntList(m.get("isr")), stat.getVersion());
    }

    static String path(String key) {
        String[] tp = key.split("/");
        return "/brokers/topics/" + tp[0] + "/partitions/" + tp[1] + "/state";
    }
}

/**
 * One simulated Kafka broker: its ZooKeeper session, its registration, the
 * controller (KafkaController's ZooKeeper side, single event thread as in
 * Kafka) and the dynamic config listener (ZkNodeChangeNotificationListener on
 * /config/changes). The partition-leader and admin operations are called
 * from the driver's thread on this broker's session, as Kafka's request
 * handler threads share the broker's KafkaZkClient.
 */
final class Broker {
    /** An event on the broker's single event thread (Kafka's ControllerEventManager queue). */
    record Ev(int kind, Conn conn, EventType type, String path, Runnable call) {
        static final int STARTUP = 0, EXPIRE = 1, WATCH = 2, CALL = 3;

        static Ev expire(Conn c) {
            return new Ev(EXPIRE, c, null, null, null);
        }

        static Ev watch(Conn c, EventType t, String p) {
            return new Ev(WATCH, c, t, p, null);
        }
    }

    /** Thrown when the driver asks a broker that is not (or no longer) the controller / the leader. */
    static final class NotNow extends RuntimeException {
        NotNow(String m) {
            super(m);
        }
    }

    /** The controller's view (ControllerContext), touched only on the event thread. */
    static final class Ctx {
        final Map<Integer, Long> liveBrokers = new TreeMap<>();
        final Set<String> allTopics = new TreeSet<>();
        final Map<String, Map<Integer, List<Integer>>> assignment = new TreeMap<>();
        final Map<String, PState> states = new TreeMap<>();
        final Set<String> processedIsrNotifications = new HashSet<>();
        final Set<String> deletedTopics = new TreeSet<>();
    }

    final int id;
    volatile Conn conn;
    volatile long brokerEpoch = -1;
    volatile long previousSessionId = 0;
    final List<Long> epochs = new ArrayList<>();
    volatile String clusterId;
    volatile boolean started;
    private final LinkedBlockingQueue<Ev> queue = new LinkedBlockingQueue<>();
    private final Thread thread;

    // Controller state. activeControllerId and ctrlEpoch are read by the driver.
    volatile int activeControllerId = -1;
    volatile int ctrlEpoch = -1;
    private int epochZkVersion = -1;
    private Ctx ctx;

    // Config listener: what the broker applied per topic ("" = no config node).
    private volatile long lastExecutedChange = -1;
    private final Map<String, String> appliedConfigs = new TreeMap<>();

    Broker(int id) {
        this.id = id;
        this.thread = new Thread(this::run, "broker-" + id);
        this.thread.setDaemon(true);
    }

    void start() {
        thread.start();
        enqueue(new Ev(Ev.STARTUP, null, null, null, null));
    }

    void enqueue(Ev e) {
        queue.add(e);
    }

    boolean isActive() {
        return activeControllerId == id;
    }

    /** Run `c` on the event thread (after everything queued before it); the future has its result. */
    <T> CompletableFuture<T> call(Callable<T> c) {
        CompletableFuture<T> f = new CompletableFuture<>();
        enqueue(new Ev(Ev.CALL, null, null, null, () -> {
            try {
                f.complete(c.call());
            } catch (Expired | ControllerMoved e) {
                f.completeExceptionally(e);
                throw e;
            } catch (Exception e) {
                f.completeExceptionally(e);
            }
        }));
        return f;
    }

    private void run() {
        while (true) {
            Ev ev;
            try {
                ev = queue.take();
            } catch (InterruptedException e) {
                return;
            }
            if (Sim.stopping) {
                return;
            }
            try {
                handle(ev);
            } catch (Expired e) {
                // The Expired event is queued by the watcher; the next EXPIRE makes a new session.
                Sim.log("broker " + id + ": " + e.getMessage());
            } catch (ControllerMoved e) {
                // KafkaController.process: on ControllerMovedException, maybeResign.
                Sim.log("broker " + id + ": controller moved: " + e.getMessage());
                try {
                    maybeResign();
                } catch (Expired x) {
                    Sim.log("broker " + id + ": " + x.getMessage());
                } catch (RuntimeException x) {
                    Sim.error("broker " + id + ": maybeResign", x);
                }
            } catch (RuntimeException e) {
                Sim.error("broker " + id + ": event " + ev.kind() + " " + ev.path(), e);
            }
        }
    }

    private void handle(Ev ev) {
        switch (ev.kind()) {
            case Ev.STARTUP -> startup();
            case Ev.EXPIRE -> {
                if (ev.conn() == conn) {
                    reinitialize();
                }
            }
            case Ev.WATCH -> {
                // Events of an expired session's handle are dropped (Kafka clears its queue).
                if (ev.conn() == conn) {
                    onWatch(ev.type(), ev.path());
                }
            }
            case Ev.CALL -> ev.call().run();
            default -> throw new IllegalStateException("event " + ev.kind());
        }
    }

    // ---- lifecycle -----------------------------------------------------

    /** KafkaServer.startup: paths, cluster id, registration, controller, config manager. */
    private void startup() {
        conn = Conn.open(this, "broker-" + id);
        conn.createTopLevelPaths();
        clusterId = conn.createOrGetClusterId(Sim.newId());
        registerBroker();
        // KafkaController.processStartup
        conn.send(Req.exists("/controller", true));
        elect();
        processConfigNotifications();
        started = true;
    }

    /**
     * ZooKeeperClient.reinitialize after Expired: the controller resigns
     * (Expire), a new session is made, then RegisterBrokerAndReelect and the
     * config listener's re-read run on it.
     */
    private void reinitialize() {
        Sim.count("session_reinitializations");
        activeControllerId = -1;
        onControllerResignation();
        Conn old = conn;
        previousSessionId = old.sessionId();
        old.close();
        conn = Conn.open(this, "broker-" + id);
        registerBroker();
        maybeResign();
        elect();
        processConfigNotifications();
    }

    /** KafkaZkClient.registerBroker: the czxid of the registration is the broker epoch. */
    private void registerBroker() {
        Map<String, Object> json = Json.obj("features", Map.of(), "listener_security_protocol_map",
                Json.obj("PLAINTEXT", "PLAINTEXT"), "endpoints", List.of("PLAINTEXT://localhost:" + (9091 + id)),
                "jmx_port", -1, "port", 9091 + id, "host", "localhost", "version", 5, "timestamp",
                Long.toString(System.currentTimeMillis()));
        Stat st = conn.checkedEphemeralCreate("/brokers/ids/" + id, Json.bytes(json), previousSessionId);
        long epoch = st.getCzxid();
        if (brokerEpoch >= 0 && epoch <= brokerEpoch) {
            Sim.violation("broker " + id + " re-registered with epoch (czxid) " + epoch + " <= previous " + brokerEpoch);
        }
        if (st.getEphemeralOwner() != conn.sessionId()) {
            Sim.violation("broker " + id + ": registration owned by 0x" + Long.toHexString(st.getEphemeralOwner())
                    + ", not our session 0x" + Long.toHexString(conn.sessionId()));
        }
        synchronized (epochs) {
            epochs.add(epoch);
        }
        brokerEpoch = epoch;
        Sim.count("broker_registrations");
        Sim.log("broker " + id + " registered, broker epoch " + epoch);
    }

    // ---- controller election (KafkaController / KafkaZkClient) ----------

    private int getControllerId() {
        // The /controller handler is registered, so Kafka's read sets a data watch.
        Resp r = conn.send(Req.getData("/controller", true));
        if (r.code == Code.NONODE) {
            return -1;
        }
        if (!r.ok()) {
            throw new IllegalStateException("/controller: " + r.code);
        }
        return Json.asInt(Json.asObj(Json.parse(r.data)).get("brokerid"));
    }

    private void elect() {
        activeControllerId = getControllerId();
        if (activeControllerId != -1) {
            return;
        }
        int[] won;
        try {
            won = registerControllerAndIncrementControllerEpoch();
        } catch (ControllerMoved e) {
            maybeResign();
            return;
        }
        activeControllerId = id;
        ctrlEpoch = won[0];
        epochZkVersion = won[1];
        Sim.log("broker " + id + " elected controller, epoch " + won[0] + ", epoch zkVersion " + won[1]);
        onControllerFailover();
    }

    /** Returns {epoch, epoch zkVersion}; throws ControllerMoved when another broker won. */
    private int[] registerControllerAndIncrementControllerEpoch() {
        long timestamp = System.currentTimeMillis();
        int cur;
        int curVersion;
        Resp e = conn.send(Req.getData("/controller_epoch", false));
        if (e.ok()) {
            cur = Integer.parseInt(new String(e.data));
            curVersion = e.stat.getVersion();
            Sim.sawControllerEpoch(this, cur);
        } else {
            // maybeCreateControllerEpochZNode: KafkaController.InitialControllerEpoch = 0
            Resp c = conn.send(Req.create("/controller_epoch", "0".getBytes(), CreateMode.PERSISTENT));
            if (c.ok() || (c.retried && c.code == Code.NODEEXISTS)) {
                cur = 0;
                curVersion = 0;
            } else if (c.code == Code.NODEEXISTS) {
                Resp again = conn.send(Req.getData("/controller_epoch", false));
                cur = Integer.parseInt(new String(again.data));
                curVersion = again.stat.getVersion();
            } else {
                throw new IllegalStateException("/controller_epoch: " + c.code);
            }
        }
        int newEpoch = cur + 1;
        byte[] controllerJson = Json.bytes(Json.obj("version", 2, "brokerid", id, "timestamp",
                Long.toString(timestamp), "kraftControllerEpoch", -1));
        Resp m = conn.send(Req.multi(List.of(
                Op.create("/controller", controllerJson, ZooDefs.Ids.OPEN_ACL_UNSAFE, CreateMode.EPHEMERAL),
                Op.setData("/controller_epoch", Integer.toString(newEpoch).getBytes(), curVersion))));
        if (m.ok()) {
            Stat st = ((OpResult.SetDataResult) m.results.get(1)).getStat();
            Sim.elected(this, newEpoch, st.getMzxid());
            return new int[] {newEpoch, st.getVersion()};
        }
        if (m.code != Code.NODEEXISTS && m.code != Code.BADVERSION) {
            throw new IllegalStateException("controller election: " + m.code);
        }
        // checkControllerAndEpoch: did our own (retried) election win after all?
        if (getControllerId() == id) {
            Resp now = conn.send(Req.getData("/controller_epoch", false));
            if (now.ok() && Integer.parseInt(new String(now.data)) == newEpoch) {
                Sim.count("uncertain_elections_resolved");
                Sim.elected(this, newEpoch, now.stat.getMzxid());
                return new int[] {newEpoch, now.stat.getVersion()};
            }
        }
        throw new ControllerMoved("broker " + id + " lost the election for epoch " + newEpoch);
    }

    private void maybeResign() {
        boolean wasActive = isActive();
        conn.send(Req.exists("/controller", true));
        activeControllerId = getControllerId();
        if (wasActive && !isActive()) {
            Sim.log("broker " + id + " resigns as controller of epoch " + ctrlEpoch);
            onControllerResignation();
        }
    }

    private void onControllerResignation() {
        ctx = null;
        ctrlEpoch = -1;
        epochZkVersion = -1;
    }

    /** KafkaController.onControllerFailover, the ZooKeeper part. */
    private void onControllerFailover() {
        ctx = new Ctx();
        // Child watches are armed by the reads below (handlers registered first, as Kafka does).
        deleteNotifications("/log_dir_event_notification");
        deleteNotifications("/isr_change_notification");
        conn.send(Req.exists("/admin/preferred_replica_election", true));
        conn.send(Req.exists("/admin/reassign_partitions", true));
        // initializeControllerContext
        ctx.liveBrokers.putAll(readBrokers());
        Resp t = conn.send(Req.children("/brokers/topics", true));
        ctx.allTopics.addAll(t.children);
        readAssignments(ctx.allTopics);
        List<String> keys = new ArrayList<>();
        for (String topic : ctx.allTopics) {
            for (int p : ctx.assignment.get(topic).keySet()) {
                keys.add(topic + "/" + p);
            }
        }
        refreshStates(keys);
        // PartitionStateMachine.startup: NewPartition -> Online, Offline -> Online.
        List<String> missing = new ArrayList<>();
        for (String k : keys) {
            if (!ctx.states.containsKey(k)) {
                missing.add(k);
            }
        }
        onNewPartitionCreation(missing);
        electOfflineLeaders();
        // Topic deletions in progress.
        processTopicDeletion();
    }

    /**
     * A new controller deletes pending notifications unread: it reads every
     * partition state afresh anyway. For the driver they count as handled.
     */
    private void deleteNotifications(String parent) {
        Resp k = conn.send(Req.children(parent, true));
        if (!k.ok()) {
            return;
        }
        List<Req> dels = new ArrayList<>();
        for (String c : k.children) {
            dels.add(Req.delete(parent + "/" + c, -1));
        }
        conn.fenced(dels, epochZkVersion);
        ctx.processedIsrNotifications.addAll(k.children);
    }

    /** getAllBrokerAndEpochsInCluster: ids (child watch) and each registration's czxid. */
    private Map<Integer, Long> readBrokers() {
        Resp k = conn.send(Req.children("/brokers/ids", true));
        List<Req> reads = new ArrayList<>();
        List<Integer> ids = new ArrayList<>();
        for (String c : k.children) {
            ids.add(Integer.parseInt(c));
            // BrokerModificationsHandler is registered per broker: the read watches.
            reads.add(Req.getData("/brokers/ids/" + c, true));
        }
        List<Resp> got = conn.sendAll(reads);
        Map<Integer, Long> out = new TreeMap<>();
        for (int i = 0; i < ids.size(); i++) {
            if (got.get(i).ok()) {
                out.put(ids.get(i), got.get(i).stat.getCzxid());
            }
        }
        return out;
    }

    private void readAssignments(Set<String> topics) {
        List<String> names = new ArrayList<>(topics);
        List<Req> reads = new ArrayList<>();
        for (String t : names) {
            // PartitionModificationsHandler per topic: the read watches.
            reads.add(Req.getData("/brokers/topics/" + t, true));
        }
        List<Resp> got = conn.sendAll(reads);
        for (int i = 0; i < names.size(); i++) {
            Resp r = got.get(i);
            if (!r.ok()) {
                continue;
            }
            Map<String, Object> parts = Json.asObj(Json.asObj(Json.parse(r.data)).get("partitions"));
            Map<Integer, List<Integer>> a = new TreeMap<>();
            for (Map.Entry<String, Object> e : parts.entrySet()) {
                a.put(Integer.parseInt(e.getKey()), Json.asIntList(e.getValue()));
            }
            ctx.assignment.put(names.get(i), a);
        }
    }

    /** getTopicPartitionStatesRaw into the cache. */
    private void refreshStates(List<String> keys) {
        List<Req> reads = new ArrayList<>();
        for (String k : keys) {
            reads.add(Req.getData(PState.path(k), false));
        }
        List<Resp> got = conn.sendAll(reads);
        for (int i = 0; i < keys.size(); i++) {
            Resp r = got.get(i);
            if (r.ok()) {
                ctx.states.put(keys.get(i), PState.decode(r.data, r.stat));
            } else {
                ctx.states.remove(keys.get(i));
            }
        }
    }

    private List<Integer> liveReplicas(String key) {
        String[] tp = key.split("/");
        List<Integer> out = new ArrayList<>();
        for (int b : ctx.assignment.get(tp[0]).get(Integer.parseInt(tp[1]))) {
            if (ctx.liveBrokers.containsKey(b)) {
                out.add(b);
            }
        }
        return out;
    }

    /** NewPartition -> OnlinePartition: createTopicPartitionStatesRaw, each create fenced. */
    private void onNewPartitionCreation(List<String> keys) {
        if (keys.isEmpty()) {
            return;
        }
        Set<String> topics = new TreeSet<>();
        for (String k : keys) {
            topics.add(k.split("/")[0]);
        }
        List<Req> dirs = new ArrayList<>();
        for (String t : topics) {
            dirs.add(Req.create("/brokers/topics/" + t + "/partitions", null, CreateMode.PERSISTENT));
        }
        conn.fenced(dirs, epochZkVersion);
        List<Req> parts = new ArrayList<>();
        for (String k : keys) {
            parts.add(Req.create(Conn.parent(PState.path(k)), null, CreateMode.PERSISTENT));
        }
        conn.fenced(parts, epochZkVersion);
        List<Req> creates = new ArrayList<>();
        List<String> made = new ArrayList<>();
        List<PState> init = new ArrayList<>();
        for (String k : keys) {
            List<Integer> live = liveReplicas(k);
            if (live.isEmpty()) {
                Sim.log("controller " + id + ": no live replica for " + k);
                continue;
            }
            PState st = new PState(live.get(0), 0, ctrlEpoch, live, 0);
            creates.add(Req.create(PState.path(k), st.encode(), CreateMode.PERSISTENT));
            made.add(k);
            init.add(st);
        }
        List<Resp> got = conn.fenced(creates, epochZkVersion);
        List<String> reread = new ArrayList<>();
        for (int i = 0; i < made.size(); i++) {
            Resp r = got.get(i);
            if (r.ok()) {
                ctx.states.put(made.get(i), init.get(i));
            } else if (r.code == Code.NODEEXISTS) {
                reread.add(made.get(i)); // ours from a lost attempt, or an earlier controller's
            } else {
                throw new IllegalStateException("create state of " + made.get(i) + ": " + r.code);
            }
        }
        refreshStates(reread);
    }

    /**
     * Kafka's updateLeaderAndIsr loop: conditional setData on each state
     * znode with the cached zkVersion inside the fenced multi; BADVERSION
     * means someone else (a partition leader) wrote it: re-read and retry.
     */
    private void updatePartitions(List<String> keys, BiFunction<String, PState, PState> change) {
        List<String> remaining = new ArrayList<>(keys);
        while (!remaining.isEmpty()) {
            List<Req> writes = new ArrayList<>();
            List<String> wk = new ArrayList<>();
            List<PState> next = new ArrayList<>();
            for (String k : remaining) {
                PState cur = ctx.states.get(k);
                if (cur == null) {
                    continue;
                }
                PState nw = change.apply(k, cur);
                if (nw == null) {
                    continue;
                }
                writes.add(Req.setData(PState.path(k), nw.encode(), cur.zkVersion));
                wk.add(k);
                next.add(nw);
            }
            List<Resp> got = conn.fenced(writes, epochZkVersion);
            List<String> retry = new ArrayList<>();
            for (int i = 0; i < wk.size(); i++) {
                Resp r = conn.resolveSetData(got.get(i), writes.get(i).path, writes.get(i).data,
                        writes.get(i).version);
                if (r.ok()) {
                    PState nw = next.get(i);
                    ctx.states.put(wk.get(i), new PState(nw.leader, nw.leaderEpoch, nw.controllerEpoch, nw.isr,
                            r.stat.getVersion()));
                    Sim.controllerWrote(this, ctrlEpoch, r.stat.getMzxid(), writes.get(i).path);
                } else if (r.code == Code.BADVERSION) {
                    Sim.count("partition_state_races");
                    retry.add(wk.get(i));
                } else {
                    throw new IllegalStateException("update " + wk.get(i) + ": " + r.code);
                }
            }
            refreshStates(retry);
            remaining = retry;
        }
    }

    private int pickLeader(String key, List<Integer> isr) {
        for (int b : liveReplicas(key)) {
            if (isr.contains(b)) {
                return b;
            }
        }
        return -1;
    }

    /**
     * onBrokerFailure (the failed brokers are no longer live in the cache):
     * partitions they led elect a new leader among the live ISR replicas
     * (OfflinePartition -> OnlinePartition), then the failed replicas leave
     * the ISRs (OfflineReplica: removeReplicasFromIsr, leader -1 if it led).
     */
    private void onBrokerFailure(Set<Integer> failed) {
        electOfflineLeaders();
        List<String> keys = new ArrayList<>(ctx.states.keySet());
        updatePartitions(keys, (k, st) -> {
            List<Integer> isr = new ArrayList<>(st.isr);
            isr.removeAll(failed);
            if (isr.isEmpty()) {
                isr = new ArrayList<>(st.isr); // Kafka keeps the last ISR member
            }
            if (isr.equals(st.isr) && !failed.contains(st.leader)) {
                return null;
            }
            int leader = failed.contains(st.leader) ? -1 : st.leader;
            return new PState(leader, st.leaderEpoch + 1, ctrlEpoch, isr, st.zkVersion);
        });
    }

    /** OfflinePartition -> OnlinePartition: the first live ISR replica in assignment order leads. */
    private void electOfflineLeaders() {
        List<String> keys = new ArrayList<>();
        for (Map.Entry<String, PState> e : ctx.states.entrySet()) {
            int l = e.getValue().leader;
            if (l == -1 || !ctx.liveBrokers.containsKey(l)) {
                keys.add(e.getKey());
            }
        }
        updatePartitions(keys, (k, st) -> {
            if (st.leader != -1 && ctx.liveBrokers.containsKey(st.leader)) {
                return null;
            }
            int leader = pickLeader(k, st.isr);
            if (leader == -1) {
                return null; // unclean election is off: stays offline
            }
            List<Integer> isr = new ArrayList<>();
            for (int b : st.isr) {
                if (ctx.liveBrokers.containsKey(b)) {
                    isr.add(b);
                }
            }
            return new PState(leader, st.leaderEpoch + 1, ctrlEpoch, isr, st.zkVersion);
        });
    }

    // ---- watch handlers ------------------------------------------------

    private void onWatch(EventType type, String path) {
        switch (path) {
            case "/controller" -> {
                // ControllerChangeHandler: created/changed -> ControllerChange, deleted -> Reelect
                maybeResign();
                if (type == EventType.NodeDeleted) {
                    elect();
                }
                return;
            }
            case "/config/changes" -> {
                processConfigNotifications();
                return;
            }
            default -> {}
        }
        if (!isActive()) {
            return; // the controller's handlers are unregistered on resignation
        }
        switch (path) {
            case "/brokers/ids" -> processBrokerChange();
            case "/brokers/topics" -> processTopicChange();
            case "/admin/delete_topics" -> processTopicDeletion();
            case "/isr_change_notification" -> processIsrChangeNotification();
            case "/log_dir_event_notification" -> deleteNotifications("/log_dir_event_notification");
            case "/admin/preferred_replica_election", "/admin/reassign_partitions" ->
                conn.send(Req.exists(path, true));
            default -> {
                if (path.startsWith("/brokers/ids/") && type == EventType.NodeDataChanged) {
                    conn.send(Req.getData(path, true)); // processBrokerModification
                } else if (path.startsWith("/brokers/topics/") && type == EventType.NodeDataChanged) {
                    readAssignments(Set.of(path.substring("/brokers/topics/".length())));
                } else if (!(type == EventType.NodeDeleted
                        && (path.startsWith("/brokers/topics/") || path.startsWith("/brokers/ids/")))) {
                    Sim.log("controller " + id + ": unexpected watch event " + type + " " + path);
                    Sim.count("unexpected_watch_events");
                }
            }
        }
    }

    /** KafkaController.processBrokerChange. */
    private void processBrokerChange() {
        Map<Integer, Long> cur = readBrokers();
        Set<Integer> failed = new TreeSet<>();
        Set<Integer> started = new TreeSet<>();
        for (Map.Entry<Integer, Long> e : ctx.liveBrokers.entrySet()) {
            Long now = cur.get(e.getKey());
            if (now == null) {
                failed.add(e.getKey());
            } else if (now < e.getValue()) {
                Sim.violation("controller " + id + ": broker " + e.getKey() + "'s epoch went back from "
                        + e.getValue() + " to " + now);
            } else if (now > e.getValue()) {
                failed.add(e.getKey()); // bounced: failure then startup
                started.add(e.getKey());
            }
        }
        for (int b : cur.keySet()) {
            if (!ctx.liveBrokers.containsKey(b)) {
                started.add(b);
            }
        }
        Sim.log("controller " + id + ": brokers " + cur.keySet() + " (failed " + failed + ", started " + started + ")");
        // Bounced brokers are handled as failed first, then as started (Kafka removes and re-adds them).
        ctx.liveBrokers.clear();
        ctx.liveBrokers.putAll(cur);
        ctx.liveBrokers.keySet().removeAll(failed);
        if (!failed.isEmpty()) {
            onBrokerFailure(failed);
        }
        ctx.liveBrokers.putAll(cur);
        if (!started.isEmpty()) {
            electOfflineLeaders(); // onBrokerStartup
        }
    }

    /** KafkaController.processTopicChange. */
    private void processTopicChange() {
        Resp k = conn.send(Req.children("/brokers/topics", true));
        Set<String> topics = new TreeSet<>(k.children);
        Set<String> added = new TreeSet<>(topics);
        added.removeAll(ctx.allTopics);
        Set<String> gone = new TreeSet<>(ctx.allTopics);
        gone.removeAll(topics);
        for (String t : gone) {
            forgetTopic(t);
        }
        ctx.allTopics.clear();
        ctx.allTopics.addAll(topics);
        readAssignments(added);
        List<String> keys = new ArrayList<>();
        for (String t : added) {
            Map<Integer, List<Integer>> a = ctx.assignment.get(t);
            if (a == null) {
                continue; // deleted again meanwhile
            }
            for (int p : a.keySet()) {
                keys.add(t + "/" + p);
            }
        }
        onNewPartitionCreation(keys);
    }

    private void forgetTopic(String t) {
        ctx.allTopics.remove(t);
        ctx.assignment.remove(t);
        ctx.states.keySet().removeIf(k -> k.startsWith(t + "/"));
    }

    /** KafkaController.processTopicDeletion and TopicDeletionManager.completeDeleteTopic. */
    private void processTopicDeletion() {
        Resp k = conn.send(Req.children("/admin/delete_topics", true));
        if (!k.ok()) {
            return;
        }
        for (String t : new TreeSet<>(k.children)) {
            if (ctx.allTopics.contains(t)) {
                // No replicas to stop in a simulation: the deletion completes at once.
                conn.deleteRecursive("/brokers/topics/" + t, epochZkVersion);
                Resp c = conn.fenced(List.of(Req.delete("/config/topics/" + t, -1)), epochZkVersion).get(0);
                if (!c.ok() && c.code != Code.NONODE) {
                    throw new IllegalStateException("delete config of " + t + ": " + c.code);
                }
                forgetTopic(t);
                ctx.deletedTopics.add(t);
                Sim.log("controller " + id + ": deleted topic " + t);
            } else {
                Sim.log("controller " + id + ": ignoring deletion of unknown topic " + t);
            }
            Resp d = conn.fenced(List.of(Req.delete("/admin/delete_topics/" + t, -1)), epochZkVersion).get(0);
            if (!d.ok() && d.code != Code.NONODE) {
                throw new IllegalStateException("delete marker of " + t + ": " + d.code);
            }
        }
    }

    /** KafkaController.processIsrChangeNotification. */
    private void processIsrChangeNotification() {
        Resp k = conn.send(Req.children("/isr_change_notification", true));
        if (!k.ok() || k.children.isEmpty()) {
            return;
        }
        List<String> names = new ArrayList<>(k.children);
        List<Req> reads = new ArrayList<>();
        for (String n : names) {
            reads.add(Req.getData("/isr_change_notification/" + n, false));
        }
        Set<String> keys = new TreeSet<>();
        for (Resp r : conn.sendAll(reads)) {
            if (!r.ok()) {
                continue;
            }
            for (Object o : Json.asList(Json.asObj(Json.parse(r.data)).get("partitions"))) {
                Map<String, Object> tp = Json.asObj(o);
                String key = tp.get("topic") + "/" + tp.get("partition");
                if (ctx.states.containsKey(key)) {
                    keys.add(key);
                }
            }
        }
        refreshStates(new ArrayList<>(keys)); // updateLeaderAndIsrCache
        List<Req> dels = new ArrayList<>();
        for (String n : names) {
            dels.add(Req.delete("/isr_change_notification/" + n, -1));
        }
        conn.fenced(dels, epochZkVersion);
        ctx.processedIsrNotifications.addAll(names);
        Sim.count("isr_notifications_processed", names.size());
    }

    /** ZkNodeChangeNotificationListener.processNotifications on /config/changes (every broker). */
    private void processConfigNotifications() {
        Resp k = conn.send(Req.children("/config/changes", true));
        if (!k.ok()) {
            return;
        }
        List<String> names = new ArrayList<>(k.children);
        names.sort(null);
        long now = System.currentTimeMillis();
        for (String n : names) {
            long seq = Long.parseLong(n.substring("config_change_".length()));
            if (seq <= lastExecutedChange) {
                continue;
            }
            Resp d = conn.send(Req.getData("/config/changes/" + n, false));
            if (d.ok()) {
                String entity = (String) Json.asObj(Json.parse(d.data)).get("entity_path");
                if (entity.startsWith("topics/")) {
                    String topic = entity.substring("topics/".length());
                    Resp c = conn.send(Req.getData("/config/topics/" + topic, false));
                    synchronized (appliedConfigs) {
                        appliedConfigs.put(topic, c.ok() ? Json.encode(Json.asObj(Json.parse(c.data)).get("config")) : "");
                    }
                }
                Sim.count("config_notifications_processed");
            }
            lastExecutedChange = seq;
        }
        // purgeObsoleteNotifications: changes older than 15 minutes (changeExpirationMs) go.
        List<Req> reads = new ArrayList<>();
        for (String n : names) {
            reads.add(Req.getData("/config/changes/" + n, false));
        }
        List<Resp> got = conn.sendAll(reads);
        for (int i = 0; i < names.size(); i++) {
            Resp r = got.get(i);
            if (r.ok() && now - r.stat.getCtime() > 15 * 60_000L) {
                conn.send(Req.delete("/config/changes/" + names.get(i), -1));
            }
        }
    }

    // ---- driver requests: the controller -------------------------------

    private void requireController() {
        if (!isActive() || ctx == null) {
            throw new NotNow("broker " + id + " is not the controller");
        }
    }

    /** A copy of the controller's view for the driver; null when not the controller. */
    CompletableFuture<Map<String, Object>> view() {
        return call(() -> {
            if (!isActive() || ctx == null) {
                return null;
            }
            Map<String, Object> v = new TreeMap<>();
            v.put("epoch", ctrlEpoch);
            v.put("live", new TreeMap<>(ctx.liveBrokers));
            v.put("topics", new TreeSet<>(ctx.allTopics));
            v.put("states", new TreeMap<>(ctx.states));
            v.put("assignment", new TreeMap<>(ctx.assignment));
            v.put("isr_processed", new HashSet<>(ctx.processedIsrNotifications));
            v.put("deleted", new TreeSet<>(ctx.deletedTopics));
            return v;
        });
    }

    /**
     * A leader change by the controller (as for a preferred or reassignment
     * election): leader `target`, leader epoch above `fromLeaderEpoch`,
     * written conditioned on the cached zkVersion inside the fenced multi.
     * Already done when the state shows it (a retried request). Then, if
     * asked, a fenced write with the stale zkVersion before, which must fail
     * with BADVERSION. Returns {zkVersion after, 1 if that was checked}.
     */
    CompletableFuture<int[]> electLeader(String key, int target, int fromLeaderEpoch, boolean checkStale) {
        return call(() -> {
            requireController();
            refreshStates(List.of(key));
            PState cur = ctx.states.get(key);
            if (cur == null) {
                throw new NotNow("no state for " + key);
            }
            int before = cur.zkVersion;
            if (cur.leader != target || cur.leaderEpoch <= fromLeaderEpoch) {
                updatePartitions(List.of(key), (k, st) -> new PState(target, st.leaderEpoch + 1, ctrlEpoch, st.isr, st.zkVersion));
            }
            PState now = ctx.states.get(key);
            int checked = 0;
            if (checkStale) {
                Resp r = conn.fenced(List.of(Req.setData(PState.path(key), now.encode(), now.zkVersion - 1)),
                        epochZkVersion).get(0);
                staleWriteOutcome("controller " + id, key, r);
                checked = 1;
            }
            Sim.log("controller " + id + ": " + key + " leader " + cur.leader + " -> " + target + " (zkVersion "
                    + before + " -> " + now.zkVersion + ")");
            return new int[] {now.zkVersion, checked};
        });
    }

    static void staleWriteOutcome(String who, String key, Resp r) {
        if (r.ok()) {
            Sim.violation(who + ": a write of " + key + " with a stale zkVersion was accepted");
        } else if (r.code != Code.BADVERSION) {
            Sim.violation(who + ": a write of " + key + " with a stale zkVersion failed with " + r.code
                    + ", not BADVERSION");
        } else {
            Sim.count("stale_writes_rejected");
        }
    }

    // ---- driver requests: the partition leader (driver's thread) --------

    /** What a partition leader's ISR change did: the notification's name and the zkVersion after. */
    record IsrChange(String notification, int zkVersion) {}

    /**
     * The partition leader changes the ISR of `key` to `target` with a
     * conditional setData on the state znode (version = the one it read;
     * BADVERSION: the controller wrote meanwhile, read again), checks that
     * the zkVersion before its write is now refused with BADVERSION, then
     * announces the change with an /isr_change_notification sequential node
     * (Kafka's ZooKeeper ISR propagation). A state that already shows
     * `target` past `fromVersion` is taken as this change done by an earlier,
     * interrupted attempt.
     */
    IsrChange changeIsr(String key, List<Integer> target, int fromVersion, boolean checkStale) {
        String path = PState.path(key);
        Conn c = conn;
        PState done = null;
        while (done == null) {
            Resp g = c.send(Req.getData(path, false));
            if (!g.ok()) {
                throw new NotNow(key + " has no state");
            }
            PState st = PState.decode(g.data, g.stat);
            if (st.leader != id) {
                throw new NotNow("broker " + id + " does not lead " + key + " (leader " + st.leader + ")");
            }
            if (st.isr.equals(target) && st.zkVersion > fromVersion) {
                done = st;
                break;
            }
            PState nw = new PState(st.leader, st.leaderEpoch, st.controllerEpoch, target, st.zkVersion);
            Resp w = c.resolveSetData(c.send(Req.setData(path, nw.encode(), st.zkVersion)), path, nw.encode(),
                    st.zkVersion);
            if (w.code == Code.BADVERSION) {
                Sim.count("partition_state_races");
                continue;
            }
            if (!w.ok()) {
                throw new IllegalStateException("ISR change of " + key + ": " + w.code);
            }
            done = new PState(nw.leader, nw.leaderEpoch, nw.controllerEpoch, nw.isr, w.stat.getVersion());
        }
        if (checkStale) {
            staleWriteOutcome("broker " + id, key, c.send(Req.setData(path, done.encode(), done.zkVersion - 1)));
        }
        String[] tp = key.split("/");
        String name = c.createSequential("/isr_change_notification/isr_change_",
                Json.bytes(Json.obj("version", 1, "partitions",
                        List.of(Json.obj("topic", tp[0], "partition", Integer.parseInt(tp[1]))))));
        return new IsrChange(name.substring(name.lastIndexOf('/') + 1), done.zkVersion);
    }

    String appliedConfig(String topic) {
        synchronized (appliedConfigs) {
            return appliedConfigs.get(topic);
        }
    }

    long lastExecutedChange() {
        return lastExecutedChange;
    }

    static String key(String topic, int p) {
        return topic + "/" + p;
    }

    static boolean same(byte[] a, byte[] b) {
        return Arrays.equals(a, b);
    }
}
