// Raw llama.cpp baseline for `bench/run engine`: greedy-decodes the eight prompts of
// `steadytext bench` (crates/steadytext/src/commands/bench.rs; both read bench/prompts.inc) one at a time on one reused context,
// then all eight together as parallel sequences the way llama.cpp's own examples batch them
// (one unified KV cache, all prompts in one decode call, then one token per sequence per call),
// and prints generated tokens per second of wall time for each (prompt prefill included, model
// load excluded), the same definitions as `steadytext bench`'s generate_single and
// generate_batch8 lines. The batched run has none of the engine's determinism constraints, so
// its ratio to the single run is what llama.cpp's kernels give on the machine.
//
// With a fourth argument POLL, both contexts compute on one persistent ggml threadpool of THREADS
// threads attached with llama_attach_threadpool, whose threads wait for the next graph with
// that polling level (0: sleep on a condition variable at once; ggml's default is 50); without
// it, llama.cpp starts fresh threads for every graph (what the engine does). `bench/run
// contention` compares the two under CPU contention.
//
// usage: llama-raw-decode MODEL.gguf THREADS MAX_TOKENS [POLL]
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "llama.h"

static const char *PROMPTS[8] = {
#include "../prompts.inc"
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

// Decodes all prompts together, one sequence each, on a fresh context sized for them; returns
// the number of generated tokens, or -1 on error.
static long generate_batch(llama_model *model, const llama_vocab *vocab, int threads, int max_tokens,
                           ggml_threadpool *pool) {
    const int n = 8;
    llama_context_params cp = llama_context_default_params();
    cp.n_ctx = 4096;
    cp.n_batch = 512;
    cp.n_ubatch = 512;
    cp.n_seq_max = n;
    cp.kv_unified = true;
    cp.n_threads = threads;
    cp.n_threads_batch = threads;
    llama_context *ctx = llama_init_from_model(model, cp);
    if (!ctx) return -1;
    if (pool) llama_attach_threadpool(ctx, pool, pool);
    llama_batch batch = llama_batch_init(512, 0, 1);
    // index of each live sequence's logits in the last decoded batch; -1 once it is done
    std::vector<int> logits_at(n, -1);
    for (int s = 0; s < n; s++) {
        std::vector<llama_token> toks(512);
        int k = llama_tokenize(vocab, PROMPTS[s], (int)strlen(PROMPTS[s]), toks.data(), (int)toks.size(), true, false);
        if (k < 0) return -1;
        for (int i = 0; i < k; i++) {
            int j = batch.n_tokens++;
            batch.token[j] = toks[i];
            batch.pos[j] = i;
            batch.n_seq_id[j] = 1;
            batch.seq_id[j][0] = s;
            batch.logits[j] = i == k - 1;
        }
        logits_at[s] = batch.n_tokens - 1;
    }
    std::vector<int> pos(n);
    for (int s = 0; s < n; s++) pos[s] = batch.pos[logits_at[s]] + 1;
    std::vector<int> generated(n, 0);
    llama_sampler *smpl = llama_sampler_chain_init(llama_sampler_chain_default_params());
    llama_sampler_chain_add(smpl, llama_sampler_init_greedy());
    long total = 0;
    while (true) {
        if (llama_decode(ctx, batch) != 0) {
            total = -1;
            break;
        }
        std::vector<int> next_at(n, -1);
        batch.n_tokens = 0;
        for (int s = 0; s < n; s++) {
            if (logits_at[s] < 0) continue;
            llama_token tok = llama_sampler_sample(smpl, ctx, logits_at[s]);
            if (llama_vocab_is_eog(vocab, tok) || generated[s] >= max_tokens) continue;
            generated[s]++;
            total++;
            if (generated[s] == max_tokens) continue;
            int j = batch.n_tokens++;
            batch.token[j] = tok;
            batch.pos[j] = pos[s]++;
            batch.n_seq_id[j] = 1;
            batch.seq_id[j][0] = s;
            batch.logits[j] = true;
            next_at[s] = j;
        }
        logits_at = next_at;
        if (batch.n_tokens == 0) break;
    }
    llama_sampler_free(smpl);
    llama_batch_free(batch);
    llama_free(ctx);
    return total;
}

int main(int argc, char **argv) {
    if (argc != 4 && argc != 5) {
        fprintf(stderr, "usage: %s MODEL.gguf THREADS MAX_TOKENS [POLL]\n", argv[0]);
        return 2;
    }
    const int threads = atoi(argv[2]);
    const int max_tokens = atoi(argv[3]);
    ggml_threadpool *pool = nullptr;
    if (argc == 5) {
        ggml_threadpool_params tpp = ggml_threadpool_params_default(threads);
        tpp.poll = (uint32_t)atoi(argv[4]);
        pool = ggml_threadpool_new(&tpp);
        if (!pool) {
            fprintf(stderr, "cannot create a threadpool\n");
            return 1;
        }
    }
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
    if (pool) llama_attach_threadpool(ctx, pool, pool);
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
    start = std::chrono::steady_clock::now();
    long batched = generate_batch(model, vocab, threads, max_tokens, pool);
    if (batched < 0) {
        fprintf(stderr, "batched decode failed\n");
        return 1;
    }
    double bsecs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    printf("raw_llama_cpp_batch8 prompts=8 threads=%d tokens=%ld seconds=%.3f tokens_per_s=%.1f\n",
           threads, batched, bsecs, batched / bsecs);
    if (pool) ggml_threadpool_free(pool);
    llama_model_free(model);
    llama_backend_free();
    return 0;
}
