//! Drain's fixed-depth prefix tree.
//!
//! The first level is the service and the token count (templates belong to
//! one service, and Drain only compares lines of equal length); below it,
//! one level per leading token, `depth - 2` of them. A token that may vary
//! (digits or a placeholder) follows the `<*>` branch; so do new words once a
//! node has `max_children` children, which bounds the tree whatever the
//! lines. Leaves hold cluster ids.
//!
//! Nodes are only created with a cluster and a leaf never empties (merged
//! clusters leave their survivor in the same leaf), so the node count stays
//! below `max_clusters × (depth - 1)`.

use rustc_hash::FxHashMap;

use super::mask::MaskedLine;

#[derive(Debug, Default)]
struct Node {
    children: FxHashMap<Box<str>, u32>,
    wildcard: Option<u32>,
    clusters: Vec<u32>,
}

#[derive(Debug)]
pub(crate) struct Tree {
    roots: FxHashMap<(u32, u32), u32>,
    nodes: Vec<Node>,
    /// Token levels below the length level.
    levels: usize,
    max_children: usize,
}

impl Tree {
    pub(crate) fn new(depth: usize, max_children: usize) -> Self {
        Tree {
            roots: FxHashMap::default(),
            nodes: Vec::new(),
            levels: depth.saturating_sub(2),
            max_children,
        }
    }

    /// The leaf `line` belongs to, if the tree has one.
    pub(crate) fn find(&self, service: u32, line: &MaskedLine) -> Option<u32> {
        let mut node = *self.roots.get(&(service, line.len() as u32))?;
        for i in 0..self.levels.min(line.len()) {
            let n = &self.nodes[node as usize];
            let exact = if line.tokens[i].is_variable() {
                None
            } else {
                n.children.get(line.token(i)).copied()
            };
            node = exact.or(n.wildcard)?;
        }
        Some(node)
    }

    /// The leaf for `line`, creating the path to it.
    pub(crate) fn insert(&mut self, service: u32, line: &MaskedLine) -> u32 {
        let key = (service, line.len() as u32);
        let mut node = match self.roots.get(&key) {
            Some(n) => *n,
            None => {
                let n = self.new_node();
                self.roots.insert(key, n);
                n
            }
        };
        for i in 0..self.levels.min(line.len()) {
            node = self.child(node, line, i);
        }
        node
    }

    fn new_node(&mut self) -> u32 {
        self.nodes.push(Node::default());
        (self.nodes.len() - 1) as u32
    }

    /// Drain's rule for a token's child: its own while there is room (the
    /// `<*>` child counting as one), else the `<*>` child.
    fn child(&mut self, node: u32, line: &MaskedLine, i: usize) -> u32 {
        let token = line.token(i);
        let n = &self.nodes[node as usize];
        if !line.tokens[i].is_variable() {
            if let Some(c) = n.children.get(token) {
                return *c;
            }
            let total = n.children.len() + usize::from(n.wildcard.is_some());
            let room = if n.wildcard.is_some() {
                total < self.max_children
            } else {
                total + 1 < self.max_children
            };
            if room {
                let c = self.new_node();
                self.nodes[node as usize].children.insert(token.into(), c);
                return c;
            }
        }
        match self.nodes[node as usize].wildcard {
            Some(c) => c,
            None => {
                let c = self.new_node();
                self.nodes[node as usize].wildcard = Some(c);
                c
            }
        }
    }

    pub(crate) fn clusters(&self, leaf: u32) -> &[u32] {
        self.nodes
            .get(leaf as usize)
            .map_or(&[][..], |n| &n.clusters)
    }

    pub(crate) fn add(&mut self, leaf: u32, cluster: u32) {
        if let Some(n) = self.nodes.get_mut(leaf as usize) {
            n.clusters.push(cluster);
        }
    }

    pub(crate) fn remove(&mut self, leaf: u32, cluster: u32) {
        if let Some(n) = self.nodes.get_mut(leaf as usize) {
            n.clusters.retain(|c| *c != cluster);
        }
    }

    #[cfg(test)]
    pub(crate) fn node_count(&self) -> usize {
        self.nodes.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(body: &str) -> MaskedLine {
        let mut l = MaskedLine::default();
        l.fill(body);
        l
    }

    #[test]
    fn paths_follow_words_and_send_variables_to_the_wildcard() {
        let mut tree = Tree::new(4, 100);
        let a = tree.insert(0, &line("cache miss key=1"));
        let b = tree.insert(0, &line("cache hit key=1"));
        assert_ne!(a, b, "a different constant word in the prefix");
        let c = tree.insert(0, &line("12 miss key=1"));
        assert_eq!(tree.find(0, &line("99 miss key=7")), Some(c));
        assert_eq!(tree.find(0, &line("cache miss key=2")), Some(a));
        assert_eq!(tree.find(0, &line("cache miss")), None, "another length");
        assert_eq!(
            tree.find(1, &line("cache miss key=2")),
            None,
            "another service"
        );
        assert_eq!(tree.find(0, &line("cache v2 key=2")), None);
    }

    #[test]
    fn children_are_bounded() {
        let mut tree = Tree::new(3, 4);
        let leaves: Vec<u32> = ["a", "b", "c", "d", "e", "f"]
            .iter()
            .map(|w| tree.insert(0, &line(&format!("{w} x"))))
            .collect();
        // Three words, then the wildcard child makes four.
        assert_ne!(leaves[2], leaves[3]);
        assert_eq!(leaves[3], leaves[4]);
        assert_eq!(leaves[3], leaves[5]);
        assert_eq!(tree.find(0, &line("zzz x")), Some(leaves[3]));
        assert_eq!(tree.find(0, &line("a x")), Some(leaves[0]));
        assert_eq!(tree.node_count(), 5);
    }
}
