/* AWS IoT policies (shared/spec/broker-and-policy.md §2).
 *
 * policy_compile() does all the parsing once: it validates the document the way CreatePolicy
 * does, turns each Action list into a bit set over the actions iotmock knows, and splits every
 * Resource and condition value into tokens (literal runs, `*`, `?`, variables). policy_evaluate()
 * then only resolves variables from the connection's context and runs a glob over the tokens,
 * allocating nothing: its cost depends on the policies passed in and nothing else.
 *
 * Where AWS documents nothing, the IAM rules apply (AWS: IoT policies "follow the same conventions
 * as IAM policies"), and each such place says so. */
#include "policy.h"

#include <arpa/inet.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <cjson/cJSON.h>
#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>

#include "ca.h"

#define STATEMENT_VARS_MAX 32 /* distinct values an explanation can name per statement */
#define EXPLAIN_VARS_MAX 8    /* ... and per decision */
#define EXPLAIN_VALUE_MAX 64  /* characters of one value shown in an explanation */
#define PATTERN_CACHE 16      /* variables per pattern resolved once per match (more: per use) */
#define RENDER_MAX (2 * POLICY_VAR_VALUE_MAX) /* a condition value after substitution */

static const char *const action_names[POLICY_ACTION_COUNT] = {
    [POLICY_ACTION_CONNECT] = "iot:Connect",
    [POLICY_ACTION_PUBLISH] = "iot:Publish",
    [POLICY_ACTION_SUBSCRIBE] = "iot:Subscribe",
    [POLICY_ACTION_RECEIVE] = "iot:Receive",
    [POLICY_ACTION_RETAIN_PUBLISH] = "iot:RetainPublish",
    [POLICY_ACTION_GET_RETAINED_MESSAGE] = "iot:GetRetainedMessage",
    [POLICY_ACTION_LIST_RETAINED_MESSAGES] = "iot:ListRetainedMessages",
    [POLICY_ACTION_GET_THING_SHADOW] = "iot:GetThingShadow",
    [POLICY_ACTION_UPDATE_THING_SHADOW] = "iot:UpdateThingShadow",
    [POLICY_ACTION_DELETE_THING_SHADOW] = "iot:DeleteThingShadow",
    [POLICY_ACTION_LIST_NAMED_SHADOWS_FOR_THING] = "iot:ListNamedShadowsForThing",
    [POLICY_ACTION_DESCRIBE_JOB_EXECUTION] = "iot:DescribeJobExecution",
    [POLICY_ACTION_GET_PENDING_JOB_EXECUTIONS] = "iot:GetPendingJobExecutions",
    [POLICY_ACTION_UPDATE_JOB_EXECUTION] = "iot:UpdateJobExecution",
    [POLICY_ACTION_START_NEXT_PENDING_JOB_EXECUTION] = "iot:StartNextPendingJobExecution",
    [POLICY_ACTION_ASSUME_ROLE_WITH_CERTIFICATE] = "iot:AssumeRoleWithCertificate",
};

#define ALL_ACTIONS ((uint32_t)((1u << POLICY_ACTION_COUNT) - 1u))

const char *policy_action_name(enum policy_action a)
{
    return (unsigned)a < POLICY_ACTION_COUNT ? action_names[a] : NULL;
}

bool policy_action_parse(const char *name, enum policy_action *out)
{
    for (unsigned a = 0; name != NULL && a < POLICY_ACTION_COUNT; a++) {
        if (strcasecmp(name, action_names[a]) == 0) {
            *out = (enum policy_action)a;
            return true;
        }
    }
    return false;
}

const char *policy_effect_name(enum policy_effect e)
{
    switch (e) {
    case POLICY_ALLOW:
        return "ALLOW";
    case POLICY_DENY_EXPLICIT:
        return "DENY_EXPLICIT";
    case POLICY_DENY_IMPLICIT:
        break;
    }
    return "DENY_IMPLICIT";
}

/* ---- small helpers ------------------------------------------------------------------------ */

struct slice {
    const char *p;
    size_t n;
};

static char lower(char c)
{
    return c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
}

/* S (N bytes) equals the NUL-terminated WORD, ignoring ASCII case. */
static bool ci_equal(const char *s, size_t n, const char *word)
{
    return strlen(word) == n && strncasecmp(s, word, n) == 0;
}

static bool ci_starts(const char *s, size_t n, const char *prefix)
{
    size_t k = strlen(prefix);
    return n >= k && strncasecmp(s, prefix, k) == 0;
}

static bool all_digits(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (s[i] < '0' || s[i] > '9')
            return false;
    return n > 0;
}

/* Case-insensitive glob of PATTERN over S, both NUL-terminated; used at compile time only. */
static bool glob_ci(const char *pattern, const char *s)
{
    const char *star = NULL, *star_s = NULL;
    while (*s) {
        if (*pattern == '*') {
            star = ++pattern;
            star_s = s;
        } else if (*pattern == '?' || (*pattern && lower(*pattern) == lower(*s))) {
            pattern++;
            s++;
        } else if (star) {
            pattern = star;
            s = ++star_s;
        } else {
            return false;
        }
    }
    while (*pattern == '*')
        pattern++;
    return *pattern == '\0';
}

/* ---- arena: everything a compiled policy owns, freed at once -------------------------------- */

struct chunk {
    struct chunk *next;
    size_t used, cap;
    max_align_t data[];
};

struct arena {
    struct chunk *head;
};

#define ARENA_CHUNK 4096

static void *arena_alloc(struct arena *a, size_t n)
{
    size_t align = _Alignof(max_align_t);
    n = (n + align - 1) / align * align;
    if (n == 0)
        n = align;
    struct chunk *c = a->head;
    if (c == NULL || c->cap - c->used < n) {
        size_t cap = n > ARENA_CHUNK ? n : ARENA_CHUNK;
        c = malloc(sizeof(*c) + cap);
        if (c == NULL)
            return NULL;
        c->next = a->head;
        c->used = 0;
        c->cap = cap;
        a->head = c;
    }
    void *p = (unsigned char *)c->data + c->used;
    c->used += n;
    memset(p, 0, n);
    return p;
}

static char *arena_strndup(struct arena *a, const char *s, size_t n)
{
    char *d = arena_alloc(a, n + 1);
    if (d != NULL) {
        memcpy(d, s, n);
        d[n] = '\0';
    }
    return d;
}

static void arena_free(struct arena *a)
{
    while (a->head) {
        struct chunk *next = a->head->next;
        free(a->head);
        a->head = next;
    }
}

/* ---- certificate fields (§2.4, DG cert-policy-variables) ----------------------------------- */

enum {
    CERT_DN_ATTRS = 13,
    CERT_ALT_NAMES = 5,
    CERT_SUBJECT = 0,
    CERT_ISSUER = CERT_SUBJECT + CERT_DN_ATTRS,
    CERT_SUBJECT_ALT = CERT_ISSUER + CERT_DN_ATTRS,
    CERT_ISSUER_ALT = CERT_SUBJECT_ALT + CERT_ALT_NAMES,
    CERT_SERIAL = CERT_ISSUER_ALT + CERT_ALT_NAMES,
    CERT_FIELD_COUNT
};

#define CERT_PREFIX "iot:Certificate."

struct cert_field {
    const char *key; /* the variable, also what iot:Certificate.AvailableKeys lists */
    int nid;         /* DN attribute; NID_undef otherwise */
    int gen;         /* GENERAL_NAME type of an alternative name; -1 otherwise */
};

#define DN_FIELDS(who)                                                                             \
    {CERT_PREFIX who ".DistinguishedNameQualifier", NID_dnQualifier, -1},                          \
        {CERT_PREFIX who ".Country", NID_countryName, -1},                                         \
        {CERT_PREFIX who ".Organization", NID_organizationName, -1},                               \
        {CERT_PREFIX who ".OrganizationalUnit", NID_organizationalUnitName, -1},                   \
        {CERT_PREFIX who ".State", NID_stateOrProvinceName, -1},                                   \
        {CERT_PREFIX who ".CommonName", NID_commonName, -1},                                       \
        {CERT_PREFIX who ".SerialNumber", NID_serialNumber, -1},                                   \
        {CERT_PREFIX who ".Title", NID_title, -1}, {CERT_PREFIX who ".Surname", NID_surname, -1},  \
        {CERT_PREFIX who ".GivenName", NID_givenName, -1},                                         \
        {CERT_PREFIX who ".Initials", NID_initials, -1},                                           \
        {CERT_PREFIX who ".Pseudonym", NID_pseudonym, -1},                                         \
    {                                                                                              \
        CERT_PREFIX who ".GenerationQualifier", NID_generationQualifier, -1                        \
    }

#define ALT_FIELDS(who)                                                                            \
    {CERT_PREFIX who ".AlternativeName.RFC822Name", NID_undef, GEN_EMAIL},                         \
        {CERT_PREFIX who ".AlternativeName.DNSName", NID_undef, GEN_DNS},                          \
        {CERT_PREFIX who ".AlternativeName.DirectoryName", NID_undef, GEN_DIRNAME},                \
        {CERT_PREFIX who ".AlternativeName.UniformResourceIdentifier", NID_undef, GEN_URI},        \
    {                                                                                              \
        CERT_PREFIX who ".AlternativeName.IPAddress", NID_undef, GEN_IPADD                         \
    }

static const struct cert_field cert_fields[CERT_FIELD_COUNT] = {
    DN_FIELDS("Subject"),
    DN_FIELDS("Issuer"),
    ALT_FIELDS("Subject"),
    ALT_FIELDS("Issuer"),
    {CERT_PREFIX "SerialNumber", NID_undef, -1},
};

struct policy_cert {
    char *values[CERT_FIELD_COUNT][POLICY_CERT_VALUES_MAX];
    unsigned char count[CERT_FIELD_COUNT];
    char id[CA_ID_LEN + 1];
    bool has_validity;
    time_t not_before, not_after;
};

static bool cert_field_is_dirname(int f)
{
    return cert_fields[f].gen == GEN_DIRNAME;
}

/* The field named NAME (N bytes), with or without the iot:Certificate. prefix; -1 if none. */
static int cert_field_find(const char *name, size_t n)
{
    size_t plen = strlen(CERT_PREFIX);
    if (ci_starts(name, n, CERT_PREFIX)) {
        name += plen;
        n -= plen;
    }
    for (int f = 0; f < CERT_FIELD_COUNT; f++)
        if (ci_equal(name, n, cert_fields[f].key + plen))
            return f;
    return -1;
}

/* ---- policy variables and condition keys (§2.4, §2.5) ------------------------------------- */

enum var_kind {
    VAR_UNKNOWN = 0, /* never has a value: stays literal in resources, absent in conditions */
    VAR_CLIENT_ID,
    VAR_SOURCE_IP,
    VAR_DOMAIN_NAME,
    VAR_THING_NAME,
    VAR_THING_TYPE_NAME,
    VAR_THING_ATTRIBUTE,
    VAR_IS_ATTACHED,
    VAR_CERTIFICATE_ID,
    VAR_CERT_FIELD,
    VAR_CERT_AVAILABLE_KEYS,
    VAR_CONNECT_ATTRIBUTES,
    VAR_LAST_WILL_TOPIC,
    VAR_CURRENT_TIME,
    VAR_EPOCH_TIME,
};

struct var {
    enum var_kind kind;
    int field;       /* VAR_CERT_FIELD: index in cert_fields */
    unsigned index;  /* VAR_CERT_FIELD: the value wanted; the bare name is the first (0) */
    bool list;       /* VAR_CERT_FIELD with .List: all values */
    const char *arg; /* VAR_THING_ATTRIBUTE: the attribute name */
    size_t arg_len;
    const char *name; /* as the policy writes it, for explanations */
    size_t name_len;
};

