/* The C ABI end to end, linked against the static library and the generated header
 * (run by scripts/mobile-test, which makes the reference outputs with the `mert` CLI):
 *
 *   mert_test TINY_MODEL_DIR TINY_KIT_FILE TINY_Q8_FILE TAG_MODEL WORKDIR
 *
 * WORKDIR holds phrase.wav (stereo 44.1 kHz) and long.wav (the same, 4 times), and the
 * references: phrase.npy, long.npy, phrase-q8.npy (`mert embed --layers last`) and
 * phrase.tags, long.tags (the top tags of `mert tag --json`, one per line).
 * Checks: one-shot and streamed embeddings against `mert embed` (max |a-b| / max |b| <= 1e-5),
 * models loaded from a path, from bytes and quantized q8; tags against `mert tag`; and bad
 * input of every kind through the ABI: each returns its error code and a one-line message. */
#include <float.h>
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mert.h"

static int failures = 0;

#define CHECK(cond, ...)                                   \
    do {                                                   \
        if (!(cond)) {                                     \
            fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__); \
            fprintf(stderr, __VA_ARGS__);                  \
            fprintf(stderr, "\n");                         \
            failures++;                                    \
        }                                                  \
    } while (0)

static char *path_join(const char *dir, const char *name) {
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = malloc(n);
    snprintf(p, n, "%s/%s", dir, name);
    return p;
}

static unsigned char *read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *buf = malloc(n > 0 ? (size_t)n : 1);
    *len = fread(buf, 1, (size_t)n, f);
    fclose(f);
    return buf;
}

static uint32_t u32le(const unsigned char *p) { return p[0] | p[1] << 8 | p[2] << 16 | (uint32_t)p[3] << 24; }
static uint16_t u16le(const unsigned char *p) { return (uint16_t)(p[0] | p[1] << 8); }

/* 16-bit PCM WAV -> interleaved floats in [-1, 1) (sample / 32768, as the kit's decoder). */
static float *read_wav(const char *path, size_t *frames, uint32_t *rate, uint32_t *channels) {
    size_t len = 0;
    unsigned char *b = read_file(path, &len);
    if (!b || len < 12 || memcmp(b, "RIFF", 4) || memcmp(b + 8, "WAVE", 4)) {
        fprintf(stderr, "%s: not a RIFF/WAVE file\n", path);
        exit(2);
    }
    size_t pos = 12;
    uint16_t bits = 0;
    float *out = NULL;
    while (pos + 8 <= len) {
        uint32_t size = u32le(b + pos + 4);
        const unsigned char *body = b + pos + 8;
        if (!memcmp(b + pos, "fmt ", 4)) {
            *channels = u16le(body + 2);
            *rate = u32le(body + 4);
            bits = u16le(body + 14);
        } else if (!memcmp(b + pos, "data", 4)) {
            if (bits != 16 || *channels == 0) {
                fprintf(stderr, "%s: expected 16-bit PCM\n", path);
                exit(2);
            }
            size_t n = size / 2;
            *frames = n / *channels;
            out = malloc(n * sizeof(float));
            for (size_t i = 0; i < n; i++) out[i] = (float)(int16_t)u16le(body + 2 * i) / 32768.0f;
            break;
        }
        pos += 8 + size + (size & 1);
    }
    free(b);
    if (!out) {
        fprintf(stderr, "%s: no data chunk\n", path);
        exit(2);
    }
    return out;
}

/* A float32 C-order .npy (version 1) -> data and element count. */
static float *read_npy(const char *path, size_t *count) {
    size_t len = 0;
    unsigned char *b = read_file(path, &len);
    if (!b || len < 10 || memcmp(b, "\x93NUMPY", 6)) {
        fprintf(stderr, "%s: not a .npy file\n", path);
        exit(2);
    }
    size_t header = 10 + u16le(b + 8);
    if (!strstr((const char *)b + 10, "'<f4'")) {
        fprintf(stderr, "%s: expected float32\n", path);
        exit(2);
    }
    *count = (len - header) / 4;
    float *out = malloc(*count * sizeof(float));
    memcpy(out, b + header, *count * sizeof(float));
    free(b);
    return out;
}

