//! A linearizability checker after Wing & Gong, with the memoization of
//! Lowe and porcupine (anishathalye/porcupine): depth-first search over the
//! calls that may go next, caching every (set of linearized operations,
//! model state) already explored so no configuration is searched twice.
//!
//! Histories are checked per partition (P-compositionality): a register per
//! key is linearizable iff every key's subhistory is, which keeps each
//! search small.
//!
//! An operation whose outcome is unknown (a timeout, a lost connection)
//! has no return time: it may take effect at any point after its call, or
//! never; its output is not checked. Two reductions keep such operations
//! from multiplying the search (each is exact, see `check`): an unknown
//! operation is never linearized where it would change nothing (it can
//! always go last instead), and unknown operations with equal inputs are
//! linearized in call order only.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};

/// A sequential specification.
pub trait Model {
    type State: Clone + Eq + Hash;
    type Input;
    type Output;
    fn init(&self) -> Self::State;
    /// The state after `input` in `state` if `output` is what it returns
    /// there (`None`: the output is unknown, any is accepted, and the step
    /// must then always succeed); `None` when the operation cannot return
    /// `output` in `state`.
    fn step(
        &self,
        state: &Self::State,
        input: &Self::Input,
        output: Option<&Self::Output>,
    ) -> Option<Self::State>;
}

/// One recorded operation. Times are any monotonic clock (ns here).
#[derive(Debug, Clone)]
pub struct Op<I, O> {
    pub client: usize,
    pub input: I,
    /// `None`: the outcome is unknown (the operation may or may not have
    /// happened); such an operation never returns.
    pub output: Option<O>,
    pub call: u64,
    pub ret: u64,
}

impl<I, O> Op<I, O> {
    /// The return time used for ordering: never, for unknown outcomes.
    fn ret_time(&self) -> u64 {
        if self.output.is_some() {
            self.ret
        } else {
            u64::MAX
        }
    }
}

/// What a check found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Linearizable,
    /// Not linearizable: the longest prefix that could be linearized (as
    /// operation indices into the checked slice, in linearization order).
    Illegal {
        longest_prefix: Vec<usize>,
    },
    /// The search budget ran out (never observed on the fault suite's
    /// histories; reported rather than guessed).
    Unknown,
}

#[derive(Clone, Copy)]
struct Node {
    prev: usize,
    next: usize,
    op: usize,
    /// For a call: the index of its return node; `NONE` for returns.
    matching: usize,
}

const NONE: usize = usize::MAX;

#[derive(Clone, PartialEq, Eq, Hash)]
struct Bits(Vec<u64>);

impl Bits {
    fn new(n: usize) -> Bits {
        Bits(vec![0; n.div_ceil(64)])
    }
    fn set(&mut self, i: usize) {
        self.0[i / 64] |= 1 << (i % 64);
    }
    fn get(&self, i: usize) -> bool {
        self.0[i / 64] & (1 << (i % 64)) != 0
    }
    fn clear(&mut self, i: usize) {
        self.0[i / 64] &= !(1 << (i % 64));
    }
}

fn hash_of<T: Hash>(t: &T) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    t.hash(&mut h);
    h.finish()
}

/// Check one history (one partition) against `model`. `budget` bounds the
/// number of search steps.
pub fn check<M: Model>(model: &M, ops: &[Op<M::Input, M::Output>], budget: u64) -> Outcome
where
    M::Input: Eq + Hash,
{
    check_counting(model, ops, budget).0
}

