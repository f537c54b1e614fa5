// Raw llama.cpp embedding baseline for `bench/run derive-backfill`: embeds the benchmark's N
// texts ("Backfill row number I of the benchmark", I = 1..N, the rows the derivation backfills)
// BATCH at a time, one sequence per text in one decode call, with the model's own pooling, on
// one reused context, the way llama.cpp's embedding example batches them; prints the texts per
// second of wall time (model load excluded). The attention of one call spans all its tokens
// (masked per sequence), so smaller batches can be faster: `bench/run derive-backfill` runs it
// at several sizes and reports the best, the machine's limit for the model (no queue, no
// database, no determinism constraints).
//
// usage: llama-raw-embed MODEL.gguf THREADS N [BATCH]
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "llama.h"

static void quiet_log(enum ggml_log_level, const char *, void *) {}

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: %s MODEL.gguf THREADS N [BATCH]\n", argv[0]);
        return 2;
    }
    const int threads = atoi(argv[2]);
    const long n = atol(argv[3]);
    const int per_batch = argc > 4 ? atoi(argv[4]) : 32;
    llama_log_set(quiet_log, nullptr);
    llama_backend_init();
    llama_model_params mp = llama_model_default_params();
    llama_model *model = llama_model_load_from_file(argv[1], mp);
    if (!model) {
        fprintf(stderr, "cannot load %s\n", argv[1]);
        return 1;
    }
    const llama_vocab *vocab = llama_model_get_vocab(model);
    llama_context_params cp = llama_context_default_params();
    cp.embeddings = true;
    // the engine's context (BATCH_TOKENS of crates/steadytext-core/src/encoders/slots.rs): a
    // batch of short texts fits, and a larger one only makes the masked attention wider
    cp.n_ctx = 512;
    cp.n_batch = 512;
    cp.n_ubatch = 512;
    cp.n_seq_max = per_batch;
    cp.n_threads = threads;
    cp.n_threads_batch = threads;
    llama_context *ctx = llama_init_from_model(model, cp);
    if (!ctx) {
        fprintf(stderr, "cannot create a context\n");
        return 1;
    }
    const int dims = llama_model_n_embd(model);
    llama_batch batch = llama_batch_init(512, 0, 1);
    std::vector<llama_token> toks(512);
    double checksum = 0;
    auto start = std::chrono::steady_clock::now();
    for (long first = 1; first <= n; first += per_batch) {
        llama_memory_clear(llama_get_memory(ctx), true);
        batch.n_tokens = 0;
        int seqs = 0;
        for (long i = first; i < first + per_batch && i <= n; i++, seqs++) {
            std::string text = "Backfill row number " + std::to_string(i) + " of the benchmark";
            int k = llama_tokenize(vocab, text.c_str(), (int)text.size(), toks.data(), (int)toks.size(), true, false);
            if (k < 0) return 1;
            for (int t = 0; t < k; t++) {
                int j = batch.n_tokens++;
                batch.token[j] = toks[t];
                batch.pos[j] = t;
                batch.n_seq_id[j] = 1;
                batch.seq_id[j][0] = seqs;
                batch.logits[j] = true;
            }
        }
        if (llama_decode(ctx, batch) != 0) {
            fprintf(stderr, "decode failed at text %ld\n", first);
            return 1;
        }
        for (int s = 0; s < seqs; s++) {
            const float *e = llama_get_embeddings_seq(ctx, s);
            if (!e) {
                fprintf(stderr, "no pooled embedding for sequence %d\n", s);
                return 1;
            }
            checksum += e[0] + e[dims - 1];
        }
    }
    double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    printf("embed texts=%ld batch=%d threads=%d seconds=%.3f texts_per_s=%.1f checksum=%.6f\n", n,
           per_batch, threads, secs, n / secs, checksum);
    llama_batch_free(batch);
    llama_free(ctx);
    llama_model_free(model);
    return 0;
}
