/*
 * cmd_info.c: `condenser info MODEL`, what a model file holds. For a float model (.cnd): the
 * layer table (shapes, parameters, bytes and multiply-accumulates per inference) and its
 * metadata. For an integer artifact (.cndq): what the runtime sees when it loads it, its
 * self-test result, and the signed manifest found next to it.
 *
 * One digest per artifact: `sha256` is the SHA-256 of the file's bytes, the digest a signed
 * manifest, `job show`, `job export`, `rollout publish` and the audit log name. An artifact also
 * carries a digest of its own body (docs/quantization.md, "Artifact format"), which the runtime
 * checks at every load; it is shown as `content`, a different thing.
 *
 * Artifacts are signed by a detached manifest (crypto/manifest.h), written beside them as
 * FILE.manifest by `job export`, or wherever `rollout publish --manifest-out` put it. info looks
 * for FILE.manifest and STEM.manifest (or --manifest), checks the manifest's framing, signature
 * and that it names exactly these bytes, and says who signed; with --key it also checks that the
 * signer is that key (the federation's). Without --key it cannot know whom to trust and says so.
 */
#include "artifact.h"
#include "json.h"
#include "cli.h"
#include "clock.h"
#include "commands.h"
#include "digest.h"
#include "fileio.h"
#include "identity.h"
#include "manifest.h"
#include "modelfile.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define S_MANIFEST_MAX (64u << 10) /* far above any signed manifest (about 600 bytes) */

/* What info found out about an artifact's signed manifest. */
typedef struct {
    char searched[2][PATH_MAX]; /* where it looked (the --manifest path, or the defaults) */
    int n_searched;
    int found;             /* a file was read from path */
    char path[PATH_MAX];   /* the manifest file */
    int parsed;            /* framing and body decoded, signature intact under `signer` */
    cnd_manifest_t m;      /* when parsed */
    uint8_t signer[32];    /* the key in the envelope, when its framing is sound */
    int key_given, key_ok; /* --key given; the signer is that key */
    char key_fpr[CND_FINGERPRINT_HEX];
    int matches;       /* m names exactly the artifact's bytes */
    int expired;       /* now >= m.expires */
    int rc;            /* 0, or the CND_E* code of `problem` */
    char problem[512]; /* why the manifest does not vouch for this file, "" if it does */
} s_man_t;

static void s_problem(s_man_t *s, int rc)
{
    s->rc = rc;
    snprintf(s->problem, sizeof s->problem, "%s", cnd_err_detail());
}

/* Reads the first of the candidate manifest files that exists. Returns 0 (found or not) or the
 * error of a file that exists but cannot be read, or of a --manifest that does not exist. */
static int s_find_manifest(s_man_t *s, uint8_t **data, size_t *len, const char *path,
                           const char *given)
{
    if (given) {
        snprintf(s->searched[s->n_searched++], PATH_MAX, "%s", given);
    } else {
        snprintf(s->searched[s->n_searched++], PATH_MAX, "%s.manifest", path);
        const char *dot = strrchr(path, '.'), *slash = strrchr(path, '/');
        if (dot && (!slash || dot > slash + 1))
            snprintf(s->searched[s->n_searched++], PATH_MAX, "%.*s.manifest", (int)(dot - path),
                     path);
    }
    for (int i = 0; i < s->n_searched; i++) {
        if (!given && !cnd_file_exists(s->searched[i])) continue;
        int rc = cnd_file_read(s->searched[i], S_MANIFEST_MAX, data, len);
        if (rc) return rc;
        snprintf(s->path, sizeof s->path, "%s", s->searched[i]);
        s->found = 1;
        return 0;
    }
    return 0;
}

/* Checks the manifest found for the artifact bytes art[0..len): framing, signature (under the
 * signer it names, or the --key), that it names exactly these bytes, expiry. */
static void s_check_manifest(s_man_t *s, const uint8_t *man, size_t man_len, const uint8_t *art,
                             size_t len, const uint8_t *key)
{
    int rc = cnd_manifest_signer(s->signer, man, man_len);
    if (rc) {
        s_problem(s, rc);
        return;
    }
    const uint8_t(*keys)[32] = (const uint8_t(*)[32])(key ? key : s->signer);
    /* now = INT64_MIN: expiry is reported below, it does not make the signature less valid */
    cnd_manifest_policy_t pol = {keys, 1, INT64_MIN, 0, 0, NULL};
    cnd_manifest_fail_t why;
    if ((rc = cnd_manifest_verify(&s->m, &why, man, man_len, &pol))) {
        s_problem(s, rc);
        return;
    }
    s->parsed = 1;
    s->key_ok = key != NULL;
    if ((rc = cnd_manifest_check_artifact(&s->m, art, len))) {
        s_problem(s, rc);
        return;
    }
    s->matches = 1;
    s->expired = cnd_unix_time() >= s->m.expires;
}