/* max |a - b| / max |b| */
static double rel_err(const float *a, const float *b, size_t n) {
    double diff = 0, scale = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]);
        if (d > diff || isnan(d)) diff = isnan(d) ? INFINITY : d;
        if (fabs((double)b[i]) > scale) scale = fabs((double)b[i]);
    }
    return scale > 0 ? diff / scale : diff;
}

static void compare_with(const char *what, const float *data, size_t frames, size_t dim,
                         const char *npy) {
    size_t count = 0;
    float *ref = read_npy(npy, &count);
    CHECK(count == frames * dim, "%s: %zu x %zu values, reference %s holds %zu", what, frames, dim, npy, count);
    if (count == frames * dim) {
        double e = rel_err(data, ref, count);
        printf("%-34s %5zu frames x %3zu: max rel err %.2e\n", what, frames, dim, e);
        CHECK(e <= 1e-5, "%s: max rel err %.3e > 1e-5 against %s", what, e, npy);
    }
    free(ref);
}

static MertModel *load_or_die(const char *path) {
    MertModel *m = NULL;
    if (mert_model_load(path, &m) != MERT_STATUS_OK) {
        fprintf(stderr, "cannot load %s: %s\n", path, mert_last_error());
        exit(1);
    }
    return m;
}

static void check_embedding(const char *what, const MertEmbedding *e, const char *npy) {
    compare_with(what, mert_embedding_data(e), mert_embedding_frames(e), mert_embedding_dim(e), npy);
}

/* Stream interleaved PCM in chunks of varying size; returns the stitched [frames, dim]. */
static float *stream(const MertModel *m, const float *pcm, size_t frames, uint32_t rate,
                     uint32_t ch, size_t *out_frames, size_t *chunks, MertTags **tags) {
    MertSession *s = NULL;
    CHECK(mert_session_new(m, rate, ch, &s) == MERT_STATUS_OK, "session_new: %s", mert_last_error());
    size_t dim = mert_model_dim(m), cap = 64, have = 0;
    float *all = malloc(cap * dim * sizeof(float));
    size_t sizes[] = {1, 4410, 333, 44100, 7919, 100000};
    size_t at = 0, k = 0;
    *chunks = 0;
    for (int done = 0; !done;) {
        if (at < frames) {
            size_t n = sizes[k++ % 6];
            if (n > frames - at) n = frames - at;
            CHECK(mert_session_push(s, pcm + at * ch, n) == MERT_STATUS_OK, "push: %s", mert_last_error());
            at += n;
        } else {
            CHECK(mert_session_finish(s) == MERT_STATUS_OK, "finish: %s", mert_last_error());
            done = 1;
        }
        MertEmbedding *e = NULL;
        while (mert_session_next(s, &e) == MERT_STATUS_OK && e) {
            size_t n = mert_embedding_frames(e);
            CHECK(mert_embedding_first_frame(e) == have, "chunk starts at %zu, expected %zu",
                  mert_embedding_first_frame(e), have);
            CHECK(mert_embedding_dim(e) == dim, "chunk width");
            const MertTags *t = mert_embedding_tags(e);
            CHECK((t != NULL) == (mert_model_tag_count(m) > 0), "chunk tags present iff the model tags");
            if (t) CHECK(mert_tags_count(t) == mert_model_tag_count(m), "chunk tag count");
            /* chunks arrive while pushing, before the end, once the stream is long enough */
            if (!done) (*chunks)++;
            while (have + n > cap) {
                cap *= 2;
                all = realloc(all, cap * dim * sizeof(float));
            }
            memcpy(all + have * dim, mert_embedding_data(e), n * dim * sizeof(float));
            have += n;
            mert_embedding_free(e);
        }
    }
    *tags = NULL;
    if (mert_model_tag_count(m) > 0)
        CHECK(mert_session_tags(s, tags) == MERT_STATUS_OK, "session tags: %s", mert_last_error());
    mert_session_free(s);
    *out_frames = have;
    return all;
}

