/*
 * _pdqindex: the hot loops of Bastion's exact PDQ radius index (see pdq_index.py and docs/pdq_index.md).
 *
 * Why C: a radius-31 query over 10M hashes scans ~40k table entries and verifies ~100 candidates; in NumPy that
 * is a dozen temporary arrays per query, here it is one pass with software prefetch and no allocation.
 * The data layout is owned by Python (NumPy arrays passed through the buffer protocol); this file only reads and
 * fills them, so the NumPy fallback (_pdq_numpy.py) and this module build byte-identical tables.
 *
 * Layout (n hashes of 32 bytes; table t in 0..15 is keyed on bytes 2t,2t+1 read as little-endian uint16;
 * super-chunk i in 0..7 is bytes 4i..4i+3 = tables 2i and 2i+1):
 *   offsets[t][k]..offsets[t][k+1]  the entries of table t whose key is k (CSR, 65537 uint32 per table)
 *   slots[t][j]                     the hash row of entry j (uint32), entries in increasing row order per key
 *   others[t][j]                    the key of that row in the sibling table t^1 (the other half of the chunk)
 * The search plan (per-chunk thresholds S[8], per-table probe radii H[16]) comes from Python; see _plan there.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define NT 16
#define NS 8
#define NKEYS 65536
#define NOFF (NKEYS + 1)
#define HB 32

#if defined(__GNUC__) || defined(__clang__)
#define POP64(x) ((int)__builtin_popcountll(x))
#define POP32(x) ((int)__builtin_popcount(x))
#define PREFETCH(p) __builtin_prefetch((const void *)(p))
#else
static int POP64(uint64_t x) {
    x = x - ((x >> 1) & 0x5555555555555555ULL);
    x = (x & 0x3333333333333333ULL) + ((x >> 2) & 0x3333333333333333ULL);
    x = (x + (x >> 4)) & 0x0F0F0F0F0F0F0F0FULL;
    return (int)((x * 0x0101010101010101ULL) >> 56);
}
#define POP32(x) POP64((uint64_t)(x))
#define PREFETCH(p) ((void)0)
#endif

static uint16_t g_masks[NKEYS]; /* every 16-bit mask, ordered by popcount */
static uint8_t g_mask_pc[NKEYS];
static uint32_t g_cum[18]; /* g_cum[h + 1]: number of masks with popcount <= h */

static void init_masks(void) {
    uint32_t start[18] = {0};
    for (uint32_t m = 0; m < NKEYS; m++) start[POP32(m) + 1]++;
    for (int h = 1; h < 18; h++) start[h] += start[h - 1];
    memcpy(g_cum, start, sizeof(g_cum)); /* start[h] = masks with popcount < h, i.e. <= h - 1 */
    uint32_t cursor[18];
    memcpy(cursor, start, sizeof(cursor));
    for (uint32_t m = 0; m < NKEYS; m++) {
        int pc = POP32(m);
        g_masks[cursor[pc]] = (uint16_t)m;
        g_mask_pc[cursor[pc]] = (uint8_t)pc;
        cursor[pc]++;
    }
}

static inline uint64_t load64(const uint8_t *p) {
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}
static inline uint32_t load32(const uint8_t *p) {
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}
static inline uint32_t key16(const uint8_t *p) { return (uint32_t)p[0] | ((uint32_t)p[1] << 8); }

/* ---- growable arrays (no Python calls: used with the GIL released) ---- */
typedef struct {
    char *p;
    size_t len, cap, elem;
} vec_t;

static int vec_reserve(vec_t *v, size_t extra) {
    if (v->len + extra <= v->cap) return 0;
    size_t cap = v->cap ? v->cap : 256;
    while (cap < v->len + extra) cap *= 2;
    char *p = realloc(v->p, cap * v->elem);
    if (!p) return -1;
    v->p = p;
    v->cap = cap;
    return 0;
}

typedef struct {
    int64_t id;
    int32_t dist;
} hit_t;

typedef struct {
    uint32_t b, e;
    uint32_t key;
    uint8_t t, lo, lim;
} range_t;

typedef struct {
    const uint8_t *hashes;
    const int64_t *ids;
    const uint8_t *alive;
    Py_ssize_t n;
    const uint32_t *offsets;
    const uint16_t *others;
    const uint32_t *slots;
    const uint8_t *dhashes;
    const int64_t *dids;
    const uint8_t *dalive;
    Py_ssize_t dn;
    int radius, use_index;
    int S[NS], H[NT];
} plan_t;

