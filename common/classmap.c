/*
 * classmap.c: class maps as comma-separated names (see classmap.h).
 */
#include "classmap.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int cnd_class_name_check(const char *name, size_t len)
{
    if (len == 0) return cnd_errf(CND_EINVAL, "class name is empty");
    if (len > CND_CLASS_NAME_MAX)
        return cnd_errf(CND_EINVAL, "class name '%.40s...' is longer than %d bytes", name,
                        CND_CLASS_NAME_MAX);
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)name[i];
        if (c == ',')
            return cnd_errf(CND_EINVAL, "class name '%.*s' holds a comma", (int)len, name);
        if (c < 0x20 || c == 0x7f)
            return cnd_errf(CND_EINVAL, "class name holds the control byte 0x%02x at offset %zu", c,
                            i);
    }
    return 0;
}

/* Start and length of name i, or -1. */
static int s_span(const char *map, int i, const char **start, size_t *len)
{
    const char *p = map;
    for (int k = 0; k < i; k++) {
        p = strchr(p, ',');
        if (!p) return -1;
        p++;
    }
    const char *e = strchr(p, ',');
    *start = p;
    *len = e ? (size_t)(e - p) : strlen(p);
    return 0;
}

int cnd_classmap_check(const char *map, int k, int *count)
{
    if (strlen(map) > CND_CLASSMAP_MAX)
        return cnd_errf(CND_EINVAL, "class map is longer than %d bytes", CND_CLASSMAP_MAX);
    int n = 1;
    for (const char *p = map; *p; p++) n += *p == ',';
    if (n > CND_CLASSES_MAX)
        return cnd_errf(CND_EINVAL, "class map has %d names, at most %d", n, CND_CLASSES_MAX);
    if (k >= 0 && n != k)
        return cnd_errf(CND_EINVAL, "class map has %d names for %d classes", n, k);
    for (int i = 0; i < n; i++) {
        const char *a = NULL, *b = NULL;
        size_t la = 0, lb = 0;
        (void)s_span(map, i, &a, &la);
        int rc = cnd_class_name_check(a, la);
        if (rc) return cnd_err_wrap(rc, "class %d", i);
        for (int j = 0; j < i; j++) {
            (void)s_span(map, j, &b, &lb);
            if (la == lb && !memcmp(a, b, la))
                return cnd_errf(CND_EINVAL, "class map names '%.*s' twice (classes %d and %d)",
                                (int)la, a, j, i);
        }
    }
    if (count) *count = n;
    return 0;
}

void cnd_classmap_default(char *out, size_t cap, int k)
{
    size_t n = 0;
    if (cap) out[0] = 0;
    for (int i = 0; i < k && n < cap; i++) {
        int w = snprintf(out + n, cap - n, "%s%d", i ? "," : "", i);
        if (w < 0 || (size_t)w >= cap - n) break;
        n += (size_t)w;
    }
}

int cnd_classmap_name(const char *map, int i, char *out, size_t cap)
{
    const char *s;
    size_t len;
    if (i < 0 || s_span(map, i, &s, &len))
        return cnd_errf(CND_EINVAL, "class map has no class %d", i);
    if (len >= cap) len = cap - 1;
    memcpy(out, s, len);
    out[len] = 0;
    return 0;
}

int cnd_classmap_find(const char *map, const char *name)
{
    size_t nl = strlen(name);
    int n = 0;
    for (int i = 0;; i++) {
        const char *s;
        size_t len;
        if (s_span(map, i, &s, &len)) break;
        if (len == nl && !memcmp(s, name, nl)) return i;
        n++;
    }
    if (!*name || nl > 3) return -1;
    int v = 0;
    for (const char *p = name; *p; p++) {
        if (*p < '0' || *p > '9') return -1;
        v = v * 10 + (*p - '0');
    }
    if (nl > 1 && name[0] == '0') return -1; /* "07" is a name, not an index */
    return v < n ? v : -1;
}

int cnd_classmap_append(char *out, size_t cap, const char *name)
{
    size_t nl = strlen(name), used = strlen(out);
    int rc = cnd_class_name_check(name, nl);
    if (rc) return rc;
    if (used + (used > 0) + nl + 1 > cap)
        return cnd_errf(CND_EINVAL, "class map longer than %zu bytes", cap - 1);
    if (used) out[used++] = ',';
    memcpy(out + used, name, nl + 1);
    return 0;
}