/* Finds and checks the manifest of the artifact at path; the outcome in *s. Returns 0, or the
 * error of reading a manifest or key file (s->rc holds a manifest that does not vouch). */
static int s_manifest(s_man_t *s, const cnd_artifact_t *a, const char *path, const char *given,
                      const char *key_path)
{
    memset(s, 0, sizeof *s);
    uint8_t key[32];
    int rc;
    if (key_path) {
        if ((rc = cnd_pubkey_read(key, key_path))) return rc;
        s->key_given = 1;
        cnd_pubkey_fingerprint(s->key_fpr, key);
    }
    uint8_t *man = NULL;
    size_t man_len = 0;
    if ((rc = s_find_manifest(s, &man, &man_len, path, given))) return rc;
    if (s->found) s_check_manifest(s, man, man_len, a->bytes, a->len, key_path ? key : NULL);
    free(man);
    return 0;
}

static void s_print_signature(const s_man_t *s, const char *key_path)
{
    if (!s->found) {
        printf("signature none: no signed manifest at %s%s%s (--manifest FILE names another)\n",
               s->searched[0], s->n_searched > 1 ? " or " : "",
               s->n_searched > 1 ? s->searched[1] : "");
        return;
    }
    if (s->rc) {
        printf("signature manifest %s does NOT vouch for this file: %s\n", s->path, s->problem);
        return;
    }
    char t[32], fp[CND_FINGERPRINT_HEX];
    printf("signature manifest %s: '%s' version %llu, sequence %llu, %s %s;\n", s->path, s->m.name,
           (unsigned long long)s->m.version, (unsigned long long)s->m.sequence,
           s->expired ? "EXPIRED at" : "expires", cnd_iso8601(t, s->m.expires));
    cnd_pubkey_fingerprint(fp, s->signer);
    if (s->key_ok)
        printf("          names these bytes; signed by the key in %s (SHA256:%s)\n", key_path, fp);
    else
        printf("          names these bytes; signed by SHA256:%s (not checked against a "
               "trusted key: give --key PUB)\n",
               fp);
}

static void s_json_manifest(cnd_jw_t *w, const s_man_t *s)
{
    char t[32], fp[CND_FINGERPRINT_HEX];
    cnd_jw_key(w, "manifest_searched");
    cnd_jw_arr(w);
    for (int i = 0; i < s->n_searched; i++) cnd_jw_str(w, s->searched[i]);
    cnd_jw_arr_end(w);
    cnd_jw_key(w, "manifest"); /* null: none found */
    if (!s->found) {
        cnd_jw_null(w);
        return;
    }
    cnd_jw_obj(w);
    cnd_jw_key(w, "path");
    cnd_jw_str(w, s->path);
    cnd_jw_key(w, "vouches"); /* intact, signed by the --key if given, names these bytes */
    cnd_jw_bool(w, s->rc == 0);
    cnd_jw_key(w, "problem");
    if (s->rc)
        cnd_jw_str(w, s->problem);
    else
        cnd_jw_null(w);
    cnd_jw_key(w, "key_checked"); /* the signer is the --key */
    cnd_jw_bool(w, s->key_ok);
    if (s->parsed) {
        cnd_jw_key(w, "signer_fingerprint");
        cnd_jw_str(w, cnd_pubkey_fingerprint(fp, s->signer));
        cnd_jw_key(w, "name");
        cnd_jw_str(w, s->m.name);
        cnd_jw_key(w, "version");
        cnd_jw_int(w, (int64_t)s->m.version);
        cnd_jw_key(w, "sequence");
        cnd_jw_int(w, (int64_t)s->m.sequence);
        cnd_jw_key(w, "target");
        cnd_jw_str(w, s->m.target);
        cnd_jw_key(w, "rollback");
        cnd_jw_bool(w, (s->m.flags & CND_MANIFEST_ROLLBACK) != 0);
        cnd_jw_key(w, "length");
        cnd_jw_int(w, (int64_t)s->m.length);
        cnd_jw_key(w, "sha256");
        char hex[65];
        cnd_jw_str(w, cnd_hex(hex, s->m.digest, 32));
        cnd_jw_key(w, "expires");
        cnd_jw_str(w, cnd_iso8601(t, s->m.expires));
        cnd_jw_key(w, "expired");
        cnd_jw_bool(w, s->expired);
    }
    cnd_jw_obj_end(w);
}

