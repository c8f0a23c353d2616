/* Streaming with the C ABI: feed a 16-bit WAV file in 100 ms chunks, as a microphone callback
 * would, and print each chunk of frames as it becomes final (with its top tag when the model
 * has a tagging head), then the whole stream's tags.
 *
 * Build and run (scripts/mobile-test builds it the same way):
 *   cargo build --release -p mert-mobile
 *   cc -std=c11 -Imobile/include examples/mobile/c/stream.c target/release/libmert_mobile.a \
 *      -lm -lpthread -ldl -o stream
 *   ./stream models/default/mert-tag-default.safetensors examples/audio/phrase.wav */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mert.h"

/* Minimal 16-bit PCM WAV reader: interleaved floats, rate, channels. */
static float *read_wav(const char *path, size_t *frames, uint32_t *rate, uint32_t *channels) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    unsigned char h[8];
    uint16_t bits = 0;
    float *out = NULL;
    fseek(f, 12, SEEK_SET);
    while (fread(h, 1, 8, f) == 8) {
        uint32_t size = h[4] | h[5] << 8 | h[6] << 16 | (uint32_t)h[7] << 24;
        unsigned char *body = malloc(size);
        if (fread(body, 1, size, f) != size) { free(body); break; }
        if (!memcmp(h, "fmt ", 4)) {
            *channels = body[2] | body[3] << 8;
            *rate = body[4] | body[5] << 8 | body[6] << 16 | (uint32_t)body[7] << 24;
            bits = (uint16_t)(body[14] | body[15] << 8);
        } else if (!memcmp(h, "data", 4) && bits == 16 && *channels > 0) {
            *frames = size / 2 / *channels;
            out = malloc(size / 2 * sizeof(float));
            for (size_t i = 0; i < size / 2; i++)
                out[i] = (float)(int16_t)(body[2 * i] | body[2 * i + 1] << 8) / 32768.0f;
        }
        free(body);
        if (out) break;
        if (size & 1) fseek(f, 1, SEEK_CUR);
    }
    fclose(f);
    return out;
}

static int fail(const char *what) {
    fprintf(stderr, "%s: %s\n", what, mert_last_error());
    return 1;
}

/* Print the chunks that are ready. The model runs 75 frames per second of audio. */
static void drain(MertSession *s) {
    MertEmbedding *e = NULL;
    while (mert_session_next(s, &e) == MERT_STATUS_OK && e) {
        size_t first = mert_embedding_first_frame(e), n = mert_embedding_frames(e);
        printf("frames %5zu..%-5zu (%6.2f-%6.2f s) x %zu", first, first + n, first / 75.0,
               (first + n) / 75.0, mert_embedding_dim(e));
        const MertTags *t = mert_embedding_tags(e);
        if (t) printf("  top tag: %s %.2f", mert_tags_name(t, 0), mert_tags_prob(t, 0));
        printf("\n");
        mert_embedding_free(e);
    }
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: %s MODEL AUDIO.wav\n", argv[0]);
        return 2;
    }
    size_t frames = 0;
    uint32_t rate = 0, channels = 0;
    float *pcm = read_wav(argv[2], &frames, &rate, &channels);
    if (!pcm) {
        fprintf(stderr, "%s: cannot read a 16-bit PCM WAV\n", argv[2]);
        return 1;
    }
    MertModel *model = NULL;
    if (mert_model_load(argv[1], &model) != MERT_STATUS_OK) return fail("load");
    MertSession *s = NULL;
    if (mert_session_new(model, rate, channels, &s) != MERT_STATUS_OK) return fail("session");
    size_t chunk = rate / 10; /* 100 ms, as an audio callback delivers it */
    for (size_t at = 0; at < frames; at += chunk) {
        size_t n = frames - at < chunk ? frames - at : chunk;
        if (mert_session_push(s, pcm + at * channels, n) != MERT_STATUS_OK) return fail("push");
        drain(s);
    }
    if (mert_session_finish(s) != MERT_STATUS_OK) return fail("finish");
    drain(s);
    MertTags *tags = NULL;
    if (mert_session_tags(s, &tags) == MERT_STATUS_OK) {
        printf("whole stream:");
        for (size_t i = 0; i < mert_tags_count(tags) && i < 5; i++)
            printf(" %s %.2f", mert_tags_name(tags, i), mert_tags_prob(tags, i));
        printf("\n");
        mert_tags_free(tags);
    }
    mert_session_free(s);
    mert_model_free(model);
    free(pcm);
    return 0;
}
