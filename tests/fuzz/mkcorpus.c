/*
 * mkcorpus.c: writes the seed corpus of every fuzz target (docs/fuzzing.md) from the product's
 * own writers, so the seeds are files Condenser really produces:
 *
 *   fuzz_mkcorpus DIR        writes DIR/<target>/<seed> for every target but proto (whose
 *                            seeds come from `test_proto_fuzz --write-corpus DIR/proto`), and
 *                            DIR/../fuzz_cert_ca.h, the test CA the cert target trusts
 *   fuzz_mkcorpus DIR data   only the seeds of the data targets (csv, image)
 *
 * The committed tests/fuzz/corpus/ was made with `fuzz_mkcorpus tests/fuzz/corpus`, then
 * clang-format on fuzz_cert_ca.h. Keys are derived from fixed seeds that the targets share
 * (manifest: 0x4d..., audit log: 0x41...); the CA key is random, which is why its certificate
 * is written beside the corpus. Files whose format ends in a SHA-256 over everything before it
 * (model files, checkpoints) are written without it: the targets append it (see
 * fuzz_modelfile.c).
 */
#include "artifact.h"
#include "json.h"
#include "audit_log.h"
#include "audit_proof.h"
#include "ca.h"
#include "checkpoint.h"
#include "cert.h"
#include "fileio.h"
#include "manifest.h"
#include "modelfile.h"
#include "quant_testutil.h"

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include <jpeglib.h>
#include <png.h>

#define S_NOW 1767225600 /* 2026-01-01T00:00:00Z: CA and certificates are valid around it */

static const char *s_root;

static void s_die(const char *what)
{
    fprintf(stderr, "fuzz_mkcorpus: %s: %s\n", what, cnd_err_detail());
    exit(1);
}

static void s_put(const char *target, const char *name, const void *p, size_t n)
{
    char dir[4096], path[4200];
    snprintf(dir, sizeof dir, "%s/%s", s_root, target);
    if (cnd_mkdir_p(dir, 0755)) s_die(dir);
    snprintf(path, sizeof path, "%s/%s", dir, name);
    if (cnd_file_write_atomic(path, p, n, 0644)) s_die(path);
}

static void s_put_str(const char *target, const char *name, const char *s)
{
    s_put(target, name, s, strlen(s));
}

/* Two byte strings as one input: u32 little-endian length of a, a, b (fuzz_idx.c). */
static void s_put_pair(const char *target, const char *name, const uint8_t *a, size_t na,
                       const uint8_t *b, size_t nb)
{
    uint8_t *p = malloc(4 + na + nb);
    if (!p) s_die("out of memory");
    p[0] = (uint8_t)na;
    p[1] = (uint8_t)(na >> 8);
    p[2] = (uint8_t)(na >> 16);
    p[3] = (uint8_t)(na >> 24);
    memcpy(p + 4, a, na);
    memcpy(p + 4 + na, b, nb);
    s_put(target, name, p, 4 + na + nb);
    free(p);
}

static cnd_model_t *s_model(const char *spec, cnd_shape_t in, uint64_t seed)
{
    cnd_model_t *m = NULL;
    if (cnd_model_new(&m, spec, in, seed)) s_die(spec);
    for (int c = 0; c < in.c; c++) {
        m->norm_mean[c] = 100.0f + (float)c;
        m->norm_std[c] = 60.0f;
    }
    if (cnd_model_meta_set(m, "dataset", "fuzz seed") || cnd_model_meta_set(m, "accuracy", "0.5"))
        s_die("metadata");
    return m;
}

static const struct {
    const char *spec;
    cnd_shape_t in;
} s_models[] = {
    {"flatten dense(8) relu dense(3)", {1, 4, 4}},
    {"conv2d(4,3,pad=1) relu maxpool(2) flatten dense(3)", {1, 6, 6}},
    {"conv2d(3,3,stride=2) batchnorm relu avgpool(1) gap dense(4)", {2, 7, 7}},
};