/// `check`, also returning the search steps taken.
pub fn check_counting<M: Model>(
    model: &M,
    ops: &[Op<M::Input, M::Output>],
    budget: u64,
) -> (Outcome, u64)
where
    M::Input: Eq + Hash,
{
    let n = ops.len();
    if n == 0 {
        return (Outcome::Linearizable, 0);
    }
    // Symmetry: two unknown-outcome operations with the same input are
    // interchangeable once both have been called (neither ever returns), so
    // the search only linearizes them in call order. Without this, k such
    // operations in flight make 2^k equivalent configurations (every
    // timed-out `setData(-1)` of one znode is the same operation).
    let mut prev_same = vec![NONE; n];
    {
        let mut order: Vec<usize> = (0..n).filter(|i| ops[*i].output.is_none()).collect();
        order.sort_by_key(|i| (ops[*i].call, *i));
        let mut last: HashMap<&M::Input, usize> = HashMap::new();
        for i in order {
            if let Some(p) = last.insert(&ops[i].input, i) {
                prev_same[i] = p;
            }
        }
    }
    // Events sorted by time; at equal times calls go first, so touching
    // operations count as concurrent (porcupine does the same).
    let mut events: Vec<(u64, bool, usize)> = Vec::with_capacity(2 * n);
    for (i, op) in ops.iter().enumerate() {
        events.push((op.call, false, i));
        events.push((op.ret_time(), true, i));
    }
    events.sort_by_key(|&(t, is_ret, i)| (t, is_ret, i));
    // Node 0 is the head sentinel; event k is node k + 1.
    let mut nodes = vec![
        Node {
            prev: NONE,
            next: NONE,
            op: NONE,
            matching: NONE,
        };
        2 * n + 1
    ];
    let mut ret_node = vec![NONE; n];
    for (k, &(_, is_ret, i)) in events.iter().enumerate() {
        if is_ret {
            ret_node[i] = k + 1;
        }
    }
    for (k, &(_, is_ret, i)) in events.iter().enumerate() {
        let idx = k + 1;
        nodes[idx] = Node {
            prev: idx - 1,
            next: if idx == 2 * n { NONE } else { idx + 1 },
            op: i,
            matching: if is_ret { NONE } else { ret_node[i] },
        };
    }
    nodes[0].next = 1;

    let lift = |nodes: &mut Vec<Node>, e: usize| {
        let (p, nx) = (nodes[e].prev, nodes[e].next);
        nodes[p].next = nx;
        if nx != NONE {
            nodes[nx].prev = p;
        }
        let m = nodes[e].matching;
        let (p, nx) = (nodes[m].prev, nodes[m].next);
        nodes[p].next = nx;
        if nx != NONE {
            nodes[nx].prev = p;
        }
    };
    let unlift = |nodes: &mut Vec<Node>, e: usize| {
        let m = nodes[e].matching;
        let (p, nx) = (nodes[m].prev, nodes[m].next);
        nodes[p].next = m;
        if nx != NONE {
            nodes[nx].prev = m;
        }
        let (p, nx) = (nodes[e].prev, nodes[e].next);
        nodes[p].next = e;
        if nx != NONE {
            nodes[nx].prev = e;
        }
    };

    let mut linearized = Bits::new(n);
    let mut cache: HashMap<u64, Vec<(Bits, M::State)>> = HashMap::new();
    let mut calls: Vec<(usize, M::State)> = Vec::new();
    let mut longest: Vec<usize> = Vec::new();
    let mut state = model.init();
    let mut entry = nodes[0].next;
    let mut steps = 0u64;
    // Operations with a known outcome still to linearize. Once none is
    // left, the unknown ones that remain all go at the end, where nothing
    // observes them (the model accepts any unknown-outcome step).
    let mut known_left = ops.iter().filter(|o| o.output.is_some()).count();
    while known_left > 0 {
        steps += 1;
        if steps > budget {
            return (Outcome::Unknown, steps);
        }
        if entry != NONE && nodes[entry].matching != NONE {
            // A call: try to linearize it here.
            let i = nodes[entry].op;
            let op = &ops[i];
            let p = prev_same[i];
            let allowed = p == NONE || linearized.get(p);
            // An unknown-outcome operation that changes nothing here is
            // never linearized here: leaving it for the end is as good and
            // keeps 2^k equivalent choices out of the search.
            if let Some(next) = allowed
                .then(|| model.step(&state, &op.input, op.output.as_ref()))
                .flatten()
                .filter(|next| op.output.is_some() || *next != state)
            {
                let mut bits = linearized.clone();
                bits.set(nodes[entry].op);
                let h = hash_of(&(&bits, &next));
                let seen = cache
                    .get(&h)
                    .is_some_and(|v| v.iter().any(|(b, s)| *b == bits && *s == next));
                if !seen {
                    cache.entry(h).or_default().push((bits, next.clone()));
                    calls.push((entry, state));
                    known_left -= usize::from(op.output.is_some());
                    state = next;
                    linearized.set(nodes[entry].op);
                    lift(&mut nodes, entry);
                    entry = nodes[0].next;
                    continue;
                }
            }
            entry = nodes[entry].next;
        } else {
            // A return (or the end): the call it closes could not go before
            // it, so backtrack.
            if calls.len() > longest.len() {
                longest = calls.iter().map(|(e, _)| nodes[*e].op).collect();
            }
            let Some((e, s)) = calls.pop() else {
                return (
                    Outcome::Illegal {
                        longest_prefix: longest,
                    },
                    steps,
                );
            };
            known_left += usize::from(ops[nodes[e].op].output.is_some());
            state = s;
            linearized.clear(nodes[e].op);
            unlift(&mut nodes, e);
            entry = nodes[e].next;
        }
    }
    (Outcome::Linearizable, steps)
}

