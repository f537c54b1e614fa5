//! Splitting a text longer than the embedding model's context into chunks of at most a given
//! number of the model's own tokens, with an overlap, at paragraph or sentence boundaries where
//! it can, never dropping a word: a chunk is always a substring of the text.
//!
//! Paragraphs (separated by a blank line) are chunked on their own and never share a chunk, so
//! an edit inside one paragraph changes only that paragraph's chunks: the others are identical
//! strings, hence cache hits when embedded. A paragraph longer than a chunk is cut into *pieces*
//! at the finest boundary needed: sentences (`.`, `!`, `?` followed by white space, or a line
//! break), then words; a single word longer than a chunk is cut by characters. Its pieces are
//! packed greedily into chunks, and each next chunk starts with the last pieces of the previous
//! one that fit in the overlap. The same text always gives the same chunks.

use std::ops::Range;

/// Byte ranges of the chunks of `text` (in order; each within `max_tokens` tokens as `count`
/// counts them, unless a single character is longer; consecutive chunks of one paragraph share
/// up to `overlap` tokens of whole pieces). Empty for a text with nothing but white space.
pub fn chunk_ranges(
    text: &str,
    max_tokens: usize,
    overlap: usize,
    mut count: impl FnMut(&str) -> usize,
) -> Vec<Range<usize>> {
    assert!(max_tokens > 0, "chunks hold at least one token");
    let mut chunks = Vec::new();
    for paragraph in boundaries(text, 0..text.len(), Level::Paragraph) {
        let paragraph = trim(text, paragraph);
        if paragraph.is_empty() {
            continue;
        }
        if count(&text[paragraph.clone()]) <= max_tokens {
            chunks.push(paragraph);
        } else {
            chunk_at(
                text,
                paragraph,
                Level::Sentence,
                max_tokens,
                overlap,
                &mut count,
                &mut chunks,
            );
        }
    }
    chunks
}

/// The boundaries tried inside a paragraph, coarsest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Level {
    Paragraph,
    Sentence,
    Word,
    Character,
}

impl Level {
    /// The next finer boundary (characters are halved again and again).
    fn finer(self) -> Level {
        match self {
            Level::Paragraph => Level::Sentence,
            Level::Sentence => Level::Word,
            Level::Word | Level::Character => Level::Character,
        }
    }
}

/// Appends the chunks of `text[range]` (longer than a chunk) to `chunks`: its parts at `level`'s
/// boundaries, consecutive parts that fit packed together (with overlap), a part that does not
/// fit chunked on its own at the next finer level.
fn chunk_at(
    text: &str,
    range: Range<usize>,
    level: Level,
    max_tokens: usize,
    overlap: usize,
    count: &mut impl FnMut(&str) -> usize,
    chunks: &mut Vec<Range<usize>>,
) {
    let mut run: Vec<Range<usize>> = Vec::new();
    for part in boundaries(text, range, level) {
        let part = trim(text, part);
        if part.is_empty() {
            continue;
        }
        let single_char = text[part.clone()].chars().nth(1).is_none();
        if single_char || count(&text[part.clone()]) <= max_tokens {
            run.push(part);
        } else {
            pack(text, &run, max_tokens, overlap, count, chunks);
            run.clear();
            chunk_at(text, part, level.finer(), max_tokens, overlap, count, chunks);
        }
    }
    pack(text, &run, max_tokens, overlap, count, chunks);
}

/// Packs consecutive `pieces` (each fitting alone) greedily into chunks of at most `max_tokens`,
/// appended to `chunks`; each next chunk starts with the last pieces of the previous one that
/// fit in `overlap`, and always moves forward.
fn pack(
    text: &str,
    pieces: &[Range<usize>],
    max_tokens: usize,
    overlap: usize,
    count: &mut impl FnMut(&str) -> usize,
    chunks: &mut Vec<Range<usize>>,
) {
    let span = |a: usize, b: usize| &text[pieces[a].start..pieces[b].end];
    let mut start = 0;
    while start < pieces.len() {
        let mut end = start + 1;
        while end < pieces.len() && count(span(start, end)) <= max_tokens {
            end += 1;
        }
        chunks.push(pieces[start].start..pieces[end - 1].end);
        if end == pieces.len() {
            break;
        }
        let mut next = end;
        while next > start + 1 && count(span(next - 1, end - 1)) <= overlap {
            next -= 1;
        }
        start = next;
    }
}

/// `range` without leading and trailing white space.
fn trim(text: &str, range: Range<usize>) -> Range<usize> {
    let s = &text[range.clone()];
    let start = range.start + (s.len() - s.trim_start().len());
    let end = range.end - (s.len() - s.trim_end().len());
    if start >= end {
        start..start
    } else {
        start..end
    }
}