static void s_modelfiles(void)
{
    for (size_t i = 0; i < sizeof s_models / sizeof *s_models; i++) {
        cnd_model_t *m = s_model(s_models[i].spec, s_models[i].in, i + 1);
        uint8_t *b;
        size_t n;
        if (cnd_model_serialize(m, &b, &n)) s_die("serialize");
        char name[32];
        snprintf(name, sizeof name, "model%zu.cnd-body", i);
        s_put("modelfile", name, b, n - 32);
        free(b);
        cnd_model_destroy(&m);
    }
}

static void s_checkpoints(const char *tmp)
{
    for (int k = 0; k < 2; k++) {
        cnd_model_t *m = s_model(s_models[k].spec, s_models[k].in, 5);
        cnd_optim_cfg_t cfg = cnd_optim_defaults(k ? CND_OPT_ADAM : CND_OPT_SGD, 0.01f);
        cnd_optim_t o;
        if (cnd_optim_init(&o, &cfg, m)) s_die("optimizer");
        for (size_t i = 0; i < o.n; i++) o.m[i] = 0.001f * (float)(i % 7);
        o.t = 12;
        cnd_rng_t aug;
        cnd_rng_seed(&aug, 3);
        char path[4096];
        snprintf(path, sizeof path, "%s/ck", tmp);
        if (cnd_ckpt_save(path, "model=mlp;epochs=3;lr=0.01;seed=1", 2, 12, &aug, &o, m))
            s_die("checkpoint");
        uint8_t *b;
        size_t n;
        if (cnd_file_read(path, 1 << 24, &b, &n)) s_die(path);
        s_put("checkpoint", k ? "adam.ckpt-body" : "sgd.ckpt-body", b, n - 32);
        free(b);
        unlink(path);
        cnd_optim_free(&o);
        cnd_model_destroy(&m);
    }
}

static void s_artifacts(void)
{
    static const struct {
        const char *spec;
        cnd_shape_t in;
        int wbits;
    } a[] = {
        {"conv2d(4,3,pad=1) relu maxpool(2) flatten dense(3)", {1, 6, 6}, 8},
        {"conv2d(3,2,stride=2) relu gap dense(4)", {2, 5, 5}, 4},
        {"flatten dense(6) relu dense(3)", {1, 3, 3}, 8},
        /* graph artifacts (format version 2): depthwise conv, relu6, residual add, hardswish;
         * concat, grouped conv, a read of the input further on */
        {"conv2d(4,3,stride=2,pad=1) relu6 mbconv(2,4,1) hardswish gap dense(3)", {1, 6, 6}, 8},
        {"a=conv2d(3,1) dwconv(3,pad=1) add(@a) relu @input conv2d(4,3,pad=1,groups=2) "
         "concat(@n3) gap dense(2)",
         {2, 4, 4},
         4},
    };
    for (size_t i = 0; i < sizeof a / sizeof *a; i++) {
        cnd_qmodel_t *q = NULL;
        if (qt_make(&q, NULL, a[i].spec, a[i].in, a[i].wbits, CND_QM_MINMAX, i + 1))
            s_die(a[i].spec);
        uint8_t *b;
        size_t n;
        if (cnd_artifact_serialize(q, &b, &n)) s_die("artifact");
        char name[32];
        snprintf(name, sizeof name, "model%zu.cndq", i);
        s_put("artifact", name, b, n);
        free(b);
        cnd_qmodel_destroy(&q);
    }
}

/* gzip (RFC 1952) of p[0..n) into a new buffer. */
static uint8_t *s_gzip(const uint8_t *p, size_t n, size_t *out_len)
{
    z_stream z;
    memset(&z, 0, sizeof z);
    if (deflateInit2(&z, 9, Z_DEFLATED, 31, 8, Z_DEFAULT_STRATEGY) != Z_OK) s_die("zlib");
    size_t cap = deflateBound(&z, n) + 32;
    uint8_t *o = malloc(cap);
    if (!o) s_die("out of memory");
    z.next_in = (Bytef *)p;
    z.avail_in = (uInt)n;
    z.next_out = o;
    z.avail_out = (uInt)cap;
    if (deflate(&z, Z_FINISH) != Z_STREAM_END) s_die("deflate");
    *out_len = z.total_out;
    deflateEnd(&z);
    return o;
}

