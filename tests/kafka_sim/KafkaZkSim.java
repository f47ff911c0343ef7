import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeMap;
import java.util.TreeSet;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import java.util.function.Supplier;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

import org.apache.zookeeper.KeeperException.Code;
import org.apache.zookeeper.Watcher;
import org.apache.zookeeper.ZooKeeper;

/**
 * Kafka 3.x's ZooKeeper traffic through the real Java ZooKeeper client:
 * several brokers in one JVM, each with its own session, registering,
 * electing a controller, creating and deleting topics, changing ISRs and
 * configs, one broker's session expired midway; a fixed script (so runs are
 * comparable) checked by invariants as it runs.
 *
 * Usage: KafkaZkSim --connect host:port,...[/chroot] [--brokers 3] [--topics 4]
 *        [--partitions 3] [--rounds 24] [--pace-ms 250] [--summary FILE]
 *
 * Prints `PROGRESS <done> <total>` per step, then one JSON object: a
 * "deterministic" part (equal between servers for the same arguments) and an
 * "observed" part (timing-dependent). Exit 0 iff no invariant was violated.
 * The script expects an empty namespace: a fresh server, or a new chroot
 * (as in Kafka's zookeeper.connect) per run.
 */
public final class KafkaZkSim {
    static final long WAIT_MS = 90_000; // for a reaction that needs a watch notification
    static final long STEP_RETRY_MS = 120_000;

    final int nBrokers;
    final int nTopics;
    final int nPartitions;
    final int rounds;
    final long paceMs;
    final Broker[] brokers;
    final List<String> live = new ArrayList<>(); // topics in creation order
    final Map<String, Map<Integer, List<Integer>>> assignments = new TreeMap<>();
    int nextTopic;
    int done;
    final int total;

    // The deterministic tallies, one per completed step.
    int topicsCreated;
    int topicsDeleted;
    int isrChanges;
    int leaderElections;
    int staleRejected;
    int configChanges;
    int expiries;
    int expiredBroker = -1;

    static final class Abort extends RuntimeException {
        Abort(String m) {
            super(m);
        }
    }

    KafkaZkSim(int nBrokers, int nTopics, int nPartitions, int rounds, long paceMs) {
        this.nBrokers = nBrokers;
        this.nTopics = nTopics;
        this.nPartitions = nPartitions;
        this.rounds = rounds;
        this.paceMs = paceMs;
        this.brokers = new Broker[nBrokers];
        for (int i = 0; i < nBrokers; i++) {
            brokers[i] = new Broker(i + 1);
        }
        int deletions = 0;
        for (int r = 0; r < rounds; r++) {
            if (r % 4 == 3) {
                deletions++;
            }
        }
        // startup + topics + 3 per round + delete/create pairs + the expiry + convergence
        this.total = 1 + nTopics + 3 * rounds + 2 * deletions + 1 + 1;
    }

    public static void main(String[] args) throws Exception {
        String connect = null;
        String summary = null;
        int brokers = 3;
        int topics = 4;
        int partitions = 3;
        int rounds = 24;
        long pace = 250;
        for (int i = 0; i < args.length; i++) {
            String a = args[i];
            String v = i + 1 < args.length ? args[i + 1] : null;
            switch (a) {
                case "--connect" -> connect = v;
                case "--brokers" -> brokers = Integer.parseInt(v);
                case "--topics" -> topics = Integer.parseInt(v);
                case "--partitions" -> partitions = Integer.parseInt(v);
                case "--rounds" -> rounds = Integer.parseInt(v);
                case "--pace-ms" -> pace = Long.parseLong(v);
                case "--summary" -> summary = v;
                default -> {
                    System.err.println("unknown argument " + a);
                    System.exit(2);
                }
            }
            i++;
        }
        if (connect == null || brokers < 2 || topics < 1 || partitions < 1 || rounds < 2) {
            System.err.println("usage: KafkaZkSim --connect host:port,... [--brokers N>=2] [--topics T] "
                    + "[--partitions P] [--rounds R>=2] [--pace-ms MS] [--summary FILE]");
            System.exit(2);
        }
        Sim.connect = connect;
        int chroot = connect.indexOf('/');
        if (chroot > 0) {
            // KafkaServer.initZkClient: create the chroot through a session without it.
            Conn c = Conn.open(null, "chroot", connect.substring(0, chroot));
            c.makeSurePersistentPathExists(connect.substring(chroot));
            c.close();
        }
        KafkaZkSim sim = new KafkaZkSim(brokers, topics, partitions, rounds, pace);
        Map<String, Object> out = sim.run();
        String json = Json.encode(out);
        System.out.println(json);
        System.out.flush();
        if (summary != null) {
            Files.writeString(Path.of(summary), json + "\n", StandardCharsets.UTF_8);
        }
        int rc = Sim.violations() == 0 ? 0 : 1;
        // Close the sessions (their ephemerals go at once) with the brokers
        // stopped, so that nobody reacts to the others leaving.
        Sim.stopping = true;
        for (Broker b : sim.brokers) {
            if (b.conn != null) {
                b.conn.close();
            }
        }
        System.exit(rc);
    }

