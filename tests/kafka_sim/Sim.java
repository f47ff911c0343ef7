import java.nio.ByteBuffer;
import java.util.ArrayList;
import java.util.Base64;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import java.util.UUID;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.LongAdder;

/** Process-wide helpers: the log, counters and the invariants that span brokers. */
final class Sim {
    private Sim() {}

    static volatile String connect;
    /** Set when the summary is out: the brokers stop handling events. */
    static volatile boolean stopping;
    static final long T0 = System.currentTimeMillis();
    private static final Map<String, LongAdder> COUNTERS = new ConcurrentHashMap<>();
    private static final AtomicInteger VIOLATIONS = new AtomicInteger();
    private static final List<String> VIOLATION_MESSAGES = new ArrayList<>();

    // epoch -> {broker id, zxid of the /controller_epoch write that won it}
    private static final TreeMap<Integer, long[]> ELECTIONS = new TreeMap<>();
    private static final Map<Integer, Integer> EPOCH_SEEN = new ConcurrentHashMap<>();

    static long elapsed() {
        return System.currentTimeMillis() - T0;
    }

    static void log(String m) {
        System.err.printf("%7d [%s] %s%n", elapsed(), Thread.currentThread().getName(), m);
    }

    static void error(String m, Throwable t) {
        count("errors");
        log("ERROR " + m + ": " + t);
        t.printStackTrace(System.err);
    }

    static void count(String k) {
        count(k, 1);
    }

    static void count(String k, long n) {
        COUNTERS.computeIfAbsent(k, x -> new LongAdder()).add(n);
    }

    static long counter(String k) {
        LongAdder a = COUNTERS.get(k);
        return a == null ? 0 : a.sum();
    }

    static Map<String, Long> counters() {
        Map<String, Long> out = new TreeMap<>();
        COUNTERS.forEach((k, v) -> out.put(k, v.sum()));
        return out;
    }

    static void violation(String m) {
        VIOLATIONS.incrementAndGet();
        synchronized (VIOLATION_MESSAGES) {
            if (VIOLATION_MESSAGES.size() < 100) {
                VIOLATION_MESSAGES.add(m);
            }
        }
        log("VIOLATION " + m);
    }

    static int violations() {
        return VIOLATIONS.get();
    }

    static List<String> violationMessages() {
        synchronized (VIOLATION_MESSAGES) {
            return new ArrayList<>(VIOLATION_MESSAGES);
        }
    }

    static void sleep(long ms) {
        try {
            Thread.sleep(ms);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
    }

    /** Kafka's Uuid.randomUuid().toString(): URL-safe base64 of 16 bytes, no padding. */
    static String newId() {
        UUID u = UUID.randomUUID();
        ByteBuffer b = ByteBuffer.allocate(16).putLong(u.getMostSignificantBits()).putLong(u.getLeastSignificantBits());
        return Base64.getUrlEncoder().withoutPadding().encodeToString(b.array());
    }

    /**
     * A broker won controller epoch `epoch` with the /controller_epoch write
     * at `zxid`: epochs (and their zxids) strictly increase, one broker each.
     */
    static synchronized void elected(Broker b, int epoch, long zxid) {
        long[] had = ELECTIONS.get(epoch);
        if (had != null) {
            if (had[0] != b.id) {
                violation("brokers " + had[0] + " and " + b.id + " both believe they are controller of epoch " + epoch);
            }
            return;
        }
        if (!ELECTIONS.isEmpty()) {
            Map.Entry<Integer, long[]> last = ELECTIONS.lastEntry();
            if (epoch <= last.getKey()) {
                violation("controller epoch " + epoch + " won by broker " + b.id + " after epoch " + last.getKey());
            }
            if (zxid <= last.getValue()[1]) {
                violation("controller epoch " + epoch + " written at zxid " + zxid + ", not after epoch "
                        + last.getKey() + "'s zxid " + last.getValue()[1]);
            }
        }
        ELECTIONS.put(epoch, new long[] {b.id, zxid});
        count("controller_elections");
    }

    /** A fenced controller write succeeded at `zxid`: no newer epoch may have been elected before it. */
    static synchronized void controllerWrote(Broker b, int epoch, long zxid, String path) {
        for (Map.Entry<Integer, long[]> e : ELECTIONS.tailMap(epoch, false).entrySet()) {
            if (e.getValue()[1] < zxid) {
                violation("controller " + b.id + " of epoch " + epoch + " wrote " + path + " at zxid " + zxid
                        + " although epoch " + e.getKey() + " was elected at zxid " + e.getValue()[1]);
            }
        }
    }

    /** The /controller_epoch a broker reads never goes back. */
    static void sawControllerEpoch(Broker b, int epoch) {
        Integer was = EPOCH_SEEN.put(b.id, epoch);
        if (was != null && epoch < was) {
            violation("broker " + b.id + " read controller epoch " + epoch + " after " + was);
        }
    }

    static synchronized int maxElectedEpoch() {
        return ELECTIONS.isEmpty() ? 0 : ELECTIONS.lastKey();
    }

    static synchronized List<Object> electionHistory() {
        List<Object> out = new ArrayList<>();
        ELECTIONS.forEach((e, v) -> out.add(Json.obj("epoch", e, "broker", v[0], "zxid", v[1])));
        return out;
    }

    static synchronized int electionCount() {
        return ELECTIONS.size();
    }
}
