/* fuzz_cert_ca.h: the test CA that fuzz_cert.c trusts, written by fuzz_mkcorpus with the
 * certificates in corpus/cert/ (valid around 1767225600, fuzz_cert.c's "now"). */
static const char s_ca_pem[] = "-----BEGIN CERTIFICATE-----\n"
                               "MIIBajCCARygAwIBAgIJAOO6jkNwgA0oMAUGAytlcDA3MRgwFgYDVQQKDA9mdXp6\n"
                               "LWZlZGVyYXRpb24xGzAZBgNVBAMMEmZ1enotZmVkZXJhdGlvbiBDQTAeFw0yNTEy\n"
                               "MzAyMzU1MDBaFw0zNTEyMjkwMDAwMDBaMDcxGDAWBgNVBAoMD2Z1enotZmVkZXJh\n"
                               "dGlvbjEbMBkGA1UEAwwSZnV6ei1mZWRlcmF0aW9uIENBMCowBQYDK2VwAyEAC0dp\n"
                               "paB+0P36LhwEZHVYI9DLijUMWpPI6dfsthcBZhijRTBDMBIGA1UdEwEB/wQIMAYB\n"
                               "Af8CAQAwDgYDVR0PAQH/BAQDAgEGMB0GA1UdDgQWBBRwAn29fB184owykzCAtzYS\n"
                               "BBrvAzAFBgMrZXADQQBvGuDBjQF6vxeA60pUrZA8KLQW6Jo3VXkWhky1GOhbcqhz\n"
                               "Fms++gVGC3sU241LjCDYzM7stqAWvPMRjsm2EZkJ\n"
                               "-----END CERTIFICATE-----\n";
static const char s_crl_pem[] = "-----BEGIN X509 CRL-----\n"
                                "MIHDMHcCAQEwBQYDK2VwMDcxGDAWBgNVBAoMD2Z1enotZmVkZXJhdGlvbjEbMBkG\n"
                                "A1UEAwwSZnV6ei1mZWRlcmF0aW9uIENBFw0yNTEyMzEyMzU5MDBaFw0yNjAxMzAy\n"
                                "MzU5MDBaMBQwEgIBAxcNMjUxMjMxMjM1OTAwWjAFBgMrZXADQQD0SXDUETZdKpF/\n"
                                "/kGXpfM8Fhlr8CfUmD0nZgW+4sI8MOsCcifyqes9jNweeqg68DqOPi/poQkA0uxQ\n"
                                "ab8xhZwM\n"
                                "-----END X509 CRL-----\n";
#define S_NOW 1767225600