    // ---- the script ----------------------------------------------------

    Map<String, Object> run() {
        Map<String, Object> det = new TreeMap<>();
        try {
            step("startup", this::startup);
            for (int k = 0; k < nTopics; k++) {
                createTopic();
            }
            for (int r = 0; r < rounds; r++) {
                if (r == rounds / 2) {
                    step("expire the controller's session (round " + r + ")", this::expireController);
                }
                final int round = r;
                step("ISR change (round " + r + ")", isrChange(r));
                step("leader election (round " + r + ")", leaderElection(r));
                step("config change (round " + r + ")", configChange(r));
                if (r % 4 == 3) {
                    step("delete a topic (round " + r + ")", () -> deleteTopic(round));
                    createTopic();
                }
            }
            step("converge", this::converge);
            det = finalState();
        } catch (RuntimeException e) {
            Sim.violation("run aborted: " + e);
            if (!(e instanceof Abort)) {
                e.printStackTrace(System.err);
            }
        }
        det.put("violations", Sim.violations());
        Map<String, Long> c = Sim.counters();
        Map<String, Object> obs = new TreeMap<>();
        obs.put("elapsed_ms", Sim.elapsed());
        obs.put("steps", done);
        obs.put("steps_total", total);
        obs.put("ops", c.getOrDefault("ops", 0L));
        obs.put("watch_events", c.getOrDefault("watch_events", 0L));
        obs.put("watch_checks", c.getOrDefault("watch_checks", 0L) + c.getOrDefault("watch_waits", 0L));
        obs.put("retries", c.getOrDefault("retries", 0L));
        obs.put("connection_losses", c.getOrDefault("disconnects", 0L));
        obs.put("session_moved", c.getOrDefault("session_moved_retries", 0L));
        obs.put("counters", c);
        obs.put("controllers", Sim.electionHistory());
        Map<String, Object> epochs = new TreeMap<>();
        for (Broker b : brokers) {
            synchronized (b.epochs) {
                epochs.put(Integer.toString(b.id), new ArrayList<>(b.epochs));
            }
        }
        obs.put("broker_epochs", epochs);
        obs.put("expired_broker", expiredBroker);
        obs.put("violation_messages", Sim.violationMessages());
        return Json.obj("deterministic", det, "observed", obs);
    }

    /** One step of the script: retried while the cluster moves under it, then paced. */
    void step(String name, Runnable body) {
        long deadline = System.currentTimeMillis() + STEP_RETRY_MS;
        while (true) {
            try {
                body.run();
                break;
            } catch (Expired | ControllerMoved | Broker.NotNow e) {
                if (System.currentTimeMillis() > deadline) {
                    throw new Abort(name + ": still failing after " + STEP_RETRY_MS + " ms: " + e);
                }
                Sim.count("step_retries");
                Sim.log("step '" + name + "' again: " + e.getMessage());
                Sim.sleep(200);
            }
        }
        checkControllers();
        done++;
        System.out.println("PROGRESS " + done + " " + total);
        System.out.flush();
        Sim.log("done: " + name);
        Sim.sleep(paceMs);
    }

