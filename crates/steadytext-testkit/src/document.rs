//! The long document that the chunked-embedding test and benchmark derive: paragraphs of a few
//! dozen tokens each, so that every paragraph is a chunk of its own, and one of them can be
//! edited.

/// A document of `paragraphs` paragraphs separated by blank lines; paragraph `edited` (if any)
/// says something else than the others.
pub fn paragraphs(paragraphs: usize, edited: Option<usize>) -> String {
    (0..paragraphs)
        .map(|i| {
            let topic =
                if Some(i) == edited { "an edited sentence about lighthouses" } else { "bread" };
            format!(
                "Paragraph {i} begins with {topic}. It goes on about ovens, flour and water for a \
                 while, so that it holds a few dozen tokens. Then it ends with number {i}."
            )
        })
        .collect::<Vec<_>>()
        .join("\n\n")
}
