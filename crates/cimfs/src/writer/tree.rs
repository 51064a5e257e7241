//! The in-memory namespace of an image being written: nodes (files and directories) with their
//! metadata and stream descriptors, directory entries keyed by upcased name, hard-link counts.
//! File data is never held here, only the region offsets it was written to.

use std::collections::{BTreeMap, HashMap};

use crate::format;

/// Index of a node in [`Tree::nodes`].
pub(crate) type NodeIx = usize;

pub(crate) const ROOT: NodeIx = 0;

/// One directory entry: the name as given and the node it names.
#[derive(Clone, Debug)]
pub(crate) struct Entry {
    pub(crate) name: Vec<u16>,
    pub(crate) node: NodeIx,
}

#[derive(Clone, Debug)]
pub(crate) enum Kind {
    /// Children keyed by upcased UTF-16 name, so iteration order is link-table order.
    Dir(BTreeMap<Vec<u16>, Entry>),
    File(format::Stream),
}

/// An alternate data stream: stored name, upcased key, descriptor.
#[derive(Clone, Debug)]
pub(crate) struct Ads {
    pub(crate) name: Vec<u16>,
    pub(crate) key: Vec<u16>,
    pub(crate) stream: format::Stream,
}

#[derive(Clone, Debug)]
pub(crate) struct Node {
    pub(crate) flags: u16,
    pub(crate) times: [u64; 4],
    /// Index into [`SecurityDescriptors`].
    pub(crate) sd: u32,
    pub(crate) kind: Kind,
    /// Number of directory entries naming this node (the root counts as linked once).
    pub(crate) links: u32,
    /// EAs, reparse buffer and alternate streams; `None` for the many entries with none, so a
    /// node stays small (an image may hold millions).
    extra: Option<Box<Extra>>,
}

/// What most nodes lack.
#[derive(Clone, Debug, Default)]
struct Extra {
    ea: Vec<u8>,
    reparse: Vec<u8>,
    streams: Vec<Ads>,
}

impl Node {
    /// A node of `kind` with no metadata yet (zero times, SD index `sd`), linked once.
    pub(crate) fn new(kind: Kind, sd: u32) -> Node {
        Node {
            flags: 0,
            times: [0; 4],
            sd,
            kind,
            links: 1,
            extra: None,
        }
    }

    pub(crate) fn is_dir(&self) -> bool {
        matches!(self.kind, Kind::Dir(_))
    }

    /// Packed extended attributes (empty when none).
    pub(crate) fn ea(&self) -> &[u8] {
        self.extra.as_ref().map_or(&[], |e| &e.ea)
    }

    /// Reparse buffer (empty when none).
    pub(crate) fn reparse(&self) -> &[u8] {
        self.extra.as_ref().map_or(&[], |e| &e.reparse)
    }

    /// Alternate data streams.
    pub(crate) fn streams(&self) -> &[Ads] {
        self.extra.as_ref().map_or(&[], |e| &e.streams)
    }

    /// Alternate data streams, to change.
    pub(crate) fn streams_mut(&mut self) -> &mut Vec<Ads> {
        &mut self.extra.get_or_insert_with(Box::default).streams
    }

    /// Drops the boxed part when it holds nothing.
    fn shrink(&mut self) {
        if self
            .extra
            .as_ref()
            .is_some_and(|e| e.ea.is_empty() && e.reparse.is_empty() && e.streams.is_empty())
        {
            self.extra = None;
        }
    }

    /// Sets everything but the kind, streams and link count.
    pub(crate) fn set_metadata(
        &mut self,
        flags: u16,
        times: [u64; 4],
        sd: u32,
        ea: &[u8],
        reparse: &[u8],
    ) {
        self.flags = flags;
        self.times = times;
        self.sd = sd;
        if ea.is_empty() && reparse.is_empty() && self.extra.is_none() {
            return;
        }
        let extra = self.extra.get_or_insert_with(Box::default);
        extra.ea = ea.to_vec();
        extra.reparse = reparse.to_vec();
        self.shrink();
    }