static void s_idx(void)
{
    enum { N = 3, H = 4, W = 5 };
    uint8_t img[16 + N * H * W], lab[8 + N];
    const uint8_t ih[16] = {0, 0, 8, 3, 0, 0, 0, N, 0, 0, 0, H, 0, 0, 0, W};
    const uint8_t lh[8] = {0, 0, 8, 1, 0, 0, 0, N};
    memcpy(img, ih, 16);
    memcpy(lab, lh, 8);
    for (int i = 0; i < N * H * W; i++) img[16 + i] = (uint8_t)(i * 17);
    for (int i = 0; i < N; i++) lab[8 + i] = (uint8_t)(i * 4);
    s_put_pair("idx", "raw", img, sizeof img, lab, sizeof lab);
    size_t gi, gl;
    uint8_t *zi = s_gzip(img, sizeof img, &gi), *zl = s_gzip(lab, sizeof lab, &gl);
    s_put_pair("idx", "gzip", zi, gi, zl, gl);
    s_put_pair("idx", "gzip-images", zi, gi, lab, sizeof lab);
    free(zi);
    free(zl);
}

static void s_csv(void)
{
    s_put_str("csv", "numeric", "a,b,label\n1,2,0\n3.5,-4e2,1\n0.25,7,2\n");
    s_put_str("csv", "named",
              "\"sepal length\",label,\"width, in cm\"\r\n5.1,setosa,3.5\r\n"
              "6.2,\"virginica\",2.9\r\n\r\n4.9, setosa ,3.0\r\n");
    s_put_str("csv", "label-directive", "#label=y\nx1,x2,y\n1,2,yes\n3,4,no\n5,6,\"y\"\"es\"\n");
    s_put_str("csv", "schema-semicolon-na",
              "#label=kind,na=mean,shape=1x2x2\na;b;c;d;kind\n1;NA;3;4;x\n5;6;;8;y\n9;1;2;?;x\n");
    s_put_str("csv", "schema-tab", "#delim=tab\nf\tg\tlabel\n1\t2\tp\n3\t4\tq\n");
}

/* One image as the image target takes it: a byte choosing the target shape, then the file. */
static void s_put_image(const char *name, uint8_t target, const uint8_t *file, size_t n)
{
    uint8_t *b = malloc(n + 1);
    if (!b) s_die("image seed");
    b[0] = target;
    memcpy(b + 1, file, n);
    s_put("image", name, b, n + 1);
    free(b);
}

static void s_png_seed(const char *name, uint8_t target, int w, int h, png_uint_32 format)
{
    uint8_t px[16 * 16 * 4], out[4096];
    for (size_t i = 0; i < sizeof px; i++) px[i] = (uint8_t)(i * 37);
    png_image p;
    memset(&p, 0, sizeof p);
    p.version = PNG_IMAGE_VERSION;
    p.width = (png_uint_32)w;
    p.height = (png_uint_32)h;
    p.format = format;
    png_alloc_size_t n = sizeof out;
    if (!png_image_write_to_memory(&p, out, &n, 0, px, 0, NULL)) s_die("png seed");
    s_put_image(name, target, out, n);
}

static void s_jpeg_seed(const char *name, uint8_t target, int w, int h, int c, int progressive)
{
    uint8_t px[16 * 16 * 3];
    for (size_t i = 0; i < sizeof px; i++) px[i] = (uint8_t)(i * 13);
    struct jpeg_compress_struct j;
    struct jpeg_error_mgr e;
    unsigned char *out = NULL;
    unsigned long n = 0;
    j.err = jpeg_std_error(&e);
    jpeg_create_compress(&j);
    jpeg_mem_dest(&j, &out, &n);
    j.image_width = (JDIMENSION)w;
    j.image_height = (JDIMENSION)h;
    j.input_components = c;
    j.in_color_space = c == 1 ? JCS_GRAYSCALE : JCS_RGB;
    jpeg_set_defaults(&j);
    jpeg_set_quality(&j, 50, TRUE);
    if (progressive) jpeg_simple_progression(&j);
    jpeg_start_compress(&j, TRUE);
    while (j.next_scanline < j.image_height) {
        JSAMPROW r = px + (size_t)j.next_scanline * (size_t)w * (size_t)c;
        jpeg_write_scanlines(&j, &r, 1);
    }
    jpeg_finish_compress(&j);
    jpeg_destroy_compress(&j);
    s_put_image(name, target, out, n);
    free(out);
}

