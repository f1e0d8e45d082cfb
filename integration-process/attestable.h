/*
 * attestable.h: the SDK an integration process uses to talk to the attestable launcher.
 *
 * An integration process has no network. The launcher starts it with one end of a Unix socket
 * as file descriptor 3 (environment ATTESTABLE_FD=3) and brokers every call to the outside
 * services through it. This SDK speaks that channel (docs/PROTOCOL.md, "The compartment
 * channel") and protects every call end to end (docs/PROTOCOL.md, "Attested requests"):
 *
 *   att_init       generates a P-256 key pair in memory (never written anywhere), sends a
 *                  certificate request to the launcher and keeps the run certificate that
 *                  binds the key to what the launcher measured;
 *   att_read       signs a request with that key, encrypts it to the service, and returns
 *                  the service's answer after decrypting it and checking its signature and
 *                  that it answers this very request (nonce, service, resource);
 *   att_write      the same for data written to a service, with its optional reply.
 *
 * Before encrypting anything to a service the SDK checks the service's certificate against
 * the trust anchor compiled into the program (so the anchor is part of the measurement):
 *
 *     extern const char att_services_anchor_pem[];
 *
 * The launcher generates it at build time in attestable_anchor.c:
 *
 *     const char att_services_anchor_pem[] = "-----BEGIN CERTIFICATE-----\n...";
 *
 * PEM, one or more certificates; each is trusted as an anchor, whether it is a root or not.
 * An empty string means no anchor: every read and write then fails with a message saying so.
 *
 * Building (what the launcher does; C11, libc and OpenSSL 3 libcrypto only):
 *
 *     cc -std=c11 -O2 -o prog prog.c attestable.c attestable_anchor.c -lcrypto
 *
 * Define ATT_MAX_FRAME (-DATT_MAX_FRAME=...) to change the largest frame payload the SDK sends
 * or accepts; the default matches the launcher's default, 16 MiB.
 *
 * A minimal program:
 *
 *     #include "attestable.h"
 *     #include <stdio.h>
 *
 *     int main(void)
 *     {
 *         att_ctx *ctx;
 *         att_status rc = att_init(&ctx);
 *         if (rc == ATT_OK) {
 *             unsigned char *sale;
 *             size_t len;
 *             rc = att_read(ctx, "store", "sales/last", NULL, &sale, &len);
 *             if (rc == ATT_OK) {
 *                 printf("%s\n", (char *)sale);   // always NUL-terminated
 *                 att_free(sale);
 *             }
 *         }
 *         if (rc != ATT_OK)
 *             fprintf(stderr, "error: %s\n", att_strerror(ctx, rc));
 *         att_close(ctx);
 *         return rc == ATT_OK ? 0 : 1;
 *     }
 *
 * Threads: a context is not thread-safe; use it from one thread at a time. The SDK keeps no
 * global state besides what OpenSSL keeps. Calls block until the launcher answers (the
 * launcher enforces the run's time limit). Privacy: the launcher records the program's
 * stdout, stderr and LOG frames, so do not print or log what the services told you in
 * confidence. The SDK's own error messages name a resource by its collection only
 * (`replies`, never `replies/+5555...`).
 */
#ifndef ATTESTABLE_H
#define ATTESTABLE_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Sent in HELLO; informative. */
#define ATT_SDK_VERSION "1.0.0"

/* The largest frame payload sent or accepted, in bytes (docs/PROTOCOL.md, "Frames"). */
#ifndef ATT_MAX_FRAME
#define ATT_MAX_FRAME (16u * 1024u * 1024u)
#endif

/* The services trust anchor compiled into the program (see above). */
extern const char att_services_anchor_pem[];

/* Every call returns ATT_OK or one of these; att_strerror explains the last failure. */
typedef enum att_status {
    ATT_OK = 0,
    ATT_E_ARG = -1,          /* a NULL or invalid argument (e.g. a service name not [a-z0-9-]{1,64}) */
    ATT_E_NOMEM = -2,        /* out of memory */
    ATT_E_CHANNEL = -3,      /* the channel failed: closed by the launcher, an I/O error, or
                                already closed after an earlier fatal error */
    ATT_E_PROTOCOL = -4,     /* the launcher sent a malformed, oversized or unexpected frame
                                (the SDK then closes the channel), or an ERROR frame */
    ATT_E_NACK = -5,         /* the launcher refused the request: see att_nack_code and
                                att_strerror (for service_denied, the service's proof) */
    ATT_E_CRYPTO = -6,       /* a cryptographic operation failed on this side */
    ATT_E_CERT = -7,         /* the launcher's CERT answer to HELLO is unusable */
    ATT_E_SERVICE_CERT = -8, /* the service's certificate is not trusted: no anchor compiled
                                in, not chaining to it, expired, wrong key usage, or its
                                common name is not the service's name. Nothing was sent. */
    ATT_E_RESPONSE = -9,     /* the service's answer was rejected: it does not decrypt, its
                                signature does not verify, or its nonce, service, resource or
                                status do not match the request */
    ATT_E_TOO_LARGE = -10,   /* the request would exceed ATT_MAX_FRAME; nothing was sent */
    ATT_E_JSON = -11         /* att_json_get: the document is not valid JSON */
} att_status;

typedef enum att_log_level {
    ATT_LOG_ERROR = 0,
    ATT_LOG_WARNING = 1,
    ATT_LOG_INFO = 2,
    ATT_LOG_DEBUG = 3
} att_log_level;