    void startup() {
        for (Broker b : brokers) {
            b.start();
        }
        waitFor("every broker started", () -> {
            for (Broker b : brokers) {
                if (!b.started) {
                    return null;
                }
            }
            return true;
        });
        settleController("the first election");
        Set<String> ids = new TreeSet<>();
        for (Broker b : brokers) {
            ids.add(b.clusterId);
        }
        if (ids.size() != 1) {
            Sim.violation("brokers disagree on the cluster id: " + ids);
        }
    }

    /**
     * Wait until one controller is settled: every broker names it (the
     * /controller watch), and it sees every broker with its current epoch
     * (the /brokers/ids child watch).
     */
    Broker settleController(String why) {
        return waitFor("a controller seen by every broker, seeing every broker (" + why + ")", () -> {
            Broker c = currentController();
            if (c == null) {
                return null;
            }
            for (Broker b : brokers) {
                if (b.activeControllerId != c.id) {
                    return null;
                }
            }
            Map<String, Object> v = view(c);
            if (v == null) {
                return null;
            }
            @SuppressWarnings("unchecked")
            Map<Integer, Long> lv = (Map<Integer, Long>) v.get("live");
            for (Broker b : brokers) {
                Long e = lv.get(b.id);
                if (e == null || e != b.brokerEpoch) {
                    return null;
                }
            }
            return c;
        });
    }

    Broker currentController() {
        Broker best = null;
        for (Broker b : brokers) {
            if (b.isActive() && b.ctrlEpoch > 0 && (best == null || b.ctrlEpoch > best.ctrlEpoch)) {
                best = b;
            }
        }
        return best;
    }

    Broker controller() {
        return waitFor("a controller", this::currentController);
    }

    /** Two brokers never act as controller of one epoch. */
    void checkControllers() {
        Map<Integer, Integer> byEpoch = new TreeMap<>();
        for (Broker b : brokers) {
            int e = b.ctrlEpoch;
            if (b.isActive() && e > 0) {
                Integer other = byEpoch.put(e, b.id);
                if (other != null) {
                    Sim.violation("brokers " + other + " and " + b.id + " both act as controller of epoch " + e);
                }
            }
        }
    }

    Map<String, Object> view(Broker c) {
        return get(c.view());
    }

    static <T> T get(CompletableFuture<T> f) {
        try {
            return f.get(WAIT_MS, TimeUnit.MILLISECONDS);
        } catch (ExecutionException e) {
            if (e.getCause() instanceof RuntimeException re) {
                throw re;
            }
            throw new IllegalStateException(e.getCause());
        } catch (TimeoutException e) {
            throw new Abort("a broker's event thread did not answer within " + WAIT_MS + " ms");
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new Abort("interrupted");
        }
    }

    /**
     * Poll until `cond` gives a value. Everything waited for follows from a
     * watch notification (the brokers only re-read on one), so running out
     * of time means a notification was lost: a violation.
     */
    <T> T waitFor(String what, Supplier<T> cond) {
        long deadline = System.currentTimeMillis() + WAIT_MS;
        while (true) {
            T v;
            try {
                v = cond.get();
            } catch (Broker.NotNow | ControllerMoved | Expired e) {
                v = null;
            }
            if (v != null) {
                Sim.count("watch_waits");
                return v;
            }
            if (System.currentTimeMillis() > deadline) {
                Sim.violation("no reaction within " + WAIT_MS + " ms to: " + what + " (a lost watch notification?)");
                throw new Abort("timed out waiting for " + what);
            }
            Sim.sleep(50);
        }
    }

    /** Some live broker's session, for the driver's own reads. */
    Conn anyConn() {
        for (Broker b : brokers) {
            Conn c = b.conn;
            if (c != null && !c.expired) {
                return c;
            }
        }
        throw new Broker.NotNow("no live session");
    }

    /** A partition's state as last written by anyone (the driver is not the writer: sync first). */
    PState readState(String key) {
        Conn c = anyConn();
        c.sync();
        Resp r = c.send(Req.getData(PState.path(key), false));
        if (!r.ok()) {
            throw new Broker.NotNow("no state for " + key + ": " + r.code);
        }
        return PState.decode(r.data, r.stat);
    }

    List<Integer> replicas(String key) {
        String[] tp = key.split("/");
        return assignments.get(tp[0]).get(Integer.parseInt(tp[1]));
    }

