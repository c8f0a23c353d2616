/* Speed and memory of the library on this CPU (run by hand, see mobile/README.md):
 *   bench MODEL AUDIO_FILE            tag a file: load time, real-time factor, peak RSS
 *   bench MODEL --stream SECONDS      stream SECONDS of synthetic stereo 44.1 kHz audio in
 *                                     100 ms chunks: real-time factor, peak RSS
 * The real-time factor is processing time / audio duration (below 1: faster than real time).
 * Peak RSS is the process's maximum resident set (getrusage), so each mode runs alone. */
#define _POSIX_C_SOURCE 200809L /* clock_gettime under -std=c11 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "mert.h"

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

static double peak_rss_mb(void) {
    struct rusage u;
    getrusage(RUSAGE_SELF, &u);
    return u.ru_maxrss / 1024.0;
}

static int fail(const char *what) {
    fprintf(stderr, "%s: %s\n", what, mert_last_error());
    return 1;
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: %s MODEL AUDIO_FILE | %s MODEL --stream SECONDS\n", argv[0], argv[0]);
        return 2;
    }
    double t0 = now();
    MertModel *m = NULL;
    if (mert_model_load(argv[1], &m) != MERT_STATUS_OK) return fail("load");
    printf("{\"model\": \"%s\", \"load_s\": %.3f, \"rss_after_load_mb\": %.1f", argv[1], now() - t0, peak_rss_mb());
    if (strcmp(argv[2], "--stream") != 0) {
        MertEmbedding *e = NULL;
        double t1 = now();
        if (mert_embed_file(m, argv[2], &e) != MERT_STATUS_OK) return fail("embed");
        double embed_s = now() - t1;
        /* duration from the frame count: frames at 75 Hz (hop 320 at 24 kHz) */
        double seconds = (mert_embedding_frames(e) * 320.0 + 80.0) / 24000.0;
        mert_embedding_free(e);
        MertTags *t = NULL;
        double t2 = now();
        if (mert_tag_file(m, argv[2], &t) != MERT_STATUS_OK) return fail("tag");
        double tag_s = now() - t2;
        printf(", \"audio_s\": %.1f, \"embed_s\": %.2f, \"embed_rtf\": %.4f, \"tag_s\": %.2f, \"tag_rtf\": %.4f, \"top_tag\": \"%s\"",
               seconds, embed_s, embed_s / seconds, tag_s, tag_s / seconds, mert_tags_name(t, 0));
        mert_tags_free(t);
    } else {
        double seconds = atof(argc > 3 ? argv[3] : "60");
        size_t rate = 44100, chunk = rate / 10, total = (size_t)(seconds * rate), chunks = 0;
        float *pcm = malloc(chunk * 2 * sizeof(float));
        MertSession *s = NULL;
        if (mert_session_new(m, (uint32_t)rate, 2, &s) != MERT_STATUS_OK) return fail("session");
        double busy = 0, t1 = now();
        unsigned seed = 1;
        for (size_t at = 0; at < total; at += chunk) {
            size_t n = total - at < chunk ? total - at : chunk;
            for (size_t i = 0; i < n; i++) {
                double t = (double)(at + i) / rate;
                seed = seed * 1103515245u + 12345u;
                float noise = ((seed >> 16) & 0x7fff) / 32768.0f - 0.5f;
                float v = (float)(0.3 * sin(2 * 3.14159265358979 * 220 * t) * (0.6 + 0.4 * sin(0.5 * t))) + 0.05f * noise;
                pcm[2 * i] = v;
                pcm[2 * i + 1] = 0.8f * v;
            }
            double p = now();
            if (mert_session_push(s, pcm, n) != MERT_STATUS_OK) return fail("push");
            MertEmbedding *e = NULL;
            while (mert_session_next(s, &e) == MERT_STATUS_OK && e) {
                chunks++;
                mert_embedding_free(e);
            }
            busy += now() - p;
        }
        double p = now();
        if (mert_session_finish(s) != MERT_STATUS_OK) return fail("finish");
        MertEmbedding *e = NULL;
        while (mert_session_next(s, &e) == MERT_STATUS_OK && e) {
            chunks++;
            mert_embedding_free(e);
        }
        busy += now() - p;
        printf(", \"audio_s\": %.1f, \"stream_s\": %.2f, \"stream_rtf\": %.4f, \"chunks\": %zu", seconds, busy, busy / seconds, chunks);
        (void)t1;
        mert_session_free(s);
        free(pcm);
    }
    printf(", \"peak_rss_mb\": %.1f}\n", peak_rss_mb());
    mert_model_free(m);
    return 0;
}