/* What `info` prints about an artifact, gathered once for the text and the JSON. */
typedef struct {
    const char *path;
    char sha256[CND_SHA256_HEX];  /* of the file's bytes */
    char content[CND_SHA256_HEX]; /* the body digest inside the artifact */
    float in_scale, out_scale;
    uint32_t scheme, sig_len, signed_len; /* signature trailer */
    int st;                               /* self-test result */
    char st_error[512];
    s_man_t man;
} s_art_view_t;

static void s_art_text(const cnd_artifact_t *a, const s_art_view_t *v, const char *key_path)
{
    const cnd_rt_info_t *in = &a->info;
    printf("artifact  %s (%zu bytes, integer-only)\n", v->path, a->len);
    printf("sha256    %s\n", v->sha256);
    printf("input     %ux%ux%u int8, scale %g, zero point %d\n", in->c, in->h, in->w,
           (double)v->in_scale, in->in_zp);
    printf("output    %u int8 logits, scale %g, zero point %d\n", in->n_classes,
           (double)v->out_scale, in->out_zp);
    printf("layers    %u    MACs per inference %llu    weight bytes %zu    arena bytes %zu\n",
           in->n_layers, (unsigned long long)in->macs, in->weight_bytes, in->arena_bytes);
    printf(
        "memory    activations %zu bytes (buffers reused by liveness; %zu if each had its own)\n",
        in->act_bytes, in->act_sum);
    printf("kernels   %s\n", cnd_rt_kernels_name(cnd_rt_get_kernels(a->rt)));
    printf("content   %s (SHA-256 of the body, inside the file; not the file's digest)\n",
           v->content);
    if (v->scheme)
        printf("trailer   signature scheme %u, %u bytes over the first %u bytes (not checked)\n",
               v->scheme, v->sig_len, v->signed_len);
    s_print_signature(&v->man, key_path);
    printf("self-test %u vectors: %s\n", in->n_selftests, v->st ? v->st_error : "passed");
    if (in->n_labels) {
        printf("labels   ");
        for (uint32_t i = 0; i < in->n_labels; i++)
            printf(" %s%s", cnd_rt_label(a->rt, i), i + 1 < in->n_labels ? "," : "\n");
    }
    char k[80], val[1100];
    for (int i = 0; cnd_artifact_meta(a, i, k, sizeof k, val, sizeof val); i++)
        printf("%s  %-20s %s\n", i ? "        " : "metadata", k, val);
}

