/* Calls llama.cpp's own quantizer and dequantizers, from the build node-llama-cpp ships, for
 * scripts/llama-quant-check.ts:
 *   llama-quant-check quantize IN.gguf OUT.gguf FTYPE     llama_model_quantize (no imatrix, 2 threads)
 *   llama-quant-check dequantize TYPE N IN.bin OUT.bin    dequantize_row_<TYPE> of N elements, f32 out
 * Not a test: it needs a C compiler, which CI does not install. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "llama.h"

typedef void (*dequantize_fn)(const void *, float *, int64_t);
#define DQ(name) void dequantize_row_##name(const void *, float *, int64_t);
DQ(q4_0) DQ(q4_1) DQ(q5_0) DQ(q5_1) DQ(q8_0) DQ(q2_K) DQ(q3_K) DQ(q4_K) DQ(q5_K) DQ(q6_K) DQ(iq4_nl) DQ(iq4_xs)
static const struct { const char *name; dequantize_fn fn; } ROWS[] = {
  {"q4_0", dequantize_row_q4_0}, {"q4_1", dequantize_row_q4_1}, {"q5_0", dequantize_row_q5_0},
  {"q5_1", dequantize_row_q5_1}, {"q8_0", dequantize_row_q8_0}, {"q2_k", dequantize_row_q2_K},
  {"q3_k", dequantize_row_q3_K}, {"q4_k", dequantize_row_q4_K}, {"q5_k", dequantize_row_q5_K},
  {"q6_k", dequantize_row_q6_K}, {"iq4_nl", dequantize_row_iq4_nl}, {"iq4_xs", dequantize_row_iq4_xs},
};

int main(int argc, char **argv) {
  if (argc == 5 && !strcmp(argv[1], "quantize")) {
    llama_backend_init();
    struct llama_model_quantize_params p = llama_model_quantize_default_params();
    p.ftype = (enum llama_ftype)atoi(argv[4]);
    p.nthread = 2;
    return llama_model_quantize(argv[2], argv[3], &p) ? 1 : 0;
  }
  if (argc == 6 && !strcmp(argv[1], "dequantize")) {
    dequantize_fn fn = NULL;
    for (size_t i = 0; i < sizeof ROWS / sizeof ROWS[0]; i++) if (!strcmp(ROWS[i].name, argv[2])) fn = ROWS[i].fn;
    if (!fn) { fprintf(stderr, "unknown type %s\n", argv[2]); return 2; }
    int64_t n = atoll(argv[3]);
    FILE *f = fopen(argv[4], "rb");
    if (!f) { perror(argv[4]); return 2; }
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fseek(f, 0, SEEK_SET);
    void *in = malloc(size);
    if (fread(in, 1, size, f) != (size_t)size) { perror("read"); return 2; }
    fclose(f);
    float *out = malloc(n * sizeof(float));
    fn(in, out, n);
    FILE *o = fopen(argv[5], "wb");
    fwrite(out, sizeof(float), n, o);
    fclose(o);
    return 0;
  }
  fprintf(stderr, "usage: %s quantize IN OUT FTYPE | dequantize TYPE N IN OUT\n", argv[0]);
  return 2;
}