static int cmp_hit(const void *a, const void *b) {
    const hit_t *x = a, *y = b;
    if (x->dist != y->dist) return x->dist < y->dist ? -1 : 1;
    return (x->id > y->id) - (x->id < y->id);
}

static inline int dist256(const uint8_t *h, const uint64_t *q64) {
    return POP64(load64(h) ^ q64[0]) + POP64(load64(h + 8) ^ q64[1]) + POP64(load64(h + 16) ^ q64[2]) +
           POP64(load64(h + 24) ^ q64[3]);
}

static int linear_scan(const uint8_t *hashes, const int64_t *ids, const uint8_t *alive, Py_ssize_t n,
                       const uint64_t *q64, int radius, vec_t *hits) {
    for (Py_ssize_t s = 0; s < n; s++) {
        int d = dist256(hashes + (size_t)s * HB, q64);
        if (d <= radius && alive[s]) {
            if (vec_reserve(hits, 1)) return -1;
            hit_t *h = (hit_t *)hits->p + hits->len++;
            h->id = ids[s];
            h->dist = d;
        }
    }
    return 0;
}

/* One query in flight: its key material and the buckets it will scan. */
typedef struct {
    uint64_t q64[4];
    uint32_t q32[NS];
    uint16_t qh[NT];
    vec_t ranges;
} query_t;

static void query_load(query_t *Q, const uint8_t *q) {
    for (int w = 0; w < 4; w++) Q->q64[w] = load64(q + 8 * w);
    for (int i = 0; i < NS; i++) Q->q32[i] = load32(q + 4 * i);
    for (int t = 0; t < NT; t++) Q->qh[t] = (uint16_t)key16(q + 2 * t);
}

/* Stage 1: list the buckets the plan probes and prefetch their offsets, then every cache line of each bucket, so
 * the memory system fetches them while the previous query of the batch is being scanned. */
static int query_prepare(const plan_t *P, query_t *Q) {
    size_t n = (size_t)P->n;
    vec_t *ranges = &Q->ranges;
    ranges->len = 0;
    for (int t = 0; t < NT; t++) {
        int ht = P->H[t];
        if (ht < 0) continue;
        if (ht > 16) ht = 16;
        int lo = (t & 1) ? P->H[t - 1] + 1 : 0;
        if (lo < 0) lo = 0;
        int si = P->S[t >> 1];
        uint32_t count = g_cum[ht + 1];
        if (vec_reserve(ranges, count)) return -1;
        const uint32_t *off = P->offsets + (size_t)t * NOFF;
        range_t *r = (range_t *)ranges->p;
        for (uint32_t p = 0; p < count; p++) {
            int lim = si - g_mask_pc[p];
            if (lim < lo) break; /* masks are ordered by popcount: every later one fails too */
            if (lim > 16) lim = 16;
            uint32_t key = (uint32_t)(Q->qh[t] ^ g_masks[p]);
            range_t *x = r + ranges->len++;
            x->key = key;
            x->t = (uint8_t)t;
            x->lo = (uint8_t)lo;
            x->lim = (uint8_t)lim;
            PREFETCH(off + key);
        }
    }
    range_t *r = (range_t *)ranges->p;
    for (size_t k = 0; k < ranges->len; k++) {
        const uint32_t *off = P->offsets + (size_t)r[k].t * NOFF + r[k].key;
        r[k].b = off[0];
        r[k].e = off[1];
        const uint16_t *o = P->others + (size_t)r[k].t * n;
        for (uint32_t j = r[k].b; j < r[k].e; j += 32) PREFETCH(o + j);
    }
    return 0;
}

/* Stage 2: scan the buckets through the super-chunk filter, then resolve survivors' rows and verify them against
 * the full hashes (each step prefetches what the next one reads); then the delta, then sort the query's hits. */