static void s_art_json(cnd_jw_t *w, const cnd_artifact_t *a, const s_art_view_t *v)
{
    const cnd_rt_info_t *in = &a->info;
    cnd_jw_obj(w);
    cnd_jw_key(w, "kind");
    cnd_jw_str(w, "artifact");
    cnd_jw_key(w, "path");
    cnd_jw_str(w, v->path);
    cnd_jw_key(w, "bytes");
    cnd_jw_int(w, (int64_t)a->len);
    cnd_jw_key(w, "sha256");
    cnd_jw_str(w, v->sha256);
    cnd_jw_key(w, "content_sha256");
    cnd_jw_str(w, v->content);
    cnd_jw_key(w, "input");
    cnd_jw_obj(w);
    cnd_jw_key(w, "shape");
    cnd_jw_arr(w);
    cnd_jw_int(w, in->c);
    cnd_jw_int(w, in->h);
    cnd_jw_int(w, in->w);
    cnd_jw_arr_end(w);
    cnd_jw_key(w, "scale");
    cnd_jw_double(w, v->in_scale);
    cnd_jw_key(w, "zero_point");
    cnd_jw_int(w, in->in_zp);
    cnd_jw_obj_end(w);
    cnd_jw_key(w, "output");
    cnd_jw_obj(w);
    cnd_jw_key(w, "classes");
    cnd_jw_int(w, in->n_classes);
    cnd_jw_key(w, "scale");
    cnd_jw_double(w, v->out_scale);
    cnd_jw_key(w, "zero_point");
    cnd_jw_int(w, in->out_zp);
    cnd_jw_obj_end(w);
    cnd_jw_key(w, "layers");
    cnd_jw_int(w, in->n_layers);
    cnd_jw_key(w, "macs");
    cnd_jw_int(w, (int64_t)in->macs);
    cnd_jw_key(w, "weight_bytes");
    cnd_jw_int(w, (int64_t)in->weight_bytes);
    cnd_jw_key(w, "arena_bytes");
    cnd_jw_int(w, (int64_t)in->arena_bytes);
    cnd_jw_key(w, "activation_bytes");
    cnd_jw_int(w, (int64_t)in->act_bytes);
    cnd_jw_key(w, "activation_sum_bytes");
    cnd_jw_int(w, (int64_t)in->act_sum);
    cnd_jw_key(w, "kernels");
    cnd_jw_str(w, cnd_rt_kernels_name(cnd_rt_get_kernels(a->rt)));
    cnd_jw_key(w, "trailer");
    cnd_jw_obj(w);
    cnd_jw_key(w, "scheme"); /* 0: unsigned */
    cnd_jw_int(w, v->scheme);
    cnd_jw_key(w, "bytes");
    cnd_jw_int(w, v->sig_len);
    cnd_jw_obj_end(w);
    s_json_manifest(w, &v->man);
    cnd_jw_key(w, "self_test");
    cnd_jw_obj(w);
    cnd_jw_key(w, "vectors");
    cnd_jw_int(w, in->n_selftests);
    cnd_jw_key(w, "passed");
    cnd_jw_bool(w, v->st == 0);
    cnd_jw_key(w, "error");
    if (v->st)
        cnd_jw_str(w, v->st_error);
    else
        cnd_jw_null(w);
    cnd_jw_obj_end(w);
    cnd_jw_key(w, "labels");
    cnd_jw_arr(w);
    for (uint32_t i = 0; i < in->n_labels; i++) cnd_jw_str(w, cnd_rt_label(a->rt, i));
    cnd_jw_arr_end(w);
    cnd_jw_key(w, "metadata");
    cnd_jw_obj(w);
    char k[80], val[1100];
    for (int i = 0; cnd_artifact_meta(a, i, k, sizeof k, val, sizeof val); i++) {
        cnd_jw_key(w, k);
        cnd_jw_str(w, val);
    }
    cnd_jw_obj_end(w);
    cnd_jw_obj_end(w);
}

static int s_print_json(cnd_jw_t *w)
{
    const char *t = cnd_jw_text(w);
    if (!t) return cnd_errf(CND_ENOMEM, "info: out of memory");
    printf("%s\n", t);
    return 0;
}

/* The exit status of info on an artifact: a failed self-test first, then a manifest that does
 * not vouch for the file (both are printed in full before). */
static int s_art_status(const s_art_view_t *v)
{
    if (v->st) return cnd_errf(v->st, "%s", v->st_error);
    if (v->man.rc) return cnd_errf(v->man.rc, "%s: %s", v->man.path, v->man.problem);
    return 0;
}

static int s_info_artifact(const char *path, const uint8_t *bytes, size_t len, int json,
                           const char *manifest, const char *key_path)
{
    if (len > CND_RT_MAX_FILE)
        return cnd_errf(CND_ERANGE, "%s: larger than the runtime's limit of %u bytes", path,
                        CND_RT_MAX_FILE);
    cnd_artifact_t *a = NULL;
    int rc = cnd_artifact_open(&a, bytes, len, path);
    if (rc) return rc;
    s_art_view_t v;
    memset(&v, 0, sizeof v);
    v.path = path;
    uint8_t d[CND_SHA256_BYTES];
    cnd_sha256(d, a->bytes, a->len);
    cnd_hex(v.sha256, d, sizeof d);
    cnd_hex(v.content, a->info.digest, CND_SHA256_BYTES);
    memcpy(&v.in_scale, &a->info.in_scale_bits, 4);
    memcpy(&v.out_scale, &a->info.out_scale_bits, 4);
    const uint8_t *sig;
    cnd_rt_signature(a->rt, &v.scheme, &sig, &v.sig_len, &v.signed_len);
    v.st = cnd_artifact_selftest(a, path);
    if (v.st) snprintf(v.st_error, sizeof v.st_error, "%s", cnd_err_detail());
    if ((rc = s_manifest(&v.man, a, path, manifest, key_path))) {
        cnd_artifact_destroy(&a);
        return rc;
    }
    if (json) {
        cnd_jw_t w;
        cnd_jw_init(&w);
        s_art_json(&w, a, &v);
        rc = s_print_json(&w);
        cnd_jw_free(&w);
    } else {
        s_art_text(a, &v, key_path);
    }
    cnd_artifact_destroy(&a);
    return rc ? rc : s_art_status(&v);
}