static void s_image(void)
{
    s_png_seed("png-gray", 0, 8, 8, PNG_FORMAT_GRAY);
    s_png_seed("png-rgb-to-28", 1, 12, 6, PNG_FORMAT_RGB);
    s_png_seed("png-rgba-to-rgb", 2, 5, 9, PNG_FORMAT_RGBA);
    s_png_seed("png-16bit", 3, 4, 4, PNG_FORMAT_LINEAR_Y);
    s_jpeg_seed("jpeg-gray", 0, 8, 8, 1, 0);
    s_jpeg_seed("jpeg-rgb-to-32", 2, 16, 10, 3, 0);
    s_jpeg_seed("jpeg-progressive", 1, 9, 16, 3, 1);
}

static void s_spec(void)
{
    /* the first three bytes pick the input shape (fuzz_spec.c) */
    static const char *specs[] = {
        "\x00\x1b\x1b"
        "conv2d(32,3,pad=1) relu maxpool(2) conv2d(64,3,pad=1) relu maxpool(2) flatten "
        "dense(128) relu dense(10)",
        "\x02\x06\x06"
        "conv(8,3,stride=2,pad=1) bn(eps=0.001,momentum=0.2) relu avgpool(2,stride=1) gap "
        "dense(5)",
        "\x00\x00\x07"
        "flatten dense(16) relu dense(4)",
        "\x01\x0f\x0f"
        "conv2d(4,5,pad=2) batchnorm relu maxpool(3,stride=2) flatten dense(3)",
        /* graphs: blocks, named nodes, add, concat, grouped and depthwise convs */
        "\x00\x1b\x1b"
        "conv2d(16,3,stride=2,pad=1) batchnorm relu6 mbconv(1,8,1) mbconv(4,16,2) "
        "mbconv(4,16,1) gap dense(10)",
        "\x02\x0f\x0f"
        "conv2d(8,3,pad=1) relu resblock(8) resblock(16,2) gap dense(4)",
        "\x00\x0b\x0b"
        "conv2d(8,3,pad=1) a=relu @input conv2d(8,5,pad=2) concat(@a) dwconv(3,pad=1) hardswish "
        "conv2d(16,1,groups=4) relu6 gap dense(10)",
        "\x00\x00\x0f"
        "@input flatten x=dense(16) tanh dense(16) add(@x) relu6 dense(4)",
    };
    for (size_t i = 0; i < sizeof specs / sizeof *specs; i++) {
        char name[16];
        snprintf(name, sizeof name, "spec%zu", i);
        s_put("spec", name, specs[i], 3 + strlen(specs[i] + 3));
    }
}

static void s_agent_config(void)
{
    s_put_str("agent_config", "site.ini",
              "[site]\nname = hospital-a\ndata = idx:train-images.gz,train-labels.gz\n"
              "validation = 0.1\nstate = agent.db\n\n[identity]\nkey = identity.key\n"
              "certificate = site.pem\n\n[coordinator]\nendpoint = tcp://127.0.0.1:7700\n"
              "public_key = "
              "3b6a27bcceb6a42d62a3a8d02a6f0d73653215771de243a63ac048a18b59da29\n"
              "ca_cert = ca.crt\nca_crl = crl.pem\n\n[teachers]\nresnet-local = "
              "/srv/models/teacher.cnd\n\n[limits]\nthreads = 2\nmemory_mb = 2048\n"
              "max_model_mb = 64\n");
    s_put_str("agent_config", "csv.ini",
              "; a comment\n[site]\nname=plant_7\ndata=csv:/data/sensors.csv,label=fault\n"
              "work=/var/cache/condenser\n[identity]\nkey=/etc/condenser/identity.key\n"
              "certificate=/etc/condenser/site.der\n[coordinator]\nendpoint=ipc:///run/c.sock\n"
              "public_key=3b6a27bcceb6a42d62a3a8d02a6f0d73653215771de243a63ac048a18b59da29\n"
              "ca_cert=/etc/condenser/ca.crt\nca_crl=/etc/condenser/crl.pem\n");
}