/// Check a history partitioned by `key`: (partitions checked, anomalies as
/// (key, operation indices, outcome), most search steps one partition took).
pub fn check_partitioned<M: Model, K: Ord + Clone>(
    model: &M,
    ops: &[Op<M::Input, M::Output>],
    key: impl Fn(&M::Input) -> K,
    budget: u64,
) -> (usize, Vec<(K, Vec<usize>, Outcome)>, u64)
where
    M::Input: Clone + Eq + Hash,
    M::Output: Clone,
{
    let mut parts: std::collections::BTreeMap<K, Vec<usize>> = Default::default();
    for (i, op) in ops.iter().enumerate() {
        parts.entry(key(&op.input)).or_default().push(i);
    }
    let mut bad = Vec::new();
    let mut most = 0;
    let count = parts.len();
    for (k, idx) in parts {
        let sub: Vec<Op<M::Input, M::Output>> = idx.iter().map(|&i| ops[i].clone()).collect();
        let (out, steps) = check_counting(model, &sub, budget);
        most = most.max(steps);
        if out != Outcome::Linearizable {
            bad.push((k, idx, out));
        }
    }
    (count, bad, most)
}

/// etcd's key-value API on one key as a register: put, get, delete, and a
/// txn that puts if the value equals an expected one (or the key is absent).
pub mod kv {
    /// Values are unique ids (the workload never writes one twice).
    #[derive(Debug, Clone, PartialEq, Eq, Hash)]
    pub enum Input {
        Get {
            key: String,
        },
        Put {
            key: String,
            value: u64,
        },
        /// Put `value` if the current value is `expect` (`None`: absent).
        Cas {
            key: String,
            expect: Option<u64>,
            value: u64,
        },
        Delete {
            key: String,
        },
    }

    impl Input {
        pub fn key(&self) -> &str {
            match self {
                Input::Get { key }
                | Input::Put { key, .. }
                | Input::Cas { key, .. }
                | Input::Delete { key } => key,
            }
        }
    }

    #[derive(Debug, Clone, PartialEq, Eq)]
    pub enum Output {
        Value(Option<u64>),
        Ok,
        Succeeded(bool),
        Deleted(i64),
    }

    pub struct Register;

    impl super::Model for Register {
        type State = Option<u64>;
        type Input = Input;
        type Output = Output;
        fn init(&self) -> Option<u64> {
            None
        }
        fn step(&self, s: &Option<u64>, i: &Input, o: Option<&Output>) -> Option<Option<u64>> {
            match (i, o) {
                (Input::Get { .. }, None) => Some(*s),
                (Input::Get { .. }, Some(Output::Value(v))) => (v == s).then_some(*s),
                (Input::Put { value, .. }, None | Some(Output::Ok)) => Some(Some(*value)),
                (Input::Cas { expect, value, .. }, None) => {
                    Some(if s == expect { Some(*value) } else { *s })
                }
                (Input::Cas { expect, value, .. }, Some(Output::Succeeded(ok))) => {
                    match (s == expect, ok) {
                        (true, true) => Some(Some(*value)),
                        (false, false) => Some(*s),
                        _ => None,
                    }
                }
                (Input::Delete { .. }, None) => Some(None),
                (Input::Delete { .. }, Some(Output::Deleted(n))) => {
                    (*n == i64::from(s.is_some())).then_some(None)
                }
                _ => None,
            }
        }
    }
}

/// ZooKeeper's writes to one znode: the version counter is the register.
/// setData with an expected version succeeds iff it matches (and then
/// yields version + 1); -1 always succeeds; a version read after all
/// writes must be the final one.
pub mod znode {
    #[derive(Debug, Clone, PartialEq, Eq, Hash)]
    pub enum Input {
        SetData {
            path: String,
            expect: i32,
        },
        /// The version a read saw (used for the final read after healing).
        ReadVersion {
            path: String,
        },
    }

    impl Input {
        pub fn path(&self) -> &str {
            match self {
                Input::SetData { path, .. } | Input::ReadVersion { path } => path,
            }
        }
    }

    #[derive(Debug, Clone, PartialEq, Eq)]
    pub enum Output {
        /// The new version (setData) or the version read.
        Version(i32),
        BadVersion,
    }

    pub struct Versions;

    impl super::Model for Versions {
        type State = i32;
        type Input = Input;
        type Output = Output;
        fn init(&self) -> i32 {
            0
        }
        fn step(&self, s: &i32, i: &Input, o: Option<&Output>) -> Option<i32> {
            match (i, o) {
                (Input::SetData { expect, .. }, None) => Some(if *expect == -1 || expect == s {
                    s + 1
                } else {
                    *s
                }),
                (Input::SetData { expect, .. }, Some(Output::Version(v))) => {
                    ((*expect == -1 || expect == s) && *v == s + 1).then_some(*v)
                }
                (Input::SetData { expect, .. }, Some(Output::BadVersion)) => {
                    (*expect != -1 && expect != s).then_some(*s)
                }
                (Input::ReadVersion { .. }, None) => Some(*s),
                (Input::ReadVersion { .. }, Some(Output::Version(v))) => (v == s).then_some(*s),
                (Input::ReadVersion { .. }, Some(Output::BadVersion)) => None,
            }
        }
    }
}