/* The tags' top names equal the reference file's lines, in order. */
static void compare_tags(const char *what, const MertTags *t, const char *ref_path) {
    size_t len = 0;
    char *ref = (char *)read_file(ref_path, &len);
    CHECK(ref != NULL, "cannot read %s", ref_path);
    if (!ref) return;
    ref = realloc(ref, len + 1);
    ref[len] = 0;
    size_t i = 0;
    printf("%-34s", what);
    for (char *line = strtok(ref, "\n"); line; line = strtok(NULL, "\n"), i++) {
        const char *name = mert_tags_name(t, i);
        printf(" %s %.3f", name ? name : "(none)", mert_tags_prob(t, i));
        CHECK(name && !strcmp(name, line), "%s: tag %zu is %s, mert tag says %s", what, i, name ? name : "(none)", line);
    }
    printf("\n");
    CHECK(i > 0, "%s: empty reference", ref_path);
    for (size_t j = 1; j < mert_tags_count(t); j++)
        CHECK(mert_tags_prob(t, j) <= mert_tags_prob(t, j - 1), "tags sorted");
    free(ref);
}

/* An error: the expected code and a non-empty one-line message naming the function. */
static void expect_error(const char *what, int got, int want, const char *fn) {
    const char *msg = mert_last_error();
    CHECK(got == want, "%s: status %d, expected %d (%s)", what, got, want, msg);
    CHECK(msg && msg[0] && !strchr(msg, '\n'), "%s: expected a one-line message, got \"%s\"", what, msg ? msg : "(null)");
    CHECK(msg && !strncmp(msg, fn, strlen(fn)), "%s: message should start with %s: \"%s\"", what, fn, msg ? msg : "(null)");
    printf("  bad input ok: %-32s -> %d: %s\n", what, got, msg);
}

/* On another thread: its own error slot starts empty and its errors stay its own. */
static void *other_thread(void *arg) {
    (void)arg;
    static int ok;
    MertModel *m = NULL;
    ok = strcmp(mert_last_error(), "") == 0
        && mert_model_load("/nonexistent/other.safetensors", &m) == MERT_STATUS_MODEL_LOAD
        && strstr(mert_last_error(), "other.safetensors") != NULL;
    return &ok;
}

static void last_error_is_per_thread(void) {
    MertModel *m = NULL;
    CHECK(mert_model_load(NULL, &m) == MERT_STATUS_INVALID_ARGUMENT, "null path accepted");
    char before[512];
    snprintf(before, sizeof before, "%s", mert_last_error());
    pthread_t t;
    void *result = NULL;
    CHECK(pthread_create(&t, NULL, other_thread, NULL) == 0 && pthread_join(t, &result) == 0, "thread");
    CHECK(result && *(int *)result, "the other thread's error slot was not its own");
    CHECK(strcmp(before, mert_last_error()) == 0, "another thread changed this thread's error: %s", mert_last_error());
}