static void s_manifest(void)
{
    uint8_t seed[32];
    memset(seed, 0x4d, sizeof seed);
    cnd_identity_t *id = NULL;
    if (cnd_identity_from_seed(&id, seed)) s_die("identity");
    cnd_manifest_t m;
    memset(&m, 0, sizeof m);
    snprintf(m.name, sizeof m.name, "fmnist-cnn");
    snprintf(m.target, sizeof m.target, "edge-a,edge-b");
    m.sequence = 7;
    m.version = 3;
    m.length = 64;
    memset(m.digest, 0x11, 32);
    m.expires = S_NOW + 86400;
    cnd_buf_t b;
    cnd_buf_init(&b);
    if (cnd_manifest_sign(&b, &m, id)) s_die("manifest");
    s_put("manifest", "signed", b.data, b.len);
    cnd_buf_free(&b);
    m.flags = CND_MANIFEST_ROLLBACK;
    m.has_base = 1;
    memset(m.base_digest, 0x22, 32);
    m.target[0] = 0;
    cnd_buf_init(&b);
    if (cnd_manifest_encode(&b, &m)) s_die("manifest");
    s_put("manifest", "body-delta-rollback", b.data, b.len);
    cnd_buf_free(&b);
    cnd_identity_destroy(&id);
}

/* Appends the PEM text of path to h as a C string literal named var. */
static void s_c_string(FILE *h, const char *var, const char *path)
{
    uint8_t *p;
    size_t n;
    if (cnd_file_read(path, 1 << 16, &p, &n)) s_die(path);
    fprintf(h, "static const char %s[] =\n", var);
    for (char *line = (char *)p, *nl; *line; line = nl + 1) {
        nl = strchr(line, '\n');
        if (!nl) break;
        fprintf(h, "    \"%.*s\\n\"\n", (int)(nl - line), line);
    }
    fprintf(h, "    ;\n");
    free(p);
}

static void s_cert(const char *tmp)
{
    char ca[4096], out[4200];
    snprintf(ca, sizeof ca, "%s/ca", tmp);
    if (cnd_ca_init(ca, "fuzz-federation", 3650, S_NOW - 86400)) s_die("ca init");
    static const char *who[][2] = {
        {"hospital-a", "site"}, {"gateway-17", "device"}, {"revoked-site", "site"}};
    for (int i = 0; i < 3; i++) {
        uint8_t pk[32], sk[64];
        crypto_sign_keypair(pk, sk);
        cnd_ca_issued_t is;
        if (cnd_ca_issue(&is, ca, who[i][0], who[i][1], pk, 30, S_NOW - 3600, NULL))
            s_die("ca issue");
        if (i == 2 && cnd_ca_revoke(ca, is.serial, S_NOW - 60)) s_die("ca revoke");
        uint8_t *der;
        size_t n;
        if (cnd_cert_read_der(&der, &n, is.path)) s_die(is.path);
        char name[64];
        snprintf(name, sizeof name, "%s.der", who[i][0]);
        s_put("cert", name, der, n);
        free(der);
        if (i == 0) {
            uint8_t *pem;
            if (cnd_file_read(is.path, 1 << 16, &pem, &n)) s_die(is.path);
            s_put("cert", "hospital-a.pem", pem, n);
            free(pem);
        }
    }
    snprintf(out, sizeof out, "%s/../fuzz_cert_ca.h", s_root);
    FILE *h = fopen(out, "w");
    if (!h) s_die(out);
    fprintf(h,
            "/* fuzz_cert_ca.h: the test CA that fuzz_cert.c trusts, written by fuzz_mkcorpus "
            "with the\n * certificates in corpus/cert/ (valid around %d, fuzz_cert.c's "
            "\"now\"). */\n",
            S_NOW);
    char p[4200];
    snprintf(p, sizeof p, "%s/ca.crt", ca);
    s_c_string(h, "s_ca_pem", p);
    snprintf(p, sizeof p, "%s/crl.pem", ca);
    s_c_string(h, "s_crl_pem", p);
    fprintf(h, "#define S_NOW %d\n", S_NOW);
    fclose(h);
}

