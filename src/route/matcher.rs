//! A set of whole-string regexes that reports *every* pattern matching the
//! whole input, built in time linear in the patterns for the common shape.
//!
//! # Semantics
//!
//! Routing needs "the lowest-priority friend among all fully matching
//! patterns, skipping the caller", so leftmost-first semantics (which
//! report one pattern) are not enough. Callers number patterns so that a
//! lower ID is a better answer; [`PatternSet::best_match`] returns the
//! lowest ID that matches the whole input and that the caller accepts.
//!
//! # Construction: a literal-prefix trie, and a DFA for the rest
//!
//! Patterns of the shape `LITERAL DIGITS` (`\+34944[0-9]{6}`, `2[0-9]{3}`,
//! `0034[0-9]{9}`, `00[0-9]+`; recognised by `config::values::simple_pattern`)
//! go into a [`PrefixTrie`]. Everything else is compiled into one anchored
//! multi-pattern dense DFA with [`MatchKind::All`]: a lookup walks the whole
//! input from the anchored start state, takes the end-of-input transition
//! and reads the pattern IDs of that final match state, which are exactly
//! the patterns matching the whole string. Both halves run and the lower
//! ID wins; a test checks they agree on random patterns and inputs.
//!
//! Measured on this 2-core machine (release, `benches/route.rs`):
//!
//! | construction | 10,000 patterns | 100,000 patterns |
//! |---|---|---|
//! | dense DFA, default `StartKind::Both` | > 120 s (stopped) | — |
//! | dense DFA, anchored start only | 0.13–0.25 s, 2–4 MiB | 1.7–4 s, 17–32 MiB |
//! | trie (+ DFA for non-simple patterns) | 0.009 s, 0.6 MiB | 0.08 s, 3 MiB |
//!
//! An unanchored start adds a `(?s:.)*?` prefix under which every pattern
//! can start at every position, and with `MatchKind::All` the subset
//! construction explodes; so the DFA here is anchored only, uses ASCII
//! classes (`\d` is `[0-9]`), and has no capture states. Even so,
//! determinization dominated the profile of 10,000 companies × 30
//! patterns (4 s on two cores), which the trie brought to 0.35 s. Lookup
//! costs are alike (a dozen memory reads). A lazy DFA (`hybrid`) was
//! rejected: it needs a mutable cache per thread on the hot path, and its
//! first lookups after a reload pay the determinization. Explicit size
//! limits turn a pathological non-simple pattern set into a configuration
//! error instead of an OOM.

use regex_automata::dfa::{dense, Automaton, StartKind};
use regex_automata::nfa::thompson;
use regex_automata::util::primitives::StateID;
use regex_automata::util::start;
use regex_automata::{Anchored, MatchKind};

use crate::config::values;

use super::prefix::PrefixTrie;

/// Default cap on the memory of one compiled DFA (and of its construction).
pub const DEFAULT_SIZE_LIMIT: usize = 256 << 20;

/// Why a pattern set did not compile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MatcherError {
    /// The DFA (or the NFA, or determinization) would exceed the size limit.
    TooLarge(String),
    /// The engine refused a pattern (syntax validated earlier, so this is
    /// an unsupported feature such as a Unicode word boundary).
    Pattern(String),
}

/// Compiled whole-string regexes; see the module doc.
#[derive(Debug, Clone)]
pub struct PatternSet {
    /// Simple patterns (literal then digits), by their global id.
    trie: PrefixTrie,
    /// The other patterns; DFA pattern `j` is global id `dfa_ids[j]`.
    dfa: Option<(dense::DFA<Vec<u32>>, StateID)>,
    dfa_ids: Vec<u32>,
    len: usize,
}

impl PatternSet {
    /// A set that matches nothing.
    pub fn empty() -> PatternSet {
        PatternSet {
            trie: PrefixTrie::default(),
            dfa: None,
            dfa_ids: Vec::new(),
            len: 0,
        }
    }