static void bad_inputs(const MertModel *tiny, const char *kit_file, const float *pcm, size_t frames) {
    MertModel *m = (MertModel *)0x1;
    MertEmbedding *e = (MertEmbedding *)0x1;
    MertTags *t = NULL;
    MertSession *s = NULL;

    expect_error("null path", mert_model_load(NULL, &m), MERT_STATUS_INVALID_ARGUMENT, "mert_model_load");
    CHECK(m == NULL, "the output stays NULL on failure");
    expect_error("missing model file", mert_model_load("/nonexistent/model.safetensors", &m), MERT_STATUS_MODEL_LOAD, "mert_model_load");
    CHECK(strstr(mert_last_error(), "/nonexistent/model.safetensors") != NULL, "message names the file");
    expect_error("null output pointer", mert_model_load(kit_file, NULL), MERT_STATUS_INVALID_ARGUMENT, "mert_model_load");

    size_t len = 0;
    unsigned char *bytes = read_file(kit_file, &len);
    expect_error("truncated model bytes", mert_model_load_bytes(bytes, len / 2, &m), MERT_STATUS_MODEL_LOAD, "mert_model_load_bytes");
    expect_error("model bytes cut in the header", mert_model_load_bytes(bytes, 40, &m), MERT_STATUS_MODEL_LOAD, "mert_model_load_bytes");
    expect_error("empty model bytes", mert_model_load_bytes(bytes, 0, &m), MERT_STATUS_MODEL_LOAD, "mert_model_load_bytes");
    unsigned char junk[256];
    for (int i = 0; i < 256; i++) junk[i] = (unsigned char)(i * 37 + 11);
    expect_error("random model bytes", mert_model_load_bytes(junk, sizeof junk, &m), MERT_STATUS_MODEL_LOAD, "mert_model_load_bytes");
    expect_error("null model bytes", mert_model_load_bytes(NULL, 10, &m), MERT_STATUS_INVALID_ARGUMENT, "mert_model_load_bytes");
    free(bytes);

    expect_error("null model", mert_embed(NULL, pcm, frames, 44100, 2, &e), MERT_STATUS_INVALID_ARGUMENT, "mert_embed");
    CHECK(e == NULL, "the output stays NULL on failure");
    expect_error("null pcm", mert_embed(tiny, NULL, frames, 44100, 2, &e), MERT_STATUS_INVALID_ARGUMENT, "mert_embed");
    expect_error("zero channels", mert_embed(tiny, pcm, frames, 44100, 0, &e), MERT_STATUS_INVALID_ARGUMENT, "mert_embed");
    expect_error("absurd channel count", mert_embed(tiny, pcm, 10, 44100, 100000, &e), MERT_STATUS_INVALID_ARGUMENT, "mert_embed");
    expect_error("zero sample rate", mert_embed(tiny, pcm, frames, 0, 2, &e), MERT_STATUS_INVALID_ARGUMENT, "mert_embed");
    expect_error("absurd sample rate", mert_embed(tiny, pcm, frames, 4000000000u, 2, &e), MERT_STATUS_INVALID_ARGUMENT, "mert_embed");
    expect_error("frame count overflow", mert_embed(tiny, pcm, SIZE_MAX / 2, 44100, 2, &e), MERT_STATUS_INVALID_ARGUMENT, "mert_embed");
    expect_error("too short", mert_embed(tiny, pcm, 10, 44100, 2, &e), MERT_STATUS_AUDIO, "mert_embed");
    CHECK(strstr(mert_last_error(), "too short") != NULL, "says too short");

    float *nan_pcm = malloc(frames * 2 * sizeof(float));
    memcpy(nan_pcm, pcm, frames * 2 * sizeof(float));
    nan_pcm[1001] = NAN;
    expect_error("NaN pcm", mert_embed(tiny, nan_pcm, frames, 44100, 2, &e), MERT_STATUS_AUDIO, "mert_embed");
    nan_pcm[1001] = INFINITY;
    expect_error("infinite pcm", mert_embed(tiny, nan_pcm, frames, 44100, 2, &e), MERT_STATUS_AUDIO, "mert_embed");

    expect_error("missing audio file", mert_embed_file(tiny, "/nonexistent/a.wav", &e), MERT_STATUS_AUDIO, "mert_embed_file");
    expect_error("not audio (a model file)", mert_embed_file(tiny, kit_file, &e), MERT_STATUS_AUDIO, "mert_embed_file");
    expect_error("empty path", mert_embed_file(tiny, "", &e), MERT_STATUS_INVALID_ARGUMENT, "mert_embed_file");
    expect_error("tag without a head", mert_tag(tiny, pcm, frames, 44100, 2, &t), MERT_STATUS_STATE, "mert_tag");
    CHECK(t == NULL, "no tags on failure");

    expect_error("session zero channels", mert_session_new(tiny, 44100, 0, &s), MERT_STATUS_INVALID_ARGUMENT, "mert_session_new");
    expect_error("session absurd rate", mert_session_new(tiny, 7, 2, &s), MERT_STATUS_INVALID_ARGUMENT, "mert_session_new");
    CHECK(mert_session_new(tiny, 44100, 2, &s) == MERT_STATUS_OK, "session_new: %s", mert_last_error());
    expect_error("session push NaN", mert_session_push(s, nan_pcm, frames), MERT_STATUS_AUDIO, "mert_session_push");
    expect_error("session push null", mert_session_push(s, NULL, 10), MERT_STATUS_INVALID_ARGUMENT, "mert_session_push");
    /* a refused chunk leaves the session usable */
    CHECK(mert_session_push(s, pcm, frames) == MERT_STATUS_OK, "push after a refused chunk: %s", mert_last_error());
    CHECK(mert_session_push(s, pcm, 0) == MERT_STATUS_OK, "empty push: %s", mert_last_error());
    CHECK(mert_session_push(s, NULL, 0) == MERT_STATUS_OK, "empty push of NULL: %s", mert_last_error());
    expect_error("session tags before finish", mert_session_tags(s, &t), MERT_STATUS_STATE, "mert_session_tags");
    CHECK(mert_session_finish(s) == MERT_STATUS_OK, "finish: %s", mert_last_error());
    expect_error("push after finish", mert_session_push(s, pcm, frames), MERT_STATUS_STATE, "mert_session_push");
    expect_error("finish twice", mert_session_finish(s), MERT_STATUS_STATE, "mert_session_finish");
    expect_error("session tags without a head", mert_session_tags(s, &t), MERT_STATUS_STATE, "mert_session_tags");
    mert_session_free(s);

    CHECK(mert_session_new(tiny, 44100, 2, &s) == MERT_STATUS_OK, "session_new: %s", mert_last_error());
    CHECK(mert_session_push(s, pcm, 10) == MERT_STATUS_OK, "short push: %s", mert_last_error());
    expect_error("finish a too short stream", mert_session_finish(s), MERT_STATUS_AUDIO, "mert_session_finish");
    expect_error("push after a failed finish", mert_session_push(s, pcm, frames), MERT_STATUS_STATE, "mert_session_push");
    mert_session_free(s);
    expect_error("null session", mert_session_push(NULL, pcm, frames), MERT_STATUS_INVALID_ARGUMENT, "mert_session_push");
    expect_error("null session next", mert_session_next(NULL, &e), MERT_STATUS_INVALID_ARGUMENT, "mert_session_next");
    free(nan_pcm);

    /* accessors and frees accept NULL */
    CHECK(mert_embedding_frames(NULL) == 0 && mert_embedding_dim(NULL) == 0, "null embedding sizes");
    CHECK(mert_embedding_data(NULL) == NULL && mert_embedding_tags(NULL) == NULL, "null embedding data");
    CHECK(mert_tags_count(NULL) == 0 && mert_tags_name(NULL, 0) == NULL && isnan(mert_tags_prob(NULL, 0)), "null tags");
    CHECK(mert_model_dim(NULL) == 0 && mert_model_tag_count(NULL) == 0, "null model");
    mert_embedding_free(NULL);
    mert_tags_free(NULL);
    mert_session_free(NULL);
    mert_model_free(NULL);

    /* messages name the call once */
    CHECK(mert_session_new(tiny, 44100, 2, &s) == MERT_STATUS_OK, "session_new: %s", mert_last_error());
    CHECK(mert_session_finish(s) != MERT_STATUS_OK, "finish an empty stream");
    expect_error("finish after a failed finish", mert_session_finish(s), MERT_STATUS_STATE, "mert_session_finish");
    CHECK(strstr(mert_last_error(), "session finish") == NULL, "no repeated prefix: %s", mert_last_error());
    mert_session_free(s);

    /* loud float samples (full-scale FLT_MAX, stereo, resampled) are audio, not an error, and
       a session takes a chunk of them and goes on */
    float *loud = malloc(frames * 2 * sizeof(float));
    for (size_t i = 0; i < frames * 2; i++) loud[i] = (i / 2) % 2 ? FLT_MAX : -FLT_MAX;
    CHECK(mert_embed(tiny, loud, frames, 44100, 2, &e) == MERT_STATUS_OK, "loud pcm: %s", mert_last_error());
    for (size_t i = 0; e && i < mert_embedding_frames(e) * mert_embedding_dim(e); i++) {
        if (!isfinite(mert_embedding_data(e)[i])) {
            CHECK(0, "loud pcm gives finite features");
            break;
        }
    }
    mert_embedding_free(e);
    e = NULL;
    CHECK(mert_session_new(tiny, 44100, 2, &s) == MERT_STATUS_OK, "session_new: %s", mert_last_error());
    CHECK(mert_session_push(s, loud, frames / 4) == MERT_STATUS_OK, "push loud: %s", mert_last_error());
    CHECK(mert_session_push(s, pcm, frames) == MERT_STATUS_OK, "push after loud: %s", mert_last_error());
    CHECK(mert_session_finish(s) == MERT_STATUS_OK, "finish after loud: %s", mert_last_error());
    mert_session_free(s);
    free(loud);

    /* a path that is not UTF-8 still names a file (Unix paths are bytes) */
    const char *slash = strrchr(kit_file, '/');
    size_t dir_len = slash ? (size_t)(slash - kit_file) + 1 : 0;
    char *odd = malloc(dir_len + 32);
    memcpy(odd, kit_file, dir_len);
    strcpy(odd + dir_len, "model-\xff.safetensors");
    size_t kit_len = 0;
    unsigned char *kit_bytes = read_file(kit_file, &kit_len);
    FILE *f = fopen(odd, "wb");
    CHECK(f && fwrite(kit_bytes, 1, kit_len, f) == kit_len, "write %s", odd);
    if (f) fclose(f);
    free(kit_bytes);
    MertModel *m2 = NULL;
    CHECK(mert_model_load(odd, &m2) == MERT_STATUS_OK, "non-UTF-8 path: %s", mert_last_error());
    mert_model_free(m2);
    remove(odd);
    free(odd);

    /* a good call clears the message */
    CHECK(mert_embed(tiny, pcm, frames, 44100, 2, &e) == MERT_STATUS_OK, "embed after errors");
    CHECK(mert_last_error()[0] == 0, "message cleared after success");
    mert_embedding_free(e);
}

