/*
 * attestable.c: the SDK of attestable.h. Wire formats: docs/PROTOCOL.md.
 *
 * Sections: buffers and errors; UTF-8; frame codec; base64; JSON; the channel;
 * certificates; envelopes; CHERI and Capsicum; the public API.
 */
#define _POSIX_C_SOURCE 200809L

#include "attestable.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/cms.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#ifdef __CHERI_PURE_CAPABILITY__
#include <cheriintrin.h>
#endif

#ifdef __FreeBSD__
/* <sys/capsicum.h> needs BSD types that _POSIX_C_SOURCE hides; this is its declaration. */
int cap_enter(void);
#endif

#ifndef MSG_NOSIGNAL
#define MSG_NOSIGNAL 0
#endif

#define HEADER_LEN 5
#define SERVICE_NAME_MAX 64
#define JSON_MAX_DEPTH 64
#define RESOURCE_MAX 512

/* ------------------------------------------------------------------------------------------ */
/* Buffers and errors                                                                          */

/* A growable byte buffer; `oom` is sticky so that a sequence of appends is checked once. */
struct buf {
    unsigned char *p;
    size_t len, cap;
    bool oom;
};

static void buf_reserve(struct buf *b, size_t more)
{
    if (b->oom)
        return;
    if (more > SIZE_MAX - b->len - 1) {
        b->oom = true;
        return;
    }
    size_t need = b->len + more + 1; /* room for a NUL terminator */
    if (need <= b->cap)
        return;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < need)
        cap = cap > SIZE_MAX / 2 ? need : cap * 2;
    unsigned char *p = realloc(b->p, cap);
    if (!p) {
        b->oom = true;
        return;
    }
    b->p = p;
    b->cap = cap;
    b->p[b->len] = '\0'; /* always a C string, even before the first byte */
}

static void buf_add(struct buf *b, const void *data, size_t n)
{
    buf_reserve(b, n);
    if (b->oom)
        return;
    if (n)
        memcpy(b->p + b->len, data, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void buf_adds(struct buf *b, const char *s) { buf_add(b, s, strlen(s)); }

static void buf_addc(struct buf *b, unsigned char c) { buf_add(b, &c, 1); }

static void buf_vprintf(struct buf *b, const char *fmt, va_list ap)
{
    va_list ap2;
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, fmt, ap2);
    va_end(ap2);
    if (n < 0) {
        b->oom = true;
        return;
    }
    buf_reserve(b, (size_t)n);
    if (b->oom)
        return;
    vsnprintf((char *)b->p + b->len, (size_t)n + 1, fmt, ap);
    b->len += (size_t)n;
}

static void buf_printf(struct buf *b, const char *fmt, ...)
#if defined(__GNUC__) || defined(__clang__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

static void buf_printf(struct buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    buf_vprintf(b, fmt, ap);
    va_end(ap);
}

static void buf_free(struct buf *b)
{
    free(b->p);
    b->p = NULL;
    b->len = b->cap = 0;
    b->oom = false;
}

/* Hands the buffer's bytes (NUL-terminated) to the caller. */
static unsigned char *buf_take(struct buf *b, size_t *len)
{
    buf_reserve(b, 0);
    if (b->oom) {
        buf_free(b);
        return NULL;
    }
    unsigned char *p = b->p;
    p[b->len] = '\0';
    if (len)
        *len = b->len;
    b->p = NULL;
    b->len = b->cap = 0;
    return p;
}

struct service_cert {
    struct service_cert *next;
    char name[SERVICE_NAME_MAX + 1];
    X509 *cert;
};

struct att_ctx {
    int fd;                /* -1 once the channel is closed */
    bool certified;        /* HELLO answered with a usable CERT */
    uint32_t next_corr;
    unsigned char *rx;     /* the last frame received; struct frame fields point into it */
    EVP_PKEY *key;         /* the run key; exists only in this process's memory */
    X509 *cert;            /* the run certificate */
    char *chain_pem;
    char *cert_pem;
    char *subject;
    EVP_CIPHER *aes_gcm;   /* fetched before Capsicum, like everything libcrypto loads */
    struct service_cert *services; /* verified service certificates, by service name */
    att_status err_status; /* what the last failed call returned ... */
    char *err;             /* ... and why */
    char *nack_code;       /* the code of the last NACK */
    char *closed_reason;   /* why the channel was closed, repeated to later calls */
};

static void clear_error(att_ctx *ctx)
{
    free(ctx->err);
    ctx->err = NULL;
    ctx->err_status = ATT_OK;
    free(ctx->nack_code);
    ctx->nack_code = NULL;
}

static att_status fail_v(att_ctx *ctx, att_status st, bool with_openssl, const char *fmt,
                         va_list ap)
{
    struct buf b = {0};
    buf_vprintf(&b, fmt, ap);
    if (with_openssl) {
        unsigned long e = ERR_peek_last_error();
        if (e) {
            char text[256];
            ERR_error_string_n(e, text, sizeof text);
            buf_printf(&b, " (OpenSSL: %s)", text);
        }
    }
    ERR_clear_error();
    free(ctx->err);
    ctx->err = (char *)buf_take(&b, NULL);
    ctx->err_status = st;
    return st;
}

#if defined(__GNUC__) || defined(__clang__)
#define PRINTF_LIKE(f, a) __attribute__((format(printf, f, a)))
#else
#define PRINTF_LIKE(f, a)
#endif

static att_status fail(att_ctx *ctx, att_status st, const char *fmt, ...) PRINTF_LIKE(3, 4);
static att_status fail_ssl(att_ctx *ctx, att_status st, const char *fmt, ...) PRINTF_LIKE(3, 4);

/* Records why a call failed, for att_strerror, and returns st. */
static att_status fail(att_ctx *ctx, att_status st, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fail_v(ctx, st, false, fmt, ap);
    va_end(ap);
    return st;
}

/* As fail, adding OpenSSL's last error. */
static att_status fail_ssl(att_ctx *ctx, att_status st, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fail_v(ctx, st, true, fmt, ap);
    va_end(ap);
    return st;
}

static att_status oom(att_ctx *ctx, const char *what)
{
    return fail(ctx, ATT_E_NOMEM, "%s: out of memory", what);
}

static char *dup_bytes(const unsigned char *p, size_t n)
{
    char *s = malloc(n + 1);
    if (s) {
        if (n)
            memcpy(s, p, n);
        s[n] = '\0';
    }
    return s;
}

/* ------------------------------------------------------------------------------------------ */
/* UTF-8                                                                                       */

/* Strict UTF-8 (RFC 3629): no overlong forms, no surrogates, nothing above U+10FFFF. */
static bool utf8_valid(const unsigned char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        unsigned char c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t more;
        uint32_t cp, min;
        if (c >= 0xC2 && c <= 0xDF) {
            more = 1, cp = c & 0x1F, min = 0x80;
        } else if (c >= 0xE0 && c <= 0xEF) {
            more = 2, cp = c & 0x0F, min = 0x800;
        } else if (c >= 0xF0 && c <= 0xF4) {
            more = 3, cp = c & 0x07, min = 0x10000;
        } else {
            return false;
        }
        if (n - i - 1 < more)
            return false;
        for (size_t k = 1; k <= more; k++) {
            if ((s[i + k] & 0xC0) != 0x80)
                return false;
            cp = (cp << 6) | (s[i + k] & 0x3F);
        }
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
            return false;
        i += more + 1;
    }
    return true;
}

/* ------------------------------------------------------------------------------------------ */
/* Frame codec: type:u8 | length:u32be | payload; payload = corr:u32be then the type's fields. */

enum {
    T_HELLO = 0x01,
    T_READ = 0x02,
    T_WRITE = 0x03,
    T_SERVICE_CERT = 0x04,
    T_LOG = 0x05,
    T_CERT = 0x81,
    T_DATA = 0x82,
    T_ACK = 0x83,
    T_NACK = 0xE1,
    T_ERROR = 0xEE
};

enum field_kind { K_U32, K_U8, K_STR, K_BYTES };

#define MAX_FIELDS 4

struct layout {
    uint8_t type;
    const char *name;
    unsigned n; /* fields, corr included */
    enum field_kind kind[MAX_FIELDS];
    const char *field[MAX_FIELDS];
};

/* The message tables of docs/PROTOCOL.md, "Messages". */
static const struct layout LAYOUTS[] = {
    {T_HELLO, "HELLO", 4, {K_U32, K_BYTES, K_STR, K_STR}, {"corr", "csr", "sdk_version", "cheri_bounds"}},
    {T_READ, "READ", 4, {K_U32, K_STR, K_STR, K_BYTES}, {"corr", "service", "resource", "request"}},
    {T_WRITE, "WRITE", 4, {K_U32, K_STR, K_STR, K_BYTES}, {"corr", "service", "resource", "request"}},
    {T_SERVICE_CERT, "SERVICE_CERT", 2, {K_U32, K_STR, K_U32, K_U32}, {"corr", "service", NULL, NULL}},
    {T_LOG, "LOG", 3, {K_U32, K_U8, K_STR, K_U32}, {"corr", "level", "text", NULL}},
    {T_CERT, "CERT", 2, {K_U32, K_STR, K_U32, K_U32}, {"corr", "chain_pem", NULL, NULL}},
    {T_DATA, "DATA", 2, {K_U32, K_BYTES, K_U32, K_U32}, {"corr", "response", NULL, NULL}},
    {T_ACK, "ACK", 2, {K_U32, K_BYTES, K_U32, K_U32}, {"corr", "response", NULL, NULL}},
    {T_NACK, "NACK", 3, {K_U32, K_STR, K_STR, K_U32}, {"corr", "code", "reason", NULL}},
    {T_ERROR, "ERROR", 2, {K_U32, K_STR, K_U32, K_U32}, {"corr", "reason", NULL, NULL}},
};