static int query_finish(const plan_t *P, query_t *Q, vec_t *cands, vec_t *hits) {
    size_t n = (size_t)P->n, start = hits->len;
    if (n > 0 && !P->use_index) {
        if (linear_scan(P->hashes, P->ids, P->alive, P->n, Q->q64, P->radius, hits)) return -1;
    } else if (n > 0) {
        const range_t *r = (const range_t *)Q->ranges.p;
        cands->len = 0;
        for (size_t k = 0; k < Q->ranges.len; k++) {
            int t = r[k].t;
            const uint16_t *o = P->others + (size_t)t * n;
            uint32_t qo = Q->qh[t ^ 1], lo = r[k].lo, span = (uint32_t)(r[k].lim - r[k].lo);
            uint64_t chunk = (uint64_t)(t >> 1);
            for (uint32_t j = r[k].b; j < r[k].e; j++) {
                uint32_t d = (uint32_t)POP32((uint32_t)o[j] ^ qo);
                if (d - lo <= span) { /* candidate: (position in the slots array << 3) | super-chunk */
                    if (vec_reserve(cands, 1)) return -1;
                    size_t at = (size_t)t * n + j;
                    PREFETCH(P->slots + at);
                    ((uint64_t *)cands->p)[cands->len++] = ((uint64_t)at << 3) | chunk;
                }
            }
        }
        uint64_t *c = (uint64_t *)cands->p;
        for (size_t k = 0; k < cands->len; k++) { /* now (row << 3) | super-chunk */
            uint32_t s = P->slots[c[k] >> 3];
            c[k] = ((uint64_t)s << 3) | (c[k] & 7);
            PREFETCH(P->hashes + (size_t)s * HB);
        }
        for (size_t k = 0; k < cands->len; k++) {
            uint32_t s = (uint32_t)(c[k] >> 3);
            int chunk = (int)(c[k] & 7);
            const uint8_t *h = P->hashes + (size_t)s * HB;
            int canonical = 1; /* report a row only from the first super-chunk whose threshold admits it */
            for (int i = 0; i < chunk; i++) {
                if (POP32(load32(h + 4 * i) ^ Q->q32[i]) <= P->S[i]) {
                    canonical = 0;
                    break;
                }
            }
            if (!canonical) continue;
            int d = dist256(h, Q->q64);
            if (d <= P->radius && P->alive[s]) {
                if (vec_reserve(hits, 1)) return -1;
                hit_t *x = (hit_t *)hits->p + hits->len++;
                x->id = P->ids[s];
                x->dist = d;
            }
        }
    }
    if (P->dn > 0 && linear_scan(P->dhashes, P->dids, P->dalive, P->dn, Q->q64, P->radius, hits)) return -1;
    size_t count = hits->len - start;
    if (count > 1) qsort((hit_t *)hits->p + start, count, sizeof(hit_t), cmp_hit);
    return 0;
}

static int check_len(Py_buffer *b, Py_ssize_t want, const char *what) {
    if (b->len != want) {
        PyErr_Format(PyExc_ValueError, "_pdqindex: %s has %zd bytes, expected %zd", what, b->len, want);
        return -1;
    }
    return 0;
}

PyDoc_STRVAR(search_doc,
             "search(queries, radius, S, H, use_index, hashes, ids, alive, offsets, others, slots, dhashes, dids, "
             "dalive) -> (counts, ids, dists)\n\nAll arrays are C-contiguous buffers; results are bytearrays of "
             "int64 counts per query, int64 ids and int32 distances, sorted by (distance, id) within each query.");

