//! One connection's watches and how change events trigger them, as
//! ZooKeeper 3.8's `DataTree` keeps them: two watch managers (data and
//! child), each mapping a path to a mode. `addWatch` puts its mode in both;
//! a later one-shot watch on the same path and manager replaces the mode
//! (`WatcherModeManager.setWatcherMode`), exactly as the real server does.
//!
//! A connection is one watcher, so each event yields at most one
//! notification per connection however many of its watches match.

use std::collections::HashMap;

use janus_core::Event;

use crate::proto::{event_type, watcher_type};

/// `WatcherMode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// One-shot (getData, exists, getChildren).
    Standard,
    /// addWatch PERSISTENT.
    Persistent,
    /// addWatch PERSISTENT_RECURSIVE.
    Recursive,
}

/// `WatchManager`, reduced to one watcher.
#[derive(Debug, Default)]
pub struct Manager(HashMap<String, Mode>);

impl Manager {
    pub fn set(&mut self, path: String, mode: Mode) {
        self.0.insert(path, mode);
    }

    pub fn contains(&self, path: &str) -> bool {
        self.0.contains_key(path)
    }

    pub fn remove(&mut self, path: &str) -> bool {
        self.0.remove(path).is_some()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn paths(&self) -> impl Iterator<Item = &String> {
        self.0.keys()
    }

    /// `WatchManager.triggerWatch`: the path's own watch fires (and goes if
    /// one-shot); an ancestor's watch fires only if recursive, and
    /// recursive watches never fire for NodeChildrenChanged.
    fn trigger(&mut self, path: &str, ty: i32) -> bool {
        if self.0.is_empty() {
            return false;
        }
        let mut fired = false;
        for (i, p) in self_and_ancestors(path).enumerate() {
            match self.0.get(p) {
                None => {}
                Some(Mode::Recursive) => fired |= ty != event_type::NODE_CHILDREN_CHANGED,
                Some(mode) if i == 0 => {
                    fired = true;
                    if *mode == Mode::Standard {
                        self.0.remove(p);
                    }
                }
                Some(_) => {}
            }
        }
        fired
    }
}

#[derive(Debug, Default)]
pub struct Watches {
    /// `DataTree.dataWatches`: getData, exists, addWatch.
    pub data: Manager,
    /// `DataTree.childWatches`: getChildren, addWatch.
    pub child: Manager,
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
        self.data.len() + self.child.len()
    }

    /// `DataTree.addWatch`: the mode goes into both managers.
    pub fn add(&mut self, path: String, mode: Mode) {
        self.data.set(path.clone(), mode);
        self.child.set(path, mode);
    }

    /// The notification (event type, path) `ev` gives this connection, if
    /// any, following the trigger calls of `DataTree`'s create, delete and
    /// setData (a delete triggers both managers but notifies once).
    pub fn trigger(&mut self, ev: &Event) -> Option<(i32, String)> {
        let (ty, path, fired) = match ev {
            Event::ZkCreated { path, .. } => (
                event_type::NODE_CREATED,
                path,
                self.data.trigger(path, event_type::NODE_CREATED),
            ),
            Event::ZkDeleted { path, .. } => {
                let d = self.data.trigger(path, event_type::NODE_DELETED);
                let c = self.child.trigger(path, event_type::NODE_DELETED);
                (event_type::NODE_DELETED, path, d | c)
            }
            Event::ZkDataChanged { path, .. } => (
                event_type::NODE_DATA_CHANGED,
                path,
                self.data.trigger(path, event_type::NODE_DATA_CHANGED),
            ),
            Event::ZkChildrenChanged { path, .. } => (
                event_type::NODE_CHILDREN_CHANGED,
                path,
                self.child.trigger(path, event_type::NODE_CHILDREN_CHANGED),
            ),
            _ => return None,
        };
        fired.then(|| (ty, path.clone()))
    }

