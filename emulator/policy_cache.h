/* Compiled policies shared by the whole process (shared/spec/broker-and-policy.md §2): each
 * (policy name, document) is compiled once, the first time a connection or a request needs it,
 * and every connection whose policies include it shares the compiled form. A new default version
 * is a new document, hence a new entry; the old one is freed when its last user releases it.
 *
 * Thread-safety: every function may be called from any thread (the broker loop and the HTTP
 * thread both evaluate policies); a compiled policy is immutable. */
#ifndef IOTMOCK_POLICY_CACHE_H
#define IOTMOCK_POLICY_CACHE_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "policy.h"

struct policy_cache;

struct policy_cache_stats {
    uint64_t compiles; /* documents compiled (successfully or not) */
    uint64_t hits;     /* requests answered with an already compiled document */
    size_t entries;    /* compiled documents held, in use or not */
};

/* NULL when memory runs out. Free with policy_cache_free() once no reference is held. */
struct policy_cache *policy_cache_new(void);
void policy_cache_free(struct policy_cache *pc);

/* The compiled form of the policy NAME whose document is TEXT (NUL-terminated), compiled now if
 * this (name, document) was not seen before. On success *out is a reference the caller gives back
 * with policy_cache_release(). Errors are policy_compile()'s, and are not cached. */
enum iot_err policy_cache_get(struct policy_cache *pc, const char *name, const char *text,
                              const struct policy **out, struct iot_error *err);
/* Gives back a reference policy_cache_get() returned. NULL-safe. */
void policy_cache_release(struct policy_cache *pc, const struct policy *p);

void policy_cache_stats(struct policy_cache *pc, struct policy_cache_stats *out);

#endif
