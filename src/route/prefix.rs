//! A trie over the literal prefixes of simple patterns (`LITERAL` followed
//! by a run of digits), answering "which patterns match this whole input"
//! without a regex engine.
//!
//! Most real dial patterns are a literal then a digit count:
//! `\+34944[0-9]{6}`, `2[0-9]{3}`, `0034[0-9]{9}`. For those, a match is:
//! the input starts with the literal, and the rest is all digits with a
//! length in the pattern's range. The trie walks the input once; at each
//! node on the path it checks the patterns whose literal ends there.
//! Building it is linear in the total literal length, which is what lets
//! 10,000 companies or one company of 100,000 patterns build in well under
//! the DFA's time (determinization dominated the profile of the first
//! version: see docs/routing.md).

use crate::config::values::SimplePattern;

/// Patterns sharing a node (same literal) and the same digit range.
#[derive(Debug, Clone)]
struct Entry {
    min: u32,
    /// `u32::MAX` for unbounded.
    max: u32,
    /// Range in `PrefixTrie::ids`; the ids are ascending.
    ids: (u32, u32),
}

/// A trie node in compressed form: its edges and entries are ranges into
/// shared arrays, so a node costs 16 bytes.
#[derive(Debug, Clone, Copy, Default)]
struct Node {
    edges: (u32, u32),
    entries: (u32, u32),
}

/// The compiled trie; see the module doc.
#[derive(Debug, Clone, Default)]
pub struct PrefixTrie {
    nodes: Vec<Node>,
    /// Edge labels and targets, sorted by label within a node.
    edge_bytes: Vec<u8>,
    edge_targets: Vec<u32>,
    entries: Vec<Entry>,
    ids: Vec<u32>,
}

/// Mutable trie used while building.
#[derive(Default)]
struct BuildNode {
    edges: Vec<(u8, u32)>,
    entries: Vec<(u32, u32, Vec<u32>)>,
}

impl PrefixTrie {
    /// Builds the trie from `(id, pattern)` pairs; ids need not be sorted.
    pub fn build(patterns: &[(u32, SimplePattern)]) -> PrefixTrie {
        let mut nodes: Vec<BuildNode> = vec![BuildNode::default()];
        for (id, p) in patterns {
            let mut node = 0usize;
            for &byte in &p.literal {
                node = match nodes[node].edges.iter().find(|(b, _)| *b == byte) {
                    Some(&(_, next)) => next as usize,
                    None => {
                        let next = nodes.len();
                        nodes.push(BuildNode::default());
                        nodes[node].edges.push((byte, next as u32));
                        next
                    }
                };
            }
            let max = p.max.unwrap_or(u32::MAX);
            let entries = &mut nodes[node].entries;
            match entries.iter_mut().find(|e| e.0 == p.min && e.1 == max) {
                Some(e) => e.2.push(*id),
                None => entries.push((p.min, max, vec![*id])),
            }
        }
        let mut trie = PrefixTrie::default();
        trie.nodes.reserve(nodes.len());
        for mut n in nodes {
            n.edges.sort_unstable();
            let e0 = trie.edge_bytes.len() as u32;
            for (b, t) in &n.edges {
                trie.edge_bytes.push(*b);
                trie.edge_targets.push(*t);
            }
            let n0 = trie.entries.len() as u32;
            for (min, max, mut ids) in n.entries {
                ids.sort_unstable();
                let i0 = trie.ids.len() as u32;
                trie.ids.extend(ids);
                trie.entries.push(Entry {
                    min,
                    max,
                    ids: (i0, trie.ids.len() as u32),
                });
            }
            trie.nodes.push(Node {
                edges: (e0, trie.edge_bytes.len() as u32),
                entries: (n0, trie.entries.len() as u32),
            });
        }
        trie
    }

    /// Heap bytes used.
    pub fn memory_usage(&self) -> usize {
        self.nodes.capacity() * std::mem::size_of::<Node>()
            + self.edge_bytes.capacity()
            + self.edge_targets.capacity() * 4
            + self.entries.capacity() * std::mem::size_of::<Entry>()
            + self.ids.capacity() * 4
    }

    /// The lowest id below `bound` of a pattern matching the whole of
    /// `input` and accepted by `accept`.
    #[inline]
    pub fn best_match(
        &self,
        input: &[u8],
        bound: Option<u32>,
        accept: &mut impl FnMut(u32) -> bool,
    ) -> Option<u32> {
        if self.nodes.is_empty() {
            return None;
        }
        // The tail after a literal must be all digits: find where the
        // final run of digits starts.
        let digits_from = input.len()
            - input
                .iter()
                .rev()
                .take_while(|b| b.is_ascii_digit())
                .count();
        let mut best = bound;
        let mut found = None;
        let mut node = 0usize;
        let mut depth = 0usize;
        loop {
            let n = self.nodes[node];
            if depth >= digits_from && n.entries.0 != n.entries.1 {
                let rest = (input.len() - depth) as u32;
                for e in &self.entries[n.entries.0 as usize..n.entries.1 as usize] {
                    if rest < e.min || rest > e.max {
                        continue;
                    }
                    for &id in &self.ids[e.ids.0 as usize..e.ids.1 as usize] {
                        if best.is_some_and(|b| id >= b) {
                            break;
                        }
                        if accept(id) {
                            best = Some(id);
                            found = Some(id);
                            break;
                        }
                    }
                }
            }
            let Some(&byte) = input.get(depth) else { break };
            let labels = &self.edge_bytes[n.edges.0 as usize..n.edges.1 as usize];
            match labels.iter().position(|&b| b == byte) {
                Some(k) => node = self.edge_targets[n.edges.0 as usize + k] as usize,
                None => break,
            }
            depth += 1;
        }
        found
    }
}