static const struct layout *layout_of(unsigned type)
{
    for (size_t i = 0; i < sizeof LAYOUTS / sizeof LAYOUTS[0]; i++)
        if (LAYOUTS[i].type == type)
            return &LAYOUTS[i];
    return NULL;
}

/* One decoded field: `num` for u32/u8, `data`/`len` (pointing into the frame) for str/bytes. */
struct field {
    uint32_t num;
    const unsigned char *data;
    size_t len;
};

struct frame {
    uint8_t type;
    const struct layout *layout; /* NULL for an unknown type */
    uint32_t corr;
    struct field f[MAX_FIELDS];  /* f[0] is corr */
};

enum verdict { V_OK, V_INCOMPLETE, V_UNKNOWN, V_MALFORMED, V_OVERSIZED };

static uint32_t be32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

static void put_be32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)(v >> 24);
    p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8);
    p[3] = (unsigned char)v;
}

/*
 * Decodes the frame at the start of buf[0..len). *frame_len is the whole frame's size when the
 * header was complete and not oversized. `why` says what was wrong with a malformed frame.
 */
static enum verdict frame_decode(const unsigned char *buf, size_t len, size_t max,
                                 struct frame *out, size_t *frame_len, const char **why)
{
    memset(out, 0, sizeof *out);
    *why = NULL;
    if (len < HEADER_LEN)
        return V_INCOMPLETE;
    uint32_t plen = be32(buf + 1);
    if (plen > max) {
        *why = "the header announces more than the maximum payload";
        return V_OVERSIZED;
    }
    if (len - HEADER_LEN < plen)
        return V_INCOMPLETE;
    *frame_len = HEADER_LEN + (size_t)plen;
    out->type = buf[0];
    out->layout = layout_of(buf[0]);
    const unsigned char *p = buf + HEADER_LEN, *end = p + plen;
    if (!out->layout) {
        out->corr = plen >= 4 ? be32(p) : 0;
        return V_UNKNOWN;
    }
    for (unsigned i = 0; i < out->layout->n; i++) {
        struct field *f = &out->f[i];
        switch (out->layout->kind[i]) {
        case K_U32:
            if (end - p < 4) {
                *why = "the payload ends inside a u32 field";
                return V_MALFORMED;
            }
            f->num = be32(p);
            p += 4;
            break;
        case K_U8:
            if (end - p < 1) {
                *why = "the payload ends inside a u8 field";
                return V_MALFORMED;
            }
            f->num = *p++;
            break;
        case K_STR:
        case K_BYTES: {
            if (end - p < 4) {
                *why = "the payload ends inside a length prefix";
                return V_MALFORMED;
            }
            uint32_t n = be32(p);
            p += 4;
            if ((size_t)(end - p) < n) {
                *why = "a field runs past the end of the payload";
                return V_MALFORMED;
            }
            if (out->layout->kind[i] == K_STR && !utf8_valid(p, n)) {
                *why = "a str field is not valid UTF-8";
                return V_MALFORMED;
            }
            f->data = p;
            f->len = n;
            p += n;
            break;
        }
        }
    }
    if (p != end) {
        *why = "bytes are left over after the last field";
        return V_MALFORMED;
    }
    out->corr = out->f[0].num;
    return V_OK;
}

enum encode_result { E_OK, E_TOO_LARGE, E_NOT_UTF8, E_NOMEM, E_UNKNOWN_TYPE };

/* Appends the frame of `type` with fields f[0..n) (f[0].num is corr) to out. */
static enum encode_result frame_encode(uint8_t type, const struct field *f, size_t max,
                                       struct buf *out)
{
    const struct layout *l = layout_of(type);
    if (!l)
        return E_UNKNOWN_TYPE;
    size_t plen = 0;
    for (unsigned i = 0; i < l->n; i++) {
        size_t add = l->kind[i] == K_U8 ? 1 : l->kind[i] == K_U32 ? 4 : 4 + f[i].len;
        if (l->kind[i] == K_STR || l->kind[i] == K_BYTES) {
            if (f[i].len > max)
                return E_TOO_LARGE;
            if (l->kind[i] == K_STR && !utf8_valid(f[i].data, f[i].len))
                return E_NOT_UTF8;
        }
        plen += add;
        if (plen > max)
            return E_TOO_LARGE;
    }
    unsigned char hdr[HEADER_LEN];
    hdr[0] = type;
    put_be32(hdr + 1, (uint32_t)plen);
    buf_reserve(out, HEADER_LEN + plen);
    buf_add(out, hdr, HEADER_LEN);
    for (unsigned i = 0; i < l->n; i++) {
        unsigned char n[4];
        switch (l->kind[i]) {
        case K_U32:
            put_be32(n, f[i].num);
            buf_add(out, n, 4);
            break;
        case K_U8:
            buf_addc(out, (unsigned char)f[i].num);
            break;
        case K_STR:
        case K_BYTES:
            put_be32(n, (uint32_t)f[i].len);
            buf_add(out, n, 4);
            buf_add(out, f[i].data, f[i].len);
            break;
        }
    }
    return out->oom ? E_NOMEM : E_OK;
}

/* ------------------------------------------------------------------------------------------ */
/* Base64, standard alphabet, padded                                                           */

static size_t base64_len(size_t n) { return n / 3 * 4 + (n % 3 ? 4 : 0); }

static bool base64_encode(const unsigned char *in, size_t n, struct buf *out)
{
    if (n > INT_MAX / 4 * 3)
        return false;
    buf_reserve(out, base64_len(n));
    if (out->oom)
        return false;
    int w = n ? EVP_EncodeBlock(out->p + out->len, in, (int)n) : 0;
    out->len += (size_t)w;
    out->p[out->len] = '\0';
    return true;
}

static int base64_value(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+')
        return 62;
    if (c == '/')
        return 63;
    return -1;
}

/* Strict decoding: length a multiple of 4, padding only at the end, unused bits zero. */
static bool base64_decode(const char *s, size_t n, struct buf *out)
{
    if (n % 4)
        return false;
    size_t pad = 0;
    if (n >= 4 && s[n - 1] == '=')
        pad = s[n - 2] == '=' ? 2 : 1;
    buf_reserve(out, n / 4 * 3);
    if (out->oom)
        return false;
    for (size_t i = 0; i < n; i += 4) {
        bool last = i + 4 == n;
        size_t used = last ? 4 - pad : 4;
        uint32_t v = 0;
        for (size_t k = 0; k < 4; k++) {
            int d = k < used ? base64_value((unsigned char)s[i + k]) : 0;
            if (d < 0)
                return false;
            v = v << 6 | (uint32_t)d;
        }
        unsigned char b[3] = {(unsigned char)(v >> 16), (unsigned char)(v >> 8), (unsigned char)v};
        if ((used == 2 && (v & 0xFFFF)) || (used == 3 && (v & 0xFF)))
            return false; /* non-zero bits in the padding */
        buf_add(out, b, used - 1); /* 4 symbols: 3 bytes, 3: 2, 2: 1 */
    }
    return !out->oom;
}

/* ------------------------------------------------------------------------------------------ */
/* JSON (RFC 8259): a validating reader that extracts values at dotted paths, and a quoter     */

struct json_want {
    const char *path;
    att_json_type type;
    size_t start, end; /* the value's span in the document */
};

struct json_reader {
    const unsigned char *s;
    size_t len, pos;
    struct buf path; /* the dotted path of the value being read */
    struct json_want *wants;
    size_t nwants;
    size_t root_members; /* members of the root object */
    bool oom;
};

static void json_ws(struct json_reader *r)
{
    while (r->pos < r->len) {
        unsigned char c = r->s[r->pos];
        if (c != ' ' && c != '\t' && c != '\n' && c != '\r')
            break;
        r->pos++;
    }
}

static int json_hex4(const unsigned char *p)
{
    int v = 0;
    for (int i = 0; i < 4; i++) {
        unsigned char c = p[i];
        int d = c >= '0' && c <= '9'   ? c - '0'
                : c >= 'a' && c <= 'f' ? c - 'a' + 10
                : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                       : -1;
        if (d < 0)
            return -1;
        v = v << 4 | d;
    }
    return v;
}

static void utf8_put(struct buf *out, uint32_t cp)
{
    unsigned char b[4];
    size_t n;
    if (cp < 0x80) {
        b[0] = (unsigned char)cp, n = 1;
    } else if (cp < 0x800) {
        b[0] = (unsigned char)(0xC0 | cp >> 6), b[1] = (unsigned char)(0x80 | (cp & 0x3F)), n = 2;
    } else if (cp < 0x10000) {
        b[0] = (unsigned char)(0xE0 | cp >> 12), b[1] = (unsigned char)(0x80 | (cp >> 6 & 0x3F));
        b[2] = (unsigned char)(0x80 | (cp & 0x3F)), n = 3;
    } else {
        b[0] = (unsigned char)(0xF0 | cp >> 18), b[1] = (unsigned char)(0x80 | (cp >> 12 & 0x3F));
        b[2] = (unsigned char)(0x80 | (cp >> 6 & 0x3F)), b[3] = (unsigned char)(0x80 | (cp & 0x3F));
        n = 4;
    }
    buf_add(out, b, n);
}