    /// Replaces the alternate data streams.
    pub(crate) fn set_streams(&mut self, streams: Vec<Ads>) {
        if streams.is_empty() && self.extra.is_none() {
            return;
        }
        *self.streams_mut() = streams;
        self.shrink();
    }

    /// Removes the alternate stream at `i`.
    pub(crate) fn remove_stream(&mut self, i: usize) {
        if let Some(e) = self.extra.as_mut() {
            if i < e.streams.len() {
                e.streams.remove(i);
            }
        }
        self.shrink();
    }
}

/// Distinct security descriptors, each stored once in the metadata region.
#[derive(Default)]
pub(crate) struct SecurityDescriptors {
    pub(crate) list: Vec<Vec<u8>>,
    index: HashMap<Vec<u8>, u32>,
}

impl SecurityDescriptors {
    pub(crate) fn intern(&mut self, sd: &[u8]) -> u32 {
        if let Some(&i) = self.index.get(sd) {
            return i;
        }
        let i = self.list.len() as u32;
        self.list.push(sd.to_vec());
        self.index.insert(sd.to_vec(), i);
        i
    }

    /// [`Self::intern`], storing the null-DACL descriptor hcsshim passes when `sd` is empty.
    pub(crate) fn intern_or_null(&mut self, sd: &[u8]) -> u32 {
        if sd.is_empty() {
            self.intern(&format::NULL_DACL_SD)
        } else {
            self.intern(sd)
        }
    }
}

pub(crate) struct Tree {
    pub(crate) nodes: Vec<Node>,
    pub(crate) sds: SecurityDescriptors,
}

impl Tree {
    /// A tree holding only an empty root directory with the null-DACL security descriptor.
    pub(crate) fn new() -> Tree {
        let mut sds = SecurityDescriptors::default();
        let sd = sds.intern(&format::NULL_DACL_SD);
        let root = Node::new(Kind::Dir(BTreeMap::new()), sd);
        Tree {
            nodes: vec![root],
            sds,
        }
    }

    pub(crate) fn push(&mut self, node: Node) -> NodeIx {
        self.nodes.push(node);
        self.nodes.len() - 1
    }

    pub(crate) fn children(&self, dir: NodeIx) -> Option<&BTreeMap<Vec<u16>, Entry>> {
        match &self.nodes[dir].kind {
            Kind::Dir(c) => Some(c),
            Kind::File(_) => None,
        }
    }

    pub(crate) fn children_mut(&mut self, dir: NodeIx) -> Option<&mut BTreeMap<Vec<u16>, Entry>> {
        match &mut self.nodes[dir].kind {
            Kind::Dir(c) => Some(c),
            Kind::File(_) => None,
        }
    }

    /// Drops one link to `node`; a directory that loses its last link releases its subtree.
    pub(crate) fn unlink(&mut self, node: NodeIx) {
        let mut stack = vec![node];
        while let Some(n) = stack.pop() {
            let nd = &mut self.nodes[n];
            nd.links = nd.links.saturating_sub(1);
            // A file's metadata is kept: `add_link` may give it a link again within the same operation.
            if nd.links == 0 {
                if let Kind::Dir(children) = &mut nd.kind {
                    stack.extend(std::mem::take(children).into_values().map(|e| e.node));
                }
            }
        }
    }

    /// Assigns file ids 1.. in breadth-first order from the root (children in link-table order).
    /// Returns `ids[node]` (0 for unreachable nodes), the nodes in id order, and each node's parent.
    pub(crate) fn assign_ids(&self) -> (Vec<u32>, Vec<NodeIx>, Vec<NodeIx>) {
        let mut ids = vec![0u32; self.nodes.len()];
        let mut parent = vec![ROOT; self.nodes.len()];
        let mut order = vec![ROOT];
        ids[ROOT] = 1;
        let mut i = 0;
        while i < order.len() {
            let n = order[i];
            i += 1;
            if let Kind::Dir(children) = &self.nodes[n].kind {
                for e in children.values() {
                    if ids[e.node] == 0 {
                        order.push(e.node);
                        ids[e.node] = order.len() as u32;
                        parent[e.node] = n;
                    }
                }
            }
        }
        (ids, order, parent)
    }
}
