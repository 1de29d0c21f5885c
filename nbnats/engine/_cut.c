/* A socket read's consumer messages cut in one pass: the compiled half of nbnats.engine.msg_cut.
 *
 * cut(buf, pos, prefix, token, codes) walks the MSG frames of one pull consumer from `pos` on:
 *
 *     MSG <subject> <sid> <prefix><delivered>.<sseq>.<cseq>.<ns>.<pending>[.<token>] <size>\r\n<payload>\r\n
 *
 * where <prefix> is the consumer's ack-subject prefix ("$JS.ACK.<stream>.<consumer>.", with the
 * domain and account hash if the server sends them). It stops at the first frame that is anything
 * else (a status reply, a PING, another subscription's message, a malformed line) or that is not
 * whole yet, and returns
 *
 *     (end, rows, subject_codes, seqs, times, sizes, joined)
 *
 * `end` is where the first frame not taken starts; subject codes (int32) come from `codes[subject]`
 * (a mapping that gives each subject's bytes a small int, made on first sight by its __missing__);
 * seqs, times and sizes are native int64; `joined` holds the payloads separated by newlines.
 * Every index is checked against the buffer's end: hostile bytes stop the cut, never overrun it.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#define CACHE 8     /* subjects remembered within one call: most reads repeat a few */

typedef struct {
    const char *at;
    Py_ssize_t len;
    int32_t code;
} Seen;

/* 1 to 19 digits from *p on, into *out; a value past int64 is refused. */
static int digits(const char **p, const char *end, int64_t *out) {
    const char *q = *p;
    uint64_t v = 0;             /* 19 digits stay below 2**64 */
    int n = 0;
    while (q < end && *q >= '0' && *q <= '9') {
        if (++n > 19) return 0;
        v = v * 10 + (uint64_t)(*q - '0');
        q++;
    }
    if (!n || v > (uint64_t)INT64_MAX) return 0;
    *p = q;
    *out = (int64_t)v;
    return 1;
}

/* One expected byte at *p. */
static int expect(const char **p, const char *end, char c) {
    if (*p >= end || **p != c) return 0;
    (*p)++;
    return 1;
}

/* Bytes up to the next space (at least one; none of them CR or LF); *p is left on the space. */
static int token_to_space(const char **p, const char *end, const char **start, Py_ssize_t *len) {
    const char *q = *p;
    while (q < end && *q != ' ' && *q != '\r' && *q != '\n') q++;
    if (q == *p || q >= end || *q != ' ') return 0;
    *start = *p;
    *len = q - *p;
    *p = q;
    return 1;
}