typedef struct att_ctx att_ctx;

/*
 * Connects to the launcher on the descriptor named by ATTESTABLE_FD (default 3), generates
 * the run key, sends HELLO (CSR, ATT_SDK_VERSION, on CHERI the bounds of the program's code,
 * stack and heap capabilities) and keeps the certificate chain the launcher answers with.
 * On FreeBSD/CheriBSD it enters Capsicum capability mode before sending HELLO: after att_init
 * returns the program can no longer open files or sockets (if capability mode cannot be
 * entered, att_init fails with ATT_E_CHANNEL rather than run unconfined).
 *
 * *out is set even on failure (unless memory for the context itself ran out, then NULL), so
 * that att_strerror can explain; always release it with att_close.
 */
att_status att_init(att_ctx **out);

/* As att_init, on an already open descriptor. The context owns fd: att_close closes it. */
att_status att_init_fd(att_ctx **out, int fd);

/*
 * Reads `resource` (e.g. "sales/last", "replies/+555599880151") from `service` (e.g.
 * "store"). A resource is 1 to 512 bytes of segments of A-Z a-z 0-9 . _ ~ + @ = : - separated
 * by single '/', none of them "." or ".."; only its first segment (the collection) is visible
 * to the launcher. A service is a registry id, [a-z0-9-]{1,64}. params_json is the read's
 * parameters, a JSON object as text, or NULL for none (anything else is ATT_E_ARG).
 * On success *out is the answer's payload (the service's JSON document, possibly empty),
 * malloc'd, NUL-terminated (the NUL is not counted in *out_len); free it with att_free.
 * On failure *out is NULL and *out_len 0.
 */
att_status att_read(att_ctx *ctx, const char *service, const char *resource,
                    const char *params_json, unsigned char **out, size_t *out_len);

/*
 * Writes `len` bytes of `data` (usually a JSON document) to `resource` of `service`.
 * On success *reply is the service's reply payload (malloc'd, NUL-terminated, free with
 * att_free), verified like a read's answer. *reply is NULL and *reply_len 0 when the launcher
 * acknowledged without a reply from the service: that acknowledgement is the launcher's word
 * only, not the service's. reply and reply_len may both be NULL to discard the reply.
 */
att_status att_write(att_ctx *ctx, const char *service, const char *resource,
                     const void *data, size_t len, unsigned char **reply, size_t *reply_len);

/* Appends "[level] text" to the run's log at the launcher (printf format, valid UTF-8). */
att_status att_log(att_ctx *ctx, att_log_level level, const char *fmt, ...)
#if defined(__GNUC__) || defined(__clang__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

/* Closes the channel and frees the context and its key. NULL is allowed. */
void att_close(att_ctx *ctx);

/*
 * A message for a person: the detailed reason of the last failure on ctx when `status` is
 * what that call returned (expected versus found, the launcher's NACK reason, a service's
 * denial proof), else a generic description of `status`. ctx may be NULL. The string stays
 * valid until the next call on ctx.
 */
const char *att_strerror(const att_ctx *ctx, att_status status);

/* The code of the last NACK (e.g. "service_denied"), or NULL when the last call got none. */
const char *att_nack_code(const att_ctx *ctx);

/* Frees what the SDK allocated for the caller. NULL is allowed. */
void att_free(void *p);

/* The chain from the launcher, PEM: run certificate, attestation intermediate, root.
 * NULL before a successful att_init. */
const char *att_chain_pem(const att_ctx *ctx);

/* The run certificate alone, PEM. NULL before a successful att_init. */
const char *att_certificate_pem(const att_ctx *ctx);

/* The run certificate's subject in one line, e.g. "O=integration_process.c, CN=run-12". */
const char *att_certificate_subject(const att_ctx *ctx);

/*
 * A small JSON reader and writer, because programs have no JSON library.
 *
 * att_json_get checks that json[0..len) is one valid JSON document (RFC 8259, nesting at most
 * 64 levels, no duplicate keys in an object, no \u0000 in strings) and looks up `path`:
 * object keys separated by '.' ("customer.phone"; "" is the whole document; array elements
 * cannot be addressed). *type says what is there (ATT_JSON_ABSENT when nothing). When text is
 * not NULL, *text is set to a malloc'd, NUL-terminated copy of the value: a string decoded to
 * UTF-8, anything else as its JSON text (e.g. "42", "null", "{...}"); NULL when absent. Free
 * with att_free. Returns ATT_OK (also when absent), ATT_E_JSON, ATT_E_ARG or ATT_E_NOMEM.
 */
typedef enum att_json_type {
    ATT_JSON_ABSENT = 0,
    ATT_JSON_NULL,
    ATT_JSON_FALSE,
    ATT_JSON_TRUE,
    ATT_JSON_NUMBER,
    ATT_JSON_STRING,
    ATT_JSON_OBJECT,
    ATT_JSON_ARRAY
} att_json_type;

att_status att_json_get(const char *json, size_t len, const char *path, att_json_type *type,
                        char **text);

/* Sets *out to `s` as a quoted JSON string ("..." with \" \\ and \u00XX escapes), malloc'd.
 * ATT_E_ARG when s is NULL or not valid UTF-8. Free with att_free. */
att_status att_json_quote(const char *s, char **out);

#ifdef __cplusplus
}
#endif

#endif /* ATTESTABLE_H */
