/*
 * classmap.h: a class map, the names of a model's classes in index order, as one text.
 *
 * Why it exists: a class index means nothing across sites unless everyone agrees which name it
 * stands for. Models carry their map in the "labels" metadata key, jobs in their recipe
 * ("labels") and JobSpec (student.class_names), artifacts in their labels; a site maps its own
 * labels onto the job's map by name (compress/data.h, cnd_data_map_classes) instead of
 * numbering whatever distinct values it happens to hold.
 *
 * Form: the names joined by commas, "T-shirt/top,Trouser,...". A name is 1..63 bytes, holds no
 * comma and no control character, and appears once. A map of K classes with no names of its
 * own is "0,1,...,K-1" (cnd_classmap_default).
 */
#ifndef CND_CLASSMAP_H
#define CND_CLASSMAP_H

#include "error.h"

#include <stddef.h>

#define CND_CLASS_NAME_MAX 63
#define CND_CLASSES_MAX    256
#define CND_CLASSMAP_MAX   (CND_CLASSES_MAX * (CND_CLASS_NAME_MAX + 1)) /* text bytes */

/* Checks one name of len bytes. Returns 0, or CND_EINVAL with a detail naming what is wrong. */
CND_MUST_USE int cnd_class_name_check(const char *name, size_t len);

/* Checks a map: k names (k in 2..256; k < 0 accepts any count in 1..256), each valid and
 * unique. *count (may be NULL) receives the number of names. Returns 0 or CND_EINVAL. */
CND_MUST_USE int cnd_classmap_check(const char *map, int k, int *count);

/* "0,1,...,k-1" into out (cap >= CND_CLASSMAP_MAX is always enough). */
void cnd_classmap_default(char *out, size_t cap, int k);

/* Name i of a checked map into out (NUL-terminated, cut at cap - 1). Returns 0, or CND_EINVAL
 * when the map has no name i. */
CND_MUST_USE int cnd_classmap_name(const char *map, int i, char *out, size_t cap);

/* The index of `name` in a checked map: an exact match, or else, when name is a decimal integer
 * below the map's count that no class is called, that integer (labels written as indices).
 * Returns the index or -1. */
int cnd_classmap_find(const char *map, const char *name);

/* Appends name to a map being built in out (cap bytes). Returns 0, or CND_EINVAL when the name
 * is not valid or the text would not fit. */
CND_MUST_USE int cnd_classmap_append(char *out, size_t cap, const char *name);

#endif