    /// checkWatches (`remove` false) / removeWatches (`remove` true) with a
    /// `WatcherType` (`DataTree.containsWatcher` / `removeWatch`): whether a
    /// watch of that kind on `path` existed; `None` for a type ZooKeeper
    /// cannot decode (it answers MARSHALLINGERROR).
    pub fn check_or_remove(&mut self, path: &str, wtype: i32, remove: bool) -> Option<bool> {
        let one = |m: &mut Manager| {
            if remove {
                m.remove(path)
            } else {
                m.contains(path)
            }
        };
        Some(match wtype {
            watcher_type::CHILDREN => one(&mut self.child),
            watcher_type::DATA => one(&mut self.data),
            watcher_type::ANY => {
                let c = one(&mut self.child);
                let d = one(&mut self.data);
                c | d
            }
            // ZooKeeper 3.9's types (3.8 answers MARSHALLINGERROR): the
            // watches of that mode, wherever addWatch put them.
            watcher_type::PERSISTENT | watcher_type::PERSISTENT_RECURSIVE => {
                let mode = if wtype == watcher_type::PERSISTENT {
                    Mode::Persistent
                } else {
                    Mode::Recursive
                };
                let mut hit = false;
                for m in [&mut self.data, &mut self.child] {
                    if m.0.get(path) == Some(&mode) {
                        hit = true;
                        if remove {
                            m.0.remove(path);
                        }
                    }
                }
                hit
            }
            _ => return None,
        })
    }

    /// Every watched path (for `wchp`/`wchc`).
    pub fn paths(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .data
            .paths()
            .chain(self.child.paths())
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
        Event::ZkCreated {
            path: p.into(),
            acl: vec![],
        }
    }
    fn deleted(p: &str) -> Event {
        Event::ZkDeleted {
            path: p.into(),
            acl: vec![],
        }
    }
    fn children(p: &str) -> Event {
        Event::ZkChildrenChanged {
            path: p.into(),
            acl: vec![],
        }
    }
    fn changed(p: &str) -> Event {
        Event::ZkDataChanged {
            path: p.into(),
            acl: vec![],
        }
    }

    #[test]
    fn one_shot_watches_fire_once() {
        let mut w = Watches::default();
        w.data.set("/a".into(), Mode::Standard);
        w.child.set("/a".into(), Mode::Standard);
        assert_eq!(
            w.trigger(&deleted("/a")),
            Some((event_type::NODE_DELETED, "/a".into()))
        );
        assert_eq!(w.trigger(&deleted("/a")), None);
        assert_eq!(w.count(), 0);
        w.data.set("/x".into(), Mode::Standard);
        assert_eq!(
            w.trigger(&created("/x")),
            Some((event_type::NODE_CREATED, "/x".into()))
        );
        assert_eq!(w.trigger(&children("/")), None);
    }

    #[test]
    fn persistent_and_recursive() {
        let mut w = Watches::default();
        w.add("/p".into(), Mode::Persistent);
        w.add("/r".into(), Mode::Recursive);
        assert!(w.trigger(&children("/p")).is_some());
        assert!(w.trigger(&children("/p")).is_some());
        assert!(
            w.trigger(&children("/r")).is_none(),
            "recursive watches get no child events"
        );
        assert!(w.trigger(&created("/r/a/b")).is_some());
        assert!(w.trigger(&created("/p/a")).is_none());
        assert!(w.trigger(&deleted("/r")).is_some());
        assert_eq!(w.count(), 4);
        assert_eq!(w.check_or_remove("/r", watcher_type::ANY, true), Some(true));
        assert_eq!(
            w.check_or_remove("/r", watcher_type::ANY, false),
            Some(false)
        );
        assert_eq!(w.check_or_remove("/r", 9, false), None);
        w.add("/r".into(), Mode::Recursive);
        assert_eq!(
            w.check_or_remove("/r", watcher_type::PERSISTENT, false),
            Some(false)
        );
        assert_eq!(
            w.check_or_remove("/r", watcher_type::PERSISTENT_RECURSIVE, true),
            Some(true)
        );
        assert_eq!(w.count(), 2);
        assert_eq!(
            self_and_ancestors("/a/b").collect::<Vec<_>>(),
            vec!["/a/b", "/a", "/"]
        );
    }

    #[test]
    fn one_shot_watch_replaces_persistent_mode_as_zookeeper_3_8() {
        let mut w = Watches::default();
        w.add("/p".into(), Mode::Persistent);
        w.data.set("/p".into(), Mode::Standard);
        assert!(w.trigger(&changed("/p")).is_some());
        assert!(w.trigger(&changed("/p")).is_none());
        // The child manager still holds the persistent watch.
        assert!(w.trigger(&children("/p")).is_some());
        assert!(w.trigger(&children("/p")).is_some());
    }

    #[test]
    fn recursive_watch_left_in_child_manager_sees_deletes_below() {
        let mut w = Watches::default();
        w.add("/r".into(), Mode::Recursive);
        assert_eq!(
            w.check_or_remove("/r", watcher_type::DATA, true),
            Some(true)
        );
        assert!(w.trigger(&created("/r/a")).is_none());
        assert!(w.trigger(&changed("/r/a")).is_none());
        assert!(w.trigger(&deleted("/r/a")).is_some());
    }
}
