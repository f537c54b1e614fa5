//! Embeddings on the packaged all-MiniLM-L6-v2, converted to GGUF by our importer: reference
//! values, retrieval sanity, bit-identity across batch compositions, typed errors.

use std::sync::OnceLock;

use steadytext_core::embed::{cosine, MAX_TEXTS_PER_BATCH};
use steadytext_core::models::{ModelDir, MINILM_L6_V2};
use steadytext_core::{bert_gguf, CoreError, Embedder};

/// The model, converted once per test process from the folder scripts/setup unpacks.
fn embedder() -> &'static Embedder {
    static EMBEDDER: OnceLock<Embedder> = OnceLock::new();
    EMBEDDER.get_or_init(load)
}

/// A new embedder on a fresh conversion of the packaged folder, on 2 threads.
fn load() -> Embedder {
    load_on(2)
}

/// A new embedder on a fresh conversion of the packaged folder, on `threads` threads.
fn load_on(threads: usize) -> Embedder {
    let models = ModelDir::resolve().expect("a model directory");
    let folder = models.path().join(MINILM_L6_V2.folder);
    assert!(
        models.has_source(&MINILM_L6_V2),
        "all-MiniLM-L6-v2 folder missing at {}: run scripts/setup (or scripts/fetch-models)",
        folder.display()
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let gguf = dir.path().join(MINILM_L6_V2.gguf_file_name);
    bert_gguf::convert(&folder, &gguf).expect("conversion succeeds");
    // llama.cpp maps the file; the mapping outlives the tempdir's removal.
    Embedder::load(&gguf, threads).expect("llama.cpp loads the converted model")
}

#[test]
fn matches_published_sentence_transformers_values() {
    let e = embedder();
    assert_eq!(e.dim(), 384);
    let v = e.embed("This is an example sentence").unwrap();
    assert_eq!(v.len(), 384);
    let want = [0.0677f32, 0.0635, 0.0487, 0.0793];
    for (i, (got, want)) in v.iter().zip(want).enumerate() {
        assert!(
            (got - want).abs() <= 1e-3,
            "component {i}: {got} vs {want} (first: {:?})",
            &v[..4]
        );
    }
    let norm = v.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    assert!((norm - 1.0).abs() <= 1e-5, "norm {norm}");
}

#[test]
fn relevant_text_scores_highest() {
    let e = embedder();
    let query = e.embed("How do I bake bread at home?").unwrap();
    let docs = [
        "Mix flour, water, yeast and salt, let the dough rise, then bake it in a hot oven.",
        "The stock market closed lower on Tuesday after weak earnings reports.",
        "Penguins live in the southern hemisphere and cannot fly.",
        "PostgreSQL uses multi-version concurrency control for transactions.",
    ];
    let vecs = e.embed_batch(&docs).unwrap();
    let scores: Vec<f32> = vecs.iter().map(|v| cosine(&query, v)).collect();
    for (i, s) in scores.iter().enumerate().skip(1) {
        assert!(scores[0] > *s + 0.1, "doc {i} scored {s} vs relevant {} ({scores:?})", scores[0]);
    }
}

const TEXTS: [&str; 10] = [
    "This is an example sentence",
    "Each sentence is converted",
    "hi",
    "The quick brown fox jumps over the lazy dog while the farmer watches from the porch, \
     sipping coffee and wondering whether it will rain before the harvest is done this year.",
    "PostgreSQL",
    "Deterministic embeddings must not depend on which other texts share the batch.",
    "ünïcödé and emoji 🙂 survive tokenization",
    "a b c d e f g h i j k l m n o p q r s t u v w x y z a b c d e f g h",
    "Short one.",
    "Vectors are compared bit for bit, not within a tolerance.",
];

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

#[test]
fn batching_never_changes_a_vector() {
    let e = embedder();
    let alone: Vec<Vec<u32>> = TEXTS.iter().map(|t| bits(&e.embed(t).unwrap())).collect();
    for size in [1usize, 2, 4, 8] {
        for offset in 0..TEXTS.len() {
            let idx: Vec<usize> = (0..size).map(|k| (offset + k * 3) % TEXTS.len()).collect();
            let batch: Vec<&str> = idx.iter().map(|&i| TEXTS[i]).collect();
            let got = e.embed_batch(&batch).unwrap();
            assert_eq!(got.len(), size);
            for (pos, (&i, v)) in idx.iter().zip(&got).enumerate() {
                assert!(
                    bits(v) == alone[i],
                    "text {i} at position {pos} of a batch of {size} ({idx:?}) differs from alone"
                );
            }
        }
    }
}

/// Texts of every length from 3 to 70 tokens, so that some fill their aligned slot exactly.
#[test]
fn texts_of_every_length_embed_alone_as_in_a_batch() {
    let e = embedder();
    let texts: Vec<String> = (1..=68).map(|n| "word ".repeat(n)).collect();
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let alone: Vec<Vec<u32>> = refs.iter().map(|t| bits(&e.embed(t).unwrap())).collect();
    let mut neighbours = vec!["A short neighbour."];
    for (i, t) in refs.iter().enumerate() {
        neighbours.truncate(1);
        neighbours.push(t);
        let got = e.embed_batch(&neighbours).unwrap();
        assert!(bits(&got[1]) == alone[i], "\"word\" × {} differs after a neighbour", i + 1);
    }
    let together = e.embed_batch(&refs).unwrap();
    for (i, v) in together.iter().enumerate() {
        assert!(bits(v) == alone[i], "\"word\" × {} differs in a batch of 68", i + 1);
    }
}

#[test]
fn the_kept_context_embeds_as_a_fresh_one() {
    let e = load();
    let first = bits(&e.embed(TEXTS[0]).unwrap());
    assert_eq!(e.contexts_created(), 1);
    // calls of other shapes on the kept context: a long text, several llama.cpp batches
    e.embed(&"word ".repeat(300)).unwrap();
    let many: Vec<&str> = (0..MAX_TEXTS_PER_BATCH + 6).map(|i| TEXTS[i % TEXTS.len()]).collect();
    e.embed_batch(&many).unwrap();
    assert!(e.embed("").is_err());
    assert_eq!(bits(&e.embed(TEXTS[0]).unwrap()), first);
    assert_eq!(e.contexts_created(), 1, "one context, kept from call to call");
}

/// The thread count changes no bit (the daemon's adaptive policy may change it between calls on
/// the kept context). Every text is compared inside a batch; alone, the shortest, a middling and
/// the longest are (each call on 3 threads costs about a second on a 2-core machine, where the
/// third thread waits for a core at every barrier), which covers a lone sequence of each size
/// class that the batch covers.
#[test]
fn one_and_three_threads_give_the_same_bits() {
    let words: Vec<String> = (1..=64).step_by(9).map(|n| "word ".repeat(n)).collect();
    let texts: Vec<&str> = TEXTS.iter().copied().chain(words.iter().map(String::as_str)).collect();
    let (one, three) = (load_on(1), load_on(3));
    let longest = words.last().expect("word counts").as_str();
    for t in [TEXTS[2], TEXTS[3], longest] {
        assert!(bits(&one.embed(t).unwrap()) == bits(&three.embed(t).unwrap()), "{t:?}");
    }
    let (a, b) = (one.embed_batch(&texts).unwrap(), three.embed_batch(&texts).unwrap());
    for (i, (x, y)) in a.iter().zip(&b).enumerate() {
        assert!(bits(x) == bits(y), "text {i} in a batch");
    }
}

#[test]
fn inputs_beyond_one_llama_batch_are_split_and_unchanged() {
    let e = embedder();
    let many: Vec<&str> = (0..MAX_TEXTS_PER_BATCH + 6).map(|i| TEXTS[i % TEXTS.len()]).collect();
    let got = e.embed_batch(&many).unwrap();
    assert_eq!(got.len(), many.len());
    for (i, v) in got.iter().enumerate() {
        assert_eq!(bits(v), bits(&got[i % TEXTS.len()]), "text {i}");
    }
}

#[test]
fn empty_text_is_a_typed_error() {
    let e = embedder();
    assert!(matches!(e.embed(""), Err(CoreError::EmptyText { index: 0 })));
    assert!(matches!(e.embed("   \n"), Err(CoreError::EmptyText { index: 0 })));
    assert!(matches!(e.embed_batch(&["fine", ""]), Err(CoreError::EmptyText { index: 1 })));
    assert!(e.embed_batch(&[]).unwrap().is_empty());
}

#[test]
fn long_text_is_truncated_to_the_model_context() {
    let e = embedder();
    let long = "word ".repeat(2000);
    let v = e.embed(&long).unwrap();
    assert_eq!(v.len(), 384);
    assert_eq!(bits(&v), bits(&e.embed(&"word ".repeat(1000)).unwrap()), "both exceed 512 tokens");
}