int main(int argc, char **argv) {
    if (argc != 6) {
        fprintf(stderr, "usage: %s TINY_MODEL_DIR TINY_KIT_FILE TINY_Q8_FILE TAG_MODEL WORKDIR\n", argv[0]);
        return 2;
    }
    const char *tiny_dir = argv[1], *kit = argv[2], *q8 = argv[3], *tagger_path = argv[4], *dir = argv[5];
    char *phrase = path_join(dir, "phrase.wav"), *long_wav = path_join(dir, "long.wav");
    size_t frames = 0, long_frames = 0;
    uint32_t rate = 0, ch = 0, long_rate = 0, long_ch = 0;
    float *pcm = read_wav(phrase, &frames, &rate, &ch);
    float *long_pcm = read_wav(long_wav, &long_frames, &long_rate, &long_ch);

    /* one shot, from PCM and from the file, model from a folder */
    MertModel *tiny = load_or_die(tiny_dir);
    MertEmbedding *e = NULL;
    CHECK(mert_embed(tiny, pcm, frames, rate, ch, &e) == MERT_STATUS_OK, "embed: %s", mert_last_error());
    check_embedding("embed pcm (folder model)", e, path_join(dir, "phrase.npy"));
    CHECK(mert_embedding_first_frame(e) == 0, "one-shot starts at frame 0");
    mert_embedding_free(e);
    CHECK(mert_embed_file(tiny, phrase, &e) == MERT_STATUS_OK, "embed_file: %s", mert_last_error());
    check_embedding("embed file (folder model)", e, path_join(dir, "phrase.npy"));
    mert_embedding_free(e);

    /* model from bytes (kit file), and the q8 kit file */
    size_t len = 0;
    unsigned char *bytes = read_file(kit, &len);
    MertModel *from_bytes = NULL;
    CHECK(mert_model_load_bytes(bytes, len, &from_bytes) == MERT_STATUS_OK, "load_bytes: %s", mert_last_error());
    free(bytes); /* the library keeps no pointer into the buffer */
    CHECK(mert_embed(from_bytes, pcm, frames, rate, ch, &e) == MERT_STATUS_OK, "embed: %s", mert_last_error());
    check_embedding("embed pcm (kit bytes)", e, path_join(dir, "phrase.npy"));
    mert_embedding_free(e);
    mert_model_free(from_bytes);
    MertModel *quant = load_or_die(q8);
    CHECK(mert_embed(quant, pcm, frames, rate, ch, &e) == MERT_STATUS_OK, "embed q8: %s", mert_last_error());
    check_embedding("embed pcm (q8 kit file)", e, path_join(dir, "phrase-q8.npy"));
    mert_embedding_free(e);
    mert_model_free(quant);

    /* streaming: chunks of odd sizes; the model may be freed while the session runs */
    size_t got = 0, chunks = 0;
    MertTags *tags = NULL;
    float *streamed = stream(tiny, long_pcm, long_frames, long_rate, long_ch, &got, &chunks, &tags);
    compare_with("stream (24 s, odd chunks)", streamed, got, mert_model_dim(tiny), path_join(dir, "long.npy"));
    printf("%-34s %zu chunks before finish\n", "stream", chunks);
    CHECK(chunks >= 3, "expected chunks while pushing, got %zu", chunks);
    free(streamed);

    /* tags with the default tagger: one shot (PCM and file) and streamed */
    MertModel *tagger = load_or_die(tagger_path);
    CHECK(mert_model_tag_count(tagger) > 0, "the tag model has a head");
    MertTags *t = NULL;
    CHECK(mert_tag(tagger, pcm, frames, rate, ch, &t) == MERT_STATUS_OK, "tag: %s", mert_last_error());
    compare_tags("tag pcm", t, path_join(dir, "phrase.tags"));
    mert_tags_free(t);
    CHECK(mert_tag_file(tagger, phrase, &t) == MERT_STATUS_OK, "tag_file: %s", mert_last_error());
    compare_tags("tag file", t, path_join(dir, "phrase.tags"));
    mert_tags_free(t);
    streamed = stream(tagger, long_pcm, long_frames, long_rate, long_ch, &got, &chunks, &tags);
    CHECK(tags != NULL, "session tags");
    if (tags) compare_tags("stream tags (24 s)", tags, path_join(dir, "long.tags"));
    mert_tags_free(tags);
    free(streamed);
    mert_model_free(tagger);

    bad_inputs(tiny, kit, pcm, frames);
    last_error_is_per_thread();
    mert_model_free(tiny);
    free(pcm);
    free(long_pcm);
    if (failures) {
        fprintf(stderr, "%d check(s) failed\n", failures);
        return 1;
    }
    printf("C ABI: all checks passed\n");
    return 0;
}