/* Reads a string at r->pos (the opening quote); appends its decoded bytes to out if not NULL. */
static bool json_string(struct json_reader *r, struct buf *out)
{
    if (r->pos >= r->len || r->s[r->pos] != '"')
        return false;
    r->pos++;
    size_t run = r->pos; /* start of a run of plain bytes */
    while (r->pos < r->len) {
        unsigned char c = r->s[r->pos];
        if (c == '"') {
            if (!utf8_valid(r->s + run, r->pos - run))
                return false;
            if (out)
                buf_add(out, r->s + run, r->pos - run);
            r->pos++;
            return true;
        }
        if (c < 0x20)
            return false;
        if (c != '\\') {
            r->pos++;
            continue;
        }
        if (!utf8_valid(r->s + run, r->pos - run))
            return false;
        if (out)
            buf_add(out, r->s + run, r->pos - run);
        if (r->len - r->pos < 2)
            return false;
        unsigned char e = r->s[r->pos + 1];
        const char *simple = strchr("\"\\/bfnrt", e);
        if (e && simple) {
            static const char decoded[] = "\"\\/\b\f\n\r\t";
            if (out)
                buf_addc(out, (unsigned char)decoded[simple - "\"\\/bfnrt"]);
            r->pos += 2;
        } else if (e == 'u') {
            if (r->len - r->pos < 6)
                return false;
            int cp = json_hex4(r->s + r->pos + 2);
            r->pos += 6;
            if (cp < 0 || cp == 0)
                return false; /* \u0000 would cut C strings short */
            if (cp >= 0xDC00 && cp <= 0xDFFF)
                return false; /* a lone low surrogate */
            uint32_t full = (uint32_t)cp;
            if (cp >= 0xD800 && cp <= 0xDBFF) {
                if (r->len - r->pos < 6 || r->s[r->pos] != '\\' || r->s[r->pos + 1] != 'u')
                    return false;
                int lo = json_hex4(r->s + r->pos + 2);
                if (lo < 0xDC00 || lo > 0xDFFF)
                    return false;
                r->pos += 6;
                full = 0x10000 + (((uint32_t)cp - 0xD800) << 10) + ((uint32_t)lo - 0xDC00);
            }
            if (out)
                utf8_put(out, full);
        } else {
            return false;
        }
        run = r->pos;
    }
    return false;
}

static bool json_digits(struct json_reader *r)
{
    size_t start = r->pos;
    while (r->pos < r->len && r->s[r->pos] >= '0' && r->s[r->pos] <= '9')
        r->pos++;
    return r->pos > start;
}

static bool json_number(struct json_reader *r)
{
    if (r->pos < r->len && r->s[r->pos] == '-')
        r->pos++;
    if (r->pos < r->len && r->s[r->pos] == '0')
        r->pos++;
    else if (!json_digits(r))
        return false;
    if (r->pos < r->len && r->s[r->pos] == '.') {
        r->pos++;
        if (!json_digits(r))
            return false;
    }
    if (r->pos < r->len && (r->s[r->pos] == 'e' || r->s[r->pos] == 'E')) {
        r->pos++;
        if (r->pos < r->len && (r->s[r->pos] == '+' || r->s[r->pos] == '-'))
            r->pos++;
        if (!json_digits(r))
            return false;
    }
    return true;
}

static bool json_literal(struct json_reader *r, const char *word)
{
    size_t n = strlen(word);
    if (r->len - r->pos < n || memcmp(r->s + r->pos, word, n) != 0)
        return false;
    r->pos += n;
    return true;
}

static bool json_value(struct json_reader *r, int depth);

/* Records the value about to be read at r->pos if the current path is wanted. */
static struct json_want *json_wanted(struct json_reader *r)
{
    for (size_t i = 0; i < r->nwants; i++) {
        const char *p = r->wants[i].path;
        if (strlen(p) == r->path.len && (r->path.len == 0 || memcmp(p, r->path.p, r->path.len) == 0))
            return &r->wants[i];
    }
    return NULL;
}

static bool json_object(struct json_reader *r, int depth)
{
    bool root = depth == 0;
    r->pos++; /* { */
    json_ws(r);
    /* The members' keys, NUL-separated, to refuse duplicates. */
    struct buf keys = {0};
    bool ok = false;
    if (r->pos < r->len && r->s[r->pos] == '}') {
        r->pos++;
        return true;
    }
    for (;;) {
        json_ws(r);
        struct buf key = {0};
        if (!json_string(r, &key)) {
            buf_free(&key);
            goto out;
        }
        buf_reserve(&key, 0);
        if (key.oom) {
            r->oom = true;
            buf_free(&key);
            goto out;
        }
        for (size_t at = 0; at < keys.len;) {
            size_t klen = strlen((char *)keys.p + at);
            if (klen == key.len && memcmp(keys.p + at, key.p, klen) == 0) {
                buf_free(&key);
                goto out; /* a duplicate key */
            }
            at += klen + 1;
        }
        buf_add(&keys, key.p, key.len);
        buf_addc(&keys, 0);
        if (root)
            r->root_members++;
        size_t saved = r->path.len;
        if (saved)
            buf_addc(&r->path, '.');
        buf_add(&r->path, key.p, key.len);
        buf_free(&key);
        if (keys.oom || r->path.oom) {
            r->oom = true;
            goto out;
        }
        json_ws(r);
        if (r->pos >= r->len || r->s[r->pos] != ':')
            goto out;
        r->pos++;
        if (!json_value(r, depth + 1))
            goto out;
        r->path.len = saved;
        json_ws(r);
        if (r->pos < r->len && r->s[r->pos] == ',') {
            r->pos++;
            continue;
        }
        if (r->pos < r->len && r->s[r->pos] == '}') {
            r->pos++;
            ok = true;
        }
        goto out;
    }
out:
    buf_free(&keys);
    return ok;
}

static bool json_array(struct json_reader *r, int depth)
{
    r->pos++; /* [ */
    json_ws(r);
    if (r->pos < r->len && r->s[r->pos] == ']') {
        r->pos++;
        return true;
    }
    /* Array elements have no path: 0xFF never occurs in UTF-8, so no want matches. */
    size_t saved = r->path.len;
    buf_addc(&r->path, 0xFF);
    if (r->path.oom) {
        r->oom = true;
        return false;
    }
    for (;;) {
        if (!json_value(r, depth + 1))
            return false;
        json_ws(r);
        if (r->pos < r->len && r->s[r->pos] == ',') {
            r->pos++;
            continue;
        }
        if (r->pos < r->len && r->s[r->pos] == ']') {
            r->pos++;
            r->path.len = saved;
            return true;
        }
        return false;
    }
}

static bool json_value(struct json_reader *r, int depth)
{
    if (depth >= JSON_MAX_DEPTH) /* the root is depth 0 */
        return false;
    json_ws(r);
    if (r->pos >= r->len)
        return false;
    struct json_want *want = json_wanted(r);
    size_t start = r->pos;
    att_json_type type;
    bool ok;
    switch (r->s[r->pos]) {
    case '{':
        type = ATT_JSON_OBJECT, ok = json_object(r, depth);
        break;
    case '[':
        type = ATT_JSON_ARRAY, ok = json_array(r, depth);
        break;
    case '"':
        type = ATT_JSON_STRING, ok = json_string(r, NULL);
        break;
    case 't':
        type = ATT_JSON_TRUE, ok = json_literal(r, "true");
        break;
    case 'f':
        type = ATT_JSON_FALSE, ok = json_literal(r, "false");
        break;
    case 'n':
        type = ATT_JSON_NULL, ok = json_literal(r, "null");
        break;
    default:
        type = ATT_JSON_NUMBER, ok = json_number(r);
        break;
    }
    if (ok && want && want->type == ATT_JSON_ABSENT) { /* the first of keys spelling one path */
        want->type = type;
        want->start = start;
        want->end = r->pos;
    }
    return ok;
}

/* Validates the document and fills each want (type ABSENT when not found). */
static att_status json_extract(const char *doc, size_t len, struct json_want *wants, size_t n,
                               size_t *root_members)
{
    for (size_t i = 0; i < n; i++)
        wants[i].type = ATT_JSON_ABSENT;
    struct json_reader r = {(const unsigned char *)doc, len, 0, {0}, wants, n, 0, false};
    bool ok = json_value(&r, 0);
    json_ws(&r);
    ok = ok && r.pos == r.len;
    bool nomem = r.oom || r.path.oom;
    buf_free(&r.path);
    if (nomem)
        return ATT_E_NOMEM;
    if (!ok) {
        for (size_t i = 0; i < n; i++)
            wants[i].type = ATT_JSON_ABSENT;
        return ATT_E_JSON;
    }
    if (root_members)
        *root_members = r.root_members;
    return ATT_OK;
}

/* The value of a want as text: decoded for strings, verbatim otherwise. */
static char *json_want_text(const char *doc, const struct json_want *w)
{
    if (w->type == ATT_JSON_ABSENT)
        return NULL;
    if (w->type != ATT_JSON_STRING)
        return dup_bytes((const unsigned char *)doc + w->start, w->end - w->start);
    struct buf out = {0};
    struct json_reader r = {(const unsigned char *)doc, w->end, w->start, {0}, NULL, 0, 0, false};
    if (!json_string(&r, &out)) {
        buf_free(&out);
        return NULL;
    }
    return (char *)buf_take(&out, NULL);
}

static void json_quote(struct buf *out, const unsigned char *s, size_t n)
{
    buf_addc(out, '"');
    for (size_t i = 0; i < n; i++) {
        unsigned char c = s[i];
        if (c == '"' || c == '\\') {
            buf_addc(out, '\\');
            buf_addc(out, c);
        } else if (c < 0x20) {
            buf_printf(out, "\\u%04x", c);
        } else {
            buf_addc(out, c);
        }
    }
    buf_addc(out, '"');
}

/* ------------------------------------------------------------------------------------------ */
/* The channel                                                                                 */

