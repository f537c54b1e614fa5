//! The shortest completion of a constrained output: a breadth-first search over single bytes
//! from llguidance's current parser state. [`crate::guide::Guide`] uses it to keep every
//! constrained output completable within its token budget.
//!
//! llguidance has no "shortest completion" query, but its parser can be advanced speculatively
//! one byte at a time and rolled back (the `Recognizer` interface its token masks are computed
//! with), and a byte string can be checked for leading to an accepting state (validating it
//! followed by the end-of-sequence token). The search runs on those.
//!
//! The search is breadth-first, one string length at a time, so the first completion found is a
//! shortest one among the strings it keeps. Which strings it keeps is the cost question: the
//! exact search ([`Merge::Exact`]) merges only strings that differ inside the lexeme being read
//! (all plain characters of a JSON string lead to one state), and finds the shortest completion;
//! but a permissive schema (any extra property, any value) offers so many choices that it is
//! bounded by [`EXACT_NODES`], after which the approximate search ([`Merge::LexerState`]) merges
//! every string of a length that leaves the lexer in the same state and finds a completion that
//! may be a few bytes longer. Measured in the test build: from the empty output the exact
//! search found the shortest completion of every generated schema of the tests (up to 49 bytes,
//! in at most 4 ms; a unit test checks the lengths); from inside a nested object of a permissive
//! schema, 85 bytes from the end, it gave up and the approximate search found a completion 6
//! bytes longer than the shortest, 33 ms for both (about 5 µs per string).
//!
//! Every string the search keeps can still be completed (llguidance admits only viable bytes),
//! so it fails only by its node limits.

use std::collections::HashSet;
use std::hash::{DefaultHasher, Hash, Hasher};

use llguidance::derivre::StateID;
use llguidance::earley::ParserRecognizer;
use llguidance::toktrie::{Recognizer, TokTrie, TokenId};
use llguidance::TokenParser;

use crate::CoreError;

/// Largest number of byte strings the approximate search examines before giving up; bounds its
/// cost (each costs one speculative push of every byte of the alphabet).
pub(crate) const MAX_NODES: usize = 8192;

/// The vocabulary's single-byte tokens and the orders in which the search tries bytes.
pub(crate) struct ByteTokens {
    ids: [Option<TokenId>; 256],
    /// Printable ASCII bytes with a token, in search order.
    ascii: Vec<u8>,
    /// Every byte with a token, in search order.
    all: Vec<u8>,
}

impl ByteTokens {
    /// The single-byte tokens of `trie` (the lowest id where several tokens spell one byte).
    pub(crate) fn new(trie: &TokTrie) -> Self {
        let mut ids = [None; 256];
        for id in 0..trie.vocab_size() as TokenId {
            if let [b] = trie.token(id) {
                if *b != TokTrie::SPECIAL_TOKEN_MARKER && ids[*b as usize].is_none() {
                    ids[*b as usize] = Some(id);
                }
            }
        }
        let all: Vec<u8> =
            search_order().into_iter().filter(|&b| ids[b as usize].is_some()).collect();
        let ascii = all.iter().copied().filter(|b| (0x20..0x7f).contains(b)).collect();
        Self { ids, ascii, all }
    }

    /// The token spelling the single byte `b`, if the vocabulary has one.
    pub(crate) fn token(&self, b: u8) -> Option<TokenId> {
        self.ids[b as usize]
    }

    /// The single-byte tokens spelling `bytes`, in order (`None` if a byte has no token).
    pub(crate) fn tokens(&self, bytes: &[u8]) -> Option<Vec<TokenId>> {
        bytes.iter().map(|&b| self.token(b)).collect()
    }
}

/// Every byte once, in the order the search tries them, which decides between completions of
/// equal length: the string quote first (closing a string is the usual way out), digits and
/// letters next (a string or number that must grow is filled with plain characters), then JSON's
/// closing and separating punctuation, then everything else.
fn search_order() -> Vec<u8> {
    let mut order: Vec<u8> = b"\"".to_vec();
    order.extend(b'0'..=b'9');
    order.extend(b'a'..=b'z');
    order.extend(b'A'..=b'Z');
    order.extend_from_slice(b"]},:-. ");
    for b in 0..=255u8 {
        if !order.contains(&b) {
            order.push(b);
        }
    }
    order
}

/// The shortest byte string found that completes the output from `parser`'s current state
/// (empty when the output is already complete), or `None` when the searches give up.
///
/// Printable ASCII first, every byte only when no completion uses printable ASCII alone (a
/// regex or choice that needs other characters). Over each alphabet, first the exact search
/// (at most [`EXACT_NODES`] strings), then, when it gives up, the approximate one (at most
/// [`MAX_NODES`]). `eos` is an end-of-sequence token of the vocabulary.
pub(crate) fn shortest_completion(
    parser: &mut TokenParser,
    bytes: &ByteTokens,
    eos: TokenId,
) -> Result<Option<Vec<u8>>, CoreError> {
    if parser.is_accepting() {
        return Ok(Some(Vec::new()));
    }
    for alphabet in [&bytes.ascii, &bytes.all] {
        let mut outcome = search(parser, bytes, alphabet, eos, Merge::Exact)?;
        if matches!(outcome, Search::GaveUp) {
            outcome = search(parser, bytes, alphabet, eos, Merge::LexerState)?;
        }
        match outcome {
            Search::Found(path) => return Ok(Some(path)),
            Search::GaveUp => return Ok(None),
            Search::Exhausted => {}
        }
    }
    Ok(None)
}

