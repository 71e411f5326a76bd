/* The directory of certificates the broker's TLS layer trusts for client certificates (the
 * listener's `capath`): iotmock's root CA, the registered CA certificates and the self-signed
 * device certificates registered without a CA (shared/spec/provisioning.md §4.2, §4.6; which
 * PEMs belong there is jit_trusted_pems()'s business, this module only keeps the directory).
 *
 * Layout: OpenSSL's hashed directory, what `openssl rehash` writes and X509_LOOKUP_hash_dir
 * reads: one PEM certificate per file named <hash>.<n>, where <hash> is X509_NAME_hash_ex() of
 * the subject as 8 lowercase hex digits and n = 0, 1, ... numbers the certificates whose subjects
 * share that hash. OpenSSL stops at the first missing n, so the suffixes stay contiguous.
 *
 * Updates are file by file atomic (written as <name>.tmp, fsync'd, renamed), new files first and
 * removals last, so a handshake during a sync reads either the old or the new certificate of a
 * name, never half a file. A certificate that stays keeps its file untouched unless a lower
 * suffix of its hash was freed (it then moves down); one added to a hash in use takes the next
 * suffix. One sync at a time per directory.
 *
 * What a running TLS server sees (OpenSSL 3's X509_LOOKUP_hash_dir): a subject it has not
 * loaded yet is looked up afresh in the directory, so a CA registered later is trusted without a
 * restart; a subject it has loaded is served from its cache, so a certificate removed from the
 * directory, or a second certificate with an already loaded subject, is only seen once the TLS
 * context is rebuilt. The broker adapter refuses certificates of removed CAs at CONNECT anyway. */
#ifndef IOTMOCK_CAPATH_H
#define IOTMOCK_CAPATH_H

#include <stddef.h>

#include <openssl/x509.h>

#include "err.h"

#define CAPATH_HASH_LEN 8       /* hex digits of the subject hash */
#define CAPATH_NAME_MAX 24      /* "<hash>.<n>" with room to spare */
#define CAPATH_MAX_CERTS 4096   /* certificates in one directory */
#define CAPATH_FILE_MAX 1048576 /* bytes read from an existing entry */

/* The file name `openssl rehash` gives CERT at suffix N ("1a2b3c4d.0"). IOT_ERR_INTERNAL if the
 * subject cannot be hashed. */
enum iot_err capath_name(X509 *cert, unsigned int n, char out[CAPATH_NAME_MAX]);

/* Makes DIR (created 0755 if absent) hold exactly the certificates of PEMS (N texts, each
 * NUL-terminated, of which the first certificate counts; the same certificate twice is kept once)
 * under hashed names. Files of DIR that do not look like hashed names (and so are invisible to
 * OpenSSL) are left alone; hashed names not in the set are removed. An unreadable PEM gives
 * IOT_ERR_INVALID_REQUEST (naming its index) before anything changes; more than
 * CAPATH_MAX_CERTS gives IOT_ERR_INVALID_REQUEST; file system failures IOT_ERR_IO. */
enum iot_err capath_sync(const char *dir, const char *const *pems, size_t n, struct iot_error *err);

#endif
