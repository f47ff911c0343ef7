//! One connection's watches and how change events trigger them
//! (ZooKeeper's `WatchManager` and `DataTree` trigger points).
//!
//! A connection is one watcher, so each event yields at most one
//! notification per connection however many of its watches match.

use std::collections::HashSet;

use janus_core::Event;

use crate::proto::{event_type, watcher_type};

#[derive(Debug, Default)]
pub struct Watches {
    /// One-shot data watches (getData, exists on an existing or missing node).
    pub data: HashSet<String>,
    /// One-shot child watches (getChildren).
    pub child: HashSet<String>,
    /// addWatch PERSISTENT: data + child events of the path, kept.
    pub persistent: HashSet<String>,
    /// addWatch PERSISTENT_RECURSIVE: data events of the path and below, kept.
    pub recursive: HashSet<String>,
}

/// `/a/b` → `/a/b`, `/a`, `/`.
fn self_and_ancestors(path: &str) -> impl Iterator<Item = &str> {
    let mut next = Some(path);
    std::iter::from_fn(move || {
        let cur = next?;
        next = if cur == "/" {
            None
        } else {
            match cur.rfind('/') {
                Some(0) => Some("/"),
                Some(i) => Some(&cur[..i]),
                None => None,
            }
        };
        Some(cur)
    })
}

impl Watches {
    pub fn count(&self) -> usize {
        self.data.len() + self.child.len() + self.persistent.len() + self.recursive.len()
    }

    fn recursive_hit(&self, path: &str) -> bool {
        !self.recursive.is_empty() && self_and_ancestors(path).any(|p| self.recursive.contains(p))
    }

    /// The notification (event type, path) `ev` gives this connection, if
    /// any; one-shot watches that fire are removed.
    pub fn trigger(&mut self, ev: &Event) -> Option<(i32, String)> {
        let (ty, path, fired) = match ev {
            Event::ZkCreated { path } => {
                let d = self.data.remove(path);
                (
                    event_type::NODE_CREATED,
                    path,
                    d | self.persistent.contains(path) | self.recursive_hit(path),
                )
            }
            Event::ZkDeleted { path } => {
                let d = self.data.remove(path);
                let c = self.child.remove(path);
                (
                    event_type::NODE_DELETED,
                    path,
                    d | c | self.persistent.contains(path) | self.recursive_hit(path),
                )
            }
            Event::ZkDataChanged { path } => {
                let d = self.data.remove(path);
                (
                    event_type::NODE_DATA_CHANGED,
                    path,
                    d | self.persistent.contains(path) | self.recursive_hit(path),
                )
            }
            Event::ZkChildrenChanged { path } => {
                let c = self.child.remove(path);
                (
                    event_type::NODE_CHILDREN_CHANGED,
                    path,
                    c | self.persistent.contains(path),
                )
            }
            _ => return None,
        };
        fired.then(|| (ty, path.clone()))
    }

    /// checkWatches (`remove` false) / removeWatches (`remove` true):
    /// whether a watch of `wtype` on `path` existed.
    pub fn check_or_remove(&mut self, path: &str, wtype: i32, remove: bool) -> bool {
        let mut hit = false;
        let mut one = |set: &mut HashSet<String>| {
            let had = if remove {
                set.remove(path)
            } else {
                set.contains(path)
            };
            hit |= had;
        };
        match wtype {
            watcher_type::CHILDREN => one(&mut self.child),
            watcher_type::DATA => one(&mut self.data),
            watcher_type::ANY => {
                one(&mut self.data);
                one(&mut self.child);
                one(&mut self.persistent);
                one(&mut self.recursive);
            }
            watcher_type::PERSISTENT => one(&mut self.persistent),
            watcher_type::PERSISTENT_RECURSIVE => one(&mut self.recursive),
            _ => {}
        }
        hit
    }

    /// Every watched path (for `wchp`/`wchc`).
    pub fn paths(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .data
            .iter()
            .chain(&self.child)
            .chain(&self.persistent)
            .chain(&self.recursive)
            .cloned()
            .collect();
        v.sort();
        v.dedup();
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn created(p: &str) -> Event {
        Event::ZkCreated { path: p.into() }
    }
    fn deleted(p: &str) -> Event {
        Event::ZkDeleted { path: p.into() }
    }
    fn children(p: &str) -> Event {
        Event::ZkChildrenChanged { path: p.into() }
    }

    #[test]
    fn one_shot_watches_fire_once() {
        let mut w = Watches::default();
        w.data.insert("/a".into());
        w.child.insert("/a".into());
        assert_eq!(
            w.trigger(&deleted("/a")),
            Some((event_type::NODE_DELETED, "/a".into()))
        );
        assert_eq!(w.trigger(&deleted("/a")), None);
        assert_eq!(w.count(), 0);
        w.data.insert("/x".into());
        assert_eq!(
            w.trigger(&created("/x")),
            Some((event_type::NODE_CREATED, "/x".into()))
        );
        assert_eq!(w.trigger(&children("/")), None);
    }

    #[test]
    fn persistent_and_recursive() {
        let mut w = Watches::default();
        w.persistent.insert("/p".into());
        w.recursive.insert("/r".into());
        assert!(w.trigger(&children("/p")).is_some());
        assert!(w.trigger(&children("/p")).is_some());
        assert!(
            w.trigger(&children("/r")).is_none(),
            "recursive watches get no child events"
        );
        assert!(w.trigger(&created("/r/a/b")).is_some());
        assert!(w.trigger(&created("/p/a")).is_none());
        assert!(w.trigger(&deleted("/r")).is_some());
        assert_eq!(w.count(), 2);
        assert!(w.check_or_remove("/r", watcher_type::ANY, true));
        assert!(!w.check_or_remove("/r", watcher_type::ANY, false));
        assert_eq!(
            self_and_ancestors("/a/b").collect::<Vec<_>>(),
            vec!["/a/b", "/a", "/"]
        );
    }
}