/// `range` cut at `level`'s boundaries (each part keeps its own punctuation).
fn boundaries(text: &str, range: Range<usize>, level: Level) -> Vec<Range<usize>> {
    let s = &text[range.clone()];
    let mut cuts = vec![0];
    let chars: Vec<(usize, char)> = s.char_indices().collect();
    match level {
        Level::Paragraph => {
            let mut i = 0;
            while let Some(at) = s[i..].find("\n\n") {
                cuts.push(i + at + 1);
                i += at + 2;
            }
        }
        Level::Sentence => {
            for w in chars.windows(2) {
                let ((_, c), (j, next)) = (w[0], w[1]);
                if (matches!(c, '.' | '!' | '?') && next.is_whitespace()) || c == '\n' {
                    cuts.push(j);
                }
            }
        }
        Level::Word => {
            for w in chars.windows(2) {
                let ((_, c), (j, next)) = (w[0], w[1]);
                if c.is_whitespace() && !next.is_whitespace() {
                    cuts.push(j);
                }
            }
        }
        Level::Character => {
            // halves, on character boundaries: a word longer than a chunk
            let mid = chars.len() / 2;
            if mid > 0 {
                cuts.push(chars[mid].0);
            }
        }
    }
    cuts.push(s.len());
    cuts.dedup();
    cuts.windows(2).map(|w| range.start + w[0]..range.start + w[1]).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One token per word (white-space separated), as a stand-in tokenizer.
    fn words(s: &str) -> usize {
        s.split_whitespace().count()
    }

    fn chunks(text: &str, max: usize, overlap: usize) -> Vec<&str> {
        chunk_ranges(text, max, overlap, words).into_iter().map(|r| &text[r]).collect()
    }

    #[test]
    fn a_short_text_is_one_chunk() {
        assert_eq!(chunks("  One short text.  ", 10, 2), vec!["One short text."]);
        assert!(chunks(" \n\n ", 10, 2).is_empty());
    }

    #[test]
    fn paragraphs_never_share_a_chunk() {
        let text = "First paragraph has five words.\n\nSecond one has four.\n\nThird is three.";
        assert_eq!(
            chunks(text, 9, 0),
            vec!["First paragraph has five words.", "Second one has four.", "Third is three."]
        );
    }

    #[test]
    fn a_long_paragraph_is_cut_at_sentences_then_words() {
        let text = "One two three. Four five six. Seven eight nine ten eleven twelve thirteen.";
        let got = chunks(text, 4, 0);
        assert_eq!(
            got,
            vec![
                "One two three.",
                "Four five six.",
                "Seven eight nine ten",
                "eleven twelve thirteen."
            ]
        );
        for c in &got {
            assert!(words(c) <= 4, "{c}");
        }
    }

    #[test]
    fn no_word_is_lost_and_chunks_are_substrings() {
        let text = "Alpha beta gamma.\n\nDelta epsilon zeta eta theta iota kappa lambda mu. Nu xi.\n\nOmicron.";
        let got = chunk_ranges(text, 3, 0, words);
        let joined: Vec<&str> =
            got.iter().flat_map(|r| text[r.clone()].split_whitespace()).collect();
        assert_eq!(joined, text.split_whitespace().collect::<Vec<_>>());
        for w in got.windows(2) {
            assert!(w[0].end <= w[1].start, "without overlap the chunks do not overlap");
        }
    }

    #[test]
    fn consecutive_chunks_overlap_by_whole_pieces() {
        let text = "A b. C d. E f. G h. I j.";
        let got = chunks(text, 4, 2);
        assert_eq!(got, vec!["A b. C d.", "C d. E f.", "E f. G h.", "G h. I j."]);
    }

    #[test]
    fn a_word_longer_than_a_chunk_is_cut_by_characters() {
        let count = |s: &str| s.len().div_ceil(4); // four bytes per token
        let text = "abcdefghijklmnopqrstuvwxyz";
        let got: Vec<&str> =
            chunk_ranges(text, 2, 0, count).into_iter().map(|r| &text[r]).collect();
        assert_eq!(got.concat(), text);
        assert!(got.iter().all(|c| count(c) <= 2), "{got:?}");
    }

    #[test]
    fn editing_one_paragraph_changes_only_its_chunks() {
        let para = |i: usize, word: &str| format!("Paragraph {i} says {word} and ends here.");
        let doc = |edited: usize| {
            (0..20)
                .map(|i| para(i, if i == edited { "something new" } else { "hello" }))
                .collect::<Vec<_>>()
                .join("\n\n")
        };
        let (before, after) = (doc(99), doc(7));
        let a = chunks(&before, 16, 4);
        let b = chunks(&after, 16, 4);
        assert_eq!(a.len(), 20);
        assert_eq!(a.len(), b.len());
        let changed = a.iter().zip(&b).filter(|(x, y)| x != y).count();
        assert_eq!(changed, 1, "{changed} chunks changed");
    }
}