static PyObject *cut(PyObject *Py_UNUSED(self), PyObject *args) {
    Py_buffer view;
    Py_ssize_t pos;
    const char *prefix;
    Py_ssize_t prefix_len;
    int token;
    PyObject *codes;
    if (!PyArg_ParseTuple(args, "y*ny#pO", &view, &pos, &prefix, &prefix_len, &token, &codes))
        return NULL;
    const char *base = (const char *)view.buf;
    const char *end = base + view.len;
    if (pos < 0 || pos > view.len) {
        PyBuffer_Release(&view);
        PyErr_SetString(PyExc_ValueError, "pos is outside the buffer");
        return NULL;
    }
    /* a frame takes at least 20 + prefix bytes: that bounds the rows of this read; the columns
       start small and grow, so a read holding one large payload allocates little */
    Py_ssize_t most = (view.len - pos) / (20 + prefix_len) + 1;
    Py_ssize_t room = most < 4096 ? most : 4096;
    int32_t *subj = PyMem_Malloc(room * sizeof(int32_t));
    int64_t *seqs = PyMem_Malloc(room * sizeof(int64_t));
    int64_t *times = PyMem_Malloc(room * sizeof(int64_t));
    int64_t *sizes = PyMem_Malloc(room * sizeof(int64_t));
    PyObject *joined = PyBytes_FromStringAndSize(NULL, view.len - pos + 1);
    PyObject *result = NULL;
    if (!subj || !seqs || !times || !sizes || !joined) {
        PyErr_NoMemory();
        goto done;
    }
    char *out = PyBytes_AS_STRING(joined);
    Py_ssize_t written = 0, rows = 0;
    Seen seen[CACHE];
    int nseen = 0, next_slot = 0;
    const char *p = base + pos;

    while (p < end) {
        const char *q = p, *subject, *ignored;
        Py_ssize_t subject_len, ignored_len;
        int64_t sid, delivered, sseq, cseq, ns, pending, size;
        if (end - q < 4 || memcmp(q, "MSG ", 4) != 0) break;
        q += 4;
        if (!token_to_space(&q, end, &subject, &subject_len) || !expect(&q, end, ' ')) break;
        if (!digits(&q, end, &sid) || !expect(&q, end, ' ')) break;
        if (end - q < prefix_len || memcmp(q, prefix, prefix_len) != 0) break;
        q += prefix_len;
        if (!digits(&q, end, &delivered) || !expect(&q, end, '.') ||
            !digits(&q, end, &sseq) || !expect(&q, end, '.') ||
            !digits(&q, end, &cseq) || !expect(&q, end, '.') ||
            !digits(&q, end, &ns) || !expect(&q, end, '.') ||
            !digits(&q, end, &pending)) break;
        if (token) {
            if (!expect(&q, end, '.') || q >= end || *q == '.') break;
            if (!token_to_space(&q, end, &ignored, &ignored_len)) break;
            for (Py_ssize_t i = 0; i < ignored_len; i++)
                if (ignored[i] == '.') goto stop;
        }
        if (!expect(&q, end, ' ') || !digits(&q, end, &size)) break;
        if (!expect(&q, end, '\r') || !expect(&q, end, '\n')) break;
        if (size > end - q - 2) break;                  /* not whole yet */
        if (q[size] != '\r' || q[size + 1] != '\n') break;

        int32_t code = -1;
        for (int i = 0; i < nseen; i++) {
            if (seen[i].len == subject_len && memcmp(seen[i].at, subject, subject_len) == 0) {
                code = seen[i].code;
                break;
            }
        }
        if (code < 0) {
            PyObject *key = PyBytes_FromStringAndSize(subject, subject_len);
            PyObject *value = key ? PyObject_GetItem(codes, key) : NULL;
            Py_XDECREF(key);
            if (!value) goto done;
            long v = PyLong_AsLong(value);
            Py_DECREF(value);
            if (v == -1 && PyErr_Occurred()) goto done;
            code = (int32_t)v;
            seen[next_slot].at = subject;
            seen[next_slot].len = subject_len;
            seen[next_slot].code = code;
            next_slot = (next_slot + 1) % CACHE;
            if (nseen < CACHE) nseen++;
        }
        if (rows == room) {
            room = room * 2 < most ? room * 2 : most;
            int32_t *s2 = PyMem_Realloc(subj, room * sizeof(int32_t));
            if (s2) subj = s2;
            int64_t *q2 = PyMem_Realloc(seqs, room * sizeof(int64_t));
            if (q2) seqs = q2;
            int64_t *t2 = PyMem_Realloc(times, room * sizeof(int64_t));
            if (t2) times = t2;
            int64_t *z2 = PyMem_Realloc(sizes, room * sizeof(int64_t));
            if (z2) sizes = z2;
            if (!s2 || !q2 || !t2 || !z2) {
                PyErr_NoMemory();
                goto done;
            }
        }
        subj[rows] = code;
        seqs[rows] = sseq;
        times[rows] = ns;
        sizes[rows] = size;
        if (rows) out[written++] = '\n';
        memcpy(out + written, q, size);
        written += size;
        rows++;
        p = q + size + 2;
    }
stop:
    if (_PyBytes_Resize(&joined, written) < 0) {
        joined = NULL;
        goto done;
    }
    result = Py_BuildValue("nny#y#y#y#O", (Py_ssize_t)(p - base), rows,
                           (const char *)subj, rows * (Py_ssize_t)sizeof(int32_t),
                           (const char *)seqs, rows * (Py_ssize_t)sizeof(int64_t),
                           (const char *)times, rows * (Py_ssize_t)sizeof(int64_t),
                           (const char *)sizes, rows * (Py_ssize_t)sizeof(int64_t), joined);
done:
    PyMem_Free(subj);
    PyMem_Free(seqs);
    PyMem_Free(times);
    PyMem_Free(sizes);
    Py_XDECREF(joined);
    PyBuffer_Release(&view);
    return result;
}

static PyMethodDef methods[] = {
    {"cut", cut, METH_VARARGS, "cut(buf, pos, prefix, token, codes) -> (end, rows, codes, seqs, times, sizes, joined)"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_cut", "One pull consumer's MSG frames cut in C.", -1, methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__cut(void) { return PyModule_Create(&module); }