/* Closes the channel after a fatal error: later calls fail with the same reason. */
static att_status channel_break(att_ctx *ctx, att_status st, const char *fmt, ...) PRINTF_LIKE(3, 4);

static att_status channel_break(att_ctx *ctx, att_status st, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fail_v(ctx, st, false, fmt, ap);
    va_end(ap);
    if (ctx->fd >= 0) {
        close(ctx->fd);
        ctx->fd = -1;
    }
    free(ctx->closed_reason);
    ctx->closed_reason = ctx->err ? strdup(ctx->err) : NULL;
    return st;
}

static att_status channel_open(att_ctx *ctx, const char *what)
{
    if (ctx->fd >= 0)
        return ATT_OK;
    return fail(ctx, ATT_E_CHANNEL, "%s: the channel to the launcher is closed: %s", what,
                ctx->closed_reason ? ctx->closed_reason : "att_init did not complete");
}

static bool write_all(int fd, const unsigned char *p, size_t n)
{
    while (n) {
        /* MSG_NOSIGNAL: a launcher that went away is an error to report, not a SIGPIPE. */
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w < 0 && errno == ENOTSOCK)
            w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return false;
        p += w;
        n -= (size_t)w;
    }
    return true;
}

/* Reads exactly n bytes; returns how many it got before end of file or an error (errno). */
static size_t read_full(int fd, unsigned char *p, size_t n)
{
    size_t got = 0;
    while (got < n) {
        ssize_t r = read(fd, p + got, n - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return got;
        if (r == 0) {
            errno = 0;
            return got;
        }
        got += (size_t)r;
    }
    return got;
}

static att_status channel_send(att_ctx *ctx, const char *what, uint8_t type, const struct field *f)
{
    att_status st = channel_open(ctx, what);
    if (st != ATT_OK)
        return st;
    struct buf b = {0};
    enum encode_result er = frame_encode(type, f, ATT_MAX_FRAME, &b);
    if (er != E_OK) {
        buf_free(&b);
        if (er == E_TOO_LARGE)
            return fail(ctx, ATT_E_TOO_LARGE, "%s: the %s frame would exceed the maximum of %lu bytes",
                        what, layout_of(type)->name, (unsigned long)ATT_MAX_FRAME);
        if (er == E_NOT_UTF8)
            return fail(ctx, ATT_E_ARG, "%s: a text field of the %s frame is not valid UTF-8", what,
                        layout_of(type)->name);
        return oom(ctx, what);
    }
    bool ok = write_all(ctx->fd, b.p, b.len);
    int e = errno;
    buf_free(&b);
    if (!ok)
        return channel_break(ctx, ATT_E_CHANNEL, "%s: sending %s to the launcher failed: %s", what,
                             layout_of(type)->name, e == EPIPE ? "the launcher closed the channel"
                                                               : strerror(e));
    return ATT_OK;
}

/* Receives the next known frame; answers unknown types with ERROR as the protocol asks. */
static att_status channel_recv(att_ctx *ctx, const char *what, struct frame *fr)
{
    for (;;) {
        free(ctx->rx);
        ctx->rx = NULL;
        unsigned char hdr[HEADER_LEN];
        size_t got = read_full(ctx->fd, hdr, HEADER_LEN);
        if (got < HEADER_LEN) {
            int e = errno;
            if (got == 0 && e == 0)
                return channel_break(ctx, ATT_E_CHANNEL,
                                     "%s: the launcher closed the channel before answering", what);
            if (e == 0)
                return channel_break(ctx, ATT_E_CHANNEL,
                                     "%s: the launcher closed the channel in the middle of a frame header",
                                     what);
            return channel_break(ctx, ATT_E_CHANNEL, "%s: reading from the launcher failed: %s",
                                 what, strerror(e));
        }
        uint32_t plen = be32(hdr + 1);
        if (plen > ATT_MAX_FRAME)
            return channel_break(ctx, ATT_E_PROTOCOL,
                                 "%s: the launcher sent a frame header (type 0x%02x) announcing %lu "
                                 "bytes, more than the maximum of %lu: channel closed",
                                 what, hdr[0], (unsigned long)plen, (unsigned long)ATT_MAX_FRAME);
        ctx->rx = malloc(HEADER_LEN + (size_t)plen);
        if (!ctx->rx)
            return channel_break(ctx, ATT_E_NOMEM, "%s: no memory for a %lu-byte frame", what,
                                 (unsigned long)plen);
        memcpy(ctx->rx, hdr, HEADER_LEN);
        got = read_full(ctx->fd, ctx->rx + HEADER_LEN, plen);
        if (got < plen) {
            int e = errno;
            return channel_break(ctx, ATT_E_CHANNEL, "%s: %s after %lu of %lu payload bytes", what,
                                 e ? strerror(e) : "the launcher closed the channel",
                                 (unsigned long)got, (unsigned long)plen);
        }
        size_t flen;
        const char *why;
        enum verdict v = frame_decode(ctx->rx, HEADER_LEN + (size_t)plen, ATT_MAX_FRAME, fr, &flen, &why);
        if (v == V_OK)
            return ATT_OK;
        if (v == V_UNKNOWN) {
            char reason[48];
            snprintf(reason, sizeof reason, "unknown frame type 0x%02x", hdr[0]);
            struct field f[2] = {{fr->corr, NULL, 0}, {0, (const unsigned char *)reason, strlen(reason)}};
            att_status st = channel_send(ctx, what, T_ERROR, f);
            if (st != ATT_OK)
                return st;
            continue;
        }
        return channel_break(ctx, ATT_E_PROTOCOL, "%s: the launcher sent a malformed %s frame (%s): channel closed",
                             what, layout_of(hdr[0])->name, why);
    }
}

/*
 * Sends a request and waits for its answer, which must be of type `want`. NACK and ERROR
 * answers become errors; anything else unexpected ends the channel, since the two sides no
 * longer agree on what is in flight. Calls are one at a time: the SDK is synchronous.
 */
static att_status channel_call(att_ctx *ctx, const char *what, uint8_t type, struct field *f,
                               uint8_t want, struct frame *answer)
{
    uint32_t corr = ctx->next_corr++;
    if (ctx->next_corr == 0)
        ctx->next_corr = 1;
    f[0].num = corr;
    att_status st = channel_send(ctx, what, type, f);
    if (st != ATT_OK)
        return st;
    st = channel_recv(ctx, what, answer);
    if (st != ATT_OK)
        return st;
    const char *name = answer->layout->name;
    if (answer->type == T_ERROR && (answer->corr == corr || answer->corr == 0))
        return fail(ctx, ATT_E_PROTOCOL, "%s: the launcher answered ERROR: %.*s", what,
                    (int)answer->f[1].len, (const char *)answer->f[1].data);
    if (answer->corr != corr)
        return channel_break(ctx, ATT_E_PROTOCOL,
                             "%s: the launcher answered %s for corr %lu while corr %lu was the one "
                             "in flight: channel closed",
                             what, name, (unsigned long)answer->corr, (unsigned long)corr);
    if (answer->type == T_NACK) {
        free(ctx->nack_code);
        ctx->nack_code = dup_bytes(answer->f[1].data, answer->f[1].len);
        att_status r = fail(ctx, ATT_E_NACK, "%s: the launcher refused (%.*s): %.*s", what,
                            (int)answer->f[1].len, (const char *)answer->f[1].data,
                            (int)answer->f[2].len, (const char *)answer->f[2].data);
        return ctx->nack_code ? r : oom(ctx, what);
    }
    if (answer->type != want)
        return channel_break(ctx, ATT_E_PROTOCOL,
                             "%s: the launcher answered %s where %s or NACK was expected: channel closed",
                             what, name, layout_of(want)->name);
    return ATT_OK;
}

/* ------------------------------------------------------------------------------------------ */
/* Certificates                                                                                */

/* Parses PEM certificates; NULL with nothing parsed, or on anything but PEM blocks. */
static STACK_OF(X509) *parse_pem_certs(const char *pem, size_t len)
{
    if (len > INT_MAX)
        return NULL;
    STACK_OF(X509) *certs = sk_X509_new_null();
    BIO *bio = BIO_new_mem_buf(pem, (int)len);
    if (!certs || !bio)
        goto bad;
    X509 *x;
    while ((x = PEM_read_bio_X509(bio, NULL, NULL, NULL)) != NULL) {
        if (!sk_X509_push(certs, x)) {
            X509_free(x);
            goto bad;
        }
    }
    unsigned long e = ERR_peek_last_error();
    if (ERR_GET_LIB(e) != ERR_LIB_PEM || ERR_GET_REASON(e) != PEM_R_NO_START_LINE ||
        sk_X509_num(certs) == 0)
        goto bad;
    ERR_clear_error();
    BIO_free(bio);
    return certs;
bad:
    BIO_free(bio);
    sk_X509_pop_free(certs, X509_free);
    return NULL;
}

static char *cert_to_pem(X509 *x)
{
    BIO *bio = BIO_new(BIO_s_mem());
    char *out = NULL;
    if (bio && PEM_write_bio_X509(bio, x)) {
        char *p;
        long n = BIO_get_mem_data(bio, &p);
        if (n > 0)
            out = dup_bytes((unsigned char *)p, (size_t)n);
    }
    BIO_free(bio);
    return out;
}

static char *name_oneline(const X509_NAME *name)
{
    BIO *bio = BIO_new(BIO_s_mem());
    char *out = NULL;
    /* "O=name, CN=run-12", UTF-8 as is. */
    unsigned long flags = (XN_FLAG_ONELINE & ~XN_FLAG_SPC_EQ & ~ASN1_STRFLGS_ESC_MSB) | ASN1_STRFLGS_UTF8_CONVERT;
    if (bio && X509_NAME_print_ex(bio, name, 0, flags) >= 0) {
        char *p;
        long n = BIO_get_mem_data(bio, &p);
        if (n >= 0)
            out = dup_bytes((unsigned char *)p, (size_t)n);
    }
    BIO_free(bio);
    return out;
}

/* The subject's common name as UTF-8, NULL when there is not exactly one. */
static char *common_name(X509 *x, const char **problem)
{
    const X509_NAME *subject = X509_get_subject_name(x);
    int at = X509_NAME_get_index_by_NID(subject, NID_commonName, -1);
    if (at < 0) {
        *problem = "has no common name";
        return NULL;
    }
    if (X509_NAME_get_index_by_NID(subject, NID_commonName, at) >= 0) {
        *problem = "has several common names";
        return NULL;
    }
    unsigned char *utf8 = NULL;
    int n = ASN1_STRING_to_UTF8(&utf8, X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subject, at)));
    if (n < 0) {
        *problem = "has a common name that does not convert to UTF-8";
        return NULL;
    }
    char *cn = memchr(utf8, 0, (size_t)n) ? NULL : dup_bytes(utf8, (size_t)n);
    OPENSSL_free(utf8);
    if (!cn)
        *problem = "has a common name with a NUL byte in it";
    return cn;
}

