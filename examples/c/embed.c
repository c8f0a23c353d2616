/* Embed one second of a stereo tone with the C ABI and print the shape.
 * Build (after `cargo build --release -p mert-mobile`):
 *   cc examples/c/embed.c -Imobile/include target/release/libmert_mobile.a -lm -lpthread -ldl -o embed
 *   ./embed tests/fixtures/mert_tiny
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "mert.h"

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s MODEL\n", argv[0]);
        return 2;
    }
    MertModel *model = NULL;
    if (mert_model_load(argv[1], &model) != 0) {
        fprintf(stderr, "error: %s\n", mert_last_error());
        return 1;
    }
    const size_t frames = 44100;
    float *pcm = malloc(frames * 2 * sizeof(float));
    for (size_t i = 0; i < frames; i++) {
        float v = 0.3f * sinf(2.0f * 3.14159265f * 440.0f * (float)i / 44100.0f);
        pcm[2 * i] = v;
        pcm[2 * i + 1] = v;
    }
    MertEmbedding *emb = NULL;
    int rc = mert_embed(model, pcm, frames, 44100, 2, &emb);
    free(pcm);
    if (rc != 0) {
        fprintf(stderr, "error: %s\n", mert_last_error());
        mert_model_free(model);
        return 1;
    }
    const float *data = mert_embedding_data(emb);
    printf("frames=%zu dim=%zu first=%f\n", mert_embedding_frames(emb), mert_embedding_dim(emb), data[0]);
    mert_embedding_free(emb);
    mert_model_free(model);
    return 0;
}