    /// Compiles `patterns`; pattern `i` is reported as ID `i`.
    pub fn build<P: AsRef<str>>(
        patterns: &[P],
        size_limit: usize,
    ) -> Result<PatternSet, MatcherError> {
        let mut simple = Vec::new();
        let mut complex: Vec<&str> = Vec::new();
        let mut dfa_ids = Vec::new();
        for (i, p) in patterns.iter().enumerate() {
            match values::simple_pattern(p.as_ref()) {
                Some(sp) => simple.push((i as u32, sp)),
                None => {
                    complex.push(p.as_ref());
                    dfa_ids.push(i as u32);
                }
            }
        }
        let trie = if simple.is_empty() {
            PrefixTrie::default()
        } else {
            PrefixTrie::build(&simple)
        };
        let dfa = if complex.is_empty() {
            None
        } else {
            Some(Self::build_dfa(&complex, size_limit)?)
        };
        Ok(PatternSet {
            trie,
            dfa,
            dfa_ids,
            len: patterns.len(),
        })
    }

    fn build_dfa(
        patterns: &[&str],
        size_limit: usize,
    ) -> Result<(dense::DFA<Vec<u32>>, StateID), MatcherError> {
        let too_large = || {
            MatcherError::TooLarge(format!(
                "{} patterns exceed the {} MiB limit",
                patterns.len(),
                size_limit >> 20
            ))
        };
        let nfa = thompson::Compiler::new()
            .syntax(values::regex_syntax())
            .configure(
                thompson::Config::new()
                    .which_captures(thompson::WhichCaptures::None)
                    .nfa_size_limit(Some(size_limit)),
            )
            .build_many(patterns)
            .map_err(|e| {
                if e.size_limit().is_some() {
                    too_large()
                } else {
                    MatcherError::Pattern(error_chain(&e))
                }
            })?;
        let dfa = dense::Builder::new()
            .configure(
                dense::Config::new()
                    .match_kind(MatchKind::All)
                    .start_kind(StartKind::Anchored)
                    .dfa_size_limit(Some(size_limit))
                    .determinize_size_limit(Some(size_limit)),
            )
            .build_from_nfa(&nfa)
            .map_err(|e| {
                if e.is_size_limit_exceeded() {
                    too_large()
                } else {
                    MatcherError::Pattern(error_chain(&e))
                }
            })?;
        let start = dfa
            .start_state(&start::Config::new().anchored(Anchored::Yes))
            .map_err(|e| MatcherError::Pattern(e.to_string()))?;
        Ok((dfa, start))
    }

    /// Number of patterns.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when the set has no pattern.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Heap bytes used by the DFA.
    pub fn memory_usage(&self) -> usize {
        self.trie.memory_usage()
            + self.dfa_ids.capacity() * 4
            + self.dfa.as_ref().map_or(0, |(d, _)| d.memory_usage())
    }

    /// The lowest pattern ID that matches the whole of `input` and for
    /// which `accept` returns true; `None` when there is none.
    #[inline]
    pub fn best_match(&self, input: &[u8], mut accept: impl FnMut(usize) -> bool) -> Option<usize> {
        let mut accept = |id: u32| accept(id as usize);
        let best = self.trie.best_match(input, None, &mut accept);
        match self.dfa_best(input, best, &mut accept) {
            Some(id) => Some(id as usize),
            None => best.map(|id| id as usize),
        }
    }

    /// The DFA half of [`PatternSet::best_match`]: the lowest accepted id
    /// below `bound`.
    #[inline]
    fn dfa_best(
        &self,
        input: &[u8],
        bound: Option<u32>,
        accept: &mut impl FnMut(u32) -> bool,
    ) -> Option<u32> {
        let (dfa, start) = self.dfa.as_ref()?;
        let mut state = *start;
        for &byte in input {
            state = dfa.next_state(state, byte);
            // Dead: no pattern can match any continuation. (No quit bytes
            // are configured, so there is no quit state to handle.)
            if dfa.is_dead_state(state) {
                return None;
            }
        }
        state = dfa.next_eoi_state(state);
        if !dfa.is_match_state(state) {
            return None;
        }
        // The EOI state's matches are exactly the patterns ending at the end
        // of input; the start is anchored, so they cover the whole input.
        let mut best = bound;
        let mut found = None;
        for i in 0..dfa.match_len(state) {
            let id = self.dfa_ids[dfa.match_pattern(state, i).as_usize()];
            if best.is_none_or(|b| id < b) && accept(id) {
                best = Some(id);
                found = Some(id);
            }
        }
        found
    }