static att_status load_anchor(att_ctx *ctx, const char *what, X509_STORE **out)
{
    size_t len = strlen(att_services_anchor_pem);
    if (len == 0)
        return fail(ctx, ATT_E_SERVICE_CERT,
                    "%s: no services trust anchor is compiled into this program "
                    "(att_services_anchor_pem is empty), so no service can be trusted; build the "
                    "program with the launcher's services anchor",
                    what);
    STACK_OF(X509) *anchors = parse_pem_certs(att_services_anchor_pem, len);
    if (!anchors)
        return fail_ssl(ctx, ATT_E_SERVICE_CERT,
                        "%s: the compiled-in services trust anchor is not a list of PEM certificates", what);
    X509_STORE *store = X509_STORE_new();
    bool ok = store != NULL;
    for (int i = 0; ok && i < sk_X509_num(anchors); i++)
        ok = X509_STORE_add_cert(store, sk_X509_value(anchors, i)) == 1;
    sk_X509_pop_free(anchors, X509_free);
    if (!ok) {
        X509_STORE_free(store);
        return fail_ssl(ctx, ATT_E_CRYPTO, "%s: loading the services trust anchor failed", what);
    }
    *out = store;
    return ATT_OK;
}

/*
 * Checks the chain a SERVICE_CERT answer carried (leaf first): it chains to the compiled-in
 * anchor and is valid now, the leaf is an end-entity P-256 certificate whose key usage allows
 * key agreement and signatures, and its common name is exactly the service's name.
 */
static att_status verify_service_chain(att_ctx *ctx, const char *what, const char *service,
                                       const unsigned char *pem, size_t len, X509 **out)
{
    X509_STORE *store = NULL;
    att_status st = load_anchor(ctx, what, &store);
    if (st != ATT_OK)
        return st;
    STACK_OF(X509) *chain = parse_pem_certs((const char *)pem, len);
    X509_STORE_CTX *sc = NULL;
    char *cn = NULL;
    if (!chain) {
        st = fail_ssl(ctx, ATT_E_SERVICE_CERT,
                      "%s: the certificate of service \"%s\" from the launcher is not PEM", what, service);
        goto out;
    }
    X509 *leaf = sk_X509_value(chain, 0);
    sc = X509_STORE_CTX_new();
    if (!sc || !X509_STORE_CTX_init(sc, store, leaf, chain)) {
        st = fail_ssl(ctx, ATT_E_CRYPTO, "%s: preparing certificate verification failed", what);
        goto out;
    }
    /* Every anchor is trusted as such, a root or not; strict RFC 5280 checks. */
    X509_VERIFY_PARAM_set_flags(X509_STORE_CTX_get0_param(sc),
                                X509_V_FLAG_PARTIAL_CHAIN | X509_V_FLAG_X509_STRICT);
    if (X509_verify_cert(sc) != 1) {
        int err = X509_STORE_CTX_get_error(sc);
        X509 *bad = X509_STORE_CTX_get_current_cert(sc);
        char *subj = bad ? name_oneline(X509_get_subject_name(bad)) : NULL;
        char *iss = bad ? name_oneline(X509_get_issuer_name(bad)) : NULL;
        st = fail(ctx, ATT_E_SERVICE_CERT,
                  "%s: the certificate of service \"%s\" is not trusted: %s (certificate at depth %d, "
                  "subject \"%s\", issuer \"%s\"; expected a chain to the compiled-in services anchor)",
                  what, service, X509_verify_cert_error_string(err), X509_STORE_CTX_get_error_depth(sc),
                  subj ? subj : "?", iss ? iss : "?");
        free(subj);
        free(iss);
        goto out;
    }
    uint32_t flags = X509_get_extension_flags(leaf);
    uint32_t want_ku = KU_DIGITAL_SIGNATURE | KU_KEY_AGREEMENT;
    if (flags & EXFLAG_CA) {
        st = fail(ctx, ATT_E_SERVICE_CERT,
                  "%s: the certificate of service \"%s\" is a CA certificate, expected an end-entity one",
                  what, service);
        goto out;
    }
    if (!(flags & EXFLAG_KUSAGE) || (X509_get_key_usage(leaf) & want_ku) != want_ku) {
        st = fail(ctx, ATT_E_SERVICE_CERT,
                  "%s: the certificate of service \"%s\" does not allow both digitalSignature and "
                  "keyAgreement (keyUsage %s)",
                  what, service, (flags & EXFLAG_KUSAGE) ? "lacks one" : "absent");
        goto out;
    }
    EVP_PKEY *pk = X509_get0_pubkey(leaf);
    char group[32] = "";
    if (!pk || !EVP_PKEY_is_a(pk, "EC") ||
        !EVP_PKEY_get_group_name(pk, group, sizeof group, NULL) || strcmp(group, "prime256v1") != 0) {
        st = fail(ctx, ATT_E_SERVICE_CERT,
                  "%s: the certificate of service \"%s\" has a %s key, expected EC P-256 (prime256v1)",
                  what, service, group[0] ? group : pk ? EVP_PKEY_get0_type_name(pk) : "missing");
        goto out;
    }
    const char *problem = NULL;
    cn = common_name(leaf, &problem);
    if (!cn) {
        st = fail(ctx, ATT_E_SERVICE_CERT, "%s: the certificate of service \"%s\" %s, expected CN=%s",
                  what, service, problem, service);
        goto out;
    }
    if (strcmp(cn, service) != 0) {
        st = fail(ctx, ATT_E_SERVICE_CERT,
                  "%s: the certificate the launcher gave for service \"%s\" names CN=%s (expected "
                  "CN=%s): refusing to send to another service",
                  what, service, cn, service);
        goto out;
    }
    if (!X509_up_ref(leaf)) {
        st = fail_ssl(ctx, ATT_E_CRYPTO, "%s: keeping the service certificate failed", what);
        goto out;
    }
    *out = leaf;
    st = ATT_OK;
out:
    free(cn);
    X509_STORE_CTX_free(sc);
    sk_X509_pop_free(chain, X509_free);
    X509_STORE_free(store);
    return st;
}

/* The verified certificate of `service`, fetched with SERVICE_CERT once per context. */
static att_status service_cert(att_ctx *ctx, const char *what, const char *service, X509 **out)
{
    if (att_services_anchor_pem[0] == '\0') /* say so before asking the launcher for anything */
        return load_anchor(ctx, what, NULL);
    for (struct service_cert **p = &ctx->services; *p; p = &(*p)->next) {
        if (strcmp((*p)->name, service) != 0)
            continue;
        if (X509_cmp_time(X509_get0_notAfter((*p)->cert), NULL) > 0) {
            *out = (*p)->cert;
            return ATT_OK;
        }
        struct service_cert *expired = *p; /* fetch it again */
        *p = expired->next;
        X509_free(expired->cert);
        free(expired);
        break;
    }
    struct field f[2] = {{0, NULL, 0}, {0, (const unsigned char *)service, strlen(service)}};
    struct frame answer;
    att_status st = channel_call(ctx, what, T_SERVICE_CERT, f, T_CERT, &answer);
    if (st != ATT_OK)
        return st;
    X509 *cert = NULL;
    st = verify_service_chain(ctx, what, service, answer.f[1].data, answer.f[1].len, &cert);
    if (st != ATT_OK)
        return st;
    struct service_cert *sc = calloc(1, sizeof *sc);
    if (!sc) {
        X509_free(cert);
        return oom(ctx, what);
    }
    memcpy(sc->name, service, strlen(service) + 1);
    sc->cert = cert;
    sc->next = ctx->services;
    ctx->services = sc;
    *out = cert;
    return ATT_OK;
}

/* ------------------------------------------------------------------------------------------ */
/* Envelopes: AuthEnvelopedData(SignedData(body))                                              */

static bool cms_to_der(CMS_ContentInfo *cms, struct buf *out)
{
    unsigned char *der = NULL;
    int n = i2d_CMS_ContentInfo(cms, &der);
    if (n <= 0)
        return false;
    buf_add(out, der, (size_t)n);
    OPENSSL_free(der);
    return !out->oom;
}

/* Parses DER CMS, refusing trailing bytes; NULL when it does not parse. */
static CMS_ContentInfo *cms_from_der(const unsigned char *der, size_t len)
{
    if (len > LONG_MAX)
        return NULL;
    const unsigned char *p = der;
    CMS_ContentInfo *cms = d2i_CMS_ContentInfo(NULL, &p, (long)len);
    if (cms && p != der + len) {
        CMS_ContentInfo_free(cms);
        return NULL;
    }
    return cms;
}