static const struct {
    const char *name;
    enum var_kind kind;
} simple_vars[] = {
    {"iot:ClientId", VAR_CLIENT_ID},
    {"aws:SourceIp", VAR_SOURCE_IP},
    {"iot:DomainName", VAR_DOMAIN_NAME},
    {"iot:Connection.Thing.ThingName", VAR_THING_NAME},
    {"iot:Connection.Thing.ThingTypeName", VAR_THING_TYPE_NAME},
    {"iot:Connection.Thing.IsAttached", VAR_IS_ATTACHED},
    {"iot:CertificateId", VAR_CERTIFICATE_ID},
    {"iot:Certificate.AvailableKeys", VAR_CERT_AVAILABLE_KEYS},
    {"iot:ConnectAttributes", VAR_CONNECT_ATTRIBUTES},
    {"iot:LastWillTopic", VAR_LAST_WILL_TOPIC},
    {"aws:CurrentTime", VAR_CURRENT_TIME},
    {"aws:EpochTime", VAR_EPOCH_TIME},
};

#define THING_ATTRIBUTES_PREFIX "iot:Connection.Thing.Attributes["

/* "CommonName" + "", ".2" or ".List" (§2.4: the index counts from 0, .1 is the second value). */
static bool cert_var_parse(const char *s, size_t n, struct var *v)
{
    for (int f = 0; f < CERT_FIELD_COUNT; f++) {
        const char *key = cert_fields[f].key;
        size_t k = strlen(key);
        if (n < k || strncasecmp(s, key, k) != 0)
            continue;
        const char *rest = s + k;
        size_t rn = n - k;
        if (rn == 0) {
            v->index = 0;
        } else if (ci_equal(rest, rn, ".List")) {
            v->list = true;
        } else if (rn >= 2 && rn <= 4 && rest[0] == '.' && all_digits(rest + 1, rn - 1)) {
            v->index = (unsigned)strtoul(rest + 1, NULL, 10);
        } else {
            continue;
        }
        v->kind = VAR_CERT_FIELD;
        v->field = f;
        return true;
    }
    return false;
}

/* Names are matched case-insensitively, as IAM matches context keys; attribute names inside
 * [...] keep their case, as thing attributes do. */
static bool var_parse(const char *s, size_t n, struct var *v)
{
    memset(v, 0, sizeof(*v));
    for (size_t i = 0; i < sizeof(simple_vars) / sizeof(simple_vars[0]); i++) {
        if (ci_equal(s, n, simple_vars[i].name)) {
            v->kind = simple_vars[i].kind;
            return true;
        }
    }
    size_t plen = strlen(THING_ATTRIBUTES_PREFIX);
    if (ci_starts(s, n, THING_ATTRIBUTES_PREFIX) && n > plen + 1 && s[n - 1] == ']') {
        v->kind = VAR_THING_ATTRIBUTE;
        v->arg = s + plen;
        v->arg_len = n - plen - 1;
        return true;
    }
    return cert_var_parse(s, n, v);
}

static bool var_multi(const struct var *v)
{
    return (v->kind == VAR_CERT_FIELD && v->list) || v->kind == VAR_CERT_AVAILABLE_KEYS ||
           v->kind == VAR_CONNECT_ATTRIBUTES;
}

static bool var_same(const struct var *a, const struct var *b)
{
    if (a->kind != b->kind)
        return false;
    switch (a->kind) {
    case VAR_CERT_FIELD:
        return a->field == b->field && a->list == b->list && a->index == b->index;
    case VAR_THING_ATTRIBUTE:
        return a->arg_len == b->arg_len && memcmp(a->arg, b->arg, a->arg_len) == 0;
    case VAR_UNKNOWN:
        return a->name_len == b->name_len && strncasecmp(a->name, b->name, a->name_len) == 0;
    default:
        return true;
    }
}

/* ---- compiled form ----------------------------------------------------------------------- */

enum tok_kind { TOK_LIT, TOK_STAR, TOK_QMARK, TOK_VAR };

struct tok {
    enum tok_kind kind;
    unsigned slot;    /* TOK_VAR: index among the pattern's variables */
    const char *text; /* TOK_LIT: the bytes; TOK_VAR: "${...}", what stays when unresolved */
    size_t len;
    const struct var *var; /* TOK_VAR */
};

struct pattern {
    const struct tok *toks;
    size_t n_toks;
    unsigned n_vars;
    const char *text; /* as written */
};

enum cmp {
    CMP_STRING,
    CMP_STRING_IC,
    CMP_STRING_LIKE,
    CMP_NUMERIC,
    CMP_DATE,
    CMP_BOOL,
    CMP_BINARY,
    CMP_IP,
    CMP_ARN,
    CMP_NULL
};
enum order { ORD_EQ, ORD_LT, ORD_LE, ORD_GT, ORD_GE };
enum set_mode { SET_NONE, SET_ANY, SET_ALL };

struct op_def {
    const char *name;
    enum cmp cmp;
    enum order order;
    bool negated; /* "Not" operators: true when the key is absent, NOR over the values (IAM) */
};

static const struct op_def op_defs[] = {
    {"StringEquals", CMP_STRING, ORD_EQ, false},
    {"StringNotEquals", CMP_STRING, ORD_EQ, true},
    {"StringEqualsIgnoreCase", CMP_STRING_IC, ORD_EQ, false},
    {"StringNotEqualsIgnoreCase", CMP_STRING_IC, ORD_EQ, true},
    {"StringLike", CMP_STRING_LIKE, ORD_EQ, false},
    {"StringNotLike", CMP_STRING_LIKE, ORD_EQ, true},
    {"NumericEquals", CMP_NUMERIC, ORD_EQ, false},
    {"NumericNotEquals", CMP_NUMERIC, ORD_EQ, true},
    {"NumericLessThan", CMP_NUMERIC, ORD_LT, false},
    {"NumericLessThanEquals", CMP_NUMERIC, ORD_LE, false},
    {"NumericGreaterThan", CMP_NUMERIC, ORD_GT, false},
    {"NumericGreaterThanEquals", CMP_NUMERIC, ORD_GE, false},
    {"DateEquals", CMP_DATE, ORD_EQ, false},
    {"DateNotEquals", CMP_DATE, ORD_EQ, true},
    {"DateLessThan", CMP_DATE, ORD_LT, false},
    {"DateLessThanEquals", CMP_DATE, ORD_LE, false},
    {"DateGreaterThan", CMP_DATE, ORD_GT, false},
    {"DateGreaterThanEquals", CMP_DATE, ORD_GE, false},
    {"Bool", CMP_BOOL, ORD_EQ, false},
    {"BinaryEquals", CMP_BINARY, ORD_EQ, false},
    {"IpAddress", CMP_IP, ORD_EQ, false},
    {"NotIpAddress", CMP_IP, ORD_EQ, true},
    {"ArnEquals", CMP_ARN, ORD_EQ, false},
    {"ArnLike", CMP_ARN, ORD_EQ, false},
    {"ArnNotEquals", CMP_ARN, ORD_EQ, true},
    {"ArnNotLike", CMP_ARN, ORD_EQ, true},
    {"Null", CMP_NULL, ORD_EQ, false},
};

struct ipnet {
    int family; /* AF_INET or AF_INET6 */
    unsigned char addr[16];
    unsigned prefix;
};

struct cvalue {
    struct pattern pat;
    bool constant; /* no variable: the parsed forms below are valid */
    double num;    /* CMP_NUMERIC; CMP_DATE as seconds since the epoch */
    bool b;        /* CMP_BOOL, CMP_NULL */
    struct ipnet ip;
};

struct cond {
    const struct op_def *op;
    enum set_mode set;
    bool if_exists;
    struct var key;
    struct cvalue *values;
    size_t n_values;
};

struct stmt {
    bool deny;
    uint32_t actions; /* the actions the statement applies to (NotAction already inverted) */
    bool not_resource;
    struct pattern *resources;
    size_t n_resources;
    struct cond *conds;
    size_t n_conds;
    const char *sid;         /* NULL when absent */
    const struct var **vars; /* distinct variables and condition keys, for explanations */
    size_t n_vars;
};

struct policy {
    struct arena arena;
    const char *name;
    bool variables; /* Version 2012-10-17: ${...} is substituted (IAM: not in 2008-10-17) */
    uint32_t actions;
    struct stmt *stmts;
    size_t n_stmts;
};

const char *policy_name(const struct policy *p)
{
    return p ? p->name : NULL;
}

bool policy_varies_with_time(const struct policy *p)
{
    for (size_t i = 0; p != NULL && i < p->n_stmts; i++) {
        for (size_t v = 0; v < p->stmts[i].n_vars; v++) {
            enum var_kind k = p->stmts[i].vars[v]->kind;
            if (k == VAR_CURRENT_TIME || k == VAR_EPOCH_TIME)
                return true;
        }
    }
    return false;
}

size_t policy_statement_count(const struct policy *p)
{
    return p ? p->n_stmts : 0;
}

void policy_free(struct policy *p)
{
    if (p == NULL)
        return;
    arena_free(&p->arena);
    free(p);
}

/* ---- value parsers shared by compile and evaluation --------------------------------------- */

static bool parse_number(const char *s, size_t n, double *out)
{
    char buf[64];
    if (n == 0 || n >= sizeof(buf))
        return false;
    memcpy(buf, s, n);
    buf[n] = '\0';
    char *end = NULL;
    double d = strtod(buf, &end);
    if (end != buf + n || d != d || d > 1e308 || d < -1e308)
        return false;
    *out = d;
    return true;
}

static bool take_int(const char **s, const char *end, size_t digits, int *out)
{
    if ((size_t)(end - *s) < digits || !all_digits(*s, digits))
        return false;
    int v = 0;
    for (size_t i = 0; i < digits; i++)
        v = v * 10 + ((*s)[i] - '0');
    *s += digits;
    *out = v;
    return true;
}

static bool take_char(const char **s, const char *end, char c)
{
    if (*s < end && **s == c) {
        (*s)++;
        return true;
    }
    return false;
}

/* "+hh:mm", "-hhmm", "Z" or nothing (UTC) at the end of an ISO 8601 time. */
static bool parse_zone(const char *s, const char *end, long *offset)
{
    *offset = 0;
    if (s == end || (take_char(&s, end, 'Z') && s == end))
        return s == end;
    int sign = *s == '-' ? -1 : 1;
    int hh = 0, mm = 0;
    if ((*s != '+' && *s != '-') || (s++, !take_int(&s, end, 2, &hh)))
        return false;
    take_char(&s, end, ':');
    if (!take_int(&s, end, 2, &mm) || s != end || hh > 23 || mm > 59)
        return false;
    *offset = sign * (hh * 3600L + mm * 60L);
    return true;
}

/* IAM dates: seconds since the epoch, or ISO 8601 from "2024-01-31" to
 * "2024-01-31T12:00:00.000+02:00". */
