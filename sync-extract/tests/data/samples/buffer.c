/* A growable byte buffer. */
#include <stdlib.h>
#include <string.h>

#define INITIAL_CAP 64

/* A buffer of bytes. */
struct buffer {
    char *data;
    size_t len;
    size_t cap;
};

typedef struct buffer buffer_t;

enum grow_result { GROW_OK, GROW_FAILED };

/* Creates an empty buffer. */
buffer_t *buffer_new(void) {
    buffer_t *b = malloc(sizeof *b);
    if (!b) {
        return NULL;
    }
    b->data = malloc(INITIAL_CAP);
    b->len = 0;
    b->cap = INITIAL_CAP;
    return b;
}

/* Makes room for at least `extra` more bytes. */
static enum grow_result buffer_grow(buffer_t *b, size_t extra) {
    size_t need = b->len + extra;
    if (need <= b->cap) {
        return GROW_OK;
    }
    size_t cap = b->cap * 2;
    while (cap < need) {
        cap *= 2;
    }
    char *data = realloc(b->data, cap);
    if (!data) {
        return GROW_FAILED;
    }
    b->data = data;
    b->cap = cap;
    return GROW_OK;
}

/* Appends bytes. */
int buffer_append(buffer_t *b, const char *bytes, size_t n) {
    if (buffer_grow(b, n) != GROW_OK) {
        return -1;
    }
    memcpy(b->data + b->len, bytes, n);
    b->len += n;
    return 0;
}

/* Frees the buffer. */
void buffer_free(buffer_t *b) {
    free(b->data);
    free(b);
}