/* "  <- 3, input  (name)": the nodes a graph node reads, for the layer table. */
static void s_reads(const cnd_layer_t *l, char *out, size_t n)
{
    int w = snprintf(out, n, "  <-");
    for (int k = 0; k < l->n_src && w > 0 && (size_t)w < n; k++) {
        if (l->src[k] < 0)
            w += snprintf(out + w, n - (size_t)w, "%s input", k ? "," : "");
        else
            w += snprintf(out + w, n - (size_t)w, "%s %d", k ? "," : "", l->src[k]);
    }
    if (l->name[0] && w > 0 && (size_t)w < n) snprintf(out + w, n - (size_t)w, "  (%s)", l->name);
}

static void s_model_text(const cnd_model_t *m, const char *path, const char *sha)
{
    printf("model   %s\nsha256  %s\narch    %s\ninput   %dx%dx%d   classes %d\n\n", path, sha,
           m->spec, m->in.c, m->in.h, m->in.w, m->n_classes);
    printf("  #  %-26s %-14s %10s %12s %12s%s\n", "layer", "output", "params", "bytes(f32)", "MACs",
           m->graph ? "  reads" : "");
    for (int i = 0; i < m->n_layers; i++) {
        const cnd_layer_t *l = &m->layers[i];
        char tok[64], shp[32], reads[64] = "";
        cnd_layer_spec(l, tok, sizeof tok);
        snprintf(shp, sizeof shp, "%dx%dx%d", l->out.c, l->out.h, l->out.w);
        if (m->graph) /* a graph: which nodes each one reads, and its name */
            s_reads(l, reads, sizeof reads);
        printf("%3d  %-26s %-14s %10zu %12zu %12llu%s\n", i, tok, shp, l->n_params, l->n_params * 4,
               (unsigned long long)cnd_layer_ops(l->type)->macs(l), reads);
    }
    printf("\ntotal: %zu parameters, %zu bytes float32, %llu MACs per inference\n", m->num_params,
           m->num_params * 4, (unsigned long long)cnd_model_macs(m));
    if (m->n_meta) printf("\nmetadata:\n");
    for (int i = 0; i < m->n_meta; i++) printf("  %-16s %s\n", m->meta[i].key, m->meta[i].val);
}

static void s_json_shape(cnd_jw_t *w, cnd_shape_t s)
{
    cnd_jw_arr(w);
    cnd_jw_int(w, s.c);
    cnd_jw_int(w, s.h);
    cnd_jw_int(w, s.w);
    cnd_jw_arr_end(w);
}

