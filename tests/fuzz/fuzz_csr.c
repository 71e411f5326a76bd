/* fuzz_csr: the X.509 inputs a client hands the CA (shared/spec/provisioning.md §1.4): the PEM
 * CSR of CreateCertificateFromCsr, through ca_csr_parse(), and a PEM certificate, through
 * ca_cert_from_pem() (registration, JITP).
 *
 * Input: byte 0 picks the form of the rest.
 *   even   the rest is PEM text, given to ca_csr_parse() and ca_cert_from_pem() as it is;
 *   odd    the rest is DER, which the harness wraps in PEM (as a CSR when bit 1 is clear, as a
 *          certificate when set) first, so that mutations reach the ASN.1 inside rather than
 *          only the base64 around it. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "ca.h"
#include "fuzz_util.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    return 0;
}

/* DER as a PEM block of LABEL, 64 base64 characters a line. Caller frees. */
static char *pem_wrap(const uint8_t *der, size_t n, const char *label, size_t *len)
{
    size_t b64 = 4 * ((n + 2) / 3);
    size_t cap = b64 + b64 / 64 + 2 + 2 * (strlen(label) + 32);
    char *out = malloc(cap), *p = out;
    if (out == NULL)
        abort();
    p += sprintf(p, "-----BEGIN %s-----\n", label);
    for (size_t i = 0; i < n; i += 48) {
        size_t chunk = n - i < 48 ? n - i : 48;
        p += EVP_EncodeBlock((unsigned char *)p, der + i, (int)chunk);
        *p++ = '\n';
    }
    p += sprintf(p, "-----END %s-----\n", label);
    *len = (size_t)(p - out);
    return out;
}

static void parse_csr(const char *pem, size_t len)
{
    X509_REQ *req = NULL;
    struct iot_error err = {0};
    if (ca_csr_parse(pem, len, &req, &err) == IOT_OK) {
        char *again = ca_csr_to_pem(req);
        if (again == NULL)
            abort();
        free(again);
        X509_REQ_free(req);
    } else if (req != NULL || err.code != IOT_ERR_INVALID_CSR) {
        abort();
    }
}

static void parse_cert(const char *pem, size_t len)
{
    X509 *cert = NULL;
    struct iot_error err = {0};
    if (ca_cert_from_pem(pem, len, &cert, &err) == IOT_OK) {
        char id[CA_ID_LEN + 1];
        if (ca_cert_id(cert, id) != IOT_OK || strlen(id) != CA_ID_LEN)
            abort();
        char *again = ca_cert_to_pem(cert);
        free(again);
        X509_free(cert);
    } else if (cert != NULL) {
        abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    uint8_t sel = data[0];
    data++;
    size--;
    if ((sel & 1) == 0) {
        char *pem = (char *)fuzz_memdup(data, size); /* not NUL-terminated, on purpose */
        parse_csr(pem, size);
        parse_cert(pem, size);
        free(pem);
        return 0;
    }
    size_t len = 0;
    char *pem = pem_wrap(data, size, (sel & 2) ? "CERTIFICATE" : "CERTIFICATE REQUEST", &len);
    char *exact = (char *)fuzz_memdup((const uint8_t *)pem, len);
    if (sel & 2)
        parse_cert(exact, len);
    else
        parse_csr(exact, len);
    free(exact);
    free(pem);
    return 0;
}