    /// Every pattern ID matching the whole of `input`, ascending (for
    /// tests and explanations; allocates).
    pub fn all_matches(&self, input: &[u8]) -> Vec<usize> {
        let mut out = Vec::new();
        self.best_match(input, |id| {
            out.push(id);
            false
        });
        out.sort_unstable();
        out
    }
}

/// An error and its sources on one line.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out.replace('\n', " ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_string_and_all_matches() {
        // Ids 0, 2, 3 are simple (trie); 1 and 4 go through the DFA.
        let set = PatternSet::build(
            &["2[0-9]{3}", "(2)[0-9]{3}", "20[0-9]+", "\\d+", "[0-9]{5}"],
            DEFAULT_SIZE_LIMIT,
        )
        .unwrap();
        for (input, want) in [
            ("2001", vec![0, 1, 2, 3]),
            ("12001", vec![3, 4]),
            ("20011", vec![2, 3, 4]),
            ("2a01", vec![]),
            ("2x01", vec![]),
            ("", vec![]),
        ] {
            assert_eq!(set.all_matches(input.as_bytes()), want, "{input}");
        }
        assert_eq!(set.best_match(b"2001", |id| id != 0), Some(1));
        assert_eq!(set.best_match(b"2001", |id| id > 2), Some(3));
        assert_eq!(set.best_match(b"2001", |id| id > 0), Some(1));
        assert_eq!(set.best_match(b"12001", |id| id != 3), Some(4));
        assert_eq!(PatternSet::empty().best_match(b"2001", |_| true), None);
    }

    /// The trie and the DFA must agree on every input: the same patterns
    /// wrapped in `(?:…)` take the DFA path.
    #[test]
    fn trie_agrees_with_dfa() {
        let mut x: u64 = 42;
        let mut next = move |n: u64| {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (x >> 33) % n
        };
        let digits = |k: u64, next: &mut dyn FnMut(u64) -> u64| -> String {
            (0..k).map(|_| char::from(b'0' + next(3) as u8)).collect()
        };
        let mut patterns = Vec::new();
        for _ in 0..300 {
            let lit = digits(next(4), &mut next);
            let plus = if next(3) == 0 { "\\+" } else { "" };
            let quant = match next(6) {
                0 => String::new(),
                1 => "+".into(),
                2 => "*".into(),
                3 => "?".into(),
                4 => format!("{{{}}}", next(4)),
                _ => format!("{{{},{}}}", next(2), 2 + next(3)),
            };
            let class = if next(2) == 0 { "[0-9]" } else { "\\d" };
            patterns.push(format!("{plus}{lit}{class}{quant}"));
        }
        let fast = PatternSet::build(&patterns, DEFAULT_SIZE_LIMIT).unwrap();
        assert_eq!(fast.dfa_ids.len(), 0, "all simple");
        let wrapped: Vec<String> = patterns.iter().map(|p| format!("(?:{p})")).collect();
        let slow = PatternSet::build(&wrapped, DEFAULT_SIZE_LIMIT).unwrap();
        assert_eq!(slow.dfa_ids.len(), patterns.len(), "all through the DFA");
        for _ in 0..3000 {
            let plus = if next(4) == 0 { "+" } else { "" };
            let input = format!("{plus}{}", digits(next(8), &mut next));
            let input = if next(20) == 0 {
                format!("{input}x")
            } else {
                input
            };
            assert_eq!(
                fast.all_matches(input.as_bytes()),
                slow.all_matches(input.as_bytes()),
                "{input}"
            );
        }
    }

    #[test]
    fn size_limit_is_an_error() {
        // Parenthesised, so they take the DFA path (the trie has no limit
        // to hit: it is linear in the patterns' length).
        let patterns: Vec<String> = (0..200).map(|i| format!("({i})[0-9]{{6}}")).collect();
        match PatternSet::build(&patterns, 1 << 10) {
            Err(MatcherError::TooLarge(_)) => {}
            other => panic!("{:?}", other.err()),
        }
    }
}
