/*
 * test_units.c: the SDK's small parsers on their own: UTF-8, base64, the JSON reader and
 * quoter (public as att_json_get / att_json_quote), and the request body's escaping.
 */
#include "harness.c"

static void check_utf8(void)
{
    static const struct {
        const char *s;
        bool valid;
    } cases[] = {
        {"", true},
        {"plain ascii", true},
        {"R$ 150,00 \xe2\x9c\x93", true},
        {"\xf0\x9f\x9a\x95 taxi", true},
        {"\xc3\x28", false},             /* bad continuation */
        {"\xc0\xaf", false},             /* overlong '/' */
        {"\xe0\x80\xaf", false},         /* overlong, 3 bytes */
        {"\xed\xa0\x80", false},         /* a surrogate */
        {"\xf4\x90\x80\x80", false},     /* above U+10FFFF */
        {"\xe2\x9c", false},             /* truncated */
        {"\xff", false},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        bool got = utf8_valid((const unsigned char *)cases[i].s, strlen(cases[i].s));
        if (got != cases[i].valid) {
            fprintf(stderr, "  utf8 case %zu: got %d\n", i, got);
            h_failures++;
        }
    }
}

static void check_base64(void)
{
    /* RFC 4648 section 10. */
    static const char *const plain[] = {"", "f", "fo", "foo", "foob", "fooba", "foobar"};
    static const char *const coded[] = {"", "Zg==", "Zm8=", "Zm9v", "Zm9vYg==", "Zm9vYmE=", "Zm9vYmFy"};
    for (int i = 0; i < 7; i++) {
        struct buf e = {0}, d = {0};
        CHECK(base64_encode((const unsigned char *)plain[i], strlen(plain[i]), &e));
        buf_reserve(&e, 0);
        CHECK(e.len == strlen(coded[i]) && memcmp(e.p, coded[i], e.len) == 0);
        CHECK(base64_decode(coded[i], strlen(coded[i]), &d));
        CHECK(d.len == strlen(plain[i]) && (d.len == 0 || memcmp(d.p, plain[i], d.len) == 0));
        CHECK(base64_len(strlen(plain[i])) == strlen(coded[i]));
        buf_free(&e);
        buf_free(&d);
    }
    static const char *const bad[] = {"Zg", "Zg=", "Z===", "Zh==", "Zm9=", "Zg==Zg==", "Zm 9v", "Zm9v\n", "Zm-_", "====", "=Zg="};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct buf d = {0};
        if (base64_decode(bad[i], strlen(bad[i]), &d)) {
            fprintf(stderr, "  base64 accepted \"%s\"\n", bad[i]);
            h_failures++;
        }
        buf_free(&d);
    }
    /* Every byte value survives a round trip. */
    unsigned char all[256];
    for (int i = 0; i < 256; i++)
        all[i] = (unsigned char)i;
    struct buf e = {0}, d = {0};
    CHECK(base64_encode(all, sizeof all, &e));
    CHECK(base64_decode((char *)e.p, e.len, &d) && d.len == 256 && memcmp(d.p, all, 256) == 0);
    buf_free(&e);
    buf_free(&d);
}

/* att_json_get on `doc` at `path` must give `type` and, if `text` is not NULL, that text. */
static void expect_json(const char *doc, const char *path, att_json_type type, const char *text)
{
    att_json_type t;
    char *got = NULL;
    att_status st = att_json_get(doc, strlen(doc), path, &t, &got);
    bool ok = st == ATT_OK && t == type && (!text ? true : got && strcmp(got, text) == 0);
    if (!ok) {
        fprintf(stderr, "  json %s at \"%s\": status %d, type %d, text %s\n", doc, path, (int)st, (int)t,
                got ? got : "(null)");
        h_failures++;
    }
    att_free(got);
}

static void expect_invalid_json(const char *doc)
{
    att_json_type t = ATT_JSON_STRING;
    char *got = (char *)"x";
    if (att_json_get(doc, strlen(doc), "", &t, &got) != ATT_E_JSON || t != ATT_JSON_ABSENT || got != NULL) {
        fprintf(stderr, "  json accepted: %s\n", doc);
        h_failures++;
    }
}