/* The proof of a log of one entry, a log of five and their consistency. */
static void s_audit(const char *tmp)
{
    uint8_t seed[32], pk[32], sk[64];
    memset(seed, 0x41, sizeof seed);
    crypto_sign_seed_keypair(pk, sk, seed);
    char db[4096];
    snprintf(db, sizeof db, "%s/audit.db", tmp);
    cnd_audit_t *log = NULL;
    if (cnd_audit_open(&log, db, sk, "fuzz-log")) s_die("audit open");
    if (cnd_audit_set_checkpoint_every(log, 0)) s_die("audit");
    char actor[CND_AUDIT_FPR_HEX];
    cnd_audit_fingerprint(actor, pk);
    cnd_audit_digest_t dg = {"model", {0}};
    memset(dg.sha256, 0x5a, 32);
    cnd_audit_cp_t old;
    for (int i = 0; i < 5; i++) {
        char details[128];
        snprintf(details, sizeof details,
                 "{\"round\": %d, \"accuracy\": 0.8125, \"sites\": [\"a\", \"b\\u00e9\"], "
                 "\"ok\": true, \"note\": null}",
                 i);
        cnd_audit_rec_t r = {actor, "round.end", "round", "job-1", details, &dg, 1};
        if (cnd_audit_append(log, &r, NULL)) s_die("audit append");
        if (i == 0) {
            if (cnd_audit_checkpoint(log, "round.end", &old)) s_die("checkpoint");
            cnd_buf_t b;
            cnd_buf_init(&b);
            if (cnd_audit_prove_inclusion(&b, log, 0)) s_die("prove");
            s_put("audit_proof", "inclusion-1", b.data, b.len);
            cnd_buf_free(&b);
        }
    }
    if (cnd_audit_checkpoint(log, "rollout.wave", NULL)) s_die("checkpoint");
    cnd_buf_t b;
    cnd_buf_init(&b);
    if (cnd_audit_prove_inclusion(&b, log, 2)) s_die("prove");
    s_put("audit_proof", "inclusion-5", b.data, b.len);
    s_put("audit_json", "proof.json", b.data, b.len);
    cnd_json_t *proof = NULL;
    if (cnd_json_parse(&proof, (const char *)b.data, b.len)) s_die("proof json");
    s_put_str("audit_json", "entry", cnd_json_str(cnd_json_get(proof, "entry")));
    cnd_json_free(&proof);
    cnd_buf_free(&b);
    cnd_buf_init(&b);
    if (cnd_audit_prove_consistency(&b, log, &old)) s_die("prove");
    s_put("audit_proof", "consistency", b.data, b.len);
    cnd_buf_free(&b);
    cnd_buf_init(&b);
    cnd_audit_cp_format(&b, &old);
    s_put("audit_proof", "checkpoint-note", b.data, b.len);
    cnd_buf_free(&b);
    cnd_audit_close(&log);
    unlink(db);
    s_put_str("audit_json", "numbers",
              "[0, -0, 1e2, -1.5E-3, 9007199254740993, 1.0, 123456789012345678901234567890, 0.1]");
    s_put_str(
        "audit_json", "strings",
        "{\"b\": \"\\u00e9\\ud83d\\ude00\\n\\t\\\"\\\\\\/\", \"a\": \"\xc3\xa9\xf0\x9f\x98\x80\", "
        "\"\": {\"z\": [], \"y\": {}}}");
}

int main(int argc, char **argv)
{
    if (argc != 2 && !(argc == 3 && !strcmp(argv[2], "data"))) {
        fprintf(stderr, "usage: fuzz_mkcorpus DIR [data]\n");
        return 2;
    }
    s_root = argv[1];
    if (argc == 3) { /* only the data targets' seeds (csv, image): no new CA */
        s_csv();
        s_image();
        return 0;
    }
    if (cnd_crypto_init() || sodium_init() < 0) s_die("crypto");
    char tmp[] = "/tmp/cnd-mkcorpus-XXXXXX";
    if (!mkdtemp(tmp)) s_die("mkdtemp");
    s_modelfiles();
    s_checkpoints(tmp);
    s_artifacts();
    s_idx();
    s_csv();
    s_image();
    s_spec();
    s_agent_config();
    s_manifest();
    s_cert(tmp);
    s_audit(tmp);
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp);
    if (system(cmd) != 0) s_die("rm");
    return 0;
}