    /** Kafka-like round-robin placement: partition p of topic k on brokers k+p, k+p+1, ... */
    Map<Integer, List<Integer>> placement(int k) {
        int rf = Math.min(3, nBrokers);
        Map<Integer, List<Integer>> a = new TreeMap<>();
        for (int p = 0; p < nPartitions; p++) {
            List<Integer> rs = new ArrayList<>();
            for (int i = 0; i < rf; i++) {
                rs.add((k + p + i) % nBrokers + 1);
            }
            a.put(p, rs);
        }
        return a;
    }

    /** AdminZkClient.createTopicWithAssignment through a broker, then the controller's reaction. */
    void createTopic() {
        int k = nextTopic++;
        String t = "topic-" + k;
        Map<Integer, List<Integer>> a = placement(k);
        assignments.put(t, a);
        Map<String, Object> parts = new TreeMap<>();
        a.forEach((p, rs) -> parts.put(Integer.toString(p), rs));
        byte[] json = Json.bytes(Json.obj("partitions", parts, "topic_id", Sim.newId(), "adding_replicas",
                Map.of(), "removing_replicas", Map.of(), "version", 3));
        byte[] config = Json.bytes(Json.obj("version", 1, "config", Map.of()));
        boolean[] did = new boolean[2]; // config written, topic znode created: not again on a retry
        step("create " + t, () -> {
            Conn c = brokers[k % nBrokers].conn;
            if (!did[0]) {
                c.setOrCreateEntityConfigs("topics", t, config);
                did[0] = true;
            }
            if (!did[1]) {
                if (c.createRecursive("/brokers/topics/" + t, json, true) != Code.OK) {
                    Sim.violation("creating " + t + ": it exists with other data");
                }
                did[1] = true;
            }
            waitFor("the controller's partitions of new topic " + t + " (child watch on /brokers/topics)", () -> {
                Map<String, Object> v = view(controller());
                if (v == null) {
                    return null;
                }
                @SuppressWarnings("unchecked")
                Map<String, PState> st = (Map<String, PState>) v.get("states");
                for (int p = 0; p < nPartitions; p++) {
                    if (!st.containsKey(t + "/" + p)) {
                        return null;
                    }
                }
                return true;
            });
        });
        live.add(t);
        topicsCreated++;
    }

    Broker leaderOf(PState st, String key) {
        if (st.leader < 1 || st.leader > nBrokers) {
            throw new Broker.NotNow(key + " has no leader");
        }
        return brokers[st.leader - 1];
    }

    /**
     * The leader of a partition shrinks (or re-expands) its ISR; the
     * controller hears of it. Planned once: a step retried after its write
     * landed must not change the ISR a second time.
     */
    Runnable isrChange(int r) {
        String key = live.get(r % live.size()) + "/" + (r % nPartitions);
        List<Integer> reps = replicas(key);
        return new Runnable() {
            List<Integer> target;
            int fromVersion;

            @Override
            public void run() {
                PState st = readState(key);
                if (target == null || !target.contains(st.leader)) {
                    fromVersion = st.zkVersion;
                    if (st.isr.size() == reps.size()) {
                        target = new ArrayList<>(st.isr);
                        for (int i = target.size() - 1; i >= 0; i--) {
                            if (target.get(i) != st.leader) {
                                target.remove(i);
                                break;
                            }
                        }
                    } else {
                        target = new ArrayList<>(reps);
                    }
                }
                Broker.IsrChange ch = leaderOf(st, key).changeIsr(key, target, fromVersion, true);
                waitFor("the controller processing " + ch.notification() + " for " + key
                        + " (child watch on /isr_change_notification)", () -> {
                            Map<String, Object> v = view(controller());
                            if (v == null || !((Set<?>) v.get("isr_processed")).contains(ch.notification())) {
                                return null;
                            }
                            PState cached = ((Map<?, ?>) v.get("states")).get(key) instanceof PState p ? p : null;
                            return cached != null && cached.zkVersion >= ch.zkVersion() ? true : null;
                        });
                isrChanges++;
                staleRejected++;
            }
        };
    }

