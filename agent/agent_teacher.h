/*
 * agent_teacher.h: an ONNX teacher as a site sees it, checked against the job before the site
 * accepts the job.
 *
 * A shipped ONNX teacher comes from the coordinator, which the site does not have to trust: the
 * bytes have already matched the digest the JobSpec announced (proto/chunk.h), which proves only
 * that they are what the coordinator chose to send. This check is the site's own: the file
 * loads as a float teacher (the loader refuses malformed and hostile graphs without large
 * allocations, compress/onnx_load.c), the job's preprocessing spec parses and fits its
 * channels, its input takes the job's samples and its outputs are the job's classes, its graph
 * and a batch run fit the site's memory limit, and a sample of zeros gives finite logits. A
 * site-local ONNX teacher ([teachers] in agent.ini) goes through the same check.
 */
#ifndef CND_AGENT_TEACHER_H
#define CND_AGENT_TEACHER_H

#include "job.h"

#include <stddef.h>
#include <stdint.h>

/* Checks the ONNX teacher in data/len (or, when data is NULL, the file at path; path names it
 * in messages either way) with preprocessing `prep` against `job` and a limit of memory_mb MB.
 * Returns 0 with *mem_bytes the memory its graph and a batch run take, or an error whose detail
 * is the reason the site gives the coordinator (CND_EFORMAT, CND_EINVAL, CND_ERANGE, CND_EIO,
 * CND_ENOMEM). */
CND_MUST_USE int cnd_agent_onnx_teacher_check(const char *path, const uint8_t *data, size_t len,
                                              const char *prep, const cnd_job_spec_t *job,
                                              uint64_t memory_mb, size_t *mem_bytes);

#endif