static PyObject *py_search(PyObject *self, PyObject *args) {
    Py_buffer qb, sb, hb, b_hash, b_ids, b_alive, b_off, b_oth, b_slot, b_dh, b_di, b_da;
    int radius, use_index;
    if (!PyArg_ParseTuple(args, "y*iy*y*py*y*y*y*y*y*y*y*y*", &qb, &radius, &sb, &hb, &use_index, &b_hash, &b_ids,
                          &b_alive, &b_off, &b_oth, &b_slot, &b_dh, &b_di, &b_da))
        return NULL;
    Py_buffer *all[] = {&qb, &sb, &hb, &b_hash, &b_ids, &b_alive, &b_off, &b_oth, &b_slot, &b_dh, &b_di, &b_da};
    PyObject *result = NULL;
    plan_t P;
    vec_t cands = {NULL, 0, 0, sizeof(uint64_t)}, hits = {NULL, 0, 0, sizeof(hit_t)};
    query_t Q[2];
    memset(Q, 0, sizeof(Q));
    Q[0].ranges.elem = Q[1].ranges.elem = sizeof(range_t);
    int64_t *counts = NULL;
    Py_ssize_t m = qb.len / HB, n = b_ids.len / 8, dn = b_di.len / 8;
    if (radius < 0 || radius > 256) {
        PyErr_SetString(PyExc_ValueError, "_pdqindex: radius must be in 0..256");
        goto done;
    }
    if (check_len(&qb, m * HB, "queries") || check_len(&sb, NS * 4, "S") || check_len(&hb, NT * 4, "H") ||
        check_len(&b_ids, n * 8, "ids") || check_len(&b_hash, n * HB, "hashes") || check_len(&b_alive, n, "alive") ||
        check_len(&b_off, (Py_ssize_t)NT * NOFF * 4, "offsets") || check_len(&b_oth, n * NT * 2, "others") ||
        check_len(&b_slot, n * NT * 4, "slots") || check_len(&b_di, dn * 8, "delta ids") ||
        check_len(&b_dh, dn * HB, "delta hashes") || check_len(&b_da, dn, "delta alive"))
        goto done;
    if (n > 0 && ((const uint32_t *)b_off.buf)[NOFF - 1] != (uint32_t)n) {
        PyErr_SetString(PyExc_ValueError, "_pdqindex: offsets do not match the number of hashes");
        goto done;
    }
    P.hashes = b_hash.buf;
    P.ids = b_ids.buf;
    P.alive = b_alive.buf;
    P.n = n;
    P.offsets = b_off.buf;
    P.others = b_oth.buf;
    P.slots = b_slot.buf;
    P.dhashes = b_dh.buf;
    P.dids = b_di.buf;
    P.dalive = b_da.buf;
    P.dn = dn;
    P.radius = radius;
    P.use_index = use_index;
    memcpy(P.S, sb.buf, sizeof(P.S));
    memcpy(P.H, hb.buf, sizeof(P.H));
    counts = malloc((size_t)(m ? m : 1) * sizeof(int64_t));
    if (!counts) {
        PyErr_NoMemory();
        goto done;
    }
    int failed = 0, pipelined = use_index && n > 0;
    const uint8_t *queries = qb.buf;
    Py_BEGIN_ALLOW_THREADS;
    /* Two queries in flight: query k + 1's buckets are being fetched while query k is scanned. */
    if (m > 0) {
        query_load(&Q[0], queries);
        failed = pipelined && query_prepare(&P, &Q[0]);
    }
    for (Py_ssize_t k = 0; k < m && !failed; k++) {
        query_t *next = &Q[(k + 1) & 1];
        if (k + 1 < m) {
            query_load(next, queries + (size_t)(k + 1) * HB);
            if (pipelined && query_prepare(&P, next)) {
                failed = 1;
                break;
            }
        }
        size_t before = hits.len;
        failed = query_finish(&P, &Q[k & 1], &cands, &hits);
        counts[k] = (int64_t)(hits.len - before);
    }
    Py_END_ALLOW_THREADS;
    if (failed) {
        PyErr_NoMemory();
        goto done;
    }
    PyObject *c = PyByteArray_FromStringAndSize((const char *)counts, m * 8);
    PyObject *ids = PyByteArray_FromStringAndSize(NULL, (Py_ssize_t)hits.len * 8);
    PyObject *dists = PyByteArray_FromStringAndSize(NULL, (Py_ssize_t)hits.len * 4);
    if (c && ids && dists) {
        int64_t *io = (int64_t *)PyByteArray_AS_STRING(ids);
        int32_t *d = (int32_t *)PyByteArray_AS_STRING(dists);
        const hit_t *h = (const hit_t *)hits.p;
        for (size_t k = 0; k < hits.len; k++) {
            io[k] = h[k].id;
            d[k] = h[k].dist;
        }
        result = PyTuple_Pack(3, c, ids, dists);
    }
    Py_XDECREF(c);
    Py_XDECREF(ids);
    Py_XDECREF(dists);
done:
    free(counts);
    free(Q[0].ranges.p);
    free(Q[1].ranges.p);
    free(cands.p);
    free(hits.p);
    for (size_t k = 0; k < sizeof(all) / sizeof(all[0]); k++) PyBuffer_Release(all[k]);
    return result;
}

PyDoc_STRVAR(build_doc, "build(hashes, offsets, others, slots) -> None\n\nFill the CSR tables (writable buffers of "
                        "16*65537 uint32, 16*n uint16, 16*n uint32) for n hashes of 32 bytes, by a stable counting "
                        "sort on each 16-bit key.");

/* Stable counting sort of one table (keys[s]: row s's key, okeys[s]: its sibling key) in two cache-friendly steps:
 * scatter rows into 256 regions by the key's high byte (256 write streams), then sort each region (a few hundred
 * KB, in cache) by the low byte. */