    /** The controller moves a partition's leadership to the next ISR member (planned once). */
    Runnable leaderElection(int r) {
        String key = live.get((r + 1) % live.size()) + "/" + ((r + 1) % nPartitions);
        return new Runnable() {
            int target = -1;
            int fromLeaderEpoch;

            @Override
            public void run() {
                if (target < 0) {
                    PState st = readState(key);
                    int i = st.isr.indexOf(st.leader);
                    target = st.isr.get((i + 1) % st.isr.size());
                    fromLeaderEpoch = st.leaderEpoch;
                }
                int[] res = get(controller().electLeader(key, target, fromLeaderEpoch, true));
                leaderElections++;
                staleRejected += res[1];
            }
        };
    }

    /**
     * AdminZkClient.changeTopicConfig through a broker; every broker's
     * config listener applies it. What is done is not done again on a retry.
     */
    Runnable configChange(int r) {
        String t = live.get(r % live.size());
        Map<String, Object> config = Json.obj("cleanup.policy", "delete", "retention.ms", Long.toString(1000L * (r + 1)));
        String want = Json.encode(config);
        return new Runnable() {
            boolean set;
            String name;

            @Override
            public void run() {
                Conn c = brokers[r % nBrokers].conn;
                if (!set) {
                    c.setOrCreateEntityConfigs("topics", t, Json.bytes(Json.obj("version", 1, "config", config)));
                    set = true;
                }
                if (name == null) {
                    name = c.createConfigChangeNotification("topics/" + t);
                }
                long seq = Long.parseLong(name.substring(name.lastIndexOf('_') + 1));
                waitFor("every broker applying " + name + " (child watch on /config/changes)", () -> {
                    for (Broker b : brokers) {
                        if (b.lastExecutedChange() < seq || !want.equals(b.appliedConfig(t))) {
                            return null;
                        }
                    }
                    return true;
                });
                configChanges++;
            }
        };
    }

    /** AdminZkClient.deleteTopic: the controller deletes the topic's znodes, then the marker. */
    void deleteTopic(int r) {
        String t = live.get(0);
        Conn c = brokers[(r + 1) % nBrokers].conn;
        if (c.send(Req.exists("/brokers/topics/" + t, false)).ok()) {
            c.createRecursive("/admin/delete_topics/" + t, null, false);
        }
        waitFor("the controller deleting " + t + " (child watch on /admin/delete_topics)", () -> {
            Conn q = anyConn();
            q.sync();
            boolean gone = q.send(Req.exists("/brokers/topics/" + t, false)).code == Code.NONODE
                    && q.send(Req.exists("/admin/delete_topics/" + t, false)).code == Code.NONODE
                    && q.send(Req.exists("/config/topics/" + t, false)).code == Code.NONODE;
            return gone ? true : null;
        });
        live.remove(t);
        topicsDeleted++;
    }

    /**
     * Expire the controller's session the way tests do: a second handle with
     * its id and password, closed. The broker sees Expired, makes a new
     * session and registers again with a larger epoch; a controller is
     * elected in the next epoch.
     */
    void expireController() {
        Broker x = controller();
        long oldEpoch = x.brokerEpoch;
        int oldCtrl = x.ctrlEpoch;
        Conn c = x.conn;
        expireSession(c.zk.getSessionId(), c.zk.getSessionPasswd());
        expiredBroker = x.id;
        waitFor("broker " + x.id + " registering again after its session expired", () ->
                x.brokerEpoch > oldEpoch ? true : null);
        Broker now = settleController("after broker " + x.id + "'s session expired");
        if (now.ctrlEpoch <= oldCtrl) {
            Sim.violation("controller epoch " + now.ctrlEpoch + " after the expiry is not above " + oldCtrl);
        }
        expiries++;
    }

    static void expireSession(long sessionId, byte[] password) {
        CountDownLatch connected = new CountDownLatch(1);
        Watcher w = e -> {
            if (e.getState() == Watcher.Event.KeeperState.SyncConnected) {
                connected.countDown();
            }
        };
        try {
            ZooKeeper z = new ZooKeeper(Sim.connect, Conn.SESSION_TIMEOUT_MS, w, sessionId, password);
            if (!connected.await(WAIT_MS, TimeUnit.MILLISECONDS)) {
                z.close();
                throw new Abort("the second handle of session 0x" + Long.toHexString(sessionId) + " did not connect");
            }
            Sim.log("closing session 0x" + Long.toHexString(sessionId) + " through a second handle");
            z.close();
        } catch (IOException e) {
            throw new Abort("second handle: " + e);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new Abort("interrupted");
        }
    }

