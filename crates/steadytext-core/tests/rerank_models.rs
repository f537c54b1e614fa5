//! Reranking: the cross-encoder path on a tiny BERT cross-encoder GGUF the test writes itself
//! (llama.cpp rank pooling), the embedding-cosine fallback on the packaged all-MiniLM-L6-v2,
//! model-kind detection and typed errors.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use steadytext_core::models::{ModelDir, MINILM_L6_V2};
use steadytext_core::rerank::{
    CosineReranker, ModelReranker, RerankMethod, RerankerKind, DEFAULT_TASK,
};
use steadytext_core::{bert_gguf, CoreError, Embedder};
use steadytext_testkit::tiny_cross_encoder;
use steadytext_testkit::tiny_qwen3_reranker::{self, Head};

/// The tiny cross-encoder, written once per test process (llama.cpp maps the file, so the
/// mapping outlives the temporary directory).
fn tiny() -> &'static ModelReranker {
    static TINY: OnceLock<ModelReranker> = OnceLock::new();
    TINY.get_or_init(|| load_tiny(7))
}

fn load_tiny(seed: u64) -> ModelReranker {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tiny-cross-encoder.gguf");
    tiny_cross_encoder::write(&path, seed).unwrap();
    ModelReranker::load(&path, "tiny-cross-encoder", 2).expect("llama.cpp loads the fixture")
}

const QUERY: &str = "what is the capital of france";
const DOCS: [&str; 6] = [
    "paris is the capital of france",
    "the cat sat on the mat",
    "water boils at a hundred degrees",
    "berlin is a city in germany",
    "postgres query index table",
    "red apple and green banana fruit",
];

#[test]
fn cross_encoder_scores_are_finite_varied_and_ordered() {
    let r = tiny();
    assert_eq!(r.kind(), RerankerKind::CrossEncoder);
    let ranking = r.rerank(QUERY, &DOCS, DEFAULT_TASK).unwrap();
    assert_eq!(ranking.method, RerankMethod::CrossEncoder { model: "tiny-cross-encoder".into() });
    assert_eq!(ranking.scores.len(), DOCS.len());
    assert!(ranking.scores.iter().all(|s| s.is_finite()), "{:?}", ranking.scores);
    let mut distinct = ranking.scores.clone();
    distinct.sort_by(f64::total_cmp);
    distinct.dedup();
    assert!(distinct.len() > 1, "scores do not depend on the document: {:?}", ranking.scores);
    let ranked = ranking.ranked(&DOCS);
    assert_eq!(ranked.len(), DOCS.len());
    for w in ranked.windows(2) {
        assert!(w[0].1 >= w[1].1, "not ordered by score: {ranked:?}");
    }
    for (doc, score) in &ranked {
        let i = DOCS.iter().position(|d| d == *doc).unwrap();
        assert_eq!(ranking.scores[i], *score);
    }
}

#[test]
fn pairs_are_cls_query_sep_document_sep() {
    let id = |w: &str| 5 + tiny_cross_encoder::WORDS.iter().position(|x| *x == w).unwrap() as i32;
    let tokens = tiny().pair_tokens("capital of france", "Paris, zebra").unwrap();
    // [CLS]=2, [SEP]=3, [UNK]=1; WordPiece lower-cases and splits punctuation.
    assert_eq!(
        tokens,
        vec![2, id("capital"), id("of"), id("france"), 3, id("paris"), 1, 1, 3],
        "{tokens:?}"
    );
}

#[test]
fn cross_encoder_is_deterministic_across_loads() {
    let a = tiny().rerank(QUERY, &DOCS, DEFAULT_TASK).unwrap();
    let b = load_tiny(7).rerank(QUERY, &DOCS, DEFAULT_TASK).unwrap();
    let bits = |s: &[f64]| s.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&a.scores), bits(&b.scores));
    // A different fixture seed is a different model: the comparison above can fail.
    let c = load_tiny(8).rerank(QUERY, &DOCS, DEFAULT_TASK).unwrap();
    assert_ne!(bits(&a.scores), bits(&c.scores));
}

#[test]
fn cross_encoder_scores_do_not_depend_on_the_batch() {
    let r = tiny();
    // Enough documents for several llama.cpp batches (64 pairs at most per batch), in an
    // order that puts each document next to different neighbours.
    let many: Vec<String> =
        (0..70).map(|i| format!("{} {}", DOCS[i % DOCS.len()], "the ".repeat(i % 9))).collect();
    let many: Vec<&str> = many.iter().map(String::as_str).collect();
    let batched = r.rerank(QUERY, &many, DEFAULT_TASK).unwrap().scores;
    for (i, doc) in many.iter().enumerate() {
        let alone = r.rerank(QUERY, &[doc], DEFAULT_TASK).unwrap().scores[0];
        assert_eq!(
            alone.to_bits(),
            batched[i].to_bits(),
            "document {i}: alone {alone} vs batched {}",
            batched[i]
        );
    }
    let reversed: Vec<&str> = many.iter().rev().copied().collect();
    let rev = r.rerank(QUERY, &reversed, DEFAULT_TASK).unwrap().scores;
    for i in 0..many.len() {
        assert_eq!(rev[many.len() - 1 - i].to_bits(), batched[i].to_bits(), "document {i}");
    }
}

#[test]
fn long_documents_are_truncated_not_refused() {
    let long = "the cat sat on the mat ".repeat(200);
    let ranking = tiny().rerank(QUERY, &[&long, DOCS[0]], DEFAULT_TASK).unwrap();
    assert!(ranking.scores.iter().all(|s| s.is_finite()));
}