/* Encrypts `in` to `to`: AuthEnvelopedData, AES-256-GCM, ECDH key agreement whose X9.63
 * KDF uses SHA-256 (CMS_encrypt alone would choose SHA-1), key wrap id-aes256-wrap. */
static CMS_ContentInfo *encrypt_to(att_ctx *ctx, X509 *to, BIO *in)
{
    CMS_ContentInfo *env = CMS_encrypt(NULL, in, ctx->aes_gcm, CMS_BINARY | CMS_PARTIAL);
    CMS_RecipientInfo *ri = env ? CMS_add1_recipient_cert(env, to, CMS_KEY_PARAM) : NULL;
    EVP_PKEY_CTX *pctx = ri ? CMS_RecipientInfo_get0_pkey_ctx(ri) : NULL;
    if (!pctx || EVP_PKEY_CTX_set_ecdh_kdf_md(pctx, EVP_sha256()) <= 0 ||
        !CMS_final(env, in, NULL, CMS_BINARY)) {
        CMS_ContentInfo_free(env);
        return NULL;
    }
    return env;
}

/* Signs `body` with the run key (SignedData, attached, SHA-256, no certificates), then
 * encrypts that to the service (encrypt_to). */
static att_status seal_request(att_ctx *ctx, const char *what, X509 *service, const struct buf *body,
                               struct buf *out)
{
    const int flags = CMS_BINARY | CMS_NOCERTS | CMS_NOSMIMECAP;
    att_status st = ATT_OK;
    struct buf signed_der = {0};
    BIO *in = BIO_new_mem_buf(body->p, (int)body->len);
    BIO *in2 = NULL;
    CMS_ContentInfo *sd = CMS_sign(NULL, NULL, NULL, NULL, flags | CMS_PARTIAL);
    CMS_ContentInfo *env = NULL;
    if (!in || !sd || !CMS_add1_signer(sd, ctx->cert, ctx->key, EVP_sha256(), flags) ||
        !CMS_final(sd, in, NULL, flags) || !cms_to_der(sd, &signed_der)) {
        st = fail_ssl(ctx, ATT_E_CRYPTO, "%s: signing the request failed", what);
        goto out;
    }
    in2 = BIO_new_mem_buf(signed_der.p, (int)signed_der.len);
    if (!in2 || !(env = encrypt_to(ctx, service, in2)) || !cms_to_der(env, out))
        st = fail_ssl(ctx, ATT_E_CRYPTO, "%s: encrypting the request to the service failed", what);
out:
    CMS_ContentInfo_free(env);
    CMS_ContentInfo_free(sd);
    BIO_free(in2);
    BIO_free(in);
    buf_free(&signed_der);
    return st;
}

/* Decrypts a response with the run key and verifies it was signed by the service's key;
 * appends the signed body to `body`. */
static att_status open_response(att_ctx *ctx, const char *what, const char *service_name,
                                X509 *service, const unsigned char *der, size_t len, struct buf *body)
{
    att_status st = ATT_OK;
    CMS_ContentInfo *env = cms_from_der(der, len), *sd = NULL;
    BIO *plain = BIO_new(BIO_s_mem()), *content = BIO_new(BIO_s_mem());
    STACK_OF(X509) *signer = sk_X509_new_null();
    if (!plain || !content || !signer || !sk_X509_push(signer, service)) {
        st = oom(ctx, what);
        goto out;
    }
    if (!env) {
        st = fail_ssl(ctx, ATT_E_RESPONSE, "%s: the response is not a DER CMS structure", what);
        goto out;
    }
    int type = OBJ_obj2nid(CMS_get0_type(env));
    if (type != NID_id_smime_ct_authEnvelopedData) {
        st = fail(ctx, ATT_E_RESPONSE, "%s: the response is %s, expected AuthEnvelopedData", what,
                  type == NID_undef ? "of an unknown CMS type" : OBJ_nid2ln(type));
        goto out;
    }
    if (CMS_decrypt(env, ctx->key, ctx->cert, NULL, plain, CMS_BINARY) != 1) {
        st = fail_ssl(ctx, ATT_E_RESPONSE,
                      "%s: the response does not decrypt with the run key (altered in transit, or "
                      "not addressed to this run)",
                      what);
        goto out;
    }
    char *p;
    long n = BIO_get_mem_data(plain, &p);
    sd = n > 0 ? cms_from_der((unsigned char *)p, (size_t)n) : NULL;
    if (!sd || OBJ_obj2nid(CMS_get0_type(sd)) != NID_pkcs7_signed) {
        st = fail_ssl(ctx, ATT_E_RESPONSE, "%s: the decrypted response is not CMS SignedData", what);
        goto out;
    }
    /* NOINTERN: only the service certificate checked against the anchor may have signed it. */
    if (CMS_verify(sd, signer, NULL, NULL, content,
                   CMS_BINARY | CMS_NOINTERN | CMS_NO_SIGNER_CERT_VERIFY) != 1) {
        st = fail_ssl(ctx, ATT_E_RESPONSE,
                      "%s: the response's signature does not verify with the certificate of service \"%s\"",
                      what, service_name);
        goto out;
    }
    if (OBJ_obj2nid(CMS_get0_eContentType(sd)) != NID_pkcs7_data) {
        st = fail(ctx, ATT_E_RESPONSE, "%s: the signed response does not carry plain data", what);
        goto out;
    }
    n = BIO_get_mem_data(content, &p);
    buf_add(body, p, n > 0 ? (size_t)n : 0);
    if (body->oom)
        st = oom(ctx, what);
out:
    sk_X509_free(signer);
    BIO_free(content);
    BIO_free(plain);
    CMS_ContentInfo_free(sd);
    CMS_ContentInfo_free(env);
    return st;
}

/* ------------------------------------------------------------------------------------------ */
/* Attested requests                                                                           */

enum op { OP_READ, OP_WRITE };

/* docs/PROTOCOL.md, "Request body": 1 to 512 bytes of segments of A-Z a-z 0-9 . _ ~ + @ = : -
 * separated by single '/', none of them "." or "..". */
static bool resource_valid(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > RESOURCE_MAX)
        return false;
    for (const char *seg = s;;) {
        size_t len = strspn(seg, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._~+@=:-");
        if (len == 0 || (len == 1 && seg[0] == '.') || (len == 2 && seg[0] == '.' && seg[1] == '.'))
            return false;
        if (seg[len] == '\0')
            return true;
        if (seg[len] != '/')
            return false;
        seg += len + 1;
    }
}

static bool service_name_valid(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > SERVICE_NAME_MAX)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '-'))
            return false;
    return true;
}

/* Checks the response body (docs/PROTOCOL.md, "Response body") and decodes its payload. */
static att_status check_response(att_ctx *ctx, const char *what, const struct buf *body,
                                 const char *nonce, const char *service, const char *resource,
                                 size_t clen, struct buf *payload)
{
    enum { W_V, W_NONCE, W_SERVICE, W_RESOURCE, W_STATUS, W_PAYLOAD, W_COUNT };
    struct json_want w[W_COUNT] = {
        {"v", 0, 0, 0},      {"nonce", 0, 0, 0},  {"service", 0, 0, 0},
        {"resource", 0, 0, 0}, {"status", 0, 0, 0}, {"payload", 0, 0, 0},
    };
    char *text[W_COUNT] = {0};
    size_t members = 0;
    att_status st = json_extract((const char *)body->p, body->len, w, W_COUNT, &members);
    if (st == ATT_E_NOMEM)
        return oom(ctx, what);
    if (st != ATT_OK)
        return fail(ctx, ATT_E_RESPONSE, "%s: the signed response body is not valid JSON", what);
    for (int i = 0; i < W_COUNT; i++) {
        att_json_type want = i == W_V ? ATT_JSON_NUMBER : ATT_JSON_STRING;
        if (w[i].type != want) {
            st = fail(ctx, ATT_E_RESPONSE, "%s: the response body's \"%s\" is %s, expected a %s", what,
                      w[i].path, w[i].type == ATT_JSON_ABSENT ? "missing" : "of another type",
                      want == ATT_JSON_NUMBER ? "number" : "string");
            goto out;
        }
        text[i] = json_want_text((const char *)body->p, &w[i]);
        if (!text[i]) {
            st = oom(ctx, what);
            goto out;
        }
    }
    if (members != W_COUNT) { /* all six are there and none twice: so another key is */
        st = fail(ctx, ATT_E_RESPONSE,
                  "%s: the response body has %lu keys, expected exactly v, nonce, service, resource, status "
                  "and payload",
                  what, (unsigned long)members);
        goto out;
    }
    if (strcmp(text[W_V], "1") != 0) {
        st = fail(ctx, ATT_E_RESPONSE, "%s: the response has version %s, expected 1", what, text[W_V]);
        goto out;
    }
    if (strcmp(text[W_NONCE], nonce) != 0) {
        st = fail(ctx, ATT_E_RESPONSE,
                  "%s: the response answers nonce %.40s, not this request's %s (a replayed or "
                  "misrouted response)",
                  what, text[W_NONCE], nonce);
        goto out;
    }
    if (strcmp(text[W_SERVICE], service) != 0) {
        st = fail(ctx, ATT_E_RESPONSE, "%s: the response is from service \"%.64s\", expected \"%s\"",
                  what, text[W_SERVICE], service);
        goto out;
    }
    if (strcmp(text[W_RESOURCE], resource) != 0) {
        /* Only collections in messages: the rest of a path may identify a person. */
        size_t found = strcspn(text[W_RESOURCE], "/");
        st = fail(ctx, ATT_E_RESPONSE,
                  "%s: the response is for another resource (collection \"%.*s\"; expected this "
                  "request's resource, in collection \"%.*s\")",
                  what, (int)(found > 64 ? 64 : found), text[W_RESOURCE], (int)(clen > 64 ? 64 : clen),
                  resource);
        goto out;
    }
    if (strcmp(text[W_STATUS], "ok") != 0) {
        st = fail(ctx, ATT_E_RESPONSE, "%s: the response has status \"%.64s\", expected \"ok\"", what,
                  text[W_STATUS]);
        goto out;
    }
    if (!base64_decode(text[W_PAYLOAD], strlen(text[W_PAYLOAD]), payload)) {
        st = payload->oom ? oom(ctx, what)
                          : fail(ctx, ATT_E_RESPONSE, "%s: the response payload is not valid base64", what);
        goto out;
    }
    st = ATT_OK;
out:
    for (int i = 0; i < W_COUNT; i++)
        free(text[i]);
    return st;
}