static bool parse_date(const char *s, size_t n, double *out)
{
    const char *end = s + n;
    if (n > 0 && all_digits(s + (s[0] == '-'), n - (s[0] == '-')))
        return parse_number(s, n, out);
    struct tm tm = {0};
    int y = 0, mo = 0, d = 0, h = 0, mi = 0, sec = 0;
    if (!take_int(&s, end, 4, &y) || !take_char(&s, end, '-') || !take_int(&s, end, 2, &mo) ||
        !take_char(&s, end, '-') || !take_int(&s, end, 2, &d))
        return false;
    double frac = 0;
    if (take_char(&s, end, 'T')) {
        if (!take_int(&s, end, 2, &h) || !take_char(&s, end, ':') || !take_int(&s, end, 2, &mi))
            return false;
        if (take_char(&s, end, ':') && !take_int(&s, end, 2, &sec))
            return false;
        if (take_char(&s, end, '.')) {
            double scale = 0.1;
            if (s == end || *s < '0' || *s > '9')
                return false;
            for (; s < end && *s >= '0' && *s <= '9'; s++, scale /= 10)
                frac += (*s - '0') * scale;
        }
    }
    long offset = 0;
    if (!parse_zone(s, end, &offset) || mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 ||
        sec > 60)
        return false;
    tm.tm_year = y - 1900;
    tm.tm_mon = mo - 1;
    tm.tm_mday = d;
    tm.tm_hour = h;
    tm.tm_min = mi;
    tm.tm_sec = sec;
    *out = (double)timegm(&tm) - (double)offset + frac;
    return true;
}

static bool parse_bool(const char *s, size_t n, bool *out)
{
    if (ci_equal(s, n, "true"))
        *out = true;
    else if (ci_equal(s, n, "false"))
        *out = false;
    else
        return false;
    return true;
}

/* An address, or with ALLOW_PREFIX a CIDR block ("10.0.0.0/8", "2001:db8::/32"). IPv4-mapped
 * IPv6 addresses count as IPv4. */
static bool parse_ip(const char *s, size_t n, bool allow_prefix, struct ipnet *out)
{
    char buf[64];
    if (n == 0 || n >= sizeof(buf))
        return false;
    memcpy(buf, s, n);
    buf[n] = '\0';
    char *slash = strchr(buf, '/');
    if (slash != NULL) {
        if (!allow_prefix || !all_digits(slash + 1, strlen(slash + 1)) || strlen(slash + 1) > 3)
            return false;
        *slash = '\0';
    }
    memset(out, 0, sizeof(*out));
    if (strchr(buf, ':') != NULL) {
        out->family = AF_INET6;
        out->prefix = 128;
        if (inet_pton(AF_INET6, buf, out->addr) != 1)
            return false;
        static const unsigned char mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
        if (slash == NULL && memcmp(out->addr, mapped, sizeof(mapped)) == 0) {
            memmove(out->addr, out->addr + 12, 4);
            memset(out->addr + 4, 0, 12);
            out->family = AF_INET;
            out->prefix = 32;
        }
    } else {
        out->family = AF_INET;
        out->prefix = 32;
        if (inet_pton(AF_INET, buf, out->addr) != 1)
            return false;
    }
    if (slash != NULL) {
        unsigned long prefix = strtoul(slash + 1, NULL, 10);
        if (prefix > out->prefix)
            return false;
        out->prefix = (unsigned)prefix;
    }
    return true;
}

static bool ip_in(const struct ipnet *net, const struct ipnet *a)
{
    if (net->family != a->family)
        return false;
    unsigned whole = net->prefix / 8, rest = net->prefix % 8;
    if (memcmp(net->addr, a->addr, whole) != 0)
        return false;
    unsigned char mask = (unsigned char)(0xff00u >> rest);
    return rest == 0 || (net->addr[whole] & mask) == (a->addr[whole] & mask);
}

/* ---- compiling ---------------------------------------------------------------------------- */

struct compiler {
    struct policy *p;
    struct iot_error *err;
    char where[48]; /* "Statement[2]" or "Statement" for messages */
    const struct var *vars[STATEMENT_VARS_MAX];
    size_t n_vars;
};

static enum iot_err nomem(struct iot_error *err)
{
    iot_error_set(err, IOT_ERR_NOMEM, "Out of memory while compiling the policy");
    return IOT_ERR_NOMEM;
}

/* Sets the message and evaluates to IOT_ERR_INVALID_REQUEST, visibly at each call site (static
 * analyzers do not follow the return value of a variadic function). */
#define malformed(c, ...)                                                                          \
    (iot_error_set((c)->err, IOT_ERR_INVALID_REQUEST, __VA_ARGS__), IOT_ERR_INVALID_REQUEST)

static void note_var(struct compiler *c, const struct var *v)
{
    for (size_t i = 0; i < c->n_vars; i++)
        if (var_same(c->vars[i], v))
            return;
    if (c->n_vars < STATEMENT_VARS_MAX)
        c->vars[c->n_vars++] = v;
}

/* Splits S (N bytes) into tokens. With variables on, ${name} of a known variable becomes a
 * variable token, ${*} ${?} ${$} the literal character, and anything else in ${...} stays
 * literal text (the IAM escapes, §2.3). */
static enum iot_err pattern_compile(struct compiler *c, const char *s, size_t n,
                                    struct pattern *out)
{
    struct arena *a = &c->p->arena;
    struct tok *toks = arena_alloc(a, (n + 1) * sizeof(*toks));
    char *lit = arena_alloc(a, n + 1);
    out->text = arena_strndup(a, s, n);
    if (toks == NULL || lit == NULL || out->text == NULL)
        return nomem(c->err);
    size_t nt = 0, nl = 0, from = 0;
#define FLUSH()                                                                                    \
    do {                                                                                           \
        if (nl > from)                                                                             \
            toks[nt++] = (struct tok){.kind = TOK_LIT, .text = lit + from, .len = nl - from};      \
        from = nl;                                                                                 \
    } while (0)
    for (size_t i = 0; i < n;) {
        const char *close = NULL;
        if (s[i] == '*' || s[i] == '?') {
            FLUSH();
            toks[nt++] = (struct tok){.kind = s[i] == '*' ? TOK_STAR : TOK_QMARK};
            i++;
            continue;
        }
        if (c->p->variables && s[i] == '$' && i + 1 < n && s[i + 1] == '{')
            close = memchr(s + i + 2, '}', n - i - 2);
        if (close == NULL) {
            lit[nl++] = s[i++];
            continue;
        }
        const char *inner = s + i + 2;
        size_t inner_len = (size_t)(close - inner), whole = inner_len + 3;
        struct var v;
        if (inner_len == 1 && strchr("*?$", inner[0]) != NULL) {
            lit[nl++] = inner[0];
        } else if (var_parse(inner, inner_len, &v)) {
            FLUSH();
            struct var *pv = arena_alloc(a, sizeof(*pv));
            const char *text = arena_strndup(a, s + i, whole);
            if (pv == NULL || text == NULL)
                return nomem(c->err);
            *pv = v;
            pv->name = text + 2;
            pv->name_len = inner_len;
            if (pv->kind == VAR_THING_ATTRIBUTE)
                pv->arg = pv->name + (v.arg - inner);
            toks[nt++] = (struct tok){
                .kind = TOK_VAR, .slot = out->n_vars++, .text = text, .len = whole, .var = pv};
            note_var(c, pv);
        } else {
            memcpy(lit + nl, s + i, whole);
            nl += whole;
        }
        i += whole;
    }
    FLUSH();
#undef FLUSH
    out->toks = toks;
    out->n_toks = nt;
    return IOT_OK;
}

static bool pattern_constant(const struct pattern *p)
{
    return p->n_vars == 0;
}

/* The text of a JSON string, number or boolean condition value (IAM accepts all three). */
static bool scalar_text(const cJSON *item, char buf[40], const char **out)
{
    if (cJSON_IsString(item)) {
        *out = item->valuestring;
    } else if (cJSON_IsBool(item)) {
        *out = cJSON_IsTrue(item) ? "true" : "false";
    } else if (cJSON_IsNumber(item)) {
        double d = item->valuedouble;
        if (d > -1e15 && d < 1e15 && d == (double)(long long)d)
            snprintf(buf, 40, "%lld", (long long)d);
        else
            snprintf(buf, 40, "%.17g", d);
        *out = buf;
    } else {
        return false;
    }
    return true;
}

static bool has_duplicates(const cJSON *obj, const char **which)
{
    for (const cJSON *a = obj->child; a != NULL; a = a->next) {
        for (const cJSON *b = obj->child; b != a; b = b->next) {
            if (strcmp(a->string, b->string) == 0) {
                *which = a->string;
                return true;
            }
        }
    }
    return false;
}