static void check_json(void)
{
    const char *sale = " {\"sale_id\": 42, \"total\": \"189.90\", \"currency\": \"USD\",\n"
                       "  \"customer\": {\"name\": \"Ana \\\"A\\\" Souza\", \"phone\": \"+555599880151\",\n"
                       "               \"address\": \"Rua das Flores, 20\\nApto 3\"},\n"
                       "  \"tags\": [{\"total\": \"0\"}, 1, [], {}], \"paid\": true, \"note\": null } ";
    expect_json(sale, "sale_id", ATT_JSON_NUMBER, "42");
    expect_json(sale, "total", ATT_JSON_STRING, "189.90");
    expect_json(sale, "customer.name", ATT_JSON_STRING, "Ana \"A\" Souza");
    expect_json(sale, "customer.address", ATT_JSON_STRING, "Rua das Flores, 20\nApto 3");
    expect_json(sale, "customer", ATT_JSON_OBJECT, NULL);
    expect_json(sale, "tags", ATT_JSON_ARRAY, "[{\"total\": \"0\"}, 1, [], {}]");
    expect_json(sale, "paid", ATT_JSON_TRUE, "true");
    expect_json(sale, "note", ATT_JSON_NULL, "null");
    expect_json(sale, "customer.email", ATT_JSON_ABSENT, NULL);
    expect_json(sale, "name", ATT_JSON_ABSENT, NULL); /* only at its path */
    expect_json(sale, "", ATT_JSON_OBJECT, NULL);
    expect_json("\"caf\\u00e9 \\ud83d\\ude95 \\/\\b\\f\\r\\t\"", "", ATT_JSON_STRING,
                "caf\xc3\xa9 \xf0\x9f\x9a\x95 /\b\f\r\t");
    expect_json("[1,2]", "", ATT_JSON_ARRAY, "[1,2]");
    expect_json("-0.5e+10", "", ATT_JSON_NUMBER, "-0.5e+10");
    expect_json("{\"a.b\":1,\"a\":{\"b\":2}}", "a.b", ATT_JSON_NUMBER, "1"); /* both spell a.b: the first */
    expect_json("{\"reply\":null,\"at\":null}", "reply", ATT_JSON_NULL, NULL);

    static const char *const invalid[] = {
        "", " ", "{", "}", "{\"a\":1,}", "{\"a\":1 \"b\":2}", "{\"a\" 1}", "{a:1}", "[1,]", "[1 2]",
        "01", "1.", ".5", "-", "1e", "+1", "NaN", "tru", "nulll", "\"abc", "\"a\x01\"", "\"\\x\"",
        "\"\\u12\"", "\"\\u0000\"", "\"\\udc00\"", "\"\\ud83d\"", "\"\\ud83d\\u0041\"", "\"\xc3\x28\"",
        "{\"a\":1,\"a\":2}", "{\"a\":{\"b\":1,\"b\":1}}", "{\"\\u0061\":1,\"a\":2}", "1 2", "{} x",
        "'a'", "[\"a\"]]",
    };
    for (size_t i = 0; i < sizeof invalid / sizeof invalid[0]; i++)
        expect_invalid_json(invalid[i]);

    /* Nesting: 64 levels are fine, 65 are not. */
    char deep[200];
    for (int depth = 64; depth <= 65; depth++) {
        memset(deep, '[', (size_t)depth);
        memset(deep + depth, ']', (size_t)depth);
        deep[2 * depth] = '\0';
        att_json_type t;
        att_status st = att_json_get(deep, strlen(deep), "", &t, NULL);
        CHECK(depth == 64 ? st == ATT_OK && t == ATT_JSON_ARRAY : st == ATT_E_JSON);
    }
    /* A NUL inside the given length is not JSON. */
    att_json_type t;
    CHECK(att_json_get("{}\0{}", 5, "", &t, NULL) == ATT_E_JSON);
    CHECK(att_json_get(NULL, 0, "", &t, NULL) == ATT_E_ARG);
    CHECK(att_json_get("{}", 2, NULL, &t, NULL) == ATT_E_ARG);
}

static void check_quote(void)
{
    char *q = NULL;
    CHECK(att_json_quote("Jo\xc3\xa3o said \"hi\"\\\n\x01", &q) == ATT_OK);
    CHECK(q && strcmp(q, "\"Jo\xc3\xa3o said \\\"hi\\\"\\\\\\u000a\\u0001\"") == 0);
    /* What the quoter writes, the reader reads back. */
    att_json_type t;
    char *back = NULL;
    CHECK(q && att_json_get(q, strlen(q), "", &t, &back) == ATT_OK && t == ATT_JSON_STRING);
    CHECK(back && strcmp(back, "Jo\xc3\xa3o said \"hi\"\\\n\x01") == 0);
    att_free(back);
    att_free(q);
    q = (char *)"x";
    CHECK(att_json_quote("\xc3\x28", &q) == ATT_E_ARG && q == NULL);
    CHECK(att_json_quote(NULL, &q) == ATT_E_ARG);
}

int main(void)
{
    struct {
        const char *name;
        void (*fn)(void);
    } tests[] = {
        {"strict UTF-8", check_utf8},
        {"strict base64 (RFC 4648 vectors)", check_base64},
        {"JSON reader", check_json},
        {"JSON quoting", check_quote},
    };
    int failed = 0;
    for (size_t i = 0; i < sizeof tests / sizeof tests[0]; i++) {
        int before = h_failures;
        tests[i].fn();
        bool ok = h_failures == before;
        failed += !ok;
        printf("%s - %s\n", ok ? "ok" : "FAIL", tests[i].name);
    }
    printf("%s: %d test(s) failed\n", failed ? "FAIL" : "PASS", failed);
    return failed ? 1 : 0;
}