/// Which byte strings of one search length count as one search state.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Merge {
    /// Strings that share every byte up to their last lexeme boundary and leave the lexer in
    /// the same state: they differ only inside the lexeme being read, so the parser is in the
    /// same state after both. Exact: the string found is the shortest over the alphabet. But
    /// states multiply with every choice the grammar offers (a schema that admits any extra
    /// property offers a great many), so it is limited to [`EXACT_NODES`] strings.
    Exact,
    /// Strings of one length that leave the lexer in the same state, whatever they are (the
    /// first in search order is kept). The parser may be in different states after them (two
    /// keys whose values differ), so the string found may be longer than the shortest; but
    /// every string the search keeps can still be completed, so it finds one, and a length
    /// has at most as many states as the lexer has.
    LexerState,
}

/// Strings the exact search examines before giving up.
pub(crate) const EXACT_NODES: usize = 2048;

/// How a search over one alphabet ended.
enum Search {
    /// A completion (the shortest over the alphabet for [`Merge::Exact`]).
    Found(Vec<u8>),
    /// No completion uses only the alphabet.
    Exhausted,
    /// Too many strings examined without a completion.
    GaveUp,
}

/// Breadth-first search over strings of `alphabet` bytes, one length at a time, for one that
/// leads to an accepting state. Each length is expanded in one speculative session of the
/// parser (moving from one string to the next pops and pushes only where they differ); the
/// strings that may be complete (they end a lexeme, or the lexeme they are in may end there)
/// are then checked by validating them followed by `eos`, in search order.
fn search(
    parser: &mut TokenParser,
    bytes: &ByteTokens,
    alphabet: &[u8],
    eos: TokenId,
    merge: Merge,
) -> Result<Search, CoreError> {
    let limit = match merge {
        Merge::Exact => EXACT_NODES,
        Merge::LexerState => MAX_NODES,
    };
    // node 0 is the current state
    let mut nodes = vec![Node { parent: usize::MAX, byte: 0, closed: 0 }];
    let mut seen: HashSet<(StateID, u64)> = HashSet::new();
    let mut level = vec![0usize];
    let mut target = Vec::new();
    let mut check = Vec::new();
    while !level.is_empty() {
        if merge == Merge::LexerState {
            seen.clear();
        }
        let mut next = Vec::new();
        let mut maybe_complete = Vec::new();
        let mut gave_up = false;
        parser.parser.with_recognizer(|rec| {
            rec.trie_started("closing");
            let mut pushed: Vec<u8> = Vec::new();
            'nodes: for &node in &level {
                path_to(&nodes, node, &mut target);
                let common = pushed.iter().zip(&target).take_while(|(a, b)| a == b).count();
                rec.pop_bytes(pushed.len() - common);
                pushed.truncate(common);
                for &b in &target[common..] {
                    if !rec.try_push_byte(b) {
                        // cannot happen: every kept string was pushed before
                        continue 'nodes;
                    }
                    pushed.push(b);
                }
                for &b in alphabet {
                    let rows = rows_pushed(rec);
                    if !rec.try_push_byte(b) {
                        continue;
                    }
                    let ends_lexeme = rows_pushed(rec) != rows;
                    let state = rec.lexer_state();
                    let may_end = ends_lexeme || !rec.lexer_mut().try_lexeme_end(state).is_error();
                    rec.pop_bytes(1);
                    let closed = match merge {
                        Merge::Exact if ends_lexeme => hash(&target, b),
                        Merge::Exact => nodes[node].closed,
                        Merge::LexerState => 0,
                    };
                    if !seen.insert((state, closed)) {
                        continue;
                    }
                    if nodes.len() >= limit {
                        gave_up = true;
                        break 'nodes;
                    }
                    nodes.push(Node { parent: node, byte: b, closed });
                    next.push(nodes.len() - 1);
                    if may_end {
                        maybe_complete.push(nodes.len() - 1);
                    }
                }
            }
            // pops every byte pushed since trie_started
            rec.trie_finished();
        });
        for &node in &maybe_complete {
            path_to(&nodes, node, &mut target);
            check.clear();
            check.extend(target.iter().filter_map(|&b| bytes.token(b)));
            check.push(eos);
            let valid = parser
                .validate_tokens_raw(&check)
                .map_err(|e| CoreError::Constraint(e.to_string()))?;
            if valid == check.len() {
                return Ok(Search::Found(target));
            }
        }
        if gave_up {
            return Ok(Search::GaveUp);
        }
        level = next;
    }
    Ok(Search::Exhausted)
}

/// A string of the search: its parent's string extended by `byte`.
struct Node {
    parent: usize,
    byte: u8,
    /// Hash of the string's prefix up to its last lexeme boundary ([`Merge::Exact`]).
    closed: u64,
}

/// Hash of `path` extended by `b`.
fn hash(path: &[u8], b: u8) -> u64 {
    let mut h = DefaultHasher::new();
    path.hash(&mut h);
    b.hash(&mut h);
    h.finish()
}

/// The bytes of the string leading to `node`.
fn path_to(nodes: &[Node], mut node: usize, path: &mut Vec<u8>) {
    path.clear();
    while node != 0 {
        path.push(nodes[node].byte);
        node = nodes[node].parent;
    }
    path.reverse();
}

/// Earley rows pushed so far by the parser (new or reused from its speculative row cache).
fn rows_pushed(rec: &mut ParserRecognizer<'_>) -> usize {
    let stats = rec.stats_mut();
    stats.rows + stats.cached_rows
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn search_order_has_every_byte_once() {
        let order = search_order();
        assert_eq!(order.len(), 256);
        let distinct: HashSet<u8> = order.iter().copied().collect();
        assert_eq!(distinct.len(), 256);
        assert_eq!(&order[..3], b"\"01");
    }
}