static att_status attested_call(att_ctx *ctx, enum op op, const char *service, const char *resource,
                                const unsigned char *data, size_t len, unsigned char **out,
                                size_t *out_len)
{
    const char *opname = op == OP_READ ? "read" : "write";
    char what[160];
    /* Messages name the collection only: the rest of a path may identify a person. */
    size_t clen = strcspn(resource, "/");
    snprintf(what, sizeof what, "%s %.64s:%.*s", opname, service, (int)(clen > 64 ? 64 : clen), resource);
    if (!service_name_valid(service))
        return fail(ctx, ATT_E_ARG, "%s: the service name must match [a-z0-9-]{1,64}", what);
    if (!resource_valid(resource))
        return fail(ctx, ATT_E_ARG,
                    "%s: the resource must be a path like \"sales/last\": 1 to %d bytes of segments of "
                    "A-Z a-z 0-9 . _ ~ + @ = : - separated by single '/', none of them \".\" or \"..\"",
                    what, RESOURCE_MAX);
    att_status st = channel_open(ctx, what);
    if (st != ATT_OK)
        return st;
    /* Too large however it is wrapped: refuse before any cryptography. */
    if (base64_len(len) > ATT_MAX_FRAME)
        return fail(ctx, ATT_E_TOO_LARGE, "%s: %lu bytes of data cannot fit in a frame of at most %lu bytes",
                    what, (unsigned long)len, (unsigned long)ATT_MAX_FRAME);
    X509 *svc = NULL;
    st = service_cert(ctx, what, service, &svc);
    if (st != ATT_OK)
        return st;

    unsigned char raw[16];
    char nonce[33];
    if (RAND_bytes(raw, sizeof raw) != 1)
        return fail_ssl(ctx, ATT_E_CRYPTO, "%s: no random bytes for a nonce", what);
    for (size_t i = 0; i < sizeof raw; i++)
        snprintf(nonce + 2 * i, 3, "%02x", raw[i]);

    struct buf body = {0}, envelope = {0}, reply_body = {0}, payload = {0};
    buf_printf(&body, "{\"v\":1,\"op\":\"%s\",\"service\":\"%s\",\"resource\":", opname, service);
    json_quote(&body, (const unsigned char *)resource, strlen(resource));
    buf_printf(&body, ",\"nonce\":\"%s\",\"timestamp\":%lld,\"payload\":\"", nonce, (long long)time(NULL));
    base64_encode(data, len, &body);
    buf_adds(&body, "\"}");
    if (body.oom) {
        st = oom(ctx, what);
        goto out;
    }
    st = seal_request(ctx, what, svc, &body, &envelope);
    if (st != ATT_OK)
        goto out;

    struct field f[4] = {{0, NULL, 0},
                         {0, (const unsigned char *)service, strlen(service)},
                         {0, (const unsigned char *)resource, clen},
                         {0, envelope.p, envelope.len}};
    struct frame answer;
    st = channel_call(ctx, what, op == OP_READ ? T_READ : T_WRITE, f, op == OP_READ ? T_DATA : T_ACK,
                      &answer);
    if (st != ATT_OK)
        goto out;
    if (op == OP_WRITE && answer.f[1].len == 0) {
        st = ATT_OK; /* acknowledged by the launcher, no reply from the service */
        goto out;
    }
    if (op == OP_READ && answer.f[1].len == 0) {
        st = fail(ctx, ATT_E_RESPONSE, "%s: the launcher answered DATA without a response", what);
        goto out;
    }
    st = open_response(ctx, what, service, svc, answer.f[1].data, answer.f[1].len, &reply_body);
    if (st != ATT_OK)
        goto out;
    st = check_response(ctx, what, &reply_body, nonce, service, resource, clen, &payload);
    if (st != ATT_OK)
        goto out;
    *out = buf_take(&payload, out_len); /* an empty payload gives "" */
    if (!*out)
        st = oom(ctx, what);
out:
    buf_free(&body);
    buf_free(&envelope);
    buf_free(&reply_body);
    buf_free(&payload);
    return st;
}

/* ------------------------------------------------------------------------------------------ */
/* CHERI and Capsicum: only compiled on those platforms                                        */

#ifdef __CHERI_PURE_CAPABILITY__
static void cheri_cap_json(struct buf *b, const char *name, const void *cap)
{
    buf_printf(b, "{\"name\":\"%s\",\"base\":\"0x%jx\",\"length\":\"0x%jx\",\"perms\":\"0x%jx\",\"tag\":%s}",
               name, (uintmax_t)cheri_base_get(cap), (uintmax_t)cheri_length_get(cap),
               (uintmax_t)cheri_perms_get(cap), cheri_tag_get(cap) ? "true" : "false");
}

/* The bounds of the program's own code, a stack object and a heap block (PROTOCOL.md rule 2). */
static void cheri_bounds(struct buf *b)
{
    int on_stack = 0;
    void *heap = malloc(64);
    buf_addc(b, '[');
    cheri_cap_json(b, "pcc", cheri_pcc_get());
    buf_addc(b, ',');
    cheri_cap_json(b, "stack", &on_stack);
    if (heap) {
        buf_addc(b, ',');
        cheri_cap_json(b, "heap", heap);
    }
    buf_addc(b, ']');
    free(heap);
}
#endif

/* Capability mode on FreeBSD/CheriBSD: no new files or sockets from here on. Everything
 * libcrypto loads (configuration, algorithms, seed) must already be loaded. */
static att_status enter_sandbox(att_ctx *ctx)
{
#ifdef __FreeBSD__
    if (cap_enter() != 0)
        return fail(ctx, ATT_E_CHANNEL, "att_init: entering Capsicum capability mode failed: %s",
                    strerror(errno));
#else
    (void)ctx;
#endif
    return ATT_OK;
}

/* ------------------------------------------------------------------------------------------ */
/* Public API                                                                                  */

static att_status make_csr(att_ctx *ctx, struct buf *der)
{
    X509_REQ *req = X509_REQ_new();
    att_status st = ATT_OK;
    unsigned char *p = NULL;
    int n = -1;
    if (!req || !X509_REQ_set_version(req, X509_REQ_VERSION_1) ||
        !X509_NAME_add_entry_by_txt(X509_REQ_get_subject_name(req), "CN", MBSTRING_ASC,
                                    (const unsigned char *)"attestable-program", -1, -1, 0) ||
        !X509_REQ_set_pubkey(req, ctx->key) || X509_REQ_sign(req, ctx->key, EVP_sha256()) <= 0 ||
        (n = i2d_X509_REQ(req, &p)) <= 0)
        st = fail_ssl(ctx, ATT_E_CRYPTO, "att_init: making the certificate request failed");
    else
        buf_add(der, p, (size_t)n);
    if (st == ATT_OK && der->oom)
        st = oom(ctx, "att_init");
    OPENSSL_free(p);
    X509_REQ_free(req);
    return st;
}

/* Keeps the CERT answer to HELLO: PEM, run certificate first, which must certify our key. */
static att_status keep_chain(att_ctx *ctx, const unsigned char *pem, size_t len)
{
    STACK_OF(X509) *chain = parse_pem_certs((const char *)pem, len);
    if (!chain)
        return fail_ssl(ctx, ATT_E_CERT, "att_init: the launcher's CERT is not a list of PEM certificates");
    X509 *leaf = sk_X509_value(chain, 0);
    att_status st = ATT_OK;
    if (EVP_PKEY_eq(X509_get0_pubkey(leaf), ctx->key) != 1) {
        st = fail(ctx, ATT_E_CERT,
                  "att_init: the launcher's run certificate certifies another key than the one this "
                  "program sent in its certificate request");
    } else if (!X509_up_ref(leaf)) {
        st = fail_ssl(ctx, ATT_E_CRYPTO, "att_init: keeping the run certificate failed");
    } else {
        ctx->cert = leaf;
        ctx->chain_pem = dup_bytes(pem, len);
        ctx->cert_pem = cert_to_pem(leaf);
        ctx->subject = name_oneline(X509_get_subject_name(leaf));
        if (!ctx->chain_pem || !ctx->cert_pem || !ctx->subject)
            st = oom(ctx, "att_init");
    }
    sk_X509_pop_free(chain, X509_free);
    return st;
}