    /**
     * Bring every partition to its full ISR (the leaders expand it) and its
     * preferred leader (the controller elects it), so that the final states
     * do not depend on how the expiry raced with the brokers.
     */
    void converge() {
        for (String t : live) {
            for (int p = 0; p < nPartitions; p++) {
                String key = t + "/" + p;
                List<Integer> reps = replicas(key);
                for (int attempt = 0;; attempt++) {
                    if (attempt > 10) {
                        throw new Abort(key + " does not converge");
                    }
                    PState st = readState(key);
                    if (!st.isr.equals(reps)) {
                        Sim.count("converge_isr_changes");
                        Broker.IsrChange ch = leaderOf(st, key).changeIsr(key, reps, st.zkVersion, false);
                        waitFor("the controller processing " + ch.notification(), () -> {
                            Map<String, Object> v = view(controller());
                            return v != null && ((Set<?>) v.get("isr_processed")).contains(ch.notification()) ? true
                                    : null;
                        });
                        continue;
                    }
                    if (st.leader != reps.get(0)) {
                        Sim.count("converge_elections");
                        get(controller().electLeader(key, reps.get(0), st.leaderEpoch, false));
                        continue;
                    }
                    break;
                }
            }
        }
    }

    // ---- the final state -------------------------------------------------

    static final Pattern SEQUENTIAL = Pattern.compile("^(.*_)\\d{10}$");

    /**
     * Every path under / but /zookeeper, sequential suffixes as `*` (a
     * retried create may add one); `real` gets the actual paths.
     */
    void walk(Conn c, String path, Set<String> out, Map<String, Integer> seqCount, List<String> real) {
        Resp k = c.send(Req.children(path, false));
        if (!k.ok()) {
            return;
        }
        for (String child : k.children) {
            String p = (path.equals("/") ? "" : path) + "/" + child;
            if (p.equals("/zookeeper")) {
                continue;
            }
            Matcher m = SEQUENTIAL.matcher(child);
            if (m.matches()) {
                String norm = (path.equals("/") ? "" : path) + "/" + m.group(1) + "*";
                out.add(norm);
                seqCount.merge(norm, 1, Integer::sum);
            } else {
                out.add(p);
                real.add(p);
            }
            walk(c, p, out, seqCount, real);
        }
    }

    /** Parents of sequential nodes: their cversion counts retried creates too. */
    static final Set<String> SEQUENTIAL_PARENTS = Set.of("/config/changes", "/isr_change_notification",
            "/log_dir_event_notification");

    /**
     * The Stat fields of the final nodes that do not depend on timing:
     * version, cversion, numChildren, dataLength, ephemeral or not (zxids
     * and times differ between servers; a partition state's version and
     * length count the writes of races and of the convergence).
     */
    Map<String, Object> stats(Conn c, List<String> paths) {
        List<Req> reads = new ArrayList<>();
        for (String p : paths) {
            reads.add(Req.exists(p, false));
        }
        List<Resp> got = c.sendAll(reads);
        Map<String, Object> out = new TreeMap<>();
        for (int i = 0; i < paths.size(); i++) {
            String p = paths.get(i);
            Resp r = got.get(i);
            if (!r.ok()) {
                out.put(p, r.code.toString());
                continue;
            }
            Map<String, Object> st = new TreeMap<>();
            boolean state = p.endsWith("/state");
            if (!state) {
                st.put("version", r.stat.getVersion());
                st.put("dataLength", r.stat.getDataLength());
            }
            if (!SEQUENTIAL_PARENTS.contains(p)) {
                st.put("cversion", r.stat.getCversion());
            }
            st.put("numChildren", r.stat.getNumChildren());
            st.put("ephemeral", r.stat.getEphemeralOwner() != 0);
            out.put(p, st);
        }
        return out;
    }