#[test]
fn invalid_requests_are_typed_errors() {
    let r = tiny();
    assert!(matches!(r.rerank("", &DOCS, DEFAULT_TASK), Err(CoreError::EmptyQuery)));
    assert!(matches!(r.rerank(QUERY, &[], DEFAULT_TASK), Err(CoreError::NoDocuments)));
    assert!(matches!(
        r.rerank(QUERY, &["paris", "  "], DEFAULT_TASK),
        Err(CoreError::EmptyDocument { index: 1 })
    ));
}

fn models() -> ModelDir {
    ModelDir::resolve().expect("a model directory")
}

/// all-MiniLM-L6-v2 converted to GGUF in a temporary directory (as the embedding tests do).
fn minilm_gguf() -> &'static Path {
    static PATH: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    &PATH
        .get_or_init(|| {
            let m = models();
            assert!(
                m.has_source(&MINILM_L6_V2),
                "all-MiniLM-L6-v2 folder missing in {}: run scripts/setup",
                m.path().display()
            );
            let dir = tempfile::tempdir().unwrap();
            let out = dir.path().join(MINILM_L6_V2.gguf_file_name);
            bert_gguf::convert(&m.path().join(MINILM_L6_V2.folder), &out).unwrap();
            (dir, out)
        })
        .1
}

#[test]
fn embedding_cosine_fallback_ranks_the_relevant_document_first() {
    let embedder = Embedder::load(minilm_gguf(), 2).unwrap();
    let r = CosineReranker::new(embedder, MINILM_L6_V2.name);
    let docs = [
        "The stock market closed lower on Tuesday after weak earnings reports.",
        "Mix flour, water, yeast and salt, let the dough rise, then bake it in a hot oven.",
        "Penguins live in the southern hemisphere and cannot fly.",
        "PostgreSQL uses multi-version concurrency control for transactions.",
    ];
    let ranking = r.rerank("How do I bake bread at home?", &docs).unwrap();
    assert_eq!(ranking.method, RerankMethod::EmbeddingCosine { model: "all-minilm-l6-v2".into() });
    assert_eq!(ranking.order()[0], 1, "{:?}", ranking.scores);
    let alone = r.rerank("How do I bake bread at home?", &[docs[1]]).unwrap();
    assert_eq!(alone.scores[0].to_bits(), ranking.scores[1].to_bits());
    assert!(matches!(r.rerank(" ", &docs), Err(CoreError::EmptyQuery)));
    assert!(matches!(r.rerank("q", &["a", ""]), Err(CoreError::EmptyDocument { index: 1 })));
}

#[test]
fn non_rerankers_are_refused_with_a_typed_error() {
    let err = ModelReranker::load(minilm_gguf(), "all-minilm-l6-v2", 1).err().expect("refused");
    assert!(
        matches!(&err, CoreError::UnsupportedReranker { reason, .. } if reason.contains("pooling type 1")),
        "{err}"
    );
    let gemma = steadytext_testkit::gemma::path();
    let err = ModelReranker::load(&gemma, "gemma-3-270m", 1).err().expect("refused");
    assert!(
        matches!(&err, CoreError::UnsupportedReranker { reason, .. } if reason.contains("gemma3")),
        "{err}"
    );
}

fn load_qwen3(name: &str, seed: u64, head: Head) -> Result<ModelReranker, CoreError> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tiny-qwen3.gguf");
    tiny_qwen3_reranker::write(&path, name, seed, head).unwrap();
    ModelReranker::load(&path, "tiny-qwen3-reranker", 2)
}

#[test]
fn qwen3_reranker_scores_are_yes_probabilities() {
    let r = load_qwen3("Tiny Qwen3 Reranker", 3, Head::Logits).unwrap();
    assert_eq!(r.kind(), RerankerKind::Qwen3Logits);
    let ranking = r.rerank(QUERY, &DOCS, DEFAULT_TASK).unwrap();
    assert_eq!(ranking.method, RerankMethod::Qwen3 { model: "tiny-qwen3-reranker".into() });
    assert!(ranking.scores.iter().all(|s| *s > 0.0 && *s < 1.0), "{:?}", ranking.scores);
    let mut distinct = ranking.scores.clone();
    distinct.sort_by(f64::total_cmp);
    distinct.dedup();
    assert!(distinct.len() > 1, "{:?}", ranking.scores);
    // Deterministic, alone or with others, and the task is part of the prompt.
    let again = load_qwen3("Tiny Qwen3 Reranker", 3, Head::Logits).unwrap();
    let alone = again.rerank(QUERY, &[DOCS[2]], DEFAULT_TASK).unwrap();
    assert_eq!(alone.scores[0].to_bits(), ranking.scores[2].to_bits());
    let other_task = r.rerank(QUERY, &DOCS, "Find recipes").unwrap();
    assert_ne!(other_task.scores, ranking.scores);
}

#[test]
fn qwen3_rank_head_matches_the_yes_no_logits() {
    let logits = load_qwen3("Tiny Qwen3 Reranker", 3, Head::Logits).unwrap();
    let pooled = load_qwen3("Tiny Qwen3 Reranker", 3, Head::Rank).unwrap();
    assert_eq!(pooled.kind(), RerankerKind::Qwen3Pooled);
    let a = logits.rerank(QUERY, &DOCS, DEFAULT_TASK).unwrap().scores;
    let b = pooled.rerank(QUERY, &DOCS, DEFAULT_TASK).unwrap().scores;
    for (i, (x, y)) in a.iter().zip(&b).enumerate() {
        assert!((x - y).abs() < 1e-5, "document {i}: logits {x} vs rank head {y}");
    }
}

#[test]
fn qwen3_models_not_named_as_rerankers_are_refused() {
    let err = load_qwen3("Tiny Qwen3 Chat", 3, Head::Logits).err().expect("refused");
    assert!(matches!(err, CoreError::UnsupportedReranker { .. }), "{err}");
}
