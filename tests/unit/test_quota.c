/* AWS IoT Core's topic, filter, client id and keep-alive limits (broker-and-policy.md §4.2–§4.4):
 * the boundaries exactly, and the prefixes that do not count. */
#include <stdlib.h>

#include "check.h"
#include "quota.h"

/* A string of N copies of C, then TAIL (caller frees). */
static char *repeat(char c, size_t n, const char *tail)
{
    size_t t = strlen(tail);
    char *s = malloc(n + t + 1);
    memset(s, c, n);
    memcpy(s + n, tail, t + 1);
    return s;
}

static enum quota_result topic(const char *s)
{
    return quota_check_topic(s, strlen(s));
}

static enum quota_result filter(const char *s)
{
    return quota_check_filter(s, strlen(s));
}

static enum quota_result client_id(const char *s)
{
    return quota_check_client_id(s, strlen(s));
}

static void test_depth(void)
{
    static const struct {
        const char *name;
        enum quota_result topic, filter;
    } cases[] = {
        {"a/b/c/d/e/f/g/h/i", QUOTA_TOO_DEEP, QUOTA_TOO_DEEP}, /* 8 slashes */
        {"////////", QUOTA_TOO_DEEP, QUOTA_TOO_DEEP},          /* empty levels count */
        {"a/b/c/d/e/f/g/h", QUOTA_OK, QUOTA_OK},               /* 7 slashes */
        {"///////", QUOTA_OK, QUOTA_OK},
        {"$aws/rules/r/a/b/c/d/e/f/g/h", QUOTA_OK, QUOTA_OK}, /* prefix not counted */
        {"$AWS/Rules/r/a/b/c/d/e/f/g/h", QUOTA_OK, QUOTA_OK}, /* case-insensitive */
        {"$aws/rules/r/a/b/c/d/e/f/g/h/i", QUOTA_TOO_DEEP, QUOTA_TOO_DEEP},
        {"$aws/rules//a/b/c/d/e/f", QUOTA_TOO_DEEP, QUOTA_TOO_DEEP}, /* no rule: no exemption */
        {"$share/g/a/b/c/d/e/f/g/h", QUOTA_TOO_DEEP, QUOTA_OK},      /* only filters are shared */
        {"$share/g/a/b/c/d/e/f/g/h/i", QUOTA_TOO_DEEP, QUOTA_TOO_DEEP},
        {"$share/g/$aws/rules/r/a/b/c/d/e/f/g/h", QUOTA_TOO_DEEP, QUOTA_OK},
        {"a/+/#", QUOTA_OK, QUOTA_OK},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        CHECK_INT(topic(cases[i].name), cases[i].topic);
        CHECK_INT(filter(cases[i].name), cases[i].filter);
    }
}

static void test_length(void)
{
    char *s = repeat('a', 257, "");
    CHECK_INT(topic(s), QUOTA_TOO_LONG);
    CHECK_INT(filter(s), QUOTA_TOO_LONG);
    s[256] = '\0';
    CHECK_INT(topic(s), QUOTA_OK);
    CHECK_INT(filter(s), QUOTA_OK);
    free(s);
    /* 256 bytes after the Basic Ingest prefix: fine; 257: not. */
    char *rest = repeat('x', 256, "");
    char buf[512];
    snprintf(buf, sizeof(buf), "$aws/rules/my_rule/%s", rest);
    CHECK_INT(topic(buf), QUOTA_OK);
    snprintf(buf, sizeof(buf), "$aws/rules/my_rule/%sx", rest);
    CHECK_INT(topic(buf), QUOTA_TOO_LONG);
    snprintf(buf, sizeof(buf), "$share/group/%s", rest);
    CHECK_INT(filter(buf), QUOTA_OK);
    CHECK_INT(topic(buf), QUOTA_TOO_LONG);
    free(rest);
    /* Multi-byte UTF-8 counts in bytes: 129 two-byte characters are 258 bytes. */
    char utf8[600] = "";
    for (int i = 0; i < 129; i++)
        strcat(utf8, "\xc3\xa9");
    CHECK_INT(topic(utf8), QUOTA_TOO_LONG);
    utf8[256] = '\0';
    CHECK_INT(topic(utf8), QUOTA_OK);
    /* The length passed is what counts, not a NUL. */
    CHECK_INT(quota_check_topic("a/b/c/d/e/f/g/h/i", 15), QUOTA_OK);
}

static void test_shares(void)
{
    CHECK_INT(filter("$share/g"), QUOTA_BAD_SHARE);
    CHECK_INT(filter("$share/g/"), QUOTA_BAD_SHARE);
    CHECK_INT(filter("$share//a"), QUOTA_BAD_SHARE);
    CHECK_INT(filter("$share/g+/a"), QUOTA_BAD_SHARE);
    CHECK_INT(filter("$share/g#/a"), QUOTA_BAD_SHARE);
    char *name = repeat('n', 129, "/a");
    char buf[300];
    snprintf(buf, sizeof(buf), "$share/%s", name);
    CHECK_INT(filter(buf), QUOTA_BAD_SHARE);
    snprintf(buf, sizeof(buf), "$share/%s", name + 1); /* 128 bytes */
    CHECK_INT(filter(buf), QUOTA_OK);
    free(name);
    CHECK_INT(filter("$share/g/a"), QUOTA_OK);
    CHECK_INT(filter("$sharex/g/a"), QUOTA_OK); /* not a shared subscription */
}

static void test_empty(void)
{
    CHECK_INT(topic(""), QUOTA_EMPTY);
    CHECK_INT(filter(""), QUOTA_EMPTY);
    CHECK_INT(client_id(""), QUOTA_EMPTY);
    CHECK_INT(quota_check_topic(NULL, 0), QUOTA_EMPTY);
}

static void test_client_ids(void)
{
    char *id = repeat('c', 129, "");
    CHECK_INT(client_id(id), QUOTA_TOO_LONG);
    id[128] = '\0';
    CHECK_INT(client_id(id), QUOTA_OK);
    free(id);
    CHECK_INT(client_id("$aws-thing"), QUOTA_RESERVED_PREFIX);
    CHECK_INT(client_id("$"), QUOTA_RESERVED_PREFIX);
    CHECK_INT(client_id("a$"), QUOTA_OK);
    CHECK_INT(client_id("a+b#c"), QUOTA_OK); /* accepted; only lifecycle events skip them */
}

static void test_keepalive(void)
{
    static const unsigned cases[][3] = {
        /* requested, max, effective */
        {0, 0, 1200},     {0, 1200, 1200}, {1, 1200, 30},      {29, 1200, 30},
        {30, 1200, 30},   {60, 1200, 60},  {1200, 1200, 1200}, {1201, 1200, 1200},
        {65535, 0, 1200}, {0, 10, 10},     {5, 10, 10},        {11, 10, 10},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        CHECK_INT(quota_keepalive(cases[i][0], cases[i][1]), cases[i][2]);
}

static void test_texts(void)
{
    CHECK_STR(quota_result_text(QUOTA_OK), "");
    for (int r = QUOTA_EMPTY; r <= QUOTA_RESERVED_PREFIX; r++)
        CHECK(quota_result_text((enum quota_result)r)[0] != '\0');
}

int main(void)
{
    test_empty();
    test_depth();
    test_length();
    test_shares();
    test_client_ids();
    test_keepalive();
    test_texts();
    return check_summary();
}