/* Action names per IAM: "*" or "service:name", the name made of letters, digits and wildcards. */
static bool action_valid(const char *s)
{
    if (strcmp(s, "*") == 0)
        return true;
    const char *colon = strchr(s, ':');
    if (colon == NULL || colon == s || colon[1] == '\0')
        return false;
    for (const char *q = s; q < colon; q++)
        if (!strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-", *q))
            return false;
    for (const char *q = colon + 1; *q; q++)
        if (!strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789*?-_", *q))
            return false;
    return true;
}

/* A string, or a non-empty array of strings: calls EACH on every one. */
static enum iot_err string_list(struct compiler *c, const cJSON *item, const char *field,
                                enum iot_err (*each)(struct compiler *, const char *, void *),
                                void *arg)
{
    if (cJSON_IsString(item))
        return each(c, item->valuestring, arg);
    if (!cJSON_IsArray(item) || cJSON_GetArraySize(item) == 0)
        return malformed(c, "%s.%s must be a string or a non-empty array of strings", c->where,
                         field);
    for (const cJSON *e = item->child; e != NULL; e = e->next) {
        if (!cJSON_IsString(e))
            return malformed(c, "%s.%s must contain only strings", c->where, field);
        enum iot_err rc = each(c, e->valuestring, arg);
        if (rc != IOT_OK)
            return rc;
    }
    return IOT_OK;
}

static enum iot_err add_action(struct compiler *c, const char *s, void *arg)
{
    uint32_t *mask = arg;
    if (!action_valid(s))
        return malformed(c, "%s: action \"%s\" is not of the form service:action", c->where, s);
    /* Case-insensitive, as IAM matches action names (§2.1). Unknown actions grant nothing. */
    for (unsigned a = 0; a < POLICY_ACTION_COUNT; a++)
        if (glob_ci(s, action_names[a]))
            *mask |= 1u << a;
    return IOT_OK;
}

struct resource_list {
    struct pattern *pats;
    size_t n;
};

static enum iot_err add_resource(struct compiler *c, const char *s, void *arg)
{
    struct resource_list *rl = arg;
    if (s[0] != '*' && strncmp(s, "arn:", 4) != 0)
        return malformed(c, "%s: resource \"%s\" must be \"*\" or an ARN", c->where, s);
    return pattern_compile(c, s, strlen(s), &rl->pats[rl->n++]);
}

static enum iot_err compile_resources(struct compiler *c, struct stmt *st, const cJSON *item,
                                      const char *field)
{
    int count = cJSON_IsArray(item) ? cJSON_GetArraySize(item) : 1;
    struct resource_list rl = {arena_alloc(&c->p->arena, (size_t)count * sizeof(struct pattern)),
                               0};
    if (rl.pats == NULL)
        return nomem(c->err);
    enum iot_err rc = string_list(c, item, field, add_resource, &rl);
    st->resources = rl.pats;
    st->n_resources = rl.n;
    return rc;
}

/* "ForAnyValue:StringLikeIfExists" -> StringLike, SET_ANY, if_exists. */
static bool op_parse(const char *s, struct cond *cd)
{
    size_t n = strlen(s);
    if (strncmp(s, "ForAnyValue:", 12) == 0) {
        cd->set = SET_ANY;
        s += 12, n -= 12;
    } else if (strncmp(s, "ForAllValues:", 13) == 0) {
        cd->set = SET_ALL;
        s += 13, n -= 13;
    }
    if (n > 8 && strcmp(s + n - 8, "IfExists") == 0) {
        cd->if_exists = true;
        n -= 8;
    }
    for (size_t i = 0; i < sizeof(op_defs) / sizeof(op_defs[0]); i++) {
        if (strlen(op_defs[i].name) == n && strncmp(op_defs[i].name, s, n) == 0) {
            cd->op = &op_defs[i];
            return op_defs[i].cmp != CMP_NULL || (cd->set == SET_NONE && !cd->if_exists);
        }
    }
    return false;
}

struct eval;
static struct slice var_text(struct eval *ev, const struct tok *t);

/* Writes what P stands for into BUF (NUL-terminated): literal text, wildcards as themselves,
 * variables substituted from EV (as their ${...} text when EV is NULL or they do not resolve).
 * false when it does not fit. */
static bool pattern_render(const struct pattern *p, struct eval *ev, char *buf, size_t size)
{
    size_t len = 0;
    for (size_t i = 0; i < p->n_toks; i++) {
        const struct tok *t = &p->toks[i];
        struct slice s = {t->text, t->len};
        if (t->kind == TOK_STAR || t->kind == TOK_QMARK)
            s = (struct slice){t->kind == TOK_STAR ? "*" : "?", 1};
        else if (t->kind == TOK_VAR && ev != NULL)
            s = var_text(ev, t);
        if (len + s.n >= size)
            return false;
        memcpy(buf + len, s.p, s.n);
        len += s.n;
    }
    buf[len] = '\0';
    return true;
}

/* Parses a condition value for the operators that compare numbers, dates, addresses, booleans. */
static bool cvalue_parse(const struct op_def *op, const char *s, struct cvalue *v)
{
    size_t n = strlen(s);
    switch (op->cmp) {
    case CMP_NUMERIC:
        return parse_number(s, n, &v->num);
    case CMP_DATE:
        return parse_date(s, n, &v->num);
    case CMP_IP:
        return parse_ip(s, n, true, &v->ip);
    case CMP_BOOL:
    case CMP_NULL:
        return parse_bool(s, n, &v->b);
    default:
        return true;
    }
}

static enum iot_err compile_cvalue(struct compiler *c, const struct cond *cd, const cJSON *item,
                                   const char *opname, struct cvalue *v)
{
    char num[40];
    const char *s = NULL;
    if (!scalar_text(item, num, &s))
        return malformed(c, "%s: values of condition %s must be strings, numbers or booleans",
                         c->where, opname);
    enum iot_err rc = pattern_compile(c, s, strlen(s), &v->pat);
    if (rc != IOT_OK)
        return rc;
    v->constant = pattern_constant(&v->pat);
    if (cd->op->cmp == CMP_NULL && !v->constant)
        return malformed(c, "%s: Null takes \"true\" or \"false\", not \"%s\"", c->where, s);
    if (!v->constant)
        return IOT_OK; /* parsed after substitution, at evaluation */
    char text[RENDER_MAX];
    if (!pattern_render(&v->pat, NULL, text, sizeof(text)) || !cvalue_parse(cd->op, text, v))
        return malformed(c, "%s: \"%s\" is not a valid value for condition operator %s", c->where,
                         s, opname);
    return IOT_OK;
}

static enum iot_err compile_condition_key(struct compiler *c, const cJSON *item, const char *opname,
                                          struct cond *cd)
{
    struct arena *a = &c->p->arena;
    size_t klen = strlen(item->string);
    if (klen == 0)
        return malformed(c, "%s: condition %s has an empty key", c->where, opname);
    const char *kname = arena_strndup(a, item->string, klen);
    if (kname == NULL)
        return nomem(c->err);
    var_parse(kname, klen, &cd->key); /* an unknown key is valid and never present */
    cd->key.name = kname;
    cd->key.name_len = klen;
    note_var(c, &cd->key);
    size_t count = cJSON_IsArray(item) ? (size_t)cJSON_GetArraySize(item) : 1;
    cd->values = arena_alloc(a, (count ? count : 1) * sizeof(*cd->values));
    if (cd->values == NULL)
        return nomem(c->err);
    const cJSON *first = cJSON_IsArray(item) ? item->child : item;
    for (const cJSON *e = first; e != NULL; e = cJSON_IsArray(item) ? e->next : NULL) {
        enum iot_err rc = compile_cvalue(c, cd, e, opname, &cd->values[cd->n_values++]);
        if (rc != IOT_OK)
            return rc;
    }
    return IOT_OK;
}

static enum iot_err compile_conditions(struct compiler *c, struct stmt *st, const cJSON *cond)
{
    const char *dup = NULL;
    if (!cJSON_IsObject(cond))
        return malformed(c, "%s.Condition must be an object", c->where);
    if (has_duplicates(cond, &dup))
        return malformed(c, "%s.Condition has operator %s twice", c->where, dup);
    size_t total = 0;
    for (const cJSON *op = cond->child; op != NULL; op = op->next)
        total += cJSON_IsObject(op) ? (size_t)cJSON_GetArraySize(op) : 0;
    st->conds = arena_alloc(&c->p->arena, (total ? total : 1) * sizeof(*st->conds));
    if (st->conds == NULL)
        return nomem(c->err);
    for (const cJSON *op = cond->child; op != NULL; op = op->next) {
        struct cond proto = {0};
        if (!op_parse(op->string, &proto))
            return malformed(c, "%s: unknown condition operator %s", c->where, op->string);
        if (!cJSON_IsObject(op))
            return malformed(c, "%s: condition %s must map keys to values", c->where, op->string);
        if (has_duplicates(op, &dup))
            return malformed(c, "%s: condition %s has key %s twice", c->where, op->string, dup);
        for (const cJSON *key = op->child; key != NULL; key = key->next) {
            struct cond *cd = &st->conds[st->n_conds++];
            *cd = proto;
            enum iot_err rc = compile_condition_key(c, key, op->string, cd);
            if (rc != IOT_OK)
                return rc;
        }
    }
    return IOT_OK;
}

static const char *const statement_fields[] = {"Sid",      "Effect",      "Action",    "NotAction",
                                               "Resource", "NotResource", "Condition", NULL};

static enum iot_err check_fields(struct compiler *c, const cJSON *obj, const char *const *allowed,
                                 const char *where)
{
    const char *dup = NULL;
    if (has_duplicates(obj, &dup))
        return malformed(c, "%s has field %s twice", where, dup);
    for (const cJSON *f = obj->child; f != NULL; f = f->next) {
        bool known = false;
        for (const char *const *a = allowed; *a && !known; a++)
            known = strcmp(*a, f->string) == 0;
        if (known)
            continue;
        if (strcmp(f->string, "Principal") == 0 || strcmp(f->string, "NotPrincipal") == 0)
            return malformed(c, "%s: %s is not allowed in an AWS IoT policy", where, f->string);
        return malformed(c, "%s has unknown field %s", where, f->string);
    }
    return IOT_OK;
}

/* Exactly one of NAME and NOT_NAME; returns it and whether it was the Not form. */
static enum iot_err one_of(struct compiler *c, const cJSON *obj, const char *name,
                           const char *not_name, const cJSON **item, bool *negated)
{
    const cJSON *yes = cJSON_GetObjectItemCaseSensitive(obj, name);
    const cJSON *no = cJSON_GetObjectItemCaseSensitive(obj, not_name);
    if (yes && no)
        return malformed(c, "%s has both %s and %s", c->where, name, not_name);
    if (!yes && !no)
        return malformed(c, "%s needs %s or %s", c->where, name, not_name);
    *item = yes ? yes : no;
    *negated = no != NULL;
    return IOT_OK;
}

static enum iot_err compile_statement(struct compiler *c, const cJSON *obj, struct stmt *st)
{
    if (!cJSON_IsObject(obj))
        return malformed(c, "%s must be an object", c->where);
    enum iot_err rc = check_fields(c, obj, statement_fields, c->where);
    if (rc != IOT_OK)
        return rc;
    const cJSON *effect = cJSON_GetObjectItemCaseSensitive(obj, "Effect");
    const cJSON *sid = cJSON_GetObjectItemCaseSensitive(obj, "Sid");
    const cJSON *cond = cJSON_GetObjectItemCaseSensitive(obj, "Condition");
    if (effect == NULL)
        return malformed(c, "%s has no Effect", c->where);
    if (!cJSON_IsString(effect) ||
        (strcmp(effect->valuestring, "Allow") != 0 && strcmp(effect->valuestring, "Deny") != 0))
        return malformed(c, "%s.Effect must be \"Allow\" or \"Deny\"", c->where);
    st->deny = strcmp(effect->valuestring, "Deny") == 0;
    if (sid != NULL && !cJSON_IsString(sid))
        return malformed(c, "%s.Sid must be a string", c->where);
    if (sid != NULL &&
        (st->sid = arena_strndup(&c->p->arena, sid->valuestring, strlen(sid->valuestring))) == NULL)
        return nomem(c->err);

    const cJSON *item = NULL;
    bool negated = false;
    if ((rc = one_of(c, obj, "Action", "NotAction", &item, &negated)) != IOT_OK ||
        (rc = string_list(c, item, negated ? "NotAction" : "Action", add_action, &st->actions)) !=
            IOT_OK)
        return rc;
    if (negated)
        st->actions = ALL_ACTIONS & ~st->actions;
    if ((rc = one_of(c, obj, "Resource", "NotResource", &item, &st->not_resource)) != IOT_OK ||
        (rc = compile_resources(c, st, item, st->not_resource ? "NotResource" : "Resource")) !=
            IOT_OK)
        return rc;
    if (cond != NULL && (rc = compile_conditions(c, st, cond)) != IOT_OK)
        return rc;

    st->vars = arena_alloc(&c->p->arena, (c->n_vars ? c->n_vars : 1) * sizeof(*st->vars));
    if (st->vars == NULL)
        return nomem(c->err);
    memcpy(st->vars, c->vars, c->n_vars * sizeof(*st->vars));
    st->n_vars = c->n_vars;
    return IOT_OK;
}

static enum iot_err compile_statements(struct compiler *c, const cJSON *list)
{
    struct policy *p = c->p;
    bool single = cJSON_IsObject(list);
    if (!single && (!cJSON_IsArray(list) || cJSON_GetArraySize(list) == 0))
        return malformed(c, "Statement must be an object or a non-empty array of objects");
    p->n_stmts = single ? 1 : (size_t)cJSON_GetArraySize(list);
    p->stmts = arena_alloc(&p->arena, p->n_stmts * sizeof(*p->stmts));
    if (p->stmts == NULL)
        return nomem(c->err);
    const cJSON *obj = single ? list : list->child;
    for (size_t i = 0; i < p->n_stmts; i++, obj = obj->next) {
        if (single)
            snprintf(c->where, sizeof(c->where), "Statement");
        else
            snprintf(c->where, sizeof(c->where), "Statement[%zu]", i);
        c->n_vars = 0;
        enum iot_err rc = compile_statement(c, obj, &p->stmts[i]);
        if (rc != IOT_OK)
            return rc;
        p->actions |= p->stmts[i].actions;
        for (size_t j = 0; j < i; j++) {
            const char *a = p->stmts[j].sid, *b = p->stmts[i].sid;
            if (a && b && *a && strcmp(a, b) == 0)
                return malformed(c, "Statement ids must be unique: Sid \"%s\" appears twice", a);
        }
    }
    return IOT_OK;
}

static const char *const document_fields[] = {"Version", "Id", "Statement", NULL};

static enum iot_err compile_document(struct compiler *c, const cJSON *root)
{
    if (!cJSON_IsObject(root))
        return malformed(c, "The policy document must be a JSON object");
    enum iot_err rc = check_fields(c, root, document_fields, "The policy document");
    if (rc != IOT_OK)
        return rc;
    const cJSON *version = cJSON_GetObjectItemCaseSensitive(root, "Version");
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(root, "Id");
    const cJSON *stmts = cJSON_GetObjectItemCaseSensitive(root, "Statement");
    if (version != NULL &&
        (!cJSON_IsString(version) || (strcmp(version->valuestring, POLICY_VERSION_CURRENT) != 0 &&
                                      strcmp(version->valuestring, POLICY_VERSION_OLD) != 0)))
        return malformed(c, "Version must be \"%s\" (or \"%s\")", POLICY_VERSION_CURRENT,
                         POLICY_VERSION_OLD);
    if (id != NULL && !cJSON_IsString(id))
        return malformed(c, "Id must be a string");
    if (stmts == NULL)
        return malformed(c, "The policy document has no Statement");
    /* IAM: without a Version the document is 2008-10-17, where ${...} is plain text. */
    c->p->variables = version != NULL && strcmp(version->valuestring, POLICY_VERSION_CURRENT) == 0;
    return compile_statements(c, stmts);
}

bool policy_name_valid(const char *name)
{
    if (name == NULL)
        return false;
    size_t n = strlen(name);
    return n >= 1 && n <= POLICY_NAME_MAX &&
           strspn(name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_+=,.@-") ==
               n;
}

/* Characters other than JSON whitespace, counting a UTF-8 sequence once. */
static size_t count_chars(const char *text, size_t len)
{
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)text[i];
        if (ch != ' ' && ch != '\t' && ch != '\n' && ch != '\r' && (ch & 0xc0) != 0x80)
            n++;
    }
    return n;
}

enum iot_err policy_compile(const char *name, const char *text, size_t len, struct policy **out,
                            struct iot_error *err)
{
    *out = NULL;
    if (!policy_name_valid(name))
        return iot_error_set(err, IOT_ERR_INVALID_REQUEST,
                             "Invalid policy name: 1-%d characters of [\\w+=,.@-]",
                             POLICY_NAME_MAX);
    if (text == NULL || len == 0)
        return iot_error_set(err, IOT_ERR_INVALID_REQUEST, "The policy document is empty");
    if (len > POLICY_DOC_MAX_BYTES)
        return iot_error_set(err, IOT_ERR_INVALID_REQUEST,
                             "The policy document is longer than %d bytes", POLICY_DOC_MAX_BYTES);
    size_t chars = count_chars(text, len);
    if (chars > POLICY_DOC_MAX_CHARS)
        return iot_error_set(err, IOT_ERR_INVALID_REQUEST,
                             "The policy document has %zu characters excluding whitespace; the "
                             "maximum is %d",
                             chars, POLICY_DOC_MAX_CHARS);
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(text, len, &end, 0);
    if (root == NULL || end == NULL || count_chars(end, len - (size_t)(end - text)) != 0) {
        cJSON_Delete(root);
        return iot_error_set(err, IOT_ERR_INVALID_REQUEST, "The policy document is not valid JSON");
    }
    struct policy *p = calloc(1, sizeof(*p));
    if (p == NULL) {
        cJSON_Delete(root);
        return nomem(err);
    }
    enum iot_err rc = IOT_OK;
    if ((p->name = arena_strndup(&p->arena, name, strlen(name))) == NULL)
        rc = nomem(err);
    if (rc == IOT_OK) {
        struct compiler c = {.p = p, .err = err};
        rc = compile_document(&c, root);
    }
    cJSON_Delete(root);
    if (rc != IOT_OK) {
        policy_free(p);
        return rc;
    }
    *out = p;
    return IOT_OK;
}

/* ---- the connection ------------------------------------------------------------------------- */

static void cert_free(struct policy_cert *c)
{
    if (c == NULL)
        return;
    for (int f = 0; f < CERT_FIELD_COUNT; f++)
        for (unsigned i = 0; i < c->count[f]; i++)
            free(c->values[f][i]);
    free(c);
}

void policy_context_init(struct policy_context *ctx)
{
    memset(ctx, 0, sizeof(*ctx));
}

void policy_context_cleanup(struct policy_context *ctx)
{
    if (ctx == NULL)
        return;
    cert_free(ctx->cert);
    memset(ctx, 0, sizeof(*ctx));
}

/* §2.4: , " \ + = < > ; are written with a backslash in front in a policy, so the value a policy
 * is compared with carries the same backslashes. */
static char *escape_value(const char *s, size_t n)
{
    size_t extra = 0;
    for (size_t i = 0; i < n; i++)
        extra += strchr(",\"\\+=<>;", s[i]) != NULL && s[i] != '\0';
    char *d = malloc(n + extra + 1), *q = d;
    for (size_t i = 0; d != NULL && i < n; i++) {
        if (s[i] != '\0' && strchr(",\"\\+=<>;", s[i]) != NULL)
            *q++ = '\\';
        *q++ = s[i];
    }
    if (d != NULL)
        *q = '\0';
    return d;
}

/* Appends a value; past POLICY_CERT_VALUES_MAX it is ignored, as AWS ignores it. Values holding a
 * NUL cannot be compared and are skipped. */
static enum iot_err cert_push(struct policy_cert *c, int f, const char *s, size_t n, bool escape)
{
    if (c->count[f] >= POLICY_CERT_VALUES_MAX || memchr(s, '\0', n) != NULL)
        return IOT_OK;
    char *v = escape ? escape_value(s, n) : strndup(s, n);
    if (v == NULL)
        return IOT_ERR_NOMEM;
    c->values[f][c->count[f]++] = v;
    return IOT_OK;
}

static struct policy_cert *context_cert(struct policy_context *ctx)
{
    if (ctx->cert == NULL)
        ctx->cert = calloc(1, sizeof(*ctx->cert));
    return ctx->cert;
}

enum iot_err policy_context_cert_add(struct policy_context *ctx, const char *field,
                                     const char *value, struct iot_error *err)
{
    int f = field ? cert_field_find(field, strlen(field)) : -1;
    if (f < 0 || value == NULL)
        return iot_error_set(err, IOT_ERR_INVALID_REQUEST, "Unknown certificate field %s",
                             field ? field : "(null)");
    struct policy_cert *c = context_cert(ctx);
    bool escape = f != CERT_SERIAL && !cert_field_is_dirname(f);
    if (c == NULL || cert_push(c, f, value, strlen(value), escape) != IOT_OK)
        return nomem(err);
    return IOT_OK;
}

const char *policy_context_cert_get(const struct policy_context *ctx, const char *field,
                                    size_t index)
{
    int f = field ? cert_field_find(field, strlen(field)) : -1;
    if (ctx == NULL || ctx->cert == NULL || f < 0 || index >= ctx->cert->count[f])
        return NULL;
    return ctx->cert->values[f][index];
}

bool policy_context_cert_validity(const struct policy_context *ctx, time_t *not_before,
                                  time_t *not_after)
{
    if (ctx == NULL || ctx->cert == NULL || !ctx->cert->has_validity)
        return false;
    *not_before = ctx->cert->not_before;
    *not_after = ctx->cert->not_after;
    return true;
}

/* ---- reading an X509 ---------------------------------------------------------------------- */

struct sbuf {
    char *p;
    size_t size, len;
    bool full;
};

__attribute__((format(printf, 2, 3))) static void sb_add(struct sbuf *b, const char *fmt, ...)
{
    if (b->full || b->size == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(b->p + b->len, b->size - b->len, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= b->size - b->len) {
        b->full = true;
        b->len = b->size - 1;
    } else {
        b->len += (size_t)n;
    }
}

/* The UTF-8 text of an entry's value; caller frees with OPENSSL_free(). -1 on failure. */
static int entry_utf8(const X509_NAME_ENTRY *e, unsigned char **out)
{
    return ASN1_STRING_to_UTF8(out, X509_NAME_ENTRY_get_data(e));
}

static enum iot_err read_dn(struct policy_cert *c, const X509_NAME *name, int base)
{
    for (int i = 0; name != NULL && i < X509_NAME_entry_count(name); i++) {
        const X509_NAME_ENTRY *e = X509_NAME_get_entry(name, i);
        int nid = OBJ_obj2nid(X509_NAME_ENTRY_get_object(e));
        int f = base;
        while (f < base + CERT_DN_ATTRS && cert_fields[f].nid != nid)
            f++;
        if (f == base + CERT_DN_ATTRS)
            continue;
        unsigned char *utf8 = NULL;
        int len = entry_utf8(e, &utf8);
        enum iot_err rc = len < 0 ? IOT_OK : cert_push(c, f, (char *)utf8, (size_t)len, true);
        OPENSSL_free(utf8);
        if (rc != IOT_OK)
            return rc;
    }
    return IOT_OK;
}

/* A directoryName the way AWS shows it: "cn=Device,ou=Unit,o=Org,c=US" (RFC 2253 order, lower
 * case attribute names, special characters in values escaped). */
static enum iot_err render_dirname(const X509_NAME *name, char **out)
{
    char buf[POLICY_VAR_VALUE_MAX + 1];
    struct sbuf b = {buf, sizeof(buf), 0, false};
    buf[0] = '\0';
    int prev_set = -1;
    for (int i = X509_NAME_entry_count(name) - 1; i >= 0; i--) {
        const X509_NAME_ENTRY *e = X509_NAME_get_entry(name, i);
        char type[80];
        const char *sn = OBJ_nid2sn(OBJ_obj2nid(X509_NAME_ENTRY_get_object(e)));
        if (sn == NULL || OBJ_obj2nid(X509_NAME_ENTRY_get_object(e)) == NID_undef)
            OBJ_obj2txt(type, sizeof(type), X509_NAME_ENTRY_get_object(e), 1);
        else
            snprintf(type, sizeof(type), "%s", sn);
        for (char *t = type; *t; t++)
            *t = lower(*t);
        unsigned char *utf8 = NULL;
        int len = entry_utf8(e, &utf8);
        char *value = len < 0 ? NULL : escape_value((char *)utf8, (size_t)len);
        OPENSSL_free(utf8);
        if (value == NULL)
            return IOT_ERR_INTERNAL;
        int set = X509_NAME_ENTRY_set(e);
        sb_add(&b, "%s%s=%s", prev_set < 0 ? "" : (set == prev_set ? "+" : ","), type, value);
        free(value);
        prev_set = set;
    }
    *out = strdup(buf);
    return *out ? IOT_OK : IOT_ERR_NOMEM;
}

static enum iot_err push_general_name(struct policy_cert *c, const GENERAL_NAME *g, int base)
{
    int type = 0;
    const void *value = GENERAL_NAME_get0_value(g, &type);
    int f = base;
    while (f < base + CERT_ALT_NAMES && cert_fields[f].gen != type)
        f++;
    if (f == base + CERT_ALT_NAMES || value == NULL)
        return IOT_OK; /* otherName, x400Address, ediPartyName, registeredID */
    if (type == GEN_DIRNAME) {
        char *dn = NULL;
        enum iot_err rc = render_dirname(value, &dn);
        if (rc == IOT_OK)
            rc = cert_push(c, f, dn, strlen(dn), false);
        free(dn);
        return rc;
    }
    const ASN1_STRING *s = value;
    const unsigned char *data = ASN1_STRING_get0_data(s);
    int len = ASN1_STRING_length(s);
    if (type == GEN_IPADD) {
        char text[INET6_ADDRSTRLEN];
        int family = len == 4 ? AF_INET : len == 16 ? AF_INET6 : 0;
        if (family == 0 || inet_ntop(family, data, text, sizeof(text)) == NULL)
            return IOT_OK;
        return cert_push(c, f, text, strlen(text), false);
    }
    return cert_push(c, f, (const char *)data, (size_t)len, true);
}

static enum iot_err read_alt_names(struct policy_cert *c, X509 *x, int nid, int base)
{
    GENERAL_NAMES *names = X509_get_ext_d2i(x, nid, NULL, NULL);
    enum iot_err rc = IOT_OK;
    for (int i = 0; names != NULL && rc == IOT_OK && i < sk_GENERAL_NAME_num(names); i++)
        rc = push_general_name(c, sk_GENERAL_NAME_value(names, i), base);
    GENERAL_NAMES_free(names);
    return rc;
}

/* iot:Certificate.SerialNumber is the serial in decimal (DG use-policy-variables). */
static enum iot_err read_serial(struct policy_cert *c, X509 *x)
{
    BIGNUM *bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(x), NULL);
    char *dec = bn ? BN_bn2dec(bn) : NULL;
    enum iot_err rc = dec ? cert_push(c, CERT_SERIAL, dec, strlen(dec), false) : IOT_ERR_INTERNAL;
    OPENSSL_free(dec);
    BN_free(bn);
    return rc;
}

static void read_validity(struct policy_cert *c, X509 *x)
{
    struct tm nb = {0}, na = {0};
    if (ASN1_TIME_to_tm(X509_get0_notBefore(x), &nb) == 1 &&
        ASN1_TIME_to_tm(X509_get0_notAfter(x), &na) == 1) {
        c->not_before = timegm(&nb);
        c->not_after = timegm(&na);
        c->has_validity = true;
    }
}

enum iot_err policy_context_from_cert(struct policy_context *ctx, X509 *x, struct iot_error *err)
{
    if (x == NULL)
        return iot_error_set(err, IOT_ERR_INVALID_REQUEST, "No certificate");
    struct policy_cert *c = calloc(1, sizeof(*c));
    enum iot_err rc = c ? IOT_OK : IOT_ERR_NOMEM;
    if (rc == IOT_OK)
        rc = read_dn(c, X509_get_subject_name(x), CERT_SUBJECT);
    if (rc == IOT_OK)
        rc = read_dn(c, X509_get_issuer_name(x), CERT_ISSUER);
    if (rc == IOT_OK)
        rc = read_alt_names(c, x, NID_subject_alt_name, CERT_SUBJECT_ALT);
    if (rc == IOT_OK)
        rc = read_alt_names(c, x, NID_issuer_alt_name, CERT_ISSUER_ALT);
    if (rc == IOT_OK)
        rc = read_serial(c, x);
    if (rc == IOT_OK)
        rc = ca_cert_id(x, c->id);
    if (rc != IOT_OK) {
        cert_free(c);
        ERR_clear_error();
        return rc == IOT_ERR_NOMEM ? nomem(err)
                                   : iot_error_set(err, rc, "Cannot read the certificate");
    }
    read_validity(c, x);
    cert_free(ctx->cert);
    ctx->cert = c;
    return IOT_OK;
}

/* ---- evaluation: values of variables and keys ----------------------------------------------- */

struct eval {
    const struct policy_context *ctx;
    enum policy_action action;
    bool now_ready;
    char now_iso[32];
    char now_epoch[24];
    int will_state; /* 0 not built, 1 built, -1 does not fit */
    char will_arn[POLICY_ARN_MAX];
};

#define KEY_VALUES_MAX (CERT_FIELD_COUNT + 2)

struct kvals {
    size_t n;
    const char *v[KEY_VALUES_MAX];
};

static void push(struct kvals *kv, const char *s)
{
    if (s != NULL && kv->n < KEY_VALUES_MAX)
        kv->v[kv->n++] = s;
}

static void eval_now(struct eval *ev)
{
    if (ev->now_ready)
        return;
    time_t now = ev->ctx->now ? ev->ctx->now : time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(ev->now_iso, sizeof(ev->now_iso), "%Y-%m-%dT%H:%M:%SZ", &tm);
    snprintf(ev->now_epoch, sizeof(ev->now_epoch), "%lld", (long long)now);
    ev->now_ready = true;
}

static const char *will_arn(struct eval *ev)
{
    const struct policy_context *ctx = ev->ctx;
    if (ev->will_state == 0) {
        const char *t = ctx->last_will_topic;
        size_t n =
            policy_arn_build(ev->will_arn, sizeof(ev->will_arn), ctx->region ? ctx->region : "",
                             ctx->account ? ctx->account : "", POLICY_RESOURCE_TOPIC, t, strlen(t));
        ev->will_state = n < sizeof(ev->will_arn) ? 1 : -1;
    }
    return ev->will_state == 1 ? ev->will_arn : NULL;
}

static const char *thing_attribute(const struct policy_context *ctx, const struct var *v)
{
    for (size_t i = 0; i < ctx->n_thing_attributes; i++) {
        const struct policy_attr *a = &ctx->thing_attributes[i];
        if (a->name && strlen(a->name) == v->arg_len && memcmp(a->name, v->arg, v->arg_len) == 0)
            return a->value;
    }
    return NULL;
}

static void cert_values(const struct policy_context *ctx, const struct var *v, struct kvals *kv)
{
    const struct policy_cert *c = ctx->cert;
    if (c == NULL)
        return;
    if (v->kind == VAR_CERT_AVAILABLE_KEYS) {
        for (int f = 0; f < CERT_FIELD_COUNT; f++)
            if (c->count[f] > 0)
                push(kv, cert_fields[f].key);
    } else if (v->list) {
        for (unsigned i = 0; i < c->count[v->field]; i++)
            push(kv, c->values[v->field][i]);
    } else if (v->index < c->count[v->field]) {
        push(kv, c->values[v->field][v->index]);
    }
}

/* The request's values of key V: none when absent (§2.5), several for the set-valued keys. */
static void key_values(struct eval *ev, const struct var *v, struct kvals *kv)
{
    const struct policy_context *ctx = ev->ctx;
    bool thing = ctx->thing_associated, connect = ev->action == POLICY_ACTION_CONNECT;
    kv->n = 0;
    switch (v->kind) {
    case VAR_UNKNOWN:
        break;
    case VAR_CLIENT_ID:
        push(kv, ctx->client_id);
        break;
    case VAR_SOURCE_IP:
        push(kv, ctx->source_ip);
        break;
    case VAR_DOMAIN_NAME:
        push(kv, ctx->domain_name);
        break;
    case VAR_THING_NAME:
        push(kv, thing ? ctx->thing_name : NULL);
        break;
    case VAR_THING_TYPE_NAME:
        push(kv, thing ? ctx->thing_type_name : NULL);
        break;
    case VAR_THING_ATTRIBUTE:
        push(kv, thing ? thing_attribute(ctx, v) : NULL);
        break;
    case VAR_IS_ATTACHED:
        push(kv, ctx->is_attached == POLICY_BOOL_TRUE    ? "true"
                 : ctx->is_attached == POLICY_BOOL_FALSE ? "false"
                                                         : NULL);
        break;
    case VAR_CERTIFICATE_ID:
        push(kv, ctx->certificate_id             ? ctx->certificate_id
                 : ctx->cert && ctx->cert->id[0] ? ctx->cert->id
                                                 : NULL);
        break;
    case VAR_CERT_FIELD:
    case VAR_CERT_AVAILABLE_KEYS:
        cert_values(ctx, v, kv);
        break;
    case VAR_CONNECT_ATTRIBUTES:
        if (connect && (ctx->connect_attributes & POLICY_CONNECT_PERSISTENT))
            push(kv, "PersistentConnect");
        if (connect && (ctx->connect_attributes & POLICY_CONNECT_LAST_WILL))
            push(kv, "LastWill");
        break;
    case VAR_LAST_WILL_TOPIC:
        push(kv, connect && ctx->last_will_topic ? will_arn(ev) : NULL);
        break;
    case VAR_CURRENT_TIME:
        eval_now(ev);
        push(kv, ev->now_iso);
        break;
    case VAR_EPOCH_TIME:
        eval_now(ev);
        push(kv, ev->now_epoch);
        break;
    }
}

/* The value ${V} is replaced by, or false when it stays as written (§2.4): absent, set-valued,
 * or a certificate value longer than 1024 characters or holding * $ + ? #. */
static bool var_resolve(struct eval *ev, const struct var *v, struct slice *out)
{
    struct kvals kv;
    if (var_multi(v))
        return false;
    key_values(ev, v, &kv);
    if (kv.n == 0)
        return false;
    size_t n = strlen(kv.v[0]);
    if (v->kind == VAR_CERT_FIELD && (n > POLICY_VAR_VALUE_MAX || strpbrk(kv.v[0], "*$+?#")))
        return false;
    *out = (struct slice){kv.v[0], n};
    return true;
}

static struct slice var_text(struct eval *ev, const struct tok *t)
{
    struct slice s;
    return var_resolve(ev, t->var, &s) ? s : (struct slice){t->text, t->len};
}

/* ---- evaluation: glob over tokens ------------------------------------------------------------ */

#define M_WILD 0x1u /* `*` and `?` written in the policy are wildcards */
#define M_FOLD 0x2u /* ASCII case-insensitive */
#define M_ARN 0x4u  /* wildcards do not cross `:` in the first five ARN fields (IAM Arn*) */

enum { EL_END, EL_CHAR, EL_STAR, EL_QMARK };

struct matcher {
    const struct pattern *pat;
    struct eval *ev;
    unsigned flags;
    struct slice cache[PATTERN_CACHE];
};

struct pos {
    size_t tok, off;
};

static struct slice tok_slice(struct matcher *m, const struct tok *t)
{
    switch (t->kind) {
    case TOK_STAR:
        return (struct slice){"*", 1};
    case TOK_QMARK:
        return (struct slice){"?", 1};
    case TOK_VAR:
        return t->slot < PATTERN_CACHE ? m->cache[t->slot] : var_text(m->ev, t);
    case TOK_LIT:
        break;
    }
    return (struct slice){t->text, t->len};
}

/* The element at P (moving P over exhausted tokens); a substituted value is always characters. */
static int peek(struct matcher *m, struct pos *p, unsigned char *c)
{
    for (; p->tok < m->pat->n_toks; p->tok++, p->off = 0) {
        const struct tok *t = &m->pat->toks[p->tok];
        if ((m->flags & M_WILD) && (t->kind == TOK_STAR || t->kind == TOK_QMARK))
            return t->kind == TOK_STAR ? EL_STAR : EL_QMARK;
        struct slice s = tok_slice(m, t);
        if (p->off < s.n) {
            *c = (unsigned char)s.p[p->off];
            return EL_CHAR;
        }
    }
    return EL_END;
}

static void advance(struct pos *p, int el)
{
    if (el == EL_CHAR) {
        p->off++;
    } else {
        p->tok++;
        p->off = 0;
    }
}

static bool same_char(unsigned flags, unsigned char a, char b)
{
    return (flags & M_FOLD) ? lower((char)a) == lower(b) : (char)a == b;
}

/* Index in S from which a wildcard may consume `:` (after the 5th one); SIZE_MAX if S is not an
 * ARN at all. */
static size_t arn_tail(const char *s, size_t n)
{
    unsigned colons = 0;
    for (size_t i = 0; i < n; i++)
        if (s[i] == ':' && ++colons == 5)
            return i + 1;
    return SIZE_MAX;
}

/* Bytes of the UTF-8 character at S[I]: IAM's `?` matches one character, not one byte. A
 * malformed sequence counts byte by byte. */
static size_t char_len(const char *s, size_t i, size_t n)
{
    unsigned char c = (unsigned char)s[i];
    size_t len = c >= 0xf0 && c <= 0xf7   ? 4
                 : c >= 0xe0 && c <= 0xef ? 3
                 : c >= 0xc2 && c <= 0xdf ? 2
                                          : 1;
    if (len > n - i)
        return 1;
    for (size_t k = 1; k < len; k++)
        if (((unsigned char)s[i + k] & 0xc0) != 0x80)
            return 1;
    return len;
}

static bool glob_run(struct matcher *m, const char *s, size_t n, size_t free_from)
{
    struct pos p = {0, 0}, star = {0, 0};
    size_t i = 0, star_i = 0;
    bool have_star = false;
    for (;;) {
        unsigned char c = 0;
        int el = peek(m, &p, &c);
        if (el == EL_STAR) {
            advance(&p, el);
            have_star = true;
            star = p;
            star_i = i;
            continue;
        }
        if (i < n && el == EL_QMARK && (s[i] != ':' || i >= free_from)) {
            advance(&p, el);
            i += char_len(s, i, n);
            continue;
        }
        if (i < n && el == EL_CHAR && same_char(m->flags, c, s[i])) {
            advance(&p, el);
            i++;
            continue;
        }
        if (el == EL_END && i == n)
            return true;
        if (!have_star || star_i >= n || (star_i < free_from && s[star_i] == ':'))
            return false;
        star_i += char_len(s, star_i, n);
        i = star_i;
        p = star;
    }
}

static bool pattern_match(const struct pattern *pat, struct eval *ev, const char *s, size_t n,
                          unsigned flags)
{
    struct matcher m = {.pat = pat, .ev = ev, .flags = flags};
    for (size_t i = 0; i < pat->n_toks; i++) {
        const struct tok *t = &pat->toks[i];
        if (t->kind == TOK_VAR && t->slot < PATTERN_CACHE)
            m.cache[t->slot] = var_text(ev, t);
    }
    size_t free_from = 0;
    if (flags & M_ARN) {
        free_from = arn_tail(s, n);
        if (free_from == SIZE_MAX)
            return false;
    }
    return glob_run(&m, s, n, free_from);
}

/* ---- evaluation: conditions ------------------------------------------------------------------ */

static bool ordered(enum order o, double request, double policy)
{
    switch (o) {
    case ORD_LT:
        return request < policy;
    case ORD_LE:
        return request <= policy;
    case ORD_GT:
        return request > policy;
    case ORD_GE:
        return request >= policy;
    case ORD_EQ:
        break;
    }
    return request == policy;
}

/* The policy value V with its variables substituted, parsed for OP. */
static bool cvalue_now(const struct op_def *op, const struct cvalue *v, struct eval *ev,
                       struct cvalue *tmp, const struct cvalue **out)
{
    char text[RENDER_MAX];
    if (v->constant) {
        *out = v;
        return true;
    }
    *tmp = *v;
    if (!pattern_render(&v->pat, ev, text, sizeof(text)) || !cvalue_parse(op, text, tmp))
        return false;
    *out = tmp;
    return true;
}

/* The operator (without its Not) holds between policy value V and request value R. */
static bool value_holds(const struct cond *cd, const struct cvalue *v, struct eval *ev,
                        const char *r)
{
    const struct op_def *op = cd->op;
    size_t rn = strlen(r);
    struct cvalue tmp;
    const struct cvalue *pv = NULL;
    double num = 0;
    struct ipnet ip;
    bool b = false;
    switch (op->cmp) {
    case CMP_STRING:
    case CMP_BINARY:
        return pattern_match(&v->pat, ev, r, rn, 0);
    case CMP_STRING_IC:
        return pattern_match(&v->pat, ev, r, rn, M_FOLD);
    case CMP_STRING_LIKE:
        return pattern_match(&v->pat, ev, r, rn, M_WILD);
    case CMP_ARN:
        return pattern_match(&v->pat, ev, r, rn, M_WILD | M_ARN);
    case CMP_NUMERIC:
        return parse_number(r, rn, &num) && cvalue_now(op, v, ev, &tmp, &pv) &&
               ordered(op->order, num, pv->num);
    case CMP_DATE:
        return parse_date(r, rn, &num) && cvalue_now(op, v, ev, &tmp, &pv) &&
               ordered(op->order, num, pv->num);
    case CMP_BOOL:
        return parse_bool(r, rn, &b) && cvalue_now(op, v, ev, &tmp, &pv) && b == pv->b;
    case CMP_IP:
        return parse_ip(r, rn, false, &ip) && cvalue_now(op, v, ev, &tmp, &pv) &&
               ip_in(&pv->ip, &ip);
    case CMP_NULL:
        break;
    }
    return false;
}

/* One request value against the policy values: OR over them, NOR for the Not operators. */
static bool request_value_ok(const struct cond *cd, struct eval *ev, const char *r)
{
    bool any = false;
    for (size_t i = 0; i < cd->n_values && !any; i++)
        any = value_holds(cd, &cd->values[i], ev, r);
    return cd->op->negated ? !any : any;
}

/* §2.5 and IAM: an absent key fails the positive operators and passes the Not ones, IfExists
 * passes it, ForAllValues holds on no values and ForAnyValue does not. A plain operator on a
 * set-valued key needs one matching value (all of them for the Not operators). */
static bool cond_holds(const struct cond *cd, struct eval *ev)
{
    struct kvals kv;
    key_values(ev, &cd->key, &kv);
    if (cd->op->cmp == CMP_NULL) {
        for (size_t i = 0; i < cd->n_values; i++)
            if (cd->values[i].b == (kv.n == 0))
                return true;
        return false;
    }
    if (kv.n == 0)
        return cd->if_exists || cd->set == SET_ALL ||
               (cd->set == SET_NONE && cd->op->negated && !ev->ctx->negated_absent_false);
    bool need_all = cd->set == SET_ALL || (cd->set == SET_NONE && cd->op->negated);
    for (size_t i = 0; i < kv.n; i++) {
        bool ok = request_value_ok(cd, ev, kv.v[i]);
        if (ok != need_all)
            return ok;
    }
    return need_all;
}

static bool stmt_applies(const struct stmt *st, struct eval *ev, const char *res, size_t len)
{
    bool hit = false;
    for (size_t i = 0; i < st->n_resources && !hit; i++)
        hit = pattern_match(&st->resources[i], ev, res, len, M_WILD);
    if (hit == st->not_resource)
        return false;
    for (size_t i = 0; i < st->n_conds; i++)
        if (!cond_holds(&st->conds[i], ev))
            return false;
    return true;
}

/* ---- evaluation: the decision ---------------------------------------------------------------- */

static void explain_value(struct sbuf *b, struct eval *ev, const struct var *v)
{
    struct kvals kv;
    struct slice s;
    sb_add(b, "%.*s=", (int)v->name_len, v->name);
    if (var_multi(v)) {
        key_values(ev, v, &kv);
        sb_add(b, "[");
        for (size_t i = 0; i < kv.n && i < 3; i++)
            sb_add(b, "%s\"%.*s\"", i ? ", " : "", EXPLAIN_VALUE_MAX, kv.v[i]);
        sb_add(b, "%s]", kv.n > 3 ? ", ..." : "");
    } else if (var_resolve(ev, v, &s)) {
        sb_add(b, "\"%.*s\"", (int)(s.n < EXPLAIN_VALUE_MAX ? s.n : EXPLAIN_VALUE_MAX), s.p);
    } else {
        key_values(ev, v, &kv);
        sb_add(b, kv.n ? "(not substituted)" : "(absent)");
    }
}

/* The values of the variables and keys of every statement that was examined. */
static void explain_values(struct sbuf *b, const struct policy *const *ps, size_t n,
                           struct eval *ev)
{
    const struct var *seen[EXPLAIN_VARS_MAX];
    size_t n_seen = 0;
    bool more = false;
    uint32_t bit = 1u << ev->action;
    for (size_t i = 0; i < n; i++) {
        for (size_t j = 0; ps[i] && j < ps[i]->n_stmts; j++) {
            const struct stmt *st = &ps[i]->stmts[j];
            for (size_t k = 0; (st->actions & bit) && k < st->n_vars; k++) {
                bool dup = false;
                for (size_t s = 0; s < n_seen && !dup; s++)
                    dup = var_same(seen[s], st->vars[k]);
                if (!dup && n_seen == EXPLAIN_VARS_MAX)
                    more = true;
                else if (!dup)
                    seen[n_seen++] = st->vars[k];
            }
        }
    }
    for (size_t s = 0; s < n_seen; s++) {
        sb_add(b, s ? ", " : "; values: ");
        explain_value(b, ev, seen[s]);
    }
    if (more)
        sb_add(b, ", ...");
}

static void explain(struct policy_decision *d, const struct policy *const *ps, size_t n,
                    struct eval *ev, const char *res, size_t res_len)
{
    struct sbuf b = {d->explanation, sizeof(d->explanation), 0, false};
    sb_add(&b, "%s %s %.*s: ", policy_effect_name(d->effect), action_names[ev->action],
           (int)(res_len < 256 ? res_len : 256), res);
    if (d->effect == POLICY_DENY_IMPLICIT) {
        sb_add(&b, "no statement allowed it");
    } else {
        const struct stmt *st = NULL;
        for (size_t i = 0; i < n && st == NULL; i++)
            if (ps[i] && ps[i]->name == d->policy)
                st = &ps[i]->stmts[d->statement];
        sb_add(&b, "%s by policy %s statement %d", d->effect == POLICY_ALLOW ? "allowed" : "denied",
               d->policy, d->statement);
        if (st && st->sid && st->sid[0])
            sb_add(&b, " (Sid %s)", st->sid);
    }
    sb_add(&b, "; policies considered:");
    size_t shown = 0;
    for (size_t i = 0; i < n; i++)
        if (ps[i])
            sb_add(&b, "%s%s", shown++ ? ", " : " ", ps[i]->name);
    if (shown == 0)
        sb_add(&b, " none");
    explain_values(&b, ps, n, ev);
    if (b.full)
        memcpy(d->explanation + sizeof(d->explanation) - 4, "...", 4);
}

enum iot_err policy_evaluate(const struct policy *const *policies, size_t n,
                             const struct policy_context *ctx, enum policy_action action,
                             const char *resource, size_t resource_len, struct policy_decision *out)
{
    static const struct policy_context empty;
    out->effect = POLICY_DENY_IMPLICIT;
    out->policy = NULL;
    out->statement = -1;
    out->statements_evaluated = 0;
    out->explanation[0] = '\0';
    if ((unsigned)action >= POLICY_ACTION_COUNT || (resource == NULL && resource_len > 0)) {
        snprintf(out->explanation, sizeof(out->explanation),
                 "DENY_IMPLICIT: invalid request (unknown action or no resource)");
        return IOT_ERR_INVALID_REQUEST;
    }
    if (resource == NULL)
        resource = "";
    struct eval ev = {.ctx = ctx ? ctx : &empty, .action = action};
    uint32_t bit = 1u << action;
    for (size_t i = 0; i < n && out->effect != POLICY_DENY_EXPLICIT; i++) {
        const struct policy *p = policies[i];
        if (p == NULL || !(p->actions & bit))
            continue;
        for (size_t j = 0; j < p->n_stmts; j++) {
            const struct stmt *st = &p->stmts[j];
            if (!(st->actions & bit))
                continue;
            out->statements_evaluated++;
            if (!stmt_applies(st, &ev, resource, resource_len))
                continue;
            if (st->deny || out->effect != POLICY_ALLOW) {
                out->effect = st->deny ? POLICY_DENY_EXPLICIT : POLICY_ALLOW;
                out->policy = p->name;
                out->statement = (int)j;
            }
            if (st->deny)
                break; /* an explicit Deny wins at once (§2.6) */
        }
    }
    explain(out, policies, n, &ev, resource, resource_len);
    return IOT_OK;
}

/* ---- ARNs -------------------------------------------------------------------------------------
 */

enum policy_resource_type policy_action_resource_type(enum policy_action a)
{
    switch (a) {
    case POLICY_ACTION_CONNECT:
        return POLICY_RESOURCE_CLIENT;
    case POLICY_ACTION_SUBSCRIBE:
        return POLICY_RESOURCE_TOPICFILTER;
    default:
        return POLICY_RESOURCE_TOPIC;
    }
}

size_t policy_arn_build(char *buf, size_t size, const char *region, const char *account,
                        enum policy_resource_type type, const char *name, size_t name_len)
{
    static const char prefix[] = "arn:aws:iot:";
    const char *kind = type == POLICY_RESOURCE_CLIENT        ? "client/"
                       : type == POLICY_RESOURCE_TOPICFILTER ? "topicfilter/"
                                                             : "topic/";
    region = region ? region : "";
    account = account ? account : "";
    size_t parts[] = {sizeof(prefix) - 1, strlen(region), 1, strlen(account), 1,
                      strlen(kind),       name_len};
    const char *texts[] = {prefix, region, ":", account, ":", kind, name};
    size_t len = 0;
    for (size_t i = 0; i < sizeof(parts) / sizeof(parts[0]); i++)
        len += parts[i];
    if (len >= size || (name == NULL && name_len > 0)) {
        if (size > 0)
            buf[0] = '\0';
        return len;
    }
    size_t at = 0;
    for (size_t i = 0; i < sizeof(parts) / sizeof(parts[0]); i++) {
        if (parts[i])
            memcpy(buf + at, texts[i], parts[i]);
        at += parts[i];
    }
    buf[at] = '\0';
    return len;
}

size_t policy_arn_for(char *buf, size_t size, const struct policy_context *ctx,
                      enum policy_action action, const char *name, size_t name_len)
{
    return policy_arn_build(buf, size, ctx ? ctx->region : NULL, ctx ? ctx->account : NULL,
                            policy_action_resource_type(action), name, name_len);
}

/* ---- reserved topics ------------------------------------------------------------------------- */

#define OP_PUB 0x1u
#define OP_SUB 0x2u

/* Level patterns: "+" any non-empty level, "a|b" one of the words, a final "#" one or more
 * levels. Sources: §6.1-6.4, §5.4 and DG reserved-topics (shadow request topics are
 * Publish/Subscribe there; Jobs and fleet provisioning request topics Publish only). */
static const struct {
    const char *pattern;
    unsigned ops;
    const char *what;
} reserved_topics[] = {
    {"$aws/things/+/shadow/get|update|delete", OP_PUB | OP_SUB, "a Device Shadow request topic"},
    {"$aws/things/+/shadow/name/+/get|update|delete", OP_PUB | OP_SUB,
     "a Device Shadow request topic"},
    {"$aws/things/+/shadow/get|update|delete/accepted|rejected", OP_SUB,
     "a Device Shadow response topic"},
    {"$aws/things/+/shadow/name/+/get|update|delete/accepted|rejected", OP_SUB,
     "a Device Shadow response topic"},
    {"$aws/things/+/shadow/update/delta|documents", OP_SUB, "a Device Shadow response topic"},
    {"$aws/things/+/shadow/name/+/update/delta|documents", OP_SUB,
     "a Device Shadow response topic"},
    {"$aws/things/+/jobs/get|start-next", OP_PUB, "a Jobs request topic"},
    {"$aws/things/+/jobs/+/get|update", OP_PUB, "a Jobs request topic"},
    {"$aws/things/+/jobs/get|start-next/accepted|rejected", OP_SUB, "a Jobs response topic"},
    {"$aws/things/+/jobs/+/get|update/accepted|rejected", OP_SUB, "a Jobs response topic"},
    {"$aws/things/+/jobs/notify|notify-next", OP_SUB, "a Jobs notification topic"},
    {"$aws/certificates/create|create-from-csr/json|cbor", OP_PUB,
     "a fleet provisioning request topic"},
    {"$aws/certificates/create|create-from-csr/json|cbor/accepted|rejected", OP_SUB,
     "a fleet provisioning response topic"},
    {"$aws/provisioning-templates/+/provision/json|cbor", OP_PUB,
     "a fleet provisioning request topic"},
    {"$aws/provisioning-templates/+/provision/json|cbor/accepted|rejected", OP_SUB,
     "a fleet provisioning response topic"},
    {"$aws/things/+/defender/metrics/json|cbor", OP_PUB, "a Device Defender metrics topic"},
    {"$aws/things/+/defender/metrics/json|cbor/accepted|rejected", OP_SUB,
     "a Device Defender response topic"},
    {"$aws/things/+/tunnels/notify", OP_SUB, "a secure tunneling notification topic"},
    {"$aws/things/+/streams/+/get|describe/json|cbor", OP_PUB,
     "an MQTT file delivery request topic"},
    {"$aws/things/+/streams/+/data|description|rejected/json|cbor", OP_SUB,
     "an MQTT file delivery response topic"},
    {"$aws/sitewise/asset-models/+/assets/+/properties/+", OP_SUB, "a SiteWise notification topic"},
    {"$aws/events/presence/connected|disconnected|connect_failed/#", OP_SUB,
     "a lifecycle event topic"},
    {"$aws/events/subscriptions/subscribed|unsubscribed/#", OP_SUB, "a lifecycle event topic"},
    {"$aws/events/certificates/registered/+", OP_SUB, "a certificate registration event topic"},
    {"$aws/events/thing|thingGroup|thingType/+/created|updated|deleted", OP_SUB,
     "a registry event topic"},
    {"$aws/events/thingTypeAssociation/thing/+/+", OP_SUB, "a registry event topic"},
    {"$aws/events/thingGroupMembership/thingGroup/+/thing/+/added|removed", OP_SUB,
     "a registry event topic"},
    {"$aws/events/thingGroupHierarchy/thingGroup/+/childThingGroup/+/added|removed", OP_SUB,
     "a registry event topic"},
    {"$aws/events/job/+/completed|canceled|deleted|cancellation_in_progress|deletion_in_progress",
     OP_SUB, "a Jobs event topic"},
    {"$aws/events/jobExecution/+/succeeded|failed|rejected|canceled|timed_out|removed|deleted",
     OP_SUB, "a Jobs event topic"},
};

#define RULES_PREFIX "$aws/rules/" /* compared case-insensitively, as the CRT does (§4.4) */
#define SHARE_PREFIX "$share/"

/* Splits off the first level of *S (up to END); *S becomes NULL after the last level. */
static struct slice take_level(const char **s, const char *end)
{
    const char *slash = memchr(*s, '/', (size_t)(end - *s));
    struct slice l = {*s, (size_t)((slash ? slash : end) - *s)};
    *s = slash ? slash + 1 : NULL;
    return l;
}

static bool level_is(struct slice l, const char *word)
{
    return l.n == strlen(word) && memcmp(l.p, word, l.n) == 0;
}

static bool level_fits(struct slice pat, struct slice lvl)
{
    if (level_is(pat, "+"))
        return lvl.n > 0;
    const char *p = pat.p, *end = pat.p + pat.n;
    while (p != NULL) {
        const char *bar = memchr(p, '|', (size_t)(end - p));
        size_t n = (size_t)((bar ? bar : end) - p);
        if (n == lvl.n && memcmp(p, lvl.p, n) == 0)
            return true;
        p = bar ? bar + 1 : NULL;
    }
    return false;
}

/* Whether one topic is named both by PATTERN and by T (a topic, or with FILTER a topic filter
 * whose `+` and `#` stand for levels; `#` needs at least one level, as on AWS §4.4). */
static bool reserved_match(const char *pattern, const char *t, bool filter)
{
    const char *p = pattern, *pend = pattern + strlen(pattern), *tend = t + strlen(t);
    for (;;) {
        struct slice pl = take_level(&p, pend);
        if (level_is(pl, "#"))
            return t != NULL;
        if (t == NULL)
            return false;
        struct slice tl = take_level(&t, tend);
        if (filter && level_is(tl, "#"))
            return true;
        if (!(filter && level_is(tl, "+")) && !level_fits(pl, tl))
            return false;
        if (p == NULL)
            return t == NULL;
    }
}

static enum policy_reserved verdict(enum policy_reserved r, const char *reason, const char **why)
{
    if (why != NULL)
        *why = reason;
    return r;
}

static enum policy_reserved reserved_topic_check(bool subscribe, const char *topic,
                                                 const char **why)
{
    unsigned want = subscribe ? OP_SUB : OP_PUB;
    const char *other = NULL;
    if (strncasecmp(topic, RULES_PREFIX, strlen(RULES_PREFIX)) == 0) {
        const char *rule = topic + strlen(RULES_PREFIX);
        if (rule[0] == '\0' || rule[0] == '/')
            return verdict(POLICY_RESERVED_DENIED, "a Basic Ingest topic needs a rule name", why);
        if (subscribe)
            return verdict(POLICY_RESERVED_DENIED,
                           "Basic Ingest topics ($aws/rules/...) are publish-only", why);
        return verdict(POLICY_RESERVED_ALLOWED, "a Basic Ingest topic", why);
    }
    for (size_t i = 0; i < sizeof(reserved_topics) / sizeof(reserved_topics[0]); i++) {
        if (!reserved_match(reserved_topics[i].pattern, topic, subscribe))
            continue;
        if (reserved_topics[i].ops & want)
            return verdict(POLICY_RESERVED_ALLOWED, reserved_topics[i].what, why);
        other = reserved_topics[i].what;
    }
    if (other != NULL && subscribe)
        return verdict(POLICY_RESERVED_DENIED,
                       "clients may only publish to this reserved request topic", why);
    if (other != NULL)
        return verdict(POLICY_RESERVED_DENIED,
                       "only AWS IoT publishes to this reserved topic; clients may only "
                       "subscribe to it",
                       why);
    return verdict(POLICY_RESERVED_DENIED, "not a reserved topic AWS IoT supports", why);
}

enum policy_reserved policy_reserved_check(enum policy_action action, const char *topic,
                                           const char **why)
{
    if (topic == NULL)
        return verdict(POLICY_RESERVED_DENIED, "no topic", why);
    if (action == POLICY_ACTION_SUBSCRIBE && strncmp(topic, SHARE_PREFIX, 7) == 0) {
        const char *slash = strchr(topic + strlen(SHARE_PREFIX), '/');
        if (slash == NULL || slash == topic + strlen(SHARE_PREFIX) || slash[1] == '\0')
            return verdict(POLICY_RESERVED_DENIED, "not a valid shared subscription", why);
        topic = slash + 1;
    }
    if (topic[0] != '$')
        return verdict(POLICY_RESERVED_NONE, "not a reserved topic", why);
    switch (action) {
    case POLICY_ACTION_PUBLISH:
        return reserved_topic_check(false, topic, why);
    case POLICY_ACTION_SUBSCRIBE:
        return reserved_topic_check(true, topic, why);
    case POLICY_ACTION_RETAIN_PUBLISH:
        return verdict(POLICY_RESERVED_DENIED,
                       "retained messages are not allowed on reserved topics", why);
    case POLICY_ACTION_RECEIVE:
        return verdict(POLICY_RESERVED_ALLOWED, "delivered by AWS IoT", why);
    default:
        return verdict(POLICY_RESERVED_NONE, "not a topic action", why);
    }
}