static att_status init(att_ctx *ctx)
{
    /* Load OpenSSL's configuration and algorithms now, before capability mode. */
    if (!OPENSSL_init_crypto(OPENSSL_INIT_LOAD_CONFIG | OPENSSL_INIT_ADD_ALL_CIPHERS |
                                 OPENSSL_INIT_ADD_ALL_DIGESTS | OPENSSL_INIT_LOAD_CRYPTO_STRINGS,
                             NULL))
        return fail_ssl(ctx, ATT_E_CRYPTO, "att_init: initialising libcrypto failed");
    ctx->aes_gcm = EVP_CIPHER_fetch(NULL, "AES-256-GCM", NULL);
    ctx->key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    if (!ctx->aes_gcm || !ctx->key)
        return fail_ssl(ctx, ATT_E_CRYPTO, "att_init: generating the run key failed");

    struct buf csr = {0}, bounds = {0};
#ifdef __CHERI_PURE_CAPABILITY__
    cheri_bounds(&bounds);
#endif
    buf_reserve(&bounds, 0);
    att_status st = bounds.oom ? oom(ctx, "att_init") : make_csr(ctx, &csr);
    if (st == ATT_OK)
        st = enter_sandbox(ctx);
    if (st == ATT_OK) {
        struct field f[4] = {{0, NULL, 0},
                             {0, csr.p, csr.len},
                             {0, (const unsigned char *)ATT_SDK_VERSION, strlen(ATT_SDK_VERSION)},
                             {0, bounds.p, bounds.len}};
        struct frame answer;
        st = channel_call(ctx, "att_init: HELLO", T_HELLO, f, T_CERT, &answer);
        if (st == ATT_OK)
            st = keep_chain(ctx, answer.f[1].data, answer.f[1].len);
    }
    buf_free(&csr);
    buf_free(&bounds);
    return st;
}

static att_ctx *new_ctx(void)
{
    att_ctx *ctx = calloc(1, sizeof *ctx);
    if (ctx) {
        ctx->fd = -1;
        ctx->next_corr = 1;
    }
    return ctx;
}

/* Runs init on fd; on failure closes the channel so that later calls repeat the reason. */
static att_status init_on_fd(att_ctx *ctx, int fd)
{
    att_status st;
    if (fd < 0 || fcntl(fd, F_GETFD) < 0) {
        st = fail(ctx, ATT_E_CHANNEL,
                  "att_init: descriptor %d is not open: this program must be started by the "
                  "attestable launcher, which passes the channel as ATTESTABLE_FD (default 3)",
                  fd);
    } else {
        ctx->fd = fd;
        st = init(ctx);
    }
    if (st == ATT_OK) {
        ctx->certified = true;
        return ATT_OK;
    }
    if (ctx->fd >= 0) {
        close(ctx->fd);
        ctx->fd = -1;
    }
    free(ctx->closed_reason);
    ctx->closed_reason = ctx->err ? strdup(ctx->err) : NULL;
    return st;
}

att_status att_init_fd(att_ctx **out, int fd)
{
    if (!out)
        return ATT_E_ARG;
    *out = new_ctx();
    return *out ? init_on_fd(*out, fd) : ATT_E_NOMEM;
}

att_status att_init(att_ctx **out)
{
    if (!out)
        return ATT_E_ARG;
    att_ctx *ctx = *out = new_ctx();
    if (!ctx)
        return ATT_E_NOMEM;
    const char *env = getenv("ATTESTABLE_FD");
    long fd = 3;
    if (env) {
        char *end;
        errno = 0;
        fd = strtol(env, &end, 10);
        if (errno || end == env || *end || fd < 0 || fd > INT_MAX) {
            fail(ctx, ATT_E_ARG, "att_init: ATTESTABLE_FD=\"%.32s\" is not a descriptor number", env);
            ctx->closed_reason = ctx->err ? strdup(ctx->err) : NULL;
            return ATT_E_ARG;
        }
    }
    return init_on_fd(ctx, (int)fd);
}

att_status att_read(att_ctx *ctx, const char *service, const char *resource, const char *params_json,
                    unsigned char **out, size_t *out_len)
{
    if (!ctx)
        return ATT_E_ARG;
    clear_error(ctx);
    if (out)
        *out = NULL;
    if (out_len)
        *out_len = 0;
    if (!service || !resource || !out || !out_len)
        return fail(ctx, ATT_E_ARG, "att_read: service, resource, out and out_len must not be NULL");
    const char *params = params_json ? params_json : "";
    if (params[0]) {
        att_json_type type;
        att_status st = att_json_get(params, strlen(params), "", &type, NULL);
        if (st == ATT_E_NOMEM)
            return oom(ctx, "att_read");
        if (st != ATT_OK || type != ATT_JSON_OBJECT)
            return fail(ctx, ATT_E_ARG, "att_read: params_json must be a JSON object (or NULL for none)");
    }
    return attested_call(ctx, OP_READ, service, resource, (const unsigned char *)params, strlen(params),
                         out, out_len);
}

att_status att_write(att_ctx *ctx, const char *service, const char *resource, const void *data,
                     size_t len, unsigned char **reply, size_t *reply_len)
{
    if (!ctx)
        return ATT_E_ARG;
    clear_error(ctx);
    if (reply)
        *reply = NULL;
    if (reply_len)
        *reply_len = 0;
    if (!service || !resource || (!data && len) || (!reply != !reply_len))
        return fail(ctx, ATT_E_ARG,
                    "att_write: service and resource must not be NULL, data only when len is 0, and "
                    "reply and reply_len both NULL or both set");
    unsigned char *ignored = NULL;
    size_t ignored_len = 0;
    att_status st = attested_call(ctx, OP_WRITE, service, resource, data, len,
                                  reply ? reply : &ignored, reply_len ? reply_len : &ignored_len);
    free(ignored);
    return st;
}

att_status att_log(att_ctx *ctx, att_log_level level, const char *fmt, ...)
{
    if (!ctx)
        return ATT_E_ARG;
    clear_error(ctx);
    if (!fmt || (int)level < ATT_LOG_ERROR || level > ATT_LOG_DEBUG)
        return fail(ctx, ATT_E_ARG, "att_log: a format and a level from 0 (error) to 3 (debug) are needed");
    struct buf text = {0};
    va_list ap;
    va_start(ap, fmt);
    buf_vprintf(&text, fmt, ap);
    va_end(ap);
    buf_reserve(&text, 0);
    if (text.oom) {
        buf_free(&text);
        return oom(ctx, "att_log");
    }
    struct field f[3] = {{0, NULL, 0}, {(uint32_t)level, NULL, 0}, {0, text.p, text.len}};
    att_status st = channel_send(ctx, "att_log", T_LOG, f);
    buf_free(&text);
    return st;
}

void att_close(att_ctx *ctx)
{
    if (!ctx)
        return;
    if (ctx->fd >= 0)
        close(ctx->fd);
    while (ctx->services) {
        struct service_cert *next = ctx->services->next;
        X509_free(ctx->services->cert);
        free(ctx->services);
        ctx->services = next;
    }
    EVP_PKEY_free(ctx->key); /* frees the private scalar with BN_clear_free */
    X509_free(ctx->cert);
    EVP_CIPHER_free(ctx->aes_gcm);
    free(ctx->rx);
    free(ctx->chain_pem);
    free(ctx->cert_pem);
    free(ctx->subject);
    free(ctx->err);
    free(ctx->nack_code);
    free(ctx->closed_reason);
    free(ctx);
}

const char *att_strerror(const att_ctx *ctx, att_status status)
{
    if (ctx && status != ATT_OK && ctx->err_status == status && ctx->err)
        return ctx->err;
    switch (status) {
    case ATT_OK: return "success";
    case ATT_E_ARG: return "invalid argument";
    case ATT_E_NOMEM: return "out of memory";
    case ATT_E_CHANNEL: return "the channel to the launcher failed or is closed";
    case ATT_E_PROTOCOL: return "the launcher broke the channel protocol";
    case ATT_E_NACK: return "the launcher refused the request";
    case ATT_E_CRYPTO: return "a cryptographic operation failed";
    case ATT_E_CERT: return "the launcher's certificate answer is unusable";
    case ATT_E_SERVICE_CERT: return "the service's certificate is not trusted";
    case ATT_E_RESPONSE: return "the service's response was rejected";
    case ATT_E_TOO_LARGE: return "the request exceeds the maximum frame size";
    case ATT_E_JSON: return "not valid JSON";
    }
    return "unknown status";
}

const char *att_nack_code(const att_ctx *ctx) { return ctx ? ctx->nack_code : NULL; }

void att_free(void *p) { free(p); }

const char *att_chain_pem(const att_ctx *ctx) { return ctx && ctx->certified ? ctx->chain_pem : NULL; }

const char *att_certificate_pem(const att_ctx *ctx) { return ctx && ctx->certified ? ctx->cert_pem : NULL; }

const char *att_certificate_subject(const att_ctx *ctx)
{
    return ctx && ctx->certified ? ctx->subject : NULL;
}

att_status att_json_get(const char *json, size_t len, const char *path, att_json_type *type, char **text)
{
    if (text)
        *text = NULL;
    if (type)
        *type = ATT_JSON_ABSENT;
    if (!json || !path || !type)
        return ATT_E_ARG;
    struct json_want w = {path, ATT_JSON_ABSENT, 0, 0};
    att_status st = json_extract(json, len, &w, 1, NULL);
    if (st != ATT_OK)
        return st;
    *type = w.type;
    if (text && w.type != ATT_JSON_ABSENT) {
        *text = json_want_text(json, &w);
        if (!*text)
            return ATT_E_NOMEM;
    }
    return ATT_OK;
}

att_status att_json_quote(const char *s, char **out)
{
    if (out)
        *out = NULL;
    if (!s || !out || !utf8_valid((const unsigned char *)s, strlen(s)))
        return ATT_E_ARG;
    struct buf b = {0};
    json_quote(&b, (const unsigned char *)s, strlen(s));
    *out = (char *)buf_take(&b, NULL);
    return *out ? ATT_OK : ATT_E_NOMEM;
}
