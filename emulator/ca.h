/* The local certificate authority and everything X.509: the root CA clients trust (as they trust
 * AmazonRootCA1.pem), the certificates it issues with AWS's profile (shared/spec/provisioning.md
 * §1.7), key generation, CSR checks and certificate ids (SHA-256 of the DER, §0.2, §4.7).
 *
 * Thread-safety: a struct ca is read-only once opened; ca_issue() may run on several threads. */
#ifndef IOTMOCK_CA_H
#define IOTMOCK_CA_H

#include <stddef.h>

#include <openssl/evp.h>
#include <openssl/x509.h>

#include "err.h"

#define CA_CERT_FILE "root-ca.pem"
#define CA_KEY_FILE "root-ca.key"
#define CA_ID_LEN 64 /* lowercase hex SHA-256 of the DER */

/* notAfter of every certificate AWS generates (§1.7), as ASN.1 GeneralizedTime/UTCTime text. */
#define CA_DEVICE_NOT_AFTER "20491231235959Z"
/* The issuer DN AWS puts in device certificates is one OU attribute holding this whole string. */
#define CA_ISSUER_OU "Amazon Web Services O=Amazon.com Inc. L=Seattle ST=Washington C=US"
/* Subject of certificates issued with generated keys (CreateKeysAndCertificate). */
#define CA_DEFAULT_SUBJECT_CN "AWS IoT Certificate"

struct ca;

/* Loads DIR/root-ca.pem and DIR/root-ca.key, or creates both when neither exists: RSA-2048,
 * subject OU=CA_ISSUER_OU, valid until 2059-12-31T23:59:59Z (beyond 2049-12-31), key file mode 0600.
 * One file without the other is an error (IOT_ERR_IO) rather than a silent new CA.
 * On success *out is owned by the caller: free with ca_free(). */
enum iot_err ca_open(const char *dir, struct ca **out, struct iot_error *err);
void ca_free(struct ca *ca);

/* Borrowed; valid until ca_free(). */
X509 *ca_certificate(const struct ca *ca);

/* Generates an RSA key of BITS bits. Caller frees *out with EVP_PKEY_free(). */
enum iot_err ca_generate_rsa(int bits, EVP_PKEY **out, struct iot_error *err);

/* Generates an EC key on the named curve ("P-256"...). For tests and claim material. */
enum iot_err ca_generate_ec(const char *curve, EVP_PKEY **out, struct iot_error *err);

/* Parses a PEM CSR of LEN bytes (not necessarily NUL-terminated) and checks what AWS checks:
 * the self-signature verifies; the key is RSA >= 2048 bits or EC on P-256, P-384 or P-521
 * (§1.4). Anything else gives IOT_ERR_INVALID_CSR with the reason in err.
 * Caller frees *out with X509_REQ_free(). */
enum iot_err ca_csr_parse(const char *pem, size_t len, X509_REQ **out, struct iot_error *err);

/* Issues a device certificate for PUBKEY with the §1.7 profile: 20-byte random positive serial,
 * notBefore now, notAfter CA_DEVICE_NOT_AFTER, issuer = CA subject, SKI + AKI, basicConstraints
 * critical CA:FALSE, keyUsage critical digitalSignature, no EKU, sha256WithRSAEncryption.
 * SUBJECT is copied when not NULL (the CSR's subject, order kept), else CN=CA_DEFAULT_SUBJECT_CN.
 * Caller frees *out with X509_free(). */
enum iot_err ca_issue(const struct ca *ca, EVP_PKEY *pubkey, const X509_NAME *subject, X509 **out,
                      struct iot_error *err);

/* The same for a CSR already checked (ca_csr_parse()): its subject, and its public key exactly as
 * the CSR encodes it, copied without decoding it; so X509_get0_pubkey() on *out gives NULL (the
 * certificate once encoded and parsed again has it). */
enum iot_err ca_issue_csr(const struct ca *ca, X509_REQ *csr, X509 **out, struct iot_error *err);

/* Issues the TLS server certificate: CN=HOST, SANs DNS:HOST (when not an IP), DNS:localhost,
 * IP:127.0.0.1, IP:::1 (and IP:HOST when HOST is an address), EKU serverAuth, valid 10 years.
 * Caller frees *out with X509_free(). */
enum iot_err ca_issue_server(const struct ca *ca, EVP_PKEY *key, const char *host, X509 **out,
                             struct iot_error *err);

/* Writes the certificate id (64 lowercase hex chars + NUL) into out. */
enum iot_err ca_cert_id(X509 *cert, char out[CA_ID_LEN + 1]);

/* PEM encodings, "\n" line endings, NUL-terminated. Caller frees with free().
 * ca_key_to_pem() writes RSA keys as PKCS#1 "BEGIN RSA PRIVATE KEY" (what AWS returns), EC keys
 * as "BEGIN EC PRIVATE KEY". Return NULL on allocation failure. */
char *ca_cert_to_pem(X509 *cert);
char *ca_key_to_pem(EVP_PKEY *key);
char *ca_csr_to_pem(X509_REQ *req);

/* Parses the first certificate of a PEM text of LEN bytes. Caller frees *out with X509_free(). */
enum iot_err ca_cert_from_pem(const char *pem, size_t len, X509 **out, struct iot_error *err);

/* Builds a CSR for tests and claim material: SUBJECT like "/CN=dev/O=acme" (NULL = empty). */
enum iot_err ca_make_csr(EVP_PKEY *key, const char *subject, X509_REQ **out, struct iot_error *err);

/* Writes DATA to PATH atomically (PATH.tmp, fsync, rename) with MODE. */
enum iot_err ca_write_file(const char *path, const char *data, int mode, struct iot_error *err);

#endif