static int build_table(const uint16_t *keys, const uint16_t *okeys, Py_ssize_t n, uint32_t *off, uint16_t *oth,
                       uint32_t *sl, uint8_t *low, uint8_t **tmp, size_t *tmp_cap) {
    uint32_t cursor[256];
    memset(off, 0, NOFF * sizeof(uint32_t));
    for (Py_ssize_t s = 0; s < n; s++) off[keys[s] + 1]++;
    for (int k = 0; k < NKEYS; k++) off[k + 1] += off[k];
    size_t widest = 0;
    for (int b = 0; b < 256; b++) {
        cursor[b] = off[b << 8];
        size_t len = off[(b + 1) << 8] - off[b << 8];
        if (len > widest) widest = len;
    }
    if (widest * 7 > *tmp_cap) {
        uint8_t *p = realloc(*tmp, widest * 7);
        if (!p) return -1;
        *tmp = p;
        *tmp_cap = widest * 7;
    }
    for (Py_ssize_t s = 0; s < n; s++) {
        uint32_t k = keys[s], j = cursor[k >> 8]++;
        sl[j] = (uint32_t)s;
        oth[j] = okeys[s];
        low[j] = (uint8_t)k;
    }
    uint32_t *ts = (uint32_t *)*tmp;
    uint16_t *to = (uint16_t *)(ts + widest);
    uint8_t *tl = (uint8_t *)(to + widest);
    for (int b = 0; b < 256; b++) {
        uint32_t begin = off[b << 8], len = off[(b + 1) << 8] - begin;
        if (len < 2) continue;
        memcpy(ts, sl + begin, len * sizeof(uint32_t));
        memcpy(to, oth + begin, len * sizeof(uint16_t));
        memcpy(tl, low + begin, len);
        memcpy(cursor, off + (b << 8), sizeof(cursor));
        for (uint32_t i = 0; i < len; i++) {
            uint32_t j = cursor[tl[i]]++;
            sl[j] = ts[i];
            oth[j] = to[i];
        }
    }
    return 0;
}

static PyObject *py_build(PyObject *self, PyObject *args) {
    Py_buffer hb, ob, eb, sb;
    if (!PyArg_ParseTuple(args, "y*w*w*w*", &hb, &ob, &eb, &sb)) return NULL;
    PyObject *result = NULL;
    Py_ssize_t n = hb.len / HB;
    uint8_t *low = NULL, *tmp = NULL;
    uint16_t *pair = NULL;
    size_t tmp_cap = 0;
    int failed = 0;
    if (check_len(&hb, n * HB, "hashes") || check_len(&ob, (Py_ssize_t)NT * NOFF * 4, "offsets") ||
        check_len(&eb, n * NT * 2, "others") || check_len(&sb, n * NT * 4, "slots"))
        goto done;
    if ((uint64_t)n > 0xFFFFFFFFULL) {
        PyErr_SetString(PyExc_ValueError, "_pdqindex: at most 2**32 - 1 hashes per index");
        goto done;
    }
    low = malloc((size_t)(n ? n : 1));
    pair = malloc((size_t)(n ? n : 1) * 2 * sizeof(uint16_t));
    if (!low || !pair) {
        PyErr_NoMemory();
        goto done;
    }
    Py_BEGIN_ALLOW_THREADS;
    /* One pass over the rows writes every key, transposed, into others[t][s]; each super-chunk's two key columns
     * are then copied aside so both of its tables are built from contiguous arrays. */
    uint16_t *oth = eb.buf;
    const uint8_t *h = hb.buf;
    for (Py_ssize_t s = 0; s < n; s++)
        for (int t = 0; t < NT; t++) oth[(size_t)t * n + s] = (uint16_t)key16(h + (size_t)s * HB + 2 * t);
    for (int i = 0; i < NS && !failed; i++) {
        memcpy(pair, oth + (size_t)(2 * i) * n, (size_t)n * sizeof(uint16_t));
        memcpy(pair + n, oth + (size_t)(2 * i + 1) * n, (size_t)n * sizeof(uint16_t));
        for (int half = 0; half < 2 && !failed; half++) {
            size_t t = (size_t)(2 * i + half);
            failed = build_table(pair + half * n, pair + (1 - half) * n, n, (uint32_t *)ob.buf + t * NOFF,
                                 oth + t * n, (uint32_t *)sb.buf + t * n, low, &tmp, &tmp_cap);
        }
    }
    Py_END_ALLOW_THREADS;
    if (failed)
        PyErr_NoMemory();
    else
        result = Py_NewRef(Py_None);
done:
    free(low);
    free(tmp);
    free(pair);
    PyBuffer_Release(&hb);
    PyBuffer_Release(&ob);
    PyBuffer_Release(&eb);
    PyBuffer_Release(&sb);
    return result;
}

static PyMethodDef methods[] = {
    {"search", py_search, METH_VARARGS, search_doc},
    {"build", py_build, METH_VARARGS, build_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_pdqindex",
                                    "C engine of bastion.matching.pdq_index (exact PDQ radius search).", -1, methods};

PyMODINIT_FUNC PyInit__pdqindex(void) {
    init_masks();
    return PyModule_Create(&module);
}