static void s_model_json(cnd_jw_t *w, const cnd_model_t *m, const char *path, const char *sha)
{
    cnd_jw_obj(w);
    cnd_jw_key(w, "kind");
    cnd_jw_str(w, "model");
    cnd_jw_key(w, "path");
    cnd_jw_str(w, path);
    cnd_jw_key(w, "sha256");
    cnd_jw_str(w, sha);
    cnd_jw_key(w, "arch");
    cnd_jw_str(w, m->spec);
    cnd_jw_key(w, "input");
    s_json_shape(w, m->in);
    cnd_jw_key(w, "classes");
    cnd_jw_int(w, m->n_classes);
    cnd_jw_key(w, "graph");
    cnd_jw_bool(w, m->graph);
    cnd_jw_key(w, "layers");
    cnd_jw_arr(w);
    for (int i = 0; i < m->n_layers; i++) {
        const cnd_layer_t *l = &m->layers[i];
        char tok[64];
        cnd_layer_spec(l, tok, sizeof tok);
        cnd_jw_obj(w);
        cnd_jw_key(w, "index");
        cnd_jw_int(w, i);
        cnd_jw_key(w, "layer");
        cnd_jw_str(w, tok);
        cnd_jw_key(w, "output");
        s_json_shape(w, l->out);
        cnd_jw_key(w, "params");
        cnd_jw_int(w, (int64_t)l->n_params);
        cnd_jw_key(w, "bytes");
        cnd_jw_int(w, (int64_t)l->n_params * 4);
        cnd_jw_key(w, "macs");
        cnd_jw_int(w, (int64_t)cnd_layer_ops(l->type)->macs(l));
        if (m->graph) { /* the nodes it reads (-1: the model input), and its name */
            cnd_jw_key(w, "inputs");
            cnd_jw_arr(w);
            for (int k = 0; k < l->n_src; k++) cnd_jw_int(w, l->src[k]);
            cnd_jw_arr_end(w);
            if (l->name[0]) {
                cnd_jw_key(w, "name");
                cnd_jw_str(w, l->name);
            }
        }
        cnd_jw_obj_end(w);
    }
    cnd_jw_arr_end(w);
    cnd_jw_key(w, "params");
    cnd_jw_int(w, (int64_t)m->num_params);
    cnd_jw_key(w, "bytes");
    cnd_jw_int(w, (int64_t)m->num_params * 4);
    cnd_jw_key(w, "macs");
    cnd_jw_int(w, (int64_t)cnd_model_macs(m));
    cnd_jw_key(w, "metadata");
    cnd_jw_obj(w);
    for (int i = 0; i < m->n_meta; i++) {
        cnd_jw_key(w, m->meta[i].key);
        cnd_jw_str(w, m->meta[i].val);
    }
    cnd_jw_obj_end(w);
    cnd_jw_obj_end(w);
}

static int s_info_model(const char *path, const uint8_t *bytes, size_t len, int json)
{
    cnd_model_t *m = NULL;
    int rc = cnd_model_deserialize(&m, bytes, len, path);
    if (rc) return rc;
    uint8_t d[CND_SHA256_BYTES];
    char sha[CND_SHA256_HEX];
    cnd_sha256(d, bytes, len);
    cnd_hex(sha, d, sizeof d);
    if (json) {
        cnd_jw_t w;
        cnd_jw_init(&w);
        s_model_json(&w, m, path, sha);
        rc = s_print_json(&w);
        cnd_jw_free(&w);
    } else {
        s_model_text(m, path, sha);
    }
    cnd_model_destroy(&m);
    return rc;
}

int cnd_cmd_info(int argc, char **argv)
{
    const char *manifest = NULL, *key = NULL;
    int json = 0;
    const cnd_opt_t opts[] = {
        {"manifest", CND_OPT_STR, &manifest, "FILE",
         "the artifact's signed manifest (default: MODEL.manifest or STEM.manifest, if there)"},
        {"key", CND_OPT_STR, &key, "PUB",
         "check that the manifest is signed by this key (the coordinator's identity.pub)"},
        {"json", CND_OPT_FLAG, &json, NULL, "print JSON"},
        {0}};
    const cnd_cli_t cli = {
        "condenser info MODEL(.cnd|.cndq) [--manifest FILE] [--key PUB] [--json]",
        "Shows a float model's layers with output shapes, parameter counts, "
        "bytes and multiply-accumulates per inference, and its metadata; for "
        "an integer artifact, its input/output quantization, size, arena, "
        "self-test result and its signed manifest. `sha256` is the SHA-256 "
        "of the file's bytes, the digest manifests and the audit log name. "
        "Exit status 1 when an artifact's self-test fails or a manifest found "
        "does not vouch for it.",
        opts, 1, 1};
    int npos;
    char **pos;
    int rc = cnd_cli_parse(&cli, argc, argv, &npos, &pos);
    if (rc) return rc > 0 ? 0 : rc;
    uint8_t *bytes = NULL;
    size_t len = 0;
    if ((rc = cnd_file_read(pos[0], CND_MODELFILE_MAX, &bytes, &len))) return rc;
    /* Dispatch on content, not on the file name: a float model starts with "CNDM". */
    if (len >= 4 && !memcmp(bytes, CND_MODELFILE_MAGIC, 4)) {
        if (manifest || key)
            rc = cnd_errf(CND_EINVAL,
                          "%s is a float model: --manifest and --key are for "
                          "integer artifacts",
                          pos[0]);
        else
            rc = s_info_model(pos[0], bytes, len, json);
    } else {
        rc = s_info_artifact(pos[0], bytes, len, json, manifest, key);
    }
    free(bytes);
    return rc;
}