    Map<String, Object> finalState() {
        Conn c = anyConn();
        c.sync(); // the driver reads what other sessions wrote
        Broker ctrl = settleController("the end");
        Map<String, Object> det = new TreeMap<>();
        Set<String> tree = new TreeSet<>();
        Map<String, Integer> seqCount = new TreeMap<>();
        List<String> real = new ArrayList<>();
        walk(c, "/", tree, seqCount, real);
        det.put("tree", new ArrayList<>(tree));
        det.put("stats", stats(c, real));

        Resp ids = c.send(Req.children("/brokers/ids", false));
        det.put("brokers", ids.children.size());
        for (Broker b : brokers) {
            Resp r = c.send(Req.getData("/brokers/ids/" + b.id, false));
            if (!r.ok() || r.stat.getCzxid() != b.brokerEpoch) {
                Sim.violation("broker " + b.id + "'s registration does not carry its epoch " + b.brokerEpoch);
            }
        }
        det.put("broker_registrations", nBrokers + expiries);
        det.put("session_expiries", expiries);

        Resp ep = c.send(Req.getData("/controller_epoch", false));
        int epoch = Integer.parseInt(new String(ep.data, StandardCharsets.UTF_8));
        det.put("controller_epoch", epoch);
        det.put("controller_epoch_zk_version", ep.stat.getVersion());
        det.put("controller_elections", Sim.electionCount());
        if (epoch != Sim.maxElectedEpoch() || ctrl.ctrlEpoch != epoch) {
            Sim.violation("/controller_epoch is " + epoch + ", the last election won " + Sim.maxElectedEpoch()
                    + ", the controller acts in " + ctrl.ctrlEpoch);
        }
        int active = 0;
        for (Broker b : brokers) {
            if (b.isActive()) {
                active++;
            }
        }
        if (active != 1) {
            Sim.violation(active + " brokers act as controller at the end");
        }

        det.put("topics", live.size());
        det.put("topics_created", topicsCreated);
        det.put("topics_deleted", topicsDeleted);
        Map<String, Object> v = view(ctrl);
        @SuppressWarnings("unchecked")
        Map<String, PState> cached = (Map<String, PState>) v.get("states");
        Map<String, Object> states = new TreeMap<>();
        Map<String, Object> configs = new TreeMap<>();
        for (String t : live) {
            for (int p = 0; p < nPartitions; p++) {
                String key = t + "/" + p;
                PState st = readState(key);
                states.put(key, Json.obj("leader", st.leader, "isr", st.isr));
                PState mine = cached.get(key);
                if (mine == null || mine.leader != st.leader || !mine.isr.equals(st.isr)
                        || mine.zkVersion != st.zkVersion) {
                    Sim.violation("the controller's cache of " + key + " differs from ZooKeeper");
                }
            }
            Resp cfg = c.send(Req.getData("/config/topics/" + t, false));
            String conf = cfg.ok() ? Json.encode(Json.asObj(Json.parse(cfg.data)).get("config")) : "";
            configs.put(t, conf);
            for (Broker b : brokers) {
                String applied = b.appliedConfig(t);
                if (applied != null && !applied.equals(conf)) {
                    Sim.violation("broker " + b.id + " applied config " + applied + " of " + t + ", ZooKeeper has " + conf);
                }
            }
        }
        det.put("partitions", states.size());
        det.put("partition_states", states);
        det.put("topic_configs", configs);
        det.put("isr_changes", isrChanges);
        det.put("leader_elections", leaderElections);
        det.put("stale_writes_rejected", staleRejected);
        det.put("config_changes", configChanges);
        det.put("isr_notifications_pending", c.send(Req.children("/isr_change_notification", false)).children.size());
        det.put("topic_deletions_pending", c.send(Req.children("/admin/delete_topics", false)).children.size());

        int changeNodes = seqCount.getOrDefault("/config/changes/config_change_*", 0);
        if (changeNodes < configChanges || changeNodes > configChanges + Sim.counter("sequential_creates_retried")) {
            Sim.violation(changeNodes + " config change notifications for " + configChanges + " changes");
        }
        Sim.count("config_change_nodes", changeNodes);
        Sim.count("sequential_duplicates", changeNodes - configChanges);
        return det;
    }
}
