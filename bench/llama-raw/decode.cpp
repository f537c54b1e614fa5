// Raw llama.cpp baseline for `bench/run engine`: greedy-decodes the eight prompts of
// `steadytext bench` (crates/steadytext/src/bench_cmd.rs) one at a time on one reused context,
// and prints generated tokens per second of wall time (prompt prefill included, model load
// excluded), the same definition as `steadytext bench`'s generate_single line.
//
// usage: llama-raw-decode MODEL.gguf THREADS MAX_TOKENS
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "llama.h"

static const char *PROMPTS[8] = {
    "The capital of France is",
    "def fibonacci(n):",
    "Once upon a time",
    "PostgreSQL is a relational database that",
    "The quick brown fox",
    "Water boils at",
    "In the beginning of the twentieth century,",
    "A good recipe for bread needs",
};

static void quiet_log(enum ggml_log_level, const char *, void *) {}

// Decodes one prompt greedily; returns the number of generated tokens, or -1 on error.
static int generate(llama_context *ctx, const llama_vocab *vocab, const char *prompt, int max_tokens) {
    llama_memory_clear(llama_get_memory(ctx), true);
    std::vector<llama_token> toks(512);
    int n = llama_tokenize(vocab, prompt, (int)strlen(prompt), toks.data(), (int)toks.size(), true, false);
    if (n < 0) return -1;
    toks.resize(n);
    llama_sampler *smpl = llama_sampler_chain_init(llama_sampler_chain_default_params());
    llama_sampler_chain_add(smpl, llama_sampler_init_greedy());
    llama_batch batch = llama_batch_get_one(toks.data(), (int)toks.size());
    int generated = 0;
    llama_token tok;
    while (generated < max_tokens) {
        if (llama_decode(ctx, batch) != 0) {
            generated = -1;
            break;
        }
        tok = llama_sampler_sample(smpl, ctx, -1);
        if (llama_vocab_is_eog(vocab, tok)) break;
        generated++;
        batch = llama_batch_get_one(&tok, 1);
    }
    llama_sampler_free(smpl);
    return generated;
}

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: %s MODEL.gguf THREADS MAX_TOKENS\n", argv[0]);
        return 2;
    }
    const int threads = atoi(argv[2]);
    const int max_tokens = atoi(argv[3]);
    llama_log_set(quiet_log, nullptr);
    llama_backend_init();
    llama_model *model = llama_model_load_from_file(argv[1], llama_model_default_params());
    if (!model) {
        fprintf(stderr, "cannot load %s\n", argv[1]);
        return 1;
    }
    const llama_vocab *vocab = llama_model_get_vocab(model);
    llama_context_params cp = llama_context_default_params();
    cp.n_ctx = 4096;  // the engine's per-sequence context (steadytext-core generate.rs N_CTX)
    cp.n_batch = 512;
    cp.n_ubatch = 512;
    cp.n_threads = threads;
    cp.n_threads_batch = threads;
    llama_context *ctx = llama_init_from_model(model, cp);
    if (!ctx) {
        fprintf(stderr, "cannot create a context\n");
        return 1;
    }
    if (generate(ctx, vocab, PROMPTS[0], max_tokens) < 0) return 1;  // warm-up: page weights in
    long total = 0;
    auto start = std::chrono::steady_clock::now();
    for (const char *p : PROMPTS) {
        int g = generate(ctx, vocab, p, max_tokens);
        if (g < 0) {
            fprintf(stderr, "decode failed\n");
            return 1;
        }
        total += g;
    }
    double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    printf("raw_llama_cpp prompts=8 threads=%d tokens=%ld seconds=%.3f tokens_per_s=%.1f\n", threads,
           total, secs, total / secs);
    llama_free(ctx);
    llama_model_free(model);
    llama_backend_free();
    return 0;
}
